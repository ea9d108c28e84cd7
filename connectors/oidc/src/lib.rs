//! Any OpenID Connect provider (Okta, Entra ID, Keycloak, Auth0, Google...) by discovery.
//!
//! Upstream, every login uses the authorization code flow with PKCE (S256), a fresh nonce,
//! and the Gatehouse transaction id as `state`. The ID token is verified in full by the
//! `openidconnect` crate: signature against the provider's JWKS (fetched again once when a
//! `kid` is unknown, for key rotation), issuer, audience, expiry and nonce; only asymmetric
//! algorithms are accepted. An `iss` that is not a URL (Google's `accounts.google.com`),
//! which that crate cannot read, is accepted only when listed in `extra_issuers`, its token
//! then verified with the same checks by the `jsonwebtoken` crate (see `listed_issuer`).
//! Discovery happens on first use and is cached, so an unreachable provider never stops
//! Gatehouse from starting.

mod listed_issuer;
#[cfg(feature = "testkit")]
pub mod testkit;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use gatehouse_connector::http::UpstreamHttp;
use gatehouse_connector::{
    CallbackInput, Connector, ConnectorConfig, ConnectorError, ConnectorState, FinishContext, OpenContext, Secret,
    Start, StartContext, UpstreamIdentity, async_trait,
};
use openidconnect::core::{
    CoreAuthenticationFlow, CoreClient, CoreIdToken, CoreJsonWebKeySet, CoreJwsSigningAlgorithm, CoreProviderMetadata,
    CoreTokenResponse,
};
use openidconnect::{
    AccessToken, AuthType, AuthorizationCode, ClaimsVerificationError, ClientId, ClientSecret, CsrfToken, IssuerUrl,
    Nonce, OAuth2TokenResponse, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, Scope, SignatureVerificationError,
    TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;

fn default_scopes() -> Vec<String> {
    vec!["openid".into(), "email".into(), "profile".into()]
}

fn default_strategy() -> String {
    "oidc".into()
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    #[default]
    ClientSecretBasic,
    ClientSecretPost,
}

/// The connection's options.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The provider's issuer; discovery is `{issuer}/.well-known/openid-configuration`.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Scopes to request; `openid` is added if missing.
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    /// Extra authorization request parameters (`prompt`, `acr_values`, `hd`...).
    #[serde(default)]
    pub authorize_params: BTreeMap<String, String>,
    /// Also call the userinfo endpoint and merge its claims (ID token claims win).
    #[serde(default)]
    pub userinfo: bool,
    /// Other spellings of the issuer to accept in ID tokens (Google: `accounts.google.com`).
    #[serde(default)]
    pub extra_issuers: Vec<String>,
    /// The `user_id` prefix (`oidc` by default).
    #[serde(default = "default_strategy")]
    pub strategy: String,
    /// Deadline of every upstream call, in milliseconds.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// Largest upstream response accepted, in bytes.
    #[serde(default)]
    pub max_response_bytes: Option<usize>,
    /// How long discovery and keys are cached, in seconds (default 3600).
    #[serde(default)]
    pub metadata_ttl: Option<u64>,
}

type HttpFuture =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<openidconnect::HttpResponse, ConnectorError>> + Send>>;

pub struct OidcConnector {
    config: Config,
    issuer: IssuerUrl,
    callback: RedirectUrl,
    http: UpstreamHttp,
    metadata: RwLock<Option<(Arc<CoreProviderMetadata>, Instant)>>,
    ttl: Duration,
}

/// What `finish` needs from `start`, stored by Gatehouse with the transaction.
#[derive(Serialize, Deserialize)]
struct State {
    verifier: String,
    nonce: String,
}

impl ConnectorConfig for Config {
    type Connector = OidcConnector;

    fn open(mut self, ctx: &OpenContext) -> Result<OidcConnector, ConnectorError> {
        let issuer = IssuerUrl::new(self.issuer.trim_end_matches('/').to_owned())
            .map_err(|e| ConnectorError::Misconfigured(format!("issuer: {e}")))?;
        let callback = RedirectUrl::new(ctx.callback_url.to_string())
            .map_err(|e| ConnectorError::Misconfigured(format!("callback: {e}")))?;
        if self.client_id.is_empty() {
            return Err(ConnectorError::Misconfigured("client_id must not be empty".into()));
        }
        if !self.scopes.iter().any(|s| s == "openid") {
            self.scopes.insert(0, "openid".into());
        }
        let http = UpstreamHttp::new(
            Duration::from_millis(self.timeout_ms.unwrap_or(10_000)),
            self.max_response_bytes.unwrap_or(gatehouse_connector::http::DEFAULT_MAX_BODY),
        )?;
        Ok(OidcConnector {
            ttl: Duration::from_secs(self.metadata_ttl.unwrap_or(3600)),
            config: self,
            issuer,
            callback,
            http,
            metadata: RwLock::new(None),
        })
    }
}

