//! Gatehouse's own tokens: the key ring, the ID token and the JWT access token.

pub mod jwt;
pub mod keys;

use std::sync::{Arc, RwLock};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256, Sha512};

use crate::store::{KeyRingRecord, UserRecord};
use crate::types::{ClientId, Issuer, Scopes};
pub use keys::{KeyError, KeyRing, SigningAlg};

/// The live key ring, swapped whole when keys rotate, with the record it was loaded from
/// (so a node can write it back to a store that lost it).
#[derive(Clone)]
pub struct Keys(Arc<RwLock<(KeyRing, KeyRingRecord)>>);

impl Keys {
    pub fn load(record: KeyRingRecord) -> Result<Self, KeyError> {
        Ok(Self(Arc::new(RwLock::new((KeyRing::from_record(&record)?, record)))))
    }
    pub fn ring(&self) -> KeyRing {
        self.0.read().unwrap_or_else(|p| p.into_inner()).0.clone()
    }
    pub fn record(&self) -> KeyRingRecord {
        self.0.read().unwrap_or_else(|p| p.into_inner()).1.clone()
    }
    pub fn replace(&self, record: KeyRingRecord) -> Result<(), KeyError> {
        let ring = KeyRing::from_record(&record)?;
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = (ring, record);
        Ok(())
    }
}

/// The claims of a Gatehouse access token (RFC 9068).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    pub iss: String,
    pub sub: String,
    pub aud: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scope: String,
    /// `<grant id>.<random>` for tokens of a grant, so revoking the grant revokes them.
    pub jti: String,
    pub exp: u64,
    pub iat: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_time: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

impl AccessClaims {
    /// The grant this token belongs to, if it was issued from one.
    pub fn grant_id(&self) -> Option<&str> {
        self.jti.split_once('.').map(|(g, _)| g)
    }
}

/// What an ID token says about one authentication.
pub struct IdTokenInput<'a> {
    pub issuer: &'a Issuer,
    pub client_id: &'a ClientId,
    pub user: &'a UserRecord,
    pub scopes: &'a Scopes,
    pub nonce: Option<&'a str>,
    pub auth_time: u64,
    pub sid: &'a str,
    pub amr: &'a [String],
    pub access_token: Option<&'a str>,
    pub now: u64,
    pub ttl: u64,
    /// Claims Actions added; reserved ones were removed before.
    pub custom: &'a serde_json::Map<String, serde_json::Value>,
}

/// The profile claims the scopes grant, shared by the ID token and `/userinfo`.
pub fn profile_claims(user: &UserRecord, scopes: &Scopes) -> serde_json::Map<String, serde_json::Value> {
    let mut c = serde_json::Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            c.insert(k.into(), v.clone().into());
        }
    };
    if scopes.contains("profile") {
        put("name", &user.name);
        put("given_name", &user.given_name);
        put("family_name", &user.family_name);
        put("nickname", &user.nickname);
        put("picture", &user.picture);
        put("locale", &user.locale);
        c.insert("updated_at".into(), user.updated_at.into());
    }
    if scopes.contains("email") && user.email.is_some() {
        c.insert("email".into(), user.email.clone().into());
        c.insert("email_verified".into(), user.email_verified.into());
    }
    // Directory groups (SAML, ADFS, OIDC `groups`), for clients that ask: an empty list is
    // sent too, so "no groups" is distinguishable from "not asked".
    if scopes.contains("groups") {
        c.insert("groups".into(), user.groups.clone().into());
    }
    c
}

/// OIDC `at_hash`: the left half of the access token's hash, with the hash the signing
/// algorithm uses (SHA-512 for Ed25519).
pub fn at_hash(alg: SigningAlg, access_token: &str) -> String {
    let digest: Vec<u8> = match alg {
        SigningAlg::EdDSA => Sha512::digest(access_token.as_bytes()).to_vec(),
        _ => Sha256::digest(access_token.as_bytes()).to_vec(),
    };
    URL_SAFE_NO_PAD.encode(&digest[..digest.len() / 2])
}

pub fn mint_id_token(ring: &KeyRing, input: &IdTokenInput<'_>) -> Result<String, KeyError> {
    let mut claims = serde_json::Map::new();
    claims.insert("iss".into(), input.issuer.as_str().into());
    claims.insert("sub".into(), input.user.user_id.as_str().into());
    claims.insert("aud".into(), input.client_id.as_str().into());
    claims.insert("azp".into(), input.client_id.as_str().into());
    claims.insert("exp".into(), (input.now + input.ttl).into());
    claims.insert("iat".into(), input.now.into());
    claims.insert("auth_time".into(), input.auth_time.into());
    if let Some(nonce) = input.nonce {
        claims.insert("nonce".into(), nonce.into());
    }
    if let Some(at) = input.access_token {
        claims.insert("at_hash".into(), at_hash(ring.current().alg, at).into());
    }
    claims.insert("sid".into(), input.sid.into());
    if !input.amr.is_empty() {
        claims.insert("amr".into(), input.amr.to_vec().into());
    }
    claims.extend(profile_claims(input.user, input.scopes));
    for (k, v) in input.custom {
        claims.entry(k.clone()).or_insert_with(|| v.clone());
    }
    jwt::sign(ring, "JWT", &claims)
}

/// Claims an Action may never set: they carry Gatehouse's own guarantees.
pub const RESERVED_CLAIMS: [&str; 21] = [
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "nonce",
    "auth_time",
    "azp",
    "at_hash",
    "sid",
    "jti",
    "scope",
    "client_id",
    "acr",
    "amr",
    "typ",
    "cnf",
    "act",
    "c_hash",
    "org_id",
];

pub fn mint_access_token(ring: &KeyRing, claims: &AccessClaims) -> Result<String, KeyError> {
    jwt::sign(ring, "at+jwt", claims)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_hash_matches_the_oidc_example() {
        // OpenID Connect Core, appendix A.3 (RS256).
        assert_eq!(at_hash(SigningAlg::RS256, "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y"), "77QmUPtjPfzWtF2AnpK9RQ");
    }
}
