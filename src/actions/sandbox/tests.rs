//! The sandbox's own tests: what a run produces, its limits, and that nothing of a run
//! reaches the next one on the same thread.

use std::collections::BTreeMap;

use super::*;

fn host() -> Host {
    Host {
        fetch: None,
        resume: None,
        modules: Default::default(),
        cache: "{}".into(),
        clock: Arc::new(crate::clock::SystemClock),
    }
}

fn run_with(src: &str, limits: Limits, host: Host) -> Result<serde_json::Value, RunError> {
    let event = r#"{"user":{"user_id":"auth0|1","app_metadata":{"groups":["beta"]}},"secrets":{}}"#;
    run(src, "onExecutePostLogin", event, "{}", limits, host).map(|o| serde_json::from_str(&o.result).unwrap())
}

/// The default limits with room in time: the tests not about the deadline must not meet it
/// on a loaded machine (the default 100 ms is wall-clock time, preemption included).
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
    let deep = post_login("exports.onExecutePostLogin = () => { const f = (n) => f(n + 1) + 1; f(0); };").unwrap_err();
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
    let e =
        post_login("exports.onExecutePostLogin = (e, api) => api.idToken.setCustomClaim('big', 'x'.repeat(1 << 20));")
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
    post_login("Object.prototype.polluted = 1; globalThis.leak = 2; exports.onExecutePostLogin = () => {};").unwrap();
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

fn made() -> u64 {
    MADE.with(|m| m.get())
}

const SMALL: &str = "exports.onExecutePostLogin = async (e, api) => { api.idToken.setCustomClaim('ok', true); };";

#[test]
fn a_clean_run_leaves_its_runtime_to_the_next_and_nothing_else() {
    post_login(SMALL).unwrap();
    let before = made();
    // What a run can change that is not its context's own: every built-in prototype, the
    // global object, the Function constructor host functions are made with, the memory used.
    post_login(
        "Object.prototype.polluted = 1; Array.prototype.polluted = 1; Function.prototype.polluted = 1;
         globalThis.leak = 2; JSON.parse = () => ({ deny: 'x' }); Object.freeze(Object.prototype);
         exports.onExecutePostLogin = async (e, api) => { const big = []; for (let i = 0; i < 10; i++) big.push('x'.repeat(1 << 20)); api.idToken.setCustomClaim('n', big.length); };",
    )
    .unwrap();
    let r = post_login(
        "exports.onExecutePostLogin = async (e, api) => {
           const big = []; for (let i = 0; i < 10; i++) big.push('y'.repeat(1 << 20));
           Object.prototype.fresh = 1;
           api.idToken.setCustomClaim('seen', [({}).polluted ?? 'none', [].polluted ?? 'none',
             (() => 0).polluted ?? 'none', console.log.polluted ?? 'none', typeof leak,
             typeof JSON.parse('{}'), big.length]);
         };",
    )
    .unwrap();
    assert_eq!(r["idToken"]["seen"], r#"["none","none","none","none","undefined","object",10]"#);
    assert_eq!(made(), before, "both runs reused the first run's runtime (so the check above checks reuse)");
}

#[test]
fn finalizers_and_weak_references_end_with_their_run() {
    post_login(SMALL).unwrap();
    let before = made();
    // A finalizer whose target dies with the run could be queued as a job when the run's
    // context is collected: that runtime is then not kept.
    post_login(
        "const fr = new FinalizationRegistry(() => { globalThis.finalized = true; console.log('finalized'); });
         fr.register({}, 1); globalThis.keep = new WeakRef({});
         exports.onExecutePostLogin = async () => {};",
    )
    .unwrap();
    let out = run(
        "exports.onExecutePostLogin = async (e, api) => api.idToken.setCustomClaim('seen', [typeof finalized, typeof keep]);",
        "onExecutePostLogin",
        "{}",
        "{}",
        unhurried(),
        host(),
    )
    .unwrap();
    assert!(out.lines.is_empty(), "no finalizer of the earlier run ran in this one: {:?}", out.lines);
    let r: serde_json::Value = serde_json::from_str(&out.result).unwrap();
    assert_eq!(r["idToken"]["seen"], r#"["undefined","undefined"]"#);
    eprintln!("runtimes made for the finalizer runs: {}", made() - before);
}

#[test]
fn a_run_that_leaves_a_job_or_fails_takes_its_runtime_with_it() {
    post_login(SMALL).unwrap();
    let before = made();
    // A job queued and never run: it would run inside the next run, with this run's api.
    post_login(
        "exports.onExecutePostLogin = (e, api) => { Promise.resolve().then(() => { globalThis.late = 1; console.log('late'); }); };",
    )
    .unwrap();
    assert_eq!(made(), before, "not yet: the next run makes a new one");
    let out = run(SMALL, "onExecutePostLogin", "{}", "{}", unhurried(), host()).unwrap();
    assert_eq!(made(), before + 1, "the runtime with a job pending was dropped");
    assert!(out.lines.is_empty(), "the earlier run's job did not run in this one: {:?}", out.lines);
    // A failed run (here: out of memory, out of time, a throw) is never reused either.
    for bad in [
        "exports.onExecutePostLogin = () => { const a = []; while (true) a.push('x'.repeat(1 << 20)); };",
        "exports.onExecutePostLogin = () => { while (true) {} };",
        "exports.onExecutePostLogin = () => { throw new Error('no'); };",
    ] {
        post_login(bad).unwrap_err();
        let before = made();
        post_login(SMALL).unwrap();
        assert_eq!(made(), before + 1, "{bad}: the next run got a new runtime");
    }
}

#[test]
fn each_run_on_a_kept_runtime_gets_its_own_limits() {
    post_login(SMALL).unwrap();
    let before = made();
    let bomb = "exports.onExecutePostLogin = () => { const a = []; while (true) a.push('x'.repeat(1 << 20)); };";
    let small = Limits { memory_bytes: 4 * 1024 * 1024, time: Duration::from_secs(4), ..Limits::default() };
    assert_eq!(run_with(bomb, small, host()).unwrap_err(), RunError::Memory(4));
    assert_eq!(made(), before, "the bomb ran on the kept runtime, with its own limit");
    post_login(SMALL).unwrap();
    let slow = Limits { time: Duration::from_millis(200), ..Limits::default() };
    let started = Instant::now();
    assert_eq!(
        run_with("exports.onExecutePostLogin = () => { while (true) {} };", slow, host()).unwrap_err(),
        RunError::Deadline(200)
    );
    assert!(started.elapsed() >= Duration::from_millis(200), "the deadline is this run's, not the last one's");
}
