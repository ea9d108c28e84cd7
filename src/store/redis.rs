//! The Redis backend: every aggregate in Redis, so any number of stateless nodes can serve
//! one login. The only module that knows the Redis client.
//!
//! Keys are `{prefix}:{kind}:{id}`. Single-use artifacts are consumed by one atomic command
//! (GETDEL, SET NX) or one Lua script. The refresh token family is the one aggregate a
//! script touches in several keys; those keys share the hash tag `{<grant id>}`, so the
//! same scripts run unchanged on Redis Cluster. Every transient key carries a TTL. Every
//! call has a deadline: a Redis that does not answer becomes `StoreError::Unavailable`, never
//! a stuck request.
//!
//! One file on purpose, for now: every aggregate's commands sit next to the Lua scripts they
//! run and share one connection and deadline wrapper. When it grows further, the scripts and
//! the per-aggregate impls split into `redis/` by aggregate.

use std::sync::Arc;
use std::time::Duration;

use ::redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use ::redis::cluster_async::ClusterConnection;
use ::redis::sentinel::{SentinelClient, SentinelServerType};
use ::redis::{Cmd, FromRedisValue, Pipeline, RedisError, RedisFuture, Script, Value};
use async_trait::async_trait;
use tokio::sync::Mutex;

use super::*;

/// Where Redis is and how to talk to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedisConfig {
    pub topology: Topology,
    pub key_prefix: String,
    /// Deadline of every Redis call.
    pub timeout: Duration,
    /// PEM of the CA that signed the servers' certificates, for `rediss://` with a private
    /// CA; `None` trusts the system's roots.
    pub tls_ca: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Topology {
    /// One server (`redis://` or `rediss://` for TLS; user and password in the URL).
    Single(String),
    /// Seed nodes of a Redis Cluster.
    Cluster(Vec<String>),
    /// Sentinels that know the master `master_name`; `node_url` carries the master's
    /// credentials and database (its host is ignored).
    Sentinel { sentinels: Vec<String>, master_name: String, node_url: Option<String> },
}

/// A connection of any topology, usable with every redis-rs command.
#[derive(Clone)]
enum AnyConn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(MultiplexedConnection),
}

impl ConnectionLike for AnyConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        p: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(p, offset, count),
            Self::Cluster(c) => c.req_packed_commands(p, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(p, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
        }
    }
}

/// Sentinel: the connection to the current master, re-resolved after a failure so a
/// failover is followed.
struct SentinelConn {
    client: Mutex<SentinelClient>,
    current: Mutex<Option<MultiplexedConnection>>,
}

enum Source {
    Fixed(AnyConn),
    Sentinel(Box<SentinelConn>),
}

pub struct RedisStore {
    source: Source,
    prefix: String,
    timeout: Duration,
}

fn tls(ca: &[u8]) -> ::redis::TlsCertificates {
    ::redis::TlsCertificates { client_tls: None, root_cert: Some(ca.to_vec()) }
}

fn unavailable(e: RedisError) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

fn corrupt(e: serde_json::Error) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

fn json<T: serde::Serialize>(v: &T) -> StoreResult<String> {
    serde_json::to_string(v).map_err(corrupt)
}

fn parse<T: serde::de::DeserializeOwned>(s: &str) -> StoreResult<T> {
    serde_json::from_str(s).map_err(corrupt)
}

/// KEYS: the code, its grant's hash. ARGV: the code's SHA-256 (raw bytes), the TTL of a grant
/// with no record.
/// A live code is taken and its hash recorded on the grant (one field; `GrantStore::put`
/// keeps it with the record), returning `L<record json>`; a code already taken returns `U`
/// only if the grant holds exactly its hash (a forged secret with a real grant id finds
/// nothing), else nil. Both keys share the grant's hash tag, so Cluster keeps one slot.
static REDEEM: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('GET', KEYS[1])
if v then
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'code', ARGV[1])
  if redis.call('TTL', KEYS[2]) < 0 then redis.call('EXPIRE', KEYS[2], ARGV[2]) end
  return 'L' .. v
