//! Configuration: one TOML file, read into typed [`Settings`].
//!
//! The file is first read as a TOML table; `${NAME}` references in any string are replaced
//! from the environment; then each section (and each element of `clients`, `apis`,
//! `connections`) is read on its own, so one run reports every problem, each with its key
//! path; each connection's `options` are checked by its connector's own `open` in the same
//! pass. Nothing here is global: the app state owns its `Settings`.
//!
//! `raw.rs` is the serde mirror of the file (structs only), `defaults.rs` the one table of
//! what an absent key means, and `build.rs` (with `clients.rs`, `store_config.rs`,
//! `action_files.rs`) the typed building.

mod action_files;
mod build;
mod clients;
mod ctx;
pub mod defaults;
mod raw;
mod store_config;

use std::collections::HashSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use sha2::{Digest, Sha256};

use crate::tokens::SigningAlg;
use crate::types::{ClientId, ConnectionId, Issuer, RedirectUri, Scopes, Secret, WebOrigin};

/// The embedded default: issuer on loopback, memory store, one demo client and one demo user.
pub const EMBEDDED: &str = include_str!("../../fixtures/config/embedded.toml");

/// The demo user of the embedded default, printed at start.
pub const DEMO_USERNAME: &str = "demo@gatehouse.test";
pub const DEMO_PASSWORD: &str = "gatehouse-demo";

/// One configuration problem and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() { f.write_str(&self.message) } else { write!(f, "{}: {}", self.path, self.message) }
    }
}

/// Every problem found in one configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreKind {
    /// This process only: the embedded default.
    Memory,
    /// Redis (single server, Cluster or Sentinel): shared by every node.
    Redis(crate::store::redis::RedisConfig),
}

#[derive(Debug, Clone)]
pub struct LogSettings {
    pub json: bool,
    pub filter: String,
}

#[derive(Debug, Clone)]
pub struct KeySettings {
    pub algorithm: SigningAlg,
    /// How many previous keys stay in the JWKS after a rotation.
    pub keep_previous: usize,
}

/// Lifetimes, in seconds.
#[derive(Debug, Clone)]
pub struct TokenSettings {
    pub id_token_ttl: u64,
    pub access_token_ttl: u64,
    pub code_ttl: u64,
    pub refresh_idle_ttl: u64,
    pub refresh_absolute_ttl: u64,
    /// The `sub` of a `client_credentials` access token.
    pub client_credentials_subject: ClientCredentialsSubject,
}

/// What `sub` a machine-to-machine (`client_credentials`) access token carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCredentialsSubject {
    /// The plain `client_id`: RFC 9068 section 2.2 reads `sub` as the client when no
    /// resource owner is involved, which is what resource-server libraries expect.
    ClientId,
    /// `<client_id>@clients`, Auth0's shape, for resource servers written against Auth0.
    Auth0,
}

impl ClientCredentialsSubject {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "client_id" => Some(Self::ClientId),
            "client_id@clients" => Some(Self::Auth0),
            _ => None,
        }
    }

    /// The `sub` for client `client_id`.
    pub fn subject(self, client_id: &ClientId) -> String {
        match self {
            Self::ClientId => client_id.to_string(),
            Self::Auth0 => format!("{client_id}@clients"),
        }
    }
}

/// Deadlines on what clients send, so a slow or short request cannot hold a connection.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    pub request_timeout: std::time::Duration,
    pub body_timeout: std::time::Duration,
    /// The reverse proxies whose `X-Forwarded-For` and country header are believed.
    pub proxies: crate::net::Proxies,
}

#[derive(Debug, Clone)]
pub struct SessionSettings {
    pub ttl: u64,
    pub cookie_secure: bool,
    /// `cookie_secure` was set in the file (else it follows the issuer's scheme).
    pub cookie_secure_set: bool,
    /// The session cookie's `SameSite`. `None` lets a cross-site iframe (silent
    /// authentication with `response_mode=web_message`) see the session; it needs Secure.
    pub cookie_same_site: SessionSameSite,
}

/// `session.cookie_same_site`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSameSite {
    /// The default: the session travels on top-level navigations only, so no other site
    /// can use it from a frame, an image or a cross-site POST.
    Lax,
    /// Sent in cross-site frames too (Auth0's silent authentication from an SPA on another
    /// site); only with Secure cookies, and only if `cookie_secure` holds at run time.
    None,
}

#[derive(Debug, Clone)]
pub struct LoginSettings {
    pub transaction_ttl: u64,
    /// Failed password attempts allowed per username and address within `lockout_window`.
    pub max_failed_attempts: u64,
    pub lockout_window: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    ClientSecretBasic,
    ClientSecretPost,
    None,
}

impl AuthMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientSecretBasic => "client_secret_basic",
            Self::ClientSecretPost => "client_secret_post",
            Self::None => "none",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GrantType {
    AuthorizationCode,
    RefreshToken,
    ClientCredentials,
}

