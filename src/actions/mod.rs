//! Actions: sandboxed JavaScript in the login pipeline, with Auth0's `event` and `api`, so an
//! Auth0 tenant's post-login and credentials-exchange Actions run unchanged.
//!
//! Each trigger runs its actions in order, each in a fresh context ([`sandbox`]), the whole
//! chain in one hand-off to an action thread ([`chain`], [`pool`]: an action may use its
//! whole CPU budget without holding up the async workers). What the actions ask for comes
//! back as [`Effects`]; the caller applies them.

mod chain;
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

use crate::clock::SharedClock;
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
    now_ms: u64,
) -> Result<(), crate::store::StoreError> {
    let last = entries.values().filter_map(|e| e.get("expires_at").and_then(|t| t.as_u64())).max().unwrap_or(now_ms);
    let ttl = last.saturating_sub(now_ms).div_ceil(1000).max(1);
    cache.save(action, &serde_json::Value::Object(entries).to_string(), ttl).await
}

/// Run the actions of `trigger` in order with `event` (its `secrets` filled per action).
/// Stops at the first denial. "Now" (cache expiry, `encodeToken`) is `clock`'s.
pub async fn run(
    actions: &Actions,
    trigger: Trigger,
    event: &serde_json::Value,
    cache: &dyn ActionCacheStore,
    clock: &SharedClock,
) -> Result<Effects, ActionFailed> {
    run_from(actions, trigger, event, cache, clock, 0, None).await
}

/// Resume a post-login chain after a redirect: action `from` runs `onContinuePostLogin` (if
/// it exports it), the actions after it run as usual. `resume` holds the state being
/// continued, which `api.redirect.validateToken` checks tokens against.
pub async fn resume(
    actions: &Actions,
    event: &serde_json::Value,
    cache: &dyn ActionCacheStore,
    clock: &SharedClock,
    from: usize,
    resume: Continue,
) -> Result<Effects, ActionFailed> {
    run_from(actions, Trigger::PostLogin, event, cache, clock, from, Some(("onContinuePostLogin", resume))).await
}

fn unavailable(action: &Action, e: impl std::fmt::Display) -> ActionFailed {
    let error = RunError::Engine(format!("the action cache is unavailable: {e}"));
    tracing::error!(action = %action.name, error = %error, "action failed; the request is refused");
    ActionFailed { action: action.name.clone(), error }
}

