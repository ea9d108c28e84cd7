//! Ordinary Auth0 Actions, as Auth0's docs and community examples write them, kept in
//! `fixtures/actions/` and run unchanged through real logins: roles, country-based access
//! (with a trusted proxy: `tests/actions_geoip.rs`), CRM
//! enrichment with `fetch`, progressive profiling with a redirect, account linking with
//! `setPrimaryUser`, last-seen metadata, logging, verified email, a refresh-token policy, and a
//! cached API token with shared code from `require`.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gatehouse::types::UserId;

use crate::actions::{login_as, sign_hs256, verify_hs256};
use crate::harness::*;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/actions").join(name)
}

/// One `[[actions.post_login]]` entry.
fn action(file: &str, secrets: &[(&str, &str)], allow_hosts: &[&str]) -> String {
    let secrets: Vec<String> = secrets.iter().map(|(k, v)| format!("{k} = \"{v}\"")).collect();
    let hosts: Vec<String> = allow_hosts.iter().map(|h| format!("\"{h}\"")).collect();
    format!(
        "[[actions.post_login]]\nname = \"{}\"\nfile = \"{}\"\nsecrets = {{ {} }}\nallow_hosts = [{}]\n",
        file.trim_end_matches(".js"),
        fixture(file).display(),
        secrets.join(", "),
        hosts.join(", ")
    )
}

async fn app_with(actions: &[String], patch: impl Fn(String) -> String) -> TestApp {
    let mut config = patch(crate::harness::config("ES256"));
    config.push_str(&format!(
        "\n[actions]\ntime_limit_ms = 1500\n[[actions.modules]]\nname = \"claims\"\nfile = \"{}\"\n",
        fixture("claims-lib.js").display()
    ));
    for a in actions {
        config.push_str(a);
    }
    TestApp::with(Options { config: Some(config), ..Default::default() }).await
}

/// What a route of [`server`] answers.
struct Route {
    path: &'static str,
    status: u16,
    headers: &'static str,
    body: String,
    delay: Duration,
}

fn route(path: &'static str, body: &str) -> Route {
    Route {
        path,
        status: 200,
        headers: "Content-Type: application/json\r\n",
        body: body.to_owned(),
        delay: Duration::ZERO,
    }
}

/// A loopback HTTP server answering by path prefix; every request it read is recorded.
fn server(routes: Vec<Route>) -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let host = format!("127.0.0.1:{}", listener.local_addr().unwrap().port());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let routes = Arc::new(routes);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            let (log, routes) = (log.clone(), routes.clone());
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 16 * 1024];
                let n = s.read(&mut buf).unwrap_or(0);
                let request = String::from_utf8_lossy(&buf[..n]).into_owned();
                let path = request.split(' ').nth(1).unwrap_or("").to_owned();
                log.lock().unwrap().push(request);
                let Some(r) = routes.iter().find(|r| path.starts_with(r.path)) else { return };
                std::thread::sleep(r.delay);
                let _ = write!(
                    s,
                    "HTTP/1.1 {} X\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n{}",
                    r.status,
                    r.headers,
                    r.body.len(),
                    r.body
                );
            });
        }
    });
    (host, seen)
}

async fn set_app_metadata(app: &TestApp, user: &str, key: &str, value: serde_json::Value) {
    let id = UserId::parse(user).unwrap();
    let mut u = app.core.store.users.get(&id).await.unwrap().unwrap();
    u.app_metadata.insert(key.into(), value);
    app.core.store.users.put(&u).await.unwrap();
}

