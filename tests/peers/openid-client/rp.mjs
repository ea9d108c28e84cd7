#!/usr/bin/env node
// Gatehouse interop peer: a relying party built on openid-client v6 (strict validation, nothing disabled
// except the HTTPS-only rule, via allowInsecureRequests, because the test issuer is plain http).
//  1. discovery  2. PKCE + state + nonce authorization URL  3. plays the browser with fetch (cookie jar,
//  manual redirects, hosted login form or connector chooser) up to the REDIRECT_URI callback
//  4. authorization code grant (state, nonce, PKCE, RFC 9207 iss checked by openid-client)  5. userinfo
//  6. refresh, then replays of the old token and of the rotated one must both fail with invalid_grant
//  7. second login on the same cookie jar (SSO), revocation, refresh with the revoked token must fail
//  8. prints ONE JSON line on stdout (also when a step-6/7 invalid_grant expectation fails, then exit 1).
//     Any failure: message on stderr, non-zero exit (2 = missing env vars).
// Env: ISSUER CLIENT_ID [CLIENT_SECRET] REDIRECT_URI USERNAME PASSWORD [SCOPE] [ID_TOKEN_ALG]
import * as client from 'openid-client';

const log = (...args) => console.error('[rp]', ...args);
const missing = ['ISSUER', 'CLIENT_ID', 'REDIRECT_URI', 'USERNAME', 'PASSWORD'].filter((n) => !process.env[n]);
if (missing.length) {
  console.error(`rp.mjs: missing environment variable(s): ${missing.join(', ')}`);
  process.exit(2);
}
const { ISSUER, CLIENT_ID, REDIRECT_URI, USERNAME, PASSWORD } = process.env;
const CLIENT_SECRET = process.env.CLIENT_SECRET ?? '';
const SCOPE = process.env.SCOPE || 'openid profile email offline_access';
const ID_TOKEN_ALG = process.env.ID_TOKEN_ALG || '';

// ---- a minimal browser: cookie jar keyed by host name, redirects handled by the caller ----
const jar = new Map(); // hostname -> Map(name -> value)
function storeCookies(url, res) {
  const cookies = jar.get(url.hostname) ?? new Map();
  for (const line of res.headers.getSetCookie()) {
    const [pair, ...attrs] = line.split(';');
    const eq = pair.indexOf('=');
    if (eq < 1) continue;
    const name = pair.slice(0, eq).trim(), value = pair.slice(eq + 1).trim();
    const expired = attrs.some((a) => /^\s*max-age\s*=\s*(0|-\d+)\s*$/i.test(a));
    if (expired) cookies.delete(name); else cookies.set(name, value);
  }
  jar.set(url.hostname, cookies);
}
async function browse(href, init = {}) {
  const url = new URL(href);
  const headers = new Headers(init.headers);
  const cookies = jar.get(url.hostname);
  if (cookies?.size) headers.set('cookie', [...cookies].map(([n, v]) => `${n}=${v}`).join('; '));
  const res = await fetch(url, { ...init, headers, redirect: 'manual', signal: AbortSignal.timeout(15000) });
  storeCookies(url, res);
  return res;
}

