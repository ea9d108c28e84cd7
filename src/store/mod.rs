//! All shared state, behind one trait per aggregate.
//!
//! Every single-use artifact is consumed by one atomic operation of its trait
//! (`TransactionStore::take` and `take_bound`, `CodeStore::redeem`, `GrantStore::rotate`,
//! `ReplayCache::insert_once`), so two nodes can never both use it. Secrets are stored under
//! their hash. Every transient record has a TTL. The store imports nothing above it.
//!
//! Backends: [`memory`] (the embedded default) and, later, Redis. Both must pass
//! [`conformance`].

pub mod conformance;
#[cfg(test)]
pub mod counting;
pub mod keyfile;
pub mod memory;
pub mod records;
pub mod redis;

use std::sync::Arc;

use async_trait::async_trait;

use crate::types::{AuthCode, SecretHash, TransactionId, UserId};
pub use records::*;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The backend cannot be reached or timed out: the request fails with 503.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// A record could not be read back.
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

/// What [`TransactionStore::take_bound`] found.
#[derive(Debug, Clone, PartialEq)]
pub enum Taken {
    /// The transaction, now removed.
    Mine(Box<TransactionRecord>),
    /// It exists but another browser started it: it is left in place, so a stranger who
    /// learns a live `state` cannot cancel someone else's login.
    OtherBrowser,
    /// Never stored, expired, or already taken.
    Missing,
}

#[async_trait]
pub trait TransactionStore: Send + Sync {
    async fn put(&self, txn: &TransactionRecord, ttl: u64) -> StoreResult<()>;
    async fn get(&self, id: &TransactionId) -> StoreResult<Option<TransactionRecord>>;
    /// Remove and return, atomically: at most one caller gets `Some`.
    async fn take(&self, id: &TransactionId) -> StoreResult<Option<TransactionRecord>>;
    /// Remove and return the transaction only if `browser` (the hash of the binding cookie)
    /// is the one it was started with; one atomic step and one round trip.
    async fn take_bound(&self, id: &TransactionId, browser: &SecretHash) -> StoreResult<Taken>;
}

#[async_trait]
pub trait CodeStore: Send + Sync {
    /// Store a code (under its hash, next to the grant named in it) for `ttl` seconds.
    async fn put(&self, code: &AuthCode, record: &CodeRecord, ttl: u64) -> StoreResult<()>;
    /// Consume a code atomically. The first caller gets `Fresh`, and the code's hash is
    /// recorded on the grant named in the code (a grant with no record yet keeps only that
    /// hash, for `grant_ttl` seconds; `GrantStore::put` keeps it for the grant's life). Later
    /// callers presenting the same code get `Reused` with that grant; a code whose hash the
    /// grant does not hold is `Unknown`, so a forged secret revokes nothing.
    async fn redeem(&self, code: &AuthCode, grant_ttl: u64) -> StoreResult<Redeemed>;
}

#[async_trait]
pub trait SessionStore: Send + Sync {
    async fn put(&self, key: SecretHash, session: &SessionRecord, ttl: u64) -> StoreResult<()>;
    async fn get(&self, key: SecretHash) -> StoreResult<Option<SessionRecord>>;
    async fn delete(&self, key: SecretHash) -> StoreResult<()>;
}

#[async_trait]
pub trait GrantStore: Send + Sync {
    /// Store a new refresh family. A revoked grant is never re-created: a code replayed while
    /// its first redemption was still issuing revokes the grant before this runs, and the
    /// family must not come back to life (nothing is written then).
    async fn put(&self, grant: &GrantRecord) -> StoreResult<()>;
    async fn get(&self, id: &str) -> StoreResult<Option<GrantRecord>>;
    /// Present a refresh token of grant `id` at time `now`, atomically: if it is the current
    /// one, replace it with `next`; if it was rotated out, revoke the family.
    async fn rotate(&self, id: &str, presented: SecretHash, next: SecretHash, now: u64) -> StoreResult<Rotation>;
    /// Delete the grant and remember it as revoked for `ttl` seconds (for its access tokens).
    async fn revoke(&self, id: &str, ttl: u64) -> StoreResult<()>;
}

