#!/usr/bin/env node
// Gatehouse test peer: a real upstream OpenID Provider built on oidc-provider v8 (pinned in package.json;
// v9 warns "Unsupported runtime" on Node 20, it wants Node 22+),
// for integration tests where Gatehouse is the relying party (e.g. its "okta" connector).
//
// Env:
//   PORT           listen on 127.0.0.1:PORT (0 or unset = ephemeral port; then ISSUER defaults to it)
//   ISSUER         issuer URL, default http://127.0.0.1:PORT (plain http is fine, see "cookies" below)
//   CLIENT_ID      the one registered client (required)
//   CLIENT_SECRET  its secret; token endpoint auth is client_secret_basic only (required)
//   REDIRECT_URI   the one registered redirect URI, e.g. http://127.0.0.1:4444/callback/okta (required)
//   ID_TOKEN_ALG   RS256 (default), PS256 or ES256; one fresh signing key of the matching type is made
//   USERS          optional JSON map login -> claims, e.g. {"alice":{"sub":"alice-1","email":...}};
//                  accountId = the login; sub defaults to the login when missing
//
// stdout carries exactly ONE line, `READY <issuer>`, once listening. Everything else goes to stderr.
//
// Interactions (replacing oidc-provider's devInteractions, deterministic and browser-free):
//   GET  /interaction/:uid        prompt "login": a tiny HTML form (fields `login`, `password`)
//                                 prompt "consent": auto-granted, 303 straight back to /auth/:uid
//   POST /interaction/:uid/login  application/x-www-form-urlencoded login=<name>&password=<any>
//                                 known login -> 303 to /auth/:uid; login=deny -> the authorization
//                                 ends with error=access_denied (error_description "user denied");
//                                 unknown login -> 401 with the form again
// The interaction cookie (_interaction) is path-scoped to /interaction/:uid, the resume cookie
// (_interaction_resume) to /auth/:uid, the session cookie (_session) to /: a client needs a cookie jar.

import crypto from 'node:crypto';
import http from 'node:http';

// oidc-provider prints its "NOTICE"s with console.info (stdout). Keep stdout for the READY line only.
console.info = console.error;
console.log = console.error;

const { default: Provider, errors } = await import('oidc-provider');

function fail(msg) {
  console.error(`idp.mjs: ${msg}`);
  process.exit(2);
}

const missing = ['CLIENT_ID', 'CLIENT_SECRET', 'REDIRECT_URI'].filter((n) => !process.env[n]);
if (missing.length) fail(`missing environment variable(s): ${missing.join(', ')}`);
const { CLIENT_ID, CLIENT_SECRET, REDIRECT_URI } = process.env;
const PORT = Number.parseInt(process.env.PORT || '0', 10);
if (!Number.isInteger(PORT) || PORT < 0 || PORT > 65535) fail(`bad PORT ${process.env.PORT}`);
const ID_TOKEN_ALG = process.env.ID_TOKEN_ALG || 'RS256';

const DEFAULT_USERS = {
  alice: {
    sub: 'alice-1',
    email: 'alice@example.com',
    email_verified: true,
    name: 'Alice Liddell',
    given_name: 'Alice',
    family_name: 'Liddell',
    picture: 'https://example.com/a.png',
    locale: 'en',
    hd: 'example.com',
  },
};
let USERS = DEFAULT_USERS;
if (process.env.USERS) {
  try {
    USERS = JSON.parse(process.env.USERS);
  } catch (err) {
    fail(`USERS is not valid JSON: ${err.message}`);
  }
  if (!USERS || typeof USERS !== 'object' || Array.isArray(USERS)
    || Object.values(USERS).some((c) => !c || typeof c !== 'object' || Array.isArray(c))) {
    fail('USERS must be a JSON object mapping login -> claims object');
  }
}
const userByLogin = (login) => (Object.hasOwn(USERS, login) ? USERS[login] : undefined);

