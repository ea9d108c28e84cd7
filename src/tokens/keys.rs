//! The signing key ring: key generation, the JWKS, and signing.
//!
//! Signing uses aws-lc-rs key pairs parsed once at load. (Signing through `jsonwebtoken`
//! re-parses and re-validates the RSA private key on every call, which costs more than the
//! signature itself.) Verification goes through `jsonwebtoken` in [`super::jwt`].

use std::sync::Arc;

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::{KeyRingRecord, StoredKey};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SigningAlg {
    RS256,
    ES256,
    EdDSA,
}

impl SigningAlg {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "RS256" => Some(Self::RS256),
            "ES256" => Some(Self::ES256),
            "EdDSA" => Some(Self::EdDSA),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RS256 => "RS256",
            Self::ES256 => "ES256",
            Self::EdDSA => "EdDSA",
        }
    }
    pub(crate) fn jwt_algorithm(self) -> jsonwebtoken::Algorithm {
        match self {
            Self::RS256 => jsonwebtoken::Algorithm::RS256,
            Self::ES256 => jsonwebtoken::Algorithm::ES256,
            Self::EdDSA => jsonwebtoken::Algorithm::EdDSA,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("key {kid}: {reason}")]
    Invalid { kid: String, reason: String },
    #[error("cannot generate a {0} key")]
    Generate(&'static str),
    #[error("the key ring is empty")]
    Empty,
    #[error("signing failed")]
    Sign,
}

enum Signer {
    Rsa(RsaKeyPair),
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
}

/// One usable key: its signer, its public JWK and the decoding key that verifies it.
pub struct SigningKey {
    pub kid: String,
    pub alg: SigningAlg,
    signer: Signer,
    pub(crate) jwk: serde_json::Value,
    pub(crate) decoding: jsonwebtoken::DecodingKey,
}

impl SigningKey {
    fn from_stored(stored: &StoredKey) -> Result<Self, KeyError> {
        let (alg, signer, jwk, decoding) = Self::parts(stored)?;
        if thumbprint(&jwk) != stored.kid {
            return Err(KeyError::Invalid {
                kid: stored.kid.clone(),
                reason: "kid is not the key's RFC 7638 thumbprint".into(),
            });
        }
        Ok(Self { kid: stored.kid.clone(), alg, signer, jwk, decoding })
    }

    #[allow(clippy::type_complexity)]
    fn parts(
        stored: &StoredKey,
    ) -> Result<(SigningAlg, Signer, serde_json::Value, jsonwebtoken::DecodingKey), KeyError> {
        let invalid = |reason: String| KeyError::Invalid { kid: stored.kid.clone(), reason };
        let alg = SigningAlg::parse(&stored.alg).ok_or_else(|| invalid(format!("unknown alg {}", stored.alg)))?;
        let der = STANDARD.decode(&stored.pkcs8).map_err(|e| invalid(e.to_string()))?;
        let b64 = |b: &[u8]| URL_SAFE_NO_PAD.encode(b);
        let (signer, jwk, decoding) = match alg {
            SigningAlg::RS256 => {
                let kp = RsaKeyPair::from_pkcs8(&der).map_err(|e| invalid(e.to_string()))?;
                if kp.public_modulus_len() < 256 {
                    return Err(invalid("RSA keys must have at least 2048 bits".into()));
                }
                let public = kp.public_key();
                let (n, e) = (
                    public.modulus().big_endian_without_leading_zero().to_vec(),
                    public.exponent().big_endian_without_leading_zero().to_vec(),
                );
                let jwk = serde_json::json!({"kty": "RSA", "n": b64(&n), "e": b64(&e)});
                let dec = jsonwebtoken::DecodingKey::from_rsa_raw_components(&n, &e);
                (Signer::Rsa(kp), jwk, dec)
            }
            SigningAlg::ES256 => {
                let kp = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &der)
                    .map_err(|e| invalid(e.to_string()))?;
                let point = kp.public_key().as_ref();
                // Uncompressed SEC1 point: 0x04 || x || y.
                let (x, y) = (&point[1..33], &point[33..65]);
                let jwk = serde_json::json!({"kty": "EC", "crv": "P-256", "x": b64(x), "y": b64(y)});
                let dec = jsonwebtoken::DecodingKey::from_ec_components(&b64(x), &b64(y))
                    .map_err(|e| invalid(e.to_string()))?;
                (Signer::Ec(kp), jwk, dec)
            }
            SigningAlg::EdDSA => {
                let kp = Ed25519KeyPair::from_pkcs8(&der).map_err(|e| invalid(e.to_string()))?;
                let x = kp.public_key().as_ref().to_vec();
                let jwk = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&x)});
                let dec =
                    jsonwebtoken::DecodingKey::from_ed_components(&b64(&x)).map_err(|e| invalid(e.to_string()))?;
                (Signer::Ed(kp), jwk, dec)
            }
        };
        Ok((alg, signer, jwk, decoding))
    }

    /// The raw signature over `message`.
    pub fn sign(&self, message: &[u8]) -> Result<Vec<u8>, KeyError> {
        match &self.signer {
            Signer::Rsa(kp) => {
                let mut sig = vec![0; kp.public_modulus_len()];
                let rng = aws_lc_rs::rand::SystemRandom::new();
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, message, &mut sig).map_err(|_| KeyError::Sign)?;
                Ok(sig)
            }
            Signer::Ec(kp) => {
                let rng = aws_lc_rs::rand::SystemRandom::new();
                kp.sign(&rng, message).map(|s| s.as_ref().to_vec()).map_err(|_| KeyError::Sign)
            }
            Signer::Ed(kp) => Ok(kp.sign(message).as_ref().to_vec()),
        }
    }

    /// The public JWK with `kid`, `alg` and `use`.
    pub fn public_jwk(&self) -> serde_json::Value {
        let mut jwk = self.jwk.clone();
        let obj = jwk.as_object_mut().expect("jwk is an object");
        obj.insert("kid".into(), self.kid.clone().into());
        obj.insert("alg".into(), self.alg.as_str().into());
        obj.insert("use".into(), "sig".into());
        jwk
    }
}

