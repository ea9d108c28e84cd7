//! The `[actions]` section: limits, the shared modules actions `require`, and each action's file read and compiled now, so a
//! syntax error stops start-up and shows in `check-config`.

use super::ctx::Ctx;
use super::raw::{RawAction, RawActions};

pub(super) fn actions(ctx: &mut Ctx<'_>, raw: RawActions, base: &std::path::Path) -> crate::actions::Actions {
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
