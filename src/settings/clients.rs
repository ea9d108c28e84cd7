//! One `[[clients]]` element into [`ClientSettings`]: authentication, redirect URIs, grants
//! and references to connections and APIs.

use super::ctx::Ctx;
use super::raw::RawClient;
use super::{ApiSettings, AuthMethod, ClientSettings, ConnectionSettings, GrantType, defaults, secret_digest};
use crate::types::{ClientId, ConnectionId, RedirectUri, WebOrigin};

pub(super) fn client(
    ctx: &mut Ctx<'_>,
    path: &str,
    c: RawClient,
    apis: &[ApiSettings],
    known: &[ConnectionSettings],
) -> Option<ClientSettings> {
    let before = ctx.errors.len();
    let id = ClientId::parse(&c.client_id).map_err(|e| ctx.err(format!("{path}.client_id"), e.0)).ok();
    let auth_method = match (c.token_endpoint_auth_method.as_deref(), &c.client_secret) {
        (None, Some(_)) | (Some("client_secret_basic"), Some(_)) => AuthMethod::ClientSecretBasic,
        (Some("client_secret_post"), Some(_)) => AuthMethod::ClientSecretPost,
        (None, None) | (Some("none"), None) => AuthMethod::None,
        (Some("none"), Some(_)) => {
            ctx.err(
                format!("{path}.client_secret"),
                "a public client (token_endpoint_auth_method = \"none\") has no secret",
            );
            AuthMethod::None
        }
        (Some("client_secret_basic" | "client_secret_post"), None) => {
            ctx.err(format!("{path}.client_secret"), "is required for this token_endpoint_auth_method");
            AuthMethod::None
        }
        (Some(other), _) => {
            ctx.err(
                format!("{path}.token_endpoint_auth_method"),
                format!("{other} is not one of client_secret_basic, client_secret_post, none"),
            );
            AuthMethod::None
        }
    };
    if let Some(secret) = &c.client_secret
        && secret.expose().len() < 32
    {
        ctx.err(
            format!("{path}.client_secret"),
            "must be at least 32 characters (it is compared by SHA-256, so it must be high-entropy)",
        );
    }
    // Auth0's names are aliases: a client may use either name of a setting, never both (which
    // one would win is a guess the file should not leave to the reader).
    let (redirect_key, redirect_list) =
        alias(ctx, path, ("redirect_uris", c.redirect_uris), ("callbacks", c.callbacks));
    let (logout_key, logout_list) = alias(
        ctx,
        path,
        ("post_logout_redirect_uris", c.post_logout_redirect_uris),
        ("allowed_logout_urls", c.allowed_logout_urls),
    );
    let mut uris = |key: &str, list: &[String]| -> Vec<RedirectUri> {
        list.iter()
            .enumerate()
            .filter_map(|(j, u)| RedirectUri::parse(u).map_err(|e| ctx.err(format!("{path}.{key}[{j}]"), e.0)).ok())
            .collect()
    };
    let redirect_uris = uris(redirect_key, &redirect_list);
    let post_logout_redirect_uris = uris(logout_key, &logout_list);
    let web_origins = c
        .web_origins
        .iter()
        .enumerate()
        .filter_map(|(j, o)| WebOrigin::parse(o).map_err(|e| ctx.err(format!("{path}.web_origins[{j}]"), e.0)).ok())
        .collect();
    let grant_names = c.grant_types.unwrap_or_else(|| {
        let grants = if redirect_list.is_empty() { defaults::MACHINE_GRANTS } else { defaults::BROWSER_GRANTS };
        grants.iter().map(|g| (*g).to_owned()).collect()
    });
    let mut grant_types = Vec::new();
    for (j, g) in grant_names.iter().enumerate() {
        match GrantType::parse(g) {
            Some(g) => grant_types.push(g),
            None => ctx.err(
                format!("{path}.grant_types[{j}]"),
                format!("{g} is not one of authorization_code, refresh_token, client_credentials (implicit is not supported)"),
            ),
        }
    }
    if grant_types.contains(&GrantType::AuthorizationCode) && redirect_uris.is_empty() && redirect_list.is_empty() {
        ctx.err(format!("{path}.{redirect_key}"), "authorization_code needs at least one redirect URI");
    }
    if grant_types.contains(&GrantType::ClientCredentials) && c.client_secret.is_none() {
        ctx.err(format!("{path}.grant_types"), "client_credentials needs a confidential client (a client_secret)");
    }
    let require_pkce = c.require_pkce.unwrap_or(defaults::REQUIRE_PKCE);
    if !require_pkce && c.client_secret.is_none() {
        ctx.err(format!("{path}.require_pkce"), "a public client must use PKCE");
    }
    let mut connections = Vec::new();
    for (j, id) in c.connections.iter().enumerate() {
        match ConnectionId::parse(id) {
            Ok(id) if known.iter().any(|k| k.id == id) => connections.push(id),
            Ok(id) => ctx.err(format!("{path}.connections[{j}]"), format!("no connection {id} is defined")),
            Err(e) => ctx.err(format!("{path}.connections[{j}]"), e.0),
        }
    }
    for (j, api) in c.apis.iter().enumerate() {
        if !apis.iter().any(|a| &a.audience == api) {
            ctx.err(format!("{path}.apis[{j}]"), format!("no api with audience {api} is defined"));
        }
    }
    if ctx.errors.len() > before {
        return None;
    }
    let id = id?;
    Some(ClientSettings {
        name: c.name.unwrap_or_else(|| id.to_string()),
        id,
        secret_digest: c.client_secret.as_ref().map(secret_digest),
        auth_method,
        redirect_uris,
        post_logout_redirect_uris,
        web_origins,
        grant_types,
        connections,
        require_pkce,
        apis: c.apis,
    })
}

/// One setting under its own name or Auth0's: the name used (for error paths) and the list.
/// Both names set is an error at the Auth0 name's path.
fn alias(
    ctx: &mut Ctx<'_>,
    path: &str,
    ours: (&'static str, Option<Vec<String>>),
    auth0: (&'static str, Option<Vec<String>>),
) -> (&'static str, Vec<String>) {
    match (ours.1, auth0.1) {
        (Some(list), None) => (ours.0, list),
        (None, Some(list)) => (auth0.0, list),
        (None, None) => (ours.0, Vec::new()),
        (Some(list), Some(_)) => {
            ctx.err(format!("{path}.{}", auth0.0), format!("is Auth0's name for {}: set only one of them", ours.0));
            (ours.0, list)
        }
    }
}
