//! Round trips per callback, and logins that cross nodes mid-step.

use super::*;
use crate::flow::FlowError;
use crate::store::{Redeemed, Step};
use crate::types::{AuthCode, UserId};

#[tokio::test]
async fn a_brokered_callback_costs_at_most_six_store_round_trips() {
    let world = World::new("", &[]);
    let core = world.node().await;
    for (who, round) in [("alice", "first login, new user"), ("alice", "returning user")] {
        let b = browser();
        let txn = to_upstream(&core, &b).await;
        let before = world.backend.calls();
        let o = callback(&core, &b, &txn, who).await.expect("callback");
        let trips = world.backend.calls() - before;
        assert!(get(&response(&o), "code").is_some(), "{round}");
        // take_bound, identity lookup, user read, user write, session, code.
        assert_eq!(trips, 6, "{round}: store round trips of one callback");
    }
}

#[tokio::test]
async fn a_login_started_on_one_node_finishes_on_another() {
    let world = World::new("", &[]);
    let (a, b_node) = (world.node().await, world.node().await);
    let b = browser();
    let txn = to_upstream(&a, &b).await;
    let stored = a.store.transactions.get(&txn).await.unwrap().expect("stored");
    assert!(matches!(&stored.step, Step::Upstream { connection, .. } if connection.as_str() == "idp"), "{stored:?}");
    let o = callback(&b_node, &b, &txn, "alice").await.expect("node B finishes node A's login");
    let params = response(&o);
    assert_eq!(get(&params, "state"), Some("st-1"));
    assert_eq!(get(&params, "iss"), Some(ISSUER));
    assert!(o.set_session.is_some(), "a session for the browser");
    let code = AuthCode::from_presented(get(&params, "code").unwrap());
    match a.store.codes.redeem(&code, 60).await.unwrap() {
        Redeemed::Fresh(r) => assert_eq!(r.user_id, UserId::parse("oidc|alice").unwrap()),
        other => panic!("node A redeems node B's code: {other:?}"),
    }
    assert!(matches!(callback(&a, &b, &txn, "alice").await, Err(FlowError::UnknownTransaction)), "used once");
}

#[tokio::test]
async fn a_paused_login_continues_on_another_node() {
    let redirect = r#"
exports.onExecutePostLogin = async (event, api) => { api.redirect.sendUserTo("https://rules.test/ask", { query: { n: 1 } }); };
exports.onContinuePostLogin = async (event, api) => { api.idToken.setCustomClaim("answer", event.request.query.answer); };
"#;
    let world = World::new("[[actions.post_login]]\nname = \"ask\"\nfile = \"ask.js\"\n", &[("ask.js", redirect)]);
    let (a, b_node) = (world.node().await, world.node().await);
    let b = browser();
    let txn = to_upstream(&a, &b).await;
    let o = callback(&a, &b, &txn, "alice").await.expect("callback");
    let Next::Redirect(to) = &o.next else { panic!("expected the action's page: {:?}", o.next) };
    assert!(to.as_str().starts_with("https://rules.test/ask?n=1&state="), "{to}");
    assert!(o.set_session.is_none(), "no session before the actions are done");
    let state = param(to.as_str(), "state").unwrap();
    let paused = a.store.transactions.get(&TransactionId::parse(&state).unwrap()).await.unwrap().expect("paused");
    assert!(matches!(paused.step, Step::Actions { .. }), "{paused:?}");
    let back = Params::from_pairs(vec![("state".into(), state), ("answer".into(), "42".into())]);
    let o = crate::flow::continue_login(&b_node, &back, false, &b).await.expect("continue on node B");
    let code = AuthCode::from_presented(get(&response(&o), "code").unwrap());
    assert!(o.set_session.is_some(), "the interactive login opens its session once done");
    match b_node.store.codes.redeem(&code, 60).await.unwrap() {
        Redeemed::Fresh(r) => assert_eq!(r.custom.id_token.get("answer"), Some(&serde_json::json!("42"))),
        other => panic!("{other:?}"),
    }
}
