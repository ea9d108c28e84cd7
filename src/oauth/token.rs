//! The token endpoint's grants: `authorization_code`, `refresh_token`, `client_credentials`;
//! and the authorization codes they consume.

use serde::Serialize;

use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::request::AuthorizationRequest;
use crate::settings::{ClientSettings, GrantType};
use crate::state::Core;
use crate::store::{CodeRecord, CustomClaims, GrantRecord, Redeemed, Rotation, StoreError, UserRecord};
use crate::tokens::{AccessClaims, IdTokenInput, mint_access_token, mint_id_token};
use crate::types::{AuthCode, RefreshToken, Scopes, UserId, random_token};

#[derive(Debug, Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<String>,
    pub scope: String,
}

/// Whom a code is for: the user and the session of the login it ends.
#[derive(Debug, Clone, Copy)]
pub struct CodeSubject<'a> {
    pub user_id: &'a UserId,
    pub sid: &'a str,
    pub auth_time: u64,
    pub amr: &'a [String],
}

/// Issue a single-use authorization code for a finished login; returns the code. Its one
/// caller is `flow::resume`.
pub async fn issue_code(
    core: &Core,
    req: &AuthorizationRequest,
    who: CodeSubject<'_>,
    custom: &CustomClaims,
) -> Result<AuthCode, StoreError> {
    // The id of the grant this code's redemption will create travels inside the code.
    let code = AuthCode::new(&random_token(16));
    let now = core.clock.now();
    let record = CodeRecord {
        client_id: req.client_id.clone(),
        redirect_uri: req.redirect_uri.clone(),
        scopes: req.scopes.clone(),
        nonce: req.nonce.clone(),
        code_challenge: req.code_challenge.clone(),
        user_id: who.user_id.clone(),
        sid: who.sid.to_owned(),
        auth_time: who.auth_time,
        amr: who.amr.to_vec(),
        issued_at: now,
        custom: custom.clone(),
        unsolicited: req.unsolicited,
    };
    core.store.codes.put(&code, &record, core.settings.tokens.code_ttl).await?;
    Ok(code)
}

pub async fn exchange(core: &Core, client: &ClientSettings, p: &Params) -> Result<TokenResponse, OAuthError> {
    let grant = p.require("grant_type")?;
    let grant = GrantType::parse(grant)
        .ok_or_else(|| OAuthError::new(ErrorCode::UnsupportedGrantType, "grant_type is not supported"))?;
    if !client.allows(grant) {
        return Err(OAuthError::new(ErrorCode::UnauthorizedClient, "this client may not use this grant type"));
    }
    let response = match grant {
        GrantType::AuthorizationCode => authorization_code(core, client, p).await,
        GrantType::RefreshToken => refresh_token(core, client, p).await,
        GrantType::ClientCredentials => client_credentials(core, client, p).await,
    }?;
    core.metrics.token(grant.as_str());
    Ok(response)
}

/// How long any access token of a grant can live: what a revocation marker must outlast.
fn revocation_ttl(core: &Core) -> u64 {
    core.settings.tokens.access_token_ttl.max(core.settings.tokens.refresh_absolute_ttl)
}

