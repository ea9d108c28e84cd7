//! What clients send is bounded in time and size: a body shorter than its Content-Length
//! (or a head that never ends) cannot hold a connection, an oversized /token body gets
//! RFC 6749 JSON, and none of it is logged as an ERROR.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::*;

/// Send `request`, read until the server closes; the answer and how long it took.
fn exchange(base: &str, request: &[u8]) -> (String, Duration) {
    let addr = base.strip_prefix("http://").unwrap();
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let started = Instant::now();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    // read_to_end returns at EOF: the server closed the connection.
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).into_owned(), started.elapsed())
}

fn short_body(path: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\ngrant_type=client_credentials"
    )
    .into_bytes()
}

fn fast_deadlines() -> String {
    format!("{}\n[http]\nrequest_timeout_secs = 1\nbody_timeout_secs = 1\n", config("ES256"))
}

#[tokio::test]
async fn a_body_shorter_than_its_content_length_gets_408_and_the_connection_closes() {
    let app = TestApp::with(Options { config: Some(fast_deadlines()), ..Default::default() }).await;
    let base = app.issuer.clone();
    let (api, took) = tokio::task::spawn_blocking(move || exchange(&base, &short_body("/token"))).await.unwrap();
    assert!(api.starts_with("HTTP/1.1 408"), "{api}");
    assert!(api.contains("\"error\":\"invalid_request\""), "RFC 6749 JSON at /token: {api}");
    assert!(took < Duration::from_secs(5), "answered at the body deadline, not after {took:?}");
    let base = app.issuer.clone();
    let (page, took) = tokio::task::spawn_blocking(move || exchange(&base, &short_body("/authorize"))).await.unwrap();
    assert!(page.starts_with("HTTP/1.1 408") && page.contains("text/html"), "a page for browsers: {page}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // The node still serves.
    assert_eq!(get(app.url("/healthz")).await.unwrap().status(), 200);
}

#[tokio::test]
async fn an_oversized_token_request_gets_rfc_6749_json() {
    let app = TestApp::start().await;
    let body = format!("grant_type=client_credentials&client_id=m2m&pad={}", "x".repeat(1024 * 1024));
    let r = http()
        .post(app.url("/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.headers()["content-type"].to_str().unwrap().starts_with("application/json"));
    let json: serde_json::Value = r.json().await.unwrap();
    assert_eq!(json["error"], "invalid_request");
}

#[test]
fn the_server_drops_slow_and_short_requests_without_logging_errors() {
    let dir = TempDir::new();
    let config = dir.0.join("gatehouse.toml");
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/fixtures/config/embedded.toml")).unwrap();
    std::fs::write(&config, format!("{text}\n[http]\nrequest_timeout_secs = 1\nbody_timeout_secs = 1\n")).unwrap();
    let node = spawn_node(&dir.0, "node", |port| {
        let issuer = format!("http://127.0.0.1:{port}");
        (serve_args(&["--config", config.to_str().unwrap(), "--issuer", &issuer], port), Vec::new())
    });
    let log = node.log.clone();
    // A head that never ends (slow loris): closed at the request deadline.
    let (answer, took) = exchange(&node.base, b"POST /token HTTP/1.1\r\nHost: x\r\n");
    assert!(took < Duration::from_secs(5), "the half-sent head held the connection for {took:?}");
    assert!(!answer.starts_with("HTTP/1.1 200"), "{answer}");
    // A body shorter than announced: 408 at the body deadline.
    let (answer, took) = exchange(&node.base, &short_body("/token"));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    // Garbage instead of HTTP: refused.
    let (answer, _) = exchange(&node.base, b"\x16\x03\x01 not http at all\r\n\r\n");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 400"), "{answer}");
    drop(node);
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(!logged.contains("ERROR"), "a client's malformed request is not an ERROR:\n{logged}");
}
