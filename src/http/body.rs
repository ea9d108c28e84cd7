//! Request bodies are read here, before any handler, within a size limit and a deadline: a
//! client that announces more than it sends (or sends it slowly) gets `408` and loses the
//! connection instead of holding it, and an oversized body gets `413` in the shape its
//! endpoint speaks (RFC 6749 JSON for the OAuth APIs, a page for browsers).

use std::time::Duration;

use actix_web::body::BoxBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode};
use actix_web::{FromRequest, HttpMessage, HttpResponse, web};
use futures_util::StreamExt as _;

use super::error::oauth_json;
use super::page::Page;
use crate::oauth::{ErrorCode, OAuthError};
use crate::state::Core;

/// The endpoints that answer in RFC 6749 JSON rather than with a page.
const API_PATHS: &[&str] = &["/token", "/userinfo", "/revoke", "/introspect"];

enum Refusal {
    TooLarge,
    TooSlow,
    Broken,
}

/// Read the body of a POST in full (within the limit for its path and the configured
/// deadline) and put it back for the handler; or answer for it.
pub async fn buffer(mut req: ServiceRequest) -> Result<ServiceRequest, ServiceResponse<BoxBody>> {
    if req.method() != Method::POST {
        return Ok(req);
    }
    let deadline = req
        .app_data::<web::Data<Core>>()
        .map_or(Duration::from_secs(crate::settings::defaults::BODY_TIMEOUT_SECS), |c| c.settings.http.body_timeout);
    let limit = if req.path().starts_with("/callback/") {
        crate::oauth::params::MAX_CALLBACK_BODY
    } else {
        crate::oauth::params::MAX_BODY
    };
    let mut payload = req.take_payload();
    let read = async {
        let mut body = web::BytesMut::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk.map_err(|_| Refusal::Broken)?;
            if body.len() + chunk.len() > limit {
                return Err(Refusal::TooLarge);
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body.freeze())
    };
    let refusal = match tokio::time::timeout(deadline, read).await {
        Ok(Ok(body)) => {
            req.set_payload(Payload::from(body));
            return Ok(req);
        }
        Ok(Err(r)) => r,
        Err(_) => Refusal::TooSlow,
    };
    let (status, description) = match refusal {
        Refusal::TooLarge => (StatusCode::PAYLOAD_TOO_LARGE, "the request body is too large"),
        Refusal::TooSlow => (StatusCode::REQUEST_TIMEOUT, "the request body did not arrive in time"),
        Refusal::Broken => (StatusCode::BAD_REQUEST, "the request body could not be read"),
    };
    // A client's mistake, not ours: info, never error.
    tracing::info!(status = status.as_u16(), description, "request body refused");
    let mut res = if API_PATHS.contains(&req.path()) {
        let mut r = oauth_json(&OAuthError::new(ErrorCode::InvalidRequest, description));
        *r.status_mut() = status;
        r
    } else {
        // Browsers get the page every other bad sign-in request gets (400), except for a
        // timeout, which the status must say.
        let status = if status == StatusCode::REQUEST_TIMEOUT { status } else { StatusCode::BAD_REQUEST };
        let page = Page::from_request(req.request(), &mut Payload::None).into_inner();
        match page {
            Ok(page) => page.error(status, "This sign-in request is invalid", description, "invalid_request"),
            Err(_) => HttpResponse::build(status).finish(),
        }
    };
    // The rest of the body may still be on its way: the connection cannot carry another
    // request, so it ends with this answer.
    res.head_mut().set_connection_type(actix_web::http::ConnectionType::Close);
    Err(req.into_response(res.map_into_boxed_body()))
}
