//! The `gatehouse` binary: the embedded default, `check-config`, `keys rotate`.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// A temporary directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> Self {
        let p = std::env::temp_dir().join(format!("gatehouse-cli-{}", gatehouse::types::random_token(9)));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A `gatehouse serve` child process, killed on drop.
struct Served {
    child: Child,
    base: String,
    stdout: Vec<String>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Start the embedded default in `dir` and wait until it answers.
fn serve_embedded(dir: &Path) -> Served {
    let port = free_port();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
        .current_dir(dir)
        .env("GATEHOUSE_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stdout = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match lines.next() {
            Some(Ok(line)) => {
                let done = line.contains("Demo user");
                stdout.push(line);
                if done {
                    break;
                }
            }
            _ => break,
        }
    }
    let served = Served { child, base: format!("http://127.0.0.1:{port}"), stdout };
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return served;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("gatehouse did not start; printed {:?}", served.stdout);
}

async fn kids(base: &str) -> Vec<String> {
    let jwks: serde_json::Value =
        reqwest::get(format!("{base}/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_embedded_default_serves_the_demo_and_keeps_its_key() {
    let dir = TempDir::new();
    let first = serve_embedded(&dir.0);
    let printed = first.stdout.join("\n");
    assert!(printed.contains(&format!("Issuer:    {}", first.base)), "{printed}");
    assert!(printed.contains("demo@gatehouse.test / gatehouse-demo"), "{printed}");
    let demo = reqwest::get(format!("{}/demo", first.base)).await.unwrap();
    assert_eq!(demo.status(), 200);
    assert!(demo.text().await.unwrap().contains("gatehouse-demo"));
    let kid = kids(&first.base).await;
    assert_eq!(kid.len(), 1);
    let alg: serde_json::Value =
        reqwest::get(format!("{}/.well-known/jwks.json", first.base)).await.unwrap().json().await.unwrap();
    assert_eq!(alg["keys"][0]["alg"], "RS256", "RS256 by default");
    drop(first);

    let second = serve_embedded(&dir.0);
    assert_eq!(kids(&second.base).await, kid, "a restart keeps the kid");
    drop(second);

    let out = Command::new(BIN).args(["keys", "rotate"]).current_dir(&dir.0).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let third = serve_embedded(&dir.0);
    let after = kids(&third.base).await;
    assert_eq!(after.len(), 2, "the new key and the previous one");
    assert_ne!(after[0], kid[0], "the new key signs");
    assert_eq!(after[1], kid[0], "the old key still verifies");
}

fn check(file: &Path, envs: &[(&str, &str)]) -> (bool, String, String) {
    let out = Command::new(BIN).arg("check-config").arg(file).envs(envs.iter().copied()).output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_config_reports_every_problem_with_its_path() {
    let dir = TempDir::new();
    let bad = dir.0.join("bad.toml");
    std::fs::write(
        &bad,
        r#"
issuer = "not a url"
[[clients]]
client_id = "web"
redirect_uris = ["https://app.example/cb#x"]
connections = ["ghost"]
[[connections]]
id = "users"
type = "nosuch"
"#,
    )
    .unwrap();
    let (ok, _, err) = check(&bad, &[]);
    assert!(!ok, "exit code 1");
    for path in ["issuer:", "clients[0].redirect_uris[0]:", "clients[0].connections[0]:"] {
        assert!(err.contains(path), "{path} in:\n{err}");
    }

    let unknown_type = dir.0.join("type.toml");
    std::fs::write(&unknown_type, "[[connections]]\nid = \"users\"\ntype = \"nosuch\"\n").unwrap();
    let (ok, _, err) = check(&unknown_type, &[]);
    assert!(!ok);
    assert!(err.contains("connections[0].type") && err.contains("unknown connector type nosuch"), "{err}");

    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/config/example.toml");
    let secret = "x".repeat(40);
    let (ok, out, err) = check(&example, &[("EXAMPLE_WEB_SECRET", &secret), ("EXAMPLE_WORKER_SECRET", &secret)]);
    assert!(ok, "{err}");
    assert!(out.contains("ok"), "{out}");
    let (ok, _, err) = check(&example, &[]);
    assert!(!ok);
    assert!(err.contains("clients[0].client_secret: environment variable EXAMPLE_WEB_SECRET is not set"), "{err}");
}

#[test]
fn version_and_help() {
    let v = Command::new(BIN).arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains(env!("CARGO_PKG_VERSION")));
    let h = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&h.stdout);
    for cmd in ["serve", "check-config", "keys", "hash-password"] {
        assert!(help.contains(cmd), "{help}");
    }
}
