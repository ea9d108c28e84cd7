//! Logout: RP-Initiated Logout 1.0 at `/logout`, Auth0's `/v2/logout`, and SAML Single
//! Logout with the upstream (`/saml/{connection}/slo`, both directions).

use gatehouse_connector::{ConnectorError, Start, Url};

use super::error::connector_error;
use super::{Browser, FlowError};
use crate::oauth::resource::verify_id_token_hint;
use crate::oauth::{OAuthError, Params};
use crate::session;
use crate::state::Core;
use crate::store::SessionRecord;
use crate::types::{ClientId, ConnectionId, SecretHash, ct_eq, random_token};

/// RP-initiated logout: what to do after the session is closed.
pub enum LogoutNext {
    Redirect(Url),
    SignedOut,
    /// No ID token names who asks: the person confirms first (a link on any page must not
    /// sign them out). The fields go back in the confirmation form.
    Confirm(Vec<(String, String)>),
}

/// `/logout` (RP-Initiated Logout 1.0): validate the hint and the redirect, close the session.
/// Without a hint, a GET only asks for confirmation; the confirmation is a same-site POST.
pub async fn logout(core: &Core, p: &Params, confirmed: bool, browser: &Browser) -> Result<LogoutNext, FlowError> {
    let hint = match p.get("id_token_hint") {
        Some(h) => Some(verify_id_token_hint(core, h).map_err(FlowError::Authorize)?),
        None => None,
    };
    let client_id = match (p.get("client_id"), hint.as_ref().and_then(|h| h.client_id())) {
        (Some(c), Some(h)) if c != h => {
            return Err(FlowError::Authorize(OAuthError::invalid_request("client_id does not match id_token_hint")));
        }
        (Some(c), _) => Some(c),
        (None, h) => h,
    };
    let client_id = client_id
        .map(ClientId::parse)
        .transpose()
        .map_err(|e| FlowError::Authorize(OAuthError::invalid_request(e.0)))?;
    let redirect = match p.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let client = client_id.as_ref().and_then(|c| core.settings.known_clients().get(c)).ok_or_else(|| {
                FlowError::Authorize(OAuthError::invalid_request(
                    "post_logout_redirect_uri needs id_token_hint or client_id",
                ))
            })?;
            let registered = client.post_logout_redirect_uris.iter().find(|r| r.as_str() == uri).ok_or_else(|| {
                FlowError::Authorize(OAuthError::invalid_request("post_logout_redirect_uri is not registered"))
            })?;
            let mut url = registered.url();
            if let Some(state) = p.get("state") {
                url.query_pairs_mut().append_pair("state", state);
            }
            Some(url)
        }
    };
    if hint.is_none()
        && let Some(cookie) = browser.session.as_deref()
    {
        if !confirmed {
            let keep = ["post_logout_redirect_uri", "client_id", "state"];
            let mut fields = p
                .pairs()
                .iter()
                .filter(|(k, _)| keep.contains(&k.as_str()))
                .cloned()
                .collect::<Vec<(String, String)>>();
            fields.push(("csrf".to_owned(), logout_csrf(cookie)));
            return Ok(LogoutNext::Confirm(fields));
        }
        match p.get("csrf") {
            Some(c) if ct_eq(c.as_bytes(), logout_csrf(cookie).as_bytes()) => {}
            _ => return Err(FlowError::Csrf),
        }
    }
    end_session(core, browser, hint.as_ref().map(|h| h.sub.as_str()), redirect, Upstream::End).await
}

/// Whether a logout also ends the upstream session, where the connection offers logout.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Upstream {
    End,
    Keep,
}

