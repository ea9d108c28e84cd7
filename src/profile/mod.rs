//! Upstream identity -> the unified profile: `user_id = <strategy>|<upstream subject>`, the
//! `identities[]` entry, and the fields refreshed on every login.

use gatehouse_connector::UpstreamIdentity;

use crate::store::{Identity, StoreError, UserRecord, UserStore};
use crate::types::{ConnectionId, InvalidValue, UserId};

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("upstream identity cannot become a user id: {0}")]
    BadSubject(#[from] InvalidValue),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Social strategies: their identities are marked `is_social` like Auth0's.
fn is_social(strategy: &str) -> bool {
    !matches!(strategy, "auth0" | "samlp" | "adfs" | "ldap" | "waad")
}

/// Load or create the user for this identity and record the login.
pub async fn upsert(
    users: &dyn UserStore,
    connection: &ConnectionId,
    strategy: &str,
    identity: &UpstreamIdentity,
    now: u64,
) -> Result<UserRecord, ProfileError> {
    let user_id = match users.find_by_identity(connection.as_str(), &identity.subject).await? {
        Some(linked) => linked,
        None => UserId::new(strategy, &identity.subject)?,
    };
    let entry = Identity {
        connection: connection.clone(),
        provider: strategy.to_owned(),
        user_id: identity.subject.clone(),
        is_social: is_social(strategy),
        profile_data: identity.raw.clone(),
    };
    let mut user = users.get(&user_id).await?.unwrap_or_else(|| UserRecord {
        user_id: user_id.clone(),
        email: None,
        email_verified: false,
        name: None,
        given_name: None,
        family_name: None,
        nickname: None,
        picture: None,
        locale: None,
        groups: Vec::new(),
        identities: Vec::new(),
        app_metadata: Default::default(),
        user_metadata: Default::default(),
        created_at: now,
        updated_at: now,
        last_login: now,
        logins_count: 0,
    });
    user.email = identity.email.clone();
    user.email_verified = identity.email.is_some() && identity.email_verified;
    user.name = identity.name.clone().or_else(|| identity.email.clone());
    user.given_name = identity.given_name.clone();
    user.family_name = identity.family_name.clone();
    user.nickname = identity.nickname.clone();
    user.picture = identity.picture.clone();
    user.locale = identity.locale.clone();
    user.groups = identity.groups.clone();
    match user.identities.iter_mut().find(|i| i.connection == entry.connection && i.user_id == entry.user_id) {
        Some(existing) => *existing = entry,
        None => user.identities.push(entry),
    }
    user.updated_at = now;
    user.last_login = now;
    user.logins_count += 1;
    users.put(&user).await?;
    Ok(user)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn a_second_login_updates_the_same_user() {
        let store = MemoryStore::new(ManualClock::new(10));
        let conn = ConnectionId::parse("users").unwrap();
        let mut id = UpstreamIdentity {
            subject: "42".into(),
            email: Some("a@x".into()),
            email_verified: true,
            ..Default::default()
        };
        let first = upsert(&store, &conn, "auth0", &id, 10).await.unwrap();
        assert_eq!(first.user_id.as_str(), "auth0|42");
        assert_eq!(first.logins_count, 1);
        assert!(!first.identities[0].is_social);
        id.name = Some("Ada".into());
        let second = upsert(&store, &conn, "auth0", &id, 20).await.unwrap();
        assert_eq!(second.logins_count, 2);
        assert_eq!(second.created_at, 10);
        assert_eq!(second.name.as_deref(), Some("Ada"));
        assert_eq!(second.identities.len(), 1);
    }

    #[tokio::test]
    async fn an_unverified_email_stays_unverified() {
        let store = MemoryStore::new(ManualClock::new(10));
        let conn = ConnectionId::parse("gh").unwrap();
        let id = UpstreamIdentity {
            subject: "7".into(),
            email: Some("a@x".into()),
            email_verified: false,
            ..Default::default()
        };
        let u = upsert(&store, &conn, "github", &id, 10).await.unwrap();
        assert!(!u.email_verified);
        assert!(u.identities[0].is_social);
    }
}
