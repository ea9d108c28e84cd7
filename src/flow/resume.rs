//! The dispatcher. Once an identity is established, [`resume`] alone orders the rest of a
//! login: profile (map, link) → pre-user-registration → post-login Actions → [MFA] →
//! [consent] → session → single-use code → authorization response. Each step returns here;
//! none calls another. An interactive login, a silent re-authentication and a login back
//! from an Action's page all enter through [`resume`], each as an [`Event`].

use std::sync::Arc;

use gatehouse_connector::UpstreamIdentity;

use super::actions::{self, Entry, PostLogin};
use super::binding::{take_bound, txn_id};
use super::response::{code_response, reply_error};
use super::{Browser, FlowError, Next, Outcome, identity};
use crate::actions::Continue;
use crate::connections::Connection;
use crate::oauth::AuthorizationRequest;
use crate::oauth::token::{CodeSubject, issue_code};
use crate::oauth::{ErrorCode, Params};
use crate::session;
use crate::state::Core;
use crate::store::{CustomClaims, Resume, SessionPlan, SessionRecord, Step, UserRecord};
use crate::types::{ConnectionId, random_token};

/// What brought a login to the dispatcher.
pub(crate) enum Event {
    /// A connector established who this is (callback, credentials form, IdP-initiated).
    Identified { conn: Arc<Connection>, identity: UpstreamIdentity },
    /// A live SSO session answers `/authorize` (silent re-authentication).
    Session { session: SessionRecord, prompt_none: bool },
    /// Back at `/continue` from an Action's page, with the `state` being continued and what
    /// the browser brought (which `api.redirect.validateToken` checks tokens against).
    Continued { resume_at: Resume, query: serde_json::Value, body: serde_json::Value, continuing: Continue },
}

/// A login whose user is known, carried from step to step.
pub(super) struct Login {
    pub user: UserRecord,
    pub connection: ConnectionId,
    pub auth_time: u64,
    pub amr: Vec<String>,
    /// The connector's facts for ending the upstream session.
    pub upstream: Option<serde_json::Value>,
    /// What Actions added to the tokens so far.
    pub custom: CustomClaims,
    pub session: SessionPlan,
    /// Who an Action made the primary user, once per transaction.
    pub primary_user: Option<crate::types::UserId>,
    /// `prompt=none`: no step may show a page.
    pub prompt_none: bool,
}

impl Login {
    async fn load_user(core: &Core, id: &crate::types::UserId, what: &str) -> Result<UserRecord, FlowError> {
        core.store.users.get(id).await?.ok_or_else(|| FlowError::Internal(format!("{what}'s user no longer exists")))
    }

    async fn silent(core: &Core, s: SessionRecord, prompt_none: bool) -> Result<Self, FlowError> {
        Ok(Self {
            user: Self::load_user(core, &s.user_id, "the session").await?,
            connection: s.connection,
            auth_time: s.auth_time,
            amr: s.amr,
            upstream: s.upstream,
            custom: CustomClaims::default(),
            session: SessionPlan::Reuse { sid: s.sid, created_at: s.created_at },
            primary_user: None,
            prompt_none,
        })
    }

    async fn resumed(core: &Core, r: Resume) -> Result<Self, FlowError> {
        Ok(Self {
            user: Self::load_user(core, &r.user_id, "the paused login").await?,
            connection: r.connection,
            auth_time: r.auth_time,
            amr: r.amr,
            upstream: r.upstream,
            custom: r.custom,
            session: r.session,
            primary_user: r.primary_user,
            prompt_none: false,
        })
    }
}

