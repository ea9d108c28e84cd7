//! The one place that names connector crates: a connection's `type` -> how to open it.
//! Adding a connector = one crate under `connectors/`, one row here, one row in
//! `connectors/README.md` (a tidy test checks the three agree).

use std::sync::Arc;

use gatehouse_connector::{Connector, ConnectorError, OpenContext};

type Open = fn(serde_json::Value, &OpenContext) -> Result<Arc<dyn Connector>, ConnectorError>;

/// `(type, opener)`, one row per connector crate.
pub const CONNECTORS: &[(&str, Open)] = &[
    ("adfs", open_adfs),
    ("facebook", open_facebook),
    ("google", open_google),
    ("oauth2", open_oauth2),
    ("oidc", open_oidc),
    ("saml", open_saml),
    ("static", open_static),
];

fn options<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Result<T, ConnectorError> {
    serde_json::from_value(v).map_err(|e| ConnectorError::Misconfigured(e.to_string()))
}

fn open_oidc(v: serde_json::Value, ctx: &OpenContext) -> Result<Arc<dyn Connector>, ConnectorError> {
    Ok(Arc::new(options::<gatehouse_connector_oidc::Config>(v)?.open(ctx)?))
}

fn open_oauth2(v: serde_json::Value, ctx: &OpenContext) -> Result<Arc<dyn Connector>, ConnectorError> {
    Ok(Arc::new(options::<gatehouse_connector_oauth2::Config>(v)?.open(ctx)?))
}

fn open_google(v: serde_json::Value, ctx: &OpenContext) -> Result<Arc<dyn Connector>, ConnectorError> {
    Ok(Arc::new(options::<gatehouse_connector_google::Config>(v)?.open(ctx)?))
}

fn open_facebook(v: serde_json::Value, ctx: &OpenContext) -> Result<Arc<dyn Connector>, ConnectorError> {
    Ok(Arc::new(options::<gatehouse_connector_facebook::Config>(v)?.open(ctx)?))
}

fn open_saml(v: serde_json::Value, ctx: &OpenContext) -> Result<Arc<dyn Connector>, ConnectorError> {
    Ok(Arc::new(options::<gatehouse_connector_saml::Config>(v)?.open(ctx)?))
}

fn open_adfs(v: serde_json::Value, ctx: &OpenContext) -> Result<Arc<dyn Connector>, ConnectorError> {
    Ok(Arc::new(options::<gatehouse_connector_adfs::Config>(v)?.open(ctx)?))
}

fn open_static(v: serde_json::Value, ctx: &OpenContext) -> Result<Arc<dyn Connector>, ConnectorError> {
    Ok(Arc::new(options::<gatehouse_connector_static::Config>(v)?.open(ctx)?))
}

/// Open a connection of connector type `kind`.
pub fn open(kind: &str, options: serde_json::Value, ctx: &OpenContext) -> Result<Arc<dyn Connector>, ConnectorError> {
    let (_, open) = CONNECTORS
        .iter()
        .find(|(name, _)| *name == kind)
        .ok_or_else(|| ConnectorError::Misconfigured(format!("unknown connector type {kind}; known: {}", known())))?;
    open(options, ctx)
}

pub fn known() -> String {
    CONNECTORS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}
