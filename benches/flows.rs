//! Browser flows over real HTTP against a running Gatehouse: silent re-authentications and
//! password logins per second. A load generator, not a test: it prints numbers.
//!
//! ```sh
//! # a node must be running (benches/http.sh starts one pinned to core 0 and runs this on core 1)
//! taskset -c 1 cargo bench --bench flows -- --base http://127.0.0.1:18080 \
//!     --client web --secret web-secret --redirect http://app.bench/cb \
//!     --username ada@bench.test --password 'correct horse battery staple' \
//!     --mode reauth,login --seconds 10
//! ```
//!
//! Every option can also come from the environment: `--base` is `GH_BENCH_BASE`, `--client`
//! is `GH_BENCH_CLIENT`, and so on (upper case, `-` as `_`).
//!
//! Modes:
//! - `reauth`: each task logs in once (hosted credentials form) to get an SSO session, then
//!   loops `GET /authorize` (answered at once from the session: 303 with `code`) ->
//!   `POST /token` (`authorization_code` + PKCE, `client_secret_basic`). One op = one code
//!   redeemed for tokens.
//! - `login`: each task loops a full password login with `prompt=login`: `GET /authorize`
//!   -> `GET /login/{txn}` (hosted page, CSRF token) -> `POST /login/{txn}/credentials`
//!   (argon2id) -> 303 with `code`. One op = one code issued after a password check. Keep
//!   `--login-concurrency` at or below the node's `login.max_failed_attempts` (10 by default):
//!   attempts in flight count against it, and the excess is refused with 429.
//!
//! Each task is one browser (cookie jar, redirects not followed, keep-alive) plus, for
//! `reauth`, one back-channel client for `/token`. Loops stop at the deadline or at
//! `--max-ops`, whichever comes first; every request has a timeout. Loopback only.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::LOCATION;
use sha2::Digest as _;
use url::Url;

#[derive(Clone, Debug)]
struct Opts {
    base: String,
    client: String,
    secret: String,
    redirect: String,
    username: String,
    password: String,
    scope: String,
    modes: Vec<String>,
    seconds: f64,
    warmup: f64,
    reauth_concurrency: usize,
    login_concurrency: usize,
    max_ops: u64,
}

fn usage() -> ! {
    eprintln!(
        "usage: flows --base URL --client ID --secret S --redirect URI --username U --password P \
         [--scope 'openid profile email'] [--mode reauth,login] [--seconds 10] [--warmup 1] \
         [--reauth-concurrency 16] [--login-concurrency 4] [--max-ops 2000000]"
    );
    std::process::exit(2)
}

impl Opts {
    fn parse() -> Self {
        let mut args: Vec<(String, String)> = Vec::new();
        let mut it = std::env::args().skip(1);
        while let Some(a) = it.next() {
            match a.as_str() {
                // What `cargo bench` passes to every bench binary.
                "--bench" => {}
                "-h" | "--help" => usage(),
                flag if flag.starts_with("--") => {
                    let v = it.next().unwrap_or_else(|| usage());
                    args.push((flag[2..].to_owned(), v));
                }
                _ => {}
            }
        }
        let get = |name: &str, default: Option<&str>| -> String {
            if let Some((_, v)) = args.iter().find(|(k, _)| k == name) {
                return v.clone();
            }
            let env = format!("GH_BENCH_{}", name.to_uppercase().replace('-', "_"));
            if let Ok(v) = std::env::var(&env) {
                return v;
            }
            default.map(str::to_owned).unwrap_or_else(|| {
                eprintln!("missing --{name} (or {env})");
                usage()
            })
        };
        let num = |name: &str, default: &str| -> f64 {
            get(name, Some(default)).parse().unwrap_or_else(|_| {
                eprintln!("--{name} must be a number");
                usage()
            })
        };
        Opts {
            base: get("base", None).trim_end_matches('/').to_owned(),
            client: get("client", None),
            secret: get("secret", None),
            redirect: get("redirect", None),
            username: get("username", None),
            password: get("password", None),
            scope: get("scope", Some("openid profile email")),
            modes: get("mode", Some("reauth,login")).split(',').map(|s| s.trim().to_owned()).collect(),
            seconds: num("seconds", "10").clamp(0.5, 300.0),
            warmup: num("warmup", "1").clamp(0.0, 30.0),
            reauth_concurrency: (num("reauth-concurrency", "16") as usize).clamp(1, 256),
            login_concurrency: (num("login-concurrency", "4") as usize).clamp(1, 256),
            max_ops: (num("max-ops", "2000000") as u64).max(1),
        }
    }
}

type Fail = String;

fn browser() -> reqwest::Client {
    // reqwest carries no TLS provider of its own here: install aws-lc-rs, as Gatehouse does.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .pool_max_idle_per_host(4)
        .build()
        .expect("http client")
}

