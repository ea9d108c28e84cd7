//! Why a browser step failed. Each becomes an error page in `src/http/error.rs`; refusals
//! the client should hear about are not errors but `access_denied` responses.

use gatehouse_connector::ConnectorError;

use crate::oauth::OAuthError;
use crate::oauth::authorize::{AuthorizeError, ErrorResponse};
use crate::profile::ProfileError;
use crate::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum FlowError {
    #[error("this login has expired or was already completed")]
    UnknownTransaction,
    #[error("this login was started in another browser")]
    BrowserMismatch,
    #[error("the form has expired; start the login again")]
    Csrf,
    #[error("the application of this login is no longer configured")]
    UnknownClient,
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
    /// Travels up unchanged and is logged once, where it becomes a 503.
    #[error("the service is temporarily unavailable")]
    Store(#[from] StoreError),
    #[error("the request could not be completed")]
    Internal(String),
    #[error("{0}")]
    Authorize(OAuthError),
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

/// Why `/authorize` could not go on.
#[derive(Debug)]
pub enum AuthorizeFailure {
    /// The request itself: an error page or an error response to the client.
    Request(AuthorizeError),
    /// The store failed once the client was trusted: `temporarily_unavailable` goes back to
    /// the client (`back`); the error itself is logged where it becomes HTTP.
    Store { error: StoreError, back: Box<ErrorResponse> },
    /// Starting the login failed (the connection's upstream, most often): an error page.
    Login(FlowError),
}

impl From<AuthorizeError> for AuthorizeFailure {
    fn from(e: AuthorizeError) -> Self {
        Self::Request(e)
    }
}

/// A connector's failure as the flow reports it.
pub(super) fn connector_error(e: ConnectorError) -> FlowError {
    match e {
        ConnectorError::InvalidResponse(d) => FlowError::InvalidUpstreamResponse(d),
        ConnectorError::Upstream(d) => FlowError::UpstreamUnavailable(d),
        ConnectorError::Misconfigured(d) => FlowError::Misconfigured(d),
        other => FlowError::Internal(other.to_string()),
    }
}
