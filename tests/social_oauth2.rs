//! Social OAuth 2.0 logins end to end over real HTTP: Facebook Login (the dialog, the code
//! exchange, the Graph API `/me` with `appsecret_proof`) and a generic `oauth2` connection,
//! against a local server that plays Facebook and checks everything Gatehouse sends it.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse::tokens::jwt::{Expect, verify};
use gatehouse::types::{UserId, random_token};
use url::Url;

use crate::harness::*;

/// The Facebook app: its id and its app secret.
const APP_ID: &str = "1234567890";
const APP_SECRET: &str = "fb-app-secret-0123456789abcdef";
/// The Graph API version the `facebook` connector asks for by default.
const GRAPH: &str = "/v19.0";
/// The fields the `facebook` connector asks `/me` for by default.
const FB_FIELDS: &str = "id,name,email,first_name,last_name,picture";
/// The fields the `acme` connection asks for (its `profile_params`).
const ACME_FIELDS: &str = "id,first_name,email,picture";

/// How the fake provider behaves.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Mode {
    /// Like Facebook: the person consents, every check applies.
    #[default]
    Normal,
    /// The person clicks "Cancel" in the dialog.
    Deny,
    /// The token endpoint skips the app secret check (so `/me` alone judges the secret,
    /// through `appsecret_proof`).
    LaxTokenSecret,
    /// `/me` answers more than 1 MiB, with a `Content-Length`.
    HugeProfile,
    /// `/me` answers more than 1 MiB, chunked (no `Content-Length`).
    HugeProfileChunked,
    /// The token endpoint answers only after this long.
    SlowToken(Duration),
}

/// What the fake provider saw, for the tests to assert.
#[derive(Debug, Clone, Default)]
struct Seen {
    /// Dialog requests that passed every check, and their `code_challenge_method`s.
    dialogs: usize,
    challenge_methods: Vec<String>,
    /// Codes exchanged for an access token, and how many of those exchanges proved the PKCE
    /// verifier against the dialog's challenge.
    exchanges: usize,
    pkce_verified: usize,
    /// How the app authenticated at the token endpoint: "post" (in the form) or "basic".
    client_auth: Vec<String>,
    /// Access tokens issued.
    issued: Vec<String>,
    /// `/me` requests answered, how many carried a verified `appsecret_proof`, and the
    /// `fields` each asked for.
    profiles: usize,
    proofs_verified: usize,
    fields: Vec<Option<String>>,
    /// Every request refused, as "endpoint: what was wrong".
    refusals: Vec<String>,
}

/// A code the dialog issued and the token endpoint has not redeemed yet.
struct Pending {
    redirect_uri: String,
    challenge: String,
}

#[derive(Default)]
struct Inner {
    mode: Mode,
    /// The app's "Valid OAuth Redirect URIs".
    redirect_uris: Vec<String>,
    codes: HashMap<String, Pending>,
    tokens: Vec<String>,
    seen: Seen,
}

type Shared = Arc<Mutex<Inner>>;

/// A local server playing Facebook (the login dialog and the Graph API) on 127.0.0.1, on its
/// own thread with its own actix system; stopped on drop.
struct FakeFacebook {
    base: String,
    shared: Shared,
    _server: ServerThread,
}

impl FakeFacebook {
    fn start(mode: Mode) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let base = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let shared: Shared = Arc::new(Mutex::new(Inner { mode, ..Default::default() }));
        let data = web::Data::new(shared.clone());
        let server = serve_on_thread(listener, move |cfg| {
            cfg.app_data(data.clone())
                .route(&format!("{GRAPH}/dialog/oauth"), web::get().to(dialog))
                .route(&format!("{GRAPH}/oauth/access_token"), web::post().to(access_token))
                .route(&format!("{GRAPH}/me"), web::get().to(me))
                .default_service(web::to(unexpected));
        });
        Self { base, shared, _server: server }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Register a redirect URI with the app, as its developer would in the app dashboard.
    fn allow_redirect(&self, uri: String) {
        self.shared.lock().unwrap().redirect_uris.push(uri);
    }

    fn seen(&self) -> Seen {
        self.shared.lock().unwrap().seen.clone()
    }
}

fn pairs(raw: &[u8]) -> Vec<(String, String)> {
    url::form_urlencoded::parse(raw).into_owned().collect()
}

