//! The typed building of [`Settings`] from the TOML text: parse, expand `${NAME}`, read each
//! section and element on its own (so one run reports every problem), check the connector
//! options with the connector's own `open`, then the references across elements.

use std::path::PathBuf;

use super::action_files::actions;
use super::clients::client;
use super::ctx::{Ctx, positive};
use super::raw::*;
use super::store_config::store_kind;
use super::*;

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

    let default_issuer = || Issuer::parse(defaults::ISSUER).expect("the default issuer is valid");
    let issuer = match table.remove("issuer") {
        None => default_issuer(),
        Some(v) => ctx
            .value::<String>(v, "issuer")
            .and_then(|s| Issuer::parse(&s).map_err(|e| ctx.err("issuer", e.0)).ok())
            .unwrap_or_else(default_issuer),
    };
    let default_listen = || defaults::LISTEN.parse().expect("the default address is valid");
    let listen = match table.remove("listen") {
        None => default_listen(),
        Some(v) => ctx
            .value::<String>(v, "listen")
            .and_then(|s| s.parse().map_err(|_| ctx.err("listen", "must be an address such as 127.0.0.1:8080")).ok())
            .unwrap_or_else(default_listen),
    };
    let data_dir = match table.remove("data_dir") {
        None => PathBuf::from(defaults::DATA_DIR),
        Some(v) => ctx.value::<String>(v, "data_dir").map(PathBuf::from).unwrap_or_default(),
    };
    let demo = match table.remove("demo") {
        None => defaults::DEMO,
        Some(v) => ctx.value::<bool>(v, "demo").unwrap_or(defaults::DEMO),
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
    let log = LogSettings { json, filter: log.filter.unwrap_or_else(|| defaults::LOG_FILTER.into()) };

    let store: RawStore = ctx.section(&mut table, "store");
    let store = store_kind(&mut ctx, store);

    let keys: RawKeys = ctx.section(&mut table, "keys");
    let algorithm = match keys.algorithm.as_deref() {
        None => defaults::KEY_ALGORITHM,
        Some(a) => SigningAlg::parse(a).unwrap_or_else(|| {
            ctx.err("keys.algorithm", format!("{a} is not one of RS256, ES256, EdDSA"));
            defaults::KEY_ALGORITHM
        }),
    };
    let keys = KeySettings { algorithm, keep_previous: keys.keep_previous.unwrap_or(defaults::KEEP_PREVIOUS_KEYS) };

    let t: RawTokens = ctx.section(&mut table, "tokens");
    let tokens = TokenSettings {
        id_token_ttl: positive(&mut ctx, "tokens.id_token_ttl", t.id_token_ttl, defaults::ID_TOKEN_TTL),
        access_token_ttl: positive(&mut ctx, "tokens.access_token_ttl", t.access_token_ttl, defaults::ACCESS_TOKEN_TTL),
        code_ttl: positive(&mut ctx, "tokens.code_ttl", t.code_ttl, defaults::CODE_TTL),
        refresh_idle_ttl: positive(&mut ctx, "tokens.refresh_idle_ttl", t.refresh_idle_ttl, defaults::REFRESH_IDLE_TTL),
        refresh_absolute_ttl: positive(
            &mut ctx,
            "tokens.refresh_absolute_ttl",
            t.refresh_absolute_ttl,
            defaults::REFRESH_ABSOLUTE_TTL,
        ),
        client_credentials_subject: match t.client_credentials_subject.as_deref() {
            None => defaults::CLIENT_CREDENTIALS_SUBJECT,
            Some(s) => ClientCredentialsSubject::parse(s).unwrap_or_else(|| {
                ctx.err(
                    "tokens.client_credentials_subject",
                    format!("{s} is not one of \"client_id\", \"client_id@clients\""),
                );
                defaults::CLIENT_CREDENTIALS_SUBJECT
            }),
        },
    };
    if tokens.code_ttl > defaults::MAX_CODE_TTL {
        ctx.err("tokens.code_ttl", "must be at most 600 seconds (RFC 6749 4.1.2)");
    }

    let h: RawHttp = ctx.section(&mut table, "http");
    let secs = |ctx: &mut Ctx<'_>, key: &str, v, default| {
        std::time::Duration::from_secs(positive(ctx, &format!("http.{key}"), v, default))
    };
    let proxies = proxies(&mut ctx, h.trusted_proxies, h.country_header);
    let http = HttpSettings {
        request_timeout: secs(&mut ctx, "request_timeout_secs", h.request_timeout_secs, defaults::REQUEST_TIMEOUT_SECS),
        body_timeout: secs(&mut ctx, "body_timeout_secs", h.body_timeout_secs, defaults::BODY_TIMEOUT_SECS),
        proxies,
    };

    let s: RawSession = ctx.section(&mut table, "session");
    let cookie_secure = s.cookie_secure.unwrap_or(issuer.is_https());
    let cookie_same_site = match s.cookie_same_site.as_deref() {
        None => defaults::SESSION_SAME_SITE,
        Some("lax") => SessionSameSite::Lax,
        Some("none") if cookie_secure => SessionSameSite::None,
        Some("none") => {
            ctx.err(
                "session.cookie_same_site",
                "\"none\" needs Secure cookies: an https issuer (or cookie_secure = true)",
            );
            SessionSameSite::Lax
        }
        Some(other) => {
            ctx.err("session.cookie_same_site", format!("{other} is not one of lax, none"));
            SessionSameSite::Lax
        }
    };
    let session = SessionSettings {
        ttl: positive(&mut ctx, "session.ttl", s.ttl, defaults::SESSION_TTL),
        cookie_secure,
        cookie_secure_set: s.cookie_secure.is_some(),
        cookie_same_site,
    };

    let l: RawLogin = ctx.section(&mut table, "login");
    let login = LoginSettings {
        transaction_ttl: positive(&mut ctx, "login.transaction_ttl", l.transaction_ttl, defaults::TRANSACTION_TTL),
        max_failed_attempts: positive(
            &mut ctx,
            "login.max_failed_attempts",
            l.max_failed_attempts,
            defaults::MAX_FAILED_ATTEMPTS,
        ),
        lockout_window: positive(&mut ctx, "login.lockout_window", l.lockout_window, defaults::LOCKOUT_WINDOW),
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
        // The connector's own `open` checks its options now (cheap, no network), so its
        // errors come in the same report as the rest of the file.
        use crate::connections::{check_options, registry};
        if !registry::is_known(&c.kind) {
            ctx.err(format!("{path}.type"), format!("unknown connector type {}; known: {}", c.kind, registry::known()));
        } else if let Err(message) = check_options(&issuer, &id, &c.kind, &options) {
            ctx.err(format!("{path}.options"), message);
        }
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
            scope: i.scope.unwrap_or_else(|| defaults::IDP_INITIATED_SCOPE.into()),
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
        http,
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

/// `http.trusted_proxies` (CIDR blocks) and `http.country_header` (a header name, which only
/// means something with a trusted proxy to send it).
fn proxies(ctx: &mut Ctx<'_>, trusted: Option<Vec<String>>, country_header: Option<String>) -> crate::net::Proxies {
    let trusted = match trusted {
        None => defaults::TRUSTED_PROXIES.to_vec(),
        Some(list) => list
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                c.parse::<crate::net::Cidr>()
                    .map_err(|e| ctx.err(format!("http.trusted_proxies[{i}]"), e.to_string()))
                    .ok()
            })
            .collect(),
    };
    let country_header = country_header.and_then(|h| {
        let valid =
            !h.is_empty() && h.len() <= 64 && h.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if !valid {
            ctx.err("http.country_header", "must be a header name (letters, digits, - and _), like cf-ipcountry");
            return None;
        }
        if trusted.is_empty() {
            ctx.err("http.country_header", "is only read from a trusted proxy: list one in http.trusted_proxies");
        }
        Some(h.to_ascii_lowercase())
    });
    crate::net::Proxies { trusted, country_header }
}
