//! Upstream identity -> the unified profile: `user_id = <strategy>|<upstream subject>`, the
//! `identities[]` entry, attribute mapping, profile sync, and account linking.
//!
//! Linking is off unless a connection turns it on, and then it links only when the upstream
//! says the email is verified *and* the existing user's email is verified too. Linking on an
//! unverified email would let anyone who registers someone else's address at a lax provider
//! take over (or pre-create) that person's account.

use gatehouse_connector::UpstreamIdentity;

use crate::store::{Identity, StoreError, UserRecord, UserStore};
use crate::types::{ConnectionId, InvalidValue, UserId};

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("upstream identity cannot become a user id: {0}")]
    BadSubject(#[from] InvalidValue),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Another connection of the same strategy already created this user id: refusing is
    /// the only safe answer (merging would hand one person's account to another).
    #[error("user {0} already exists through another connection")]
    Conflict(UserId),
}

/// When profile fields follow the upstream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sync {
    /// Refresh the profile from the upstream at every login (Auth0's default).
    #[default]
    EveryLogin,
    /// Take the upstream's values when the user is created, then leave them alone.
    OnCreate,
}

/// A profile field an upstream claim can be mapped to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Email,
    EmailVerified,
    Name,
    GivenName,
    FamilyName,
    Nickname,
    Picture,
    Locale,
    Groups,
}

impl Field {
    pub const NAMES: [&'static str; 9] =
        ["email", "email_verified", "name", "given_name", "family_name", "nickname", "picture", "locale", "groups"];

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "email" => Self::Email,
            "email_verified" => Self::EmailVerified,
            "name" => Self::Name,
            "given_name" => Self::GivenName,
            "family_name" => Self::FamilyName,
            "nickname" => Self::Nickname,
            "picture" => Self::Picture,
            "locale" => Self::Locale,
            "groups" => Self::Groups,
            _ => return None,
        })
    }
}

/// A connection's profile rules.
#[derive(Debug, Clone, Default)]
pub struct Policy {
    /// Link a new identity to the existing user with the same verified email.
    pub link_by_verified_email: bool,
    pub sync: Sync,
    /// Profile field <- the first of these upstream claims that has a value (a top-level
    /// name or a JSON pointer); the connector's own value when none has.
    pub mapping: Vec<(Field, Vec<String>)>,
}

/// Social strategies: their identities are marked `is_social` like Auth0's.
fn is_social(strategy: &str) -> bool {
    !matches!(strategy, "auth0" | "samlp" | "adfs" | "ldap" | "waad" | "oidc")
}

fn claim<'a>(raw: &'a serde_json::Map<String, serde_json::Value>, at: &str) -> Option<&'a serde_json::Value> {
    match at.strip_prefix('/') {
        Some(_) => {
            let (first, rest) = at[1..].split_once('/').map_or((&at[1..], ""), |(a, b)| (a, b));
            let v = raw.get(first)?;
            if rest.is_empty() { Some(v) } else { v.pointer(&format!("/{rest}")) }
        }
        None => raw.get(at),
    }
}

fn as_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) if !s.is_empty() => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// The identity with the connection's attribute mapping applied.
pub fn mapped(identity: &UpstreamIdentity, policy: &Policy) -> UpstreamIdentity {
    let mut out = identity.clone();
    let verified_email = identity.email_verified.then(|| identity.email.clone()).flatten();
    for (field, claims) in &policy.mapping {
        let first =
            claims.iter().find_map(|c| claim(&identity.raw, c).filter(|v| v.is_array() || as_text(v).is_some()));
        let Some(value) = first else { continue };
        let text = as_text(value);
        match field {
            Field::Email => out.email = text.or(out.email),
            Field::EmailVerified => out.email_verified = text.as_deref() == Some("true"),
            Field::Name => out.name = text.or(out.name),
            Field::GivenName => out.given_name = text.or(out.given_name),
            Field::FamilyName => out.family_name = text.or(out.family_name),
            Field::Nickname => out.nickname = text.or(out.nickname),
            Field::Picture => out.picture = text.or(out.picture),
            Field::Locale => out.locale = text.or(out.locale),
            Field::Groups => {
                if let Some(list) = value.as_array() {
                    out.groups = list.iter().filter_map(as_text).collect();
                } else if let Some(one) = text {
                    out.groups = vec![one];
                }
            }
        }
    }
    // `email_verified` speaks of the upstream's `email`. A remapped address is verified only
    // when it is that same address, or when the mapping names its own verification claim.
    let maps_verified = policy.mapping.iter().any(|(f, _)| *f == Field::EmailVerified);
    if !maps_verified && out.email.as_deref().map(str::to_lowercase) != verified_email.map(|e| e.to_lowercase()) {
        out.email_verified = false;
    }
    out
}

