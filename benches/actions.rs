//! What Actions add to a login: latency of the post-login chain with 0, 1 and 3 small
//! actions, chain runs per second, and where the time of one sandbox run goes. No HTTP and the
//! in-memory store (for `api.cache`): `gatehouse::actions::run` called in a loop on a tokio task.
//!
//! ```sh
//! taskset -c 0 cargo bench --bench actions       # pinned to one core (the reference numbers)
//! cargo bench --bench actions                    # every core
//! BENCH_SECONDS=5 BENCH_ITERS=5000 cargo bench --bench actions
//! ```
//!
//! Rows:
//! - `chain, N actions`: `actions::run(&actions, Trigger::PostLogin, &event, &cache)` with N
//!   copies of `fixtures/actions/beta-tester.js` and `fixtures/actions/event.json`, one call at
//!   a time from a task on the multi-thread runtime (each action: event clone + serialization,
//!   cache load from a `MemoryStore`, `spawn_blocking` to a fresh QuickJS runtime, result
//!   parse).
//! - `sandbox::run`: one action in `actions::sandbox::run` called directly on the bench
//!   thread: the QuickJS cost without the blocking-pool hop.
//! - `spawn_blocking hop`: an empty closure through `spawn_blocking` and back; then
//!   `sandbox::run` on a spawned thread and through `spawn_blocking`, to see the hop's real
//!   cost with QuickJS behind it.
//! - `breakdown: ...`: the steps of `sandbox::run`, re-done here with rquickjs (the same calls
//!   in the same order, timed one by one), plus variants `sandbox.rs` could adopt (a smaller
//!   set of intrinsics, a runtime kept per thread) to show what they would save.
//! - `concurrent`: 2 tasks, each running the 3-action chain back to back for the duration.
//!
//! Numbers, not assertions. Every loop is bounded in time (BENCH_SECONDS, default 3) and in
//! count (BENCH_ITERS, default 2000), after a warm-up.

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gatehouse::actions::{self, Action, Actions, Limits, Trigger};
use gatehouse::store::memory::MemoryStore;
use rquickjs::context::intrinsic;
use rquickjs::{Context, Function, Module, Object, Runtime, Value};

const SOURCE: &str = include_str!("../fixtures/actions/beta-tester.js");
const EVENT: &str = include_str!("../fixtures/actions/event.json");
/// The same prelude `sandbox.rs` evaluates before every action.
const PRELUDE: &str = include_str!("../src/actions/prelude.js");
const HANDLER: &str = "onExecutePostLogin";
/// Calls made (and thrown away) before a row is measured.
const WARMUP_ITERS: usize = 200;
const WARMUP_MAX: Duration = Duration::from_millis(500);

/// Per-call latencies of one row, in nanoseconds.
struct Row {
    name: String,
    samples: Vec<u64>,
    elapsed: Duration,
}

impl Row {
    fn new(name: impl Into<String>, mut samples: Vec<u64>, elapsed: Duration) -> Self {
        samples.sort_unstable();
        Self { name: name.into(), samples, elapsed }
    }
    /// Nearest-rank percentile, in µs.
    fn pct(&self, p: f64) -> f64 {
        if self.samples.is_empty() {
            return f64::NAN;
        }
        let rank = ((p / 100.0) * self.samples.len() as f64).ceil() as usize;
        self.samples[rank.clamp(1, self.samples.len()) - 1] as f64 / 1e3
    }
    fn mean(&self) -> f64 {
        self.samples.iter().sum::<u64>() as f64 / self.samples.len().max(1) as f64 / 1e3
    }
    /// Calls per second over the measured loop (including the loop's own bookkeeping).
    fn per_sec(&self) -> f64 {
        self.samples.len() as f64 / self.elapsed.as_secs_f64()
    }
    fn print(&self) {
        eprintln!(
            "  {:<52} p50 {:>9.1} µs  p99 {:>9.1} µs  mean {:>9.1} µs  {:>9.0}/s  (n={})",
            self.name,
            self.pct(50.0),
            self.pct(99.0),
            self.mean(),
            self.per_sec(),
            self.samples.len()
        );
    }
}

struct Budget {
    secs: Duration,
    iters: usize,
}

