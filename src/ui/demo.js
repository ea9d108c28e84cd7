// The demo relying party: a public client doing authorization code + PKCE (S256) in the
// browser, exactly as a single-page application would, against this Gatehouse.
(() => {
  const root = document.getElementById("demo");
  const issuer = root.dataset.issuer;
  const clientId = root.dataset.clientId;
  const redirectUri = root.dataset.redirectUri;
  const $ = (id) => document.getElementById(id);

  const b64url = (bytes) =>
    btoa(String.fromCharCode(...new Uint8Array(bytes))).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  const random = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));
  const decode = (jwt) => {
    const part = jwt.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
    return JSON.parse(decodeURIComponent(escape(atob(part))));
  };
  const fail = (message) => {
    $("error").textContent = message;
    $("error").hidden = false;
  };

  async function signIn() {
    const verifier = random(32);
    const challenge = b64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
    const state = random(16);
    const nonce = random(16);
    sessionStorage.setItem("gatehouse-demo", JSON.stringify({ verifier, state, nonce }));
    const url = new URL(issuer + "/authorize");
    url.search = new URLSearchParams({
      response_type: "code",
      client_id: clientId,
      redirect_uri: redirectUri,
      scope: "openid profile email offline_access",
      state,
      nonce,
      code_challenge: challenge,
      code_challenge_method: "S256",
    });
    location.assign(url);
  }

  async function finish(params) {
    const saved = JSON.parse(sessionStorage.getItem("gatehouse-demo") || "null");
    sessionStorage.removeItem("gatehouse-demo");
    history.replaceState(null, "", location.pathname);
    if (params.get("error")) return fail(`${params.get("error")}: ${params.get("error_description") || ""}`);
    if (!saved || params.get("state") !== saved.state) return fail("state does not match: start again");
    if (params.get("iss") !== issuer) return fail("iss does not match this issuer (RFC 9207)");
    const response = await fetch(issuer + "/token", {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({
        grant_type: "authorization_code",
        code: params.get("code"),
        redirect_uri: redirectUri,
        client_id: clientId,
        code_verifier: saved.verifier,
      }),
    });
    const tokens = await response.json();
    if (!response.ok) return fail(`${tokens.error}: ${tokens.error_description || ""}`);
    const idToken = decode(tokens.id_token);
    if (idToken.nonce !== saved.nonce) return fail("nonce does not match");
    const info = await fetch(issuer + "/userinfo", { headers: { authorization: "Bearer " + tokens.access_token } });
    const userinfo = await info.json();
    $("who").textContent = idToken.email || idToken.sub;
    $("id-token").textContent = JSON.stringify(idToken, null, 2);
    $("access-token").textContent = JSON.stringify(decode(tokens.access_token), null, 2);
    $("userinfo").textContent = JSON.stringify(userinfo, null, 2);
    sessionStorage.setItem("gatehouse-demo-id-token", tokens.id_token);
    $("signed-out").hidden = true;
    $("signed-in").hidden = false;
  }

  function signOut() {
    const url = new URL(issuer + "/logout");
    const hint = sessionStorage.getItem("gatehouse-demo-id-token");
    sessionStorage.removeItem("gatehouse-demo-id-token");
    url.search = new URLSearchParams({ id_token_hint: hint || "", post_logout_redirect_uri: redirectUri });
    location.assign(url);
  }

  $("sign-in").addEventListener("click", () => signIn().catch((e) => fail(String(e))));
  $("sign-out").addEventListener("click", signOut);
  const params = new URLSearchParams(location.search);
  if (params.get("code") || params.get("error")) finish(params).catch((e) => fail(String(e)));
})();
