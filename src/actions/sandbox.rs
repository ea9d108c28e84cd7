//! One run of one action in QuickJS, contained: a fresh runtime per run (nothing survives
//! into the next), a memory limit, a stack limit and a CPU deadline enforced by the engine's
//! interrupt handler. The script sees plain data (`event`, built with `JSON.parse`) and the
//! `api` of `prelude.js`; there is no filesystem, process, timer or network.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use gatehouse_connector::http::{Method, UpstreamHttp};
use rquickjs::module::WriteOptions;
use rquickjs::{
    CatchResultExt, CaughtError, Context, Ctx, Exception, Function, Module, Object, Promise, Runtime, Value,
};
use sha2::{Digest, Sha256};

const PRELUDE: &str = include_str!("prelude.js");

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub memory_bytes: usize,
    pub stack_bytes: usize,
    pub cpu: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self { memory_bytes: 16 * 1024 * 1024, stack_bytes: 256 * 1024, cpu: Duration::from_millis(100) }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("the action does not compile: {0}")]
    Syntax(String),
    #[error("the action does not export {0}")]
    NoHandler(&'static str),
    #[error("the action threw: {0}")]
    Threw(String),
    #[error("the action ran past its CPU deadline")]
    Deadline,
    #[error("the action ran out of memory")]
    Memory,
    #[error("the action never finished (it awaited something that cannot resolve)")]
    Stuck,
    #[error("the sandbox failed: {0}")]
    Engine(String),
}

/// The longest a run may take in all, fetches included.
const WALL_CLOCK_CAP: Duration = Duration::from_secs(5);
/// The most `fetch` calls one run may make.
const MAX_FETCHES: u64 = 10;

/// `fetch` for an action that has an allow-list: only those hosts, with a deadline and a
/// response-size cap (both set on the HTTP client), and never a redirect.
#[derive(Clone)]
pub struct FetchPolicy {
    /// `host` or `host:port` entries; a URL must match one exactly (case-insensitive).
    pub allow_hosts: Vec<String>,
    pub http: UpstreamHttp,
    /// The runtime to run the request on (the sandbox itself runs on a blocking thread).
    pub handle: tokio::runtime::Handle,
}

impl FetchPolicy {
    fn allows(&self, url: &url::Url) -> bool {
        let Some(host) = url.host_str() else { return false };
        let with_port = url.port().map(|p| format!("{host}:{p}"));
        matches!(url.scheme(), "http" | "https")
            && self.allow_hosts.iter().any(|a| {
                a.eq_ignore_ascii_case(host) || with_port.as_deref().is_some_and(|hp| a.eq_ignore_ascii_case(hp))
            })
    }

    /// One request, as the JSON `{status, headers, body}` the prelude's `fetch` reads.
    fn call(&self, url: &str, method: &str, headers: &str, body: Option<String>) -> Result<String, String> {
        let url = url::Url::parse(url).map_err(|_| "fetch: invalid URL".to_owned())?;
        if !self.allows(&url) {
            return Err(format!("fetch: {} is not in this action's allow_hosts", url.host_str().unwrap_or("?")));
        }
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| "fetch: invalid method".to_owned())?;
        let headers: serde_json::Map<String, serde_json::Value> = serde_json::from_str(headers).unwrap_or_default();
        let mut request = self.http.request(method, &url);
        for (k, v) in headers {
            if let Some(v) = v.as_str() {
                request = request.header(k, v);
            }
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = self.handle.block_on(self.http.send(request)).map_err(|e| format!("fetch: {e}"))?;
        let content_type = response.content_type.clone().unwrap_or_default();
        Ok(serde_json::json!({
            "status": response.status.as_u16(),
            "headers": { "content-type": content_type },
            "body": String::from_utf8_lossy(&response.body),
        })
        .to_string())
    }
}

/// The action as an ES module that runs it as CommonJS (`exports`, `module.exports`) and
/// exports what it exported.
fn module_source(source: &str) -> String {
    format!(
        "const module = {{ exports: {{}} }}; const exports = module.exports;\n{source}\n;export default module.exports;\n"
    )
}

/// Bytecode of the prelude and of each action source, compiled once per process: parsing
/// the prelude cost more than a small action itself (docs/benchmarks.md).
static PRELUDE_BYTECODE: LazyLock<Result<Vec<u8>, RunError>> = LazyLock::new(|| compile("prelude", PRELUDE.to_owned()));
/// SHA-256 of an action's source -> its bytecode.
type BytecodeCache = Mutex<HashMap<[u8; 32], Arc<Vec<u8>>>>;
static ACTION_BYTECODE: LazyLock<BytecodeCache> = LazyLock::new(Default::default);