end
if redis.call('HGET', KEYS[2], 'code') == ARGV[1] then return 'U' end
return false
"#,
    )
});

/// The key kind of transactions: the record's shape is part of it (see `TransactionRecord`).
const TXN: &str = "txn2";

/// KEYS: the transaction. ARGV: the hex SHA-256 of the presenting browser's binding cookie.
/// Returns nil when absent, `B` when another browser started it (left in place), `C` for a
/// record that is not JSON, and
/// `T<record json>` once taken. The hashes compared are of a 32-byte random secret, so a
/// plain comparison leaks nothing usable.
static TAKE_BOUND: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r#"
local v = redis.call('GET', KEYS[1])
if not v then return false end
local ok, r = pcall(cjson.decode, v)
if not ok then return 'C' end
if r['browser'] ~= ARGV[1] then return 'B' end
redis.call('DEL', KEYS[1])
return 'T' .. v
"#,
    )
});

/// KEYS: grant hash, rotated set, revocation marker. ARGV: presented, next, now, revoke ttl.
/// Returns {1, record json, last_used} when rotated, {2} on reuse (family revoked), {0} else.
static ROTATE: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r#"
local f = redis.call('HMGET', KEYS[1], 'refresh', 'last_used', 'expires_at', 'idle', 'rec')
if not f[1] then return {0} end
local now = tonumber(ARGV[3])
if f[1] == ARGV[1] then
  if now >= tonumber(f[3]) or now >= tonumber(f[2]) + tonumber(f[4]) then return {0} end
  redis.call('SADD', KEYS[2], ARGV[1])
  redis.call('EXPIREAT', KEYS[2], f[3])
  redis.call('HSET', KEYS[1], 'refresh', ARGV[2], 'last_used', ARGV[3])
  return {1, f[5]}
end
if redis.call('SISMEMBER', KEYS[2], ARGV[1]) == 1 then
  redis.call('DEL', KEYS[1], KEYS[2])
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[4])
  return {2}
end
return {0}
"#,
    )
});

/// KEYS: grant hash, rotated set, revocation marker. ARGV: ttl.
static REVOKE_GRANT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r#"
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('SET', KEYS[3], '1', 'EX', ARGV[1])
return 1
"#,
    )
});

/// A new refresh family, unless the grant is already revoked (KEYS: hash, rotated, marker;
/// ARGV: record, refresh hash, last used, expires at, idle TTL). The hash may already hold the
/// redeemed code's field, which stays.
static PUT_GRANT: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r#"
if redis.call('EXISTS', KEYS[3]) == 1 then return 0 end
redis.call('DEL', KEYS[2])
redis.call('HSET', KEYS[1], 'rec', ARGV[1], 'refresh', ARGV[2], 'last_used', ARGV[3], 'expires_at', ARGV[4], 'idle', ARGV[5])
redis.call('EXPIREAT', KEYS[1], ARGV[4])
return 1
"#,
    )
});

/// INCR with the window's TTL set by the first increment only.
static INCR_WINDOW: std::sync::LazyLock<Script> = std::sync::LazyLock::new(|| {
    Script::new(
        r#"
local n = redis.call('INCR', KEYS[1])
if n == 1 then redis.call('EXPIRE', KEYS[1], ARGV[1]) end
return n
"#,
    )
});

