// Auth0's Express SDKs, configured as Auth0's quickstarts write them, with Gatehouse as the
// issuer. Two servers:
//   web: express-openid-connect (auth0Logout: true) with /profile (req.oidc.user) and
//        /userinfo (req.oidc.fetchUserInfo()); /login, /callback and /logout are the SDK's.
//   api: express-oauth2-jwt-bearer, GET /things needs scope read:things.
// Env: ISSUER, CLIENT_ID, CLIENT_SECRET, AUDIENCE. Prints "READY <web port> <api port>".
import http from "node:http";
import express from "express";
import openid from "express-openid-connect";
import bearer from "express-oauth2-jwt-bearer";

const { auth: oidc, requiresAuth } = openid;
const { auth: jwt, requiredScopes } = bearer;

const listen = () =>
  new Promise((resolve, reject) => {
    const server = http.createServer();
    server.listen(0, "127.0.0.1", () => resolve(server));
    server.on("error", reject);
  });

const webServer = await listen();
const apiServer = await listen();
const webPort = webServer.address().port;

const web = express();
web.use(
  oidc({
    issuerBaseURL: process.env.ISSUER,
    baseURL: `http://127.0.0.1:${webPort}`,
    clientID: process.env.CLIENT_ID,
    clientSecret: process.env.CLIENT_SECRET,
    secret: "a-long-random-cookie-secret-for-the-test-app-0123456789",
    authRequired: false,
    auth0Logout: true,
    authorizationParams: { response_type: "code", response_mode: "query", scope: "openid profile email" },
  }),
);
web.get("/", (req, res) => res.json({ authenticated: req.oidc.isAuthenticated() }));
web.get("/profile", requiresAuth(), (req, res) => res.json(req.oidc.user));
web.get("/userinfo", requiresAuth(), async (req, res) => res.json(await req.oidc.fetchUserInfo()));
web.use((err, _req, res, _next) => res.status(err.status || 500).json({ error: err.message }));
webServer.on("request", web);

const api = express();
api.use(jwt({ issuerBaseURL: process.env.ISSUER, audience: process.env.AUDIENCE }));
api.get("/things", requiredScopes("read:things"), (req, res) => res.json({ sub: req.auth.payload.sub, things: [1, 2, 3] }));
api.use((err, _req, res, _next) => {
  res.status(err.status || 500);
  if (err.headers) res.set(err.headers);
  res.json({ error: err.code || err.name, message: err.message });
});
apiServer.on("request", api);

console.log(`READY ${webPort} ${apiServer.address().port}`);
