//! The SAML attack catalogue of `fixtures/saml/make.py`: real responses signed with xmlsec1,
//! then mutated after signing. Each one is posted to the ACS of a live login transaction;
//! a rejection must be an error page with a correlation id, and leave no session, no user and
//! no code behind. The catalogue and this table must list the same cases.

use std::collections::BTreeMap;
use std::process::Command;

use base64::Engine as _;
use gatehouse::types::UserId;

use crate::harness::*;
use crate::saml::{make_keys, root};

const IDP: &str = "https://idp.attack.test/saml";

/// Every case the catalogue holds, and what must happen to it here.
const TABLE: &[(&str, Expect)] = &[
    ("valid", Expect::Accept),
    ("valid_both_signed", Expect::Accept),
    ("valid_rollover", Expect::Accept),
    ("comment_in_nameid", Expect::Accept),
    ("cdata_in_nameid", Expect::Accept),
    ("encrypted_valid_aes256gcm", Expect::Accept),
    ("encrypted_valid_aes128cbc", Expect::Accept),
    ("signature_removed", Expect::Reject),
    ("tampered_nameid", Expect::Reject),
    ("tampered_attribute", Expect::Reject),
    ("xsw1", Expect::Reject),
    ("xsw2", Expect::Reject),
    ("xsw3", Expect::Reject),
    ("xsw4", Expect::Reject),
    ("xsw5", Expect::Reject),
    ("xsw6", Expect::Reject),
    ("xsw7", Expect::Reject),
    ("xsw8", Expect::Reject),
    ("duplicate_id", Expect::Reject),
    ("attacker_keyinfo", Expect::Reject),
    ("cloned_certificate", Expect::Reject),
    ("sha1_signature", Expect::Reject),
    ("hmac_signature", Expect::Reject),
    ("xslt_transform", Expect::Reject),
    ("xpath_transform", Expect::Reject),
    ("reference_uri_empty", Expect::Reject),
    ("signature_not_child", Expect::Reject),
    ("pi_in_nameid", Expect::Reject),
    ("doctype_xxe", Expect::Reject),
    ("billion_laughs", Expect::Reject),
    ("internal_entity", Expect::Reject),
    ("wrong_audience", Expect::Reject),
    ("wrong_recipient", Expect::Reject),
    ("wrong_destination", Expect::Reject),
    ("wrong_issuer", Expect::Reject),
    ("in_response_to_other", Expect::Reject),
    ("expired", Expect::Reject),
    ("not_yet_valid", Expect::Reject),
    ("two_assertions", Expect::Reject),
    ("status_failure", Expect::Denied),
    ("holder_of_key", Expect::Reject),
    ("unsolicited", Expect::Reject),
    ("response_signed_only", Expect::Reject),
    ("oversized", Expect::Reject),
    ("deep_nesting", Expect::Reject),
    ("encrypted_unsigned", Expect::Reject),
    ("encrypted_rsa15", Expect::Reject),
    ("deflate_bomb", Expect::Redirect),
];

