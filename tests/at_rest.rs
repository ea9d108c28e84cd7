//! What Gatehouse leaves where an operator, a log pipeline or a stolen backup can read it.
//! Two `gatehouse` processes on a password-protected Redis, logging at trace level, serve a
//! login (with a wrong password first), a code redemption and a refresh. Afterwards every
//! Redis key is dumped: codes, refresh tokens and session cookies appear only as their
//! SHA-256, and no secret appears in any encoding, in Redis or in the logs.

use std::sync::Arc;

use reqwest::cookie::CookieStore as _;

use crate::harness::*;
use crate::multi_node::{CLIENT, DEMO_USER, login_across, redeem_at, refresh_at};
use crate::redis_harness::TestRedis;

const REDIS_PASSWORD: &str = "redis-requirepass-7c1e9d4b2a";
const WRONG_PASSWORD: &str = "not-the-demo-password-9f3a";

#[test]
fn encodings_find_a_secret_inside_longer_encoded_values() {
    use base64::Engine as _;
    let secret = "s3cret-value-0123456789";
    for prefix in ["", "a", "ab", "client:", "web:"] {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{prefix}{secret}"));
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("{prefix}{secret}!"));
        for encoded in [basic, url_safe] {
            assert!(
                encodings(secret).iter().any(|e| encoded.contains(e.as_str())),
                "{prefix:?}: {encoded} not recognised"
            );
        }
    }
    let form = format!("password={}", url::form_urlencoded::byte_serialize(b"p@ss word&=+").collect::<String>());
    assert!(encodings("p@ss word&=+").iter().any(|e| form.contains(e.as_str())), "{form}");
    // And no false alarm on unrelated text.
    assert!(!encodings(secret).iter().any(|e| "nothing to see here, 0123".contains(e.as_str())));
}

