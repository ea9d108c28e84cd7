//! Auth0's Actions `event` objects (post-login, pre-user-registration), built as plain data
//! from the login's state. Kept apart from the steps so the event shape lives in one file.

use gatehouse_connector::UpstreamIdentity;

use super::Browser;
use crate::state::Core;
use crate::types::ConnectionId;

pub(super) fn iso8601(unix: u64) -> String {
    // Days-from-civil, after Howard Hinnant's public-domain algorithm.
    let days = (unix / 86400) as i64;
    let secs = unix % 86400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.000Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Auth0's post-login `event`, as plain data.
pub(super) fn login_event(
    core: &Core,
    request: &crate::oauth::AuthorizationRequest,
    user: &crate::store::UserRecord,
    connection: &ConnectionId,
    auth_time: u64,
    amr: &[String],
    browser: &Browser,
) -> serde_json::Value {
    let conn = core.connections.get(connection);
    let client = core.settings.client(request.client_id.as_str());
    let method = if amr.iter().any(|m| m == "pwd") { "pwd" } else { "federated" };
    let mut query = serde_json::Map::new();
    query.insert("client_id".into(), request.client_id.as_str().into());
    query.insert("redirect_uri".into(), request.redirect_uri.as_str().into());
    query.insert("response_type".into(), "code".into());
    query.insert("scope".into(), request.scopes.to_string().into());
    if let Some(c) = &request.connection {
        query.insert("connection".into(), c.as_str().into());
    }
    serde_json::json!({
        "user": {
            "user_id": user.user_id.as_str(),
            "email": user.email,
            "email_verified": user.email_verified,
            "name": user.name,
            "given_name": user.given_name,
            "family_name": user.family_name,
            "nickname": user.nickname,
            "picture": user.picture,
            "identities": user.identities,
            "app_metadata": user.app_metadata,
            "user_metadata": user.user_metadata,
            "logins_count": user.logins_count,
            "created_at": iso8601(user.created_at),
            "updated_at": iso8601(user.updated_at),
            "last_login": iso8601(user.last_login),
        },
        "connection": {
            "id": connection.as_str(),
            "name": connection.as_str(),
            "strategy": conn.map(|c| c.connector.strategy().to_owned()),
        },
        "client": {
            "client_id": request.client_id.as_str(),
            "name": client.map(|c| c.name.clone()),
            "metadata": {},
        },
        "request": {
            "ip": browser.ip.map(|i| i.to_string()),
            "user_agent": browser.user_agent,
            "hostname": browser.hostname,
            "query": query,
            "language": request.ui_locales.as_deref().and_then(|l| l.split(' ').next()),
        },
        "transaction": {
            "requested_scopes": request.scopes.iter().collect::<Vec<_>>(),
            "protocol": "oidc-basic-profile",
            "redirect_uri": request.redirect_uri.as_str(),
            "ui_locales": request.ui_locales.as_deref().map(|l| l.split(' ').collect::<Vec<_>>()).unwrap_or_default(),
        },
        "authentication": { "methods": [{ "name": method, "timestamp": iso8601(auth_time) }] },
        "stats": { "logins_count": user.logins_count },
    })
}

/// Auth0's pre-user-registration `event`, as plain data.
pub(super) fn registration_event(
    core: &Core,
    request: &crate::oauth::AuthorizationRequest,
    user_id: &crate::types::UserId,
    identity: &UpstreamIdentity,
    connection: &ConnectionId,
    browser: &Browser,
) -> serde_json::Value {
    let conn = core.connections.get(connection);
    serde_json::json!({
        "user": {
            "user_id": user_id.as_str(),
            "email": identity.email,
            "email_verified": identity.email_verified,
            "name": identity.name,
            "given_name": identity.given_name,
            "family_name": identity.family_name,
            "nickname": identity.nickname,
            "picture": identity.picture,
            "app_metadata": {},
            "user_metadata": {},
        },
        "connection": {
            "id": connection.as_str(),
            "name": connection.as_str(),
            "strategy": conn.map(|c| c.connector.strategy().to_owned()),
        },
        "client": {
            "client_id": request.client_id.as_str(),
            "name": core.settings.client(request.client_id.as_str()).map(|c| c.name.clone()),
            "metadata": {},
        },
        "request": {
            "ip": browser.ip.map(|i| i.to_string()),
            "user_agent": browser.user_agent,
            "hostname": browser.hostname,
        },
        "transaction": { "requested_scopes": request.scopes.iter().collect::<Vec<_>>() },
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso8601_dates() {
        assert_eq!(super::iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::iso8601(1_700_000_000), "2023-11-14T22:13:20.000Z");
        assert_eq!(super::iso8601(951_782_400), "2000-02-29T00:00:00.000Z");
        assert_eq!(super::iso8601(4_102_444_799), "2099-12-31T23:59:59.000Z");
    }
}
