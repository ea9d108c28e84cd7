//! The serde mirror of the TOML file and its translation into typed settings.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use super::*;

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLog {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    filter: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawStore {
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    cluster: Option<Vec<String>>,
    #[serde(default)]
    sentinels: Option<Vec<String>>,
    #[serde(default)]
    master_name: Option<String>,
    #[serde(default)]
    key_prefix: Option<String>,
    #[serde(default)]
    timeout_ms: Option<u64>,
    #[serde(default)]
    tls_ca_file: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKeys {
    #[serde(default)]
    algorithm: Option<String>,
    #[serde(default)]
    keep_previous: Option<usize>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    id_token_ttl: Option<u64>,
    access_token_ttl: Option<u64>,
    code_ttl: Option<u64>,
    refresh_idle_ttl: Option<u64>,
    refresh_absolute_ttl: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSession {
    ttl: Option<u64>,
    cookie_secure: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLogin {
    transaction_ttl: Option<u64>,
    max_failed_attempts: Option<u64>,
    lockout_window: Option<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawActions {
    #[serde(default)]
    memory_limit_mb: Option<usize>,
    /// Running time of one run (wall clock, network waits excluded). `cpu_ms` is its old
    /// name: it was never CPU time.
    #[serde(default, alias = "cpu_ms")]
    time_limit_ms: Option<u64>,
    #[serde(default)]
    modules: Vec<RawModule>,
    #[serde(default)]
    post_login: Vec<RawAction>,
    #[serde(default)]
    credentials_exchange: Vec<RawAction>,
    #[serde(default)]
    pre_user_registration: Vec<RawAction>,
}

/// Shared code actions `require` by name.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    name: String,
    file: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAction {
    name: String,
    file: String,
    #[serde(default)]
    secrets: std::collections::BTreeMap<String, Secret<String>>,
    #[serde(default)]
    allow_hosts: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    audience: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    access_token_ttl: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClient {
    client_id: String,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    client_secret: Option<Secret<String>>,
    #[serde(default)]
    token_endpoint_auth_method: Option<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default)]
    post_logout_redirect_uris: Vec<String>,
    #[serde(default)]
    grant_types: Option<Vec<String>>,
    #[serde(default)]
    connections: Vec<String>,
    #[serde(default)]
    require_pkce: Option<bool>,
    #[serde(default)]
    apis: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnection {
    id: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    options: Option<toml::Value>,
    #[serde(default)]
    link_accounts: bool,
    #[serde(default)]
    profile_sync: Option<String>,
    #[serde(default)]
    mapping: std::collections::BTreeMap<String, StringOrList>,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    idp_initiated: Option<RawIdpInitiated>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawIdpInitiated {
    client_id: String,
    #[serde(default)]
    redirect_uri: Option<String>,
    #[serde(default)]
    scope: Option<String>,
}

/// One claim name, or several tried in order.
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrList {
    One(String),
    Many(Vec<String>),
}

struct Ctx<'a> {
    errors: Vec<ConfigError>,
    env: &'a dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { path: path.into(), message: message.into() });
    }

    /// Deserialize one value, recording a failure under `path`.
    fn section<T: DeserializeOwned + Default>(&mut self, table: &mut toml::Table, key: &str) -> T {
        match table.remove(key) {
            None => T::default(),
            Some(v) => self.value(v, key).unwrap_or_default(),
        }
    }

    fn value<T: DeserializeOwned>(&mut self, v: toml::Value, path: &str) -> Option<T> {
        match T::deserialize(v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(path, e.message().trim().to_owned());
                None
            }
        }
    }

    fn array(&mut self, table: &mut toml::Table, key: &str) -> Vec<(String, toml::Value)> {
        match table.remove(key) {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => {
                items.into_iter().enumerate().map(|(i, v)| (format!("{key}[{i}]"), v)).collect()
            }
            Some(_) => {
                self.err(key, "must be an array of tables ([[".to_owned() + key + "]])");
                Vec::new()
            }
        }
    }

    /// Replace `${NAME}` in every string of the tree from the environment.
    fn expand(&mut self, v: &mut toml::Value, path: &str) {
        match v {
            toml::Value::String(s) => {
                let mut out = String::with_capacity(s.len());
                let mut rest = s.as_str();
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let Some(end) = rest[start..].find('}') else {
                        self.err(path, "unterminated ${ reference");
                        return;
                    };
                    // ${NAME} or ${NAME:-default}
                    let reference = &rest[start + 2..start + end];
                    let (name, default) = match reference.split_once(":-") {
                        Some((n, d)) => (n, Some(d)),
                        None => (reference, None),
                    };
                    match ((self.env)(name).filter(|v| !v.is_empty()), default) {
                        (Some(value), _) => out.push_str(&value),
                        (None, Some(d)) => out.push_str(d),
                        (None, None) => self.err(path, format!("environment variable {name} is not set")),
                    }
                    rest = &rest[start + end + 1..];
                }
                out.push_str(rest);
                *s = out;
            }
            toml::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.expand(item, &format!("{path}[{i}]"));
                }
            }
            toml::Value::Table(t) => {
                for (k, item) in t.iter_mut() {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    self.expand(item, &p);
                }
            }
            _ => {}
        }
    }
}