// ---- signing key: one fresh key whose type matches ID_TOKEN_ALG, kid = RFC 7638 thumbprint ----
function makeSigningJwk(alg) {
  let pair;
  if (alg === 'RS256' || alg === 'PS256') {
    pair = crypto.generateKeyPairSync('rsa', { modulusLength: 2048 });
  } else if (alg === 'ES256') {
    pair = crypto.generateKeyPairSync('ec', { namedCurve: 'P-256' });
  } else {
    fail(`unsupported ID_TOKEN_ALG ${alg} (use RS256, PS256 or ES256)`);
  }
  const jwk = pair.privateKey.export({ format: 'jwk' });
  const members = jwk.kty === 'RSA'
    ? { e: jwk.e, kty: jwk.kty, n: jwk.n }
    : { crv: jwk.crv, kty: jwk.kty, x: jwk.x, y: jwk.y };
  const kid = crypto.createHash('sha256').update(JSON.stringify(members)).digest('base64url');
  return { ...jwk, kid, alg, use: 'sig' };
}

const configuration = {
  clients: [{
    client_id: CLIENT_ID,
    client_secret: CLIENT_SECRET,
    redirect_uris: [REDIRECT_URI],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
    id_token_signed_response_alg: ID_TOKEN_ALG,
  }],
  jwks: { keys: [makeSigningJwk(ID_TOKEN_ALG)] },
  // Cookies: signed with a random per-run key. Nothing special is needed for a plain-http issuer:
  // oidc-provider marks cookies Secure only when the request itself is secure (koa's ctx.secure, i.e.
  // https, or X-Forwarded-Proto: https with provider.proxy = true); `proxy` stays off here. v8's default
  // for the long-lived _session cookie is SameSite=None, which real browsers drop when the cookie is
  // not Secure, so both cookie kinds are set to SameSite=Lax (v9's default) to keep this usable from a
  // headless browser over http as well as from a plain HTTP client.
  cookies: {
    keys: [crypto.randomBytes(32).toString('base64url')],
    long: { signed: true, httpOnly: true, sameSite: 'lax' },
    short: { signed: true, httpOnly: true, sameSite: 'lax' },
  },
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'given_name', 'family_name', 'picture', 'locale', 'hd'],
  },
  scopes: ['openid', 'email', 'profile'],
  // ID tokens carry the scope's claims too (not only userinfo), so a broker can read them there.
  conformIdTokenClaims: false,
  // The default requires PKCE only for public clients / FAPI; here every authorization request needs
  // code_challenge + code_challenge_method=S256 (pkce.methods defaults to ['S256'] only).
  pkce: { required: () => true },
  features: {
    devInteractions: { enabled: false }, // replaced by the routes below
    userinfo: { enabled: true },
  },
  interactions: {
    url: (_ctx, interaction) => `/interaction/${interaction.uid}`,
  },
  async findAccount(_ctx, id) {
    const claims = userByLogin(id);
    if (!claims) return undefined;
    return {
      accountId: id,
      async claims() {
        return { ...claims, sub: String(claims.sub ?? id) };
      },
    };
  },
};

// ---- minimal interaction UI ----
const escapeHtml = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);

function loginPage(uid, error) {
  return `<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>Sign in</title></head><body>
${error ? `<p class="error">${escapeHtml(error)}</p>\n` : ''}<form method="post" action="/interaction/${escapeHtml(uid)}/login"><input name="login"><input name="password" type="password"><button>Sign in</button></form>
</body></html>
`;
}

function send(res, status, body, type = 'text/plain; charset=utf-8') {
  res.statusCode = status;
  res.setHeader('Content-Type', type);
  res.setHeader('Cache-Control', 'no-store');
  res.end(body);
}

