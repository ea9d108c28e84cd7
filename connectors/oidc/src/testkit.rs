//! A fake OpenID Connect provider for connector tests (the `testkit` feature): discovery, a
//! JWKS, and a token endpoint that redeems each code once (client, redirect URI and PKCE
//! checked) for an RS256 ID token carrying the request's nonce. Wrappers such as google use
//! it too. It never reads the clock: the caller says when a login is approved.

use std::collections::HashMap;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gatehouse_connector::testkit::server::{FakeServer, Request, Response};
use gatehouse_connector::testkit::{authorization_request, oauth_refusal};
use gatehouse_connector::{CallbackInput, Start};
use openidconnect::core::{CoreJwsSigningAlgorithm, CoreRsaPrivateSigningKey};
use openidconnect::{JsonWebKeyId, PkceCodeChallenge, PkceCodeVerifier, PrivateSigningKey};

/// A fresh 2048-bit RSA key in PKCS#1 PEM, made by the `openssl` command line tool.
pub fn rsa_key_pem() -> String {
    let out = Command::new("openssl")
        .args(["genrsa", "-traditional", "2048"])
        .output()
        .expect("the openssl command line tool is needed: apt-get install openssl");
    assert!(out.status.success(), "openssl genrsa: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("PEM is text")
}

/// Whom the fake provider serves and what it says about the person.
#[derive(Debug, Clone)]
pub struct Provider {
    pub client_id: String,
    pub client_secret: String,
    /// The ID token's claims besides iss, aud, iat, exp and nonce (at least `sub`).
    pub claims: serde_json::Value,
    /// An RSA key in PKCS#1 PEM ([`rsa_key_pem`]).
    pub key_pem: String,
}

struct Grant {
    challenge: String,
    redirect_uri: String,
    nonce: String,
    at: SystemTime,
}

struct Inner {
    provider: Provider,
    key: CoreRsaPrivateSigningKey,
    issuer: Mutex<String>,
    /// The `iss` of the ID tokens when not the issuer; `Null` leaves it out.
    token_iss: Mutex<Option<serde_json::Value>>,
    codes: Mutex<HashMap<String, Grant>>,
    counter: AtomicUsize,
}

/// The running provider; stopped on drop. Its issuer is its base URL.
pub struct FakeProvider {
    server: FakeServer,
    inner: Arc<Inner>,
}

impl FakeProvider {
    pub async fn start(provider: Provider) -> Self {
        let key = CoreRsaPrivateSigningKey::from_pem(&provider.key_pem, Some(JsonWebKeyId::new("k1".into())))
            .expect("an RSA key in PKCS#1 PEM");
        let inner = Arc::new(Inner {
            provider,
            key,
            issuer: Mutex::default(),
            token_iss: Mutex::default(),
            codes: Mutex::default(),
            counter: AtomicUsize::new(0),
        });
        let handler = inner.clone();
        let server = FakeServer::start(move |r| handler.serve(r)).await;
        *inner.issuer.lock().unwrap() = server.url("");
        Self { server, inner }
    }

    pub fn issuer(&self) -> String {
        self.server.url("")
    }

    pub fn requests(&self) -> usize {
        self.server.requests()
    }

    /// The person approves the authorization request `start` redirected to, at `now`.
    pub fn approve(&self, start: &Start, now: SystemTime) -> CallbackInput {
        let query = authorization_request(start);
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()).unwrap_or_default();
        assert_eq!(get("client_id"), self.inner.provider.client_id, "client_id");
        assert_eq!(get("code_challenge_method"), "S256", "PKCE S256");
        let code = format!("code-{}", self.inner.counter.fetch_add(1, Ordering::SeqCst));
        let grant =
            Grant { challenge: get("code_challenge"), redirect_uri: get("redirect_uri"), nonce: get("nonce"), at: now };
        self.inner.codes.lock().unwrap().insert(code.clone(), grant);
        CallbackInput::Query(vec![("code".into(), code), ("state".into(), get("state"))])
    }

    /// The ID tokens issued from now on carry this `iss` instead of the issuer
    /// (`Value::Null`: no `iss` at all); for tests of issuer spellings.
    pub fn set_id_token_iss(&self, iss: serde_json::Value) {
        *self.inner.token_iss.lock().unwrap() = Some(iss);
    }

    /// The person (or the provider) refuses: `error=access_denied` with the request's `state`.
    pub fn refuse(&self, start: &Start) -> CallbackInput {
        oauth_refusal(start)
    }
}

impl Inner {
    fn serve(&self, r: Request) -> Response {
        let issuer = self.issuer.lock().unwrap().clone();
        match (r.method.as_str(), r.path.as_str()) {
            ("GET", "/.well-known/openid-configuration") => Response::json(
                200,
                &serde_json::json!({
                    "issuer": issuer,
                    "authorization_endpoint": format!("{issuer}/authorize"),
                    "token_endpoint": format!("{issuer}/token"),
                    "jwks_uri": format!("{issuer}/jwks"),
                    "response_types_supported": ["code"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }),
            ),
            ("GET", "/jwks") => {
                let jwk = serde_json::to_value(self.key.as_verification_key()).expect("a JWK serializes");
                Response::json(200, &serde_json::json!({"keys": [jwk]}))
            }
            ("POST", "/token") => self.token(&r, &issuer),
            _ => Response::not_found(),
        }
    }

    fn token(&self, r: &Request, issuer: &str) -> Response {
        let p = &self.provider;
        let basic =
            r.header("authorization").and_then(|h| h.strip_prefix("Basic ")).and_then(|b| STANDARD.decode(b).ok());
        if basic.as_deref() != Some(format!("{}:{}", p.client_id, p.client_secret).as_bytes()) {
            return Response::json(401, &serde_json::json!({"error": "invalid_client"}));
        }
        // Redeemed once: a second use finds nothing.
        let Some(grant) = r.param("code").and_then(|c| self.codes.lock().unwrap().remove(&c)) else {
            return Response::oauth_error("invalid_grant");
        };
        let verifier = PkceCodeVerifier::new(r.param("code_verifier").unwrap_or_default());
        if r.param("redirect_uri").unwrap_or_default() != grant.redirect_uri
            || PkceCodeChallenge::from_code_verifier_sha256(&verifier).as_str() != grant.challenge
        {
            return Response::oauth_error("invalid_grant");
        }
        let iat = grant.at.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let mut claims = p.claims.clone();
        let fixed = serde_json::json!({
            "iss": issuer, "aud": p.client_id, "iat": iat, "exp": iat + 300, "nonce": grant.nonce,
        });
        for (k, v) in fixed.as_object().expect("an object") {
            claims[k] = v.clone();
        }
        match self.token_iss.lock().unwrap().clone() {
            None => {}
            Some(serde_json::Value::Null) => {
                claims.as_object_mut().expect("an object").remove("iss");
            }
            Some(iss) => claims["iss"] = iss,
        }
        Response::json(
            200,
            &serde_json::json!({
                "access_token": format!("access-{}", self.counter.fetch_add(1, Ordering::SeqCst)),
                "token_type": "Bearer", "expires_in": 300, "id_token": self.sign(&claims),
            }),
        )
    }

    fn sign(&self, claims: &serde_json::Value) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256","kid":"k1","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let input = format!("{header}.{payload}");
        let signature =
            self.key.sign(&CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256, input.as_bytes()).expect("RS256 signs");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}