fn backchannel() -> reqwest::Client {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

fn pkce() -> (String, String) {
    let verifier = gatehouse::types::random_token(32);
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn authorize_url(o: &Opts, challenge: &str, prompt_login: bool) -> String {
    let mut url = Url::parse(&format!("{}/authorize", o.base)).expect("base URL");
    let state = gatehouse::types::random_token(8);
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &o.client)
        .append_pair("redirect_uri", &o.redirect)
        .append_pair("scope", &o.scope)
        .append_pair("state", &state)
        .append_pair("nonce", "bench-nonce")
        .append_pair("code_challenge", challenge)
        .append_pair("code_challenge_method", "S256");
    if prompt_login {
        url.query_pairs_mut().append_pair("prompt", "login");
    }
    url.to_string()
}

fn location(r: &reqwest::Response) -> Result<String, Fail> {
    r.headers()
        .get(LOCATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .ok_or_else(|| format!("no Location on a {}", r.status()))
}

fn hidden(html: &str, name: &str) -> Result<String, Fail> {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html.find(&marker).ok_or_else(|| format!("no hidden input {name} on the hosted page"))? + marker.len();
    Ok(html[start..].split('"').next().unwrap_or_default().to_owned())
}

/// The `code` of an authorization response sent to our redirect URI.
fn code_of(o: &Opts, location: &str) -> Result<String, Fail> {
    if !location.starts_with(&o.redirect) {
        return Err(format!("redirected to {} instead of the client", location.split('?').next().unwrap_or("")));
    }
    let url = Url::parse(location).map_err(|e| e.to_string())?;
    let mut code = None;
    for (k, v) in url.query_pairs() {
        if k == "error" {
            return Err(format!("authorization error {v}"));
        }
        if k == "code" {
            code = Some(v.into_owned());
        }
    }
    code.ok_or_else(|| "no code in the authorization response".into())
}

/// authorize -> hosted page -> credentials -> code.
async fn password_login(o: &Opts, b: &reqwest::Client, prompt_login: bool) -> Result<(String, String), Fail> {
    let (verifier, challenge) = pkce();
    let r = b.get(authorize_url(o, &challenge, prompt_login)).send().await.map_err(|e| e.to_string())?;
    if r.status() != 303 {
        return Err(format!("/authorize answered {}", r.status()));
    }
    let hosted = location(&r)?;
    if !hosted.starts_with("/login/") {
        return Err(format!("/authorize did not go to the hosted page ({})", hosted.split('?').next().unwrap_or("")));
    }
    let r = b.get(format!("{}{hosted}", o.base)).send().await.map_err(|e| e.to_string())?;
    if r.status() != 200 {
        return Err(format!("hosted page answered {}", r.status()));
    }
    let csrf = hidden(&r.text().await.map_err(|e| e.to_string())?, "csrf")?;
    let r = b
        .post(format!("{}{hosted}/credentials", o.base))
        .form(&[("csrf", csrf.as_str()), ("username", &o.username), ("password", &o.password)])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    if r.status() != 303 {
        return Err(format!("credentials answered {}", r.status()));
    }
    Ok((code_of(o, &location(&r)?)?, verifier))
}

async fn redeem(o: &Opts, rp: &reqwest::Client, code: &str, verifier: &str) -> Result<(), Fail> {
    let r = rp
        .post(format!("{}/token", o.base))
        .basic_auth(&o.client, Some(&o.secret))
        .form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", o.redirect.as_str()),
            ("code_verifier", verifier),
        ])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| e.to_string())?;
    if status != 200 {
        return Err(format!("/token answered {status}: {}", String::from_utf8_lossy(&body[..body.len().min(200)])));
    }
    if !body.windows(10).any(|w| w == b"\"id_token\"") {
        return Err("/token answered without an id_token".into());
    }
    Ok(())
}

/// One silent re-authentication: authorize from the SSO session -> code -> tokens.
async fn silent_reauth(o: &Opts, b: &reqwest::Client, rp: &reqwest::Client) -> Result<(), Fail> {
    let (verifier, challenge) = pkce();
    let r = b.get(authorize_url(o, &challenge, false)).send().await.map_err(|e| e.to_string())?;
    if r.status() != 303 {
        return Err(format!("/authorize answered {}", r.status()));
    }
    let code = code_of(o, &location(&r)?)?;
    redeem(o, rp, &code, &verifier).await
}

#[derive(Default)]
struct Tally {
    /// Latencies (µs) of ops that started after the warm-up.
    latencies: Vec<u32>,
    errors: u64,
    first_error: Option<String>,
    last_done: Option<Instant>,
}

struct Summary {
    mode: String,
    concurrency: usize,
    ops: u64,
    secs: f64,
    errors: u64,
    first_error: Option<String>,
    p50_ms: f64,
    p99_ms: f64,
    max_ms: f64,
}

impl Summary {
    fn rate(&self) -> f64 {
        if self.secs > 0.0 { self.ops as f64 / self.secs } else { 0.0 }
    }
}

