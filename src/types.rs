//! Typed values made at the edge (HTTP extractors, settings) and trusted inside.
//!
//! Each `parse` is the one place a rule is checked; past it, a `ClientId` is a client id and
//! a `RedirectUri` is an acceptable redirect URI, and no code re-checks them.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use url::Url;

pub use gatehouse_connector::Secret;

/// Why a value was refused at the edge; the text names the rule, never the value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub &'static str);

fn is_vschar(c: char) -> bool {
    // RFC 6749 appendix A: VSCHAR = %x20-7E
    ('\x20'..='\x7e').contains(&c)
}

macro_rules! string_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({:?})", stringify!($name), self.0)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = InvalidValue;
            fn try_from(v: String) -> Result<Self, InvalidValue> {
                Self::parse(&v)
            }
        }
        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_type!(
    /// A registered downstream application's id.
    ClientId
);
impl ClientId {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if s.is_empty() || s.len() > 128 || !s.chars().all(|c| is_vschar(c) && c != ' ') {
            return Err(InvalidValue("client_id must be 1-128 visible ASCII characters"));
        }
        Ok(Self(s.to_owned()))
    }
}

string_type!(
    /// A configured connection's id: lowercase letters, digits, `-` and `_`.
    ConnectionId
);
impl ConnectionId {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !ok {
            return Err(InvalidValue("connection id must be 1-64 of a-z, 0-9, '-', '_'"));
        }
        Ok(Self(s.to_owned()))
    }
}

string_type!(
    /// `<strategy>|<upstream subject>`, at most 255 characters.
    UserId
);
impl UserId {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        match s.split_once('|') {
            Some((strategy, subject))
                if !strategy.is_empty()
                    && !subject.is_empty()
                    && s.len() <= 255
                    && !s.chars().any(char::is_control) =>
            {
                Ok(Self(s.to_owned()))
            }
            _ => Err(InvalidValue("user_id must be <strategy>|<subject>, at most 255 characters")),
        }
    }
    pub fn new(strategy: &str, subject: &str) -> Result<Self, InvalidValue> {
        Self::parse(&format!("{strategy}|{subject}"))
    }
}

string_type!(
    /// A redirect URI as registered: absolute, no fragment. Requests must match one
    /// registered value character for character (no normalisation, no prefix matching).
    RedirectUri
);
impl RedirectUri {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if s.len() > 2048 {
            return Err(InvalidValue("redirect_uri is too long"));
        }
        let url = Url::parse(s).map_err(|_| InvalidValue("redirect_uri must be an absolute URI"))?;
        if url.fragment().is_some() || s.contains('#') {
            return Err(InvalidValue("redirect_uri must not contain a fragment"));
        }
        if url.cannot_be_a_base() && url.scheme() != "urn" {
            return Err(InvalidValue("redirect_uri must be hierarchical"));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn url(&self) -> Url {
        Url::parse(&self.0).expect("validated at parse")
    }
}

impl RedirectUri {
    /// The web origin of an http(s) redirect URI (where a browser app that registered it
    /// runs); `None` for other schemes.
    pub fn origin(&self) -> Option<WebOrigin> {
        let url = self.url();
        matches!(url.scheme(), "http" | "https").then(|| WebOrigin(url.origin().ascii_serialization()))
    }
}

string_type!(
    /// A web origin as a browser sends it in `Origin` (`https://app.example.com`,
    /// `http://127.0.0.1:3000`): scheme, host and port only, lowercase, default port left out.
    /// Registered ones (Auth0's "Allowed Web Origins") are compared with the `Origin` header
    /// character for character; there are no wildcards.
    WebOrigin
);
impl WebOrigin {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        if s.contains('*') {
            return Err(InvalidValue("a web origin is matched exactly: wildcards are not supported"));
        }
        let url = Url::parse(s).map_err(|_| InvalidValue("a web origin must be scheme://host[:port]"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(InvalidValue("a web origin must be http or https"));
        }
        let origin = url.origin().ascii_serialization();
        // Only the exact form a browser sends: no path (not even "/"), no user, no default
        // port, lowercase host; anything else would silently never match.
        if origin != s {
            return Err(InvalidValue(
                "a web origin is scheme://host[:port] exactly as browsers send it: lowercase, no path or trailing slash, no default port",
            ));
        }
        Ok(Self(origin))
    }
}

string_type!(
    /// One login attempt's public, unguessable id: the upstream `state` / `RelayState`, the
    /// hosted pages' path and the `state` of an Action's redirect.
    TransactionId
);
impl TransactionId {
    /// A fresh id (24 random bytes).
    pub fn random() -> Self {
        Self(random_token(24))
    }
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let ok = !s.is_empty() && s.len() <= 64 && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(InvalidValue("transaction id must be 1-64 of A-Z, a-z, 0-9, '-', '_'"));
        }
        Ok(Self(s.to_owned()))
    }
}