fn set_fields(user: &mut UserRecord, identity: &UpstreamIdentity) {
    user.email = identity.email.clone();
    user.email_verified = identity.email.is_some() && identity.email_verified;
    user.name = identity.name.clone().or_else(|| identity.email.clone());
    user.given_name = identity.given_name.clone();
    user.family_name = identity.family_name.clone();
    user.nickname = identity.nickname.clone();
    user.picture = identity.picture.clone();
    user.locale = identity.locale.clone();
    user.groups = identity.groups.clone();
}

/// Whose login this is.
#[derive(Debug, Clone)]
pub enum Resolved {
    /// The identity is already one of this user's.
    Existing(UserRecord),
    /// A new identity, to be linked to this user by verified email.
    Linked(UserRecord),
    /// Nobody yet: a user with this id will be created.
    New(UserId),
}

/// Find the user an identity belongs to, without writing anything. `identity` is already
/// [`mapped`] (the caller maps once and passes the result to [`record_login`] too).
pub async fn resolve(
    users: &dyn UserStore,
    connection: &ConnectionId,
    strategy: &str,
    policy: &Policy,
    identity: &UpstreamIdentity,
) -> Result<Resolved, ProfileError> {
    if let Some(id) = users.find_by_identity(connection.as_str(), &identity.subject).await?
        && let Some(user) = users.get(&id).await?
    {
        return Ok(Resolved::Existing(user));
    }
    Ok(match link_target(users, policy, identity).await? {
        Some(user) => Resolved::Linked(user),
        None => Resolved::New(UserId::new(strategy, &identity.subject)?),
    })
}

/// Metadata a new user starts with (from pre-user-registration Actions).
#[derive(Debug, Clone, Default)]
pub struct NewUserMetadata {
    pub app_metadata: serde_json::Map<String, serde_json::Value>,
    pub user_metadata: serde_json::Map<String, serde_json::Value>,
}

/// The connection an identity came through.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub connection: &'a ConnectionId,
    pub strategy: &'a str,
    pub policy: &'a Policy,
}

/// Record a login of `resolved`: create, link or update the user and count the login.
/// `identity` is already [`mapped`].
pub async fn record_login(
    users: &dyn UserStore,
    source: Source<'_>,
    identity: &UpstreamIdentity,
    resolved: Resolved,
    metadata: NewUserMetadata,
    now: u64,
) -> Result<UserRecord, ProfileError> {
    let Source { connection, strategy, policy } = source;
    let entry = Identity {
        connection: connection.clone(),
        provider: strategy.to_owned(),
        user_id: identity.subject.clone(),
        is_social: is_social(strategy),
        profile_data: identity.raw.clone(),
    };
    let (mut user, created, linked) = match resolved {
        Resolved::Existing(user) => (user, false, false),
        Resolved::Linked(user) => (user, false, true),
        Resolved::New(user_id) => {
            if users.get(&user_id).await?.is_some() {
                return Err(ProfileError::Conflict(user_id));
            }
            let fresh = UserRecord {
                user_id,
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
                app_metadata: metadata.app_metadata,
                user_metadata: metadata.user_metadata,
                created_at: now,
                updated_at: now,
                last_login: now,
                logins_count: 0,
            };
            (fresh, true, false)
        }
    };
    // The root profile follows the user's primary identity (the first); a linked identity
    // contributes its profile_data only.
    let primary = created
        || user.identities.first().is_some_and(|i| i.connection == entry.connection && i.user_id == entry.user_id);
    if created || (primary && policy.sync == Sync::EveryLogin) {
        set_fields(&mut user, identity);
    }
    match user.identities.iter_mut().find(|i| i.connection == entry.connection && i.user_id == entry.user_id) {
        Some(existing) => *existing = entry,
        None => user.identities.push(entry),
    }
    if linked {
        tracing::info!(user_id = %user.user_id, connection = %connection, "identity linked by verified email");
    }
    user.updated_at = now;
    user.last_login = now;
    user.logins_count += 1;
    users.put(&user).await?;
    Ok(user)
}

