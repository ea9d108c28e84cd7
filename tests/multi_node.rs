//! Stateless nodes on one Redis, as real processes with the configuration docker-compose.yml
//! runs (fixtures/compose/gatehouse.toml): a login crosses nodes, single-use holds under
//! concurrent load on both nodes, keys rotate everywhere, Redis outages are survived.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;
use crate::redis_harness::*;

pub const DEMO_USER: &str = "demo@gatehouse.test";
pub const DEMO_PASSWORD: &str = "gatehouse-demo";
pub const CLIENT: &str = "gatehouse-demo";

fn compose_config() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/compose/gatehouse.toml").to_string_lossy().into_owned()
}

/// Two nodes on `redis`, both with node A's URL as issuer (one load balancer's view).
struct Cluster2 {
    a: Node,
    b: Node,
    issuer: String,
    _dir: TempDir,
}

/// A node of the compose configuration on `redis_url` under `prefix`; its issuer is
/// `issuer`, or its own URL when `None`. Its stderr goes to `<dir>/<name>.stderr`.
pub fn start_node(dir: &TempDir, name: &str, issuer: Option<&str>, redis_url: &str, prefix: &str) -> Node {
    spawn_node(&dir.0, name, |port| {
        let issuer = issuer.map_or_else(|| format!("http://127.0.0.1:{port}"), str::to_owned);
        let envs = envs(&[
            ("GATEHOUSE_ISSUER", &issuer),
            ("GATEHOUSE_REDIS_URL", redis_url),
            ("GATEHOUSE_REDIS_PREFIX", prefix),
            ("GATEHOUSE_LOG", "warn"),
        ]);
        (serve_args(&["--config", &compose_config()], port), envs)
    })
}

fn two_nodes(redis: &TestRedis) -> Cluster2 {
    let dir = TempDir::new();
    let prefix = format!("gh-{}", gatehouse::types::random_token(6));
    // Node A's port makes the issuer of both.
    let a = start_node(&dir, "a", None, &redis.url(), &prefix);
    let issuer = a.base.clone();
    let b = start_node(&dir, "b", Some(&issuer), &redis.url(), &prefix);
    Cluster2 { a, b, issuer, _dir: dir }
}

pub fn redirect(issuer: &str) -> String {
    format!("{issuer}/demo")
}