async fn authorization_code(core: &Core, client: &ClientSettings, p: &Params) -> Result<TokenResponse, OAuthError> {
    let code = AuthCode::from_presented(p.require("code")?);
    // The grant keeps the code's hash while it lives (a refresh family: up to 30 days), so a
    // replay then revokes what the first use issued (RFC 6749 10.5). A grant without a
    // refresh token has no record: its code's hash is kept as long as its access tokens live.
    let code_only = core.settings.tokens.access_token_ttl.max(core.settings.tokens.code_ttl);
    let record = match core.store.codes.redeem(&code, code_only).await? {
        Redeemed::Fresh(r) => *r,
        Redeemed::Reused { grant_id: first } => {
            // RFC 6749 10.5: a code used twice revokes what its first use issued.
            core.store.grants.revoke(&first, revocation_ttl(core)).await?;
            tracing::warn!(client_id = %client.id, "authorization code reused; its grant is revoked");
            core.metrics.error("code_reuse");
            return Err(OAuthError::invalid_grant("the authorization code has already been used"));
        }
        Redeemed::Unknown => return Err(OAuthError::invalid_grant("the authorization code is invalid or expired")),
    };
    if record.client_id != client.id {
        return Err(OAuthError::invalid_grant("the authorization code was issued to another client"));
    }
    if p.get("redirect_uri") != Some(record.redirect_uri.as_str()) {
        return Err(OAuthError::invalid_grant("redirect_uri does not match the authorization request"));
    }
    match (&record.code_challenge, p.get("code_verifier")) {
        (Some(challenge), Some(verifier)) if challenge.verify(verifier) => {}
        (Some(_), _) => return Err(OAuthError::invalid_grant("code_verifier does not match the code_challenge")),
        (None, Some(_)) => return Err(OAuthError::invalid_grant("code_verifier sent but no code_challenge was")),
        // An IdP-initiated login had no client request to carry a challenge; only a
        // confidential client gets such a code (checked at start), and it authenticated.
        (None, None) if (client.require_pkce && !record.unsolicited) || client.is_public() => {
            return Err(OAuthError::invalid_grant("PKCE is required for this client"));
        }
        (None, None) => {}
    }
    let user = load_user(core, &record.user_id).await?;
    let now = core.clock.now();
    let refresh = issue_refresh(client, &record.scopes);
    // `redeem` found the record, so the code has the grant id it was issued with.
    let Some(grant_id) = code.grant_id() else {
        return Err(OAuthError::invalid_grant("the authorization code is invalid or expired"));
    };
    let mut grant = GrantRecord {
        id: grant_id.to_owned(),
        client_id: client.id.clone(),
        user_id: record.user_id.clone(),
        scopes: record.scopes.clone(),
        sid: record.sid.clone(),
        auth_time: record.auth_time,
        amr: record.amr.clone(),
        created_at: now,
        last_used_at: now,
        refresh: None,
        rotated: Vec::new(),
        expires_at: now + core.settings.tokens.refresh_absolute_ttl,
        idle_ttl: core.settings.tokens.refresh_idle_ttl,
        custom: record.custom.clone(),
    };
    let refresh_token = if refresh {
        let token = RefreshToken::new(&grant.id);
        grant.refresh = Some(token.hash());
        core.store.grants.put(&grant).await?;
        Some(token.expose().to_owned())
    } else {
        None
    };
    user_tokens(core, &grant, &user, record.nonce.as_deref(), refresh_token)
}

fn issue_refresh(client: &ClientSettings, scopes: &Scopes) -> bool {
    scopes.contains("offline_access") && client.allows(GrantType::RefreshToken)
}

async fn load_user(core: &Core, id: &crate::types::UserId) -> Result<UserRecord, OAuthError> {
    core.store.users.get(id).await?.ok_or_else(|| OAuthError::invalid_grant("the user no longer exists"))
}

/// Access and ID token for a user grant.
fn user_tokens(
    core: &Core,
    grant: &GrantRecord,
    user: &UserRecord,
    nonce: Option<&str>,
    refresh_token: Option<String>,
) -> Result<TokenResponse, OAuthError> {
    let now = core.clock.now();
    let ttl = core.settings.tokens.access_token_ttl;
    let ring = core.keys.ring();
    let access_scopes: Scopes = grant
        .scopes
        .iter()
        .map(str::to_owned)
        .chain(grant.custom.add_scopes.iter().cloned())
        .filter(|s| !grant.custom.remove_scopes.contains(s))
        .collect();
    let access = AccessClaims {
        iss: core.settings.issuer.to_string(),
        sub: user.user_id.to_string(),
        aud: core.settings.issuer.join("/userinfo"),
        client_id: grant.client_id.to_string(),
        scope: access_scopes.to_string(),
        jti: format!("{}.{}", grant.id, random_token(12)),
        exp: now + ttl,
        iat: now,
        auth_time: Some(grant.auth_time),
        sid: Some(grant.sid.clone()),
        extra: grant.custom.access_token.clone(),
    };
    let access_token = capped("access token", mint_access_token(&ring, &access)?)?;
    let id_token = mint_id_token(
        &ring,
        &IdTokenInput {
            issuer: &core.settings.issuer,
            client_id: &grant.client_id,
            user,
            scopes: &grant.scopes,
            nonce,
            auth_time: grant.auth_time,
            sid: &grant.sid,
            amr: &grant.amr,
            access_token: Some(&access_token),
            now,
            ttl: core.settings.tokens.id_token_ttl,
            custom: &grant.custom.id_token,
        },
    )?;
    let id_token = capped("ID token", id_token)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: ttl,
        id_token: Some(id_token),
        refresh_token,
        // RFC 6749 5.1: the scope of the access token issued, with what Actions added or
        // removed.
        scope: access_scopes.to_string(),
    })
}

