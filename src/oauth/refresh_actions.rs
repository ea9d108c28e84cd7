//! The post-login Actions on the refresh-token exchange, as Auth0 runs them there
//! (`event.transaction.protocol = "oauth2-refresh-token"`, `event.refresh_token`).

use super::error::OAuthError;
use crate::actions::event;
use crate::settings::ClientSettings;
use crate::state::Core;
use crate::store::{CustomClaims, GrantRecord, UserRecord};
use crate::types::Scopes;

/// Run the post-login chain for a refresh of `grant`, before anything is rotated. Returns
/// the claims for the new tokens: the login's, with what this run set on top. A denial ends
/// the exchange with `invalid_grant` and revokes nothing; a redirect cannot happen here (no
/// browser), so it ends the exchange too, and the client signs the person in again.
pub async fn on_refresh(
    core: &Core,
    client: &ClientSettings,
    grant: &GrantRecord,
    user: &mut UserRecord,
    scopes: &Scopes,
) -> Result<CustomClaims, OAuthError> {
    let actions = &core.settings.actions;
    if actions.post_login.is_empty() {
        return Ok(grant.custom.clone());
    }
    // A refresh token has no connection of its own: the user's first identity is the one
    // they signed in with when the user was made.
    let connection = user.identities.first().map(|i| i.connection.clone());
    let strategy = connection.as_ref().and_then(|c| core.connections.get(c)).map(|c| c.connector.strategy());
    let facts = event::PostLogin {
        parties: event::Parties {
            connection: connection.as_ref(),
            strategy,
            client_id: &client.id,
            client_name: Some(client.name.as_str()),
        },
        request: event::RequestFacts::default(),
        auth_time: grant.auth_time,
        amr: &grant.amr,
        session: Some(event::SessionFacts {
            id: &grant.sid,
            created_at: grant.created_at,
            authenticated_at: grant.auth_time,
        }),
        transaction: event::Transaction::Refresh {
            scopes,
            refresh_token: event::RefreshFacts { id: &grant.id, created_at: grant.created_at, session_id: &grant.sid },
        },
    };
    let event = event::post_login(user, &facts);
    let effects = crate::actions::run(
        actions,
        crate::actions::Trigger::PostLogin,
        &event,
        core.store.action_cache.as_ref(),
        &core.clock,
    )
    .await
    .map_err(|_| OAuthError::server_error())?;
    if let Some(reason) = effects.deny {
        core.metrics.error("refresh_denied_by_action");
        return Err(OAuthError::invalid_grant(reason));
    }
    if effects.redirect.is_some() {
        return Err(OAuthError::invalid_grant("an action needs the person to interact; sign in again"));
    }
    if effects.primary_user.is_some() {
        tracing::warn!(client_id = %client.id, "setPrimaryUser has no effect on a refresh; ignored");
    }
    if !effects.app_metadata.is_empty() || !effects.user_metadata.is_empty() {
        user.app_metadata.extend(effects.app_metadata);
        user.user_metadata.extend(effects.user_metadata);
        core.store.users.put(user).await?;
    }
    let mut custom = grant.custom.clone();
    custom.id_token.extend(effects.claims.id_token);
    custom.access_token.extend(effects.claims.access_token);
    custom.add_scopes.extend(effects.claims.add_scopes);
    custom.remove_scopes.extend(effects.claims.remove_scopes);
    Ok(custom)
}