/// Call `f` after a warm-up until `budget` runs out, recording each call's latency.
fn measure_sync(name: &str, budget: &Budget, mut f: impl FnMut()) -> Row {
    let warm = Instant::now();
    for _ in 0..WARMUP_ITERS {
        f();
        if warm.elapsed() > WARMUP_MAX {
            break;
        }
    }
    let mut samples = Vec::with_capacity(budget.iters);
    let start = Instant::now();
    while samples.len() < budget.iters && start.elapsed() < budget.secs {
        let t = Instant::now();
        f();
        samples.push(t.elapsed().as_nanos() as u64);
    }
    let row = Row::new(name, samples, start.elapsed());
    row.print();
    row
}

/// `measure_sync` for an async call, on a task of the runtime (a worker thread, as a request
/// handler would be).
fn measure_async<F, Fut>(rt: &tokio::runtime::Runtime, name: &str, budget: &Budget, f: F) -> Row
where
    F: Fn() -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send,
{
    let (secs, iters) = (budget.secs, budget.iters);
    let (samples, elapsed) = rt
        .block_on(rt.spawn(async move {
            let warm = Instant::now();
            for _ in 0..WARMUP_ITERS {
                f().await;
                if warm.elapsed() > WARMUP_MAX {
                    break;
                }
            }
            let mut samples = Vec::with_capacity(iters);
            let start = Instant::now();
            while samples.len() < iters && start.elapsed() < secs {
                let t = Instant::now();
                f().await;
                samples.push(t.elapsed().as_nanos() as u64);
            }
            (samples, start.elapsed())
        }))
        .expect("bench task");
    let row = Row::new(name, samples, elapsed);
    row.print();
    row
}

fn actions_with(n: usize) -> Arc<Actions> {
    let source: Arc<str> = SOURCE.into();
    Arc::new(Actions {
        limits: Limits::default(),
        post_login: (0..n)
            .map(|i| Action {
                name: format!("beta-tester-{i}"),
                path: PathBuf::from("fixtures/actions/beta-tester.js"),
                source: source.clone(),
                secrets: vec![],
                allow_hosts: vec![],
            })
            .collect(),
        ..Default::default()
    })
}

/// `sandbox::wrapped`: the source as CommonJS.
fn wrapped(source: &str) -> String {
    format!(
        "(function () {{ const module = {{ exports: {{}} }}; const exports = module.exports;\n{source}\n;return module.exports; }})()"
    )
}

/// `sandbox::runtime`, with its deadline (start + cpu + time waited on `fetch`).
fn runtime(limits: Limits, start: Instant) -> Runtime {
    let rt = Runtime::new().expect("runtime");
    rt.set_memory_limit(limits.memory_bytes);
    rt.set_max_stack_size(limits.stack_bytes);
    rt.set_interrupt_handler(Some(deadline(start, limits.time)));
    rt
}

fn deadline(start: Instant, cpu: Duration) -> Box<dyn FnMut() -> bool + Send> {
    let waited_us = Arc::new(AtomicU64::new(0));
    Box::new(move || Instant::now() > start + cpu + Duration::from_micros(waited_us.load(Ordering::Relaxed)))
}

/// Everything after the context exists: prelude, action, event, handler, result. Returns the
/// instants at the end of each step.
fn in_context(ctx: &Context, event_json: &str, marks: &mut [Instant; 5]) -> String {
    ctx.with(|ctx| {
        let (prelude, done) =
            Module::declare(ctx.clone(), "prelude", PRELUDE).expect("prelude").eval().expect("prelude");
        done.finish::<()>().expect("prelude");
        let install: Function = prelude.get("default").expect("install");
        let host = Object::new(ctx.clone()).expect("host");
        host.set("log", Function::new(ctx.clone(), |_: String, _: String| {}).expect("log")).expect("log");
        host.set("module", Function::new(ctx.clone(), |_: String| String::new()).expect("module")).expect("module");
        host.set("cache", Object::new(ctx.clone()).expect("cache")).expect("cache");
        let limits = ctx.json_parse(actions::limits::for_prelude().to_string()).expect("limits");
        let installed: Object = install.call((host, limits)).expect("install");
        marks[0] = Instant::now();
        let exports: Object = ctx.eval(wrapped(SOURCE)).expect("action");
        let f: Function = exports.get(HANDLER).expect("handler");
        marks[1] = Instant::now();
        let event = ctx.json_parse(event_json).expect("event");
        marks[2] = Instant::now();
        let api: Value = installed.get("api").expect("api");
        let returned: Value = f.call((event, api)).expect("call");
        if let Some(p) = returned.as_promise() {
            p.finish::<Value>().expect("settle");
        }
        marks[3] = Instant::now();
        let read: Function = installed.get("read").expect("read");
        let out: String = read.call(()).expect("result");
        marks[4] = Instant::now();
        out
    })
}

