//! Validation of an authorization request (`/authorize`), in the order that decides how an
//! error may be reported: until the client and its redirect URI are trusted, errors go to an
//! error page; after that, to the client's redirect URI (RFC 6749 4.1.2.1).

use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::request::AuthorizationRequest;
use crate::settings::{ClientSettings, Settings};
use crate::store::ResponseMode;
use crate::types::{ClientId, ConnectionId, PkceChallenge, RedirectUri, Scopes};

/// Where an authorization error is reported.
#[derive(Debug, Clone, PartialEq)]
pub enum AuthorizeError {
    /// The client or its redirect URI is not trusted: an error page, never a redirect.
    Page(OAuthError),
    /// Reported to the client at its registered redirect URI.
    Redirect(ErrorResponse),
}

/// An error sent to a client's registered redirect URI.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorResponse {
    pub redirect_uri: RedirectUri,
    pub response_mode: ResponseMode,
    pub state: Option<String>,
    pub error: OAuthError,
}

/// `prompt` as Gatehouse honours it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prompt {
    Default,
    None,
    Login,
}

#[derive(Debug, Clone)]
pub struct ValidRequest<'a> {
    /// The client, looked up once here and passed on.
    pub client: &'a ClientSettings,
    pub request: AuthorizationRequest,
    pub prompt: Prompt,
    pub id_token_hint: Option<String>,
}

impl ValidRequest<'_> {
    pub fn error(&self, code: ErrorCode, description: &'static str) -> ErrorResponse {
        ErrorResponse {
            redirect_uri: self.request.redirect_uri.clone(),
            response_mode: self.request.response_mode,
            state: self.request.state.clone(),
            error: OAuthError::new(code, description),
        }
    }
}

