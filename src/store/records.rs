//! The records the store keeps. Plain data with serde, versioned by their field set: a
//! backend that serialises them (Redis) stores JSON; the memory backend keeps them as is.

use gatehouse_connector::ConnectorState;
use serde::{Deserialize, Serialize};

use crate::types::{ClientId, ConnectionId, PkceChallenge, RedirectUri, Scopes, SecretHash, TransactionId, UserId};

/// How the authorization response travels back to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ResponseMode {
    #[default]
    Query,
    FormPost,
    /// The OAuth 2.0 Web Message Response Mode (draft, as Auth0 implements it): a page,
    /// framed by the client's web origin, that posts the response to that origin only.
    WebMessage,
}

/// The stored form of the downstream request that began a login (the domain type is
/// `oauth::AuthorizationRequest`, which converts to and from this record).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub client_id: ClientId,
    pub redirect_uri: RedirectUri,
    pub scopes: Scopes,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<PkceChallenge>,
    pub response_mode: ResponseMode,
    pub prompt_login: bool,
    pub max_age: Option<u64>,
    pub login_hint: Option<String>,
    pub connection: Option<ConnectionId>,
    pub ui_locales: Option<String>,
    /// The `sub` of a verified `id_token_hint`: whoever signs in must be that user.
    #[serde(default)]
    pub hint_sub: Option<String>,
    /// An IdP-initiated login: no client request, hence no PKCE challenge; only a
    /// confidential client gets its code.
    #[serde(default)]
    pub unsolicited: bool,
}

/// One login attempt, bound to the browser that started it.
///
/// The shape changed when `step` replaced four optional fields; the Redis backend keeps this
/// shape under its own key kind (`txn2`), so a record of the old shape is never misread (it
/// expires within the transaction TTL, and that login starts again).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransactionRecord {
    /// Public and unguessable: the upstream `state` / `RelayState` and the hosted-page path.
    pub id: TransactionId,
    /// SHA-256 of the browser-binding cookie; the callback must present the same cookie.
    pub browser: SecretHash,
    pub request: RequestRecord,
    /// What the login waits for now.
    pub step: Step,
    /// Anti-CSRF token of the hosted forms of this transaction.
    pub csrf: String,
    pub created_at: u64,
}

/// What a stored transaction waits for, so any node can tell without inferring it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum Step {
    /// The hosted chooser: the person picks a connection (or types an email).
    ChooseConnection,
    /// The connector started; the upstream sends the browser back to `/callback/{connection}`.
    Upstream { connection: ConnectionId, state: ConnectorState },
    /// The connector asked for the hosted credentials form.
    Credentials { connection: ConnectionId, state: ConnectorState, username_label: String },
    /// Paused at an Action's `api.redirect.sendUserTo`; `/continue` resumes the chain.
    Actions { resume_at: Resume },
}

impl Step {
    /// The connection this step belongs to, once one was chosen.
    pub fn connection(&self) -> Option<&ConnectionId> {
        match self {
            Self::ChooseConnection => None,
            Self::Upstream { connection, .. } | Self::Credentials { connection, .. } => Some(connection),
            Self::Actions { resume_at } => Some(&resume_at.connection),
        }
    }
}

/// Which session a login's code belongs to once its steps are done.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SessionPlan {
    /// An interactive login: open a new SSO session (a new id at every login) with this
    /// `sid`, chosen when the identity is established so the Actions before it see it as
    /// `event.session.id`.
    Open { sid: String },
    /// A silent login answered from the live session with this `sid`.
    Reuse {
        sid: String,
        /// When that session opened (Auth0's `event.session.created_at`).
        #[serde(default)]
        created_at: u64,
    },
    /// An IdP-initiated login: tokens with a session id of their own, no SSO session.
    Detached,
}

/// A login paused by `api.redirect.sendUserTo`: everything needed to finish it on `/continue`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Resume {
    pub user_id: UserId,
    pub connection: ConnectionId,
    pub auth_time: u64,
    pub amr: Vec<String>,
    /// The claims the actions before the redirect asked for.
    pub custom: CustomClaims,
    /// The action that redirected: it continues with `onContinuePostLogin`.
    pub action: usize,
    pub session: SessionPlan,
    /// The user an Action made primary (`api.authentication.setPrimaryUser`), which a
    /// transaction may do once, across a redirect too.
    #[serde(default)]
    pub primary_user: Option<UserId>,
    /// The connector's facts for ending the upstream session, kept for the session.
    #[serde(default)]
    pub upstream: Option<serde_json::Value>,
}

