//! The store conformance suite against real Redis: one server, a 3-master Cluster, and
//! Sentinel. Each test starts its own servers and kills them at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use gatehouse::clock::{Clock, SystemClock};
use gatehouse::store::conformance::{self, Harness};
use gatehouse::store::redis::{RedisConfig, RedisStore, Topology};
use gatehouse::store::{Store, StoreError};

use crate::redis_harness::*;

/// Time for Redis without waiting for it. Redis expires keys by its own clock, so letting
/// `secs` pass shortens the TTL of every key of this store by that much on every master
/// (deleting those it would have expired), and `now` moves on by the same amount: the suite
/// checks expiry in milliseconds instead of sleeping ~21 s per topology.
///
/// One correction keeps the two clocks in step: a refresh family's hash expires at its
/// absolute `expires_at` (EXPIREAT), written in the suite's shifted time but read by Redis
/// in its own; before shifting, such a key is set to expire at that instant of Redis's clock.
struct ShiftedTime {
    /// One URL per master: a Cluster's keys live on several.
    masters: Vec<String>,
    prefix: String,
    offset: AtomicU64,
}

impl ShiftedTime {
    fn new(masters: Vec<String>, prefix: &str) -> Self {
        Self { masters, prefix: prefix.to_owned(), offset: AtomicU64::new(0) }
    }
}

#[async_trait]
impl Harness for ShiftedTime {
    async fn advance(&self, secs: u64) {
        let ms = i64::try_from(secs * 1000).unwrap();
        let mut shifted = 0;
        for url in &self.masters {
            let mut con = redis::Client::open(url.as_str()).unwrap().get_multiplexed_async_connection().await.unwrap();
            let mut cursor = 0u64;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("*{}*", self.prefix))
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(&mut con)
                    .await
                    .unwrap();
                for key in keys {
                    let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut con).await.unwrap();
                    if kind == "hash" {
                        let at: Option<u64> =
                            redis::cmd("HGET").arg(&key).arg("expires_at").query_async(&mut con).await.unwrap();
                        if let Some(at) = at {
                            let real = at.saturating_sub(self.offset.load(Ordering::SeqCst)) * 1000;
                            let _: i64 =
                                redis::cmd("PEXPIREAT").arg(&key).arg(real).query_async(&mut con).await.unwrap();
                        }
                    }
                    let ttl: i64 = redis::cmd("PTTL").arg(&key).query_async(&mut con).await.unwrap();
                    if ttl < 0 {
                        continue; // no TTL: time does not touch it
                    }
                    if ttl <= ms {
                        let _: i64 = redis::cmd("DEL").arg(&key).query_async(&mut con).await.unwrap();
                    } else {
                        let _: i64 = redis::cmd("PEXPIRE").arg(&key).arg(ttl - ms).query_async(&mut con).await.unwrap();
                    }
                    shifted += 1;
                }
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        assert!(shifted > 0, "letting time pass found no key with a TTL under prefix {}", self.prefix);
        self.offset.fetch_add(secs, Ordering::SeqCst);
    }
    fn now(&self) -> u64 {
        SystemClock.now() + self.offset.load(Ordering::SeqCst)
    }
}

pub fn config(topology: Topology) -> RedisConfig {
    RedisConfig {
        topology,
        key_prefix: format!("gh-test-{}", gatehouse::types::random_token(6)),
        timeout: Duration::from_millis(1500),
        tls_ca: None,
    }
}

async fn store(topology: Topology) -> (Store, Arc<RedisStore>) {
    let (s, backend, _) = store_with_prefix(topology).await;
    (s, backend)
}

async fn store_with_prefix(topology: Topology) -> (Store, Arc<RedisStore>, String) {
    let cfg = config(topology);
    let backend = Arc::new(RedisStore::connect(&cfg).await.unwrap());
    (gatehouse::store::redis::store(backend.clone()), backend, cfg.key_prefix)
}

