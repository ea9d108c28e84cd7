//! The provider side end to end over real HTTP: login, tokens, userinfo, refresh rotation,
//! client credentials, revocation, introspection, silent re-authentication and logout.

use crate::harness::*;
use gatehouse::tokens::jwt::{Expect, verify};

#[tokio::test]
async fn code_flow_issues_verifiable_tokens_with_the_profile() {
    for alg in ["RS256", "ES256", "EdDSA"] {
        let app = TestApp::with(Options { alg, ..Default::default() }).await;
        let b = browser();
        let (verifier, challenge) = pkce();
        let done =
            login(&app, &b, &authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]), "ada@example.com", PASSWORD)
                .await;
        assert!(done.starts_with(WEB_REDIRECT), "{done}");
        assert_eq!(param(&done, "state").as_deref(), Some("st-123"));
        assert_eq!(param(&done, "iss").as_deref(), Some(app.issuer.as_str()), "RFC 9207 iss");
        let code = param(&done, "code").unwrap();

        let r = redeem(&app, &code, &verifier).await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], "no-store");
        let t: serde_json::Value = r.json().await.unwrap();
        assert_eq!(t["token_type"], "Bearer");
        let id_token = t["id_token"].as_str().unwrap();
        let access = t["access_token"].as_str().unwrap();
        assert!(t["refresh_token"].as_str().is_some(), "offline_access yields a refresh token");

        let ring = app.core.keys.ring();
        assert_eq!(header(id_token)["alg"], alg);
        assert_eq!(header(id_token)["kid"], ring.current().kid.as_str());
        let id: serde_json::Value =
            verify(&ring, id_token, &Expect { issuer: &app.issuer, typ: None, audience: Some(&["web"]) }).unwrap();
        assert_eq!(id["sub"], "auth0|ada");
        assert_eq!(id["nonce"], "n-456");
        assert_eq!(id["azp"], "web");
        assert_eq!(id["email"], "ada@example.com");
        assert_eq!(id["email_verified"], true);
        assert_eq!(id["name"], "Ada Lovelace");
        assert_eq!(id["amr"], serde_json::json!(["pwd"]));
        assert_eq!(id["at_hash"], gatehouse::tokens::at_hash(ring.current().alg, access));
        for claim in ["exp", "iat", "auth_time", "sid"] {
            assert!(id.get(claim).is_some(), "{claim} in the ID token");
        }

        assert_eq!(header(access)["typ"], "at+jwt");
        let at = claims(access);
        assert_eq!(at["client_id"], "web");
        assert_eq!(at["sub"], "auth0|ada");
        assert_eq!(at["scope"], "openid profile email offline_access");
        assert_eq!(at["aud"], app.url("/userinfo"));
        assert!(at["jti"].as_str().is_some());

        let info: serde_json::Value = crate::harness::http()
            .get(app.url("/userinfo"))
            .bearer_auth(access)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(info["sub"], "auth0|ada");
        assert_eq!(info["given_name"], "Ada");

        let jwks: serde_json::Value =
            crate::harness::get(app.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap();
        assert_eq!(jwks["keys"][0]["kid"], ring.current().kid.as_str());
        assert_eq!(jwks["keys"][0]["alg"], alg);
    }
}

