//! The embedded backend: everything in this process's memory, behind one mutex, so each
//! operation is trivially atomic. For `cargo run` and single-node use; state is lost on
//! restart except the key ring, which the embedded default keeps in a file.

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;

use super::*;
use crate::clock::SharedClock;

struct Entry<V> {
    value: V,
    expires_at: Option<u64>,
}

struct TtlMap<V>(HashMap<String, Entry<V>>);

impl<V: Clone> TtlMap<V> {
    fn new() -> Self {
        Self(HashMap::new())
    }
    fn get(&mut self, key: &str, now: u64) -> Option<&mut V> {
        let live = self.0.get(key).is_some_and(|e| e.expires_at.is_none_or(|t| now < t));
        if !live {
            self.0.remove(key);
            return None;
        }
        self.0.get_mut(key).map(|e| &mut e.value)
    }
    fn put(&mut self, key: String, value: V, ttl: Option<u64>, now: u64) {
        self.0.insert(key, Entry { value, expires_at: ttl.map(|t| now.saturating_add(t)) });
    }
    fn take(&mut self, key: &str, now: u64) -> Option<V> {
        let e = self.0.remove(key)?;
        e.expires_at.is_none_or(|t| now < t).then_some(e.value)
    }
    fn sweep(&mut self, now: u64) {
        self.0.retain(|_, e| e.expires_at.is_none_or(|t| now < t));
    }
}

struct Inner {
    transactions: TtlMap<TransactionRecord>,
    codes: TtlMap<CodeRecord>,
    /// The hash of the code each grant was redeemed from, by grant id; it lives as long as
    /// the grant (or `grant_ttl` for a grant with no record).
    redeemed: TtlMap<SecretHash>,
    sessions: TtlMap<SessionRecord>,
    grants: TtlMap<GrantRecord>,
    revoked: TtlMap<()>,
    users: HashMap<String, UserRecord>,
    identities: HashMap<String, String>,
    verified_emails: HashMap<String, String>,
    replay: TtlMap<()>,
    counters: TtlMap<u64>,
    action_cache: TtlMap<String>,
    logouts: TtlMap<LogoutRecord>,
    writes: u64,
}

pub struct MemoryStore {
    inner: Mutex<Inner>,
    clock: SharedClock,
}

impl MemoryStore {
    pub fn new(clock: SharedClock) -> Self {
        Self {
            inner: Mutex::new(Inner {
                transactions: TtlMap::new(),
                logouts: TtlMap::new(),
                codes: TtlMap::new(),
                redeemed: TtlMap::new(),
                sessions: TtlMap::new(),
                grants: TtlMap::new(),
                revoked: TtlMap::new(),
                users: HashMap::new(),
                identities: HashMap::new(),
                verified_emails: HashMap::new(),
                replay: TtlMap::new(),
                counters: TtlMap::new(),
                action_cache: TtlMap::new(),
                writes: 0,
            }),
            clock,
        }
    }

    /// Lock, and every few thousand writes drop what has expired so memory stays bounded.
    fn lock(&self, write: bool) -> (std::sync::MutexGuard<'_, Inner>, u64) {
        let now = self.clock.now();
        // A panic while holding the lock cannot leave a half-applied operation behind (each
        // operation is a single map call), so a poisoned lock is still consistent.
        let mut g = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if write {
            g.writes += 1;
            if g.writes.is_multiple_of(4096) {
                g.transactions.sweep(now);
                g.logouts.sweep(now);
                g.codes.sweep(now);
                g.redeemed.sweep(now);
                g.sessions.sweep(now);
                g.grants.sweep(now);
                g.revoked.sweep(now);
                g.replay.sweep(now);
                g.counters.sweep(now);
            }
        }
        (g, now)
    }
}

fn identity_key(connection: &str, upstream_user_id: &str) -> String {
    format!("{connection}\u{0}{upstream_user_id}")
}

#[async_trait]
impl TransactionStore for MemoryStore {
    async fn put(&self, txn: &TransactionRecord, ttl: u64) -> StoreResult<()> {
        let (mut g, now) = self.lock(true);
        g.transactions.put(txn.id.to_string(), txn.clone(), Some(ttl), now);
        Ok(())
    }
    async fn get(&self, id: &TransactionId) -> StoreResult<Option<TransactionRecord>> {
        let (mut g, now) = self.lock(false);
        Ok(g.transactions.get(id.as_str(), now).cloned())
    }
    async fn take(&self, id: &TransactionId) -> StoreResult<Option<TransactionRecord>> {
        let (mut g, now) = self.lock(true);
        Ok(g.transactions.take(id.as_str(), now))
    }
    async fn take_bound(&self, id: &TransactionId, browser: &SecretHash) -> StoreResult<Taken> {
        let (mut g, now) = self.lock(true);
        let Some(txn) = g.transactions.get(id.as_str(), now) else { return Ok(Taken::Missing) };
        if !crate::types::ct_eq(&txn.browser.0, &browser.0) {
            return Ok(Taken::OtherBrowser);
        }
        Ok(g.transactions.take(id.as_str(), now).map_or(Taken::Missing, |t| Taken::Mine(Box::new(t))))
    }
}

