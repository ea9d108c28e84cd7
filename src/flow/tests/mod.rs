//! Flow tests without HTTP: real nodes (`Core`) over a memory store that counts its round
//! trips, a fake connector in place of the configured one, and real Actions.

mod branches;
mod nodes;
mod refresh;

use std::path::PathBuf;
use std::sync::Arc;

use gatehouse_connector::{
    CallbackInput, Connector, ConnectorError, ConnectorState, FinishContext, Start, StartContext, UpstreamIdentity, Url,
};

use super::{Browser, Next, Outcome};
use crate::clock::ManualClock;
use crate::oauth::Params;
use crate::settings::Settings;
use crate::state::Core;
use crate::store::counting::Counting;
use crate::store::memory::{MemoryKeyStore, MemoryStore};
use crate::store::{KeyStore, Store};
use crate::types::{ConnectionId, TransactionId, random_token};

pub(super) const REDIRECT: &str = "https://app.test/cb";
pub(super) const ISSUER: &str = "https://gh.test";

/// An upstream that signs in whoever the callback's `code` names. `code=deny` is the
/// upstream refusing; the state must be the transaction's own, like a real connector's.
struct FakeIdp;

#[async_trait::async_trait]
impl Connector for FakeIdp {
    fn strategy(&self) -> &str {
        "oidc"
    }
    async fn start(&self, ctx: &StartContext) -> Result<(Start, ConnectorState), ConnectorError> {
        let url = Url::parse(&format!("https://idp.test/authorize?state={}", ctx.transaction_id)).expect("url");
        Ok((Start::Redirect { url }, ConnectorState(ctx.transaction_id.as_bytes().to_vec())))
    }
    async fn finish(
        &self,
        ctx: &FinishContext,
        state: ConnectorState,
        input: CallbackInput,
    ) -> Result<UpstreamIdentity, ConnectorError> {
        if state.0 != ctx.transaction_id.as_bytes() {
            return Err(ConnectorError::InvalidResponse("state of another transaction".into()));
        }
        match input.param("code") {
            Some("deny") => Err(ConnectorError::Denied("not in the allowed group".into())),
            Some(sub) => Ok(UpstreamIdentity {
                subject: sub.to_owned(),
                email: Some(format!("{sub}@example.com")),
                email_verified: true,
                ..Default::default()
            }),
            None => Err(ConnectorError::InvalidResponse("no code".into())),
        }
    }
}

/// One store and one clock, shared by every node built on it.
pub(super) struct World {
    pub backend: Arc<Counting<MemoryStore>>,
    keys: Arc<dyn KeyStore>,
    clock: Arc<ManualClock>,
    dir: PathBuf,
    config: String,
}

impl World {
    /// The base configuration plus `extra` TOML; `actions` are `(file name, source)` pairs
    /// written beside it.
    pub fn new(extra: &str, actions: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!("gatehouse-flow-{}", random_token(9)));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for (name, source) in actions {
            std::fs::write(dir.join(name), source).expect("action file");
        }
        let clock = ManualClock::new(1_700_000_000);
        let config = format!(
            r#"
issuer = "{ISSUER}"
[keys]
algorithm = "ES256"
[[clients]]
client_id = "web"
name = "Web App"
client_secret = "web-secret-that-is-long-enough-0123456789"
redirect_uris = ["{REDIRECT}"]
connections = ["idp"]
[[connections]]
id = "idp"
type = "static"
display_name = "Fake IdP"
[connections.options]
users = []
{extra}
"#
        );
        Self {
            backend: Arc::new(Counting::new(Arc::new(MemoryStore::new(clock.clone())))),
            keys: Arc::new(MemoryKeyStore::default()),
            clock,
            dir,
            config,
        }
    }

    /// A node of this world, with the fake upstream plugged in.
    pub async fn node(&self) -> Arc<Core> {
        let settings = Settings::parse_in(&self.config, &|_| None, &self.dir).expect("test config");
        let store = Store::from_backend(self.backend.clone(), self.keys.clone());
        let core = Core::with_parts(settings, store, self.clock.clone()).await.expect("node");
        let mut core = Arc::try_unwrap(core).ok().expect("no other owner yet");
        let idp = ConnectionId::parse("idp").expect("id");
        core.connections = core.connections.with_connector(&idp, Arc::new(FakeIdp));
        Arc::new(core)
    }
}

impl Drop for World {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A browser with its binding cookie already set.
pub(super) fn browser() -> Browser {
    Browser { binding: Some(random_token(32)), ..Default::default() }
}

/// The authorization request of client `web`, plus `extra` parameters.
pub(super) fn request(extra: &[(&str, &str)]) -> Params {
    let mut pairs: Vec<(String, String)> = [
        ("client_id", "web"),
        ("redirect_uri", REDIRECT),
        ("response_type", "code"),
        ("scope", "openid email"),
        ("state", "st-1"),
        ("code_challenge", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"),
        ("code_challenge_method", "S256"),
    ]
    .iter()
    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
    .collect();
    pairs.extend(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
    Params::from_pairs(pairs)
}

/// `/authorize` up to the upstream: the transaction id the fake IdP got as `state`.
pub(super) async fn to_upstream(core: &Core, browser: &Browser) -> TransactionId {
    let o = super::authorize(core, &request(&[]), browser).await.expect("authorize");
    let Next::Redirect(url) = o.next else { panic!("expected the upstream redirect, got {:?}", o.next) };
    assert!(url.as_str().starts_with("https://idp.test/"), "{url}");
    TransactionId::parse(&param(url.as_str(), "state").expect("state")).expect("txn id")
}

/// The upstream's callback with `code` (the subject the fake IdP signs in).
pub(super) async fn callback(
    core: &Core,
    browser: &Browser,
    txn: &TransactionId,
    code: &str,
) -> Result<Outcome, super::FlowError> {
    let input = CallbackInput::Query(vec![("state".into(), txn.to_string()), ("code".into(), code.into())]);
    super::callback(core, &ConnectionId::parse("idp").expect("id"), input, browser).await
}

/// The parameters of an authorization response, or a panic naming what came instead.
pub(super) fn response(o: &Outcome) -> Vec<(String, String)> {
    match &o.next {
        Next::Respond(r) => {
            assert_eq!(r.redirect_uri.as_str(), REDIRECT);
            r.params.clone()
        }
        other => panic!("expected an authorization response, got {other:?}"),
    }
}

pub(super) fn get<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

pub(super) fn param(url: &str, name: &str) -> Option<String> {
    Url::parse(url).ok()?.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}
