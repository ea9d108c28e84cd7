//! Test guards: a Gatehouse node on a free loopback port (killed on drop), and a browser-like
//! HTTP client that keeps cookies and does not follow redirects.

use std::net::TcpListener;
use std::sync::{Arc, LazyLock};
use std::thread::JoinHandle;

use gatehouse::clock::{ManualClock, SharedClock, SystemClock};
use gatehouse::store::Store;
use gatehouse::store::memory::{MemoryKeyStore, MemoryStore};
use gatehouse::types::Issuer;
use gatehouse::{Core, Settings};
use reqwest::header::LOCATION;
use url::Url;

/// Child processes the tests wait on: deadlines, READY lines, Node.js, ports proven owned.
mod process;
pub use process::*;

/// What the tests' own process logs, and the spellings of a secret to look for in it.
mod logs;
pub use logs::*;

pub const PASSWORD: &str = "correct horse battery staple";
pub const OTHER_PASSWORD: &str = "admin password 42";
pub const WEB_SECRET: &str = "web-client-secret-0123456789abcdefghij";
pub const M2M_SECRET: &str = "m2m-client-secret-0123456789abcdefghij";
pub const WEB_REDIRECT: &str = "http://app.test/cb";
pub const SPA_REDIRECT: &str = "http://spa.test/callback";

static HASHES: LazyLock<(String, String)> = LazyLock::new(|| {
    (
        gatehouse_connector_static::hash_password(PASSWORD).unwrap(),
        gatehouse_connector_static::hash_password(OTHER_PASSWORD).unwrap(),
    )
});

/// The configuration most tests run with. `{issuer}` is replaced by the node's URL.
pub fn config(alg: &str) -> String {
    let (ada, root) = &*HASHES;
    format!(
        r#"
issuer = "{{issuer}}"
demo = true
[keys]
algorithm = "{alg}"
[tokens]
code_ttl = 30
access_token_ttl = 300
refresh_idle_ttl = 600
refresh_absolute_ttl = 3600
[login]
max_failed_attempts = 3

[[apis]]
audience = "https://api.test"
scopes = ["read:things", "write:things"]

[[clients]]
client_id = "web"
name = "Web App"
client_secret = "{WEB_SECRET}"
redirect_uris = ["{WEB_REDIRECT}"]
post_logout_redirect_uris = ["http://app.test/bye"]
connections = ["users"]

[[clients]]
client_id = "spa"
redirect_uris = ["{SPA_REDIRECT}"]
connections = ["users", "admins"]

[[clients]]
client_id = "m2m"
client_secret = "{M2M_SECRET}"
token_endpoint_auth_method = "client_secret_post"
grant_types = ["client_credentials"]
apis = ["https://api.test"]

[[clients]]
client_id = "gatehouse-demo"
redirect_uris = ["{{issuer}}/demo"]
post_logout_redirect_uris = ["{{issuer}}/demo"]
connections = ["users"]

[[connections]]
id = "users"
type = "static"
display_name = "Company account"
[[connections.options.users]]
username = "ada@example.com"
id = "ada"
email = "ada@example.com"
name = "Ada Lovelace"
given_name = "Ada"
family_name = "Lovelace"
password_hash = "{ada}"

[[connections]]
id = "admins"
type = "static"
display_name = "Administrators"
[[connections.options.users]]
username = "root@example.com"
id = "root"
email = "root@example.com"
password_hash = "{root}"
"#
    )
}

/// An actix server on its own thread with its own actix System, stopped on drop: a Gatehouse
/// node, or a fake upstream a test plays.
pub struct ServerThread {
    handle: actix_web::dev::ServerHandle,
    thread: Option<JoinHandle<()>>,
}

/// Serve the routes `configure` mounts on `listener` (one worker).
pub fn serve_on_thread<F>(listener: TcpListener, configure: F) -> ServerThread
where
    F: Fn(&mut actix_web::web::ServiceConfig) + Clone + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::channel();
    let thread = std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let server = actix_web::HttpServer::new(move || {
                actix_web::App::new()
                    .wrap(actix_web::middleware::from_fn(gatehouse::http::observe))
                    .configure(configure.clone())
            })
            .workers(1)
            .disable_signals()
            .listen(listener)
            .unwrap()
            .run();
            tx.send(server.handle()).unwrap();
            server.await.unwrap();
        })
    });
    ServerThread { handle: rx.recv().unwrap(), thread: Some(thread) }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        let handle = self.handle.clone();
        // Stopping needs a runtime; a throwaway current-thread one will do.
        let _ = std::thread::spawn(move || {
            tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(handle.stop(false))
        })
        .join();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A Gatehouse node served by actix on its own thread; stopped on drop.
