//! SAML 2.0 and ADFS connections against a real identity provider: Python pysaml2 signing
//! and encrypting with Debian's xmlsec1 (tests/peers/saml-idp, installed by scripts/setup).
//! Client app -> Gatehouse -> IdP (AuthnRequest) -> ACS -> Gatehouse -> client -> tokens.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use gatehouse::types::UserId;

use crate::harness::*;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Test keys from the fixture script (openssl): idp, idp2, attacker, cloned, sp.
pub fn make_keys(dir: &Path) {
    let out = output_within(
        Command::new("python3").arg(root().join("fixtures/saml/make.py")).arg("keys").arg(dir),
        PEER_DEADLINE,
    );
    assert!(out.status.success(), "make.py keys: {}", String::from_utf8_lossy(&out.stderr));
}

/// One pysaml2 IdP process, killed on drop.
pub struct SamlIdp {
    child: Child,
    pub base: String,
}

impl Drop for SamlIdp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl SamlIdp {
    /// Start an IdP on `port` for the SP whose metadata is `sp_metadata` (`extra` adds or
    /// overrides config fields: users, signing, encryption, name formats), or `PortTaken`
    /// when another process bound `port` first; the caller starts over on fresh ports.
    pub fn try_start(port: u16, keys: &Path, sp_metadata: &str, extra: serde_json::Value) -> Result<Self, PortTaken> {
        Self::spawn(port, keys, sp_metadata, extra).ready()
    }

    /// `try_start` without waiting for the IdP: its interpreter loads pysaml2 (seconds on a
    /// loaded machine) while the caller starts the others.
    fn spawn(port: u16, keys: &Path, sp_metadata: &str, extra: serde_json::Value) -> StartingIdp {
        let python = root().join("tests/peers/saml-idp/.venv/bin/python");
        assert!(python.exists(), "the pysaml2 IdP peer is not installed: run ./scripts/setup");
        let base = format!("http://127.0.0.1:{port}");
        let meta = keys.join(format!("sp-{port}.xml"));
        std::fs::write(&meta, sp_metadata).unwrap();
        let mut config = serde_json::json!({
            "port": port,
            "base_url": base,
            "entity_id": format!("{base}/metadata"),
            "key_file": keys.join("idp.key"),
            "cert_file": keys.join("idp.crt"),
            "sp_metadata_file": meta,
            "users": {"ada": {"password": "ada-pw", "name_id": "ada-0001", "attributes": {
                "mail": ["ada@acme.test"], "givenName": ["Ada"], "sn": ["Lovelace"],
                "displayName": ["Ada Lovelace"], "groups": ["engineering", "admins"]}}},
            "want_authn_requests_signed": true,
        });
        for (k, v) in extra.as_object().unwrap() {
            config[k] = v.clone();
        }
        let path = keys.join(format!("idp-{port}.json"));
        std::fs::write(&path, config.to_string()).unwrap();
        let stderr = keys.join(format!("idp-{port}.stderr"));
        let mut child = Command::new(python)
            .arg(root().join("tests/peers/saml-idp/idp.py"))
            .arg("--config")
            .arg(&path)
            .stdout(Stdio::piped())
            .stderr(Stdio::from(std::fs::File::create(&stderr).unwrap()))
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        StartingIdp { idp: Self { child, base }, stdout, stderr }
    }
}

/// An IdP process started and not yet known to serve (killed on drop, as an IdP is).
struct StartingIdp {
    idp: SamlIdp,
    stdout: std::process::ChildStdout,
    stderr: PathBuf,
}

impl StartingIdp {
    /// The IdP once it says READY, or `PortTaken` when another process held its port.
    fn ready(self) -> Result<SamlIdp, PortTaken> {
        // READY comes after the bind: an IdP that says it is ready owns its port.
        let line = first_line_within(self.stdout, PEER_DEADLINE, "the SAML IdP");
        if line.starts_with("READY ") {
            return Ok(self.idp);
        }
        drop(self.idp);
        let said = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        if said.contains("Address already in use") {
            return Err(PortTaken);
        }
        panic!("the SAML IdP did not start: {line:?}\n{said}");
    }
}

