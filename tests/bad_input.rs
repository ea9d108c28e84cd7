//! Every bad input gets a clear error, never a redirect to an unregistered URI, and leaves
//! nothing behind (no code, no session).

use crate::harness::*;

async fn authorize(app: &TestApp, extra: &[(&str, &str)]) -> reqwest::Response {
    let (_, challenge) = pkce();
    browser().get(authorize_url(app, "web", WEB_REDIRECT, &challenge, extra)).send().await.unwrap()
}

/// An error page: HTML, with a correlation id, and no redirect.
async fn assert_page(r: reqwest::Response, status: u16, needle: &str) {
    assert_eq!(r.status(), status);
    assert!(r.headers().get("location").is_none(), "an error page never redirects");
    assert!(r.headers().get("set-cookie").is_none(), "nothing is set");
    let cid = r.headers()["x-correlation-id"].to_str().unwrap().to_owned();
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("frame-ancestors 'none'"));
    let body = r.text().await.unwrap();
    assert!(body.contains(needle), "page should mention {needle}:\n{body}");
    assert!(body.contains(&cid), "the page shows the correlation id");
}

/// An error delivered to the registered redirect URI.
fn assert_redirect_error(r: &reqwest::Response, error: &str) {
    assert_eq!(r.status(), 303);
    let to = location(r);
    assert!(to.starts_with(WEB_REDIRECT), "{to}");
    assert_eq!(param(&to, "error").as_deref(), Some(error), "{to}");
    assert_eq!(param(&to, "state").as_deref(), Some("st-123"));
    assert!(param(&to, "code").is_none());
}

#[tokio::test]
async fn untrusted_client_or_redirect_gets_a_page() {
    let app = TestApp::start().await;
    assert_page(authorize(&app, &[("client_id", "nobody")]).await, 400, "invalid_client").await;
    assert_page(authorize(&app, &[("client_id", "")]).await, 400, "client_id is required").await;
    for bad in [
        "http://evil.test/cb",
        "http://app.test/cb?x=1",
        "http://app.test/cb#frag",
        "http://app.test/cb/",
        "HTTP://app.test/cb",
        "",
    ] {
        assert_page(authorize(&app, &[("redirect_uri", bad)]).await, 400, "redirect_uri").await;
    }
}

#[tokio::test]
async fn bad_authorization_parameters_go_back_to_the_client() {
    let app = TestApp::start().await;
    let cases: &[(&[(&str, &str)], &str)] = &[
        (&[("response_type", "")], "invalid_request"),
        (&[("response_type", "token")], "unsupported_response_type"),
        (&[("response_type", "id_token")], "unsupported_response_type"),
        (&[("response_type", "code id_token")], "unsupported_response_type"),
        (&[("code_challenge", "")], "invalid_request"),
        (&[("code_challenge_method", "plain")], "invalid_request"),
        (&[("code_challenge_method", "")], "invalid_request"),
        (&[("code_challenge", "short")], "invalid_request"),
        (&[("scope", "profile email")], "invalid_scope"),
        (&[("prompt", "none login")], "invalid_request"),
        (&[("max_age", "-1")], "invalid_request"),
        (&[("connection", "admins")], "invalid_request"),
        (&[("request", "eyJ...")], "invalid_request"),
        (&[("id_token_hint", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.")], "invalid_request"),
    ];
    for (extra, error) in cases {
        let r = authorize(&app, extra).await;
        assert_redirect_error(&r, error);
    }
    // Unknown parameters are ignored.
    let r = authorize(&app, &[("frobnicate", "yes")]).await;
    assert!(location(&r).starts_with("/login/"));
}

#[tokio::test]
async fn hmac_and_none_id_token_hints_are_refused() {
    use base64::Engine as _;
    let app = TestApp::start().await;
    let b64 = |v: serde_json::Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    let kid = app.core.keys.ring().current().kid.clone();
    let claims = b64(serde_json::json!({"iss": app.issuer, "aud": "web", "sub": "auth0|ada"}));
    for header in [serde_json::json!({"alg": "none", "kid": kid}), serde_json::json!({"alg": "HS256", "kid": kid})] {
        let token = format!("{}.{claims}.c2ln", b64(header));
        let r = authorize(&app, &[("id_token_hint", &token), ("prompt", "none")]).await;
        assert_redirect_error(&r, "invalid_request");
    }
}

#[tokio::test]
async fn duplicated_oversized_and_malformed_parameters() {
    let app = TestApp::start().await;
    let (_, challenge) = pkce();
    let dup = format!("{}&state=again", authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]));
    assert_page(browser().get(dup).send().await.unwrap(), 400, "repeated").await;
    let long = "x".repeat(5000);
    assert_page(authorize(&app, &[("login_hint", &long)]).await, 400, "too long").await;
    let r = browser().get(app.url("/authorize?%zz=%%%")).send().await.unwrap();
    assert_eq!(r.status(), 400);

    let token = |body: &'static str| {
        crate::harness::http()
            .post(app.url("/token"))
            .basic_auth("web", Some(WEB_SECRET))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
    };
    let r = token("grant_type=authorization_code&grant_type=refresh_token").await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_request");
    let r = token("grant_type=password&username=a&password=b").await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "unsupported_grant_type");
    let r = token("").await.unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_request");
    let r = crate::harness::http()
        .post(app.url("/token"))
        .basic_auth("web", Some(WEB_SECRET))
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_request");
    let huge = "a=".to_owned() + &"b".repeat(70 * 1024);
    let r = crate::harness::http()
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(huge)
        .send()
        .await
        .unwrap();
    // Over the 64 KiB limit: "too large", said in RFC 6749 JSON like every other bad request.
    assert_eq!(r.status(), 413, "oversized bodies are refused as too large");
    let body: serde_json::Value = r.json().await.expect("an RFC 6749 JSON error, not a bare 413");
    assert_eq!(body["error"], "invalid_request", "{body}");
}

