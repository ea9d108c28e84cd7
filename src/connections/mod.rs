//! The configured connections, opened once at start through the registry.

pub mod registry;

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_connector::{Connector, OpenContext, Url};

use crate::settings::{ConfigError, ConnectionSettings, Settings};
use crate::types::ConnectionId;

pub struct Connection {
    pub settings: ConnectionSettings,
    pub connector: Arc<dyn Connector>,
    pub callback_url: Url,
}

#[derive(Clone, Default)]
pub struct Connections(Arc<HashMap<ConnectionId, Arc<Connection>>>);

impl Connections {
    /// Open every configured connection; every failure is reported with its key path.
    pub fn open(settings: &Settings) -> Result<Self, Vec<ConfigError>> {
        let mut map = HashMap::new();
        let mut errors = Vec::new();
        for (i, c) in settings.connections.iter().enumerate() {
            let callback_url = match Url::parse(&settings.issuer.join(&format!("/callback/{}", c.id))) {
                Ok(u) => u,
                Err(e) => {
                    errors.push(ConfigError { path: format!("connections[{i}]"), message: e.to_string() });
                    continue;
                }
            };
            if !registry::CONNECTORS.iter().any(|(kind, _)| *kind == c.kind) {
                errors.push(ConfigError {
                    path: format!("connections[{i}].type"),
                    message: format!("unknown connector type {}; known: {}", c.kind, registry::known()),
                });
                continue;
            }
            let Ok(issuer) = Url::parse(settings.issuer.as_str()) else {
                errors.push(ConfigError { path: "issuer".into(), message: "not a URL".into() });
                continue;
            };
            let ctx = OpenContext { connection: c.id.to_string(), callback_url: callback_url.clone(), issuer };
            match registry::open(&c.kind, c.options.clone(), &ctx) {
                Ok(connector) => {
                    map.insert(c.id.clone(), Arc::new(Connection { settings: c.clone(), connector, callback_url }));
                }
                Err(e) => {
                    errors.push(ConfigError { path: format!("connections[{i}].options"), message: e.to_string() })
                }
            }
        }
        if errors.is_empty() { Ok(Self(Arc::new(map))) } else { Err(errors) }
    }

    pub fn get(&self, id: &ConnectionId) -> Option<&Arc<Connection>> {
        self.0.get(id)
    }

    /// The same connections with `id`'s connector replaced (flow tests plug in a fake one).
    #[cfg(test)]
    pub fn with_connector(&self, id: &ConnectionId, connector: Arc<dyn Connector>) -> Self {
        let mut map = (*self.0).clone();
        if let Some(c) = map.get_mut(id) {
            *c = Arc::new(Connection { settings: c.settings.clone(), connector, callback_url: c.callback_url.clone() });
        }
        Self(Arc::new(map))
    }
}
