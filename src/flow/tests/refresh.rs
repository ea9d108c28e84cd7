//! The refresh-token exchange after a brokered login: post-login Actions run on it (as in
//! Auth0) only for a family that can still be refreshed.

use super::*;
use crate::oauth::token::exchange;

/// RFC 7636 appendix B: the verifier of the challenge `request` sends.
const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

/// Counts its runs in the user's app_metadata: a run that should not happen shows.
const COUNTER: &str = r#"exports.onExecutePostLogin = async (event, api) => {
  api.user.setAppMetadata("runs", (event.user.app_metadata.runs || 0) + 1);
};"#;

fn params(pairs: &[(&str, &str)]) -> Params {
    Params::from_pairs(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect())
}

async fn runs(core: &Core) -> u64 {
    let alice = crate::types::UserId::parse("oidc|alice").unwrap();
    let user = core.store.users.get(&alice).await.unwrap().expect("alice");
    user.app_metadata.get("runs").and_then(|v| v.as_u64()).unwrap_or(0)
}

#[tokio::test]
async fn refresh_actions_never_run_for_an_expired_family() {
    let world = World::new(
        "[tokens]\nrefresh_idle_ttl = 600\n[[actions.post_login]]\nname = \"count\"\nfile = \"count.js\"\n",
        &[("count.js", COUNTER)],
    );
    let core = world.node().await;
    let b = browser();
    let mut ask = request(&[]).pairs().to_vec();
    ask.retain(|(k, _)| k != "scope");
    ask.push(("scope".into(), "openid offline_access".into()));
    let o = super::super::authorize(&core, &Params::from_pairs(ask), &b).await.expect("authorize");
    let Next::Redirect(url) = o.next else { panic!("expected the upstream redirect, got {:?}", o.next) };
    let txn = TransactionId::parse(&param(url.as_str(), "state").expect("state")).expect("txn id");
    let code = get(&response(&callback(&core, &b, &txn, "alice").await.expect("login")), "code").unwrap().to_owned();
    assert_eq!(runs(&core).await, 1, "the login ran the action");

    let client = core.settings.client("web").expect("client").clone();
    let redeemed = params(&[
        ("grant_type", "authorization_code"),
        ("code", &code),
        ("redirect_uri", REDIRECT),
        ("code_verifier", VERIFIER),
    ]);
    let tokens = exchange(&core, &client, &redeemed).await.expect("code exchange");
    let first = tokens.refresh_token.expect("offline_access gives a refresh token");

    // Within the idle window: the action runs and the token rotates.
    world.clock.advance(300);
    let tokens = exchange(&core, &client, &params(&[("grant_type", "refresh_token"), ("refresh_token", &first)]))
        .await
        .expect("refresh within the idle window");
    let second = tokens.refresh_token.expect("a rotated refresh token");
    assert_eq!(runs(&core).await, 2, "the refresh ran the action");

    // Idle past the window: refused, and the action never ran.
    world.clock.advance(601);
    let e = exchange(&core, &client, &params(&[("grant_type", "refresh_token"), ("refresh_token", &second)]))
        .await
        .expect_err("an idle family cannot be refreshed");
    assert_eq!(e.code, crate::oauth::ErrorCode::InvalidGrant);
    assert_eq!(runs(&core).await, 2, "no action ran for a refresh that was refused");
}
