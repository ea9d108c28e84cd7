//! Actions: sandboxed JavaScript in the login pipeline, with Auth0's `event` and `api`, so an
//! Auth0 tenant's post-login and credentials-exchange Actions run unchanged.
//!
//! Each trigger runs its actions in order, each in a fresh sandbox ([`sandbox`]) on the
//! blocking pool (an action may use its whole CPU budget without holding up the async
//! workers). What the actions ask for comes back as [`Effects`]; the caller applies them.

pub mod event;
mod host;
pub mod limits;
mod pool;
mod redact;
pub mod result;
pub mod sandbox;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

pub use limits::Limits;
pub use sandbox::{Continue, RunError};

use crate::store::{ActionCacheStore, CustomClaims};
use crate::tokens::RESERVED_CLAIMS;
use crate::types::Secret;

/// The triggers Gatehouse runs, with the handler each exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    PostLogin,
    CredentialsExchange,
    PreUserRegistration,
}

impl Trigger {
    pub fn handler(self) -> &'static str {
        match self {
            Self::PostLogin => "onExecutePostLogin",
            Self::CredentialsExchange => "onExecuteCredentialsExchange",
            Self::PreUserRegistration => "onExecutePreUserRegistration",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "post-login" => Some(Self::PostLogin),
            "credentials-exchange" => Some(Self::CredentialsExchange),
            "pre-user-registration" => Some(Self::PreUserRegistration),
            _ => None,
        }
    }
}

/// One configured action, its source read and checked at start.
#[derive(Debug, Clone)]
pub struct Action {
    pub name: String,
    pub path: PathBuf,
    pub source: Arc<str>,
    pub secrets: Vec<(String, Secret<String>)>,
    /// Hosts `fetch` may reach (`host` or `host:port`); empty: no `fetch` at all.
    pub allow_hosts: Vec<String>,
}

/// The actions of every trigger and the sandbox limits.
#[derive(Debug, Clone, Default)]
pub struct Actions {
    pub limits: Limits,
    pub post_login: Vec<Action>,
    pub credentials_exchange: Vec<Action>,
    pub pre_user_registration: Vec<Action>,
    /// Shared code (`[[actions.modules]]`) that actions `require` by name.
    pub modules: sandbox::Modules,
}

impl Actions {
    pub fn for_trigger(&self, trigger: Trigger) -> &[Action] {
        match trigger {
            Trigger::PostLogin => &self.post_login,
            Trigger::CredentialsExchange => &self.credentials_exchange,
            Trigger::PreUserRegistration => &self.pre_user_registration,
        }
    }
}

/// What a chain of actions asked for.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Effects {
    pub claims: CustomClaims,
    /// `api.access.deny(reason)`: the reason, shown to the client as the error description.
    pub deny: Option<String>,
    pub app_metadata: serde_json::Map<String, serde_json::Value>,
    pub user_metadata: serde_json::Map<String, serde_json::Value>,
    /// `api.redirect.sendUserTo`: where to send the person, and the index of the action that
    /// asked (it resumes there with `onContinuePostLogin`). The chain stops here.
    pub redirect: Option<(Redirect, usize)>,
    /// `api.authentication.setPrimaryUser`: the user the tokens are issued for instead.
    pub primary_user: Option<String>,
}

/// An action's `api.redirect.sendUserTo(url, {query})`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct Redirect {
    pub url: String,
    #[serde(default)]
    pub query: serde_json::Map<String, serde_json::Value>,
}

/// An action failed (threw, ran out of time or memory): the login is refused.
#[derive(Debug, Clone, thiserror::Error)]
#[error("action {action}: {error}")]
pub struct ActionFailed {
    pub action: String,
    pub error: RunError,
}

fn keep_unreserved(
    action: &str,
    target: &mut serde_json::Map<String, serde_json::Value>,
    claims: serde_json::Map<String, serde_json::Value>,
) {
    for (name, value) in claims {
        if RESERVED_CLAIMS.contains(&name.as_str()) {
            tracing::warn!(action, claim = %name, "an action tried to set a reserved claim; ignored");
        } else {
            target.insert(name, value);
        }
    }
}

/// Deadline and size cap of an action's `fetch` calls.
const FETCH_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
const FETCH_MAX_BODY: usize = 256 * 1024;