/// No fetch, no modules, an empty cache: what a small action gets.
fn host() -> actions::sandbox::Host {
    actions::sandbox::Host {
        fetch: None,
        resume: None,
        modules: Default::default(),
        cache: "{}".into(),
        clock: clock(),
    }
}

fn clock() -> gatehouse::clock::SharedClock {
    Arc::new(gatehouse::clock::SystemClock)
}

const STEPS: [&str; 9] = [
    "Runtime::new + limits + interrupt handler",
    "Context::full",
    "prelude module eval + install(host)",
    "action eval (compile + run module body)",
    "event JSON.parse",
    "handler call + promise settle",
    "read() of the result",
    "rt.run_gc()",
    "drop context + runtime",
];

/// `sandbox::run` split into its steps, each timed: p50 of each step.
fn breakdown(budget: &Budget, event_json: &str, limits: Limits) -> Vec<Row> {
    let mut per_step: Vec<Vec<u64>> = vec![Vec::with_capacity(budget.iters); STEPS.len()];
    let mut totals = Vec::with_capacity(budget.iters);
    let one = |record: bool, per_step: &mut Vec<Vec<u64>>, totals: &mut Vec<u64>| {
        let t0 = Instant::now();
        let rt = runtime(limits, t0);
        let t1 = Instant::now();
        let ctx = Context::full(&rt).expect("context");
        let t2 = Instant::now();
        let mut marks = [t2; 5];
        let out = in_context(&ctx, event_json, &mut marks);
        rt.run_gc();
        let t8 = Instant::now();
        drop(ctx);
        drop(rt);
        let t9 = Instant::now();
        black_box(out);
        if record {
            let all = [t0, t1, t2, marks[0], marks[1], marks[2], marks[3], marks[4], t8, t9];
            for (i, w) in all.windows(2).enumerate() {
                per_step[i].push((w[1] - w[0]).as_nanos() as u64);
            }
            totals.push((t9 - t0).as_nanos() as u64);
        }
    };
    let warm = Instant::now();
    for _ in 0..WARMUP_ITERS {
        one(false, &mut per_step, &mut totals);
        if warm.elapsed() > WARMUP_MAX {
            break;
        }
    }
    let start = Instant::now();
    while totals.len() < budget.iters && start.elapsed() < budget.secs {
        one(true, &mut per_step, &mut totals);
    }
    let elapsed = start.elapsed();
    let mut rows: Vec<Row> =
        STEPS.iter().zip(per_step).map(|(name, s)| Row::new(format!("breakdown: {name}"), s, elapsed)).collect();
    rows.push(Row::new("breakdown: sum of the steps (one run)", totals, elapsed));
    for r in &rows {
        r.print();
    }
    rows
}

