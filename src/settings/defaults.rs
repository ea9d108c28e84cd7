//! Every default of the configuration file in one table: what a key means when the file
//! leaves it out. `fixtures/config/example.toml` documents the same values.

use super::{ClientCredentialsSubject, SessionSameSite};
use crate::tokens::SigningAlg;

/// `issuer`
pub const ISSUER: &str = "http://127.0.0.1:8080";
/// `listen`
pub const LISTEN: &str = "127.0.0.1:8080";
/// `data_dir` (the embedded key ring)
pub const DATA_DIR: &str = "gatehouse-data";
/// `demo`
pub const DEMO: bool = false;
/// `log.filter`
pub const LOG_FILTER: &str = "info";
/// `keys.algorithm`
pub const KEY_ALGORITHM: SigningAlg = SigningAlg::RS256;
/// `keys.keep_previous`
pub const KEEP_PREVIOUS_KEYS: usize = 2;
/// `tokens.id_token_ttl`, seconds
pub const ID_TOKEN_TTL: u64 = 3600;
/// `tokens.access_token_ttl`, seconds
pub const ACCESS_TOKEN_TTL: u64 = 3600;
/// `tokens.code_ttl`, seconds (at most [`MAX_CODE_TTL`])
pub const CODE_TTL: u64 = 60;
/// The longest `tokens.code_ttl` allowed (RFC 6749 4.1.2 recommends at most 10 minutes).
pub const MAX_CODE_TTL: u64 = 600;
/// `tokens.refresh_idle_ttl`, seconds
pub const REFRESH_IDLE_TTL: u64 = 14 * 86400;
/// `tokens.refresh_absolute_ttl`, seconds
pub const REFRESH_ABSOLUTE_TTL: u64 = 30 * 86400;
/// `tokens.client_credentials_subject`: the plain `client_id`, as RFC 9068 reads.
pub const CLIENT_CREDENTIALS_SUBJECT: ClientCredentialsSubject = ClientCredentialsSubject::ClientId;
/// `http.request_timeout_secs`: time to send the request head
pub const REQUEST_TIMEOUT_SECS: u64 = 5;
/// `http.body_timeout_secs`: time to send the whole body once the head arrived
pub const BODY_TIMEOUT_SECS: u64 = 10;
/// `http.trusted_proxies`: none, so every request is taken at its peer address and no
/// forwarding or country header is believed
pub const TRUSTED_PROXIES: &[crate::net::Cidr] = &[];
/// `session.ttl`, seconds
pub const SESSION_TTL: u64 = 86400;
/// `session.cookie_same_site`
pub const SESSION_SAME_SITE: SessionSameSite = SessionSameSite::Lax;
/// `login.transaction_ttl`, seconds
pub const TRANSACTION_TTL: u64 = 600;
/// `login.max_failed_attempts`
pub const MAX_FAILED_ATTEMPTS: u64 = 10;
/// `login.lockout_window`, seconds
pub const LOCKOUT_WINDOW: u64 = 900;
/// `store.key_prefix`
pub const REDIS_KEY_PREFIX: &str = "gatehouse";
/// `store.timeout_ms`
pub const REDIS_TIMEOUT_MS: u64 = 1000;
/// `clients[].require_pkce`
pub const REQUIRE_PKCE: bool = true;
/// `clients[].grant_types` of a client with redirect URIs.
pub const BROWSER_GRANTS: &[&str] = &["authorization_code", "refresh_token"];
/// `clients[].grant_types` of a client without redirect URIs.
pub const MACHINE_GRANTS: &[&str] = &["client_credentials"];
/// `connections[].idp_initiated.scope`
pub const IDP_INITIATED_SCOPE: &str = "openid profile email";
