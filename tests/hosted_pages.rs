//! The hosted pages' browser-facing promises: the session cookie's flags over http and https,
//! and the CSRF token every hosted form POST carries (`/connect`, `/identify`,
//! `/credentials`, the logout confirmation), refused when missing, empty or another
//! browser's. Each refusal is followed by the same POST with the right token succeeding, so a
//! server that ignored the token fails the first half and one that broke the form the second.

use std::collections::BTreeMap;

use crate::harness::*;

/// Every `Set-Cookie` of a response, as sent.
fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers().get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// A cookie jar kept by hand, so `Secure` cookies can be sent back to a node that serves
/// plain http in the test (a browser's jar would hold them back), and every `Set-Cookie` is
/// kept as sent.
#[derive(Default)]
struct Jar {
    values: BTreeMap<String, String>,
    seen: Vec<String>,
}

impl Jar {
    fn take(&mut self, r: &reqwest::Response) {
        for c in set_cookies(r) {
            let (name, value) = c.split(';').next().unwrap().split_once('=').unwrap();
            self.values.insert(name.to_owned(), value.to_owned());
            self.seen.push(c);
        }
    }
    fn header(&self) -> String {
        self.values.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }
    /// The `Set-Cookie` that created `name` (its first, non-removal one).
    fn sent(&self, name: &str) -> String {
        self.seen
            .iter()
            .find(|c| c.starts_with(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no Set-Cookie for {name}: {:?}", self.seen))
            .clone()
    }
}

/// A login of Ada through `web` with the hand-kept jar; returns the jar.
async fn login_with_jar(app: &TestApp) -> Jar {
    let b = browser();
    let mut jar = Jar::default();
    let (_, challenge) = pkce();
    let r = b.get(authorize_url(app, "web", WEB_REDIRECT, &challenge, &[])).send().await.unwrap();
    jar.take(&r);
    let hosted = location(&r);
    let r = b.get(app.url(&hosted)).header("cookie", jar.header()).send().await.unwrap();
    jar.take(&r);
    let page = r.text().await.unwrap();
    let r = b
        .post(app.url(&format!("{hosted}/credentials")))
        .header("cookie", jar.header())
        .form(&[("csrf", hidden(&page, "csrf").as_str()), ("username", "ada@example.com"), ("password", PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "the login completes");
    assert!(location(&r).starts_with(WEB_REDIRECT));
    jar.take(&r);
    jar
}

/// The attributes of a `Set-Cookie`, lower-cased, without the name=value pair.
fn attributes(set_cookie: &str) -> Vec<String> {
    set_cookie.split(';').skip(1).map(|a| a.trim().to_lowercase()).collect()
}

#[tokio::test]
async fn session_cookie_flags_over_http() {
    let app = TestApp::start().await;
    let jar = login_with_jar(&app).await;
    let session = attributes(&jar.sent("gh_session"));
    assert!(session.contains(&"httponly".to_owned()), "{session:?}");
    assert!(session.contains(&"samesite=lax".to_owned()), "{session:?}");
    assert!(session.contains(&"path=/".to_owned()), "{session:?}");
    assert!(!session.contains(&"secure".to_owned()), "plain http cannot carry Secure: {session:?}");
    assert!(!session.iter().any(|a| a.starts_with("domain")), "host-only: {session:?}");
    assert!(!jar.values.keys().any(|k| k.starts_with("__Host-")), "no __Host- prefix without Secure");
}

#[tokio::test]
async fn session_cookie_flags_over_https() {
    let config = crate::harness::config("ES256") + "\n[session]\ncookie_secure = true\n";
    let app = TestApp::with(Options { config: Some(config), ..Default::default() }).await;
    let jar = login_with_jar(&app).await;
    assert!(!jar.values.contains_key("gh_session"), "under https only the __Host- name: {:?}", jar.seen);
    let session = attributes(&jar.sent("__Host-gh_session"));
    for flag in ["secure", "httponly", "samesite=lax", "path=/"] {
        assert!(session.contains(&flag.to_owned()), "{flag}: {session:?}");
    }
    assert!(!session.iter().any(|a| a.starts_with("domain")), "__Host- cookies have no Domain: {session:?}");
    // The binding cookie travels on cross-site POST callbacks (SAML, form_post): None + Secure.
    let binding = attributes(&jar.sent("__Host-gh_browser"));
    for flag in ["secure", "httponly", "samesite=none", "path=/"] {
        assert!(binding.contains(&flag.to_owned()), "{flag}: {binding:?}");
    }
    assert!(!binding.iter().any(|a| a.starts_with("domain")), "{binding:?}");
}

/// A hosted page of a fresh login for `client`, in its own browser: (browser, page path, CSRF).
async fn hosted(app: &TestApp, client: &str, redirect: &str) -> (reqwest::Client, String, String) {
    let b = browser();
    let (_, challenge) = pkce();
    let r = b.get(authorize_url(app, client, redirect, &challenge, &[])).send().await.unwrap();
    let path = location(&r);
    let page = b.get(app.url(&path)).send().await.unwrap().text().await.unwrap();
    let csrf = hidden(&page, "csrf");
    (b, path, csrf)
}

async fn assert_csrf_refused(r: reqwest::Response, what: &str) {
    assert_eq!(r.status(), 400, "{what}");
    assert!(r.headers().get("location").is_none(), "{what}: no redirect");
    assert!(!set_cookies(&r).iter().any(|c| c.contains("gh_session=")), "{what}: no session");
    let page = r.text().await.unwrap();
    assert!(page.contains("<code>csrf</code>"), "{what}: refused for the CSRF token:\n{page}");
}

/// The three bad tokens: none at all, an empty one, and another browser's valid one.
fn bad_tokens(foreign: &str) -> [(&'static str, Option<String>); 3] {
    [("missing", None), ("empty", Some(String::new())), ("foreign", Some(foreign.to_owned()))]
}

fn form(csrf: &Option<String>, rest: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut f: Vec<(String, String)> = rest.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
    if let Some(c) = csrf {
        f.push(("csrf".into(), c.clone()));
    }
    f
}

#[tokio::test]
async fn every_hosted_post_refuses_a_missing_empty_or_foreign_csrf_token() {
    let app = TestApp::start().await;
    // `spa` may use two connections: its hosted page is the chooser (connect + identify).
    let (_, _, foreign) = hosted(&app, "spa", SPA_REDIRECT).await;
    let (b, path, csrf) = hosted(&app, "spa", SPA_REDIRECT).await;
    assert_ne!(csrf, foreign, "each transaction has its own token");
    let post =
        |endpoint: &str, f: Vec<(String, String)>| b.post(app.url(&format!("{path}/{endpoint}"))).form(&f).send();

    for (what, token) in bad_tokens(&foreign) {
        let r = post("identify", form(&token, &[("email", "ada@example.com")])).await.unwrap();
        assert_csrf_refused(r, &format!("identify, {what} token")).await;
        let r = post("connect", form(&token, &[("connection", "users")])).await.unwrap();
        assert_csrf_refused(r, &format!("connect, {what} token")).await;
    }
    // With its own token the chooser works: the identify form answers (not a CSRF refusal),
    // and connect moves on to the credentials form of the chosen connection.
    let r = post("identify", form(&Some(csrf.clone()), &[("email", "ada@example.com")])).await.unwrap();
    let status = r.status();
    let page = r.text().await.unwrap();
    assert!(!page.contains("<code>csrf</code>") && status != 400, "identify with its token: {status}\n{page}");
    let r = post("connect", form(&Some(csrf.clone()), &[("connection", "users")])).await.unwrap();
    assert!(r.status() == 200 || r.status().is_redirection(), "connect with its token: {}", r.status());

    // The credentials form: the right password does not get past a bad token.
    let (_, _, foreign) = hosted(&app, "web", WEB_REDIRECT).await;
    let (b, path, csrf) = hosted(&app, "web", WEB_REDIRECT).await;
    let creds = [("username", "ada@example.com"), ("password", PASSWORD)];
    for (what, token) in bad_tokens(&foreign) {
        let r = b.post(app.url(&format!("{path}/credentials"))).form(&form(&token, &creds)).send().await.unwrap();
        assert_csrf_refused(r, &format!("credentials, {what} token")).await;
    }
    let r = b.post(app.url(&format!("{path}/credentials"))).form(&form(&Some(csrf), &creds)).send().await.unwrap();
    assert_eq!(r.status(), 303, "with its own token the login completes");
    assert!(location(&r).starts_with(WEB_REDIRECT));
}

/// Whether `b` still has a session: a `prompt=none` authorization answers with a code.
async fn signed_in(app: &TestApp, b: &reqwest::Client) -> bool {
    let (_, challenge) = pkce();
    let r = b.get(authorize_url(app, "web", WEB_REDIRECT, &challenge, &[("prompt", "none")])).send().await.unwrap();
    param(&location(&r), "code").is_some()
}

#[tokio::test]
async fn the_logout_confirmation_refuses_a_missing_empty_or_foreign_csrf_token() {
    let app = TestApp::start().await;
    let confirm_page = |b: reqwest::Client| {
        let url = app.url("/logout?client_id=web");
        async move {
            let page = b.get(url).send().await.unwrap().text().await.unwrap();
            assert!(page.contains("name=\"confirm\""), "{page}");
            hidden(&page, "csrf")
        }
    };
    let (other, b) = (browser(), browser());
    for c in [&other, &b] {
        let (_, challenge) = pkce();
        login(&app, c, &authorize_url(&app, "web", WEB_REDIRECT, &challenge, &[]), "ada@example.com", PASSWORD).await;
    }
    let foreign = confirm_page(other.clone()).await;
    let csrf = confirm_page(b.clone()).await;
    assert_ne!(csrf, foreign, "each session has its own token");
    for (what, token) in bad_tokens(&foreign) {
        let f = form(&token, &[("client_id", "web"), ("confirm", "yes")]);
        let r = b.post(app.url("/logout")).form(&f).send().await.unwrap();
        assert_csrf_refused(r, &format!("logout, {what} token")).await;
        assert!(signed_in(&app, &b).await, "logout with a {what} token: the session is alive");
    }
    let f = form(&Some(csrf), &[("client_id", "web"), ("confirm", "yes")]);
    let r = b.post(app.url("/logout")).form(&f).send().await.unwrap();
    assert_eq!(r.status(), 200, "signed out");
    assert!(!signed_in(&app, &b).await, "with its own token the confirmation ends the session");
    assert!(signed_in(&app, &other).await, "and only that browser's");
}

#[tokio::test]
async fn session_cookie_same_site_none_is_a_deployment_choice() {
    let config = crate::harness::config("ES256") + "\n[session]\ncookie_secure = true\ncookie_same_site = \"none\"\n";
    let app = TestApp::with(Options { config: Some(config), ..Default::default() }).await;
    let jar = login_with_jar(&app).await;
    // An iframe on the app's site (silent authentication) sees the session: None, still Secure.
    let session = attributes(&jar.sent("__Host-gh_session"));
    for flag in ["secure", "httponly", "samesite=none", "path=/"] {
        assert!(session.contains(&flag.to_owned()), "{flag}: {session:?}");
    }
    assert!(!session.contains(&"samesite=lax".to_owned()), "{session:?}");
}