async function readForm(req) {
  const chunks = [];
  let size = 0;
  for await (const chunk of req) {
    size += chunk.length;
    if (size > 64 * 1024) throw new Error('request body too large');
    chunks.push(chunk);
  }
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function autoConsent(provider, req, res, details) {
  const { prompt: { details: missing }, params, session } = details;
  let grant;
  if (details.grantId) {
    grant = await provider.Grant.find(details.grantId);
  }
  if (!grant) {
    grant = new provider.Grant({ accountId: session.accountId, clientId: params.client_id });
  }
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

async function handleInteraction(provider, req, res, uid, action) {
  let details;
  try {
    details = await provider.interactionDetails(req, res);
  } catch (err) {
    if (err instanceof errors.SessionNotFound) {
      return send(res, 400, 'interaction session not found (missing or expired _interaction cookie)\n');
    }
    throw err;
  }
  if (details.uid !== uid) return send(res, 400, 'interaction uid mismatch\n');
  const prompt = details.prompt.name;
  console.error(`[idp] ${req.method} interaction ${uid} prompt=${prompt} reasons=${details.prompt.reasons.join(',')}`);

  if (req.method === 'GET' && action === undefined) {
    if (prompt === 'login') return send(res, 200, loginPage(uid), 'text/html; charset=utf-8');
    if (prompt === 'consent') return autoConsent(provider, req, res, details);
    return send(res, 500, `unsupported prompt ${prompt}\n`);
  }

  if (req.method === 'POST' && action === 'login') {
    if (prompt !== 'login') return send(res, 400, `interaction is at prompt ${prompt}, not login\n`);
    const form = await readForm(req);
    const login = form.get('login') ?? '';
    if (login === 'deny') {
      return provider.interactionFinished(req, res, {
        error: 'access_denied',
        error_description: 'user denied',
      }, { mergeWithLastSubmission: false });
    }
    if (!userByLogin(login)) {
      return send(res, 401, loginPage(uid, `unknown login ${login}`), 'text/html; charset=utf-8');
    }
    // Any password is accepted for a known login.
    return provider.interactionFinished(req, res, { login: { accountId: login } }, {
      mergeWithLastSubmission: false,
    });
  }

  res.setHeader('Allow', action === 'login' ? 'POST' : 'GET');
  return send(res, 405, 'method not allowed\n');
}

// ---- server: listen first (PORT may be 0), then build the provider with the final issuer ----
let provider;
let providerCallback;
const server = http.createServer(async (req, res) => {
  if (!provider) return send(res, 503, 'starting\n');
  const { pathname } = new URL(req.url, 'http://localhost');
  const m = pathname.match(/^\/interaction\/([^/]+)(?:\/(login))?\/?$/);
  if (!m) {
    // oidc-provider treats client_secret_basic and client_secret_post as interchangeable for a client
    // registered with either. Like Okta, insist on the registered method: no Basic header, no token.
    if (req.method === 'POST' && pathname === '/token'
      && !/^basic\s/i.test(req.headers.authorization ?? '')) {
      res.setHeader('WWW-Authenticate', 'Basic realm="idp"');
      return send(res, 401, `${JSON.stringify({
        error: 'invalid_client',
        error_description: 'client authentication must use client_secret_basic (HTTP Basic)',
      })}\n`, 'application/json; charset=utf-8');
    }
    return providerCallback(req, res);
  }
  try {
    return await handleInteraction(provider, req, res, m[1], m[2]);
  } catch (err) {
    console.error('[idp] interaction error:', err);
    if (!res.headersSent) return send(res, 500, 'interaction error\n');
    return res.end();
  }
});

server.on('error', (err) => fail(`server error: ${err.message}`));
server.listen(PORT, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = process.env.ISSUER || `http://127.0.0.1:${port}`;
  try {
    provider = new Provider(issuer, configuration);
  } catch (err) {
    fail(`provider configuration rejected: ${err.stack || err}`);
  }
  provider.on('server_error', (ctx, err) => {
    console.error(`[idp] server_error ${ctx.method} ${ctx.path}:`, err);
  });
  // Expected protocol errors (invalid_grant, invalid_client, ...) are logged too, one line each.
  for (const event of ['authorization.error', 'grant.error', 'userinfo.error', 'discovery.error',
    'jwks.error', 'introspection.error', 'revocation.error', 'end_session.error']) {
    provider.on(event, (ctx, err) => {
      console.error(`[idp] ${event} ${ctx.method} ${ctx.path}: ${err.name} ${err.message}`
        + `${err.error_description ? ` (${err.error_description})` : ''}`);
    });
  }
  providerCallback = provider.callback();
  process.stdout.write(`READY ${issuer}\n`);
});

for (const sig of ['SIGTERM', 'SIGINT']) {
  process.on(sig, () => {
    server.close();
    process.exit(0);
  });
}