const ENTITIES = { amp: '&', quot: '"', apos: "'", lt: '<', gt: '>' };
const unescapeHtml = (s) => s.replace(/&(#x[0-9a-f]+|#[0-9]+|amp|quot|apos|lt|gt);/gi, (_, e) =>
  e[0] === '#' ? String.fromCodePoint(e[1].toLowerCase() === 'x' ? parseInt(e.slice(2), 16) : parseInt(e.slice(1), 10))
    : ENTITIES[e.toLowerCase()]);
function attrs(tag) {
  const out = {};
  for (const m of tag.matchAll(/([\w:-]+)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s"'>]+))/g)) {
    out[m[1].toLowerCase()] = unescapeHtml(m[2] ?? m[3] ?? m[4]);
  }
  return out;
}
function parseForms(html) {
  return [...html.matchAll(/<form\b([^>]*)>([\s\S]*?)<\/form>/gi)].map(([, open, body]) => {
    const a = attrs(open);
    const hidden = {};
    for (const [input] of body.matchAll(/<input\b[^>]*>/gi)) {
      const i = attrs(input);
      if ((i.type ?? '').toLowerCase() === 'hidden' && i.name) hidden[i.name] = i.value ?? '';
    }
    return { method: (a.method ?? 'get').toLowerCase(), action: a.action ?? '', hidden };
  }).filter((f) => f.method === 'post');
}

// Follows the authorization request through redirects and forms until the callback to REDIRECT_URI.
async function login(authorizationUrl) {
  let url = authorizationUrl.href;
  let res = await browse(url);
  let showedForm = false;
  for (let step = 0; step < 25; step++) {
    if ([301, 302, 303, 307, 308].includes(res.status)) {
      const location = res.headers.get('location');
      if (!location) throw new Error(`HTTP ${res.status} without Location at ${url}`);
      await res.body?.cancel();
      url = new URL(location, url).href;
      if (url.startsWith(REDIRECT_URI)) return { callbackUrl: new URL(url), showedForm };
      res = await browse(url);
      continue;
    }
    const html = await res.text();
    if (res.status !== 200) throw new Error(`HTTP ${res.status} at ${url}: ${html.slice(0, 500)}`);
    const forms = parseForms(html);
    let form = forms.find((f) => f.action.includes('/credentials'));
    let fields;
    if (form) {
      if (showedForm) throw new Error(`login form shown again after submitting credentials at ${url}: ${html.slice(0, 500)}`);
      showedForm = true;
      fields = { ...form.hidden, username: USERNAME, password: PASSWORD };
    } else if ((form = forms.find((f) => f.action.includes('/connect')))) {
      fields = form.hidden;
    } else {
      throw new Error(`no credentials or connector form at ${url}: ${html.slice(0, 500)}`);
    }
    url = new URL(form.action, url).href;
    log('POST', url);
    res = await browse(url, {
      method: 'POST',
      headers: { 'content-type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(fields).toString(),
    });
  }
  throw new Error(`too many redirects/forms, last URL ${url}`);
}

// ---- OpenID Connect steps ----
async function codeFlow(config) {
  const pkceCodeVerifier = client.randomPKCECodeVerifier();
  const codeChallenge = await client.calculatePKCECodeChallenge(pkceCodeVerifier);
  const state = client.randomState();
  const nonce = client.randomNonce();
  const authorizationUrl = client.buildAuthorizationUrl(config, {
    redirect_uri: REDIRECT_URI, scope: SCOPE, code_challenge: codeChallenge,
    code_challenge_method: 'S256', state, nonce,
  });
  const { callbackUrl, showedForm } = await login(authorizationUrl);
  log('callback', callbackUrl.href);
  const tokens = await client.authorizationCodeGrant(config, callbackUrl, {
    pkceCodeVerifier, expectedState: state, expectedNonce: nonce, idTokenExpected: true,
  });
  return { tokens, showedForm };
}

// OAuth error code of a failed token request; anything that is not an OAuth error response is rethrown.
function oauthErrorCode(err) {
  if (err instanceof client.ResponseBodyError) return err.error;
  if (err instanceof client.WWWAuthenticateChallengeError) return err.cause?.[0]?.parameters?.error ?? 'www_authenticate_challenge';
  throw err;
}
// Returns the error code of a refresh that is expected to fail, or null if it unexpectedly succeeded.
async function refreshError(config, refreshToken) {
  try {
    await client.refreshTokenGrant(config, refreshToken);
    return null;
  } catch (err) {
    return oauthErrorCode(err);
  }
}

async function main() {
  const metadata = ID_TOKEN_ALG ? { id_token_signed_response_alg: ID_TOKEN_ALG } : {};
  const auth = CLIENT_SECRET ? client.ClientSecretBasic(CLIENT_SECRET) : client.None();
  const config = await client.discovery(new URL(ISSUER), CLIENT_ID, metadata, auth, {
    execute: [client.allowInsecureRequests],
  });
  log('discovered', config.serverMetadata().issuer);

  const first = await codeFlow(config);
  const claims = first.tokens.claims();
  const idTokenHeader = JSON.parse(Buffer.from(first.tokens.id_token.split('.')[0], 'base64url').toString());
  const userinfo = await client.fetchUserInfo(config, first.tokens.access_token, claims.sub);

  const oldRefresh = first.tokens.refresh_token;
  if (!oldRefresh) throw new Error('no refresh_token in the authorization code grant response');
  const refreshedTokens = await client.refreshTokenGrant(config, oldRefresh);
  const refreshed = typeof refreshedTokens.access_token === 'string';
  const rotated = refreshedTokens.refresh_token;
  if (!rotated || rotated === oldRefresh) throw new Error('refresh grant did not rotate the refresh token');
  const oldReuseError = await refreshError(config, oldRefresh);
  const rotatedAfterReuseError = await refreshError(config, rotated);

  const second = await codeFlow(config);
  if (!second.tokens.refresh_token) throw new Error('no refresh_token in the second code grant response');
  await client.tokenRevocation(config, second.tokens.refresh_token, { token_type_hint: 'refresh_token' });
  const revokedError = await refreshError(config, second.tokens.refresh_token);

  const result = {
    sub: claims.sub,
    id_token_claims: claims,
    userinfo,
    refreshed,
    old_refresh_reuse_error: oldReuseError,
    rotated_after_reuse_error: rotatedAfterReuseError,
    second_login_showed_form: second.showedForm,
    revoked_refresh_error: revokedError,
    id_token_alg: idTokenHeader.alg,
  };
  console.log(JSON.stringify(result));
  const failures = Object.entries({ old_refresh_reuse_error: oldReuseError,
    rotated_after_reuse_error: rotatedAfterReuseError, revoked_refresh_error: revokedError })
    .filter(([, code]) => code !== 'invalid_grant').map(([k, code]) => `${k}: expected invalid_grant, got ${code}`);
  if (failures.length) throw new Error(failures.join('; '));
}

// Error message including the cause chain (openid-client wraps oauth4webapi errors, details live in `cause`).
function describe(err, depth = 0) {
  let out = `${err?.code ? `[${err.code}] ` : ''}${err?.message ?? String(err)}`;
  if (err?.error) out += ` (error=${err.error}${err.error_description ? `: ${err.error_description}` : ''})`;
  const c = err?.cause;
  if (c instanceof Error && depth < 5) return `${out}\n  caused by: ${describe(c, depth + 1)}`;
  if (c !== undefined) {
    const v = c instanceof URLSearchParams ? Object.fromEntries(c)
      : c instanceof Response ? { status: c.status, url: c.url } : c;
    try { out += `\n  cause: ${JSON.stringify(v)}`; } catch { out += `\n  cause: ${v}`; }
  }
  return out;
}

main().catch((err) => {
  console.error(`rp.mjs failed: ${describe(err)}`);
  process.exit(1);
});