/// The runtime `fetch` requests run on, and its client, made once. An action thread waits
/// on it (with its CPU slot given back); its own worker drives the sockets, so no request
/// depends on the runtime of the login that started it (an HTTP worker's single-threaded
/// runtime would have to be free to drive them). One client for all: building one costs far
/// more than a small action (TLS roots), and its pooled connections stay on this runtime.
static FETCH: std::sync::LazyLock<Result<(tokio::runtime::Runtime, gatehouse_connector::http::UpstreamHttp), String>> =
    std::sync::LazyLock::new(|| {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("gatehouse-fetch")
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let client =
            gatehouse_connector::http::UpstreamHttp::new(FETCH_TIMEOUT, FETCH_MAX_BODY).map_err(|e| e.to_string())?;
        Ok((runtime, client))
    });

/// The action's `fetch`, when it has an allow-list. A client that cannot be built fails the
/// run (never a run without the `fetch` the action expects).
fn fetch_policy(action: &Action) -> Result<Option<sandbox::FetchPolicy>, RunError> {
    if action.allow_hosts.is_empty() {
        return Ok(None);
    }
    let (runtime, http) =
        FETCH.as_ref().map_err(|e| RunError::Engine(format!("cannot start the fetch client: {e}")))?;
    Ok(Some(sandbox::FetchPolicy {
        allow_hosts: action.allow_hosts.clone(),
        http: http.clone(),
        handle: runtime.handle().clone(),
    }))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// An action's console lines, to the structured log (the request's span carries the
/// correlation id), redacted and capped.
fn log_lines(action: &Action, output: &sandbox::Output) {
    for line in &output.lines {
        let text = redact::for_log(&line.text, &action.secrets);
        match line.level.as_str() {
            "error" => tracing::error!(action = %action.name, console = %text, "action log"),
            "warn" => tracing::warn!(action = %action.name, console = %text, "action log"),
            "debug" => tracing::debug!(action = %action.name, console = %text, "action log"),
            _ => tracing::info!(action = %action.name, console = %text, "action log"),
        }
    }
    if output.dropped_lines > 0 {
        tracing::warn!(action = %action.name, dropped = output.dropped_lines, "action logged more lines than allowed; the rest were dropped");
    }
}

/// Save an action's cache, keeping it as long as its longest-lived entry.
async fn save_cache(
    cache: &dyn ActionCacheStore,
    action: &str,
    entries: serde_json::Map<String, serde_json::Value>,
) -> Result<(), crate::store::StoreError> {
    let now_ms = now_ms();
    let last = entries.values().filter_map(|e| e.get("expires_at").and_then(|t| t.as_u64())).max().unwrap_or(now_ms);
    let ttl = last.saturating_sub(now_ms).div_ceil(1000).max(1);
    cache.save(action, &serde_json::Value::Object(entries).to_string(), ttl).await
}

/// Run the actions of `trigger` in order with `event` (its `secrets` filled per action).
/// Stops at the first denial.
pub async fn run(
    actions: &Actions,
    trigger: Trigger,
    event: &serde_json::Value,
    cache: &dyn ActionCacheStore,
) -> Result<Effects, ActionFailed> {
    run_from(actions, trigger, event, cache, 0, None).await
}

/// Resume a post-login chain after a redirect: action `from` runs `onContinuePostLogin` (if
/// it exports it), the actions after it run as usual. `resume` holds the state being
/// continued, which `api.redirect.validateToken` checks tokens against.
pub async fn resume(
    actions: &Actions,
    event: &serde_json::Value,
    cache: &dyn ActionCacheStore,
    from: usize,
    resume: Continue,
) -> Result<Effects, ActionFailed> {
    run_from(actions, Trigger::PostLogin, event, cache, from, Some(("onContinuePostLogin", resume))).await
}

/// Run one action and read its result back; every failure, including a result that cannot
/// be read or breaks a limit, is an error (logged once, by the caller).
async fn run_one(
    actions: &Actions,
    action: &Action,
    handler: &'static str,
    event: &serde_json::Value,
    cache: &dyn ActionCacheStore,
    resume: Option<Continue>,
) -> Result<result::RunResult, RunError> {
    let mut event = event.clone();
    let secrets: serde_json::Map<String, serde_json::Value> =
        action.secrets.iter().map(|(k, v)| (k.clone(), v.expose().clone().into())).collect();
    event["secrets"] = serde_json::Value::Object(secrets);
    let event_json = event.to_string();
    let cache_json = cache
        .load(&action.name)
        .await
        .map_err(|e| RunError::Engine(format!("the action cache is unavailable: {e}")))?
        .unwrap_or_else(|| "{}".into());
    let host =
        sandbox::Host { fetch: fetch_policy(action)?, resume, modules: actions.modules.clone(), cache: cache_json };
    let source = action.source.clone();
    let limits = actions.limits;
    let started = std::time::Instant::now();
    let output =
        pool::run(move || sandbox::run(&source, handler, &event_json, limits, host)).await.map_err(RunError::Engine)?;
    let output = output?;
    log_lines(action, &output);
    tracing::debug!(action = %action.name, elapsed_us = started.elapsed().as_micros() as u64, "action ran");
    let result = result::parse(&output.result, now_ms()).map_err(|e| RunError::Result(e.0))?;
    if let Some(entries) = &result.cache {
        save_cache(cache, &action.name, entries.clone())
            .await
            .map_err(|e| RunError::Engine(format!("the action cache is unavailable: {e}")))?;
    }
    Ok(result)
}

async fn run_from(
    actions: &Actions,
    trigger: Trigger,
    event: &serde_json::Value,
    cache: &dyn ActionCacheStore,
    from: usize,
    first: Option<(&'static str, Continue)>,
) -> Result<Effects, ActionFailed> {
    let mut effects = Effects::default();
    let mut first = first;
    for (index, action) in actions.for_trigger(trigger).iter().enumerate().skip(from) {
        let (handler, resume) = match first.take() {
            Some((h, resume)) if index == from => {
                // An action that redirected without a continue handler has nothing more to do.
                if sandbox::check(&action.source, h, actions.limits, &actions.modules).is_err() {
                    continue;
                }
                (h, Some(resume))
            }
            _ => (trigger.handler(), None),
        };
        let result = match run_one(actions, action, handler, event, cache, resume).await {
            Ok(r) => r,
            Err(error) => {
                let error = match error {
                    RunError::Threw(m) => RunError::Threw(redact::for_log(&m, &action.secrets)),
                    RunError::Result(m) => RunError::Result(redact::for_log(&m, &action.secrets)),
                    RunError::Engine(m) => RunError::Engine(redact::for_log(&m, &action.secrets)),
                    other => other,
                };
                tracing::error!(action = %action.name, error = %error, "action failed; the request is refused");
                return Err(ActionFailed { action: action.name.clone(), error });
            }
        };
        keep_unreserved(&action.name, &mut effects.claims.id_token, result.id_token);
        keep_unreserved(&action.name, &mut effects.claims.access_token, result.access_token);
        effects.claims.add_scopes.extend(result.add_scopes);
        effects.claims.remove_scopes.extend(result.remove_scopes);
        effects.app_metadata.extend(result.app_metadata);
        effects.user_metadata.extend(result.user_metadata);
        if let Some(user) = result.primary_user {
            match &effects.primary_user {
                Some(set) if *set != user => {
                    let error = RunError::Result("setPrimaryUser may be called once per transaction".into());
                    tracing::error!(action = %action.name, error = %error, "action failed; the request is refused");
                    return Err(ActionFailed { action: action.name.clone(), error });
                }
                _ => effects.primary_user = Some(user),
            }
        }
        if let Some(reason) = result.deny {
            tracing::info!(action = %action.name, "an action denied access");
            effects.deny = Some(redact::for_log(&reason, &action.secrets));
            break;
        }
        if let Some(redirect) = result.redirect {
            if trigger != Trigger::PostLogin {
                tracing::warn!(action = %action.name, "api.redirect is only for post-login; ignored");
                continue;
            }
            effects.redirect = Some((redirect, index));
            break;
        }
    }
    Ok(effects)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> crate::store::memory::MemoryStore {
        crate::store::memory::MemoryStore::new(std::sync::Arc::new(crate::clock::SystemClock))
    }

    #[tokio::test]
    async fn the_cache_outlives_a_run_and_is_per_action() {
        let counter = "exports.onExecutePostLogin = (e, api) => { const c = api.cache.get('n'); const n = c ? Number(c.value) + 1 : 1; api.cache.set('n', String(n)); api.idToken.setCustomClaim('n', n); };";
        let actions = Actions { post_login: vec![action("counter", counter, None)], ..Default::default() };
        let store = cache();
        for expected in 1..=3 {
            let e = run(&actions, Trigger::PostLogin, &serde_json::json!({}), &store).await.unwrap();
            assert_eq!(e.claims.id_token["n"], expected);
        }
        let other = Actions { post_login: vec![action("other", counter, None)], ..Default::default() };
        let e = run(&other, Trigger::PostLogin, &serde_json::json!({}), &store).await.unwrap();
        assert_eq!(e.claims.id_token["n"], 1, "another action has its own cache");
        let big = "exports.onExecutePostLogin = (e, api) => { api.idToken.setCustomClaim('r', api.cache.set('k', 'x'.repeat(5000)).code); };";
        let actions = Actions { post_login: vec![action("big", big, None)], ..Default::default() };
        let e = run(&actions, Trigger::PostLogin, &serde_json::json!({}), &store).await.unwrap();
        assert_eq!(e.claims.id_token["r"], "VALUE_TOO_LARGE");
    }

    fn action(name: &str, source: &str, secret: Option<&str>) -> Action {
        Action {
            name: name.into(),
            path: PathBuf::from(format!("{name}.js")),
            source: source.into(),
            secrets: secret.map(|s| vec![("KEY".to_owned(), Secret::new(s.to_owned()))]).unwrap_or_default(),
            allow_hosts: Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_chain_merges_and_reserved_claims_are_dropped() {
        let actions = Actions {
            post_login: vec![
                action(
                    "one",
                    "exports.onExecutePostLogin = (e, api) => { api.idToken.setCustomClaim('a', 1); for (const n of ['sub', 'acr', 'amr', 'typ', 'cnf', 'act', 'c_hash', 'org_id']) { api.idToken.setCustomClaim(n, 'evil'); api.accessToken.setCustomClaim(n, 'evil'); } };",
                    None,
                ),
                action(
                    "two",
                    "exports.onExecutePostLogin = (e, api) => { api.accessToken.setCustomClaim('b', e.secrets.KEY); };",
                    Some("s3cr3t"),
                ),
            ],
            ..Default::default()
        };
        let e = run(&actions, Trigger::PostLogin, &serde_json::json!({"user": {}}), &cache()).await.unwrap();
        assert_eq!(e.claims.id_token.get("a"), Some(&serde_json::json!(1)));
        for reserved in ["sub", "acr", "amr", "typ", "cnf", "act", "c_hash", "org_id"] {
            assert!(!e.claims.id_token.contains_key(reserved), "{reserved} cannot be set in the ID token");
            assert!(!e.claims.access_token.contains_key(reserved), "{reserved} cannot be set in the access token");
        }
        assert_eq!(
            e.claims.access_token.get("b"),
            Some(&serde_json::json!("s3cr3t")),
            "each action sees its own secrets"
        );
    }

    #[tokio::test]
    async fn a_denial_stops_the_chain_and_a_failure_hides_secrets() {
        let actions = Actions {
            post_login: vec![
                action("deny", "exports.onExecutePostLogin = (e, api) => api.access.deny('nope');", None),
                action("never", "exports.onExecutePostLogin = (e, api) => api.idToken.setCustomClaim('x', 1);", None),
            ],
            ..Default::default()
        };
        let e = run(&actions, Trigger::PostLogin, &serde_json::json!({}), &cache()).await.unwrap();
        assert_eq!(e.deny.as_deref(), Some("nope"));
        assert!(e.claims.id_token.is_empty());

        let leaky = Actions {
            post_login: vec![action(
                "leak",
                "exports.onExecutePostLogin = (e) => { throw new Error('key=' + e.secrets.KEY); };",
                Some("hunter2hunter2"),
            )],
            ..Default::default()
        };
        let failed = run(&leaky, Trigger::PostLogin, &serde_json::json!({}), &cache()).await.unwrap_err();
        assert_eq!(failed.error, RunError::Threw("key=[redacted]".into()));
    }
}
