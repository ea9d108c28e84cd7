//! Auth0's Express SDKs, unchanged, against Gatehouse (pinned in tests/peers/auth0, installed
//! by scripts/setup): `express-openid-connect` with `auth0Logout: true`, as Auth0's quickstart
//! configures it (login, the user, userinfo, logout through `/v2/logout`), and
//! `express-oauth2-jwt-bearer` guarding an API with Gatehouse's access tokens.

use std::net::TcpListener;

use crate::auth0::Peer;
use crate::harness::*;

const EXPRESS_SECRET: &str = "express-client-secret-0123456789abcdef";

/// Gatehouse (issuer with a trailing slash, as Auth0's SDKs expect) and the Express peer,
/// whose web app is registered with Auth0's setting names.
async fn setup() -> (TestApp, Peer, String, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://127.0.0.1:{}/", listener.local_addr().unwrap().port());
    let peer = Peer::start(
        "express.mjs",
        &[
            ("ISSUER", issuer.as_str()),
            ("CLIENT_ID", "express"),
            ("CLIENT_SECRET", EXPRESS_SECRET),
            ("AUDIENCE", "https://api.test"),
        ],
    );
    let web = format!("http://127.0.0.1:{}", peer.ports.0);
    let api = format!("http://127.0.0.1:{}", peer.ports.1);
    let config = config("RS256")
        + &format!(
            r#"
[[clients]]
client_id = "express"
client_secret = "{EXPRESS_SECRET}"
callbacks = ["{web}/callback"]
allowed_logout_urls = ["{web}"]
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
    (app, peer, web, api)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_openid_connect_logs_in_reads_the_user_and_logs_out_with_auth0_logout() {
    let (app, _peer, web, _) = setup().await;
    let b = browser();
    let r = b.get(format!("{web}/login")).send().await.unwrap();
    assert_eq!(r.status(), 302, "{}", r.text().await.unwrap_or_default());
    let authorize = location(&r);
    assert!(authorize.starts_with(&app.url("/authorize?")), "{authorize}");
    let done = login(&app, &b, &authorize, "ada@example.com", PASSWORD).await;
    assert!(done.starts_with(&format!("{web}/callback?")), "{done}");
    let r = b.get(&done).send().await.unwrap();
    assert_eq!(r.status(), 302, "the SDK accepted the callback: {}", r.text().await.unwrap_or_default());

    let user: serde_json::Value = b.get(format!("{web}/profile")).send().await.unwrap().json().await.unwrap();
    assert_eq!(user["sub"], "auth0|ada", "{user}");
    assert_eq!(user["email"], "ada@example.com");
    let info: serde_json::Value = b.get(format!("{web}/userinfo")).send().await.unwrap().json().await.unwrap();
    assert_eq!(info["sub"], "auth0|ada", "{info}");
    assert_eq!(info["name"], "Ada Lovelace");

    // auth0Logout: the SDK sends the browser to /v2/logout, which comes back to the app.
    let r = b.get(format!("{web}/logout")).send().await.unwrap();
    let logout = location(&r);
    assert!(logout.starts_with(&app.url("/v2/logout?")), "{logout}");
    assert_eq!(param(&logout, "client_id").as_deref(), Some("express"));
    let r = b.get(&logout).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let back = location(&r);
    assert_eq!(back.trim_end_matches('/'), web, "returnTo, an allowed logout URL");
    let home: serde_json::Value = b.get(&back).send().await.unwrap().json().await.unwrap();
    assert_eq!(home["authenticated"], false, "the app's own session is over");
    // Gatehouse's session is over too: the next login shows the form again.
    let r = b.get(format!("{web}/login")).send().await.unwrap();
    let r = b.get(location(&r)).send().await.unwrap();
    assert!(location(&r).starts_with("/login/"), "the hosted page, not a silent answer");
}

async fn machine_token(app: &TestApp, scope: &str) -> String {
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", "m2m"),
        ("client_secret", M2M_SECRET),
        ("audience", "https://api.test"),
        ("scope", scope),
    ];
    let r = http().post(app.url("/oauth/token")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    r.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn express_oauth2_jwt_bearer_accepts_gatehouse_tokens_by_scope() {
    let (app, _peer, _, api) = setup().await;
    let things = format!("{api}/things");
    let good = machine_token(&app, "read:things").await;
    let r = http().get(&things).bearer_auth(&good).send().await.unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    // The token exists but lacks the scope: 403 insufficient_scope.
    let narrow = machine_token(&app, "write:things").await;
    let r = http().get(&things).bearer_auth(&narrow).send().await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().contains("insufficient_scope"));
    // Tampered (a claim changed after signing, the signature kept) and missing: 401.
    let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
    let mut claims = claims(&good);
    claims["scope"] = "read:things write:things admin".into();
    use base64::Engine as _;
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let r = http().get(&things).bearer_auth(parts.join(".")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http().get(&things).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