impl RedisStore {
    /// Connect. Fails if Redis cannot be reached now; once connected, the connection
    /// re-establishes itself after an outage.
    pub async fn connect(config: &RedisConfig) -> StoreResult<Self> {
        let t = config.timeout;
        let source = match &config.topology {
            Topology::Single(url) => {
                let client = match &config.tls_ca {
                    None => ::redis::Client::open(url.as_str()),
                    Some(ca) => ::redis::Client::build_with_tls(url.as_str(), tls(ca)),
                }
                .map_err(unavailable)?;
                let cfg = ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(t))
                    .set_response_timeout(Some(t))
                    .set_number_of_retries(1)
                    .set_max_delay(Duration::from_millis(500));
                let manager = tokio::time::timeout(t * 4, ConnectionManager::new_with_config(client, cfg))
                    .await
                    .map_err(|_| StoreError::Unavailable(format!("no answer from Redis within {:?}", t * 4)))?
                    .map_err(unavailable)?;
                Source::Fixed(AnyConn::Single(manager))
            }
            Topology::Cluster(nodes) => {
                let mut builder = ::redis::cluster::ClusterClient::builder(nodes.iter().map(String::as_str));
                if let Some(ca) = &config.tls_ca {
                    builder = builder.certs(tls(ca));
                }
                let client =
                    builder.connection_timeout(t).response_timeout(t).retries(2).build().map_err(unavailable)?;
                let conn = tokio::time::timeout(t * 4, client.get_async_connection())
                    .await
                    .map_err(|_| StoreError::Unavailable("no answer from the Redis Cluster".into()))?
                    .map_err(unavailable)?;
                Source::Fixed(AnyConn::Cluster(conn))
            }
            Topology::Sentinel { sentinels, master_name, node_url } => {
                let node = match node_url {
                    None => None,
                    Some(u) => {
                        let info =
                            ::redis::IntoConnectionInfo::into_connection_info(u.as_str()).map_err(unavailable)?;
                        Some(
                            ::redis::sentinel::SentinelNodeConnectionInfo::default()
                                .set_redis_connection_info(info.redis_settings().clone()),
                        )
                    }
                };
                let client = SentinelClient::build(
                    sentinels.iter().map(String::as_str).collect(),
                    master_name.clone(),
                    node,
                    SentinelServerType::Master,
                )
                .map_err(unavailable)?;
                Source::Sentinel(Box::new(SentinelConn { client: Mutex::new(client), current: Mutex::new(None) }))
            }
        };
        let store = Self { source, prefix: config.key_prefix.clone(), timeout: t };
        store.conn().await?;
        Ok(store)
    }

    async fn conn(&self) -> StoreResult<AnyConn> {
        match &self.source {
            Source::Fixed(c) => Ok(c.clone()),
            Source::Sentinel(s) => {
                let mut current = s.current.lock().await;
                if let Some(c) = current.as_ref() {
                    return Ok(AnyConn::Sentinel(c.clone()));
                }
                let mut client = s.client.lock().await;
                let c = tokio::time::timeout(self.timeout * 2, client.get_async_connection())
                    .await
                    .map_err(|_| StoreError::Unavailable("no answer from the Redis Sentinels".into()))?
                    .map_err(unavailable)?;
                *current = Some(c.clone());
                Ok(AnyConn::Sentinel(c))
            }
        }
    }

    /// After a failed call, forget the Sentinel master so the next call asks again.
    async fn forget(&self) {
        if let Source::Sentinel(s) = &self.source {
            *s.current.lock().await = None;
        }
    }

    /// Run one command or script invocation with the deadline.
    async fn run<T, F, Fut>(&self, f: F) -> StoreResult<T>
    where
        F: FnOnce(AnyConn) -> Fut,
        Fut: std::future::Future<Output = ::redis::RedisResult<T>>,
    {
        let conn = self.conn().await?;
        match tokio::time::timeout(self.timeout, f(conn)).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() {
                    self.forget().await;
                }
                Err(unavailable(e))
            }
            Err(_) => {
                self.forget().await;
                Err(StoreError::Unavailable(format!("Redis did not answer within {:?}", self.timeout)))
            }
        }
    }

    async fn query<T: FromRedisValue + Send + 'static>(&self, cmd: Cmd) -> StoreResult<T> {
        self.run(|mut c| async move { cmd.query_async::<T>(&mut c).await }).await
    }

    fn key(&self, kind: &str, id: &str) -> String {
        format!("{}:{kind}:{id}", self.prefix)
    }

    /// A live code's key: its hash, tagged with the grant named in it so the redeem script
    /// reaches the grant in the same Cluster slot. The kind `code2` keeps codes of the old
    /// shape (no grant id) from being misread; those expire within the code TTL.
    fn code_key(&self, code: &AuthCode) -> Option<String> {
        let grant = code.grant_id()?;
        Some(format!("{}:code2:{{{grant}}}:{}", self.prefix, code.hash().to_hex()))
    }

    /// The three keys of a refresh family, tagged so Cluster keeps them in one slot.
    fn grant_keys(&self, id: &str) -> [String; 3] {
        [
            format!("{}:grant:{{{id}}}", self.prefix),
            format!("{}:grant:{{{id}}}:rotated", self.prefix),
            format!("{}:revoked:grant:{{{id}}}", self.prefix),
        ]
    }

    /// A revocation marker's key. `grant:<id>` markers share the family's hash tag.
    fn revoked_key(&self, key: &str) -> String {
        match key.strip_prefix("grant:") {
            Some(id) => self.grant_keys(id)[2].clone(),
            None => self.key("revoked", key),
        }
    }

    async fn set_ex(&self, key: String, value: String, ttl: u64) -> StoreResult<()> {
        self.query::<()>(::redis::cmd("SET").arg(key).arg(value).arg("EX").arg(ttl.max(1)).to_owned()).await
    }

    async fn get_string(&self, key: String) -> StoreResult<Option<String>> {
        self.query(::redis::cmd("GET").arg(key).to_owned()).await
    }

    /// What Redis would do under memory pressure; anything but `noeviction` silently drops
    /// replay caches and counters.
    pub async fn maxmemory_policy(&self) -> StoreResult<Option<String>> {
        let v: Vec<String> =
            match self.query(::redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy").to_owned()).await {
                Ok(v) => v,
                // Managed services often refuse CONFIG: nothing to say then.
                Err(_) => return Ok(None),
            };
        Ok(v.get(1).cloned())
    }
}

