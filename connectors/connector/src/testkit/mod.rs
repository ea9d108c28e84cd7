//! Test support for connector authors and for the core (the `testkit` feature).
//!
//! * [`FakeConnector`]: a configurable connector (the identity it returns, the errors it
//!   fails with, a redirect or a credentials prompt) for the core's flow tests, which need a
//!   login to reach an upstream without a network.
//! * [`conformance`]: the behaviour every connector owes the core, as one suite a connector
//!   crate runs against itself in a few lines (see `connectors/README.md`).
//! * [`server`]: a tiny in-process HTTP server for the fake upstreams those suites talk to.
//!
//! Nothing here reads the system clock: time is the harness's to pin.

pub mod conformance;
mod fake;
pub mod server;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use fake::FakeConnector;

use crate::{CallbackInput, FinishContext, OpenContext, Start, StartContext, Url};

/// A fixed instant (2023-11-14T22:13:20Z) for tests that do not care which "now" it is.
pub fn fixed_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_000)
}

/// Gatehouse's issuer in the test contexts.
pub const ISSUER: &str = "https://login.gatehouse.test";
/// The connection id of the test contexts.
pub const CONNECTION: &str = "conformance";

/// What the core passes to `open` for the test connection.
pub fn open_context() -> OpenContext {
    OpenContext { connection: CONNECTION.into(), callback_url: callback_url(), issuer: url(ISSUER) }
}

/// `{ISSUER}/callback/{CONNECTION}`: register it at fake upstreams as the redirect URI.
pub fn callback_url() -> Url {
    url(&format!("{ISSUER}/callback/{CONNECTION}"))
}

/// What the core passes to `start` for transaction `txn` at `now`.
pub fn start_context(txn: &str, now: SystemTime) -> StartContext {
    StartContext {
        callback_url: callback_url(),
        transaction_id: txn.into(),
        login_hint: None,
        force_login: false,
        max_age: None,
        now,
    }
}

/// What the core passes to `finish` for transaction `txn` at `now`.
pub fn finish_context(txn: &str, now: SystemTime) -> FinishContext {
    FinishContext { callback_url: callback_url(), transaction_id: txn.into(), now }
}

fn url(s: &str) -> Url {
    Url::parse(s).expect("a test URL parses")
}

/// The query of the authorization request a redirect `start` sends the browser to (what an
/// OAuth 2.0 or OIDC fake upstream reads).
pub fn authorization_request(start: &Start) -> Vec<(String, String)> {
    let Start::Redirect { url } = start else { panic!("an OAuth 2.0 login starts with a redirect: {start:?}") };
    url.query_pairs().into_owned().collect()
}

/// What the browser brings back when an OAuth 2.0 upstream refuses the request `start` made:
/// `error=access_denied` with the request's `state`.
pub fn oauth_refusal(start: &Start) -> CallbackInput {
    let state = authorization_request(start).into_iter().find(|(k, _)| k == "state").map(|(_, v)| v);
    CallbackInput::Query(vec![
        ("error".into(), "access_denied".into()),
        ("error_description".into(), "the person said no".into()),
        ("state".into(), state.unwrap_or_default()),
    ])
}