/// The one dispatcher: from `event`, run the steps that remain for `request`'s login.
pub(crate) async fn resume(
    core: &Core,
    request: &AuthorizationRequest,
    event: Event,
    browser: &Browser,
) -> Result<Outcome, FlowError> {
    let (mut login, entry) = match event {
        Event::Identified { conn, identity } => {
            match identity::establish(core, request, &conn, identity, browser).await? {
                Ok(login) => (login, Entry::Start),
                Err(refused) => return Ok(Outcome::respond(refused)),
            }
        }
        Event::Session { session, prompt_none } => (Login::silent(core, session, prompt_none).await?, Entry::Start),
        Event::Continued { resume_at, query, body, continuing } => {
            let action = resume_at.action;
            (Login::resumed(core, resume_at).await?, Entry::Continue { action, query, body, continuing })
        }
    };
    // Actions before the session: a denied login opens none.
    match actions::post_login(core, request, &mut login, entry, browser).await? {
        PostLogin::Proceed => {}
        PostLogin::Stop(denied) => return Ok(Outcome::respond(denied)),
        // prompt=none forbids any page: the client must ask again interactively.
        PostLogin::Redirect { .. } if login.prompt_none => {
            let reason = "an action needs the person to interact";
            return Ok(Outcome::respond(reply_error(core, request, ErrorCode::InteractionRequired, reason)));
        }
        PostLogin::Redirect { to, action } => return actions::pause(core, request, login, to, action, browser).await,
    }
    // MFA branches here (not built yet): a login that needs a factor pauses as a step of its
    // own before any session exists, and `prompt=none` answers `interaction_required`.
    // Consent branches here (not built yet): the same shape, after MFA.
    finish(core, request, login, browser).await
}

/// The last steps: the session (opened, reused or detached), the single-use code, and the
/// authorization response.
async fn finish(
    core: &Core,
    request: &AuthorizationRequest,
    login: Login,
    browser: &Browser,
) -> Result<Outcome, FlowError> {
    let mut set_session = None;
    let sid = match &login.session {
        SessionPlan::Reuse { sid, .. } => sid.clone(),
        SessionPlan::Detached => random_token(16),
        SessionPlan::Open { sid } => {
            // A new session id at every login: a cookie planted before login is worthless after.
            if let Some(old) = browser.session.as_deref() {
                session::close(&core.store, old).await?;
            }
            let new = session::NewSession {
                sid: sid.clone(),
                user_id: &login.user.user_id,
                connection: &login.connection,
                amr: login.amr.clone(),
                now: login.auth_time,
                ttl: core.settings.session.ttl,
                upstream: login.upstream.clone(),
            };
            let opened = session::open(&core.store, new).await?;
            set_session = Some(opened.cookie);
            opened.record.sid
        }
    };
    let who = CodeSubject { user_id: &login.user.user_id, sid: &sid, auth_time: login.auth_time, amr: &login.amr };
    let code = issue_code(core, request, who, &login.custom).await?;
    if !matches!(login.session, SessionPlan::Reuse { .. }) {
        core.metrics.login(login.connection.as_str(), "success");
        tracing::info!(connection = %login.connection, user_id = %login.user.user_id, client_id = %request.client_id, unsolicited = request.unsolicited, "login completed");
    }
    Ok(Outcome { next: Next::Respond(code_response(core, request, &code)), set_binding: None, set_session })
}

/// `/continue`: a paused login comes back from an action's page. The `state` is consumed
/// once, by the browser that left.
pub async fn continue_login(
    core: &Core,
    params: &Params,
    from_post: bool,
    browser: &Browser,
) -> Result<Outcome, FlowError> {
    let state = params.get("state").ok_or(FlowError::UnknownTransaction)?;
    let txn = take_bound(core, &txn_id(state)?, browser).await?;
    let Step::Actions { resume_at } = txn.step else { return Err(FlowError::UnknownTransaction) };
    let pairs: serde_json::Map<String, serde_json::Value> =
        params.pairs().iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
    let (query, body) = if from_post {
        (serde_json::json!({ "state": state }), pairs.into())
    } else {
        (pairs.into(), serde_json::json!({}))
    };
    let continuing = Continue {
        state: state.to_owned(),
        params: params.pairs().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    let event = Event::Continued { resume_at, query, body, continuing };
    resume(core, &txn.request.into(), event, browser).await
}
