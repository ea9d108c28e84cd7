//! Every branch of `resume`, and the guards in front of it.

use super::*;
use crate::flow::FlowError;
use crate::store::{Redeemed, Step};
use crate::types::{AuthCode, UserId};

fn alice() -> UserId {
    UserId::parse("oidc|alice").unwrap()
}

#[tokio::test]
async fn a_callback_from_another_browser_is_refused_and_leaves_the_login_alive() {
    let world = World::new("", &[]);
    let core = world.node().await;
    let b = browser();
    let txn = to_upstream(&core, &b).await;
    let r = callback(&core, &browser(), &txn, "mallory").await;
    assert!(matches!(r, Err(FlowError::BrowserMismatch)), "{r:?}");
    let r = callback(&core, &Browser::default(), &txn, "mallory").await;
    assert!(matches!(r, Err(FlowError::BrowserMismatch)), "no cookie at all: {r:?}");
    assert!(core.store.transactions.get(&txn).await.unwrap().is_some(), "a stranger cannot cancel it");
    assert!(callback(&core, &b, &txn, "alice").await.is_ok(), "its own browser still finishes");
    let r = callback(&core, &b, &txn, "alice").await;
    assert!(matches!(r, Err(FlowError::UnknownTransaction)), "a replayed callback: {r:?}");
    let forged = TransactionId::random();
    assert!(matches!(callback(&core, &b, &forged, "alice").await, Err(FlowError::UnknownTransaction)));
}

#[tokio::test]
async fn an_upstream_refusal_goes_back_to_the_client_as_access_denied() {
    let world = World::new("", &[]);
    let core = world.node().await;
    let b = browser();
    let txn = to_upstream(&core, &b).await;
    let o = callback(&core, &b, &txn, "deny").await.expect("a refusal is an answer to the client");
    let params = response(&o);
    assert_eq!(get(&params, "error"), Some("access_denied"));
    assert!(get(&params, "error_description").is_some());
    assert_eq!(get(&params, "state"), Some("st-1"));
    assert_eq!(get(&params, "iss"), Some(ISSUER));
    assert_eq!(get(&params, "code"), None);
    assert!(o.set_session.is_none());
    assert!(core.store.transactions.get(&txn).await.unwrap().is_none(), "the transaction is spent");
}

#[tokio::test]
async fn the_chooser_step_is_persisted_until_a_connection_is_picked() {
    let world = World::new("", &[]);
    let core = world.node().await;
    let b = browser();
    // Two connections for the client: the chooser first.
    let mut settings = (*core.settings).clone();
    settings.clients[0].connections.push(ConnectionId::parse("other").unwrap());
    let two = Core { settings: Arc::new(settings), ..clone_core(&core) };
    let o = crate::flow::authorize(&two, &request(&[]), &b).await.expect("authorize");
    let Next::Hosted { txn_id } = o.next else { panic!("{:?}", o.next) };
    let txn = two.store.transactions.get(&txn_id).await.unwrap().unwrap();
    assert_eq!(txn.step, Step::ChooseConnection);
    let r = crate::flow::choose(&two, post(&txn_id, &b, Some("wrong csrf")), &idp()).await;
    assert!(matches!(r, Err(FlowError::Csrf)), "{r:?}");
    let r = crate::flow::choose(&two, post(&txn_id, &b, Some(&txn.csrf)), &ConnectionId::parse("nope").unwrap()).await;
    assert!(matches!(r, Err(FlowError::ConnectionNotAllowed)), "{r:?}");
    let o = crate::flow::choose(&two, post(&txn_id, &b, Some(&txn.csrf)), &idp()).await.expect("choose");
    assert!(matches!(o.next, Next::Redirect(_)));
    let txn = two.store.transactions.get(&txn_id).await.unwrap().unwrap();
    assert!(matches!(txn.step, Step::Upstream { .. }), "{txn:?}");
}

fn idp() -> ConnectionId {
    ConnectionId::parse("idp").unwrap()
}

fn post<'a>(txn_id: &'a TransactionId, browser: &'a Browser, csrf: Option<&'a str>) -> crate::flow::HostedPost<'a> {
    crate::flow::HostedPost { txn_id, browser, csrf }
}

fn clone_core(core: &Core) -> Core {
    Core {
        settings: core.settings.clone(),
        store: core.store.clone(),
        keys: core.keys.clone(),
        clock: core.clock.clone(),
        connections: core.connections.clone(),
        metrics: Default::default(),
    }
}

/// A node of `world`, and what alice's first callback there led to.
async fn alice_signs_in(world: &World) -> (Arc<Core>, Outcome) {
    let core = world.node().await;
    let b = browser();
    let txn = to_upstream(&core, &b).await;
    let o = callback(&core, &b, &txn, "alice").await.expect("callback");
    (core, o)
}

