//! The SDK's conformance kit against the generic OAuth 2.0 connector and a fake provider.

use gatehouse_connector::testkit::conformance::{Harness, run};
use gatehouse_connector::testkit::server::unreachable_url;
use gatehouse_connector::{CallbackInput, Start, async_trait};
use gatehouse_connector_oauth2::Config;
use gatehouse_connector_oauth2::testkit::{FakeProvider, Provider};

const SECRET: &str = "s3cret-oauth2-client";

struct Upstream(FakeProvider);

fn options(authorize: &str, token: &str, profile: &str) -> serde_json::Value {
    serde_json::json!({
        "strategy": "github", "client_id": "gh-client", "client_secret": SECRET,
        "authorize_url": authorize, "token_url": token, "profile_url": profile,
        "mapping": {"user_id": "/id", "email": "/email", "nickname": "/login"},
    })
}

#[async_trait]
impl Harness for Upstream {
    type Config = Config;

    fn options(&self) -> serde_json::Value {
        options(&self.0.url("/authorize"), &self.0.url("/token"), &self.0.url("/user"))
    }

    fn unreachable_options(&self) -> Option<serde_json::Value> {
        Some(options(&self.0.url("/authorize"), &unreachable_url("/token"), &unreachable_url("/user")))
    }

    fn upstream_requests(&self) -> usize {
        self.0.requests()
    }

    fn secrets(&self) -> Vec<String> {
        vec![SECRET.into()]
    }

    async fn approve(&self, start: &Start, _txn: &str) -> CallbackInput {
        self.0.approve(start)
    }

    async fn refuse(&self, start: &Start, _txn: &str) -> CallbackInput {
        self.0.refuse(start)
    }
}

#[tokio::test]
async fn the_oauth2_connector_conforms() {
    let provider = FakeProvider::start(Provider {
        client_id: "gh-client".into(),
        client_secret: SECRET.into(),
        token_path: "/token".into(),
        profile_path: "/user".into(),
        profile: serde_json::json!({"id": 42, "login": "octo", "email": "octo@example.com"}),
        appsecret_proof: false,
    })
    .await;
    run(&Upstream(provider)).await;
}
