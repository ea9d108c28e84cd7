//! The configured connections, opened once at start through the registry.

pub mod registry;

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_connector::{Connector, OpenContext, Url};

use crate::settings::{ConfigError, ConnectionSettings, Settings};
use crate::types::{ConnectionId, Issuer};

pub struct Connection {
    pub settings: ConnectionSettings,
    pub connector: Arc<dyn Connector>,
    pub callback_url: Url,
}

#[derive(Clone, Default)]
pub struct Connections(Arc<HashMap<ConnectionId, Arc<Connection>>>);

/// What a connector is told when its connection opens: its id, callback and Gatehouse's issuer.
pub fn open_context(issuer: &Issuer, id: &ConnectionId) -> Result<OpenContext, String> {
    let callback_url = Url::parse(&issuer.join(&format!("/callback/{id}"))).map_err(|e| e.to_string())?;
    let issuer = Url::parse(issuer.as_str()).map_err(|e| e.to_string())?;
    Ok(OpenContext { connection: id.to_string(), callback_url, issuer })
}

/// Open a connection's connector once and drop it: the check `Settings` runs in its one pass.
pub fn check_options(
    issuer: &Issuer,
    id: &ConnectionId,
    kind: &str,
    options: &serde_json::Value,
) -> Result<(), String> {
    let ctx = open_context(issuer, id)?;
    registry::open(kind, options.clone(), &ctx).map(drop).map_err(|e| e.to_string())
}

impl Connections {
    /// Open every configured connection (their options were checked when the settings
    /// were read); every failure is reported with its key path.
    pub fn open(settings: &Settings) -> Result<Self, Vec<ConfigError>> {
        let mut map = HashMap::new();
        let mut errors = Vec::new();
        for (i, c) in settings.connections.iter().enumerate() {
            let opened = open_context(&settings.issuer, &c.id).and_then(|ctx| {
                let callback_url = ctx.callback_url.clone();
                let connector = registry::open(&c.kind, c.options.clone(), &ctx).map_err(|e| e.to_string())?;
                Ok(Connection { settings: c.clone(), connector, callback_url })
            });
            match opened {
                Ok(conn) => {
                    map.insert(c.id.clone(), Arc::new(conn));
                }
                Err(message) => errors.push(ConfigError { path: format!("connections[{i}].options"), message }),
            }
        }
        if errors.is_empty() { Ok(Self(Arc::new(map))) } else { Err(errors) }
    }

    /// Connections whose connectors are already built: the core's tests hand in the SDK's
    /// `testkit::FakeConnector` this way.
    pub fn from_connectors(connections: impl IntoIterator<Item = Connection>) -> Self {
        Self(Arc::new(connections.into_iter().map(|c| (c.settings.id.clone(), Arc::new(c))).collect()))
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

#[cfg(test)]
mod tests {
    use gatehouse_connector::testkit::{FakeConnector, finish_context, fixed_now, start_context};
    use gatehouse_connector::{ConnectorError, Start};

    use super::*;

    #[tokio::test]
    async fn a_core_runs_on_connectors_handed_in() {
        let text = "[[connections]]\nid = \"users\"\ntype = \"static\"\noptions = { users = [] }\n";
        let settings = Settings::parse(text, &|_| None).unwrap();
        let conn = settings.connections[0].clone();
        let fake = FakeConnector::new().failing_finish(ConnectorError::Denied("not in the group".into()));
        let callback_url = Url::parse("http://127.0.0.1:8080/callback/users").unwrap();
        let connections = Connections::from_connectors([Connection {
            settings: conn.clone(),
            connector: Arc::new(fake),
            callback_url,
        }]);
        let clock: crate::clock::SharedClock = crate::clock::ManualClock::new(1_700_000_000);
        let store = crate::store::Store::from_backend(
            Arc::new(crate::store::memory::MemoryStore::new(clock.clone())),
            Arc::new(crate::store::memory::MemoryKeyStore::default()),
        );
        let core = crate::state::Core::with_connections(settings, store, clock, connections).await.unwrap();
        let found = core.connections.get(&conn.id).expect("the handed-in connection");
        assert_eq!(found.connector.strategy(), "fake");
        let (start, state) = found.connector.start(&start_context("t1", fixed_now())).await.unwrap();
        assert!(matches!(start, Start::Redirect { .. }));
        let result =
            found.connector.finish(&finish_context("t1", fixed_now()), state, FakeConnector::callback("t1")).await;
        assert!(matches!(result, Err(ConnectorError::Denied(_))), "the configured refusal: {result:?}");
    }
}
