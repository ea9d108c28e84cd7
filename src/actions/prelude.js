// The Auth0-shaped `api` object. Everything an action asks for is recorded in plain data on
// `__result`, which Gatehouse reads back as JSON once the handler has settled: host state is
// never reachable from the script.
globalThis.__result = {
  idToken: {}, accessToken: {}, addScopes: [], removeScopes: [],
  deny: null, appMetadata: {}, userMetadata: {}, cache: null, redirect: null,
};
// `fetch` exists only for an action with an allow-list; the host function behind it is taken
// out of reach of the script.
if (typeof globalThis.__fetch === "function") {
  const raw = globalThis.__fetch;
  delete globalThis.__fetch;
  globalThis.fetch = async (url, init = {}) => {
    const body = init.body === undefined || init.body === null ? null : String(init.body);
    const r = JSON.parse(raw(String(url), String(init.method || "GET"), JSON.stringify(init.headers || {}), body));
    return {
      status: r.status,
      ok: r.status >= 200 && r.status < 300,
      headers: { get: (name) => r.headers[String(name).toLowerCase()] ?? null },
      text: async () => r.body,
      json: async () => JSON.parse(r.body),
    };
  };
}
// api.cache, as Auth0's: string values with an expiry, at most 20 entries of 2 KiB per action,
// 15 minutes unless told otherwise, a day at most. Changes are saved after the run.
const CACHE_MAX_ENTRIES = 20, CACHE_MAX_VALUE = 2048, CACHE_MAX_KEY = 256;
const CACHE_DEFAULT_TTL = 15 * 60 * 1000, CACHE_MAX_TTL = 24 * 60 * 60 * 1000;
globalThis.__api = function (cacheEntries) {
  const r = globalThis.__result;
  const entries = cacheEntries && typeof cacheEntries === "object" ? cacheEntries : {};
  const live = (e) => e && typeof e.expires_at === "number" && e.expires_at > Date.now();
  const claim = (target) => (name, value) => {
    if (typeof name !== "string") throw new TypeError("claim name must be a string");
    target[name] = value === undefined ? null : JSON.parse(JSON.stringify(value));
  };
  return Object.freeze({
    idToken: Object.freeze({ setCustomClaim: claim(r.idToken) }),
    accessToken: Object.freeze({
      setCustomClaim: claim(r.accessToken),
      addScope: (s) => { r.addScopes.push(String(s)); },
      removeScope: (s) => { r.removeScopes.push(String(s)); },
    }),
    // post-login: deny(reason); pre-user-registration: deny(internalReason, userMessage), where
    // the person (and the client) see the user message.
    access: Object.freeze({
      deny: (reason, userMessage) => { r.deny = String(userMessage ?? reason ?? "access denied"); },
    }),
    cache: Object.freeze({
      get: (key) => {
        const e = entries[String(key)];
        return live(e) ? { value: e.value, expires_at: e.expires_at } : undefined;
      },
      set: (key, value, options = {}) => {
        key = String(key);
        value = String(value);
        if (key.length > CACHE_MAX_KEY) return { type: "error", code: "KEY_TOO_LARGE" };
        if (value.length > CACHE_MAX_VALUE) return { type: "error", code: "VALUE_TOO_LARGE" };
        for (const k of Object.keys(entries)) if (!live(entries[k])) delete entries[k];
        if (!(key in entries) && Object.keys(entries).length >= CACHE_MAX_ENTRIES) {
          return { type: "error", code: "TOO_MANY_ENTRIES" };
        }
        const now = Date.now();
        const wanted = typeof options.expires_at === "number" ? options.expires_at
          : now + (typeof options.ttl === "number" ? options.ttl : CACHE_DEFAULT_TTL);
        entries[key] = { value, expires_at: Math.min(wanted, now + CACHE_MAX_TTL) };
        r.cache = entries;
        return { type: "success" };
      },
      delete: (key) => {
        delete entries[String(key)];
        r.cache = entries;
        return { type: "success" };
      },
    }),
    // api.redirect: send the person elsewhere and resume at /continue. Tokens for the trip
    // are HS256 JWTs signed by Gatehouse with the action's secret (host functions).
    redirect: Object.freeze({
      sendUserTo: (url, options = {}) => {
        r.redirect = { url: String(url), query: JSON.parse(JSON.stringify(options.query || {})) };
      },
      encodeToken: ({ secret, payload = {}, expiresInSeconds = 900 }) =>
        globalThis.__encodeToken(String(secret), JSON.stringify(payload), Number(expiresInSeconds)),
      validateToken: ({ secret, tokenParameterName = "session_token" }) => {
        const req = (globalThis.__event && globalThis.__event.request) || {};
        const token = (req.query && req.query[tokenParameterName]) || (req.body && req.body[tokenParameterName]);
        if (!token) throw new Error(`no ${tokenParameterName} in the request`);
        return JSON.parse(globalThis.__validateToken(String(secret), String(token)));
      },
    }),
    user: Object.freeze({
      setAppMetadata: (k, v) => { r.appMetadata[String(k)] = v === undefined ? null : JSON.parse(JSON.stringify(v)); },
      setUserMetadata: (k, v) => { r.userMetadata[String(k)] = v === undefined ? null : JSON.parse(JSON.stringify(v)); },
    }),
  });
};
