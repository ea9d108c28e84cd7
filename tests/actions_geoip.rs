//! The client behind a reverse proxy, through real logins: a trusted proxy's
//! `X-Forwarded-For` and country header reach Actions (`event.request.ip`,
//! `event.request.geoip.countryCode`, with `fixtures/actions/deny-by-country.js` unchanged) and
//! the failed-login counters; the same headers from an untrusted peer, or malformed, count for
//! nothing.

use std::path::Path;

use gatehouse::types::UserId;

use crate::harness::*;

/// A node whose post-login chain denies client `spa` from KP and IR and stamps the address it
/// saw; `proxies` is its `[http] trusted_proxies`.
async fn node(proxies: &str) -> TestApp {
    let fixture =
        |f: &str| Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/actions").join(f).display().to_string();
    let mut config = crate::harness::config("ES256");
    config.push_str(&format!(
        r#"
[http]
trusted_proxies = {proxies}
country_header = "cf-ipcountry"
[[actions.post_login]]
name = "deny-by-country"
file = "{}"
secrets = {{ PROTECTED_CLIENT_ID = "spa", DENIED_COUNTRIES = "KP, IR" }}
[[actions.post_login]]
name = "last-seen"
file = "{}"
"#,
        fixture("deny-by-country.js"),
        fixture("last-seen.js")
    ));
    TestApp::with(Options { config: Some(config), ..Default::default() }).await
}

/// A browser whose every request carries `headers`, as if a proxy had added them.
fn behind(headers: &[(&'static str, &'static str)]) -> reqwest::Client {
    let mut map = reqwest::header::HeaderMap::new();
    for (k, v) in headers {
        map.insert(*k, v.parse().unwrap());
    }
    http_builder().cookie_store(true).redirect(reqwest::redirect::Policy::none()).default_headers(map).build().unwrap()
}

/// ada's login to `spa` from `b`: the authorization response's `error_description`, if any.
async fn spa_login(app: &TestApp, b: &reqwest::Client) -> Option<String> {
    let (_, challenge) = pkce();
    let url = authorize_url(app, "spa", SPA_REDIRECT, &challenge, &[("connection", "users")]);
    let to = location(&submit_credentials(app, b, &url, "ada@example.com", PASSWORD).await);
    assert!(to.starts_with(SPA_REDIRECT), "{to}");
    param(&to, "error_description")
}

async fn last_ip(app: &TestApp) -> String {
    let ada = app.core.store.users.get(&UserId::parse("auth0|ada").unwrap()).await.unwrap().unwrap();
    ada.app_metadata["last_ip"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trusted_proxy_tells_the_client_address_and_country() {
    let app = node(r#"["127.0.0.1/32", "10.0.0.0/8"]"#).await;
    // The rightmost hop that is not a trusted proxy is the client; what it wrote left of
    // itself is not believed.
    let b = behind(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.2.3"), ("cf-ipcountry", "KP")]);
    assert_eq!(spa_login(&app, &b).await.as_deref(), Some("Access from KP is not allowed."));
    let b = behind(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.2.3"), ("cf-ipcountry", "de")]);
    assert_eq!(spa_login(&app, &b).await, None, "DE is not denied");
    assert_eq!(last_ip(&app).await, "203.0.113.7");
    // A malformed country is no country: not denied, not an error.
    for bad in ["KPX", "K1", "XX", ""] {
        let b = behind(&[("x-forwarded-for", "203.0.113.8"), ("cf-ipcountry", bad)]);
        assert_eq!(spa_login(&app, &b).await, None, "{bad:?}");
    }
    // A malformed forwarding list is ignored as a whole: the proxy itself is the client.
    let b = behind(&[("x-forwarded-for", "203.0.113.9, not-an-address"), ("cf-ipcountry", "DE")]);
    assert_eq!(spa_login(&app, &b).await, None);
    assert_eq!(last_ip(&app).await, "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_untrusted_peer_is_its_own_address_whatever_it_sends() {
    let app = node(r#"["10.0.0.0/8"]"#).await;
    let b = behind(&[("x-forwarded-for", "203.0.113.7"), ("cf-ipcountry", "KP")]);
    assert_eq!(spa_login(&app, &b).await, None, "the country header of an untrusted peer is ignored");
    assert_eq!(last_ip(&app).await, "127.0.0.1", "and so is its X-Forwarded-For");
}

/// `[login] max_failed_attempts = 3` in the harness config.
async fn wrong_password(app: &TestApp, b: &reqwest::Client) -> u16 {
    let (_, challenge) = pkce();
    let url = authorize_url(app, "web", WEB_REDIRECT, &challenge, &[]);
    submit_credentials(app, b, &url, "ada@example.com", "wrong password").await.status().as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_counted_per_client_behind_a_trusted_proxy() {
    let app = node(r#"["127.0.0.1/32"]"#).await;
    let one = behind(&[("x-forwarded-for", "203.0.113.1")]);
    let other = behind(&[("x-forwarded-for", "203.0.113.2")]);
    for _ in 0..3 {
        assert_eq!(wrong_password(&app, &one).await, 401, "a wrong password");
    }
    assert_eq!(wrong_password(&app, &one).await, 429, "203.0.113.1 is throttled");
    assert_eq!(wrong_password(&app, &other).await, 401, "203.0.113.2 is another client");

    // Untrusted, the same headers are one client: the peer.
    let app = node(r#"["10.0.0.0/8"]"#).await;
    for _ in 0..3 {
        wrong_password(&app, &behind(&[("x-forwarded-for", "203.0.113.1")])).await;
    }
    assert_eq!(wrong_password(&app, &other).await, 429, "both were 127.0.0.1");
}