fn upstream<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> ConnectorError {
    move |e| ConnectorError::Upstream(format!("{what}: {e}"))
}

macro_rules! client_for {
    ($self:expr, $metadata:expr) => {
        CoreClient::from_provider_metadata(
            $metadata.clone(),
            ClientId::new($self.config.client_id.clone()),
            Some(ClientSecret::new($self.config.client_secret.expose().clone())),
        )
        .set_redirect_uri($self.callback.clone())
        .set_auth_type(match $self.config.client_auth {
            ClientAuth::ClientSecretBasic => AuthType::BasicAuth,
            ClientAuth::ClientSecretPost => AuthType::RequestBody,
        })
    };
}

impl OidcConnector {
    /// The adapter `openidconnect` calls for every HTTP request.
    fn http_client(&self) -> impl Fn(openidconnect::HttpRequest) -> HttpFuture + Send + Sync + 'static {
        let http = self.http.clone();
        move |req| {
            let http = http.clone();
            Box::pin(async move { http.execute(req).await })
        }
    }

    /// The same adapter, also noting the status of the last response (the token exchange:
    /// only a 200 answer's body is ever read as tokens).
    fn http_client_noting_status(
        &self,
        status: Arc<std::sync::Mutex<Option<u16>>>,
    ) -> impl Fn(openidconnect::HttpRequest) -> HttpFuture + Send + Sync + 'static {
        let http = self.http.clone();
        move |req| {
            let (http, status) = (http.clone(), status.clone());
            Box::pin(async move {
                let response = http.execute(req).await?;
                *status.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(response.status().as_u16());
                Ok(response)
            })
        }
    }

    /// Discovery and keys, from the cache or fetched now. `refresh` forces a new fetch (an
    /// unknown `kid`: the provider may have rotated its keys).
    async fn metadata(&self, refresh: bool) -> Result<Arc<CoreProviderMetadata>, ConnectorError> {
        if !refresh
            && let Some((m, at)) = self.metadata.read().await.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(m.clone());
        }
        let client = self.http_client();
        let discovered =
            CoreProviderMetadata::discover_async(self.issuer.clone(), &client).await.map_err(|e| match e {
                openidconnect::DiscoveryError::Request(inner) => inner,
                other => ConnectorError::Upstream(format!("discovery failed: {other}")),
            })?;
        let m = Arc::new(discovered);
        *self.metadata.write().await = Some((m.clone(), Instant::now()));
        Ok(m)
    }

    async fn refresh_keys(&self, current: &CoreProviderMetadata) -> Result<Arc<CoreProviderMetadata>, ConnectorError> {
        let client = self.http_client();
        let jwks =
            CoreJsonWebKeySet::fetch_async(current.jwks_uri(), &client).await.map_err(upstream("JWKS fetch failed"))?;
        let m = Arc::new(current.clone().set_jwks(jwks));
        *self.metadata.write().await = Some((m.clone(), Instant::now()));
        Ok(m)
    }

    /// Verify the ID token against `metadata`'s keys; returns its issuer.
    fn verify(
        &self,
        metadata: &CoreProviderMetadata,
        id_token: &CoreIdToken,
        nonce: &Nonce,
    ) -> Result<String, ClaimsVerificationError> {
        let client = client_for!(self, metadata);
        // With extra issuer spellings the issuer is compared below instead.
        let verifier = client
            .id_token_verifier()
            .set_allowed_algs(ALGS)
            .require_issuer_match(self.config.extra_issuers.is_empty());
        id_token.claims(&verifier, nonce).map(|claims| claims.issuer().to_string())
    }
}

impl OidcConnector {
    /// Verify the ID token of a response the crate parsed; returns its claims.
    async fn verify_parsed(
        &self,
        metadata: &mut Arc<CoreProviderMetadata>,
        token: &CoreTokenResponse,
        nonce: &Nonce,
    ) -> Result<serde_json::Map<String, serde_json::Value>, ConnectorError> {
        let id_token = token
            .id_token()
            .ok_or_else(|| ConnectorError::InvalidResponse("no id_token in the token response".into()))?;
        let iss = match self.verify(metadata, id_token, nonce) {
            Ok(iss) => iss,
            Err(ClaimsVerificationError::SignatureVerification(SignatureVerificationError::NoMatchingKey)) => {
                // An unknown kid: the provider may have rotated its keys. Fetch them once.
                *metadata = self.refresh_keys(metadata).await?;
                self.verify(metadata, id_token, nonce).map_err(claims_error)?
            }
            Err(e) => return Err(claims_error(e)),
        };
        if iss != metadata.issuer().as_str() && !self.config.extra_issuers.contains(&iss) {
            return Err(ConnectorError::InvalidResponse(format!("ID token issuer {iss} is not accepted")));
        }
        Ok(verified_payload(&id_token.to_string()))
    }

