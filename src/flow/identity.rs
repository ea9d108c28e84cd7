//! The profile step: an upstream identity becomes a Gatehouse user (attribute mapping,
//! linking by verified email, pre-user-registration for a new user), with the checks the
//! request asks for (`id_token_hint`, `max_age`).

use gatehouse_connector::UpstreamIdentity;

use super::actions::pre_user_registration;
use super::response::reply_error;
use super::resume::Login;
use super::{AuthorizationResponse, Browser, FlowError};
use crate::connections::Connection;
use crate::oauth::AuthorizationRequest;
use crate::oauth::ErrorCode;
use crate::profile;
use crate::state::Core;
use crate::store::SessionPlan;
use crate::types::random_token;

/// Who signed in, or the response that ends this login at the client (a denied registration,
/// someone other than `id_token_hint` names).
pub(super) async fn establish(
    core: &Core,
    request: &AuthorizationRequest,
    conn: &Connection,
    identity: UpstreamIdentity,
    browser: &Browser,
) -> Result<Result<Login, AuthorizationResponse>, FlowError> {
    let identity = scope_verified_email(conn, identity);
    let now = core.clock.now();
    let strategy = conn.connector.strategy();
    let (connection, policy) = (&conn.settings.id, &conn.settings.profile);
    let users = core.store.users.as_ref();
    // Mapped once; the pre-registration Actions see the identity as the upstream sent it.
    let mapped = profile::mapped(&identity, policy);
    let resolved = profile::resolve(users, connection, strategy, policy, &mapped).await?;
    let mut metadata = profile::NewUserMetadata::default();
    if let profile::Resolved::New(user_id) = &resolved
        && !core.settings.actions.pre_user_registration.is_empty()
    {
        match pre_user_registration(core, request, user_id, &identity, connection, browser).await? {
            Ok(m) => metadata = m,
            Err(denied) => return Ok(Err(denied)),
        }
    }
    // id_token_hint names who must sign in (OIDC Core 3.1.2.1): someone else gets
    // login_required, and nothing is recorded.
    if let Some(expected) = &request.hint_sub {
        let who = match &resolved {
            profile::Resolved::Existing(u) | profile::Resolved::Linked(u) => u.user_id.as_str(),
            profile::Resolved::New(id) => id.as_str(),
        };
        if who != expected {
            let reason = "signed in as another user than id_token_hint names";
            return Ok(Err(reply_error(core, request, ErrorCode::LoginRequired, reason)));
        }
    }
    let source = profile::Source { connection, strategy, policy };
    let user = profile::record_login(users, source, &mapped, resolved, metadata, now).await?;
    let amr = if identity.amr.is_empty() { vec!["ext".to_owned()] } else { identity.amr.clone() };
    // When the upstream says when the person authenticated, that is the auth_time (an
    // upstream session may be older than this login); never in the future.
    let auth_time = identity
        .authenticated_at
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(now, |d| d.as_secs().min(now));
    if let Some(max) = request.max_age
        && now.saturating_sub(auth_time) > max
    {
        return Err(FlowError::InvalidUpstreamResponse(format!(
            "the upstream authentication is older than max_age ({max} s)"
        )));
    }
    Ok(Ok(Login {
        user,
        connection: connection.clone(),
        auth_time,
        amr,
        upstream: identity.upstream_session,
        custom: Default::default(),
        // An IdP-initiated login was started by nobody in this browser: anyone holding such a
        // response can post it from any page (login CSRF). It gets its code, but opens no SSO
        // session and leaves the browser's own session alone, so no other application is
        // signed in as whoever the response names.
        session: if request.unsolicited { SessionPlan::Detached } else { SessionPlan::Open { sid: random_token(16) } },
        primary_user: None,
        prompt_none: false,
    }))
}

/// A connection that claims email domains vouches only for addresses in them: an IdP of
/// acme.example saying an @other.example address is verified is not believed (with linking
/// on, that would hand it other organisations' accounts).
fn scope_verified_email(conn: &Connection, mut identity: UpstreamIdentity) -> UpstreamIdentity {
    let domains = &conn.settings.domains;
    if identity.email_verified && !domains.is_empty() {
        let domain = identity.email.as_deref().and_then(|e| e.rsplit_once('@')).map(|(_, d)| d.to_ascii_lowercase());
        if !domain.is_some_and(|d| domains.contains(&d)) {
            tracing::info!(connection = %conn.settings.id, "email outside the connection's domains: not treated as verified");
            identity.email_verified = false;
        }
    }
    identity
}
