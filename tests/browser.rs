//! A real browser through the demo relying party: headless Chromium, driven by chromedriver
//! over the W3C WebDriver protocol, signs Ada in at `/demo` (the page's own JavaScript does
//! the PKCE code flow), shows her tokens and userinfo, and signs out again.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The key under which W3C WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const WAIT: Duration = Duration::from_secs(10);
const SCREENSHOT: &str = "/tmp/gatehouse-demo-signed-in.png";

/// A WebDriver error: the protocol's error code and message.
#[derive(Debug)]
struct WdError {
    error: String,
    message: String,
}

impl std::fmt::Display for WdError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error, self.message)
    }
}

/// chromedriver on a free port with one headless Chromium session in a fresh profile. On
/// drop: the session is deleted (Chromium quits), chromedriver is killed, the profile removed.
pub struct WebDriver {
    http: reqwest::Client,
    /// `http://127.0.0.1:<port>`
    driver: String,
    session: String,
    child: Child,
    profile: PathBuf,
}

/// The port of chromedriver's "ChromeDriver was started successfully on port N." line, read
/// within `WAIT`; stdout is drained afterwards so chromedriver never blocks on it.
fn started_on_port(out: std::process::ChildStdout) -> Option<u16> {
    use std::io::BufRead;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            if let Some(rest) = line.split("started successfully on port ").nth(1) {
                let _ = tx.send(rest.trim_end_matches('.').trim().parse::<u16>().ok());
            }
        }
    });
    rx.recv_timeout(WAIT).ok().flatten()
}