/// Refuse a token past [`MAX_TOKEN_BYTES`](crate::actions::limits::MAX_TOKEN_BYTES): what
/// Actions and profiles add must not make tokens that clients and proxies choke on.
fn capped(what: &'static str, token: String) -> Result<String, OAuthError> {
    let max = crate::actions::limits::MAX_TOKEN_BYTES;
    if token.len() > max {
        tracing::error!(token = what, bytes = token.len(), limit = max, "a token would exceed the size limit; refused");
        return Err(OAuthError::new(ErrorCode::ServerError, format!("the {what} would be larger than {max} bytes")));
    }
    Ok(token)
}

/// A refresh token is `<grant id>.<secret>`: the id finds the family, the hash of the whole
/// token must be the family's current one.
pub fn refresh_grant_id(token: &str) -> Option<&str> {
    RefreshToken::grant_id_of(token)
}

async fn refresh_token(core: &Core, client: &ClientSettings, p: &Params) -> Result<TokenResponse, OAuthError> {
    let token = RefreshToken::from_presented(p.require("refresh_token")?);
    let invalid = || OAuthError::invalid_grant("the refresh token is invalid, expired or revoked");
    let grant_id = token.grant_id().ok_or_else(invalid)?;
    // Check the owner before rotating, so another client's attempt leaves the family intact.
    let current = core.store.grants.get(grant_id).await?.ok_or_else(invalid)?;
    if current.client_id != client.id {
        return Err(OAuthError::invalid_grant("the refresh token was issued to another client"));
    }
    let scopes = match p.get("scope") {
        None => current.scopes.clone(),
        Some(s) => {
            let asked = Scopes::parse(s).map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.0))?;
            if !asked.is_subset_of(&current.scopes) {
                return Err(OAuthError::new(ErrorCode::InvalidScope, "scope exceeds the original grant"));
            }
            asked
        }
    };
    // Everything that can fail comes before the rotation: once rotated, a client that never
    // received the new token would find its retry treated as reuse. The post-login Actions
    // run here too (Auth0 does); a denial rotates and revokes nothing.
    let mut user = load_user(core, &current.user_id).await?;
    let now = core.clock.now();
    // Only for the current token of a live family: a rotated-out, wrong or expired one goes
    // straight to `rotate`, which refuses it (and revokes the family on reuse) without
    // running anything, so no Action writes metadata for a refresh that then fails. The
    // hashes are of high-entropy tokens, so comparing them leaks nothing useful.
    let custom = if current.refresh == Some(token.hash()) && current.usable_at(now) {
        super::refresh_actions::on_refresh(core, client, &current, &mut user, &scopes).await?
    } else {
        current.custom.clone()
    };
    let next = RefreshToken::new(grant_id);
    let mut grant = match core.store.grants.rotate(grant_id, token.hash(), next.hash(), now).await? {
        Rotation::Rotated(g) => *g,
        Rotation::Reused => {
            tracing::warn!(client_id = %client.id, "refresh token reuse; the family is revoked");
            core.store.revocations.revoke(&format!("grant:{grant_id}"), revocation_ttl(core)).await?;
            core.metrics.error("refresh_reuse");
            return Err(OAuthError::invalid_grant("the refresh token was already used; the grant is revoked"));
        }
        Rotation::Invalid => return Err(invalid()),
    };
    grant.scopes = scopes;
    grant.custom = custom;
    user_tokens(core, &grant, &user, None, Some(next.expose().to_owned()))
}

