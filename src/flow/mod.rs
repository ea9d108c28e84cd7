//! The login transaction, from `/authorize` to the authorization response.
//!
//! Steps never call one another's HTTP routes: every step returns an [`Outcome`], and
//! [`complete`] alone orders what happens once an upstream identity is known (profile ->
//! session -> code). Later steps (Actions, MFA) are one more branch there. This module
//! builds no HTTP response: `src/http` renders what it returns.

use std::net::IpAddr;

use gatehouse_connector::{
    CallbackInput, ConnectorError, FinishContext, Secret, Start, StartContext, UpstreamIdentity, Url,
};

use crate::connections::Connection;
use crate::oauth::authorize::{AuthorizeError, ErrorResponse, Prompt, ValidRequest, allowed_connection, validate};
use crate::oauth::resource::verify_id_token_hint;
use crate::oauth::token::issue_code;
use crate::oauth::{ErrorCode, OAuthError, Params};
use crate::profile::{self, ProfileError};
use crate::session;
use crate::state::Core;
use crate::store::{ResponseMode, SessionRecord, StoreError, TransactionRecord};
use crate::types::{ConnectionId, RedirectUri, SecretHash, ct_eq, random_token};

/// What the browser brought that matters to a login.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    /// The transaction-binding cookie.
    pub binding: Option<String>,
    /// The SSO session cookie.
    pub session: Option<String>,
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
    /// The host the request was addressed to.
    pub hostname: Option<String>,
}

/// The response to a client's authorization request, success or error.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationResponse {
    pub redirect_uri: RedirectUri,
    pub mode: ResponseMode,
    pub params: Vec<(String, String)>,
}

impl AuthorizationResponse {
    /// The redirect URL for `response_mode=query`.
    pub fn url(&self) -> Url {
        let mut url = self.redirect_uri.url();
        url.query_pairs_mut().extend_pairs(self.params.iter());
        url
    }
}

#[derive(Debug, Clone)]
pub enum Next {
    /// Send the authorization response to the client.
    Respond(AuthorizationResponse),
    /// Show transaction `id`'s hosted page (connection chooser or credentials form).
    Hosted { txn_id: String },
    /// Send the browser to the upstream.
    Redirect(Url),
    /// Render a form that posts itself to the upstream.
    PostForm { action: Url, fields: Vec<(String, String)> },
}

/// A step's result, with the cookies it changes.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub next: Next,
    pub set_binding: Option<String>,
    pub set_session: Option<String>,
}

impl Outcome {
    fn next(next: Next) -> Self {
        Self { next, set_binding: None, set_session: None }
    }
}

/// What a hosted page shows.
#[derive(Debug, Clone)]
pub enum HostedPage {
    Chooser {
        txn_id: String,
        csrf: String,
        client_name: String,
        connections: Vec<(ConnectionId, String)>,
        /// Ask for an email first: some connection claims email domains.
        identify: bool,
        error: Option<&'static str>,
    },
    Credentials {
        txn_id: String,
        csrf: String,
        client_name: String,
        connection_name: String,
        username_label: String,
        login_hint: Option<String>,
        error: Option<&'static str>,
    },
}

/// Why a browser step failed. Each becomes an error page; none redirects.
#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("this login has expired or was already completed")]
    UnknownTransaction,
    #[error("this login was started in another browser")]
    BrowserMismatch,
    #[error("the form has expired; start the login again")]
    Csrf,
    #[error("that connection is not available for this application")]
    ConnectionNotAllowed,
    #[error("too many failed attempts; try again later")]
    TooManyAttempts,
    #[error("the identity provider's response was invalid")]
    InvalidUpstreamResponse(String),
    #[error("the identity provider is unavailable")]
    UpstreamUnavailable(String),
    #[error("the connection is misconfigured")]
    Misconfigured(String),
    #[error("the service is temporarily unavailable")]
    Store(#[from] StoreError),
    #[error("the request could not be completed")]
    Internal(String),
    #[error("{0}")]
    Authorize(OAuthError),
    /// Shown to the person with a way back to the application (`back`, an `access_denied`
    /// authorization response); `reason` is for the log.
    #[error("the sign-in was refused")]
    Denied { reason: String, back: Box<AuthorizationResponse> },
    /// An Action threw, ran out of time or memory (the action's name; details are logged).
    #[error("a sign-in rule failed")]
    ActionFailed(String),
}

impl From<ProfileError> for FlowError {
    fn from(e: ProfileError) -> Self {
        match e {
            ProfileError::Store(s) => Self::Store(s),
            ProfileError::BadSubject(v) => Self::InvalidUpstreamResponse(v.0.into()),
            ProfileError::Conflict(id) => {
                tracing::warn!(user_id = %id, "an identity of another connection claims an existing user id; refused");
                Self::InvalidUpstreamResponse(format!("user id {id} belongs to another connection"))
            }
        }
    }
}

impl From<OAuthError> for FlowError {
    fn from(e: OAuthError) -> Self {
        match e.code {
            ErrorCode::TemporarilyUnavailable => Self::Store(StoreError::Unavailable(e.description.into())),
            _ => Self::Authorize(e),
        }
    }
}

/// An error to deliver to the client's redirect URI, with `state` and `iss`.
pub fn error_response(e: ErrorResponse, issuer: &str) -> AuthorizationResponse {
    let mut params = vec![("error".to_owned(), e.error.code.as_str().to_owned())];
    params.push(("error_description".into(), e.error.description.into_owned()));
    if let Some(state) = e.state {
        params.push(("state".into(), state));
    }
    params.push(("iss".into(), issuer.to_owned()));
    AuthorizationResponse { redirect_uri: e.redirect_uri, mode: e.response_mode, params }
}

/// Why `/authorize` could not go on.
#[derive(Debug)]
pub enum AuthorizeFailure {
    /// The request itself: an error page or an error response to the client.
    Request(AuthorizeError),
    /// Starting the login failed (the connection's upstream, most often): an error page.
    Login(FlowError),
}

