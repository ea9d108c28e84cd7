//! Auth0's `event` objects, built from plain facts the caller gathers (the user, the
//! transaction, the browser, the session), so this module needs nothing of the flow.

use serde_json::{Value, json};

use crate::oauth::AuthorizationRequest;
use crate::store::UserRecord;
use crate::types::{ClientId, ConnectionId, Scopes};

/// A Unix time as Auth0 writes dates in events: `2023-11-14T22:13:20.000Z` (UTC).
pub fn iso8601(unix: u64) -> Value {
    let Ok(at) =
        i64::try_from(unix).map_err(|_| ()).and_then(|s| time::OffsetDateTime::from_unix_timestamp(s).map_err(|_| ()))
    else {
        return Value::Null;
    };
    Value::String(format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    ))
}

/// The browser's request, as Auth0's `event.request` shows it.
#[derive(Debug, Clone, Default)]
pub struct RequestFacts<'a> {
    pub ip: Option<String>,
    /// The client's country (ISO 3166-1 alpha-2), when a trusted proxy said it.
    pub country: Option<String>,
    pub user_agent: Option<&'a str>,
    pub hostname: Option<&'a str>,
}

/// The login's connection and client.
#[derive(Debug, Clone)]
pub struct Parties<'a> {
    /// `None` on a refresh of a user who has no identity to name one.
    pub connection: Option<&'a ConnectionId>,
    pub strategy: Option<&'a str>,
    pub client_id: &'a ClientId,
    pub client_name: Option<&'a str>,
}

/// The SSO session a login belongs to (`event.session`).
#[derive(Debug, Clone)]
pub struct SessionFacts<'a> {
    pub id: &'a str,
    pub created_at: u64,
    pub authenticated_at: u64,
}

/// What a post-login event is about besides the user.
#[derive(Debug, Clone)]
pub struct PostLogin<'a> {
    pub parties: Parties<'a>,
    pub request: RequestFacts<'a>,
    pub auth_time: u64,
    pub amr: &'a [String],
    /// The session, when there is one (a login that opens none has none).
    pub session: Option<SessionFacts<'a>>,
    pub transaction: Transaction<'a>,
}

/// `event.transaction`: an authorization request, or a refresh-token exchange.
#[derive(Debug, Clone)]
pub enum Transaction<'a> {
    Authorize(&'a AuthorizationRequest),
    Refresh { scopes: &'a Scopes, refresh_token: RefreshFacts<'a> },
}

/// Auth0's `event.refresh_token` on the refresh-token exchange.
#[derive(Debug, Clone)]
pub struct RefreshFacts<'a> {
    pub id: &'a str,
    pub created_at: u64,
    pub session_id: &'a str,
}

/// The profile fields every event's `user` has.
fn person(u: &NewUser<'_>) -> Value {
    json!({
        "user_id": u.user_id,
        "email": u.email,
        "email_verified": u.email_verified,
        "name": u.name,
        "given_name": u.given_name,
        "family_name": u.family_name,
        "nickname": u.nickname,
        "picture": u.picture,
    })
}

fn user_json(user: &UserRecord) -> Value {
    let mut v = person(&NewUser {
        user_id: user.user_id.as_str(),
        email: user.email.as_deref(),
        email_verified: user.email_verified,
        name: user.name.as_deref(),
        given_name: user.given_name.as_deref(),
        family_name: user.family_name.as_deref(),
        nickname: user.nickname.as_deref(),
        picture: user.picture.as_deref(),
    });
    v["identities"] = json!(user.identities);
    v["app_metadata"] = json!(user.app_metadata);
    v["user_metadata"] = json!(user.user_metadata);
    v["logins_count"] = user.logins_count.into();
    v["created_at"] = iso8601(user.created_at);
    v["updated_at"] = iso8601(user.updated_at);
    v["last_login"] = iso8601(user.last_login);
    v
}

fn parties_json(p: &Parties<'_>) -> (Value, Value) {
    // Auth0 always has a connection; a refresh without one shows an empty id.
    let connection = p.connection.map_or("", ConnectionId::as_str);
    (
        json!({ "id": connection, "name": connection, "strategy": p.strategy }),
        json!({ "client_id": p.client_id.as_str(), "name": p.client_name, "metadata": {} }),
    )
}

/// `event.request.geoip`: always an object (Auth0 actions read `event.request.geoip.x`
/// without checking), with `countryCode` only when it is known; Gatehouse knows no other
/// geoip field.
fn geoip(request: &RequestFacts<'_>) -> Value {
    match &request.country {
        Some(code) => json!({ "countryCode": code }),
        None => json!({}),
    }
}

