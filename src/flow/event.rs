//! The facts of a login that Auth0's Actions `event` objects are built from
//! (`crate::actions::event` owns their shape).

use gatehouse_connector::UpstreamIdentity;

use super::Browser;
use super::resume::Login;
use crate::actions::event::{self, NewUser, Parties, RequestFacts, SessionFacts, Transaction};
use crate::oauth::AuthorizationRequest;
use crate::state::Core;
use crate::store::SessionPlan;
use crate::types::{ConnectionId, UserId};

/// The browser's facts for an Action's `event.request`.
fn request_facts(browser: &Browser) -> RequestFacts<'_> {
    RequestFacts {
        ip: browser.ip.map(|i| i.to_string()),
        country: browser.country.as_ref().map(|c| c.as_str().to_owned()),
        user_agent: browser.user_agent.as_deref(),
        hostname: browser.hostname.as_deref(),
    }
}

/// Which connection and which client this login is between.
fn parties<'a>(core: &'a Core, request: &'a AuthorizationRequest, connection: &'a ConnectionId) -> Parties<'a> {
    Parties {
        connection: Some(connection),
        strategy: core.connections.get(connection).map(|c| c.connector.strategy()),
        client_id: &request.client_id,
        client_name: core.settings.known_clients().get(&request.client_id).map(|c| c.name.as_str()),
    }
}

/// Auth0's post-login `event` for this login.
pub(super) fn login_event(
    core: &Core,
    request: &AuthorizationRequest,
    login: &Login,
    browser: &Browser,
) -> serde_json::Value {
    let session = match &login.session {
        SessionPlan::Reuse { sid, created_at } => {
            Some(SessionFacts { id: sid.as_str(), created_at: *created_at, authenticated_at: login.auth_time })
        }
        // The session this login is about to open (it opens after the Actions, so that a
        // denial opens none).
        SessionPlan::Open { sid } => {
            Some(SessionFacts { id: sid.as_str(), created_at: login.auth_time, authenticated_at: login.auth_time })
        }
        SessionPlan::Detached => None,
    };
    let facts = event::PostLogin {
        parties: parties(core, request, &login.connection),
        request: request_facts(browser),
        auth_time: login.auth_time,
        amr: &login.amr,
        session,
        transaction: Transaction::Authorize(request),
    };
    event::post_login(&login.user, &facts)
}

/// The user about to be created, as the pre-user-registration `event` names them.
pub(super) fn new_user<'a>(user_id: &'a UserId, identity: &'a UpstreamIdentity) -> NewUser<'a> {
    NewUser {
        user_id: user_id.as_str(),
        email: identity.email.as_deref(),
        email_verified: identity.email_verified,
        name: identity.name.as_deref(),
        given_name: identity.given_name.as_deref(),
        family_name: identity.family_name.as_deref(),
        nickname: identity.nickname.as_deref(),
        picture: identity.picture.as_deref(),
    }
}

/// Auth0's pre-user-registration `event`, for `user` about to be created.
pub(super) fn registration_event(
    core: &Core,
    request: &AuthorizationRequest,
    user: &NewUser<'_>,
    connection: &ConnectionId,
    browser: &Browser,
) -> serde_json::Value {
    event::pre_user_registration(user, &parties(core, request, connection), &request_facts(browser), &request.scopes)
}
