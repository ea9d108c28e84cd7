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

/// An SPA registered with Auth0's names; `http://frame0.test:3000` is a web origin only.
fn auth0_config() -> String {
    config("RS256")
        + r#"
[[clients]]
client_id = "spa0"
callbacks = ["http://spa0.test", "http://elsewhere0.test/cb"]
allowed_logout_urls = ["http://spa0.test/bye"]
web_origins = ["http://spa0.test", "http://frame0.test:3000"]
connections = ["users"]
"#
}

async fn auth0_app() -> TestApp {
    TestApp::with(Options { config: Some(auth0_config()), trailing_slash: true, ..Default::default() }).await
}

const SPA0: &str = "http://spa0.test";

/// Ada signs in through `spa0` (its redirect URI registered as `callbacks`), with the
/// `auth0Client` parameter Auth0's SDKs add; returns the browser, the code and the verifier.
async fn spa0_login(app: &TestApp) -> (reqwest::Client, String, String) {
    let b = browser();
    let (verifier, challenge) = pkce();
    let url = authorize_url(app, "spa0", SPA0, &challenge, &[("auth0Client", "eyJuYW1lIjoiYXV0aDAtc3BhLWpzIn0=")]);
    let done = login(app, &b, &url, "ada@example.com", PASSWORD).await;
    assert!(done.starts_with(SPA0), "back at the callback: {done}");
    (b, param(&done, "code").expect("a code"), verifier)
}

fn cors_headers(r: &reqwest::Response) -> Vec<(String, String)> {
    r.headers()
        .iter()
        .filter(|(k, _)| k.as_str().starts_with("access-control-"))
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap().to_owned()))
        .collect()
}

fn header_of(r: &reqwest::Response, name: &str) -> Option<String> {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}