/// The value of `name`, if it occurs exactly once.
fn one<'a>(p: &'a [(String, String)], name: &str) -> Option<&'a str> {
    let mut found = p.iter().filter(|(k, _)| k == name);
    match (found.next(), found.next()) {
        (Some((_, v)), None) => Some(v.as_str()),
        _ => None,
    }
}

fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| s.get(i..i + 2).and_then(|b| u8::from_str_radix(b, 16).ok())).collect()
}

/// Facebook's check of `appsecret_proof`: HMAC-SHA256 over the access token, keyed by the
/// app secret, hex; compared in constant time by aws-lc.
fn proof_is_valid(app_secret: &str, access_token: &str, proof: &str) -> bool {
    use aws_lc_rs::hmac;
    let Some(tag) = hex_decode(proof) else { return false };
    let key = hmac::Key::new(hmac::HMAC_SHA256, app_secret.as_bytes());
    hmac::verify(&key, access_token.as_bytes(), &tag).is_ok()
}

/// RFC 7636 S256.
fn s256(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()))
}

/// Facebook's error JSON, with a 400.
fn graph_error(message: &str, kind: &str, code: u32) -> HttpResponse {
    HttpResponse::BadRequest().json(serde_json::json!({
        "error": { "message": message, "type": kind, "code": code, "fbtrace_id": "AbCdEfGh" }
    }))
}

fn refuse(shared: &Shared, what: &str) {
    shared.lock().unwrap().seen.refusals.push(what.to_owned());
}

async fn unexpected(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    refuse(&shared, &format!("unexpected {} {}", req.method(), req.path()));
    HttpResponse::NotFound().finish()
}

/// `GET /v19.0/dialog/oauth`: the login dialog. The person is already signed in to Facebook
/// and consents (or cancels, in `Deny` mode) at once.
async fn dialog(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let q = pairs(req.query_string().as_bytes());
    let mut inner = shared.lock().unwrap();
    let problem = {
        let scopes: Vec<&str> = one(&q, "scope").map(|s| s.split(',').collect()).unwrap_or_default();
        let redirect_ok = one(&q, "redirect_uri").is_some_and(|r| inner.redirect_uris.iter().any(|u| u == r));
        if one(&q, "client_id") != Some(APP_ID) {
            Some("client_id")
        } else if !redirect_ok {
            Some("redirect_uri")
        } else if one(&q, "response_type") != Some("code") {
            Some("response_type")
        } else if one(&q, "state").is_none_or(str::is_empty) {
            Some("state")
        } else if scopes.len() != 2 || !scopes.contains(&"email") || !scopes.contains(&"public_profile") {
            Some("scope")
        } else if one(&q, "code_challenge").is_none_or(|c| c.len() != 43) {
            Some("code_challenge")
        } else if one(&q, "code_challenge_method") != Some("S256") {
            Some("code_challenge_method")
        } else {
            None
        }
    };
    if let Some(p) = problem {
        inner.seen.refusals.push(format!("dialog: {p}"));
        return HttpResponse::BadRequest().body(format!("dialog refused: {p} in {}", req.query_string()));
    }
    let (redirect_uri, state) = (one(&q, "redirect_uri").unwrap(), one(&q, "state").unwrap());
    inner.seen.dialogs += 1;
    inner.seen.challenge_methods.push(one(&q, "code_challenge_method").unwrap().to_owned());
    let mut back = Url::parse(redirect_uri).unwrap();
    if inner.mode == Mode::Deny {
        back.query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("error_reason", "user_denied")
            .append_pair("error_description", "Permissions error")
            .append_pair("state", state);
    } else {
        let code = random_token(24);
        let challenge = one(&q, "code_challenge").unwrap().to_owned();
        inner.codes.insert(code.clone(), Pending { redirect_uri: redirect_uri.to_owned(), challenge });
        back.query_pairs_mut().append_pair("code", &code).append_pair("state", state);
    }
    // Facebook appends this fragment to every redirect; browsers keep it to themselves.
    back.set_fragment(Some("_=_"));
    HttpResponse::Found().insert_header((header::LOCATION, back.to_string())).finish()
}