/// Secret values that travel to one party once and are stored only by hash: no `Display`, a
/// redacted `Debug`, and `expose` is the one way to read them (to put them in a response).
macro_rules! secret_type {
    ($(#[$m:meta])* $name:ident) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// A value received from a client, taken as is: it is only ever hashed and
            /// looked up, never trusted.
            pub fn from_presented(s: &str) -> Self {
                Self(s.to_owned())
            }
            pub fn expose(&self) -> &str {
                &self.0
            }
            /// What the store keeps.
            pub fn hash(&self) -> SecretHash {
                SecretHash::of(&self.0)
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}([redacted])", stringify!($name))
            }
        }
    };
}

secret_type!(
    /// A single-use authorization code (RFC 6749 4.1.2), `<grant id>.<secret>`: the grant
    /// id names the grant its redemption creates, which then keeps the code's hash, so a
    /// replay finds that grant without a record per code.
    AuthCode
);
impl AuthCode {
    /// A fresh code (32 random bytes) of the grant `grant_id` its redemption will create.
    pub fn new(grant_id: &str) -> Self {
        Self(format!("{grant_id}.{}", random_token(32)))
    }
    /// The grant this code claims to belong to.
    /// Only base64url ids pass, the shape Gatehouse issues: a key's Cluster hash tag is then
    /// always the whole id, so a crafted one cannot split a code from its grant.
    pub fn grant_id(&self) -> Option<&str> {
        RefreshToken::grant_id_of(&self.0)
            .filter(|g| g.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    }
}

secret_type!(
    /// A refresh token, `<grant id>.<secret>`.
    RefreshToken
);
impl RefreshToken {
    /// A fresh token of grant `grant_id`.
    pub fn new(grant_id: &str) -> Self {
        Self(format!("{grant_id}.{}", random_token(32)))
    }
    /// The grant this token claims to belong to.
    pub fn grant_id(&self) -> Option<&str> {
        Self::grant_id_of(&self.0)
    }
    /// The grant id part of a presented token, if it has a plausible one.
    pub fn grant_id_of(token: &str) -> Option<&str> {
        token.split_once('.').map(|(g, _)| g).filter(|g| !g.is_empty() && g.len() <= 64)
    }
}

/// An issuer: an absolute http(s) URL without query or fragment, kept verbatim (with or
/// without a trailing slash: Auth0's SDKs expect `https://{domain}/`), so `iss` is exactly
/// what was configured. Endpoints are built on the form without the trailing slash.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Issuer(String);
impl Issuer {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let url = Url::parse(s).map_err(|_| InvalidValue("issuer must be an absolute URL"))?;
        if !matches!(url.scheme(), "http" | "https") || url.query().is_some() || url.fragment().is_some() {
            return Err(InvalidValue("issuer must be http(s) without query or fragment"));
        }
        // One trailing slash at most: `https://x//` would make `iss` and endpoints disagree.
        if s.ends_with("//") {
            return Err(InvalidValue("issuer must end in at most one slash"));
        }
        Ok(Self(s.to_owned()))
    }
    /// The issuer exactly as configured: the `iss` of every token and of discovery.
    pub fn as_str(&self) -> &str {
        &self.0
    }
    /// The issuer without its trailing slash, the base every endpoint is built on.
    pub fn base(&self) -> &str {
        self.0.strip_suffix('/').unwrap_or(&self.0)
    }
    /// An absolute URL under the issuer; `path` starts with `/`.
    pub fn join(&self, path: &str) -> String {
        format!("{}{}", self.base(), path)
    }
    pub fn is_https(&self) -> bool {
        self.0.starts_with("https://")
    }
}
impl TryFrom<String> for Issuer {
    type Error = InvalidValue;
    fn try_from(s: String) -> Result<Self, InvalidValue> {
        Self::parse(&s)
    }
}
impl From<Issuer> for String {
    fn from(i: Issuer) -> String {
        i.0
    }
}
impl fmt::Display for Issuer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A set of scope tokens, kept in the order first given, without duplicates.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scopes(Vec<String>);
impl Scopes {
    pub fn parse(s: &str) -> Result<Self, InvalidValue> {
        let mut out: Vec<String> = Vec::new();
        for token in s.split(' ').filter(|t| !t.is_empty()) {
            // RFC 6749 3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E )
            if !token.chars().all(|c| c == '\x21' || ('\x23'..='\x5b').contains(&c) || ('\x5d'..='\x7e').contains(&c)) {
                return Err(InvalidValue("scope contains a character RFC 6749 does not allow"));
            }
            if token.len() > 256 {
                return Err(InvalidValue("a scope is too long"));
            }
            if !out.iter().any(|t| t == token) {
                out.push(token.to_owned());
            }
        }
        if out.len() > 64 {
            return Err(InvalidValue("too many scopes"));
        }
        Ok(Self(out))
    }
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// The scopes of `self` that `allowed` also has.
    pub fn intersect(&self, allowed: impl Fn(&str) -> bool) -> Scopes {
        Scopes(self.0.iter().filter(|s| allowed(s)).cloned().collect())
    }
    pub fn is_subset_of(&self, other: &Scopes) -> bool {
        self.0.iter().all(|s| other.contains(s))
    }
}
impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}
impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({:?})", self.0.join(" "))
    }
}
impl From<Scopes> for String {
    fn from(s: Scopes) -> String {
        s.to_string()
    }
}
impl TryFrom<String> for Scopes {
    type Error = InvalidValue;
    fn try_from(v: String) -> Result<Self, InvalidValue> {
        Self::parse(&v)
    }
}
impl FromIterator<String> for Scopes {
    fn from_iter<I: IntoIterator<Item = String>>(iter: I) -> Self {
        let mut out: Vec<String> = Vec::new();
        for s in iter {
            if !out.contains(&s) {
                out.push(s);
            }
        }
        Scopes(out)
    }
}