/// Auth0's `GET /v2/logout?client_id=…&returnTo=…[&federated]`, what Auth0's SDKs call: it
/// ends the session at once (Auth0's contract; no confirmation page, so a link on another
/// site can sign the person out, as it can at Auth0) and sends the browser to `returnTo`
/// only when it is one of that client's allowed logout URLs, character for character;
/// anything else ends on the signed-out page. `federated` ends the upstream session too,
/// where the connection supports logout.
pub async fn auth0_logout(core: &Core, p: &Params, browser: &Browser) -> Result<LogoutNext, FlowError> {
    let client =
        p.get("client_id").and_then(|c| ClientId::parse(c).ok()).and_then(|c| core.settings.known_clients().get(&c));
    let redirect = match p.get("returnTo") {
        None => None,
        Some(uri) => {
            let allowed = client.and_then(|c| c.post_logout_redirect_uris.iter().find(|r| r.as_str() == uri));
            if allowed.is_none() {
                tracing::info!(client_id = ?client.map(|c| c.id.as_str()), "returnTo is not an allowed logout URL of the client; signed-out page instead");
            }
            allowed.map(|r| r.url())
        }
    };
    // `federated` is a flag: Auth0's SDKs send it without a value (`&federated`), which
    // `Params::get` reads as absent.
    let federated = p.pairs().iter().any(|(k, _)| k == "federated");
    let upstream = if federated { Upstream::End } else { Upstream::Keep };
    end_session(core, browser, None, redirect, upstream).await
}

/// Close this browser's session (unless `hint_sub` names another user), then go upstream
/// when asked and the connection supports logout, else to `redirect` or the signed-out page.
async fn end_session(
    core: &Core,
    browser: &Browser,
    hint_sub: Option<&str>,
    redirect: Option<Url>,
    upstream: Upstream,
) -> Result<LogoutNext, FlowError> {
    if let Some(cookie) = browser.session.as_deref() {
        let live = session::find(&core.store, Some(cookie), core.clock.now()).await?;
        // A hint for another user does not end this browser's session.
        let matches = match (&live, hint_sub) {
            (Some(s), Some(h)) => s.user_id.as_str() == h,
            _ => true,
        };
        if matches {
            session::close(&core.store, cookie).await?;
            if upstream == Upstream::End
                && let Some(s) = live
                && let Some(next) = upstream_logout(core, &s, redirect.as_ref()).await?
            {
                return Ok(next);
            }
        }
    }
    Ok(redirect.map_or(LogoutNext::SignedOut, LogoutNext::Redirect))
}

/// The CSRF token of the logout confirmation form, derived from the browser's session cookie
/// (a secret no other site can read; the token reveals nothing of it): a form posted from
/// elsewhere, or carrying another session's token, signs nobody out. SameSite=Lax already
/// keeps the cookie off cross-site POSTs; this holds where SameSite does not (same-site
/// subdomains, older browsers).
fn logout_csrf(session_cookie: &str) -> String {
    SecretHash::of(&format!("logout-csrf:{session_cookie}")).to_hex()
}

/// What a connector is told about an upstream logout: where the upstream sends the browser
/// back (`/saml/{connection}/slo`), the relay value, and now.
fn logout_context(
    core: &Core,
    conn: &ConnectionId,
    relay: String,
) -> Result<gatehouse_connector::LogoutContext, FlowError> {
    let return_url = Url::parse(&core.settings.issuer.join(&format!("/saml/{conn}/slo")))
        .map_err(|e| FlowError::Internal(e.to_string()))?;
    Ok(gatehouse_connector::LogoutContext { return_url, relay, now: core.clock.system_time() })
}

/// After the local session closed: when its upstream offers logout, send the browser there
/// first; it comes back to [`finish_upstream_logout`]. A failing upstream never keeps the
/// person signed in here: the local logout stands and the upstream one is skipped.
async fn upstream_logout(
    core: &Core,
    s: &SessionRecord,
    redirect: Option<&Url>,
) -> Result<Option<LogoutNext>, FlowError> {
    let (Some(facts), Some(conn)) = (&s.upstream, core.connections.get(&s.connection)) else { return Ok(None) };
    let Some(logout) = conn.connector.logout() else { return Ok(None) };
    let ctx = logout_context(core, &s.connection, random_token(24))?;
    match logout.start_logout(&ctx, facts).await {
        Ok(Some((Start::Redirect { url }, state))) => {
            let record = crate::store::LogoutRecord {
                id: ctx.relay.clone(),
                connection: s.connection.clone(),
                connector_state: state,
                redirect: redirect.map(Url::to_string),
            };
            core.store.logouts.put(&record, core.settings.login.transaction_ttl).await?;
            tracing::info!(connection = %s.connection, "single logout sent to the upstream");
            Ok(Some(LogoutNext::Redirect(url)))
        }
        Ok(_) => Ok(None),
        Err(e) => {
            tracing::warn!(connection = %s.connection, error = %e, "upstream logout could not start; signed out locally");
            Ok(None)
        }
    }
}

