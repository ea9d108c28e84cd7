//! The Gatehouse connector SDK.
//!
//! A connector speaks one upstream identity protocol (OIDC, OAuth 2.0, SAML, LDAP, static
//! users). Gatehouse drives every connector through one trait with two required methods:
//!
//! * [`Connector::start`] says what the browser does next ([`Start`]: a redirect, an
//!   auto-submitted form, or a credentials prompt Gatehouse renders itself) and returns an
//!   opaque [`ConnectorState`] that Gatehouse stores with the login transaction.
//! * [`Connector::finish`] receives that state back together with what the browser brought
//!   ([`CallbackInput`]: a GET query, a POST form, or typed credentials) and returns the
//!   facts the upstream asserted about the person ([`UpstreamIdentity`]).
//!
//! Why this shape: connectors keep no per-login memory. Everything `finish` needs travels
//! through the store, so a login started on one Gatehouse node can finish on any other.
//! Connectors also never see HTTP framework types and never decide the Gatehouse `user_id`:
//! they report facts, and the core decides.
//!
//! Everything beyond a login is an optional capability with one source of truth each: a
//! connector that can end upstream sessions returns itself from [`Connector::logout`] (and
//! implements [`Logout`]), one that accepts upstream-initiated responses returns itself from
//! [`Connector::unsolicited`] (and implements [`Unsolicited`]), and one that publishes
//! metadata returns it from [`Connector::metadata`]. The defaults say "not supported", so a
//! new connector implements two methods and grows from there; there is no separate flag that
//! could disagree with the method it describes.
//!
//! A connection is opened from configuration through [`ConnectorConfig`]: the core's
//! registry row for a connector is one line, `("type", open::<its_crate::Config>)`.
//!
//! With the `testkit` feature, `testkit` offers a configurable fake connector for the core's
//! own tests and a conformance kit every connector crate runs against itself.

use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

#[cfg(feature = "http")]
pub mod http;
#[cfg(feature = "testkit")]
pub mod testkit;

pub use async_trait::async_trait;
use serde::{Deserialize, Serialize};
pub use url::Url;

/// A value that must never reach a log line: `Debug` prints `[redacted]` and there is no
/// `Display`, so `format!("{secret}")` does not compile. No `PartialEq` either: `==` on a
/// secret would be a variable-time comparison; compare digests in constant time instead.
#[derive(Clone, Serialize, Deserialize, Default)]
#[serde(transparent)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }
    /// The only way to read the value: the call site names what it does with it.
    pub fn expose(&self) -> &T {
        &self.0
    }
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl From<String> for Secret<String> {
    fn from(value: String) -> Self {
        Self(value)
    }
}

/// What Gatehouse tells a connector when a login reaches it.
#[derive(Debug, Clone)]
pub struct StartContext {
    /// Where the upstream must send the browser back: `{issuer}/callback/{connection}`.
    pub callback_url: Url,
    /// Opaque and unguessable: use it as the upstream `state` or SAML `RelayState`, so the
    /// callback finds its transaction. It is bound to the browser by Gatehouse.
    pub transaction_id: String,
    /// The downstream client's `login_hint`, if any.
    pub login_hint: Option<String>,
    /// The downstream client asked for a fresh login (`prompt=login` or `max_age=0`).
    pub force_login: bool,
    /// The downstream client's `max_age`, to pass to upstreams that understand it.
    pub max_age: Option<u64>,
    /// Now, from Gatehouse's injected clock (connectors never read the system clock, so
    /// tests can pin time).
    pub now: SystemTime,
}

/// What the browser does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// Send the browser to the upstream (OAuth 2.0 / OIDC, SAML HTTP-Redirect binding).
    Redirect { url: Url },
    /// Gatehouse renders a form that submits itself (SAML HTTP-POST binding).
    PostForm { action: Url, fields: Vec<(String, String)> },
    /// Gatehouse renders its own username and password form (static users, LDAP).
    Credentials(CredentialsPrompt),
}

/// Labels for the credentials form Gatehouse renders.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialsPrompt {
    pub username_label: String,
}

impl Default for CredentialsPrompt {
    fn default() -> Self {
        Self { username_label: "Email".into() }
    }
}

/// Opaque bytes a connector keeps between `start` and `finish` (PKCE verifier, nonce,
/// AuthnRequest ID). Gatehouse stores them with the transaction; they may hold secrets, so
/// they are never logged.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConnectorState(pub Vec<u8>);

impl fmt::Debug for ConnectorState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ConnectorState({} bytes)", self.0.len())
    }
}

/// What the browser brought back, built by Gatehouse's HTTP layer.
#[derive(Debug, Clone)]
pub enum CallbackInput {
    /// An OAuth-style callback: the GET query parameters, each once.
    Query(Vec<(String, String)>),
    /// A form POST to the callback (SAML HTTP-POST binding, OIDC `form_post`).
    Form(Vec<(String, String)>),
    /// The credentials form Gatehouse rendered for [`Start::Credentials`].
    Credentials { username: String, password: Secret<String> },
}

