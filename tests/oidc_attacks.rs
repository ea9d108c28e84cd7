//! The `oidc` connection against a deliberately malicious upstream OpenID Provider: forged,
//! mis-addressed, expired, unsigned, key-confused, oversized and slow answers must each end on
//! an error page, with no redirect to the client, no code, no session and no user; the honest
//! answers (and a key rotation, and a listed issuer spelling) must still sign the person in.
//! A `google` connection against the same upstream accepts Google's two issuer spellings only.

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gatehouse::store::KeyRingRecord;
use gatehouse::tokens::jwt::{Expect, verify};
use gatehouse::tokens::keys::{KeyRing, SigningAlg, generate};
use gatehouse::types::{UserId, random_token};
use reqwest::header::{CONTENT_TYPE, SET_COOKIE};
use serde_json::{Value, json};
use sha2::Digest as _;

use crate::harness::*;

/// Gatehouse's registration at the upstream provider.
const UP_CLIENT: &str = "gatehouse-at-upstream";
const UP_SECRET: &str = "upstream-client-secret-0123456789";
/// The downstream applications: `rp` uses only the upstream, `rp-chooser` also the static users.
const RP: &str = "rp";
const RP_CHOOSER: &str = "rp-chooser";
const RP_SECRET: &str = "rp-client-secret-0123456789abcdefghij";
const RP_REDIRECT: &str = "http://rp.test/cb";
/// Every upstream response is capped at this in the connection's options.
const MAX_RESPONSE: usize = 65536;

/// What the provider does wrong (or right) on this login.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Good,
    /// `iss` of another provider.
    WrongIss,
    /// `iss` with a trailing slash: another spelling of this provider.
    AltIss,
    /// `iss` spelled `localhost`: a spelling nobody listed.
    UnlistedIss,
    /// `iss` without its scheme: Google's second spelling of its issuer.
    SchemelessIss,
    /// `aud` names another client.
    WrongAud,
    /// `aud` names us and another, untrusted client.
    ExtraAud,
    /// `exp` an hour ago.
    Expired,
    WrongNonce,
    MissingNonce,
    /// A valid token whose payload was then changed (sub, email).
    Tampered,
    /// `alg: none`, empty signature.
    AlgNone,
    /// HS256 keyed with the provider's public key as PEM (key confusion).
    HsPem,
    /// HS256 keyed with the public key's modulus bytes (the JWK's `n`).
    HsModulus,
    /// HS256 keyed with the `n` member's base64url text.
    HsModulusText,
    /// HS256 keyed with the client secret (legal in OIDC, refused by this connector).
    HsSecret,
    /// A `kid` the JWKS never has.
    UnknownKid,
    /// Signed by a new key whose `kid` the JWKS only has from its second fetch on.
    Rotated,
    /// `iss` in the authorization response names another provider (RFC 9207 mix-up).
    MixUp,
    /// A token response larger than the connection's limit, with a Content-Length.
    HugeBody,
    /// The same, chunked, without a Content-Length.
    HugeChunked,
    /// The token endpoint answers after 5 s.
    SlowToken,
    /// Discovery answers after 5 s.
    SlowDiscovery,
    /// The userinfo endpoint speaks for another subject.
    UserinfoOtherSub,
}

/// The provider's signing keys, generated once for the whole module.
struct Keys {
    current: KeyRing,
    /// The key it rotates to.
    next: KeyRing,
    /// The current key's public half as an SPKI PEM.
    pem: String,
}

fn ring() -> (KeyRing, Vec<u8>) {
    let stored = generate(SigningAlg::RS256, 0).unwrap();
    let pkcs8 = STANDARD.decode(&stored.pkcs8).unwrap();
    (KeyRing::from_record(&KeyRingRecord { keys: vec![stored] }).unwrap(), pkcs8)
}

static KEYS: LazyLock<Keys> = LazyLock::new(|| {
    use aws_lc_rs::encoding::AsDer as _;
    use aws_lc_rs::signature::KeyPair as _;
    let (current, pkcs8) = ring();
    let (next, _) = ring();
    let pair = aws_lc_rs::signature::RsaKeyPair::from_pkcs8(&pkcs8).unwrap();
    let spki = pair.public_key().as_der().unwrap();
    let b64 = STANDARD.encode(spki.as_ref());
    let lines: Vec<&str> = b64.as_bytes().chunks(64).map(|c| std::str::from_utf8(c).unwrap()).collect();
    let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", lines.join("\n"));
    Keys { current, next, pem }
});

