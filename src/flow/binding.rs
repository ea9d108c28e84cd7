//! The browser binding of a transaction (the `gh_browser` cookie, stored by hash) and the
//! per-transaction CSRF token of hosted forms.

use super::{Browser, FlowError};
use crate::oauth::AuthorizationRequest;
use crate::state::Core;
use crate::store::{Step, Taken, TransactionRecord};
use crate::types::{SecretHash, TransactionId, ct_eq, random_token};

/// The browser's binding cookie if it has a usable one, else a new value to set.
pub(super) struct Binding {
    pub value: String,
    /// `Some` when the cookie must be set.
    pub set: Option<String>,
}

impl Binding {
    pub fn of(browser: &Browser) -> Self {
        match browser.binding.as_deref().filter(|b| b.len() >= 32 && b.len() <= 64) {
            Some(b) => Self { value: b.to_owned(), set: None },
            None => {
                let b = random_token(32);
                Self { value: b.clone(), set: Some(b) }
            }
        }
    }
}

/// The one constructor of a new transaction, bound to `binding`.
pub(super) fn new_transaction(
    core: &Core,
    request: AuthorizationRequest,
    binding: &Binding,
    step: Step,
) -> TransactionRecord {
    TransactionRecord {
        id: TransactionId::random(),
        browser: SecretHash::of(&binding.value),
        request: request.into(),
        step,
        csrf: random_token(16),
        created_at: core.clock.now(),
    }
}

/// Store a transaction for what is left of its lifetime (counted from its creation).
pub(super) async fn save(core: &Core, txn: &TransactionRecord) -> Result<(), FlowError> {
    let remaining = (txn.created_at + core.settings.login.transaction_ttl).saturating_sub(core.clock.now()).max(1);
    core.store.transactions.put(txn, remaining).await?;
    Ok(())
}

/// The hash of the binding cookie this browser presented. Without a cookie, a value no
/// cookie hashes to, so a missing transaction still reads as missing (not as "elsewhere").
fn presented(browser: &Browser) -> SecretHash {
    browser.binding.as_deref().map_or(SecretHash([0; 32]), SecretHash::of)
}

/// Parse a transaction id from a path, `state` or `RelayState`.
pub(super) fn txn_id(raw: &str) -> Result<TransactionId, FlowError> {
    TransactionId::parse(raw).map_err(|_| FlowError::UnknownTransaction)
}

/// Load a transaction for a hosted step, checking that this browser started it.
pub(super) async fn load_bound(
    core: &Core,
    id: &TransactionId,
    browser: &Browser,
) -> Result<TransactionRecord, FlowError> {
    let txn = core.store.transactions.get(id).await?.ok_or(FlowError::UnknownTransaction)?;
    let h = presented(browser);
    if !ct_eq(&h.0, &txn.browser.0) {
        return Err(FlowError::BrowserMismatch);
    }
    Ok(txn)
}

/// Consume a transaction if this browser started it: one atomic store operation. Another
/// browser's attempt leaves it in place.
pub(super) async fn take_bound(
    core: &Core,
    id: &TransactionId,
    browser: &Browser,
) -> Result<TransactionRecord, FlowError> {
    let h = presented(browser);
    match core.store.transactions.take_bound(id, &h).await? {
        Taken::Mine(txn) => Ok(*txn),
        Taken::OtherBrowser => Err(FlowError::BrowserMismatch),
        Taken::Missing => Err(FlowError::UnknownTransaction),
    }
}

pub(super) fn check_csrf(txn: &TransactionRecord, csrf: Option<&str>) -> Result<(), FlowError> {
    match csrf {
        Some(c) if ct_eq(c.as_bytes(), txn.csrf.as_bytes()) => Ok(()),
        _ => Err(FlowError::Csrf),
    }
}
