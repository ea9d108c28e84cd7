//! What Actions put in the log, read from a real node's stderr at trace level: console lines
//! with the action's name and the correlation id, every line capped, secrets redacted in
//! their usual encodings, no heap address.

use std::path::Path;

use base64::Engine as _;

use crate::actions::{script, with_actions};
use crate::harness::*;

/// A node running `actions` (name, file), logging at trace level to a file.
struct LoggingNode {
    node: Node,
    issuer: String,
    log: std::path::PathBuf,
}

impl LoggingNode {
    fn start(dir: &TempDir, actions: &[(&str, &Path)]) -> Self {
        let config = dir.0.join("gatehouse.toml");
        let node = spawn_node(&dir.0, "node", |port| {
            let issuer = format!("http://127.0.0.1:{port}");
            std::fs::write(&config, with_actions(actions, &[]).replace("{issuer}", &issuer)).unwrap();
            (serve_args(&["--config", config.to_str().unwrap()], port), envs(&[("GATEHOUSE_LOG", "trace")]))
        });
        let (issuer, log) = (node.base.clone(), node.log.clone());
        Self { node, issuer, log }
    }

    /// A password login of Ada through `web`: the credentials response as it is.
    async fn login(&self) -> reqwest::Response {
        let b = browser();
        let (_, challenge) = pkce();
        let mut url = url::Url::parse(&format!("{}/authorize", self.issuer)).unwrap();
        url.query_pairs_mut().extend_pairs([
            ("response_type", "code"),
            ("client_id", "web"),
            ("redirect_uri", WEB_REDIRECT),
            ("scope", "openid"),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ]);
        let hosted = location(&b.get(url.as_str()).send().await.unwrap());
        let page = b.get(format!("{}{hosted}", self.issuer)).send().await.unwrap().text().await.unwrap();
        b.post(format!("{}{hosted}/credentials", self.issuer))
            .form(&[("csrf", hidden(&page, "csrf").as_str()), ("username", "ada@example.com"), ("password", PASSWORD)])
            .send()
            .await
            .unwrap()
    }

    /// Stop the node and return everything it logged.
    fn logs(mut self) -> String {
        self.node.stop();
        std::fs::read_to_string(&self.log).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_an_action_throws_never_reaches_the_log() {
    let dir = TempDir::new();
    let leak = script(
        &dir,
        "leak.js",
        "exports.onExecutePostLogin = async (event) => { throw new Error('the key is ' + event.secrets.API_KEY); };",
    );
    let node = LoggingNode::start(&dir, &[("leak", &leak)]);
    assert_eq!(node.login().await.status(), 500);
    let logs = node.logs();
    assert!(logs.contains("action failed") && logs.contains("[redacted]"), "the failure is logged:\n{logs}");
    assert!(!logs.contains("action-secret-value-42"), "the secret is in the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_lines_are_structured_capped_and_redacted() {
    let dir = TempDir::new();
    // The secret in its usual encodings and a 1 MiB line.
    let leak = script(
        &dir,
        "leak.js",
        r#"const b64 = (s) => {
             const a = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
             let out = "";
             for (let i = 0; i < s.length; i += 3) {
               const n = (s.charCodeAt(i) << 16) | ((s.charCodeAt(i + 1) || 0) << 8) | (s.charCodeAt(i + 2) || 0);
               out += a[(n >> 18) & 63] + a[(n >> 12) & 63] + (i + 1 < s.length ? a[(n >> 6) & 63] : "=") + (i + 2 < s.length ? a[n & 63] : "=");
             }
             return out;
           };
           const hex = (s) => [...s].map((c) => c.charCodeAt(0).toString(16).padStart(2, "0")).join("");
           exports.onExecutePostLogin = async (event, api) => {
             const k = event.secrets.API_KEY;
             console.log("login of", event.user.email);
             console.info("basic " + b64("user:" + k));
             console.warn("hex " + hex(k), "url " + encodeURIComponent(k + " &"));
             console.error("x".repeat(1 << 20));
           };"#,
    );
    let node = LoggingNode::start(&dir, &[("leak", &leak)]);
    let ok = node.login().await;
    assert_eq!(ok.status(), 303, "an action that logs does not fail the login");
    assert!(param(&location(&ok), "code").is_some());
    let logs = node.logs();
    let line = logs.lines().find(|l| l.contains("login of ada@example.com")).expect("console lines reach the log");
    assert!(line.contains("leak") && line.contains("correlation"), "with the action and the correlation id: {line}");
    for l in logs.lines() {
        assert!(l.len() < 6 * 1024, "a log line of {} bytes", l.len());
    }
    let secret = "action-secret-value-42";
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("user:{secret}"));
    let hex: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
    for form in [secret.to_owned(), b64[8..].to_owned(), hex] {
        assert!(!logs.contains(&form), "the secret is in the log as {form}");
    }
    assert!(logs.matches("[redacted]").count() >= 3, "each encoded form was redacted");
}