impl CallbackInput {
    /// The value of one parameter of a query or form input.
    pub fn param(&self, name: &str) -> Option<&str> {
        match self {
            Self::Query(pairs) | Self::Form(pairs) => pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()),
            Self::Credentials { .. } => None,
        }
    }
}

/// What Gatehouse tells a connector when the browser comes back.
#[derive(Debug, Clone)]
pub struct FinishContext {
    pub callback_url: Url,
    /// The transaction this callback was matched to (empty for an unsolicited response).
    pub transaction_id: String,
    /// Now, from Gatehouse's injected clock.
    pub now: SystemTime,
}

/// The facts an upstream asserted about one person. Facts, not decisions: the core builds
/// the Gatehouse `user_id`, the profile and any account link from these.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UpstreamIdentity {
    /// The upstream's stable identifier for this person (OIDC `sub`, SAML persistent NameID).
    pub subject: String,
    pub email: Option<String>,
    /// Only `true` when the upstream itself says the email is verified.
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub nickname: Option<String>,
    pub picture: Option<String>,
    pub locale: Option<String>,
    pub groups: Vec<String>,
    /// Every claim or attribute as the upstream sent it, for attribute mapping.
    pub raw: serde_json::Map<String, serde_json::Value>,
    /// When the upstream authenticated the person, if it says so.
    pub authenticated_at: Option<SystemTime>,
    /// Authentication methods (RFC 8176 values such as `pwd`, `mfa`).
    pub amr: Vec<String>,
    /// A message ID the upstream promises to use once (a SAML assertion ID): Gatehouse
    /// records it in the store's replay cache until `until`, across all nodes, and refuses
    /// the login if it was seen before.
    #[serde(default)]
    pub single_use: Option<SingleUse>,
    /// What the connector needs to end the upstream session later (a SAML NameID and
    /// SessionIndex); Gatehouse keeps it with its own session and hands it to
    /// [`Logout::start_logout`].
    #[serde(default)]
    pub upstream_session: Option<serde_json::Value>,
}

/// See [`UpstreamIdentity::single_use`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SingleUse {
    pub id: String,
    pub until: SystemTime,
}

/// Why a connector could not start or finish a login. Gatehouse maps these to what the
/// browser and the downstream client see; the message goes to the log, not to the user.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectorError {
    /// The person or the upstream refused (cancelled consent, group policy).
    #[error("access denied: {0}")]
    Denied(String),
    /// Wrong username or password on a credentials prompt: the form is shown again.
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The upstream's answer failed a check (signature, state, nonce, audience, time):
    /// logged as a possible attack.
    #[error("invalid upstream response: {0}")]
    InvalidResponse(String),
    /// Network error, timeout or 5xx from the upstream.
    #[error("upstream unavailable: {0}")]
    Upstream(String),
    /// The connection's configuration is unusable.
    #[error("misconfigured: {0}")]
    Misconfigured(String),
    /// The connector does not offer this operation.
    #[error("unsupported: {0}")]
    Unsupported(&'static str),
}

/// Service-provider metadata a connector publishes (SAML SP metadata).
#[derive(Debug, Clone)]
pub struct Metadata {
    pub content_type: &'static str,
    pub body: String,
}

/// The one trait an upstream protocol implements. See the crate documentation for why it
/// has this shape.
#[async_trait::async_trait]
pub trait Connector: Send + Sync + 'static {
    /// The `user_id` prefix this connector's identities get (`google-oauth2`, `samlp`, ...).
    fn strategy(&self) -> &str;

    /// Begin a login: what the browser does next, and the state `finish` will need.
    async fn start(&self, ctx: &StartContext) -> Result<(Start, ConnectorState), ConnectorError>;

    /// Complete a login from the stored state and what the browser brought back.
    async fn finish(
        &self,
        ctx: &FinishContext,
        state: ConnectorState,
        input: CallbackInput,
    ) -> Result<UpstreamIdentity, ConnectorError>;

    /// Upstream Single Logout, when this connector offers it (`Some(self)`).
    fn logout(&self) -> Option<&dyn Logout> {
        None
    }

    /// Upstream-initiated logins (a SAML IdP-initiated response), when this connector
    /// accepts them (`Some(self)`). Gatehouse uses it only for connections that opted in.
    fn unsolicited(&self) -> Option<&dyn Unsolicited> {
        None
    }

    /// Metadata Gatehouse publishes for this connection (SAML SP metadata), if any.
    fn metadata(&self) -> Option<Metadata> {
        None
    }
}

