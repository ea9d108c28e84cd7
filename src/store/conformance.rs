//! The behaviour every store backend must show. A backend's tests call [`run_all`] with a
//! [`Harness`] that can move time forward (a manual clock for memory, real waiting for a
//! server that expires keys itself).

use async_trait::async_trait;

use super::*;
use crate::types::{AuthCode, ClientId, ConnectionId, RedirectUri, Scopes, SecretHash, TransactionId, UserId};

#[async_trait]
pub trait Harness: Send + Sync {
    /// Let `secs` seconds pass for the backend's expiry.
    async fn advance(&self, secs: u64);
    /// "Now" as the backend sees it, in Unix seconds.
    fn now(&self) -> u64;
}

/// Runs every check; each panics with a message naming the broken promise.
pub async fn run_all(store: &Store, h: &dyn Harness) {
    transactions_take_once_and_expire(store, h).await;
    transaction_race_has_one_taker(store, h).await;
    codes_redeem_once_then_report_reuse(store, h).await;
    code_replay_finds_its_grant(store, h).await;
    code_race_has_one_winner(store, h).await;
    sessions_live_until_deleted_or_expired(store, h).await;
    refresh_rotation_and_reuse_detection(store, h).await;
    refresh_lifetimes(store, h).await;
    refresh_race_rotates_once(store, h).await;
    revocations(store, h).await;
    users_and_identity_links(store).await;
    key_ring_first_writer_wins(store).await;
    replay_cache_and_counters(store, h).await;
    action_caches(store, h).await;
    logouts_are_taken_once(store, h).await;
}

async fn logouts_are_taken_once(store: &Store, h: &dyn Harness) {
    let record = LogoutRecord {
        id: unique("logout"),
        connection: ConnectionId::parse("acme").unwrap(),
        connector_state: gatehouse_connector::ConnectorState(b"{\"request_id\":\"_1\"}".to_vec()),
        redirect: Some("https://app.example/bye?state=s".into()),
    };
    store.logouts.put(&record, 5).await.unwrap();
    assert_eq!(store.logouts.take(&record.id).await.unwrap(), Some(record.clone()));
    assert_eq!(store.logouts.take(&record.id).await.unwrap(), None, "an upstream answer completes one logout");
    let expiring = LogoutRecord { id: unique("logout"), ..record };
    store.logouts.put(&expiring, 1).await.unwrap();
    h.advance(2).await;
    assert_eq!(store.logouts.take(&expiring.id).await.unwrap(), None, "logouts expire");
}

