//! Any OAuth 2.0 provider without OpenID Connect (GitHub, Facebook, LinkedIn...): the
//! authorization code flow (with PKCE unless turned off), then one profile request, mapped
//! to the upstream identity by JSON pointers. A new social provider is configuration:
//!
//! ```toml
//! [[connections]]
//! id = "github"
//! type = "oauth2"
//! [connections.options]
//! strategy = "github"
//! authorize_url = "https://github.com/login/oauth/authorize"
//! token_url = "https://github.com/login/oauth/access_token"
//! profile_url = "https://api.github.com/user"
//! client_id = "..."
//! client_secret = "${GITHUB_SECRET}"
//! scopes = ["read:user", "user:email"]
//! [connections.options.mapping]
//! user_id = "/id"
//! nickname = "/login"
//! ```

#[cfg(feature = "testkit")]
pub mod testkit;

use std::collections::BTreeMap;
use std::time::Duration;

use gatehouse_connector::http::{Method, UpstreamHttp};
use gatehouse_connector::{
    CallbackInput, Connector, ConnectorConfig, ConnectorError, ConnectorState, FinishContext, OpenContext, Secret,
    Start, StartContext, UpstreamIdentity, Url, async_trait,
};
use hmac::{Hmac, Mac};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse, TokenUrl,
};
use serde::{Deserialize, Serialize};

fn yes() -> bool {
    true
}

fn default_user_id() -> String {
    "/id".into()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// Where each profile field is in the provider's profile JSON: a JSON pointer (`/id`,
/// `/picture/data/url`) or a top-level field name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Mapping {
    #[serde(default = "default_user_id")]
    pub user_id: String,
    #[serde(default)]
    pub email: Option<String>,
    /// Where the provider says whether the email is verified; without it, `trust_email`.
    #[serde(default)]
    pub email_verified: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub given_name: Option<String>,
    #[serde(default)]
    pub family_name: Option<String>,
    #[serde(default)]
    pub nickname: Option<String>,
    #[serde(default)]
    pub picture: Option<String>,
    #[serde(default)]
    pub locale: Option<String>,
    #[serde(default)]
    pub groups: Option<String>,
}

impl Default for Mapping {
    fn default() -> Self {
        Self {
            user_id: default_user_id(),
            email: Some("/email".into()),
            email_verified: None,
            name: Some("/name".into()),
            given_name: None,
            family_name: None,
            nickname: None,
            picture: None,
            locale: None,
            groups: None,
        }
    }
}

/// The connection's options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The `user_id` prefix, such as `github`.
    pub strategy: String,
    pub authorize_url: String,
    pub token_url: String,
    pub profile_url: String,
    pub client_id: String,
    pub client_secret: Secret<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Separator the provider expects between scopes (Facebook: `,`).
    #[serde(default)]
    pub scope_separator: Option<String>,
    /// Send PKCE (S256). On by default; turn off only for providers that reject it.
    #[serde(default = "yes")]
    pub pkce: bool,
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    /// Extra query parameters of the profile request (Facebook: `fields`).
    #[serde(default)]
    pub profile_params: BTreeMap<String, String>,
    /// Add Facebook's `appsecret_proof` (HMAC-SHA256 of the access token keyed by the
    /// client secret) to the profile request.
    #[serde(default)]
    pub appsecret_proof: bool,
    /// Treat a mapped email as verified when the provider gives no verification flag (only
    /// for providers that return confirmed emails alone).
    #[serde(default)]
    pub trust_email: bool,
    #[serde(default)]
    pub mapping: Mapping,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
}

pub struct OAuth2Connector {
    config: Config,
    authorize_url: AuthUrl,
    token_url: TokenUrl,
    profile_url: Url,
    callback: RedirectUrl,
    http: UpstreamHttp,
}

#[derive(Serialize, Deserialize)]
struct State {
    verifier: Option<String>,
}

fn misconfigured<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> ConnectorError {
    move |e| ConnectorError::Misconfigured(format!("{what}: {e}"))
}

impl ConnectorConfig for Config {
    type Connector = OAuth2Connector;

