//! The browser's SSO session. The cookie holds a random secret; the store keeps the record
//! under its hash, and the public `sid` (the ID token claim) is a different value, so an ID
//! token never reveals the cookie.

use crate::store::{SessionRecord, Store, StoreResult};
use crate::types::{ConnectionId, SecretHash, UserId, random_token};

/// The cookie names. Under https they carry the `__Host-` prefix, so a sibling subdomain
/// cannot plant or overwrite them (the browser accepts such a cookie only Secure, with
/// `Path=/` and no `Domain`).
pub fn cookie_names(secure: bool) -> CookieNames {
    if secure {
        CookieNames { session: "__Host-gh_session", browser: "__Host-gh_browser" }
    } else {
        CookieNames { session: "gh_session", browser: "gh_browser" }
    }
}

#[derive(Debug, Clone, Copy)]
pub struct CookieNames {
    /// The SSO session.
    pub session: &'static str,
    /// Binds login transactions to the browser that started them.
    pub browser: &'static str,
}

/// A session just opened: the record and the cookie value to set.
pub struct Opened {
    pub record: SessionRecord,
    pub cookie: String,
}

/// What a new session records.
pub struct NewSession<'a> {
    /// The public session id (the ID token's `sid`), not the cookie.
    pub sid: String,
    pub user_id: &'a UserId,
    pub connection: &'a ConnectionId,
    pub amr: Vec<String>,
    pub now: u64,
    pub ttl: u64,
    /// The connector's facts for ending the upstream session (SAML Single Logout).
    pub upstream: Option<serde_json::Value>,
}

/// Open a new session (a new cookie value every login: the id rotates at login).
pub async fn open(store: &Store, new: NewSession<'_>) -> StoreResult<Opened> {
    let cookie = random_token(32);
    let ttl = new.ttl;
    let record = detached(new);
    store.sessions.put(SecretHash::of(&cookie), &record, ttl).await?;
    Ok(Opened { record, cookie })
}

/// A session record that is never stored and has no cookie: the tokens of one login that
/// must not sign the browser in (an IdP-initiated login).
pub fn detached(new: NewSession<'_>) -> SessionRecord {
    SessionRecord {
        sid: new.sid,
        user_id: new.user_id.clone(),
        connection: new.connection.clone(),
        auth_time: new.now,
        amr: new.amr,
        created_at: new.now,
        expires_at: new.now + new.ttl,
        upstream: new.upstream,
    }
}

/// The live session behind a cookie value, if any.
pub async fn find(store: &Store, cookie: Option<&str>, now: u64) -> StoreResult<Option<SessionRecord>> {
    let Some(cookie) = cookie.filter(|c| !c.is_empty() && c.len() <= 128) else { return Ok(None) };
    Ok(store.sessions.get(SecretHash::of(cookie)).await?.filter(|s| s.expires_at > now))
}

pub async fn close(store: &Store, cookie: &str) -> StoreResult<()> {
    store.sessions.delete(SecretHash::of(cookie)).await
}