fn percentile(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

async fn run(o: Arc<Opts>, mode: &str) -> Summary {
    let concurrency = if mode == "reauth" { o.reauth_concurrency } else { o.login_concurrency };
    let started = Instant::now();
    let measure_from = started + Duration::from_secs_f64(o.warmup);
    let deadline = measure_from + Duration::from_secs_f64(o.seconds);
    let issued = Arc::new(AtomicU64::new(0));
    // The browsers' first logins go one at a time: the node counts a password attempt before
    // checking it (per username and address), so more than `max_failed_attempts` (10 by
    // default) parallel logins of the same user from one address are refused with 429.
    let first_logins = Arc::new(tokio::sync::Semaphore::new(1));
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let o = o.clone();
        let issued = issued.clone();
        let first_logins = first_logins.clone();
        let mode = mode.to_owned();
        tasks.push(tokio::spawn(async move {
            let b = browser();
            let rp = backchannel();
            let mut t = Tally::default();
            let fail = |t: &mut Tally, e: String| {
                t.errors += 1;
                if t.first_error.is_none() {
                    t.first_error = Some(e);
                }
            };
            if mode == "reauth" {
                // The SSO session this browser re-authenticates with (and one warm token call).
                let turn = first_logins.acquire().await;
                let first = password_login(&o, &b, false).await;
                drop(turn);
                match first {
                    Ok((code, verifier)) => {
                        if let Err(e) = redeem(&o, &rp, &code, &verifier).await {
                            fail(&mut t, e);
                            return t;
                        }
                    }
                    Err(e) => {
                        fail(&mut t, format!("initial login: {e}"));
                        return t;
                    }
                }
            }
            loop {
                let begin = Instant::now();
                if begin >= deadline || t.errors >= 50 || issued.fetch_add(1, Ordering::Relaxed) >= o.max_ops {
                    break;
                }
                let result = if mode == "reauth" {
                    silent_reauth(&o, &b, &rp).await
                } else {
                    password_login(&o, &b, true).await.map(|_| ())
                };
                let end = Instant::now();
                match result {
                    Ok(()) if begin >= measure_from => {
                        t.latencies.push((end - begin).as_micros().min(u32::MAX as u128) as u32);
                        t.last_done = Some(end);
                    }
                    Ok(()) => {}
                    Err(e) => fail(&mut t, e),
                }
            }
            t
        }));
    }
    let mut all = Tally::default();
    let mut last = measure_from;
    for task in tasks {
        let t =
            task.await.unwrap_or_else(|e| Tally { errors: 1, first_error: Some(e.to_string()), ..Default::default() });
        all.latencies.extend(t.latencies);
        all.errors += t.errors;
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
        if let Some(d) = t.last_done {
            last = last.max(d);
        }
    }
    all.latencies.sort_unstable();
    let secs = last.saturating_duration_since(measure_from).as_secs_f64();
    Summary {
        mode: mode.to_owned(),
        concurrency,
        ops: all.latencies.len() as u64,
        secs,
        errors: all.errors,
        first_error: all.first_error,
        p50_ms: percentile(&all.latencies, 0.50),
        p99_ms: percentile(&all.latencies, 0.99),
        max_ms: all.latencies.last().map_or(0.0, |v| *v as f64 / 1000.0),
    }
}

fn main() -> std::process::ExitCode {
    let o = Arc::new(Opts::parse());
    if !o.base.starts_with("http://127.0.0.1:") && !o.base.starts_with("http://localhost:") {
        eprintln!("refusing to load anything but a loopback node: {}", o.base);
        return std::process::ExitCode::from(2);
    }
    // One thread: the generator gets one core (run it under `taskset -c 1`).
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("tokio runtime");
    let mut failed = false;
    let mut summaries = Vec::new();
    for mode in o.modes.clone() {
        if mode != "reauth" && mode != "login" {
            eprintln!("unknown mode {mode} (reauth, login)");
            return std::process::ExitCode::from(2);
        }
        eprintln!("flows: {mode} for {} s (+{} s warm-up) against {}", o.seconds, o.warmup, o.base);
        let s = rt.block_on(run(o.clone(), &mode));
        // Machine-readable line for benches/http.sh.
        println!(
            "RESULT mode={} concurrency={} ops={} secs={:.3} rate={:.1} p50_ms={:.3} p99_ms={:.3} max_ms={:.3} errors={}",
            s.mode,
            s.concurrency,
            s.ops,
            s.secs,
            s.rate(),
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            s.errors
        );
        if let Some(e) = &s.first_error {
            eprintln!("  first error ({mode}): {e}");
        }
        failed |= s.ops == 0;
        summaries.push(s);
    }
    println!();
    println!("| flow | concurrency | completed | seconds | per second | p50 ms | p99 ms | max ms | errors |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for s in &summaries {
        let name = if s.mode == "reauth" {
            "silent re-authentication (authorize -> code -> token)"
        } else {
            "password login (authorize -> page -> credentials -> code)"
        };
        println!(
            "| {name} | {} | {} | {:.2} | {:.1} | {:.2} | {:.2} | {:.2} | {} |",
            s.concurrency,
            s.ops,
            s.secs,
            s.rate(),
            s.p50_ms,
            s.p99_ms,
            s.max_ms,
            s.errors
        );
    }
    if failed { std::process::ExitCode::FAILURE } else { std::process::ExitCode::SUCCESS }
}
