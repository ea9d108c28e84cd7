//! What one run may use (memory, stack, running time) and what it may produce (claims,
//! scopes, metadata, cache, log lines). The produced limits are enforced twice: where the
//! action sets a value (`prelude.js`, with an error naming the limit) and again when the host
//! reads the run's result back ([`super::result`]), so nothing skips them.

use std::time::Duration;

/// The sandbox's resource limits (configured under `[actions]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub memory_bytes: usize,
    pub stack_bytes: usize,
    /// Running time of one run, measured on the wall clock from the moment it starts on an
    /// action thread; time spent waiting on `fetch` is not counted (the thread gives its slot
    /// back meanwhile). It is not CPU time: a run preempted by the OS uses it up too.
    pub time: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { memory_bytes: 16 * 1024 * 1024, stack_bytes: 256 * 1024, time: Duration::from_millis(100) }
    }
}

/// Nesting depth of a claim or metadata value.
pub const MAX_DEPTH: usize = 16;
/// Custom claims per token.
pub const MAX_CLAIMS: usize = 64;
pub const MAX_CLAIM_NAME: usize = 256;
/// One claim's value, as JSON.
pub const MAX_CLAIM_BYTES: usize = 4096;
/// All custom claims of one token, as JSON: a token stays well under the 16 KiB token cap.
pub const MAX_CLAIMS_BYTES: usize = 8192;
pub const MAX_SCOPES: usize = 32;
pub const MAX_SCOPE_LEN: usize = 128;
/// app_metadata (and, apart, user_metadata) an action sets in one run, as JSON.
pub const MAX_METADATA_BYTES: usize = 16 * 1024;
/// The reason of `api.access.deny`, shown to the client.
pub const MAX_REASON: usize = 1024;
pub const MAX_REDIRECT_URL: usize = 2048;
pub const MAX_REDIRECT_PARAMS: usize = 32;
pub const MAX_REDIRECT_QUERY_BYTES: usize = 4096;
/// Auth0's `api.cache` limits.
pub const CACHE_MAX_ENTRIES: usize = 20;
pub const CACHE_MAX_KEY: usize = 256;
pub const CACHE_MAX_VALUE: usize = 2048;
pub const CACHE_MAX_TTL_MS: u64 = 24 * 60 * 60 * 1000;
/// One logged line of an action (console output, an error message), in bytes.
pub const MAX_LOG_LINE: usize = 4096;
/// console lines one run may log; the rest are counted, not logged.
pub const MAX_LOG_LINES: usize = 50;
/// A minted token, in bytes: a login whose token would be larger is refused.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// The produced limits as the object `prelude.js` receives.
pub fn for_prelude() -> serde_json::Value {
    serde_json::json!({
        "maxDepth": MAX_DEPTH,
        "maxClaims": MAX_CLAIMS,
        "maxClaimName": MAX_CLAIM_NAME,
        "maxClaimBytes": MAX_CLAIM_BYTES,
        "maxClaimsBytes": MAX_CLAIMS_BYTES,
        "maxScopes": MAX_SCOPES,
        "maxMetadataBytes": MAX_METADATA_BYTES,
        "maxReason": MAX_REASON,
        "cacheMaxEntries": CACHE_MAX_ENTRIES,
        "cacheMaxKey": CACHE_MAX_KEY,
        "cacheMaxValue": CACHE_MAX_VALUE,
    })
}