#[tokio::test]
async fn client_authentication_failures() {
    let app = TestApp::start().await;
    let c = crate::harness::http();
    let form = [("grant_type", "authorization_code"), ("code", "x"), ("redirect_uri", WEB_REDIRECT)];
    let r = c.post(app.url("/token")).basic_auth("web", Some("wrong-secret")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Basic"));
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_client");
    let r = c.post(app.url("/token")).basic_auth("nobody", Some(WEB_SECRET)).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // web is registered for client_secret_basic; the same secret in the body is refused.
    let mut post = form.to_vec();
    post.extend([("client_id", "web"), ("client_secret", WEB_SECRET)]);
    let r = c.post(app.url("/token")).form(&post).send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A confidential client cannot pretend to be public.
    let mut public = form.to_vec();
    public.push(("client_id", "web"));
    let r = c.post(app.url("/token")).form(&public).send().await.unwrap();
    assert_eq!(r.status(), 401);
}

#[tokio::test]
async fn code_redemption_mistakes() {
    let app = TestApp::start().await;
    let b = browser();
    let c = crate::harness::http();
    let fresh_code = |verifier_challenge: (String, String)| {
        let b = b.clone();
        let app = &app;
        async move {
            let (verifier, challenge) = verifier_challenge;
            let done = login(
                app,
                &b,
                &authorize_url(app, "web", WEB_REDIRECT, &challenge, &[("prompt", "login")]),
                "ada@example.com",
                PASSWORD,
            )
            .await;
            (param(&done, "code").unwrap(), verifier)
        }
    };

    let (code, _) = fresh_code(pkce()).await;
    let r = redeem(&app, &code, "wrong-verifier-wrong-verifier-wrong-verifier-xx").await;
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant", "wrong code_verifier");

    let (code, verifier) = fresh_code(pkce()).await;
    let r = c
        .post(app.url("/token"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", &code),
            ("redirect_uri", "http://app.test/other"),
            ("code_verifier", &verifier),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant", "another redirect_uri");

    let (code, verifier) = fresh_code(pkce()).await;
    let r = c
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
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant", "a code of another client");

    let (code, _) = fresh_code(pkce()).await;
    let r = c
        .post(app.url("/token"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[("grant_type", "authorization_code"), ("code", &code), ("redirect_uri", WEB_REDIRECT)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant", "missing code_verifier");

    let r = redeem(&app, "made-up-code", "x").await;
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant");
}

#[tokio::test]
async fn a_refresh_token_of_another_client_is_refused_and_left_intact() {
    let app = TestApp::start().await;
    let t = tokens_for_ada(&app).await;
    let token = t["refresh_token"].as_str().unwrap();
    let c = crate::harness::http();
    let r = c
        .post(app.url("/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token), ("client_id", "spa")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant");
    let r = c
        .post(app.url("/token"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the owner's token still works");
}

#[tokio::test]
async fn hosted_steps_are_bound_to_the_browser_and_the_form() {
    let app = TestApp::start().await;
    let b = browser();
    let (_, challenge) = pkce();
    let r = b.get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[])).send().await.unwrap();
    let hosted = location(&r);
    let page = b.get(app.url(&hosted)).send().await.unwrap().text().await.unwrap();
    let csrf = hidden(&page, "csrf");

    let other = browser();
    assert_page(other.get(app.url(&hosted)).send().await.unwrap(), 400, "another browser").await;
    let r = other
        .post(app.url(&format!("{hosted}/credentials")))
        .form(&[("csrf", csrf.as_str()), ("username", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_page(r, 400, "another browser").await;
    let r = b
        .post(app.url(&format!("{hosted}/credentials")))
        .form(&[("csrf", "forged"), ("username", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_page(r, 400, "expired").await;
    assert_page(b.get(app.url("/login/unknown-transaction")).send().await.unwrap(), 400, "expired").await;
    // The genuine browser still completes, once.
    let form = [("csrf", csrf.as_str()), ("username", "ada@example.com"), ("password", PASSWORD)];
    let r = b.post(app.url(&format!("{hosted}/credentials"))).form(&form).send().await.unwrap();
    assert!(param(&location(&r), "code").is_some());
    let r = b.post(app.url(&format!("{hosted}/credentials"))).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 400, "a double submit yields one login");
}

#[tokio::test]
async fn userinfo_needs_a_valid_bearer() {
    let app = TestApp::start().await;
    let c = crate::harness::http();
    let r = c.get(app.url("/userinfo")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"].to_str().unwrap().starts_with("Bearer"));
    let r = c.get(app.url("/userinfo")).bearer_auth("not.a.jwt").send().await.unwrap();
    assert_eq!(r.status(), 401);
    // A client-credentials token is not for userinfo.
    let t: serde_json::Value = c
        .post(app.url("/token"))
        .form(&[("grant_type", "client_credentials"), ("client_id", "m2m"), ("client_secret", M2M_SECRET)])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let r = c.get(app.url("/userinfo")).bearer_auth(t["access_token"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(r.status(), 401);
}
