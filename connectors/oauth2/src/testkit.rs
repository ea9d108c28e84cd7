//! A fake OAuth 2.0 provider for connector tests (the `testkit` feature): it hands out codes
//! bound to the PKCE challenge and redirect URI of the authorization request, redeems each
//! once at its token endpoint after checking the client and the verifier, and serves one
//! profile to the access tokens it issued (checking Facebook's `appsecret_proof` when asked).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use gatehouse_connector::testkit::server::{FakeServer, Request, Response};
use gatehouse_connector::testkit::{authorization_request, oauth_refusal};
use gatehouse_connector::{CallbackInput, Start};
use oauth2::{PkceCodeChallenge, PkceCodeVerifier};

use crate::appsecret_proof;

/// How the fake provider is laid out and whom it serves.
#[derive(Debug, Clone)]
pub struct Provider {
    pub client_id: String,
    pub client_secret: String,
    pub token_path: String,
    pub profile_path: String,
    /// The profile JSON served to a valid access token.
    pub profile: serde_json::Value,
    /// Require `appsecret_proof` on the profile request (Facebook).
    pub appsecret_proof: bool,
}

struct Grant {
    challenge: Option<String>,
    redirect_uri: String,
}

struct Inner {
    provider: Provider,
    codes: Mutex<HashMap<String, Grant>>,
    tokens: Mutex<HashSet<String>>,
    counter: AtomicUsize,
}

/// The running provider; stopped on drop.
pub struct FakeProvider {
    server: FakeServer,
    inner: Arc<Inner>,
}

impl FakeProvider {
    pub async fn start(provider: Provider) -> Self {
        let inner = Arc::new(Inner {
            provider,
            codes: Mutex::default(),
            tokens: Mutex::default(),
            counter: AtomicUsize::new(0),
        });
        let handler = inner.clone();
        let server = FakeServer::start(move |r| handler.serve(r)).await;
        Self { server, inner }
    }

    /// A URL of this provider.
    pub fn url(&self, path: &str) -> String {
        self.server.url(path)
    }

    pub fn requests(&self) -> usize {
        self.server.requests()
    }

    /// The person approves the authorization request `start` redirected to: a fresh code
    /// for that request, and the `state` it carried.
    pub fn approve(&self, start: &Start) -> CallbackInput {
        let query = authorization_request(start);
        let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(get("client_id").as_deref(), Some(self.inner.provider.client_id.as_str()), "client_id");
        assert_eq!(get("response_type").as_deref(), Some("code"), "response_type");
        let n = self.inner.counter.fetch_add(1, Ordering::SeqCst);
        let code = format!("code-{n}");
        let grant = Grant { challenge: get("code_challenge"), redirect_uri: get("redirect_uri").unwrap_or_default() };
        self.inner.codes.lock().unwrap().insert(code.clone(), grant);
        CallbackInput::Query(vec![("code".into(), code), ("state".into(), get("state").unwrap_or_default())])
    }

    /// The person (or the provider) refuses: `error=access_denied` with the request's `state`.
    pub fn refuse(&self, start: &Start) -> CallbackInput {
        oauth_refusal(start)
    }
}

impl Inner {
    fn serve(&self, r: Request) -> Response {
        if r.method == "POST" && r.path == self.provider.token_path {
            self.token(&r)
        } else if r.method == "GET" && r.path == self.provider.profile_path {
            self.profile(&r)
        } else {
            Response::not_found()
        }
    }

    fn client_authenticated(&self, r: &Request) -> bool {
        let p = &self.provider;
        let basic = r.header("authorization").and_then(|h| h.strip_prefix("Basic ")).is_some_and(|b| {
            let expected = format!("{}:{}", p.client_id, p.client_secret);
            base64::engine::general_purpose::STANDARD.decode(b).is_ok_and(|d| d == expected.as_bytes())
        });
        let post = r.param("client_id").as_deref() == Some(p.client_id.as_str())
            && r.param("client_secret").as_deref() == Some(p.client_secret.as_str());
        basic || post
    }

    fn token(&self, r: &Request) -> Response {
        if !self.client_authenticated(r) {
            return Response::json(401, &serde_json::json!({"error": "invalid_client"}));
        }
        if r.param("grant_type").as_deref() != Some("authorization_code") {
            return Response::oauth_error("unsupported_grant_type");
        }
        // Redeemed once: a second use finds nothing.
        let Some(grant) = r.param("code").and_then(|c| self.codes.lock().unwrap().remove(&c)) else {
            return Response::oauth_error("invalid_grant");
        };
        if r.param("redirect_uri").unwrap_or_default() != grant.redirect_uri {
            return Response::oauth_error("invalid_grant");
        }
        if let Some(challenge) = grant.challenge {
            let verifier = r.param("code_verifier").unwrap_or_default();
            let computed = PkceCodeChallenge::from_code_verifier_sha256(&PkceCodeVerifier::new(verifier));
            if computed.as_str() != challenge {
                return Response::oauth_error("invalid_grant");
            }
        }
        let n = self.counter.fetch_add(1, Ordering::SeqCst);
        let token = format!("access-{n}");
        self.tokens.lock().unwrap().insert(token.clone());
        Response::json(200, &serde_json::json!({"access_token": token, "token_type": "bearer", "expires_in": 3600}))
    }

    fn profile(&self, r: &Request) -> Response {
        let token = r.header("authorization").and_then(|h| h.strip_prefix("Bearer ")).unwrap_or_default();
        if !self.tokens.lock().unwrap().contains(token) {
            return Response::json(401, &serde_json::json!({"error": "invalid_token"}));
        }
        if self.provider.appsecret_proof
            && r.param("appsecret_proof") != Some(appsecret_proof(&self.provider.client_secret, token))
        {
            return Response::json(400, &serde_json::json!({"error": {"message": "bad appsecret_proof"}}));
        }
        Response::json(200, &self.provider.profile)
    }
}
