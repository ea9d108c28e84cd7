//! A store wrapper that counts round trips: every trait call is one request to the backend.
//! Tests use it to hold the number of store calls of a flow to a budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;

use super::*;

/// Wraps a backend; [`Counting::calls`] is the number of store calls made through it.
pub struct Counting<B> {
    inner: Arc<B>,
    calls: AtomicU64,
}

impl<B> Counting<B> {
    pub fn new(inner: Arc<B>) -> Self {
        Self { inner, calls: AtomicU64::new(0) }
    }
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }
    fn tick(&self) -> &B {
        self.calls.fetch_add(1, Ordering::SeqCst);
        &self.inner
    }
}

#[async_trait]
impl<B: TransactionStore> TransactionStore for Counting<B> {
    async fn put(&self, txn: &TransactionRecord, ttl: u64) -> StoreResult<()> {
        self.tick().put(txn, ttl).await
    }
    async fn get(&self, id: &TransactionId) -> StoreResult<Option<TransactionRecord>> {
        self.tick().get(id).await
    }
    async fn take(&self, id: &TransactionId) -> StoreResult<Option<TransactionRecord>> {
        self.tick().take(id).await
    }
    async fn take_bound(&self, id: &TransactionId, browser: &SecretHash) -> StoreResult<Taken> {
        self.tick().take_bound(id, browser).await
    }
}

#[async_trait]
impl<B: CodeStore> CodeStore for Counting<B> {
    async fn put(&self, code: &AuthCode, record: &CodeRecord, ttl: u64) -> StoreResult<()> {
        self.tick().put(code, record, ttl).await
    }
    async fn redeem(&self, code: &AuthCode, grant_ttl: u64) -> StoreResult<Redeemed> {
        self.tick().redeem(code, grant_ttl).await
    }
}

#[async_trait]
impl<B: SessionStore> SessionStore for Counting<B> {
    async fn put(&self, key: SecretHash, session: &SessionRecord, ttl: u64) -> StoreResult<()> {
        self.tick().put(key, session, ttl).await
    }
    async fn get(&self, key: SecretHash) -> StoreResult<Option<SessionRecord>> {
        self.tick().get(key).await
    }
    async fn delete(&self, key: SecretHash) -> StoreResult<()> {
        self.tick().delete(key).await
    }
}

#[async_trait]
impl<B: GrantStore> GrantStore for Counting<B> {
    async fn put(&self, grant: &GrantRecord) -> StoreResult<()> {
        self.tick().put(grant).await
    }
    async fn get(&self, id: &str) -> StoreResult<Option<GrantRecord>> {
        self.tick().get(id).await
    }
    async fn rotate(&self, id: &str, presented: SecretHash, next: SecretHash, now: u64) -> StoreResult<Rotation> {
        self.tick().rotate(id, presented, next, now).await
    }
    async fn revoke(&self, id: &str, ttl: u64) -> StoreResult<()> {
        GrantStore::revoke(self.tick(), id, ttl).await
    }
}

#[async_trait]
impl<B: RevocationStore> RevocationStore for Counting<B> {
    async fn revoke(&self, key: &str, ttl: u64) -> StoreResult<()> {
        RevocationStore::revoke(self.tick(), key, ttl).await
    }
    async fn any_revoked(&self, keys: &[&str]) -> StoreResult<bool> {
        self.tick().any_revoked(keys).await
    }
}

#[async_trait]
impl<B: UserStore> UserStore for Counting<B> {
    async fn get(&self, id: &UserId) -> StoreResult<Option<UserRecord>> {
        self.tick().get(id).await
    }
    async fn put(&self, user: &UserRecord) -> StoreResult<()> {
        self.tick().put(user).await
    }
    async fn find_by_identity(&self, connection: &str, upstream_user_id: &str) -> StoreResult<Option<UserId>> {
        self.tick().find_by_identity(connection, upstream_user_id).await
    }
    async fn find_by_verified_email(&self, email: &str) -> StoreResult<Option<UserId>> {
        self.tick().find_by_verified_email(email).await
    }
    async fn unlink(&self, user: &UserId, connection: &str, upstream_user_id: &str) -> StoreResult<Option<UserRecord>> {
        self.tick().unlink(user, connection, upstream_user_id).await
    }
}

#[async_trait]
impl<B: LogoutStore> LogoutStore for Counting<B> {
    async fn put(&self, record: &LogoutRecord, ttl: u64) -> StoreResult<()> {
        self.tick().put(record, ttl).await
    }
    async fn take(&self, id: &str) -> StoreResult<Option<LogoutRecord>> {
        self.tick().take(id).await
    }
}

#[async_trait]
impl<B: ReplayCache> ReplayCache for Counting<B> {
    async fn insert_once(&self, key: &str, ttl: u64) -> StoreResult<bool> {
        self.tick().insert_once(key, ttl).await
    }
}

#[async_trait]
impl<B: ActionCacheStore> ActionCacheStore for Counting<B> {
    async fn load(&self, action: &str) -> StoreResult<Option<String>> {
        self.tick().load(action).await
    }
    async fn save(&self, action: &str, entries: &str, ttl: u64) -> StoreResult<()> {
        self.tick().save(action, entries, ttl).await
    }
}

#[async_trait]
impl<B: Counters> Counters for Counting<B> {
    async fn incr(&self, key: &str, ttl: u64) -> StoreResult<u64> {
        self.tick().incr(key, ttl).await
    }
    async fn get(&self, key: &str) -> StoreResult<u64> {
        self.tick().get(key).await
    }
    async fn reset(&self, key: &str) -> StoreResult<()> {
        self.tick().reset(key).await
    }
}

#[async_trait]
impl<B: Health> Health for Counting<B> {
    async fn ping(&self) -> StoreResult<()> {
        self.tick().ping().await
    }
}