/// `/saml/{connection}/slo` with a request: the upstream ends its user's session (a SAML
/// IdP-initiated logout through the browser). This browser's session ends when it is the
/// one named; the answer goes back to the upstream. Returns where the browser goes and
/// whether its session was closed.
pub async fn answer_upstream_logout(
    core: &Core,
    conn_id: &ConnectionId,
    raw_query: &str,
    browser: &Browser,
) -> Result<(Url, bool), FlowError> {
    let conn = core.connections.get(conn_id).ok_or(FlowError::ConnectionNotAllowed)?.clone();
    let live = session::find(&core.store, browser.session.as_deref(), core.clock.now()).await?;
    let facts = live.as_ref().filter(|s| &s.connection == conn_id).and_then(|s| s.upstream.as_ref());
    let ctx = logout_context(core, conn_id, String::new())?;
    let logout = conn.connector.logout().ok_or(FlowError::ConnectionNotAllowed)?;
    let answer = match logout.upstream_logout_request(&ctx, raw_query, facts).await {
        Ok(a) => a,
        Err(e) => {
            tracing::warn!(connection = %conn_id, error = %e, "rejected upstream logout request");
            return Err(connector_error(e));
        }
    };
    if answer.ends_session
        && let Some(cookie) = browser.session.as_deref()
    {
        session::close(&core.store, cookie).await?;
        tracing::info!(connection = %conn_id, "session ended by the upstream's logout request");
    }
    match answer.next {
        Start::Redirect { url } => Ok((url, answer.ends_session)),
        _ => Err(FlowError::Internal("an upstream logout answer that is not a redirect".into())),
    }
}

/// `/saml/{connection}/slo`: the upstream's answer to our logout request. The local session
/// is already closed; this checks the answer and sends the browser where logout ends.
pub async fn finish_upstream_logout(
    core: &Core,
    connection: &ConnectionId,
    raw_query: &str,
) -> Result<LogoutNext, FlowError> {
    let relay = url::form_urlencoded::parse(raw_query.as_bytes())
        .find(|(k, _)| k == "RelayState")
        .map(|(_, v)| v.into_owned())
        .filter(|v| v.len() <= 64)
        .ok_or(FlowError::UnknownTransaction)?;
    let record = core.store.logouts.take(&relay).await?.ok_or(FlowError::UnknownTransaction)?;
    if &record.connection != connection {
        return Err(FlowError::UnknownTransaction);
    }
    let conn = core.connections.get(&record.connection).ok_or(FlowError::ConnectionNotAllowed)?;
    let ctx = logout_context(core, &record.connection, relay)?;
    let logout = conn.connector.logout().ok_or(FlowError::ConnectionNotAllowed)?;
    match logout.finish_logout(&ctx, record.connector_state, raw_query).await {
        Ok(()) => tracing::info!(connection = %record.connection, "single logout completed"),
        Err(ConnectorError::Denied(status)) => {
            tracing::warn!(connection = %record.connection, %status, "the upstream did not end its session")
        }
        Err(e) => {
            tracing::warn!(connection = %record.connection, error = %e, "rejected upstream logout response");
            return Err(connector_error(e));
        }
    }
    let next = record.redirect.as_deref().and_then(|u| Url::parse(u).ok());
    Ok(next.map_or(LogoutNext::SignedOut, LogoutNext::Redirect))
}
