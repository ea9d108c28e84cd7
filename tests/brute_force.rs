//! The brute-force lock of the hosted credentials form: counted in the store, so every node
//! behind it sees the lock; scoped to the username (another username from the same address is
//! not locked); and lifted when its window ends, driven by the manual clock.

use crate::harness::*;

/// `[login] lockout_window`'s default: the test config sets only `max_failed_attempts = 3`.
const WINDOW: u64 = 900;

/// Open the hosted form of a fresh login at `app` and post one username and password.
async fn attempt(app: &TestApp, username: &str, password: &str) -> (u16, String) {
    let (_, challenge) = pkce();
    let r = submit_credentials(
        app,
        &browser(),
        &authorize_url(app, "web", WEB_REDIRECT, &challenge, &[]),
        username,
        password,
    )
    .await;
    let status = r.status().as_u16();
    (status, r.text().await.unwrap())
}

fn assert_wrong(reply: &(u16, String), n: usize) {
    assert_eq!(reply.0, 401, "failure {n} is a wrong password, not yet a lock: {}", reply.1);
    assert!(reply.1.contains("Wrong username or password."), "failure {n}: {}", reply.1);
}

fn assert_locked(reply: &(u16, String), why: &str) {
    assert_eq!(reply.0, 429, "{why}: {}", reply.1);
    assert!(reply.1.contains("correlation-id") && !reply.1.contains("Wrong username"), "{why}: {}", reply.1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_lock_is_shared_by_nodes_scoped_to_the_username_and_expires() {
    let a = TestApp::with(Options { manual_clock: true, ..Default::default() }).await;
    let b = TestApp::with(Options { shared: Some(a.shared()), ..Default::default() }).await;

    // Three failures, spread over both nodes, each answered as a wrong password.
    assert_wrong(&attempt(&a, "ada@example.com", "guess-1").await, 1);
    assert_wrong(&attempt(&b, "ada@example.com", "guess-2").await, 2);
    assert_wrong(&attempt(&a, "Ada@Example.com", "guess-3").await, 3);

    // Now even the right password is refused, on either node (the case of the name is no way
    // around it).
    assert_locked(&attempt(&b, "ada@example.com", PASSWORD).await, "locked on the other node");
    assert_locked(&attempt(&a, "ADA@example.com", PASSWORD).await, "locked whatever the case");

    // Only that username: another one from the same address is still asked for its password.
    assert_wrong(&attempt(&b, "nobody@example.com", "nope").await, 1);

    // Still locked just before the window ends, open right after it.
    a.advance(WINDOW - 1);
    assert_locked(&attempt(&b, "ada@example.com", PASSWORD).await, "within the window");
    a.advance(2);
    let (status, body) = attempt(&b, "ada@example.com", PASSWORD).await;
    assert_eq!(status, 303, "the window ended: the right password signs in again: {body}");
}