pub struct TestApp {
    pub issuer: String,
    pub core: Arc<Core>,
    pub clock: Option<Arc<ManualClock>>,
    _server: ServerThread,
}

pub struct Options {
    pub alg: &'static str,
    /// Pin "now" to a manual clock the test moves.
    pub manual_clock: bool,
    pub config: Option<String>,
    /// A listener bound in advance, when peers must know the node's URL before it starts.
    pub listener: Option<TcpListener>,
    /// Another node's store and clock (see `TestApp::shared`): two nodes behind one store.
    pub shared: Option<(Store, Arc<ManualClock>)>,
    /// Configure the issuer with a trailing slash (`http://127.0.0.1:<port>/`), as Auth0's
    /// SDKs expect it; `TestApp::issuer` stays without it, so `url()` builds paths alike.
    pub trailing_slash: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { alg: "ES256", manual_clock: false, config: None, listener: None, shared: None, trailing_slash: false }
    }
}

impl TestApp {
    pub async fn start() -> Self {
        Self::with(Options::default()).await
    }

    pub async fn with(opts: Options) -> Self {
        let listener = opts.listener.unwrap_or_else(|| TcpListener::bind("127.0.0.1:0").unwrap());
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let text = opts.config.unwrap_or_else(|| config(opts.alg)).replace("{issuer}", &issuer);
        let settings = Settings::parse(&text, &|_| None).unwrap_or_else(|e| panic!("test config: {e}"));
        let configured = if opts.trailing_slash { format!("{issuer}/") } else { issuer.clone() };
        let settings = settings.with_issuer(Issuer::parse(&configured).unwrap());
        let (clock, manual, store): (SharedClock, _, _) = match opts.shared {
            Some((store, c)) => (c.clone(), Some(c), Some(store)),
            None if opts.manual_clock => {
                let c = ManualClock::new(1_800_000_000);
                (c.clone(), Some(c), None)
            }
            None => (Arc::new(SystemClock), None, None),
        };
        let store = store.unwrap_or_else(|| {
            Store::from_backend(Arc::new(MemoryStore::new(clock.clone())), Arc::new(MemoryKeyStore::default()))
        });
        let core = Core::with_parts(settings, store, clock).await.unwrap();
        let server_core = core.clone();
        let server = serve_on_thread(listener, move |cfg| gatehouse::http::configure(server_core.clone())(cfg));
        Self { issuer, core, clock: manual, _server: server }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// What a second node behind this node's store needs (`Options::shared`); this node must
    /// have been started with `manual_clock`, so both see the same "now".
    pub fn shared(&self) -> (Store, Arc<ManualClock>) {
        (self.core.store.clone(), self.clock.clone().expect("started with manual_clock"))
    }

    pub fn advance(&self, secs: u64) {
        self.clock.as_ref().expect("started with manual_clock").advance(secs);
    }
}

/// reqwest is built without a TLS provider of its own (Gatehouse uses aws-lc-rs for TLS):
/// install that one before any client is built.
pub fn http_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
}

/// A plain HTTP client: one per test process, cloned. Building one parses the system's CA
/// roots, slow in a debug build on a loaded machine: 50 concurrent requests that each built
/// their own left the first connections idle past the server's 5 s request-head deadline
/// (a 408 before the request, which the client reads as an unexpected message). It keeps
/// no idle connection, so each request opens its own, as a fresh client's would, and none
/// outlives the runtime that opened it.
pub fn http() -> reqwest::Client {
    static CLIENT: LazyLock<reqwest::Client> =
        LazyLock::new(|| http_builder().pool_max_idle_per_host(0).build().unwrap());
    CLIENT.clone()
}

/// `GET url` with a plain client.
pub async fn get(url: impl reqwest::IntoUrl) -> reqwest::Result<reqwest::Response> {
    http().get(url).send().await
}

/// A browser: keeps cookies, never follows redirects.
pub fn browser() -> reqwest::Client {
    http_builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// A PKCE pair (verifier, S256 challenge).
pub fn pkce() -> (String, String) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let verifier = gatehouse::types::random_token(32);
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn location(r: &reqwest::Response) -> String {
    r.headers().get(LOCATION).unwrap_or_else(|| panic!("no Location on {}", r.status())).to_str().unwrap().to_owned()
}

/// The value of the hidden input `name` in an HTML page.
pub fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).unwrap_or_else(|| panic!("no input {name} in page:\n{html}")) + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

pub fn query(url: &str) -> Vec<(String, String)> {
    Url::parse(url).unwrap().query_pairs().into_owned().collect()
}

pub fn param(url: &str, name: &str) -> Option<String> {
    query(url).into_iter().find(|(k, _)| k == name).map(|(_, v)| v)
}