#[async_trait]
impl TransactionStore for RedisStore {
    async fn put(&self, txn: &TransactionRecord, ttl: u64) -> StoreResult<()> {
        self.set_ex(self.key(TXN, txn.id.as_str()), json(txn)?, ttl).await
    }
    async fn get(&self, id: &TransactionId) -> StoreResult<Option<TransactionRecord>> {
        self.get_string(self.key(TXN, id.as_str())).await?.map(|s| parse(&s)).transpose()
    }
    async fn take(&self, id: &TransactionId) -> StoreResult<Option<TransactionRecord>> {
        let v: Option<String> = self.query(::redis::cmd("GETDEL").arg(self.key(TXN, id.as_str())).to_owned()).await?;
        v.map(|s| parse(&s)).transpose()
    }
    async fn take_bound(&self, id: &TransactionId, browser: &SecretHash) -> StoreResult<Taken> {
        let key = self.key(TXN, id.as_str());
        let browser = browser.to_hex();
        let v: Option<String> =
            self.run(|mut c| async move { TAKE_BOUND.key(key).arg(browser).invoke_async(&mut c).await }).await?;
        Ok(match v.as_deref().map(|s| s.split_at_checked(1)) {
            None => Taken::Missing,
            Some(Some(("B", _))) => Taken::OtherBrowser,
            Some(Some(("T", rec))) => Taken::Mine(Box::new(parse(rec)?)),
            Some(_) => return Err(StoreError::Corrupt("unknown take_bound answer".into())),
        })
    }
}

#[async_trait]
impl LogoutStore for RedisStore {
    async fn put(&self, record: &LogoutRecord, ttl: u64) -> StoreResult<()> {
        self.set_ex(self.key("logout", &record.id), json(record)?, ttl).await
    }
    async fn take(&self, id: &str) -> StoreResult<Option<LogoutRecord>> {
        let v: Option<String> = self.query(::redis::cmd("GETDEL").arg(self.key("logout", id)).to_owned()).await?;
        v.map(|s| parse(&s)).transpose()
    }
}