    /// Verify the ID token of a response the crate could not parse, against the listed
    /// issuer spellings only; returns the access token and the claims.
    async fn verify_unparsed(
        &self,
        metadata: &mut Arc<CoreProviderMetadata>,
        body: &[u8],
        nonce: &Nonce,
    ) -> Result<(String, serde_json::Map<String, serde_json::Value>), ConnectorError> {
        let token = listed_issuer::RawTokenResponse::parse(body)?;
        let issuers: Vec<&str> = self.config.extra_issuers.iter().map(String::as_str).collect();
        let check = |keys: &CoreJsonWebKeySet| {
            listed_issuer::verify(&token.id_token, keys, &issuers, &self.config.client_id, nonce.secret())
        };
        let claims = match check(metadata.jwks()) {
            Ok(claims) => claims,
            Err(listed_issuer::Refusal::UnknownKey) => {
                // As above: fetch the keys once for an unknown kid.
                *metadata = self.refresh_keys(metadata).await?;
                check(metadata.jwks()).map_err(|e| match e {
                    listed_issuer::Refusal::UnknownKey => {
                        ConnectorError::InvalidResponse("ID token rejected: no key matches its kid".into())
                    }
                    listed_issuer::Refusal::Invalid(why) => ConnectorError::InvalidResponse(why),
                })?
            }
            Err(listed_issuer::Refusal::Invalid(why)) => return Err(ConnectorError::InvalidResponse(why)),
        };
        Ok((token.access_token, claims))
    }
}

/// Asymmetric algorithms only: an HMAC "signed" with the provider's public key, or `none`,
/// never verifies.
const ALGS: [CoreJwsSigningAlgorithm; 7] = [
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha384,
    CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha512,
    CoreJwsSigningAlgorithm::RsaSsaPssSha256,
    CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    CoreJwsSigningAlgorithm::EcdsaP384Sha384,
    CoreJwsSigningAlgorithm::EdDsa,
];

fn claims_error(e: ClaimsVerificationError) -> ConnectorError {
    ConnectorError::InvalidResponse(format!("ID token rejected: {e}"))
}