impl WebDriver {
    pub async fn start() -> Self {
        for (path, package) in [(CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing (Debian package {package}): run ./scripts/setup to install the browser test tools"
            );
        }
        // Port 0: chromedriver binds a port of its own and says which, so no other process
        // can take it between our choice and its bind.
        let mut child = Command::new(CHROMEDRIVER)
            .arg("--port=0")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER} ({e}): run ./scripts/setup"));
        let port = started_on_port(child.stdout.take().unwrap()).unwrap_or_else(|| {
            let _ = child.kill();
            let _ = child.wait();
            panic!("chromedriver did not say which port it listens on within {WAIT:?}: run ./scripts/setup")
        });
        let profile = std::env::temp_dir().join(format!("gatehouse-browser-{}-{port}", std::process::id()));
        std::fs::create_dir_all(&profile).unwrap();
        let http = crate::harness::http_builder().timeout(Duration::from_secs(60)).build().unwrap();
        // The guard exists from here on, so a failure below still kills chromedriver.
        let mut wd = Self { http, driver: format!("http://127.0.0.1:{port}"), session: String::new(), child, profile };

        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = wd.child.try_wait().unwrap() {
                panic!("chromedriver exited at start ({status}): run ./scripts/setup");
            }
            let ready = match wd.http.get(format!("{}/status", wd.driver)).send().await {
                Ok(r) => r.json::<Value>().await.map(|v| v["value"]["ready"] == true).unwrap_or(false),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(Instant::now() < deadline, "chromedriver on port {port} not ready after {WAIT:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": [
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-quic",
                    "--no-first-run",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    format!("--user-data-dir={}", wd.profile.display()),
                ],
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let created = wd
            .request(reqwest::Method::POST, format!("{}/session", wd.driver), Some(caps))
            .await
            .unwrap_or_else(|e| panic!("chromedriver could not start {CHROMIUM}: {e}"));
        wd.session = created["sessionId"].as_str().expect("a session id").to_owned();
        // Tall enough that the signed-in page fits one screenshot.
        wd.call(reqwest::Method::POST, "/window/rect", json!({"width": 1280, "height": 2000})).await;
        wd
    }

    async fn request(&self, method: reqwest::Method, url: String, body: Option<Value>) -> Result<Value, WdError> {
        let mut req = self.http.request(method.clone(), &url);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp =
            req.send().await.map_err(|e| WdError { error: "http".into(), message: format!("{method} {url}: {e}") })?;
        let ok = resp.status().is_success();
        let v: Value =
            resp.json().await.map_err(|e| WdError { error: "json".into(), message: format!("{method} {url}: {e}") })?;
        let value = v.get("value").cloned().unwrap_or(Value::Null);
        if ok {
            Ok(value)
        } else {
            Err(WdError {
                error: value["error"].as_str().unwrap_or("unknown error").to_owned(),
                message: value["message"].as_str().unwrap_or_default().to_owned(),
            })
        }
    }

    /// A command on this session; `path` starts with `/` and is relative to the session.
    async fn try_call(&self, method: reqwest::Method, path: &str, body: Value) -> Result<Value, WdError> {
        let body = (method != reqwest::Method::GET && method != reqwest::Method::DELETE).then_some(body);
        self.request(method, format!("{}/session/{}{path}", self.driver, self.session), body).await
    }

    pub(crate) async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        self.try_call(method.clone(), path, body).await.unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}"))
    }

    async fn get(&self, path: &str) -> Value {
        self.call(reqwest::Method::GET, path, Value::Null).await
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        self.call(reqwest::Method::POST, path, body).await
    }

    pub async fn goto(&self, url: &str) {
        self.post("/url", json!({ "url": url })).await;
    }

    pub async fn current_url(&self) -> String {
        self.get("/url").await.as_str().unwrap().to_owned()
    }

    async fn try_find(&self, css: &str) -> Result<String, WdError> {
        let v =
            self.try_call(reqwest::Method::POST, "/element", json!({"using": "css selector", "value": css})).await?;
        Ok(v[ELEMENT].as_str().expect("an element reference").to_owned())
    }

    /// The first element matching `css`, which must be there now.
    pub async fn find(&self, css: &str) -> String {
        match self.try_find(css).await {
            Ok(id) => id,
            Err(e) => panic!("no {css} ({e})\n{}", self.diagnostics().await),
        }
    }

    pub async fn click(&self, element: &str) {
        self.post(&format!("/element/{element}/click"), json!({})).await;
    }

    pub async fn send_keys(&self, element: &str, text: &str) {
        self.post(&format!("/element/{element}/value"), json!({ "text": text })).await;
    }

    pub async fn attribute(&self, element: &str, name: &str) -> Option<String> {
        self.get(&format!("/element/{element}/attribute/{name}")).await.as_str().map(str::to_owned)
    }

    pub async fn displayed(&self, element: &str) -> bool {
        self.get(&format!("/element/{element}/displayed")).await == true
    }

    /// The rendered text of the first element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        let element = self.find(css).await;
        self.get(&format!("/element/{element}/text")).await.as_str().unwrap().to_owned()
    }

    /// Wait (polling every 100 ms, at most `timeout`) until an element matching `css` is
    /// present and displayed; panics with the URL, console and page source otherwise.
    pub async fn wait_for_within(&self, css: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(element) = self.try_find(css).await {
                // The page may navigate between the two calls: a stale element just retries.
                let path = format!("/element/{element}/displayed");
                if self.try_call(reqwest::Method::GET, &path, Value::Null).await.is_ok_and(|v| v == true) {
                    return element;
                }
            }
            if Instant::now() >= deadline {
                panic!("{css} not shown within {timeout:?}\n{}", self.diagnostics().await);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn wait_for(&self, css: &str) -> String {
        self.wait_for_within(css, WAIT).await
    }

    /// The browser console since the last call, as `[LEVEL] message` lines (chromedriver's
    /// log extension, enabled by `goog:loggingPrefs`).
    pub async fn console(&self) -> Vec<String> {
        self.try_console().await.unwrap_or_else(|e| panic!("no browser console log: {e}"))
    }

    async fn try_console(&self) -> Result<Vec<String>, WdError> {
        let entries = self.try_call(reqwest::Method::POST, "/se/log", json!({"type": "browser"})).await?;
        let entries =
            entries.as_array().ok_or_else(|| WdError { error: "log".into(), message: entries.to_string() })?;
        Ok(entries
            .iter()
            .map(|e| format!("[{}] {}", e["level"].as_str().unwrap_or("?"), e["message"].as_str().unwrap_or("")))
            .collect())
    }

    /// Where the browser is and what it shows, for failure messages; never panics itself.
    async fn diagnostics(&self) -> String {
        let url = self.try_call(reqwest::Method::GET, "/url", Value::Null).await.map(|v| v.to_string());
        let console = self.try_console().await.map(|c| c.join("\n"));
        let source = self.try_call(reqwest::Method::GET, "/source", Value::Null).await;
        let source = source.map(|v| v.as_str().unwrap_or_default().to_owned());
        let show = |r: Result<String, WdError>| r.unwrap_or_else(|e| format!("({e})"));
        format!("url: {}\nconsole:\n{}\npage:\n{}", show(url), show(console), show(source))
    }

    /// The browser's cookies for the current page, HttpOnly ones included, as a `Cookie` header.
    pub async fn cookie_header(&self) -> String {
        let cookies = self.get("/cookie").await;
        let pairs: Vec<String> = cookies
            .as_array()
            .unwrap()
            .iter()
            .map(|c| format!("{}={}", c["name"].as_str().unwrap(), c["value"].as_str().unwrap()))
            .collect();
        pairs.join("; ")
    }

    /// A PNG screenshot of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &str) {
        use base64::Engine as _;
        let png = base64::engine::general_purpose::STANDARD.decode(self.get("/screenshot").await.as_str().unwrap());
        let png = png.expect("a base64 screenshot");
        assert!(png.starts_with(b"\x89PNG"), "a PNG screenshot");
        std::fs::write(path, png).unwrap_or_else(|e| panic!("writing {path}: {e}"));
    }
}

