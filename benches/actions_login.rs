//! Actions on the real login path, over HTTP against `gatehouse serve` nodes this bench
//! starts: what one small action adds to a login end to end (thread hand-off included), and
//! whether logins whose Action waits on a slow upstream hold up the others.
//!
//! ```sh
//! cargo bench --bench actions_login                  # ~1 min
//! BENCH_ITERS=2000 cargo bench --bench actions_login
//! GATEHOUSE_BIN=/path/to/another/gatehouse cargo bench --bench actions_login   # A/B
//! ```
//!
//! Rows (all through `GET /authorize` answered from an SSO session, i.e. a silent login: the
//! post-login chain runs, no argon2, then 303 with a code):
//! - `0 actions` / `1 action` / `10 actions`: p50 and p99 of one silent login, one at a
//!   time, on a node without Actions and on nodes with 1 and 10 copies of
//!   `fixtures/actions/beta-tester.js`; the per-action overhead is the difference of the
//!   p50s divided by the number of actions (the chain goes to an action thread in one
//!   hand-off, so the 1-action row carries the whole hand-off on one action).
//! - `control, idle` / `control, 8 slow`: a silent login of client `web` on a node whose
//!   action, for client `slow` only, awaits `fetch` on a local server that answers after 2 s;
//!   alone, then while 8 tasks loop silent logins of client `slow`.
//!
//! Numbers, not assertions.

use std::io::{Read, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use sha2::Digest as _;

/// The node's binary: this build's, or `GATEHOUSE_BIN` (to compare two builds on one client).
fn bin() -> String {
    std::env::var("GATEHOUSE_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_gatehouse").to_owned())
}
const PASSWORD: &str = "correct horse battery staple";
const BETA: &str = include_str!("../fixtures/actions/beta-tester.js");

struct Node {
    child: Child,
    base: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

fn hash_password() -> String {
    let mut child =
        Command::new(bin()).arg("hash-password").stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().expect("spawn");
    child.stdin.take().expect("stdin").write_all(PASSWORD.as_bytes()).expect("write");
    let out = child.wait_with_output().expect("hash-password");
    String::from_utf8(out.stdout).expect("utf-8").trim().to_owned()
}

fn start(dir: &std::path::Path, name: &str, actions: &str, hash: &str) -> Node {
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let config = format!(
        r#"issuer = "{base}"
[login]
max_failed_attempts = 100
[[clients]]
client_id = "web"
redirect_uris = ["http://app.bench/cb"]
connections = ["users"]
[[clients]]
client_id = "slow"
redirect_uris = ["http://slow.bench/cb"]
connections = ["users"]
[[connections]]
id = "users"
type = "static"
[[connections.options.users]]
username = "ada@bench.test"
id = "ada"
email = "ada@bench.test"
password_hash = "{hash}"
{actions}"#
    );
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, config).expect("config");
    let child = Command::new(bin())
        .args(["serve", "--config", path.to_str().expect("path"), "--listen", &format!("127.0.0.1:{port}")])
        .env("GATEHOUSE_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("gatehouse serve");
    let node = Node { child, base };
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{name}: the node did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    node
}

fn browser() -> reqwest::Client {
    // One TLS backend for reqwest (only plain HTTP is used here, but the client wants one).
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn authorize_url(node: &Node, client: &str) -> String {
    let verifier = "v".repeat(43);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    let redirect = if client == "web" { "http://app.bench/cb" } else { "http://slow.bench/cb" };
    let mut url = url::Url::parse(&format!("{}/authorize", node.base)).expect("url");
    url.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect),
        ("scope", "openid"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    url.into()
}

fn location(r: &reqwest::Response) -> String {
    r.headers().get("location").and_then(|l| l.to_str().ok()).unwrap_or_default().to_owned()
}

/// A browser with an SSO session on `node`.
async fn signed_in(node: &Node) -> reqwest::Client {
    let b = browser();
    let hosted = location(&b.get(authorize_url(node, "web")).send().await.expect("authorize"));
    let page = b.get(format!("{}{hosted}", node.base)).send().await.expect("page").text().await.expect("page");
    let csrf = page.split("name=\"csrf\" value=\"").nth(1).and_then(|s| s.split('"').next()).expect("csrf").to_owned();
    let r = b
        .post(format!("{}{hosted}/credentials", node.base))
        .form(&[("csrf", csrf.as_str()), ("username", "ada@bench.test"), ("password", PASSWORD)])
        .send()
        .await
        .expect("credentials");
    assert!(location(&r).contains("code="), "login failed: {}", location(&r));
    b
}

/// One silent login; its latency in microseconds.
async fn silent(node: &Node, b: &reqwest::Client, client: &str) -> u64 {
    let started = Instant::now();
    let r = b.get(authorize_url(node, client)).send().await.expect("authorize");
    assert!(location(&r).contains("code="), "silent login failed: {}", location(&r));
    started.elapsed().as_micros() as u64
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p / 100.0).round() as usize] as f64 / 1000.0
}