#[tokio::test]
async fn oauth_token_is_token_with_cors_for_registered_web_origins_only() {
    let app = auth0_app().await;
    let (_, code, verifier) = spa0_login(&app).await;
    // Preflight as auth0-spa-js's fetch sends it, from a web origin that is no redirect URI's.
    let origin = "http://frame0.test:3000";
    let pre = http()
        .request(reqwest::Method::OPTIONS, app.url("/oauth/token"))
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "auth0-client, content-type")
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "{}", pre.status());
    assert_eq!(header_of(&pre, "access-control-allow-origin").as_deref(), Some(origin));
    let allowed = header_of(&pre, "access-control-allow-headers").unwrap();
    assert!(allowed.contains("auth0-client") && allowed.contains("content-type"), "{allowed}");
    assert!(header_of(&pre, "access-control-allow-methods").unwrap().contains("POST"));
    assert_eq!(header_of(&pre, "access-control-allow-credentials"), None, "no credentials");
    assert_eq!(header_of(&pre, "vary").as_deref(), Some("Origin"));

    let r = http()
        .post(app.url("/oauth/token"))
        .header("origin", origin)
        .header("auth0-client", "eyJuYW1lIjoiYXV0aDAtc3BhLWpzIn0=")
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "spa0"),
            ("code", code.as_str()),
            ("redirect_uri", SPA0),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(header_of(&r, "access-control-allow-origin").as_deref(), Some(origin));
    assert_eq!(header_of(&r, "access-control-allow-credentials"), None);
    assert_eq!(r.status(), 200);
    let t: serde_json::Value = r.json().await.unwrap();
    assert_eq!(claims(t["id_token"].as_str().unwrap())["iss"], format!("{}/", app.issuer));
    assert!(t["refresh_token"].is_string(), "offline_access gives a refresh token: {t}");
    // The same endpoint as /token: the refresh grant works there too, and errors are RFC 6749's.
    let r = http()
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("client_id", "spa0"),
            ("refresh_token", t["refresh_token"].as_str().unwrap()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = http()
        .post(app.url("/oauth/token"))
        .form(&[("grant_type", "authorization_code"), ("client_id", "spa0"), ("code", "nope")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant");
}

#[tokio::test]
async fn cors_preflight_from_an_unregistered_origin_gets_no_allow_headers() {
    let app = auth0_app().await;
    for path in ["/oauth/token", "/token", "/userinfo", "/revoke"] {
        // Registered: the redirect URI's origin and the web origin, exactly.
        for origin in [SPA0, "http://frame0.test:3000"] {
            let r = http()
                .request(reqwest::Method::OPTIONS, app.url(path))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .send()
                .await
                .unwrap();
            assert_eq!(header_of(&r, "access-control-allow-origin").as_deref(), Some(origin), "{path} {origin}");
        }
        // Near misses, each refused: no Access-Control-Allow-* header at all.
        for origin in [
            "http://spa0.test/",
            "http://spa0.test:80",
            "https://spa0.test",
            "http://SPA0.test",
            "http://evil.spa0.test",
            "http://spa0.test.evil",
            "http://frame0.test",
            "http://frame0.test:30000",
            "null",
            "*",
        ] {
            let r = http()
                .request(reqwest::Method::OPTIONS, app.url(path))
                .header("origin", origin)
                .header("access-control-request-method", "POST")
                .header("access-control-request-headers", "auth0-client")
                .send()
                .await
                .unwrap();
            assert_eq!(cors_headers(&r), vec![], "{path} from {origin}");
            let r = http().post(app.url(path)).header("origin", origin).send().await.unwrap();
            assert_eq!(cors_headers(&r), vec![], "{path} answered to {origin}");
        }
    }
    // Discovery and keys are public: any origin, never with credentials.
    for path in ["/.well-known/openid-configuration", "/.well-known/jwks.json"] {
        let r = http().get(app.url(path)).header("origin", "http://anyone.test").send().await.unwrap();
        assert_eq!(header_of(&r, "access-control-allow-origin").as_deref(), Some("*"), "{path}");
        assert_eq!(header_of(&r, "access-control-allow-credentials"), None, "{path}");
    }
}

/// Whether the browser's cookies still open a session: `prompt=none` answers with a code.
async fn has_session(app: &TestApp, b: &reqwest::Client) -> bool {
    let (_, challenge) = pkce();
    let r = b.get(authorize_url(app, "spa0", SPA0, &challenge, &[("prompt", "none")])).send().await.unwrap();
    param(&location(&r), "code").is_some()
}

#[tokio::test]
async fn v2_logout_ends_the_session_and_returns_only_to_an_allowed_logout_url() {
    let app = auth0_app().await;
    let (b, _, _) = spa0_login(&app).await;
    assert!(has_session(&app, &b).await);
    let r = b
        .get(app.url("/v2/logout"))
        .query(&[("client_id", "spa0"), ("returnTo", "http://spa0.test/bye"), ("auth0Client", "eyJ9")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    assert_eq!(location(&r), "http://spa0.test/bye");
    assert!(!has_session(&app, &b).await, "the session is over");

    // Near misses of the allowed URL, another client's, none at all: the session still
    // ends, and the browser lands on the signed-out page, never at the unlisted URL.
    for (client, return_to) in [
        (Some("spa0"), "http://spa0.test/bye/"),
        (Some("spa0"), "http://spa0.test/bye?next=http://evil.test"),
        (Some("spa0"), "http://spa0.test/byebye"),
        (Some("spa0"), "http://spa0.test"),
        (Some("spa0"), "https://spa0.test/bye"),
        (Some("spa0"), "http://evil.test/"),
        (Some("spa0"), "http://app.test/bye"),
        (Some("web"), "http://spa0.test/bye"),
        (Some("nobody"), "http://spa0.test/bye"),
        (None, "http://spa0.test/bye"),
    ] {
        let (b, _, _) = spa0_login(&app).await;
        let mut q = vec![("returnTo", return_to)];
        q.extend(client.map(|c| ("client_id", c)));
        let r = b.get(app.url("/v2/logout")).query(&q).send().await.unwrap();
        assert_eq!(r.status(), 200, "{client:?} {return_to}");
        assert!(r.headers().get("location").is_none(), "{client:?} {return_to}");
        let page = r.text().await.unwrap();
        assert!(!page.contains(return_to), "the unlisted URL is not even linked: {return_to}");
        assert!(!has_session(&app, &b).await, "{client:?} {return_to}: the session still ends");
    }
    // Without returnTo, and without any session: the signed-out page.
    let r = browser().get(app.url("/v2/logout?client_id=spa0")).send().await.unwrap();
    assert_eq!(r.status(), 200);
}

/// `/authorize` with `response_mode=web_message`, as auth0-spa-js's hidden iframe asks.
fn web_message_url(app: &TestApp, redirect: &str, extra: &[(&str, &str)]) -> String {
    let (_, challenge) = pkce();
    let mut params = vec![("response_mode", "web_message"), ("prompt", "none")];
    params.extend_from_slice(extra);
    authorize_url(app, "spa0", redirect, &challenge, &params)
}

fn frame_ancestors(r: &reqwest::Response) -> String {
    let csp = header_of(r, "content-security-policy").expect("a CSP");
    csp.split(';').map(str::trim).find(|d| d.starts_with("frame-ancestors")).unwrap_or_default().to_owned()
}

#[tokio::test]
async fn web_message_posts_the_response_to_the_registered_origin_only() {
    let app = auth0_app().await;
    let (b, _, _) = spa0_login(&app).await;
    let r = b.get(web_message_url(&app, SPA0, &[])).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(frame_ancestors(&r), "frame-ancestors http://spa0.test", "only the registered origin may frame it");
    assert_eq!(header_of(&r, "x-frame-options"), None, "DENY would override frame-ancestors");
    let page = r.text().await.unwrap();
    // The target origin, HTML-escaped in its attribute (the browser reads it back unescaped).
    assert!(page.contains(r#"data-origin="http:&#x2f;&#x2f;spa0.test""#), "{page}");
    assert!(!hidden(&page, "code").is_empty());
    assert_eq!(hidden(&page, "state"), "st-123");
    assert!(page.contains("\"authorization_response\""), "{page}");
    assert!(!page.contains("\"*\""), "never posted to any origin");

    // No session: login_required, posted the same way.
    let r = browser().get(web_message_url(&app, SPA0, &[])).send().await.unwrap();
    assert_eq!(frame_ancestors(&r), "frame-ancestors http://spa0.test");
    let page = r.text().await.unwrap();
    assert_eq!(hidden(&page, "error"), "login_required");
    assert_eq!(hidden(&page, "state"), "st-123");
    assert!(!hidden(&page, "error_description").is_empty());

    // Not silent: web_message shows no page, so it says so to the registered origin.
    let r = b.get(web_message_url(&app, SPA0, &[("prompt", "login")])).send().await.unwrap();
    let page = r.text().await.unwrap();
    assert_eq!(hidden(&page, "error"), "invalid_request", "{page}");

    // A registered redirect URI whose origin is not a web origin: an error page nobody may
    // frame, with nothing to post.
    let r = b.get(web_message_url(&app, "http://elsewhere0.test/cb", &[])).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(frame_ancestors(&r), "frame-ancestors 'none'");
    assert_eq!(header_of(&r, "x-frame-options").as_deref(), Some("DENY"));
    let page = r.text().await.unwrap();
    assert!(!page.contains("postMessage") && !page.contains("name=\"code\""), "{page}");

    // Every other page still refuses framing: the hosted login page, the signed-out page.
    let (_, challenge) = pkce();
    let r = browser().get(authorize_url(&app, "spa0", SPA0, &challenge, &[])).send().await.unwrap();
    let hosted = browser().get(app.url(&location(&r))).send().await.unwrap();
    assert_eq!(frame_ancestors(&hosted), "frame-ancestors 'none'");
    let out = browser().get(app.url("/v2/logout")).send().await.unwrap();
    assert_eq!(frame_ancestors(&out), "frame-ancestors 'none'");
    assert_eq!(header_of(&out, "x-frame-options").as_deref(), Some("DENY"));

    // Discovery says so.
    let d: serde_json::Value = get(app.url("/.well-known/openid-configuration")).await.unwrap().json().await.unwrap();
    assert!(d["response_modes_supported"].as_array().unwrap().contains(&"web_message".into()));
}

/// A peer of tests/peers/auth0 (`spa.mjs` or `express.mjs`), killed on drop. It prints
/// `READY <port> <port>` once both its servers listen.
pub(crate) struct Peer {
    child: std::process::Child,
    pub ports: (u16, u16),
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Peer {
    pub(crate) fn start(script: &str, env: &[(&str, &str)]) -> Self {
        let peer = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/auth0");
        assert!(
            peer.join("node_modules/@auth0/auth0-spa-js").is_dir(),
            "the auth0 peer is not installed: run ./scripts/setup"
        );
        let mut cmd = std::process::Command::new(node());
        cmd.arg(peer.join(script)).stdout(std::process::Stdio::piped()).stderr(std::process::Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("node must be installed: run ./scripts/setup");
        let line = first_line_within(child.stdout.take().unwrap(), PEER_DEADLINE, script);
        let ports: Vec<u16> = match line.strip_prefix("READY ") {
            Some(rest) => rest.split_whitespace().filter_map(|p| p.parse().ok()).collect(),
            None => Vec::new(),
        };
        // The guard exists from here on, so a failed start still kills the child.
        let mut guard = Self { child, ports: (0, 0) };
        assert_eq!(ports.len(), 2, "{script} did not start: {line:?}");
        guard.ports = (ports[0], ports[1]);
        guard
    }
}
