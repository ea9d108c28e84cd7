//! `/callback/{connection}`: the upstream sends the browser back. The transaction id comes
//! back as `state` (OAuth) or `RelayState` (SAML) and is consumed here, once, by the browser
//! that started it. An IdP-initiated response (no transaction) goes to [`unsolicited`].

use std::sync::Arc;

use gatehouse_connector::{CallbackInput, ConnectorError, UpstreamIdentity};

use super::binding::take_bound;
use super::error::connector_error;
use super::response::denied;
use super::{Browser, Event, FlowError, Outcome, resume};
use crate::connections::Connection;
use crate::oauth::AuthorizationRequest;
use crate::state::Core;
use crate::store::{ResponseMode, Step};
use crate::types::{ConnectionId, TransactionId};

pub async fn callback(
    core: &Core,
    connection: &ConnectionId,
    input: CallbackInput,
    browser: &Browser,
) -> Result<Outcome, FlowError> {
    let conn = core.connections.get(connection).cloned();
    // An IdP-initiated response names no transaction of ours. Only connections that opted in
    // take one, only by POST, and never when it names a live transaction (that login goes
    // the usual, browser-bound way).
    let unsolicited_ok =
        conn.as_ref().is_some_and(|c| c.settings.idp_initiated.is_some()) && matches!(input, CallbackInput::Form(_));
    let id = input.param("state").or_else(|| input.param("RelayState")).and_then(|s| TransactionId::parse(s).ok());
    let taken = match &id {
        Some(id) => take_bound(core, id, browser).await,
        None => Err(FlowError::UnknownTransaction),
    };
    let txn = match (taken, conn) {
        (Ok(txn), _) => txn,
        (Err(FlowError::UnknownTransaction), Some(conn)) if unsolicited_ok => {
            return unsolicited(core, conn, input, browser).await;
        }
        (Err(e), _) => return Err(e),
    };
    let Step::Upstream { connection: expected, state } = txn.step else { return Err(FlowError::UnknownTransaction) };
    if &expected != connection {
        return Err(FlowError::UnknownTransaction);
    }
    let conn = core.connections.get(&expected).ok_or(FlowError::ConnectionNotAllowed)?.clone();
    let ctx = super::connect::finish_context(core, &conn, Some(&txn.id));
    match conn.connector.finish(&ctx, state, input).await {
        Ok(identity) => {
            claim_single_use(core, &expected, &identity).await?;
            resume(core, &txn.request.into(), Event::Identified { conn, identity }, browser).await
        }
        Err(ConnectorError::Denied(reason)) => {
            Ok(Outcome::respond(denied(core, &txn.request.into(), connection, &reason)))
        }
        Err(e) => Err(rejected(core, &expected, e)),
    }
}

fn rejected(core: &Core, conn_id: &ConnectionId, e: ConnectorError) -> FlowError {
    if let ConnectorError::InvalidResponse(detail) = &e {
        tracing::warn!(connection = %conn_id, %detail, "rejected upstream response (possible attack)");
    }
    core.metrics.login(conn_id.as_str(), "failed");
    connector_error(e)
}

/// Record a message the upstream meant for one use (a SAML assertion ID) in the shared
/// replay cache; a second sight, on any node, refuses the login.
async fn claim_single_use(core: &Core, conn_id: &ConnectionId, identity: &UpstreamIdentity) -> Result<(), FlowError> {
    let Some(once) = &identity.single_use else { return Ok(()) };
    let ttl = once.until.duration_since(core.clock.system_time()).map_or(1, |d| d.as_secs().max(1));
    let key = format!("upstream:{}", once.id);
    if core.store.replay.insert_once(&key, ttl).await? {
        Ok(())
    } else {
        tracing::warn!(connection = %conn_id, "replayed upstream assertion refused");
        core.metrics.login(conn_id.as_str(), "failed");
        Err(FlowError::InvalidUpstreamResponse("this assertion was already used".into()))
    }
}

/// An IdP-initiated login: verified like any other (but it must answer no request), used
/// once, and answered with a code to the connection's configured client. No transaction is
/// stored: the request is the configured one, and [`resume`] takes it from here.
async fn unsolicited(
    core: &Core,
    conn: Arc<Connection>,
    input: CallbackInput,
    browser: &Browser,
) -> Result<Outcome, FlowError> {
    let conn_id = conn.settings.id.clone();
    let raw = conn.settings.idp_initiated.as_ref().ok_or(FlowError::UnknownTransaction)?;
    let target = core.settings.idp_initiated_target(&conn.settings, raw).map_err(FlowError::Misconfigured)?;
    let ctx = super::connect::finish_context(core, &conn, None);
    let Some(unsolicited) = conn.connector.unsolicited() else {
        return Err(FlowError::Misconfigured("this connection's connector takes no unsolicited responses".into()));
    };
    let identity = match unsolicited.finish_unsolicited(&ctx, input).await {
        Ok(identity) => identity,
        Err(e) => return Err(rejected(core, &conn_id, e)),
    };
    if identity.single_use.is_none() {
        // Without a one-time ID a captured response could be replayed at will.
        return Err(FlowError::Misconfigured("the connector gave no one-time ID for an unsolicited login".into()));
    }
    claim_single_use(core, &conn_id, &identity).await?;
    let request = AuthorizationRequest {
        client_id: target.client_id,
        redirect_uri: target.redirect_uri,
        scopes: target.scopes,
        state: None,
        nonce: None,
        code_challenge: None,
        response_mode: ResponseMode::Query,
        prompt_login: false,
        max_age: None,
        login_hint: None,
        connection: Some(conn_id.clone()),
        ui_locales: None,
        hint_sub: None,
        unsolicited: true,
    };
    tracing::info!(connection = %conn_id, client_id = %request.client_id, "IdP-initiated login accepted");
    resume(core, &request, Event::Identified { conn, identity }, browser).await
}