/// What the provider saw.
#[derive(Default, Clone)]
struct Log {
    hits: HashMap<&'static str, usize>,
    /// Query of every authorization request.
    authorize: Vec<HashMap<String, String>>,
    /// Unredeemed codes and the authorization request each answered.
    codes: HashMap<String, HashMap<String, String>>,
    access_tokens: Vec<String>,
    /// Requests the provider refused (bad client auth, PKCE, code, bearer token).
    errors: Vec<String>,
}

struct Shared {
    issuer: String,
    mode: Mutex<Mode>,
    log: Mutex<Log>,
}

impl Shared {
    fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }

    /// Count a request to `what`; returns the count including this one.
    fn hit(&self, what: &'static str) -> usize {
        let mut log = self.log.lock().unwrap();
        let n = log.hits.entry(what).or_default();
        *n += 1;
        *n
    }

    fn refuse(&self, why: String) -> HttpResponse {
        self.log.lock().unwrap().errors.push(why.clone());
        HttpResponse::BadRequest().json(json!({ "error": "invalid_grant", "error_description": why }))
    }
}

/// The subject this provider asserts in `mode`: one per mode, so the user checks of one login
/// cannot see another's.
fn subject(mode: Mode) -> String {
    format!("victim-{mode:?}").to_lowercase()
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

fn b64json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// A JWS compact serialisation of `header` and `claims`, signed by `sign`.
fn jws(header: &Value, claims: &Value, sign: impl FnOnce(&[u8]) -> Vec<u8>) -> String {
    let input = format!("{}.{}", b64json(header), b64json(claims));
    let signature = sign(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

fn hs256(key: &[u8], message: &[u8]) -> Vec<u8> {
    use aws_lc_rs::hmac;
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message).as_ref().to_vec()
}

/// The ID token the provider issues in `mode`.
fn id_token(issuer: &str, mode: Mode, nonce: &str) -> String {
    let keys = &*KEYS;
    let (key, next) = (keys.current.current(), keys.next.current());
    let t = now();
    let sub = subject(mode);
    let mut claims = json!({
        "iss": issuer, "sub": sub, "aud": UP_CLIENT, "iat": t, "exp": t + 300, "nonce": nonce,
        "email": format!("{sub}@upstream.test"), "email_verified": true, "name": "From the ID token",
    });
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": key.kid });
    let hs_header = json!({ "alg": "HS256", "typ": "JWT", "kid": key.kid });
    let rs256 = |header: &Value, claims: &Value| jws(header, claims, |m| key.sign(m).unwrap());
    match mode {
        Mode::WrongIss => claims["iss"] = "https://evil.example".into(),
        Mode::AltIss => claims["iss"] = format!("{issuer}/").into(),
        Mode::UnlistedIss => claims["iss"] = issuer.replace("127.0.0.1", "localhost").into(),
        Mode::SchemelessIss => claims["iss"] = issuer.trim_start_matches("http://").into(),
        Mode::WrongAud => claims["aud"] = "another-client".into(),
        Mode::ExtraAud => claims["aud"] = json!([UP_CLIENT, "another-client"]),
        Mode::Expired => {
            claims["iat"] = (t - 7200).into();
            claims["exp"] = (t - 3600).into();
        }
        Mode::WrongNonce => claims["nonce"] = "not-the-nonce-gatehouse-sent".into(),
        Mode::MissingNonce => {
            claims.as_object_mut().unwrap().remove("nonce");
        }
        Mode::Tampered => {
            let good = rs256(&header, &claims);
            claims["sub"] = "admin".into();
            claims["email"] = "admin@gatehouse.test".into();
            let parts: Vec<&str> = good.split('.').collect();
            return format!("{}.{}.{}", parts[0], b64json(&claims), parts[2]);
        }
        Mode::AlgNone => return format!("{}.{}.", b64json(&json!({ "alg": "none", "typ": "JWT" })), b64json(&claims)),
        Mode::HsPem => return jws(&hs_header, &claims, |m| hs256(keys.pem.as_bytes(), m)),
        Mode::HsModulus => {
            let n = URL_SAFE_NO_PAD.decode(key.public_jwk()["n"].as_str().unwrap()).unwrap();
            return jws(&hs_header, &claims, |m| hs256(&n, m));
        }
        Mode::HsModulusText => {
            let n = key.public_jwk()["n"].as_str().unwrap().to_owned();
            return jws(&hs_header, &claims, |m| hs256(n.as_bytes(), m));
        }
        Mode::HsSecret => return jws(&hs_header, &claims, |m| hs256(UP_SECRET.as_bytes(), m)),
        Mode::UnknownKid => {
            return rs256(&json!({ "alg": "RS256", "typ": "JWT", "kid": "no-such-key" }), &claims);
        }
        Mode::Rotated => {
            return jws(&json!({ "alg": "RS256", "typ": "JWT", "kid": next.kid }), &claims, |m| next.sign(m).unwrap());
        }
        _ => {}
    }
    rs256(&header, &claims)
}

/// How long a slow provider takes: far beyond Gatehouse's 500 ms deadline and beyond the
/// bound the tests allow a loaded 2-core machine (`QUICK`), so only the deadline can pass them.
const SLOW: Duration = Duration::from_secs(30);
const QUICK: Duration = Duration::from_secs(10);

fn form(bytes: &[u8]) -> HashMap<String, String> {
    url::form_urlencoded::parse(bytes).into_owned().collect()
}

async fn discovery(s: web::Data<Shared>) -> HttpResponse {
    s.hit("discovery");
    if s.mode() == Mode::SlowDiscovery {
        actix_web::rt::time::sleep(SLOW).await;
    }
    let i = &s.issuer;
    HttpResponse::Ok().json(json!({
        "issuer": i,
        "authorization_endpoint": format!("{i}/authorize"),
        "token_endpoint": format!("{i}/token"),
        "userinfo_endpoint": format!("{i}/userinfo"),
        "jwks_uri": format!("{i}/jwks"),
        "response_types_supported": ["code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic"],
        "authorization_response_iss_parameter_supported": true,
    }))
}

async fn jwks(s: web::Data<Shared>) -> HttpResponse {
    let n = s.hit("jwks");
    let mut keys = vec![KEYS.current.current().public_jwk()];
    if s.mode() == Mode::Rotated && n > 1 {
        keys.push(KEYS.next.current().public_jwk());
    }
    HttpResponse::Ok().json(json!({ "keys": keys }))
}

/// Record the request and send the browser straight back with a code.
async fn authorize(s: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    s.hit("authorize");
    let q = form(req.query_string().as_bytes());
    let Some(mut back) = q.get("redirect_uri").and_then(|r| url::Url::parse(r).ok()) else {
        return HttpResponse::BadRequest().body("no redirect_uri");
    };
    let code = random_token(16);
    let iss = if s.mode() == Mode::MixUp { "https://evil.example".to_owned() } else { s.issuer.clone() };
    back.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", q.get("state").map_or("", String::as_str))
        .append_pair("iss", &iss);
    let mut log = s.log.lock().unwrap();
    log.codes.insert(code, q.clone());
    log.authorize.push(q);
    HttpResponse::Found().insert_header(("location", back.as_str())).finish()
}

/// Check the client, the code and PKCE like an honest provider, then answer per the mode.
async fn token(s: web::Data<Shared>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    s.hit("token");
    let f = form(&body);
    let expected = format!("Basic {}", STANDARD.encode(format!("{UP_CLIENT}:{UP_SECRET}")));
    if req.headers().get("authorization").and_then(|v| v.to_str().ok()) != Some(expected.as_str()) {
        return s.refuse("client authentication failed".into());
    }
    if f.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return s.refuse(format!("grant_type {:?}", f.get("grant_type")));
    }
    let request = f.get("code").and_then(|c| s.log.lock().unwrap().codes.remove(c));
    let Some(request) = request else { return s.refuse("unknown or used code".into()) };
    if f.get("redirect_uri") != request.get("redirect_uri") {
        return s.refuse("redirect_uri differs from the authorization request".into());
    }
    let verifier = f.get("code_verifier").map(String::as_str).unwrap_or_default();
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    if request.get("code_challenge_method").map(String::as_str) != Some("S256")
        || request.get("code_challenge") != Some(&challenge)
    {
        return s.refuse("PKCE verification failed".into());
    }
    let mode = s.mode();
    match mode {
        Mode::SlowToken => actix_web::rt::time::sleep(SLOW).await,
        Mode::HugeBody => {
            return HttpResponse::Ok().json(json!({
                "access_token": "x".repeat(4 * MAX_RESPONSE), "token_type": "Bearer", "expires_in": 300,
            }));
        }
        Mode::HugeChunked => {
            let chunk = web::Bytes::from(vec![b' '; 8192]);
            let chunks = (0..4 * MAX_RESPONSE / 8192).map(move |_| Ok::<_, actix_web::Error>(chunk.clone()));
            return HttpResponse::Ok().content_type("application/json").streaming(futures_util::stream::iter(chunks));
        }
        _ => {}
    }
    let nonce = request.get("nonce").map(String::as_str).unwrap_or_default();
    let access = format!("upstream-at-{}", random_token(12));
    s.log.lock().unwrap().access_tokens.push(access.clone());
    HttpResponse::Ok().insert_header(("cache-control", "no-store")).json(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": 300,
        "id_token": id_token(&s.issuer, mode, nonce),
    }))
}