async fn action_caches(store: &Store, h: &dyn Harness) {
    let action = unique("action");
    assert_eq!(store.action_cache.load(&action).await.unwrap(), None);
    store.action_cache.save(&action, r#"{"k":"v"}"#, 1).await.unwrap();
    assert_eq!(store.action_cache.load(&action).await.unwrap().as_deref(), Some(r#"{"k":"v"}"#));
    assert_eq!(store.action_cache.load(&unique("other")).await.unwrap(), None, "caches are per action");
    h.advance(2).await;
    assert_eq!(store.action_cache.load(&action).await.unwrap(), None, "the cache expires");
}

fn unique(tag: &str) -> String {
    format!("{tag}-{}", crate::types::random_token(9))
}

fn request() -> RequestRecord {
    RequestRecord {
        client_id: ClientId::parse("app").unwrap(),
        redirect_uri: RedirectUri::parse("https://app.example/cb").unwrap(),
        scopes: Scopes::parse("openid").unwrap(),
        state: Some("s".into()),
        nonce: None,
        code_challenge: None,
        response_mode: ResponseMode::Query,
        prompt_login: false,
        max_age: None,
        login_hint: None,
        connection: None,
        ui_locales: None,
        hint_sub: None,
        unsolicited: false,
    }
}

fn code_record(now: u64) -> CodeRecord {
    CodeRecord {
        client_id: ClientId::parse("app").unwrap(),
        redirect_uri: RedirectUri::parse("https://app.example/cb").unwrap(),
        scopes: Scopes::parse("openid").unwrap(),
        nonce: Some("n".into()),
        code_challenge: None,
        user_id: UserId::parse("auth0|ada").unwrap(),
        sid: "sid".into(),
        auth_time: now,
        amr: vec!["pwd".into()],
        issued_at: now,
        custom: Default::default(),
        unsolicited: false,
    }
}

fn grant(id: &str, now: u64, refresh: SecretHash) -> GrantRecord {
    GrantRecord {
        id: id.to_owned(),
        client_id: ClientId::parse("app").unwrap(),
        user_id: UserId::parse("auth0|ada").unwrap(),
        scopes: Scopes::parse("openid offline_access").unwrap(),
        sid: "sid".into(),
        auth_time: now,
        amr: vec![],
        created_at: now,
        last_used_at: now,
        refresh: Some(refresh),
        rotated: vec![],
        expires_at: now + 1000,
        idle_ttl: 100,
        custom: Default::default(),
    }
}

async fn transactions_take_once_and_expire(store: &Store, h: &dyn Harness) {
    let txn = TransactionRecord {
        id: TransactionId::parse(&unique("txn")).unwrap(),
        browser: SecretHash::of("browser"),
        request: request(),
        step: Step::Upstream {
            connection: ConnectionId::parse("acme").unwrap(),
            state: gatehouse_connector::ConnectorState(b"nonce".to_vec()),
        },
        csrf: "c".into(),
        created_at: h.now(),
    };
    store.transactions.put(&txn, 5).await.unwrap();
    assert_eq!(store.transactions.get(&txn.id).await.unwrap().as_ref(), Some(&txn), "get after put");
    assert_eq!(store.transactions.take(&txn.id).await.unwrap(), Some(txn.clone()), "first take");
    assert_eq!(store.transactions.take(&txn.id).await.unwrap(), None, "a transaction is taken once");

    let short = TransactionRecord { id: TransactionId::parse(&unique("txn")).unwrap(), ..txn.clone() };
    store.transactions.put(&short, 1).await.unwrap();
    h.advance(2).await;
    assert_eq!(store.transactions.get(&short.id).await.unwrap(), None, "transaction TTL");
    assert_eq!(store.transactions.take(&short.id).await.unwrap(), None, "expired transaction cannot be taken");
    assert_eq!(
        store.transactions.take_bound(&short.id, &short.browser).await.unwrap(),
        Taken::Missing,
        "expired transaction cannot be taken by its browser either"
    );

    let bound = TransactionRecord { id: TransactionId::parse(&unique("txn")).unwrap(), ..txn };
    store.transactions.put(&bound, 5).await.unwrap();
    let stranger = SecretHash::of("another browser");
    assert_eq!(store.transactions.take_bound(&bound.id, &stranger).await.unwrap(), Taken::OtherBrowser);
    assert_eq!(
        store.transactions.get(&bound.id).await.unwrap().as_ref(),
        Some(&bound),
        "another browser's attempt leaves the transaction in place"
    );
    assert_eq!(
        store.transactions.take_bound(&bound.id, &bound.browser).await.unwrap(),
        Taken::Mine(Box::new(bound.clone())),
        "its own browser takes it"
    );
    assert_eq!(store.transactions.take_bound(&bound.id, &bound.browser).await.unwrap(), Taken::Missing, "once");
}

async fn transaction_race_has_one_taker(store: &Store, h: &dyn Harness) {
    let txn = TransactionRecord {
        id: TransactionId::parse(&unique("txn")).unwrap(),
        browser: SecretHash::of("browser"),
        request: request(),
        step: Step::ChooseConnection,
        csrf: "c".into(),
        created_at: h.now(),
    };
    store.transactions.put(&txn, 60).await.unwrap();
    let tasks: Vec<_> = (0..16)
        .map(|_| {
            let (s, id, b) = (store.clone(), txn.id.clone(), txn.browser);
            tokio::spawn(async move { s.transactions.take_bound(&id, &b).await.unwrap() })
        })
        .collect();
    let mut mine = 0;
    for t in tasks {
        match t.await.unwrap() {
            Taken::Mine(t) => {
                assert_eq!(*t, txn);
                mine += 1;
            }
            Taken::Missing => {}
            Taken::OtherBrowser => panic!("the right browser was told it is another"),
        }
    }
    assert_eq!(mine, 1, "exactly one of 16 concurrent callbacks takes the transaction");
}

/// A code of a grant id no other check uses (base64url, like the ones Gatehouse issues).
fn fresh_code() -> (String, AuthCode) {
    let grant_id = unique("g").replace(|c: char| !c.is_ascii_alphanumeric(), "");
    let code = AuthCode::new(&grant_id);
    (grant_id, code)
}

async fn codes_redeem_once_then_report_reuse(store: &Store, h: &dyn Harness) {
    let (gid, code) = fresh_code();
    let rec = code_record(h.now());
    store.codes.put(&code, &rec, 60).await.unwrap();
    assert_eq!(store.codes.redeem(&code, 60).await.unwrap(), Redeemed::Fresh(Box::new(rec.clone())));
    assert_eq!(
        store.codes.redeem(&code, 60).await.unwrap(),
        Redeemed::Reused { grant_id: gid.clone() },
        "second redemption names the grant in the code"
    );
    let never = AuthCode::new(&fresh_code().0);
    assert_eq!(store.codes.redeem(&never, 60).await.unwrap(), Redeemed::Unknown);
    assert_eq!(store.codes.redeem(&AuthCode::from_presented("no-grant-id"), 60).await.unwrap(), Redeemed::Unknown);

    // A forged code: the real grant id, a wrong secret. It finds nothing and revokes nothing.
    let forged = AuthCode::new(&gid);
    assert_eq!(store.codes.redeem(&forged, 60).await.unwrap(), Redeemed::Unknown, "forged secret");
    assert_eq!(store.codes.redeem(&code, 60).await.unwrap(), Redeemed::Reused { grant_id: gid }, "still known");

    let (_, expiring) = fresh_code();
    store.codes.put(&expiring, &rec, 1).await.unwrap();
    h.advance(2).await;
    assert_eq!(store.codes.redeem(&expiring, 60).await.unwrap(), Redeemed::Unknown, "code TTL");
}

/// A replay revokes what the first redemption issued: with a refresh family, for the whole
/// life of the family; without one, for the `grant_ttl` given at redemption.
async fn code_replay_finds_its_grant(store: &Store, h: &dyn Harness) {
    let (gid, code) = fresh_code();
    store.codes.put(&code, &code_record(h.now()), 60).await.unwrap();
    assert!(matches!(store.codes.redeem(&code, 1).await.unwrap(), Redeemed::Fresh(_)));
    store.grants.put(&grant(&gid, h.now(), SecretHash::of(&unique("rt")))).await.unwrap();
    h.advance(2).await;
    let Redeemed::Reused { grant_id } = store.codes.redeem(&code, 1).await.unwrap() else {
        panic!("a grant with a record keeps its code's hash past grant_ttl");
    };
    assert_eq!(grant_id, gid);
    let marker = format!("grant:{gid}");
    store.grants.revoke(&grant_id, 60).await.unwrap();
    assert!(store.revocations.any_revoked(&[&marker]).await.unwrap(), "the first use's tokens are revoked");
    assert_eq!(store.grants.get(&gid).await.unwrap(), None, "and its refresh family");

    // A forged secret under a live grant's id leaves the grant alone.
    let (gid, code) = fresh_code();
    store.codes.put(&code, &code_record(h.now()), 60).await.unwrap();
    assert!(matches!(store.codes.redeem(&code, 60).await.unwrap(), Redeemed::Fresh(_)));
    store.grants.put(&grant(&gid, h.now(), SecretHash::of(&unique("rt")))).await.unwrap();
    assert_eq!(store.codes.redeem(&AuthCode::new(&gid), 60).await.unwrap(), Redeemed::Unknown);
    assert!(store.grants.get(&gid).await.unwrap().is_some(), "the forged code revoked nothing");
    assert!(!store.revocations.any_revoked(&[&format!("grant:{gid}")]).await.unwrap());

    // No refresh token, no grant record: the code's hash lives `grant_ttl`, then a replay is
    // an unknown code.
    let (gid, code) = fresh_code();
    store.codes.put(&code, &code_record(h.now()), 60).await.unwrap();
    assert!(matches!(store.codes.redeem(&code, 5).await.unwrap(), Redeemed::Fresh(_)));
    assert_eq!(store.grants.get(&gid).await.unwrap(), None, "a code-only grant has no record");
    assert_eq!(store.codes.redeem(&code, 5).await.unwrap(), Redeemed::Reused { grant_id: gid });
    h.advance(6).await;
    assert_eq!(store.codes.redeem(&code, 5).await.unwrap(), Redeemed::Unknown, "grant_ttl");
}

async fn code_race_has_one_winner(store: &Store, h: &dyn Harness) {
    const N: usize = 50;
    let (_, code) = fresh_code();
    store.codes.put(&code, &code_record(h.now()), 60).await.unwrap();
    let tasks: Vec<_> = (0..N)
        .map(|_| {
            let s = store.clone();
            let code = code.clone();
            tokio::spawn(async move { s.codes.redeem(&code, 60).await.unwrap() })
        })
        .collect();
    let mut fresh = 0;
    let mut reused = 0;
    for t in tasks {
        match t.await.unwrap() {
            Redeemed::Fresh(_) => fresh += 1,
            Redeemed::Reused { .. } => reused += 1,
            Redeemed::Unknown => {}
        }
    }
    assert_eq!(fresh, 1, "exactly one of {N} concurrent redemptions wins");
    assert_eq!(reused, N - 1, "every loser sees the reuse");
}

async fn sessions_live_until_deleted_or_expired(store: &Store, h: &dyn Harness) {
    let key = SecretHash::of(&unique("cookie"));
    let s = SessionRecord {
        sid: unique("sid"),
        user_id: UserId::parse("auth0|ada").unwrap(),
        connection: ConnectionId::parse("users").unwrap(),
        auth_time: h.now(),
        amr: vec!["pwd".into()],
        created_at: h.now(),
        expires_at: h.now() + 10,
        upstream: Some(serde_json::json!({"name_id": "ada", "session_index": "_s1"})),
    };
    store.sessions.put(key, &s, 10).await.unwrap();
    assert_eq!(store.sessions.get(key).await.unwrap(), Some(s.clone()));
    store.sessions.delete(key).await.unwrap();
    assert_eq!(store.sessions.get(key).await.unwrap(), None, "deleted session");

    store.sessions.put(key, &s, 1).await.unwrap();
    h.advance(2).await;
    assert_eq!(store.sessions.get(key).await.unwrap(), None, "session TTL");
}

async fn refresh_rotation_and_reuse_detection(store: &Store, h: &dyn Harness) {
    let id = unique("grant");
    let (t1, t2, t3) = (SecretHash::of("t1"), SecretHash::of("t2"), SecretHash::of("t3"));
    store.grants.put(&grant(&id, h.now(), t1)).await.unwrap();
    match store.grants.rotate(&id, t1, t2, h.now()).await.unwrap() {
        Rotation::Rotated(g) => assert_eq!(g.refresh, Some(t2), "the new token is current"),
        other => panic!("current token must rotate, got {other:?}"),
    }
    assert_eq!(store.grants.rotate(&id, SecretHash::of("bogus"), t3, h.now()).await.unwrap(), Rotation::Invalid);
    assert!(store.grants.get(&id).await.unwrap().is_some(), "a bogus token does not revoke");
    assert_eq!(store.grants.rotate(&id, t1, t3, h.now()).await.unwrap(), Rotation::Reused, "old token = reuse");
    assert_eq!(store.grants.get(&id).await.unwrap(), None, "reuse revokes the family");
    assert_eq!(
        store.grants.rotate(&id, t2, t3, h.now()).await.unwrap(),
        Rotation::Invalid,
        "even the newest token dies"
    );
    assert!(
        store.revocations.any_revoked(&[&format!("grant:{id}")]).await.unwrap(),
        "access tokens of the family are revoked"
    );
}

async fn refresh_lifetimes(store: &Store, h: &dyn Harness) {
    let id = unique("grant");
    let t1 = SecretHash::of(&unique("t"));
    let mut g = grant(&id, h.now(), t1);
    g.idle_ttl = 1;
    store.grants.put(&g).await.unwrap();
    h.advance(2).await;
    assert_eq!(
        store.grants.rotate(&id, t1, SecretHash::of("x"), h.now()).await.unwrap(),
        Rotation::Invalid,
        "idle lifetime"
    );

    let id = unique("grant");
    let mut g = grant(&id, h.now(), t1);
    g.expires_at = h.now() + 1;
    store.grants.put(&g).await.unwrap();
    h.advance(2).await;
    assert_eq!(
        store.grants.rotate(&id, t1, SecretHash::of("x"), h.now()).await.unwrap(),
        Rotation::Invalid,
        "absolute lifetime"
    );
    assert_eq!(store.grants.get(&id).await.unwrap(), None, "an expired family is gone");
}

async fn refresh_race_rotates_once(store: &Store, h: &dyn Harness) {
    const N: usize = 50;
    let id = unique("grant");
    let t1 = SecretHash::of(&unique("t"));
    store.grants.put(&grant(&id, h.now(), t1)).await.unwrap();
    let now = h.now();
    let tasks: Vec<_> = (0..N)
        .map(|i| {
            let s = store.clone();
            let id = id.clone();
            tokio::spawn(async move { s.grants.rotate(&id, t1, SecretHash::of(&format!("n{i}")), now).await.unwrap() })
        })
        .collect();
    let mut rotated = 0;
    for t in tasks {
        if let Rotation::Rotated(_) = t.await.unwrap() {
            rotated += 1;
        }
    }
    assert_eq!(rotated, 1, "one refresh token presented {N} times rotates exactly once");
    assert_eq!(store.grants.get(&id).await.unwrap(), None, "the concurrent reuse revoked the family");
}

async fn revocations(store: &Store, h: &dyn Harness) {
    let jti = unique("jti");
    assert!(!store.revocations.any_revoked(&[&jti]).await.unwrap());
    store.revocations.revoke(&jti, 1).await.unwrap();
    assert!(store.revocations.any_revoked(&["other", &jti]).await.unwrap());
    h.advance(2).await;
    assert!(!store.revocations.any_revoked(&[&jti]).await.unwrap(), "revocations expire with the token");

    let id = unique("grant");
    store.grants.put(&grant(&id, h.now(), SecretHash::of("r"))).await.unwrap();
    store.grants.revoke(&id, 60).await.unwrap();
    assert_eq!(store.grants.get(&id).await.unwrap(), None);
    assert!(store.revocations.any_revoked(&[&format!("grant:{id}")]).await.unwrap());
    // A family stored after its grant was revoked (a replayed code revoked it while its first
    // redemption was still issuing) stays dead.
    store.grants.put(&grant(&id, h.now(), SecretHash::of("r2"))).await.unwrap();
    assert_eq!(store.grants.get(&id).await.unwrap(), None, "a revoked grant is not re-created");
}

async fn users_and_identity_links(store: &Store) {
    let subject = unique("sub");
    let user_id = UserId::new("auth0", &subject).unwrap();
    let user = UserRecord {
        user_id: user_id.clone(),
        email: Some("ada@example.com".into()),
        email_verified: true,
        name: Some("Ada".into()),
        given_name: None,
        family_name: None,
        nickname: None,
        picture: None,
        locale: None,
        groups: vec![],
        identities: vec![Identity {
            connection: ConnectionId::parse("users").unwrap(),
            provider: "auth0".into(),
            user_id: subject.clone(),
            is_social: false,
            profile_data: Default::default(),
        }],
        app_metadata: Default::default(),
        user_metadata: Default::default(),
        created_at: 1,
        updated_at: 1,
        last_login: 1,
        logins_count: 1,
    };
    assert_eq!(store.users.get(&user_id).await.unwrap(), None);
    store.users.put(&user).await.unwrap();
    assert_eq!(store.users.get(&user_id).await.unwrap(), Some(user.clone()));
    assert_eq!(store.users.find_by_identity("users", &subject).await.unwrap(), Some(user_id.clone()));
    assert_eq!(store.users.find_by_identity("other", &subject).await.unwrap(), None);
    let updated = UserRecord { logins_count: 2, ..user.clone() };
    store.users.put(&updated).await.unwrap();
    assert_eq!(store.users.get(&user_id).await.unwrap().unwrap().logins_count, 2, "put updates");
    assert_eq!(store.users.find_by_verified_email("ADA@example.com").await.unwrap(), Some(user_id.clone()));

    // A second identity, then unlinking it.
    let second = Identity {
        connection: ConnectionId::parse("google").unwrap(),
        provider: "google-oauth2".into(),
        user_id: subject.clone(),
        is_social: true,
        profile_data: Default::default(),
    };
    let mut two = updated.clone();
    two.identities.push(second);
    store.users.put(&two).await.unwrap();
    assert_eq!(store.users.find_by_identity("google", &subject).await.unwrap(), Some(user_id.clone()));
    let after = store.users.unlink(&user_id, "google", &subject).await.unwrap().expect("unlinked");
    assert_eq!(after.identities.len(), 1);
    assert_eq!(store.users.find_by_identity("google", &subject).await.unwrap(), None, "the link is gone");
    assert_eq!(store.users.get(&user_id).await.unwrap().unwrap().identities.len(), 1);
    assert_eq!(store.users.unlink(&user_id, "google", &subject).await.unwrap(), None, "unlinking twice");

    let unverified = unique("sub");
    let mut other = updated;
    other.user_id = UserId::new("auth0", &unverified).unwrap();
    other.email = Some(format!("{unverified}@example.com"));
    other.email_verified = false;
    other.identities.clear();
    store.users.put(&other).await.unwrap();
    assert_eq!(store.users.find_by_verified_email(&format!("{unverified}@example.com")).await.unwrap(), None);
}

async fn key_ring_first_writer_wins(store: &Store) {
    let first = KeyRingRecord {
        keys: vec![StoredKey { kid: unique("k"), alg: "ES256".into(), pkcs8: "AA==".into(), created_at: 1 }],
    };
    let second = KeyRingRecord {
        keys: vec![StoredKey { kid: unique("k"), alg: "ES256".into(), pkcs8: "AA==".into(), created_at: 2 }],
    };
    let existing = store.keys.load().await.unwrap();
    let won = store.keys.create_if_absent(&first).await.unwrap();
    let again = store.keys.create_if_absent(&second).await.unwrap();
    assert_eq!(won, again, "every node sees the same ring");
    if existing.is_none() {
        assert_eq!(won, first, "the first writer's ring is kept");
    }
}

async fn replay_cache_and_counters(store: &Store, h: &dyn Harness) {
    let key = unique("assertion");
    assert!(store.replay.insert_once(&key, 1).await.unwrap(), "first sight");
    assert!(!store.replay.insert_once(&key, 1).await.unwrap(), "replay refused");
    h.advance(2).await;
    assert!(store.replay.insert_once(&key, 1).await.unwrap(), "replay entries expire");

    let c = unique("counter");
    assert_eq!(store.counters.get(&c).await.unwrap(), 0);
    assert_eq!(store.counters.incr(&c, 60).await.unwrap(), 1);
    assert_eq!(store.counters.incr(&c, 60).await.unwrap(), 2);
    store.counters.reset(&c).await.unwrap();
    assert_eq!(store.counters.get(&c).await.unwrap(), 0);
    assert_eq!(store.counters.incr(&c, 1).await.unwrap(), 1);
    h.advance(2).await;
    assert_eq!(store.counters.get(&c).await.unwrap(), 0, "counter window");
}
