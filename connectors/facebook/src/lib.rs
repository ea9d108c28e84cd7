//! Facebook Login: the OAuth 2.0 dialog, the code exchange, then the Graph API
//! `/me?fields=...` with `appsecret_proof`. Strategy `facebook`. The Graph API version and
//! both base URLs are configurable (tests point them at a local server).

use std::collections::BTreeMap;

use gatehouse_connector::{ConnectorConfig, ConnectorError, OpenContext, Secret};
use gatehouse_connector_oauth2::{ClientAuth, Mapping, OAuth2Connector};
use serde::Deserialize;

fn default_version() -> String {
    "v19.0".into()
}
fn default_dialog() -> String {
    "https://www.facebook.com".into()
}
fn default_graph() -> String {
    "https://graph.facebook.com".into()
}
fn default_scopes() -> Vec<String> {
    vec!["email".into(), "public_profile".into()]
}
fn default_fields() -> String {
    "id,name,email,first_name,last_name,picture".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The Facebook app id.
    pub client_id: String,
    /// The app secret: authenticates the code exchange and signs `appsecret_proof`.
    pub client_secret: Secret<String>,
    #[serde(default = "default_version")]
    pub graph_version: String,
    #[serde(default = "default_dialog")]
    pub dialog_base_url: String,
    #[serde(default = "default_graph")]
    pub graph_base_url: String,
    #[serde(default = "default_scopes")]
    pub scopes: Vec<String>,
    #[serde(default = "default_fields")]
    pub fields: String,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

impl ConnectorConfig for Config {
    type Connector = OAuth2Connector;

    fn open(self, ctx: &OpenContext) -> Result<OAuth2Connector, ConnectorError> {
        let v = &self.graph_version;
        let dialog = self.dialog_base_url.trim_end_matches('/');
        let graph = self.graph_base_url.trim_end_matches('/');
        gatehouse_connector_oauth2::Config {
            strategy: "facebook".into(),
            authorize_url: format!("{dialog}/{v}/dialog/oauth"),
            token_url: format!("{graph}/{v}/oauth/access_token"),
            profile_url: format!("{graph}/{v}/me"),
            client_id: self.client_id,
            client_secret: self.client_secret,
            client_auth: ClientAuth::ClientSecretPost,
            scopes: self.scopes,
            scope_separator: Some(",".into()),
            pkce: true,
            authorize_params: BTreeMap::new(),
            profile_params: BTreeMap::from([("fields".to_owned(), self.fields)]),
            appsecret_proof: true,
            // Facebook returns only a confirmed email address, or none.
            trust_email: true,
            mapping: Mapping {
                user_id: "/id".into(),
                email: Some("/email".into()),
                email_verified: None,
                name: Some("/name".into()),
                given_name: Some("/first_name".into()),
                family_name: Some("/last_name".into()),
                nickname: None,
                picture: Some("/picture/data/url".into()),
                locale: None,
                groups: None,
            },
            timeout_ms: self.timeout_ms,
            max_response_bytes: None,
        }
        .open(ctx)
    }
}
