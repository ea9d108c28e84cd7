//! Redis servers the tests own: a single server, a 3-master Cluster, and a Sentinel setup,
//! each on free loopback ports with its own directory, killed on drop. Never the system Redis.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn redis_server() -> &'static str {
    let ok = Command::new("redis-server").arg("--version").output().is_ok_and(|o| o.status.success());
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

/// One `redis-server`. `restart` keeps port and directory, so an append-only file survives.
pub struct TestRedis {
    pub port: u16,
    /// The TLS port, when started with `--tls-port 0` (replaced by a free port).
    pub tls_port: Option<u16>,
    pub dir: PathBuf,
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
        let dir = std::env::temp_dir().join(format!("gatehouse-redis-{}", gatehouse::types::random_token(9)));
        std::fs::create_dir_all(&dir).unwrap();
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut tls_port = None;
        if let Some(i) = args.iter().position(|a| a == "--tls-port") {
            let p = free_port();
            args[i + 1] = p.to_string();
            tls_port = Some(p);
        }
        let mut r = Self { port: free_port(), tls_port, dir, args, child: None };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let mut cmd = Command::new(redis_server());
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string(), "--save", ""])
            .arg("--dir")
            .arg(&self.dir)
            .args(["--maxmemory-policy", "noeviction"])
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        self.child = Some(cmd.spawn().unwrap());
        // With the default user switched off, a PING is answered NOAUTH: alive all the same.
        let ready = if self.args.iter().any(|a| a == "--user") { "NOAUTH" } else { "PONG" };
        wait_for(self.port, "PING", ready, "redis-server");
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
        self.spawn();
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
        let out = Command::new("redis-cli")
            .args(["--cluster", "create"])
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .output()
            .expect("redis-cli is not installed: run ./scripts/setup (Debian package redis-tools)");
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
        let port = free_port();
        let child = Command::new(redis_server())
            .arg(&conf)
            .args(["--sentinel", "--bind", "127.0.0.1", "--port", &port.to_string()])
            .arg("--dir")
            .arg(&dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(
            port,
            &format!("SENTINEL get-master-addr-by-name {MASTER_NAME}"),
            &master.port.to_string(),
            "sentinel",
        );
        let sentinel = TestRedis { port, tls_port: None, dir, args: Vec::new(), child: Some(child) };
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
            let out = Command::new("openssl").args(args).current_dir(&dir).output().expect("openssl is needed");
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
