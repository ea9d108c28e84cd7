//! The `sub` of a client-credentials access token: the plain `client_id` by default (the
//! reading of RFC 9068 resource servers assume), Auth0's `<client_id>@clients` by option.

use gatehouse::tokens::jwt::{Expect, verify};

use crate::harness::*;

async fn machine_token(app: &TestApp) -> serde_json::Value {
    let form = [("grant_type", "client_credentials"), ("client_id", "m2m"), ("client_secret", M2M_SECRET)];
    let r = http().post(app.url("/token")).form(&form).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    let token = body["access_token"].as_str().unwrap();
    // Verified with the node's own keys, as a resource server would.
    let ring = app.core.keys.ring();
    let expect = Expect { issuer: &app.issuer, typ: Some("at+jwt"), audience: Some(&["https://api.test"]) };
    verify::<serde_json::Value>(&ring, token, &expect).unwrap_or_else(|e| panic!("the token verifies: {e:?}"))
}

#[tokio::test]
async fn the_subject_is_the_plain_client_id_by_default() {
    let app = TestApp::start().await;
    let claims = machine_token(&app).await;
    assert_eq!(claims["sub"], "m2m");
    assert_eq!(claims["client_id"], "m2m");
}

#[tokio::test]
async fn auth0s_client_id_at_clients_is_an_option() {
    let config =
        config("ES256").replace("[tokens]\n", "[tokens]\nclient_credentials_subject = \"client_id@clients\"\n");
    let app = TestApp::with(Options { config: Some(config), ..Default::default() }).await;
    let claims = machine_token(&app).await;
    assert_eq!(claims["sub"], "m2m@clients");
    assert_eq!(claims["client_id"], "m2m");
}
