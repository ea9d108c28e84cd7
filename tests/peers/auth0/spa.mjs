// A single-page app using @auth0/auth0-spa-js, unchanged, against Gatehouse: serves the page,
// the SDK's own UMD build, and a "foreign" page on a second port (another origin) that tries
// to frame Gatehouse's web_message page. Env: GATEHOUSE (the domain, http://127.0.0.1:N),
// CLIENT_ID. Prints "READY <spa port> <foreign port>" once both listen.
import express from "express";
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";

const require = createRequire(import.meta.url);
const here = path.dirname(fileURLToPath(import.meta.url));
const sdk = require.resolve("@auth0/auth0-spa-js/dist/auth0-spa-js.production.js");
const config = { domain: process.env.GATEHOUSE, clientId: process.env.CLIENT_ID };

function site(page) {
  const app = express();
  app.get("/auth0-spa-js.js", (_req, res) => res.sendFile(sdk));
  app.get("/config.json", (_req, res) => res.json(config));
  app.get("/app.js", (_req, res) => res.sendFile(path.join(here, "spa", "app.js")));
  app.get("/foreign.js", (_req, res) => res.sendFile(path.join(here, "spa", "foreign.js")));
  app.get("/", (_req, res) => res.sendFile(path.join(here, "spa", page)));
  app.get("/favicon.ico", (_req, res) => res.status(204).end());
  return app;
}

const listen = (app) =>
  new Promise((resolve, reject) => {
    const server = app.listen(0, "127.0.0.1", () => resolve(server.address().port));
    server.on("error", reject);
  });

const spa = await listen(site("index.html"));
const foreign = await listen(site("foreign.html"));
console.log(`READY ${spa} ${foreign}`);