#[tokio::test]
async fn a_denied_registration_stores_nothing_and_tells_the_client() {
    let deny = r#"exports.onExecutePreUserRegistration = async (event, api) => { api.access.deny("closed", "Sign-ups are closed"); };"#;
    let world = World::new(
        "[[actions.pre_user_registration]]\nname = \"closed\"\nfile = \"closed.js\"\n",
        &[("closed.js", deny)],
    );
    let (core, o) = alice_signs_in(&world).await;
    let params = response(&o);
    assert_eq!(get(&params, "error"), Some("access_denied"));
    assert_eq!(get(&params, "error_description"), Some("Sign-ups are closed"));
    assert!(o.set_session.is_none());
    assert!(core.store.users.get(&alice()).await.unwrap().is_none(), "no user was created");
}

#[tokio::test]
async fn a_post_login_denial_opens_no_session() {
    let deny = r#"exports.onExecutePostLogin = async (event, api) => { api.access.deny("not today"); };"#;
    let world = World::new("[[actions.post_login]]\nname = \"deny\"\nfile = \"deny.js\"\n", &[("deny.js", deny)]);
    let (_core, o) = alice_signs_in(&world).await;
    let params = response(&o);
    assert_eq!(get(&params, "error"), Some("access_denied"));
    assert_eq!(get(&params, "error_description"), Some("not today"));
    assert_eq!(get(&params, "code"), None);
    assert!(o.set_session.is_none(), "a denied login opens no session");
}

/// A first login, returning the browser with its new session cookie.
async fn signed_in(core: &Core) -> Browser {
    let mut b = browser();
    let txn = to_upstream(core, &b).await;
    let o = callback(core, &b, &txn, "alice").await.expect("first login");
    b.session = Some(o.set_session.expect("a session"));
    b
}

#[tokio::test]
async fn silent_reauthentication_goes_through_the_same_steps() {
    let claim = r#"exports.onExecutePostLogin = async (event, api) => { api.idToken.setCustomClaim("seen", event.user.user_id); };"#;
    let world = World::new("[[actions.post_login]]\nname = \"claim\"\nfile = \"claim.js\"\n", &[("claim.js", claim)]);
    let core = world.node().await;
    let b = signed_in(&core).await;
    let o = crate::flow::authorize(&core, &request(&[("prompt", "none")]), &b).await.expect("silent");
    assert!(o.set_session.is_none(), "the live session is reused, not replaced");
    let code = AuthCode::from_presented(get(&response(&o), "code").expect("a code without any page"));
    let Redeemed::Fresh(record) = core.store.codes.redeem(&code, 60).await.unwrap() else { panic!() };
    assert_eq!(record.user_id, alice());
    assert_eq!(record.custom.id_token.get("seen"), Some(&serde_json::json!("oidc|alice")), "Actions ran");
    let session = crate::session::find(&core.store, b.session.as_deref(), core.clock.now()).await.unwrap().unwrap();
    assert_eq!(record.sid, session.sid, "the code belongs to the live session");
}

#[tokio::test]
async fn prompt_none_never_pauses_at_an_action() {
    let ask = r#"exports.onExecutePostLogin = async (event, api) => { if (event.stats.logins_count > 1) api.redirect.sendUserTo("https://rules.test/ask"); };"#;
    let world = World::new("[[actions.post_login]]\nname = \"ask\"\nfile = \"ask.js\"\n", &[("ask.js", ask)]);
    let core = world.node().await;
    // logins_count is 1 at the first login: no redirect then.
    let b = signed_in(&core).await;
    // A silent login counts no login, so this Action sees the stored count.
    crate::profile::upsert(
        core.store.users.as_ref(),
        &ConnectionId::parse("idp").unwrap(),
        "oidc",
        &Default::default(),
        &UpstreamIdentity { subject: "alice".into(), ..Default::default() },
        core.clock.now(),
    )
    .await
    .unwrap();
    let o = crate::flow::authorize(&core, &request(&[("prompt", "none")]), &b).await.expect("silent");
    let params = response(&o);
    assert_eq!(get(&params, "error"), Some("interaction_required"));
    assert_eq!(get(&params, "state"), Some("st-1"));
    // Without prompt=none the same login pauses, bound to this browser.
    let o = crate::flow::authorize(&core, &request(&[]), &b).await.expect("interactive");
    let Next::Redirect(to) = o.next else { panic!("{:?}", o.next) };
    let state = param(to.as_str(), "state").unwrap();
    let back = Params::from_pairs(vec![("state".into(), state.clone())]);
    let r = crate::flow::continue_login(&core, &back, false, &browser()).await;
    assert!(matches!(r, Err(FlowError::BrowserMismatch)), "another browser cannot continue it: {r:?}");
    let o = crate::flow::continue_login(&core, &back, false, &b).await.expect("continue");
    assert!(get(&response(&o), "code").is_some());
    assert!(o.set_session.is_none(), "a silent login keeps its session after the pause too");
    let r = crate::flow::continue_login(&core, &back, false, &b).await;
    assert!(matches!(r, Err(FlowError::UnknownTransaction)), "continued once: {r:?}");
}

