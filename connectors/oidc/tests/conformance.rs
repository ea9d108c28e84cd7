//! The SDK's conformance kit against the OpenID Connect connector and a fake provider
//! (discovery, JWKS, RS256 ID tokens), plus what an OIDC login must report.

use std::time::SystemTime;

use gatehouse_connector::testkit::conformance::{Harness, run};
use gatehouse_connector::testkit::server::unreachable_url;
use gatehouse_connector::testkit::{finish_context, open_context, start_context};
use gatehouse_connector::{CallbackInput, Start, async_trait};
use gatehouse_connector_oidc::Config;
use gatehouse_connector_oidc::testkit::{FakeProvider, Provider, rsa_key_pem};

const SECRET: &str = "oidc-client-secret-42";

struct Upstream(FakeProvider);

fn options(issuer: &str) -> serde_json::Value {
    serde_json::json!({"issuer": issuer, "client_id": "gatehouse", "client_secret": SECRET})
}

#[async_trait]
impl Harness for Upstream {
    type Config = Config;

    fn options(&self) -> serde_json::Value {
        options(&self.0.issuer())
    }

    fn unreachable_options(&self) -> Option<serde_json::Value> {
        Some(options(&unreachable_url("")))
    }

    fn upstream_requests(&self) -> usize {
        self.0.requests()
    }

    fn secrets(&self) -> Vec<String> {
        vec![SECRET.into()]
    }

    // ID tokens are checked against the real clock by the openidconnect crate.
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    async fn approve(&self, start: &Start, _txn: &str) -> CallbackInput {
        self.0.approve(start, self.now())
    }

    async fn refuse(&self, start: &Start, _txn: &str) -> CallbackInput {
        self.0.refuse(start)
    }
}

async fn upstream() -> Upstream {
    Upstream(
        FakeProvider::start(Provider {
            client_id: "gatehouse".into(),
            client_secret: SECRET.into(),
            claims: serde_json::json!({
                "sub": "user-7", "email": "grace@example.com", "email_verified": true,
                "name": "Grace Hopper", "groups": ["navy"],
            }),
            key_pem: rsa_key_pem(),
        })
        .await,
    )
}

#[tokio::test]
async fn the_oidc_connector_conforms() {
    run(&upstream().await).await;
}

#[tokio::test]
async fn an_oidc_login_reports_the_verified_claims() {
    let up = upstream().await;
    let c = gatehouse_connector::open::<Config>(up.options(), &open_context()).unwrap();
    let (start, state) = c.start(&start_context("t1", up.now())).await.unwrap();
    let identity = c.finish(&finish_context("t1", up.now()), state, up.0.approve(&start, up.now())).await.unwrap();
    assert_eq!(c.strategy(), "oidc");
    assert_eq!(identity.subject, "user-7");
    assert_eq!(identity.email.as_deref(), Some("grace@example.com"));
    assert!(identity.email_verified);
    assert_eq!(identity.groups, ["navy"]);
    assert_eq!(identity.raw["iss"], up.0.issuer());
}

#[tokio::test]
async fn an_expired_id_token_is_an_invalid_response() {
    let up = upstream().await;
    let c = gatehouse_connector::open::<Config>(up.options(), &open_context()).unwrap();
    let (start, state) = c.start(&start_context("t1", up.now())).await.unwrap();
    let an_hour_ago = up.now() - std::time::Duration::from_secs(3600);
    let result = c.finish(&finish_context("t1", up.now()), state, up.0.approve(&start, an_hour_ago)).await;
    assert!(matches!(result, Err(gatehouse_connector::ConnectorError::InvalidResponse(_))), "{result:?}");
}