/// Auth0's post-login `event`.
pub fn post_login(user: &UserRecord, facts: &PostLogin<'_>) -> Value {
    let (connection, client) = parties_json(&facts.parties);
    // Auth0 lists each way the person authenticated in this session, with when.
    let method = if facts.amr.iter().any(|m| m == "pwd") { "pwd" } else { "federated" };
    let mut request = json!({
        "ip": facts.request.ip,
        "user_agent": facts.request.user_agent,
        "hostname": facts.request.hostname,
        "geoip": geoip(&facts.request),
    });
    let mut event = json!({
        "user": user_json(user),
        "connection": connection,
        "client": client,
        "authentication": { "methods": [{ "name": method, "timestamp": iso8601(facts.auth_time) }] },
        "stats": { "logins_count": user.logins_count },
    });
    match &facts.transaction {
        Transaction::Authorize(r) => {
            let mut query = serde_json::Map::new();
            query.insert("client_id".into(), r.client_id.as_str().into());
            query.insert("redirect_uri".into(), r.redirect_uri.as_str().into());
            query.insert("response_type".into(), "code".into());
            query.insert("scope".into(), r.scopes.to_string().into());
            if let Some(c) = &r.connection {
                query.insert("connection".into(), c.as_str().into());
            }
            request["query"] = query.into();
            request["language"] = r.ui_locales.as_deref().and_then(|l| l.split(' ').next()).into();
            event["transaction"] = json!({
                "requested_scopes": r.scopes.iter().collect::<Vec<_>>(),
                "protocol": "oidc-basic-profile",
                "redirect_uri": r.redirect_uri.as_str(),
                // No ui_locales asked for is Auth0's empty list, not an error.
                "ui_locales": r.ui_locales.as_deref().map(|l| l.split(' ').collect::<Vec<_>>()).unwrap_or_default(),
            });
        }
        Transaction::Refresh { scopes, refresh_token } => {
            request["query"] = json!({});
            event["transaction"] = json!({
                "requested_scopes": scopes.iter().collect::<Vec<_>>(),
                "protocol": "oauth2-refresh-token",
                "ui_locales": [],
            });
            event["refresh_token"] = json!({
                "id": refresh_token.id,
                "created_at": iso8601(refresh_token.created_at),
                "session_id": refresh_token.session_id,
                "client_id": facts.parties.client_id.as_str(),
                "user_id": user.user_id.as_str(),
            });
        }
    }
    event["request"] = request;
    if let Some(s) = &facts.session {
        event["session"] = json!({
            "id": s.id,
            "created_at": iso8601(s.created_at),
            "authenticated_at": iso8601(s.authenticated_at),
            "device": {
                "last_ip": facts.request.ip,
                "last_user_agent": facts.request.user_agent,
            },
        });
    }
    event
}

/// The new user as the pre-user-registration event shows it.
#[derive(Debug, Clone, Default)]
pub struct NewUser<'a> {
    pub user_id: &'a str,
    pub email: Option<&'a str>,
    pub email_verified: bool,
    pub name: Option<&'a str>,
    pub given_name: Option<&'a str>,
    pub family_name: Option<&'a str>,
    pub nickname: Option<&'a str>,
    pub picture: Option<&'a str>,
}

/// Auth0's pre-user-registration `event`.
pub fn pre_user_registration(
    user: &NewUser<'_>,
    parties: &Parties<'_>,
    request: &RequestFacts<'_>,
    requested_scopes: &Scopes,
) -> Value {
    let (connection, client) = parties_json(parties);
    let mut person = person(user);
    person["app_metadata"] = json!({});
    person["user_metadata"] = json!({});
    json!({
        "user": person,
        "connection": connection,
        "client": client,
        "request": {
            "ip": request.ip,
            "user_agent": request.user_agent,
            "hostname": request.hostname,
            "geoip": geoip(request),
        },
        "transaction": { "requested_scopes": requested_scopes.iter().collect::<Vec<_>>() },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_auth0_shaped() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_700_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(4_102_444_799), "2099-12-31T23:59:59.000Z");
        assert_eq!(iso8601(u64::MAX), Value::Null);
    }

    #[test]
    fn a_refresh_event_is_auth0_shaped() {
        let user: UserRecord = serde_json::from_value(json!({
            "user_id": "auth0|ada", "email": "ada@example.com", "email_verified": true, "name": null,
            "given_name": null, "family_name": null, "nickname": null, "picture": null, "locale": null,
            "identities": [], "created_at": 0, "updated_at": 0, "last_login": 0, "logins_count": 3,
        }))
        .unwrap();
        let amr = vec!["pwd".to_owned()];
        let e = post_login(
            &user,
            &PostLogin {
                parties: Parties {
                    connection: Some(&ConnectionId::parse("users").unwrap()),
                    strategy: Some("auth0"),
                    client_id: &ClientId::parse("web").unwrap(),
                    client_name: None,
                },
                request: RequestFacts::default(),
                auth_time: 1_700_000_000,
                amr: &amr,
                session: Some(SessionFacts { id: "sid-1", created_at: 1_700_000_000, authenticated_at: 1_700_000_000 }),
                transaction: Transaction::Refresh {
                    scopes: &Scopes::parse("openid offline_access").unwrap(),
                    refresh_token: RefreshFacts { id: "g-1", created_at: 1_700_000_100, session_id: "sid-1" },
                },
            },
        );
        assert_eq!(e["transaction"]["protocol"], "oauth2-refresh-token");
        assert_eq!(e["transaction"]["requested_scopes"], json!(["openid", "offline_access"]));
        assert_eq!(e["refresh_token"]["id"], "g-1");
        assert_eq!(e["refresh_token"]["created_at"], "2023-11-14T22:15:00.000Z");
        assert_eq!(e["session"]["id"], "sid-1");
        assert_eq!(e["session"]["authenticated_at"], "2023-11-14T22:13:20.000Z");
        assert_eq!(e["authentication"]["methods"][0]["name"], "pwd");
        assert_eq!(e["stats"]["logins_count"], 3);
        assert_eq!(e["user"]["email"], "ada@example.com");
    }
}