impl From<AuthorizeError> for AuthorizeFailure {
    fn from(e: AuthorizeError) -> Self {
        Self::Request(e)
    }
}

/// An error response to the client that sent `request`, with its `state` and our `iss`.
fn reply_error(
    core: &Core,
    request: &crate::store::AuthorizationRequest,
    code: ErrorCode,
    description: impl Into<std::borrow::Cow<'static, str>>,
) -> AuthorizationResponse {
    let e = ErrorResponse {
        redirect_uri: request.redirect_uri.clone(),
        response_mode: request.response_mode,
        state: request.state.clone(),
        error: OAuthError::new(code, description),
    };
    error_response(e, core.settings.issuer.as_str())
}

/// `/authorize`: validate, answer silently from a live session, or start a transaction.
pub async fn authorize(core: &Core, params: &Params, browser: &Browser) -> Result<Outcome, AuthorizeFailure> {
    let v = validate(&core.settings, params)?;
    let issuer = core.settings.issuer.as_str();
    let redirect_err = |code, d| AuthorizeError::Redirect(v.error(code, d));
    let store_err = |e: StoreError| {
        tracing::error!(error = %e, "store error at authorize");
        AuthorizeError::Redirect(v.error(ErrorCode::TemporarilyUnavailable, "the service is temporarily unavailable"))
    };
    let hint = match &v.id_token_hint {
        None => None,
        Some(h) => {
            let claims = verify_id_token_hint(core, h)
                .map_err(|_| redirect_err(ErrorCode::InvalidRequest, "id_token_hint is invalid"))?;
            if !claims.is_for(v.request.client_id.as_str()) {
                return Err(
                    redirect_err(ErrorCode::InvalidRequest, "id_token_hint was issued to another client").into()
                );
            }
            Some(claims)
        }
    };
    let now = core.clock.now();
    let client = core
        .settings
        .client(v.request.client_id.as_str())
        .ok_or_else(|| AuthorizeError::Page(OAuthError::invalid_client("unknown client_id")))?;
    let live = session::find(&core.store, browser.session.as_deref(), now).await.map_err(store_err)?;
    let usable = live.filter(|s| {
        client.connections.contains(&s.connection)
            && v.request.connection.as_ref().is_none_or(|c| c == &s.connection)
            && v.request.max_age.is_none_or(|max| now.saturating_sub(s.auth_time) <= max)
            && hint.as_ref().is_none_or(|h| h.sub == s.user_id.as_str())
    });
    match (v.prompt, usable) {
        // prompt=none never shows a page: without a session fresh enough, login_required.
        (Prompt::None, None) => {
            return Ok(Outcome::next(Next::Respond(error_response(
                v.error(ErrorCode::LoginRequired, "no live session for this request"),
                issuer,
            ))));
        }
        (Prompt::None, Some(_)) if v.request.prompt_login => {
            return Ok(Outcome::next(Next::Respond(error_response(
                v.error(ErrorCode::LoginRequired, "max_age=0 with prompt=none cannot be met"),
                issuer,
            ))));
        }
        (Prompt::None | Prompt::Default, Some(s)) if !v.request.prompt_login => {
            let prompt_none = v.prompt == Prompt::None;
            let outcome = silent(core, &v.request, &s, prompt_none, browser).await.map_err(|e| match e {
                FlowError::Store(e) => store_err(e),
                _ => redirect_err(ErrorCode::ServerError, "the login could not be completed"),
            })?;
            return Ok(outcome);
        }
        _ => {}
    }
    let unavailable = v.error(ErrorCode::TemporarilyUnavailable, "the service is temporarily unavailable");
    let mut v = v;
    v.request.hint_sub = hint.map(|h| h.sub);
    start_transaction(core, v, browser).await.map_err(|e| match e {
        FlowError::Store(e) => {
            tracing::error!(error = %e, "store error at authorize");
            AuthorizeFailure::Request(AuthorizeError::Redirect(unavailable))
        }
        other => AuthorizeFailure::Login(other),
    })
}

async fn start_transaction(core: &Core, v: ValidRequest, browser: &Browser) -> Result<Outcome, FlowError> {
    let (binding, set_binding) = match browser.binding.as_deref().filter(|b| b.len() >= 32 && b.len() <= 64) {
        Some(b) => (b.to_owned(), None),
        None => {
            let b = random_token(32);
            (b.clone(), Some(b))
        }
    };
    let client = core.settings.client(v.request.client_id.as_str()).ok_or(FlowError::ConnectionNotAllowed)?;
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
    let txn = TransactionRecord {
        id: random_token(24),
        browser: SecretHash::of(&binding),
        request: v.request,
        connection: None,
        connector_state: None,
        credentials_label: None,
        csrf: random_token(16),
        created_at: core.clock.now(),
        resume: None,
    };
    let mut outcome = match chosen {
        Some(conn) => connect(core, txn, &conn).await?,
        None => {
            core.store.transactions.put(&txn, core.settings.login.transaction_ttl).await?;
            Outcome::next(Next::Hosted { txn_id: txn.id })
        }
    };
    outcome.set_binding = set_binding;
    Ok(outcome)
}

