//! The connector conformance kit: what the core relies on from every connector, checked
//! against a real connector and its (fake or real) upstream. A connector crate implements
//! [`Harness`] for its upstream and calls [`run`]:
//!
//! ```text
//! #[tokio::test]
//! async fn conforms() {
//!     let upstream = MyFakeUpstream::start().await;
//!     gatehouse_connector::testkit::conformance::run(&upstream).await;
//! }
//! ```
//!
//! It checks that `open` makes no network call and refuses unknown options as
//! `Misconfigured`; that `start` returns a state that survives the store (serde) and
//! finishes the login the upstream approved; and that `finish` refuses, as
//! `InvalidResponse`, a tampered state, another login's state, another transaction's
//! callback and a replayed callback (or marks the identity `single_use`, so the core's replay
//! cache refuses it); that an upstream refusal is `Denied` (`InvalidCredentials` on a
//! credentials prompt); that an unreachable upstream is `Upstream`; and that no configured
//! secret appears in the `Debug` of the options, the state, the identity or any error.
//! A failure panics with what was expected.

use std::fmt::Debug;
use std::time::SystemTime;

use super::{finish_context, fixed_now, open_context, start_context};
use crate::{CallbackInput, Connector, ConnectorConfig, ConnectorError, ConnectorState, Start, UpstreamIdentity, open};

/// A connector under test together with its upstream.
#[async_trait::async_trait]
pub trait Harness: Send + Sync {
    type Config: ConnectorConfig + Debug;

    /// The connection's options, pointing at this upstream (callback: [`super::callback_url`]).
    fn options(&self) -> serde_json::Value;

    /// The same connection with the upstream unreachable; `None` for a connector that calls
    /// no upstream.
    fn unreachable_options(&self) -> Option<serde_json::Value>;

    /// How many requests the upstream received so far (always 0 without an upstream).
    fn upstream_requests(&self) -> usize;

    /// Secrets in the options (client secrets, passwords): never in any `Debug` output.
    fn secrets(&self) -> Vec<String>;

    /// "Now" for the contexts; pin it for upstreams whose answers carry times.
    fn now(&self) -> SystemTime {
        fixed_now()
    }

    /// Play the upstream and the person approving login `start`: what the browser brings back.
    async fn approve(&self, start: &Start, txn: &str) -> CallbackInput;

    /// Play the upstream refusing login `start` (`error=access_denied`, a failed SAML status,
    /// a wrong password): what the browser brings back.
    async fn refuse(&self, start: &Start, txn: &str) -> CallbackInput;
}

/// Run every check; panics on the first failure.
pub async fn run<H: Harness>(h: &H) {
    let connector = opens_without_network(h);
    refuses_unknown_options(h);
    let secrets = h.secrets();
    assert_hidden(&secrets, "the options", &format!("{:?}", config(h)));
    let login = Login::begin(h, &*connector, "txn-conformance-a").await;
    let credentials = matches!(login.start, Start::Credentials(_));
    let identity = finishes_an_approved_login(h, &*connector, &login).await;
    assert_hidden(&secrets, "the identity", &format!("{identity:?}"));
    if credentials {
        // A credentials prompt carries nothing the upstream signed: the core's one-time take
        // of the transaction is what makes the form single use.
        assert!(login.state.0.is_empty(), "a credentials prompt keeps no state to tamper with");
    } else {
        refuses_a_replay(h, &*connector, &login, &identity).await;
        refuses_tampered_states(h, &*connector).await;
        refuses_another_transactions_callback(h, &*connector).await;
    }
    maps_a_refusal(h, &*connector, credentials).await;
    maps_an_unreachable_upstream(h).await;
}

/// One started login and the state as the store gives it back.
struct Login {
    txn: String,
    start: Start,
    state: ConnectorState,
}

