//! The core of one Gatehouse node: settings, store, keys, connections, clock and metrics,
//! built from `Settings` and shared by every request. Nothing here knows about HTTP.

use std::sync::Arc;

use crate::clock::{SharedClock, SystemClock};
use crate::connections::Connections;
use crate::settings::{ConfigErrors, Settings, StoreKind};
use crate::store::keyfile::FileKeyStore;
use crate::store::memory::MemoryStore;
use crate::store::{KeyRingRecord, Store, StoreError};
use crate::telemetry::Metrics;
use crate::tokens::{KeyError, KeyRing, Keys, keys};

pub struct Core {
    pub settings: Arc<Settings>,
    pub store: Store,
    pub keys: Keys,
    pub clock: SharedClock,
    pub connections: Connections,
    pub metrics: Metrics,
}

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("configuration:\n{0}")]
    Config(#[from] ConfigErrors),
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("signing keys: {0}")]
    Keys(#[from] KeyError),
}

impl Core {
    /// Build a node with the system clock and the store the settings name.
    pub async fn build(settings: Settings) -> Result<Arc<Self>, BuildError> {
        let clock: SharedClock = Arc::new(SystemClock);
        let store = store_with_clock(&settings, clock.clone())?;
        Self::with_parts(settings, store, clock).await
    }

    /// Build a node from explicit parts (tests inject a clock and a store).
    pub async fn with_parts(settings: Settings, store: Store, clock: SharedClock) -> Result<Arc<Self>, BuildError> {
        let connections = Connections::open(&settings).map_err(ConfigErrors)?;
        let record = load_or_create_keys(&store, &settings, clock.now()).await?;
        let keys = Keys::new(KeyRing::from_record(&record)?);
        Ok(Arc::new(Self {
            settings: Arc::new(settings),
            store,
            keys,
            clock,
            connections,
            metrics: Metrics::default(),
        }))
    }

    /// Reload the key ring from the store (after `gatehouse keys rotate`).
    pub async fn reload_keys(&self) -> Result<(), BuildError> {
        if let Some(record) = self.store.keys.load().await? {
            self.keys.replace(KeyRing::from_record(&record)?);
        }
        Ok(())
    }
}

/// The store the settings name, with the system clock.
pub fn store_for(settings: &Settings) -> Result<Store, BuildError> {
    store_with_clock(settings, Arc::new(SystemClock))
}

fn store_with_clock(settings: &Settings, clock: SharedClock) -> Result<Store, BuildError> {
    Ok(match settings.store {
        StoreKind::Memory => {
            let keys = Arc::new(FileKeyStore::new(&settings.data_dir)?);
            Store::from_backend(Arc::new(MemoryStore::new(clock)), keys)
        }
    })
}

/// The stored ring, or a new one with one key of the configured algorithm. If the stored
/// ring signs with another algorithm than configured, a key of the configured one is added
/// in front (the old keys keep verifying).
async fn load_or_create_keys(store: &Store, settings: &Settings, now: u64) -> Result<KeyRingRecord, BuildError> {
    let alg = settings.keys.algorithm;
    let record = match store.keys.load().await? {
        Some(r) => r,
        None => {
            let fresh = KeyRingRecord { keys: vec![keys::generate(alg, now)?] };
            store.keys.create_if_absent(&fresh).await?
        }
    };
    if record.keys.first().map(|k| k.alg.as_str()) != Some(alg.as_str()) {
        let rotated = keys::rotate(&record, alg, now, settings.keys.keep_previous)?;
        store.keys.save(&rotated).await?;
        return Ok(rotated);
    }
    Ok(record)
}

/// `gatehouse keys rotate`: put a new key in front, keep the configured number of old ones.
pub async fn rotate_keys(store: &Store, settings: &Settings, now: u64) -> Result<KeyRingRecord, BuildError> {
    let current = load_or_create_keys(store, settings, now).await?;
    let rotated = keys::rotate(&current, settings.keys.algorithm, now, settings.keys.keep_previous)?;
    store.keys.save(&rotated).await?;
    Ok(rotated)
}