/// Start the chosen connection's connector and remember its state on the transaction.
async fn connect(core: &Core, mut txn: TransactionRecord, conn_id: &ConnectionId) -> Result<Outcome, FlowError> {
    let conn = core.connections.get(conn_id).ok_or(FlowError::ConnectionNotAllowed)?;
    let ctx = StartContext {
        callback_url: conn.callback_url.clone(),
        transaction_id: txn.id.clone(),
        login_hint: txn.request.login_hint.clone(),
        force_login: txn.request.prompt_login,
        max_age: txn.request.max_age,
    };
    let (start, state) = conn.connector.start(&ctx).await.map_err(connector_error)?;
    txn.connection = Some(conn_id.clone());
    txn.connector_state = Some(state);
    let next = match start {
        Start::Redirect { url } => Next::Redirect(url),
        Start::PostForm { action, fields } => Next::PostForm { action, fields },
        Start::Credentials(prompt) => {
            txn.credentials_label = Some(prompt.username_label);
            Next::Hosted { txn_id: txn.id.clone() }
        }
    };
    let remaining = (txn.created_at + core.settings.login.transaction_ttl).saturating_sub(core.clock.now()).max(1);
    core.store.transactions.put(&txn, remaining).await?;
    Ok(Outcome::next(next))
}

fn connector_error(e: ConnectorError) -> FlowError {
    match e {
        ConnectorError::InvalidResponse(d) => FlowError::InvalidUpstreamResponse(d),
        ConnectorError::Upstream(d) => FlowError::UpstreamUnavailable(d),
        ConnectorError::Misconfigured(d) => FlowError::Misconfigured(d),
        other => FlowError::Internal(other.to_string()),
    }
}

/// Load a transaction for a hosted step, checking that this browser started it.
async fn load_bound(core: &Core, txn_id: &str, browser: &Browser) -> Result<TransactionRecord, FlowError> {
    if txn_id.len() > 64 {
        return Err(FlowError::UnknownTransaction);
    }
    let txn = core.store.transactions.get(txn_id).await?.ok_or(FlowError::UnknownTransaction)?;
    check_binding(&txn, browser)?;
    Ok(txn)
}

fn check_binding(txn: &TransactionRecord, browser: &Browser) -> Result<(), FlowError> {
    let presented = browser.binding.as_deref().map(SecretHash::of);
    match presented {
        Some(h) if ct_eq(&h.0, &txn.browser.0) => Ok(()),
        _ => Err(FlowError::BrowserMismatch),
    }
}

fn check_csrf(txn: &TransactionRecord, csrf: Option<&str>) -> Result<(), FlowError> {
    match csrf {
        Some(c) if ct_eq(c.as_bytes(), txn.csrf.as_bytes()) => Ok(()),
        _ => Err(FlowError::Csrf),
    }
}

fn client_name(core: &Core, txn: &TransactionRecord) -> String {
    core.settings.client(txn.request.client_id.as_str()).map(|c| c.name.clone()).unwrap_or_default()
}

/// The hosted page of a transaction.
pub async fn hosted(core: &Core, txn_id: &str, browser: &Browser) -> Result<HostedPage, FlowError> {
    let txn = load_bound(core, txn_id, browser).await?;
    Ok(page_for(core, &txn, None))
}

fn page_for(core: &Core, txn: &TransactionRecord, error: Option<&'static str>) -> HostedPage {
    let client_name = client_name(core, txn);
    match (&txn.connection, &txn.credentials_label) {
        (Some(conn), Some(label)) => HostedPage::Credentials {
            txn_id: txn.id.clone(),
            csrf: txn.csrf.clone(),
            client_name,
            connection_name: core.settings.connection(conn).map(|c| c.display_name.clone()).unwrap_or_default(),
            username_label: label.clone(),
            login_hint: txn.request.login_hint.clone(),
            error,
        },
        _ => {
            let allowed =
                core.settings.client(txn.request.client_id.as_str()).map(|c| c.connections.clone()).unwrap_or_default();
            let identify = allowed.iter().filter_map(|id| core.settings.connection(id)).any(|c| !c.domains.is_empty());
            HostedPage::Chooser {
                txn_id: txn.id.clone(),
                csrf: txn.csrf.clone(),
                client_name,
                connections: allowed
                    .iter()
                    .filter_map(|id| core.settings.connection(id).map(|c| (id.clone(), c.display_name.clone())))
                    .collect(),
                identify,
                error,
            }
        }
    }
}

/// The person picked a connection on the chooser.
pub async fn choose(
    core: &Core,
    txn_id: &str,
    browser: &Browser,
    connection: &str,
    csrf: Option<&str>,
) -> Result<Outcome, FlowError> {
    let txn = load_bound(core, txn_id, browser).await?;
    check_csrf(&txn, csrf)?;
    let client = core.settings.client(txn.request.client_id.as_str()).ok_or(FlowError::ConnectionNotAllowed)?;
    let conn = allowed_connection(client, connection).ok_or(FlowError::ConnectionNotAllowed)?;
    connect(core, txn, &conn).await
}

