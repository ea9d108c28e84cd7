//! The core of one Gatehouse node: settings, store, keys, connections, clock and metrics,
//! built from `Settings` and shared by every request. Nothing here knows about HTTP.

use std::sync::Arc;

use crate::clock::{SharedClock, SystemClock};
use crate::connections::Connections;
use crate::settings::{ConfigErrors, Settings, StoreKind};
use crate::store::keyfile::FileKeyStore;
use crate::store::memory::MemoryStore;
use crate::store::redis::RedisStore;
use crate::store::{KeyRingRecord, Store, StoreError};
use crate::telemetry::Metrics;
use crate::tokens::{KeyError, Keys, keys};

/// How often a node looks for a rotated key ring.
pub const KEY_POLL: std::time::Duration = std::time::Duration::from_secs(5);

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
        let store = store_with_clock(&settings, clock.clone()).await?;
        Self::with_parts(settings, store, clock).await
    }

    /// Build a node from explicit parts (tests inject a clock and a store).
    pub async fn with_parts(settings: Settings, store: Store, clock: SharedClock) -> Result<Arc<Self>, BuildError> {
        let connections = Connections::open(&settings).map_err(ConfigErrors)?;
        Self::with_connections(settings, store, clock, connections).await
    }

    /// Like [`Core::with_parts`], with connections built by the caller (the core's tests use
    /// the SDK's fake connector).
    pub async fn with_connections(
        settings: Settings,
        store: Store,
        clock: SharedClock,
        connections: Connections,
    ) -> Result<Arc<Self>, BuildError> {
        let record = load_or_create_keys(&store, &settings, clock.now()).await?;
        let keys = Keys::load(record)?;
        Ok(Arc::new(Self {
            settings: Arc::new(settings),
            store,
            keys,
            clock,
            connections,
            metrics: Metrics::default(),
        }))
    }

    /// Reload the key ring from the store if it changed (after `gatehouse keys rotate` on
    /// any node). Returns whether it changed.
    pub async fn reload_keys(&self) -> Result<bool, BuildError> {
        let record = match self.store.keys.load().await? {
            Some(r) => r,
            // The store lost the ring (a Redis without AOF restarted): write ours back, so
            // nodes started from now on agree with the running ones.
            None => self.store.keys.create_if_absent(&self.keys.record()).await?,
        };
        if record == self.keys.record() {
            return Ok(false);
        }
        self.keys.replace(record)?;
        tracing::info!(kid = %self.keys.ring().current().kid, "signing keys reloaded");
        Ok(true)
    }

    /// Background upkeep, until the process ends: ping the store every second (so a
    /// connection lost in an outage is re-established by the ping, not by a person's
    /// request) and look for a rotated key ring every [`KEY_POLL`].
    pub async fn upkeep(self: Arc<Self>) {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u64 = 0;
        loop {
            tick.tick().await;
            n += 1;
            if let Err(e) = self.store.health.ping().await {
                tracing::warn!(error = %e, "store unavailable");
                continue;
            }
            if n.is_multiple_of(KEY_POLL.as_secs())
                && let Err(e) = self.reload_keys().await
            {
                tracing::warn!(error = %e, "cannot reload signing keys");
            }
        }
    }
}

/// The store the settings name, with the system clock.
pub async fn store_for(settings: &Settings) -> Result<Store, BuildError> {
    store_with_clock(settings, Arc::new(SystemClock)).await
}

async fn store_with_clock(settings: &Settings, clock: SharedClock) -> Result<Store, BuildError> {
    Ok(match &settings.store {
        StoreKind::Memory => {
            let keys = Arc::new(FileKeyStore::new(&settings.data_dir)?);
            Store::from_backend(Arc::new(MemoryStore::new(clock)), keys)
        }
        StoreKind::Redis(config) => {
            let backend = Arc::new(RedisStore::connect(config).await?);
            match backend.maxmemory_policy().await? {
                Some(policy) if policy != "noeviction" => tracing::warn!(
                    policy = %policy,
                    "Redis maxmemory-policy is not noeviction: under memory pressure Redis will silently drop \
                     replay caches, codes and brute-force counters; set maxmemory-policy noeviction"
                ),
                _ => {}
            }
            crate::store::redis::store(backend)
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
