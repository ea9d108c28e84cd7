//! Interop: the npm `openid-client` (pinned in tests/peers/openid-client/package-lock.json,
//! installed by scripts/setup) is the relying party. It does discovery, the code + PKCE flow
//! with its own strict ID token validation, userinfo, refresh with reuse detection, a silent
//! second login, and revocation, all against a Gatehouse node.

use std::path::Path;
use std::process::Command;

use crate::harness::*;

struct Rp<'a> {
    client_id: &'a str,
    secret: &'a str,
    redirect: &'a str,
    alg: Option<&'a str>,
}

fn run_rp(app: &TestApp, rp: &Rp<'_>) -> serde_json::Value {
    let peer = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/peers/openid-client");
    assert!(
        peer.join("node_modules/openid-client").is_dir(),
        "the openid-client peer is not installed: run ./scripts/setup"
    );
    let mut cmd = Command::new(node());
    cmd.arg(peer.join("rp.mjs"))
        .env("ISSUER", &app.issuer)
        .env("CLIENT_ID", rp.client_id)
        .env("CLIENT_SECRET", rp.secret)
        .env("REDIRECT_URI", rp.redirect)
        .env("USERNAME", "ada@example.com")
        .env("PASSWORD", PASSWORD);
    if let Some(alg) = rp.alg {
        cmd.env("ID_TOKEN_ALG", alg);
    }
    let out = output_within(&mut cmd, PEER_DEADLINE);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openid-client failed ({}):\n{stderr}\n{stdout}", out.status);
    let last = stdout.lines().last().unwrap_or_else(|| panic!("no output; stderr:\n{stderr}"));
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{e}: {last}"))
}

fn assert_full_run(v: &serde_json::Value, alg: &str) {
    assert_eq!(v["sub"], "auth0|ada");
    assert_eq!(v["id_token_alg"], alg);
    assert_eq!(v["id_token_claims"]["email"], "ada@example.com");
    assert_eq!(v["userinfo"]["sub"], "auth0|ada");
    assert_eq!(v["userinfo"]["name"], "Ada Lovelace");
    assert_eq!(v["refreshed"], true);
    assert_eq!(v["old_refresh_reuse_error"], "invalid_grant");
    assert_eq!(v["rotated_after_reuse_error"], "invalid_grant", "reuse revokes the family");
    assert_eq!(v["second_login_showed_form"], false, "the SSO session answers the second login");
    assert_eq!(v["revoked_refresh_error"], "invalid_grant");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_confidential_rs256() {
    let app = TestApp::with(Options { alg: "RS256", ..Default::default() }).await;
    let result = run_rp(&app, &Rp { client_id: "web", secret: WEB_SECRET, redirect: WEB_REDIRECT, alg: None });
    assert_full_run(&result, "RS256");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_public_client_es256_with_chooser() {
    let app = TestApp::with(Options { alg: "ES256", ..Default::default() }).await;
    let result = run_rp(&app, &Rp { client_id: "spa", secret: "", redirect: SPA_REDIRECT, alg: Some("ES256") });
    assert_full_run(&result, "ES256");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openid_client_eddsa() {
    let app = TestApp::with(Options { alg: "EdDSA", ..Default::default() }).await;
    let result = run_rp(&app, &Rp { client_id: "web", secret: WEB_SECRET, redirect: WEB_REDIRECT, alg: Some("EdDSA") });
    assert_full_run(&result, "EdDSA");
}
