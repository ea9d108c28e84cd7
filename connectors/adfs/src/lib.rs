//! Active Directory Federation Services: the SAML connector with ADFS's defaults. Strategy
//! `adfs`; the IdP from `FederationMetadata.xml` (a file, or fetched from the ADFS host and
//! refreshed, so token-signing certificate rollovers are picked up); the subject from the UPN
//! claim (or objectGUID), never from a transient NameID; the ADFS claim URIs mapped to the
//! profile by the SAML connector's defaults.

use std::path::PathBuf;

use gatehouse_connector::{ConnectorConfig, ConnectorError, OpenContext, Url};
pub use gatehouse_connector_saml::SamlConnector as AdfsConnector;
use serde::Deserialize;

pub const UPN: &str = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn";
/// ADFS has no built-in objectGUID claim; these are the URIs admins conventionally issue it as.
pub const OBJECT_GUID: &[&str] = &[
    "http://schemas.microsoft.com/ws/2008/06/identity/claims/objectguid",
    "http://schemas.microsoft.com/identity/claims/objectidentifier",
    "objectGUID",
];

/// Where ADFS publishes its metadata.
pub const METADATA_PATH: &str = "/FederationMetadata/2007-06/FederationMetadata.xml";

fn default_user_id() -> Vec<String> {
    vec!["upn".into(), "objectGUID".into()]
}
fn default_refresh() -> u64 {
    3600
}
fn default_skew() -> u64 {
    60
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The ADFS host (`adfs.example.com`): metadata from
    /// `https://{host}/FederationMetadata/2007-06/FederationMetadata.xml`.
    #[serde(default)]
    pub adfs_host: Option<String>,
    /// Or a metadata URL of its own, or a downloaded `FederationMetadata.xml`.
    #[serde(default)]
    pub federation_metadata_url: Option<Url>,
    #[serde(default)]
    pub federation_metadata_file: Option<PathBuf>,
    #[serde(default = "default_refresh")]
    pub metadata_refresh_secs: u64,
    /// Pinned token-signing certificates (PEM) that replace the metadata's.
    #[serde(default)]
    pub idp_certificate_files: Vec<PathBuf>,
    /// `upn`, `objectGUID` or any claim URI, first present wins.
    #[serde(default = "default_user_id")]
    pub user_id_attributes: Vec<String>,
    #[serde(default)]
    pub sp_entity_id: Option<String>,
    #[serde(default)]
    pub sp_key_file: Option<PathBuf>,
    #[serde(default)]
    pub sp_certificate_file: Option<PathBuf>,
    #[serde(default)]
    pub sign_requests: Option<bool>,
    #[serde(default)]
    pub trust_email: bool,
    #[serde(default = "default_skew")]
    pub clock_skew_secs: u64,
    /// Relying party trusts created before SHA-256 was the default sign with SHA-1.
    #[serde(default)]
    pub allow_sha1: bool,
    #[serde(default)]
    pub timeout_ms: Option<u64>,
}

fn expand(names: Vec<String>) -> Vec<String> {
    names
        .into_iter()
        .flat_map(|n| match n.as_str() {
            "upn" => vec![UPN.to_owned()],
            "objectGUID" | "objectguid" => OBJECT_GUID.iter().map(|s| s.to_string()).collect(),
            _ => vec![n],
        })
        .collect()
}

impl Config {
    /// Where the federation metadata is fetched from: the URL given, or the one ADFS serves
    /// on `adfs_host`; `None` for a metadata file. Exactly one source must be given.
    fn metadata_url(&self) -> Result<Option<Url>, ConnectorError> {
        match (&self.federation_metadata_url, &self.adfs_host, &self.federation_metadata_file) {
            (Some(u), None, None) => Ok(Some(u.clone())),
            (None, Some(host), None) => Url::parse(&format!("https://{host}{METADATA_PATH}"))
                .map(Some)
                .map_err(|e| ConnectorError::Misconfigured(format!("adfs_host: {e}"))),
            (None, None, Some(_)) => Ok(None),
            _ => Err(ConnectorError::Misconfigured(
                "give one of adfs_host, federation_metadata_url, federation_metadata_file".into(),
            )),
        }
    }
}