async fn series(node: &Node, b: &reqwest::Client, client: &str, iters: usize) -> Vec<u64> {
    for _ in 0..iters.min(100) {
        silent(node, b, client).await;
    }
    let mut out = Vec::with_capacity(iters);
    for _ in 0..iters {
        out.push(silent(node, b, client).await);
    }
    out.sort_unstable();
    out
}

fn row(name: &str, s: &[u64]) -> f64 {
    println!("| {name} | {} | {:.3} | {:.3} |", s.len(), pct(s, 50.0), pct(s, 99.0));
    pct(s, 50.0)
}

/// A server that answers every request after 2 s, counting the requests it took.
fn slow_server() -> (u16, Arc<AtomicU64>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let seen = Arc::new(AtomicU64::new(0));
    let counter = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                std::thread::sleep(Duration::from_secs(2));
                let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}");
            });
        }
    });
    (port, seen)
}

fn main() {
    let iters: usize = std::env::var("BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let dir = std::env::temp_dir().join(format!("gatehouse-bench-actions-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let hash = hash_password();
    let beta = dir.join("beta.js");
    std::fs::write(&beta, BETA).expect("beta");
    let copies = |n: usize| -> String {
        (0..n)
            .map(|i| format!("[[actions.post_login]]\nname = \"beta-{i}\"\nfile = \"{}\"\n", beta.display()))
            .collect()
    };
    let (port, slow_requests) = slow_server();
    let slow = dir.join("slow.js");
    std::fs::write(
        &slow,
        format!(
            "exports.onExecutePostLogin = async (event, api) => {{\n  if (event.client.client_id !== 'slow') return;\n  try {{ await fetch('http://127.0.0.1:{port}/slow'); }} catch (e) {{ console.log('slow host: ' + e.message); }}\n}};\n"
        ),
    )
    .expect("slow");
    let slow_actions = format!(
        "[[actions.post_login]]\nname = \"slow\"\nfile = \"{}\"\nallow_hosts = [\"127.0.0.1:{port}\"]\n",
        slow.display()
    );
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async {
        println!("| row | n | p50 ms | p99 ms |\n|---|---|---|---|");
        let none = start(&dir, "none", "", &hash);
        let b = signed_in(&none).await;
        let base = row("silent login, 0 actions", &series(&none, &b, "web", iters).await);
        drop(none);
        let node = start(&dir, "one", &copies(1), &hash);
        let b = signed_in(&node).await;
        let one = row("silent login, 1 action", &series(&node, &b, "web", iters).await);
        drop(node);
        let node = start(&dir, "ten", &copies(10), &hash);
        let b = signed_in(&node).await;
        let with = row("silent login, 10 actions", &series(&node, &b, "web", iters).await);
        drop(node);
        println!("\nper-action overhead, p50: {:.3} ms (10 actions); one action alone: {:.3} ms\n", (with - base) / 10.0, one - base);

        let node = Arc::new(start(&dir, "slow", &slow_actions, &hash));
        let b = signed_in(&node).await;
        let idle = row("control, idle", &series(&node, &b, "web", iters / 2).await);
        let stop = Arc::new(AtomicBool::new(false));
        let slow_done = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::new();
        for _ in 0..8 {
            let (node, stop, done) = (node.clone(), stop.clone(), slow_done.clone());
            tasks.push(tokio::spawn(async move {
                let b = signed_in(&node).await;
                while !stop.load(Ordering::SeqCst) {
                    silent(&node, &b, "slow").await;
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }));
        }
        // Every slow task is inside its wait before the control is measured.
        while slow_requests.load(Ordering::SeqCst) < 8 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let loaded = row("control, 8 slow logins in flight", &series(&node, &b, "web", iters / 2).await);
        stop.store(true, Ordering::SeqCst);
        for t in tasks {
            let _ = t.await;
        }
        println!(
            "\ncontrol p50 under 8 slow logins: {:+.3} ms against idle ({} slow logins completed, {} slow requests taken)",
            loaded - idle,
            slow_done.load(Ordering::SeqCst),
            slow_requests.load(Ordering::SeqCst)
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}
