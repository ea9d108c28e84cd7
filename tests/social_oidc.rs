//! Brokered social login against a real OpenID Provider: the npm `oidc-provider` (pinned in
//! tests/peers/oidc-provider, installed by scripts/setup) stands in for Google and for a
//! generic OIDC IdP. Client app -> Gatehouse -> upstream -> Gatehouse -> client -> tokens.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use gatehouse::types::UserId;

use crate::harness::*;

/// One `oidc-provider` process with one client (Gatehouse's connection), killed on drop.
struct Idp {
    child: Child,
    issuer: String,
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const IDP_SECRET: &str = "upstream-client-secret-0123456789";

impl Idp {
    fn start(redirect_uri: &str, users: serde_json::Value) -> Self {
        let peer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/oidc-provider");
        assert!(
            peer.join("node_modules/oidc-provider").is_dir(),
            "the oidc-provider peer is not installed: run ./scripts/setup"
        );
        let mut child = Command::new(node())
            .arg(peer.join("idp.mjs"))
            .env("PORT", "0")
            .env("CLIENT_ID", "gatehouse")
            .env("CLIENT_SECRET", IDP_SECRET)
            .env("REDIRECT_URI", redirect_uri)
            .env("USERS", users.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed: run ./scripts/setup");
        let line = first_line_within(child.stdout.take().unwrap(), PEER_DEADLINE, "oidc-provider");
        let issuer =
            line.strip_prefix("READY ").unwrap_or_else(|| panic!("idp did not start: {line:?}")).trim().to_owned();
        Self { child, issuer }
    }
}

fn alice(email: &str, verified: bool, hd: &str) -> serde_json::Value {
    serde_json::json!({"alice": {
        "sub": "alice-1", "email": email, "email_verified": verified, "name": "Alice Liddell",
        "given_name": "Alice", "family_name": "Liddell", "picture": "https://example.com/alice.png",
        "locale": "en-GB", "hd": hd,
    }})
}

/// A Gatehouse node whose connections point at freshly started providers.
struct Setup {
    app: TestApp,
    _idps: Vec<Idp>,
}

/// `connections`: (id, type, extra TOML lines for the connection, extra option lines, users).
async fn setup(connections: &[(&str, &str, &str, &str, serde_json::Value)]) -> Setup {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let mut idps = Vec::new();
    let mut config = crate::harness::config("ES256");
    let ids: Vec<String> = connections.iter().map(|c| format!("\"{}\"", c.0)).collect();
    config = config.replacen("connections = [\"users\"]", &format!("connections = [\"users\", {}]", ids.join(", ")), 1);
    for (id, kind, conn_extra, opt_extra, users) in connections {
        let idp = Idp::start(&format!("{issuer}/callback/{id}"), users.clone());
        config.push_str(&format!(
            "\n[[connections]]\nid = \"{id}\"\ntype = \"{kind}\"\n{conn_extra}\n[connections.options]\nissuer = \"{}\"\nclient_id = \"gatehouse\"\nclient_secret = \"{IDP_SECRET}\"\n{opt_extra}\n",
            idp.issuer
        ));
        idps.push(idp);
    }
    let app = TestApp::with(Options { config: Some(config), listener: Some(listener), ..Default::default() }).await;
    Setup { app, _idps: idps }
}

/// Follow the browser through Gatehouse and the provider (logging in as `login` when the
/// provider asks) until the redirect to the client, or a page that is not the provider's
/// login form: returns where it stopped, that response's status and its body.
async fn follow(b: &reqwest::Client, start: String, login: &str) -> (String, u16, String) {
    let mut url = start;
    for _ in 0..20 {
        let r = b.get(&url).send().await.unwrap();
        let status = r.status().as_u16();
        if r.status().is_redirection() {
            let next = url::Url::parse(&url).unwrap().join(&location(&r)).unwrap().to_string();
            if next.starts_with(WEB_REDIRECT) {
                return (next, status, String::new());
            }
            url = next;
            continue;
        }
        let page = r.text().await.unwrap();
        let action =
            page.split("action=\"").nth(1).and_then(|a| a.split('"').next()).filter(|a| a.contains("/interaction/"));
        let Some(action) = action else { return (url, status, page) };
        let post = url::Url::parse(&url).unwrap().join(action).unwrap();
        let r = b.post(post.as_str()).form(&[("login", login), ("password", "any")]).send().await.unwrap();
        assert!(r.status().is_redirection(), "provider login: {}", r.status());
        url = post.join(&location(&r)).unwrap().to_string();
    }
    panic!("too many redirects");
}

async fn login_via(s: &Setup, connection: &str, login: &str) -> (String, u16, String) {
    let (_, challenge) = pkce();
    let start = authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[("connection", connection)]);
    follow(&browser(), start, login).await
}

async fn tokens(s: &Setup, connection: &str, login: &str) -> serde_json::Value {
    let b = browser();
    let (verifier, challenge) = pkce();
    let start = authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[("connection", connection)]);
    let (done, _, _) = follow(&b, start, login).await;
    let code = param(&done, "code").unwrap_or_else(|| panic!("no code: {done}"));
    let r = redeem(&s.app, &code, &verifier).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generic_oidc_provider_signs_people_in() {
    let logs = capture_logs();
    let s = setup(&[("okta", "oidc", "", "userinfo = true", alice("alice@example.com", true, "example.com"))]).await;
    let t = tokens(&s, "okta", "alice").await;
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], "oidc|alice-1");
    assert_eq!(id["email"], "alice@example.com");
    assert_eq!(id["email_verified"], true);
    assert_eq!(id["name"], "Alice Liddell");
    assert_eq!(id["given_name"], "Alice");
    assert_eq!(id["picture"], "https://example.com/alice.png");
    assert_eq!(id["locale"], "en-GB");
    assert_eq!(id["nonce"], "n-456", "Gatehouse's own nonce, not the upstream's");
    let info: serde_json::Value = http()
        .get(s.app.url("/userinfo"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(info["family_name"], "Liddell");

    let user = s.app.core.store.users.get(&UserId::parse("oidc|alice-1").unwrap()).await.unwrap().unwrap();
    assert_eq!(user.identities.len(), 1);
    assert_eq!(user.identities[0].connection.as_str(), "okta");
    assert_eq!(user.identities[0].provider, "oidc");
    assert!(!user.identities[0].is_social, "an enterprise OIDC connection");

    // The whole brokered login at trace level: neither client secret (the upstream one went
    // out in a Basic header or a form) nor any token reached the logs, in any encoding.
    let mut secrets = vec![("upstream client secret", IDP_SECRET), ("client secret", WEB_SECRET)];
    for name in ["access_token", "id_token", "refresh_token"] {
        secrets.push((name, t[name].as_str().unwrap()));
    }
    assert_no_secret_in(&logs.text(), &secrets);
    assert_eq!(user.identities[0].profile_data["hd"], "example.com", "every upstream claim is kept");
    assert_eq!(user.logins_count, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn google_with_a_hosted_domain() {
    let s = setup(&[
        ("google", "google", "", "hosted_domains = [\"example.com\"]", alice("alice@example.com", true, "example.com")),
        (
            "google-other",
            "google",
            "",
            "hosted_domains = [\"other.org\"]",
            alice("alice@example.com", true, "example.com"),
        ),
    ])
    .await;
    let t = tokens(&s, "google", "alice").await;
    assert_eq!(claims(t["id_token"].as_str().unwrap())["sub"], "google-oauth2|alice-1");
    let user = s.app.core.store.users.get(&UserId::parse("google-oauth2|alice-1").unwrap()).await.unwrap().unwrap();
    assert!(user.identities[0].is_social);

    // An account of another Workspace domain: refused, and the app hears it (OIDC Core 3.1.2.6).
    let (url, status, _) = login_via(&s, "google-other", "alice").await;
    assert!(url.starts_with(WEB_REDIRECT), "{url}");
    assert_eq!(status, 303);
    assert_eq!(param(&url, "error").as_deref(), Some("access_denied"), "{url}");
    assert!(param(&url, "error_description").is_some(), "{url}");
    assert_eq!(param(&url, "state").as_deref(), Some("st-123"), "{url}");
    assert_eq!(param(&url, "iss").as_deref(), Some(s.app.issuer.as_str()), "{url}");
    assert!(param(&url, "code").is_none(), "{url}");
    assert_eq!(
        s.app
            .core
            .store
            .users
            .get(&UserId::parse("google-oauth2|alice-1").unwrap())
            .await
            .unwrap()
            .unwrap()
            .logins_count,
        1,
        "nothing changed for the refused login"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verified_emails_link_two_connections_to_one_user() {
    let s = setup(&[
        ("okta", "oidc", "link_accounts = true", "", alice("ada@example.com", true, "")),
        ("lax", "oidc", "link_accounts = true", "", alice("ada@example.com", false, "")),
    ])
    .await;
    // Ada first signs in with her password (the static connection: verified email).
    let (verifier, challenge) = pkce();
    let url = authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[("connection", "users")]);
    let done = login(&s.app, &browser(), &url, "ada@example.com", PASSWORD).await;
    let first: serde_json::Value =
        redeem(&s.app, &param(&done, "code").unwrap(), &verifier).await.json().await.unwrap();
    assert_eq!(claims(first["id_token"].as_str().unwrap())["sub"], "auth0|ada");
    // Then through the OIDC provider, which verified the same email: the same user.
    let t = tokens(&s, "okta", "alice").await;
    assert_eq!(claims(t["id_token"].as_str().unwrap())["sub"], "auth0|ada", "linked by verified email");
    let user = s.app.core.store.users.get(&UserId::parse("auth0|ada").unwrap()).await.unwrap().unwrap();
    let connections: Vec<&str> = user.identities.iter().map(|i| i.connection.as_str()).collect();
    assert_eq!(connections, ["users", "okta"], "one user, two identities");
    // A provider that did not verify the email gets a user of its own.
    let t = tokens(&s, "lax", "alice").await;
    assert_eq!(claims(t["id_token"].as_str().unwrap())["sub"], "oidc|alice-1", "an unverified email never links");
    // Unlinking removes the identity from the user. The connection still links by verified
    // email, so its next login links it again, as Auth0's account linking does: an unlink
    // that should last needs linking off (or the email changed upstream).
    let after =
        s.app.core.store.users.unlink(&UserId::parse("auth0|ada").unwrap(), "okta", "alice-1").await.unwrap().unwrap();
    let connections: Vec<&str> = after.identities.iter().map(|i| i.connection.as_str()).collect();
    assert_eq!(connections, ["users"], "unlinked");
    let t = tokens(&s, "okta", "alice").await;
    assert_eq!(claims(t["id_token"].as_str().unwrap())["sub"], "auth0|ada", "linked again by the verified email");
    let ada = s.app.core.store.users.get(&UserId::parse("auth0|ada").unwrap()).await.unwrap().unwrap();
    let connections: Vec<&str> = ada.identities.iter().map(|i| i.connection.as_str()).collect();
    assert_eq!(connections, ["users", "okta"], "one identity per connection, not a duplicate");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_refusals_and_replays_are_rejected_cleanly() {
    let s = setup(&[("okta", "oidc", "", "", alice("alice@example.com", true, ""))]).await;
    // The person refuses at the provider.
    let (url, status, _) = login_via(&s, "okta", "deny").await;
    assert!(url.starts_with(WEB_REDIRECT), "back at the client: {url}");
    assert_eq!(status, 303);
    assert_eq!(param(&url, "error").as_deref(), Some("access_denied"), "{url}");
    assert_eq!(param(&url, "state").as_deref(), Some("st-123"), "{url}");
    assert!(param(&url, "code").is_none(), "{url}");
    assert!(s.app.core.store.users.get(&UserId::parse("oidc|alice-1").unwrap()).await.unwrap().is_none());

    // A callback replayed after it completed, and one with a forged state.
    let b = browser();
    let (_, challenge) = pkce();
    let mut url = authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[("connection", "okta")]);
    let mut callback = None;
    for _ in 0..20 {
        let r = b.get(&url).send().await.unwrap();
        assert!(r.status().is_redirection() || r.status() == 200);
        if r.status() == 200 {
            let page = r.text().await.unwrap();
            let action = page.split("action=\"").nth(1).and_then(|a| a.split('"').next()).unwrap();
            let post = url::Url::parse(&url).unwrap().join(action).unwrap();
            let r = b.post(post.as_str()).form(&[("login", "alice"), ("password", "x")]).send().await.unwrap();
            url = post.join(&location(&r)).unwrap().to_string();
            continue;
        }
        let next = url::Url::parse(&url).unwrap().join(&location(&r)).unwrap().to_string();
        if next.contains("/callback/okta") {
            callback = Some(next);
            break;
        }
        url = next;
    }
    let callback = callback.expect("reached Gatehouse's callback");
    let first = b.get(&callback).send().await.unwrap();
    assert!(location(&first).starts_with(WEB_REDIRECT), "the genuine callback completes");
    let replay = b.get(&callback).send().await.unwrap();
    assert_eq!(replay.status(), 400, "a callback is accepted once");
    assert!(replay.text().await.unwrap().contains("expired"));
    let forged = callback.replace("state=", "state=forged");
    assert_eq!(b.get(&forged).send().await.unwrap().status(), 400);
}
