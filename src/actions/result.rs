//! The result of one run, read back from the sandbox and checked against the same limits the
//! `api` enforces (`limits.rs`). Anything that cannot be read or breaks a limit is an error:
//! the caller fails the login rather than run with fewer effects than the action asked for
//! (a dropped `api.access.deny` would let a refused login through).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use super::limits::*;

/// What one run asked for, typed and within the limits.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunResult {
    pub id_token: Map<String, Value>,
    pub access_token: Map<String, Value>,
    pub add_scopes: Vec<String>,
    pub remove_scopes: Vec<String>,
    pub app_metadata: Map<String, Value>,
    pub user_metadata: Map<String, Value>,
    pub deny: Option<String>,
    /// The action's cache after the run (`{key: {value, expires_at}}`), when it changed.
    pub cache: Option<Map<String, Value>>,
    pub redirect: Option<super::Redirect>,
    /// `api.authentication.setPrimaryUser`.
    pub primary_user: Option<String>,
}

/// The run's result breaks a limit or cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ResultError(pub String);

/// What `prelude.js`'s `read` returns: containers of primitives, claim values as JSON text.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Wire {
    id_token: BTreeMap<String, String>,
    access_token: BTreeMap<String, String>,
    add_scopes: BTreeMap<String, bool>,
    remove_scopes: BTreeMap<String, bool>,
    app_metadata: BTreeMap<String, String>,
    user_metadata: BTreeMap<String, String>,
    deny: Option<String>,
    cache: Option<BTreeMap<String, String>>,
    redirect: Option<WireRedirect>,
    primary_user: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WireRedirect {
    url: String,
    query: BTreeMap<String, String>,
}

fn fail(msg: impl Into<String>) -> ResultError {
    ResultError(msg.into())
}

/// The deepest nesting of arrays and objects in `v` (a scalar is 0).
fn depth(v: &Value) -> usize {
    match v {
        Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
        Value::Object(o) => 1 + o.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// One JSON value set by the action, within `max_bytes` and [`MAX_DEPTH`].
fn value(what: &str, text: &str, max_bytes: usize) -> Result<Value, ResultError> {
    if text.len() > max_bytes {
        return Err(fail(format!("{what} is {} bytes; the limit is {max_bytes}", text.len())));
    }
    let v: Value = serde_json::from_str(text).map_err(|e| fail(format!("{what} cannot be read: {e}")))?;
    if depth(&v) > MAX_DEPTH {
        return Err(fail(format!("{what} nests deeper than {MAX_DEPTH} levels")));
    }
    Ok(v)
}

fn claims(token: &str, wire: BTreeMap<String, String>) -> Result<Map<String, Value>, ResultError> {
    if wire.len() > MAX_CLAIMS {
        return Err(fail(format!("{} custom claims in the {token}; the limit is {MAX_CLAIMS}", wire.len())));
    }
    let total: usize = wire.values().map(String::len).sum();
    if total > MAX_CLAIMS_BYTES {
        return Err(fail(format!(
            "the custom claims of the {token} are {total} bytes; the limit is {MAX_CLAIMS_BYTES}"
        )));
    }
    let mut out = Map::new();
    for (name, text) in wire {
        if name.is_empty() || name.len() > MAX_CLAIM_NAME {
            return Err(fail(format!("claim names are 1 to {MAX_CLAIM_NAME} bytes")));
        }
        let v = value(&format!("claim {name}"), &text, MAX_CLAIM_BYTES)?;
        out.insert(name, v);
    }
    Ok(out)
}

fn scopes(wire: BTreeMap<String, bool>) -> Result<Vec<String>, ResultError> {
    if wire.len() > MAX_SCOPES {
        return Err(fail(format!("{} scopes; the limit is {MAX_SCOPES}", wire.len())));
    }
    for s in wire.keys() {
        // RFC 6749 3.3 scope-token characters.
        let ok = !s.is_empty()
            && s.len() <= MAX_SCOPE_LEN
            && s.bytes().all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b));
        if !ok {
            return Err(fail(format!("a scope is 1 to {MAX_SCOPE_LEN} scope-token characters (RFC 6749 3.3)")));
        }
    }
    Ok(wire.into_keys().collect())
}

fn metadata(which: &str, wire: BTreeMap<String, String>) -> Result<Map<String, Value>, ResultError> {
    let total: usize = wire.iter().map(|(k, v)| k.len() + v.len()).sum();
    if total > MAX_METADATA_BYTES {
        return Err(fail(format!("{which} set by the action is {total} bytes; the limit is {MAX_METADATA_BYTES}")));
    }
    wire.into_iter()
        .map(|(k, text)| value(&format!("{which}.{k}"), &text, MAX_METADATA_BYTES).map(|v| (k, v)))
        .collect()
}