pub fn validate<'a>(settings: &'a Settings, p: &Params) -> Result<ValidRequest<'a>, AuthorizeError> {
    let page = |e: OAuthError| AuthorizeError::Page(e);
    let client_id = p.require("client_id").map_err(page)?;
    let client_id = ClientId::parse(client_id).map_err(|e| page(OAuthError::invalid_request(e.0)))?;
    let client = settings
        .known_clients()
        .get(&client_id)
        .ok_or_else(|| page(OAuthError::new(ErrorCode::InvalidClient, "unknown client_id")))?;
    let redirect_uri = p.require("redirect_uri").map_err(page)?;
    // Exact string comparison against what was registered: no normalisation, no prefix.
    let redirect_uri = client
        .redirect_uris
        .iter()
        .find(|r| r.as_str() == redirect_uri)
        .cloned()
        .ok_or_else(|| page(OAuthError::invalid_request("redirect_uri is not registered for this client")))?;

    let state = p.get("state").map(str::to_owned);
    let response_mode = match p.get("response_mode") {
        None | Some("query") => ResponseMode::Query,
        Some("form_post") => ResponseMode::FormPost,
        Some("web_message") => ResponseMode::WebMessage,
        Some(_) => ResponseMode::Query,
    };
    // web_message posts the response into the page that framed us, addressed to the
    // redirect URI's origin: only an origin the client registered in web_origins may get
    // it, so anything else is an error page and nothing is posted anywhere.
    if response_mode == ResponseMode::WebMessage
        && !redirect_uri.origin().is_some_and(|o| client.web_origins.contains(&o))
    {
        return Err(page(OAuthError::invalid_request(
            "response_mode=web_message needs the redirect_uri's origin in the client's web_origins",
        )));
    }
    let fail = |code: ErrorCode, d: &'static str| {
        AuthorizeError::Redirect(ErrorResponse {
            redirect_uri: redirect_uri.clone(),
            response_mode,
            state: state.clone(),
            error: OAuthError::new(code, d),
        })
    };
    if let Some(mode) = p.get("response_mode")
        && !matches!(mode, "query" | "form_post" | "web_message")
    {
        return Err(fail(ErrorCode::InvalidRequest, "response_mode must be query, form_post or web_message"));
    }
    if p.get("request").is_some() {
        return Err(fail(ErrorCode::InvalidRequest, "request objects are not supported"));
    }
    if p.get("request_uri").is_some() {
        return Err(fail(ErrorCode::InvalidRequest, "request_uri is not supported"));
    }
    match p.get("response_type") {
        None => return Err(fail(ErrorCode::InvalidRequest, "response_type is required")),
        Some("code") => {}
        Some(_) => {
            return Err(fail(
                ErrorCode::UnsupportedResponseType,
                "only response_type=code is supported (implicit and hybrid flows are off)",
            ));
        }
    }
    if !client.allows(crate::settings::GrantType::AuthorizationCode) {
        return Err(fail(ErrorCode::UnauthorizedClient, "this client may not use the authorization code flow"));
    }
    let scopes =
        Scopes::parse(p.get("scope").unwrap_or("")).map_err(|_| fail(ErrorCode::InvalidScope, "scope is malformed"))?;
    if !scopes.contains("openid") {
        return Err(fail(ErrorCode::InvalidScope, "scope must include openid"));
    }
    let code_challenge = match (p.get("code_challenge"), p.get("code_challenge_method")) {
        (None, None) if client.require_pkce => {
            return Err(fail(
                ErrorCode::InvalidRequest,
                "PKCE is required: send code_challenge with code_challenge_method=S256",
            ));
        }
        (None, None) => None,
        (None, Some(_)) => return Err(fail(ErrorCode::InvalidRequest, "code_challenge is required")),
        (Some(_), None | Some("plain")) => {
            return Err(fail(ErrorCode::InvalidRequest, "code_challenge_method must be S256 (plain is refused)"));
        }
        (Some(c), Some("S256")) => {
            Some(PkceChallenge::parse_s256(c).map_err(|e| fail(ErrorCode::InvalidRequest, e.0))?)
        }
        (Some(_), Some(_)) => return Err(fail(ErrorCode::InvalidRequest, "code_challenge_method must be S256")),
    };
    let prompt = parse_prompt(p.get("prompt")).map_err(|d| fail(ErrorCode::InvalidRequest, d))?;
    // The web_message page is framed and shows nothing: silent authentication only (a
    // login page can never be framed). Popup logins are not supported yet.
    if response_mode == ResponseMode::WebMessage && prompt != Prompt::None {
        return Err(fail(ErrorCode::InvalidRequest, "response_mode=web_message needs prompt=none"));
    }
    let max_age = match p.get("max_age") {
        None => None,
        Some(v) => Some(
            v.parse::<u64>().map_err(|_| fail(ErrorCode::InvalidRequest, "max_age must be a non-negative integer"))?,
        ),
    };
    let nonce = p.get("nonce").map(str::to_owned);
    if nonce.as_ref().is_some_and(|n| n.len() > 512) || state.as_ref().is_some_and(|s| s.len() > 2048) {
        return Err(fail(ErrorCode::InvalidRequest, "state or nonce is too long"));
    }
    let connection = match p.get("connection") {
        None => None,
        Some(c) => Some(
            ConnectionId::parse(c)
                .ok()
                .and_then(|c| allowed_connection(client, &c))
                .ok_or_else(|| fail(ErrorCode::InvalidRequest, "connection is not enabled for this client"))?,
        ),
    };
    Ok(ValidRequest {
        client,
        request: AuthorizationRequest {
            client_id,
            redirect_uri,
            scopes,
            state,
            nonce,
            code_challenge,
            response_mode,
            prompt_login: prompt == Prompt::Login || max_age == Some(0),
            max_age,
            login_hint: p.get("login_hint").map(|h| h.chars().take(256).collect()),
            connection,
            ui_locales: p.get("ui_locales").map(str::to_owned),
            hint_sub: None,
            unsolicited: false,
        },
        prompt,
        id_token_hint: p.get("id_token_hint").map(str::to_owned),
    })
}

fn parse_prompt(v: Option<&str>) -> Result<Prompt, &'static str> {
    let Some(v) = v else { return Ok(Prompt::Default) };
    let values: Vec<&str> = v.split(' ').filter(|s| !s.is_empty()).collect();
    if values.contains(&"none") && values.len() > 1 {
        return Err("prompt=none cannot be combined with other values");
    }
    if values.contains(&"none") {
        return Ok(Prompt::None);
    }
    if values.contains(&"login") {
        return Ok(Prompt::Login);
    }
    // consent and select_account need no screen of their own here: a login proceeds.
    if values.iter().all(|v| matches!(*v, "consent" | "select_account")) {
        return Ok(Prompt::Default);
    }
    Err("prompt has an unsupported value")
}

/// The connection `id` if this client allows it.
pub fn allowed_connection(client: &ClientSettings, id: &ConnectionId) -> Option<ConnectionId> {
    client.connections.iter().find(|c| *c == id).cloned()
}
