//! One run of one action in QuickJS, contained: a fresh runtime per run (nothing survives
//! into the next), a memory limit, a stack limit and a time limit enforced by the engine's
//! interrupt handler. The script sees plain data (`event`, built with `JSON.parse`) and what
//! `prelude.js` installs; there is no filesystem, process or timer, and no network unless the
//! action has an allow-list.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use rquickjs::module::WriteOptions;
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Promise, Runtime, Value};
use sha2::{Digest, Sha256};

pub use super::host::{Continue, FetchPolicy, Host, LogLine};
pub use super::limits::Limits;

const PRELUDE: &str = include_str!("prelude.js");

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RunError {
    #[error("the action does not compile: {0}")]
    Syntax(String),
    #[error("the action does not export {0}")]
    NoHandler(&'static str),
    #[error("the action threw: {0}")]
    Threw(String),
    #[error("the action ran past its time limit of {0} ms (network waits not counted)")]
    Deadline(u64),
    #[error("the action ran out of memory (limit {0} MiB)")]
    Memory(usize),
    #[error("the action never finished (it awaited something that cannot resolve)")]
    Stuck,
    #[error("the action's result breaks a limit: {0}")]
    Result(String),
    #[error("the sandbox failed: {0}")]
    Engine(String),
}

/// What a run returns: the JSON text of its result and what it logged.
#[derive(Debug, Clone)]
pub struct Output {
    pub result: String,
    pub lines: Vec<LogLine>,
    /// console lines past the per-run cap, counted only.
    pub dropped_lines: usize,
}

/// The longest a run may take in all, fetches included.
const WALL_CLOCK_CAP: Duration = Duration::from_secs(5);

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

/// The message of a thrown value, for the log: never a `Debug` dump (it would print heap
/// addresses), and a non-error value by its type only.
fn describe(e: CaughtError<'_>) -> String {
    match e {
        CaughtError::Exception(ex) => match ex.message() {
            Some(m) if !m.is_empty() => m,
            _ => "an exception without a message".to_owned(),
        },
        CaughtError::Value(v) => match v.as_string().and_then(|s| s.to_string().ok()) {
            Some(s) => s,
            None => match v.as_object().and_then(|o| o.get::<_, String>("message").ok()) {
                Some(m) => m,
                None => format!("a thrown {} value", v.type_name()),
            },
        },
        CaughtError::Error(e) => e.to_string(),
    }
}

fn classify(message: String, deadline: &Deadline, limits: Limits) -> RunError {
    if message.contains("out of memory") || message.contains("Allocation") {
        RunError::Memory(limits.memory_bytes / (1024 * 1024))
    } else if deadline.passed() || message.contains("interrupted") {
        RunError::Deadline(limits.time.as_millis() as u64)
    } else {
        RunError::Threw(message)
    }
}

/// Check that `source` compiles and exports `handler`, without running a handler. Its
/// top-level code runs (as at every run), with the prelude and `modules` in place.
pub fn check(source: &str, handler: &'static str, limits: Limits, modules: &Modules) -> Result<(), RunError> {
    let deadline = Deadline::new(limits.time);
    let rt = runtime(limits, deadline.clone())?;
    let ctx = Context::full(&rt).map_err(|e| RunError::Engine(e.to_string()))?;
    let bytecode = action_bytecode(source)?;
    let host = Host { fetch: None, resume: None, modules: modules.clone(), cache: "{}".into() };
    ctx.with(|ctx| {
        install(&ctx, host, Default::default(), &deadline)?;
        let module = load(&ctx, &bytecode).catch(&ctx).map_err(|e| RunError::Syntax(describe(e)))?;
        let exports: Object = module.get("default").map_err(|_| RunError::NoHandler(handler))?;
        match exports.get::<_, Value>(handler) {
            Ok(v) if v.is_function() => Ok(()),
            _ => Err(RunError::NoHandler(handler)),
        }
    })
}

/// The produced limits as the prelude receives them, serialized once.
static LIMITS_JSON: LazyLock<String> = LazyLock::new(|| super::limits::for_prelude().to_string());

/// Shared code actions `require`, by name.
pub type Modules = Arc<std::collections::BTreeMap<String, Arc<str>>>;

/// Load the prelude and call its `install` with the host functions: what the action will
/// see is in place before any of its code runs. Returns `install`'s `{api, read}`.
fn install<'js>(
    ctx: &Ctx<'js>,
    host: Host,
    collected: Rc<RefCell<super::host::Collected>>,
    deadline: &Deadline,
) -> Result<Object<'js>, RunError> {
    let engine = |e: CaughtError<'_>| RunError::Engine(describe(e));
    let prelude = PRELUDE_BYTECODE.as_ref().map_err(Clone::clone)?;
    let prelude = load(ctx, prelude).catch(ctx).map_err(engine)?;
    let install: Function = prelude.get("default").map_err(|e| RunError::Engine(e.to_string()))?;
    let out_of_time = {
        let d = deadline.clone();
        move || d.passed()
    };
    let host = super::host::object(ctx, host, collected, deadline.waited_us.clone(), out_of_time)?;
    let limits_js = ctx.json_parse(LIMITS_JSON.as_str()).catch(ctx).map_err(engine)?;
    install.call((host, limits_js)).catch(ctx).map_err(engine)
}

