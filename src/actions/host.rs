//! The host functions an action reaches through `prelude.js`: `fetch` (allow-listed hosts,
//! off the CPU slot), the `/continue` tokens, `console` and `require`. They are handed to the
//! prelude's `install` and kept in its closures, never set on `globalThis`.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use gatehouse_connector::http::{Method, UpstreamHttp};
use rquickjs::function::{IntoJsFunc, Params, RustFunction};
use rquickjs::{Class, Ctx, Exception, Function, Object};

use super::limits::{MAX_LOG_LINE, MAX_LOG_LINES};

/// The most `fetch` calls one run may make.
const MAX_FETCHES: u64 = 10;

/// `fetch` for an action that has an allow-list: only those hosts, with a deadline and a
/// response-size cap (both set on the HTTP client), and never a redirect.
#[derive(Clone)]
pub struct FetchPolicy {
    /// `host` or `host:port` entries; a URL must match one exactly (case-insensitive).
    pub allow_hosts: Vec<String>,
    pub http: UpstreamHttp,
    /// The runtime to run the request on (the sandbox itself runs on an action thread).
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

    /// One request, as the JSON `{status, headers, body}` the prelude's `fetch` reads. The
    /// wait happens with the run's CPU slot given back.
    fn call(&self, url: &str, method: &str, headers: &str, body: Option<String>) -> Result<String, String> {
        let url = url::Url::parse(url).map_err(|_| "fetch: invalid URL".to_owned())?;
        if !self.allows(&url) {
            return Err(format!("fetch: {} is not in this action's allow_hosts", url.host_str().unwrap_or("?")));
        }
        let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes())
            .map_err(|_| "fetch: invalid method".to_owned())?;
        let headers: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(headers).map_err(|_| "fetch: headers must be an object of strings".to_owned())?;
        let mut request = self.http.request(method, &url);
        for (k, v) in headers {
            let v = v.as_str().ok_or_else(|| format!("fetch: header {k} must be a string"))?;
            request = request.header(k, v);
        }
        if let Some(body) = body {
            request = request.body(body);
        }
        let response = super::pool::off_cpu(|| self.handle.block_on(self.http.send(request)))
            .map_err(|e| format!("fetch: {e}"))?;
        // No Content-Type header is an empty one to the action (not an error: the body is
        // handed over as text either way).
        let content_type = response.content_type.clone().unwrap_or_default();
        Ok(serde_json::json!({
            "status": response.status.as_u16(),
            "headers": { "content-type": content_type },
            "body": String::from_utf8_lossy(&response.body),
        })
        .to_string())
    }
}

/// `/continue`: the `state` being continued and the request's parameters (query and form),
/// as the host read them, not as the action may have changed `event`.
#[derive(Debug, Clone, Default)]
pub struct Continue {
    pub state: String,
    pub params: BTreeMap<String, String>,
}

/// A console line of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub level: String,
    pub text: String,
}

/// What the host functions collect during a run.
#[derive(Default)]
pub struct Collected {
    pub lines: Vec<LogLine>,
    pub dropped: usize,
}

/// Everything a run's host functions need.
pub struct Host {
    pub fetch: Option<FetchPolicy>,
    pub resume: Option<Continue>,
    pub modules: Arc<BTreeMap<String, Arc<str>>>,
    pub cache: String,
    /// "Now" for `api.cache` expiry and the `iat`/`exp` of `encodeToken`.
    pub clock: crate::clock::SharedClock,
}

fn engine(e: rquickjs::Error) -> super::RunError {
    super::RunError::Engine(e.to_string())
}

/// A host function, made as `Function::new` makes one except for its prototype: this run's
/// own `Function.prototype`, taken from this context. `Function::new` takes it from a cache
/// rquickjs keeps per runtime, filled by the first context that asked: on a runtime kept
/// between runs, that is an earlier run's prototype, which would keep that run's context (its
/// globals and everything they reach) alive into this one.
fn host_fn<'js, P, F>(ctx: &Ctx<'js>, f: F) -> rquickjs::Result<Function<'js>>
where
    F: IntoJsFunc<'js, P> + 'js,
{
    let call = Box::new(move |params: Params<'_, 'js>| {
        params.check_params(F::param_requirements())?;
        f.call(params)
    });
    let proto = Function::prototype(ctx.clone());
    let object = Class::instance_proto(RustFunction(call), proto)?.into_inner();
    rquickjs::Value::from(object).into_function().ok_or(rquickjs::Error::Unknown)
}