fn cache(wire: BTreeMap<String, String>, now_ms: u64) -> Result<Map<String, Value>, ResultError> {
    if wire.len() > CACHE_MAX_ENTRIES {
        return Err(fail(format!("{} cache entries; the limit is {CACHE_MAX_ENTRIES}", wire.len())));
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Entry {
        value: String,
        expires_at: f64,
    }
    let mut out = Map::new();
    for (key, text) in wire {
        if key.len() > CACHE_MAX_KEY {
            return Err(fail(format!("a cache key is at most {CACHE_MAX_KEY} bytes")));
        }
        let e: Entry =
            serde_json::from_str(&text).map_err(|e| fail(format!("cache entry {key} cannot be read: {e}")))?;
        if e.value.chars().count() > CACHE_MAX_VALUE {
            return Err(fail(format!("a cache value is at most {CACHE_MAX_VALUE} characters")));
        }
        // Never kept past a day from now, whatever the run said.
        let expires_at = (e.expires_at.max(0.0) as u64).min(now_ms + CACHE_MAX_TTL_MS);
        out.insert(key, serde_json::json!({ "value": e.value, "expires_at": expires_at }));
    }
    Ok(out)
}

fn redirect(wire: WireRedirect) -> Result<super::Redirect, ResultError> {
    if wire.url.len() > MAX_REDIRECT_URL {
        return Err(fail(format!("the redirect URL is longer than {MAX_REDIRECT_URL} bytes")));
    }
    let bytes: usize = wire.query.iter().map(|(k, v)| k.len() + v.len()).sum();
    if wire.query.len() > MAX_REDIRECT_PARAMS || bytes > MAX_REDIRECT_QUERY_BYTES {
        return Err(fail(format!(
            "the redirect query is limited to {MAX_REDIRECT_PARAMS} parameters and {MAX_REDIRECT_QUERY_BYTES} bytes"
        )));
    }
    Ok(super::Redirect { url: wire.url, query: wire.query.into_iter().map(|(k, v)| (k, Value::String(v))).collect() })
}

/// Read and check the JSON text of a run's result.
pub fn parse(text: &str, now_ms: u64) -> Result<RunResult, ResultError> {
    let wire: Wire = serde_json::from_str(text).map_err(|e| fail(format!("the run's result cannot be read: {e}")))?;
    let deny = match wire.deny {
        Some(d) if d.chars().count() > MAX_REASON => {
            return Err(fail(format!("the denial reason is longer than {MAX_REASON} characters")));
        }
        d => d,
    };
    Ok(RunResult {
        id_token: claims("ID token", wire.id_token)?,
        access_token: claims("access token", wire.access_token)?,
        add_scopes: scopes(wire.add_scopes)?,
        remove_scopes: scopes(wire.remove_scopes)?,
        app_metadata: metadata("app_metadata", wire.app_metadata)?,
        user_metadata: metadata("user_metadata", wire.user_metadata)?,
        deny,
        cache: wire.cache.map(|c| cache(c, now_ms)).transpose()?,
        redirect: wire.redirect.map(redirect).transpose()?,
        primary_user: wire.primary_user,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(patch: Value) -> String {
        let mut base = serde_json::json!({
            "idToken": {}, "accessToken": {}, "addScopes": {}, "removeScopes": {}, "appMetadata": {},
            "userMetadata": {}, "deny": null, "cache": null, "redirect": null, "primaryUser": null,
        });
        for (k, v) in patch.as_object().unwrap() {
            base[k] = v.clone();
        }
        base.to_string()
    }

    #[test]
    fn an_unreadable_result_is_an_error_not_nothing() {
        assert!(parse("{", 0).is_err());
        assert!(parse("{}", 0).is_err(), "missing fields are not defaults");
        // Nested past serde's recursion limit: an error, the denial is not lost quietly.
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let e = parse(&wire(serde_json::json!({ "deny": "no", "idToken": { "x": deep } })), 0).unwrap_err();
        assert!(e.0.contains("claim x"), "{e}");
        let ok = parse(&wire(serde_json::json!({ "deny": "no" })), 0).unwrap();
        assert_eq!(ok.deny.as_deref(), Some("no"));
    }

    #[test]
    fn every_limit_is_named() {
        let cases = [
            (serde_json::json!({ "idToken": { "x": format!("\"{}\"", "a".repeat(5000)) } }), "limit is 4096"),
            (serde_json::json!({ "idToken": { "x": format!("{}1{}", "[".repeat(17), "]".repeat(17)) } }), "16 levels"),
            (
                serde_json::json!({ "idToken": (0..65).map(|i| (format!("c{i}"), "1".to_owned())).collect::<BTreeMap<_, _>>() }),
                "limit is 64",
            ),
            (
                serde_json::json!({ "idToken": (0..3).map(|i| (format!("c{i}"), format!("\"{}\"", "a".repeat(3000)))).collect::<BTreeMap<_, _>>() }),
                "limit is 8192",
            ),
            (serde_json::json!({ "appMetadata": { "m": format!("\"{}\"", "a".repeat(20_000)) } }), "limit is 16384"),
            (serde_json::json!({ "addScopes": { "a b": true } }), "RFC 6749"),
            (
                serde_json::json!({ "cache": (0..21).map(|i| (format!("k{i}"), r#"{"value":"v","expires_at":1}"#.to_owned())).collect::<BTreeMap<_, _>>() }),
                "limit is 20",
            ),
            (
                serde_json::json!({ "cache": { "k": serde_json::json!({ "value": "x".repeat(20_000), "expires_at": 1 }).to_string() } }),
                "at most 2048",
            ),
            (serde_json::json!({ "deny": "x".repeat(2000) }), "1024"),
        ];
        for (patch, expected) in cases {
            let e = parse(&wire(patch.clone()), 0).unwrap_err();
            assert!(e.0.contains(expected), "{patch}: {e}");
        }
    }

    #[test]
    fn cache_expiry_is_capped_at_a_day() {
        let r =
            parse(&wire(serde_json::json!({ "cache": { "k": r#"{"value":"v","expires_at":1e15}"# } })), 1_000).unwrap();
        assert_eq!(r.cache.unwrap()["k"]["expires_at"], 1_000 + CACHE_MAX_TTL_MS);
    }
}
