//! The serde mirror of the TOML file: structs and nothing else. Every field is optional
//! or has a serde default of "absent"; what absence means lives in `defaults.rs`, and
//! turning these into typed settings in `build.rs`.

use serde::Deserialize;

use crate::types::Secret;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLog {
    #[serde(default)]
    pub(super) format: Option<String>,
    #[serde(default)]
    pub(super) filter: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    #[serde(default)]
    pub(super) kind: Option<String>,
    #[serde(default)]
    pub(super) url: Option<String>,
    #[serde(default)]
    pub(super) cluster: Option<Vec<String>>,
    #[serde(default)]
    pub(super) sentinels: Option<Vec<String>>,
    #[serde(default)]
    pub(super) master_name: Option<String>,
    #[serde(default)]
    pub(super) key_prefix: Option<String>,
    #[serde(default)]
    pub(super) timeout_ms: Option<u64>,
    #[serde(default)]
    pub(super) tls_ca_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeys {
    #[serde(default)]
    pub(super) algorithm: Option<String>,
    #[serde(default)]
    pub(super) keep_previous: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokens {
    #[serde(default)]
    pub(super) client_credentials_subject: Option<String>,
    pub(super) id_token_ttl: Option<u64>,
    pub(super) access_token_ttl: Option<u64>,
    pub(super) code_ttl: Option<u64>,
    pub(super) refresh_idle_ttl: Option<u64>,
    pub(super) refresh_absolute_ttl: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    pub(super) request_timeout_secs: Option<u64>,
    pub(super) body_timeout_secs: Option<u64>,
    pub(super) trusted_proxies: Option<Vec<String>>,
    pub(super) country_header: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSession {
    pub(super) ttl: Option<u64>,
    pub(super) cookie_secure: Option<bool>,
    pub(super) cookie_same_site: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLogin {
    pub(super) transaction_ttl: Option<u64>,
    pub(super) max_failed_attempts: Option<u64>,
    pub(super) lockout_window: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawActions {
    #[serde(default)]
    pub(super) memory_limit_mb: Option<usize>,
    /// Running time of one run (wall clock, network waits excluded). `cpu_ms` is its old
    /// name: it was never CPU time.
    #[serde(default, alias = "cpu_ms")]
    pub(super) time_limit_ms: Option<u64>,
    #[serde(default)]
    pub(super) modules: Vec<RawModule>,
    #[serde(default)]
    pub(super) post_login: Vec<RawAction>,
    #[serde(default)]
    pub(super) credentials_exchange: Vec<RawAction>,
    #[serde(default)]
    pub(super) pre_user_registration: Vec<RawAction>,
}

/// Shared code actions `require` by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawModule {
    pub(super) name: String,
    pub(super) file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAction {
    pub(super) name: String,
    pub(super) file: String,
    #[serde(default)]
    pub(super) secrets: std::collections::BTreeMap<String, Secret<String>>,
    #[serde(default)]
    pub(super) allow_hosts: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawApi {
    pub(super) audience: String,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) scopes: Vec<String>,
    #[serde(default)]
    pub(super) access_token_ttl: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClient {
    pub(super) client_id: String,
    #[serde(default)]
    pub(super) name: Option<String>,
    #[serde(default)]
    pub(super) client_secret: Option<Secret<String>>,
    #[serde(default)]
    pub(super) token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    pub(super) redirect_uris: Option<Vec<String>>,
    /// Auth0's name for `redirect_uris` ("Allowed Callback URLs").
    #[serde(default)]
    pub(super) callbacks: Option<Vec<String>>,
    #[serde(default)]
    pub(super) post_logout_redirect_uris: Option<Vec<String>>,
    /// Auth0's name for `post_logout_redirect_uris` ("Allowed Logout URLs").
    #[serde(default)]
    pub(super) allowed_logout_urls: Option<Vec<String>>,
    /// Auth0's "Allowed Web Origins": CORS and `response_mode=web_message` framing.
    #[serde(default)]
    pub(super) web_origins: Vec<String>,
    #[serde(default)]
    pub(super) grant_types: Option<Vec<String>>,
    #[serde(default)]
    pub(super) connections: Vec<String>,
    #[serde(default)]
    pub(super) require_pkce: Option<bool>,
    #[serde(default)]
    pub(super) apis: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnection {
    pub(super) id: String,
    #[serde(rename = "type")]
    pub(super) kind: String,
    #[serde(default)]
    pub(super) display_name: Option<String>,
    #[serde(default)]
    pub(super) options: Option<toml::Value>,
    #[serde(default)]
    pub(super) link_accounts: bool,
    #[serde(default)]
    pub(super) profile_sync: Option<String>,
    #[serde(default)]
    pub(super) mapping: std::collections::BTreeMap<String, StringOrList>,
    #[serde(default)]
    pub(super) domains: Vec<String>,
    #[serde(default)]
    pub(super) idp_initiated: Option<RawIdpInitiated>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawIdpInitiated {
    pub(super) client_id: String,
    #[serde(default)]
    pub(super) redirect_uri: Option<String>,
    #[serde(default)]
    pub(super) scope: Option<String>,
}

/// One claim name, or several tried in order.
#[derive(Deserialize)]
#[serde(untagged)]
pub(super) enum StringOrList {
    One(String),
    Many(Vec<String>),
}