/// Why each refused case is refused, as the log says it: the check that must catch it.
fn reason(case: &str) -> &'static str {
    match case {
        "signature_removed" | "encrypted_unsigned" => "the response is not signed",
        "tampered_nameid" | "tampered_attribute" | "attacker_keyinfo" | "cloned_certificate" => {
            "signature does not verify with the configured certificates"
        }
        // Every wrapping variant carries a second (evil or moved) assertion: the shape check
        // refuses it before any signature is looked at.
        "xsw1" | "xsw2" | "xsw3" | "xsw4" | "xsw5" | "xsw6" | "xsw7" | "xsw8" | "two_assertions" => {
            "expected exactly one assertion, found 2"
        }
        "duplicate_id" => "duplicate ID attribute",
        "sha1_signature" => "xmldsig#rsa-sha1 is not accepted",
        "hmac_signature" => "xmldsig-more#hmac-sha256 is not accepted",
        "xslt_transform" => "REC-xslt-19991116 is not accepted",
        "xpath_transform" => "REC-xpath-19991116 is not accepted",
        "reference_uri_empty" => "the Reference does not point at the signed element's ID",
        "signature_not_child" => "a Signature in an unexpected place",
        "pi_in_nameid" => "processing instructions are not accepted",
        "doctype_xxe" | "billion_laughs" | "internal_entity" => "DOCTYPE declarations are not accepted",
        "wrong_audience" => "Audience is not this service provider",
        "wrong_recipient" => "Recipient is not this connection's ACS URL",
        "wrong_destination" => "Destination is not this connection's ACS URL",
        "wrong_issuer" => "unexpected Issuer",
        "in_response_to_other" => "InResponseTo is another request's",
        "expired" => "assertion is too old",
        "not_yet_valid" => "assertion issued in the future",
        "status_failure" => "Responder",
        "holder_of_key" => "no bearer SubjectConfirmation",
        "unsolicited" => "InResponseTo is not this transaction's request",
        "response_signed_only" => "response-only signing is not enabled",
        "deep_nesting" => "nests deeper than 32 elements",
        // One message for every decryption failure (no padding oracle): RSA PKCS#1 v1.5 is
        // refused before any decryption is tried.
        "encrypted_rsa15" => "the encrypted assertion could not be decrypted",
        other => panic!("no reason written down for {other}"),
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    Accept,
    /// Refused as an invalid response (possible attack).
    Reject,
    /// The IdP said no: `access_denied` at the client's redirect URI.
    Denied,
    /// Not a POST response: the HTTP-Redirect binding case, driven separately.
    Redirect,
}

fn config(keys: &str) -> String {
    let options = format!(
        "idp_entity_id = \"{IDP}\"\nsso_url = \"https://idp.attack.test/sso\"\nslo_url = \"https://idp.attack.test/slo\"\nidp_certificate_files = [\"{keys}/idp.crt\", \"{keys}/idp2.crt\"]\nsp_key_file = \"{keys}/sp.key\"\nsp_certificate_file = \"{keys}/sp.crt\""
    );
    crate::harness::config("ES256").replacen("connections = [\"users\"]", "connections = [\"users\", \"acme\"]", 1)
        + &format!("\n[[connections]]\nid = \"acme\"\ntype = \"saml\"\n[connections.options]\n{options}\n")
}