/// `POST /v19.0/oauth/access_token`: the code exchange.
async fn access_token(req: HttpRequest, shared: web::Data<Shared>, body: web::Bytes) -> HttpResponse {
    let mode = shared.lock().unwrap().mode;
    if let Mode::SlowToken(delay) = mode {
        actix_web::rt::time::sleep(delay).await;
    }
    let form_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !form_type.starts_with("application/x-www-form-urlencoded") {
        refuse(&shared, "token: content type");
        return graph_error("Unsupported post request.", "GraphMethodException", 100);
    }
    if req.query_string().contains("secret") || req.query_string().contains("code") {
        refuse(&shared, "token: credentials in the query");
        return graph_error("Credentials belong in the body.", "OAuthException", 100);
    }
    let f = pairs(&body);
    let mut inner = shared.lock().unwrap();
    let auth = if req.headers().contains_key(header::AUTHORIZATION) { "basic" } else { "post" };
    inner.seen.client_auth.push(auth.to_owned());
    if one(&f, "client_id") != Some(APP_ID) {
        inner.seen.refusals.push("token: client_id".into());
        return graph_error("Error validating application. Invalid application ID.", "OAuthException", 101);
    }
    if mode != Mode::LaxTokenSecret && one(&f, "client_secret") != Some(APP_SECRET) {
        inner.seen.refusals.push("token: client_secret".into());
        return graph_error("Error validating client secret.", "OAuthException", 1);
    }
    if one(&f, "grant_type").is_some_and(|g| g != "authorization_code") {
        inner.seen.refusals.push("token: grant_type".into());
        return graph_error("Unsupported grant_type.", "OAuthException", 100);
    }
    // Single use: the code is gone whatever happens next.
    let Some(pending) = one(&f, "code").and_then(|c| inner.codes.remove(c)) else {
        inner.seen.refusals.push("token: code".into());
        return graph_error("This authorization code has been used.", "OAuthException", 100);
    };
    if one(&f, "redirect_uri") != Some(pending.redirect_uri.as_str()) {
        inner.seen.refusals.push("token: redirect_uri".into());
        return graph_error(
            "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request",
            "OAuthException",
            100,
        );
    }
    if one(&f, "code_verifier").is_none_or(|v| v.len() < 43 || v.len() > 128 || s256(v) != pending.challenge) {
        inner.seen.refusals.push("token: code_verifier".into());
        return graph_error("Invalid code verifier.", "OAuthException", 100);
    }
    inner.seen.pkce_verified += 1;
    inner.seen.exchanges += 1;
    let token = format!("EAAB{}", random_token(32));
    inner.tokens.push(token.clone());
    inner.seen.issued.push(token.clone());
    HttpResponse::Ok().json(serde_json::json!({
        "access_token": token, "token_type": "bearer", "expires_in": 5_183_944
    }))
}

fn profile() -> serde_json::Value {
    serde_json::json!({
        "id": "10001",
        "name": "Zuck Test",
        "email": "zuck@example.com",
        "first_name": "Zuck",
        "last_name": "Test",
        "picture": { "data": { "url": "https://example.com/z.png" } }
    })
}

