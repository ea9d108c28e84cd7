//! Child processes the tests wait on: every wait has a deadline, a peer's READY line is read
//! within one, the Node.js the npm peers need is found, and a child's port is proven its own.

use std::sync::LazyLock;

use super::{BIN, Node, healthy};

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

/// A loopback port nobody listened on when asked (bound to port 0, then released). Another
/// process can bind it before the caller's child does, so it is only a port to try: every
/// caller retries with a fresh one when its child cannot bind it (`spawn_node`,
/// `TestRedis`, `SamlIdp::try_start`). Where nothing should listen at all, `closed_port`.
pub fn port_to_try() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A loopback port bound but not listening, for as long as the socket lives: a connection
/// to it is refused, and no other process can bind it meanwhile (the socket has no
/// SO_REUSEADDR), so "nothing listens there" stays true for the whole test.
pub fn closed_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

/// Run `gatehouse ARGS` in `dir` on a port of its own and wait until it serves there.
/// `args_for(port)` gives the arguments and environment for a port (and may write a
/// configuration file naming it). When another process took the port first (the node says
/// "cannot listen on"), a fresh port is tried. The node's stderr goes to `<dir>/<name>.stderr`.
pub fn spawn_node(
    dir: &std::path::Path,
    name: &str,
    args_for: impl Fn(u16) -> (Vec<String>, Vec<(String, String)>),
) -> Node {
    spawn_node_trying(std::iter::repeat_with(port_to_try), dir, name, args_for)
}

/// `spawn_node` on the ports `ports` yields, in order (a test gives a port it holds first).
pub fn spawn_node_trying(
    ports: impl Iterator<Item = u16>,
    dir: &std::path::Path,
    name: &str,
    args_for: impl Fn(u16) -> (Vec<String>, Vec<(String, String)>),
) -> Node {
    let mut refused = Vec::new();
    for port in ports.take(5) {
        let (args, envs) = args_for(port);
        if let Some(mut node) = try_spawn(dir, name, port, &args, &envs) {
            node.refused = refused;
            return node;
        }
        refused.push(port);
    }
    panic!("{name}: five ports in a row were taken by others: {refused:?}");
}

/// One start of a node on `port`: `None` when the port was another process's.
fn try_spawn(dir: &std::path::Path, name: &str, port: u16, args: &[String], envs: &[(String, String)]) -> Option<Node> {
    use std::io::BufRead;
    use std::time::{Duration, Instant};
    let log = dir.join(format!("{name}.stderr"));
    let mut child = std::process::Command::new(BIN)
        .args(args)
        .current_dir(dir)
        .envs(envs.iter().map(|(k, v)| (k, v)))
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let stdout = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let (lines, out) = (stdout.clone(), child.stdout.take().unwrap());
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            lines.lock().unwrap().push(line);
        }
    });
    let mut node = Node { child, base: format!("http://127.0.0.1:{port}"), port, log, refused: Vec::new(), stdout };
    let deadline = Instant::now() + PEER_DEADLINE;
    // The listener is this child's (checked first: connecting to another process's listener
    // could wait on it), and it serves.
    while !(listens_on(node.child.id(), port) && healthy(port)) {
        if let Ok(Some(status)) = node.child.try_wait() {
            let said = std::fs::read_to_string(&node.log).unwrap_or_default();
            if said.contains("cannot listen on") {
                return None;
            }
            panic!("gatehouse {args:?} exited with {status} before serving:\n{said}");
        }
        assert!(Instant::now() < deadline, "gatehouse did not start on port {port} within {PEER_DEADLINE:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(node)
}

/// `--listen 127.0.0.1:<port>` as `serve` arguments, after `first`.
pub fn serve_args(first: &[&str], port: u16) -> Vec<String> {
    let mut args: Vec<String> = std::iter::once("serve").chain(first.iter().copied()).map(String::from).collect();
    args.extend(["--listen".to_owned(), format!("127.0.0.1:{port}")]);
    args
}

/// Environment pairs as owned strings.
pub fn envs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}