#[tokio::test]
async fn a_reused_code_fails_and_revokes_what_it_issued() {
    let app = TestApp::start().await;
    let b = browser();
    let (verifier, challenge) = pkce();
    let done =
        login(&app, &b, &authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]), "ada@example.com", PASSWORD).await;
    let code = param(&done, "code").unwrap();
    let first: serde_json::Value = redeem(&app, &code, &verifier).await.json().await.unwrap();
    let second = redeem(&app, &code, &verifier).await;
    assert_eq!(second.status(), 400);
    let e: serde_json::Value = second.json().await.unwrap();
    assert_eq!(e["error"], "invalid_grant");

    let r = crate::harness::http()
        .get(app.url("/userinfo"))
        .bearer_auth(first["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the first use's access token is revoked");
    let refresh = crate::harness::http()
        .post(app.url("/token"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", first["refresh_token"].as_str().unwrap())])
        .send()
        .await
        .unwrap();
    assert_eq!(refresh.status(), 400, "and its refresh token");
}

async fn refresh(app: &TestApp, client: &str, secret: &str, token: &str) -> reqwest::Response {
    crate::harness::http()
        .post(app.url("/token"))
        .basic_auth(client, Some(secret))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn refresh_tokens_rotate_and_reuse_revokes_the_family() {
    let app = TestApp::start().await;
    let t = tokens_for_ada(&app).await;
    let r0 = t["refresh_token"].as_str().unwrap();
    let rotated: serde_json::Value = refresh(&app, "web", WEB_SECRET, r0).await.json().await.unwrap();
    let r1 = rotated["refresh_token"].as_str().unwrap();
    assert_ne!(r0, r1, "rotation on every use");
    assert!(rotated["id_token"].as_str().is_some());
    let a1 = rotated["access_token"].as_str().unwrap().to_owned();

    let reuse = refresh(&app, "web", WEB_SECRET, r0).await;
    assert_eq!(reuse.status(), 400);
    assert_eq!(reuse.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant");
    let after = refresh(&app, "web", WEB_SECRET, r1).await;
    assert_eq!(after.status(), 400, "reuse revoked the whole family, the newest token too");
    let info = crate::harness::http().get(app.url("/userinfo")).bearer_auth(&a1).send().await.unwrap();
    assert_eq!(info.status(), 401, "and the family's access tokens");
    assert!(info.headers()["www-authenticate"].to_str().unwrap().contains("invalid_token"));
}

#[tokio::test]
async fn refresh_lifetimes_are_enforced() {
    let app = TestApp::with(Options { manual_clock: true, ..Default::default() }).await;
    let t = tokens_for_ada(&app).await;
    app.advance(601);
    let r = refresh(&app, "web", WEB_SECRET, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 400, "idle lifetime (600 s) passed");

    let t = tokens_for_ada(&app).await;
    let mut token = t["refresh_token"].as_str().unwrap().to_owned();
    for _ in 0..6 {
        app.advance(550);
        let r: serde_json::Value = refresh(&app, "web", WEB_SECRET, &token).await.json().await.unwrap();
        token = r["refresh_token"].as_str().expect("still within the absolute lifetime").to_owned();
    }
    app.advance(550);
    let r = refresh(&app, "web", WEB_SECRET, &token).await;
    assert_eq!(r.status(), 400, "absolute lifetime (3600 s) passed although never idle");
}

#[tokio::test]
async fn a_code_expires() {
    let app = TestApp::with(Options { manual_clock: true, ..Default::default() }).await;
    let b = browser();
    let (verifier, challenge) = pkce();
    let done =
        login(&app, &b, &authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]), "ada@example.com", PASSWORD).await;
    app.advance(31);
    let r = redeem(&app, &param(&done, "code").unwrap(), &verifier).await;
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant");
}

#[tokio::test]
async fn public_client_with_pkce_and_the_chooser() {
    let app = TestApp::start().await;
    let b = browser();
    let (verifier, challenge) = pkce();
    let r = b.get(authorize_url(&app, "spa", SPA_REDIRECT, &challenge, &[])).send().await.unwrap();
    let hosted = location(&r);
    let page = b.get(app.url(&hosted)).send().await.unwrap().text().await.unwrap();
    assert!(
        page.contains("Company account") && page.contains("Administrators"),
        "chooser lists the client's connections"
    );
    let r = b
        .post(app.url(&format!("{hosted}/connect")))
        .form(&[("csrf", hidden(&page, "csrf").as_str()), ("connection", "admins")])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), hosted, "a credentials connection shows the form");
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
    let done = location(&r);
    let code = param(&done, "code").unwrap();
    let token = crate::harness::http()
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", SPA_REDIRECT),
            ("client_id", "spa"),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 200);
    let t: serde_json::Value = token.json().await.unwrap();
    assert_eq!(claims(t["id_token"].as_str().unwrap())["sub"], "auth0|root");
}