/// A profile of more than 1 MiB (Gatehouse's default limit on an upstream response).
fn huge_profile() -> String {
    format!(r#"{{"id":"10001","name":"Zuck Test","padding":"{}"}}"#, "x".repeat(1024 * 1024 + 64 * 1024))
}

/// `GET /v19.0/me`: the Graph API's profile of the token's user, as asked by `fields`.
async fn me(req: HttpRequest, shared: web::Data<Shared>) -> HttpResponse {
    let q = pairs(req.query_string().as_bytes());
    let mut inner = shared.lock().unwrap();
    if q.iter().any(|(k, _)| k == "access_token") {
        inner.seen.refusals.push("me: token in the query".into());
        return graph_error("The access token belongs in the Authorization header.", "OAuthException", 190);
    }
    let bearer =
        req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    let Some(token) = bearer.filter(|t| inner.tokens.iter().any(|k| k == t)).map(str::to_owned) else {
        inner.seen.refusals.push("me: access token".into());
        return graph_error("Invalid OAuth access token - Cannot parse access token", "OAuthException", 190);
    };
    if !one(&q, "appsecret_proof").is_some_and(|p| proof_is_valid(APP_SECRET, &token, p)) {
        inner.seen.refusals.push("me: appsecret_proof".into());
        return graph_error("Invalid appsecret_proof provided in the API argument", "GraphMethodException", 100);
    }
    inner.seen.proofs_verified += 1;
    inner.seen.profiles += 1;
    let fields = one(&q, "fields").map(str::to_owned);
    inner.seen.fields.push(fields.clone());
    match inner.mode {
        Mode::HugeProfile => return HttpResponse::Ok().content_type("application/json").body(huge_profile()),
        Mode::HugeProfileChunked => {
            let body = web::Bytes::from(huge_profile());
            let chunks: Vec<Result<web::Bytes, actix_web::Error>> = (0..body.len())
                .step_by(64 * 1024)
                .map(|i| Ok(body.slice(i..(i + 64 * 1024).min(body.len()))))
                .collect();
            return HttpResponse::Ok().content_type("application/json").streaming(futures_util::stream::iter(chunks));
        }
        _ => {}
    }
    // Only the fields asked for; without `fields`, the Graph API's default: id and name.
    let wanted = fields.unwrap_or_else(|| "id,name".into());
    let all = profile();
    let answer: serde_json::Map<String, serde_json::Value> =
        wanted.split(',').filter_map(|f| all.get(f).map(|v| (f.to_owned(), v.clone()))).collect();
    HttpResponse::Ok().json(answer)
}

/// Gatehouse with the `web` client, a `facebook` connection and an `acme` connection (the
/// generic `oauth2` connector), both pointed at `fake`.
fn gatehouse_config(fake: &FakeFacebook, facebook_secret: &str, timeout_ms: u64) -> String {
    let base = &fake.base;
    format!(
        r#"
issuer = "{{issuer}}"
[keys]
algorithm = "ES256"
[tokens]
code_ttl = 30

[[clients]]
client_id = "web"
name = "Web App"
client_secret = "{WEB_SECRET}"
redirect_uris = ["{WEB_REDIRECT}"]
connections = ["facebook", "acme"]

[[connections]]
id = "facebook"
type = "facebook"
display_name = "Facebook"
[connections.options]
client_id = "{APP_ID}"
client_secret = "{facebook_secret}"
dialog_base_url = "{base}"
graph_base_url = "{base}"
timeout_ms = {timeout_ms}

[[connections]]
id = "acme"
type = "oauth2"
display_name = "Acme"
[connections.options]
strategy = "acme"
authorize_url = "{base}{GRAPH}/dialog/oauth"
token_url = "{base}{GRAPH}/oauth/access_token"
profile_url = "{base}{GRAPH}/me"
client_id = "{APP_ID}"
client_secret = "{APP_SECRET}"
client_auth = "client_secret_post"
scopes = ["email", "public_profile"]
scope_separator = ","
appsecret_proof = true
trust_email = false
timeout_ms = {timeout_ms}
[connections.options.profile_params]
fields = "{ACME_FIELDS}"
[connections.options.mapping]
user_id = "/id"
nickname = "/first_name"
picture = "/picture/data/url"
email = "/email"
"#
    )
}

/// A fake Facebook in `mode` and a Gatehouse node using it, its callbacks registered.
async fn setup(mode: Mode, facebook_secret: &str, timeout_ms: u64) -> (FakeFacebook, TestApp) {
    let fake = FakeFacebook::start(mode);
    let config = gatehouse_config(&fake, facebook_secret, timeout_ms);
    let app = TestApp::with(Options { config: Some(config), ..Default::default() }).await;
    for connection in ["facebook", "acme"] {
        fake.allow_redirect(app.url(&format!("/callback/{connection}")));
    }
    (fake, app)
}

/// The client sends the browser to `/authorize` for `connection`; Gatehouse sends it on to
/// the dialog, which sends it back. Returns the callback URL the provider redirected to.
async fn through_dialog(
    app: &TestApp,
    fake: &FakeFacebook,
    b: &reqwest::Client,
    connection: &str,
    challenge: &str,
) -> String {
    let r =
        b.get(authorize_url(app, "web", WEB_REDIRECT, challenge, &[("connection", connection)])).send().await.unwrap();
    assert_eq!(r.status(), 303, "authorize should send the browser to the provider");
    let dialog = location(&r);
    assert!(dialog.starts_with(&fake.url(&format!("{GRAPH}/dialog/oauth?"))), "{dialog}");
    let r = b.get(&dialog).send().await.unwrap();
    let status = r.status();
    let callback = r.headers().get(header::LOCATION.as_str()).map(|l| l.to_str().unwrap().to_owned());
    assert_eq!(status, 302, "the dialog refused: {}", r.text().await.unwrap_or_default());
    let callback = callback.unwrap();
    assert!(callback.starts_with(&app.url(&format!("/callback/{connection}?"))), "{callback}");
    assert_eq!(param(&callback, "state"), param(&dialog, "state"), "the provider returns the state");
    callback
}

/// A finished login at the client: the redirect to `http://app.test/cb` with the code.
async fn expect_code(app: &TestApp, r: reqwest::Response) -> String {
    assert_eq!(r.status(), 303, "the callback should complete the login");
    let done = location(&r);
    assert!(done.starts_with(&format!("{WEB_REDIRECT}?")), "{done}");
    assert_eq!(param(&done, "state").as_deref(), Some("st-123"));
    assert_eq!(param(&done, "iss").as_deref(), Some(app.issuer.as_str()));
    param(&done, "code").expect("a code")
}

/// An error page: HTML with `status`, mentioning `needle`; no redirect, no cookie, no code.
async fn assert_error_page(r: reqwest::Response, status: u16, needle: &str) -> String {
    assert_eq!(r.status(), status);
    assert!(r.headers().get("location").is_none(), "an error page never redirects");
    assert!(r.headers().get("set-cookie").is_none(), "no session is set");
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("text/html"));
    let body = r.text().await.unwrap();
    assert!(body.contains(needle), "the page should mention {needle}:\n{body}");
    assert!(!body.contains("code="), "no code on an error page:\n{body}");
    body
}