/// Every key of the store and its value, one line each: strings, hashes, sets, sorted sets.
/// Values are read as bytes: text is shown as is, anything else (a redeemed code's hash is
/// stored raw on its grant) in hex, the form the hashes are compared in below.
async fn dump(url: &str) -> Vec<String> {
    let mut con = redis::Client::open(url).unwrap().get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query_async(&mut con).await.unwrap();
    let mut out = Vec::new();
    for key in keys {
        let kind: String = redis::cmd("TYPE").arg(&key).query_async(&mut con).await.unwrap();
        let value: Vec<Vec<u8>> = match kind.as_str() {
            "string" => vec![redis::cmd("GET").arg(&key).query_async(&mut con).await.unwrap()],
            "hash" => redis::cmd("HGETALL").arg(&key).query_async(&mut con).await.unwrap(),
            "set" => redis::cmd("SMEMBERS").arg(&key).query_async(&mut con).await.unwrap(),
            "zset" => redis::cmd("ZRANGE").arg(&key).arg(0).arg(-1).query_async(&mut con).await.unwrap(),
            "list" => redis::cmd("LRANGE").arg(&key).arg(0).arg(-1).query_async(&mut con).await.unwrap(),
            other => panic!("{key}: a {other} the dump cannot read"),
        };
        let value: Vec<String> = value
            .into_iter()
            .map(|v| String::from_utf8(v).unwrap_or_else(|e| e.as_bytes().iter().map(|b| format!("{b:02x}")).collect()))
            .collect();
        out.push(format!("{key} = {}", value.join(" | ")));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_and_the_logs_hold_no_secret_after_logins() {
    let redis = TestRedis::start_with(&["--appendonly", "no", "--requirepass", REDIS_PASSWORD]);
    let redis_url = format!("redis://:{REDIS_PASSWORD}@127.0.0.1:{}", redis.port);
    let dir = TempDir::new();
    let prefix = format!("gh-{}", gatehouse::types::random_token(6));
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/compose/gatehouse.toml");
    // Node A's port makes the issuer both nodes use.
    let node = |name: &str, issuer: Option<&str>| {
        spawn_node(&dir.0, name, |port| {
            let issuer = issuer.map_or_else(|| format!("http://127.0.0.1:{port}"), str::to_owned);
            let envs = envs(&[
                ("GATEHOUSE_ISSUER", &issuer),
                ("GATEHOUSE_REDIS_URL", &redis_url),
                ("GATEHOUSE_REDIS_PREFIX", &prefix),
                ("GATEHOUSE_LOG", "trace"),
            ]);
            (serve_args(&["--config", config.to_str().unwrap()], port), envs)
        })
    };
    let mut a = node("a", None);
    let issuer = a.base.clone();
    let mut b = node("b", Some(&issuer));

    // A wrong password, then the login (started on A, finished on B), with a jar we can read.
    let jar = Arc::new(reqwest::cookie::Jar::default());
    let browser =
        http_builder().cookie_provider(jar.clone()).redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let (_, challenge) = pkce();
    let hosted =
        location(&browser.get(crate::multi_node::authorize(&a.base, &issuer, &challenge, &[])).send().await.unwrap());
    let page = browser.get(b.url(&hosted)).send().await.unwrap().text().await.unwrap();
    let r = browser
        .post(b.url(&format!("{hosted}/credentials")))
        .form(&[("csrf", hidden(&page, "csrf").as_str()), ("username", DEMO_USER), ("password", WRONG_PASSWORD)])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the wrong password is refused");
    let (verifier, challenge) = pkce();
    let code = login_across(&browser, &a, &b, &issuer, &challenge).await;
    let cookies = jar.cookies(&url::Url::parse(&issuer).unwrap()).expect("cookies");
    let cookies = cookies.to_str().unwrap().to_owned();
    let cookie = |name: &str| {
        cookies
            .split("; ")
            .find_map(|c| c.strip_prefix(&format!("{name}=")))
            .unwrap_or_else(|| panic!("no {name} cookie in {cookies}"))
            .to_owned()
    };
    let (session, binding) = (cookie("gh_session"), cookie("gh_browser"));
    let t: serde_json::Value = redeem_at(&a, &issuer, &code, &verifier).await.json().await.unwrap();
    let first_refresh = t["refresh_token"].as_str().unwrap().to_owned();
    let r: serde_json::Value = refresh_at(&b, &first_refresh).await.json().await.unwrap();
    let refresh = r["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(refresh, first_refresh, "rotated");

    let secrets: Vec<(&str, String)> = vec![
        ("authorization code", code.clone()),
        ("PKCE verifier", verifier),
        ("access token", t["access_token"].as_str().unwrap().to_owned()),
        ("ID token", t["id_token"].as_str().unwrap().to_owned()),
        ("rotated refresh token", first_refresh.clone()),
        ("rotated refresh token's secret", first_refresh.split_once('.').unwrap().1.to_owned()),
        ("refresh token", refresh.clone()),
        ("refresh token's secret", refresh.split_once('.').unwrap().1.to_owned()),
        ("refreshed access token", r["access_token"].as_str().unwrap().to_owned()),
        ("session cookie", session.clone()),
        ("binding cookie", binding.clone()),
        // The demo password spells the demo client's id, which is logged and stored: the
        // wrong password, posted through the same form, stands for it.
        ("password", WRONG_PASSWORD.to_owned()),
        ("Redis password", REDIS_PASSWORD.to_owned()),
    ];
    let secrets: Vec<(&str, &str)> = secrets.iter().map(|(w, s)| (*w, s.as_str())).collect();

    // Redis: the bearer secrets only by hash (the hashes are there: the dump read the records).
    let dump = dump(&redis_url).await.join("\n");
    let sha = |s: &str| gatehouse::types::SecretHash::of(s).to_hex();
    assert!(dump.contains(&sha(&code)), "the redeemed code's SHA-256 is on its grant:\n{dump}");
    assert!(dump.contains(&sha(&refresh)), "the refresh token is stored by its SHA-256:\n{dump}");
    assert!(dump.contains(&sha(&first_refresh)), "the rotated one too, for reuse detection:\n{dump}");
    assert!(dump.contains(&sha(&session)), "the session cookie is stored by its SHA-256:\n{dump}");
    assert!(dump.contains(&format!("{prefix}:")) && dump.contains(CLIENT), "the dump read Gatehouse's records");
    assert_no_secret_in(&dump, &secrets);

    // The logs, at trace level, of both processes.
    a.stop();
    b.stop();
    let logs = [&a.log, &b.log].map(|f| std::fs::read_to_string(f).unwrap()).join("\n");
    assert!(logs.contains("TRACE") || logs.contains("\"level\":\"trace\""), "trace level was on:\n{logs}");
    assert!(logs.contains("/token") && logs.contains("credentials"), "the requests were logged");
    assert_no_secret_in(&logs, &secrets);
}