#[async_trait]
impl CodeStore for RedisStore {
    async fn put(&self, code: &AuthCode, record: &CodeRecord, ttl: u64) -> StoreResult<()> {
        let Some(key) = self.code_key(code) else {
            return Err(StoreError::Corrupt("an authorization code without a grant id".into()));
        };
        self.set_ex(key, json(record)?, ttl).await
    }
    async fn redeem(&self, code: &AuthCode, grant_ttl: u64) -> StoreResult<Redeemed> {
        let (Some(key), Some(grant_id)) = (self.code_key(code), code.grant_id()) else {
            return Ok(Redeemed::Unknown);
        };
        let [grant, _, _] = self.grant_keys(grant_id);
        // The raw 32 bytes, not hex: on a family's hash (hashtable-encoded, one allocation
        // per value) the field then costs about half as much.
        let hash = code.hash().0;
        let v: Option<String> = self
            .run(|mut c| async move {
                REDEEM.key(key).key(grant).arg(hash.as_slice()).arg(grant_ttl.max(1)).invoke_async(&mut c).await
            })
            .await?;
        Ok(match v {
            None => Redeemed::Unknown,
            Some(s) => match s.split_at_checked(1) {
                Some(("L", rec)) => Redeemed::Fresh(Box::new(parse(rec)?)),
                Some(("U", "")) => Redeemed::Reused { grant_id: grant_id.to_owned() },
                _ => return Err(StoreError::Corrupt("unknown code slot".into())),
            },
        })
    }
}

#[async_trait]
impl SessionStore for RedisStore {
    async fn put(&self, key: SecretHash, session: &SessionRecord, ttl: u64) -> StoreResult<()> {
        self.set_ex(self.key("session", &key.to_hex()), json(session)?, ttl).await
    }
    async fn get(&self, key: SecretHash) -> StoreResult<Option<SessionRecord>> {
        self.get_string(self.key("session", &key.to_hex())).await?.map(|s| parse(&s)).transpose()
    }
    async fn delete(&self, key: SecretHash) -> StoreResult<()> {
        self.query::<()>(::redis::cmd("DEL").arg(self.key("session", &key.to_hex())).to_owned()).await
    }
}

#[async_trait]
impl GrantStore for RedisStore {
    async fn put(&self, grant: &GrantRecord) -> StoreResult<()> {
        let [hash, rotated, marker] = self.grant_keys(&grant.id);
        let refresh = grant.refresh.map(|h| h.to_hex()).unwrap_or_default();
        let record = json(grant)?;
        let (last_used, expires_at, idle) = (grant.last_used_at, grant.expires_at, grant.idle_ttl);
        self.run(|mut c| async move {
            PUT_GRANT
                .key(hash)
                .key(rotated)
                .key(marker)
                .arg(record)
                .arg(refresh)
                .arg(last_used)
                .arg(expires_at)
                .arg(idle)
                .invoke_async::<i64>(&mut c)
                .await
        })
        .await
        .map(|_| ())
    }

    async fn get(&self, id: &str) -> StoreResult<Option<GrantRecord>> {
        let [hash, _, _] = self.grant_keys(id);
        let f: Vec<Option<String>> =
            self.query(::redis::cmd("HMGET").arg(hash).arg("rec").arg("refresh").arg("last_used").to_owned()).await?;
        let (Some(Some(rec)), Some(refresh), Some(last_used)) = (f.first(), f.get(1), f.get(2)) else {
            return Ok(None);
        };
        let mut g: GrantRecord = parse(rec)?;
        g.refresh = refresh.as_deref().filter(|r| !r.is_empty()).map(parse_hash).transpose()?;
        g.last_used_at = last_used.as_deref().and_then(|v| v.parse().ok()).unwrap_or(g.last_used_at);
        // Rotated-out hashes stay in Redis for reuse detection; they are not read back.
        g.rotated.clear();
        Ok(Some(g))
    }