#[tokio::test]
async fn silent_reauthentication_and_prompt_handling() {
    let app = TestApp::start().await;
    let b = browser();
    let (_, challenge) = pkce();
    login(&app, &b, &authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]), "ada@example.com", PASSWORD).await;

    // A live session answers at once, with or without prompt=none.
    for extra in [&[][..], &[("prompt", "none")][..]] {
        let r = b.get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, extra)).send().await.unwrap();
        let to = location(&r);
        assert!(to.starts_with(WEB_REDIRECT) && param(&to, "code").is_some(), "silent SSO: {to}");
    }
    // prompt=login and max_age=0 force the form.
    for extra in [&[("prompt", "login")][..], &[("max_age", "0")][..]] {
        let r = b.get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, extra)).send().await.unwrap();
        assert!(location(&r).starts_with("/login/"));
    }
    // prompt=none can never show the form, even when max_age=0 asks for a fresh login.
    let r = b
        .get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[("prompt", "none"), ("max_age", "0")]))
        .send()
        .await
        .unwrap();
    assert_eq!(param(&location(&r), "error").as_deref(), Some("login_required"));
    // Without a session, prompt=none returns login_required to the client.
    let fresh = browser();
    let r =
        fresh.get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[("prompt", "none")])).send().await.unwrap();
    let to = location(&r);
    assert_eq!(param(&to, "error").as_deref(), Some("login_required"));
    assert_eq!(param(&to, "state").as_deref(), Some("st-123"));
}

#[tokio::test]
async fn id_token_hint_and_logout() {
    let app = TestApp::start().await;
    let b = browser();
    let (verifier, challenge) = pkce();
    let done =
        login(&app, &b, &authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]), "ada@example.com", PASSWORD).await;
    let t: serde_json::Value = redeem(&app, &param(&done, "code").unwrap(), &verifier).await.json().await.unwrap();
    let id_token = t["id_token"].as_str().unwrap();

    let r = b
        .get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[("prompt", "none"), ("id_token_hint", id_token)]))
        .send()
        .await
        .unwrap();
    assert!(param(&location(&r), "code").is_some(), "hint for the session's user: silent");

    let mut logout = url::Url::parse(&app.url("/logout")).unwrap();
    logout
        .query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", "http://app.test/bye")
        .append_pair("state", "bye-1");
    let r = b.get(logout.as_str()).send().await.unwrap();
    assert_eq!(location(&r), "http://app.test/bye?state=bye-1");

    let r = b.get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[("prompt", "none")])).send().await.unwrap();
    assert_eq!(param(&location(&r), "error").as_deref(), Some("login_required"), "the session is gone");

    let mut bad = url::Url::parse(&app.url("/logout")).unwrap();
    bad.query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", "http://evil.test/");
    let r = b.get(bad.as_str()).send().await.unwrap();
    assert_eq!(r.status(), 400, "an unregistered post-logout URI is refused, not followed");
}

