//! Redis servers the tests own: a single server, a 3-master Cluster, and a Sentinel setup,
//! each on free loopback ports with its own directory, killed on drop. Never the system Redis.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{PEER_DEADLINE, output_within, port_to_try};

fn redis_server() -> &'static str {
    // (output_within panics with the same hint when redis-server cannot start at all.)
    let ok = output_within(Command::new("redis-server").arg("--version"), PEER_DEADLINE).status.success();
    assert!(ok, "redis-server is not installed: run ./scripts/setup (Debian package redis-server)");
    "redis-server"
}

/// Send one inline command and read the reply's first line.
pub fn command(port: u16, cmd: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.write_all(format!("{cmd}\r\n").as_bytes()).ok()?;
    let mut buf = vec![0u8; 16 * 1024];
    let n = s.read(&mut buf).ok()?;
    Some(String::from_utf8_lossy(&buf[..n]).into_owned())
}

/// Poll `ready` (every 20 ms, up to 30 s) instead of sleeping a guessed time.
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn wait_for(port: u16, cmd: &str, expect: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if command(port, cmd).is_some_and(|r| r.contains(expect)) {
            return;
        }
        assert!(Instant::now() < deadline, "{what} on port {port} never answered {expect:?} to {cmd}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A port found by binding and dropping can be taken by another test before a server binds
/// it: the server then exits with "Address already in use" and the caller tries fresh ports.
struct PortTaken;

/// Start `redis-server ARGS --port <port> --logfile <dir>/<name>.log` and wait for `ready` in
/// its log, so the port a test talks to is its own server's (a PING alone could be answered
/// by another test's server that won the port).
fn spawn_logged(args: &[String], dir: &Path, name: &str, port: u16, ready: &str) -> Result<Child, PortTaken> {
    let log = dir.join(format!("{name}.log"));
    let _ = std::fs::remove_file(&log);
    let mut child = Command::new(redis_server())
        .args(args)
        .args(["--port", &port.to_string()])
        .arg("--logfile")
        .arg(&log)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains(ready) {
            return Ok(child);
        }
        if let Some(status) = child.try_wait().unwrap() {
            if text.contains("Address already in use") {
                return Err(PortTaken);
            }
            panic!("{name} exited with {status} before it was ready:\n{text}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("{name} on port {port} not ready within 30 s:\n{text}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One `redis-server`. `restart` keeps port and directory, so an append-only file survives.
pub struct TestRedis {
    pub port: u16,
    /// The TLS port, when started with `--tls-port 0` (replaced by a free port).
    pub tls_port: Option<u16>,
    pub dir: PathBuf,
    /// The ports tried before `port`, refused because another process held them.
    pub refused: Vec<u16>,
    args: Vec<String>,
    child: Option<Child>,
}

impl TestRedis {
    pub fn start() -> Self {
        Self::start_with(&["--appendonly", "no"])
    }

    /// With the append-only file on, as production should run.
    pub fn start_durable() -> Self {
        Self::start_with(&["--appendonly", "yes", "--appendfsync", "always"])
    }

    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_trying(port_to_try(), extra)
    }

    /// `start_with`, trying `port` first (a test gives a port it holds).
    pub fn start_trying(port: u16, extra: &[&str]) -> Self {
        let dir = std::env::temp_dir().join(format!("gatehouse-redis-{}", gatehouse::types::random_token(9)));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut tls_port = None;
        if let Some(i) = args.iter().position(|a| a == "--tls-port") {
            let p = port_to_try();
            args[i + 1] = p.to_string();
            tls_port = Some(p);
        }
        let mut r = Self { port, tls_port, dir, refused: Vec::new(), args, child: None };
        r.spawn(true);
        r
    }

    /// `retry`: a first start moves to fresh ports when another test took one; a restart
    /// keeps its ports (clients know them), so a clash then fails the test.
    fn spawn(&mut self, retry: bool) {
        for _ in 0..5 {
            let mut args: Vec<String> = ["--bind", "127.0.0.1", "--save", "", "--maxmemory-policy", "noeviction"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            args.push("--dir".into());
            args.push(self.dir.display().to_string());
            args.extend(self.args.iter().cloned());
            match spawn_logged(&args, &self.dir, "redis", self.port, "Ready to accept connections") {
                Ok(child) => {
                    self.child = Some(child);
                    return;
                }
                Err(PortTaken) if retry => {
                    self.refused.push(self.port);
                    self.port = port_to_try();
                    if let Some(i) = self.args.iter().position(|a| a == "--tls-port") {
                        let p = port_to_try();
                        self.args[i + 1] = p.to_string();
                        self.tls_port = Some(p);
                    }
                }
                Err(PortTaken) => panic!("port {} was taken while redis-server restarted", self.port),
            }
        }
        panic!("redis-server: five free ports in a row were taken by others");
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kill it hard (SIGKILL): an outage, not a shutdown.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn restart(&mut self) {
        self.kill();
        self.spawn(false);
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Three masters with `--cluster-enabled yes`, joined by `redis-cli --cluster create`.
pub struct TestCluster {
    pub nodes: Vec<TestRedis>,
}

impl TestCluster {
    pub fn start() -> Self {
        let nodes: Vec<TestRedis> = (0..3)
            .map(|_| {
                TestRedis::start_with(&[
                    "--cluster-enabled",
                    "yes",
                    "--cluster-node-timeout",
                    "2000",
                    "--appendonly",
                    "no",
                ])
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = output_within(
            Command::new("redis-cli").args(["--cluster", "create"]).args(&addrs).args([
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ]),
            PEER_DEADLINE,
        );
        assert!(out.status.success(), "cluster create failed: {}", String::from_utf8_lossy(&out.stdout));
        for n in &nodes {
            wait_for(n.port, "CLUSTER INFO", "cluster_state:ok", "cluster node");
        }
        Self { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(TestRedis::url).collect()
    }
}

/// A master, one replica and one sentinel watching them as `gatehouse-master`.
pub struct TestSentinel {
    pub master: TestRedis,
    pub replica: TestRedis,
    sentinel: TestRedis,
}

pub const MASTER_NAME: &str = "gatehouse-master";

impl TestSentinel {
    pub fn start() -> Self {
        let master = TestRedis::start();
        let replica =
            TestRedis::start_with(&["--appendonly", "no", "--replicaof", "127.0.0.1", &master.port.to_string()]);
        wait_for(replica.port, "INFO replication", "master_link_status:up", "replica");
        // Sentinel needs a writable configuration file of its own.
        let dir = std::env::temp_dir().join(format!("gatehouse-sentinel-{}", gatehouse::types::random_token(9)));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("sentinel.conf");
        std::fs::write(
            &conf,
            format!(
                "sentinel monitor {MASTER_NAME} 127.0.0.1 {} 1\nsentinel down-after-milliseconds {MASTER_NAME} 1000\nsentinel failover-timeout {MASTER_NAME} 5000\n",
                master.port
            ),
        )
        .unwrap();
        let args: Vec<String> = vec![
            conf.display().to_string(),
            "--sentinel".into(),
            "--bind".into(),
            "127.0.0.1".into(),
            "--dir".into(),
            dir.display().to_string(),
        ];
        let (port, child) = (0..5)
            .find_map(|_| {
                let port = port_to_try();
                spawn_logged(&args, &dir, "sentinel", port, "+monitor master").ok().map(|c| (port, c))
            })
            .expect("sentinel: five free ports in a row were taken by others");
        wait_for(
            port,
            &format!("SENTINEL get-master-addr-by-name {MASTER_NAME}"),
            &master.port.to_string(),
            "sentinel",
        );
        let sentinel =
            TestRedis { port, tls_port: None, dir, refused: Vec::new(), args: Vec::new(), child: Some(child) };
        Self { master, replica, sentinel }
    }

    pub fn sentinel_url(&self) -> String {
        self.sentinel.url()
    }

    pub fn sentinel_port(&self) -> u16 {
        self.sentinel.port
    }
}

/// A private CA and a server certificate for 127.0.0.1, made with the openssl command.
pub struct TestTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    dir: PathBuf,
}

impl TestTls {
    pub fn generate() -> Self {
        let dir = std::env::temp_dir().join(format!("gatehouse-tls-{}", gatehouse::types::random_token(9)));
        std::fs::create_dir_all(&dir).unwrap();
        let run = |args: &[&str]| {
            let out = output_within(Command::new("openssl").args(args).current_dir(&dir), PEER_DEADLINE);
            assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        };
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "1",
            "-subj",
            "/CN=Gatehouse Test CA",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ]);
        std::fs::write(dir.join("ext"), "subjectAltName=IP:127.0.0.1\n").unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "1",
            "-extfile",
            "ext",
        ]);
        Self { ca: dir.join("ca.crt"), cert: dir.join("server.crt"), key: dir.join("server.key"), dir }
    }
}

impl Drop for TestTls {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A Redis whose port another process holds moves on to a fresh port instead of failing the
/// test or leaving the test talking to the holder.
#[test]
fn a_redis_whose_port_is_held_moves_to_a_fresh_one() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let r = TestRedis::start_trying(taken, &["--appendonly", "no"]);
    assert_eq!(r.refused, vec![taken], "the held port was tried first and refused");
    assert_ne!(r.port, taken);
    assert_eq!(command(r.port, "PING").as_deref(), Some("+PONG\r\n"));
    assert!(crate::harness::listens_on(r.child.as_ref().unwrap().id(), r.port), "the server holds its new port");
    assert!(crate::harness::listens_on(std::process::id(), taken), "the held port is still this process's");
}
