//! The SDK's conformance kit against the Google connector (the OIDC connector with Google's
//! defaults) and a fake Google, plus the hosted-domain restriction.

use std::time::SystemTime;

use gatehouse_connector::testkit::conformance::{Harness, run};
use gatehouse_connector::testkit::server::unreachable_url;
use gatehouse_connector::testkit::{finish_context, open_context, start_context};
use gatehouse_connector::{CallbackInput, ConnectorError, Start, async_trait};
use gatehouse_connector_google::Config;
use gatehouse_connector_oidc::testkit::{FakeProvider, Provider, rsa_key_pem};

const SECRET: &str = "GOCSPX-google-client-secret";

struct Google {
    provider: FakeProvider,
    hosted_domains: Vec<&'static str>,
}

impl Google {
    async fn start(hd: Option<&str>, hosted_domains: Vec<&'static str>) -> Self {
        let mut claims = serde_json::json!({"sub": "1098", "email": "ada@acme.example", "email_verified": true});
        if let Some(hd) = hd {
            claims["hd"] = hd.into();
        }
        let provider = FakeProvider::start(Provider {
            client_id: "app.apps.googleusercontent.com".into(),
            client_secret: SECRET.into(),
            claims,
            key_pem: rsa_key_pem(),
        })
        .await;
        Self { provider, hosted_domains }
    }

    fn options_at(&self, issuer: &str) -> serde_json::Value {
        serde_json::json!({
            "issuer": issuer, "client_id": "app.apps.googleusercontent.com", "client_secret": SECRET,
            "hosted_domains": self.hosted_domains,
        })
    }
}

#[async_trait]
impl Harness for Google {
    type Config = Config;

    fn options(&self) -> serde_json::Value {
        self.options_at(&self.provider.issuer())
    }

    fn unreachable_options(&self) -> Option<serde_json::Value> {
        Some(self.options_at(&unreachable_url("")))
    }

    fn upstream_requests(&self) -> usize {
        self.provider.requests()
    }

    fn secrets(&self) -> Vec<String> {
        vec![SECRET.into()]
    }

    // ID tokens are checked against the real clock by the openidconnect crate.
    fn now(&self) -> SystemTime {
        SystemTime::now()
    }

    async fn approve(&self, start: &Start, _txn: &str) -> CallbackInput {
        self.provider.approve(start, self.now())
    }

    async fn refuse(&self, start: &Start, _txn: &str) -> CallbackInput {
        self.provider.refuse(start)
    }
}

#[tokio::test]
async fn the_google_connector_conforms() {
    run(&Google::start(Some("acme.example"), vec!["acme.example"]).await).await;
}

#[tokio::test]
async fn hosted_domains_admit_their_accounts_and_deny_others() {
    for (hd, allowed) in [(Some("acme.example"), true), (Some("other.example"), false), (None, false)] {
        let g = Google::start(hd, vec!["acme.example"]).await;
        let c = gatehouse_connector::open::<Config>(g.options(), &open_context()).unwrap();
        assert_eq!(c.strategy(), "google-oauth2");
        let (start, state) = c.start(&start_context("t1", g.now())).await.unwrap();
        let Start::Redirect { url } = &start else { panic!("a redirect") };
        assert!(url.query_pairs().any(|(k, v)| k == "hd" && v == "acme.example"), "one domain is sent as hd");
        let result = c.finish(&finish_context("t1", g.now()), state, g.approve(&start, "t1").await).await;
        match (allowed, result) {
            (true, Ok(identity)) => assert_eq!(identity.subject, "1098"),
            (false, Err(ConnectorError::Denied(_))) => {}
            (_, other) => panic!("hd {hd:?}: unexpected {other:?}"),
        }
    }
}