fn main() {
    // `cargo bench` passes `--bench`; the knobs are BENCH_SECONDS and BENCH_ITERS.
    let secs: f64 =
        std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse::<f64>().ok()).unwrap_or(3.0).clamp(0.1, 60.0);
    let iters: usize =
        std::env::var("BENCH_ITERS").ok().and_then(|s| s.parse().ok()).unwrap_or(2000).clamp(10, 1_000_000);
    let budget = Budget { secs: Duration::from_secs_f64(secs), iters };
    let cpus = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    eprintln!(
        "actions bench: up to {iters} calls or {secs} s per row (cpus allowed: {cpus}, tokio workers: {})",
        rt.metrics().num_workers()
    );

    let event: Arc<serde_json::Value> = Arc::new(serde_json::from_str(EVENT).expect("fixtures/actions/event.json"));
    let limits = Limits::default();
    // `api.cache` storage, as a single node without Redis has it.
    let store = Arc::new(MemoryStore::new(Arc::new(gatehouse::clock::SystemClock)));

    // The fixture does what it says, so the rows below measure a real run.
    let three = actions_with(3);
    let effects = rt
        .block_on(actions::run(&three, Trigger::PostLogin, &event, &*store, &clock()))
        .expect("the beta-tester action runs");
    assert_eq!(effects.claims.id_token.get("isBetaTester"), Some(&serde_json::json!(true)));
    assert_eq!(effects.claims.add_scopes.len(), 3);

    let mut rows = Vec::new();
    let mut chain = Vec::new();
    for n in [0usize, 1, 3] {
        let acts = actions_with(n);
        let (ev, st) = (event.clone(), store.clone());
        let row = measure_async(&rt, &format!("chain, {n} action(s) (actions::run)"), &budget, move || {
            let (acts, ev, st) = (acts.clone(), ev.clone(), st.clone());
            async move {
                black_box(actions::run(&acts, Trigger::PostLogin, &ev, &*st, &clock()).await.expect("run"));
            }
        });
        chain.push(row.pct(50.0));
        rows.push(row);
    }

    // What `actions::run` builds for each action: the event with `secrets`, as JSON text.
    let mut with_secrets = (*event).clone();
    with_secrets["secrets"] = serde_json::json!({});
    let event_json = with_secrets.to_string();

    let sandbox = measure_sync("sandbox::run alone (bench thread, no hop)", &budget, || {
        black_box(actions::sandbox::run(SOURCE, HANDLER, &event_json, "{}", limits, host()).expect("sandbox"));
    });
    let sandbox_p50 = sandbox.pct(50.0);
    rows.push(sandbox);

    rows.push(measure_async(&rt, "spawn_blocking hop (empty closure)", &budget, || async {
        tokio::task::spawn_blocking(|| black_box(1u8)).await.expect("join");
    }));
    // The same call on one other thread of its own, no tokio: running off the main thread costs
    // nothing by itself. The row after it, through `spawn_blocking`, costs more than the sandbox
    // plus an empty hop: the blocking pool hands successive calls to different idle threads
    // (the longest-idle one is woken), so each run starts on a thread whose malloc arena and
    // caches went cold since its last run.
    let other_thread = std::thread::scope(|s| {
        s.spawn(|| {
            measure_sync("sandbox::run alone (on a spawned std::thread)", &budget, || {
                black_box(actions::sandbox::run(SOURCE, HANDLER, &event_json, "{}", limits, host()).expect("sandbox"));
            })
        })
        .join()
        .expect("thread")
    });
    rows.push(other_thread);
    let ej: Arc<str> = event_json.as_str().into();
    let sandbox_hop = measure_async(&rt, "spawn_blocking(sandbox::run) from a task", &budget, move || {
        let ej = ej.clone();
        async move {
            let out =
                tokio::task::spawn_blocking(move || actions::sandbox::run(SOURCE, HANDLER, &ej, "{}", limits, host()));
            black_box(out.await.expect("join").expect("sandbox"));
        }
    });
    let sandbox_hop_p50 = sandbox_hop.pct(50.0);
    rows.push(sandbox_hop);
    let st = store.clone();
    rows.push(measure_async(&rt, "api.cache load (MemoryStore, per action)", &budget, move || {
        let st = st.clone();
        async move {
            use gatehouse::store::ActionCacheStore;
            black_box(st.load("beta-tester-0").await.expect("load"));
        }
    }));
    let ev = event.clone();
    rows.push(measure_sync("event clone + to_string (per action, host side)", &budget, || {
        let mut e = (*ev).clone();
        e["secrets"] = serde_json::Value::Object(Default::default());
        black_box(e.to_string());
    }));

    rows.extend(breakdown(&budget, &event_json, limits));

    // Variants: what the same run costs with less per-run setup (not what sandbox.rs does).
    rows.push(measure_sync("variant: Runtime + Context::full + drop (no action)", &budget, || {
        let rt = runtime(limits, Instant::now());
        black_box(Context::full(&rt).expect("context"));
    }));
    type Trimmed = (
        intrinsic::Eval,
        intrinsic::Json,
        intrinsic::Promise,
        intrinsic::Date,
        intrinsic::RegExpCompiler,
        intrinsic::RegExp,
        intrinsic::MapSet,
    );
    rows.push(measure_sync(
        "variant: Runtime + Context::custom (Eval JSON Promise Date RegExp MapSet) + drop",
        &budget,
        || {
            let rt = runtime(limits, Instant::now());
            black_box(Context::custom::<Trimmed>(&rt).expect("context"));
        },
    ));
    rows.push(measure_sync("variant: whole run, Context::custom trimmed", &budget, || {
        let rt = runtime(limits, Instant::now());
        let ctx = Context::custom::<Trimmed>(&rt).expect("context");
        let mut marks = [Instant::now(); 5];
        black_box(in_context(&ctx, &event_json, &mut marks));
        rt.run_gc();
    }));
    rows.push(measure_sync("variant: whole run, no explicit run_gc", &budget, || {
        let rt = runtime(limits, Instant::now());
        let ctx = Context::full(&rt).expect("context");
        let mut marks = [Instant::now(); 5];
        black_box(in_context(&ctx, &event_json, &mut marks));
    }));
    // One runtime kept for the whole loop (as a per-thread runtime would be), a fresh
    // Context::full per run, the deadline reset per run.
    let kept = Runtime::new().expect("runtime");
    kept.set_memory_limit(limits.memory_bytes);
    kept.set_max_stack_size(limits.stack_bytes);
    rows.push(measure_sync("variant: whole run, runtime kept, fresh Context::full", &budget, || {
        kept.set_interrupt_handler(Some(deadline(Instant::now(), limits.time)));
        let ctx = Context::full(&kept).expect("context");
        let mut marks = [Instant::now(); 5];
        black_box(in_context(&ctx, &event_json, &mut marks));
        drop(ctx);
        kept.run_gc();
    }));
    drop(kept);

    // Throughput: 2 tasks running the 3-action chain back to back.
    let tasks = 2;
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let (conc_samples, conc_elapsed) = rt.block_on(async {
        // Warm-up, then the measured window.
        for _ in 0..20 {
            actions::run(&three, Trigger::PostLogin, &event, &*store, &clock()).await.expect("run");
        }
        let start = Instant::now();
        let handles: Vec<_> = (0..tasks)
            .map(|_| {
                let (acts, ev, st) = (three.clone(), event.clone(), store.clone());
                let (stop, done) = (stop.clone(), done.clone());
                tokio::spawn(async move {
                    let mut samples = Vec::new();
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        black_box(actions::run(&acts, Trigger::PostLogin, &ev, &*st, &clock()).await.expect("run"));
                        samples.push(t.elapsed().as_nanos() as u64);
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    samples
                })
            })
            .collect();
        tokio::time::sleep(budget.secs).await;
        stop.store(true, Ordering::Relaxed);
        let mut all = Vec::new();
        for h in handles {
            all.extend(h.await.expect("task"));
        }
        (all, start.elapsed())
    });
    let conc = Row::new(format!("concurrent: {tasks} tasks x chain of 3 actions"), conc_samples, conc_elapsed);
    conc.print();
    let conc_rate = done.load(Ordering::Relaxed) as f64 / conc_elapsed.as_secs_f64();
    rows.push(conc);

    println!();
    println!("| row | p50 µs | p99 µs | mean µs | calls/s | n |");
    println!("|---|---:|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.1} | {:.1} | {:.1} | {:.0} | {} |",
            r.name,
            r.pct(50.0),
            r.pct(99.0),
            r.mean(),
            r.per_sec(),
            r.samples.len()
        );
    }
    println!();
    let (p0, p1, p3) = (chain[0], chain[1], chain[2]);
    println!("added p50 latency per login: 1 action {:.1} µs, 3 actions {:.1} µs", p1 - p0, p3 - p0);
    let per_action = (p3 - p0) / 3.0;
    println!(
        "per small action (p50, (3 - 0) / 3): {per_action:.1} µs, goal <= 200 µs: {}",
        if per_action <= 200.0 { "met" } else { "NOT met" }
    );
    println!(
        "sandbox::run p50: {sandbox_p50:.1} µs on the bench thread, {sandbox_hop_p50:.1} µs through spawn_blocking; \
         the chain adds {:.1} µs per action over the bare sandbox",
        per_action - sandbox_p50
    );
    println!("concurrent ({tasks} tasks, 3 actions each): {conc_rate:.0} chain runs/s (= logins/s with 3 actions)");
}
