//! Actions: sandboxed JavaScript in the login pipeline, with Auth0's `event` and `api`, so an
//! Auth0 tenant's post-login and credentials-exchange Actions run unchanged.
//!
//! Each trigger runs its actions in order, each in a fresh sandbox ([`sandbox`]) on the
//! blocking pool (an action may use its whole CPU budget without holding up the async
//! workers). What the actions ask for comes back as [`Effects`]; the caller applies them.

mod pool;
pub mod sandbox;

use std::path::PathBuf;
use std::sync::Arc;

use serde::Deserialize;

pub use sandbox::{Limits, RunError};

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

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct RawResult {
    #[serde(default)]
    id_token: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    access_token: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    add_scopes: Vec<String>,
    #[serde(default)]
    remove_scopes: Vec<String>,
    #[serde(default)]
    deny: Option<String>,
    #[serde(default)]
    app_metadata: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    user_metadata: serde_json::Map<String, serde_json::Value>,
    /// The action's cache after the run, when it changed.
    #[serde(default)]
    cache: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    redirect: Option<Redirect>,
}

/// Replace every secret value in `text`, so an action that throws its secret does not put it
/// in the log.
fn redact(text: &str, secrets: &[(String, Secret<String>)]) -> String {
    let mut out = text.to_owned();
    for (_, value) in secrets {
        if !value.expose().is_empty() {
            out = out.replace(value.expose().as_str(), "[redacted]");
        }
    }
    out
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

fn fetch_policy(action: &Action) -> Option<sandbox::FetchPolicy> {
    if action.allow_hosts.is_empty() {
        return None;
    }
    let http = gatehouse_connector::http::UpstreamHttp::new(FETCH_TIMEOUT, FETCH_MAX_BODY).ok()?;
    Some(sandbox::FetchPolicy {
        allow_hosts: action.allow_hosts.clone(),
        http,
        handle: tokio::runtime::Handle::current(),
    })
}

/// Save an action's cache, keeping it as long as its longest-lived entry.
async fn save_cache(
    cache: &dyn ActionCacheStore,
    action: &str,
    entries: serde_json::Map<String, serde_json::Value>,
) -> Result<(), crate::store::StoreError> {
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
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
/// it exports it), the actions after it run as usual.
pub async fn resume(
    actions: &Actions,
    event: &serde_json::Value,
    cache: &dyn ActionCacheStore,
    from: usize,
) -> Result<Effects, ActionFailed> {
    run_from(actions, Trigger::PostLogin, event, cache, from, Some("onContinuePostLogin")).await
}

async fn run_from(
    actions: &Actions,
    trigger: Trigger,
    event: &serde_json::Value,
    cache: &dyn ActionCacheStore,
    from: usize,
    first_handler: Option<&'static str>,
) -> Result<Effects, ActionFailed> {
    let mut effects = Effects::default();
    for (index, action) in actions.for_trigger(trigger).iter().enumerate().skip(from) {
        let handler = match first_handler {
            Some(h) if index == from => {
                // An action that redirected without a continue handler has nothing more to do.
                if sandbox::check(&action.source, h, actions.limits).is_err() {
                    continue;
                }
                h
            }
            _ => trigger.handler(),
        };
        let mut event = event.clone();
        let secrets: serde_json::Map<String, serde_json::Value> =
            action.secrets.iter().map(|(k, v)| (k.clone(), v.expose().clone().into())).collect();
        event["secrets"] = serde_json::Value::Object(secrets);
        let event_json = event.to_string();
        let unavailable = |e: crate::store::StoreError| ActionFailed {
            action: action.name.clone(),
            error: RunError::Engine(format!("the action cache is unavailable: {e}")),
        };
        let cache_json = cache.load(&action.name).await.map_err(unavailable)?.unwrap_or_else(|| "{}".into());
        let source = action.source.clone();
        let limits = actions.limits;
        let fetch = fetch_policy(action);
        let started = std::time::Instant::now();
        let outcome = pool::run(move || sandbox::run(&source, handler, &event_json, &cache_json, limits, fetch))
            .await
            .unwrap_or_else(|e| Err(RunError::Engine(e.to_string())));
        let text = match outcome {
            Ok(text) => text,
            Err(error) => {
                let error = match error {
                    RunError::Threw(m) => RunError::Threw(redact(&m, &action.secrets)),
                    other => other,
                };
                tracing::error!(action = %action.name, error = %error, "action failed; the request is refused");
                return Err(ActionFailed { action: action.name.clone(), error });
            }
        };
        tracing::debug!(action = %action.name, elapsed_us = started.elapsed().as_micros() as u64, "action ran");
        let result: RawResult = serde_json::from_str(&text).unwrap_or_default();
        if let Some(entries) = result.cache {
            save_cache(cache, &action.name, entries).await.map_err(unavailable)?;
        }
        keep_unreserved(&action.name, &mut effects.claims.id_token, result.id_token);
        keep_unreserved(&action.name, &mut effects.claims.access_token, result.access_token);
        effects.claims.add_scopes.extend(result.add_scopes);
        effects.claims.remove_scopes.extend(result.remove_scopes);
        effects.app_metadata.extend(result.app_metadata);
        effects.user_metadata.extend(result.user_metadata);
        if let Some(reason) = result.deny {
            tracing::info!(action = %action.name, "an action denied access");
            effects.deny = Some(reason);
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
                    "exports.onExecutePostLogin = (e, api) => { api.idToken.setCustomClaim('a', 1); api.idToken.setCustomClaim('sub', 'evil'); };",
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
        assert!(!e.claims.id_token.contains_key("sub"), "reserved claims cannot be set");
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