/// A PKCE code challenge with method S256 (RFC 7636). `plain` is not representable.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
pub struct PkceChallenge(String);
impl PkceChallenge {
    pub fn parse_s256(challenge: &str) -> Result<Self, InvalidValue> {
        // base64url(SHA-256) without padding is exactly 43 characters.
        if challenge.len() != 43 || !challenge.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(InvalidValue("code_challenge must be a base64url SHA-256 digest (43 characters)"));
        }
        Ok(Self(challenge.to_owned()))
    }
    /// Whether `verifier` hashes to this challenge; compared in constant time.
    pub fn verify(&self, verifier: &str) -> bool {
        let valid_shape = (43..=128).contains(&verifier.len())
            && verifier.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'));
        let computed = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
        valid_shape && subtle::ConstantTimeEq::ct_eq(computed.as_bytes(), self.0.as_bytes()).into()
    }
}

/// The SHA-256 of a bearer secret (code, refresh token, session cookie): what the store
/// keys on, so a store dump yields nothing usable.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SecretHash(#[serde(with = "hex32")] pub [u8; 32]);
impl SecretHash {
    pub fn of(secret: &str) -> Self {
        Self(Sha256::digest(secret.as_bytes()).into())
    }
    pub fn to_hex(&self) -> String {
        hex(&self.0)
    }
}
impl fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretHash({}…)", &self.to_hex()[..8])
    }
}

mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};
    pub fn serialize<S: Serializer>(v: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(v))
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let s = String::deserialize(d)?;
        let mut out = [0u8; 32];
        if s.len() != 64 {
            return Err(serde::de::Error::custom("expected 64 hex digits"));
        }
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[i * 2..i * 2 + 2], 16).map_err(serde::de::Error::custom)?;
        }
        Ok(out)
    }
}

/// Lowercase hex. Every store key of a code, session or refresh token is one: a table, not
/// `format!` per byte (32 allocations, a measurable share of a silent re-authentication).
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// `n` bytes from the system CSPRNG, base64url without padding.
pub fn random_token(n: usize) -> String {
    let mut buf = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut buf).expect("system random source");
    URL_SAFE_NO_PAD.encode(buf)
}

