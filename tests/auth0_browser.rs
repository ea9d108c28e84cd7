//! Auth0's SPA SDK, `@auth0/auth0-spa-js` (pinned in tests/peers/auth0, installed by
//! scripts/setup), unchanged, in headless Chromium against Gatehouse: the app's page
//! (`tests/peers/auth0/spa/`) logs in with a redirect, `handleRedirectCallback`, `getUser`,
//! `getTokenSilently` with refresh tokens and with the hidden iframe
//! (`response_mode=web_message`), and `logout` through `/v2/logout`. A page of another origin
//! that frames the iframe page gets nothing.

use std::net::TcpListener;

use serde_json::Value;

use crate::auth0::Peer;
use crate::browser::WebDriver;
use crate::harness::*;

/// Gatehouse (issuer with a trailing slash: the SDK checks `iss` against `{domain}/`) and the
/// SPA's server; returns the node, the peer and the SPA's and the foreign page's origins.
async fn setup() -> (TestApp, Peer, String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let domain = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let peer = Peer::start("spa.mjs", &[("GATEHOUSE", domain.as_str()), ("CLIENT_ID", "spa-js")]);
    let spa = format!("http://127.0.0.1:{}", peer.ports.0);
    let foreign = format!("http://127.0.0.1:{}", peer.ports.1);
    let config = config("RS256")
        + &format!(
            r#"
[[clients]]
client_id = "spa-js"
callbacks = ["{spa}"]
allowed_logout_urls = ["{spa}"]
web_origins = ["{spa}"]
connections = ["users"]
"#
        );
    let app = TestApp::with(Options {
        config: Some(config),
        listener: Some(listener),
        trailing_slash: true,
        ..Default::default()
    })
    .await;
    (app, peer, spa, foreign)
}

/// The page's result block, once it shows the signed-in state (panics on the page's error).
async fn signed_in(wd: &WebDriver) -> (Value, Value) {
    let shown = wd.wait_for("#signed-in:not([hidden]), #error:not([hidden])").await;
    if wd.attribute(&shown, "id").await.as_deref() == Some("error") {
        panic!("the SPA reports an error: {}\nconsole: {:?}", wd.text("#error").await, wd.console().await);
    }
    let user: Value = serde_json::from_str(&wd.text("#user").await).unwrap();
    let silent: Value = serde_json::from_str(&wd.text("#silent").await).unwrap();
    (user, silent)
}

/// Log in from the SPA in `mode`, through Gatehouse's hosted form (screenshot `shot`).
async fn log_in(wd: &WebDriver, app: &TestApp, spa: &str, mode: &str, shot: &str) -> (Value, Value) {
    wd.goto(&format!("{spa}/?mode={mode}")).await;
    let login = wd.wait_for("#login").await;
    wd.click(&login).await;
    let username = wd.wait_for("#username").await;
    assert!(wd.current_url().await.starts_with(&app.url("/login/")), "Gatehouse's hosted page");
    wd.screenshot(shot).await;
    println!("browser: Gatehouse's hosted login page at {shot}");
    wd.send_keys(&username, "ada@example.com").await;
    wd.send_keys(&wd.find("#password").await, PASSWORD).await;
    wd.click(&wd.find("#submit").await).await;
    signed_in(wd).await
}

/// Whether the browser's Gatehouse session (cookies are per host, so the SPA's page shows
/// Gatehouse's too) still answers `prompt=none` with a code.
async fn session_alive(app: &TestApp, cookies: &str, spa: &str) -> bool {
    let (_, challenge) = pkce();
    let r = browser()
        .get(authorize_url(app, "spa-js", spa, &challenge, &[("prompt", "none")]))
        .header(reqwest::header::COOKIE, cookies)
        .send()
        .await
        .unwrap();
    param(&location(&r), "code").is_some()
}

#[tokio::test]
async fn auth0_spa_js_logs_in_refreshes_and_logs_out_in_a_real_browser() {
    let (app, _peer, spa, _) = setup().await;
    let wd = WebDriver::start().await;
    let (user, silent) = log_in(&wd, &app, &spa, "refresh", "/tmp/gatehouse-auth0-spa-login.png").await;
    assert_eq!(user["sub"], "auth0|ada", "getUser: {user}");
    assert_eq!(user["email"], "ada@example.com");
    assert_eq!(user["name"], "Ada Lovelace");
    // getTokenSilently with refresh tokens: one refresh_token grant at /oauth/token.
    assert_eq!(silent["grants"], serde_json::json!(["refresh_token"]), "{silent}");
    assert_eq!(silent["messages"], serde_json::json!([]), "no iframe: {silent}");
    assert_eq!(silent["sub"], "auth0|ada");
    assert_eq!(silent["iss"], format!("{}/", app.issuer));
    wd.screenshot("/tmp/gatehouse-auth0-spa-signed-in.png").await;
    println!("browser: the SPA signed in at /tmp/gatehouse-auth0-spa-signed-in.png");

    let cookies = wd.cookie_header().await;
    assert!(session_alive(&app, &cookies, &spa).await, "a Gatehouse session before logout");
    wd.click(&wd.find("#logout").await).await;
    wd.wait_for("#login").await;
    assert_eq!(wd.current_url().await.trim_end_matches('/'), spa, "back at returnTo");
    assert!(!session_alive(&app, &cookies, &spa).await, "logout ended Gatehouse's session");
    assert!(!wd.cookie_header().await.contains("gh_session="), "the session cookie is removed");
}

#[tokio::test]
async fn auth0_spa_js_gets_tokens_silently_through_the_iframe_in_a_real_browser() {
    let (app, _peer, spa, foreign) = setup().await;
    let wd = WebDriver::start().await;
    let (user, silent) = log_in(&wd, &app, &spa, "iframe", "/tmp/gatehouse-auth0-iframe-login.png").await;
    assert_eq!(user["sub"], "auth0|ada");
    // getTokenSilently without refresh tokens: the hidden iframe got a web message from
    // Gatehouse's origin with a code, which the SDK redeemed at /oauth/token.
    assert_eq!(
        silent["messages"],
        serde_json::json!([{"origin": app.issuer, "keys": ["code", "iss", "state"]}]),
        "{silent}"
    );
    assert_eq!(silent["grants"], serde_json::json!(["authorization_code"]), "{silent}");
    assert_eq!(silent["sub"], "auth0|ada");
    assert_eq!(silent["id_token_sub"], "auth0|ada");
    wd.screenshot("/tmp/gatehouse-auth0-iframe-signed-in.png").await;
    println!("browser: the SPA after the iframe at /tmp/gatehouse-auth0-iframe-signed-in.png");
    wd.console().await;

    // Another origin frames the same page with the SPA's registered redirect URI: the browser
    // refuses the frame (frame-ancestors), and nothing is posted to it.
    wd.goto(&format!("{foreign}/?spa={spa}")).await;
    wd.wait_for("#result[data-done]").await;
    let result: Value = serde_json::from_str(&wd.text("#result").await).unwrap();
    assert_eq!(result["received"], serde_json::json!([]), "{result}");
    let console = wd.console().await;
    assert!(
        console.iter().any(|l| l.contains("frame-ancestors")),
        "the browser names the frame-ancestors refusal: {console:#?}"
    );
    wd.screenshot("/tmp/gatehouse-auth0-foreign-frame.png").await;
    println!("browser: the foreign page's refused frame at /tmp/gatehouse-auth0-foreign-frame.png");
}
