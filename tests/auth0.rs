//! Auth0 drop-in, over HTTP: what Auth0's application SDKs expect of the domain they are
//! pointed at (an issuer with a trailing slash, Auth0's client setting names, `/oauth/token`
//! with CORS for registered web origins, `/v2/logout`, `response_mode=web_message`).

use crate::harness::*;

/// `issuer = "http://…/"`: used verbatim as `iss` in discovery, the authorization response and
/// every token, while every endpoint is still built on one slash.
#[tokio::test]
async fn an_issuer_with_a_trailing_slash_is_used_verbatim_and_endpoints_stay_right() {
    let app = TestApp::with(Options { trailing_slash: true, ..Default::default() }).await;
    let iss = format!("{}/", app.issuer);
    let d: serde_json::Value = get(app.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(d["issuer"], iss.as_str());
    for (key, path) in [
        ("authorization_endpoint", "/authorize"),
        ("token_endpoint", "/token"),
        ("userinfo_endpoint", "/userinfo"),
        ("jwks_uri", "/.well-known/jwks.json"),
        ("end_session_endpoint", "/logout"),
    ] {
        assert_eq!(d[key], app.url(path), "{key} has one slash");
    }

    let b = browser();
    let (verifier, challenge) = pkce();
    let done =
        login(&app, &b, &authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]), "ada@example.com", PASSWORD).await;
    assert_eq!(param(&done, "iss").as_deref(), Some(iss.as_str()), "RFC 9207 iss in the response: {done}");
    let t: serde_json::Value = redeem(&app, &param(&done, "code").unwrap(), &verifier).await.json().await.unwrap();
    let id = t["id_token"].as_str().unwrap();
    assert_eq!(claims(id)["iss"], iss.as_str());
    let access = t["access_token"].as_str().unwrap();
    assert_eq!(claims(access)["iss"], iss.as_str());
    assert_eq!(claims(access)["aud"], app.url("/userinfo"));
    // Our own verification expects the same verbatim issuer: userinfo and id_token_hint work.
    let info = http().get(app.url("/userinfo")).bearer_auth(access).send().await.unwrap();
    assert_eq!(info.status(), 200);
    let bye = b
        .get(app.url("/logout"))
        .query(&[("id_token_hint", id), ("post_logout_redirect_uri", "http://app.test/bye")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&bye), "http://app.test/bye", "the ID token is accepted as a hint");
}