/// Load, link or create the user for this identity and record the login.
pub async fn upsert(
    users: &dyn UserStore,
    connection: &ConnectionId,
    strategy: &str,
    policy: &Policy,
    identity: &UpstreamIdentity,
    now: u64,
) -> Result<UserRecord, ProfileError> {
    let identity = mapped(identity, policy);
    let resolved = resolve(users, connection, strategy, policy, &identity).await?;
    let source = Source { connection, strategy, policy };
    record_login(users, source, &identity, resolved, NewUserMetadata::default(), now).await
}

/// The user a new identity links to, if linking is on and both emails are verified.
async fn link_target(
    users: &dyn UserStore,
    policy: &Policy,
    identity: &UpstreamIdentity,
) -> Result<Option<UserRecord>, ProfileError> {
    if !policy.link_by_verified_email || !identity.email_verified {
        return Ok(None);
    }
    let Some(email) = identity.email.as_deref() else { return Ok(None) };
    let Some(id) = users.find_by_verified_email(email).await? else { return Ok(None) };
    // The index may be stale: trust only the user record itself.
    Ok(users
        .get(&id)
        .await?
        .filter(|u| u.email_verified && u.email.as_deref().is_some_and(|e| e.eq_ignore_ascii_case(email))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::memory::MemoryStore;

    fn id(sub: &str, email: &str, verified: bool) -> UpstreamIdentity {
        UpstreamIdentity {
            subject: sub.into(),
            email: Some(email.into()),
            email_verified: verified,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn a_second_login_updates_the_same_user() {
        let store = MemoryStore::new(ManualClock::new(10));
        let conn = ConnectionId::parse("users").unwrap();
        let mut i = id("42", "a@x", true);
        let first = upsert(&store, &conn, "auth0", &Policy::default(), &i, 10).await.unwrap();
        assert_eq!(first.user_id.as_str(), "auth0|42");
        assert_eq!(first.logins_count, 1);
        assert!(!first.identities[0].is_social);
        i.name = Some("Ada".into());
        let second = upsert(&store, &conn, "auth0", &Policy::default(), &i, 20).await.unwrap();
        assert_eq!(second.logins_count, 2);
        assert_eq!(second.created_at, 10);
        assert_eq!(second.name.as_deref(), Some("Ada"));
        assert_eq!(second.identities.len(), 1);
    }

    #[tokio::test]
    async fn sync_on_create_keeps_the_first_values() {
        let store = MemoryStore::new(ManualClock::new(10));
        let conn = ConnectionId::parse("gh").unwrap();
        let policy = Policy { sync: Sync::OnCreate, ..Default::default() };
        let mut i = id("7", "a@x", false);
        i.name = Some("First".into());
        upsert(&store, &conn, "github", &policy, &i, 10).await.unwrap();
        i.name = Some("Changed".into());
        let u = upsert(&store, &conn, "github", &policy, &i, 20).await.unwrap();
        assert_eq!(u.name.as_deref(), Some("First"));
        assert!(u.identities[0].is_social);
    }

    #[tokio::test]
    async fn linking_needs_verified_emails_on_both_sides() {
        let store = MemoryStore::new(ManualClock::new(10));
        let (db, google, gh) = (
            ConnectionId::parse("db").unwrap(),
            ConnectionId::parse("google").unwrap(),
            ConnectionId::parse("gh").unwrap(),
        );
        let link = Policy { link_by_verified_email: true, ..Default::default() };
        let primary = upsert(&store, &db, "auth0", &Policy::default(), &id("1", "Ada@X.org", true), 10).await.unwrap();
        let linked = upsert(&store, &google, "google-oauth2", &link, &id("g-1", "ada@x.org", true), 20).await.unwrap();
        assert_eq!(linked.user_id, primary.user_id, "verified on both sides: one user");
        assert_eq!(linked.identities.len(), 2);
        assert_eq!(linked.name.as_deref(), Some("Ada@X.org"), "the primary identity keeps the root profile");
        let again = upsert(&store, &google, "google-oauth2", &link, &id("g-1", "ada@x.org", true), 30).await.unwrap();
        assert_eq!(again.user_id, primary.user_id, "the link is remembered");
        let separate = upsert(&store, &gh, "github", &link, &id("h-1", "ada@x.org", false), 30).await.unwrap();
        assert_eq!(separate.user_id.as_str(), "github|h-1", "an unverified upstream email never links");
        let no_policy =
            upsert(&store, &gh, "github", &Policy::default(), &id("h-2", "ada@x.org", true), 30).await.unwrap();
        assert_eq!(no_policy.user_id.as_str(), "github|h-2", "linking is off by default");
    }

    #[tokio::test]
    async fn an_unverified_existing_account_is_not_a_link_target() {
        let store = MemoryStore::new(ManualClock::new(10));
        let (db, google) = (ConnectionId::parse("db").unwrap(), ConnectionId::parse("google").unwrap());
        let link = Policy { link_by_verified_email: true, ..Default::default() };
        upsert(&store, &db, "auth0", &Policy::default(), &id("1", "victim@x.org", false), 10).await.unwrap();
        let u = upsert(&store, &google, "google-oauth2", &link, &id("g-9", "victim@x.org", true), 20).await.unwrap();
        assert_eq!(u.user_id.as_str(), "google-oauth2|g-9", "pre-account-takeover: no link to an unverified account");
    }

    #[test]
    fn mapping_takes_the_first_claim_with_a_value() {
        let mut i = id("1", "a@x", true);
        i.raw = serde_json::json!({"mail": "m@x", "displayName": "", "cn": "Common", "org": {"dept": ["a", "b"]}})
            .as_object()
            .unwrap()
            .clone();
        let policy = Policy {
            mapping: vec![
                (Field::Email, vec!["mail".into()]),
                (Field::Name, vec!["displayName".into(), "cn".into()]),
                (Field::Groups, vec!["/org/dept".into()]),
                (Field::Picture, vec!["missing".into()]),
            ],
            ..Default::default()
        };
        let m = mapped(&i, &policy);
        assert_eq!(m.email.as_deref(), Some("m@x"));
        assert_eq!(m.name.as_deref(), Some("Common"), "empty values fall through");
        assert_eq!(m.groups, vec!["a", "b"]);
        assert_eq!(m.picture, None);
        assert!(!m.email_verified, "a remapped email is not the upstream's verified one");
    }
}

#[cfg(test)]
mod conflict_tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::store::memory::MemoryStore;

    #[tokio::test]
    async fn a_second_connection_of_the_same_strategy_cannot_take_a_user_over() {
        let store = MemoryStore::new(ManualClock::new(10));
        let (a, b) = (ConnectionId::parse("tenant-a").unwrap(), ConnectionId::parse("tenant-b").unwrap());
        let id = UpstreamIdentity { subject: "admin".into(), ..Default::default() };
        let owner = upsert(&store, &a, "oidc", &Policy::default(), &id, 10).await.unwrap();
        let attempt = upsert(&store, &b, "oidc", &Policy::default(), &id, 20).await;
        assert!(matches!(attempt, Err(ProfileError::Conflict(_))), "{attempt:?}");
        let kept = store.get(&owner.user_id).await.unwrap().unwrap();
        assert_eq!(kept.identities.len(), 1);
        assert_eq!(kept.identities[0].connection, a, "the owner's record is untouched");
    }
}
