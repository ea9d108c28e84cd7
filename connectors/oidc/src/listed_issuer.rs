//! ID tokens whose `iss` is not a URL (Google's `accounts.google.com`). The `openidconnect`
//! crate parses `iss` as a URL, so such a token response never parses there; when the
//! connection lists extra issuer spellings, the ID token of that response is verified here
//! by the `jsonwebtoken` crate instead, with the same checks: signature with the provider's
//! JWKS and an asymmetric algorithm, `iss` one of the listed spellings, `aud` this client
//! only, `exp`, `nonce`, and `azp` when present.

use gatehouse_connector::ConnectorError;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use openidconnect::core::CoreJsonWebKeySet;
use serde::Deserialize;

type Claims = serde_json::Map<String, serde_json::Value>;

/// The parts of a token response this path needs; anything else in it is ignored.
#[derive(Deserialize)]
pub(crate) struct RawTokenResponse {
    pub access_token: String,
    pub id_token: String,
}

impl RawTokenResponse {
    pub fn parse(body: &[u8]) -> Result<Self, ConnectorError> {
        serde_json::from_slice(body)
            .map_err(|_| ConnectorError::InvalidResponse("token response: no readable access and ID token".into()))
    }
}

/// Why a token was refused; `UnknownKey` asks the caller to fetch the keys once more.
pub(crate) enum Refusal {
    UnknownKey,
    Invalid(String),
}

/// The same asymmetric algorithms the `openidconnect` path accepts.
const ALGS: [Algorithm; 7] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

fn invalid(what: impl std::fmt::Display) -> Refusal {
    Refusal::Invalid(format!("ID token rejected: {what}"))
}