fn positive(ctx: &mut Ctx<'_>, path: &str, v: Option<u64>, default: u64) -> u64 {
    match v {
        Some(0) => {
            ctx.err(path, "must be greater than zero");
            default
        }
        Some(n) => n,
        None => default,
    }
}

pub(super) fn parse(
    text: &str,
    env: &dyn Fn(&str) -> Option<String>,
    base: &std::path::Path,
) -> Result<Settings, ConfigErrors> {
    let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| {
        let at = e.span().map(|s| {
            let line = text[..s.start].matches('\n').count() + 1;
            format!("line {line}")
        });
        ConfigErrors(vec![ConfigError { path: at.unwrap_or_default(), message: e.message().trim().to_owned() }])
    })?;
    let mut ctx = Ctx { errors: Vec::new(), env };
    let mut root = toml::Value::Table(std::mem::take(&mut table));
    ctx.expand(&mut root, "");
    let toml::Value::Table(mut table) = root else { unreachable!("a table stays a table") };

    let issuer = match table.remove("issuer") {
        None => Issuer::parse("http://127.0.0.1:8080").expect("default issuer"),
        Some(v) => ctx
            .value::<String>(v, "issuer")
            .and_then(|s| Issuer::parse(&s).map_err(|e| ctx.err("issuer", e.0)).ok())
            .unwrap_or_else(|| Issuer::parse("http://127.0.0.1:8080").expect("default issuer")),
    };
    let listen = match table.remove("listen") {
        None => "127.0.0.1:8080".parse().expect("default listen"),
        Some(v) => ctx
            .value::<String>(v, "listen")
            .and_then(|s| s.parse().map_err(|_| ctx.err("listen", "must be an address such as 127.0.0.1:8080")).ok())
            .unwrap_or_else(|| "127.0.0.1:8080".parse().expect("default listen")),
    };
    let data_dir = match table.remove("data_dir") {
        None => PathBuf::from("gatehouse-data"),
        Some(v) => ctx.value::<String>(v, "data_dir").map(PathBuf::from).unwrap_or_default(),
    };
    let demo = match table.remove("demo") {
        None => false,
        Some(v) => ctx.value::<bool>(v, "demo").unwrap_or(false),
    };

    let log: RawLog = ctx.section(&mut table, "log");
    let json = match log.format.as_deref() {
        None | Some("text") => false,
        Some("json") => true,
        Some(other) => {
            ctx.err("log.format", format!("{other} is not one of text, json"));
            false
        }
    };
    let log = LogSettings { json, filter: log.filter.unwrap_or_else(|| "info".into()) };

    let store: RawStore = ctx.section(&mut table, "store");
    let store = store_kind(&mut ctx, store);

    let keys: RawKeys = ctx.section(&mut table, "keys");
    let algorithm = match keys.algorithm.as_deref() {
        None => SigningAlg::RS256,
        Some(a) => SigningAlg::parse(a).unwrap_or_else(|| {
            ctx.err("keys.algorithm", format!("{a} is not one of RS256, ES256, EdDSA"));
            SigningAlg::RS256
        }),
    };
    let keys = KeySettings { algorithm, keep_previous: keys.keep_previous.unwrap_or(2) };

    let t: RawTokens = ctx.section(&mut table, "tokens");
    let tokens = TokenSettings {
        id_token_ttl: positive(&mut ctx, "tokens.id_token_ttl", t.id_token_ttl, 3600),
        access_token_ttl: positive(&mut ctx, "tokens.access_token_ttl", t.access_token_ttl, 3600),
        code_ttl: positive(&mut ctx, "tokens.code_ttl", t.code_ttl, 60),
        refresh_idle_ttl: positive(&mut ctx, "tokens.refresh_idle_ttl", t.refresh_idle_ttl, 14 * 86400),
        refresh_absolute_ttl: positive(&mut ctx, "tokens.refresh_absolute_ttl", t.refresh_absolute_ttl, 30 * 86400),
    };
    if tokens.code_ttl > 600 {
        ctx.err("tokens.code_ttl", "must be at most 600 seconds (RFC 6749 4.1.2)");
    }

    let s: RawSession = ctx.section(&mut table, "session");
    let session = SessionSettings {
        ttl: positive(&mut ctx, "session.ttl", s.ttl, 86400),
        cookie_secure: s.cookie_secure.unwrap_or(issuer.is_https()),
        cookie_secure_set: s.cookie_secure.is_some(),
    };

    let l: RawLogin = ctx.section(&mut table, "login");
    let login = LoginSettings {
        transaction_ttl: positive(&mut ctx, "login.transaction_ttl", l.transaction_ttl, 600),
        max_failed_attempts: positive(&mut ctx, "login.max_failed_attempts", l.max_failed_attempts, 10),
        lockout_window: positive(&mut ctx, "login.lockout_window", l.lockout_window, 900),
    };

    let raw_actions: RawActions = ctx.section(&mut table, "actions");
    let actions = actions(&mut ctx, raw_actions, base);

    let mut apis = Vec::new();
    for (path, v) in ctx.array(&mut table, "apis") {
        let Some(a) = ctx.value::<RawApi>(v, &path) else { continue };
        if url::Url::parse(&a.audience).is_err() && a.audience.is_empty() {
            ctx.err(format!("{path}.audience"), "must not be empty");
        }
        apis.push(ApiSettings {
            name: a.name.unwrap_or_else(|| a.audience.clone()),
            audience: a.audience,
            scopes: a.scopes,
            access_token_ttl: a.access_token_ttl,
        });
    }

    let mut connections = Vec::new();
    for (path, v) in ctx.array(&mut table, "connections") {
        let Some(c) = ctx.value::<RawConnection>(v, &path) else { continue };
        let Ok(id) = ConnectionId::parse(&c.id).map_err(|e| ctx.err(format!("{path}.id"), e.0)) else { continue };
        let options = match c.options.map(serde_json::to_value) {
            None => serde_json::Value::Object(Default::default()),
            Some(Ok(v)) => v,
            Some(Err(e)) => {
                ctx.err(format!("{path}.options"), e.to_string());
                continue;
            }
        };
        let sync = match c.profile_sync.as_deref() {
            None | Some("every_login") => crate::profile::Sync::EveryLogin,
            Some("on_create") => crate::profile::Sync::OnCreate,
            Some(other) => {
                ctx.err(format!("{path}.profile_sync"), format!("{other} is not one of every_login, on_create"));
                crate::profile::Sync::EveryLogin
            }
        };
        let mut mapping = Vec::new();
        for (field, claims) in c.mapping {
            let claims = match claims {
                StringOrList::One(c) => vec![c],
                StringOrList::Many(c) => c,
            };
            match crate::profile::Field::parse(&field) {
                Some(f) if !claims.is_empty() => mapping.push((f, claims)),
                Some(_) => ctx.err(format!("{path}.mapping.{field}"), "names no claim"),
                None => ctx.err(
                    format!("{path}.mapping.{field}"),
                    format!("{field} is not a profile field ({})", crate::profile::Field::NAMES.join(", ")),
                ),
            }
        }
        let mut domains = Vec::new();
        for (j, d) in c.domains.iter().enumerate() {
            let d = d.trim().trim_start_matches('@').to_ascii_lowercase();
            let plausible = d.contains('.')
                && !d.starts_with('.')
                && d.chars().all(|ch| ch.is_ascii_alphanumeric() || ch == '.' || ch == '-');
            if plausible {
                domains.push(d);
            } else {
                ctx.err(format!("{path}.domains[{j}]"), format!("{d:?} is not a domain name"));
            }
        }
        let idp_initiated = c.idp_initiated.map(|i| super::IdpInitiatedRaw {
            client_id: i.client_id,
            redirect_uri: i.redirect_uri,
            scope: i.scope.unwrap_or_else(|| "openid profile email".into()),
        });
        connections.push(ConnectionSettings {
            display_name: c.display_name.unwrap_or_else(|| id.to_string()),
            id,
            kind: c.kind,
            options,
            profile: crate::profile::Policy { link_by_verified_email: c.link_accounts, sync, mapping },
            domains,
            idp_initiated,
        });
    }

    let mut clients = Vec::new();
    for (path, v) in ctx.array(&mut table, "clients") {
        let Some(c) = ctx.value::<RawClient>(v, &path) else { continue };
        if let Some(client) = client(&mut ctx, &path, c, &apis, &connections) {
            clients.push(client);
        }
    }

    for key in table.keys() {
        ctx.err(key.clone(), "unknown key");
    }

    let settings = Settings {
        issuer,
        listen,
        data_dir,
        log,
        store,
        keys,
        tokens,
        session,
        login,
        demo,
        embedded: false,
        actions,
        apis,
        clients,
        connections,
    };
    check_references(&settings, &mut ctx.errors);
    if ctx.errors.is_empty() { Ok(settings) } else { Err(ConfigErrors(ctx.errors)) }
}

