//! The OAuth 2.0 / OpenID Connect provider side: request validation, client
//! authentication, grants and codes, and reading our own tokens back.

pub mod authorize;
pub mod clients;
pub mod error;
pub mod params;
mod refresh_actions;
pub mod request;
pub mod resource;
pub mod token;

pub use error::{ErrorCode, OAuthError};
pub use params::Params;
pub use request::AuthorizationRequest;