/// Home realm discovery: the connection of this client that claims the email's domain.
fn connection_for_email(core: &Core, client: &crate::settings::ClientSettings, email: &str) -> Option<ConnectionId> {
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
pub async fn identify(
    core: &Core,
    txn_id: &str,
    browser: &Browser,
    email: &str,
    csrf: Option<&str>,
) -> Result<CredentialsResult, FlowError> {
    let mut txn = load_bound(core, txn_id, browser).await?;
    check_csrf(&txn, csrf)?;
    let client = core.settings.client(txn.request.client_id.as_str()).ok_or(FlowError::ConnectionNotAllowed)?;
    let email = email.trim();
    if email.len() > 256 {
        return Ok(CredentialsResult::Retry(page_for(core, &txn, Some("That email address is too long."))));
    }
    match connection_for_email(core, client, email) {
        Some(conn) => {
            txn.request.login_hint = Some(email.to_owned());
            connect(core, txn, &conn).await.map(CredentialsResult::Done)
        }
        None => Ok(CredentialsResult::Retry(page_for(
            core,
            &txn,
            Some("Your organisation's sign-in is not set up here; choose another way to sign in."),
        ))),
    }
}

/// What a credentials form post led to.
pub enum CredentialsResult {
    Done(Outcome),
    /// Show the form again with a message.
    Retry(HostedPage),
}

/// The credentials form was posted.
pub async fn credentials(
    core: &Core,
    txn_id: &str,
    browser: &Browser,
    username: &str,
    password: Secret<String>,
    csrf: Option<&str>,
) -> Result<CredentialsResult, FlowError> {
    let txn = load_bound(core, txn_id, browser).await?;
    check_csrf(&txn, csrf)?;
    let (Some(conn_id), Some(_)) = (&txn.connection, &txn.credentials_label) else {
        return Err(FlowError::UnknownTransaction);
    };
    let conn = core.connections.get(conn_id).ok_or(FlowError::ConnectionNotAllowed)?.clone();
    let username = username.trim();
    if username.is_empty() || username.len() > 256 || password.expose().len() > 1024 {
        return Ok(CredentialsResult::Retry(page_for(core, &txn, Some("Enter your username and password."))));
    }
    let login = &core.settings.login;
    let ip = browser.ip.map(|i| i.to_string()).unwrap_or_default();
    // Count the attempt before checking the password, so a burst of parallel guesses cannot
    // all slip under the limit; a success resets the count. A second counter per address
    // bounds guessing across usernames.
    let counter = format!("failed-login:{conn_id}:{}:{ip}", username.to_lowercase());
    let per_ip = format!("failed-login-ip:{ip}");
    let attempts = core.store.counters.incr(&counter, login.lockout_window).await?;
    let ip_failures = core.store.counters.get(&per_ip).await?;
    if attempts > login.max_failed_attempts || ip_failures >= login.max_failed_attempts.saturating_mul(10) {
        core.metrics.login(conn_id.as_str(), "throttled");
        return Err(FlowError::TooManyAttempts);
    }
    let ctx = finish_context(core, &conn, &txn, browser);
    let input = CallbackInput::Credentials { username: username.to_owned(), password };
    match conn.connector.finish(&ctx, txn.connector_state.clone().unwrap_or_default(), input).await {
        Ok(identity) => {
            core.store.counters.reset(&counter).await?;
            // Take the transaction now: a double-submitted form completes one login, not two.
            let txn = core.store.transactions.take(&txn.id).await?.ok_or(FlowError::UnknownTransaction)?;
            complete(core, txn, &conn, identity, browser).await.map(CredentialsResult::Done)
        }
        Err(ConnectorError::InvalidCredentials) => {
            core.store.counters.incr(&per_ip, login.lockout_window).await?;
            core.metrics.login(conn_id.as_str(), "wrong_credentials");
            tracing::info!(connection = %conn_id, "wrong username or password");
            Ok(CredentialsResult::Retry(page_for(core, &txn, Some("Wrong username or password."))))
        }
        Err(ConnectorError::Denied(reason)) => {
            tracing::info!(connection = %conn_id, %reason, "upstream denied the login");
            let txn = core.store.transactions.take(&txn.id).await?.ok_or(FlowError::UnknownTransaction)?;
            Err(deny(core, &txn, reason))
        }
        Err(e) => Err(connector_error(e)),
    }
}

fn finish_context(core: &Core, conn: &Connection, txn: &TransactionRecord, browser: &Browser) -> FinishContext {
    FinishContext {
        callback_url: conn.callback_url.clone(),
        transaction_id: txn.id.clone(),
        client_ip: browser.ip,
        now: core.clock.system_time(),
    }
}

/// The upstream or a policy refused this person: an error page that says so, with a way
/// back to the application carrying `access_denied`.
fn deny(core: &Core, txn: &TransactionRecord, reason: String) -> FlowError {
    core.metrics.login(txn.connection.as_ref().map_or("", |c| c.as_str()), "denied");
    FlowError::Denied {
        reason,
        back: Box::new(reply_error(core, &txn.request, ErrorCode::AccessDenied, "the sign-in was refused")),
    }
}

/// The upstream sent the browser back to `/callback/{connection}`. The transaction id comes
/// back as `state` (OAuth) or `RelayState` (SAML) and is consumed here, once.
pub async fn callback(
    core: &Core,
    connection: &str,
    input: CallbackInput,
    browser: &Browser,
) -> Result<Outcome, FlowError> {
    let txn_id = input.param("state").or_else(|| input.param("RelayState"));
    // An IdP-initiated response names no transaction of ours. Only connections that opted in
    // take one, only by POST, and never when it names a live transaction (that login goes
    // the usual, browser-bound way).
    if let Some(conn) = ConnectionId::parse(connection).ok().and_then(|id| core.connections.get(&id))
        && conn.settings.idp_initiated.is_some()
        && matches!(input, CallbackInput::Form(_))
    {
        let live = match txn_id {
            Some(id) if id.len() <= 64 => core.store.transactions.get(id).await?.is_some(),
            _ => false,
        };
        if !live {
            return unsolicited(core, conn.clone(), input, browser).await;
        }
    }
    let txn_id = txn_id.ok_or(FlowError::UnknownTransaction)?;
    if txn_id.len() > 64 {
        return Err(FlowError::UnknownTransaction);
    }
    // Check the browser before consuming, so a stranger who learns a live `state` cannot
    // cancel someone else's login; the take is still the one atomic step.
    load_bound(core, txn_id, browser).await?;
    let txn = core.store.transactions.take(txn_id).await?.ok_or(FlowError::UnknownTransaction)?;
    let conn_id = txn.connection.clone().filter(|c| c.as_str() == connection).ok_or(FlowError::UnknownTransaction)?;
    let conn = core.connections.get(&conn_id).ok_or(FlowError::ConnectionNotAllowed)?.clone();
    let ctx = finish_context(core, &conn, &txn, browser);
    match conn.connector.finish(&ctx, txn.connector_state.clone().unwrap_or_default(), input).await {
        Ok(identity) => {
            claim_single_use(core, &conn_id, &identity).await?;
            complete(core, txn, &conn, identity, browser).await
        }
        Err(ConnectorError::Denied(reason)) => {
            tracing::info!(connection = %conn_id, %reason, "upstream denied the login");
            Err(deny(core, &txn, reason))
        }
        Err(e) => Err(rejected(core, &conn_id, e)),
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
/// once, and answered with a code to the connection's configured client.
async fn unsolicited(
    core: &Core,
    conn: std::sync::Arc<Connection>,
    input: CallbackInput,
    browser: &Browser,
) -> Result<Outcome, FlowError> {
    let conn_id = conn.settings.id.clone();
    let raw = conn.settings.idp_initiated.as_ref().ok_or(FlowError::UnknownTransaction)?;
    let target = core.settings.idp_initiated_target(&conn.settings, raw).map_err(FlowError::Misconfigured)?;
    let ctx = FinishContext {
        callback_url: conn.callback_url.clone(),
        transaction_id: String::new(),
        client_ip: browser.ip,
        now: core.clock.system_time(),
    };
    let identity = match conn.connector.finish_unsolicited(&ctx, input).await {
        Ok(identity) => identity,
        Err(e) => return Err(rejected(core, &conn_id, e)),
    };
    if identity.single_use.is_none() {
        // Without a one-time ID a captured response could be replayed at will.
        return Err(FlowError::Misconfigured("the connector gave no one-time ID for an unsolicited login".into()));
    }
    claim_single_use(core, &conn_id, &identity).await?;
    let txn = TransactionRecord {
        id: random_token(24),
        browser: SecretHash::of(""),
        request: crate::store::AuthorizationRequest {
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
        },
        connection: Some(conn_id.clone()),
        connector_state: None,
        credentials_label: None,
        csrf: String::new(),
        created_at: core.clock.now(),
        resume: None,
    };
    tracing::info!(connection = %conn_id, client_id = %txn.request.client_id, "IdP-initiated login accepted");
    complete(core, txn, &conn, identity, browser).await
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

/// The one place that orders the steps after an upstream identity is known.
async fn complete(
    core: &Core,
    txn: TransactionRecord,
    conn: &Connection,
    identity: UpstreamIdentity,
    browser: &Browser,
) -> Result<Outcome, FlowError> {
    let identity = scope_verified_email(conn, identity);
    let now = core.clock.now();
    let strategy = conn.connector.strategy().to_owned();
    let (connection, policy) = (&conn.settings.id, &conn.settings.profile);
    let users = core.store.users.as_ref();
    let resolved = profile::resolve(users, connection, &strategy, policy, &identity).await?;
    let mut metadata = profile::NewUserMetadata::default();
    if let profile::Resolved::New(user_id) = &resolved
        && !core.settings.actions.pre_user_registration.is_empty()
    {
        match pre_user_registration(core, &txn.request, user_id, &identity, connection, browser).await? {
            Ok(m) => metadata = m,
            Err(denied) => return Ok(Outcome::next(Next::Respond(denied))),
        }
    }
    // id_token_hint names who must sign in (OIDC Core 3.1.2.1): someone else gets
    // login_required, and nothing is recorded.
    if let Some(expected) = &txn.request.hint_sub {
        let who = match &resolved {
            profile::Resolved::Existing(u) | profile::Resolved::Linked(u) => u.user_id.as_str(),
            profile::Resolved::New(id) => id.as_str(),
        };
        if who != expected {
            return Ok(Outcome::next(Next::Respond(reply_error(
                core,
                &txn.request,
                ErrorCode::LoginRequired,
                "signed in as another user than id_token_hint names",
            ))));
        }
    }
    let source = profile::Source { connection, strategy: &strategy, policy };
    let user = profile::record_login(users, source, &identity, resolved, metadata, now).await?;
    let amr = if identity.amr.is_empty() { vec!["ext".to_owned()] } else { identity.amr.clone() };
    // When the upstream says when the person authenticated, that is the auth_time (an
    // upstream session may be older than this login); never in the future.
    let auth_time = identity
        .authenticated_at
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(now, |d| d.as_secs().min(now));
    if let Some(max) = txn.request.max_age
        && now.saturating_sub(auth_time) > max
    {
        return Err(FlowError::InvalidUpstreamResponse(format!(
            "the upstream authentication is older than max_age ({max} s)"
        )));
    }
    // Actions before the session: a denied login opens none.
    let mut user = user;
    let custom =
        match post_login_actions(core, &txn.request, &mut user, &conn.settings.id, auth_time, &amr, browser, None)
            .await?
        {
            PostLogin::Proceed(custom) => custom,
            PostLogin::Stop(denied) => return Ok(Outcome::next(Next::Respond(denied))),
            PostLogin::Redirect { to, action, custom } => {
                let resume = crate::store::Resume {
                    user_id: user.user_id.clone(),
                    connection: conn.settings.id.clone(),
                    auth_time,
                    amr,
                    custom,
                    action,
                    // IdP-initiated: no SSO session, now or after the redirect (see below).
                    open_session: !txn.request.unsolicited,
                    sid: txn.request.unsolicited.then(|| random_token(16)),
                    upstream: identity.upstream_session.clone(),
                };
                return pause(core, &txn.request, Pause { to, resume }, browser).await;
            }
        };
    let new_session = session::NewSession {
        user_id: &user.user_id,
        connection: &conn.settings.id,
        amr,
        now: auth_time,
        ttl: core.settings.session.ttl,
        upstream: identity.upstream_session.clone(),
    };
    if txn.request.unsolicited {
        // An IdP-initiated login was started by nobody in this browser: anyone holding such a
        // response can post it from any page (login CSRF). It gets its code, but opens no SSO
        // session and leaves the browser's own session alone, so no other application is
        // signed in as whoever the response names.
        let record = session::detached(new_session);
        let next = respond_with_code(core, &txn.request, &record, &custom).await?;
        core.metrics.login(conn.settings.id.as_str(), "success");
        tracing::info!(connection = %conn.settings.id, user_id = %user.user_id, client_id = %txn.request.client_id, "IdP-initiated login completed");
        return Ok(Outcome::next(next));
    }
    // A new session id at every login: a cookie planted before login is worthless after.
    if let Some(old) = browser.session.as_deref() {
        session::close(&core.store, old).await?;
    }
    let opened = session::open(&core.store, new_session).await?;
    let next = respond_with_code(core, &txn.request, &opened.record, &custom).await?;
    core.metrics.login(conn.settings.id.as_str(), "success");
    tracing::info!(connection = %conn.settings.id, user_id = %user.user_id, client_id = %txn.request.client_id, "login completed");
    Ok(Outcome { next, set_binding: None, set_session: Some(opened.cookie) })
}

/// The pre-user-registration Actions, before a new user is stored: a denial stores nothing
/// and reaches the client as `access_denied`.
async fn pre_user_registration(
    core: &Core,
    request: &crate::store::AuthorizationRequest,
    user_id: &crate::types::UserId,
    identity: &UpstreamIdentity,
    connection: &ConnectionId,
    browser: &Browser,
) -> Result<Result<profile::NewUserMetadata, AuthorizationResponse>, FlowError> {
    use crate::actions::event;
    let conn = core.connections.get(connection);
    let client = core.settings.client(request.client_id.as_str());
    let event = event::pre_user_registration(
        &event::NewUser {
            user_id: user_id.as_str(),
            email: identity.email.as_deref(),
            email_verified: identity.email_verified,
            name: identity.name.as_deref(),
            given_name: identity.given_name.as_deref(),
            family_name: identity.family_name.as_deref(),
            nickname: identity.nickname.as_deref(),
            picture: identity.picture.as_deref(),
        },
        &event::Parties {
            connection: connection.as_str(),
            strategy: conn.map(|c| c.connector.strategy()),
            client_id: request.client_id.as_str(),
            client_name: client.map(|c| c.name.as_str()),
        },
        &request_facts(browser),
        request.scopes.iter().collect(),
    );
    let effects = crate::actions::run(
        &core.settings.actions,
        crate::actions::Trigger::PreUserRegistration,
        &event,
        core.store.action_cache.as_ref(),
    )
    .await
    .map_err(|e| FlowError::ActionFailed(e.action))?;
    if let Some(reason) = effects.deny {
        core.metrics.login(connection.as_str(), "registration_denied");
        return Ok(Err(reply_error(core, request, ErrorCode::AccessDenied, reason)));
    }
    Ok(Ok(profile::NewUserMetadata { app_metadata: effects.app_metadata, user_metadata: effects.user_metadata }))
}

/// A silent login from a live session: the post-login Actions run here too.
async fn silent(
    core: &Core,
    request: &crate::store::AuthorizationRequest,
    session: &SessionRecord,
    prompt_none: bool,
    browser: &Browser,
) -> Result<Outcome, FlowError> {
    let mut user = core
        .store
        .users
        .get(&session.user_id)
        .await?
        .ok_or_else(|| FlowError::Internal("the session's user no longer exists".into()))?;
    let auth_time = session.auth_time;
    let chain = post_login_actions(
        core,
        request,
        &mut user,
        &session.connection,
        auth_time,
        &session.amr,
        browser,
        Some(session),
    );
    match chain.await? {
        PostLogin::Proceed(custom) => Ok(Outcome::next(respond_with_code(core, request, session, &custom).await?)),
        PostLogin::Stop(denied) => Ok(Outcome::next(Next::Respond(denied))),
        // prompt=none forbids any page: the client must ask again interactively.
        PostLogin::Redirect { .. } if prompt_none => Ok(Outcome::next(Next::Respond(reply_error(
            core,
            request,
            ErrorCode::InteractionRequired,
            "an action needs the person to interact",
        )))),
        PostLogin::Redirect { to, action, custom } => {
            let resume = crate::store::Resume {
                user_id: user.user_id.clone(),
                connection: session.connection.clone(),
                auth_time,
                amr: session.amr.clone(),
                custom,
                action,
                open_session: false,
                sid: Some(session.sid.clone()),
                upstream: session.upstream.clone(),
            };
            pause(core, request, Pause { to, resume }, browser).await
        }
    }
}

/// What the post-login Actions decided.
enum PostLogin {
    /// Go on, with these claims in the tokens.
    Proceed(crate::store::CustomClaims),
    /// Stop: this response goes to the client (`access_denied`).
    Stop(AuthorizationResponse),
    /// Send the person to an action's page first; the chain resumes at `/continue`.
    Redirect { to: crate::actions::Redirect, action: usize, custom: crate::store::CustomClaims },
}

/// Run the post-login Actions for `user`.
#[allow(clippy::too_many_arguments)]
async fn post_login_actions(
    core: &Core,
    request: &crate::store::AuthorizationRequest,
    user: &mut crate::store::UserRecord,
    connection: &ConnectionId,
    auth_time: u64,
    amr: &[String],
    browser: &Browser,
    session: Option<&SessionRecord>,
) -> Result<PostLogin, FlowError> {
    let actions = &core.settings.actions;
    if actions.post_login.is_empty() {
        return Ok(PostLogin::Proceed(Default::default()));
    }
    let event = login_event(core, request, user, connection, auth_time, amr, browser, session);
    let effects =
        crate::actions::run(actions, crate::actions::Trigger::PostLogin, &event, core.store.action_cache.as_ref())
            .await
            .map_err(|e| FlowError::ActionFailed(e.action))?;
    apply_effects(core, request, user, connection, effects, Default::default()).await
}

/// Turn a chain's effects into the next step; `prior` holds claims from before a redirect.
async fn apply_effects(
    core: &Core,
    request: &crate::store::AuthorizationRequest,
    user: &mut crate::store::UserRecord,
    connection: &ConnectionId,
    effects: crate::actions::Effects,
    prior: crate::store::CustomClaims,
) -> Result<PostLogin, FlowError> {
    if let Some(reason) = effects.deny {
        core.metrics.login(connection.as_str(), "denied_by_action");
        return Ok(PostLogin::Stop(reply_error(core, request, ErrorCode::AccessDenied, reason)));
    }
    if !effects.app_metadata.is_empty() || !effects.user_metadata.is_empty() {
        user.app_metadata.extend(effects.app_metadata);
        user.user_metadata.extend(effects.user_metadata);
        core.store.users.put(user).await?;
    }
    // api.authentication.setPrimaryUser: the tokens (and the session) are for that user,
    // who must exist; the metadata above went to the user who signed in, as in Auth0.
    if let Some(primary) = effects.primary_user.filter(|p| p.as_str() != user.user_id.as_str()) {
        let id = crate::types::UserId::parse(&primary)
            .map_err(|_| FlowError::ActionFailed(format!("setPrimaryUser: {primary:?} is not a user_id")))?;
        *user = core
            .store
            .users
            .get(&id)
            .await?
            .ok_or_else(|| FlowError::ActionFailed(format!("setPrimaryUser: no user {primary}")))?;
        tracing::info!(user_id = %user.user_id, "an action set the primary user");
    }
    let mut custom = prior;
    custom.id_token.extend(effects.claims.id_token);
    custom.access_token.extend(effects.claims.access_token);
    custom.add_scopes.extend(effects.claims.add_scopes);
    custom.remove_scopes.extend(effects.claims.remove_scopes);
    Ok(match effects.redirect {
        Some((to, action)) => PostLogin::Redirect { to, action, custom },
        None => PostLogin::Proceed(custom),
    })
}

/// What a paused login needs besides the transaction.
struct Pause {
    to: crate::actions::Redirect,
    resume: crate::store::Resume,
}

/// Park the login under a new, single-use `state` bound to this browser and send the person
/// to the action's page with it.
async fn pause(
    core: &Core,
    request: &crate::store::AuthorizationRequest,
    pause: Pause,
    browser: &Browser,
) -> Result<Outcome, FlowError> {
    let (binding, set_binding) = match browser.binding.as_deref().filter(|b| b.len() >= 32 && b.len() <= 64) {
        Some(b) => (b.to_owned(), None),
        None => {
            let b = random_token(32);
            (b.clone(), Some(b))
        }
    };
    let mut url = Url::parse(&pause.to.url)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https"))
        .ok_or_else(|| FlowError::ActionFailed(format!("redirect to an invalid URL: {}", pause.to.url)))?;
    let txn = TransactionRecord {
        id: random_token(24),
        browser: SecretHash::of(&binding),
        request: request.clone(),
        connection: Some(pause.resume.connection.clone()),
        connector_state: None,
        credentials_label: None,
        csrf: random_token(16),
        created_at: core.clock.now(),
        resume: Some(pause.resume),
    };
    core.store.transactions.put(&txn, core.settings.login.transaction_ttl).await?;
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in &pause.to.query {
            match v {
                serde_json::Value::String(s) => q.append_pair(k, s),
                other => q.append_pair(k, &other.to_string()),
            };
        }
        q.append_pair("state", &txn.id);
    }
    Ok(Outcome { next: Next::Redirect(url), set_binding, set_session: None })
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
    let paused = load_bound(core, state, browser).await?;
    if paused.resume.is_none() {
        return Err(FlowError::UnknownTransaction);
    }
    let txn = core.store.transactions.take(state).await?.ok_or(FlowError::UnknownTransaction)?;
    let Some(resume) = txn.resume.clone() else { return Err(FlowError::UnknownTransaction) };
    let mut user = core
        .store
        .users
        .get(&resume.user_id)
        .await?
        .ok_or_else(|| FlowError::Internal("the paused login's user no longer exists".into()))?;
    let mut event =
        login_event(core, &txn.request, &user, &resume.connection, resume.auth_time, &resume.amr, browser, None);
    let pairs: serde_json::Map<String, serde_json::Value> =
        params.pairs().iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
    event["request"]["query"] = if from_post { serde_json::json!({ "state": state }) } else { pairs.clone().into() };
    event["request"]["body"] = if from_post { pairs.into() } else { serde_json::json!({}) };
    // validateToken checks tokens against this state and these parameters, as read here.
    let continuing = crate::actions::Continue {
        state: state.to_owned(),
        params: params.pairs().iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
    };
    let actions = &core.settings.actions;
    let effects = crate::actions::resume(actions, &event, core.store.action_cache.as_ref(), resume.action, continuing)
        .await
        .map_err(|e| FlowError::ActionFailed(e.action))?;
    let custom =
        match apply_effects(core, &txn.request, &mut user, &resume.connection, effects, resume.custom.clone()).await? {
            PostLogin::Proceed(custom) => custom,
            PostLogin::Stop(response) => return Ok(Outcome::next(Next::Respond(response))),
            PostLogin::Redirect { to, action, custom } => {
                let next = crate::store::Resume { action, custom, ..resume };
                return pause(core, &txn.request, Pause { to, resume: next }, browser).await;
            }
        };
    if resume.open_session {
        if let Some(old) = browser.session.as_deref() {
            session::close(&core.store, old).await?;
        }
        let opened = session::open(
            &core.store,
            session::NewSession {
                user_id: &user.user_id,
                connection: &resume.connection,
                amr: resume.amr.clone(),
                now: resume.auth_time,
                ttl: core.settings.session.ttl,
                upstream: resume.upstream.clone(),
            },
        )
        .await?;
        let next = respond_with_code(core, &txn.request, &opened.record, &custom).await?;
        core.metrics.login(resume.connection.as_str(), "success");
        return Ok(Outcome { next, set_binding: None, set_session: Some(opened.cookie) });
    }
    let session = SessionRecord {
        sid: resume.sid.clone().unwrap_or_default(),
        user_id: user.user_id.clone(),
        connection: resume.connection.clone(),
        auth_time: resume.auth_time,
        amr: resume.amr.clone(),
        created_at: resume.auth_time,
        expires_at: core.clock.now() + core.settings.session.ttl,
        upstream: resume.upstream.clone(),
    };
    Ok(Outcome::next(respond_with_code(core, &txn.request, &session, &custom).await?))
}

/// The browser's facts for an Action's `event.request`.
fn request_facts(browser: &Browser) -> crate::actions::event::RequestFacts<'_> {
    crate::actions::event::RequestFacts {
        ip: browser.ip.map(|i| i.to_string()),
        user_agent: browser.user_agent.as_deref(),
        hostname: browser.hostname.as_deref(),
    }
}

/// Auth0's post-login `event` for this login (built by `actions::event`). `session` is the
/// SSO session it continues, when there is one.
#[allow(clippy::too_many_arguments)]
fn login_event(
    core: &Core,
    request: &crate::store::AuthorizationRequest,
    user: &crate::store::UserRecord,
    connection: &ConnectionId,
    auth_time: u64,
    amr: &[String],
    browser: &Browser,
    session: Option<&SessionRecord>,
) -> serde_json::Value {
    use crate::actions::event;
    let conn = core.connections.get(connection);
    let client = core.settings.client(request.client_id.as_str());
    let facts = event::PostLogin {
        parties: event::Parties {
            connection: connection.as_str(),
            strategy: conn.map(|c| c.connector.strategy()),
            client_id: request.client_id.as_str(),
            client_name: client.map(|c| c.name.as_str()),
        },
        request: request_facts(browser),
        auth_time,
        amr,
        session: session.map(|s| event::SessionFacts {
            id: s.sid.as_str(),
            created_at: s.created_at,
            authenticated_at: s.auth_time,
        }),
        transaction: event::Transaction::Authorize(request),
    };
    event::post_login(user, &facts)
}

async fn respond_with_code(
    core: &Core,
    request: &crate::store::AuthorizationRequest,
    session: &SessionRecord,
    custom: &crate::store::CustomClaims,
) -> Result<Next, FlowError> {
    let code = issue_code(core, request, session, custom).await?;
    let mut params = vec![("code".to_owned(), code)];
    if let Some(state) = &request.state {
        params.push(("state".into(), state.clone()));
    }
    params.push(("iss".into(), core.settings.issuer.to_string()));
    Ok(Next::Respond(AuthorizationResponse {
        redirect_uri: request.redirect_uri.clone(),
        mode: request.response_mode,
        params,
    }))
}

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
        (Some(c), _) => Some(c.to_owned()),
        (None, h) => h.map(str::to_owned),
    };
    let redirect = match p.get("post_logout_redirect_uri") {
        None => None,
        Some(uri) => {
            let client = client_id.as_deref().and_then(|c| core.settings.client(c)).ok_or_else(|| {
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
    if hint.is_none() && !confirmed && browser.session.is_some() {
        let keep = ["post_logout_redirect_uri", "client_id", "state"];
        let fields =
            p.pairs().iter().filter(|(k, _)| keep.contains(&k.as_str())).cloned().collect::<Vec<(String, String)>>();
        return Ok(LogoutNext::Confirm(fields));
    }
    if let Some(cookie) = browser.session.as_deref() {
        let live = session::find(&core.store, Some(cookie), core.clock.now()).await?;
        // A hint for another user does not end this browser's session.
        let matches = match (&live, &hint) {
            (Some(s), Some(h)) => s.user_id.as_str() == h.sub,
            _ => true,
        };
        if matches {
            session::close(&core.store, cookie).await?;
            if let Some(s) = live
                && let Some(next) = upstream_logout(core, &s, redirect.as_ref()).await?
            {
                return Ok(next);
            }
        }
    }
    Ok(redirect.map_or(LogoutNext::SignedOut, LogoutNext::Redirect))
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
    if !conn.connector.capabilities().logout {
        return Ok(None);
    }
    let ctx = logout_context(core, &s.connection, random_token(24))?;
    match conn.connector.start_logout(&ctx, facts).await {
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
    connection: &str,
    raw_query: &str,
    browser: &Browser,
) -> Result<(Url, bool), FlowError> {
    let conn_id = ConnectionId::parse(connection).map_err(|_| FlowError::ConnectionNotAllowed)?;
    let conn = core.connections.get(&conn_id).ok_or(FlowError::ConnectionNotAllowed)?.clone();
    let live = session::find(&core.store, browser.session.as_deref(), core.clock.now()).await?;
    let facts = live.as_ref().filter(|s| s.connection == conn_id).and_then(|s| s.upstream.as_ref());
    let ctx = logout_context(core, &conn_id, String::new())?;
    let answer = match conn.connector.upstream_logout_request(&ctx, raw_query, facts).await {
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
pub async fn finish_upstream_logout(core: &Core, connection: &str, raw_query: &str) -> Result<LogoutNext, FlowError> {
    let relay = url::form_urlencoded::parse(raw_query.as_bytes())
        .find(|(k, _)| k == "RelayState")
        .map(|(_, v)| v.into_owned())
        .filter(|v| v.len() <= 64)
        .ok_or(FlowError::UnknownTransaction)?;
    let record = core.store.logouts.take(&relay).await?.ok_or(FlowError::UnknownTransaction)?;
    if record.connection.as_str() != connection {
        return Err(FlowError::UnknownTransaction);
    }
    let conn = core.connections.get(&record.connection).ok_or(FlowError::ConnectionNotAllowed)?;
    let ctx = logout_context(core, &record.connection, relay)?;
    match conn.connector.finish_logout(&ctx, record.connector_state, raw_query).await {
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