fn compile(name: &str, module: String) -> Result<Vec<u8>, RunError> {
    let rt = Runtime::new().map_err(|e| RunError::Engine(e.to_string()))?;
    let ctx = Context::full(&rt).map_err(|e| RunError::Engine(e.to_string()))?;
    ctx.with(|ctx| {
        let declared =
            Module::declare(ctx.clone(), name, module).catch(&ctx).map_err(|e| RunError::Syntax(describe(e)))?;
        declared.write(WriteOptions::default()).map_err(|e| RunError::Engine(e.to_string()))
    })
}

/// The bytecode of an action's source, compiled on first use (at start, by `check`).
fn action_bytecode(source: &str) -> Result<Arc<Vec<u8>>, RunError> {
    let key: [u8; 32] = Sha256::digest(source.as_bytes()).into();
    if let Some(b) = ACTION_BYTECODE.lock().map_err(|_| RunError::Engine("bytecode cache poisoned".into()))?.get(&key) {
        return Ok(b.clone());
    }
    let compiled = Arc::new(compile("action", module_source(source))?);
    ACTION_BYTECODE
        .lock()
        .map_err(|_| RunError::Engine("bytecode cache poisoned".into()))?
        .insert(key, compiled.clone());
    Ok(compiled)
}

/// Load and run bytecode compiled by [`compile`] in this process, returning the module.
#[allow(unsafe_code)]
fn load<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> rquickjs::Result<Module<'js, rquickjs::module::Evaluated>> {
    // SAFETY: `Module::load` trusts its input to be well-formed QuickJS bytecode. These bytes
    // were written by `Module::write` of the same QuickJS build in this process (`compile`),
    // from sources Gatehouse read at start; bytes from anywhere else never reach here.
    let declared = unsafe { Module::load(ctx.clone(), bytecode)? };
    let (evaluated, promise) = declared.eval()?;
    promise.finish::<()>()?;
    Ok(evaluated)
}

fn describe(e: CaughtError<'_>) -> String {
    match e {
        CaughtError::Exception(ex) => {
            let msg = ex.message().unwrap_or_default();
            if msg.is_empty() { format!("{ex:?}") } else { msg }
        }
        CaughtError::Value(v) => v.as_string().and_then(|s| s.to_string().ok()).unwrap_or_else(|| format!("{v:?}")),
        CaughtError::Error(e) => e.to_string(),
    }
}

fn classify(message: String, deadline_hit: bool) -> RunError {
    if message.contains("out of memory") || message.contains("Allocation") {
        RunError::Memory
    } else if deadline_hit || message.contains("interrupted") {
        RunError::Deadline
    } else {
        RunError::Threw(message)
    }
}

/// Check that `source` compiles and exports `handler`, without running a handler.
pub fn check(source: &str, handler: &'static str, limits: Limits) -> Result<(), RunError> {
    let rt = runtime(limits, Deadline::new(limits.cpu))?;
    let ctx = Context::full(&rt).map_err(|e| RunError::Engine(e.to_string()))?;
    let bytecode = action_bytecode(source)?;
    ctx.with(|ctx| {
        let module = load(&ctx, &bytecode).catch(&ctx).map_err(|e| RunError::Syntax(describe(e)))?;
        let exports: Object = module.get("default").map_err(|_| RunError::NoHandler(handler))?;
        match exports.get::<_, Value>(handler) {
            Ok(v) if v.is_function() => Ok(()),
            _ => Err(RunError::NoHandler(handler)),
        }
    })
}

/// The CPU deadline: `start + cpu`, plus the time spent waiting on `fetch` (not CPU).
#[derive(Clone)]
struct Deadline {
    start: Instant,
    cpu: Duration,
    waited_us: Arc<AtomicU64>,
}

impl Deadline {
    fn new(cpu: Duration) -> Self {
        Self { start: Instant::now(), cpu, waited_us: Arc::new(AtomicU64::new(0)) }
    }
    fn passed(&self) -> bool {
        let waited = Duration::from_micros(self.waited_us.load(Ordering::Relaxed));
        let now = Instant::now();
        // Waiting on fetch is not CPU, but a run never outlives the wall-clock cap either.
        now > self.start + self.cpu + waited || now > self.start + WALL_CLOCK_CAP
    }
}

fn runtime(limits: Limits, deadline: Deadline) -> Result<Runtime, RunError> {
    let rt = Runtime::new().map_err(|e| RunError::Engine(e.to_string()))?;
    rt.set_memory_limit(limits.memory_bytes);
    rt.set_max_stack_size(limits.stack_bytes);
    rt.set_interrupt_handler(Some(Box::new(move || deadline.passed())));
    Ok(rt)
}

