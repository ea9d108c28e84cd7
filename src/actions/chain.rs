//! A trigger's chain on an action thread: every action of the chain, in order, in one
//! hand-off to an action thread (a hop there and back cost about as much as a small action
//! itself, docs/benchmarks.md), stopping where the chain stops: a failure, a denial, a
//! redirect, a second primary user. The caller loads the actions' caches before and saves
//! what changed after; the chain's actions never read one another's cache except under one
//! name, which is handed on here.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::sandbox::{self, Continue, Modules, RunError};
use super::{Action, ActionFailed, Effects, Limits, Trigger, fetch_policy, keep_unreserved, log_lines, redact, result};
use crate::clock::SharedClock;

/// What one hand-off runs: the actions from `from` on, with what they share.
pub(super) struct Chain {
    pub trigger: Trigger,
    pub actions: Vec<Action>,
    /// The index of `actions[0]` in the trigger's list (a redirect names its action by it).
    pub from: usize,
    /// The handler `actions[0]` runs instead, and the state it continues.
    pub first: Option<(&'static str, Continue)>,
    /// The event as JSON text, made once for the whole chain; each action's `secrets` are set
    /// on it inside its own run.
    pub event_json: String,
    /// Each action's cache as the store had it, by action name (JSON text).
    pub caches: BTreeMap<String, String>,
    pub limits: Limits,
    pub modules: Modules,
    pub clock: SharedClock,
}

/// What a chain asked for, and the caches its actions changed, in order.
pub(super) struct Ran {
    pub effects: Result<Effects, ActionFailed>,
    pub saves: Vec<(String, Map<String, Value>)>,
}

/// Run one action and read its result back; every failure, including a result that cannot
/// be read or breaks a limit, is an error (logged once, by the caller).
fn run_one(
    chain: &Chain,
    action: &Action,
    handler: &'static str,
    cache: String,
    resume: Option<Continue>,
) -> Result<result::RunResult, RunError> {
    let secrets: Map<String, Value> =
        action.secrets.iter().map(|(k, v)| (k.clone(), v.expose().clone().into())).collect();
    let secrets = Value::Object(secrets).to_string();
    let host = sandbox::Host {
        fetch: fetch_policy(action)?,
        resume,
        modules: chain.modules.clone(),
        cache,
        clock: chain.clock.clone(),
    };
    let started = std::time::Instant::now();
    let output = sandbox::run(&action.source, handler, &chain.event_json, &secrets, chain.limits, host)?;
    log_lines(action, &output);
    tracing::debug!(action = %action.name, elapsed_us = started.elapsed().as_micros() as u64, "action ran");
    result::parse(&output.result, chain.clock.now_ms()).map_err(|e| RunError::Result(e.0))
}

fn failed(action: &Action, error: RunError) -> ActionFailed {
    let error = match error {
        RunError::Threw(m) => RunError::Threw(redact::for_log(&m, &action.secrets)),
        RunError::Result(m) => RunError::Result(redact::for_log(&m, &action.secrets)),
        RunError::Engine(m) => RunError::Engine(redact::for_log(&m, &action.secrets)),
        other => other,
    };
    tracing::error!(action = %action.name, error = %error, "action failed; the request is refused");
    ActionFailed { action: action.name.clone(), error }
}

/// Run the chain. Blocking: call it on an action thread.
pub(super) fn run(mut chain: Chain) -> Ran {
    let mut effects = Effects::default();
    let mut saves = Vec::new();
    let mut first = chain.first.take();
    for (offset, action) in chain.actions.iter().enumerate() {
        let index = chain.from + offset;
        let (handler, resume) = match first.take() {
            Some((h, resume)) if offset == 0 => {
                // An action that redirected without a continue handler has nothing more to do.
                if sandbox::check(&action.source, h, chain.limits, &chain.modules).is_err() {
                    continue;
                }
                (h, Some(resume))
            }
            _ => (chain.trigger.handler(), None),
        };
        let cache = chain.caches.get(&action.name).cloned().unwrap_or_else(|| "{}".into());
        let result = match run_one(&chain, action, handler, cache, resume) {
            Ok(r) => r,
            Err(error) => return Ran { effects: Err(failed(action, error)), saves },
        };
        if let Some(entries) = &result.cache {
            // A later action of the same name sees this one's cache, as if it had been saved.
            chain.caches.insert(action.name.clone(), Value::Object(entries.clone()).to_string());
            saves.push((action.name.clone(), entries.clone()));
        }
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
                    return Ran { effects: Err(failed(action, error)), saves };
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
            if chain.trigger != Trigger::PostLogin {
                tracing::warn!(action = %action.name, "api.redirect is only for post-login; ignored");
                continue;
            }
            effects.redirect = Some((redirect, index));
            break;
        }
    }
    Ran { effects: Ok(effects), saves }
}