impl Drop for WebDriver {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            // Deleting the session makes chromedriver quit Chromium. Drop may run inside the
            // test's runtime, so the request goes out on a throwaway thread and runtime.
            let url = format!("{}/session/{}", self.driver, self.session);
            let _ = std::thread::spawn(move || {
                tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
                    let http = crate::harness::http_builder().timeout(Duration::from_secs(20)).build().unwrap();
                    let _ = http.delete(url).send().await;
                })
            })
            .join();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// What `/authorize?prompt=none` for the demo client answers to these cookies: the redirect.
pub(crate) async fn silent_authorize(app: &TestApp, cookies: &str) -> String {
    let (_, challenge) = pkce();
    let r = browser()
        .get(authorize_url(app, "gatehouse-demo", &app.url("/demo"), &challenge, &[("prompt", "none")]))
        .header(reqwest::header::COOKIE, cookies)
        .send()
        .await
        .unwrap();
    location(&r)
}

/// Nothing went wrong in the page since the last look: no script error, no CSP violation, no
/// failed request. Chromium's own `/favicon.ico` probe (404 here) is the one exception.
async fn assert_quiet_console(wd: &WebDriver) {
    let console = wd.console().await;
    let severe: Vec<&String> =
        console.iter().filter(|m| m.starts_with("[SEVERE]") && !m.contains("/favicon.ico ")).collect();
    assert!(severe.is_empty(), "errors in the browser console: {severe:#?}");
}

fn json_text(what: &str, text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {text}"))
}

