//! The hosted pages of a transaction: the connection chooser and identifier first (home
//! realm discovery by email domain). The credentials form's post is `credentials.rs`.

use super::binding::{check_csrf, load_bound};
use super::connect::connect;
use super::{Browser, CredentialsResult, FlowError, HostedPage, HostedPost, Outcome};
use crate::settings::ClientSettings;
use crate::state::Core;
use crate::store::{Step, TransactionRecord};
use crate::types::{ConnectionId, TransactionId};

/// The hosted page of a transaction.
pub async fn hosted(core: &Core, txn_id: &TransactionId, browser: &Browser) -> Result<HostedPage, FlowError> {
    let txn = load_hosted(core, txn_id, browser).await?;
    page_for(core, &txn, None)
}

/// A transaction a hosted page may act on: this browser's, and not paused at an Action.
async fn load_hosted(core: &Core, id: &TransactionId, browser: &Browser) -> Result<TransactionRecord, FlowError> {
    let txn = load_bound(core, id, browser).await?;
    if matches!(txn.step, Step::Actions { .. }) {
        return Err(FlowError::UnknownTransaction);
    }
    Ok(txn)
}

/// The transaction a hosted form was posted for, its CSRF token checked.
async fn load_form(core: &Core, post: HostedPost<'_>) -> Result<TransactionRecord, FlowError> {
    let txn = load_hosted(core, post.txn_id, post.browser).await?;
    check_csrf(&txn, post.csrf)?;
    Ok(txn)
}

fn client<'a>(core: &'a Core, txn: &TransactionRecord) -> Result<&'a ClientSettings, FlowError> {
    core.settings.known_clients().get(&txn.request.client_id).ok_or(FlowError::UnknownClient)
}

pub(super) fn page_for(
    core: &Core,
    txn: &TransactionRecord,
    error: Option<&'static str>,
) -> Result<HostedPage, FlowError> {
    let client = client(core, txn)?;
    let client_name = client.name.clone();
    Ok(match &txn.step {
        Step::Credentials { connection, username_label, .. } => HostedPage::Credentials {
            txn_id: txn.id.clone(),
            csrf: txn.csrf.clone(),
            client_name,
            connection_name: core.settings.connection(connection).map(|c| c.display_name.clone()).unwrap_or_default(),
            username_label: username_label.clone(),
            login_hint: txn.request.login_hint.clone(),
            error,
        },
        _ => {
            let allowed: Vec<_> =
                client.connections.iter().filter_map(|id| core.settings.connection(id).map(|c| (id, c))).collect();
            HostedPage::Chooser {
                txn_id: txn.id.clone(),
                csrf: txn.csrf.clone(),
                client_name,
                connections: allowed.iter().map(|(id, c)| ((*id).clone(), c.display_name.clone())).collect(),
                identify: allowed.iter().any(|(_, c)| !c.domains.is_empty()),
                error,
            }
        }
    })
}

/// The person picked a connection on the chooser.
pub async fn choose(core: &Core, post: HostedPost<'_>, connection: &ConnectionId) -> Result<Outcome, FlowError> {
    let txn = load_form(core, post).await?;
    if !client(core, &txn)?.connections.contains(connection) {
        return Err(FlowError::ConnectionNotAllowed);
    }
    let conn = core.connections.get(connection).ok_or(FlowError::ConnectionNotAllowed)?;
    connect(core, txn, conn).await
}

/// Home realm discovery: the connection of this client that claims the email's domain.
pub(super) fn connection_for_email(core: &Core, client: &ClientSettings, email: &str) -> Option<ConnectionId> {
    let (_, domain) = email.trim().rsplit_once('@')?;
    let domain = domain.to_ascii_lowercase();
    client
        .connections
        .iter()
        .find(|id| core.settings.connection(id).is_some_and(|c| c.domains.contains(&domain)))
        .cloned()
}

/// Identifier first: the person typed their email on the chooser; a connection that claims
/// its domain takes them straight to their organisation's sign-in, with the email as hint.
pub async fn identify(core: &Core, post: HostedPost<'_>, email: &str) -> Result<CredentialsResult, FlowError> {
    let mut txn = load_form(core, post).await?;
    let email = email.trim();
    if email.len() > 256 {
        return Ok(CredentialsResult::Retry(page_for(core, &txn, Some("That email address is too long."))?));
    }
    match connection_for_email(core, client(core, &txn)?, email) {
        Some(id) => {
            let conn = core.connections.get(&id).ok_or(FlowError::ConnectionNotAllowed)?;
            txn.request.login_hint = Some(email.to_owned());
            connect(core, txn, conn).await.map(CredentialsResult::Done)
        }
        None => Ok(CredentialsResult::Retry(page_for(
            core,
            &txn,
            Some("Your organisation's sign-in is not set up here; choose another way to sign in."),
        )?)),
    }
}
