//! A connector that plays a well-behaved upstream without a network.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::{
    CallbackInput, Connector, ConnectorError, ConnectorState, CredentialsPrompt, FinishContext, Secret, SingleUse,
    Start, StartContext, UpstreamIdentity, Url,
};

/// The fake upstream's authorization endpoint (never contacted: the browser would go there).
pub const AUTHORIZE_URL: &str = "https://upstream.fake/authorize";
/// The one code the fake upstream hands out.
const CODE: &str = "fake-code";

/// A configurable connector for the core's tests.
///
/// In redirect mode (the default) `start` sends the browser to [`AUTHORIZE_URL`] with the
/// transaction id as `state`, and `finish` accepts [`FakeConnector::callback`] for the same
/// transaction (anything else is `InvalidResponse`; `error=...` is `Denied`). Like a SAML
/// assertion, each callback carries a one-time ID, so the core's replay cache refuses a
/// second use. In credentials mode `start` asks for the credentials form and `finish`
/// accepts the configured username and password (anything else is `InvalidCredentials`).
/// Calls are counted, so a test can assert how often the core reached the upstream.
pub struct FakeConnector {
    strategy: String,
    identity: UpstreamIdentity,
    credentials: Option<(CredentialsPrompt, String, Secret<String>)>,
    start_error: Option<ConnectorError>,
    finish_error: Option<ConnectorError>,
    starts: AtomicUsize,
    finishes: AtomicUsize,
}

impl Default for FakeConnector {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeConnector {
    /// A redirect-mode connector of strategy `fake` returning the subject `fake-user`.
    pub fn new() -> Self {
        Self {
            strategy: "fake".into(),
            identity: UpstreamIdentity { subject: "fake-user".into(), ..Default::default() },
            credentials: None,
            start_error: None,
            finish_error: None,
            starts: AtomicUsize::new(0),
            finishes: AtomicUsize::new(0),
        }
    }

    pub fn with_strategy(mut self, strategy: &str) -> Self {
        self.strategy = strategy.into();
        self
    }

    /// The facts `finish` reports (its `single_use` is set per callback).
    pub fn with_identity(mut self, identity: UpstreamIdentity) -> Self {
        self.identity = identity;
        self
    }

    /// Credentials mode: Gatehouse renders its form; `username` / `password` sign in.
    pub fn with_credentials(mut self, prompt: CredentialsPrompt, username: &str, password: &str) -> Self {
        self.credentials = Some((prompt, username.into(), Secret::new(password.into())));
        self
    }

    /// `start` fails with `error` (an unreachable upstream, a misconfiguration).
    pub fn failing_start(mut self, error: ConnectorError) -> Self {
        self.start_error = Some(error);
        self
    }

    /// `finish` fails with `error` after its own checks passed (a group policy refusal).
    pub fn failing_finish(mut self, error: ConnectorError) -> Self {
        self.finish_error = Some(error);
        self
    }

    /// What the browser brings back when the fake upstream approves transaction `txn`.
    pub fn callback(txn: &str) -> CallbackInput {
        CallbackInput::Query(vec![("code".into(), CODE.into()), ("state".into(), txn.into())])
    }

    /// What the browser brings back when the fake upstream refuses transaction `txn`.
    pub fn refusal(txn: &str) -> CallbackInput {
        CallbackInput::Query(vec![("error".into(), "access_denied".into()), ("state".into(), txn.into())])
    }

    /// How many times `start` and `finish` were called.
    pub fn calls(&self) -> (usize, usize) {
        (self.starts.load(Ordering::SeqCst), self.finishes.load(Ordering::SeqCst))
    }

    fn finish_redirect(
        &self,
        ctx: &FinishContext,
        state: &ConnectorState,
        input: &CallbackInput,
    ) -> Result<UpstreamIdentity, ConnectorError> {
        if input.param("state") != Some(ctx.transaction_id.as_str()) {
            return Err(ConnectorError::InvalidResponse("state does not match the transaction".into()));
        }
        if state.0 != state_for(&ctx.transaction_id).0 {
            return Err(ConnectorError::InvalidResponse("the login state is not this transaction's".into()));
        }
        if let Some(error) = input.param("error") {
            return Err(ConnectorError::Denied(error.into()));
        }
        if input.param("code") != Some(CODE) {
            return Err(ConnectorError::InvalidResponse("unknown code".into()));
        }
        let until = ctx.now + Duration::from_secs(300);
        let single_use = Some(SingleUse { id: format!("fake:{}", ctx.transaction_id), until });
        Ok(UpstreamIdentity { single_use, ..self.identity.clone() })
    }
}

fn state_for(txn: &str) -> ConnectorState {
    ConnectorState(format!("fake-state:{txn}").into_bytes())
}

#[async_trait::async_trait]
impl Connector for FakeConnector {
    fn strategy(&self) -> &str {
        &self.strategy
    }

    async fn start(&self, ctx: &StartContext) -> Result<(Start, ConnectorState), ConnectorError> {
        self.starts.fetch_add(1, Ordering::SeqCst);
        if let Some(e) = &self.start_error {
            return Err(e.clone());
        }
        if let Some((prompt, ..)) = &self.credentials {
            return Ok((Start::Credentials(prompt.clone()), ConnectorState::default()));
        }
        let mut url = Url::parse(AUTHORIZE_URL).expect("a constant URL");
        url.query_pairs_mut()
            .append_pair("state", &ctx.transaction_id)
            .append_pair("redirect_uri", ctx.callback_url.as_str());
        Ok((Start::Redirect { url }, state_for(&ctx.transaction_id)))
    }

    async fn finish(
        &self,
        ctx: &FinishContext,
        state: ConnectorState,
        input: CallbackInput,
    ) -> Result<UpstreamIdentity, ConnectorError> {
        self.finishes.fetch_add(1, Ordering::SeqCst);
        let identity = match (&self.credentials, input) {
            (Some((_, user, pass)), CallbackInput::Credentials { username, password }) => {
                if username != *user || password.expose() != pass.expose() {
                    return Err(ConnectorError::InvalidCredentials);
                }
                self.identity.clone()
            }
            (Some(_), _) => return Err(ConnectorError::InvalidResponse("expected the credentials form".into())),
            (None, input) => self.finish_redirect(ctx, &state, &input)?,
        };
        match &self.finish_error {
            Some(e) => Err(e.clone()),
            None => Ok(identity),
        }
    }
}