    async fn rotate(&self, id: &str, presented: SecretHash, next: SecretHash, now: u64) -> StoreResult<Rotation> {
        let [hash, rotated, marker] = self.grant_keys(id);
        let revoke_ttl = 30 * 86400_u64;
        let out: Vec<Value> = self
            .run(|mut c| async move {
                ROTATE
                    .key(hash)
                    .key(rotated)
                    .key(marker)
                    .arg(presented.to_hex())
                    .arg(next.to_hex())
                    .arg(now)
                    .arg(revoke_ttl)
                    .invoke_async(&mut c)
                    .await
            })
            .await?;
        let tag =
            out.first().map(i64::from_redis_value_ref).transpose().map_err(|e| StoreError::Corrupt(e.to_string()))?;
        Ok(match tag {
            Some(1) => {
                let rec = out
                    .get(1)
                    .map(String::from_redis_value_ref)
                    .transpose()
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let mut g: GrantRecord = parse(&rec.unwrap_or_default())?;
                g.refresh = Some(next);
                g.last_used_at = now;
                g.rotated.clear();
                Rotation::Rotated(Box::new(g))
            }
            Some(2) => Rotation::Reused,
            _ => Rotation::Invalid,
        })
    }

    async fn revoke(&self, id: &str, ttl: u64) -> StoreResult<()> {
        let [hash, rotated, marker] = self.grant_keys(id);
        self.run(|mut c| async move {
            REVOKE_GRANT.key(hash).key(rotated).key(marker).arg(ttl.max(1)).invoke_async::<i64>(&mut c).await
        })
        .await
        .map(|_| ())
    }
}

fn parse_hash(hex: &str) -> StoreResult<SecretHash> {
    serde_json::from_value(serde_json::Value::String(hex.to_owned())).map_err(corrupt)
}