pub fn authorize(base: &str, issuer: &str, challenge: &str, extra: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse(&format!("{base}/authorize")).unwrap();
    url.query_pairs_mut().extend_pairs([
        ("response_type", "code"),
        ("client_id", CLIENT),
        ("redirect_uri", &redirect(issuer)),
        ("scope", "openid email offline_access"),
        ("state", "s1"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ]);
    url.query_pairs_mut().extend_pairs(extra.iter().copied());
    url.to_string()
}

/// `/authorize` on `start`, the hosted form on `form`: returns the code.
pub async fn login_across(b: &reqwest::Client, start: &Node, form: &Node, issuer: &str, challenge: &str) -> String {
    let r = b.get(authorize(&start.base, issuer, challenge, &[])).send().await.unwrap();
    assert_eq!(r.status(), 303, "authorize on {}", start.base);
    let hosted = location(&r);
    let page = b.get(form.url(&hosted)).send().await.unwrap();
    assert_eq!(page.status(), 200, "the hosted page of a transaction started elsewhere");
    let page = page.text().await.unwrap();
    let r = b
        .post(form.url(&format!("{hosted}/credentials")))
        .form(&[("csrf", hidden(&page, "csrf").as_str()), ("username", DEMO_USER), ("password", DEMO_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    param(&location(&r), "code").expect("code")
}

pub async fn redeem_at(node: &Node, issuer: &str, code: &str, verifier: &str) -> reqwest::Response {
    crate::harness::http()
        .post(node.url("/token"))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &redirect(issuer)),
            ("client_id", CLIENT),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .unwrap()
}

pub async fn refresh_at(node: &Node, token: &str) -> reqwest::Response {
    crate::harness::http()
        .post(node.url("/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", token), ("client_id", CLIENT)])
        .send()
        .await
        .unwrap()
}

async fn jwks(node: &Node) -> serde_json::Value {
    crate::harness::get(node.url("/.well-known/jwks.json")).await.unwrap().json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_started_on_one_node_finishes_on_the_other() {
    let redis = TestRedis::start();
    let n = two_nodes(&redis);
    assert_eq!(jwks(&n.a).await, jwks(&n.b).await, "every node serves the same JWKS");

    let b = browser();
    let (verifier, challenge) = pkce();
    let code = login_across(&b, &n.a, &n.b, &n.issuer, &challenge).await;
    let t: serde_json::Value = redeem_at(&n.a, &n.issuer, &code, &verifier).await.json().await.unwrap();
    let access = t["access_token"].as_str().expect("tokens from node A");
    let info = crate::harness::http().get(n.b.url("/userinfo")).bearer_auth(access).send().await.unwrap();
    assert_eq!(info.status(), 200, "node B accepts node A's token");
    assert_eq!(info.json::<serde_json::Value>().await.unwrap()["sub"], "auth0|demo");

    // The SSO session opened through node B answers on node A.
    let r = b.get(authorize(&n.a.base, &n.issuer, &challenge, &[("prompt", "none")])).send().await.unwrap();
    assert!(param(&location(&r), "code").is_some(), "silent login on the other node");

    // A rotated refresh token is rotated for both nodes.
    let r0 = t["refresh_token"].as_str().unwrap();
    assert_eq!(refresh_at(&n.b, r0).await.status(), 200);
    assert_eq!(refresh_at(&n.a, r0).await.status(), 400, "node A sees the rotation node B made");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_concurrent_redemptions_over_two_nodes_succeed_once() {
    let redis = TestRedis::start();
    let n = two_nodes(&redis);
    let b = browser();
    let (verifier, challenge) = pkce();
    let code = login_across(&b, &n.a, &n.a, &n.issuer, &challenge).await;
    let nodes = [&n.a, &n.b];
    let tasks: Vec<_> = (0..50).map(|i| redeem_at(nodes[i % 2], &n.issuer, &code, &verifier)).collect();
    let results = futures_util::future::join_all(tasks).await;
    let mut won = Vec::new();
    for r in results {
        if r.status() == 200 {
            won.push(r.json::<serde_json::Value>().await.unwrap());
        } else {
            assert_eq!(r.status(), 400, "the rest are refused");
            assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant");
        }
    }
    assert_eq!(won.len(), 1, "exactly one of 50 redemptions wins");
    // The losers were reuses of a redeemed code: what the winner got is revoked, on both nodes.
    let access = won[0]["access_token"].as_str().unwrap();
    for node in nodes {
        let r = crate::harness::http().get(node.url("/userinfo")).bearer_auth(access).send().await.unwrap();
        assert_eq!(r.status(), 401, "the winner's access token is revoked");
    }
    let r = refresh_at(&n.b, won[0]["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 400, "the winner's refresh token is revoked");
    assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant");

    // And one refresh token presented 50 times rotates once; the rest count as reuse.
    let (verifier, challenge) = pkce();
    let code = login_across(&browser(), &n.a, &n.b, &n.issuer, &challenge).await;
    let t: serde_json::Value = redeem_at(&n.b, &n.issuer, &code, &verifier).await.json().await.unwrap();
    let token = t["refresh_token"].as_str().unwrap().to_owned();
    let tasks: Vec<_> = (0..50).map(|i| refresh_at(nodes[i % 2], &token)).collect();
    let results = futures_util::future::join_all(tasks).await;
    let mut winners = Vec::new();
    for r in results {
        if r.status() == 200 {
            winners.push(r.json::<serde_json::Value>().await.unwrap());
        } else {
            assert_eq!(r.json::<serde_json::Value>().await.unwrap()["error"], "invalid_grant");
        }
    }
    assert_eq!(winners.len(), 1, "one refresh token rotates exactly once");
    let newest = winners[0]["refresh_token"].as_str().unwrap();
    assert_eq!(refresh_at(&n.a, newest).await.status(), 400, "the concurrent reuse revoked the family");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_rotated_anywhere_reach_every_node_without_a_restart() {
    let redis = TestRedis::start();
    let n = two_nodes(&redis);
    let before = jwks(&n.a).await;
    let dir = TempDir::new();
    let prefix_env = {
        // The nodes' prefix: read it back from the key ring's Redis key.
        let keys = command(redis.port, "KEYS *:keys:ring").unwrap();
        keys.lines().find(|l| l.contains(":keys:ring")).unwrap().split(":keys:ring").next().unwrap().to_owned()
    };
    let out = output_within(
        Command::new(BIN)
            .args(["keys", "rotate", "--config", &compose_config()])
            .current_dir(&dir.0)
            .env("GATEHOUSE_ISSUER", &n.issuer)
            .env("GATEHOUSE_REDIS_URL", redis.url())
            .env("GATEHOUSE_REDIS_PREFIX", &prefix_env),
        PEER_DEADLINE,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // README: "key rotation reaches every node within 5 s" (each node polls the ring every
    // 5 s). The extra half second is this loop's own polling and two JWKS requests.
    let deadline = Instant::now() + Duration::from_millis(5_500);
    loop {
        let (ja, jb) = (jwks(&n.a).await, jwks(&n.b).await);
        if ja["keys"].as_array().unwrap().len() == 2 && ja == jb {
            assert_eq!(ja["keys"][1]["kid"], before["keys"][0]["kid"], "the previous key still verifies");
            break;
        }
        assert!(Instant::now() < deadline, "nodes did not pick up the rotated key: {ja} / {jb}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    // New tokens are signed with the new key, on both nodes.
    let b = browser();
    let (verifier, challenge) = pkce();
    let code = login_across(&b, &n.b, &n.b, &n.issuer, &challenge).await;
    let t: serde_json::Value = redeem_at(&n.b, &n.issuer, &code, &verifier).await.json().await.unwrap();
    assert_eq!(header(t["id_token"].as_str().unwrap())["kid"], jwks(&n.a).await["keys"][0]["kid"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_outage_mid_login_gives_clean_503s_and_recovers() {
    let mut redis = TestRedis::start();
    let mut n = two_nodes(&redis);
    let b = browser();
    let (_, challenge) = pkce();
    let r = b.get(authorize(&n.a.base, &n.issuer, &challenge, &[])).send().await.unwrap();
    let hosted = location(&r);

    redis.kill();
    let started = Instant::now();
    let page = b.get(n.b.url(&hosted)).send().await.unwrap();
    assert_eq!(page.status(), 503, "hosted page while Redis is down");
    assert!(page.text().await.unwrap().contains("correlation-id"));
    let token = crate::harness::http()
        .post(n.a.url("/token"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", "g.x"), ("client_id", CLIENT)])
        .send()
        .await
        .unwrap();
    assert_eq!(token.status(), 503);
    assert_eq!(token.json::<serde_json::Value>().await.unwrap()["error"], "temporarily_unavailable");
    assert_eq!(crate::harness::get(n.a.url("/readyz")).await.unwrap().status(), 503);
    assert_eq!(crate::harness::get(n.a.url("/healthz")).await.unwrap().status(), 200, "the process itself is fine");
    let r = b.get(authorize(&n.b.base, &n.issuer, &challenge, &[])).send().await.unwrap();
    assert_eq!(r.status(), 303);
    let to = location(&r);
    assert_eq!(param(&to, "error").as_deref(), Some("temporarily_unavailable"), "{to}");
    assert!(started.elapsed() < Duration::from_secs(15), "every answer came within the deadline");

    redis.restart();
    wait_ready(&[&n.a, &n.b]).await;
    // The nodes recover by themselves. This Redis kept nothing (no AOF): the nodes keep the
    // key ring they hold and write it back, so a node started now agrees with them.
    let (verifier, challenge) = pkce();
    let code = login_across(&b, &n.b, &n.a, &n.issuer, &challenge).await;
    let r = redeem_at(&n.b, &n.issuer, &code, &verifier).await;
    assert_eq!(r.status(), 200, "the next login after Redis returns succeeds");
    assert!(n.a.child.try_wait().unwrap().is_none() && n.b.child.try_wait().unwrap().is_none(), "no node died");
    let deadline = Instant::now() + Duration::from_secs(15);
    while command(redis.port, "KEYS *:keys:ring").is_none_or(|k| !k.contains(":keys:ring")) {
        assert!(Instant::now() < deadline, "the key ring was not written back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let fresh_dir = TempDir::new();
    let fresh = start_node(&fresh_dir, "fresh", Some(&n.issuer), &redis.url(), &prefix_of(&redis));
    assert_eq!(jwks(&fresh).await, jwks(&n.a).await, "a node started after the outage serves the same keys");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_refresh_tokens_survive_a_restart_with_aof() {
    let mut redis = TestRedis::start_durable();
    let n = two_nodes(&redis);
    let b = browser();
    let (verifier, challenge) = pkce();
    let code = login_across(&b, &n.a, &n.a, &n.issuer, &challenge).await;
    let t: serde_json::Value = redeem_at(&n.a, &n.issuer, &code, &verifier).await.json().await.unwrap();
    let kid = jwks(&n.a).await["keys"][0]["kid"].clone();

    redis.restart();
    wait_ready(&[&n.a, &n.b]).await;
    let r = refresh_at(&n.b, t["refresh_token"].as_str().unwrap()).await;
    assert_eq!(r.status(), 200, "the refresh family survived");
    let access = r.json::<serde_json::Value>().await.unwrap()["access_token"].as_str().unwrap().to_owned();
    let info = crate::harness::http().get(n.b.url("/userinfo")).bearer_auth(&access).send().await.unwrap();
    assert_eq!(info.status(), 200, "the user survived");
    let fresh_dir = TempDir::new();
    let fresh = start_node(&fresh_dir, "fresh", Some(&n.issuer), &redis.url(), &prefix_of(&redis));
    assert_eq!(jwks(&fresh).await["keys"][0]["kid"], kid, "the key ring survived");
}

/// Every node answers /readyz with 200 again, by itself, within a few seconds.
async fn wait_ready(nodes: &[&Node]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for node in nodes {
        while crate::harness::get(node.url("/readyz")).await.unwrap().status() != 200 {
            assert!(Instant::now() < deadline, "{} did not become ready again", node.base);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn prefix_of(redis: &TestRedis) -> String {
    let keys = command(redis.port, "KEYS *:keys:ring").unwrap();
    keys.lines().find(|l| l.contains(":keys:ring")).unwrap().split(":keys:ring").next().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evicting_redis_is_reported_at_start() {
    let redis = TestRedis::start_with(&["--appendonly", "no", "--maxmemory-policy", "allkeys-lru"]);
    let dir = TempDir::new();
    let mut node = start_node(&dir, "node", None, &redis.url(), "gh-evict");
    node.stop();
    let logs = std::fs::read_to_string(&node.log).unwrap();
    assert!(logs.contains("maxmemory-policy") && logs.contains("allkeys-lru"), "{logs}");
}

#[test]
fn docker_compose_file_is_valid_and_matches_the_tested_topology() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = output_within(
        Command::new("docker-compose").args(["-f", "docker-compose.yml", "config"]).current_dir(root),
        PEER_DEADLINE,
    );
    assert!(out.status.success(), "docker-compose config: {}", String::from_utf8_lossy(&out.stderr));
    let dir = TempDir::new();
    let resolved = dir.0.join("compose.yml");
    std::fs::write(&resolved, &out.stdout).unwrap();
    let parsed = output_within(
        Command::new("python3")
            .args(["-c", "import sys, json, yaml; print(json.dumps(yaml.safe_load(open(sys.argv[1]))))"])
            .arg(&resolved),
        PEER_DEADLINE,
    );
    assert!(parsed.status.success(), "python3 yaml: {}", String::from_utf8_lossy(&parsed.stderr));
    let compose: serde_json::Value = serde_json::from_slice(&parsed.stdout).unwrap();
    let services = compose["services"].as_object().unwrap();
    let redis_cmd = services["redis"]["command"].to_string();
    assert!(redis_cmd.contains("\"--appendonly\",\"yes\""), "Redis runs with AOF: {redis_cmd}");
    assert!(redis_cmd.contains("\"--maxmemory-policy\",\"noeviction\""), "{redis_cmd}");
    let nodes: Vec<_> = services.iter().filter(|(name, _)| name.starts_with("gatehouse")).collect();
    assert_eq!(nodes.len(), 2, "two Gatehouse nodes");
    for (name, svc) in nodes {
        let volumes = svc["volumes"].to_string();
        assert!(volumes.contains("fixtures/compose/gatehouse.toml"), "{name} runs the tested config: {volumes}");
        assert!(svc["command"].to_string().contains("/etc/gatehouse/gatehouse.toml"), "{name}");
        assert_eq!(svc["environment"]["GATEHOUSE_REDIS_URL"], "redis://redis:6379", "{name}");
    }
}