async fn refresh(app: &TestApp, token: &str) -> (u16, serde_json::Value) {
    let r = http()
        .post(app.url("/token"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chain_of_ordinary_actions_runs_unchanged() {
    let (host, seen) = server(vec![
        route("/customers", r#"{"tier":"gold"}"#),
        route("/oauth/token", r#"{"access_token":"m2m-token-1","expires_in":3600}"#),
    ]);
    let base = format!("http://{host}");
    let actions = [
        action("add-roles.js", &[], &[]),
        action("deny-by-country.js", &[("PROTECTED_CLIENT_ID", "spa"), ("DENIED_COUNTRIES", "KP, IR")], &[]),
        action("enrich-profile.js", &[("CRM_URL", &base), ("CRM_TOKEN", "crm-token-7")], &[&host]),
        action("last-seen.js", &[], &[]),
        action("log-logins.js", &[], &[]),
        action("require-verified-email.js", &[], &[]),
        action("refresh-policy.js", &[], &[]),
        action(
            "cache-api-token.js",
            &[("TOKEN_URL", &format!("{base}/oauth/token")), ("CLIENT_ID", "m2m"), ("CLIENT_SECRET", "m2m-secret")],
            &[&host],
        ),
    ];
    let app = app_with(&actions, |c| c).await;
    let first = tokens_for_ada(&app).await;
    let id = claims(first["id_token"].as_str().unwrap());
    assert_eq!(id["https://my-app.example.com/roles"], serde_json::json!([]), "no roles yet");
    assert_eq!(id["https://my-app.example.com/tier"], "gold", "enriched from the CRM");
    assert_eq!(id["https://my-app.example.com/api_token_from"], "token endpoint");
    assert_eq!(id["https://my-app.example.com/auth_methods"], serde_json::json!(["pwd"]));

    set_app_metadata(&app, "auth0|ada", "roles", serde_json::json!(["admin", "editor"])).await;
    let t = tokens_for_ada(&app).await;
    let id = claims(t["id_token"].as_str().unwrap());
    let at = claims(t["access_token"].as_str().unwrap());
    assert_eq!(id["https://my-app.example.com/roles"], serde_json::json!(["admin", "editor"]));
    assert_eq!(at["https://my-app.example.com/roles"], serde_json::json!(["admin", "editor"]));
    assert_eq!(id["https://my-app.example.com/api_token_from"], "cache", "api.cache kept the token");
    {
        let requests = seen.lock().unwrap();
        assert_eq!(requests.iter().filter(|r| r.starts_with("POST /oauth/token")).count(), 1, "one token request");
        let crm = requests.iter().find(|r| r.starts_with("GET /customers?email=ada%40example.com")).unwrap();
        assert!(crm.to_ascii_lowercase().contains("authorization: bearer crm-token-7"), "{crm}");
        let token = requests.iter().find(|r| r.starts_with("POST /oauth/token")).unwrap();
        assert!(token.contains(r#"{"client_id":"m2m","client_secret":"m2m-secret"}"#), "{token}");
    }
    let ada = app.core.store.users.get(&UserId::parse("auth0|ada").unwrap()).await.unwrap().unwrap();
    assert_eq!(ada.app_metadata["last_ip"], "127.0.0.1");
    let seen_at = ada.app_metadata["last_seen"].as_str().unwrap();
    assert!(seen_at.len() == 24 && seen_at.ends_with('Z'), "an ISO date: {seen_at}");
    assert_eq!(ada.app_metadata["logins"], 2, "event.stats counts this login too, as Auth0's does");

    // Without a trusted proxy there is no country: `event.request.geoip` is an empty object,
    // which the country check reads without failing, and denies nothing.
    let (_, challenge) = pkce();
    let url = authorize_url(&app, "spa", SPA_REDIRECT, &challenge, &[("connection", "users")]);
    let r = submit_credentials(&app, &browser(), &url, "ada@example.com", PASSWORD).await;
    let to = location(&r);
    assert!(param(&to, "code").is_some(), "{to}");

    // The refresh-token exchange runs the chain too.
    let rt = t["refresh_token"].as_str().unwrap();
    let (status, refreshed) = refresh(&app, rt).await;
    assert_eq!(status, 200, "{refreshed}");
    let at = claims(refreshed["access_token"].as_str().unwrap());
    assert_eq!(at["https://my-app.example.com/refreshed"], true);
    assert_eq!(at["https://my-app.example.com/roles"], serde_json::json!(["admin", "editor"]));
    // A denial there ends the exchange and revokes nothing: unblocked, the same token works.
    let rt = refreshed["refresh_token"].as_str().unwrap();
    set_app_metadata(&app, "auth0|ada", "blocked", true.into()).await;
    let (status, denied) = refresh(&app, rt).await;
    assert_eq!(status, 400);
    assert_eq!(denied["error"], "invalid_grant");
    assert_eq!(denied["error_description"], "This account is blocked.");
    set_app_metadata(&app, "auth0|ada", "blocked", false.into()).await;
    let (status, again) = refresh(&app, rt).await;
    assert_eq!(status, 200, "the refused exchange rotated and revoked nothing: {again}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_login_shows_its_session_to_actions() {
    let (host, _) = server(vec![route("/oauth/token", r#"{"access_token":"t","expires_in":60}"#)]);
    let actions = [action(
        "cache-api-token.js",
        &[("TOKEN_URL", &format!("http://{host}/oauth/token")), ("CLIENT_ID", "c"), ("CLIENT_SECRET", "s")],
        &[&host],
    )];
    let app = app_with(&actions, |c| c).await;
    let b = browser();
    let (verifier, challenge) = pkce();
    login(&app, &b, &authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]), "ada@example.com", PASSWORD).await;
    let r = b.get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[("prompt", "none")])).send().await.unwrap();
    let code = param(&location(&r), "code").unwrap();
    let t: serde_json::Value = redeem(&app, &code, &verifier).await.json().await.unwrap();
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["https://my-app.example.com/session_id"], id["sid"], "event.session.id is the session's sid");
    assert_eq!(id["https://my-app.example.com/auth_methods"], serde_json::json!(["pwd"]), "kept from the login");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn require_verified_email_refuses_an_unverified_user() {
    let app = app_with(&[action("require-verified-email.js", &[], &[])], |c| {
        c.replace("email = \"root@example.com\"\n", "email = \"root@example.com\"\nemail_verified = false\n")
    })
    .await;
    let (_, challenge) = pkce();
    let url = authorize_url(&app, "spa", SPA_REDIRECT, &challenge, &[("connection", "admins")]);
    let r = submit_credentials(&app, &browser(), &url, "root@example.com", OTHER_PASSWORD).await;
    assert_eq!(
        param(&location(&r), "error_description").as_deref(),
        Some("Please verify your email before logging in.")
    );
    assert!(tokens_for_ada(&app).await["id_token"].is_string(), "a verified user signs in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_accounts_signs_in_as_the_primary_user() {
    let (host, seen) = server(vec![route("/users-by-email", r#"[{"user_id":"auth0|ada","email_verified":true}]"#)]);
    let actions = [action(
        "link-accounts.js",
        &[("DIRECTORY_URL", &format!("http://{host}")), ("DIRECTORY_TOKEN", "dir-token")],
        &[&host],
    )];
    let app = app_with(&actions, |c| c).await;
    // Ada signs in first: the directory names her own user, nothing changes.
    let t = tokens_for_ada(&app).await;
    assert_eq!(claims(t["id_token"].as_str().unwrap())["sub"], "auth0|ada");
    // Root's verified login is linked to Ada: the tokens are hers.
    let id = login_as(&app, &browser(), "spa", "root@example.com", OTHER_PASSWORD).await;
    assert_eq!(claims(&id)["sub"], "auth0|ada", "setPrimaryUser chose whom the tokens are for");
    assert!(seen.lock().unwrap().iter().any(|r| r.starts_with("GET /users-by-email?email=root%40example.com")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progressive_profiling_asks_once_and_prompt_none_cannot_ask() {
    let secret = "action-secret-value-42";
    let actions =
        [action("progressive-profiling.js", &[("FORM_SECRET", secret), ("FORM_URL", "http://form.test/company")], &[])];
    let app = app_with(&actions, |c| c).await;
    let b = browser();
    let (verifier, challenge) = pkce();
    let r = submit_credentials(
        &app,
        &b,
        &authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]),
        "ada@example.com",
        PASSWORD,
    )
    .await;
    let away = location(&r);
    assert!(away.starts_with("http://form.test/company?"), "{away}");
    let state = param(&away, "state").unwrap();
    // The form reads the action's token and answers with the company and the state.
    assert_eq!(verify_hs256(&param(&away, "session_token").unwrap())["email"], "ada@example.com");
    let answer = sign_hs256(serde_json::json!({ "company": "Acme", "state": state }));
    let r = b.get(format!("{}?state={state}&session_token={answer}", app.url("/continue"))).send().await.unwrap();
    let code = param(&location(&r), "code").unwrap();
    let t: serde_json::Value = redeem(&app, &code, &verifier).await.json().await.unwrap();
    assert_eq!(claims(t["id_token"].as_str().unwrap())["https://my-app.example.com/company"], "Acme");
    let ada = app.core.store.users.get(&UserId::parse("auth0|ada").unwrap()).await.unwrap().unwrap();
    assert_eq!(ada.user_metadata["company"], "Acme");
    // Known now: a silent login goes straight through.
    let r = b.get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[("prompt", "none")])).send().await.unwrap();
    assert!(param(&location(&r), "code").is_some(), "{}", location(&r));
    // Forgotten again: the action would redirect, which prompt=none forbids.
    let mut ada = ada;
    ada.user_metadata.remove("company");
    app.core.store.users.put(&ada).await.unwrap();
    let r = b.get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[("prompt", "none")])).send().await.unwrap();
    let to = location(&r);
    assert!(to.starts_with(WEB_REDIRECT), "{to}");
    assert_eq!(param(&to, "error").as_deref(), Some("interaction_required"));
    assert!(param(&to, "code").is_none());
}

#[test]
fn the_test_runner_takes_secrets_from_the_event_and_runs_the_continue_step() {
    let dir = TempDir::new();
    let event = dir.0.join("event.json");
    let mut e: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("event.json")).unwrap()).unwrap();
    e["user"]["user_metadata"] = serde_json::json!({});
    e["secrets"] =
        serde_json::json!({ "FORM_SECRET": "action-secret-value-42", "FORM_URL": "http://form.test/from-file" });
    std::fs::write(&event, e.to_string()).unwrap();
    let run = |extra: &[&str]| {
        let out = output_within(
            std::process::Command::new(BIN)
                .arg("actions")
                .arg("test")
                .arg(fixture("progressive-profiling.js"))
                .arg("--event")
                .arg(&event)
                .args(extra),
            PEER_DEADLINE,
        );
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    assert_eq!(run(&[])["redirect"]["url"], "http://form.test/from-file", "the event file's secret");
    assert_eq!(
        run(&["--secret", "FORM_URL=http://form.test/flag"])["redirect"]["url"],
        "http://form.test/flag",
        "a flag wins"
    );
    let token = sign_hs256(serde_json::json!({ "company": "Acme", "state": "s-1" }));
    let done = run(&["--continue", &format!("state=s-1&session_token={token}")]);
    assert_eq!(done["user_metadata"]["company"], "Acme");
    assert_eq!(done["id_token_claims"]["https://my-app.example.com/company"], "Acme");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_follows_no_redirect_and_refuses_big_bodies_and_slow_hosts() {
    let (host, seen) = server(vec![
        Route {
            path: "/moved",
            status: 302,
            headers: "Location: /target\r\n",
            body: String::new(),
            delay: Duration::ZERO,
        },
        route("/target", "{}"),
        route("/big", &format!("\"{}\"", "x".repeat(300 * 1024))),
        // Far past the 2 s fetch deadline, so only giving up explains an early return.
        Route { delay: Duration::from_secs(120), ..route("/slow", "{}") },
    ]);
    let dir = TempDir::new();
    let path = crate::actions::script(
        &dir,
        "fetch.js",
        &format!(
            r#"exports.onExecutePostLogin = async (event, api) => {{
                 const moved = await fetch("http://{host}/moved");
                 api.idToken.setCustomClaim("moved", moved.status);
                 const failure = async (url) => {{ try {{ await fetch(url); return "answered"; }} catch (e) {{ return e.message; }} }};
                 api.idToken.setCustomClaim("big", await failure("http://{host}/big"));
                 api.idToken.setCustomClaim("slow", await failure("http://{host}/slow"));
               }};"#
        ),
    );
    let mut config = crate::actions::with_actions(&[("fetch", &path)], &[]);
    config.push_str(&format!("allow_hosts = [\"{host}\"]\n"));
    let app = TestApp::with(Options { config: Some(config), ..Default::default() }).await;
    let started = Instant::now();
    let id = claims(&login_as(&app, &browser(), "web", "ada@example.com", PASSWORD).await);
    // Seconds of slack for a loaded machine (the login hashes a password in a debug build);
    // the slow host would have held it for 120 s.
    assert!(started.elapsed() < Duration::from_secs(60), "the slow host was given up on: {:?}", started.elapsed());
    assert_eq!(id["moved"], 302, "the redirect is returned, not followed");
    assert!(!seen.lock().unwrap().iter().any(|r| r.starts_with("GET /target")), "the redirect target saw nothing");
    let (big, slow) = (id["big"].as_str().unwrap(), id["slow"].as_str().unwrap());
    assert!(big.starts_with("fetch:") && big.contains("larger than 262144 bytes"), "refused for its size: {big}");
    assert!(slow.starts_with("fetch:") && slow.contains("timed out"), "given up at the deadline: {slow}");
}
