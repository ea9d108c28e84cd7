//! Authorization responses to the client: the code at the end of a login, and errors sent to
//! a redirect URI that `/authorize` already trusted (OIDC Core 3.1.2.6), with `state` and
//! `iss` (RFC 9207).

use std::borrow::Cow;

use super::AuthorizationResponse;
use crate::oauth::authorize::ErrorResponse;
use crate::oauth::{AuthorizationRequest, ErrorCode, OAuthError};
use crate::state::Core;
use crate::types::{AuthCode, ConnectionId};

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

/// An error response to the client that sent `request`, with its `state` and our `iss`.
pub(super) fn reply_error(
    core: &Core,
    request: &AuthorizationRequest,
    code: ErrorCode,
    description: impl Into<Cow<'static, str>>,
) -> AuthorizationResponse {
    let e = ErrorResponse {
        redirect_uri: request.redirect_uri.clone(),
        response_mode: request.response_mode,
        state: request.state.clone(),
        error: OAuthError::new(code, description),
    };
    error_response(e, core.settings.issuer.as_str())
}

/// The upstream or a policy (hosted domain, groups) refused this person: the client hears
/// `access_denied` at its redirect URI, as from Auth0 and Keycloak. `reason` is for the log;
/// the client gets a fixed description, since the reason may name internal policy.
pub(super) fn denied(
    core: &Core,
    request: &AuthorizationRequest,
    connection: &ConnectionId,
    reason: &str,
) -> AuthorizationResponse {
    tracing::info!(%connection, %reason, client_id = %request.client_id, "sign-in refused; told the client");
    core.metrics.login(connection.as_str(), "denied");
    reply_error(core, request, ErrorCode::AccessDenied, "the identity provider or a policy refused this sign-in")
}

/// The success response: the code, the client's `state`, our `iss`.
pub(super) fn code_response(core: &Core, request: &AuthorizationRequest, code: &AuthCode) -> AuthorizationResponse {
    let mut params = vec![("code".to_owned(), code.expose().to_owned())];
    if let Some(state) = &request.state {
        params.push(("state".into(), state.clone()));
    }
    params.push(("iss".into(), core.settings.issuer.to_string()));
    AuthorizationResponse { redirect_uri: request.redirect_uri.clone(), mode: request.response_mode, params }
}