impl Login {
    async fn begin<H: Harness>(h: &H, c: &dyn Connector, txn: &str) -> Self {
        let (start, state) =
            c.start(&start_context(txn, h.now())).await.unwrap_or_else(|e| panic!("start of a login failed: {e:?}"));
        names_the_transaction(&start, txn);
        let secrets = h.secrets();
        assert_hidden(&secrets, "the connector state", &format!("{state:?}"));
        // The state goes to the store and may come back on another node.
        let stored = serde_json::to_vec(&state).expect("the state serializes");
        let state = serde_json::from_slice(&stored).expect("the state deserializes");
        Self { txn: txn.into(), start, state }
    }
}

fn config<H: Harness>(h: &H) -> H::Config {
    serde_json::from_value(h.options()).unwrap_or_else(|e| panic!("the harness's options do not parse: {e}"))
}

fn opens_without_network<H: Harness>(h: &H) -> std::sync::Arc<dyn Connector> {
    let before = h.upstream_requests();
    let connector = open::<H::Config>(h.options(), &open_context()).unwrap_or_else(|e| panic!("open failed: {e:?}"));
    assert_eq!(h.upstream_requests(), before, "open must make no network call");
    if let Some(options) = h.unreachable_options() {
        open::<H::Config>(options, &open_context())
            .unwrap_or_else(|e| panic!("open must succeed while the upstream is unreachable: {e:?}"));
    }
    connector
}

fn refuses_unknown_options<H: Harness>(h: &H) {
    let mut options = h.options();
    options.as_object_mut().expect("options are a table").insert("no_such_option".into(), true.into());
    match open::<H::Config>(options, &open_context()) {
        Err(ConnectorError::Misconfigured(_)) => {}
        Err(e) => panic!("an unknown option must be Misconfigured, got {e:?}"),
        Ok(_) => panic!("an unknown option must be refused (serde deny_unknown_fields)"),
    }
}

fn names_the_transaction(start: &Start, txn: &str) {
    let carried = match start {
        Start::Redirect { url } => url.query_pairs().any(|(k, v)| (k == "state" || k == "RelayState") && v == txn),
        Start::PostForm { fields, .. } => fields.iter().any(|(k, v)| k == "RelayState" && v == txn),
        Start::Credentials(_) => true,
    };
    assert!(carried, "start must send the transaction id as state or RelayState: {start:?}");
}

async fn finishes_an_approved_login<H: Harness>(h: &H, c: &dyn Connector, login: &Login) -> UpstreamIdentity {
    let input = h.approve(&login.start, &login.txn).await;
    let identity = c
        .finish(&finish_context(&login.txn, h.now()), login.state.clone(), input)
        .await
        .unwrap_or_else(|e| panic!("finish of a login the upstream approved failed: {e:?}"));
    assert!(!identity.subject.is_empty(), "an identity has a subject");
    identity
}

async fn refuses_a_replay<H: Harness>(h: &H, c: &dyn Connector, login: &Login, first: &UpstreamIdentity) {
    // Approve once more and use that callback twice.
    let again = Login::begin(h, c, "txn-conformance-replay").await;
    let input = h.approve(&again.start, &again.txn).await;
    let ctx = finish_context(&again.txn, h.now());
    let one = c.finish(&ctx, again.state.clone(), input.clone()).await;
    let one = one.unwrap_or_else(|e| panic!("finish of a login the upstream approved failed: {e:?}"));
    match c.finish(&ctx, again.state, input).await {
        Err(e) => expect_invalid(h, "a replayed callback", e),
        Ok(two) => {
            assert!(
                one.single_use.is_some() && two.single_use == one.single_use,
                "a replayed callback must be refused, or carry the same single_use ID for the core's replay cache"
            );
            assert_ne!(first.single_use, one.single_use, "each login has its own single_use ID");
        }
    }
    let _ = login;
}