/// Run `handler(event, api)` of `source` and return what the action asked for, as the JSON
/// text of `__result`. Blocking: call it from a blocking thread. Without a `fetch` policy
/// there is no `fetch` at all.
pub fn run(
    source: &str,
    handler: &'static str,
    event_json: &str,
    cache_json: &str,
    limits: Limits,
    fetch: Option<FetchPolicy>,
) -> Result<String, RunError> {
    let action = action_bytecode(source)?;
    let deadline = Deadline::new(limits.cpu);
    let rt = runtime(limits, deadline.clone())?;
    let ctx = Context::full(&rt).map_err(|e| RunError::Engine(e.to_string()))?;
    let out = ctx.with(|ctx| -> Result<String, RunError> {
        let fail = |e: CaughtError<'_>| classify(describe(e), deadline.passed());
        if let Some(policy) = fetch {
            let waited = deadline.waited_us.clone();
            let calls = std::cell::Cell::new(0u64);
            let cap = deadline.clone();
            let f = Function::new(
                ctx.clone(),
                move |ctx: Ctx<'_>, url: String, method: String, headers: String, body: Option<String>| {
                    calls.set(calls.get() + 1);
                    if calls.get() > MAX_FETCHES {
                        return Err(Exception::throw_type(&ctx, "fetch: too many requests in one run"));
                    }
                    if cap.passed() {
                        return Err(Exception::throw_type(&ctx, "fetch: the run is out of time"));
                    }
                    let started = Instant::now();
                    let r = policy.call(&url, &method, &headers, body);
                    waited.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                    r.map_err(|m| Exception::throw_type(&ctx, &m))
                },
            )
            .map_err(|e| RunError::Engine(e.to_string()))?;
            ctx.globals().set("__fetch", f).map_err(|e| RunError::Engine(e.to_string()))?;
        }
        install_token_functions(&ctx)?;
        let prelude = PRELUDE_BYTECODE.as_ref().map_err(Clone::clone)?;
        load(&ctx, prelude).catch(&ctx).map_err(|e| RunError::Engine(describe(e)))?;
        let module = load(&ctx, &action).catch(&ctx).map_err(fail)?;
        let exports: Object = module.get("default").map_err(|_| RunError::NoHandler(handler))?;
        let f: Function = exports.get(handler).map_err(|_| RunError::NoHandler(handler))?;
        let event = ctx.json_parse(event_json).catch(&ctx).map_err(|e| RunError::Engine(describe(e)))?;
        // validateToken reads the request it was called for.
        ctx.globals().set("__event", event.clone()).map_err(|e| RunError::Engine(e.to_string()))?;
        let cache = ctx.json_parse(cache_json).catch(&ctx).map_err(|e| RunError::Engine(describe(e)))?;
        let make_api: Function = ctx.globals().get("__api").map_err(|e| RunError::Engine(e.to_string()))?;
        let api: Value = make_api.call((cache,)).catch(&ctx).map_err(|e| RunError::Engine(describe(e)))?;
        let returned: Value = f.call((event, api)).catch(&ctx).map_err(fail)?;
        if let Some(promise) = returned.as_promise() {
            settle(&ctx, promise, &deadline).map_err(|e| match e {
                RunError::Threw(m) => classify(m, deadline.passed()),
                other => other,
            })?;
        }
        let result: rquickjs::String = ctx.eval("JSON.stringify(__result)").catch(&ctx).map_err(fail)?;
        result.to_string().map_err(|e| RunError::Engine(e.to_string()))
    });
    // No explicit collection: the runtime is dropped here, and everything with it.
    drop(ctx);
    drop(rt);
    out
}

/// `api.redirect.encodeToken` / `validateToken`: HS256 JWTs through `jsonwebtoken` (exp
/// checked), never hand-made signatures.
fn install_token_functions(ctx: &Ctx<'_>) -> Result<(), RunError> {
    let engine = |e: rquickjs::Error| RunError::Engine(e.to_string());
    let encode = Function::new(ctx.clone(), |ctx: Ctx<'_>, secret: String, payload: String, expires_in: f64| {
        let mut claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&payload).map_err(|_| Exception::throw_type(&ctx, "payload must be an object"))?;
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + expires_in.clamp(1.0, 86400.0) as u64).into());
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key)
            .map_err(|_| Exception::throw_internal(&ctx, "cannot sign the token"))
    })
    .map_err(engine)?;
    let validate = Function::new(ctx.clone(), |ctx: Ctx<'_>, secret: String, token: String| {
        let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes());
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.required_spec_claims = ["exp".to_owned()].into_iter().collect();
        v.validate_aud = false;
        jsonwebtoken::decode::<serde_json::Value>(&token, &key, &v)
            .map(|d| d.claims.to_string())
            .map_err(|e| Exception::throw_type(&ctx, &format!("invalid token: {e}")))
    })
    .map_err(engine)?;
    ctx.globals().set("__encodeToken", encode).map_err(engine)?;
    ctx.globals().set("__validateToken", validate).map_err(engine)
}

