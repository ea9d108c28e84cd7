//! Raw rates of the cryptography on Gatehouse's hot paths, one thread, no HTTP.
//!
//! ```sh
//! cargo bench --bench signing                    # about 2 s per row
//! taskset -c 0 cargo bench --bench signing       # pinned, to compare with `openssl speed` on core 0
//! BENCH_SECONDS=5 cargo bench --bench signing    # longer rows
//! cargo bench --bench signing -- ES256           # one group: RS256, ES256, EdDSA, jwt (all three), argon2
//! ```
//!
//! Rows, for RS256, ES256 and EdDSA:
//! - `raw sign`: aws-lc-rs over a 32-byte message with a key pair parsed once: the floor.
//! - `jwt::sign`: Gatehouse's signing path (`tokens::jwt::sign`) over realistic RFC 9068
//!   access-token claims: header + claims JSON, base64url, signature.
//! - `sign, key re-parsed`: the same JWS with the PKCS#8 key parsed on every call, which is
//!   what a library that takes the key as bytes (jsonwebtoken's aws-lc backend) pays.
//! - `jwt::verify`: Gatehouse's verification (`tokens::jwt::verify`, jsonwebtoken inside)
//!   with issuer, audience and `typ` checks.
//!
//! and the argon2id verification rate of a hash made by `gatehouse hash-password`
//! (`gatehouse_connector_static::hash_password`: argon2 default parameters).
//!
//! Prints a markdown table (ops/s, µs/op). Numbers, not assertions: nothing here fails on a
//! slow machine. Every loop is bounded in time and in count.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordVerifier};
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use gatehouse::store::{KeyRingRecord, StoredKey};
use gatehouse::tokens::AccessClaims;
use gatehouse::tokens::jwt::{self, Expect};
use gatehouse::tokens::keys::{self, KeyRing, SigningAlg};

const ISSUER: &str = "https://login.bench.example";
const AUDIENCE: &str = "https://api.bench.example";
/// Hard cap on iterations of one row, whatever the duration.
const MAX_ITERS: u64 = 5_000_000;

struct Row {
    name: String,
    ops: u64,
    elapsed: Duration,
}

impl Row {
    fn per_sec(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }
    fn micros(&self) -> f64 {
        self.elapsed.as_secs_f64() * 1e6 / self.ops as f64
    }
}

/// Run `f` for about `secs` (after a short warm-up) and count the calls.
fn time(name: impl Into<String>, secs: f64, mut f: impl FnMut()) -> Row {
    let warm = Instant::now();
    let mut n = 0u64;
    while warm.elapsed() < Duration::from_millis(200) && n < MAX_ITERS {
        f();
        n += 1;
    }
    let budget = Duration::from_secs_f64(secs);
    let start = Instant::now();
    let mut ops = 0u64;
    loop {
        f();
        ops += 1;
        // Checking the clock costs ~25 ns, below 0.1% of the cheapest row.
        if ops >= MAX_ITERS || start.elapsed() >= budget {
            break;
        }
    }
    let row = Row { name: name.into(), ops, elapsed: start.elapsed() };
    eprintln!("  {:<34} {:>10.0} ops/s", row.name, row.per_sec());
    row
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// What `/token` signs for `client_credentials`: RFC 9068 claims of a machine client.
fn access_claims(n: u64) -> AccessClaims {
    let now = now();
    AccessClaims {
        iss: ISSUER.into(),
        sub: "bench@clients".into(),
        aud: AUDIENCE.into(),
        client_id: "bench".into(),
        scope: "read:things write:things".into(),
        jti: format!("{n:022}"),
        exp: now + 3600,
        iat: now,
        auth_time: None,
        sid: None,
        extra: Default::default(),
    }
}

/// The JWS `jwt::sign` makes, but with the private key parsed from PKCS#8 on every call.
fn sign_reparsing(stored: &StoredKey, der: &[u8], claims: &AccessClaims) -> String {
    let header = serde_json::json!({ "alg": stored.alg, "typ": "at+jwt", "kid": stored.kid });
    let mut out = String::with_capacity(1024);
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(&header).unwrap(), &mut out);
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(serde_json::to_vec(claims).unwrap(), &mut out);
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let sig: Vec<u8> = match stored.alg.as_str() {
        "RS256" => {
            let kp = RsaKeyPair::from_pkcs8(der).unwrap();
            let mut sig = vec![0; kp.public_modulus_len()];
            kp.sign(&signature::RSA_PKCS1_SHA256, &rng, out.as_bytes(), &mut sig).unwrap();
            sig
        }
        "ES256" => EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der)
            .unwrap()
            .sign(&rng, out.as_bytes())
            .unwrap()
            .as_ref()
            .to_vec(),
        _ => Ed25519KeyPair::from_pkcs8(der).unwrap().sign(out.as_bytes()).as_ref().to_vec(),
    };
    out.push('.');
    URL_SAFE_NO_PAD.encode_string(sig, &mut out);
    out
}

