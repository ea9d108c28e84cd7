//! Request parameters of the OAuth endpoints, read once with the RFC 6749 rules: each
//! parameter at most once (3.1, 3.2), bounded sizes, and unknown parameters ignored.

use super::error::OAuthError;

/// Upper bounds that keep a hostile request cheap to refuse.
const MAX_PARAMS: usize = 64;
const MAX_VALUE: usize = 4096;
pub const MAX_BODY: usize = 64 * 1024;
/// Upstream callbacks carry whole signed documents (a SAMLResponse with a large group list,
/// encrypted): one value may use the whole body. The connector bounds the document itself.
pub const MAX_CALLBACK_BODY: usize = 1024 * 1024;

#[derive(Debug, Clone, Default)]
pub struct Params(Vec<(String, String)>);

impl Params {
    /// Parse `application/x-www-form-urlencoded` text (a query string or a form body).
    pub fn parse(encoded: &[u8]) -> Result<Self, OAuthError> {
        Self::parse_within(encoded, MAX_BODY, MAX_VALUE)
    }

    /// An upstream callback's form: the same rules with room for one signed document.
    pub fn parse_callback(encoded: &[u8]) -> Result<Self, OAuthError> {
        Self::parse_within(encoded, MAX_CALLBACK_BODY, MAX_CALLBACK_BODY)
    }

    fn parse_within(encoded: &[u8], max_body: usize, max_value: usize) -> Result<Self, OAuthError> {
        if encoded.len() > max_body {
            return Err(OAuthError::invalid_request("the request is too large"));
        }
        let mut out: Vec<(String, String)> = Vec::new();
        for (k, v) in url::form_urlencoded::parse(encoded) {
            if out.len() >= MAX_PARAMS {
                return Err(OAuthError::invalid_request("too many parameters"));
            }
            if v.len() > max_value || k.len() > 128 {
                return Err(OAuthError::invalid_request(format!("parameter {} is too long", truncate(&k))));
            }
            if out.iter().any(|(seen, _)| *seen == k) {
                return Err(OAuthError::invalid_request(format!("parameter {} is repeated", truncate(&k))));
            }
            out.push((k.into_owned(), v.into_owned()));
        }
        Ok(Self(out))
    }

    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// A parameter's value; an empty value counts as absent (RFC 6749 3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    pub fn require(&self, name: &'static str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| OAuthError::invalid_request(format!("{name} is required")))
    }

    pub fn pairs(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn into_pairs(self) -> Vec<(String, String)> {
        self.0
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(40).filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_are_refused_and_empty_is_absent() {
        assert!(Params::parse(b"a=1&a=2").is_err());
        let p = Params::parse(b"a=&b=x%20y").unwrap();
        assert_eq!(p.get("a"), None);
        assert_eq!(p.get("b"), Some("x y"));
    }

    #[test]
    fn oversized_input_is_refused() {
        let long = format!("a={}", "x".repeat(MAX_VALUE + 1));
        assert!(Params::parse(long.as_bytes()).is_err());
        let many: String = (0..100).map(|i| format!("p{i}=1&")).collect();
        assert!(Params::parse(many.as_bytes()).is_err());
    }
}
