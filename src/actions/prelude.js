// The Auth0-shaped `api`, `console`, `fetch` and `require`, installed before any action code.
//
// This module exports one function, called once by the host with its host functions and the
// limits. Everything the host reads back lives in `r`, reachable only through the closures
// below: the action can neither see it nor write it directly. `r` and every container in it
// have no prototype and hold only primitives (claim values as JSON text), so nothing an action
// does to `Object.prototype`, `JSON` or `Array.prototype` changes what `read` returns. The
// built-ins used here are captured before the action runs, for the same reason.
const stringify = JSON.stringify, parse = JSON.parse, Str = String, Num = Number;
const freeze = Object.freeze, create = Object.create, keys = Object.keys;
const Fn = Function, min = Math.min;

let installed = false;

export default function install(host, limits) {
  if (installed) throw new Error("the prelude is installed once");
  installed = true;
  const bag = () => create(null);
  const r = bag();
  r.idToken = bag(); r.accessToken = bag(); r.addScopes = bag(); r.removeScopes = bag();
  r.appMetadata = bag(); r.userMetadata = bag();
  r.deny = null; r.cache = null; r.redirect = null; r.primaryUser = null;

  // Depth of a JSON text: the deepest nesting of `[` and `{` outside strings.
  const depth = (text) => {
    let d = 0, max = 0, inString = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (inString) {
        if (c === "\\") i++;
        else if (c === "\"") inString = false;
      } else if (c === "\"") inString = true;
      else if (c === "{" || c === "[") { d++; if (d > max) max = d; }
      else if (c === "}" || c === "]") d--;
    }
    return max;
  };
  // A value as JSON text within the limits, or a RangeError naming the limit.
  const json = (what, value, maxBytes) => {
    const text = value === undefined ? "null" : stringify(value);
    if (text === undefined) return "null";
    if (text.length > maxBytes) throw new RangeError(`${what} is ${text.length} bytes; the limit is ${maxBytes}`);
    if (depth(text) > limits.maxDepth) throw new RangeError(`${what} nests deeper than ${limits.maxDepth} levels`);
    return text;
  };
  const claim = (target, token) => (name, value) => {
    if (typeof name !== "string") throw new TypeError("claim name must be a string");
    if (name.length > limits.maxClaimName) throw new RangeError(`claim names are at most ${limits.maxClaimName} characters`);
    if (!(name in target) && keys(target).length >= limits.maxClaims) {
      throw new RangeError(`at most ${limits.maxClaims} custom claims per ${token}`);
    }
    const text = json(`claim ${name}`, value, limits.maxClaimBytes);
    let total = text.length;
    for (const k of keys(target)) if (k !== name) total += target[k].length;
    if (total > limits.maxClaimsBytes) {
      throw new RangeError(`the custom claims of the ${token} would be ${total} bytes; the limit is ${limits.maxClaimsBytes}`);
    }
    target[name] = text;
  };
  const scope = (target) => (s) => {
    s = Str(s);
    if (!/^[\x21\x23-\x5b\x5d-\x7e]{1,128}$/.test(s)) throw new TypeError("a scope is 1-128 visible characters, no quote or backslash");
    if (!(s in target) && keys(target).length >= limits.maxScopes) throw new RangeError(`at most ${limits.maxScopes} scopes`);
    target[s] = true;
  };
  const metadata = (target, which) => (k, v) => {
    k = Str(k);
    const text = json(`${which}.${k}`, v, limits.maxMetadataBytes);
    let total = k.length + text.length;
    for (const other of keys(target)) if (other !== k) total += other.length + target[other].length;
    if (total > limits.maxMetadataBytes) {
      throw new RangeError(`${which} set by actions would be ${total} bytes; the limit is ${limits.maxMetadataBytes}`);
    }
    target[k] = text;
  };

  // console: each line goes to the host, which caps, redacts and logs it with the action's
  // name and the request's correlation id.
  const show = (v) => {
    if (typeof v === "string") return v;
    if (v instanceof Error) return `${v.name}: ${v.message}`;
    try { const t = stringify(v); return t === undefined ? Str(v) : t; } catch (_) { return Str(v); }
  };
  const line = (level) => (...args) => { host.log(level, args.map(show).join(" ")); };
  globalThis.console = freeze({
    log: line("info"), info: line("info"), warn: line("warn"), error: line("error"), debug: line("debug"),
  });

  // require: only the modules the configuration lists, each evaluated once per run.
  const loaded = create(null);
  globalThis.require = (name) => {
    name = Str(name);
    if (name in loaded) return loaded[name].exports;
    const source = host.module(name);
    const module = { exports: {} };
    loaded[name] = module;
    new Fn("module", "exports", "require", source)(module, module.exports, globalThis.require);
    return module.exports;
  };

  // fetch, only for an action with an allow-list.
  if (host.fetch) {
    const raw = host.fetch;
    globalThis.fetch = async (url, init = {}) => {
      const body = init.body === undefined || init.body === null ? null : Str(init.body);
      const got = parse(raw(Str(url), Str(init.method || "GET"), stringify(init.headers || {}), body));
      return freeze({
        status: got.status,
        ok: got.status >= 200 && got.status < 300,
        headers: freeze({ get: (name) => got.headers[Str(name).toLowerCase()] ?? null }),
        text: async () => got.body,
        json: async () => parse(got.body),
      });
    };
  }

  // api.cache, as Auth0's: string values with an expiry, at most 20 entries of 2 KiB per
  // action, 15 minutes unless told otherwise, a day at most. Changes are saved after the run.
  const CACHE_DEFAULT_TTL = 15 * 60 * 1000, CACHE_MAX_TTL = 24 * 60 * 60 * 1000;
  // "Now" is the host's clock at the start of the run, as the host checks expiry against it.
  const startedAt = Num(host.now);
  const now = () => startedAt;
  const entries = bag();
  const given = host.cache;
  if (given && typeof given === "object") for (const k of keys(given)) entries[k] = given[k];
  const live = (e) => e && typeof e.expires_at === "number" && e.expires_at > now();
  const saveCache = () => {
    const out = bag();
    for (const k of keys(entries)) out[k] = stringify({ value: entries[k].value, expires_at: entries[k].expires_at });
    r.cache = out;
  };

  const api = freeze({
    idToken: freeze({ setCustomClaim: claim(r.idToken, "ID token") }),
    accessToken: freeze({
      setCustomClaim: claim(r.accessToken, "access token"),
      addScope: scope(r.addScopes),
      removeScope: scope(r.removeScopes),
    }),
    // post-login: deny(reason); pre-user-registration: deny(internalReason, userMessage), where
    // the person (and the client) see the user message.
    access: freeze({
      deny: (reason, userMessage) => {
        const text = Str(userMessage ?? reason ?? "access denied");
        r.deny = text.length > limits.maxReason ? text.slice(0, limits.maxReason) : text;
      },
    }),
    authentication: freeze({
      // Auth0: the tokens are issued for this user instead; once per transaction.
      setPrimaryUser: (userId) => {
        userId = Str(userId);
        if (r.primaryUser !== null && r.primaryUser !== userId) throw new Error("setPrimaryUser may be called once per transaction");
        if (userId.length === 0 || userId.length > 256) throw new TypeError("setPrimaryUser needs a user_id");
        r.primaryUser = userId;
      },
    }),
    cache: freeze({
      get: (key) => {
        const e = entries[Str(key)];
        return live(e) ? { value: e.value, expires_at: e.expires_at } : undefined;
      },
      set: (key, value, options = {}) => {
        key = Str(key);
        value = Str(value);
        if (key.length > limits.cacheMaxKey) return { type: "error", code: "KEY_TOO_LARGE" };
        if (value.length > limits.cacheMaxValue) return { type: "error", code: "VALUE_TOO_LARGE" };
        for (const k of keys(entries)) if (!live(entries[k])) delete entries[k];
        if (!(key in entries) && keys(entries).length >= limits.cacheMaxEntries) {
          return { type: "error", code: "TOO_MANY_ENTRIES" };
        }
        const t = now();
        const wanted = typeof options.expires_at === "number" ? options.expires_at
          : t + (typeof options.ttl === "number" ? options.ttl : CACHE_DEFAULT_TTL);
        entries[key] = { value, expires_at: min(wanted, t + CACHE_MAX_TTL) };
        saveCache();
        return { type: "success" };
      },
      delete: (key) => {
        delete entries[Str(key)];
        saveCache();
        return { type: "success" };
      },
    }),
    // api.redirect: send the person elsewhere and resume at /continue. Tokens for the trip
    // are HS256 JWTs signed and checked by the host.
    redirect: freeze({
      sendUserTo: (url, options = {}) => {
        const query = bag();
        const q = options && options.query;
        if (q && typeof q === "object") {
          for (const k of keys(q)) query[Str(k)] = typeof q[k] === "string" ? q[k] : stringify(q[k]) ?? "null";
        }
        const to = bag();
        to.url = Str(url);
        to.query = query;
        r.redirect = to;
      },
      encodeToken: ({ secret, payload = {}, expiresInSeconds = 900 }) =>
        host.encodeToken(Str(secret), stringify(payload), Num(expiresInSeconds)),
      validateToken: ({ secret, tokenParameterName = "session_token" }) =>
        parse(host.validateToken(Str(secret), Str(tokenParameterName))),
    }),
    user: freeze({
      setAppMetadata: metadata(r.appMetadata, "app_metadata"),
      setUserMetadata: metadata(r.userMetadata, "user_metadata"),
    }),
    multifactor: freeze({
      enable: () => { throw new Error("api.multifactor is not supported yet"); },
    }),
  });
  return freeze({ api, read: () => stringify(r) });
}
