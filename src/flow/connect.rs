//! Start the chosen connection's connector and remember where the login waits.

use gatehouse_connector::{FinishContext, Start, StartContext};

use super::binding::save;
use super::error::connector_error;
use super::{FlowError, Next, Outcome};
use crate::connections::Connection;
use crate::state::Core;
use crate::store::{Step, TransactionRecord};
use crate::types::TransactionId;

/// Run the connector's `start` and store the transaction at the step it leads to: the
/// upstream's callback, or the hosted credentials form.
pub(super) async fn connect(core: &Core, mut txn: TransactionRecord, conn: &Connection) -> Result<Outcome, FlowError> {
    let ctx = StartContext {
        callback_url: conn.callback_url.clone(),
        transaction_id: txn.id.to_string(),
        login_hint: txn.request.login_hint.clone(),
        force_login: txn.request.prompt_login,
        max_age: txn.request.max_age,
        now: core.clock.system_time(),
    };
    let (start, state) = conn.connector.start(&ctx).await.map_err(connector_error)?;
    let connection = conn.settings.id.clone();
    let next = match start {
        Start::Redirect { url } => {
            txn.step = Step::Upstream { connection, state };
            Next::Redirect(url)
        }
        Start::PostForm { action, fields } => {
            txn.step = Step::Upstream { connection, state };
            Next::PostForm { action, fields }
        }
        Start::Credentials(prompt) => {
            txn.step = Step::Credentials { connection, state, username_label: prompt.username_label };
            Next::Hosted { txn_id: txn.id.clone() }
        }
    };
    save(core, &txn).await?;
    Ok(Outcome::next(next))
}

/// What a connector's `finish` is told: where the upstream came back, which transaction
/// (none for an IdP-initiated response), and now.
pub(super) fn finish_context(core: &Core, conn: &Connection, txn: Option<&TransactionId>) -> FinishContext {
    FinishContext {
        callback_url: conn.callback_url.clone(),
        // Only an IdP-initiated response has no transaction; its `finish_unsolicited` does
        // not read the id, and no RelayState equals the empty one that `finish` would compare.
        transaction_id: txn.map(ToString::to_string).unwrap_or_default(),
        now: core.clock.system_time(),
    }
}