/// RFC 7638 JWK thumbprint: SHA-256 over the required members in lexicographic order.
fn thumbprint(jwk: &serde_json::Value) -> String {
    let members: &[&str] = match jwk["kty"].as_str() {
        Some("RSA") => &["e", "kty", "n"],
        Some("EC") => &["crv", "kty", "x", "y"],
        _ => &["crv", "kty", "x"],
    };
    // serde_json's Map is ordered by key, so this serialises the members sorted and compact.
    let canonical: serde_json::Map<String, serde_json::Value> =
        members.iter().map(|m| ((*m).to_owned(), jwk[*m].clone())).collect();
    URL_SAFE_NO_PAD.encode(Sha256::digest(serde_json::to_vec(&canonical).expect("json")))
}

/// Generate a new private key of `alg` as a stored key.
pub fn generate(alg: SigningAlg, now: u64) -> Result<StoredKey, KeyError> {
    let pkcs8 = match alg {
        SigningAlg::RS256 => RsaKeyPair::generate(KeySize::Rsa2048)
            .and_then(|k| k.as_der())
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| KeyError::Generate("RS256"))?,
        SigningAlg::ES256 => {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map(|d| d.as_ref().to_vec())
                .map_err(|_| KeyError::Generate("ES256"))?
        }
        SigningAlg::EdDSA => Ed25519KeyPair::generate()
            .and_then(|k| k.to_pkcs8())
            .map(|d| d.as_ref().to_vec())
            .map_err(|_| KeyError::Generate("EdDSA"))?,
    };
    let mut stored =
        StoredKey { kid: String::new(), alg: alg.as_str().into(), pkcs8: STANDARD.encode(pkcs8), created_at: now };
    let (_, _, jwk, _) = SigningKey::parts(&stored)?;
    stored.kid = thumbprint(&jwk);
    Ok(stored)
}

/// The keys in use: the first signs, all verify and appear in the JWKS.
#[derive(Clone)]
pub struct KeyRing {
    keys: Arc<Vec<SigningKey>>,
}

impl KeyRing {
    pub fn from_record(record: &KeyRingRecord) -> Result<Self, KeyError> {
        let keys = record.keys.iter().map(SigningKey::from_stored).collect::<Result<Vec<_>, _>>()?;
        if keys.is_empty() {
            return Err(KeyError::Empty);
        }
        Ok(Self { keys: Arc::new(keys) })
    }
    pub fn current(&self) -> &SigningKey {
        &self.keys[0]
    }
    pub fn find(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
    pub fn jwks(&self) -> serde_json::Value {
        serde_json::json!({ "keys": self.keys.iter().map(SigningKey::public_jwk).collect::<Vec<_>>() })
    }
    pub fn algorithms(&self) -> Vec<&'static str> {
        let mut algs: Vec<&'static str> = self.keys.iter().map(|k| k.alg.as_str()).collect();
        algs.dedup();
        algs
    }
}

/// A ring with a fresh key of `alg` in front; keeps `keep` older keys so tokens they signed
/// still verify until they expire.
pub fn rotate(record: &KeyRingRecord, alg: SigningAlg, now: u64, keep: usize) -> Result<KeyRingRecord, KeyError> {
    let mut keys = vec![generate(alg, now)?];
    keys.extend(record.keys.iter().take(keep).cloned());
    Ok(KeyRingRecord { keys })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_load_and_are_named_by_thumbprint() {
        for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
            let stored = generate(alg, 1).unwrap();
            let ring = KeyRing::from_record(&KeyRingRecord { keys: vec![stored.clone()] }).unwrap();
            assert_eq!(ring.current().kid, stored.kid);
            assert_eq!(ring.current().alg, alg);
            let jwks = ring.jwks();
            assert_eq!(jwks["keys"][0]["kid"], stored.kid.as_str());
            assert!(jwks["keys"][0].get("d").is_none(), "no private member in the JWKS");
        }
    }

    #[test]
    fn a_tampered_kid_is_refused() {
        let mut stored = generate(SigningAlg::ES256, 1).unwrap();
        stored.kid = "../../etc/passwd".into();
        assert!(KeyRing::from_record(&KeyRingRecord { keys: vec![stored] }).is_err());
    }

    #[test]
    fn rotation_puts_the_new_key_first_and_keeps_the_old() {
        let first = KeyRingRecord { keys: vec![generate(SigningAlg::ES256, 1).unwrap()] };
        let second = rotate(&first, SigningAlg::ES256, 2, 2).unwrap();
        assert_eq!(second.keys.len(), 2);
        assert_eq!(second.keys[1], first.keys[0]);
        assert_ne!(second.keys[0].kid, first.keys[0].kid);
    }

    #[test]
    fn rfc7638_thumbprint_example() {
        // RFC 7638 section 3.1.
        let jwk = serde_json::json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
        });
        assert_eq!(thumbprint(&jwk), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }
}
