//! scripts/lib/node.sh, the part of scripts/setup that decides whether the system's Node.js is
//! recent enough and otherwise installs the npm registry's `node` package. Exercised with fake
//! `node` and `npm` commands on PATH: the fake npm records its arguments and "installs" a
//! fake Node of the version the test asks for.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::{PEER_DEADLINE, TempDir, output_within};

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/lib/node.sh")
}

/// A shell script printing `version` for `--version`.
fn fake_node(path: &Path, version: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n[ \"$1\" = --version ] && echo {version}\n")).unwrap();
    chmod_x(path);
}

fn chmod_x(path: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
}

struct Run {
    ok: bool,
    stdout: String,
    /// The fake npm's arguments, one call per line.
    npm_calls: Vec<String>,
    dir: TempDir,
}

/// Run `ensure_node` in a fresh directory with `system` as the Node on PATH (None: no node at
/// all), a local Node of `local` already installed (or not), and an npm whose install leaves
/// a Node of `installs`.
fn ensure_node(system: Option<&str>, local: Option<&str>, installs: &str) -> Run {
    let dir = TempDir::new();
    let bin = dir.0.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    // Only the fakes and the few tools the scripts use: never the machine's own node or npm.
    for tool in ["sh", "sed", "mkdir", "chmod"] {
        let real = ["/usr/bin", "/bin"].iter().map(|d| Path::new(d).join(tool)).find(|p| p.exists());
        std::os::unix::fs::symlink(real.unwrap_or_else(|| panic!("{tool} is not installed")), bin.join(tool)).unwrap();
    }
    if let Some(v) = system {
        fake_node(&bin.join("node"), v);
    }
    if let Some(v) = local {
        fake_node(&dir.0.join("work/tests/peers/.node/node_modules/.bin/node"), v);
    }
    let log = dir.0.join("npm.log");
    let npm = bin.join("npm");
    std::fs::write(
        &npm,
        format!(
            "#!/bin/sh\necho \"$*\" >> {log}\n\
             prefix=\"\"; while [ $# -gt 0 ]; do [ \"$1\" = --prefix ] && prefix=\"$2\"; shift; done\n\
             mkdir -p \"$prefix/node_modules/.bin\"\n\
             printf '#!/bin/sh\\necho {installs}\\n' > \"$prefix/node_modules/.bin/node\"\n\
             chmod +x \"$prefix/node_modules/.bin/node\"\n",
            log = log.display()
        ),
    )
    .unwrap();
    chmod_x(&npm);
    let work = dir.0.join("work");
    std::fs::create_dir_all(&work).unwrap();
    let out = output_within(
        Command::new("/bin/bash")
            .arg("-c")
            // The shell options scripts/setup runs with.
            .arg(format!("set -euo pipefail; . {}; ensure_node", script().display()))
            .current_dir(&work)
            .env("PATH", &bin),
        PEER_DEADLINE,
    );
    let npm_calls = std::fs::read_to_string(&log).map(|s| s.lines().map(str::to_owned).collect()).unwrap_or_default();
    Run { ok: out.status.success(), stdout: String::from_utf8_lossy(&out.stdout).trim().to_owned(), npm_calls, dir }
}

fn local_bin(run: &Run) -> String {
    run.dir.0.join("work/tests/peers/.node/node_modules/.bin").display().to_string()
}

#[test]
fn debian_12s_node_18_gets_node_20_from_the_npm_registry() {
    let run = ensure_node(Some("v18.19.0"), None, "v20.19.5");
    assert!(run.ok, "ensure_node failed: {}", run.stdout);
    assert_eq!(run.npm_calls.len(), 1, "one install: {:?}", run.npm_calls);
    let call = &run.npm_calls[0];
    assert!(call.starts_with("install --prefix tests/peers/.node "), "{call}");
    assert!(call.ends_with(" node@20"), "the npm registry's node package, major 20: {call}");
    assert_eq!(run.stdout, local_bin(&run), "the local bin directory goes first on PATH");
}

#[test]
fn a_missing_node_is_installed_too() {
    let run = ensure_node(None, None, "v20.19.5");
    assert!(run.ok);
    assert_eq!(run.npm_calls.len(), 1, "{:?}", run.npm_calls);
    assert_eq!(run.stdout, local_bin(&run));
}

#[test]
fn a_recent_system_node_is_kept() {
    for v in ["v20.0.0", "v22.11.0", "v100.1.0"] {
        let run = ensure_node(Some(v), None, "v20.19.5");
        assert!(run.ok, "{v}");
        assert!(run.npm_calls.is_empty(), "{v} is recent enough, yet npm ran: {:?}", run.npm_calls);
        assert_eq!(run.stdout, "", "{v}: nothing to put on PATH");
    }
}

#[test]
fn versions_compare_as_numbers_not_text() {
    // "v8" sorts after "v20" as text; "v2" before it; both are old.
    for v in ["v8.17.0", "v2.0.0", "v19.9.0"] {
        let run = ensure_node(Some(v), None, "v20.19.5");
        assert_eq!(run.npm_calls.len(), 1, "{v} is older than 20: {:?}", run.npm_calls);
    }
}

#[test]
fn a_node_installed_before_is_reused() {
    let run = ensure_node(Some("v18.19.0"), Some("v20.19.5"), "v20.19.5");
    assert!(run.ok);
    assert!(run.npm_calls.is_empty(), "already installed: {:?}", run.npm_calls);
    assert_eq!(run.stdout, local_bin(&run));
}

#[test]
fn an_install_that_leaves_an_old_node_fails_setup() {
    let run = ensure_node(Some("v18.19.0"), None, "v18.20.0");
    assert!(!run.ok, "setup must stop, not run the peers on Node 18: {}", run.stdout);
}