/// Another process bound the port first.
pub struct PortTaken;

/// A Gatehouse node with SAML connections, each backed by its own pysaml2 IdP.
pub struct Setup {
    pub app: TestApp,
    pub idps: Vec<SamlIdp>,
    pub _dir: TempDir,
}

/// A SAML connection of a test: id, type (`saml`/`adfs`), connection lines, option lines
/// (`{idp}` is the IdP's base URL, `{keys}` the key directory) and IdP config overrides.
pub struct Conn<'a> {
    pub id: &'a str,
    pub kind: &'a str,
    pub lines: &'a str,
    pub options: &'a str,
    pub idp: serde_json::Value,
}

pub async fn setup(conns: &[Conn<'_>]) -> Setup {
    for _ in 0..5 {
        if let Ok(s) = try_setup(conns).await {
            return s;
        }
    }
    panic!("five sets of free ports in a row were taken by others");
}

/// One attempt: the node and the IdPs on ports found free (the IdPs' URLs are in the node's
/// configuration, so a port taken before its IdP bound it means starting over).
async fn try_setup(conns: &[Conn<'_>]) -> Result<Setup, PortTaken> {
    let dir = TempDir::new();
    make_keys(&dir.0);
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let ports: Vec<u16> = conns.iter().map(|_| port_to_try()).collect();
    let ids: Vec<String> = conns.iter().map(|c| format!("\"{}\"", c.id)).collect();
    let mut config = crate::harness::config("ES256").replacen(
        "connections = [\"users\"]",
        &format!("connections = [\"users\", {}]", ids.join(", ")),
        1,
    );
    let keys = dir.0.display().to_string();
    for (c, port) in conns.iter().zip(&ports) {
        let idp = format!("http://127.0.0.1:{port}");
        let options = c.options.replace("{idp}", &idp).replace("{keys}", &keys);
        config.push_str(&format!(
            "\n[[connections]]\nid = \"{}\"\ntype = \"{}\"\n{}\n[connections.options]\n{options}\n",
            c.id, c.kind, c.lines
        ));
    }
    let app = TestApp::with(Options { config: Some(config), listener: Some(listener), ..Default::default() }).await;
    // All IdPs start at once, then each is waited for: their start-ups overlap.
    let mut starting = Vec::new();
    for (c, port) in conns.iter().zip(ports) {
        let meta = get(app.url(&format!("/saml/{}/metadata", c.id))).await.unwrap();
        assert_eq!(meta.status(), 200);
        starting.push(SamlIdp::spawn(port, &dir.0, &meta.text().await.unwrap(), c.idp.clone()));
    }
    let idps = starting.into_iter().map(StartingIdp::ready).collect::<Result<Vec<_>, _>>()?;
    Ok(Setup { app, idps, _dir: dir })
}

/// Standard options of a pysaml2-backed connection: metadata by URL, the SP key.
pub const OPTIONS: &str = "idp_metadata_url = \"{idp}/metadata\"\nsp_key_file = \"{keys}/sp.key\"\nsp_certificate_file = \"{keys}/sp.crt\"\ntrust_email = true";

/// An HTML attribute value as the browser reads it.
fn unescape(v: &str) -> String {
    v.replace("&#x2f;", "/")
        .replace("&#x27;", "'")
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

/// The auto-post form of a page: (action, [(name, value)]).
pub fn autopost(page: &str) -> (String, Vec<(String, String)>) {
    let action = page.split("action=\"").nth(1).and_then(|a| a.split('"').next()).expect("a form action");
    let mut fields = Vec::new();
    for name in ["SAMLResponse", "SAMLRequest", "RelayState"] {
        let marker = format!("name=\"{name}\" value=\"");
        if let Some(start) = page.find(&marker) {
            let v = page[start + marker.len()..].split('"').next().unwrap();
            fields.push((name.to_owned(), unescape(v)));
        }
    }
    (unescape(action), fields)
}

/// Follow a login from `start` through the IdP's login form (as `user`) and the ACS POST,
/// until the redirect to the client or a page: (where it stopped, status, body).
pub async fn follow(b: &reqwest::Client, start: String, user: &str, password: &str) -> (String, u16, String) {
    let mut url = start;
    let mut method_post: Option<Vec<(String, String)>> = None;
    for _ in 0..20 {
        let r = match method_post.take() {
            Some(form) => b.post(&url).form(&form).send().await.unwrap(),
            None => b.get(&url).send().await.unwrap(),
        };
        let status = r.status().as_u16();
        if r.status().is_redirection() {
            let next = url::Url::parse(&url).unwrap().join(&location(&r)).unwrap().to_string();
            if next.starts_with(WEB_REDIRECT) || next.starts_with("http://app.test/") {
                return (next, status, String::new());
            }
            url = next;
            continue;
        }
        let page = r.text().await.unwrap();
        if page.contains("id=\"login\"") && page.contains("name=\"pending\"") {
            let pending = hidden(&page, "pending");
            let post = url::Url::parse(&url).unwrap().join("/login").unwrap().to_string();
            url = post;
            method_post = Some(vec![
                ("pending".into(), pending),
                ("username".into(), user.into()),
                ("password".into(), password.into()),
            ]);
            continue;
        }
        if page.contains("<form") && (page.contains("name=\"SAMLResponse\"") || page.contains("name=\"SAMLRequest\"")) {
            let (action, fields) = autopost(&page);
            url = url::Url::parse(&url).unwrap().join(&action).unwrap().to_string();
            method_post = Some(fields);
            continue;
        }
        return (url, status, page);
    }
    panic!("too many redirects");
}

pub async fn tokens(s: &Setup, connection: &str, scope: &str) -> serde_json::Value {
    let b = browser();
    let (verifier, challenge) = pkce();
    let start = authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[("connection", connection), ("scope", scope)]);
    let (done, status, page) = follow(&b, start, "ada", "ada-pw").await;
    let code = param(&done, "code").unwrap_or_else(|| panic!("no code ({status}): {done}\n{page}"));
    let r = redeem(&s.app, &code, &verifier).await;
    assert_eq!(r.status(), 200);
    r.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_saml_idp_signs_people_in_with_signed_requests_and_assertions() {
    let logs = capture_logs();
    let s = setup(&[
        Conn {
            id: "acme",
            kind: "saml",
            lines: "display_name = \"Acme SSO\"",
            options: OPTIONS,
            idp: serde_json::json!({}),
        },
        // An IdP of another organisation vouching for an acme.test address: not believed.
        Conn {
            id: "other",
            kind: "saml",
            lines: "domains = [\"other.test\"]",
            options: OPTIONS,
            idp: serde_json::json!({}),
        },
    ])
    .await;
    // The SP metadata an IdP admin imports.
    let meta = get(s.app.url("/saml/acme/metadata")).await.unwrap();
    assert_eq!(meta.headers()["content-type"], "application/samlmetadata+xml");
    let meta = meta.text().await.unwrap();
    assert!(meta.contains(&format!("entityID=\"{}\"", s.app.url("/saml/acme/metadata"))), "{meta}");
    assert!(meta.contains(&format!("Location=\"{}\"", s.app.url("/callback/acme"))));
    assert!(meta.contains("use=\"signing\"") && meta.contains("use=\"encryption\""));
    assert!(meta.contains("AuthnRequestsSigned=\"true\""));

    let t = tokens(&s, "acme", "openid profile email groups").await;
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], "samlp|acme|ada-0001", "the persistent NameID, scoped by connection");
    assert_eq!(id["email"], "ada@acme.test");
    assert_eq!(id["email_verified"], true, "trust_email is on");
    assert_eq!(id["name"], "Ada Lovelace");
    assert_eq!(id["given_name"], "Ada");
    assert_eq!(id["family_name"], "Lovelace");
    assert_eq!(id["groups"], serde_json::json!(["engineering", "admins"]), "groups scope: the directory groups");

    // Without the groups scope there are none in the ID token.
    let t = tokens(&s, "acme", "openid profile").await;
    assert!(claims(t["id_token"].as_str().unwrap()).get("groups").is_none());

    let user = s.app.core.store.users.get(&UserId::parse("samlp|acme|ada-0001").unwrap()).await.unwrap().unwrap();
    assert_eq!(user.identities[0].provider, "samlp");
    assert!(!user.identities[0].is_social);
    assert_eq!(user.identities[0].profile_data["displayName"], "Ada Lovelace", "every attribute is kept");
    assert_eq!(user.groups, ["engineering", "admins"]);
    assert_eq!(user.logins_count, 2);

    let t = tokens(&s, "other", "openid email").await;
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!((id["email"].as_str(), id["email_verified"].as_bool()), (Some("ada@acme.test"), Some(false)));

    // Three SAML logins at trace level: no line of the SP's private key, no client secret and
    // none of the tokens reached the logs, in any encoding.
    let key = std::fs::read_to_string(s._dir.0.join("sp.key")).unwrap();
    let mut secrets: Vec<(&str, &str)> =
        key.lines().filter(|l| !l.starts_with("-----") && l.len() >= 32).map(|l| ("SP private key", l)).collect();
    assert!(secrets.len() > 10, "the key file was read");
    secrets.push(("client secret", WEB_SECRET));
    for name in ["access_token", "id_token"] {
        secrets.push((name, t[name].as_str().unwrap()));
    }
    assert_no_secret_in(&logs.text(), &secrets);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_assertions_with_each_cipher() {
    let algs = ["aes256-gcm", "aes128-gcm", "aes256-cbc", "aes128-cbc"];
    let ids = ["gcm256", "gcm128", "cbc256", "cbc128"];
    let conns: Vec<Conn> = algs
        .iter()
        .zip(ids)
        .map(|(alg, id)| Conn {
            id,
            kind: "saml",
            lines: "",
            options: OPTIONS,
            idp: serde_json::json!({"encrypt_assertion": true, "encryption_algorithm": alg, "sign_response": *alg == "aes128-gcm"}),
        })
        .collect();
    let s = setup(&conns).await;
    for id in ids {
        let t = tokens(&s, id, "openid email").await;
        let c = claims(t["id_token"].as_str().unwrap());
        assert_eq!(c["sub"], format!("samlp|{id}|ada-0001"), "{id}");
        assert_eq!(c["email"], "ada@acme.test", "{id}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adfs_claim_uris_federation_metadata_and_upn_subject() {
    let claims_of = |uri: &str| format!("http://schemas.xmlsoap.org/ws/2005/05/identity/claims/{uri}");
    let users = serde_json::json!({"ada": {"password": "ada-pw", "name_id": "transient-7f3a", "attributes": {
        claims_of("upn"): ["ada@corp.test"],
        claims_of("emailaddress"): ["ada.lovelace@corp.test"],
        claims_of("givenname"): ["Ada"],
        claims_of("surname"): ["Lovelace"],
        claims_of("name"): ["CORP\\ada"],
        "http://schemas.microsoft.com/ws/2008/06/identity/claims/groups": ["Domain Users", "Engineering"],
    }}});
    let s = setup(&[Conn {
        id: "corp",
        kind: "adfs",
        lines: "",
        options: "federation_metadata_url = \"{idp}/metadata\"\nsp_key_file = \"{keys}/sp.key\"\nsp_certificate_file = \"{keys}/sp.crt\"",
        idp: serde_json::json!({
            "users": users,
            "name_id_format": "urn:oasis:names:tc:SAML:2.0:nameid-format:transient",
            "attribute_name_format": "urn:oasis:names:tc:SAML:2.0:attrname-format:uri",
            "sign_response": true,
            "encrypt_assertion": true,
        }),
    }])
    .await;
    let t = tokens(&s, "corp", "openid profile email groups").await;
    let id = claims(t["id_token"].as_str().unwrap());
    assert_eq!(id["sub"], "adfs|corp|ada@corp.test", "the UPN, never the transient NameID");
    assert_eq!(id["email"], "ada.lovelace@corp.test");
    assert_eq!(id["email_verified"], false, "trust_email is off by default");
    assert_eq!(id["given_name"], "Ada");
    assert_eq!(id["family_name"], "Lovelace");
    assert_eq!(id["groups"], serde_json::json!(["Domain Users", "Engineering"]));
    let user = s.app.core.store.users.get(&UserId::parse("adfs|corp|ada@corp.test").unwrap()).await.unwrap().unwrap();
    assert_eq!(user.identities[0].provider, "adfs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_realm_discovery_sends_an_email_domain_to_its_connection() {
    let s = setup(&[Conn {
        id: "acme",
        kind: "saml",
        lines: "domains = [\"acme.test\", \"acme-corp.test\"]",
        options: OPTIONS,
        idp: serde_json::json!({}),
    }])
    .await;
    // The chooser asks for an email first.
    let b = browser();
    let (verifier, challenge) = pkce();
    let r = b.get(authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[])).send().await.unwrap();
    let hosted = s.app.url(&location(&r));
    let page = b.get(&hosted).send().await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"identify\""), "{page}");
    let txn = hosted.rsplit('/').next().unwrap().to_owned();
    let csrf = hidden(&page, "csrf");
    // An unknown domain: told so, stays on the chooser.
    let r = b
        .post(s.app.url(&format!("/login/{txn}/identify")))
        .form(&[("csrf", csrf.as_str()), ("email", "someone@elsewhere.test")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    assert!(r.text().await.unwrap().contains("not set up here"));
    // Acme's domain (any case): straight to Acme's IdP, and on to the application.
    let r = b
        .post(s.app.url(&format!("/login/{txn}/identify")))
        .form(&[("csrf", csrf.as_str()), ("email", "Ada@ACME.test")])
        .send()
        .await
        .unwrap();
    assert!(r.status().is_redirection());
    let to_idp = location(&r);
    assert!(to_idp.starts_with(&s.idps[0].base), "{to_idp}");
    let (done, _, page) = follow(&b, to_idp, "ada", "ada-pw").await;
    let code = param(&done, "code").unwrap_or_else(|| panic!("{done} {page}"));
    assert_eq!(redeem(&s.app, &code, &verifier).await.status(), 200);

    // A login_hint in a claimed domain skips the chooser altogether.
    let (_, challenge) = pkce();
    let r = browser()
        .get(authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[("login_hint", "grace@acme-corp.test")]))
        .send()
        .await
        .unwrap();
    assert!(location(&r).starts_with(&s.idps[0].base), "identifier first from login_hint");
}

/// The IdP's "sign in to this app" link: its auto-post form of an unsolicited response.
async fn idp_initiated(b: &reqwest::Client, idp: &SamlIdp) -> (String, Vec<(String, String)>) {
    let page = b.get(format!("{}/idp-initiated?user=ada&password=ada-pw", idp.base)).send().await.unwrap();
    autopost(&page.text().await.unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idp_initiated_logins_land_once_at_the_configured_client() {
    let s = setup(&[
        Conn {
            id: "portal",
            kind: "saml",
            lines: "[connections.idp_initiated]\nclient_id = \"web\"\nscope = \"openid email\"",
            options: OPTIONS,
            idp: serde_json::json!({}),
        },
        Conn { id: "closed", kind: "saml", lines: "", options: OPTIONS, idp: serde_json::json!({}) },
    ])
    .await;
    let b = browser();
    let (action, fields) = idp_initiated(&b, &s.idps[0]).await;
    assert_eq!(action, s.app.url("/callback/portal"));
    let r = b.post(&action).form(&fields).send().await.unwrap();
    assert!(r.status().is_redirection(), "{}", r.status());
    // Login CSRF: anyone may post such a response from any page, so it opens no SSO session.
    let cookies: Vec<_> = r.headers().get_all("set-cookie").iter().map(|c| c.to_str().unwrap().to_owned()).collect();
    assert!(!cookies.iter().any(|c| c.starts_with("gh_session=")), "{cookies:?}");
    let done = location(&r);
    assert!(done.starts_with(WEB_REDIRECT), "{done}");
    assert_eq!(param(&done, "state"), None, "no client request, no state");
    let code = param(&done, "code").unwrap();
    // The code carries no PKCE challenge; the confidential client authenticates instead.
    let r = http()
        .post(s.app.url("/token"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[("grant_type", "authorization_code"), ("code", code.as_str()), ("redirect_uri", WEB_REDIRECT)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let t: serde_json::Value = r.json().await.unwrap();
    assert_eq!(claims(t["id_token"].as_str().unwrap())["sub"], "samlp|portal|ada-0001");
    assert_eq!(t["scope"], "openid email");

    // The same response again (a captured POST replayed): refused by the replay cache.
    let r = b.post(&action).form(&fields).send().await.unwrap();
    assert_eq!(r.status(), 400, "replayed assertion");
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("correlation-id"));

    // A connection that did not opt in refuses unsolicited responses.
    let (action, fields) = idp_initiated(&b, &s.idps[1]).await;
    let r = b.post(&action).form(&fields).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(s.app.core.store.users.get(&UserId::parse("samlp|closed|ada-0001").unwrap()).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_logout_ends_the_idp_session_too() {
    let s = setup(&[Conn { id: "acme", kind: "saml", lines: "", options: OPTIONS, idp: serde_json::json!({}) }]).await;
    let b = browser();
    // Whether this browser still has a Gatehouse session: prompt=none answers with a code.
    let signed_in = || {
        let (_, challenge) = pkce();
        let url = authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[("prompt", "none")]);
        let b = b.clone();
        async move {
            let to = location(&b.get(url).send().await.unwrap());
            match param(&to, "error").as_deref() {
                Some("login_required") => false,
                None if param(&to, "code").is_some() => true,
                _ => panic!("neither a code nor login_required: {to}"),
            }
        }
    };
    let (verifier, challenge) = pkce();
    let start = authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[("connection", "acme")]);
    let (done, _, _) = follow(&b, start, "ada", "ada-pw").await;
    let t: serde_json::Value = redeem(&s.app, &param(&done, "code").unwrap(), &verifier).await.json().await.unwrap();
    let hint = t["id_token"].as_str().unwrap();
    let logout = format!(
        "{}?id_token_hint={hint}&post_logout_redirect_uri=http%3A%2F%2Fapp.test%2Fbye&state=xyz",
        s.app.url("/logout")
    );
    assert!(signed_in().await, "signed in through the IdP");
    let r = b.get(&logout).send().await.unwrap();
    let to_idp = location(&r);
    assert!(to_idp.starts_with(&format!("{}/slo/redirect?SAMLRequest=", s.idps[0].base)), "{to_idp}");
    // The Gatehouse session ends before the browser goes to the IdP: an IdP that never
    // answers cannot keep anyone signed in here.
    assert!(!signed_in().await, "SP-initiated logout ended the Gatehouse session");
    assert!(to_idp.contains("&Signature="), "LogoutRequests are signed");
    let r = b.get(&to_idp).send().await.unwrap();
    let back = location(&r);
    assert!(back.starts_with(&s.app.url("/saml/acme/slo?")), "{back}");
    // A forged answer (the RelayState of the real one, another signature) is refused.
    let forged = back.replace("Signature=", "Signature=AAAA");
    let r = b.get(&forged).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("correlation-id"));
    // The IdP's real answer cannot be used now either: the pending logout was consumed.
    let r = b.get(&back).send().await.unwrap();
    assert_eq!(r.status(), 400);
    let log: serde_json::Value = get(format!("{}/slo/log", s.idps[0].base)).await.unwrap().json().await.unwrap();
    assert_eq!(log, serde_json::json!(["ada-0001"]), "the IdP ended Ada's session");

    // Once more, and this time the real answer completes: to the client, with its state.
    let (verifier, challenge) = pkce();
    let start = authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[("connection", "acme")]);
    let (done, _, _) = follow(&b, start, "ada", "ada-pw").await;
    let t: serde_json::Value = redeem(&s.app, &param(&done, "code").unwrap(), &verifier).await.json().await.unwrap();
    let logout = logout.replace(hint, t["id_token"].as_str().unwrap());
    assert!(signed_in().await, "signed in again");
    let r = b.get(&logout).send().await.unwrap();
    let r = b.get(location(&r)).send().await.unwrap();
    let r = b.get(location(&r)).send().await.unwrap();
    assert_eq!(location(&r), "http://app.test/bye?state=xyz");
    assert!(!signed_in().await, "the completed round trip leaves no session either");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authn_requests_over_http_post() {
    let s = setup(&[Conn {
        id: "acme",
        kind: "saml",
        lines: "",
        options: "idp_metadata_url = \"{idp}/metadata\"\nsp_key_file = \"{keys}/sp.key\"\nsp_certificate_file = \"{keys}/sp.crt\"\nrequest_binding = \"post\"",
        idp: serde_json::json!({}),
    }])
    .await;
    let b = browser();
    let (verifier, challenge) = pkce();
    let r =
        b.get(authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[("connection", "acme")])).send().await.unwrap();
    assert_eq!(r.status(), 200, "a page that posts the AuthnRequest");
    let page = r.text().await.unwrap();
    let (action, fields) = autopost(&page);
    assert_eq!(action, format!("{}/sso/post", s.idps[0].base));
    assert!(fields.iter().any(|(k, _)| k == "SAMLRequest"));
    // Drive the POST binding by hand: the IdP verifies the enveloped request signature.
    let r = b.post(&action).form(&fields).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let login_page = r.text().await.unwrap();
    let pending = hidden(&login_page, "pending");
    let r = b
        .post(format!("{}/login", s.idps[0].base))
        .form(&[("pending", pending.as_str()), ("username", "ada"), ("password", "ada-pw")])
        .send()
        .await
        .unwrap();
    let (acs, fields) = autopost(&r.text().await.unwrap());
    let r = b.post(&acs).form(&fields).send().await.unwrap();
    let code = param(&location(&r), "code").unwrap();
    assert_eq!(redeem(&s.app, &code, &verifier).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_initiated_logout_ends_the_session_it_names() {
    let s = setup(&[Conn { id: "acme", kind: "saml", lines: "", options: OPTIONS, idp: serde_json::json!({}) }]).await;
    let b = browser();
    let (verifier, challenge) = pkce();
    let start = authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[("connection", "acme")]);
    let (done, _, _) = follow(&b, start, "ada", "ada-pw").await;
    assert_eq!(redeem(&s.app, &param(&done, "code").unwrap(), &verifier).await.status(), 200);
    // Is this browser still signed in at Gatehouse? prompt=none answers without a page.
    let signed_in = |b: reqwest::Client| {
        let (_, challenge) = pkce();
        let url = authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[("prompt", "none")]);
        async move { param(&location(&b.get(url).send().await.unwrap()), "code").is_some() }
    };
    assert!(signed_in(b.clone()).await);
    let idp = &s.idps[0].base;

    // The IdP ends another of its sessions (another SessionIndex): this one stays.
    let r = b.get(format!("{idp}/slo/initiate?user=ada&session_index=_not-ours")).send().await.unwrap();
    let to_gatehouse = location(&r);
    assert!(to_gatehouse.starts_with(&s.app.url("/saml/acme/slo?SAMLRequest=")), "{to_gatehouse}");
    let r = b.get(&to_gatehouse).send().await.unwrap();
    assert!(location(&r).starts_with(&format!("{idp}/slo/redirect?SAMLResponse=")));
    assert!(signed_in(b.clone()).await, "a LogoutRequest for another IdP session ends nothing here");

    // Now Ada's: Gatehouse ends the session and answers, signed, with the IdP's RelayState.
    let r = b.get(format!("{idp}/slo/initiate?user=ada&relay_state=rs-42")).send().await.unwrap();
    let r = b.get(location(&r)).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let cleared = r.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap().starts_with("gh_session=;"));
    assert!(cleared, "the session cookie is removed");
    let r = b.get(location(&r)).send().await.unwrap();
    assert_eq!(r.status(), 200, "the IdP took the signed LogoutResponse");
    let answers: serde_json::Value = get(format!("{idp}/slo/responses")).await.unwrap().json().await.unwrap();
    let last = answers.as_array().unwrap().last().unwrap();
    assert_eq!(last["status"], "urn:oasis:names:tc:SAML:2.0:status:Success");
    assert_eq!(last["relay_state"], "rs-42");
    assert_eq!(last["issuer"], s.app.url("/saml/acme/metadata"));
    assert!(!signed_in(b).await, "signed out of Gatehouse");
}

/// A port another process holds is reported as taken (and `setup` starts over), not as an IdP
/// that failed for an unknown reason, nor as one that is ready.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idp_port_taken_by_another_process_is_reported_as_taken() {
    let s = setup(&[Conn { id: "acme", kind: "saml", lines: "", options: OPTIONS, idp: serde_json::json!({}) }]).await;
    let meta = get(s.app.url("/saml/acme/metadata")).await.unwrap().text().await.unwrap();
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let started = SamlIdp::try_start(port, &s._dir.0, &meta, serde_json::json!({}));
    assert!(matches!(started, Err(PortTaken)), "an IdP on a held port");
    assert!(crate::harness::listens_on(std::process::id(), port), "the held port is still this process's");
    // The same IdP on a port of its own serves: the refusal was the held port's.
    let idp = (0..5)
        .find_map(|_| SamlIdp::try_start(port_to_try(), &s._dir.0, &meta, serde_json::json!({})).ok())
        .expect("five ports in a row were taken by others");
    assert!(get(format!("{}/metadata", idp.base)).await.unwrap().status().is_success(), "the IdP serves");
}

/// Auth0's `/v2/logout` ends the upstream session only with `federated`, through the same
/// Single Logout round trip as `/logout`, and lands at the allowed `returnTo` either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auth0_v2_logout_ends_the_idp_session_only_when_federated() {
    let s = setup(&[Conn { id: "acme", kind: "saml", lines: "", options: OPTIONS, idp: serde_json::json!({}) }]).await;
    let b = browser();
    let idp_log = || async {
        get(format!("{}/slo/log", s.idps[0].base)).await.unwrap().json::<serde_json::Value>().await.unwrap()
    };
    let sign_in = || {
        let (_, challenge) = pkce();
        let start = authorize_url(&s.app, "web", WEB_REDIRECT, &challenge, &[("connection", "acme")]);
        let b = b.clone();
        async move {
            let (done, _, _) = follow(&b, start, "ada", "ada-pw").await;
            assert!(param(&done, "code").is_some(), "{done}");
        }
    };
    let v2 = |federated: bool| {
        let mut url = format!("{}?client_id=web&returnTo=http%3A%2F%2Fapp.test%2Fbye", s.app.url("/v2/logout"));
        if federated {
            url.push_str("&federated");
        }
        url
    };

    sign_in().await;
    let r = b.get(v2(false)).send().await.unwrap();
    assert_eq!(location(&r), "http://app.test/bye", "without federated: straight back to the app");
    assert_eq!(idp_log().await, serde_json::json!([]), "the IdP was not asked");

    sign_in().await;
    let r = b.get(v2(true)).send().await.unwrap();
    let to_idp = location(&r);
    assert!(to_idp.starts_with(&format!("{}/slo/redirect?SAMLRequest=", s.idps[0].base)), "{to_idp}");
    let back = location(&b.get(&to_idp).send().await.unwrap());
    assert!(back.starts_with(&s.app.url("/saml/acme/slo?")), "{back}");
    let r = b.get(&back).send().await.unwrap();
    assert_eq!(location(&r), "http://app.test/bye", "then to returnTo");
    let log = idp_log().await;
    let ended = log.as_array().unwrap();
    assert!(ended.len() == 1 && ended[0].as_str().unwrap().starts_with("ada-"), "the IdP ended Ada's session: {log}");
}