fn client(
    ctx: &mut Ctx<'_>,
    path: &str,
    c: RawClient,
    apis: &[ApiSettings],
    known: &[ConnectionSettings],
) -> Option<ClientSettings> {
    let before = ctx.errors.len();
    let id = ClientId::parse(&c.client_id).map_err(|e| ctx.err(format!("{path}.client_id"), e.0)).ok();
    let auth_method = match (c.token_endpoint_auth_method.as_deref(), &c.client_secret) {
        (None, Some(_)) | (Some("client_secret_basic"), Some(_)) => AuthMethod::ClientSecretBasic,
        (Some("client_secret_post"), Some(_)) => AuthMethod::ClientSecretPost,
        (None, None) | (Some("none"), None) => AuthMethod::None,
        (Some("none"), Some(_)) => {
            ctx.err(
                format!("{path}.client_secret"),
                "a public client (token_endpoint_auth_method = \"none\") has no secret",
            );
            AuthMethod::None
        }
        (Some("client_secret_basic" | "client_secret_post"), None) => {
            ctx.err(format!("{path}.client_secret"), "is required for this token_endpoint_auth_method");
            AuthMethod::None
        }
        (Some(other), _) => {
            ctx.err(
                format!("{path}.token_endpoint_auth_method"),
                format!("{other} is not one of client_secret_basic, client_secret_post, none"),
            );
            AuthMethod::None
        }
    };
    if let Some(secret) = &c.client_secret
        && secret.expose().len() < 32
    {
        ctx.err(
            format!("{path}.client_secret"),
            "must be at least 32 characters (it is compared by SHA-256, so it must be high-entropy)",
        );
    }
    let mut uris = |key: &str, list: &[String]| -> Vec<RedirectUri> {
        list.iter()
            .enumerate()
            .filter_map(|(j, u)| RedirectUri::parse(u).map_err(|e| ctx.err(format!("{path}.{key}[{j}]"), e.0)).ok())
            .collect()
    };
    let redirect_uris = uris("redirect_uris", &c.redirect_uris);
    let post_logout_redirect_uris = uris("post_logout_redirect_uris", &c.post_logout_redirect_uris);
    let grant_names = c.grant_types.unwrap_or_else(|| {
        if c.redirect_uris.is_empty() {
            vec!["client_credentials".into()]
        } else {
            vec!["authorization_code".into(), "refresh_token".into()]
        }
    });
    let mut grant_types = Vec::new();
    for (j, g) in grant_names.iter().enumerate() {
        match GrantType::parse(g) {
            Some(g) => grant_types.push(g),
            None => ctx.err(
                format!("{path}.grant_types[{j}]"),
                format!("{g} is not one of authorization_code, refresh_token, client_credentials (implicit is not supported)"),
            ),
        }
    }
    if grant_types.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() && c.redirect_uris.is_empty() {
        ctx.err(format!("{path}.redirect_uris"), "authorization_code needs at least one redirect URI");
    }
    if grant_types.contains(&GrantType::ClientCredentials) && c.client_secret.is_none() {
        ctx.err(format!("{path}.grant_types"), "client_credentials needs a confidential client (a client_secret)");
    }
    let require_pkce = c.require_pkce.unwrap_or(true);
    if !require_pkce && c.client_secret.is_none() {
        ctx.err(format!("{path}.require_pkce"), "a public client must use PKCE");
    }
    let mut connections = Vec::new();
    for (j, id) in c.connections.iter().enumerate() {
        match ConnectionId::parse(id) {
            Ok(id) if known.iter().any(|k| k.id == id) => connections.push(id),
            Ok(id) => ctx.err(format!("{path}.connections[{j}]"), format!("no connection {id} is defined")),
            Err(e) => ctx.err(format!("{path}.connections[{j}]"), e.0),
        }
    }
    for (j, api) in c.apis.iter().enumerate() {
        if !apis.iter().any(|a| &a.audience == api) {
            ctx.err(format!("{path}.apis[{j}]"), format!("no api with audience {api} is defined"));
        }
    }
    if ctx.errors.len() > before {
        return None;
    }
    let id = id?;
    Some(ClientSettings {
        name: c.name.unwrap_or_else(|| id.to_string()),
        id,
        secret_digest: c.client_secret.as_ref().map(secret_digest),
        auth_method,
        redirect_uris,
        post_logout_redirect_uris,
        grant_types,
        connections,
        require_pkce,
        apis: c.apis,
    })
}

