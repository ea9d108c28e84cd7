//! Browser-facing routes: `/authorize`, the hosted pages, upstream callbacks and `/logout`.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Serialize;

use super::error::{flow_page, oauth_page, store_unavailable};
use super::page::{Page, binding_cookie, session_cookie, session_removal};
use super::{Core, read_params};
use crate::flow::{
    self, AuthorizationResponse, AuthorizeFailure, CredentialsResult, FlowError, HostedPage, HostedPost, LogoutNext,
    Next, Outcome,
};
use crate::oauth::Params;
use crate::oauth::authorize::AuthorizeError;
use crate::store::ResponseMode;
use crate::types::{ConnectionId, TransactionId};
use gatehouse_connector::{CallbackInput, Secret};

fn see_other(location: &str) -> actix_web::HttpResponseBuilder {
    let mut b = HttpResponse::SeeOther();
    b.insert_header((header::LOCATION, location)).insert_header((header::CACHE_CONTROL, "no-store"));
    b
}

/// Deliver an authorization response in the client's response mode.
fn respond(page: &Page, r: &AuthorizationResponse) -> HttpResponse {
    match r.mode {
        ResponseMode::Query => see_other(r.url().as_str()).finish(),
        ResponseMode::FormPost => autopost(page, r.redirect_uri.as_str(), &r.params),
        ResponseMode::WebMessage => web_message(page, r),
    }
}

/// `response_mode=web_message`: a page that only the redirect URI's origin (checked against
/// the client's `web_origins` at `/authorize`) may frame, posting the response to exactly
/// that origin; the browser delivers it to no other.
fn web_message(page: &Page, r: &AuthorizationResponse) -> HttpResponse {
    #[derive(Serialize)]
    struct Ctx<'a> {
        origin: &'a str,
        fields: &'a [(String, String)],
    }
    match r.redirect_uri.origin() {
        Some(origin) => {
            page.html_framed_by(&origin, "web_message.html", Ctx { origin: origin.as_str(), fields: &r.params })
        }
        None => page.error(
            StatusCode::BAD_REQUEST,
            "This sign-in request is invalid",
            "web_message needs a web origin",
            "invalid_request",
        ),
    }
}

fn autopost(page: &Page, action: &str, fields: &[(String, String)]) -> HttpResponse {
    #[derive(Serialize)]
    struct Ctx<'a> {
        action: &'a str,
        fields: &'a [(String, String)],
    }
    page.html(StatusCode::OK, "autopost.html", Ctx { action, fields })
}

fn hosted_page(page: &Page, h: &HostedPage) -> HttpResponse {
    #[derive(Serialize)]
    struct Conn {
        id: String,
        name: String,
    }
    match h {
        HostedPage::Chooser { txn_id, csrf, client_name, connections, identify, error } => page.html(
            if error.is_some() { StatusCode::UNPROCESSABLE_ENTITY } else { StatusCode::OK },
            "chooser.html",
            serde_json::json!({
                "txn_id": txn_id, "csrf": csrf, "client_name": client_name, "identify": identify, "error": error,
                "connections": connections.iter().map(|(id, name)| Conn { id: id.to_string(), name: name.clone() }).collect::<Vec<_>>(),
            }),
        ),
        HostedPage::Credentials { txn_id, csrf, client_name, connection_name, username_label, login_hint, error } => page.html(
            if error.is_some() { StatusCode::UNAUTHORIZED } else { StatusCode::OK },
            "credentials.html",
            serde_json::json!({
                "txn_id": txn_id, "csrf": csrf, "client_name": client_name, "connection_name": connection_name,
                "username_label": username_label, "login_hint": login_hint, "error": error,
            }),
        ),
    }
}

/// Render a flow outcome and set the cookies it changed.
fn outcome(core: &Core, page: &Page, o: Outcome) -> HttpResponse {
    let mut resp = match &o.next {
        Next::Respond(r) => respond(page, r),
        Next::Hosted { txn_id } => see_other(&format!("/login/{txn_id}")).finish(),
        Next::Redirect(url) => see_other(url.as_str()).finish(),
        Next::PostForm { action, fields } => autopost(page, action.as_str(), fields),
    };
    let secure = core.settings.session.cookie_secure;
    if let Some(b) = o.set_binding {
        let _ = resp.add_cookie(&binding_cookie(b, secure));
    }
    if let Some(s) = o.set_session {
        let _ = resp.add_cookie(&session_cookie(core, Some(s)));
    }
    resp
}

pub async fn authorize(core: web::Data<Core>, req: HttpRequest, page: Page, body: web::Bytes) -> HttpResponse {
    let params = match read_params(&req, &body) {
        Ok(p) => p,
        Err(e) => return oauth_page(&page, &e),
    };
    match flow::authorize(&core, &params, &page.browser).await {
        Ok(o) => outcome(&core, &page, o),
        Err(AuthorizeFailure::Request(AuthorizeError::Page(e))) => {
            tracing::info!(error = e.code.as_str(), "authorization request refused");
            oauth_page(&page, &e)
        }
        Err(AuthorizeFailure::Login(e)) => flow_page(&page, &e),
        Err(AuthorizeFailure::Store { error, back }) => {
            store_unavailable(&error);
            respond(&page, &flow::error_response(*back, core.settings.issuer.as_str()))
        }
        Err(AuthorizeFailure::Request(AuthorizeError::Redirect(e))) => {
            tracing::info!(error = e.error.code.as_str(), "authorization request refused; told the client");
            let r = flow::error_response(e, core.settings.issuer.as_str());
            respond(&page, &r)
        }
    }
}