#[tokio::test]
async fn client_credentials_scopes_and_audience() {
    let app = TestApp::start().await;
    let c = crate::harness::http();
    let cc = |extra: Vec<(&'static str, &'static str)>| {
        let mut form = vec![("grant_type", "client_credentials"), ("client_id", "m2m"), ("client_secret", M2M_SECRET)];
        form.extend(extra);
        c.post(app.url("/token")).form(&form).send()
    };
    let t: serde_json::Value =
        cc(vec![("audience", "https://api.test"), ("scope", "read:things")]).await.unwrap().json().await.unwrap();
    let at = claims(t["access_token"].as_str().unwrap());
    assert_eq!(at["aud"], "https://api.test");
    assert_eq!(at["scope"], "read:things");
    assert_eq!(at["sub"], "m2m", "the plain client_id by default (RFC 9068)");
    assert!(t.get("refresh_token").is_none() && t.get("id_token").is_none());

    let all: serde_json::Value = cc(vec![]).await.unwrap().json().await.unwrap();
    assert_eq!(
        claims(all["access_token"].as_str().unwrap())["scope"],
        "read:things write:things",
        "default: the API's scopes"
    );

    let r = cc(vec![("scope", "admin")]).await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_scope");
    let r = cc(vec![("audience", "https://other.test")]).await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_target");
    let r = c
        .post(app.url("/token"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "unauthorized_client");
}

#[tokio::test]
async fn revocation_and_introspection() {
    let app = TestApp::start().await;
    let t = tokens_for_ada(&app).await;
    let access = t["access_token"].as_str().unwrap();
    let refresh_token = t["refresh_token"].as_str().unwrap();
    let c = crate::harness::http();
    let introspect = |token: &str| {
        c.post(app.url("/introspect")).basic_auth("web", Some(WEB_SECRET)).form(&[("token", token)]).send()
    };
    let i: serde_json::Value = introspect(access).await.unwrap().json().await.unwrap();
    assert_eq!(i["active"], true);
    assert_eq!(i["sub"], "auth0|ada");
    let i: serde_json::Value = introspect(refresh_token).await.unwrap().json().await.unwrap();
    assert_eq!(i["active"], true);
    assert_eq!(i["token_type"], "refresh_token");
    let i: serde_json::Value = introspect("garbage").await.unwrap().json().await.unwrap();
    assert_eq!(i, serde_json::json!({"active": false}));

    // Revoking the access token ends it alone.
    let r = c
        .post(app.url("/revoke"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[("token", access), ("token_type_hint", "access_token")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(introspect(access).await.unwrap().json::<serde_json::Value>().await.unwrap()["active"], false);
    assert_eq!(introspect(refresh_token).await.unwrap().json::<serde_json::Value>().await.unwrap()["active"], true);

    // Revoking the refresh token ends the grant.
    let r = c
        .post(app.url("/revoke"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[("token", refresh_token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(refresh(&app, "web", WEB_SECRET, refresh_token).await.status(), 400);
    // Unknown tokens: 200 as RFC 7009 asks.
    let r =
        c.post(app.url("/revoke")).basic_auth("web", Some(WEB_SECRET)).form(&[("token", "nope")]).send().await.unwrap();
    assert_eq!(r.status(), 200);
    // Public clients cannot introspect.
    let r = c.post(app.url("/introspect")).form(&[("token", access), ("client_id", "spa")]).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn wrong_passwords_are_throttled_and_answered_alike() {
    let app = TestApp::start().await;
    let b = browser();
    let (_, challenge) = pkce();
    let r = b.get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[])).send().await.unwrap();
    let hosted = location(&r);
    let page = b.get(app.url(&hosted)).send().await.unwrap().text().await.unwrap();
    let csrf = hidden(&page, "csrf");
    let post = |user: &'static str, pw: &'static str| {
        b.post(app.url(&format!("{hosted}/credentials")))
            .form(&[("csrf", csrf.as_str()), ("username", user), ("password", pw)])
            .send()
    };
    let wrong = post("ada@example.com", "nope").await.unwrap();
    assert_eq!(wrong.status(), 401);
    let wrong_text = wrong.text().await.unwrap();
    let unknown = post("nobody@example.com", "nope").await.unwrap().text().await.unwrap();
    assert!(wrong_text.contains("Wrong username or password.") && unknown.contains("Wrong username or password."));
    // The second and third failures are still answered as wrong passwords, not yet locked.
    for n in [2, 3] {
        let r = post("ada@example.com", "nope").await.unwrap();
        assert_eq!(r.status(), 401, "failure {n}");
        assert!(r.text().await.unwrap().contains("Wrong username or password."), "failure {n}");
    }
    let locked = post("ada@example.com", PASSWORD).await.unwrap();
    assert_eq!(locked.status(), 429, "three failures lock this username from this address");
    assert!(locked.text().await.unwrap().contains("correlation-id"));
}

#[tokio::test]
async fn discovery_advertises_only_what_works() {
    let app = TestApp::start().await;
    let d: serde_json::Value =
        crate::harness::get(app.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert_eq!(d["issuer"], app.issuer);
    assert_eq!(d["response_types_supported"], serde_json::json!(["code"]));
    assert_eq!(d["code_challenge_methods_supported"], serde_json::json!(["S256"]));
    assert_eq!(d["id_token_signing_alg_values_supported"], serde_json::json!(["ES256"]));
    assert_eq!(d["authorization_response_iss_parameter_supported"], true);
    // Each advertised endpoint is served, and answers a bare request the way that endpoint
    // must (a 500 or a catch-all page would fail here): the error of its own protocol.
    let http = crate::harness::http();
    let url = |endpoint: &str| {
        let url = d[endpoint].as_str().unwrap_or_else(|| panic!("{endpoint} advertised")).to_owned();
        assert!(url.starts_with(&app.issuer), "{endpoint}: {url}");
        url
    };
    // Nothing to trust yet: an error page, never a redirect.
    let r = http.get(url("authorization_endpoint")).send().await.unwrap();
    assert_eq!(r.status(), 400, "authorization_endpoint");
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    // The API endpoints: RFC 6749 JSON naming what is missing.
    for (endpoint, status, error) in [
        ("token_endpoint", 401, "invalid_client"),
        ("revocation_endpoint", 401, "invalid_client"),
        ("introspection_endpoint", 401, "invalid_client"),
    ] {
        let r = http.post(url(endpoint)).form(&[("token", "x")]).send().await.unwrap();
        assert_eq!(r.status(), status, "{endpoint}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], error, "{endpoint}: {body}");
    }
    let r = http.get(url("userinfo_endpoint")).send().await.unwrap();
    assert_eq!(r.status(), 401, "userinfo without a token");
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"), "RFC 6750 challenge");
    let jwks: serde_json::Value = http.get(url("jwks_uri")).send().await.unwrap().json().await.unwrap();
    assert_eq!(jwks["keys"].as_array().map(Vec::len), Some(1), "{jwks}");
    // Logout of a browser with no session: nothing to end, the signed-out page.
    let r = http.get(url("end_session_endpoint")).send().await.unwrap();
    assert_eq!(r.status(), 200, "end_session_endpoint");
    assert!(r.text().await.unwrap().contains("You are signed out"), "end_session_endpoint");
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    let app = TestApp::start().await;
    assert_eq!(crate::harness::get(app.url("/healthz")).await.unwrap().status(), 200);
    assert_eq!(crate::harness::get(app.url("/readyz")).await.unwrap().status(), 200);
    tokens_for_ada(&app).await;
    let m = crate::harness::get(app.url("/metrics")).await.unwrap().text().await.unwrap();
    assert!(m.contains("gatehouse_tokens_issued_total{grant_type=\"authorization_code\"} 1"), "{m}");
    assert!(m.contains("gatehouse_logins_total{connection=\"users\",result=\"success\"} 1"), "{m}");
    assert!(m.contains("gatehouse_http_request_duration_seconds_bucket"), "{m}");
}

#[tokio::test]
async fn form_post_response_mode_and_unknown_paths() {
    let app = TestApp::start().await;
    let b = browser();
    let (_, challenge) = pkce();
    let url = authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[("response_mode", "form_post")]);
    let r = b.get(&url).send().await.unwrap();
    let hosted = location(&r);
    let page = b.get(app.url(&hosted)).send().await.unwrap().text().await.unwrap();
    let r = b
        .post(app.url(&format!("{hosted}/credentials")))
        .form(&[("csrf", hidden(&page, "csrf").as_str()), ("username", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "form_post answers with a self-submitting form");
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    let html = r.text().await.unwrap().replace("&#x2f;", "/");
    assert!(html.contains(&format!("action=\"{WEB_REDIRECT}\"")), "{html}");
    assert!(!hidden(&html, "code").is_empty());
    assert_eq!(hidden(&html, "state"), "st-123");
    let nonce = csp.split("'nonce-").nth(1).unwrap().split('\'').next().unwrap();
    assert!(
        html.contains(&format!("<script nonce=\"{nonce}\">")),
        "the submit script is allowed by this response's CSP"
    );

    let r = crate::harness::get(app.url("/nope")).await.unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "not_found");
    let r = crate::harness::http().get(app.url("/token")).send().await.unwrap();
    assert_eq!(r.status(), 405, "a known path with the wrong method");
    let demo = crate::harness::get(app.url("/demo")).await.unwrap().text().await.unwrap();
    assert!(!demo.contains("demo@gatehouse.test"), "no demo credentials outside the embedded default");
}

#[tokio::test]
async fn an_id_token_hint_for_someone_else_ends_in_login_required() {
    let app = TestApp::start().await;
    // Ada's ID token for the spa.
    let (verifier, challenge) = pkce();
    let done = login(
        &app,
        &browser(),
        &authorize_url(&app, "spa", SPA_REDIRECT, &challenge, &[("connection", "users")]),
        "ada@example.com",
        PASSWORD,
    )
    .await;
    let t: serde_json::Value = http()
        .post(app.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &param(&done, "code").unwrap()),
            ("redirect_uri", SPA_REDIRECT),
            ("client_id", "spa"),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let hint = t["id_token"].as_str().unwrap();
    // In a fresh browser, with Ada's hint, root signs in instead.
    let (_, challenge) = pkce();
    let url =
        authorize_url(&app, "spa", SPA_REDIRECT, &challenge, &[("connection", "admins"), ("id_token_hint", hint)]);
    let done = login(&app, &browser(), &url, "root@example.com", OTHER_PASSWORD).await;
    assert_eq!(param(&done, "error").as_deref(), Some("login_required"), "{done}");
    assert!(param(&done, "code").is_none());
}

#[tokio::test]
async fn browser_apps_of_registered_origins_get_cors() {
    let app = TestApp::start().await;
    let c = http();
    let pre = c
        .request(reqwest::Method::OPTIONS, app.url("/userinfo"))
        .header("origin", "http://spa.test")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(pre.status(), 204);
    assert_eq!(pre.headers()["access-control-allow-origin"], "http://spa.test");
    assert!(pre.headers()["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    let token = c
        .post(app.url("/token"))
        .header("origin", "http://spa.test")
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x.y"), ("client_id", "spa")])
        .send()
        .await
        .unwrap();
    assert_eq!(token.headers()["access-control-allow-origin"], "http://spa.test", "errors are readable too");
    let evil = c
        .post(app.url("/token"))
        .header("origin", "http://evil.test")
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "x.y"), ("client_id", "spa")])
        .send()
        .await
        .unwrap();
    assert!(evil.headers().get("access-control-allow-origin").is_none(), "an unknown origin gets no CORS");
}

#[tokio::test]
async fn logout_without_a_hint_asks_first() {
    let app = TestApp::start().await;
    let b = browser();
    let (_, challenge) = pkce();
    login(&app, &b, &authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]), "ada@example.com", PASSWORD).await;
    let url =
        format!("{}?client_id=web&post_logout_redirect_uri=http%3A%2F%2Fapp.test%2Fbye&state=s9", app.url("/logout"));
    let r = b.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let page = r.text().await.unwrap();
    assert!(page.contains("Sign out?") && page.contains("name=\"confirm\""), "{page}");
    let csrf = hidden(&page, "csrf");
    // Only asked: the session is alive.
    let silent =
        b.get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[("prompt", "none")])).send().await.unwrap();
    assert!(param(&location(&silent), "code").is_some(), "a bare link does not sign anyone out");
    // Confirmed (the form posts back): signed out, sent to the registered URI.
    let r = b
        .post(app.url("/logout"))
        .form(&[
            ("client_id", "web"),
            ("post_logout_redirect_uri", "http://app.test/bye"),
            ("state", "s9"),
            ("confirm", "yes"),
            ("csrf", csrf.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(location(&r), "http://app.test/bye?state=s9");
    let silent =
        b.get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[("prompt", "none")])).send().await.unwrap();
    assert_eq!(param(&location(&silent), "error").as_deref(), Some("login_required"));
}

#[tokio::test]
async fn under_https_cookies_are_host_prefixed_and_secure() {
    let config = crate::harness::config("ES256").replace("[login]", "[session]\ncookie_secure = true\n[login]");
    let app = TestApp::with(Options { config: Some(config), ..Default::default() }).await;
    let (_, challenge) = pkce();
    let r = browser().get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[])).send().await.unwrap();
    let set = r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect::<Vec<_>>();
    let binding = set.iter().find(|c| c.starts_with("__Host-gh_browser=")).unwrap_or_else(|| panic!("{set:?}"));
    for attr in ["Secure", "HttpOnly", "Path=/", "SameSite=None"] {
        assert!(binding.contains(attr), "{attr} in {binding}");
    }
    assert!(!binding.contains("Domain"), "a __Host- cookie has no Domain");
}
