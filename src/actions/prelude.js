// The Auth0-shaped `api` object. Everything an action asks for is recorded in plain data on
// `__result`, which Gatehouse reads back as JSON once the handler has settled: host state is
// never reachable from the script.
globalThis.__result = {
  idToken: {}, accessToken: {}, addScopes: [], removeScopes: [],
  deny: null, appMetadata: {}, userMetadata: {}, warnings: [],
};
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
