//! API routes: discovery, JWKS, `/token` (and Auth0's spelling `/oauth/token`), `/userinfo`,
//! `/revoke`, `/introspect`.

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};

use super::Core;
use super::error::{bearer_error, oauth_json};
use crate::oauth::clients::{authenticate, presented};
use crate::oauth::resource;
use crate::oauth::token::exchange;
use crate::oauth::{ErrorCode, OAuthError, Params};
use crate::settings::ClientSettings;

/// The `Origin` of a browser app some client registered (see
/// [`ClientSettings::is_web_origin`]): such apps may read `/token`, `/oauth/token`,
/// `/userinfo` and `/revoke` responses (CORS). Exact match, never a wildcard, never
/// credentials: these endpoints take no cookies.
fn allowed_origin(core: &Core, req: &HttpRequest) -> Option<header::HeaderValue> {
    let origin = req.headers().get(header::ORIGIN)?;
    let text = origin.to_str().ok()?;
    core.settings.clients.iter().any(|c| c.is_web_origin(text)).then(|| origin.clone())
}

fn with_cors(core: &Core, req: &HttpRequest, mut resp: HttpResponse) -> HttpResponse {
    // The answer depends on Origin, whoever asks: caches must keep one per origin.
    resp.headers_mut().insert(header::VARY, header::HeaderValue::from_static("Origin"));
    if let Some(origin) = allowed_origin(core, req) {
        resp.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    }
    resp
}

/// CORS preflight for the endpoints browser apps call. An origin no client registered gets
/// no `Access-Control-Allow-*` header at all, so the browser never sends the request.
/// `Auth0-Client` is the header Auth0's SDKs add to every call (base64 JSON naming the SDK);
/// it is allowed and ignored.
pub async fn preflight(core: web::Data<Core>, req: HttpRequest) -> HttpResponse {
    let mut resp = HttpResponse::NoContent();
    resp.insert_header((header::VARY, "Origin"));
    let Some(origin) = allowed_origin(&core, &req) else { return resp.finish() };
    resp.insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, origin))
        .insert_header((header::ACCESS_CONTROL_ALLOW_METHODS, "GET, POST"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_HEADERS, "authorization, content-type, auth0-client"))
        .insert_header((header::ACCESS_CONTROL_MAX_AGE, "600"))
        .finish()
}

fn no_store(mut b: actix_web::HttpResponseBuilder) -> actix_web::HttpResponseBuilder {
    b.insert_header((header::CACHE_CONTROL, "no-store")).insert_header((header::PRAGMA, "no-cache"));
    b
}

pub async fn discovery(core: web::Data<Core>) -> HttpResponse {
    let i = &core.settings.issuer;
    let algs = core.keys.ring().algorithms();
    let auth_methods = ["client_secret_basic", "client_secret_post", "none"];
    let body = serde_json::json!({
        "issuer": i.as_str(),
        "authorization_endpoint": i.join("/authorize"),
        "token_endpoint": i.join("/token"),
        "userinfo_endpoint": i.join("/userinfo"),
        "jwks_uri": i.join("/.well-known/jwks.json"),
        "end_session_endpoint": i.join("/logout"),
        "revocation_endpoint": i.join("/revoke"),
        "introspection_endpoint": i.join("/introspect"),
        "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "form_post", "web_message"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": algs,
        "token_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "code_challenge_methods_supported": ["S256"],
        "prompt_values_supported": ["none", "login"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "auth_time", "nonce", "at_hash", "sid", "amr", "azp",
            "name", "given_name", "family_name", "nickname", "picture", "locale", "updated_at",
            "email", "email_verified", "groups"
        ],
        "authorization_response_iss_parameter_supported": true,
        "request_parameter_supported": false,
        "request_uri_parameter_supported": false,
        "claims_parameter_supported": false,
        "frontchannel_logout_supported": false,
        "backchannel_logout_supported": false,
    });
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .json(body)
}

pub async fn jwks(core: web::Data<Core>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "public, max-age=300"))
        .insert_header((header::ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .content_type("application/jwk-set+json")
        .json(core.keys.ring().jwks())
}

/// Parse the body and authenticate the client of a token-style request.
fn client<'c>(core: &'c Core, req: &HttpRequest, body: &[u8]) -> Result<(Params, &'c ClientSettings), OAuthError> {
    let ct = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Err(OAuthError::invalid_request("the body must be application/x-www-form-urlencoded"));
    }
    let params = Params::parse(body)?;
    let authorization = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    let who = presented(authorization, &params)?;
    let client = authenticate(&core.settings, &who)?;
    Ok((params, client))
}

pub async fn token(core: web::Data<Core>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let result = async {
        let (params, client) = client(&core, &req, &body)?;
        exchange(&core, client, &params).await
    }
    .await;
    let resp = match result {
        Ok(t) => no_store(HttpResponse::Ok()).json(t),
        Err(e) => {
            tracing::info!(error = e.code.as_str(), description = %e.description, "token request refused");
            core.metrics.error(e.code.as_str());
            oauth_json(&e)
        }
    };
    with_cors(&core, &req, resp)
}

pub async fn userinfo(core: web::Data<Core>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let header_token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.get(..7).filter(|p| p.eq_ignore_ascii_case("bearer ")).map(|_| v[7..].trim().to_owned()));
    let body_token = if req.method() == actix_web::http::Method::POST {
        Params::parse(&body).ok().and_then(|p| p.get("access_token").map(str::to_owned))
    } else {
        None
    };
    let token = match (header_token, body_token) {
        (Some(_), Some(_)) => return bearer_error(&OAuthError::invalid_request("send the token once")),
        (Some(t), None) | (None, Some(t)) => t,
        (None, None) => {
            return HttpResponse::Unauthorized()
                .insert_header((header::WWW_AUTHENTICATE, "Bearer realm=\"gatehouse\""))
                .finish();
        }
    };
    let resp = match resource::userinfo(&core, &token).await {
        Ok(claims) => no_store(HttpResponse::Ok()).json(claims),
        Err(e) => bearer_error(&e),
    };
    with_cors(&core, &req, resp)
}

pub async fn revoke(core: web::Data<Core>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let result = async {
        let (params, client) = client(&core, &req, &body)?;
        resource::revoke(&core, client, &params).await
    }
    .await;
    let resp = match result {
        Ok(()) => no_store(HttpResponse::Ok()).finish(),
        Err(e) => oauth_json(&e),
    };
    with_cors(&core, &req, resp)
}

pub async fn introspect(core: web::Data<Core>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    let result = async {
        let (params, client) = client(&core, &req, &body)?;
        if client.is_public() {
            return Err(OAuthError::new(ErrorCode::InvalidClient, "introspection needs a confidential client"));
        }
        resource::introspect(&core, &params).await
    }
    .await;
    match result {
        Ok(v) => no_store(HttpResponse::Ok()).json(v),
        Err(e) => oauth_json(&e),
    }
}