#[async_trait]
impl LogoutStore for MemoryStore {
    async fn put(&self, record: &LogoutRecord, ttl: u64) -> StoreResult<()> {
        let (mut g, now) = self.lock(true);
        g.logouts.put(record.id.clone(), record.clone(), Some(ttl), now);
        Ok(())
    }
    async fn take(&self, id: &str) -> StoreResult<Option<LogoutRecord>> {
        let (mut g, now) = self.lock(true);
        Ok(g.logouts.take(id, now))
    }
}

#[async_trait]
impl CodeStore for MemoryStore {
    async fn put(&self, code: &AuthCode, record: &CodeRecord, ttl: u64) -> StoreResult<()> {
        let (mut g, now) = self.lock(true);
        g.codes.put(code.hash().to_hex(), record.clone(), Some(ttl), now);
        Ok(())
    }
    async fn redeem(&self, code: &AuthCode, grant_ttl: u64) -> StoreResult<Redeemed> {
        let Some(grant_id) = code.grant_id() else { return Ok(Redeemed::Unknown) };
        let hash = code.hash();
        let (mut g, now) = self.lock(true);
        if let Some(record) = g.codes.take(&hash.to_hex(), now) {
            g.redeemed.put(grant_id.to_owned(), hash, Some(grant_ttl), now);
            return Ok(Redeemed::Fresh(Box::new(record)));
        }
        Ok(match g.redeemed.get(grant_id, now) {
            Some(first) if crate::types::ct_eq(&first.0, &hash.0) => Redeemed::Reused { grant_id: grant_id.to_owned() },
            _ => Redeemed::Unknown,
        })
    }
}

#[async_trait]
impl SessionStore for MemoryStore {
    async fn put(&self, key: SecretHash, session: &SessionRecord, ttl: u64) -> StoreResult<()> {
        let (mut g, now) = self.lock(true);
        g.sessions.put(key.to_hex(), session.clone(), Some(ttl), now);
        Ok(())
    }
    async fn get(&self, key: SecretHash) -> StoreResult<Option<SessionRecord>> {
        let (mut g, now) = self.lock(false);
        Ok(g.sessions.get(&key.to_hex(), now).cloned())
    }
    async fn delete(&self, key: SecretHash) -> StoreResult<()> {
        let (mut g, now) = self.lock(true);
        g.sessions.take(&key.to_hex(), now);
        Ok(())
    }
}

#[async_trait]
impl GrantStore for MemoryStore {
    async fn put(&self, grant: &GrantRecord) -> StoreResult<()> {
        let (mut g, now) = self.lock(true);
        if g.revoked.get(&format!("grant:{}", grant.id), now).is_some() {
            return Ok(());
        }
        let ttl = grant.expires_at.saturating_sub(now);
        g.grants.put(grant.id.clone(), grant.clone(), Some(ttl), now);
        // The code the grant came from stays known as long as the grant.
        if let Some(code) = g.redeemed.take(&grant.id, now) {
            g.redeemed.put(grant.id.clone(), code, Some(ttl), now);
        }
        Ok(())
    }
    async fn get(&self, id: &str) -> StoreResult<Option<GrantRecord>> {
        let (mut g, now) = self.lock(false);
        Ok(g.grants.get(id, now).cloned())
    }
    async fn rotate(&self, id: &str, presented: SecretHash, next: SecretHash, now_at: u64) -> StoreResult<Rotation> {
        let (mut g, now) = self.lock(true);
        let Some(grant) = g.grants.get(id, now) else { return Ok(Rotation::Invalid) };
        if grant.refresh == Some(presented) {
            if !grant.usable_at(now_at) {
                return Ok(Rotation::Invalid);
            }
            grant.rotated.push(presented);
            grant.refresh = Some(next);
            grant.last_used_at = now_at;
            return Ok(Rotation::Rotated(Box::new(grant.clone())));
        }
        if grant.rotated.contains(&presented) {
            let ttl = grant.expires_at.saturating_sub(now);
            g.grants.take(id, now);
            g.redeemed.take(id, now);
            g.revoked.put(format!("grant:{id}"), (), Some(ttl), now);
            return Ok(Rotation::Reused);
        }
        Ok(Rotation::Invalid)
    }
    async fn revoke(&self, id: &str, ttl: u64) -> StoreResult<()> {
        let (mut g, now) = self.lock(true);
        g.grants.take(id, now);
        g.redeemed.take(id, now);
        g.revoked.put(format!("grant:{id}"), (), Some(ttl), now);
        Ok(())
    }
}