    fn open(self, ctx: &OpenContext) -> Result<OAuth2Connector, ConnectorError> {
        if self.strategy.is_empty() || self.strategy.contains('|') {
            return Err(ConnectorError::Misconfigured("strategy must be non-empty and without '|'".into()));
        }
        let http = UpstreamHttp::new(
            Duration::from_millis(self.timeout_ms.unwrap_or(10_000)),
            self.max_response_bytes.unwrap_or(gatehouse_connector::http::DEFAULT_MAX_BODY),
        )?;
        Ok(OAuth2Connector {
            authorize_url: AuthUrl::new(self.authorize_url.clone()).map_err(misconfigured("authorize_url"))?,
            token_url: TokenUrl::new(self.token_url.clone()).map_err(misconfigured("token_url"))?,
            profile_url: Url::parse(&self.profile_url).map_err(misconfigured("profile_url"))?,
            callback: RedirectUrl::new(ctx.callback_url.to_string()).map_err(misconfigured("callback"))?,
            config: self,
            http,
        })
    }
}

/// A value at a JSON pointer (or top-level name), as a string (numbers included: GitHub's
/// ids are numbers).
pub fn lookup(profile: &serde_json::Value, at: &str) -> Option<String> {
    let v = if at.starts_with('/') { profile.pointer(at) } else { profile.get(at) }?;
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl OAuth2Connector {
    fn client(
        &self,
    ) -> BasicClient<
        oauth2::EndpointSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    > {
        BasicClient::new(ClientId::new(self.config.client_id.clone()))
            .set_client_secret(ClientSecret::new(self.config.client_secret.expose().clone()))
            .set_auth_uri(self.authorize_url.clone())
            .set_token_uri(self.token_url.clone())
            .set_redirect_uri(self.callback.clone())
            .set_auth_type(match self.config.client_auth {
                ClientAuth::ClientSecretBasic => AuthType::BasicAuth,
                ClientAuth::ClientSecretPost => AuthType::RequestBody,
            })
    }

    fn map(&self, profile: serde_json::Value) -> Result<UpstreamIdentity, ConnectorError> {
        let m = &self.config.mapping;
        let get = |at: &Option<String>| at.as_deref().and_then(|p| lookup(&profile, p));
        let subject = lookup(&profile, &m.user_id)
            .ok_or_else(|| ConnectorError::InvalidResponse(format!("the profile has no user id at {}", m.user_id)))?;
        let email = get(&m.email);
        let email_verified = match &m.email_verified {
            Some(at) => lookup(&profile, at).as_deref() == Some("true"),
            None => self.config.trust_email,
        };
        let groups = m
            .groups
            .as_deref()
            .and_then(|at| profile.pointer(at))
            .and_then(|g| g.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
            .unwrap_or_default();
        Ok(UpstreamIdentity {
            subject,
            email_verified: email.is_some() && email_verified,
            email,
            name: get(&m.name),
            given_name: get(&m.given_name),
            family_name: get(&m.family_name),
            nickname: get(&m.nickname),
            picture: get(&m.picture),
            locale: get(&m.locale),
            groups,
            raw: profile.as_object().cloned().unwrap_or_default(),
            ..Default::default()
        })
    }
}

/// The error message in a provider's own error JSON (`{"error": {"message": ...}}` for
/// Facebook, `{"error": ..., "error_description": ...}` elsewhere).
fn provider_error(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let text = v
        .pointer("/error/message")
        .or_else(|| v.get("error_description"))
        .or_else(|| v.get("error"))
        .and_then(|m| m.as_str())?;
    Some(text.chars().take(200).collect())
}

/// Facebook's `appsecret_proof`: hex HMAC-SHA256 of the access token, keyed by the secret.
pub fn appsecret_proof(secret: &str, access_token: &str) -> String {
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(access_token.as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

#[async_trait]
impl Connector for OAuth2Connector {
    fn strategy(&self) -> &str {
        &self.config.strategy
    }

    async fn start(&self, ctx: &StartContext) -> Result<(Start, ConnectorState), ConnectorError> {
        let client = self.client();
        let state = ctx.transaction_id.clone();
        let mut request = client.authorize_url(move || CsrfToken::new(state));
        if !self.config.scopes.is_empty() {
            match &self.config.scope_separator {
                Some(sep) => request = request.add_scope(Scope::new(self.config.scopes.join(sep))),
                None => request = request.add_scopes(self.config.scopes.iter().cloned().map(Scope::new)),
            }
        }
        for (k, v) in &self.config.authorize_params {
            request = request.add_extra_param(k.clone(), v.clone());
        }
        let mut verifier = None;
        if self.config.pkce {
            let (challenge, v) = PkceCodeChallenge::new_random_sha256();
            request = request.set_pkce_challenge(challenge);
            verifier = Some(v.secret().clone());
        }
        let (url, _) = request.url();
        let bytes =
            serde_json::to_vec(&State { verifier }).map_err(|e| ConnectorError::Misconfigured(e.to_string()))?;
        Ok((Start::Redirect { url }, ConnectorState(bytes)))
    }

    async fn finish(
        &self,
        ctx: &FinishContext,
        state: ConnectorState,
        input: CallbackInput,
    ) -> Result<UpstreamIdentity, ConnectorError> {
        if input.param("state") != Some(ctx.transaction_id.as_str()) {
            return Err(ConnectorError::InvalidResponse("state does not match the transaction".into()));
        }
        if let Some(error) = input.param("error") {
            let description = input.param("error_description").or(input.param("error_message")).unwrap_or("");
            return Err(ConnectorError::Denied(format!("{error}: {description}")));
        }
        let code =
            input.param("code").ok_or_else(|| ConnectorError::InvalidResponse("no code in the callback".into()))?;
        let state: State = serde_json::from_slice(&state.0)
            .map_err(|_| ConnectorError::InvalidResponse("the login state is unreadable".into()))?;
        let http = self.http.clone();
        let call = move |req: oauth2::HttpRequest| {
            let http = http.clone();
            async move { http.execute(req).await }
        };
        let client = self.client();
        let mut exchange = client.exchange_code(AuthorizationCode::new(code.to_owned()));
        if let Some(v) = state.verifier {
            exchange = exchange.set_pkce_verifier(PkceCodeVerifier::new(v));
        }
        let token = exchange.request_async(&call).await.map_err(|e| match e {
            oauth2::RequestTokenError::Request(inner) => inner,
            oauth2::RequestTokenError::ServerResponse(r) => {
                ConnectorError::InvalidResponse(format!("token endpoint refused the code: {}", r.error()))
            }
            // A provider's own error format (Facebook's, say): report its message, and never the
            // body itself, which might hold a token.
            oauth2::RequestTokenError::Parse(_, body) => ConnectorError::InvalidResponse(format!(
                "token endpoint answered: {}",
                provider_error(&body).unwrap_or_else(|| "an unreadable response".into())
            )),
            other => ConnectorError::InvalidResponse(format!("token response: {other}")),
        })?;
        let access = token.access_token().secret();
        let mut url = self.profile_url.clone();
        for (k, v) in &self.config.profile_params {
            url.query_pairs_mut().append_pair(k, v);
        }
        if self.config.appsecret_proof {
            url.query_pairs_mut()
                .append_pair("appsecret_proof", &appsecret_proof(self.config.client_secret.expose(), access));
        }
        let request = self.http.request(Method::GET, &url).bearer_auth(access).header("accept", "application/json");
        let response = self.http.send(request).await?;
        if !response.status.is_success() {
            return Err(ConnectorError::InvalidResponse(format!("profile request failed with {}", response.status)));
        }
        self.map(response.json()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_and_names_find_values() {
        let p = serde_json::json!({"id": 42, "login": "octo", "picture": {"data": {"url": "https://x/p.png"}}});
        assert_eq!(lookup(&p, "/id").as_deref(), Some("42"));
        assert_eq!(lookup(&p, "login").as_deref(), Some("octo"));
        assert_eq!(lookup(&p, "/picture/data/url").as_deref(), Some("https://x/p.png"));
        assert_eq!(lookup(&p, "/missing"), None);
    }

    #[test]
    fn appsecret_proof_is_hex_hmac_sha256() {
        // HMAC-SHA256(key="key", "The quick brown fox jumps over the lazy dog"), a well-known vector.
        assert_eq!(
            appsecret_proof("key", "The quick brown fox jumps over the lazy dog"),
            "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8"
        );
    }
}