/// The optional capability of completing a login the upstream started on its own.
#[async_trait::async_trait]
pub trait Unsolicited: Send + Sync {
    /// There is no transaction and no state. Gatehouse records
    /// [`UpstreamIdentity::single_use`] so each response works once, and refuses a response
    /// without one.
    async fn finish_unsolicited(
        &self,
        ctx: &FinishContext,
        input: CallbackInput,
    ) -> Result<UpstreamIdentity, ConnectorError>;
}

/// The optional capability of ending upstream sessions (SAML Single Logout).
#[async_trait::async_trait]
pub trait Logout: Send + Sync {
    /// Begin ending the upstream session kept in [`UpstreamIdentity::upstream_session`]:
    /// where the browser goes (the upstream comes back to [`LogoutContext::return_url`]
    /// with `relay`), and the state [`Logout::finish_logout`] will need. `Ok(None)` when
    /// this upstream, as configured, publishes no logout endpoint.
    async fn start_logout(
        &self,
        ctx: &LogoutContext,
        session: &serde_json::Value,
    ) -> Result<Option<(Start, ConnectorState)>, ConnectorError>;

    /// Check the upstream's answer to [`Logout::start_logout`]; `raw_query` is the query
    /// string exactly as received (SAML signs its encoded form).
    async fn finish_logout(
        &self,
        ctx: &LogoutContext,
        state: ConnectorState,
        raw_query: &str,
    ) -> Result<(), ConnectorError>;

    /// The upstream asks, through the browser, to end its user's session here (a SAML
    /// IdP-initiated LogoutRequest). `raw_query` is the query string exactly as received;
    /// `session` is this browser's session facts for this connection, if it has a session.
    /// The answer says whether that session is the one named, and where the browser goes
    /// next (the signed answer to the upstream).
    async fn upstream_logout_request(
        &self,
        ctx: &LogoutContext,
        raw_query: &str,
        session: Option<&serde_json::Value>,
    ) -> Result<UpstreamLogout, ConnectorError>;
}

/// A connector's configuration: the serde mirror of a connection's `options` (use
/// `#[serde(deny_unknown_fields)]` and [`Secret`] for secrets) and how to open it.
pub trait ConnectorConfig: serde::de::DeserializeOwned {
    type Connector: Connector;

    /// Validate and build. Cheap and free of network calls, so one unreachable upstream never
    /// stops start-up and `check-config` can run it offline.
    fn open(self, ctx: &OpenContext) -> Result<Self::Connector, ConnectorError>;
}

/// Read a connection's options as `C` and open it: the one opener every registry row uses.
pub fn open<C: ConnectorConfig>(
    options: serde_json::Value,
    ctx: &OpenContext,
) -> Result<Arc<dyn Connector>, ConnectorError> {
    let config: C = serde_json::from_value(options).map_err(|e| ConnectorError::Misconfigured(e.to_string()))?;
    Ok(Arc::new(config.open(ctx)?))
}

/// What Gatehouse tells a connector about an upstream logout.
#[derive(Debug, Clone)]
pub struct LogoutContext {
    /// Where the upstream sends the browser back: `{issuer}/saml/{connection}/slo` style.
    pub return_url: Url,
    /// Opaque and unguessable: the upstream echoes it (SAML `RelayState`).
    pub relay: String,
    pub now: SystemTime,
}

/// See [`Logout::upstream_logout_request`].
#[derive(Debug, Clone)]
pub struct UpstreamLogout {
    /// The browser's session is the one the upstream ended: close it.
    pub ends_session: bool,
    /// Where the browser goes: back to the upstream with the answer.
    pub next: Start,
}

/// What a connector gets when Gatehouse opens a connection from configuration. Opening must
/// be cheap and make no network calls, so one unreachable upstream never stops start-up.
#[derive(Debug, Clone)]
pub struct OpenContext {
    /// The connection's id, as configured.
    pub connection: String,
    /// Where the upstream sends the browser back for this connection.
    pub callback_url: Url,
    /// Gatehouse's issuer URL, for other URLs a connector publishes, such as SAML metadata
    /// at `{issuer}/saml/{connection}/metadata`.
    pub issuer: Url,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_debug_is_redacted() {
        let s = Secret::new("hunter2".to_string());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn callback_input_param_reads_query_and_form_only() {
        let q = CallbackInput::Query(vec![("state".into(), "abc".into())]);
        assert_eq!(q.param("state"), Some("abc"));
        assert_eq!(q.param("code"), None);
        let c = CallbackInput::Credentials { username: "u".into(), password: Secret::new("p".into()) };
        assert_eq!(c.param("username"), None);
    }

    #[test]
    fn connector_state_debug_hides_bytes() {
        let s = ConnectorState(b"verifier".to_vec());
        assert_eq!(format!("{s:?}"), "ConnectorState(8 bytes)");
    }
}
