//! `/authorize`: validate, answer silently from a live session, or start a transaction.

use super::binding::{Binding, new_transaction, save};
use super::connect::connect;
use super::hosted::connection_for_email;
use super::response::error_response;
use super::{AuthorizeFailure, Browser, Event, FlowError, Next, Outcome, resume};
use crate::oauth::ErrorCode;
use crate::oauth::Params;
use crate::oauth::authorize::{AuthorizeError, Prompt, ValidRequest, validate};
use crate::oauth::resource::verify_id_token_hint;
use crate::session;
use crate::settings::ClientSettings;
use crate::state::Core;
use crate::store::{Step, StoreError};

/// `/authorize`: validate, answer silently from a live session, or start a transaction.
pub async fn authorize(core: &Core, params: &Params, browser: &Browser) -> Result<Outcome, AuthorizeFailure> {
    let v = validate(&core.settings, params)?;
    let issuer = core.settings.issuer.as_str();
    let redirect_err = |code, d| AuthorizeError::Redirect(v.error(code, d));
    let unavailable = |error: StoreError, v: &ValidRequest<'_>| AuthorizeFailure::Store {
        error,
        back: Box::new(v.error(ErrorCode::TemporarilyUnavailable, "the service is temporarily unavailable")),
    };
    let hint = match &v.id_token_hint {
        None => None,
        Some(h) => {
            let claims = verify_id_token_hint(core, h)
                .map_err(|_| redirect_err(ErrorCode::InvalidRequest, "id_token_hint is invalid"))?;
            if !claims.is_for(&v.request.client_id) {
                return Err(
                    redirect_err(ErrorCode::InvalidRequest, "id_token_hint was issued to another client").into()
                );
            }
            Some(claims)
        }
    };
    let now = core.clock.now();
    let client = v.client;
    let live = session::find(&core.store, browser.session.as_deref(), now).await.map_err(|e| unavailable(e, &v))?;
    let usable = live.filter(|s| {
        client.connections.contains(&s.connection)
            && v.request.connection.as_ref().is_none_or(|c| c == &s.connection)
            && v.request.max_age.is_none_or(|max| now.saturating_sub(s.auth_time) <= max)
            && hint.as_ref().is_none_or(|h| h.sub == s.user_id.as_str())
    });
    let login_required = |d| Ok(Outcome::respond(error_response(v.error(ErrorCode::LoginRequired, d), issuer)));
    match (v.prompt, usable) {
        // prompt=none never shows a page: without a session fresh enough, login_required.
        (Prompt::None, None) => return login_required("no live session for this request"),
        (Prompt::None, Some(_)) if v.request.prompt_login => {
            return login_required("max_age=0 with prompt=none cannot be met");
        }
        (Prompt::None | Prompt::Default, Some(session)) if !v.request.prompt_login => {
            // Silent re-authentication enters the same dispatcher as every other login.
            let event = Event::Session { session, prompt_none: v.prompt == Prompt::None };
            return resume(core, &v.request, event, browser).await.map_err(|e| match e {
                FlowError::Store(e) => unavailable(e, &v),
                _ => redirect_err(ErrorCode::ServerError, "the login could not be completed").into(),
            });
        }
        _ => {}
    }
    let back = v.error(ErrorCode::TemporarilyUnavailable, "the service is temporarily unavailable");
    let mut v = v;
    v.request.hint_sub = hint.map(|h| h.sub);
    start_transaction(core, client, v, browser).await.map_err(|e| match e {
        FlowError::Store(error) => AuthorizeFailure::Store { error, back: Box::new(back) },
        other => AuthorizeFailure::Login(other),
    })
}

/// Store a new transaction and go to its first step: the one connection this request can
/// use (named, the client's only one, or claimed by the `login_hint`'s domain), or the
/// hosted chooser.
async fn start_transaction(
    core: &Core,
    client: &ClientSettings,
    v: ValidRequest<'_>,
    browser: &Browser,
) -> Result<Outcome, FlowError> {
    let binding = Binding::of(browser);
    let chosen = v
        .request
        .connection
        .clone()
        .or_else(|| match client.connections.as_slice() {
            [only] => Some(only.clone()),
            _ => None,
        })
        // A login_hint in a claimed domain skips the chooser (identifier first).
        .or_else(|| v.request.login_hint.as_deref().and_then(|h| connection_for_email(core, client, h)));
    let txn = new_transaction(core, v.request, &binding, Step::ChooseConnection);
    let mut outcome = match chosen {
        Some(id) => connect(core, txn, core.connections.get(&id).ok_or(FlowError::ConnectionNotAllowed)?).await?,
        None => {
            save(core, &txn).await?;
            Outcome::next(Next::Hosted { txn_id: txn.id })
        }
    };
    outcome.set_binding = binding.set;
    Ok(outcome)
}
