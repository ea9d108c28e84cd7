//! The store conformance suite against real Redis: one server, a 3-master Cluster, and
//! Sentinel. Each test starts its own servers and kills them at the end.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse::clock::{Clock, SystemClock};
use gatehouse::store::conformance::{self, Harness};
use gatehouse::store::redis::{RedisConfig, RedisStore, Topology};
use gatehouse::store::{Store, StoreError};

use crate::redis_harness::*;

/// Real time: Redis expires keys by its own clock.
struct RealTime;

#[async_trait]
impl Harness for RealTime {
    async fn advance(&self, secs: u64) {
        tokio::time::sleep(Duration::from_secs(secs) + Duration::from_millis(100)).await;
    }
    fn now(&self) -> u64 {
        SystemClock.now()
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
    let backend = Arc::new(RedisStore::connect(&config(topology)).await.unwrap());
    (gatehouse::store::redis::store(backend.clone()), backend)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_server_passes_the_conformance_suite() {
    let redis = TestRedis::start();
    let (s, _) = store(Topology::Single(redis.url())).await;
    conformance::run_all(&s, &RealTime).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_passes_the_conformance_suite() {
    let cluster = TestCluster::start();
    let (s, _) = store(Topology::Cluster(cluster.urls())).await;
    conformance::run_all(&s, &RealTime).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_passes_the_conformance_suite() {
    let setup = TestSentinel::start();
    let (s, _) = store(Topology::Sentinel {
        sentinels: vec![setup.sentinel_url()],
        master_name: MASTER_NAME.into(),
        node_url: None,
    })
    .await;
    conformance::run_all(&s, &RealTime).await;
    // Writes went to the master Sentinel named, and replicate.
    assert!(command(setup.master.port, "DBSIZE").unwrap().starts_with(':'));
    assert_ne!(command(setup.replica.port, "DBSIZE").unwrap().trim(), ":0", "the replica follows the master");
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
    let mut untrusted = config(Topology::Single(url));
    untrusted.timeout = Duration::from_millis(500);
    assert!(RedisStore::connect(&untrusted).await.is_err(), "an unknown CA is refused");
    let mut wrong = config(Topology::Single(format!("rediss://gatehouse:nope@127.0.0.1:{tls_port}")));
    wrong.tls_ca = Some(std::fs::read(&tls.ca).unwrap());
    wrong.timeout = Duration::from_millis(500);
    assert!(RedisStore::connect(&wrong).await.is_err(), "a wrong password is refused");
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
    // Let the write reach the replica, then lose the master.
    tokio::time::sleep(Duration::from_millis(300)).await;
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