/// The chain from `from` on, in one hand-off to an action thread ([`chain`]): the caches
/// are loaded before it and what the actions changed is saved after it, in order. A cache
/// that cannot be loaded or saved fails the chain, as a failed action does.
async fn run_from(
    actions: &Actions,
    trigger: Trigger,
    event: &serde_json::Value,
    cache: &dyn ActionCacheStore,
    clock: &SharedClock,
    from: usize,
    first: Option<(&'static str, Continue)>,
) -> Result<Effects, ActionFailed> {
    // A paused login resuming past the end of its chain (the configuration lost actions in
    // between) fails closed: the actions it was waiting on can no longer say yes or no.
    let Some(list) = actions.for_trigger(trigger).get(from..) else {
        let error = RunError::Engine(format!("the chain has no action {from} to resume at"));
        tracing::error!(error = %error, "action failed; the request is refused");
        return Err(ActionFailed { action: format!("#{from}"), error });
    };
    let Some(head) = list.first() else { return Ok(Effects::default()) };
    let mut caches = std::collections::BTreeMap::new();
    for action in list {
        if !caches.contains_key(&action.name) {
            let loaded = cache.load(&action.name).await.map_err(|e| unavailable(action, e))?;
            caches.insert(action.name.clone(), loaded.unwrap_or_else(|| "{}".into()));
        }
    }
    let job = chain::Chain {
        trigger,
        actions: list.to_vec(),
        from,
        first,
        event_json: event.to_string(),
        caches,
        limits: actions.limits,
        modules: actions.modules.clone(),
        clock: clock.clone(),
    };
    // The actions' log lines keep the request's span (and its correlation id).
    let span = tracing::Span::current();
    let ran = pool::run(move || {
        let _in = span.enter();
        chain::run(job)
    })
    .await
    .map_err(|e| {
        let error = RunError::Engine(e);
        tracing::error!(action = %head.name, error = %error, "action failed; the request is refused");
        ActionFailed { action: head.name.clone(), error }
    })?;
    for (name, entries) in ran.saves {
        let action = list.iter().find(|a| a.name == name).unwrap_or(head);
        save_cache(cache, &name, entries, clock.now_ms()).await.map_err(|e| unavailable(action, e))?;
    }
    ran.effects
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clock() -> SharedClock {
        std::sync::Arc::new(crate::clock::SystemClock)
    }

    fn cache() -> crate::store::memory::MemoryStore {
        crate::store::memory::MemoryStore::new(std::sync::Arc::new(crate::clock::SystemClock))
    }

    #[tokio::test]
    async fn the_cache_outlives_a_run_and_is_per_action() {
        let counter = "exports.onExecutePostLogin = (e, api) => { const c = api.cache.get('n'); const n = c ? Number(c.value) + 1 : 1; api.cache.set('n', String(n)); api.idToken.setCustomClaim('n', n); };";
        let actions = Actions { post_login: vec![action("counter", counter, None)], ..Default::default() };
        let store = cache();
        for expected in 1..=3 {
            let e = run(&actions, Trigger::PostLogin, &serde_json::json!({}), &store, &clock()).await.unwrap();
            assert_eq!(e.claims.id_token["n"], expected);
        }
        let other = Actions { post_login: vec![action("other", counter, None)], ..Default::default() };
        let e = run(&other, Trigger::PostLogin, &serde_json::json!({}), &store, &clock()).await.unwrap();
        assert_eq!(e.claims.id_token["n"], 1, "another action has its own cache");
        let big = "exports.onExecutePostLogin = (e, api) => { api.idToken.setCustomClaim('r', api.cache.set('k', 'x'.repeat(5000)).code); };";
        let actions = Actions { post_login: vec![action("big", big, None)], ..Default::default() };
        let e = run(&actions, Trigger::PostLogin, &serde_json::json!({}), &store, &clock()).await.unwrap();
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
                    "exports.onExecutePostLogin = (e, api) => { api.idToken.setCustomClaim('a', 1); api.idToken.setCustomClaim('k1', e.secrets.KEY ?? 'none'); for (const n of ['sub', 'acr', 'amr', 'typ', 'cnf', 'act', 'c_hash', 'org_id']) { api.idToken.setCustomClaim(n, 'evil'); api.accessToken.setCustomClaim(n, 'evil'); } };",
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
        let e = run(&actions, Trigger::PostLogin, &serde_json::json!({"user": {}}), &cache(), &clock()).await.unwrap();
        assert_eq!(e.claims.id_token.get("a"), Some(&serde_json::json!(1)));
        assert_eq!(e.claims.id_token["k1"], "none", "an action without secrets sees none of the next one's");
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
        let e = run(&actions, Trigger::PostLogin, &serde_json::json!({}), &cache(), &clock()).await.unwrap();
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
        let failed = run(&leaky, Trigger::PostLogin, &serde_json::json!({}), &cache(), &clock()).await.unwrap_err();
        assert_eq!(failed.error, RunError::Threw("key=[redacted]".into()));
    }

    #[tokio::test]
    async fn actions_of_one_name_in_a_chain_share_their_cache() {
        let counter = "exports.onExecutePostLogin = (e, api) => { const c = api.cache.get('n'); const n = c ? Number(c.value) + 1 : 1; api.cache.set('n', String(n)); api.idToken.setCustomClaim('n', n); };";
        let actions = Actions {
            post_login: vec![action("counter", counter, None), action("counter", counter, None)],
            ..Default::default()
        };
        let store = cache();
        let e = run(&actions, Trigger::PostLogin, &serde_json::json!({}), &store, &clock()).await.unwrap();
        assert_eq!(e.claims.id_token["n"], 2, "the second saw the first one's write");
        let e = run(&actions, Trigger::PostLogin, &serde_json::json!({}), &store, &clock()).await.unwrap();
        assert_eq!(e.claims.id_token["n"], 4, "and both were saved");
    }

    #[tokio::test]
    async fn an_action_sees_the_injected_clock() {
        let start = 1_700_000_000u64;
        let manual = crate::clock::ManualClock::new(start);
        let pinned: SharedClock = manual.clone();
        let store = crate::store::memory::MemoryStore::new(pinned.clone());
        let src = "exports.onExecutePostLogin = (e, api) => {
            api.idToken.setCustomClaim('token', api.redirect.encodeToken({ secret: 'k', payload: { a: 1 }, expiresInSeconds: 60 }));
            api.idToken.setCustomClaim('cached', api.cache.get('c')?.value ?? 'none');
            api.cache.set('c', 'v', { ttl: 5000 });
        };";
        let actions = Actions { post_login: vec![action("timed", src, None)], ..Default::default() };
        let e = run(&actions, Trigger::PostLogin, &serde_json::json!({}), &store, &pinned).await.unwrap();
        let token = e.claims.id_token["token"].as_str().unwrap();
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.validate_exp = false;
        let claims =
            jsonwebtoken::decode::<serde_json::Value>(token, &jsonwebtoken::DecodingKey::from_secret(b"k"), &v)
                .unwrap()
                .claims;
        assert_eq!((claims["iat"].as_u64(), claims["exp"].as_u64()), (Some(start), Some(start + 60)));
        let saved: serde_json::Value = serde_json::from_str(&store.load("timed").await.unwrap().unwrap()).unwrap();
        assert_eq!(saved["c"]["expires_at"], start * 1000 + 5000, "the cache's expiry is the clock's");
        // 4 s later the entry is live, 6 s later it is gone: the action's "now" moved with the clock.
        manual.advance(4);
        let e = run(&actions, Trigger::PostLogin, &serde_json::json!({}), &store, &pinned).await.unwrap();
        assert_eq!(e.claims.id_token["cached"], "v");
        manual.advance(6);
        let e = run(&actions, Trigger::PostLogin, &serde_json::json!({}), &store, &pinned).await.unwrap();
        assert_eq!(e.claims.id_token["cached"], "none");
    }
}