async fn refuses_tampered_states<H: Harness>(h: &H, c: &dyn Connector) {
    let other = Login::begin(h, c, "txn-conformance-other").await;
    let mut flipped = other.state.0.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let cases = [
        ("an empty state", ConnectorState::default()),
        ("a garbage state", ConnectorState(b"\x00not a state\xff".to_vec())),
        ("a state with one bit flipped", ConnectorState(flipped)),
    ];
    for (what, tampered) in cases {
        let login = Login::begin(h, c, "txn-conformance-tamper").await;
        let input = h.approve(&login.start, &login.txn).await;
        let result = c.finish(&finish_context(&login.txn, h.now()), tampered, input).await;
        expect_refused(h, what, result);
    }
    // Another login's (untampered) state with this login's callback.
    let login = Login::begin(h, c, "txn-conformance-tamper").await;
    let input = h.approve(&login.start, &login.txn).await;
    let result = c.finish(&finish_context(&login.txn, h.now()), other.state, input).await;
    expect_refused(h, "another login's state", result);
}

async fn refuses_another_transactions_callback<H: Harness>(h: &H, c: &dyn Connector) {
    let login = Login::begin(h, c, "txn-conformance-mine").await;
    let input = h.approve(&login.start, &login.txn).await;
    // The core matched the callback to another transaction: the connector must notice.
    let result = c.finish(&finish_context("txn-conformance-theirs", h.now()), login.state, input).await;
    expect_refused(h, "another transaction's callback", result);
}

async fn maps_a_refusal<H: Harness>(h: &H, c: &dyn Connector, credentials: bool) {
    let login = Login::begin(h, c, "txn-conformance-refused").await;
    let input = h.refuse(&login.start, &login.txn).await;
    let result = c.finish(&finish_context(&login.txn, h.now()), login.state, input).await;
    let e = match result {
        Ok(i) => panic!("a refused login must fail, got an identity for {}", i.subject),
        Err(e) => e,
    };
    assert_hidden(&h.secrets(), "an error", &format!("{e:?} {e}"));
    match (credentials, &e) {
        (true, ConnectorError::InvalidCredentials) | (false, ConnectorError::Denied(_)) => {}
        _ => panic!("an upstream refusal must be Denied (InvalidCredentials on a credentials prompt), got {e:?}"),
    }
}

async fn maps_an_unreachable_upstream<H: Harness>(h: &H) {
    let Some(options) = h.unreachable_options() else { return };
    let c = open::<H::Config>(options, &open_context()).expect("checked above");
    let txn = "txn-conformance-unreachable";
    let e = match c.start(&start_context(txn, h.now())).await {
        Err(e) => e,
        // Nothing to fetch before the redirect: the code exchange is where the upstream is needed.
        Ok((_, state)) => {
            let input = CallbackInput::Query(vec![("code".into(), "c".into()), ("state".into(), txn.into())]);
            match c.finish(&finish_context(txn, h.now()), state, input).await {
                Err(e) => e,
                Ok(_) => panic!("a login against an unreachable upstream must fail"),
            }
        }
    };
    assert!(matches!(e, ConnectorError::Upstream(_)), "an unreachable upstream must be Upstream, got {e:?}");
}

fn expect_refused<H: Harness>(h: &H, what: &str, result: Result<UpstreamIdentity, ConnectorError>) {
    match result {
        Ok(i) => panic!("{what} must be refused, got an identity for {}", i.subject),
        Err(e) => expect_invalid(h, what, e),
    }
}

fn expect_invalid<H: Harness>(h: &H, what: &str, e: ConnectorError) {
    assert_hidden(&h.secrets(), "an error", &format!("{e:?} {e}"));
    assert!(matches!(e, ConnectorError::InvalidResponse(_)), "{what} must be InvalidResponse, got {e:?}");
}

fn assert_hidden(secrets: &[String], what: &str, text: &str) {
    for s in secrets {
        assert!(!s.is_empty() && !text.contains(s.as_str()), "a secret appears in the Debug output of {what}");
    }
}

/// The kit run against [`super::FakeConnector`], so the kit itself is tested.
#[cfg(test)]
mod tests {
    use super::*;
    use crate::testkit::FakeConnector;
    use crate::{CredentialsPrompt, OpenContext, Secret};

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct FakeConfig {
        #[serde(default)]
        password: Option<Secret<String>>,
    }

