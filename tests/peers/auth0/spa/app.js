// The app as Auth0's quickstart writes it, with Gatehouse as the domain. Two modes, chosen
// by ?mode= on the first visit and kept in sessionStorage across the login redirect:
//   refresh: useRefreshTokens (getTokenSilently uses the refresh_token grant at /oauth/token)
//   iframe:  no refresh tokens (getTokenSilently frames /authorize?prompt=none&response_mode=web_message)
// The page records which token grants went to /oauth/token (cacheLocation "localstorage"
// keeps the SDK's calls on this window's fetch) and which web messages arrived, so the test
// can tell which path getTokenSilently took.
(async () => {
  const $ = (id) => document.getElementById(id);
  const show = (id) => ($(id).hidden = false);
  const grants = [];
  const realFetch = window.fetch.bind(window);
  window.fetch = async (input, init) => {
    const url = typeof input === "string" ? input : input.url;
    if (url.includes("/oauth/token") && init && init.body) {
      const body = typeof init.body === "string" ? init.body : String(init.body);
      grants.push(new URLSearchParams(body).get("grant_type"));
    }
    return realFetch(input, init);
  };
  const messages = [];
  window.addEventListener("message", (e) => {
    if (e.data && e.data.type === "authorization_response") {
      messages.push({ origin: e.origin, keys: Object.keys(e.data.response).sort() });
    }
  });
  try {
    const query = new URLSearchParams(location.search);
    if (query.get("mode")) sessionStorage.setItem("mode", query.get("mode"));
    const mode = sessionStorage.getItem("mode") || "refresh";
    $("mode").textContent = mode;
    const config = await (await fetch("/config.json")).json();
    const client = await auth0.createAuth0Client({
      domain: config.domain,
      clientId: config.clientId,
      authorizationParams: {
        redirect_uri: location.origin,
        scope: mode === "refresh" ? "openid profile email offline_access" : "openid profile email",
      },
      useRefreshTokens: mode === "refresh",
      cacheLocation: "localstorage",
    });
    if (query.has("code") && query.has("state")) {
      await client.handleRedirectCallback();
      history.replaceState({}, "", "/");
    }
    if (!(await client.isAuthenticated())) {
      show("signed-out");
      $("login").addEventListener("click", () => client.loginWithRedirect());
      return;
    }
    const user = await client.getUser();
    $("who").textContent = user.email;
    $("user").textContent = JSON.stringify(user);
    const before = grants.length;
    const token = await client.getTokenSilently({ cacheMode: "off", detailedResponse: true });
    const claims = JSON.parse(atob(token.access_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    $("silent").textContent = JSON.stringify({
      sub: claims.sub,
      iss: claims.iss,
      grants: grants.slice(before),
      messages,
      id_token_sub: JSON.parse(atob(token.id_token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/"))).sub,
    });
    show("signed-in");
    $("logout").addEventListener("click", () => client.logout({ logoutParams: { returnTo: location.origin } }));
  } catch (e) {
    $("error").textContent = `${e.error || e.name}: ${e.error_description || e.message}`;
    show("error");
  }
})();
