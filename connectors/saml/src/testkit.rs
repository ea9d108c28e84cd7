//! A fake SAML identity provider for connector tests (the `testkit` feature): test keys and
//! responses to the connector's own AuthnRequests, signed by xmlsec1 through
//! `fixtures/saml/make.py` (the same generator as the attack catalogue). Needs python3,
//! openssl and xmlsec1 (`./scripts/setup` or `apt-get install python3 openssl xmlsec1`).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use gatehouse_connector::{CallbackInput, Start};

use crate::binding;

/// An entity ID for the fake IdP.
pub const IDP_ENTITY_ID: &str = "https://idp.saml.test/metadata";
/// A single sign-on URL for it (never contacted: the browser would go there).
pub const SSO_URL: &str = "https://idp.saml.test/sso";
/// The NameID of the person it signs in.
pub const NAME_ID: &str = "ada-0001";

/// Keys made by `make.py keys` in a scratch directory (removed on drop).
pub struct FakeIdp {
    dir: PathBuf,
    idp_entity_id: String,
    sp_entity_id: String,
    acs_url: String,
}

impl FakeIdp {
    /// New keys for an IdP `idp_entity_id` answering the SP with this entity ID and ACS URL.
    pub fn new(idp_entity_id: &str, sp_entity_id: &str, acs_url: &str) -> Self {
        let n = std::process::id();
        let dir = std::env::temp_dir().join(format!("gatehouse-fake-idp-{n}-{}", binding::new_id()));
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        make_py(&["keys".as_ref(), dir.as_os_str()]);
        Self { dir, idp_entity_id: idp_entity_id.into(), sp_entity_id: sp_entity_id.into(), acs_url: acs_url.into() }
    }

    /// A key or certificate file: `idp.crt`, `sp.key`, `sp.crt`...
    pub fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The IdP's answer to the AuthnRequest `start` carries, at `now`: the `valid` case of
    /// the catalogue, or `status_failure` (a signed Responder status) when `refuse`.
    pub fn answer(&self, start: &Start, now: SystemTime, refuse: bool) -> CallbackInput {
        let (request_id, relay) = authn_request(start);
        let case = if refuse { "status_failure" } else { "valid" };
        let spec = serde_json::json!({
            "idp_entity_id": self.idp_entity_id, "sp_entity_id": self.sp_entity_id, "acs_url": self.acs_url,
            "now": now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "name_id": NAME_ID, "email": "ada@saml.test", "cases": {case: request_id},
        });
        let spec_file = self.dir.join(format!("spec-{}.json", binding::new_id()));
        std::fs::write(&spec_file, spec.to_string()).expect("write the spec");
        let out = make_py(&[
            "responses".as_ref(),
            "--keys".as_ref(),
            self.dir.as_os_str(),
            "--spec".as_ref(),
            spec_file.as_os_str(),
        ]);
        let cases: serde_json::Value = serde_json::from_slice(&out).expect("make.py prints JSON");
        let response = cases[case]["SAMLResponse"].as_str().expect("a SAMLResponse").to_owned();
        CallbackInput::Form(vec![("SAMLResponse".into(), response), ("RelayState".into(), relay)])
    }
}

impl Drop for FakeIdp {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The ID and RelayState of the AuthnRequest in a redirect or an auto-POST form.
fn authn_request(start: &Start) -> (String, String) {
    let (encoded, relay, deflated) = match start {
        Start::Redirect { url } => {
            let get = |k: &str| url.query_pairs().find(|(n, _)| n == k).map(|(_, v)| v.into_owned());
            (get("SAMLRequest"), get("RelayState"), true)
        }
        Start::PostForm { fields, .. } => {
            let get = |k: &str| fields.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
            (get("SAMLRequest"), get("RelayState"), false)
        }
        Start::Credentials(_) => panic!("a SAML login never asks for credentials"),
    };
    let bytes = STANDARD.decode(encoded.expect("a SAMLRequest")).expect("base64");
    let xml = if deflated {
        binding::inflate(&bytes).expect("a deflated request")
    } else {
        String::from_utf8(bytes).expect("UTF-8")
    };
    let root = crate::xml::parse(&xml, &crate::xml::Limits::MESSAGE).expect("a well-formed AuthnRequest");
    let id = root.attr("ID").expect("the AuthnRequest has an ID").to_owned();
    (id, relay.unwrap_or_default())
}

fn make_py(args: &[&std::ffi::OsStr]) -> Vec<u8> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/saml/make.py");
    let out = Command::new("python3")
        .arg(script)
        .args(args)
        .output()
        .expect("python3 is needed for the SAML fixtures: apt-get install python3 openssl xmlsec1");
    assert!(out.status.success(), "make.py {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}