async fn user(app: &TestApp, id: &str) -> Option<gatehouse::store::UserRecord> {
    app.core.store.users.get(&UserId::parse(id).unwrap()).await.unwrap()
}

#[tokio::test]
async fn facebook_login_end_to_end_with_pkce_and_appsecret_proof() {
    let logs = capture_logs();
    let (fake, app) = setup(Mode::Normal, APP_SECRET, 10_000).await;
    let b = browser();
    let (verifier, challenge) = pkce();
    let callback = through_dialog(&app, &fake, &b, "facebook", &challenge).await;
    let r = b.get(&callback).send().await.unwrap();
    let cookies: Vec<String> =
        r.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).collect();
    assert!(cookies.iter().any(|c| c.starts_with("gh_session=")), "a session is set: {cookies:?}");
    let code = expect_code(&app, r).await;

    let r = redeem(&app, &code, &verifier).await;
    assert_eq!(r.status(), 200);
    let raw = r.text().await.unwrap();
    let seen = fake.seen();
    assert_eq!(seen.issued.len(), 1);
    assert!(!raw.contains(&seen.issued[0]), "Facebook's access token never reaches the client");
    let t: serde_json::Value = serde_json::from_str(&raw).unwrap();
    let id: serde_json::Value = verify(
        &app.core.keys.ring(),
        t["id_token"].as_str().unwrap(),
        &Expect { issuer: &app.issuer, typ: None, audience: Some(&["web"]) },
    )
    .unwrap();
    assert_eq!(id["sub"], "facebook|10001");
    assert_eq!(id["nonce"], "n-456");
    assert_eq!(id["email"], "zuck@example.com");
    assert_eq!(id["email_verified"], true, "Facebook returns confirmed emails only");
    assert_eq!(id["name"], "Zuck Test");
    assert_eq!(id["given_name"], "Zuck");
    assert_eq!(id["family_name"], "Test");
    assert_eq!(id["picture"], "https://example.com/z.png");

    let info: serde_json::Value = crate::harness::http()
        .get(app.url("/userinfo"))
        .bearer_auth(t["access_token"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for claim in ["sub", "email", "email_verified", "name", "given_name", "family_name", "picture"] {
        assert_eq!(info[claim], id[claim], "/userinfo agrees on {claim}");
    }

    let u = user(&app, "facebook|10001").await.expect("the user was created");
    assert_eq!(u.identities.len(), 1);
    let identity = &u.identities[0];
    assert_eq!((identity.connection.as_str(), identity.provider.as_str()), ("facebook", "facebook"));
    assert_eq!(identity.user_id, "10001");
    assert!(identity.is_social);
    assert_eq!(identity.profile_data["first_name"], "Zuck");

    assert!(seen.refusals.is_empty(), "Facebook refused nothing: {:?}", seen.refusals);
    assert_eq!(seen.dialogs, 1);
    assert_eq!(seen.challenge_methods, ["S256"], "PKCE with S256 at the dialog");
    assert_eq!((seen.exchanges, seen.pkce_verified), (1, 1), "the code exchange proved the PKCE verifier");
    assert_eq!(seen.client_auth, ["post"], "the app secret goes in the form (client_secret_post)");
    assert_eq!((seen.profiles, seen.proofs_verified), (1, 1), "/me carried a valid appsecret_proof");
    assert_eq!(seen.fields, [Some(FB_FIELDS.to_owned())]);

    // The whole login at trace level: neither secret, nor Facebook's code or token, nor ours,
    // reached the logs in any encoding.
    let upstream_code = param(&callback, "code").expect("Facebook's code on the callback");
    let mut secrets = vec![
        ("Facebook app secret", APP_SECRET),
        ("client secret", WEB_SECRET),
        ("Facebook's code", upstream_code.as_str()),
        ("Facebook's access token", seen.issued[0].as_str()),
        ("code", code.as_str()),
        ("PKCE verifier", verifier.as_str()),
    ];
    for name in ["access_token", "id_token", "refresh_token"] {
        secrets.push((name, t[name].as_str().unwrap()));
    }
    assert_no_secret_in(&logs.text(), &secrets);
}

#[tokio::test]
async fn a_wrong_app_secret_fails_the_login_and_creates_nothing() {
    // Facebook refuses the code exchange.
    let (fake, app) = setup(Mode::Normal, "not-the-app-secret-0123456789", 10_000).await;
    let b = browser();
    let (_, challenge) = pkce();
    let callback = through_dialog(&app, &fake, &b, "facebook", &challenge).await;
    assert_error_page(b.get(&callback).send().await.unwrap(), 400, "Sign-in failed").await;
    let seen = fake.seen();
    assert_eq!(seen.refusals, ["token: client_secret"]);
    assert_eq!((seen.exchanges, seen.profiles), (0, 0));
    assert!(user(&app, "facebook|10001").await.is_none(), "no user");

    // Were the code exchange to let it through, the Graph API refuses the proof signed with it.
    let (fake, app) = setup(Mode::LaxTokenSecret, "not-the-app-secret-0123456789", 10_000).await;
    let b = browser();
    let (_, challenge) = pkce();
    let callback = through_dialog(&app, &fake, &b, "facebook", &challenge).await;
    assert_error_page(b.get(&callback).send().await.unwrap(), 400, "Sign-in failed").await;
    let seen = fake.seen();
    assert_eq!(seen.exchanges, 1);
    assert_eq!(seen.refusals, ["me: appsecret_proof"], "the wrong secret's proof was refused");
    assert_eq!((seen.profiles, seen.proofs_verified), (0, 0));
    assert!(user(&app, "facebook|10001").await.is_none(), "no user");
}

#[tokio::test]
async fn an_upstream_denial_goes_back_to_the_client_as_access_denied() {
    let (fake, app) = setup(Mode::Deny, APP_SECRET, 10_000).await;
    let b = browser();
    let (_, challenge) = pkce();
    let callback = through_dialog(&app, &fake, &b, "facebook", &challenge).await;
    assert_eq!(param(&callback, "error").as_deref(), Some("access_denied"));
    assert!(param(&callback, "code").is_none());
    // OIDC Core 3.1.2.6: the client's redirect URI is trusted, so the refusal goes there.
    let r = b.get(&callback).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let back = location(&r);
    assert!(back.starts_with(&format!("{WEB_REDIRECT}?")), "{back}");
    assert_eq!(param(&back, "error").as_deref(), Some("access_denied"));
    assert!(param(&back, "error_description").is_some(), "{back}");
    assert_eq!(param(&back, "state").as_deref(), Some("st-123"), "the client's state, not the upstream's");
    assert_eq!(param(&back, "iss").as_deref(), Some(app.issuer.as_str()));
    assert!(param(&back, "code").is_none());
    let seen = fake.seen();
    assert_eq!((seen.exchanges, seen.profiles), (0, 0));
    assert!(seen.refusals.is_empty(), "{:?}", seen.refusals);
    assert!(user(&app, "facebook|10001").await.is_none(), "no user");
}

#[tokio::test]
async fn replayed_and_forged_callbacks_get_an_expired_page() {
    let (fake, app) = setup(Mode::Normal, APP_SECRET, 10_000).await;
    let b = browser();
    let (_, challenge) = pkce();
    let callback = through_dialog(&app, &fake, &b, "facebook", &challenge).await;
    expect_code(&app, b.get(&callback).send().await.unwrap()).await;
    assert_error_page(b.get(&callback).send().await.unwrap(), 400, "expired").await;
    assert_eq!(fake.seen().exchanges, 1, "the replay never reached Facebook");
    assert!(fake.seen().refusals.is_empty());

    // A callback whose state is no transaction of Gatehouse's, or no state at all (in a
    // fresh browser: the first one's session would answer /authorize at once).
    let b = browser();
    let (verifier, challenge) = pkce();
    let callback = through_dialog(&app, &fake, &b, "facebook", &challenge).await;
    let mut forged = Url::parse(&callback).unwrap();
    let code = param(&callback, "code").unwrap();
    forged.query_pairs_mut().clear().append_pair("code", &code).append_pair("state", &random_token(24));
    assert_error_page(b.get(forged.as_str()).send().await.unwrap(), 400, "expired").await;
    let no_state = app.url(&format!("/callback/facebook?code={code}"));
    assert_error_page(b.get(&no_state).send().await.unwrap(), 400, "expired").await;
    assert_eq!(fake.seen().exchanges, 1, "forged callbacks never reach Facebook");
    // The genuine login is unharmed by them.
    let code = expect_code(&app, b.get(&callback).send().await.unwrap()).await;
    assert_eq!(redeem(&app, &code, &verifier).await.status(), 200);
    assert_eq!(fake.seen().exchanges, 2);
}

#[tokio::test]
async fn a_new_oauth2_social_provider_is_configuration_only() {
    let (fake, app) = setup(Mode::Normal, APP_SECRET, 10_000).await;
    let b = browser();
    let (verifier, challenge) = pkce();
    let callback = through_dialog(&app, &fake, &b, "acme", &challenge).await;
    let code = expect_code(&app, b.get(&callback).send().await.unwrap()).await;
    let t: serde_json::Value = redeem(&app, &code, &verifier).await.json().await.unwrap();
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], "acme|10001");
    assert_eq!(id["email"], "zuck@example.com");
    assert_eq!(id["email_verified"], false, "trust_email = false and no verification flag mapped");
    assert_eq!(id["nickname"], "Zuck");
    assert_eq!(id["picture"], "https://example.com/z.png");
    assert!(id.get("given_name").is_none(), "not mapped");

    let seen = fake.seen();
    assert!(seen.refusals.is_empty(), "{:?}", seen.refusals);
    assert_eq!(seen.challenge_methods, ["S256"]);
    assert_eq!((seen.exchanges, seen.pkce_verified, seen.proofs_verified), (1, 1, 1));
    assert_eq!(seen.fields, [Some(ACME_FIELDS.to_owned())], "profile_params reach the profile request");
    let u = user(&app, "acme|10001").await.expect("the acme user");
    assert_eq!(u.identities[0].connection.as_str(), "acme");
    assert!(user(&app, "facebook|10001").await.is_none());
}

