// Frame Gatehouse's silent-authentication page (response_mode=web_message) from an origin the
// client did not register, with a redirect_uri that is registered (the SPA's). Whatever
// arrives by postMessage is recorded; the verdict is written once the frame has loaded and
// the SPA page's own listener (same code path) would long have had its message.
(async () => {
  const out = document.getElementById("result");
  const config = await (await fetch("/config.json")).json();
  const spa = new URLSearchParams(location.search).get("spa");
  const received = [];
  window.addEventListener("message", (e) => received.push({ origin: e.origin, data: e.data }));
  const url = new URL("/authorize", config.domain);
  for (const [k, v] of Object.entries({
    client_id: config.clientId,
    response_type: "code",
    redirect_uri: spa,
    scope: "openid profile email",
    state: "foreign-state",
    nonce: "foreign-nonce",
    code_challenge: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
    code_challenge_method: "S256",
    response_mode: "web_message",
    prompt: "none",
  })) url.searchParams.set(k, v);
  const frame = document.createElement("iframe");
  frame.addEventListener("load", () => {
    setTimeout(() => {
      out.textContent = JSON.stringify({ loaded: true, received });
      out.setAttribute("data-done", "1");
    }, 1500);
  });
  frame.src = url.toString();
  document.body.appendChild(frame);
})();