async fn userinfo(s: web::Data<Shared>, req: HttpRequest) -> HttpResponse {
    s.hit("userinfo");
    let bearer = req.headers().get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let known = s.log.lock().unwrap().access_tokens.iter().any(|t| bearer == format!("Bearer {t}"));
    if !known {
        s.log.lock().unwrap().errors.push("userinfo without a valid access token".into());
        return HttpResponse::Unauthorized().finish();
    }
    let mode = s.mode();
    let sub = if mode == Mode::UserinfoOtherSub { "someone-else".to_owned() } else { subject(mode) };
    HttpResponse::Ok().json(json!({
        "sub": sub, "email": "from-userinfo@upstream.test", "name": "From userinfo", "locale": "fr-FR",
    }))
}

/// The malicious provider: actix on its own thread and loopback port; stopped on drop.
struct Provider {
    issuer: String,
    shared: Arc<Shared>,
    _server: ServerThread,
}

impl Provider {
    fn start(mode: Mode) -> Self {
        LazyLock::force(&KEYS);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let shared = Arc::new(Shared { issuer: issuer.clone(), mode: Mutex::new(mode), log: Mutex::default() });
        let data = web::Data::from(shared.clone());
        let server = serve_on_thread(listener, move |cfg| {
            cfg.app_data(data.clone())
                .route("/.well-known/openid-configuration", web::get().to(discovery))
                .route("/jwks", web::get().to(jwks))
                .route("/authorize", web::get().to(authorize))
                .route("/token", web::post().to(token))
                .route("/userinfo", web::get().to(userinfo))
                .route("/userinfo", web::post().to(userinfo));
        });
        Self { issuer, shared, _server: server }
    }

