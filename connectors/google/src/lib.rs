//! Google sign-in: the OIDC connector with Google's defaults. Strategy `google-oauth2`; ID
//! tokens are accepted with exactly the two issuer spellings Google documents,
//! `https://accounts.google.com` and `accounts.google.com` (any other `iss`, such as
//! `http://accounts.google.com` or `accounts.google.com.evil.test`, is refused); and an
//! optional hosted-domain (`hd`) restriction for Google Workspace, checked on the verified
//! ID token (the `hd` authorize parameter alone is only a hint to Google's UI).

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
        let extra_issuers = schemeless_spelling(&issuer).into_iter().collect();
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

/// Google's second spelling of its issuer: the issuer without its scheme
/// (`accounts.google.com`). A test provider's issuer gets the same treatment, so the
/// tests exercise the path Google's tokens take.
fn schemeless_spelling(issuer: &str) -> Option<String> {
    let issuer = issuer.trim_end_matches('/');
    issuer.strip_prefix("https://").or_else(|| issuer.strip_prefix("http://")).map(str::to_owned)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_s_issuer_has_exactly_its_documented_second_spelling() {
        assert_eq!(schemeless_spelling(ISSUER).as_deref(), Some("accounts.google.com"));
        assert_eq!(schemeless_spelling("http://127.0.0.1:8080/").as_deref(), Some("127.0.0.1:8080"));
        assert_eq!(schemeless_spelling("accounts.google.com"), None);
    }
}
