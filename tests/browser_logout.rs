//! Logout CSRF in a real browser: a page on another site auto-submits Gatehouse's logout
//! confirmation form (with a guessed token) in headless Chromium. The browser holds its
//! session cookie back (SameSite=Lax on a cross-site POST) and the form's CSRF token would
//! refuse the POST anyway: the person stays signed in.

use crate::browser::WebDriver;
use crate::harness::*;

/// Whether these cookies still open a session: `prompt=none` answers with a code.
async fn silent_code(app: &TestApp, cookies: &str) -> bool {
    param(&crate::browser::silent_authorize(app, cookies).await, "code").is_some()
}

#[tokio::test]
async fn a_cross_site_logout_post_leaves_the_session_alive() {
    let app = TestApp::start().await;
    let wd = WebDriver::start().await;

    // Ada signs in through the hosted form in Chromium.
    let (_, challenge) = pkce();
    wd.goto(&authorize_url(&app, "gatehouse-demo", &app.url("/demo"), &challenge, &[])).await;
    wd.send_keys(&wd.wait_for("#username").await, "ada@example.com").await;
    wd.send_keys(&wd.find("#password").await, PASSWORD).await;
    wd.click(&wd.find("#submit").await).await;
    wd.wait_for("#sign-in, #signed-in, #error").await;
    let cookies = wd.cookie_header().await;
    assert!(cookies.contains("gh_session="), "signed in: {cookies}");
    assert!(silent_code(&app, &cookies).await, "the session answers prompt=none");

    // Another site (localhost is not the same site as 127.0.0.1) posts the confirmation.
    let form = format!(
        r#"<!doctype html><title>win a prize</title>
<form method="post" action="{}"><input type="hidden" name="client_id" value="gatehouse-demo">
<input type="hidden" name="confirm" value="yes"><input type="hidden" name="csrf" value="guessed"></form>
<script>document.forms[0].submit()</script>"#,
        app.url("/logout")
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let evil = format!("http://localhost:{}/", listener.local_addr().unwrap().port());
    let _evil = serve_on_thread(listener, move |cfg| {
        let form = form.clone();
        cfg.route(
            "/",
            actix_web::web::get().to(move || {
                let form = form.clone();
                async move { actix_web::HttpResponse::Ok().content_type("text/html").body(form) }
            }),
        );
    });
    wd.goto(&evil).await;
    // The POST landed on Gatehouse (its page, whatever it says), not on the attacker's page.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !wd.current_url().await.starts_with(&app.url("/logout")) {
        assert!(std::time::Instant::now() < deadline, "the form never posted: {}", wd.current_url().await);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    wd.wait_for("h1").await;

    // Back on Gatehouse's origin: the same session cookie, still alive on the server.
    wd.goto(&app.url("/healthz")).await;
    let after = wd.cookie_header().await;
    let session = |c: &str| c.split("; ").find(|p| p.starts_with("gh_session=")).map(str::to_owned);
    assert_eq!(session(&after), session(&cookies), "the browser kept its session cookie");
    assert!(silent_code(&app, &after).await, "a cross-site POST signed nobody out");
}