    fn set_mode(&self, mode: Mode) {
        *self.shared.mode.lock().unwrap() = mode;
    }

    fn log(&self) -> Log {
        self.shared.log.lock().unwrap().clone()
    }

    fn hits(&self, what: &str) -> usize {
        self.log().hits.get(what).copied().unwrap_or_default()
    }
}

/// The harness configuration plus the two relying parties and the `up` connection.
fn gatehouse_config(upstream: &str, timeout_ms: u64, extra_issuers: &[String]) -> String {
    format!(
        r#"{base}
[[clients]]
client_id = "{RP}"
client_secret = "{RP_SECRET}"
redirect_uris = ["{RP_REDIRECT}"]
connections = ["up"]

[[clients]]
client_id = "{RP_CHOOSER}"
client_secret = "{RP_SECRET}"
redirect_uris = ["{RP_REDIRECT}"]
connections = ["users", "up"]

[[connections]]
id = "up"
type = "oidc"
display_name = "Upstream IdP"
[connections.options]
issuer = "{upstream}"
client_id = "{UP_CLIENT}"
client_secret = "{UP_SECRET}"
userinfo = true
timeout_ms = {timeout_ms}
max_response_bytes = {MAX_RESPONSE}
extra_issuers = {extra}
"#,
        base = crate::harness::config("ES256"),
        extra = serde_json::to_string(extra_issuers).unwrap(),
    )
}

async fn gatehouse(upstream: &str, timeout_ms: u64, extra_issuers: &[String]) -> TestApp {
    TestApp::with(Options { config: Some(gatehouse_config(upstream, timeout_ms, extra_issuers)), ..Default::default() })
        .await
}

/// The last Gatehouse response of a login, and what came before it.
struct Attempt {
    status: u16,
    location: Option<String>,
    correlation_id: Option<String>,
    content_type: String,
    body: String,
    /// Every `Set-Cookie` Gatehouse sent during the login.
    cookies: Vec<String>,
    /// How long the last response took.
    elapsed: Duration,
    /// The upstream's redirect back to Gatehouse, if it got that far.
    callback: Option<String>,
    /// The PKCE verifier of the downstream request.
    verifier: String,
}

