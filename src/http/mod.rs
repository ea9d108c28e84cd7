//! The HTTP layer: the only module that knows actix-web. Routes parse requests into typed
//! values, call `flow` or `oauth`, and render what comes back; errors become HTTP here, once.

mod api;
mod body;
mod error;
mod login;
mod ops;
mod page;

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpMessage, HttpRequest, HttpServer, web};
use tracing::Instrument;

use crate::oauth::{OAuthError, Params};
pub use crate::state::Core;
use page::CorrelationId;

/// Query (GET) or form body (POST) parameters of an OAuth endpoint.
fn read_params(req: &HttpRequest, body: &[u8]) -> Result<Params, OAuthError> {
    if req.method() == actix_web::http::Method::POST {
        Params::parse(body)
    } else {
        Params::parse(req.query_string().as_bytes())
    }
}

/// Mount every route on an actix app (tests mount it the same way).
pub fn configure(core: Arc<Core>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |cfg: &mut web::ServiceConfig| {
        let demo = core.settings.demo;
        cfg.app_data(web::Data::from(core))
            .app_data(web::PayloadConfig::new(crate::oauth::params::MAX_BODY))
            // Static paths first: actix tries routes in order, and each pattern with a
            // parameter costs a regex match on the hot paths (`/token`).
            .service(web::resource("/.well-known/openid-configuration").get(api::discovery))
            .service(web::resource("/.well-known/jwks.json").get(api::jwks))
            .service(web::resource("/authorize").get(login::authorize).post(login::authorize))
            .service(web::resource("/continue").get(login::continue_login).post(login::continue_login))
            .service(web::resource("/token").post(api::token).route(web::method(Method::OPTIONS).to(api::preflight)))
            // Auth0's path for the same endpoint: auth0-spa-js does no discovery.
            .service(
                web::resource("/oauth/token").post(api::token).route(web::method(Method::OPTIONS).to(api::preflight)),
            )
            .service(
                web::resource("/userinfo")
                    .get(api::userinfo)
                    .post(api::userinfo)
                    .route(web::method(Method::OPTIONS).to(api::preflight)),
            )
            .service(web::resource("/revoke").post(api::revoke).route(web::method(Method::OPTIONS).to(api::preflight)))
            .service(web::resource("/introspect").post(api::introspect))
            .service(web::resource("/logout").get(login::logout).post(login::logout))
            .service(web::resource("/v2/logout").get(login::auth0_logout))
            .service(web::resource("/healthz").get(ops::healthz))
            .service(web::resource("/readyz").get(ops::readyz))
            .service(web::resource("/metrics").get(ops::metrics))
            .service(web::resource("/login/{txn}").get(login::hosted))
            .service(web::resource("/login/{txn}/connect").post(login::connect))
            .service(web::resource("/login/{txn}/credentials").post(login::credentials))
            .service(web::resource("/login/{txn}/identify").post(login::identify))
            .service(web::resource("/callback/{connection}").get(login::callback).post(login::callback))
            .service(web::resource("/saml/{connection}/metadata").get(login::saml_metadata))
            .service(web::resource("/saml/{connection}/slo").get(login::saml_slo))
            .default_service(web::to(ops::not_found));
        if demo {
            cfg.service(web::resource("/demo").get(ops::demo)).service(web::resource("/demo/app.js").get(ops::demo_js));
        }
    }
}

/// Give every request a correlation id (response header, log span, error pages) and record
/// its route, status and latency. Query strings are never logged: they carry codes.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = crate::types::random_token(12);
    req.extensions_mut().insert(CorrelationId(id.clone()));
    let core = req.app_data::<web::Data<Core>>().cloned();
    let span = tracing::info_span!("request", correlation_id = %id, method = %req.method(), path = %req.path());
    let started = Instant::now();
    let mut res = match body::buffer(req).instrument(span.clone()).await {
        Ok(req) => next.call(req).instrument(span.clone()).await?.map_into_boxed_body(),
        Err(refused) => refused,
    };
    let route = res.request().match_pattern().unwrap_or_else(|| "unmatched".into());
    let status = res.status().as_u16();
    if let Some(core) = core {
        core.metrics.request(&route, status, started.elapsed().as_secs_f64());
    }
    span.in_scope(|| tracing::debug!(status, elapsed_us = started.elapsed().as_micros() as u64, "response"));
    if let Ok(v) = HeaderValue::from_str(&id) {
        res.headers_mut().insert(HeaderName::from_static("x-correlation-id"), v);
    }
    Ok(res)
}

/// The log filter with the HTTP server's own noise removed: actix-http reports a client's
/// malformed, truncated or timed-out request as an ERROR ("stream error"). It is the
/// client's doing and already answered (400, 408, a closed connection), so it is silenced
/// unless the filter names actix_http itself.
pub fn log_filter(filter: &str) -> String {
    if filter.contains("actix_http") { filter.to_owned() } else { format!("{filter},actix_http::h1::dispatcher=off") }
}

/// Run the HTTP server on an already bound listener until it is stopped.
pub async fn serve(core: Arc<Core>, listener: TcpListener, workers: usize) -> std::io::Result<()> {
    // The head within `request_timeout` (slow-loris); the body's deadline is `body::buffer`'s.
    let request_timeout = core.settings.http.request_timeout;
    HttpServer::new(move || App::new().wrap(from_fn(observe)).configure(configure(core.clone())))
        .client_request_timeout(request_timeout)
        .client_disconnect_timeout(std::time::Duration::from_secs(1))
        .workers(workers)
        .listen(listener)?
        .run()
        .await
}

#[cfg(test)]
mod tests {
    #[test]
    fn transport_errors_of_clients_are_not_logged_unless_asked_for() {
        assert_eq!(super::log_filter("info"), "info,actix_http::h1::dispatcher=off");
        assert_eq!(super::log_filter("debug,actix_http=trace"), "debug,actix_http=trace");
    }
}
