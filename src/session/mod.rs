//! The browser's SSO session. The cookie holds a random secret; the store keeps the record
//! under its hash, and the public `sid` (the ID token claim) is a different value, so an ID
//! token never reveals the cookie.

use crate::store::{SessionRecord, Store, StoreResult};
use crate::types::{ConnectionId, SecretHash, UserId, random_token};

pub const COOKIE: &str = "gh_session";
/// Binds login transactions to the browser that started them.
pub const BROWSER_COOKIE: &str = "gh_browser";

/// A session just opened: the record and the cookie value to set.
pub struct Opened {
    pub record: SessionRecord,
    pub cookie: String,
}

/// Open a new session (a new cookie value every login: the id rotates at login).
pub async fn open(
    store: &Store,
    user_id: &UserId,
    connection: &ConnectionId,
    amr: Vec<String>,
    now: u64,
    ttl: u64,
) -> StoreResult<Opened> {
    let cookie = random_token(32);
    let record = SessionRecord {
        sid: random_token(16),
        user_id: user_id.clone(),
        connection: connection.clone(),
        auth_time: now,
        amr,
        created_at: now,
        expires_at: now + ttl,
    };
    store.sessions.put(SecretHash::of(&cookie), &record, ttl).await?;
    Ok(Opened { record, cookie })
}

/// The live session behind a cookie value, if any.
pub async fn find(store: &Store, cookie: Option<&str>, now: u64) -> StoreResult<Option<SessionRecord>> {
    let Some(cookie) = cookie.filter(|c| !c.is_empty() && c.len() <= 128) else { return Ok(None) };
    Ok(store.sessions.get(SecretHash::of(cookie)).await?.filter(|s| s.expires_at > now))
}

pub async fn close(store: &Store, cookie: &str) -> StoreResult<()> {
    store.sessions.delete(SecretHash::of(cookie)).await
}