    impl ConnectorConfig for FakeConfig {
        type Connector = FakeConnector;
        fn open(self, _ctx: &OpenContext) -> Result<FakeConnector, ConnectorError> {
            Ok(match self.password {
                Some(p) => FakeConnector::new().with_credentials(CredentialsPrompt::default(), "ada", p.expose()),
                None => FakeConnector::new(),
            })
        }
    }

    struct FakeHarness {
        password: Option<&'static str>,
    }

    #[async_trait::async_trait]
    impl Harness for FakeHarness {
        type Config = FakeConfig;
        fn options(&self) -> serde_json::Value {
            serde_json::json!({"password": self.password})
        }
        fn unreachable_options(&self) -> Option<serde_json::Value> {
            None
        }
        fn upstream_requests(&self) -> usize {
            0
        }
        fn secrets(&self) -> Vec<String> {
            self.password.into_iter().map(str::to_owned).collect()
        }
        async fn approve(&self, _start: &Start, txn: &str) -> CallbackInput {
            match self.password {
                Some(p) => CallbackInput::Credentials { username: "ada".into(), password: Secret::new(p.into()) },
                None => FakeConnector::callback(txn),
            }
        }
        async fn refuse(&self, _start: &Start, txn: &str) -> CallbackInput {
            match self.password {
                Some(_) => CallbackInput::Credentials { username: "ada".into(), password: Secret::new("no".into()) },
                None => FakeConnector::refusal(txn),
            }
        }
    }

    #[tokio::test]
    async fn the_fake_connector_conforms_in_both_modes() {
        run(&FakeHarness { password: None }).await;
        run(&FakeHarness { password: Some("correct horse") }).await;
    }

    #[tokio::test]
    #[should_panic(expected = "must be refused")]
    async fn a_connector_that_ignores_its_state_fails_the_kit() {
        struct Careless(FakeHarness);
        #[async_trait::async_trait]
        impl Harness for Careless {
            type Config = CarelessConfig;
            fn options(&self) -> serde_json::Value {
                serde_json::json!({})
            }
            fn unreachable_options(&self) -> Option<serde_json::Value> {
                None
            }
            fn upstream_requests(&self) -> usize {
                0
            }
            fn secrets(&self) -> Vec<String> {
                Vec::new()
            }
            async fn approve(&self, start: &Start, txn: &str) -> CallbackInput {
                self.0.approve(start, txn).await
            }
            async fn refuse(&self, start: &Start, txn: &str) -> CallbackInput {
                self.0.refuse(start, txn).await
            }
        }
        #[derive(Debug, serde::Deserialize)]
        #[serde(deny_unknown_fields)]
        struct CarelessConfig {}
        struct CarelessConnector(FakeConnector);
        #[async_trait::async_trait]
        impl Connector for CarelessConnector {
            fn strategy(&self) -> &str {
                "careless"
            }
            async fn start(&self, ctx: &crate::StartContext) -> Result<(Start, ConnectorState), ConnectorError> {
                self.0.start(ctx).await
            }
            async fn finish(
                &self,
                ctx: &crate::FinishContext,
                _state: ConnectorState,
                input: CallbackInput,
            ) -> Result<UpstreamIdentity, ConnectorError> {
                // Finishes with whatever state belongs to the callback: ignores the stored one.
                let state = self.0.start(&start_context(&ctx.transaction_id, ctx.now)).await?.1;
                self.0.finish(ctx, state, input).await
            }
        }
        impl ConnectorConfig for CarelessConfig {
            type Connector = CarelessConnector;
            fn open(self, _ctx: &OpenContext) -> Result<CarelessConnector, ConnectorError> {
                Ok(CarelessConnector(FakeConnector::new()))
            }
        }
        run(&Careless(FakeHarness { password: None })).await;
    }
}