/// An authorization request for `client` with sensible defaults; `extra` adds or overrides.
pub fn authorize_url(app: &TestApp, client: &str, redirect: &str, challenge: &str, extra: &[(&str, &str)]) -> String {
    let mut url = Url::parse(&app.url("/authorize")).unwrap();
    let mut params: Vec<(&str, &str)> = vec![
        ("response_type", "code"),
        ("client_id", client),
        ("redirect_uri", redirect),
        ("scope", "openid profile email offline_access"),
        ("state", "st-123"),
        ("nonce", "n-456"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    for (k, v) in extra {
        params.retain(|(pk, _)| pk != k);
        if !v.is_empty() {
            params.push((k, v));
        }
    }
    url.query_pairs_mut().extend_pairs(params);
    url.to_string()
}

/// Drive a login through the hosted credentials form; returns the final redirect (with the
/// code) to the client.
pub async fn login(app: &TestApp, b: &reqwest::Client, authorize: &str, username: &str, password: &str) -> String {
    let r = b.get(authorize).send().await.unwrap();
    assert_eq!(r.status(), 303, "authorize should redirect to the hosted page");
    let hosted = location(&r);
    assert!(hosted.starts_with("/login/"), "unexpected redirect {hosted}");
    let page = b.get(app.url(&hosted)).send().await.unwrap().text().await.unwrap();
    let csrf = hidden(&page, "csrf");
    let r = b
        .post(app.url(&format!("{hosted}/credentials")))
        .form(&[("csrf", csrf.as_str()), ("username", username), ("password", password)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "credentials should complete the login: {}", r.text().await.unwrap_or_default());
    location(&r)
}

/// Start a login at `authorize` and post the hosted credentials form; the response as it is.
pub async fn submit_credentials(
    app: &TestApp,
    b: &reqwest::Client,
    authorize: &str,
    username: &str,
    password: &str,
) -> reqwest::Response {
    let hosted = location(&b.get(authorize).send().await.unwrap());
    let page = b.get(app.url(&hosted)).send().await.unwrap().text().await.unwrap();
    b.post(app.url(&format!("{hosted}/credentials")))
        .form(&[("csrf", hidden(&page, "csrf").as_str()), ("username", username), ("password", password)])
        .send()
        .await
        .unwrap()
}

/// Exchange a code at `/token` as the confidential `web` client.
pub async fn redeem(app: &TestApp, code: &str, verifier: &str) -> reqwest::Response {
    http()
        .post(app.url("/token"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", WEB_REDIRECT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
}

/// A full login of Ada through `web`; returns the token response JSON.
pub async fn tokens_for_ada(app: &TestApp) -> serde_json::Value {
    let b = browser();
    let (verifier, challenge) = pkce();
    let done =
        login(app, &b, &authorize_url(app, "web", WEB_REDIRECT, &challenge, &[]), "ada@example.com", PASSWORD).await;
    let code = param(&done, "code").expect("code in redirect");
    let r = redeem(app, &code, &verifier).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

/// Decode a JWT's payload without verifying (tests verify separately).
pub fn claims(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = jwt.split('.').nth(1).unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

pub fn header(jwt: &str) -> serde_json::Value {
    use base64::Engine as _;
    let part = jwt.split('.').next().unwrap();
    serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// The `gatehouse` binary built for these tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_gatehouse");

/// A temporary directory removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new() -> Self {
        let p = std::env::temp_dir().join(format!("gatehouse-test-{}", gatehouse::types::random_token(9)));
        std::fs::create_dir_all(&p).unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `GET /healthz` answers 200 (the listener is bound before the node is built, so an open
/// port alone does not mean ready).
pub fn healthy(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else { return false };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    if s.write_all(b"GET /healthz HTTP/1.0\r\nHost: x\r\n\r\n").is_err() {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// A `gatehouse` child process, killed on drop.
pub struct Node {
    pub child: std::process::Child,
    pub base: String,
    pub port: u16,
    /// Where its stderr goes: `<dir>/<name>.stderr`.
    pub log: std::path::PathBuf,
    /// The ports tried before this one, refused because another process held them.
    pub refused: Vec<u16>,
    /// What it has printed on stdout so far (read on a thread, so a quiet child never blocks).
    stdout: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Node {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    /// Everything printed on stdout, once a line containing `needle` has been (within
    /// `PEER_DEADLINE`): the lines are read on a thread, so this waits for them, not a time.
    pub fn printed(&self, needle: &str) -> String {
        let deadline = std::time::Instant::now() + PEER_DEADLINE;
        loop {
            let lines = self.stdout.lock().unwrap().clone();
            if lines.iter().any(|l| l.contains(needle)) {
                return lines.join("\n");
            }
            assert!(std::time::Instant::now() < deadline, "{} never printed {needle:?}: {lines:?}", self.base);
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.stop();
    }
}