async fn client_credentials(core: &Core, client: &ClientSettings, p: &Params) -> Result<TokenResponse, OAuthError> {
    let audience = match (p.get("audience"), client.apis.as_slice()) {
        (Some(a), _) => a,
        (None, [only]) => only.as_str(),
        (None, _) => return Err(OAuthError::invalid_request("audience is required")),
    };
    if !client.apis.iter().any(|a| a == audience) {
        return Err(OAuthError::new(ErrorCode::InvalidTarget, "this client may not request tokens for that audience"));
    }
    let api =
        core.settings.api(audience).ok_or_else(|| OAuthError::new(ErrorCode::InvalidTarget, "unknown audience"))?;
    let scopes = match p.get("scope") {
        None => api.scopes.iter().cloned().collect::<Scopes>(),
        Some(s) => {
            let asked = Scopes::parse(s).map_err(|e| OAuthError::new(ErrorCode::InvalidScope, e.0))?;
            if let Some(bad) = asked.iter().find(|s| !api.scopes.iter().any(|a| a == s)) {
                return Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    format!("scope {bad} is not defined by this API"),
                ));
            }
            asked
        }
    };
    let extra = credentials_exchange_actions(core, client, &api.audience, &scopes).await?;
    let now = core.clock.now();
    let ttl = api.access_token_ttl.unwrap_or(core.settings.tokens.access_token_ttl);
    let claims = AccessClaims {
        iss: core.settings.issuer.to_string(),
        sub: core.settings.tokens.client_credentials_subject.subject(&client.id),
        aud: api.audience.clone(),
        client_id: client.id.to_string(),
        scope: scopes.to_string(),
        jti: random_token(16),
        exp: now + ttl,
        iat: now,
        auth_time: None,
        sid: None,
        extra,
    };
    Ok(TokenResponse {
        access_token: capped("access token", mint_access_token(&core.keys.ring(), &claims)?)?,
        token_type: "Bearer",
        expires_in: ttl,
        id_token: None,
        refresh_token: None,
        scope: scopes.to_string(),
    })
}

/// The credentials-exchange Actions: claims for the machine-to-machine access token, or a
/// denial. Nothing runs (and nothing is spent) when none is configured.
async fn credentials_exchange_actions(
    core: &Core,
    client: &ClientSettings,
    audience: &str,
    scopes: &Scopes,
) -> Result<serde_json::Map<String, serde_json::Value>, OAuthError> {
    let actions = &core.settings.actions;
    if actions.credentials_exchange.is_empty() {
        return Ok(Default::default());
    }
    let event = serde_json::json!({
        "client": { "client_id": client.id.as_str(), "name": client.name, "metadata": {} },
        "resource_server": { "identifier": audience },
        "request": { "hostname": core.settings.issuer.as_str() },
        "transaction": { "requested_scopes": scopes.iter().collect::<Vec<_>>() },
    });
    let effects = crate::actions::run(
        actions,
        crate::actions::Trigger::CredentialsExchange,
        &event,
        core.store.action_cache.as_ref(),
        &core.clock,
    )
    .await
    .map_err(|_| OAuthError::server_error())?;
    if let Some(reason) = effects.deny {
        return Err(OAuthError::new(ErrorCode::AccessDenied, reason));
    }
    Ok(effects.claims.access_token)
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_token_past_the_size_cap_is_refused() {
        let max = crate::actions::limits::MAX_TOKEN_BYTES;
        assert_eq!(super::capped("ID token", "x".repeat(max)).unwrap().len(), max);
        let e = super::capped("ID token", "x".repeat(max + 1)).unwrap_err();
        assert_eq!(e.code, super::ErrorCode::ServerError);
        assert!(e.description.contains("larger than 16384 bytes"), "{}", e.description);
    }
}
