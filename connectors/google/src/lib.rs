//! Google sign-in: the OIDC connector with Google's defaults. Strategy `google-oauth2`, both
//! issuer spellings Google uses (`https://accounts.google.com` and `accounts.google.com`),
//! and an optional hosted-domain (`hd`) restriction for Google Workspace, checked on the
//! verified ID token (the `hd` authorize parameter alone is only a hint to Google's UI).

use std::collections::BTreeMap;

use gatehouse_connector::{
    CallbackInput, Connector, ConnectorConfig, ConnectorError, ConnectorState, FinishContext, OpenContext, Secret,
    Start, StartContext, UpstreamIdentity, async_trait,
};
use gatehouse_connector_oidc::OidcConnector;
use serde::Deserialize;

pub const ISSUER: &str = "https://accounts.google.com";

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub client_id: String,
    pub client_secret: Secret<String>,
    /// Accept only accounts of these Google Workspace domains (the `hd` claim).
    #[serde(default)]
    pub hosted_domains: Vec<String>,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    /// Google's issuer; overridden only to point tests at a local provider.
    #[serde(default)]
    pub issuer: Option<String>,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

pub struct GoogleConnector {
    inner: OidcConnector,
    hosted_domains: Vec<String>,
}

impl ConnectorConfig for Config {
    type Connector = GoogleConnector;

    fn open(self, ctx: &OpenContext) -> Result<GoogleConnector, ConnectorError> {
        let mut authorize_params = self.authorize_params;
        match self.hosted_domains.as_slice() {
            [] => {}
            [one] => {
                authorize_params.entry("hd".into()).or_insert_with(|| one.clone());
            }
            _ => {
                authorize_params.entry("hd".into()).or_insert_with(|| "*".into());
            }
        }
        let issuer = self.issuer.unwrap_or_else(|| ISSUER.into());
        let extra_issuers = if issuer == ISSUER { vec!["accounts.google.com".into()] } else { Vec::new() };
        let inner = gatehouse_connector_oidc::Config {
            issuer,
            client_id: self.client_id,
            client_secret: self.client_secret,
            client_auth: Default::default(),
            scopes: self.scopes,
            authorize_params,
            userinfo: false,
            extra_issuers,
            strategy: "google-oauth2".into(),
            timeout_ms: self.timeout_ms,
            max_response_bytes: None,
            metadata_ttl: None,
        }
        .open(ctx)?;
        Ok(GoogleConnector { inner, hosted_domains: self.hosted_domains })
    }
}

#[async_trait]
impl Connector for GoogleConnector {
    fn strategy(&self) -> &str {
        self.inner.strategy()
    }

    async fn start(&self, ctx: &StartContext) -> Result<(Start, ConnectorState), ConnectorError> {
        self.inner.start(ctx).await
    }

    async fn finish(
        &self,
        ctx: &FinishContext,
        state: ConnectorState,
        input: CallbackInput,
    ) -> Result<UpstreamIdentity, ConnectorError> {
        let identity = self.inner.finish(ctx, state, input).await?;
        if !self.hosted_domains.is_empty() {
            let hd = identity.raw.get("hd").and_then(|v| v.as_str());
            if !hd.is_some_and(|hd| self.hosted_domains.iter().any(|d| d.eq_ignore_ascii_case(hd))) {
                return Err(ConnectorError::Denied(format!(
                    "the Google account's domain ({}) is not allowed",
                    hd.unwrap_or("none")
                )));
            }
        }
        Ok(identity)
    }
}
