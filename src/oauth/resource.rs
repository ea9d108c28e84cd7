//! Reading Gatehouse's own tokens back: `/userinfo`, `/revoke` (RFC 7009), `/introspect`
//! (RFC 7662) and `id_token_hint`.

use serde::Deserialize;

use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use super::token::refresh_grant_id;
use crate::settings::ClientSettings;
use crate::state::Core;
use crate::tokens::jwt::{Expect, verify};
use crate::tokens::{AccessClaims, profile_claims};
use crate::types::{ClientId, Scopes, SecretHash, UserId};

/// A verified, live access token.
pub async fn verify_access_token(core: &Core, token: &str, audience: Option<&str>) -> Result<AccessClaims, OAuthError> {
    let invalid = |d: &'static str| OAuthError::new(ErrorCode::InvalidToken, d);
    let issuer = core.settings.issuer.as_str();
    let aud = audience.map(|a| [a]);
    let expect = Expect { issuer, typ: Some("at+jwt"), audience: aud.as_ref().map(|a| &a[..]) };
    let claims: AccessClaims =
        verify(&core.keys.ring(), token, &expect).map_err(|_| invalid("the access token is invalid"))?;
    if claims.exp <= core.clock.now() {
        return Err(invalid("the access token has expired"));
    }
    let grant_key = claims.grant_id().map(|g| format!("grant:{g}"));
    let mut keys: Vec<&str> = vec![claims.jti.as_str()];
    if let Some(g) = &grant_key {
        keys.push(g);
    }
    if core.store.revocations.any_revoked(&keys).await? {
        return Err(invalid("the access token has been revoked"));
    }
    Ok(claims)
}

/// The claims `/userinfo` returns for a bearer token.
pub async fn userinfo(core: &Core, token: &str) -> Result<serde_json::Map<String, serde_json::Value>, OAuthError> {
    let userinfo = core.settings.issuer.join("/userinfo");
    let claims = verify_access_token(core, token, Some(&userinfo)).await?;
    let scopes = Scopes::parse(&claims.scope).unwrap_or_default();
    if !scopes.contains("openid") {
        return Err(OAuthError::new(ErrorCode::InvalidToken, "the access token was not issued for userinfo"));
    }
    let user_id = UserId::parse(&claims.sub).map_err(|_| OAuthError::new(ErrorCode::InvalidToken, "no user"))?;
    let user = core
        .store
        .users
        .get(&user_id)
        .await?
        .ok_or_else(|| OAuthError::new(ErrorCode::InvalidToken, "the user no longer exists"))?;
    let mut out = serde_json::Map::new();
    out.insert("sub".into(), user.user_id.to_string().into());
    out.extend(profile_claims(&user, &scopes));
    Ok(out)
}

/// RFC 7009: revoke a refresh token (its whole grant) or an access token. Unknown tokens
/// and tokens of other clients are answered the same way (200), as the RFC asks.
pub async fn revoke(core: &Core, client: &ClientSettings, p: &Params) -> Result<(), OAuthError> {
    let token = p.require("token")?;
    // The hint only orders the lookups (RFC 7009 2.1): both kinds are always tried. An access
    // token never parses as a refresh token's `<grant id>.<secret>` with a live grant.
    if let Some(grant_id) = refresh_grant_id(token)
        && let Some(grant) = core.store.grants.get(grant_id).await?
    {
        if grant.client_id == client.id && grant.refresh == Some(SecretHash::of(token)) {
            let ttl = grant.expires_at.saturating_sub(core.clock.now()).max(core.settings.tokens.access_token_ttl);
            core.store.grants.revoke(grant_id, ttl).await?;
        }
        return Ok(());
    }
    if let Ok(claims) = verify_access_token(core, token, None).await
        && claims.client_id == client.id.as_str()
    {
        let ttl = claims.exp.saturating_sub(core.clock.now()).max(1);
        core.store.revocations.revoke(&claims.jti, ttl).await?;
    }
    Ok(())
}

/// RFC 7662 introspection for an authenticated client.
pub async fn introspect(core: &Core, p: &Params) -> Result<serde_json::Value, OAuthError> {
    let token = p.require("token")?;
    let inactive = serde_json::json!({ "active": false });
    // The hint is only a hint (RFC 7662 2.1): both kinds are always tried.
    if let Ok(c) = verify_access_token(core, token, None).await {
        let mut out = serde_json::json!({
            "active": true, "token_type": "Bearer", "scope": c.scope, "client_id": c.client_id,
            "sub": c.sub, "aud": c.aud, "iss": c.iss, "exp": c.exp, "iat": c.iat, "jti": c.jti,
        });
        if let Some(sid) = c.sid {
            out["sid"] = sid.into();
        }
        return Ok(out);
    }
    if let Some(grant_id) = refresh_grant_id(token)
        && let Some(g) = core.store.grants.get(grant_id).await?
        && g.refresh == Some(SecretHash::of(token))
    {
        let now = core.clock.now();
        let exp = g.expires_at.min(g.last_used_at + g.idle_ttl);
        if exp > now {
            return Ok(serde_json::json!({
                "active": true, "token_type": "refresh_token", "scope": g.scopes.to_string(),
                "client_id": g.client_id.to_string(), "sub": g.user_id.to_string(),
                "iss": core.settings.issuer.as_str(), "exp": exp, "iat": g.last_used_at,
            }));
        }
    }
    Ok(inactive)
}

/// The claims of an `id_token_hint` that matter to Gatehouse.
#[derive(Debug, Deserialize)]
pub struct HintClaims {
    pub sub: String,
    pub aud: serde_json::Value,
    #[serde(default)]
    pub sid: Option<String>,
}

impl HintClaims {
    pub fn is_for(&self, client_id: &ClientId) -> bool {
        let client_id = client_id.as_str();
        match &self.aud {
            serde_json::Value::String(a) => a == client_id,
            serde_json::Value::Array(list) => list.iter().any(|a| a.as_str() == Some(client_id)),
            _ => false,
        }
    }
    pub fn client_id(&self) -> Option<&str> {
        match &self.aud {
            serde_json::Value::String(a) => Some(a),
            serde_json::Value::Array(list) if list.len() == 1 => list[0].as_str(),
            _ => None,
        }
    }
}

/// Verify an ID token Gatehouse issued, as a hint: signature and issuer must hold; an
/// expired hint is still a hint (OIDC Core 3.1.2.1).
pub fn verify_id_token_hint(core: &Core, token: &str) -> Result<HintClaims, OAuthError> {
    let expect = Expect { issuer: core.settings.issuer.as_str(), typ: Some("JWT"), audience: None };
    verify(&core.keys.ring(), token, &expect)
        .map_err(|_| OAuthError::invalid_request("id_token_hint is not a valid ID token from this issuer"))
}
