//! The one mapping from errors to HTTP: RFC 6749 JSON for APIs, an HTML page with the
//! correlation id for browsers. Details go to the log, never to the client.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use actix_web::http::header;

use super::page::Page;
use crate::flow::FlowError;
use crate::oauth::{ErrorCode, OAuthError};
use crate::store::StoreError;

fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::InvalidClient | ErrorCode::InvalidToken => StatusCode::UNAUTHORIZED,
        ErrorCode::ServerError => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::TemporarilyUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::AccessDenied => StatusCode::FORBIDDEN,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// RFC 6749 5.2 error JSON. `invalid_client` carries a `WWW-Authenticate` challenge.
pub fn oauth_json(e: &OAuthError) -> HttpResponse {
    let mut r = HttpResponse::build(status_of(e.code));
    r.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::PRAGMA, "no-cache"));
    if e.code == ErrorCode::InvalidClient {
        r.insert_header((header::WWW_AUTHENTICATE, "Basic realm=\"gatehouse\""));
    }
    if e.code == ErrorCode::TemporarilyUnavailable {
        r.insert_header((header::RETRY_AFTER, super::page::RETRY_AFTER_SECS));
    }
    r.json(serde_json::json!({ "error": e.code.as_str(), "error_description": e.description }))
}

/// RFC 6750 errors for protected resources (`/userinfo`).
pub fn bearer_error(e: &OAuthError) -> HttpResponse {
    if e.code != ErrorCode::InvalidToken {
        return oauth_json(e);
    }
    let challenge = format!(
        "Bearer realm=\"gatehouse\", error=\"invalid_token\", error_description=\"{}\"",
        e.description.replace('"', "'")
    );
    HttpResponse::Unauthorized()
        .insert_header((header::WWW_AUTHENTICATE, challenge))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "error": "invalid_token", "error_description": e.description }))
}

/// An error page for a browser. Never a redirect: the client may not be trusted yet.
pub fn oauth_page(page: &Page, e: &OAuthError) -> HttpResponse {
    let title = match e.code {
        ErrorCode::InvalidClient => "Unknown application",
        ErrorCode::TemporarilyUnavailable => "Temporarily unavailable",
        ErrorCode::ServerError => "Something went wrong",
        _ => "This sign-in request is invalid",
    };
    let status = match e.code {
        ErrorCode::ServerError | ErrorCode::TemporarilyUnavailable => status_of(e.code),
        _ => StatusCode::BAD_REQUEST,
    };
    page.error(status, title, &e.description, e.code.as_str())
}

/// The one log line of a store failure that reaches a browser or a client.
pub fn store_unavailable(e: &StoreError) {
    tracing::error!(kind = "temporarily_unavailable", error = %e, "store error");
}

pub fn flow_page(page: &Page, e: &FlowError) -> HttpResponse {
    let (status, title, kind) = match e {
        FlowError::UnknownTransaction => (StatusCode::BAD_REQUEST, "This sign-in has expired", "unknown_transaction"),
        FlowError::BrowserMismatch => (StatusCode::BAD_REQUEST, "This sign-in started elsewhere", "browser_mismatch"),
        FlowError::Csrf => (StatusCode::BAD_REQUEST, "This form has expired", "csrf"),
        FlowError::UnknownClient => (StatusCode::BAD_REQUEST, "Unknown application", "unknown_client"),
        FlowError::ConnectionNotAllowed => {
            (StatusCode::BAD_REQUEST, "Sign-in method not available", "connection_not_allowed")
        }
        FlowError::TooManyAttempts => (StatusCode::TOO_MANY_REQUESTS, "Too many attempts", "too_many_attempts"),
        FlowError::InvalidUpstreamResponse(_) => {
            (StatusCode::BAD_REQUEST, "Sign-in failed", "invalid_upstream_response")
        }
        FlowError::UpstreamUnavailable(_) => {
            (StatusCode::BAD_GATEWAY, "Identity provider unavailable", "upstream_unavailable")
        }
        FlowError::Misconfigured(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "Sign-in method misconfigured", "misconfigured")
        }
        FlowError::Store(_) => (StatusCode::SERVICE_UNAVAILABLE, "Temporarily unavailable", "temporarily_unavailable"),
        FlowError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "Something went wrong", "server_error"),
        FlowError::ActionFailed(_) => {
            (StatusCode::INTERNAL_SERVER_ERROR, "Sign-in could not be completed", "action_failed")
        }
        FlowError::Authorize(o) => return oauth_page(page, o),
    };
    match e {
        FlowError::InvalidUpstreamResponse(d)
        | FlowError::UpstreamUnavailable(d)
        | FlowError::Misconfigured(d)
        | FlowError::Internal(d) => {
            tracing::warn!(kind, detail = %d, "login failed");
        }
        FlowError::Store(s) => store_unavailable(s),
        _ => tracing::info!(kind, "login refused"),
    }
    page.error(status, title, &e.to_string(), kind)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Browser;

    fn page() -> Page {
        let browser =
            Browser { binding: None, session: None, ip: None, country: None, user_agent: None, hostname: None };
        Page { correlation_id: "corr-1".into(), nonce: "n".into(), browser }
    }

    #[test]
    fn a_store_outage_page_says_when_to_retry() {
        let r = flow_page(&page(), &FlowError::Store(crate::store::StoreError::Unavailable("down".into())));
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers().get(header::RETRY_AFTER).unwrap(), "1");
        let unavailable = OAuthError::new(ErrorCode::TemporarilyUnavailable, "the store is unavailable");
        let r = oauth_page(&page(), &unavailable);
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(r.headers().get(header::RETRY_AFTER).unwrap(), "1");
        assert_eq!(oauth_json(&unavailable).headers().get(header::RETRY_AFTER).unwrap(), "1");
        let other = flow_page(&page(), &FlowError::UnknownTransaction);
        assert!(other.headers().get(header::RETRY_AFTER).is_none(), "only 503s carry it");
    }
}