/// The number in a `:<n>` integer reply.
fn integer(reply: &str) -> i64 {
    reply.trim().strip_prefix(':').and_then(|n| n.parse().ok()).unwrap_or_else(|| panic!("not an integer: {reply:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_server_passes_the_conformance_suite() {
    let redis = TestRedis::start();
    let (s, _, prefix) = store_with_prefix(Topology::Single(redis.url())).await;
    conformance::run_all(&s, &ShiftedTime::new(vec![redis.url()], &prefix)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_passes_the_conformance_suite() {
    let cluster = TestCluster::start();
    let (s, _, prefix) = store_with_prefix(Topology::Cluster(cluster.urls())).await;
    conformance::run_all(&s, &ShiftedTime::new(cluster.urls(), &prefix)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_passes_the_conformance_suite() {
    let setup = TestSentinel::start();
    let (s, _, prefix) = store_with_prefix(Topology::Sentinel {
        sentinels: vec![setup.sentinel_url()],
        master_name: MASTER_NAME.into(),
        node_url: None,
    })
    .await;
    conformance::run_all(&s, &ShiftedTime::new(vec![setup.master.url()], &prefix)).await;
    // Writes went to the master Sentinel named (not to the replica, which refuses writes), and
    // replicate: the replica catches up to the master's key count.
    let on_master = integer(&command(setup.master.port, "DBSIZE").unwrap());
    assert!(on_master > 0, "the suite wrote nothing to the master Sentinel named");
    wait_until("the replica follows the master", || {
        command(setup.replica.port, "DBSIZE").is_some_and(|r| integer(&r) == on_master)
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_redis_is_unavailable_not_stuck() {
    let mut redis = TestRedis::start();
    let (s, _) = store(Topology::Single(redis.url())).await;
    s.health.ping().await.unwrap();
    redis.kill();
    let started = std::time::Instant::now();
    let e = s.transactions.get(&gatehouse::types::TransactionId::parse("x").unwrap()).await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert!(started.elapsed() < Duration::from_secs(5), "bounded by the deadline, took {:?}", started.elapsed());
    redis.restart();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while s.health.ping().await.is_err() {
        assert!(std::time::Instant::now() < deadline, "the connection never came back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_prefixes_keep_deployments_apart() {
    let redis = TestRedis::start();
    let (a, _) = store(Topology::Single(redis.url())).await;
    let (b, _) = store(Topology::Single(redis.url())).await;
    assert!(a.replay.insert_once("same-key", 60).await.unwrap());
    assert!(b.replay.insert_once("same-key", 60).await.unwrap(), "another prefix is another namespace");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_acl_credentials() {
    let tls = TestTls::generate();
    let redis = TestRedis::start_with(&[
        "--appendonly",
        "no",
        "--tls-port",
        "0",
        "--tls-cert-file",
        tls.cert.to_str().unwrap(),
        "--tls-key-file",
        tls.key.to_str().unwrap(),
        "--tls-ca-cert-file",
        tls.ca.to_str().unwrap(),
        "--tls-auth-clients",
        "no",
        "--user",
        "default",
        "off",
        "--user",
        "gatehouse",
        "on",
        ">s3cret-pass",
        "~*",
        "+@all",
    ]);
    let tls_port = redis.tls_port.expect("TLS port");
    let url = format!("rediss://gatehouse:s3cret-pass@127.0.0.1:{tls_port}");
    let mut cfg = config(Topology::Single(url.clone()));
    cfg.tls_ca = Some(std::fs::read(&tls.ca).unwrap());
    let backend = Arc::new(RedisStore::connect(&cfg).await.expect("TLS with the private CA and ACL credentials"));
    let s = gatehouse::store::redis::store(backend);
    assert!(s.replay.insert_once("k", 60).await.unwrap());
    assert!(!s.replay.insert_once("k", 60).await.unwrap());

    // Without the CA the server certificate is not trusted; with a wrong password, no entry.
    // Each is refused for that reason, not by a timeout (a deadline long enough to rule one out).
    let refused = |e: StoreError| match e {
        StoreError::Unavailable(m) => {
            assert!(!m.contains("no answer"), "refused by the deadline, not by Redis: {m}");
            m.to_lowercase()
        }
        other => panic!("expected Unavailable, got {other:?}"),
    };
    let untrusted = config(Topology::Single(url));
    let e = refused(RedisStore::connect(&untrusted).await.err().expect("an unknown CA is refused"));
    assert!(e.contains("certificate") || e.contains("issuer"), "an unknown CA is refused as such: {e}");
    let mut wrong = config(Topology::Single(format!("rediss://gatehouse:nope@127.0.0.1:{tls_port}")));
    wrong.tls_ca = Some(std::fs::read(&tls.ca).unwrap());
    let e = refused(RedisStore::connect(&wrong).await.err().expect("a wrong password is refused"));
    assert!(
        e.contains("wrongpass") || e.contains("authentication failed") || e.contains("invalid username-password"),
        "refused for the password: {e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_failover_is_followed() {
    let mut setup = TestSentinel::start();
    let (s, _) = store(Topology::Sentinel {
        sentinels: vec![setup.sentinel_url()],
        master_name: MASTER_NAME.into(),
        node_url: None,
    })
    .await;
    assert!(s.replay.insert_once("before-failover", 600).await.unwrap());
    // Wait until the write reached the replica, then lose the master.
    wait_until("the write reaches the replica", || {
        command(setup.replica.port, "KEYS *before-failover*").is_some_and(|r| r.starts_with("*1"))
    });
    setup.master.kill();
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        match s.replay.insert_once("after-failover", 600).await {
            Ok(true) => break,
            Ok(false) => panic!("a fresh key cannot be a replay"),
            Err(e) => {
                assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
                assert!(std::time::Instant::now() < deadline, "the store never followed the failover");
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        }
    }
    let master = command(setup.sentinel_port(), &format!("SENTINEL get-master-addr-by-name {MASTER_NAME}")).unwrap();
    assert!(master.contains(&setup.replica.port.to_string()), "the replica was promoted: {master}");
    assert!(!s.replay.insert_once("before-failover", 600).await.unwrap(), "replicated state survived the failover");
    let role = command(setup.replica.port, "ROLE").unwrap();
    assert!(role.contains("master"), "writes now go to the promoted replica: {role}");
}

/// `MEMORY USAGE` of `key`, in bytes (0 when it does not exist).
async fn memory_usage(con: &mut redis::aio::MultiplexedConnection, key: &str) -> i64 {
    let n: Option<i64> =
        redis::cmd("MEMORY").arg("USAGE").arg(key).arg("SAMPLES").arg(0).query_async(con).await.unwrap();
    n.unwrap_or(0)
}

/// The keys of this store, sorted.
async fn keys_of(con: &mut redis::aio::MultiplexedConnection, prefix: &str) -> Vec<String> {
    let mut keys: Vec<String> = redis::cmd("KEYS").arg(format!("{prefix}:*")).query_async(con).await.unwrap();
    keys.sort();
    keys
}

/// What a redeemed code costs: no key of its own, only its hash on its grant. A login with a
/// refresh token adds one field to the grant hash it creates anyway; a login without one
/// keeps a hash with that one field for `grant_ttl`. The bytes are printed next to what the
/// former tombstone (`{prefix}:code:<hash>` holding `U<grant id>`) cost, and ARCHITECTURE.md
/// quotes them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redeemed_code_leaves_only_its_hash_on_its_grant() {
    use gatehouse::store::{CodeRecord, GrantRecord, Redeemed};
    use gatehouse::types::{AuthCode, ClientId, RedirectUri, Scopes, SecretHash, UserId, random_token};

    let redis = TestRedis::start();
    let (s, _, prefix) = store_with_prefix(Topology::Single(redis.url())).await;
    let mut con = redis::Client::open(redis.url()).unwrap().get_multiplexed_async_connection().await.unwrap();
    let now = SystemClock.now();
    let record = CodeRecord {
        client_id: ClientId::parse("app").unwrap(),
        redirect_uri: RedirectUri::parse("https://app.example/cb").unwrap(),
        scopes: Scopes::parse("openid offline_access").unwrap(),
        nonce: Some("n".into()),
        code_challenge: None,
        user_id: UserId::parse("auth0|ada").unwrap(),
        sid: random_token(16),
        auth_time: now,
        amr: vec!["pwd".into()],
        issued_at: now,
        custom: Default::default(),
        unsolicited: false,
    };

    // A login without a refresh token.
    let gid = random_token(16);
    let code = AuthCode::new(&gid);
    s.codes.put(&code, &record, 60).await.unwrap();
    assert_eq!(keys_of(&mut con, &prefix).await.len(), 1, "the live code");
    assert!(matches!(s.codes.redeem(&code, 3600).await.unwrap(), Redeemed::Fresh(_)));
    let grant_key = format!("{prefix}:grant:{{{gid}}}");
    assert_eq!(keys_of(&mut con, &prefix).await, vec![grant_key.clone()], "the code's key is gone");
    let fields: Vec<String> = redis::cmd("HKEYS").arg(&grant_key).query_async(&mut con).await.unwrap();
    assert_eq!(fields, vec!["code".to_owned()]);
    let ttl: i64 = redis::cmd("TTL").arg(&grant_key).query_async(&mut con).await.unwrap();
    assert!((1..=3600).contains(&ttl), "a grant with no record expires ({ttl})");
    let code_only = memory_usage(&mut con, &grant_key).await;

    // A login with a refresh token: the grant hash exists anyway; the code adds one field.
    let gid = random_token(16);
    let code = AuthCode::new(&gid);
    s.codes.put(&code, &record, 60).await.unwrap();
    assert!(matches!(s.codes.redeem(&code, 3600).await.unwrap(), Redeemed::Fresh(_)));
    let grant = GrantRecord {
        id: gid.clone(),
        client_id: record.client_id.clone(),
        user_id: record.user_id.clone(),
        scopes: record.scopes.clone(),
        sid: record.sid.clone(),
        auth_time: now,
        amr: record.amr.clone(),
        created_at: now,
        last_used_at: now,
        refresh: Some(SecretHash::of(&random_token(32))),
        rotated: vec![],
        expires_at: now + 30 * 86400,
        idle_ttl: 14 * 86400,
        custom: Default::default(),
    };
    s.grants.put(&grant).await.unwrap();
    let grant_key = format!("{prefix}:grant:{{{gid}}}");
    let with_code = memory_usage(&mut con, &grant_key).await;
    let ttl: i64 = redis::cmd("TTL").arg(&grant_key).query_async(&mut con).await.unwrap();
    assert!(ttl > 3600, "the code's hash lives as long as the family ({ttl})");
    assert_eq!(s.codes.redeem(&code, 3600).await.unwrap(), Redeemed::Reused { grant_id: gid.clone() });
    let _: i64 = redis::cmd("HDEL").arg(&grant_key).arg("code").query_async(&mut con).await.unwrap();
    let without_code = memory_usage(&mut con, &grant_key).await;

    // The former tombstone, written as the former redeem script wrote it.
    let tombstone_key = format!("{prefix}:code:{}", code.hash().to_hex());
    let _: () = redis::cmd("SET")
        .arg(&tombstone_key)
        .arg(format!("U{gid}"))
        .arg("EX")
        .arg(3600)
        .query_async(&mut con)
        .await
        .unwrap();
    let tombstone = memory_usage(&mut con, &tombstone_key).await;

    let on_grant = with_code - without_code;
    eprintln!(
        "bytes per redeemed code: former tombstone {tombstone} (1 h); now {on_grant} on a refresh \
         family's hash (its life), {code_only} for a login without refresh token (1 h)"
    );
    assert!(on_grant > 0 && on_grant < tombstone, "a field on the grant costs less than a key of its own");
    assert!(code_only <= tombstone, "a code-only grant costs no more than the tombstone did");
}
