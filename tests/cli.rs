//! The `gatehouse` binary: the embedded default, `check-config`, `keys rotate`.

use std::path::Path;
use std::process::Command;

use crate::harness::{BIN, Node, PEER_DEADLINE, TempDir, envs, output_within, serve_args, spawn_node};

/// Start the embedded default in `dir` and wait until it answers.
fn serve_embedded(dir: &Path) -> Node {
    spawn_node(dir, "embedded", |port| (serve_args(&[], port), envs(&[("GATEHOUSE_LOG", "warn")])))
}

async fn kids(base: &str) -> Vec<String> {
    let jwks: serde_json::Value =
        crate::harness::get(format!("{base}/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
    jwks["keys"].as_array().unwrap().iter().map(|k| k["kid"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn the_embedded_default_serves_the_demo_and_keeps_its_key() {
    let dir = TempDir::new();
    let first = serve_embedded(&dir.0);
    let printed = first.printed("Demo user:");
    assert!(printed.contains(&format!("Issuer:    {}", first.base)), "{printed}");
    assert!(printed.contains("demo@gatehouse.test / gatehouse-demo"), "{printed}");
    let demo = crate::harness::get(format!("{}/demo", first.base)).await.unwrap();
    assert_eq!(demo.status(), 200);
    let page = demo.text().await.unwrap();
    assert!(page.contains("demo@gatehouse.test"), "the embedded default shows its demo user");
    let kid = kids(&first.base).await;
    assert_eq!(kid.len(), 1);
    let alg: serde_json::Value =
        crate::harness::get(format!("{}/.well-known/jwks.json", first.base)).await.unwrap().json().await.unwrap();
    assert_eq!(alg["keys"][0]["alg"], "RS256", "RS256 by default");
    drop(first);

    let second = serve_embedded(&dir.0);
    assert_eq!(kids(&second.base).await, kid, "a restart keeps the kid");
    drop(second);

    let out = output_within(Command::new(BIN).args(["keys", "rotate"]).current_dir(&dir.0), PEER_DEADLINE);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let third = serve_embedded(&dir.0);
    let after = kids(&third.base).await;
    assert_eq!(after.len(), 2, "the new key and the previous one");
    assert_ne!(after[0], kid[0], "the new key signs");
    assert_eq!(after[1], kid[0], "the old key still verifies");
}

fn check(file: &Path, envs: &[(&str, &str)]) -> (bool, String, String) {
    let out = output_within(Command::new(BIN).arg("check-config").arg(file).envs(envs.iter().copied()), PEER_DEADLINE);
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
[[connections]]
id = "corp"
type = "oidc"
[connections.options]
issuer = "https://idp.example"
client_id = "gatehouse"
colour = "blue"
"#,
    )
    .unwrap();
    let (ok, _, err) = check(&bad, &[]);
    assert!(!ok, "exit code 1");
    // Settings errors and a connector's own option errors, in one run.
    for path in ["issuer:", "clients[0].redirect_uris[0]:", "clients[0].connections[0]:", "connections[1].options:"] {
        assert!(err.contains(path), "{path} in:\n{err}");
    }
    assert!(err.contains("unknown field `colour`"), "the connector's own message:\n{err}");

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
    let v = output_within(Command::new(BIN).arg("--version"), PEER_DEADLINE);
    assert!(String::from_utf8_lossy(&v.stdout).contains(env!("CARGO_PKG_VERSION")));
    let h = output_within(Command::new(BIN).arg("--help"), PEER_DEADLINE);
    let help = String::from_utf8_lossy(&h.stdout);
    for cmd in ["serve", "check-config", "keys", "hash-password"] {
        assert!(help.contains(cmd), "{help}");
    }
}

#[tokio::test]
async fn logs_carry_no_secrets_even_at_trace_level() {
    use crate::harness::*;
    let dir = TempDir::new();
    let config = dir.0.join("gatehouse.toml");
    let mut served = spawn_node(&dir.0, "node", |port| {
        let issuer = format!("http://127.0.0.1:{port}");
        std::fs::write(&config, crate::harness::config("ES256").replace("{issuer}", &issuer)).unwrap();
        (serve_args(&["--config", config.to_str().unwrap()], port), envs(&[("GATEHOUSE_LOG", "trace")]))
    });
    let issuer = served.base.clone();
    let log = served.log.clone();

    let b = browser();
    let (verifier, challenge) = pkce();
    let mut url = url::Url::parse(&format!("{issuer}/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", WEB_REDIRECT),
        ("scope", "openid email offline_access"),
        ("state", "s"),
        ("code_challenge", &challenge),
        ("code_challenge_method", "S256"),
    ]);
    let r = b.get(url.as_str()).send().await.unwrap();
    let hosted = location(&r);
    let page = b.get(format!("{issuer}{hosted}")).send().await.unwrap().text().await.unwrap();
    let csrf = hidden(&page, "csrf");
    let wrong = b
        .post(format!("{issuer}{hosted}/credentials"))
        .form(&[("csrf", csrf.as_str()), ("username", "ada@example.com"), ("password", "not-the-password-xyzzy")])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let done = b
        .post(format!("{issuer}{hosted}/credentials"))
        .form(&[("csrf", csrf.as_str()), ("username", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    let session_cookie = done
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|c| c.starts_with("gh_session="))
        .unwrap();
    let session_value = session_cookie.trim_start_matches("gh_session=").split(';').next().unwrap().to_owned();
    let code = param(&location(&done), "code").unwrap();
    let c = crate::harness::http();
    let t: serde_json::Value = c
        .post(format!("{issuer}/token"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", WEB_REDIRECT),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refresh = t["refresh_token"].as_str().unwrap();
    let r = c
        .post(format!("{issuer}/token"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    c.get(format!("{issuer}/userinfo")).bearer_auth(t["access_token"].as_str().unwrap()).send().await.unwrap();
    served.stop();

    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("login completed"), "the login was logged at all:\n{logs}");
    let secrets = [
        ("password", PASSWORD),
        ("wrong password", "not-the-password-xyzzy"),
        ("client secret", WEB_SECRET),
        ("code", code.as_str()),
        ("code verifier", verifier.as_str()),
        ("access token", t["access_token"].as_str().unwrap()),
        ("id token", t["id_token"].as_str().unwrap()),
        ("refresh token", refresh),
        ("refresh secret", refresh.split('.').nth(1).unwrap()),
        ("session cookie", session_value.as_str()),
        ("csrf token", csrf.as_str()),
    ];
    for (what, secret) in secrets {
        assert!(!logs.contains(secret), "the {what} appears in the log");
    }
}

/// The harness tells a node's own listener from another process's on the same port.
#[test]
fn a_listener_is_known_by_the_process_holding_it() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    assert!(crate::harness::listens_on(std::process::id(), port), "this process listens on {port}");
    assert!(!crate::harness::listens_on(1, port), "init does not");
    drop(listener);
    assert!(!crate::harness::listens_on(std::process::id(), port), "closed");
}

/// The embedded default on the ports `ports` yields, in `dir`.
fn embedded_trying(dir: &Path, ports: impl Iterator<Item = u16>) -> Node {
    crate::harness::spawn_node_trying(ports, dir, "embedded", |port| {
        (serve_args(&[], port), envs(&[("GATEHOUSE_LOG", "warn")]))
    })
}

/// A node whose port another process holds says "cannot listen on", and the harness moves on
/// to a fresh port instead of failing the test or talking to the holder.
#[test]
fn a_node_whose_port_is_held_moves_to_a_fresh_one() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let dir = TempDir::new();
    let node =
        embedded_trying(&dir.0, std::iter::once(taken).chain(std::iter::repeat_with(crate::harness::port_to_try)));
    assert_eq!(node.refused, vec![taken], "the held port was tried first and refused");
    assert_ne!(node.port, taken);
    assert!(crate::harness::listens_on(node.child.id(), node.port), "the node holds its new port");
    assert!(crate::harness::listens_on(std::process::id(), taken), "the held port is still this process's");
}

/// Five held ports in a row fail the start, naming them.
#[test]
#[should_panic(expected = "five ports in a row were taken by others")]
fn a_node_that_only_finds_held_ports_fails() {
    let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let dir = TempDir::new();
    embedded_trying(&dir.0, std::iter::repeat(taken));
}

/// A node that fails for another reason is not retried as a port clash: its stderr is shown.
#[test]
#[should_panic(expected = "exited with")]
fn a_node_that_fails_otherwise_is_not_retried() {
    let dir = TempDir::new();
    crate::harness::spawn_node(&dir.0, "broken", |port| {
        (serve_args(&["--config", "/nonexistent/gatehouse.toml"], port), Vec::new())
    });
}
