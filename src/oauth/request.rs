//! The authorization request as the login knows it: validated by `/authorize`, carried by
//! the flow, and stored with a transaction as a `store::RequestRecord` (the record's shape
//! can change with the store's versioning without the login's code noticing).

use crate::store::{RequestRecord, ResponseMode};
use crate::types::{ClientId, ConnectionId, PkceChallenge, RedirectUri, Scopes};

/// The downstream request that began a login, as validated by `/authorize`.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizationRequest {
    pub client_id: ClientId,
    pub redirect_uri: RedirectUri,
    pub scopes: Scopes,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<PkceChallenge>,
    pub response_mode: ResponseMode,
    pub prompt_login: bool,
    pub max_age: Option<u64>,
    pub login_hint: Option<String>,
    pub connection: Option<ConnectionId>,
    pub ui_locales: Option<String>,
    /// The `sub` of a verified `id_token_hint`: whoever signs in must be that user.
    pub hint_sub: Option<String>,
    /// An IdP-initiated login: no client request, hence no PKCE challenge; only a
    /// confidential client gets its code.
    pub unsolicited: bool,
}

/// The record and the domain type hold the same fields today; they convert field by field
/// (listed once here), so a change of either shape is a compile error until this follows.
macro_rules! convert {
    ($from:ident => $to:ident) => {
        impl From<$from> for $to {
            fn from(r: $from) -> Self {
                Self {
                    client_id: r.client_id,
                    redirect_uri: r.redirect_uri,
                    scopes: r.scopes,
                    state: r.state,
                    nonce: r.nonce,
                    code_challenge: r.code_challenge,
                    response_mode: r.response_mode,
                    prompt_login: r.prompt_login,
                    max_age: r.max_age,
                    login_hint: r.login_hint,
                    connection: r.connection,
                    ui_locales: r.ui_locales,
                    hint_sub: r.hint_sub,
                    unsolicited: r.unsolicited,
                }
            }
        }
    };
}

convert!(AuthorizationRequest => RequestRecord);
convert!(RequestRecord => AuthorizationRequest);