/// Verify `jwt` against `keys`; returns its claims.
pub(crate) fn verify(
    jwt: &str,
    keys: &CoreJsonWebKeySet,
    issuers: &[&str],
    client_id: &str,
    nonce: &str,
) -> Result<Claims, Refusal> {
    let header = jsonwebtoken::decode_header(jwt).map_err(invalid)?;
    if !ALGS.contains(&header.alg) {
        return Err(invalid(format_args!("algorithm {:?} is not accepted", header.alg)));
    }
    let jwks: JwkSet = serde_json::to_value(keys).and_then(serde_json::from_value).map_err(invalid)?;
    let jwk = match &header.kid {
        Some(kid) => jwks.find(kid),
        // Without a kid only a provider with a single key is unambiguous.
        None if jwks.keys.len() == 1 => jwks.keys.first(),
        None => None,
    }
    .ok_or(Refusal::UnknownKey)?;
    // A key published for one algorithm is never used with another.
    if jwk.common.key_algorithm.is_some_and(|a| a.to_string().parse::<Algorithm>().ok() != Some(header.alg)) {
        return Err(invalid("the key is published for another algorithm"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(invalid)?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(issuers);
    validation.set_audience(&[client_id]);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "sub"]);
    let claims = jsonwebtoken::decode::<Claims>(jwt, &key, &validation).map_err(invalid)?.claims;
    // jsonwebtoken accepts an `aud` list that merely includes us; other audiences are not trusted.
    if let Some(serde_json::Value::Array(aud)) = claims.get("aud")
        && aud.iter().any(|a| a.as_str() != Some(client_id))
    {
        return Err(invalid("the token is also meant for another audience"));
    }
    if claims.get("azp").is_some_and(|azp| azp.as_str() != Some(client_id)) {
        return Err(invalid("azp is another client"));
    }
    if claims.get("nonce").and_then(|n| n.as_str()) != Some(nonce) {
        return Err(invalid("the nonce does not match the login"));
    }
    Ok(claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};
    use openidconnect::core::CoreRsaPrivateSigningKey;
    use openidconnect::{JsonWebKeyId, PrivateSigningKey};
    use serde_json::json;

    const CLIENT: &str = "app";
    const NONCE: &str = "n-1";
    const ISS: &str = "accounts.google.com";

    struct Keys {
        pem: String,
        jwks: CoreJsonWebKeySet,
    }

    fn keys() -> Keys {
        let pem = crate::testkit::rsa_key_pem();
        let key = CoreRsaPrivateSigningKey::from_pem(&pem, Some(JsonWebKeyId::new("k1".into()))).unwrap();
        let jwk = serde_json::to_value(key.as_verification_key()).unwrap();
        let jwks = serde_json::from_value(json!({"keys": [jwk]})).unwrap();
        Keys { pem, jwks }
    }

    /// The same key, published for RS256 only.
    fn pinned(keys: Keys) -> Keys {
        let mut jwks = serde_json::to_value(&keys.jwks).unwrap();
        jwks["keys"][0]["alg"] = "RS256".into();
        Keys { pem: keys.pem, jwks: serde_json::from_value(jwks).unwrap() }
    }

    fn good_claims() -> serde_json::Value {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
        json!({"iss": ISS, "sub": "1098", "aud": CLIENT, "iat": now, "exp": now + 300, "nonce": NONCE})
    }

    fn sign(keys: &Keys, alg: Algorithm, kid: Option<&str>, claims: &serde_json::Value) -> String {
        let mut header = Header::new(alg);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, claims, &EncodingKey::from_rsa_pem(keys.pem.as_bytes()).unwrap()).unwrap()
    }

    fn check(keys: &Keys, jwt: &str) -> Result<Claims, Refusal> {
        verify(jwt, &keys.jwks, &[ISS], CLIENT, NONCE)
    }

    fn refused(keys: &Keys, jwt: &str, why: &str) {
        match check(keys, jwt) {
            Err(Refusal::Invalid(msg)) => assert!(msg.contains(why), "expected {why}, got {msg}"),
            Err(Refusal::UnknownKey) => panic!("expected {why}, got an unknown key"),
            Ok(claims) => panic!("expected {why}, accepted {claims:?}"),
        }
    }

    #[test]
    fn a_good_token_with_a_listed_issuer_is_accepted() {
        let k = keys();
        let claims = check(&k, &sign(&k, Algorithm::RS256, Some("k1"), &good_claims())).ok().unwrap();
        assert_eq!(claims["sub"], "1098");
    }

    #[test]
    fn every_claim_check_still_holds() {
        let k = keys();
        let with = |key: &str, v: serde_json::Value| {
            let mut c = good_claims();
            c[key] = v;
            sign(&k, Algorithm::RS256, Some("k1"), &c)
        };
        refused(&k, &with("iss", "https://accounts.google.com.evil.test".into()), "InvalidIssuer");
        refused(&k, &with("aud", "other".into()), "InvalidAudience");
        refused(&k, &with("aud", json!([CLIENT, "other"])), "another audience");
        refused(&k, &with("azp", "other".into()), "azp");
        refused(&k, &with("nonce", "n-2".into()), "nonce");
        refused(&k, &with("exp", json!(1_000_000)), "ExpiredSignature");
        let mut no_nonce = good_claims();
        no_nonce.as_object_mut().unwrap().remove("nonce");
        refused(&k, &sign(&k, Algorithm::RS256, Some("k1"), &no_nonce), "nonce");
        // azp naming this client is fine.
        assert!(check(&k, &with("azp", CLIENT.into())).is_ok());
    }

    #[test]
    fn the_signature_and_algorithm_are_checked() {
        let k = keys();
        let good = sign(&k, Algorithm::RS256, Some("k1"), &good_claims());
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        let mut tampered = good_claims();
        tampered["sub"] = "admin".into();
        parts[1] = base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, tampered.to_string());
        refused(&k, &parts.join("."), "InvalidSignature");
        // HMAC is never accepted, and a key published for RS256 is not used for RS512.
        let hs = jsonwebtoken::encode(
            &Header { kid: Some("k1".into()), ..Header::new(Algorithm::HS256) },
            &good_claims(),
            &EncodingKey::from_secret(k.pem.as_bytes()),
        )
        .unwrap();
        refused(&k, &hs, "not accepted");
        assert!(matches!(check(&k, &sign(&k, Algorithm::RS256, Some("k2"), &good_claims())), Err(Refusal::UnknownKey)));
        assert!(check(&k, &sign(&k, Algorithm::RS256, None, &good_claims())).is_ok(), "a single key needs no kid");
        let k = pinned(k);
        assert!(check(&k, &sign(&k, Algorithm::RS256, Some("k1"), &good_claims())).is_ok());
        refused(&k, &sign(&k, Algorithm::RS512, Some("k1"), &good_claims()), "another algorithm");
    }
}
