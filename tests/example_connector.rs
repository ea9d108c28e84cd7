//! The example connector of connectors/README.md, compiled and exercised here so the guide
//! cannot rot. The README shows the code between the `example:start` and `example:end`
//! markers, and `tidy` checks the two are the same.

// example:start
use gatehouse_connector::{
    CallbackInput, Connector, ConnectorConfig, ConnectorError, ConnectorState, CredentialsPrompt, FinishContext,
    OpenContext, Secret, Start, StartContext, UpstreamIdentity, async_trait,
};
use serde::Deserialize;

/// Options of a toy connector: everyone who knows the shared passcode may sign in, under the
/// name they type. (It shows the seam; it is not a way to run a service.)
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub passcode: Secret<String>,
}

pub struct PasscodeConnector {
    passcode: Secret<String>,
}

impl ConnectorConfig for Config {
    type Connector = PasscodeConnector;

    /// Validate and build; no network here.
    fn open(self, _ctx: &OpenContext) -> Result<PasscodeConnector, ConnectorError> {
        if self.passcode.expose().len() < 8 {
            return Err(ConnectorError::Misconfigured("passcode must have at least 8 characters".into()));
        }
        Ok(PasscodeConnector { passcode: self.passcode })
    }
}

#[async_trait]
impl Connector for PasscodeConnector {
    fn strategy(&self) -> &str {
        "passcode"
    }

    async fn start(&self, _ctx: &StartContext) -> Result<(Start, ConnectorState), ConnectorError> {
        // Ask Gatehouse to render its username + password form; nothing to remember.
        let prompt = CredentialsPrompt { username_label: "Your name".into() };
        Ok((Start::Credentials(prompt), ConnectorState::default()))
    }

    async fn finish(
        &self,
        _ctx: &FinishContext,
        _state: ConnectorState,
        input: CallbackInput,
    ) -> Result<UpstreamIdentity, ConnectorError> {
        let CallbackInput::Credentials { username, password } = input else {
            return Err(ConnectorError::InvalidResponse("expected the credentials form".into()));
        };
        if password.expose() != self.passcode.expose() || username.trim().is_empty() {
            return Err(ConnectorError::InvalidCredentials);
        }
        // Facts only: Gatehouse turns the subject into the user_id "passcode|<name>".
        Ok(UpstreamIdentity { subject: username.trim().to_lowercase(), name: Some(username), ..Default::default() })
    }
}
// example:end

fn ctx() -> OpenContext {
    OpenContext {
        connection: "passcode".into(),
        callback_url: gatehouse_connector::Url::parse("http://127.0.0.1/callback/passcode").unwrap(),
        issuer: gatehouse_connector::Url::parse("http://127.0.0.1").unwrap(),
    }
}

#[tokio::test]
async fn the_guides_example_connector_works_through_the_trait() {
    let config: Config = serde_json::from_value(serde_json::json!({"passcode": "open sesame"})).unwrap();
    let connector: std::sync::Arc<dyn Connector> = std::sync::Arc::new(config.open(&ctx()).unwrap());
    let start = StartContext {
        callback_url: ctx().callback_url,
        transaction_id: "t1".into(),
        login_hint: None,
        force_login: false,
        max_age: None,
        now: std::time::SystemTime::UNIX_EPOCH,
    };
    let (next, state) = connector.start(&start).await.unwrap();
    assert!(matches!(next, Start::Credentials(_)));
    let finish = FinishContext {
        callback_url: ctx().callback_url,
        transaction_id: "t1".into(),
        now: std::time::SystemTime::UNIX_EPOCH,
    };
    let good = CallbackInput::Credentials { username: "Ada".into(), password: Secret::new("open sesame".into()) };
    let identity = connector.finish(&finish, state.clone(), good).await.unwrap();
    assert_eq!(identity.subject, "ada");
    let bad = CallbackInput::Credentials { username: "Ada".into(), password: Secret::new("nope".into()) };
    assert!(matches!(connector.finish(&finish, state, bad).await, Err(ConnectorError::InvalidCredentials)));
    let short: Config = serde_json::from_value(serde_json::json!({"passcode": "short"})).unwrap();
    assert!(short.open(&ctx()).is_err());
    let unknown = serde_json::from_value::<Config>(serde_json::json!({"passcode": "open sesame", "extra": 1}));
    assert!(unknown.is_err(), "deny_unknown_fields catches typos in configuration");
}