/// The payload of an ID token whose signature and claims were verified, as JSON: every
/// claim the provider sent, for attribute mapping.
fn verified_payload(jwt: &str) -> serde_json::Map<String, serde_json::Value> {
    jwt.split('.')
        .nth(1)
        .and_then(|p| base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(p).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn string(raw: &serde_json::Map<String, serde_json::Value>, k: &str) -> Option<String> {
    raw.get(k).and_then(|v| v.as_str()).map(str::to_owned)
}

/// Build the upstream identity from verified claims (OIDC standard claim names).
pub fn identity_from_claims(
    raw: serde_json::Map<String, serde_json::Value>,
) -> Result<UpstreamIdentity, ConnectorError> {
    let subject = string(&raw, "sub").ok_or_else(|| ConnectorError::InvalidResponse("no sub claim".into()))?;
    let email_verified = match raw.get("email_verified") {
        Some(serde_json::Value::Bool(b)) => *b,
        // Some providers send the string "true".
        Some(serde_json::Value::String(s)) => s == "true",
        _ => false,
    };
    let groups = raw
        .get("groups")
        .and_then(|g| g.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let authenticated_at =
        raw.get("auth_time").and_then(|t| t.as_u64()).map(|t| std::time::UNIX_EPOCH + Duration::from_secs(t));
    let amr = raw
        .get("amr")
        .and_then(|a| a.as_array())
        .map(|a| a.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    Ok(UpstreamIdentity {
        subject,
        email: string(&raw, "email"),
        email_verified,
        name: string(&raw, "name"),
        given_name: string(&raw, "given_name"),
        family_name: string(&raw, "family_name"),
        nickname: string(&raw, "nickname").or_else(|| string(&raw, "preferred_username")),
        picture: string(&raw, "picture"),
        locale: string(&raw, "locale"),
        groups,
        raw,
        authenticated_at,
        amr,
        single_use: None,
        upstream_session: None,
    })
}

#[async_trait]
impl Connector for OidcConnector {
    fn strategy(&self) -> &str {
        &self.config.strategy
    }

    async fn start(&self, ctx: &StartContext) -> Result<(Start, ConnectorState), ConnectorError> {
        let metadata = self.metadata(false).await?;
        let client = client_for!(self, metadata.as_ref());
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = ctx.transaction_id.clone();
        let mut request = client
            .authorize_url(CoreAuthenticationFlow::AuthorizationCode, move || CsrfToken::new(state), Nonce::new_random)
            .set_pkce_challenge(challenge);
        for scope in self.config.scopes.iter().filter(|s| *s != "openid") {
            request = request.add_scope(Scope::new(scope.clone()));
        }
        for (k, v) in &self.config.authorize_params {
            request = request.add_extra_param(k.clone(), v.clone());
        }
        if let Some(hint) = &ctx.login_hint {
            request = request.add_extra_param("login_hint", hint.clone());
        }
        if ctx.force_login {
            request = request.add_extra_param("prompt", "login");
        }
        if let Some(max_age) = ctx.max_age {
            request = request.add_extra_param("max_age", max_age.to_string());
        }
        let (url, _, nonce) = request.url();
        let state = State { verifier: verifier.secret().clone(), nonce: nonce.secret().clone() };
        let bytes = serde_json::to_vec(&state).map_err(|e| ConnectorError::Misconfigured(e.to_string()))?;
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
            let description = input.param("error_description").unwrap_or("");
            return Err(ConnectorError::Denied(format!("{error}: {description}")));
        }
        let code =
            input.param("code").ok_or_else(|| ConnectorError::InvalidResponse("no code in the callback".into()))?;
        let state: State = serde_json::from_slice(&state.0)
            .map_err(|_| ConnectorError::InvalidResponse("the login state is unreadable".into()))?;
        let mut metadata = self.metadata(false).await?;
        if let (Some(iss), Some(expected)) = (input.param("iss"), Some(metadata.issuer().as_str()))
            && iss != expected
        {
            // RFC 9207: the response came from another provider (mix-up).
            return Err(ConnectorError::InvalidResponse("iss in the callback is not this provider".into()));
        }
        let client = client_for!(self, metadata.as_ref());
        let http = self.http_client();
        let nonce = Nonce::new(state.nonce);
        let status = Arc::new(std::sync::Mutex::new(None));
        let exchanged = client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .map_err(|e| ConnectorError::Misconfigured(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(state.verifier))
            .request_async(&self.http_client_noting_status(status.clone()))
            .await;
        let answered_ok = *status.lock().unwrap_or_else(std::sync::PoisonError::into_inner) == Some(200);
        let (access_token, mut raw) = match exchanged {
            Ok(token) => {
                let raw = self.verify_parsed(&mut metadata, &token, &nonce).await?;
                (token.access_token().secret().clone(), raw)
            }
            // The crate could not read a 200 answer (an `iss` that is not a URL, such as a
            // listed spelling): the other path verifies it and accepts the listed spellings only.
            Err(openidconnect::RequestTokenError::Parse(_, body))
                if answered_ok && !self.config.extra_issuers.is_empty() =>
            {
                self.verify_unparsed(&mut metadata, &body, &nonce).await?
            }
            Err(e) => {
                return Err(match e {
                    openidconnect::RequestTokenError::Request(inner) => inner,
                    openidconnect::RequestTokenError::ServerResponse(r) => {
                        ConnectorError::InvalidResponse(format!("token endpoint refused the code: {}", r.error()))
                    }
                    other => ConnectorError::InvalidResponse(format!("token response: {other}")),
                });
            }
        };
        if self.config.userinfo {
            let c = client_for!(self, metadata.as_ref());
            let sub =
                raw.get("sub").and_then(|s| s.as_str()).map(|s| openidconnect::SubjectIdentifier::new(s.to_owned()));
            let info: openidconnect::core::CoreUserInfoClaims = c
                .user_info(AccessToken::new(access_token), sub)
                .map_err(|e| ConnectorError::Misconfigured(format!("userinfo: {e}")))?
                .request_async(&http)
                .await
                .map_err(|e| ConnectorError::InvalidResponse(format!("userinfo: {e}")))?;
            if let Ok(serde_json::Value::Object(extra)) = serde_json::to_value(&info) {
                for (k, v) in extra {
                    raw.entry(k).or_insert(v);
                }
            }
        }
        identity_from_claims(raw)
    }
}