/// Drive the job queue until the handler's promise settles.
fn settle<'js>(ctx: &rquickjs::Ctx<'js>, promise: &Promise<'js>, deadline: &Deadline) -> Result<(), RunError> {
    match promise.finish::<Value>() {
        Ok(_) => Ok(()),
        // The queue ran dry with the promise pending. An interrupt inside a job ends that job
        // without rejecting the promise, and the engine drops its exception: past the
        // deadline, that is what happened.
        Err(rquickjs::Error::WouldBlock) if deadline.passed() => Err(RunError::Deadline),
        Err(rquickjs::Error::WouldBlock) => Err(RunError::Stuck),
        Err(e) => Err(RunError::Threw(describe(CaughtError::from_error(ctx, e)))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn post_login(src: &str) -> Result<serde_json::Value, RunError> {
        let event = r#"{"user":{"user_id":"auth0|1","app_metadata":{"groups":["beta"]}},"secrets":{}}"#;
        run(src, "onExecutePostLogin", event, "{}", Limits::default(), None).map(|s| serde_json::from_str(&s).unwrap())
    }

    #[test]
    fn claims_and_denial_are_recorded() {
        let r = post_login(
            r#"exports.onExecutePostLogin = async (event, api) => {
                 if (event.user.app_metadata.groups.includes("beta")) api.idToken.setCustomClaim("isBetaTester", true);
                 api.accessToken.addScope("read:beta");
                 api.user.setAppMetadata("seen", 1);
               };"#,
        )
        .unwrap();
        assert_eq!(r["idToken"]["isBetaTester"], true);
        assert_eq!(r["addScopes"][0], "read:beta");
        assert_eq!(r["appMetadata"]["seen"], 1);
        let d = post_login("exports.onExecutePostLogin = (e, api) => api.access.deny('no beta for you');").unwrap();
        assert_eq!(d["deny"], "no beta for you");
    }

    #[test]
    fn hostile_scripts_end_their_own_run() {
        let cases = [
            ("exports.onExecutePostLogin = () => { while (true) {} };", RunError::Deadline),
            ("exports.onExecutePostLogin = async () => { await null; while (true) {} };", RunError::Deadline),
            (
                "exports.onExecutePostLogin = () => { const a = []; while (true) a.push('x'.repeat(1 << 20)); };",
                RunError::Memory,
            ),
        ];
        for (src, expected) in cases {
            let started = Instant::now();
            let e = post_login(src).unwrap_err();
            assert_eq!(e, expected, "{src}: {e:?}");
            assert!(started.elapsed() < Duration::from_secs(2));
        }
        let deep =
            post_login("exports.onExecutePostLogin = () => { const f = (n) => f(n + 1) + 1; f(0); };").unwrap_err();
        assert!(matches!(deep, RunError::Threw(ref m) if m.contains("stack")), "{deep:?}");
        for escape in [
            "const p = this.constructor.constructor('return process')(); exports.onExecutePostLogin = () => {};",
            "exports.onExecutePostLogin = () => ({}).constructor.constructor('return process')().env;",
            "exports.onExecutePostLogin = () => require('fs');",
        ] {
            let e = post_login(escape).unwrap_err();
            // No process, require or host object exists to reach: a plain JS error ends the run.
            assert!(
                matches!(e, RunError::Threw(ref m) if m.contains("not defined") || m.contains("undefined")),
                "{escape}: {e:?}"
            );
        }
        let stuck = post_login("exports.onExecutePostLogin = () => new Promise(() => {});").unwrap_err();
        assert_eq!(stuck, RunError::Stuck);
        let thrown = post_login("exports.onExecutePostLogin = async () => { throw new Error('boom'); };").unwrap_err();
        assert_eq!(thrown, RunError::Threw("boom".into()));
    }

    #[test]
    fn nothing_survives_into_the_next_run() {
        post_login("Object.prototype.polluted = 1; globalThis.leak = 2; exports.onExecutePostLogin = () => {};")
            .unwrap();
        let r = post_login(
            "exports.onExecutePostLogin = (e, api) => api.idToken.setCustomClaim('seen', [({}).polluted, typeof leak]);",
        )
        .unwrap();
        assert_eq!(r["idToken"]["seen"], serde_json::json!([null, "undefined"]));
    }

    #[test]
    fn syntax_errors_and_missing_handlers_are_found_before_any_run() {
        assert!(matches!(
            check("exports.onExecutePostLogin = (", "onExecutePostLogin", Limits::default()),
            Err(RunError::Syntax(_))
        ));
        assert_eq!(
            check("exports.other = 1;", "onExecutePostLogin", Limits::default()),
            Err(RunError::NoHandler("onExecutePostLogin"))
        );
        assert_eq!(check("exports.onExecutePostLogin = () => {};", "onExecutePostLogin", Limits::default()), Ok(()));
    }
}