/// A raw signature over 32 bytes with a pre-parsed key.
fn raw_signer(alg: SigningAlg, der: &[u8]) -> Box<dyn FnMut()> {
    let msg = [7u8; 32];
    let rng = aws_lc_rs::rand::SystemRandom::new();
    match alg {
        SigningAlg::RS256 => {
            let kp = RsaKeyPair::from_pkcs8(der).unwrap();
            let mut sig = vec![0; kp.public_modulus_len()];
            Box::new(move || {
                kp.sign(&signature::RSA_PKCS1_SHA256, &rng, black_box(&msg), &mut sig).unwrap();
                black_box(&sig);
            })
        }
        SigningAlg::ES256 => {
            let kp = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, der).unwrap();
            Box::new(move || {
                black_box(kp.sign(&rng, black_box(&msg)).unwrap());
            })
        }
        SigningAlg::EdDSA => {
            let kp = Ed25519KeyPair::from_pkcs8(der).unwrap();
            Box::new(move || {
                black_box(kp.sign(black_box(&msg)));
            })
        }
    }
}

fn main() {
    // `cargo bench` passes `--bench`; the only knob is BENCH_SECONDS.
    let secs: f64 =
        std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(2.0).clamp(0.1, 30.0);
    let only: Option<String> = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    eprintln!("signing bench: {secs} s per row, one thread (cpus allowed: {cpus})");

    let mut rows = Vec::new();
    let expect_aud = [AUDIENCE];
    let expect = Expect { issuer: ISSUER, typ: Some("at+jwt"), audience: Some(&expect_aud) };

    for alg in [SigningAlg::RS256, SigningAlg::ES256, SigningAlg::EdDSA] {
        let a = alg.as_str();
        if only.as_deref().is_some_and(|o| !a.eq_ignore_ascii_case(o) && o != "jwt") {
            continue;
        }
        let stored = keys::generate(alg, now()).expect("generate");
        let der = STANDARD.decode(&stored.pkcs8).unwrap();
        let ring = KeyRing::from_record(&KeyRingRecord { keys: vec![stored.clone()] }).expect("key ring");

        let mut raw = raw_signer(alg, &der);
        rows.push(time(format!("{a} raw sign (aws-lc-rs, 32 B)"), secs, &mut *raw));

        let mut n = 0u64;
        let mut token_len = 0;
        rows.push(time(format!("{a} jwt::sign (at+jwt)"), secs, || {
            n += 1;
            let t = jwt::sign(&ring, "at+jwt", &access_claims(n)).unwrap();
            token_len = t.len();
            black_box(t);
        }));

        let claims = access_claims(1);
        rows.push(time(format!("{a} sign, key re-parsed per call"), secs, || {
            black_box(sign_reparsing(&stored, &der, black_box(&claims)));
        }));

        let token = jwt::sign(&ring, "at+jwt", &claims).unwrap();
        let back: AccessClaims = jwt::verify(&ring, &token, &expect).expect("verify");
        assert_eq!(back, claims);
        rows.push(time(format!("{a} jwt::verify"), secs, || {
            black_box(jwt::verify::<AccessClaims>(&ring, black_box(&token), &expect).unwrap());
        }));
        eprintln!("  ({a} access token: {token_len} bytes)");
    }

    if only.as_deref().is_none_or(|o| o.eq_ignore_ascii_case("argon2")) {
        // Verification as the static connector does it: `Argon2::verify_password`, which
        // allocates m_cost KiB of blocks per call.
        let password = "correct horse battery staple";
        let phc = gatehouse_connector_static::hash_password(password).expect("hash");
        let hash = PasswordHash::new(&phc).unwrap();
        let params = phc.split('$').nth(3).unwrap_or("?").to_owned();
        let argon = argon2::Argon2::default();
        rows.push(time(format!("argon2id verify ({params})"), secs.max(2.0), || {
            assert!(argon.verify_password(black_box(password.as_bytes()), &hash).is_ok());
        }));
        // The same check with the 19 MiB block buffer allocated once and reused: what a
        // verifier that keeps its memory per hashing thread would cost (no allocation, no
        // page faults per login).
        let p = argon2::Params::try_from(&hash).unwrap();
        let reuse = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, p.clone());
        let mut salt_buf = [0u8; 64];
        let salt = hash.salt.unwrap().decode_b64(&mut salt_buf).unwrap();
        let expected = hash.hash.unwrap();
        let mut out = vec![0u8; expected.len()];
        let mut blocks = vec![argon2::Block::default(); p.block_count()];
        rows.push(time("argon2id verify, memory reused", secs.max(2.0), || {
            reuse.hash_password_into_with_memory(black_box(password.as_bytes()), salt, &mut out, &mut blocks).unwrap();
            assert_eq!(out.as_slice(), expected.as_bytes());
        }));
    }

    println!();
    println!("| operation | ops/s | µs/op | iterations |");
    println!("|---|---:|---:|---:|");
    for r in &rows {
        println!("| {} | {:.0} | {:.1} | {} |", r.name, r.per_sec(), r.micros(), r.ops);
    }
    // Ratios of the signing path to the raw signature.
    println!();
    for alg in ["RS256", "ES256", "EdDSA"] {
        let raw = rows.iter().find(|r| r.name.starts_with(alg) && r.name.contains("raw sign"));
        let path = rows.iter().find(|r| r.name.starts_with(alg) && r.name.contains("jwt::sign"));
        if let (Some(raw), Some(path)) = (raw, path) {
            println!(
                "{alg}: jwt::sign = {:.1}% of the raw aws-lc-rs sign rate ({:.1} µs of JWS overhead per token)",
                100.0 * path.per_sec() / raw.per_sec(),
                path.micros() - raw.micros()
            );
        }
    }
}