#[tokio::test]
async fn an_id_token_hint_for_someone_else_gets_login_required() {
    let world = World::new("", &[]);
    let core = world.node().await;
    let b = browser();
    let txn = to_upstream(&core, &b).await;
    // The hint's subject, as `/authorize` stores it after verifying the hint.
    let mut stored = core.store.transactions.get(&txn).await.unwrap().unwrap();
    stored.request.hint_sub = Some("oidc|bob".into());
    core.store.transactions.put(&stored, 60).await.unwrap();
    let o = callback(&core, &b, &txn, "alice").await.expect("callback");
    assert_eq!(get(&response(&o), "error"), Some("login_required"));
    assert!(o.set_session.is_none());
    assert!(core.store.users.get(&alice()).await.unwrap().is_none(), "nothing recorded");
}

#[tokio::test]
async fn a_first_login_shows_actions_the_session_it_is_about_to_open() {
    let seen = r#"exports.onExecutePostLogin = async (event, api) => { api.idToken.setCustomClaim("session_seen", event.session.id); };"#;
    let world = World::new("[[actions.post_login]]\nname = \"seen\"\nfile = \"seen.js\"\n", &[("seen.js", seen)]);
    let (core, o) = alice_signs_in(&world).await;
    let cookie = o.set_session.clone().expect("a session");
    let code = AuthCode::from_presented(get(&response(&o), "code").expect("a code"));
    let Redeemed::Fresh(record) = core.store.codes.redeem(&code, 60).await.unwrap() else { panic!() };
    let session = crate::session::find(&core.store, Some(&cookie), core.clock.now()).await.unwrap().unwrap();
    assert_eq!(record.sid, session.sid);
    assert_eq!(record.custom.id_token.get("session_seen"), Some(&serde_json::json!(session.sid)), "event.session.id");
}

/// A paused login whose Action made bob the primary user before the redirect.
async fn paused_as_bob(continue_with: &str) -> (World, Browser, Params) {
    let source = format!(
        r#"exports.onExecutePostLogin = async (event, api) => {{
  api.authentication.setPrimaryUser("oidc|bob");
  api.redirect.sendUserTo("https://rules.test/ask");
}};
exports.onContinuePostLogin = async (event, api) => {{ api.authentication.setPrimaryUser("{continue_with}"); }};"#
    );
    let world = World::new("[[actions.post_login]]\nname = \"link\"\nfile = \"link.js\"\n", &[("link.js", &source)]);
    let core = world.node().await;
    for who in ["bob", "carol"] {
        let identity = UpstreamIdentity { subject: who.into(), ..Default::default() };
        let idp = ConnectionId::parse("idp").unwrap();
        crate::profile::upsert(
            core.store.users.as_ref(),
            &idp,
            "oidc",
            &Default::default(),
            &identity,
            core.clock.now(),
        )
        .await
        .unwrap();
    }
    let b = browser();
    let txn = to_upstream(&core, &b).await;
    let o = callback(&core, &b, &txn, "alice").await.expect("callback");
    let Next::Redirect(to) = o.next else { panic!("{:?}", o.next) };
    let back = Params::from_pairs(vec![("state".into(), param(to.as_str(), "state").unwrap())]);
    (world, b, back)
}

#[tokio::test]
async fn set_primary_user_holds_across_the_redirect_and_only_once() {
    // The same user again after the redirect: the login is bob's.
    let (world, b, back) = paused_as_bob("oidc|bob").await;
    let core = world.node().await;
    let o = crate::flow::continue_login(&core, &back, false, &b).await.expect("continue");
    let code = AuthCode::from_presented(get(&response(&o), "code").expect("a code"));
    let Redeemed::Fresh(record) = core.store.codes.redeem(&code, 60).await.unwrap() else { panic!() };
    assert_eq!(record.user_id.as_str(), "oidc|bob");
    // Another user after the redirect: refused, and no code.
    let (world, b, back) = paused_as_bob("oidc|carol").await;
    let core = world.node().await;
    let r = crate::flow::continue_login(&core, &back, false, &b).await;
    assert!(matches!(&r, Err(FlowError::ActionFailed(m)) if m.contains("once per transaction")), "{:?}", r.err());
}
