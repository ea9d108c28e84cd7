//! Per-request context for handlers: the correlation id, the CSP nonce, the browser's
//! cookies, and HTML responses with the security headers every hosted page carries.

use std::future::{Ready, ready};

use actix_web::cookie::{Cookie, SameSite, time::Duration};
use actix_web::http::{StatusCode, header};
use actix_web::{FromRequest, HttpMessage, HttpRequest, HttpResponse, HttpResponseBuilder};
use serde::Serialize;

use crate::flow::{AuthorizationResponse, Browser};
use crate::session::cookie_names;
use crate::settings::SessionSameSite;
use crate::state::Core;
use crate::store::ResponseMode;
use crate::types::{WebOrigin, random_token};

/// Set by the middleware on every request; quoted on error pages and in every log line.
#[derive(Clone, Debug)]
pub struct CorrelationId(pub String);

/// What a handler needs to answer a browser.
pub struct Page {
    pub correlation_id: String,
    pub nonce: String,
    pub browser: Browser,
}

impl FromRequest for Page {
    type Error = actix_web::Error;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, _: &mut actix_web::dev::Payload) -> Self::Future {
        let correlation_id = req.extensions().get::<CorrelationId>().map(|c| c.0.clone()).unwrap_or_default();
        let cookie = |name: &str| req.cookie(name).map(|c| c.value().to_owned());
        let core = req.app_data::<actix_web::web::Data<Core>>();
        let names = cookie_names(core.is_some_and(|c| c.settings.session.cookie_secure));
        let client = client(req);
        ready(Ok(Page {
            correlation_id,
            nonce: random_token(12),
            browser: Browser {
                binding: cookie(names.browser),
                session: cookie(names.session),
                ip: client.map(|c| c.ip),
                country: client.and_then(|c| c.country),
                user_agent: req
                    .headers()
                    .get(header::USER_AGENT)
                    .and_then(|v| v.to_str().ok())
                    .map(|v| v.chars().take(512).collect()),
                hostname: Some(req.connection_info().host().split(':').next().unwrap_or_default().to_owned()),
            },
        }))
    }
}

/// The client behind the peer: the peer itself, or, when the peer is a trusted proxy, the
/// address and country it forwarded (`crate::net`).
pub fn client(req: &HttpRequest) -> Option<crate::net::Client> {
    let peer = req.peer_addr()?.ip();
    let Some(core) = req.app_data::<actix_web::web::Data<Core>>() else {
        return Some(crate::net::Client { ip: peer, country: None });
    };
    let proxies = &core.settings.http.proxies;
    let headers = req.headers();
    let forwarded = headers.get_all("x-forwarded-for").filter_map(|v| v.to_str().ok());
    let country = proxies.country_header.as_deref().and_then(|h| headers.get(h)).and_then(|v| v.to_str().ok());
    Some(proxies.client(peer, forwarded, country))
}

impl Page {
    /// A builder with the headers every hosted page carries: a strict CSP whose only inline
    /// code is this response's nonce, no framing, no caching, no referrer.
    pub fn builder(&self, status: StatusCode) -> HttpResponseBuilder {
        let mut b = self.builder_framed_by(status, None);
        b.insert_header((header::X_FRAME_OPTIONS, "DENY"));
        b
    }

    /// The same headers, with `frame-ancestors` set to `origin` (the one page that may be
    /// framed, by its client's registered web origin) or `'none'`.
    fn builder_framed_by(&self, status: StatusCode, origin: Option<&WebOrigin>) -> HttpResponseBuilder {
        let ancestors = origin.map_or("'none'", WebOrigin::as_str);
        let mut b = HttpResponse::build(status);
        b.insert_header((
            header::CONTENT_SECURITY_POLICY,
            format!(
                "default-src 'none'; script-src 'self' 'nonce-{n}'; style-src 'nonce-{n}'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; frame-ancestors {ancestors}",
                n = self.nonce
            ),
        ))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .content_type("text/html; charset=utf-8");
        b
    }

    pub fn html<S: Serialize>(&self, status: StatusCode, template: &str, ctx: S) -> HttpResponse {
        self.builder(status).body(crate::ui::render(template, &self.nonce, ctx))
    }