/// The time limit: `start + time`, plus the time spent waiting on `fetch`.
#[derive(Clone)]
struct Deadline {
    start: Instant,
    time: Duration,
    /// Microseconds spent waiting on `fetch`.
    waited_us: Arc<AtomicU64>,
}

impl Deadline {
    fn new(time: Duration) -> Self {
        Self { start: Instant::now(), time, waited_us: Default::default() }
    }
    fn passed(&self) -> bool {
        let waited = self.waited_us.load(Ordering::Relaxed);
        let now = Instant::now();
        // Waiting on fetch is not counted, but a run never outlives the wall-clock cap either.
        now > self.start + self.time + Duration::from_micros(waited) || now > self.start + WALL_CLOCK_CAP
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
/// text the prelude's `read` gives, with what it logged. Blocking: call it from an action
/// thread.
pub fn run(
    source: &str,
    handler: &'static str,
    event_json: &str,
    limits: Limits,
    host: Host,
) -> Result<Output, RunError> {
    let action = action_bytecode(source)?;
    let deadline = Deadline::new(limits.time);
    let rt = runtime(limits, deadline.clone())?;
    let ctx = Context::full(&rt).map_err(|e| RunError::Engine(e.to_string()))?;
    let collected: Rc<RefCell<super::host::Collected>> = Default::default();
    let out = ctx.with(|ctx| -> Result<String, RunError> {
        let engine = |e: CaughtError<'_>| RunError::Engine(describe(e));
        let fail = |e: CaughtError<'_>| classify(describe(e), &deadline, limits);
        // The prelude first: it captures the built-ins it uses and keeps the host functions
        // in closures, before any action code exists.
        let installed = install(&ctx, host, collected.clone(), &deadline)?;
        let api: Value = installed.get("api").map_err(|e| RunError::Engine(e.to_string()))?;
        let read: Function = installed.get("read").map_err(|e| RunError::Engine(e.to_string()))?;

        let module = load(&ctx, &action).catch(&ctx).map_err(fail)?;
        let exports: Object = module.get("default").map_err(|_| RunError::NoHandler(handler))?;
        let f: Function = exports.get(handler).map_err(|_| RunError::NoHandler(handler))?;
        let event = ctx.json_parse(event_json).catch(&ctx).map_err(engine)?;
        let returned: Value = f.call((event, api)).catch(&ctx).map_err(fail)?;
        if let Some(promise) = returned.as_promise() {
            settle(&ctx, promise, &deadline).map_err(|e| match e {
                RunError::Threw(m) => classify(m, &deadline, limits),
                RunError::Deadline(_) => RunError::Deadline(limits.time.as_millis() as u64),
                other => other,
            })?;
        }
        let result: String = read.call(()).catch(&ctx).map_err(fail)?;
        Ok(result)
    });
    // No explicit collection: the runtime is dropped here, and everything with it.
    drop(ctx);
    drop(rt);
    let result = out?;
    let collected = std::mem::take(&mut *collected.borrow_mut());
    Ok(Output { result, lines: collected.lines, dropped_lines: collected.dropped })
}

/// Drive the job queue until the handler's promise settles.
fn settle<'js>(ctx: &rquickjs::Ctx<'js>, promise: &Promise<'js>, deadline: &Deadline) -> Result<(), RunError> {
    match promise.finish::<Value>() {
        Ok(_) => Ok(()),
        // The queue ran dry with the promise pending. An interrupt inside a job ends that job
        // without rejecting the promise, and the engine drops its exception: past the
        // deadline, that is what happened.
        Err(rquickjs::Error::WouldBlock) if deadline.passed() => Err(RunError::Deadline(0)),
        Err(rquickjs::Error::WouldBlock) => Err(RunError::Stuck),
        Err(e) => Err(RunError::Threw(describe(CaughtError::from_error(ctx, e)))),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn host() -> Host {
        Host { fetch: None, resume: None, modules: Default::default(), cache: "{}".into() }
    }

    fn run_with(src: &str, limits: Limits, host: Host) -> Result<serde_json::Value, RunError> {
        let event = r#"{"user":{"user_id":"auth0|1","app_metadata":{"groups":["beta"]}},"secrets":{}}"#;
        run(src, "onExecutePostLogin", event, limits, host).map(|o| serde_json::from_str(&o.result).unwrap())
    }

    /// The default limits with room in time: the tests not about the deadline must not meet
    /// it on a loaded machine (the default 100 ms is wall-clock time, preemption included).
    fn unhurried() -> Limits {
        Limits { time: Duration::from_secs(20), ..Limits::default() }
    }

    fn post_login(src: &str) -> Result<serde_json::Value, RunError> {
        run_with(src, unhurried(), host())
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
        assert_eq!(r["idToken"]["isBetaTester"], "true", "claim values come back as JSON text");
        assert_eq!(r["addScopes"]["read:beta"], true);
        assert_eq!(r["appMetadata"]["seen"], "1");
        let d = post_login("exports.onExecutePostLogin = (e, api) => api.access.deny('no beta for you');").unwrap();
        assert_eq!(d["deny"], "no beta for you");
    }

    #[test]
    fn each_limit_stops_its_own_case() {
        // A generous time limit: the memory bomb must be stopped by the memory limit.
        let roomy = Limits { time: Duration::from_secs(4), ..Limits::default() };
        let bomb = "exports.onExecutePostLogin = () => { const a = []; while (true) a.push('x'.repeat(1 << 20)); };";
        assert_eq!(run_with(bomb, roomy, host()).unwrap_err(), RunError::Memory(16));
        // A configured (smaller) memory limit applies and is the one reported.
        let small = Limits { memory_bytes: 4 * 1024 * 1024, ..roomy };
        let started = Instant::now();
        assert_eq!(run_with(bomb, small, host()).unwrap_err(), RunError::Memory(4));
        assert!(started.elapsed() < Duration::from_secs(2), "stopped by memory, not by the 4 s limit");
        // A configured time limit applies: 300 ms, measured.
        let slow = Limits { time: Duration::from_millis(300), ..Limits::default() };
        for src in [
            "exports.onExecutePostLogin = () => { while (true) {} };",
            "exports.onExecutePostLogin = async () => { await null; while (true) {} };",
        ] {
            let started = Instant::now();
            assert_eq!(run_with(src, slow, host()).unwrap_err(), RunError::Deadline(300), "{src}");
            let took = started.elapsed();
            assert!(took >= Duration::from_millis(300) && took < Duration::from_secs(3), "{src}: {took:?}");
        }
        let deep =
            post_login("exports.onExecutePostLogin = () => { const f = (n) => f(n + 1) + 1; f(0); };").unwrap_err();
        assert!(matches!(deep, RunError::Threw(ref m) if m.contains("Maximum call stack size exceeded")), "{deep:?}");
    }

    #[test]
    fn there_is_no_host_to_escape_to() {
        // Each case names what does not exist; any other error would mean something else ran.
        for (escape, expected) in [
            (
                "exports.onExecutePostLogin = () => ({}).constructor.constructor('return process')().env;",
                "process is not defined",
            ),
            // Module code has no `this` to climb from.
            (
                "exports.onExecutePostLogin = () => this.constructor.constructor('return process')();",
                "cannot read property 'constructor' of undefined",
            ),
            ("exports.onExecutePostLogin = () => std.open('/etc/passwd');", "std is not defined"),
            ("exports.onExecutePostLogin = () => os.exec(['id']);", "os is not defined"),
        ] {
            let e = post_login(escape).unwrap_err();
            assert_eq!(e, RunError::Threw(expected.into()), "{escape}");
        }
        let e = post_login("exports.onExecutePostLogin = () => require('fs');").unwrap_err();
        assert!(matches!(e, RunError::Threw(ref m) if m.contains("require(\"fs\"): no such module")), "{e:?}");
        // The prelude's internals are not globals.
        let r = post_login(
            r#"exports.onExecutePostLogin = (e, api) => api.idToken.setCustomClaim("seen",
                 ["__result", "__api", "__event", "__encodeToken", "__validateToken", "__fetch", "host", "install"]
                   .filter((n) => typeof globalThis[n] !== "undefined"));"#,
        )
        .unwrap();
        assert_eq!(r["idToken"]["seen"], "[]");
        let stuck = post_login("exports.onExecutePostLogin = () => new Promise(() => {});").unwrap_err();
        assert_eq!(stuck, RunError::Stuck);
        let thrown = post_login("exports.onExecutePostLogin = async () => { throw new Error('boom'); };").unwrap_err();
        assert_eq!(thrown, RunError::Threw("boom".into()));
        let object = post_login("exports.onExecutePostLogin = () => { throw new Proxy({}, {}); };").unwrap_err();
        assert_eq!(object, RunError::Threw("a thrown proxy value".into()), "no heap address");
    }

    #[test]
    fn what_the_host_reads_cannot_be_forged() {
        // The script tampers with every built-in the read-back could use, then denies.
        let r = post_login(
            r#"exports.onExecutePostLogin = (e, api) => {
                 api.access.deny("denied");
                 Object.prototype.toJSON = function () { return {}; };
                 JSON.stringify = () => '{"deny":null}';
                 Object.keys = () => [];
                 globalThis.__result = { deny: null };
               };"#,
        )
        .unwrap();
        assert_eq!(r["deny"], "denied");
        // And the api's own checks hold at the point of use.
        let e = post_login(
            "exports.onExecutePostLogin = (e, api) => api.idToken.setCustomClaim('big', 'x'.repeat(1 << 20));",
        )
        .unwrap_err();
        assert!(
            matches!(e, RunError::Threw(ref m) if m.contains("claim big is 1048578 bytes; the limit is 4096")),
            "{e:?}"
        );
        let e = post_login("exports.onExecutePostLogin = (e, api) => { let v = 1; for (let i = 0; i < 200; i++) v = [v]; api.user.setAppMetadata('deep', v); };")
            .unwrap_err();
        assert!(matches!(e, RunError::Threw(ref m) if m.contains("nests deeper than 16 levels")), "{e:?}");
    }

