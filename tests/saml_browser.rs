//! A SAML login in a real browser: headless Chromium (over WebDriver, see tests/browser.rs)
//! goes from a client app to Gatehouse, types into the pysaml2 IdP's login form, and lets the
//! IdP's page post the assertion to Gatehouse's ACS with its own JavaScript — a cross-origin,
//! same-site POST that must bring the login's browser-binding cookie along.

use std::net::TcpListener;
use std::sync::{Arc, Mutex};

use actix_web::body::BoxBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::{Next, from_fn};
use actix_web::{HttpResponse, web};
use gatehouse::Core;
use gatehouse::clock::{SharedClock, SystemClock};
use gatehouse::store::Store;
use gatehouse::store::memory::{MemoryKeyStore, MemoryStore};
use gatehouse::types::Issuer;
use serde_json::{Value, json};

use crate::browser::WebDriver;
use crate::harness::*;
use crate::saml::{OPTIONS, SamlIdp, make_keys};

const CLIENT_SECRET: &str = "saml-app-secret-0123456789abcdefghijkl";
/// The binding cookie's name over plain http (`__Host-gh_browser` under https).
const BINDING: &str = "gh_browser";

/// One request as Gatehouse saw it: the headers that tell where it came from, and the answer.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    path: String,
    origin: Option<String>,
    fetch_site: Option<String>,
    cookies: Vec<String>,
    status: u16,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// A Gatehouse node whose routes sit behind a recorder, so the test sees the ACS request itself.
struct Node {
    issuer: String,
    core: Arc<Core>,
    seen: Log,
    _server: ServerThread,
}

impl Node {
    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.issuer)
    }

    /// Every request to `path` so far.
    fn requests_to(&self, path: &str) -> Vec<Seen> {
        self.seen.lock().unwrap().iter().filter(|s| s.path == path).cloned().collect()
    }
}

async fn record(
    seen: Log,
    req: ServiceRequest,
    next: Next<BoxBody>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let mut entry = Seen {
        method: req.method().to_string(),
        path: req.path().to_owned(),
        origin: header("origin"),
        fetch_site: header("sec-fetch-site"),
        cookies: req.cookies().map(|c| c.iter().map(|c| c.name().to_owned()).collect()).unwrap_or_default(),
        status: 0,
    };
    let res = next.call(req).await?;
    entry.status = res.status().as_u16();
    seen.lock().unwrap().push(entry);
    Ok(res)
}

/// Gatehouse (the standard test config plus a `saml-app` client of the `acme` connection),
/// on `listener`; routed the way TestApp routes it, inside a recording scope.
async fn start_node(listener: TcpListener, keys: &str, idp: &str, client_redirect: &str) -> Node {
    let issuer = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
    let options = OPTIONS.replace("{idp}", idp).replace("{keys}", keys);
    let config = format!(
        "{}\n[[clients]]\nclient_id = \"saml-app\"\nname = \"SAML App\"\nclient_secret = \"{CLIENT_SECRET}\"\n\
         redirect_uris = [\"{client_redirect}\"]\nconnections = [\"acme\"]\n\n\
         [[connections]]\nid = \"acme\"\ntype = \"saml\"\ndisplay_name = \"Acme SSO\"\n[connections.options]\n{options}\n",
        crate::harness::config("ES256")
    )
    .replace("{issuer}", &issuer);
    let settings = gatehouse::Settings::parse(&config, &|_| None).unwrap_or_else(|e| panic!("test config: {e}"));
    let settings = settings.with_issuer(Issuer::parse(&issuer).unwrap());
    let clock: SharedClock = Arc::new(SystemClock);
    let store = Store::from_backend(Arc::new(MemoryStore::new(clock.clone())), Arc::new(MemoryKeyStore::default()));
    let core = Core::with_parts(settings, store, clock).await.unwrap();
    let seen = Log::default();
    let (server_core, server_seen) = (core.clone(), seen.clone());
    let server = serve_on_thread(listener, move |cfg| {
        let seen = server_seen.clone();
        cfg.service(
            web::scope("")
                .wrap(from_fn(move |req: ServiceRequest, next: Next<BoxBody>| record(seen.clone(), req, next)))
                .configure(gatehouse::http::configure(server_core.clone())),
        );
    });
    Node { issuer, core, seen, _server: server }
}

