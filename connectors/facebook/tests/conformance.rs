//! The SDK's conformance kit against the Facebook connector and a fake Facebook (dialog,
//! token endpoint and the Graph API `/me`, which insists on `appsecret_proof`).

use gatehouse_connector::testkit::conformance::{Harness, run};
use gatehouse_connector::testkit::server::unreachable_url;
use gatehouse_connector::{CallbackInput, Start, async_trait};
use gatehouse_connector_facebook::Config;
use gatehouse_connector_oauth2::testkit::{FakeProvider, Provider};

const SECRET: &str = "fb-app-secret-0123";

struct Facebook(FakeProvider);

fn options(dialog: &str, graph: &str) -> serde_json::Value {
    serde_json::json!({"client_id": "fb-app", "client_secret": SECRET, "dialog_base_url": dialog, "graph_base_url": graph})
}

#[async_trait]
impl Harness for Facebook {
    type Config = Config;

    fn options(&self) -> serde_json::Value {
        options(&self.0.url(""), &self.0.url(""))
    }

    fn unreachable_options(&self) -> Option<serde_json::Value> {
        Some(options(&self.0.url(""), &unreachable_url("")))
    }

    fn upstream_requests(&self) -> usize {
        self.0.requests()
    }

    fn secrets(&self) -> Vec<String> {
        vec![SECRET.into()]
    }

    async fn approve(&self, start: &Start, _txn: &str) -> CallbackInput {
        self.0.approve(start)
    }

    async fn refuse(&self, start: &Start, _txn: &str) -> CallbackInput {
        self.0.refuse(start)
    }
}

async fn facebook() -> Facebook {
    Facebook(
        FakeProvider::start(Provider {
            client_id: "fb-app".into(),
            client_secret: SECRET.into(),
            token_path: "/v19.0/oauth/access_token".into(),
            profile_path: "/v19.0/me".into(),
            profile: serde_json::json!({
                "id": "10150000000000001", "name": "Ada Lovelace", "email": "ada@example.com",
                "first_name": "Ada", "last_name": "Lovelace",
                "picture": {"data": {"url": "https://graph.example/ada.png"}},
            }),
            appsecret_proof: true,
        })
        .await,
    )
}

#[tokio::test]
async fn the_facebook_connector_conforms() {
    run(&facebook().await).await;
}

#[tokio::test]
async fn a_facebook_login_maps_the_graph_profile() {
    use gatehouse_connector::testkit::{finish_context, fixed_now, open_context, start_context};
    let fb = facebook().await;
    let c = gatehouse_connector::open::<Config>(fb.options(), &open_context()).unwrap();
    assert_eq!(c.strategy(), "facebook");
    let (start, state) = c.start(&start_context("t1", fixed_now())).await.unwrap();
    let Start::Redirect { url } = &start else { panic!("a redirect") };
    assert!(url.path().ends_with("/v19.0/dialog/oauth"), "{url}");
    let scope = url.query_pairs().find(|(k, _)| k == "scope").map(|(_, v)| v.into_owned());
    assert_eq!(scope.as_deref(), Some("email,public_profile"), "Facebook's comma-separated scopes");
    let identity = c.finish(&finish_context("t1", fixed_now()), state, fb.0.approve(&start)).await.unwrap();
    assert_eq!(identity.subject, "10150000000000001");
    assert_eq!(identity.email.as_deref(), Some("ada@example.com"));
    assert!(identity.email_verified, "Facebook returns only confirmed emails");
    assert_eq!(identity.given_name.as_deref(), Some("Ada"));
    assert_eq!(identity.picture.as_deref(), Some("https://graph.example/ada.png"));
}