    /// A page only `origin` may frame (CSP `frame-ancestors`; no `X-Frame-Options`, whose
    /// `DENY` would win and whose `ALLOW-FROM` browsers ignore).
    pub fn html_framed_by<S: Serialize>(&self, origin: &WebOrigin, template: &str, ctx: S) -> HttpResponse {
        self.builder_framed_by(StatusCode::OK, Some(origin)).body(crate::ui::render(template, &self.nonce, ctx))
    }

    pub fn error(&self, status: StatusCode, title: &str, message: &str, code: &str) -> HttpResponse {
        self.error_with_back(status, title, message, code, None)
    }

    /// An error page; with `back`, a button that returns to the application with the given
    /// authorization (error) response, in the client's response mode.
    pub fn error_with_back(
        &self,
        status: StatusCode,
        title: &str,
        message: &str,
        code: &str,
        back: Option<&AuthorizationResponse>,
    ) -> HttpResponse {
        /// A link for `query` (a GET form would drop a query the redirect URI has), a form
        /// for `form_post`.
        #[derive(Serialize)]
        struct Back<'a> {
            url: Option<String>,
            action: &'a str,
            fields: &'a [(String, String)],
        }
        #[derive(Serialize)]
        struct Ctx<'a> {
            title: &'a str,
            message: &'a str,
            code: &'a str,
            correlation_id: &'a str,
            back: Option<Back<'a>>,
        }
        let back = back.map(|b| Back {
            url: (b.mode == ResponseMode::Query).then(|| b.url().to_string()),
            action: b.redirect_uri.as_str(),
            fields: &b.params,
        });
        let ctx = Ctx { title, message, code, correlation_id: &self.correlation_id, back };
        let mut b = self.builder(status);
        if status == StatusCode::SERVICE_UNAVAILABLE {
            // The store is out (or the node is starting): tell browsers and proxies when to
            // try again, as the token endpoint does.
            b.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
        }
        b.body(crate::ui::render("error.html", &self.nonce, ctx))
    }
}

/// `Retry-After` of every 503, page or JSON.
pub const RETRY_AFTER_SECS: &str = "1";

/// A cookie of ours: HttpOnly, SameSite=Lax (upstream callbacks arrive as top-level
/// navigations, which Lax allows), Secure under https.
pub fn cookie(name: &'static str, value: String, secure: bool, max_age: Option<u64>) -> Cookie<'static> {
    let mut c = Cookie::build(name, value).path("/").http_only(true).secure(secure).same_site(SameSite::Lax).finish();
    if let Some(secs) = max_age {
        c.set_max_age(Duration::seconds(secs.min(i64::MAX as u64) as i64));
    }
    c
}

/// The transaction-binding cookie. Under https it is `SameSite=None`, so upstream callbacks
/// that arrive as cross-site POSTs (SAML, `form_post`) still carry it; it binds, it does not
/// authenticate (the session cookie stays `Lax`). Plain http cannot use `None` (it needs
/// `Secure`), so local setups keep `Lax`.
pub fn binding_cookie(value: String, secure: bool) -> Cookie<'static> {
    let mut c = cookie(cookie_names(secure).browser, value, secure, None);
    if secure {
        c.set_same_site(SameSite::None);
    }
    c
}

/// The SSO session cookie: `SameSite=Lax`, or `None` where the deployment chose it
/// (`session.cookie_same_site`, for silent authentication in a cross-site iframe) and the
/// cookie is Secure (browsers drop a `None` cookie that is not).
pub fn session_cookie(core: &Core, value: Option<String>) -> Cookie<'static> {
    let s = &core.settings.session;
    let name = cookie_names(s.cookie_secure).session;
    let mut c = match value {
        Some(v) => cookie(name, v, s.cookie_secure, Some(s.ttl)),
        None => removal(name, s.cookie_secure),
    };
    if s.cookie_secure && s.cookie_same_site == SessionSameSite::None {
        c.set_same_site(SameSite::None);
    }
    c
}

/// The removal of the session cookie, with the attributes it was set with.
pub fn session_removal(core: &Core) -> Cookie<'static> {
    session_cookie(core, None)
}

pub fn removal(name: &'static str, secure: bool) -> Cookie<'static> {
    let mut c = cookie(name, String::new(), secure, None);
    c.make_removal();
    c
}
