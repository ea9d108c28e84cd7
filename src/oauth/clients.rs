//! Client authentication at the token, revocation and introspection endpoints.
//!
//! Secrets are high-entropy and compared as SHA-256 digests in constant time: no slow hash
//! on the token path (a slow hash is for human passwords).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::error::{ErrorCode, OAuthError};
use super::params::Params;
use crate::settings::{AuthMethod, ClientSettings, Settings, secret_digest};
use crate::types::{ClientId, Secret, ct_eq};

/// The credentials a request presented, read from the `Authorization` header and the body.
#[derive(Debug)]
pub enum Presented {
    Basic { id: ClientId, secret: Secret<String> },
    Post { id: ClientId, secret: Secret<String> },
    IdOnly { id: ClientId },
    Nothing,
}

/// Read the client credentials of a token-style request. Using two methods at once is an
/// error (RFC 6749 2.3). A client id that no client could have gets the answer an unknown
/// client gets.
pub fn presented(authorization: Option<&str>, body: &Params) -> Result<Presented, OAuthError> {
    let basic = match authorization {
        Some(h) if h.len() > 6 && h[..6].eq_ignore_ascii_case("basic ") => Some(parse_basic(&h[6..])?),
        Some(_) | None => None,
    };
    let body_id = body.get("client_id");
    let body_secret = body.get("client_secret");
    let id = |s: &str| ClientId::parse(s).map_err(|_| denied());
    match (basic, body_id, body_secret) {
        (Some(_), _, Some(_)) => Err(OAuthError::invalid_request("use one client authentication method, not two")),
        (Some((basic_id, _)), Some(other), None) if other != basic_id => {
            Err(OAuthError::invalid_request("client_id in the body does not match the Authorization header"))
        }
        (Some((basic_id, secret)), _, None) => Ok(Presented::Basic { id: id(&basic_id)?, secret }),
        (None, Some(body_id), Some(secret)) => {
            Ok(Presented::Post { id: id(body_id)?, secret: Secret::new(secret.to_owned()) })
        }
        (None, Some(body_id), None) => Ok(Presented::IdOnly { id: id(body_id)? }),
        (None, None, Some(_)) => Err(OAuthError::invalid_request("client_secret without client_id")),
        (None, None, None) => Ok(Presented::Nothing),
    }
}

/// One answer for every client that did not authenticate: unknown, malformed or wrong secret.
fn denied() -> OAuthError {
    OAuthError::new(ErrorCode::InvalidClient, "client authentication failed")
}

fn parse_basic(b64: &str) -> Result<(String, Secret<String>), OAuthError> {
    let bad = || OAuthError::invalid_client("malformed Basic credentials");
    let raw = STANDARD.decode(b64.trim()).map_err(|_| bad())?;
    let raw = String::from_utf8(raw).map_err(|_| bad())?;
    let (id, secret) = raw.split_once(':').ok_or_else(bad)?;
    // RFC 6749 2.3.1: both parts are form-urlencoded before base64.
    let decode = |s: &str| -> String {
        url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned()).unwrap_or_default()
    };
    Ok((decode(id), Secret::new(decode(secret))))
}

/// The authenticated client, or `invalid_client`. Unknown clients and wrong secrets get the
/// same answer.
pub fn authenticate<'s>(settings: &'s Settings, presented: &Presented) -> Result<&'s ClientSettings, OAuthError> {
    let (id, secret, method) = match presented {
        Presented::Basic { id, secret } => (id, Some(secret), AuthMethod::ClientSecretBasic),
        Presented::Post { id, secret } => (id, Some(secret), AuthMethod::ClientSecretPost),
        Presented::IdOnly { id } => (id, None, AuthMethod::None),
        Presented::Nothing => return Err(denied()),
    };
    let client = settings.known_clients().get(id).ok_or_else(denied)?;
    if client.auth_method != method {
        return Err(denied());
    }
    match (&client.secret_digest, secret) {
        (None, None) => Ok(client),
        (Some(expected), Some(given)) if ct_eq(expected, &secret_digest(given)) => Ok(client),
        _ => Err(denied()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_are_form_decoded() {
        // "a%3Ab:s%2Bt" -> id "a:b", secret "s+t"
        let h = format!("Basic {}", STANDARD.encode("a%3Ab:s%2Bt"));
        match presented(Some(&h), &Params::default()).unwrap() {
            Presented::Basic { id, secret } => {
                assert_eq!(id.as_str(), "a:b");
                assert_eq!(secret.expose(), "s+t");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn two_methods_at_once_are_refused() {
        let h = format!("Basic {}", STANDARD.encode("a:b"));
        let body = Params::parse(b"client_secret=b&client_id=a").unwrap();
        assert!(presented(Some(&h), &body).is_err());
    }
}