/// A transaction id from a hosted page's path; anything else is an expired login.
fn txn_path(path: &str) -> Result<TransactionId, FlowError> {
    TransactionId::parse(path).map_err(|_| FlowError::UnknownTransaction)
}

/// A connection id from a path or the chooser's form.
fn connection_path(path: &str, unknown: FlowError) -> Result<ConnectionId, FlowError> {
    ConnectionId::parse(path).map_err(|_| unknown)
}

pub async fn hosted(core: web::Data<Core>, page: Page, path: web::Path<String>) -> HttpResponse {
    let txn = match txn_path(&path) {
        Ok(t) => t,
        Err(e) => return flow_page(&page, &e),
    };
    match flow::hosted(&core, &txn, &page.browser).await {
        Ok(h) => hosted_page(&page, &h),
        Err(e) => flow_page(&page, &e),
    }
}

fn form(body: &web::Bytes) -> Params {
    Params::parse(body).unwrap_or_default()
}

pub async fn connect(core: web::Data<Core>, page: Page, path: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let f = form(&body);
    let connection = connection_path(f.get("connection").unwrap_or_default(), FlowError::ConnectionNotAllowed);
    let (txn, connection) = match (txn_path(&path), connection) {
        (Ok(t), Ok(c)) => (t, c),
        (Err(e), _) | (_, Err(e)) => return flow_page(&page, &e),
    };
    let post = HostedPost { txn_id: &txn, browser: &page.browser, csrf: f.get("csrf") };
    match flow::choose(&core, post, &connection).await {
        Ok(o) => outcome(&core, &page, o),
        Err(e) => flow_page(&page, &e),
    }
}

/// The chooser's email field (home realm discovery).
pub async fn identify(core: web::Data<Core>, page: Page, path: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let f = form(&body);
    let txn = match txn_path(&path) {
        Ok(t) => t,
        Err(e) => return flow_page(&page, &e),
    };
    let post = HostedPost { txn_id: &txn, browser: &page.browser, csrf: f.get("csrf") };
    match flow::identify(&core, post, f.get("email").unwrap_or_default()).await {
        Ok(CredentialsResult::Done(o)) => outcome(&core, &page, o),
        Ok(CredentialsResult::Retry(h)) => hosted_page(&page, &h),
        Err(e) => flow_page(&page, &e),
    }
}

pub async fn credentials(core: web::Data<Core>, page: Page, path: web::Path<String>, body: web::Bytes) -> HttpResponse {
    let f = form(&body);
    let username = f.get("username").unwrap_or_default().to_owned();
    let password = Secret::new(f.get("password").unwrap_or_default().to_owned());
    let txn = match txn_path(&path) {
        Ok(t) => t,
        Err(e) => return flow_page(&page, &e),
    };
    let post = HostedPost { txn_id: &txn, browser: &page.browser, csrf: f.get("csrf") };
    match flow::credentials(&core, post, &username, password).await {
        Ok(CredentialsResult::Done(o)) => outcome(&core, &page, o),
        Ok(CredentialsResult::Retry(h)) => hosted_page(&page, &h),
        Err(e) => flow_page(&page, &e),
    }
}

/// The request body, or `None` once it exceeds `limit` (the rest is never read).
async fn read_limited(mut payload: web::Payload, limit: usize) -> Option<web::Bytes> {
    use futures_util::StreamExt as _;
    let mut body = web::BytesMut::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.ok()?;
        if body.len() + chunk.len() > limit {
            return None;
        }
        body.extend_from_slice(&chunk);
    }
    Some(body.freeze())
}

/// `/callback/{connection}`: GET (OAuth query) or POST (SAML, `form_post`).
pub async fn callback(
    core: web::Data<Core>,
    req: HttpRequest,
    page: Page,
    path: web::Path<String>,
    payload: web::Payload,
) -> HttpResponse {
    let input = if req.method() == actix_web::http::Method::POST {
        // Read within the limit ourselves, so an oversized document gets the same error page
        // as any other bad input rather than the framework's bare 413.
        match read_limited(payload, crate::oauth::params::MAX_CALLBACK_BODY).await {
            Some(body) => Params::parse_callback(&body).map(|p| CallbackInput::Form(p.into_pairs())),
            None => Err(crate::oauth::OAuthError::invalid_request("the request is too large")),
        }
    } else {
        Params::parse(req.query_string().as_bytes()).map(|p| CallbackInput::Query(p.into_pairs()))
    };
    let input = match input {
        Ok(i) => i,
        Err(e) => return oauth_page(&page, &e),
    };
    let connection = match connection_path(&path, FlowError::UnknownTransaction) {
        Ok(c) => c,
        Err(e) => return flow_page(&page, &e),
    };
    match flow::callback(&core, &connection, input, &page.browser).await {
        Ok(o) => outcome(&core, &page, o),
        Err(e) => flow_page(&page, &e),
    }
}