/// The client app, on its own origin: `/` links to the authorization request the test set,
/// `/cb` is its redirect URI.
fn start_client(listener: TcpListener, sign_in: Arc<Mutex<String>>) -> ServerThread {
    serve_on_thread(listener, move |cfg| {
        let sign_in = sign_in.clone();
        cfg.route(
            "/",
            web::get().to(move || {
                let href = sign_in.lock().unwrap().replace('&', "&amp;").replace('"', "&quot;");
                async move {
                    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
                        "<!doctype html><title>Client app</title><a id=\"sign-in\" href=\"{href}\">Sign in with Acme</a>"
                    ))
                }
            }),
        )
        .route(
            "/cb",
            web::get().to(|| async {
                HttpResponse::Ok()
                    .content_type("text/html; charset=utf-8")
                    .body("<!doctype html><title>Client app</title><p id=\"callback\">Back at the client</p>")
            }),
        );
    })
}

/// From the client's start page to the IdP's login form: returns after checking the browser
/// really shows the IdP's page, on the IdP's origin, holding Gatehouse's binding cookie.
async fn to_idp_login(wd: &WebDriver, client: &str, idp: &str) {
    wd.goto(&format!("{client}/")).await;
    let sign_in = wd.wait_for("#sign-in").await;
    wd.click(&sign_in).await;
    wd.wait_for("form#login #username").await;
    let at = wd.current_url().await;
    assert!(at.starts_with(&format!("{idp}/")), "the browser is on the IdP's origin: {at}");
    assert_eq!(wd.text("h1").await, "Test IdP sign-in", "the IdP's own login page");
    // Cookies are per host, not per port: the IdP page sees Gatehouse's 127.0.0.1 cookies.
    assert!(wd.cookie_header().await.contains(&format!("{BINDING}=")), "/authorize set the binding cookie");
}