fn set_cookies(r: &reqwest::Response) -> Vec<String> {
    r.headers().get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

/// Send `request` and read the response into an [`Attempt`].
async fn finish(request: reqwest::RequestBuilder, mut cookies: Vec<String>, verifier: String) -> Attempt {
    let started = Instant::now();
    let r = request.send().await.unwrap();
    let elapsed = started.elapsed();
    cookies.extend(set_cookies(&r));
    let header = |name: &str| r.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    let (location, correlation_id) = (header("location"), header("x-correlation-id"));
    let content_type = header(CONTENT_TYPE.as_str()).unwrap_or_default();
    let status = r.status().as_u16();
    let body = r.text().await.unwrap();
    Attempt { status, location, correlation_id, content_type, body, cookies, elapsed, callback: None, verifier }
}

/// A downstream login through `rp`, the browser following every redirect by hand.
async fn attempt(app: &TestApp, p: &Provider, b: &reqwest::Client) -> Attempt {
    let (verifier, challenge) = pkce();
    let r = b.get(authorize_url(app, RP, RP_REDIRECT, &challenge, &[])).send().await.unwrap();
    assert_eq!(r.status(), 303, "authorize goes to the upstream: {}", r.text().await.unwrap_or_default());
    let cookies = set_cookies(&r);
    let upstream = location(&r);
    assert!(upstream.starts_with(&format!("{}/authorize?", p.issuer)), "{upstream}");
    let r = b.get(&upstream).send().await.unwrap();
    assert_eq!(r.status(), 302);
    let callback = location(&r);
    assert!(callback.starts_with(&app.url("/callback/up?")), "{callback}");
    let mut a = finish(b.get(&callback), cookies, verifier).await;
    a.callback = Some(callback);
    a
}

/// An error page: the status, HTML with the correlation id, no way to the client, no session.
fn assert_error_page(a: &Attempt, status: u16, kind: &str) {
    assert_eq!(a.status, status, "{}", a.body);
    assert!(a.location.is_none(), "no redirect: {:?}", a.location);
    assert!(a.content_type.starts_with("text/html"), "{}", a.content_type);
    let id = a.correlation_id.as_deref().expect("an x-correlation-id header");
    assert!(
        a.body.contains(&format!("<code id=\"correlation-id\">{id}</code>")),
        "correlation id on the page:\n{}",
        a.body
    );
    assert!(a.body.contains(&format!("<code>{kind}</code>")), "{kind} on the page:\n{}", a.body);
    assert!(!a.body.contains("rp.test") && !a.body.contains("code="), "nothing for the client:\n{}", a.body);
    assert!(!a.cookies.iter().any(|c| c.starts_with("gh_session=")), "no session cookie: {:?}", a.cookies);
}

async fn assert_no_user(app: &TestApp, sub: &str) {
    let id = UserId::parse(&format!("oidc|{sub}")).unwrap();
    assert!(app.core.store.users.get(&id).await.unwrap().is_none(), "no user {id}");
}

/// After a rejected login: the browser holds no session, and the spent callback gets nothing.
async fn assert_nothing_left(app: &TestApp, b: &reqwest::Client, a: &Attempt, subs: &[String]) {
    for sub in subs {
        assert_no_user(app, sub).await;
    }
    let (_, challenge) = pkce();
    let r = b.get(authorize_url(app, RP, RP_REDIRECT, &challenge, &[("prompt", "none")])).send().await.unwrap();
    let to = location(&r);
    assert!(to.starts_with(RP_REDIRECT), "{to}");
    assert_eq!(param(&to, "error").as_deref(), Some("login_required"), "no session: {to}");
    assert_eq!(param(&to, "code"), None);
    if let Some(callback) = &a.callback {
        let again = finish(b.get(callback), Vec::new(), String::new()).await;
        assert_error_page(&again, 400, "unknown_transaction");
    }
}

/// The upstream login of `mode` must end on a 400 "Sign-in failed" page and leave nothing.
async fn rejected(mode: Mode, extra_issuers: bool) {
    let p = Provider::start(mode);
    let extra = if extra_issuers { vec![format!("{}/", p.issuer)] } else { Vec::new() };
    let app = gatehouse(&p.issuer, 5000, &extra).await;
    let b = browser();
    let a = attempt(&app, &p, &b).await;
    assert_error_page(&a, 400, "invalid_upstream_response");
    assert_nothing_left(&app, &b, &a, &[subject(mode), "admin".into(), "someone-else".into()]).await;
    let log = p.log();
    assert!(log.errors.is_empty(), "the provider accepted Gatehouse's requests: {:?}", log.errors);
    assert_eq!(p.hits("token"), 1, "the code was redeemed once");
    assert_eq!(p.hits("discovery"), 1);
    assert_eq!(p.hits("jwks"), 1, "no key refetch for a token whose kid is known");
}

/// A login the provider answers honestly (in `mode`) completes: a code for the client that
/// redeems to an ID token for `oidc|<sub>`.
async fn accepted(app: &TestApp, p: &Provider, mode: Mode) -> Value {
    p.set_mode(mode);
    let b = browser();
    let a = attempt(app, p, &b).await;
    assert_eq!(a.status, 303, "login completes:\n{}", a.body);
    let to = a.location.clone().unwrap();
    assert!(to.starts_with(RP_REDIRECT), "{to}");
    assert_eq!(param(&to, "state").as_deref(), Some("st-123"));
    assert!(a.cookies.iter().any(|c| c.starts_with("gh_session=")), "{:?}", a.cookies);
    let code = param(&to, "code").expect("a code for the client");
    let r = http()
        .post(app.url("/token"))
        .basic_auth(RP, Some(RP_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", RP_REDIRECT),
            ("code_verifier", a.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let id: Value = verify(
        &app.core.keys.ring(),
        t["id_token"].as_str().unwrap(),
        &Expect { issuer: &app.issuer, typ: None, audience: Some(&[RP]) },
    )
    .unwrap();
    let sub = subject(mode);
    assert_eq!(id["sub"], format!("oidc|{sub}"));
    assert!(app.core.store.users.get(&UserId::parse(&format!("oidc|{sub}")).unwrap()).await.unwrap().is_some());
    assert!(p.log().errors.is_empty(), "the provider accepted Gatehouse's requests: {:?}", p.log().errors);
    id
}

#[tokio::test]
async fn an_honest_provider_signs_the_person_in() {
    let p = Provider::start(Mode::Good);
    let app = gatehouse(&p.issuer, 5000, &[]).await;
    let id = accepted(&app, &p, Mode::Good).await;
    assert_eq!(id["email"], "victim-good@upstream.test", "ID token claims win over userinfo");

    let log = p.log();
    let req = &log.authorize[0];
    assert_eq!(req["response_type"], "code");
    assert_eq!(req["client_id"], UP_CLIENT);
    assert_eq!(req["redirect_uri"], app.url("/callback/up"));
    assert!(req["scope"].split(' ').any(|s| s == "openid"), "{}", req["scope"]);
    assert_eq!(req["code_challenge_method"], "S256");
    assert_eq!(req["code_challenge"].len(), 43);
    assert!(req["nonce"].len() >= 16 && req["state"].len() >= 16, "{req:?}");
    assert_eq!((p.hits("discovery"), p.hits("jwks"), p.hits("token"), p.hits("userinfo")), (1, 1, 1, 1));

    let user = app.core.store.users.get(&UserId::parse("oidc|victim-good").unwrap()).await.unwrap().unwrap();
    assert_eq!(user.email.as_deref(), Some("victim-good@upstream.test"));
    assert_eq!(user.name.as_deref(), Some("From the ID token"));
    assert_eq!(user.locale.as_deref(), Some("fr-FR"), "userinfo fills what the ID token lacks");

    // A second login: fresh state, nonce and PKCE; discovery and keys come from the cache.
    accepted(&app, &p, Mode::Good).await;
    let log = p.log();
    let (first, second) = (&log.authorize[0], &log.authorize[1]);
    for k in ["state", "nonce", "code_challenge"] {
        assert_ne!(first[k], second[k], "{k} is fresh per login");
    }
    assert_eq!((p.hits("discovery"), p.hits("jwks")), (1, 1));
}

macro_rules! rejected_tests {
    ($($(#[doc = $doc:literal])* $name:ident: $mode:expr, $extra_issuers:expr;)*) => {$(
        $(#[doc = $doc])*
        #[tokio::test]
        async fn $name() {
            rejected($mode, $extra_issuers).await;
        }
    )*};
}

rejected_tests! {
    /// The ID token names another issuer.
    wrong_iss_is_rejected: Mode::WrongIss, false;
    /// Another spelling of the issuer, not configured in `extra_issuers`.
    alternate_issuer_spelling_without_extra_issuers_is_rejected: Mode::AltIss, false;
    /// With `extra_issuers` set the crate's issuer check is off: the connector's own must hold.
    unlisted_issuer_spelling_is_rejected: Mode::UnlistedIss, true;
    /// An issuer without its scheme (Google's second spelling, `accounts.google.com`): a
    /// generic OIDC connection refuses it.
    schemeless_issuer_spelling_is_rejected_for_generic_oidc: Mode::SchemelessIss, false;
    wrong_iss_with_extra_issuers_configured_is_rejected: Mode::WrongIss, true;
    wrong_aud_is_rejected: Mode::WrongAud, false;
    untrusted_extra_aud_is_rejected: Mode::ExtraAud, false;
    expired_id_token_is_rejected: Mode::Expired, false;
    wrong_nonce_is_rejected: Mode::WrongNonce, false;
    missing_nonce_is_rejected: Mode::MissingNonce, false;
    tampered_payload_is_rejected: Mode::Tampered, false;
    alg_none_is_rejected: Mode::AlgNone, false;
    hs256_keyed_with_the_public_pem_is_rejected: Mode::HsPem, false;
    hs256_keyed_with_the_modulus_bytes_is_rejected: Mode::HsModulus, false;
    hs256_keyed_with_the_modulus_text_is_rejected: Mode::HsModulusText, false;
    hs256_keyed_with_the_client_secret_is_rejected: Mode::HsSecret, false;
    userinfo_for_another_subject_is_rejected: Mode::UserinfoOtherSub, false;
}

#[tokio::test]
async fn an_unknown_kid_is_refetched_once_then_rejected() {
    let p = Provider::start(Mode::UnknownKid);
    let app = gatehouse(&p.issuer, 5000, &[]).await;
    let b = browser();
    let a = attempt(&app, &p, &b).await;
    assert_error_page(&a, 400, "invalid_upstream_response");
    assert_nothing_left(&app, &b, &a, &[subject(Mode::UnknownKid)]).await;
    assert_eq!(p.hits("jwks"), 2, "the JWKS was fetched again for the unknown kid, once");
    assert_eq!(p.hits("discovery"), 1);
}

#[tokio::test]
async fn a_rotated_key_is_fetched_and_accepted() {
    let p = Provider::start(Mode::Rotated);
    let app = gatehouse(&p.issuer, 5000, &[]).await;
    accepted(&app, &p, Mode::Rotated).await;
    assert_eq!(p.hits("jwks"), 2, "the new kid made the connector fetch the JWKS again");
    // The refreshed keys are cached: the next login needs no fetch.
    let id = accepted(&app, &p, Mode::Rotated).await;
    assert_eq!(id["sub"], "oidc|victim-rotated");
    assert_eq!(p.hits("jwks"), 2);
}

#[tokio::test]
async fn a_listed_issuer_spelling_is_accepted() {
    let p = Provider::start(Mode::AltIss);
    let app = gatehouse(&p.issuer, 5000, &[format!("{}/", p.issuer)]).await;
    accepted(&app, &p, Mode::AltIss).await;
    accepted(&app, &p, Mode::Good).await;
}

#[tokio::test]
async fn a_mix_up_iss_in_the_authorization_response_is_rejected() {
    let p = Provider::start(Mode::MixUp);
    let app = gatehouse(&p.issuer, 5000, &[]).await;
    let b = browser();
    let a = attempt(&app, &p, &b).await;
    assert_error_page(&a, 400, "invalid_upstream_response");
    assert_nothing_left(&app, &b, &a, &[subject(Mode::MixUp)]).await;
    assert_eq!(p.hits("token"), 0, "the code was sent nowhere");
}

#[tokio::test]
async fn a_token_response_over_the_limit_is_rejected() {
    for mode in [Mode::HugeBody, Mode::HugeChunked] {
        let p = Provider::start(mode);
        let app = gatehouse(&p.issuer, 5000, &[]).await;
        let b = browser();
        let a = attempt(&app, &p, &b).await;
        assert_error_page(&a, 400, "invalid_upstream_response");
        assert_nothing_left(&app, &b, &a, &[subject(mode)]).await;
        assert_eq!(p.hits("token"), 1, "{mode:?}");
    }
}

#[tokio::test]
async fn a_slow_token_endpoint_gets_a_quick_502() {
    let p = Provider::start(Mode::SlowToken);
    let app = gatehouse(&p.issuer, 500, &[]).await;
    let b = browser();
    let a = attempt(&app, &p, &b).await;
    assert_error_page(&a, 502, "upstream_unavailable");
    assert!(a.elapsed < QUICK, "answered after {:?}", a.elapsed);
    assert_nothing_left(&app, &b, &a, &[subject(Mode::SlowToken)]).await;
}

/// Start a login through `rp-chooser` and pick the `up` connection on the chooser.
async fn choose_upstream(app: &TestApp, b: &reqwest::Client) -> Attempt {
    let (verifier, challenge) = pkce();
    let r = b.get(authorize_url(app, RP_CHOOSER, RP_REDIRECT, &challenge, &[])).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cookies = set_cookies(&r);
    let hosted = location(&r);
    assert!(hosted.starts_with("/login/"), "{hosted}");
    let page = b.get(app.url(&hosted)).send().await.unwrap().text().await.unwrap();
    let csrf = hidden(&page, "csrf");
    let request = b.post(app.url(&format!("{hosted}/connect"))).form(&[("csrf", csrf.as_str()), ("connection", "up")]);
    finish(request, cookies, verifier).await
}

#[tokio::test]
async fn slow_discovery_gets_a_quick_502() {
    let p = Provider::start(Mode::SlowDiscovery);
    let app = gatehouse(&p.issuer, 500, &[]).await;
    let b = browser();
    let a = choose_upstream(&app, &b).await;
    assert_error_page(&a, 502, "upstream_unavailable");
    assert!(a.elapsed < QUICK, "answered after {:?}", a.elapsed);
    assert_nothing_left(&app, &b, &a, &[]).await;
}

#[tokio::test]
async fn an_unreachable_provider_does_not_stop_gatehouse() {
    let (_held, port) = closed_port();
    let closed = format!("http://127.0.0.1:{port}");
    let app = gatehouse(&closed, 2000, &[]).await;
    assert_eq!(get(app.url("/healthz")).await.unwrap().status(), 200);
    let t = tokens_for_ada(&app).await;
    assert_eq!(claims(t["id_token"].as_str().unwrap())["sub"], "auth0|ada", "other connections work");

    let b = browser();
    let a = choose_upstream(&app, &b).await;
    assert_error_page(&a, 502, "upstream_unavailable");
    assert_nothing_left(&app, &b, &a, &[]).await;
}

/// The same through a client whose only connection is the unreachable one, where `/authorize`
/// starts the connection itself: the same 502 page as through the chooser.
#[tokio::test]
async fn an_unreachable_provider_started_from_authorize_gets_a_502() {
    let (_held, port) = closed_port();
    let closed = format!("http://127.0.0.1:{port}");
    let app = gatehouse(&closed, 2000, &[]).await;
    let b = browser();
    let (verifier, challenge) = pkce();
    let a = finish(b.get(authorize_url(&app, RP, RP_REDIRECT, &challenge, &[])), Vec::new(), verifier).await;
    assert_error_page(&a, 502, "upstream_unavailable");
    assert_nothing_left(&app, &b, &a, &[]).await;
}

/// The same upstream behind a `google` connection (its issuer pointed at the fake).
async fn google(upstream: &str) -> TestApp {
    let config = gatehouse_config(upstream, 5000, &[])
        .replace("type = \"oidc\"", "type = \"google\"")
        .replace("userinfo = true\n", "")
        .replace(&format!("max_response_bytes = {MAX_RESPONSE}\n"), "")
        .replace("extra_issuers = []\n", "");
    TestApp::with(Options { config: Some(config), ..Default::default() }).await
}

/// Google's second spelling of its issuer (`accounts.google.com`: here the fake's issuer
/// without its scheme) signs the person in through a Google connection, which a generic
/// connection refuses (above); spellings Google does not use stay refused.
#[tokio::test]
async fn a_google_connection_accepts_google_s_two_issuer_spellings_only() {
    let p = Provider::start(Mode::SchemelessIss);
    let app = google(&p.issuer).await;
    for mode in [Mode::SchemelessIss, Mode::Good] {
        p.set_mode(mode);
        let a = attempt(&app, &p, &browser()).await;
        assert_eq!(a.status, 303, "login completes:\n{}", a.body);
        let to = a.location.clone().unwrap();
        assert!(to.starts_with(RP_REDIRECT) && param(&to, "code").is_some(), "{to}");
        let user = format!("google-oauth2|{}", subject(mode));
        assert!(app.core.store.users.get(&UserId::parse(&user).unwrap()).await.unwrap().is_some(), "{user}");
    }
    for mode in [Mode::UnlistedIss, Mode::AltIss, Mode::WrongIss] {
        p.set_mode(mode);
        let b = browser();
        let a = attempt(&app, &p, &b).await;
        assert_error_page(&a, 400, "invalid_upstream_response");
        assert_nothing_left(&app, &b, &a, &[subject(mode), "admin".into(), "someone-else".into()]).await;
    }
}