fn make_py(args: &[&str]) -> serde_json::Value {
    let out =
        output_within(Command::new("python3").arg(root().join("fixtures/saml/make.py")).args(args), PEER_DEADLINE);
    assert!(out.status.success(), "make.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A login transaction waiting at the IdP: its browser, PKCE verifier, RelayState and the
/// AuthnRequest ID (read back from the deflated SAMLRequest).
struct Pending {
    browser: reqwest::Client,
    verifier: String,
    relay_state: String,
    request_id: String,
}

/// The AuthnRequest ID of a redirect to the IdP, read back from the deflated SAMLRequest.
fn request_id(to_idp: &str) -> String {
    let deflated = base64::engine::general_purpose::STANDARD.decode(param(to_idp, "SAMLRequest").unwrap()).unwrap();
    let xml = gatehouse_connector_saml::binding::inflate(&deflated).unwrap();
    xml.split(" ID=\"").nth(1).unwrap().split('"').next().unwrap().to_owned()
}

/// Responses from the fixture generator for `cases` (case -> request ID or null), for the
/// node at `issuer` and its connection `acme`.
fn responses(dir: &TempDir, issuer: &str, cases: serde_json::Value, other_request_id: &str) -> serde_json::Value {
    let spec = serde_json::json!({
        "idp_entity_id": IDP,
        "sp_entity_id": format!("{issuer}/saml/acme/metadata"),
        "acs_url": format!("{issuer}/callback/acme"),
        "name_id": "ada-persistent-7",
        "email": "ada@example.com",
        "cases": cases,
        "other_request_id": other_request_id,
    });
    let spec_path = dir.0.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    make_py(&["responses", "--keys", dir.0.to_str().unwrap(), "--spec", spec_path.to_str().unwrap()])
}

impl Pending {
    /// The IdP's POST of `case` to the ACS at `acs`, from this transaction's browser.
    async fn post(&self, acs: &str, responses: &serde_json::Value, case: &str) -> reqwest::Response {
        let body = responses[case]["SAMLResponse"].as_str().unwrap();
        self.browser
            .post(acs)
            .form(&[("SAMLResponse", body), ("RelayState", self.relay_state.as_str())])
            .send()
            .await
            .unwrap()
    }
}

async fn pending(app: &TestApp) -> Pending {
    let (verifier, challenge) = pkce();
    pending_at(authorize_url(app, "web", WEB_REDIRECT, &challenge, &[("connection", "acme")]), verifier).await
}

async fn pending_at(authorize: String, verifier: String) -> Pending {
    let b = browser();
    let r = b.get(authorize).send().await.unwrap();
    let to_idp = location(&r);
    assert!(to_idp.starts_with("https://idp.attack.test/sso?SAMLRequest="), "{to_idp}");
    assert!(param(&to_idp, "Signature").is_some(), "the AuthnRequest is signed (an SP key is configured)");
    Pending {
        browser: b,
        verifier,
        relay_state: param(&to_idp, "RelayState").unwrap(),
        request_id: request_id(&to_idp),
    }
}

fn session_cookie_set(r: &reqwest::Response) -> bool {
    r.headers().get_all("set-cookie").iter().any(|c| c.to_str().unwrap_or("").starts_with("gh_session="))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_in_the_catalogue_is_refused_and_leaves_nothing() {
    let logs = capture_logs();
    let dir = TempDir::new();
    make_keys(&dir.0);
    let keys = dir.0.display().to_string();
    let app = TestApp::with(Options { config: Some(config(&keys)), ..Default::default() }).await;

    // The catalogue and this table agree, case for case and verdict for verdict.
    let catalogue = make_py(&["cases"]);
    let mut listed = BTreeMap::new();
    for c in catalogue.as_array().unwrap() {
        listed.insert(c["name"].as_str().unwrap().to_owned(), c["expect"].as_str().unwrap().to_owned());
    }
    let table: BTreeMap<String, String> = TABLE
        .iter()
        .map(|(n, e)| ((*n).to_owned(), if *e == Expect::Accept { "accept" } else { "reject" }.to_owned()))
        .collect();
    assert_eq!(listed, table, "tests/saml_attacks.rs TABLE and make.py's catalogue differ");

    // One live transaction per POST case, plus one whose ID an attack borrows.
    let mut txns = BTreeMap::new();
    for (name, expect) in TABLE {
        if *expect != Expect::Redirect {
            txns.insert(*name, pending(&app).await);
        }
    }
    let other = pending(&app).await;
    let cases: serde_json::Map<_, _> =
        txns.iter().map(|(n, p)| ((*n).to_owned(), serde_json::Value::from(p.request_id.clone()))).collect();
    let responses = responses(&dir, &app.issuer, cases.into(), &other.request_id);
    let acs = app.url("/callback/acme");

    // Rejections first, so no accepted case can have created the users they must not create.
    for (name, expect) in TABLE.iter().filter(|(_, e)| matches!(e, Expect::Reject | Expect::Denied)) {
        let p = &txns[name];
        let r = p.post(&acs, &responses, name).await;
        let status = r.status().as_u16();
        assert!(!session_cookie_set(&r), "{name}: no session");
        let cid = r.headers()["x-correlation-id"].to_str().unwrap().to_owned();
        if *expect == Expect::Denied {
            // A refusal goes back to the client's trusted redirect URI (OIDC Core 3.1.2.6).
            assert_eq!(status, 303, "{name}: status");
            let to = r.headers()["location"].to_str().unwrap().to_owned();
            assert_eq!(param(&to, "error").as_deref(), Some("access_denied"), "{name}: {to}");
            assert_eq!(param(&to, "iss").as_deref(), Some(app.issuer.as_str()), "{name}: {to}");
            assert!(param(&to, "code").is_none(), "{name}: no code");
        } else {
            assert_eq!(status, 400, "{name}: status");
            assert!(r.headers().get("location").is_none(), "{name}: no redirect, so no code");
        }
        let page = r.text().await.unwrap();
        if *expect != Expect::Denied {
            assert!(page.contains(&cid), "{name}: an error page with the correlation id");
        }
        // Refused for the right reason: the one logged line of this request names it (a case
        // refused by an unrelated check would pass on status alone).
        let why: Vec<String> = logs
            .of_request(&cid)
            .iter()
            .filter(|e| {
                e["message"] == "login failed"
                    || e["message"].as_str().is_some_and(|m| m.starts_with("sign-in refused"))
            })
            .map(|e| e["detail"].as_str().or(e["reason"].as_str()).unwrap_or_default().to_owned())
            .collect();
        if *name == "oversized" {
            assert!(why.is_empty(), "{name}: refused before the login is looked at: {why:?}");
            assert!(page.contains("<code>invalid_request</code>"), "{name}: {page}");
        } else {
            let want = reason(name);
            assert!(why.len() == 1 && why[0].contains(want), "{name}: refused for {why:?}, expected {want:?}");
        }
        // The transaction is spent: the same browser cannot retry it with a better response.
        // (An oversized body is refused before it is read: it never reaches the login.)
        let id = gatehouse::types::TransactionId::parse(&p.relay_state).unwrap();
        let live = app.core.store.transactions.get(&id).await.unwrap().is_some();
        assert_eq!(live, *name == "oversized", "{name}: transaction consumed");
    }
    let users = &app.core.store.users;
    for who in ["samlp|acme|root-admin", "samlp|acme|ada-persistent-7", "samlp|acme|ada@example.com"] {
        assert!(users.get(&UserId::parse(who).unwrap()).await.unwrap().is_none(), "{who} must not exist");
    }

    // The accepted cases: tokens for exactly the subject the IdP signed.
    for (name, _) in TABLE.iter().filter(|(_, e)| *e == Expect::Accept) {
        let r = txns[name].post(&acs, &responses, name).await;
        assert!(r.status().is_redirection(), "{name}: {}", r.status());
        let done = location(&r);
        let code = param(&done, "code").unwrap_or_else(|| panic!("{name}: {done}"));
        let t: serde_json::Value = redeem(&app, &code, &txns[name].verifier).await.json().await.unwrap();
        let sub = claims(t["id_token"].as_str().unwrap())["sub"].as_str().unwrap().to_owned();
        assert_eq!(sub, format!("samlp|acme|{}", responses[*name]["subject"].as_str().unwrap()), "{name}");
    }
    // Comment and CDATA tricks gave the whole text, never the part before the split.
    assert!(users.get(&UserId::parse("samlp|acme|ada@example.com").unwrap()).await.unwrap().is_none());

    // The same valid response posted again: its transaction is gone.
    assert_eq!(txns["valid"].post(&acs, &responses, "valid").await.status(), 400);
}

/// The assertion-ID replay cache, on its own: a connection that takes IdP-initiated
/// responses has no transaction to consume, so only the cache stops a second use.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unsolicited_assertion_works_once() {
    let dir = TempDir::new();
    make_keys(&dir.0);
    let keys = dir.0.display().to_string();
    let text = config(&keys).replace(
        "type = \"saml\"\n[connections.options]",
        "type = \"saml\"\n[connections.idp_initiated]\nclient_id = \"web\"\n[connections.options]",
    );
    let app = TestApp::with(Options { config: Some(text), ..Default::default() }).await;
    let responses = responses(&dir, &app.issuer, serde_json::json!({"unsolicited": null}), "_none");
    let post = |body: String| {
        let app = app.url("/callback/acme");
        async move { browser().post(app).form(&[("SAMLResponse", body)]).send().await.unwrap() }
    };
    let unsolicited = responses["unsolicited"]["SAMLResponse"].as_str().unwrap().to_owned();
    let r = post(unsolicited.clone()).await;
    assert!(r.status().is_redirection(), "{}", r.status());
    assert!(param(&location(&r), "code").is_some());
    // Second use, from any browser: refused by the replay cache.
    let r = post(unsolicited).await;
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("correlation-id"));
}

/// The HTTP-Redirect binding: a deflate bomb, correctly signed by the IdP, inflates no further
/// than the limit and is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_deflate_bomb_on_the_redirect_binding_is_refused() {
    let dir = TempDir::new();
    make_keys(&dir.0);
    let keys = dir.0.display().to_string();
    let app = TestApp::with(Options { config: Some(config(&keys)), ..Default::default() }).await;
    // A session with an upstream to log out of: the `valid` case through a real transaction.
    let p = pending(&app).await;
    let cases = serde_json::json!({"valid": p.request_id, "deflate_bomb": null});
    let responses = responses(&dir, &app.issuer, cases, "_none");
    let r = p.post(&app.url("/callback/acme"), &responses, "valid").await;
    let code = param(&location(&r), "code").unwrap();
    let t: serde_json::Value = redeem(&app, &code, &p.verifier).await.json().await.unwrap();
    let r = p
        .browser
        .get(format!("{}?id_token_hint={}", app.url("/logout"), t["id_token"].as_str().unwrap()))
        .send()
        .await
        .unwrap();
    let to_idp = location(&r);
    assert!(to_idp.starts_with("https://idp.attack.test/slo?SAMLRequest="), "{to_idp}");
    let relay = param(&to_idp, "RelayState").unwrap();

    // The bomb, signed with the IdP's key the way the binding signs (openssl, RSA-SHA256).
    let enc = |s: &str| url::form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    let bomb = responses["deflate_bomb"]["SAMLResponse"].as_str().unwrap();
    let signed = format!(
        "SAMLResponse={}&RelayState={}&SigAlg={}",
        enc(bomb),
        enc(&relay),
        enc("http://www.w3.org/2001/04/xmldsig-more#rsa-sha256")
    );
    let data = dir.0.join("signed.txt");
    std::fs::write(&data, &signed).unwrap();
    let out = output_within(
        Command::new("openssl").args(["dgst", "-sha256", "-sign"]).arg(dir.0.join("idp.key")).arg(&data),
        PEER_DEADLINE,
    );
    assert!(out.status.success());
    let sig = base64::engine::general_purpose::STANDARD.encode(out.stdout);
    let r =
        p.browser.get(format!("{}?{signed}&Signature={}", app.url("/saml/acme/slo"), enc(&sig))).send().await.unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.headers().get("location").is_none());
    assert!(r.text().await.unwrap().contains("correlation-id"));
}

