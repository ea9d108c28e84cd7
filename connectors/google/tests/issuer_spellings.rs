//! Google's ID tokens carry `iss` as `https://accounts.google.com` or `accounts.google.com`.
//! Against a fake Google whose issuer is `http://127.0.0.1:PORT`, the connector accepts that
//! issuer and `127.0.0.1:PORT` (the same derivation) and refuses every near miss.

use std::time::SystemTime;

use gatehouse_connector::testkit::{finish_context, open_context, start_context};
use gatehouse_connector::{ConnectorError, Start, UpstreamIdentity};
use gatehouse_connector_google::Config;
use gatehouse_connector_oidc::testkit::{FakeProvider, Provider, rsa_key_pem};
use serde_json::{Value, json};

const CLIENT: &str = "app.apps.googleusercontent.com";

async fn login_with_iss(provider: &FakeProvider, iss: Value) -> Result<UpstreamIdentity, ConnectorError> {
    provider.set_id_token_iss(iss);
    let options = json!({"issuer": provider.issuer(), "client_id": CLIENT, "client_secret": "GOCSPX-s"});
    let c = gatehouse_connector::open::<Config>(options, &open_context()).unwrap();
    let now = SystemTime::now();
    let (start, state) = c.start(&start_context("t1", now)).await.unwrap();
    assert!(matches!(start, Start::Redirect { .. }), "a redirect to Google");
    c.finish(&finish_context("t1", now), state, provider.approve(&start, now)).await
}

async fn fake_google() -> FakeProvider {
    FakeProvider::start(Provider {
        client_id: CLIENT.into(),
        client_secret: "GOCSPX-s".into(),
        claims: json!({"sub": "1098", "email": "ada@gmail.example", "email_verified": true}),
        key_pem: rsa_key_pem(),
    })
    .await
}

#[tokio::test]
async fn both_spellings_of_the_issuer_are_accepted() {
    let provider = fake_google().await;
    let issuer = provider.issuer();
    let schemeless = issuer.strip_prefix("http://").expect("the fake's issuer is http").to_owned();
    for iss in [issuer, schemeless] {
        let identity =
            login_with_iss(&provider, iss.clone().into()).await.unwrap_or_else(|e| panic!("iss {iss}: {e:?}"));
        assert_eq!(identity.subject, "1098", "iss {iss}");
        assert_eq!(identity.email.as_deref(), Some("ada@gmail.example"));
        assert_eq!(identity.raw["iss"], iss.as_str(), "the verified claims are kept");
    }
}

#[tokio::test]
async fn near_misses_of_the_issuer_are_refused() {
    let provider = fake_google().await;
    let issuer = provider.issuer();
    let host = issuer.strip_prefix("http://").expect("the fake's issuer is http").to_owned();
    let cases: Vec<(Value, &str)> = vec![
        // Like `accounts.google.com.evil.test`.
        (format!("{host}.evil.test").into(), "InvalidIssuer"),
        // A URL whose scheme is `evil.test.127.0.0.1`: parsed, then refused.
        (format!("evil.test.{host}").into(), "is not accepted"),
        (format!("{host}/").into(), "InvalidIssuer"),
        // Like `http://accounts.google.com`: the other scheme is not a spelling Google uses.
        (format!("https://{host}").into(), "is not accepted"),
        ("https://evil.test".into(), "is not accepted"),
        ("".into(), "InvalidIssuer"),
        (Value::Null, "Missing required claim: iss"),
        (json!(42), "ID token rejected"),
    ];
    for (iss, why) in cases {
        match login_with_iss(&provider, iss.clone()).await {
            Err(ConnectorError::InvalidResponse(msg)) => assert!(msg.contains(why), "iss {iss}: {msg}"),
            other => panic!("iss {iss}: expected a refusal ({why}), got {other:?}"),
        }
    }
}
