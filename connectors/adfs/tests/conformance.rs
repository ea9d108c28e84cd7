//! The SDK's conformance kit against the ADFS connector: ADFS's FederationMetadata.xml
//! (fixtures/saml/adfs) with its token-signing certificate replaced by the fake IdP's, and
//! responses xmlsec1 signs (fixtures/saml/make.py).

use gatehouse_connector::testkit::conformance::{Harness, run};
use gatehouse_connector::testkit::{ISSUER, callback_url, server::unreachable_url};
use gatehouse_connector::{CallbackInput, Start, async_trait};
use gatehouse_connector_adfs::Config;
use gatehouse_connector_saml::testkit::FakeIdp;

/// The entity ID in fixtures/saml/adfs/FederationMetadata.xml.
const ADFS_ENTITY_ID: &str = "http://adfs.corp.example/adfs/services/trust";

fn metadata_file() -> String {
    concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/saml/adfs/FederationMetadata.xml").into()
}

fn sp_entity_id() -> String {
    format!("{ISSUER}/adfs-sp")
}

struct Adfs(FakeIdp);

#[async_trait]
impl Harness for Adfs {
    type Config = Config;

    fn options(&self) -> serde_json::Value {
        serde_json::json!({
            "federation_metadata_file": metadata_file(),
            "idp_certificate_files": [self.0.file("idp.crt")],
            "sp_entity_id": sp_entity_id(),
            // The fake IdP issues no UPN claim; any claim URI may name the subject.
            "user_id_attributes": ["mail"],
        })
    }

    fn unreachable_options(&self) -> Option<serde_json::Value> {
        let url = unreachable_url("/FederationMetadata/2007-06/FederationMetadata.xml");
        Some(serde_json::json!({"federation_metadata_url": url, "sp_entity_id": sp_entity_id()}))
    }

    fn upstream_requests(&self) -> usize {
        // The metadata comes from a file: there is nothing to fetch.
        0
    }

    fn secrets(&self) -> Vec<String> {
        Vec::new()
    }

    async fn approve(&self, start: &Start, _txn: &str) -> CallbackInput {
        self.0.answer(start, self.now(), false)
    }

    async fn refuse(&self, start: &Start, _txn: &str) -> CallbackInput {
        self.0.answer(start, self.now(), true)
    }
}

#[tokio::test]
async fn the_adfs_connector_conforms() {
    run(&Adfs(FakeIdp::new(ADFS_ENTITY_ID, &sp_entity_id(), callback_url().as_str()))).await;
}
