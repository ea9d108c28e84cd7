//! Actions fail closed and never starve, through real logins: one test per class of defect
//! (a denial that could be dropped, internals the script could write, a slow upstream that
//! held a CPU slot, outputs with no cap, claims that were not reserved).

use std::io::{Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::actions::{app_with, script};
use crate::harness::*;

/// Root's login through `spa` (the `admins` connection): the response as it is.
async fn root_login(app: &TestApp) -> reqwest::Response {
    let (_, challenge) = pkce();
    let url = authorize_url(app, "spa", SPA_REDIRECT, &challenge, &[("connection", "admins")]);
    submit_credentials(app, &browser(), &url, "root@example.com", OTHER_PASSWORD).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_denial_is_never_dropped_with_an_unreadable_result() {
    let dir = TempDir::new();
    // A value nested past what the host's JSON reader accepts, set after the denial: the
    // denial must survive it (or the login fail), never turn into a success.
    let nested = "let v = 1; for (let i = 0; i < 130; i++) v = [v];";
    for (name, body) in [
        (
            "caught",
            format!("api.access.deny('no'); {nested} try {{ api.idToken.setCustomClaim('deep', v); }} catch (e) {{}}"),
        ),
        ("thrown", format!("api.access.deny('no'); {nested} api.idToken.setCustomClaim('deep', v);")),
        ("metadata", format!("api.access.deny('no'); {nested} api.user.setAppMetadata('deep', v);")),
    ] {
        let path = script(
            &dir,
            &format!("{name}.js"),
            &format!("exports.onExecutePostLogin = async (event, api) => {{ {body} }};"),
        );
        let app = app_with(&[(name, &path)], &[]).await;
        let r = root_login(&app).await;
        let code = r.headers().get("location").and_then(|l| param(l.to_str().unwrap(), "code"));
        assert!(code.is_none(), "{name}: the login got a code");
        if name == "caught" {
            // The limit was enforced where the claim was set; the denial stands.
            assert_eq!(param(&location(&r), "error").as_deref(), Some("access_denied"), "{name}");
        } else {
            assert_eq!(r.status(), 500, "{name}: the run failed, so the login does");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_host_reads_back_is_not_writable_by_the_action() {
    let dir = TempDir::new();
    // Writing the host's result object directly, as the old prelude allowed: to drop a denial,
    // and to store 200 cache entries of 20 KB past api.cache's 20 x 2 KiB.
    let path = script(
        &dir,
        "bypass.js",
        r#"exports.onExecutePostLogin = async (event, api) => {
             api.access.deny("denied by policy");
             const r = globalThis.__result;
             if (r) {
               r.deny = null;
               r.cache = {};
               for (let i = 0; i < 200; i++) r.cache["k" + i] = { value: "x".repeat(20000), expires_at: Date.now() + 60000 };
             }
             api.idToken.setCustomClaim("internals", ["__result", "__api", "__event", "__encodeToken", "__validateToken"]
               .filter((n) => typeof globalThis[n] !== "undefined"));
           };"#,
    );
    let app = app_with(&[("bypass", &path)], &[]).await;
    let r = root_login(&app).await;
    let to = location(&r);
    assert_eq!(param(&to, "error").as_deref(), Some("access_denied"), "{to}");
    assert_eq!(param(&to, "error_description").as_deref(), Some("denied by policy"));
    assert!(app.core.store.action_cache.load("bypass").await.unwrap().is_none(), "nothing reached the cache");
}

/// A loopback HTTP server that answers every request after `delay`, counting the
/// connections it took and the answers it sent.
fn slow_server(delay: Duration) -> (u16, Arc<AtomicUsize>, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(AtomicUsize::new(0));
    let answered = Arc::new(AtomicUsize::new(0));
    let (counter, done) = (seen.clone(), answered.clone());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut s) = stream else { continue };
            counter.fetch_add(1, Ordering::SeqCst);
            let done = done.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf);
                std::thread::sleep(delay);
                let body = r#"{"slow":true}"#;
                let _ = write!(
                    s,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                done.fetch_add(1, Ordering::SeqCst);
            });
        }
    });
    (port, seen, answered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_upstream_does_not_stall_other_logins() {
    let (port, seen, answered) = slow_server(Duration::from_millis(1900));
    let dir = TempDir::new();
    let path = script(
        &dir,
        "slow.js",
        &format!(
            r#"exports.onExecutePostLogin = async (event, api) => {{
                 if (event.user.email === "root@example.com") {{
                   const r = await fetch("http://127.0.0.1:{port}/slow");
                   api.idToken.setCustomClaim("slow", (await r.json()).slow);
                 }}
                 api.idToken.setCustomClaim("ran", true);
               }};"#
        ),
    );
    let mut config = crate::actions::with_actions(&[("slow", &path)], &[]);
    config.push_str(&format!("allow_hosts = [\"127.0.0.1:{port}\"]\n"));
    // Parallel logins of one user count as attempts until each succeeds: allow them.
    let config = config.replace("max_failed_attempts = 3", "max_failed_attempts = 50");
    let app = Arc::new(TestApp::with(Options { config: Some(config), ..Default::default() }).await);
    // The control is a silent login (its action runs, no password check) of a browser that
    // signed in before the slow logins start.
    let control = browser();
    let (verifier, challenge) = pkce();
    login(&app, &control, &authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]), "ada@example.com", PASSWORD)
        .await;
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let slow: Vec<_> = (0..cores * 2)
        .map(|_| {
            let app = app.clone();
            tokio::spawn(async move { root_login(&app).await.status() })
        })
        .collect();
    // As many runs wait on the slow host as there are CPU slots: if waiting held a slot,
    // nothing else could run now.
    let waiting = Instant::now();
    while seen.load(Ordering::SeqCst) < cores {
        assert!(waiting.elapsed() < Duration::from_secs(30), "the slow logins never reached the slow host");
        tokio::task::yield_now().await;
    }
    let r =
        control.get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[("prompt", "none")])).send().await.unwrap();
    // Causal, not a stopwatch: the control finished before the slow host answered anyone.
    assert_eq!(answered.load(Ordering::SeqCst), 0, "the control login waited for a slow fetch to end");
    let code = param(&location(&r), "code").expect("the control login completes");
    let t: serde_json::Value = redeem(&app, &code, &verifier).await.json().await.unwrap();
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["ran"], true, "the control's action ran");
    assert!(id.get("slow").is_none());
    for s in slow {
        assert_eq!(s.await.unwrap(), 303, "the slow logins complete too");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_an_action_makes_leaves_uncapped() {
    let dir = TempDir::new();
    // A 1 MiB claim: refused where it is set, so no 1.4 MB token is minted.
    let big = script(
        &dir,
        "big.js",
        "exports.onExecutePostLogin = async (event, api) => { api.idToken.setCustomClaim('big', 'x'.repeat(1 << 20)); };",
    );
    let app = app_with(&[("big", &big)], &[]).await;
    let r = root_login(&app).await;
    assert_eq!(r.status(), 500);
    assert!(r.headers().get("location").is_none(), "no code, no token");
    // Many claims that each fit still cannot add up to a huge token.
    let many = script(
        &dir,
        "many.js",
        "exports.onExecutePostLogin = async (event, api) => { for (let i = 0; i < 10; i++) api.accessToken.setCustomClaim('c' + i, 'x'.repeat(4000)); };",
    );
    let app = app_with(&[("many", &many)], &[]).await;
    assert_eq!(root_login(&app).await.status(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reserved_claims_stay_gatehouse_s_own() {
    let dir = TempDir::new();
    let path = script(
        &dir,
        "reserved.js",
        r#"exports.onExecutePostLogin = async (event, api) => {
             for (const n of ["acr", "amr", "typ", "cnf", "act", "c_hash", "org_id", "sub", "sid"]) {
               api.idToken.setCustomClaim(n, "evil");
               api.accessToken.setCustomClaim(n, "evil");
             }
             api.idToken.setCustomClaim("ok", true);
           };"#,
    );
    let app = app_with(&[("reserved", &path)], &[]).await;
    let t = tokens_for_ada(&app).await;
    for token in ["id_token", "access_token"] {
        let c = claims(t[token].as_str().unwrap());
        for (name, v) in c.as_object().unwrap() {
            assert_ne!(v, "evil", "{token}: {name} was set by the action");
        }
    }
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["ok"], true);
    assert_eq!(id["amr"], serde_json::json!(["pwd"]), "Gatehouse's own amr");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thrown_object_logs_no_heap_address() {
    let dir = TempDir::new();
    let path = script(&dir, "proxy.js", "exports.onExecutePostLogin = async () => { throw new Proxy({}, {}); };");
    let app = app_with(&[("proxy", &path)], &[]).await;
    let text = crate::actions::why_it_fails(&app, serde_json::json!({})).await.to_string();
    assert!(!text.contains("0x") && !text.contains("Proxy("), "{text}");
    assert_eq!(root_login(&app).await.status(), 500);
}