/// `/saml/{connection}/metadata`: the SP metadata an IdP admin imports.
pub async fn saml_metadata(core: web::Data<Core>, page: Page, path: web::Path<String>) -> HttpResponse {
    let meta = crate::types::ConnectionId::parse(&path)
        .ok()
        .and_then(|id| core.connections.get(&id).cloned())
        .and_then(|c| c.connector.metadata());
    match meta {
        Some(m) => HttpResponse::Ok().content_type(m.content_type).body(m.body),
        None => page.error(
            StatusCode::NOT_FOUND,
            "No such connection",
            "This connection publishes no metadata.",
            "not_found",
        ),
    }
}

/// `/saml/{connection}/slo`: back from the IdP's Single Logout.
pub async fn saml_slo(core: web::Data<Core>, req: HttpRequest, page: Page, path: web::Path<String>) -> HttpResponse {
    let query = req.query_string();
    let connection = match connection_path(&path, FlowError::ConnectionNotAllowed) {
        Ok(c) => c,
        Err(e) => return flow_page(&page, &e),
    };
    // A request from the IdP (it starts the logout) or the answer to ours.
    if url::form_urlencoded::parse(query.as_bytes()).any(|(k, _)| k == "SAMLRequest") {
        return match flow::answer_upstream_logout(&core, &connection, query, &page.browser).await {
            Ok((url, closed)) => {
                let mut resp = see_other(url.as_str()).finish();
                if closed {
                    let _ = resp.add_cookie(&session_removal(&core));
                }
                resp
            }
            Err(e) => flow_page(&page, &e),
        };
    }
    match flow::finish_upstream_logout(&core, &connection, query).await {
        Ok(LogoutNext::Redirect(url)) => see_other(url.as_str()).finish(),
        Ok(_) => page.html(StatusCode::OK, "signed_out.html", serde_json::json!({})),
        Err(e) => flow_page(&page, &e),
    }
}

pub async fn logout(core: web::Data<Core>, req: HttpRequest, page: Page, body: web::Bytes) -> HttpResponse {
    let params = match read_params(&req, &body) {
        Ok(p) => p,
        Err(e) => return oauth_page(&page, &e),
    };
    // A POST of the confirmation form; SameSite=Lax keeps the session cookie off cross-site
    // POSTs, so another site cannot submit it for the person.
    let confirmed = req.method() == actix_web::http::Method::POST && params.get("confirm") == Some("yes");
    match flow::logout(&core, &params, confirmed, &page.browser).await {
        Ok(LogoutNext::Confirm(fields)) => {
            page.html(StatusCode::OK, "confirm_logout.html", serde_json::json!({ "fields": fields }))
        }
        Ok(next) => signed_out(&core, &page, next),
        Err(e) => flow_page(&page, &e),
    }
}

/// Where a logout ends: a redirect or the signed-out page, clearing the session cookie.
fn signed_out(core: &Core, page: &Page, next: LogoutNext) -> HttpResponse {
    let mut resp = match next {
        LogoutNext::Redirect(url) => see_other(url.as_str()).finish(),
        LogoutNext::SignedOut | LogoutNext::Confirm(_) => {
            page.html(StatusCode::OK, "signed_out.html", serde_json::json!({}))
        }
    };
    // Only a request that brought the session cookie clears it. A cross-site POST arrives
    // without it (SameSite=Lax) and ends nothing; clearing it anyway would sign the person
    // out of this browser from any other site. (Where a deployment chose SameSite=None, the
    // cookie does arrive, and the confirmation's CSRF token is what refuses the POST.)
    if page.browser.session.is_some() {
        let _ = resp.add_cookie(&session_removal(core));
    }
    resp
}

/// `GET /v2/logout`: Auth0's logout, what its SDKs call (`flow::auth0_logout`).
pub async fn auth0_logout(core: web::Data<Core>, req: HttpRequest, page: Page) -> HttpResponse {
    let params = match Params::parse(req.query_string().as_bytes()) {
        Ok(p) => p,
        Err(e) => return oauth_page(&page, &e),
    };
    match flow::auth0_logout(&core, &params, &page.browser).await {
        Ok(next) => signed_out(&core, &page, next),
        Err(e) => flow_page(&page, &e),
    }
}

/// `/continue`: back from an Action's `api.redirect.sendUserTo` (GET or POST).
pub async fn continue_login(core: web::Data<Core>, req: HttpRequest, page: Page, body: web::Bytes) -> HttpResponse {
    let params = match read_params(&req, &body) {
        Ok(p) => p,
        Err(e) => return oauth_page(&page, &e),
    };
    let from_post = req.method() == actix_web::http::Method::POST;
    match flow::continue_login(&core, &params, from_post, &page.browser).await {
        Ok(o) => outcome(&core, &page, o),
        Err(e) => flow_page(&page, &e),
    }
}