fn redis_url(ctx: &mut Ctx<'_>, path: &str, url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => true,
        _ => {
            ctx.err(path, "must be a redis:// or rediss:// URL with a host");
            false
        }
    }
}

fn store_kind(ctx: &mut Ctx<'_>, s: RawStore) -> StoreKind {
    use crate::store::redis::{RedisConfig, Topology};
    match s.kind.as_deref() {
        None | Some("memory") => {
            for (set, key) in [
                (s.url.is_some(), "url"),
                (s.cluster.is_some(), "cluster"),
                (s.sentinels.is_some(), "sentinels"),
                (s.master_name.is_some(), "master_name"),
                (s.tls_ca_file.is_some(), "tls_ca_file"),
            ] {
                if set {
                    ctx.err(format!("store.{key}"), "only applies to kind = \"redis\"");
                }
            }
            StoreKind::Memory
        }
        Some("redis") => {
            let topology = match (s.url, s.cluster, s.sentinels) {
                (Some(url), None, None) => match url.strip_prefix("redis+cluster://") {
                    // redis+cluster://host1:7000,host2:7001 names the seed nodes of a Cluster.
                    Some(hosts) => Topology::Cluster(hosts.split(',').map(|h| format!("redis://{h}")).collect()),
                    None => {
                        redis_url(ctx, "store.url", &url);
                        Topology::Single(url)
                    }
                },
                (None, Some(nodes), None) if !nodes.is_empty() => {
                    for (i, n) in nodes.iter().enumerate() {
                        redis_url(ctx, &format!("store.cluster[{i}]"), n);
                    }
                    Topology::Cluster(nodes)
                }
                (url, None, Some(sentinels)) if !sentinels.is_empty() => {
                    for (i, n) in sentinels.iter().enumerate() {
                        redis_url(ctx, &format!("store.sentinels[{i}]"), n);
                    }
                    let master_name = s.master_name.unwrap_or_else(|| {
                        ctx.err("store.master_name", "is required with sentinels");
                        String::new()
                    });
                    Topology::Sentinel { sentinels, master_name, node_url: url }
                }
                _ => {
                    ctx.err("store", "kind = \"redis\" needs exactly one of url, cluster, sentinels");
                    Topology::Single(String::new())
                }
            };
            let key_prefix = s.key_prefix.unwrap_or_else(|| "gatehouse".into());
            if key_prefix.is_empty() || key_prefix.contains(['{', '}', ' ']) {
                ctx.err("store.key_prefix", "must be non-empty, without braces or spaces");
            }
            let timeout_ms = s.timeout_ms.unwrap_or(1000);
            if timeout_ms == 0 {
                ctx.err("store.timeout_ms", "must be greater than zero");
            }
            let tls_ca = match s.tls_ca_file {
                None => None,
                Some(path) => match std::fs::read(&path) {
                    Ok(pem) if matches!(topology, Topology::Sentinel { .. }) => {
                        drop(pem);
                        ctx.err("store.tls_ca_file", "is supported with url and cluster, not yet with sentinels");
                        None
                    }
                    Ok(pem) => Some(pem),
                    Err(e) => {
                        ctx.err("store.tls_ca_file", format!("cannot read {path}: {e}"));
                        None
                    }
                },
            };
            StoreKind::Redis(RedisConfig {
                topology,
                key_prefix,
                timeout: std::time::Duration::from_millis(timeout_ms.max(1)),
                tls_ca,
            })
        }
        Some(other) => {
            ctx.err("store.kind", format!("{other} is not one of memory, redis"));
            StoreKind::Memory
        }
    }
}