#[tokio::test]
async fn oversized_profiles_and_slow_upstreams_fail_cleanly() {
    for mode in [Mode::HugeProfile, Mode::HugeProfileChunked] {
        let (fake, app) = setup(mode, APP_SECRET, 10_000).await;
        let b = browser();
        let (_, challenge) = pkce();
        let callback = through_dialog(&app, &fake, &b, "facebook", &challenge).await;
        assert_error_page(b.get(&callback).send().await.unwrap(), 400, "Sign-in failed").await;
        assert_eq!(fake.seen().profiles, 1, "{mode:?}: the profile was sent");
        assert!(user(&app, "facebook|10001").await.is_none(), "{mode:?}: no user");
    }

    // The token endpoint would answer after 60 s, past the default 10 s timeout too.
    let (fake, app) = setup(Mode::SlowToken(Duration::from_secs(60)), APP_SECRET, 500).await;
    let b = browser();
    let (_, challenge) = pkce();
    let callback = through_dialog(&app, &fake, &b, "facebook", &challenge).await;
    let started = Instant::now();
    let r = b.get(&callback).send().await.unwrap();
    let took = started.elapsed();
    assert_error_page(r, 502, "unavailable").await;
    assert!(took >= Duration::from_millis(450), "Gatehouse waited for the token endpoint: {took:?}");
    // Under the 10 s default, with slack for a loaded machine: the configured 500 ms applied.
    assert!(took < Duration::from_secs(8), "timeout_ms = 500 bounds the wait: {took:?}");
    assert_eq!(fake.seen().profiles, 0);
    assert!(user(&app, "facebook|10001").await.is_none(), "no user");
}
