//! Throughput of the SAML response path on one thread, next to the raw RSA operations that
//! bound it: how far from "one RSA verify per login" (or "one RSA decrypt" when encrypted)
//! the XML work puts us.
//!
//! `cargo bench -p gatehouse-connector-saml --bench verify [FILTER]`. Each row is a
//! time-based loop of about two seconds, repeated three times; the median is printed. The
//! make.py fixtures (fresh keys, "now" timestamps) are made at start in a temp directory.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_connector_saml::assertion::{self, Expect};
use gatehouse_connector_saml::verify::{self, Carried, Policy};
use gatehouse_connector_saml::xml::{self, Limits};
use gatehouse_connector_saml::{decrypt, metadata, verify_document};
use openssl::encrypt::{Decrypter, Encrypter};
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::{Padding, Rsa};
use openssl::sign::{Signer, Verifier};
use samael::crypto::{CertificateDer, Crypto, CryptoProvider, ReduceMode};

#[path = "../tests/support/fixtures.rs"]
mod fixtures;
use fixtures::{Scratch, make_py};

const VALID: &str = include_str!("../selftest/valid.xml");
const CERT: &str = include_str!("../selftest/selftest.crt");
const RUN: Duration = Duration::from_secs(2);
const RUNS: usize = 3;

const IDP: &str = "https://idp.bench.test/saml/metadata";
const SP: &str = "https://gatehouse.bench.test/saml/acme/metadata";
const ACS: &str = "https://gatehouse.bench.test/callback/acme";
const REQUEST_ID: &str = "_0123456789abcdef0123456789abcdef";

/// Operations per second of `f`, over about `RUN`. The clock is read every few calls only
/// when a call is very short, so the loop measures `f` and not `Instant::now`.
fn rate(f: &mut dyn FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut n: u64 = 0;
    let mut batch = 1;
    loop {
        for _ in 0..batch {
            f();
        }
        n += batch;
        let spent = start.elapsed();
        if spent >= RUN {
            return n as f64 / spent.as_secs_f64();
        }
        if spent < Duration::from_millis(10) {
            batch = (batch * 2).min(1024);
        }
    }
}

fn median_rate(f: &mut dyn FnMut()) -> f64 {
    let mut runs: Vec<f64> = (0..RUNS).map(|_| rate(f)).collect();
    runs.sort_by(f64::total_cmp);
    runs[RUNS / 2]
}

/// Fresh make.py responses and the keys that go with them.
struct Generated {
    now: SystemTime,
    valid: String,
    encrypted: String,
    idp: Policy,
    sp_key: PKey<Private>,
}

fn generate() -> Generated {
    let dir = Scratch::new("saml-bench");
    let keys = dir.0.join("keys");
    make_py(&["keys", keys.to_str().unwrap()]);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
    let spec = serde_json::json!({
        "idp_entity_id": IDP, "sp_entity_id": SP, "acs_url": ACS, "now": now,
        "name_id": "ada-persistent-7", "email": "ada@example.com",
        "cases": {"valid": REQUEST_ID, "encrypted_valid_aes256gcm": REQUEST_ID},
    });
    let spec_path = dir.0.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).unwrap();
    let out = make_py(&["responses", "--keys", keys.to_str().unwrap(), "--spec", spec_path.to_str().unwrap()]);
    let out: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let doc =
        |case: &str| String::from_utf8(STANDARD.decode(out[case]["SAMLResponse"].as_str().unwrap()).unwrap()).unwrap();
    let certificates = metadata::pem_certificates(&std::fs::read_to_string(keys.join("idp.crt")).unwrap()).unwrap();
    Generated {
        now: UNIX_EPOCH + Duration::from_secs(now),
        valid: doc("valid"),
        encrypted: doc("encrypted_valid_aes256gcm"),
        idp: Policy { certificates, allow_response_signature_only: false, allow_sha1: false },
        sp_key: PKey::private_key_from_pem(&std::fs::read(keys.join("sp.key")).unwrap()).unwrap(),
    }
}

struct Row {
    name: &'static str,
    per_sec: f64,
}

