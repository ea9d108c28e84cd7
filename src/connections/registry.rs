//! The one place that names connector crates: a connection's `type` -> how to open it.
//! Adding a connector = one crate under `connectors/`, one row here, one row in
//! `connectors/README.md` (a tidy test checks the three agree).

use std::sync::Arc;

use gatehouse_connector::{Connector, ConnectorError, OpenContext, open as open_as};

type Open = fn(serde_json::Value, &OpenContext) -> Result<Arc<dyn Connector>, ConnectorError>;

/// `(type, opener)`, one row per connector crate.
pub const CONNECTORS: &[(&str, Open)] = &[
    ("adfs", open_as::<gatehouse_connector_adfs::Config>),
    ("facebook", open_as::<gatehouse_connector_facebook::Config>),
    ("google", open_as::<gatehouse_connector_google::Config>),
    ("oauth2", open_as::<gatehouse_connector_oauth2::Config>),
    ("oidc", open_as::<gatehouse_connector_oidc::Config>),
    ("saml", open_as::<gatehouse_connector_saml::Config>),
    ("static", open_as::<gatehouse_connector_static::Config>),
];

/// Open a connection of connector type `kind`.
pub fn open(kind: &str, options: serde_json::Value, ctx: &OpenContext) -> Result<Arc<dyn Connector>, ConnectorError> {
    let (_, open) = CONNECTORS
        .iter()
        .find(|(name, _)| *name == kind)
        .ok_or_else(|| ConnectorError::Misconfigured(format!("unknown connector type {kind}; known: {}", known())))?;
    open(options, ctx)
}

pub fn is_known(kind: &str) -> bool {
    CONNECTORS.iter().any(|(name, _)| *name == kind)
}

pub fn known() -> String {
    CONNECTORS.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
}
