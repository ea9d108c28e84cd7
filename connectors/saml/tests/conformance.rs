//! The SDK's conformance kit against the SAML connector and a fake IdP whose responses
//! xmlsec1 signs (fixtures/saml/make.py).

use gatehouse_connector::testkit::conformance::{Harness, run};
use gatehouse_connector::testkit::{ISSUER, callback_url, server::unreachable_url};
use gatehouse_connector::{CallbackInput, Start, async_trait};
use gatehouse_connector_saml::Config;
use gatehouse_connector_saml::testkit::{FakeIdp, IDP_ENTITY_ID, SSO_URL};

struct Idp {
    idp: FakeIdp,
    sp_key: String,
}

fn sp_entity_id() -> String {
    format!("{ISSUER}/sp")
}

impl Idp {
    fn new() -> Self {
        let idp = FakeIdp::new(IDP_ENTITY_ID, &sp_entity_id(), callback_url().as_str());
        let pem = std::fs::read_to_string(idp.file("sp.key")).unwrap();
        // A line of the SP's private key: it must never reach a Debug output.
        let sp_key = pem.lines().nth(1).unwrap().to_owned();
        Self { idp, sp_key }
    }
}

#[async_trait]
impl Harness for Idp {
    type Config = Config;

    fn options(&self) -> serde_json::Value {
        serde_json::json!({
            "idp_entity_id": IDP_ENTITY_ID, "sso_url": SSO_URL,
            "idp_certificate_files": [self.idp.file("idp.crt")],
            "sp_entity_id": sp_entity_id(),
            "sp_key_file": self.idp.file("sp.key"), "sp_certificate_file": self.idp.file("sp.crt"),
        })
    }

    fn unreachable_options(&self) -> Option<serde_json::Value> {
        Some(serde_json::json!({
            "idp_metadata_url": unreachable_url("/metadata"), "sp_entity_id": sp_entity_id(),
        }))
    }

    fn upstream_requests(&self) -> usize {
        // The IdP is configured inline: there is nothing to fetch.
        0
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.sp_key.clone()]
    }

    async fn approve(&self, start: &Start, _txn: &str) -> CallbackInput {
        self.idp.answer(start, self.now(), false)
    }

    async fn refuse(&self, start: &Start, _txn: &str) -> CallbackInput {
        self.idp.answer(start, self.now(), true)
    }
}

#[tokio::test]
async fn the_saml_connector_conforms() {
    run(&Idp::new()).await;
}
