//! Child processes the tests wait on: every wait has a deadline, a peer's READY line is read
//! within one, the Node.js the npm peers need is found, and a child's port is proven its own.

use std::sync::LazyLock;

use super::{Node, free_port, spawn_node};

/// How long a peer may take to print its READY line or to finish a run on a loaded machine.
pub const PEER_DEADLINE: std::time::Duration = std::time::Duration::from_secs(60);

/// Run `cmd` to completion within `deadline` (stdin closed, stdout and stderr captured); kill it
/// and panic with what it printed when it takes longer, so a hung peer fails its test instead
/// of stalling the suite.
pub fn output_within(cmd: &mut std::process::Command, deadline: std::time::Duration) -> std::process::Output {
    use std::io::Read;
    use std::process::Stdio;
    let what = format!("{:?}", cmd.get_program());
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what} could not start ({e}): run ./scripts/setup"));
    // Drain both pipes on threads, so a chatty child cannot block on a full pipe.
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = r.read_to_end(&mut buf);
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let until = std::time::Instant::now() + deadline;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() >= until {
            let _ = child.kill();
            let _ = child.wait();
            let (out, err) = (out.join().unwrap(), err.join().unwrap());
            panic!(
                "{what} did not finish within {deadline:?}:\n{}\n{}",
                String::from_utf8_lossy(&out),
                String::from_utf8_lossy(&err)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    std::process::Output { status, stdout: out.join().unwrap(), stderr: err.join().unwrap() }
}

/// The first line a child prints on `out`, within `deadline`; panics naming `what` otherwise
/// (the child is left to its owner's Drop, which kills it).
pub fn first_line_within(
    out: impl std::io::Read + Send + 'static,
    deadline: std::time::Duration,
    what: &str,
) -> String {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(out);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
        // Keep draining, so the child never blocks on a full pipe.
        let _ = std::io::copy(&mut reader, &mut std::io::sink());
    });
    rx.recv_timeout(deadline).unwrap_or_else(|_| panic!("{what} printed nothing within {deadline:?}"))
}

/// The Node.js the npm peers run on: the one scripts/setup installed into tests/peers/.node
/// when the system's was older than 20 (scripts/lib/node.sh), else the one on PATH. Panics
/// with the install hint when neither is a Node.js >= 20.
pub fn node() -> std::path::PathBuf {
    static NODE: LazyLock<std::path::PathBuf> = LazyLock::new(|| {
        let local = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/.node/node_modules/.bin/node");
        let node = if local.exists() { local } else { std::path::PathBuf::from("node") };
        let out = output_within(std::process::Command::new(&node).arg("--version"), PEER_DEADLINE);
        let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        let major: u32 =
            version.trim_start_matches('v').split('.').next().and_then(|m| m.parse().ok()).unwrap_or_default();
        assert!(major >= 20, "{node:?} is Node.js {version:?}; the npm peers need >= 20: run ./scripts/setup");
        node
    });
    NODE.clone()
}

/// Whether process `pid` holds the socket listening on 127.0.0.1:`port` (Linux: its file
/// descriptors against /proc/net/tcp).
pub fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else { return false };
    let wanted = format!(":{port:04X}");
    let inodes: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() > 9 && f[1].ends_with(&wanted) && f[3] == "0A").then_some(f[9])
        })
        .collect();
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else { return false };
    fds.filter_map(Result::ok).filter_map(|fd| std::fs::read_link(fd.path()).ok()).any(|link| {
        let link = link.to_string_lossy().into_owned();
        inodes.iter().any(|i| link == format!("socket:[{i}]"))
    })
}

/// `spawn_node` on a port of its own: `args_for(port)` gives the arguments and environment
/// for a port; when another process took the port first (the node says "cannot listen on"),
/// a fresh port is tried. The node's stderr goes to `<dir>/<name>.stderr`. Returns the node
/// and its port.
pub fn spawn_node_on_free_port(
    dir: &std::path::Path,
    name: &str,
    args_for: impl Fn(u16) -> (Vec<String>, Vec<(String, String)>),
) -> (Node, u16) {
    for _ in 0..5 {
        let port = free_port();
        let (args, envs) = args_for(port);
        let log = dir.join(format!("{name}.stderr"));
        let stderr = std::process::Stdio::from(std::fs::File::create(&log).unwrap());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let envs: Vec<(&str, &str)> = envs.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let spawned =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| spawn_node(dir, port, &args, &envs, stderr)));
        match spawned {
            Ok(node) => return (node, port),
            Err(panic) => {
                let said = std::fs::read_to_string(&log).unwrap_or_default();
                if !said.contains("cannot listen on") {
                    std::panic::resume_unwind(panic);
                }
            }
        }
    }
    panic!("{name}: five free ports in a row were taken by others");
}