/// Constant-time equality of two byte strings of possibly different length.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    subtle::ConstantTimeEq::ct_eq(a, b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hashes_are_lowercase_hex_both_ways() {
        // SHA-256("abc"), FIPS 180-2 appendix B.1.
        let h = SecretHash::of("abc");
        let hex = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert_eq!(h.to_hex(), hex);
        let json = serde_json::to_string(&h).unwrap();
        assert_eq!(json, format!("\"{hex}\""));
        assert_eq!(serde_json::from_str::<SecretHash>(&json).unwrap(), h);
    }

    #[test]
    fn web_origins_are_only_the_exact_form_of_an_origin_header() {
        for good in ["https://app.example.com", "http://127.0.0.1:3000", "http://localhost:8080"] {
            assert_eq!(WebOrigin::parse(good).unwrap().as_str(), good);
        }
        for bad in [
            "https://app.example.com/",
            "https://App.example.com",
            "https://app.example.com:443",
            "https://*.example.com",
            "*",
            "null",
            "app.example.com",
            "https://app.example.com/path",
            "https://user@app.example.com",
            "ftp://app.example.com",
        ] {
            assert!(WebOrigin::parse(bad).is_err(), "{bad}");
        }
        let r = RedirectUri::parse("http://127.0.0.1:3000/callback?x=1").unwrap();
        assert_eq!(r.origin().unwrap().as_str(), "http://127.0.0.1:3000");
        assert!(RedirectUri::parse("com.example.app:/cb").unwrap().origin().is_none());
    }

    #[test]
    fn an_issuer_keeps_its_trailing_slash_and_builds_endpoints_without_doubling_it() {
        let slash = Issuer::parse("https://login.example.com/").unwrap();
        assert_eq!(slash.as_str(), "https://login.example.com/", "iss is what was configured");
        assert_eq!(slash.join("/token"), "https://login.example.com/token");
        let plain = Issuer::parse("https://login.example.com").unwrap();
        assert_eq!(plain.as_str(), "https://login.example.com");
        assert_eq!(plain.join("/token"), "https://login.example.com/token");
        let tenant = Issuer::parse("https://example.com/tenant/").unwrap();
        assert_eq!(tenant.join("/.well-known/jwks.json"), "https://example.com/tenant/.well-known/jwks.json");
        assert!(Issuer::parse("https://login.example.com//").is_err(), "two slashes");
        assert!(Issuer::parse("https://login.example.com/?x=1").is_err());
        assert_ne!(slash, plain, "two spellings are two issuers");
        let back: Issuer = serde_json::from_str("\"https://login.example.com/\"").unwrap();
        assert_eq!(back, slash);
        assert!(serde_json::from_str::<Issuer>("\"ftp://x\"").is_err());
    }

    #[test]
    fn secrets_are_redacted_and_ids_checked() {
        let code = AuthCode::new("g1");
        assert_eq!(format!("{code:?}"), "AuthCode([redacted])");
        assert_eq!(code.grant_id(), Some("g1"));
        assert_eq!(AuthCode::from_presented("no-grant-id").grant_id(), None);
        assert_eq!(AuthCode::from_presented(".secret").grant_id(), None);
        assert_eq!(AuthCode::from_presented("}g.secret").grant_id(), None);
        assert_eq!(code.hash(), SecretHash::of(code.expose()));
        let rt = RefreshToken::new("g1");
        assert!(!format!("{rt:?}").contains(rt.expose()));
        assert_eq!(rt.grant_id(), Some("g1"));
        assert!(TransactionId::parse(TransactionId::random().as_str()).is_ok());
        for bad in ["", "a/b", "a b", &"x".repeat(65)] {
            assert!(TransactionId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn redirect_uri_rejects_fragments_and_relative() {
        assert!(RedirectUri::parse("https://app.example/cb").is_ok());
        assert!(RedirectUri::parse("https://app.example/cb#x").is_err());
        assert!(RedirectUri::parse("https://app.example/cb#").is_err());
        assert!(RedirectUri::parse("/cb").is_err());
        assert!(RedirectUri::parse("com.example.app:/cb").is_ok());
    }

    #[test]
    fn scopes_parse_dedupe_and_refuse_bad_chars() {
        let s = Scopes::parse("openid  profile openid").unwrap();
        assert_eq!(s.to_string(), "openid profile");
        assert!(Scopes::parse("open\"id").is_err());
        assert!(Scopes::parse("a\\b").is_err());
    }

    #[test]
    fn pkce_s256_verifies_rfc7636_example() {
        // RFC 7636 appendix B.
        let c = PkceChallenge::parse_s256("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM").unwrap();
        assert!(c.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"));
        assert!(!c.verify("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXl"));
        assert!(!c.verify("short"));
        assert!(PkceChallenge::parse_s256("plain-verifier").is_err());
    }

    #[test]
    fn user_id_needs_strategy_and_subject() {
        assert!(UserId::parse("google-oauth2|123").is_ok());
        assert!(UserId::parse("nobar").is_err());
        assert!(UserId::parse("|x").is_err());
        assert!(UserId::parse(&format!("a|{}", "x".repeat(300))).is_err());
    }

    #[test]
    fn client_and_connection_ids() {
        assert!(ClientId::parse("my app").is_err());
        assert!(ClientId::parse("").is_err());
        assert!(ConnectionId::parse("google-work").is_ok());
        assert!(ConnectionId::parse("Google").is_err());
    }

    #[test]
    fn secret_hash_round_trips_serde() {
        let h = SecretHash::of("abc");
        let s = serde_json::to_string(&h).unwrap();
        assert_eq!(serde_json::from_str::<SecretHash>(&s).unwrap(), h);
        assert_eq!(random_token(32).len(), 43);
    }
}
