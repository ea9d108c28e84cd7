// The Auth0-shaped `api` object. Everything an action asks for is recorded in plain data on
// `__result`, which Gatehouse reads back as JSON once the handler has settled: host state is
// never reachable from the script.
globalThis.__result = {
  idToken: {}, accessToken: {}, addScopes: [], removeScopes: [],
  deny: null, appMetadata: {}, userMetadata: {}, warnings: [],
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
globalThis.__api = function () {
  const r = globalThis.__result;
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
    access: Object.freeze({ deny: (reason) => { r.deny = String(reason ?? "access denied"); } }),
    user: Object.freeze({
      setAppMetadata: (k, v) => { r.appMetadata[String(k)] = v === undefined ? null : JSON.parse(JSON.stringify(v)); },
      setUserMetadata: (k, v) => { r.userMetadata[String(k)] = v === undefined ? null : JSON.parse(JSON.stringify(v)); },
    }),
  });
};