/// The `host` object `install` receives. `collected` fills as the run goes; `out_of_time`
/// tells whether the run is past its limit (no new fetch then); `waited_us` adds up the
/// time spent waiting on `fetch`, which the limit does not count.
pub fn object<'js>(
    ctx: &Ctx<'js>,
    host: Host,
    collected: Rc<RefCell<Collected>>,
    waited_us: Arc<AtomicU64>,
    out_of_time: impl Fn() -> bool + 'static,
) -> Result<Object<'js>, super::RunError> {
    let o = Object::new(ctx.clone()).map_err(engine)?;
    let cache = ctx.json_parse(host.cache).map_err(engine)?;
    o.set("cache", cache).map_err(engine)?;
    o.set("now", host.clock.now_ms() as f64).map_err(engine)?;

    let logs = collected.clone();
    let log = host_fn(ctx, move |level: String, text: String| {
        let mut c = logs.borrow_mut();
        if c.lines.len() >= MAX_LOG_LINES {
            c.dropped += 1;
            return;
        }
        // Capped here already, so a run cannot hold megabytes of log in memory.
        let mut text = text;
        if text.len() > MAX_LOG_LINE * 2 {
            let mut end = MAX_LOG_LINE * 2;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        c.lines.push(LogLine { level, text });
    })
    .map_err(engine)?;
    o.set("log", log).map_err(engine)?;

    let modules = host.modules.clone();
    let module = host_fn(ctx, move |ctx: Ctx<'_>, name: String| match modules.get(&name) {
        Some(source) => Ok(source.to_string()),
        None => Err(Exception::throw_message(
            &ctx,
            &format!(
                "require(\"{}\"): no such module; list shared code under [[actions.modules]] (npm packages are not available)",
                name.chars().take(100).collect::<String>()
            ),
        )),
    })
    .map_err(engine)?;
    o.set("module", module).map_err(engine)?;

    if let Some(policy) = host.fetch {
        let calls = Cell::new(0u64);
        let f =
            host_fn(ctx, move |ctx: Ctx<'_>, url: String, method: String, headers: String, body: Option<String>| {
                calls.set(calls.get() + 1);
                if calls.get() > MAX_FETCHES {
                    return Err(Exception::throw_type(&ctx, "fetch: too many requests in one run"));
                }
                if out_of_time() {
                    return Err(Exception::throw_type(&ctx, "fetch: the run is out of time"));
                }
                let started = Instant::now();
                let r = policy.call(&url, &method, &headers, body);
                waited_us.fetch_add(started.elapsed().as_micros() as u64, Ordering::Relaxed);
                r.map_err(|m| Exception::throw_type(&ctx, &m))
            })
            .map_err(engine)?;
        o.set("fetch", f).map_err(engine)?;
    }
    install_token_functions(ctx, &o, host.resume, host.clock)?;
    Ok(o)
}

/// `api.redirect.encodeToken` / `validateToken`: HS256 JWTs through `jsonwebtoken` (exp
/// checked), never hand-made signatures. `validateToken` only works when continuing, and
/// only for a token whose `state` claim is the state being continued (Auth0's rule), so a
/// token made for one login does not continue another.
fn install_token_functions<'js>(
    ctx: &Ctx<'js>,
    o: &Object<'js>,
    resume: Option<Continue>,
    clock: crate::clock::SharedClock,
) -> Result<(), super::RunError> {
    let encode = host_fn(ctx, move |ctx: Ctx<'_>, secret: String, payload: String, expires_in: f64| {
        let mut claims: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&payload).map_err(|_| Exception::throw_type(&ctx, "payload must be an object"))?;
        let now = clock.now();
        claims.insert("iat".into(), now.into());
        claims.insert("exp".into(), (now + expires_in.clamp(1.0, 86400.0) as u64).into());
        let key = jsonwebtoken::EncodingKey::from_secret(secret.as_bytes());
        jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key)
            .map_err(|_| Exception::throw_internal(&ctx, "cannot sign the token"))
    })
    .map_err(engine)?;
    let validate = host_fn(ctx, move |ctx: Ctx<'_>, secret: String, parameter: String| {
        let Some(resume) = &resume else {
            return Err(Exception::throw_type(&ctx, "validateToken is for onContinuePostLogin"));
        };
        let token = resume
            .params
            .get(&parameter)
            .ok_or_else(|| Exception::throw_type(&ctx, &format!("no {parameter} in the request")))?;
        let key = jsonwebtoken::DecodingKey::from_secret(secret.as_bytes());
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
        v.required_spec_claims = ["exp".to_owned()].into_iter().collect();
        v.validate_aud = false;
        let claims = jsonwebtoken::decode::<serde_json::Value>(token, &key, &v)
            .map_err(|e| Exception::throw_type(&ctx, &format!("invalid token: {e}")))?
            .claims;
        if claims.get("state").and_then(|s| s.as_str()) != Some(resume.state.as_str()) {
            return Err(Exception::throw_type(&ctx, "invalid token: its state is not the state of this login"));
        }
        Ok(claims.to_string())
    })
    .map_err(engine)?;
    o.set("encodeToken", encode).map_err(engine)?;
    o.set("validateToken", validate).map_err(engine)
}
