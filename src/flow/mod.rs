//! The login transaction, from `/authorize` to the authorization response.
//!
//! A login is a step machine. A stored transaction says what it waits for (its
//! [`Step`](crate::store::Step)); the entry points below (one per route) check the browser and
//! the step, run that step, and return an [`Outcome`]. Once an identity is established,
//! [`resume`] alone orders what follows (profile → pre-user-registration → post-login Actions
//! → session → single-use code → authorization response); steps never call one another. This
//! module builds no HTTP response: `src/http` renders what it returns.

mod actions;
mod authorize;
mod binding;
mod callback;
mod connect;
mod credentials;
mod error;
mod event;
mod hosted;
mod identity;
mod logout;
mod response;
mod resume;
#[cfg(test)]
mod tests;

use std::net::IpAddr;

use gatehouse_connector::Url;

use crate::store::ResponseMode;
use crate::types::{ConnectionId, RedirectUri, TransactionId};

pub use authorize::authorize;
pub use callback::callback;
pub use credentials::credentials;
pub use error::{AuthorizeFailure, FlowError};
pub use hosted::{choose, hosted, identify};
pub use logout::{LogoutNext, answer_upstream_logout, auth0_logout, finish_upstream_logout, logout};
pub use response::error_response;
pub use resume::continue_login;
pub(crate) use resume::{Event, resume};

/// What the browser brought that matters to a login.
#[derive(Debug, Clone, Default)]
pub struct Browser {
    /// The transaction-binding cookie.
    pub binding: Option<String>,
    /// The SSO session cookie.
    pub session: Option<String>,
    /// The client's address: the peer's, or what a trusted proxy forwarded.
    pub ip: Option<IpAddr>,
    /// The client's country, when a trusted proxy said it (`[http] country_header`).
    pub country: Option<crate::net::CountryCode>,
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
    /// Show transaction `txn_id`'s hosted page (connection chooser or credentials form).
    Hosted { txn_id: TransactionId },
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

    fn respond(response: AuthorizationResponse) -> Self {
        Self::next(Next::Respond(response))
    }
}

/// What a hosted page shows.
#[derive(Debug, Clone)]
pub enum HostedPage {
    Chooser {
        txn_id: TransactionId,
        csrf: String,
        client_name: String,
        connections: Vec<(ConnectionId, String)>,
        /// Ask for an email first: some connection claims email domains.
        identify: bool,
        error: Option<&'static str>,
    },
    Credentials {
        txn_id: TransactionId,
        csrf: String,
        client_name: String,
        connection_name: String,
        username_label: String,
        login_hint: Option<String>,
        error: Option<&'static str>,
    },
}

/// A post of one of a transaction's hosted forms: which transaction, from which browser,
/// with which CSRF token.
#[derive(Debug, Clone, Copy)]
pub struct HostedPost<'a> {
    pub txn_id: &'a TransactionId,
    pub browser: &'a Browser,
    pub csrf: Option<&'a str>,
}

/// What a hosted form post led to.
pub enum CredentialsResult {
    Done(Outcome),
    /// Show the form again with a message.
    Retry(HostedPage),
}
