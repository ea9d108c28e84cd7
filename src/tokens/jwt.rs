//! JWS compact serialisation around the key ring, and verification with `jsonwebtoken`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use super::keys::{KeyError, KeyRing};

/// Sign `claims` with the ring's current key. `typ` is `JWT` or `at+jwt` (RFC 9068).
pub fn sign<T: Serialize>(ring: &KeyRing, typ: &str, claims: &T) -> Result<String, KeyError> {
    let key = ring.current();
    let header = serde_json::json!({ "alg": key.alg.as_str(), "typ": typ, "kid": key.kid });
    let mut out = String::with_capacity(1024);
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&header).map_err(|_| KeyError::Sign)?, &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims).map_err(|_| KeyError::Sign)?, &mut out);
    let signature = key.sign(out.as_bytes())?;
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(signature, &mut out);
    Ok(out)
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("malformed token")]
    Malformed,
    #[error("unknown signing key")]
    UnknownKey,
    #[error("bad signature or claims: {0}")]
    Invalid(String),
    #[error("unexpected token type")]
    WrongType,
}

/// What to insist on beyond the signature. Time claims are left to the caller, who checks
/// them against the injected clock.
pub struct Expect<'a> {
    pub issuer: &'a str,
    /// `typ` header value required (`at+jwt` for access tokens), if any.
    pub typ: Option<&'a str>,
    /// Accepted audiences; `None` skips the audience check (an `id_token_hint` names the
    /// client, which the caller checks itself).
    pub audience: Option<&'a [&'a str]>,
}

/// Verify a token signed by one of our keys. The key is found by `kid` and its algorithm is
/// pinned: `alg: none`, HMAC and any algorithm other than the key's are refused. `jku`,
/// `x5u` and embedded `jwk` headers are never looked at.
pub fn verify<T: DeserializeOwned>(ring: &KeyRing, token: &str, expect: &Expect<'_>) -> Result<T, VerifyError> {
    if token.len() > 16 * 1024 {
        return Err(VerifyError::Malformed);
    }
    let header = jsonwebtoken::decode_header(token).map_err(|_| VerifyError::Malformed)?;
    let kid = header.kid.as_deref().ok_or(VerifyError::UnknownKey)?;
    let key = ring.find(kid).ok_or(VerifyError::UnknownKey)?;
    if header.alg != key.alg.jwt_algorithm() {
        return Err(VerifyError::Invalid("algorithm does not match the key".into()));
    }
    if let Some(typ) = expect.typ
        && !header
            .typ
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case(typ) || t.eq_ignore_ascii_case(&format!("application/{typ}")))
    {
        return Err(VerifyError::WrongType);
    }
    let mut v = jsonwebtoken::Validation::new(key.alg.jwt_algorithm());
    v.validate_exp = false;
    v.validate_nbf = false;
    v.required_spec_claims.clear();
    v.set_issuer(&[expect.issuer]);
    match expect.audience {
        Some(aud) => v.set_audience(aud),
        None => v.validate_aud = false,
    }
    jsonwebtoken::decode::<T>(token, &key.decoding, &v)
        .map(|d| d.claims)
        .map_err(|e| VerifyError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::KeyRingRecord;
    use crate::tokens::keys::{SigningAlg, generate};

    fn ring(alg: SigningAlg) -> KeyRing {
        KeyRing::from_record(&KeyRingRecord { keys: vec![generate(alg, 1).unwrap()] }).unwrap()
    }

    fn expect() -> Expect<'static> {
        Expect { issuer: "https://gh.example", typ: None, audience: Some(&["app"]) }
    }

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct C {
        sub: String,
    }

    #[test]
    fn every_algorithm_round_trips() {
        for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
            let r = ring(alg);
            let t =
                sign(&r, "JWT", &serde_json::json!({"iss": "https://gh.example", "aud": "app", "sub": "u"})).unwrap();
            let c: C = verify(&r, &t, &expect()).unwrap();
            assert_eq!(c.sub, "u");
            let wrong_aud = Expect { audience: Some(&["other"]), ..expect() };
            assert!(verify::<C>(&r, &t, &wrong_aud).is_err());
        }
    }

    fn b64(v: &serde_json::Value) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
    }

    #[test]
    fn alg_none_and_hmac_are_refused() {
        let r = ring(SigningAlg::RS256);
        let kid = r.current().kid.clone();
        let claims = b64(&serde_json::json!({"iss": "https://gh.example", "aud": "app", "sub": "evil"}));
        let none = format!("{}.{claims}.", b64(&serde_json::json!({"alg": "none", "kid": kid})));
        assert!(verify::<C>(&r, &none, &expect()).is_err());
        // HMAC keyed with the public modulus: the classic key-confusion attack.
        let hs = format!("{}.{claims}.AAAA", b64(&serde_json::json!({"alg": "HS256", "kid": kid})));
        assert_eq!(
            verify::<C>(&r, &hs, &expect()),
            Err(VerifyError::Invalid("algorithm does not match the key".into()))
        );
    }

    #[test]
    fn tampered_payload_and_foreign_key_are_refused() {
        let r = ring(SigningAlg::ES256);
        let t = sign(&r, "JWT", &serde_json::json!({"iss": "https://gh.example", "aud": "app", "sub": "u"})).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        let evil = b64(&serde_json::json!({"iss": "https://gh.example", "aud": "app", "sub": "admin"}));
        assert!(verify::<C>(&r, &format!("{}.{evil}.{}", parts[0], parts[2]), &expect()).is_err());
        let other = ring(SigningAlg::ES256);
        assert_eq!(verify::<C>(&other, &t, &expect()).unwrap_err(), VerifyError::UnknownKey);
    }

    #[test]
    fn embedded_jwk_header_is_ignored() {
        let r = ring(SigningAlg::ES256);
        let attacker = ring(SigningAlg::ES256);
        let mut jwk = attacker.current().public_jwk();
        jwk["kid"] = r.current().kid.clone().into();
        // Signed by the attacker's key, naming our kid and carrying the attacker's key.
        let header = b64(&serde_json::json!({"alg": "ES256", "kid": r.current().kid, "jwk": jwk}));
        let claims = b64(&serde_json::json!({"iss": "https://gh.example", "aud": "app", "sub": "admin"}));
        let input = format!("{header}.{claims}");
        let sig = attacker.current().sign(input.as_bytes()).unwrap();
        let token = format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig));
        assert!(verify::<C>(&r, &token, &expect()).is_err());
    }

    #[test]
    fn typ_is_enforced_for_access_tokens() {
        let r = ring(SigningAlg::ES256);
        let id = sign(&r, "JWT", &serde_json::json!({"iss": "https://gh.example", "aud": "app", "sub": "u"})).unwrap();
        let at = Expect { typ: Some("at+jwt"), ..expect() };
        assert_eq!(verify::<C>(&r, &id, &at).unwrap_err(), VerifyError::WrongType);
    }
}