    #[test]
    fn nothing_survives_into_the_next_run() {
        post_login("Object.prototype.polluted = 1; globalThis.leak = 2; exports.onExecutePostLogin = () => {};")
            .unwrap();
        // Within one run, pollution is visible (so the check below can see it if it survived).
        let same = post_login(
            "Object.prototype.polluted = 1; exports.onExecutePostLogin = (e, api) => api.idToken.setCustomClaim('seen', ({}).polluted);",
        )
        .unwrap();
        assert_eq!(same["idToken"]["seen"], "1");
        let r = post_login(
            "exports.onExecutePostLogin = (e, api) => api.idToken.setCustomClaim('seen', [({}).polluted ?? 'none', typeof leak]);",
        )
        .unwrap();
        assert_eq!(r["idToken"]["seen"], r#"["none","undefined"]"#);
    }

    #[test]
    fn console_lines_are_collected_and_capped() {
        let out = run(
            "exports.onExecutePostLogin = () => { console.log('hello', {a: 1}); console.warn('w'); for (let i = 0; i < 100; i++) console.info(i); };",
            "onExecutePostLogin",
            "{}",
            unhurried(),
            host(),
        )
        .unwrap();
        assert_eq!(out.lines[0], LogLine { level: "info".into(), text: r#"hello {"a":1}"#.into() });
        assert_eq!(out.lines[1].level, "warn");
        assert_eq!(out.lines.len(), super::super::limits::MAX_LOG_LINES);
        assert_eq!(out.dropped_lines, 102 - super::super::limits::MAX_LOG_LINES);
    }

    #[test]
    fn modules_are_required_by_name() {
        let modules: BTreeMap<String, Arc<str>> =
            [("lib".to_owned(), Arc::from("exports.double = (n) => n * 2; module.exports.name = 'lib';"))].into();
        let r = run_with(
            "const lib = require('lib'); exports.onExecutePostLogin = (e, api) => api.idToken.setCustomClaim('n', [lib.double(21), require('lib') === lib]);",
            unhurried(),
            Host { modules: Arc::new(modules), ..host() },
        )
        .unwrap();
        assert_eq!(r["idToken"]["n"], "[42,true]");
    }

    #[test]
    fn a_continue_token_must_carry_the_state_being_continued() {
        let secret = "shared-secret";
        let token = |state: Option<&str>| {
            let mut claims = serde_json::json!({ "exp": 4_102_444_800u64, "answer": 42 });
            if let Some(s) = state {
                claims["state"] = s.into();
            }
            jsonwebtoken::encode(
                &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
            )
            .unwrap()
        };
        let src = "exports.onExecutePostLogin = (e, api) => api.idToken.setCustomClaim('a', api.redirect.validateToken({ secret: 'shared-secret' }).answer);";
        let resume = |t: String| Continue {
            state: "this-login".into(),
            params: [("state".to_owned(), "this-login".to_owned()), ("session_token".to_owned(), t)].into(),
        };
        let ok = run_with(src, unhurried(), Host { resume: Some(resume(token(Some("this-login")))), ..host() });
        assert_eq!(ok.unwrap()["idToken"]["a"], "42");
        for bad in [token(Some("another-login")), token(None)] {
            let e = run_with(src, unhurried(), Host { resume: Some(resume(bad)), ..host() }).unwrap_err();
            assert!(matches!(e, RunError::Threw(ref m) if m.contains("state")), "{e:?}");
        }
        let e = run_with(src, unhurried(), host()).unwrap_err();
        assert!(matches!(e, RunError::Threw(ref m) if m.contains("onContinuePostLogin")), "{e:?}");
    }

    #[test]
    fn syntax_errors_and_missing_handlers_are_found_before_any_run() {
        assert!(matches!(
            check("exports.onExecutePostLogin = (", "onExecutePostLogin", unhurried(), &Default::default()),
            Err(RunError::Syntax(_))
        ));
        assert_eq!(
            check("exports.other = 1;", "onExecutePostLogin", unhurried(), &Default::default()),
            Err(RunError::NoHandler("onExecutePostLogin"))
        );
        assert_eq!(
            check("exports.onExecutePostLogin = () => {};", "onExecutePostLogin", unhurried(), &Default::default()),
            Ok(())
        );
    }
}
