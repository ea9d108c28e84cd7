//! The hosted credentials form (static users, later LDAP and database users): throttled per
//! username and address, checked by the connector, then handed to [`resume`](super::resume).

use gatehouse_connector::{CallbackInput, ConnectorError, Secret};

use super::binding::{check_csrf, load_bound, take_bound};
use super::error::connector_error;
use super::hosted::page_for;
use super::response::denied;
use super::{CredentialsResult, Event, FlowError, HostedPost, Outcome, resume};
use crate::state::Core;
use crate::store::Step;

/// The credentials form was posted.
pub async fn credentials(
    core: &Core,
    post: HostedPost<'_>,
    username: &str,
    password: Secret<String>,
) -> Result<CredentialsResult, FlowError> {
    let HostedPost { txn_id: id, browser, csrf } = post;
    let txn = load_bound(core, id, browser).await?;
    check_csrf(&txn, csrf)?;
    let Step::Credentials { connection, state, .. } = &txn.step else { return Err(FlowError::UnknownTransaction) };
    let conn = core.connections.get(connection).ok_or(FlowError::ConnectionNotAllowed)?.clone();
    let username = username.trim();
    if username.is_empty() || username.len() > 256 || password.expose().len() > 1024 {
        return Ok(CredentialsResult::Retry(page_for(core, &txn, Some("Enter your username and password."))?));
    }
    let login = &core.settings.login;
    // No peer address: every such request shares one per-address counter, which throttles
    // sooner, not later (fails closed).
    let ip = browser.ip.map(|i| i.to_string()).unwrap_or_default();
    // Count the attempt before checking the password, so a burst of parallel guesses cannot
    // all slip under the limit; a success resets the count. A second counter per address
    // bounds guessing across usernames.
    let counter = format!("failed-login:{connection}:{}:{ip}", username.to_lowercase());
    let per_ip = format!("failed-login-ip:{ip}");
    let attempts = core.store.counters.incr(&counter, login.lockout_window).await?;
    let ip_failures = core.store.counters.get(&per_ip).await?;
    if attempts > login.max_failed_attempts || ip_failures >= login.max_failed_attempts.saturating_mul(10) {
        core.metrics.login(connection.as_str(), "throttled");
        return Err(FlowError::TooManyAttempts);
    }
    let ctx = super::connect::finish_context(core, &conn, Some(&txn.id));
    let input = CallbackInput::Credentials { username: username.to_owned(), password };
    match conn.connector.finish(&ctx, state.clone(), input).await {
        Ok(identity) => {
            core.store.counters.reset(&counter).await?;
            // Take the transaction now: a double-submitted form completes one login, not two.
            let txn = take_bound(core, id, browser).await?;
            let event = Event::Identified { conn, identity };
            resume(core, &txn.request.into(), event, browser).await.map(CredentialsResult::Done)
        }
        Err(ConnectorError::InvalidCredentials) => {
            core.store.counters.incr(&per_ip, login.lockout_window).await?;
            core.metrics.login(connection.as_str(), "wrong_credentials");
            tracing::info!(%connection, client_ip = %ip, "wrong username or password");
            Ok(CredentialsResult::Retry(page_for(core, &txn, Some("Wrong username or password."))?))
        }
        Err(ConnectorError::Denied(reason)) => {
            let txn = take_bound(core, id, browser).await?;
            Ok(CredentialsResult::Done(Outcome::respond(denied(core, &txn.request.into(), connection, &reason))))
        }
        Err(e) => Err(connector_error(e)),
    }
}