#[async_trait]
impl RevocationStore for MemoryStore {
    async fn revoke(&self, key: &str, ttl: u64) -> StoreResult<()> {
        let (mut g, now) = self.lock(true);
        g.revoked.put(key.to_owned(), (), Some(ttl), now);
        Ok(())
    }
    async fn any_revoked(&self, keys: &[&str]) -> StoreResult<bool> {
        let (mut g, now) = self.lock(false);
        Ok(keys.iter().any(|k| g.revoked.get(k, now).is_some()))
    }
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn get(&self, id: &UserId) -> StoreResult<Option<UserRecord>> {
        let (g, _) = self.lock(false);
        Ok(g.users.get(id.as_str()).cloned())
    }
    async fn put(&self, user: &UserRecord) -> StoreResult<()> {
        let (mut g, _) = self.lock(true);
        for identity in &user.identities {
            g.identities
                .insert(identity_key(identity.connection.as_str(), &identity.user_id), user.user_id.to_string());
        }
        if let (Some(email), true) = (&user.email, user.email_verified) {
            g.verified_emails.insert(email.to_lowercase(), user.user_id.to_string());
        }
        g.users.insert(user.user_id.to_string(), user.clone());
        Ok(())
    }
    async fn find_by_verified_email(&self, email: &str) -> StoreResult<Option<UserId>> {
        let (g, _) = self.lock(false);
        Ok(g.verified_emails.get(&email.to_lowercase()).and_then(|id| UserId::parse(id).ok()))
    }
    async fn unlink(&self, user: &UserId, connection: &str, upstream_user_id: &str) -> StoreResult<Option<UserRecord>> {
        let (mut g, _) = self.lock(true);
        let Some(record) = g.users.get_mut(user.as_str()) else { return Ok(None) };
        let before = record.identities.len();
        record.identities.retain(|i| !(i.connection.as_str() == connection && i.user_id == upstream_user_id));
        if record.identities.len() == before {
            return Ok(None);
        }
        let updated = record.clone();
        g.identities.remove(&identity_key(connection, upstream_user_id));
        Ok(Some(updated))
    }
    async fn find_by_identity(&self, connection: &str, upstream_user_id: &str) -> StoreResult<Option<UserId>> {
        let (g, _) = self.lock(false);
        Ok(g.identities.get(&identity_key(connection, upstream_user_id)).and_then(|id| UserId::parse(id).ok()))
    }
}

#[async_trait]
impl ReplayCache for MemoryStore {
    async fn insert_once(&self, key: &str, ttl: u64) -> StoreResult<bool> {
        let (mut g, now) = self.lock(true);
        if g.replay.get(key, now).is_some() {
            return Ok(false);
        }
        g.replay.put(key.to_owned(), (), Some(ttl), now);
        Ok(true)
    }
}

#[async_trait]
impl Counters for MemoryStore {
    async fn incr(&self, key: &str, ttl: u64) -> StoreResult<u64> {
        let (mut g, now) = self.lock(true);
        if let Some(n) = g.counters.get(key, now) {
            *n += 1;
            return Ok(*n);
        }
        g.counters.put(key.to_owned(), 1, Some(ttl), now);
        Ok(1)
    }
    async fn get(&self, key: &str) -> StoreResult<u64> {
        let (mut g, now) = self.lock(false);
        Ok(g.counters.get(key, now).copied().unwrap_or(0))
    }
    async fn reset(&self, key: &str) -> StoreResult<()> {
        let (mut g, now) = self.lock(true);
        g.counters.take(key, now);
        Ok(())
    }
}

#[async_trait]
impl ActionCacheStore for MemoryStore {
    async fn load(&self, action: &str) -> StoreResult<Option<String>> {
        let (mut g, now) = self.lock(false);
        Ok(g.action_cache.get(action, now).cloned())
    }
    async fn save(&self, action: &str, entries: &str, ttl: u64) -> StoreResult<()> {
        let (mut g, now) = self.lock(true);
        g.action_cache.put(action.to_owned(), entries.to_owned(), Some(ttl.max(1)), now);
        Ok(())
    }
}

#[async_trait]
impl Health for MemoryStore {
    async fn ping(&self) -> StoreResult<()> {
        Ok(())
    }
}

/// A key store that lives only as long as the process (tests).
#[derive(Default)]
pub struct MemoryKeyStore(Mutex<Option<KeyRingRecord>>);

#[async_trait]
impl KeyStore for MemoryKeyStore {
    async fn load(&self) -> StoreResult<Option<KeyRingRecord>> {
        Ok(self.0.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
    async fn create_if_absent(&self, ring: &KeyRingRecord) -> StoreResult<KeyRingRecord> {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        Ok(g.get_or_insert_with(|| ring.clone()).clone())
    }
    async fn save(&self, ring: &KeyRingRecord) -> StoreResult<()> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(ring.clone());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::conformance::{self, Harness};

    struct Mem(Arc<ManualClock>);

    #[async_trait]
    impl Harness for Mem {
        async fn advance(&self, secs: u64) {
            self.0.advance(secs);
        }
        fn now(&self) -> u64 {
            crate::clock::Clock::now(&*self.0)
        }
    }

    fn store() -> (Store, Mem) {
        let clock = ManualClock::new(1_700_000_000);
        let backend = Arc::new(MemoryStore::new(clock.clone()));
        (Store::from_backend(backend, Arc::new(MemoryKeyStore::default())), Mem(clock))
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn memory_backend_passes_the_conformance_suite() {
        let (s, h) = store();
        conformance::run_all(&s, &h).await;
    }
}