#[tokio::test]
async fn the_demo_page_signs_ada_in_and_out_in_a_real_browser() {
    let app = TestApp::start().await;
    let demo = app.url("/demo");
    let wd = WebDriver::start().await;

    // The demo page, signed out; its Sign in button starts the flow in JavaScript.
    wd.goto(&demo).await;
    let sign_in = wd.wait_for("#sign-in").await;
    wd.click(&sign_in).await;

    // Gatehouse's hosted credentials page.
    let username = wd.wait_for("#username").await;
    let hosted = wd.current_url().await;
    assert!(hosted.starts_with(&app.url("/login/")), "the flow reached the hosted page: {hosted}");
    wd.send_keys(&username, "ada@example.com").await;
    wd.send_keys(&wd.find("#password").await, PASSWORD).await;
    wd.click(&wd.find("#submit").await).await;

    // Back on /demo with a code, which the page redeems (PKCE) and shows.
    let shown = wd.wait_for("#signed-in:not([hidden]), #error:not([hidden])").await;
    if wd.attribute(&shown, "id").await.as_deref() == Some("error") {
        panic!("the demo page reports an error: {}\n{}", wd.text("#error").await, wd.diagnostics().await);
    }
    assert_eq!(wd.current_url().await, demo, "the code and state are wiped from the address bar");
    assert!(!wd.displayed(&wd.find("#signed-out").await).await, "the signed-out block is hidden");
    assert_eq!(wd.text("#who").await, "ada@example.com");

    let id = json_text("the decoded ID token", &wd.text("#id-token").await);
    assert_eq!(id["sub"], "auth0|ada");
    assert_eq!(id["iss"], app.issuer.as_str());
    assert!(id["aud"] == "gatehouse-demo" || id["aud"] == json!(["gatehouse-demo"]), "aud: {}", id["aud"]);
    assert_eq!(id["azp"], "gatehouse-demo");
    assert_eq!(id["email"], "ada@example.com");
    assert_eq!(id["name"], "Ada Lovelace");
    assert_eq!(id["amr"], json!(["pwd"]));
    for claim in ["nonce", "exp", "iat", "auth_time", "sid", "at_hash"] {
        assert!(id.get(claim).is_some(), "{claim} in the ID token: {id}");
    }

    let access = json_text("the decoded access token", &wd.text("#access-token").await);
    assert_eq!(access["sub"], "auth0|ada");
    assert_eq!(access["client_id"], "gatehouse-demo");
    assert_eq!(access["scope"], "openid profile email offline_access");
    assert_eq!(access["aud"], app.url("/userinfo"));

    let info = json_text("the userinfo", &wd.text("#userinfo").await);
    assert_eq!(info["sub"], "auth0|ada");
    assert_eq!(info["email"], "ada@example.com");
    assert_eq!(info["given_name"], "Ada");
    assert_eq!(info["family_name"], "Lovelace");

    assert_quiet_console(&wd).await;
    wd.screenshot(SCREENSHOT).await;
    println!("browser: signed-in demo page screenshot at {SCREENSHOT}");

    // The browser holds a live Gatehouse session: prompt=none would answer with a code.
    let cookies = wd.cookie_header().await;
    let silent = silent_authorize(&app, &cookies).await;
    assert!(silent.starts_with(&demo) && param(&silent, "code").is_some(), "silent SSO before sign-out: {silent}");

    // Sign out: /logout with the ID token as hint, back to /demo signed out.
    wd.click(&wd.find("#sign-out").await).await;
    wd.wait_for("#sign-in").await;
    assert_eq!(wd.current_url().await, demo, "the registered post-logout redirect");
    assert!(!wd.displayed(&wd.find("#signed-in").await).await, "the signed-in block is hidden");
    assert!(!wd.displayed(&wd.find("#error").await).await, "no error after sign-out");
    assert!(!wd.cookie_header().await.contains("gh_session="), "the session cookie is removed");

    // The session is over: in this browser, prompt=none now comes back as login_required…
    let (_, challenge) = pkce();
    wd.goto(&authorize_url(&app, "gatehouse-demo", &demo, &challenge, &[("prompt", "none")])).await;
    wd.wait_for("#error").await;
    let error = wd.text("#error").await;
    assert!(error.starts_with("login_required"), "silent login after sign-out: {error}");
    // …and the session cookie from before sign-out is dead on the server too.
    let replay = silent_authorize(&app, &cookies).await;
    assert_eq!(param(&replay, "error").as_deref(), Some("login_required"), "the old session cookie: {replay}");
    assert_quiet_console(&wd).await;
}