/// An issued authorization code, stored under the code's hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CodeRecord {
    pub client_id: ClientId,
    pub redirect_uri: RedirectUri,
    pub scopes: Scopes,
    pub nonce: Option<String>,
    pub code_challenge: Option<PkceChallenge>,
    pub user_id: UserId,
    pub sid: String,
    pub auth_time: u64,
    pub amr: Vec<String>,
    pub issued_at: u64,
    /// What post-login Actions added to the tokens this code will be exchanged for.
    #[serde(default)]
    pub custom: CustomClaims,
    /// Issued for an IdP-initiated login (see `RequestRecord::unsolicited`).
    #[serde(default)]
    pub unsolicited: bool,
}

/// Claims and scope changes Actions asked for, carried from the login to every token of the
/// grant. Reserved claims were already removed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CustomClaims {
    #[serde(default)]
    pub id_token: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub access_token: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub add_scopes: Vec<String>,
    #[serde(default)]
    pub remove_scopes: Vec<String>,
}

/// What consuming a code found.
#[derive(Debug, Clone, PartialEq)]
pub enum Redeemed {
    /// First use: the record, now gone; the grant named in the code keeps the code's hash.
    Fresh(Box<CodeRecord>),
    /// The code was redeemed before: the grant that first use created.
    Reused { grant_id: String },
    /// Never issued, or expired.
    Unknown,
}

/// The browser's SSO session, stored under the hash of its cookie.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Public session id (the `sid` claim). Not the cookie.
    pub sid: String,
    pub user_id: UserId,
    pub connection: ConnectionId,
    pub auth_time: u64,
    pub amr: Vec<String>,
    pub created_at: u64,
    pub expires_at: u64,
    /// The connector's facts for ending the upstream session (SAML NameID, SessionIndex).
    #[serde(default)]
    pub upstream: Option<serde_json::Value>,
}

/// A grant: what one code redemption created. Access tokens carry its id in their `jti`;
/// when it holds a refresh token it is the refresh token family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrantRecord {
    pub id: String,
    pub client_id: ClientId,
    pub user_id: UserId,
    pub scopes: Scopes,
    pub sid: String,
    pub auth_time: u64,
    pub amr: Vec<String>,
    pub created_at: u64,
    pub last_used_at: u64,
    /// The one refresh token that works now (its hash), if the grant has one.
    pub refresh: Option<SecretHash>,
    /// Rotated-out refresh tokens: presenting one revokes the family.
    pub rotated: Vec<SecretHash>,
    /// Hard end of the family, whatever its use.
    pub expires_at: u64,
    /// Longest gap between two refreshes.
    pub idle_ttl: u64,
    /// Claims Actions added at login, repeated in every token of the grant.
    #[serde(default)]
    pub custom: CustomClaims,
}

impl GrantRecord {
    /// Whether the family may still be refreshed at `now`: within its absolute life and its
    /// idle window. The Redis rotate script checks the same two bounds itself, atomically.
    pub fn usable_at(&self, now: u64) -> bool {
        now < self.expires_at && now < self.last_used_at.saturating_add(self.idle_ttl)
    }
}

/// What presenting a refresh token did.
#[derive(Debug, Clone, PartialEq)]
pub enum Rotation {
    /// The token was current: it is now rotated out, and the grant holds the new one.
    Rotated(Box<GrantRecord>),
    /// The token was rotated out before: the whole family is now revoked.
    Reused,
    /// No such grant or token; revoked, or past its idle or absolute lifetime.
    Invalid,
}

/// One upstream identity of a user (Auth0's `identities[]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    pub connection: ConnectionId,
    pub provider: String,
    pub user_id: String,
    pub is_social: bool,
    #[serde(default)]
    pub profile_data: serde_json::Map<String, serde_json::Value>,
}

/// The unified profile every connection normalises into.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UserRecord {
    pub user_id: UserId,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub given_name: Option<String>,
    pub family_name: Option<String>,
    pub nickname: Option<String>,
    pub picture: Option<String>,
    pub locale: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    pub identities: Vec<Identity>,
    #[serde(default)]
    pub app_metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub user_metadata: serde_json::Map<String, serde_json::Value>,
    pub created_at: u64,
    pub updated_at: u64,
    pub last_login: u64,
    pub logins_count: u64,
}

/// One signing key, private part included.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredKey {
    pub kid: String,
    pub alg: String,
    /// PKCS#8 DER, base64 (standard alphabet).
    pub pkcs8: String,
    pub created_at: u64,
}

impl std::fmt::Debug for StoredKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredKey").field("kid", &self.kid).field("alg", &self.alg).finish_non_exhaustive()
    }
}

/// The signing key ring: newest first. The first key signs; the others only verify.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct KeyRingRecord {
    pub keys: Vec<StoredKey>,
}

/// An upstream logout in flight (SAML Single Logout): what to check when the upstream
/// answers, and where the browser goes afterwards.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogoutRecord {
    /// Public and unguessable: the upstream `RelayState`.
    pub id: String,
    pub connection: ConnectionId,
    pub connector_state: ConnectorState,
    /// The client's `post_logout_redirect_uri` (with its `state`), already checked.
    pub redirect: Option<String>,
}
