//! The SDK's conformance kit against the static-users connector (no upstream: the person
//! types a password into Gatehouse's own form).

use gatehouse_connector::testkit::conformance::{Harness, run};
use gatehouse_connector::{CallbackInput, Secret, Start, async_trait};
use gatehouse_connector_static::{Config, hash_password};

struct Users {
    hash: String,
}

const PASSWORD: &str = "correct horse battery";

#[async_trait]
impl Harness for Users {
    type Config = Config;

    fn options(&self) -> serde_json::Value {
        serde_json::json!({"users": [{"username": "ada@example.com", "id": "ada", "password_hash": self.hash}]})
    }

    fn unreachable_options(&self) -> Option<serde_json::Value> {
        None
    }

    fn upstream_requests(&self) -> usize {
        0
    }

    fn secrets(&self) -> Vec<String> {
        vec![self.hash.clone(), PASSWORD.into()]
    }

    async fn approve(&self, _start: &Start, _txn: &str) -> CallbackInput {
        CallbackInput::Credentials { username: "ada@example.com".into(), password: Secret::new(PASSWORD.into()) }
    }

    async fn refuse(&self, _start: &Start, _txn: &str) -> CallbackInput {
        CallbackInput::Credentials { username: "ada@example.com".into(), password: Secret::new("wrong".into()) }
    }
}

#[tokio::test]
async fn the_static_connector_conforms() {
    run(&Users { hash: hash_password(PASSWORD).unwrap() }).await;
}
