//! Redirect URIs match exactly, character for character, wherever one is given: `/authorize`
//! (an error page, never a redirect), `/token` (the code is bound to the URI it was issued
//! for) and the post-logout URI. Each near miss below is a URI a lenient matcher (prefix,
//! normalised, userinfo-blind, default-port-blind, path-resolving) would take for the
//! registered `http://app.test/cb` or `http://app.test/bye`.

use crate::harness::*;

/// Near misses of `registered`, each one a different leniency.
fn near_misses(registered: &str) -> Vec<String> {
    let (origin, path) = registered.split_at("http://app.test".len());
    let last = path.chars().last().unwrap();
    let encoded_last = format!("{}%{:02X}", &path[..path.len() - 1], last as u32);
    vec![
        format!("http://app.test@evil.test{path}"), // userinfo: the host is evil.test
        format!("http://app.test:80{path}"),        // the default port spelled out
        format!("{origin}{encoded_last}"),          // a percent-encoded unreserved character
        format!("{origin}/x/..{path}"),             // a dot segment
        format!("{registered}?"),                   // an empty query
        format!("{registered}#"),                   // an empty fragment
        format!("{registered}/"),                   // a trailing slash
        format!("{registered}?next=1"),             // an added query
        format!("HTTP://APP.TEST{path}"),           // scheme and host in capitals
        format!("https://app.test{path}"),          // another scheme
    ]
}

#[test]
fn the_near_misses_are_the_intended_ones() {
    let m = near_misses(WEB_REDIRECT);
    assert!(m.contains(&"http://app.test/c%62".to_owned()), "{m:?}");
    assert!(m.contains(&"http://app.test/x/../cb".to_owned()), "{m:?}");
    assert!(m.iter().all(|u| u != WEB_REDIRECT));
}

#[tokio::test]
async fn authorize_refuses_every_near_miss_with_a_page() {
    let app = TestApp::start().await;
    let (_, challenge) = pkce();
    for uri in near_misses(WEB_REDIRECT) {
        let r = browser().get(authorize_url(&app, "web", &uri, &challenge, &[])).send().await.unwrap();
        assert_eq!(r.status(), 400, "{uri}");
        assert!(r.headers().get("location").is_none(), "{uri}: an unregistered redirect URI is never followed");
        let body = r.text().await.unwrap();
        assert!(body.contains("correlation-id"), "{uri}: an error page:\n{body}");
    }
    // The registered URI itself is taken (the refusals above are about the URI, not the rest).
    let r = browser().get(authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[])).send().await.unwrap();
    assert_eq!(r.status(), 303);
}

#[tokio::test]
async fn a_code_redeems_only_with_the_exact_uri_it_was_issued_for() {
    let app = TestApp::start().await;
    for uri in near_misses(WEB_REDIRECT) {
        let b = browser();
        let (verifier, challenge) = pkce();
        let done =
            login(&app, &b, &authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]), "ada@example.com", PASSWORD)
                .await;
        let code = param(&done, "code").unwrap();
        let r = http()
            .post(app.url("/token"))
            .basic_auth("web", Some(WEB_SECRET))
            .form(&[
                ("grant_type", "authorization_code"),
                ("code", code.as_str()),
                ("redirect_uri", uri.as_str()),
                ("code_verifier", verifier.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{uri}");
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body["error"], "invalid_grant", "{uri}: {body}");
    }
}

#[tokio::test]
async fn logout_refuses_every_near_miss_of_the_post_logout_uri() {
    let app = TestApp::start().await;
    let t = tokens_for_ada(&app).await;
    let id_token = t["id_token"].as_str().unwrap();
    for uri in near_misses("http://app.test/bye") {
        let mut logout = url::Url::parse(&app.url("/logout")).unwrap();
        logout
            .query_pairs_mut()
            .append_pair("id_token_hint", id_token)
            .append_pair("post_logout_redirect_uri", &uri)
            .append_pair("state", "s1");
        let r = browser().get(logout.as_str()).send().await.unwrap();
        assert_eq!(r.status(), 400, "{uri}");
        assert!(r.headers().get("location").is_none(), "{uri}: never followed");
        assert!(r.text().await.unwrap().contains("correlation-id"), "{uri}: an error page");
    }
    // The registered one is followed.
    let mut logout = url::Url::parse(&app.url("/logout")).unwrap();
    logout
        .query_pairs_mut()
        .append_pair("id_token_hint", id_token)
        .append_pair("post_logout_redirect_uri", "http://app.test/bye")
        .append_pair("state", "s1");
    let r = browser().get(logout.as_str()).send().await.unwrap();
    assert_eq!(location(&r), "http://app.test/bye?state=s1");
}