impl GrantType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
            Self::RefreshToken => "refresh_token",
            Self::ClientCredentials => "client_credentials",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "authorization_code" => Some(Self::AuthorizationCode),
            "refresh_token" => Some(Self::RefreshToken),
            "client_credentials" => Some(Self::ClientCredentials),
            _ => None,
        }
    }
}

/// A resource server clients can request tokens for.
#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub audience: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub access_token_ttl: Option<u64>,
}

/// A handle on the registered clients: the one lookup by [`ClientId`].
#[derive(Debug, Clone, Copy)]
pub struct Clients<'a>(&'a [ClientSettings]);

impl<'a> Clients<'a> {
    pub fn get(&self, id: &ClientId) -> Option<&'a ClientSettings> {
        self.0.iter().find(|c| &c.id == id)
    }
}

#[derive(Debug, Clone)]
pub struct ClientSettings {
    pub id: ClientId,
    pub name: String,
    /// SHA-256 of the client secret; `None` for a public client.
    pub secret_digest: Option<[u8; 32]>,
    pub auth_method: AuthMethod,
    pub redirect_uris: Vec<RedirectUri>,
    pub post_logout_redirect_uris: Vec<RedirectUri>,
    /// Origins a browser app of this client runs on (Auth0's "Allowed Web Origins"): they
    /// may call the token endpoints from JavaScript (CORS) and frame the
    /// `response_mode=web_message` page. Exact matches only.
    pub web_origins: Vec<WebOrigin>,
    pub grant_types: Vec<GrantType>,
    pub connections: Vec<ConnectionId>,
    pub require_pkce: bool,
    /// Audiences this client may request with `client_credentials`.
    pub apis: Vec<String>,
}

impl ClientSettings {
    pub fn is_public(&self) -> bool {
        self.secret_digest.is_none()
    }
    pub fn allows(&self, grant: GrantType) -> bool {
        self.grant_types.contains(&grant)
    }
    /// Whether `origin` (an `Origin` header, compared character for character) is this
    /// client's browser app: one of its `web_origins`, or the origin of one of its redirect
    /// URIs (already trusted with its codes; Auth0 allows its callback URLs' origins alike).
    pub fn is_web_origin(&self, origin: &str) -> bool {
        self.web_origins.iter().any(|o| o.as_str() == origin)
            || self.redirect_uris.iter().filter_map(RedirectUri::origin).any(|o| o.as_str() == origin)
    }
}

#[derive(Debug, Clone)]
pub struct ConnectionSettings {
    pub id: ConnectionId,
    /// The connector type (`static`, `oidc`, ...), resolved by the registry.
    pub kind: String,
    pub display_name: String,
    /// The connector's own options, handed to it as JSON.
    pub options: serde_json::Value,
    /// Linking, attribute mapping and profile sync for this connection's identities.
    pub profile: crate::profile::Policy,
    /// Email domains whose people sign in here (home realm discovery), lowercase.
    pub domains: Vec<String>,
    /// IdP-initiated logins are accepted and land at this client; `None` refuses them.
    pub idp_initiated: Option<IdpInitiatedRaw>,
}

/// Where an IdP-initiated (unsolicited) login lands, as configured; checked against the
/// clients by `check_references`.
#[derive(Debug, Clone)]
pub struct IdpInitiatedRaw {
    pub client_id: String,
    /// Default: the client's first redirect URI.
    pub redirect_uri: Option<String>,
    pub scope: String,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub issuer: Issuer,
    pub listen: SocketAddr,
    pub data_dir: PathBuf,
    pub log: LogSettings,
    pub store: StoreKind,
    pub keys: KeySettings,
    pub tokens: TokenSettings,
    pub http: HttpSettings,
    pub session: SessionSettings,
    pub login: LoginSettings,
    /// Serve the demo relying party at `/demo`.
    pub demo: bool,
    /// This is the embedded default (its demo user exists, so `/demo` may show it).
    pub embedded: bool,
    /// Sandboxed JavaScript run at login and at client-credentials token issuance.
    pub actions: crate::actions::Actions,
    pub apis: Vec<ApiSettings>,
    pub clients: Vec<ClientSettings>,
    pub connections: Vec<ConnectionSettings>,
}

impl Settings {
    /// Read a configuration text, with `${NAME}` looked up by `env`.
    /// Action files are read relative to the working directory.
    pub fn parse(text: &str, env: &dyn Fn(&str) -> Option<String>) -> Result<Self, ConfigErrors> {
        build::parse(text, env, &std::env::current_dir().unwrap_or_default())
    }

    /// Like [`Settings::parse`], with action files read relative to `base`.
    pub fn parse_in(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
        base: &std::path::Path,
    ) -> Result<Self, ConfigErrors> {
        build::parse(text, env, base)
    }

