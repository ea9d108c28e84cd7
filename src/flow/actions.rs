//! The Actions steps of a login: pre-user-registration (before a new user is stored) and
//! post-login (before the session), including the pause at `api.redirect.sendUserTo`. The
//! Actions' behaviour lives in `src/actions`; the `event` they see is built in `event.rs`.

use gatehouse_connector::{UpstreamIdentity, Url};

use super::binding::{Binding, new_transaction, save};
use super::event::{login_event, new_user, registration_event};
use super::response::reply_error;
use super::resume::Login;
use super::{AuthorizationResponse, Browser, FlowError, Next, Outcome};
use crate::actions::{Continue, Effects, Redirect, Trigger};
use crate::oauth::AuthorizationRequest;
use crate::oauth::ErrorCode;
use crate::profile::NewUserMetadata;
use crate::state::Core;
use crate::store::{Resume, Step};
use crate::types::{ConnectionId, UserId};

/// The pre-user-registration Actions, before a new user is stored: a denial stores nothing
/// and reaches the client as `access_denied`.
pub(super) async fn pre_user_registration(
    core: &Core,
    request: &AuthorizationRequest,
    user_id: &UserId,
    identity: &UpstreamIdentity,
    connection: &ConnectionId,
    browser: &Browser,
) -> Result<Result<NewUserMetadata, AuthorizationResponse>, FlowError> {
    let event = registration_event(core, request, &new_user(user_id, identity), connection, browser);
    let effects = crate::actions::run(
        &core.settings.actions,
        Trigger::PreUserRegistration,
        &event,
        core.store.action_cache.as_ref(),
        &core.clock,
    )
    .await
    .map_err(|e| FlowError::ActionFailed(e.action))?;
    if let Some(reason) = effects.deny {
        core.metrics.login(connection.as_str(), "registration_denied");
        return Ok(Err(reply_error(core, request, ErrorCode::AccessDenied, reason)));
    }
    Ok(Ok(NewUserMetadata { app_metadata: effects.app_metadata, user_metadata: effects.user_metadata }))
}

/// Where the post-login chain starts.
pub(super) enum Entry {
    /// From the first action.
    Start,
    /// Back at `/continue`: the action that redirected runs `onContinuePostLogin`, with what
    /// the browser brought back as `event.request.query` and `event.request.body`.
    Continue { action: usize, query: serde_json::Value, body: serde_json::Value, continuing: Continue },
}

/// What the post-login Actions decided.
pub(super) enum PostLogin {
    /// Go on; their claims are in `login.custom`.
    Proceed,
    /// Stop: this response goes to the client (`access_denied`).
    Stop(AuthorizationResponse),
    /// Send the person to an action's page first; the chain resumes at `/continue`.
    Redirect { to: Redirect, action: usize },
}

/// Run the post-login Actions for `login`.
pub(super) async fn post_login(
    core: &Core,
    request: &AuthorizationRequest,
    login: &mut Login,
    entry: Entry,
    browser: &Browser,
) -> Result<PostLogin, FlowError> {
    let actions = &core.settings.actions;
    // No chain, no event: the event (the user's profile as Auth0 JSON, dates formatted) is
    // work a silent re-authentication would otherwise do for nothing.
    if matches!(entry, Entry::Start) && actions.post_login.is_empty() {
        return Ok(PostLogin::Proceed);
    }
    let cache = core.store.action_cache.as_ref();
    let mut event = login_event(core, request, login, browser);
    let effects = match entry {
        Entry::Start => crate::actions::run(actions, Trigger::PostLogin, &event, cache, &core.clock).await,
        Entry::Continue { action, query, body, continuing } => {
            event["request"]["query"] = query;
            event["request"]["body"] = body;
            crate::actions::resume(actions, &event, cache, &core.clock, action, continuing).await
        }
    }
    .map_err(|e| FlowError::ActionFailed(e.action))?;
    apply_effects(core, request, login, effects).await
}

/// Turn a chain's effects into the next step; claims add to those from before a redirect.
async fn apply_effects(
    core: &Core,
    request: &AuthorizationRequest,
    login: &mut Login,
    effects: Effects,
) -> Result<PostLogin, FlowError> {
    if let Some(reason) = effects.deny {
        core.metrics.login(login.connection.as_str(), "denied_by_action");
        return Ok(PostLogin::Stop(reply_error(core, request, ErrorCode::AccessDenied, reason)));
    }
    if !effects.app_metadata.is_empty() || !effects.user_metadata.is_empty() {
        login.user.app_metadata.extend(effects.app_metadata);
        login.user.user_metadata.extend(effects.user_metadata);
        core.store.users.put(&login.user).await?;
    }
    // api.authentication.setPrimaryUser: the tokens (and the session) are for that user,
    // who must exist; the metadata above went to the user who signed in, as in Auth0.
    // Once per transaction: a chain resumed after a redirect may repeat the same user, not
    // name another.
    if let Some(primary) = effects.primary_user {
        let id = UserId::parse(&primary)
            .map_err(|_| FlowError::ActionFailed(format!("setPrimaryUser: {primary:?} is not a user_id")))?;
        match &login.primary_user {
            Some(set) if *set != id => {
                return Err(FlowError::ActionFailed("setPrimaryUser may be called once per transaction".into()));
            }
            Some(_) => {}
            None => {
                if id != login.user.user_id {
                    login.user = core
                        .store
                        .users
                        .get(&id)
                        .await?
                        .ok_or_else(|| FlowError::ActionFailed(format!("setPrimaryUser: no user {primary}")))?;
                    tracing::info!(user_id = %login.user.user_id, "an action set the primary user");
                }
                login.primary_user = Some(id);
            }
        }
    }
    let custom = &mut login.custom;
    custom.id_token.extend(effects.claims.id_token);
    custom.access_token.extend(effects.claims.access_token);
    custom.add_scopes.extend(effects.claims.add_scopes);
    custom.remove_scopes.extend(effects.claims.remove_scopes);
    Ok(match effects.redirect {
        Some((to, action)) => PostLogin::Redirect { to, action },
        None => PostLogin::Proceed,
    })
}

/// Park the login under a new, single-use transaction bound to this browser and send the
/// person to the action's page with its id as `state`.
pub(super) async fn pause(
    core: &Core,
    request: &AuthorizationRequest,
    login: Login,
    to: Redirect,
    action: usize,
    browser: &Browser,
) -> Result<Outcome, FlowError> {
    let mut url = Url::parse(&to.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| FlowError::ActionFailed(format!("redirect to an invalid URL: {}", to.url)))?;
    let binding = Binding::of(browser);
    let resume_at = Resume {
        user_id: login.user.user_id,
        connection: login.connection,
        auth_time: login.auth_time,
        amr: login.amr,
        custom: login.custom,
        action,
        session: login.session,
        primary_user: login.primary_user,
        upstream: login.upstream,
    };
    let txn = new_transaction(core, request.clone(), &binding, Step::Actions { resume_at });
    save(core, &txn).await?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in &to.query {
            match v {
                serde_json::Value::String(s) => q.append_pair(k, s),
                other => q.append_pair(k, &other.to_string()),
            };
        }
        q.append_pair("state", txn.id.as_str());
    }
    Ok(Outcome { next: Next::Redirect(url), set_binding: binding.set, set_session: None })
}
