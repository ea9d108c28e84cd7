//! Operations routes (`/healthz`, `/readyz`, `/metrics`) and the demo relying party.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, web};

use super::Core;
use super::page::Page;
use crate::settings::{DEMO_PASSWORD, DEMO_USERNAME};

/// The process is up.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok")
}

/// The node can serve logins: its store answers.
pub async fn readyz(core: web::Data<Core>) -> HttpResponse {
    match core.store.health.ping().await {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ready"),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            HttpResponse::ServiceUnavailable().content_type("text/plain").body("store unavailable")
        }
    }
}

pub async fn metrics(core: web::Data<Core>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/openmetrics-text; version=1.0.0; charset=utf-8")
        .body(core.metrics.render())
}

/// The demo client's id in the embedded configuration.
pub const DEMO_CLIENT: &str = "gatehouse-demo";

pub async fn demo(core: web::Data<Core>, page: Page) -> HttpResponse {
    let issuer = core.settings.issuer.as_str();
    page.html(
        StatusCode::OK,
        "demo.html",
        serde_json::json!({
            "issuer": issuer,
            "client_id": DEMO_CLIENT,
            "redirect_uri": core.settings.issuer.join("/demo"),
            "demo_username": core.settings.embedded.then_some(DEMO_USERNAME),
            "demo_password": core.settings.embedded.then_some(DEMO_PASSWORD),
        }),
    )
}

pub async fn demo_js() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/javascript; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(crate::ui::DEMO_JS)
}

/// Anything unrouted: a page for browsers, RFC-style JSON for everything else.
pub async fn not_found(req: actix_web::HttpRequest, page: Page) -> HttpResponse {
    let wants_html =
        req.headers().get(header::ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|a| a.contains("text/html"));
    if wants_html {
        page.error(StatusCode::NOT_FOUND, "Page not found", "There is nothing at this address.", "not_found")
    } else {
        HttpResponse::NotFound()
            .json(serde_json::json!({"error": "not_found", "error_description": "no such endpoint"}))
    }
}