#[async_trait]
pub trait RevocationStore: Send + Sync {
    /// Remember `key` (a `jti` or `grant:<id>`) as revoked for `ttl` seconds.
    async fn revoke(&self, key: &str, ttl: u64) -> StoreResult<()>;
    /// Whether any of `keys` is revoked.
    async fn any_revoked(&self, keys: &[&str]) -> StoreResult<bool>;
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn get(&self, id: &UserId) -> StoreResult<Option<UserRecord>>;
    async fn put(&self, user: &UserRecord) -> StoreResult<()>;
    /// The user that holds the identity `upstream_user_id` of `connection`, if linked.
    async fn find_by_identity(&self, connection: &str, upstream_user_id: &str) -> StoreResult<Option<UserId>>;
    /// The user last stored with this email (case-insensitive) marked verified. An index:
    /// callers check the user record itself.
    async fn find_by_verified_email(&self, email: &str) -> StoreResult<Option<UserId>>;
    /// Remove one identity from a user; the identity is free to become a user of its own.
    /// Returns the updated user, or `None` if the user or the identity does not exist.
    async fn unlink(&self, user: &UserId, connection: &str, upstream_user_id: &str) -> StoreResult<Option<UserRecord>>;
}

#[async_trait]
pub trait KeyStore: Send + Sync {
    async fn load(&self) -> StoreResult<Option<KeyRingRecord>>;
    /// Store `ring` only if none exists yet; returns the ring that is stored afterwards, so
    /// concurrent first starts agree on one.
    async fn create_if_absent(&self, ring: &KeyRingRecord) -> StoreResult<KeyRingRecord>;
    async fn save(&self, ring: &KeyRingRecord) -> StoreResult<()>;
}

#[async_trait]
pub trait LogoutStore: Send + Sync {
    async fn put(&self, record: &LogoutRecord, ttl: u64) -> StoreResult<()>;
    /// Atomically read and delete: an upstream answer completes one logout, once.
    async fn take(&self, id: &str) -> StoreResult<Option<LogoutRecord>>;
}

#[async_trait]
pub trait ReplayCache: Send + Sync {
    /// Record `key` for `ttl` seconds; `true` the first time, `false` on every replay.
    async fn insert_once(&self, key: &str, ttl: u64) -> StoreResult<bool>;
}

/// Each action's `api.cache`: one small JSON document per action, written after a run.
#[async_trait]
pub trait ActionCacheStore: Send + Sync {
    async fn load(&self, action: &str) -> StoreResult<Option<String>>;
    /// Replace the action's cache; it expires after `ttl` seconds (its longest entry).
    async fn save(&self, action: &str, entries: &str, ttl: u64) -> StoreResult<()>;
}

#[async_trait]
pub trait Counters: Send + Sync {
    /// Add one to `key` (created with a `ttl`-second window) and return the new count.
    async fn incr(&self, key: &str, ttl: u64) -> StoreResult<u64>;
    async fn get(&self, key: &str) -> StoreResult<u64>;
    async fn reset(&self, key: &str) -> StoreResult<()>;
}

/// Whether the backend answers at all (for `/readyz`).
#[async_trait]
pub trait Health: Send + Sync {
    async fn ping(&self) -> StoreResult<()>;
}

/// One handle to every aggregate, held in the app state.
#[derive(Clone)]
pub struct Store {
    pub transactions: Arc<dyn TransactionStore>,
    pub codes: Arc<dyn CodeStore>,
    pub sessions: Arc<dyn SessionStore>,
    pub grants: Arc<dyn GrantStore>,
    pub revocations: Arc<dyn RevocationStore>,
    pub users: Arc<dyn UserStore>,
    pub keys: Arc<dyn KeyStore>,
    pub replay: Arc<dyn ReplayCache>,
    pub counters: Arc<dyn Counters>,
    pub action_cache: Arc<dyn ActionCacheStore>,
    pub logouts: Arc<dyn LogoutStore>,
    pub health: Arc<dyn Health>,
}

impl Store {
    /// Every aggregate served by one backend object.
    pub fn from_backend<B>(backend: Arc<B>, keys: Arc<dyn KeyStore>) -> Self
    where
        B: TransactionStore
            + CodeStore
            + SessionStore
            + GrantStore
            + RevocationStore
            + UserStore
            + ReplayCache
            + Counters
            + ActionCacheStore
            + LogoutStore
            + Health
            + 'static,
    {
        Self {
            transactions: backend.clone(),
            codes: backend.clone(),
            sessions: backend.clone(),
            grants: backend.clone(),
            revocations: backend.clone(),
            users: backend.clone(),
            keys,
            replay: backend.clone(),
            counters: backend.clone(),
            action_cache: backend.clone(),
            logouts: backend.clone(),
            health: backend,
        }
    }
}