    pub fn from_file(path: &std::path::Path) -> Result<Self, ConfigErrors> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            ConfigErrors(vec![ConfigError {
                path: String::new(),
                message: format!("cannot read {}: {e}", path.display()),
            }])
        })?;
        let base = path.parent().unwrap_or(std::path::Path::new("."));
        Self::parse_in(&text, &|k| std::env::var(k).ok(), base)
    }

    /// The zero-setup default of `gatehouse serve` without `--config`.
    pub fn embedded() -> Self {
        let mut s = Self::parse(EMBEDDED, &|_| None).expect("the embedded configuration is valid");
        s.embedded = true;
        s
    }

    /// Move the issuer (and the demo client's redirect URIs with it), for `--issuer` and for
    /// tests that bind a free port.
    pub fn with_issuer(mut self, issuer: Issuer) -> Self {
        let old = self.issuer.base().to_owned();
        let rebase = |u: &RedirectUri| match u.as_str().strip_prefix(&old) {
            Some(rest) => RedirectUri::parse(&issuer.join(rest)).unwrap_or_else(|_| u.clone()),
            None => u.clone(),
        };
        for c in &mut self.clients {
            c.redirect_uris = c.redirect_uris.iter().map(rebase).collect();
            c.post_logout_redirect_uris = c.post_logout_redirect_uris.iter().map(rebase).collect();
        }
        if !self.session.cookie_secure_set {
            self.session.cookie_secure = issuer.is_https();
        }
        self.issuer = issuer;
        self
    }

    pub fn client(&self, id: &str) -> Option<&ClientSettings> {
        self.clients.iter().find(|c| c.id.as_str() == id)
    }

    /// The registered clients, looked up by typed id (past the edge, ids are `ClientId`s).
    pub fn known_clients(&self) -> Clients<'_> {
        Clients(&self.clients)
    }

    pub fn api(&self, audience: &str) -> Option<&ApiSettings> {
        self.apis.iter().find(|a| a.audience == audience)
    }

    pub fn connection(&self, id: &ConnectionId) -> Option<&ConnectionSettings> {
        self.connections.iter().find(|c| &c.id == id)
    }
}

/// SHA-256 of a client secret, as kept in memory and compared at the token endpoint.
pub fn secret_digest(secret: &Secret<String>) -> [u8; 32] {
    Sha256::digest(secret.expose().as_bytes()).into()
}

/// Checks across elements: ids defined twice.
fn check_references(s: &Settings, errors: &mut Vec<ConfigError>) {
    let mut seen = HashSet::new();
    for (i, c) in s.clients.iter().enumerate() {
        if !seen.insert(c.id.as_str()) {
            errors.push(ConfigError {
                path: format!("clients[{i}].client_id"),
                message: format!("{} is defined twice", c.id),
            });
        }
    }
    let mut seen = HashSet::new();
    let mut domains = std::collections::HashMap::new();
    for (i, c) in s.connections.iter().enumerate() {
        if !seen.insert(&c.id) {
            errors.push(ConfigError {
                path: format!("connections[{i}].id"),
                message: format!("{} is defined twice", c.id),
            });
        }
        for d in &c.domains {
            if let Some(other) = domains.insert(d.as_str(), &c.id) {
                errors.push(ConfigError {
                    path: format!("connections[{i}].domains"),
                    message: format!("{d} is already a domain of connection {other}"),
                });
            }
        }
        if let Some(i2) = &c.idp_initiated
            && let Err(message) = s.idp_initiated_target(c, i2)
        {
            errors.push(ConfigError { path: format!("connections[{i}].idp_initiated"), message });
        }
    }
}

/// Where an IdP-initiated login of a connection lands, resolved against the clients.
#[derive(Debug, Clone)]
pub struct IdpInitiated {
    pub client_id: ClientId,
    pub redirect_uri: RedirectUri,
    pub scopes: Scopes,
}

impl Settings {
    /// Resolve a connection's `idp_initiated` target: a confidential client (the code it gets
    /// carries no PKCE challenge, so it must authenticate to redeem it) that may use the
    /// connection, one of its registered redirect URIs, and a scope with `openid`.
    pub fn idp_initiated_target(&self, c: &ConnectionSettings, i: &IdpInitiatedRaw) -> Result<IdpInitiated, String> {
        let client = self.client(&i.client_id).ok_or_else(|| format!("client_id {} is not a client", i.client_id))?;
        if client.is_public() {
            return Err(format!("client {} is public; IdP-initiated logins need a confidential client", client.id));
        }
        if !client.connections.contains(&c.id) {
            return Err(format!("client {} does not list connection {}", client.id, c.id));
        }
        let redirect_uri = match &i.redirect_uri {
            Some(u) => client
                .redirect_uris
                .iter()
                .find(|r| r.as_str() == u)
                .cloned()
                .ok_or_else(|| format!("{u} is not a redirect URI of client {}", client.id))?,
            None => client
                .redirect_uris
                .first()
                .cloned()
                .ok_or_else(|| format!("client {} has no redirect URI", client.id))?,
        };
        let scopes = Scopes::parse(&i.scope).map_err(|_| "scope is malformed".to_owned())?;
        if !scopes.contains("openid") {
            return Err("scope must include openid".into());
        }
        Ok(IdpInitiated { client_id: client.id.clone(), redirect_uri, scopes })
    }
}

#[cfg(test)]
mod tests;
