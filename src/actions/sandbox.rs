//! One run of one action in QuickJS, contained: a fresh context per run on a runtime that
//! holds nothing of any earlier run (see [`recycle`]), a memory limit, a stack limit and a
//! time limit enforced by the engine's interrupt handler. The script sees plain data (`event`,
//! built with `JSON.parse`) and what `prelude.js` installs; there is no filesystem, process or
//! timer, and no network unless the action has an allow-list.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use rquickjs::module::WriteOptions;
use rquickjs::{CatchResultExt, CaughtError, Context, Ctx, Function, Module, Object, Promise, Runtime, Value};
use sha2::{Digest, Sha256};

use crate::clock::ManualClock;

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
    let bytecode = action_bytecode(source)?;
    let rt = runtime(limits, deadline.clone())?;
    let ctx = Context::full(&rt).map_err(|e| RunError::Engine(e.to_string()))?;
    // Top-level code has no `api`: nothing here reads the clock, so any will do.
    let host =
        Host { fetch: None, resume: None, modules: modules.clone(), cache: "{}".into(), clock: ManualClock::new(0) };
    let checked = ctx.with(|ctx| {
        install(&ctx, host, Default::default(), &deadline)?;
        let module = load(&ctx, &bytecode).catch(&ctx).map_err(|e| RunError::Syntax(describe(e)))?;
        let exports: Object = module.get("default").map_err(|_| RunError::NoHandler(handler))?;
        match exports.get::<_, Value>(handler) {
            Ok(v) if v.is_function() => Ok(()),
            _ => Err(RunError::NoHandler(handler)),
        }
    });
    drop(ctx);
    if checked.is_ok() {
        recycle(rt);
    }
    checked
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

thread_local! {
    /// This thread's spare runtime: the one its last run used, kept only when that run left
    /// nothing in it ([`recycle`]). Making a runtime was a good part of a small run's cost.
    static SPARE: RefCell<Option<Runtime>> = const { RefCell::new(None) };
    /// Runtimes this thread made (the tests check which runs got a new one).
    static MADE: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// A runtime for one run, with the run's limits and deadline: this thread's spare one, or a
/// new one.
fn runtime(limits: Limits, deadline: Deadline) -> Result<Runtime, RunError> {
    let rt = match SPARE.with(|s| s.borrow_mut().take()) {
        Some(rt) => rt,
        None => {
            MADE.with(|m| m.set(m.get() + 1));
            Runtime::new().map_err(|e| RunError::Engine(e.to_string()))?
        }
    };
    rt.set_memory_limit(limits.memory_bytes);
    rt.set_max_stack_size(limits.stack_bytes);
    rt.set_interrupt_handler(Some(Box::new(move || deadline.passed())));
    Ok(rt)
}

/// Keep `rt` for this thread's next run, after its run's context is dropped, only if that
/// run left nothing in it: no job queued (it would run inside the next run), and, once
/// collected, not one object (no global, prototype, closure or cache of that run, nor the
/// context itself, which its objects would keep alive). Anything else, or a run that failed,
/// and it is dropped: the next run makes a new one.
fn recycle(rt: Runtime) {
    rt.set_interrupt_handler(None);
    if rt.is_job_pending() {
        return;
    }
    rt.run_gc();
    if rt.is_job_pending() || rt.memory_usage().obj_count != 0 {
        return;
    }
    SPARE.with(|s| *s.borrow_mut() = Some(rt));
}

/// Run `handler(event, api)` of `source` and return what the action asked for, as the JSON
/// text the prelude's `read` gives, with what it logged. `event.secrets` is `secrets_json`
/// (the event text is the whole chain's; the secrets are each action's own). Blocking: call
/// it from an action thread.
pub fn run(
    source: &str,
    handler: &'static str,
    event_json: &str,
    secrets_json: &str,
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
        let secrets = ctx.json_parse(secrets_json).catch(&ctx).map_err(engine)?;
        event
            .as_object()
            .ok_or_else(|| RunError::Engine("the event is not an object".into()))?
            .set("secrets", secrets)
            .map_err(|e| RunError::Engine(e.to_string()))?;
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
    drop(ctx);
    let result = match out {
        Ok(result) => {
            recycle(rt);
            result
        }
        // A failed run may have left anything behind (a pending exception, a half-made
        // object): its runtime goes with it.
        Err(e) => return Err(e),
    };
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
mod tests;