fn main() {
    // `cargo bench` passes `--bench`; any other argument filters the rows by name.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let wanted = |name: &str| filter.as_deref().is_none_or(|f| name.contains(f));

    let selftest = Policy {
        certificates: metadata::pem_certificates(CERT).unwrap(),
        allow_response_signature_only: false,
        allow_sha1: false,
    };
    let g = generate();
    let expect = Expect {
        idp_entity_id: IDP,
        sp_entity_id: SP,
        acs_url: ACS,
        in_response_to: Some(REQUEST_ID),
        now: g.now,
        skew: Duration::from_secs(60),
        max_age: Duration::from_secs(300),
    };
    // Every path must succeed before it is timed: a fast refusal would look like speed.
    let checked = assertion::check(&verify_document(&g.valid, &g.idp, None).unwrap(), &expect).unwrap();
    assert_eq!(checked.name_id, "ada-persistent-7");
    let decrypted = verify_document(&g.encrypted, &g.idp, Some(&g.sp_key)).unwrap();
    assert!(decrypted.assertion_signed);

    // Raw RSA-2048: a throwaway key, a 1 KiB message, PKCS#1 v1.5 with SHA-256; and an OAEP
    // (SHA-1/MGF1-SHA-1, what rsa-oaep-mgf1p means) wrapped 32-byte key to unwrap.
    let rsa = PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap();
    let message = vec![0x5a_u8; 1024];
    let signature = Signer::new(MessageDigest::sha256(), &rsa).unwrap().sign_oneshot_to_vec(&message).unwrap();
    let wrapped = {
        let mut e = Encrypter::new(&rsa).unwrap();
        e.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        let mut out = vec![0; e.encrypt_len(&[7; 32]).unwrap()];
        let n = e.encrypt(&[7; 32], &mut out).unwrap();
        out.truncate(n);
        out
    };

    // Pieces of the plain path, to see where its time goes.
    let certs: Vec<CertificateDer> = selftest.certificates.iter().cloned().map(CertificateDer::from).collect();
    let root = verify::parse_response(&g.encrypted).unwrap();
    let Ok(Carried::Encrypted(enc)) = verify::carried(&root) else { panic!("make.py's case is encrypted") };

    let content_algorithms: Vec<&str> = decrypt::CONTENT_ALGORITHMS.iter().map(|(_, uri)| *uri).collect();

    let mut rows: Vec<Row> = Vec::new();
    let mut bench = |name: &'static str, f: &mut dyn FnMut()| {
        if wanted(name) {
            let per_sec = median_rate(f);
            eprintln!("  {name}: {per_sec:.0}/s");
            rows.push(Row { name, per_sec });
        }
    };
    bench("verify_document (selftest valid.xml)", &mut || {
        black_box(verify_document(black_box(VALID), &selftest, None).unwrap());
    });
    bench("verify_document + assertion::check (make.py valid)", &mut || {
        let v = verify_document(black_box(&g.valid), &g.idp, None).unwrap();
        black_box(assertion::check(&v, &expect).unwrap());
    });
    bench("verify_document, encrypted (aes256-gcm, rsa-oaep)", &mut || {
        black_box(verify_document(black_box(&g.encrypted), &g.idp, Some(&g.sp_key)).unwrap());
    });
    bench("raw RSA-2048 PKCS#1 v1.5 SHA-256 verify (1 KiB)", &mut || {
        let mut v = Verifier::new(MessageDigest::sha256(), &rsa).unwrap();
        assert!(v.verify_oneshot(black_box(&signature), black_box(&message)).unwrap());
    });
    bench("raw RSA-2048 OAEP private decrypt", &mut || {
        let mut d = Decrypter::new(&rsa).unwrap();
        d.set_rsa_padding(Padding::PKCS1_OAEP).unwrap();
        let mut out = vec![0; d.decrypt_len(&wrapped).unwrap()];
        black_box(d.decrypt(black_box(&wrapped), &mut out).unwrap());
    });
    bench("  part: xml::parse (strict reader, valid.xml)", &mut || {
        black_box(xml::parse(black_box(VALID), &Limits::MESSAGE).unwrap());
    });
    bench("  part: samael/xmlsec reduce to pre-digest (valid.xml)", &mut || {
        black_box(
            Crypto::reduce_xml_to_signed_with_allowed_algorithms(black_box(VALID), &certs, ReduceMode::PreDigest, None)
                .unwrap(),
        );
    });
    bench("  part: assertion::check", &mut || {
        black_box(assertion::check(black_box(&decrypted), &expect).unwrap());
    });
    bench("  part: decrypt::decrypt_assertion", &mut || {
        black_box(decrypt::decrypt_assertion(black_box(enc), &g.sp_key, &content_algorithms).unwrap());
    });

    let find = |prefix: &str| rows.iter().find(|r| r.name.starts_with(prefix)).map(|r| r.per_sec);
    println!();
    println!("{:<58} {:>12} {:>10}", "one thread, release", "ops/s", "µs/op");
    for r in &rows {
        println!("{:<58} {:>12.0} {:>10.1}", r.name, r.per_sec, 1e6 / r.per_sec);
    }
    println!();
    if let (Some(plain), Some(raw)) = (find("verify_document (selftest"), find("raw RSA-2048 PKCS#1")) {
        println!("verified responses/s ÷ raw RSA verify/s       = {:.3}", plain / raw);
    }
    if let (Some(enc), Some(raw)) = (find("verify_document, encrypted"), find("raw RSA-2048 OAEP")) {
        println!("encrypted responses/s ÷ raw OAEP decrypt/s    = {:.3}", enc / raw);
    }
}