fn actions(ctx: &mut Ctx<'_>, raw: RawActions, base: &std::path::Path) -> crate::actions::Actions {
    use crate::actions::{Action, Limits, Trigger, sandbox};
    let mut limits = Limits::default();
    if let Some(mb) = raw.memory_limit_mb {
        if !(1..=1024).contains(&mb) {
            ctx.err("actions.memory_limit_mb", "must be between 1 and 1024");
        }
        limits.memory_bytes = mb.clamp(1, 1024) * 1024 * 1024;
    }
    if let Some(ms) = raw.time_limit_ms {
        if !(1..=10_000).contains(&ms) {
            ctx.err("actions.time_limit_ms", "must be between 1 and 10000");
        }
        limits.time = std::time::Duration::from_millis(ms.clamp(1, 10_000));
    }
    let mut modules = std::collections::BTreeMap::new();
    for (i, m) in raw.modules.into_iter().enumerate() {
        let path = base.join(&m.file);
        let valid_name = !m.name.is_empty()
            && m.name.len() <= 100
            && m.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./@".contains(&b));
        if !valid_name {
            ctx.err(format!("actions.modules[{i}].name"), "must be 1-100 characters of letters, digits and -_./@");
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(source) => {
                if modules.insert(m.name.clone(), std::sync::Arc::<str>::from(source)).is_some() {
                    ctx.err(format!("actions.modules[{i}].name"), format!("{} is listed twice", m.name));
                }
            }
            Err(e) => ctx.err(format!("actions.modules[{i}].file"), format!("cannot read {}: {e}", path.display())),
        }
    }
    let modules: sandbox::Modules = std::sync::Arc::new(modules);
    let mut load = |key: &str, list: Vec<RawAction>, trigger: Trigger| -> Vec<Action> {
        let mut out = Vec::new();
        for (i, a) in list.into_iter().enumerate() {
            let path = base.join(&a.file);
            let source = match std::fs::read_to_string(&path) {
                Ok(s) => s,
                Err(e) => {
                    ctx.err(format!("actions.{key}[{i}].file"), format!("cannot read {}: {e}", path.display()));
                    continue;
                }
            };
            // Compile now, so a syntax error stops start-up and shows in check-config.
            if let Err(e) = sandbox::check(&source, trigger.handler(), limits, &modules) {
                ctx.err(format!("actions.{key}[{i}].file"), format!("{}: {e}", path.display()));
                continue;
            }
            out.push(Action {
                name: a.name,
                path,
                source: source.into(),
                secrets: a.secrets.into_iter().collect(),
                allow_hosts: a.allow_hosts,
            });
        }
        out
    };
    let post_login = load("post_login", raw.post_login, Trigger::PostLogin);
    let credentials_exchange = load("credentials_exchange", raw.credentials_exchange, Trigger::CredentialsExchange);
    let pre_user_registration = load("pre_user_registration", raw.pre_user_registration, Trigger::PreUserRegistration);
    crate::actions::Actions { limits, post_login, credentials_exchange, pre_user_registration, modules }
}