async fn sign_in_at_idp(wd: &WebDriver) {
    wd.send_keys(&wd.find("#username").await, "ada").await;
    wd.send_keys(&wd.find("#password").await, "ada-pw").await;
    wd.click(&wd.find("#submit").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_signs_in_through_a_saml_idp_and_the_acs_post_keeps_the_binding_cookie() {
    let dir = TempDir::new();
    make_keys(&dir.0);
    let client = TcpListener::bind("127.0.0.1:0").unwrap();
    let client_base = format!("http://127.0.0.1:{}", client.local_addr().unwrap().port());
    let client_redirect = format!("{client_base}/cb");
    // The IdP's URL is in the node's configuration: a port taken before the IdP bound it
    // means a fresh node and port.
    let mut started = None;
    for _ in 0..5 {
        let idp_port = port_to_try();
        let idp_base = format!("http://127.0.0.1:{idp_port}");
        let gatehouse = TcpListener::bind("127.0.0.1:0").unwrap();
        let node = start_node(gatehouse, &dir.0.display().to_string(), &idp_base, &client_redirect).await;
        let sp_metadata = get(node.url("/saml/acme/metadata")).await.unwrap().text().await.unwrap();
        if let Ok(idp) = SamlIdp::try_start(idp_port, &dir.0, &sp_metadata, json!({})) {
            assert_eq!(idp.base, idp_base);
            started = Some((node, idp, idp_base));
            break;
        }
    }
    let (node, _idp, idp_base) = started.expect("five free ports in a row were taken by others");
    let sign_in = Arc::new(Mutex::new(String::new()));
    let _client = start_client(client, sign_in.clone());
    let acs = "/callback/acme";
    let wd = WebDriver::start().await;

    // 1. Without the binding cookie the ACS refuses: the browser reaches the IdP, the cookie
    //    is deleted, and the IdP's (valid) response lands on an error page, not the client.
    let (_, challenge) = pkce();
    *sign_in.lock().unwrap() = authorize_url_for(&node, &client_redirect, &challenge, "st-unbound");
    to_idp_login(&wd, &client_base, &idp_base).await;
    // The cookie is HttpOnly: only WebDriver's Delete Cookie can take it away.
    wd.call(reqwest::Method::DELETE, &format!("/cookie/{BINDING}"), Value::Null).await;
    assert!(!wd.cookie_header().await.contains(&format!("{BINDING}=")), "the binding cookie is gone");
    sign_in_at_idp(&wd).await;
    wd.wait_for("#correlation-id").await;
    let refused = wd.current_url().await;
    assert_eq!(refused, node.url(acs), "the error page is the ACS's answer");
    assert_eq!(wd.text("h1").await, "This sign-in started elsewhere");
    assert!(wd.text("body").await.contains("browser_mismatch"), "the error code is shown");
    let posts = node.requests_to(acs);
    assert_eq!(posts.len(), 1, "one ACS request: {posts:#?}");
    let p = &posts[0];
    assert_eq!((p.method.as_str(), p.status), ("POST", 400), "{p:?}");
    assert_eq!(p.origin.as_deref(), Some(idp_base.as_str()), "posted by the IdP's page: {p:?}");
    assert!(!p.cookies.iter().any(|c| c == BINDING), "no binding cookie came along: {p:?}");

    // 2. The same browser, a fresh login: this time the cookie set by /authorize comes along
    //    on the IdP's cross-origin POST, and the login completes at the client.
    let (verifier, challenge) = pkce();
    *sign_in.lock().unwrap() = authorize_url_for(&node, &client_redirect, &challenge, "st-bound");
    to_idp_login(&wd, &client_base, &idp_base).await;
    sign_in_at_idp(&wd).await;
    wd.wait_for("#callback").await;
    let done = wd.current_url().await;
    assert!(done.starts_with(&format!("{client_redirect}?")), "redirected to the client: {done}");
    assert_eq!(param(&done, "state").as_deref(), Some("st-bound"));
    assert_eq!(param(&done, "iss").as_deref(), Some(node.issuer.as_str()), "RFC 9207 iss, always sent");
    let code = param(&done, "code").unwrap_or_else(|| panic!("no code: {done}"));

    let posts = node.requests_to(acs);
    assert_eq!(posts.len(), 2, "one more ACS request: {posts:#?}");
    let p = &posts[1];
    assert_eq!((p.method.as_str(), p.status), ("POST", 303), "{p:?}");
    assert_eq!(p.origin.as_deref(), Some(idp_base.as_str()), "a cross-origin POST from the IdP's page: {p:?}");
    assert_ne!(p.origin.as_deref(), Some(node.issuer.as_str()));
    assert_eq!(p.fetch_site.as_deref(), Some("same-site"), "another port is another origin, the same site: {p:?}");
    assert!(p.cookies.iter().any(|c| c == BINDING), "the binding cookie came along (SameSite=Lax, same site): {p:?}");
    // The POST set the SSO session; the browser carries the new cookie.
    assert!(wd.cookie_header().await.contains("gh_session="), "Gatehouse opened a session");

    // 3. The client redeems the code (PKCE) and gets Ada's ID token, scoped by connection.
    let r = http()
        .post(node.url("/token"))
        .basic_auth("saml-app", Some(CLIENT_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", client_redirect.as_str()),
            ("code_verifier", verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], "samlp|acme|ada-0001", "the persistent NameID, scoped by connection");
    assert_eq!(id["iss"], node.issuer.as_str());
    assert!(id["aud"] == "saml-app" || id["aud"] == json!(["saml-app"]), "aud: {}", id["aud"]);
    assert_eq!(id["nonce"], "n-browser");
    assert_eq!(id["email"], "ada@acme.test");
    let user = node.core.store.users.get(&gatehouse::types::UserId::parse("samlp|acme|ada-0001").unwrap()).await;
    assert_eq!(user.unwrap().unwrap().logins_count, 1, "the refused attempt created no login");
}

/// The `saml-app` client's authorization request for the `acme` connection.
fn authorize_url_for(node: &Node, redirect: &str, challenge: &str, state: &str) -> String {
    let mut url = url::Url::parse(&node.url("/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", "saml-app"),
        ("redirect_uri", redirect),
        ("scope", "openid profile email"),
        ("state", state),
        ("nonce", "n-browser"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
        ("connection", "acme"),
    ]);
    url.to_string()
}