#[async_trait]
impl RevocationStore for RedisStore {
    async fn revoke(&self, key: &str, ttl: u64) -> StoreResult<()> {
        self.set_ex(self.revoked_key(key), "1".into(), ttl).await
    }
    async fn any_revoked(&self, keys: &[&str]) -> StoreResult<bool> {
        // One EXISTS per key: the keys live in different Cluster slots.
        let checks = keys.iter().map(|k| self.query::<i64>(::redis::cmd("EXISTS").arg(self.revoked_key(k)).to_owned()));
        for n in futures_util::future::join_all(checks).await {
            if n? > 0 {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

#[async_trait]
impl UserStore for RedisStore {
    async fn get(&self, id: &UserId) -> StoreResult<Option<UserRecord>> {
        self.get_string(self.key("user", id.as_str())).await?.map(|s| parse(&s)).transpose()
    }
    async fn put(&self, user: &UserRecord) -> StoreResult<()> {
        // Links first: a crash in between leaves a link to a user that is written on the next
        // login, never a user whose identity cannot be found.
        for identity in &user.identities {
            let link = self.key("identity", &format!("{}:{}", identity.connection, identity.user_id));
            self.query::<()>(::redis::cmd("SET").arg(link).arg(user.user_id.as_str()).to_owned()).await?;
        }
        if let (Some(email), true) = (&user.email, user.email_verified) {
            let index = self.key("email", &email.to_lowercase());
            self.query::<()>(::redis::cmd("SET").arg(index).arg(user.user_id.as_str()).to_owned()).await?;
        }
        self.query::<()>(::redis::cmd("SET").arg(self.key("user", user.user_id.as_str())).arg(json(user)?).to_owned())
            .await
    }
    async fn find_by_verified_email(&self, email: &str) -> StoreResult<Option<UserId>> {
        Ok(self.get_string(self.key("email", &email.to_lowercase())).await?.and_then(|id| UserId::parse(&id).ok()))
    }
    async fn unlink(&self, user: &UserId, connection: &str, upstream_user_id: &str) -> StoreResult<Option<UserRecord>> {
        let Some(mut record) = UserStore::get(self, user).await? else { return Ok(None) };
        let before = record.identities.len();
        record.identities.retain(|i| !(i.connection.as_str() == connection && i.user_id == upstream_user_id));
        if record.identities.len() == before {
            return Ok(None);
        }
        // The user first, then the link: a crash in between leaves a link pointing at a user
        // without that identity, which the identity's next login repairs.
        self.query::<()>(::redis::cmd("SET").arg(self.key("user", user.as_str())).arg(json(&record)?).to_owned())
            .await?;
        let link = self.key("identity", &format!("{connection}:{upstream_user_id}"));
        self.query::<()>(::redis::cmd("DEL").arg(link).to_owned()).await?;
        Ok(Some(record))
    }
    async fn find_by_identity(&self, connection: &str, upstream_user_id: &str) -> StoreResult<Option<UserId>> {
        let link = self.key("identity", &format!("{connection}:{upstream_user_id}"));
        Ok(self.get_string(link).await?.and_then(|id| UserId::parse(&id).ok()))
    }
}

#[async_trait]
impl KeyStore for RedisStore {
    async fn load(&self) -> StoreResult<Option<KeyRingRecord>> {
        self.get_string(self.key("keys", "ring")).await?.map(|s| parse(&s)).transpose()
    }
    async fn create_if_absent(&self, ring: &KeyRingRecord) -> StoreResult<KeyRingRecord> {
        let key = self.key("keys", "ring");
        let _: Option<String> = self.query(::redis::cmd("SET").arg(&key).arg(json(ring)?).arg("NX").to_owned()).await?;
        let stored = self.get_string(key).await?.ok_or_else(|| StoreError::Corrupt("key ring vanished".into()))?;
        parse(&stored)
    }
    async fn save(&self, ring: &KeyRingRecord) -> StoreResult<()> {
        self.query::<()>(::redis::cmd("SET").arg(self.key("keys", "ring")).arg(json(ring)?).to_owned()).await
    }
}

#[async_trait]
impl ReplayCache for RedisStore {
    async fn insert_once(&self, key: &str, ttl: u64) -> StoreResult<bool> {
        let set: Option<String> = self
            .query(
                ::redis::cmd("SET")
                    .arg(self.key("replay", key))
                    .arg("1")
                    .arg("NX")
                    .arg("EX")
                    .arg(ttl.max(1))
                    .to_owned(),
            )
            .await?;
        Ok(set.is_some())
    }
}

#[async_trait]
impl Counters for RedisStore {
    async fn incr(&self, key: &str, ttl: u64) -> StoreResult<u64> {
        let key = self.key("counter", key);
        self.run(|mut c| async move { INCR_WINDOW.key(key).arg(ttl.max(1)).invoke_async(&mut c).await }).await
    }
    async fn get(&self, key: &str) -> StoreResult<u64> {
        Ok(self.query::<Option<u64>>(::redis::cmd("GET").arg(self.key("counter", key)).to_owned()).await?.unwrap_or(0))
    }
    async fn reset(&self, key: &str) -> StoreResult<()> {
        self.query::<()>(::redis::cmd("DEL").arg(self.key("counter", key)).to_owned()).await
    }
}

#[async_trait]
impl ActionCacheStore for RedisStore {
    async fn load(&self, action: &str) -> StoreResult<Option<String>> {
        self.get_string(self.key("action-cache", action)).await
    }
    async fn save(&self, action: &str, entries: &str, ttl: u64) -> StoreResult<()> {
        self.set_ex(self.key("action-cache", action), entries.to_owned(), ttl).await
    }
}

#[async_trait]
impl Health for RedisStore {
    async fn ping(&self) -> StoreResult<()> {
        self.query::<String>(::redis::cmd("PING").to_owned()).await.map(|_| ())
    }
}

/// The store handle with every aggregate (keys included) in Redis.
pub fn store(backend: Arc<RedisStore>) -> Store {
    Store::from_backend(backend.clone(), backend)
}