impl ConnectorConfig for Config {
    type Connector = AdfsConnector;

    fn open(self, ctx: &OpenContext) -> Result<AdfsConnector, ConnectorError> {
        let url = self.metadata_url()?;
        gatehouse_connector_saml::Config {
            idp_metadata_file: self.federation_metadata_file,
            idp_metadata_url: url,
            metadata_refresh_secs: self.metadata_refresh_secs,
            idp_certificate_files: self.idp_certificate_files,
            sp_entity_id: self.sp_entity_id,
            sp_key_file: self.sp_key_file,
            sp_certificate_file: self.sp_certificate_file,
            sign_requests: self.sign_requests,
            clock_skew_secs: self.clock_skew_secs,
            max_assertion_age_secs: 300,
            allow_sha1: self.allow_sha1,
            user_id_attributes: expand(self.user_id_attributes),
            trust_email: self.trust_email,
            strategy: "adfs".into(),
            timeout_ms: self.timeout_ms,
            ..Default::default()
        }
        .open(ctx)
    }
}

#[cfg(test)]
mod tests {
    use gatehouse_connector::{Connector, ConnectorConfig as _, Start, StartContext};

    use super::*;

    fn ctx() -> OpenContext {
        OpenContext {
            connection: "corp".into(),
            callback_url: Url::parse("https://login.example/callback/corp").unwrap(),
            issuer: Url::parse("https://login.example").unwrap(),
        }
    }

    fn config(v: serde_json::Value) -> Config {
        serde_json::from_value(v).unwrap()
    }

    #[tokio::test]
    async fn imports_federation_metadata_from_a_file() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/saml/adfs/FederationMetadata.xml");
        let c = config(serde_json::json!({"federation_metadata_file": file})).open(&ctx()).unwrap();
        assert_eq!(c.strategy(), "adfs");
        let idp = c.idp().await.unwrap();
        assert_eq!(idp.entity_id, "http://adfs.corp.example/adfs/services/trust");
        assert_eq!(idp.sso_redirect.as_deref(), Some("https://adfs.corp.example/adfs/ls/"));
        assert_eq!(idp.slo_redirect.as_deref(), Some("https://adfs.corp.example/adfs/ls/"));
        assert_eq!(idp.certificates.len(), 1, "the IdP's signing key only, once");
        let start = StartContext {
            callback_url: ctx().callback_url,
            transaction_id: "txn-1".into(),
            login_hint: None,
            force_login: true,
            max_age: None,
            now: std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
        };
        let (Start::Redirect { url }, _) = c.start(&start).await.unwrap() else { panic!("HTTP-Redirect") };
        assert!(url.as_str().starts_with("https://adfs.corp.example/adfs/ls/?SAMLRequest="));
        assert_eq!(url.query_pairs().find(|(k, _)| k == "RelayState").unwrap().1, "txn-1");
    }

    #[test]
    fn the_host_gives_the_metadata_url_and_one_source_is_required() {
        let host = config(serde_json::json!({"adfs_host": "adfs.corp.example"}));
        assert_eq!(
            host.metadata_url().unwrap().map(String::from).as_deref(),
            Some("https://adfs.corp.example/FederationMetadata/2007-06/FederationMetadata.xml"),
            "ADFS's own metadata path, over https"
        );
        assert!(host.open(&ctx()).is_ok());
        assert!(config(serde_json::json!({})).open(&ctx()).is_err());
        let both = serde_json::json!({"adfs_host": "a.example", "federation_metadata_url": "https://b.example/m"});
        assert!(config(both).open(&ctx()).is_err());
        let plain = serde_json::json!({"federation_metadata_url": "http://adfs.corp.example/FederationMetadata/2007-06/FederationMetadata.xml"});
        assert!(config(plain).open(&ctx()).is_err(), "metadata over plain http is refused");
        assert_eq!(expand(vec!["upn".into()]), [UPN]);
        assert_eq!(expand(vec!["objectGUID".into()]).len(), OBJECT_GUID.len());
    }
}