/// Two Gatehouse processes on one Redis: a SAML login started on one node finishes at the
/// other's ACS, and an assertion accepted by one node is refused by the other (the replay
/// cache is the store's, not a node's).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_on_one_redis_share_transactions_and_the_assertion_replay_cache() {
    use crate::redis_harness::TestRedis;
    let redis = TestRedis::start();
    let dir = TempDir::new();
    make_keys(&dir.0);
    let keys = dir.0.display().to_string();
    let tag = gatehouse::types::random_token(6);
    let path = dir.0.join("gatehouse.toml");
    // Node A's port makes the issuer of the configuration both nodes share.
    let write_config = |issuer: &str| {
        let config = format!(
            r#"issuer = "{issuer}"
[store]
kind = "redis"
url = "{redis}"
key_prefix = "gh-saml-{tag}"
[[clients]]
client_id = "web"
client_secret = "{WEB_SECRET}"
redirect_uris = ["{WEB_REDIRECT}"]
connections = ["acme"]
[[connections]]
id = "acme"
type = "saml"
[connections.idp_initiated]
client_id = "web"
[connections.options]
idp_entity_id = "{IDP}"
sso_url = "https://idp.attack.test/sso"
idp_certificate_files = ["{keys}/idp.crt"]
sp_key_file = "{keys}/sp.key"
sp_certificate_file = "{keys}/sp.crt"
"#,
            redis = redis.url(),
        );
        std::fs::write(&path, config).unwrap();
    };
    let args = |port| (serve_args(&["--config", path.to_str().unwrap()], port), envs(&[("GATEHOUSE_LOG", "warn")]));
    let a = spawn_node(&dir.0, "a", |port| {
        write_config(&format!("http://127.0.0.1:{port}"));
        args(port)
    });
    let issuer = a.base.clone();
    let b = spawn_node(&dir.0, "b", args);

    // Start at node A; the IdP's POST lands on node B.
    let (verifier, challenge) = pkce();
    let mut url = url::Url::parse(&a.url("/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", "web"),
        ("redirect_uri", WEB_REDIRECT),
        ("scope", "openid"),
        ("state", "s1"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
    ]);
    let p = pending_at(url.to_string(), verifier).await;
    let cases = serde_json::json!({"valid": p.request_id, "unsolicited": null});
    let responses = responses(&dir, &issuer, cases, "_none");
    let r = p.post(&b.url("/callback/acme"), &responses, "valid").await;
    assert_eq!(r.status(), 303, "a login started on A finishes on B");
    let code = param(&location(&r), "code").unwrap();
    let t = http()
        .post(a.url("/token"))
        .basic_auth("web", Some(WEB_SECRET))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code.as_str()),
            ("redirect_uri", WEB_REDIRECT),
            ("code_verifier", p.verifier.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(t.status(), 200);

    // An IdP-initiated response accepted by A is refused by B.
    let unsolicited = responses["unsolicited"]["SAMLResponse"].as_str().unwrap();
    let r = http_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .post(a.url("/callback/acme"))
        .form(&[("SAMLResponse", unsolicited)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303, "first use, on A");
    let r = http().post(b.url("/callback/acme")).form(&[("SAMLResponse", unsolicited)]).send().await.unwrap();
    assert_eq!(r.status(), 400, "the replay, on B");
}

/// `encryption_algorithms` pins the content cipher: its label is not authenticated, so an
/// attacker holding a GCM ciphertext could otherwise present it as CBC.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pinned_content_cipher_refuses_the_others() {
    let dir = TempDir::new();
    make_keys(&dir.0);
    let keys = dir.0.display().to_string();
    let text = config(&keys).replace("sp_key_file =", "encryption_algorithms = [\"aes256-gcm\"]\nsp_key_file =");
    let app = TestApp::with(Options { config: Some(text), ..Default::default() }).await;
    let (gcm, cbc) = (pending(&app).await, pending(&app).await);
    let cases =
        serde_json::json!({"encrypted_valid_aes256gcm": gcm.request_id, "encrypted_valid_aes128cbc": cbc.request_id});
    let responses = responses(&dir, &app.issuer, cases, "_none");
    let acs = app.url("/callback/acme");
    let r = cbc.post(&acs, &responses, "encrypted_valid_aes128cbc").await;
    assert_eq!(r.status(), 400, "CBC is not on the list");
    let r = gcm.post(&acs, &responses, "encrypted_valid_aes256gcm").await;
    assert!(r.status().is_redirection(), "{}", r.status());
    assert!(param(&location(&r), "code").is_some());
}
