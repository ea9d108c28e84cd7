//! The one integration test binary. Each module owns its Gatehouse nodes, ports and child
//! processes; nothing depends on a server already running.

/// Test guards: a Gatehouse node on a free port, a cookie-keeping browser, helpers.
mod harness;

/// The provider side over real HTTP: login, tokens, refresh, revocation, logout.
mod oidc_flow;

/// The `sub` of client-credentials tokens: plain client_id, or Auth0's shape by option.
mod client_credentials;

/// A malicious upstream OpenID Provider against the `oidc` connection.
mod oidc_attacks;

/// Social OAuth 2.0 logins (Facebook, a generic oauth2 connection) against a local fake Facebook.
mod social_oauth2;

/// The credentials form's brute-force lock: shared by nodes, per username, expiring.
mod brute_force;

/// Exact redirect URI matching at /authorize, /token and logout, near miss by near miss.
mod redirect_uris;

/// Session cookie flags over http and https; CSRF tokens on every hosted form POST.
mod hosted_pages;

/// Every bad input gets a clear error and leaves nothing behind.
mod bad_input;

/// Deadlines and size limits on what clients send, over raw TCP.
mod http_limits;

/// The npm openid-client as the relying party, against Gatehouse.
mod interop;

/// Auth0 drop-in over HTTP: trailing-slash issuer, Auth0 client names, /oauth/token and CORS,
/// /v2/logout, response_mode=web_message.
mod auth0;

/// Auth0's Express SDKs (express-openid-connect, express-oauth2-jwt-bearer) against Gatehouse.
mod auth0_express;

/// Auth0's SPA SDK (auth0-spa-js) in headless Chromium: redirect login, silent tokens, logout.
mod auth0_browser;

/// scripts/setup's Node.js check and install, with fake node and npm commands.
mod setup_script;

/// Architecture invariants and docs, checked against the tree.
mod tidy;

/// A real browser (headless Chromium over WebDriver) through the `/demo` relying party.
mod browser;

/// A cross-site logout POST in Chromium leaves the session alive.
mod browser_logout;

/// The binary: embedded default, check-config, keys rotate.
mod cli;

/// Redis servers the tests own: single, Cluster, Sentinel.
mod redis_harness;

/// The store conformance suite against real Redis topologies.
mod redis_store;

/// Stateless nodes on one Redis: cross-node logins, races, key rotation, outages.
mod multi_node;

/// Redis keys and trace logs after logins: secrets only as hashes, none in any encoding.
mod at_rest;

/// Brokered login against a real OpenID Provider (npm oidc-provider): OIDC, Google, linking.
mod social_oidc;

/// The connector guide's example, compiled and run.
mod example_connector;

/// Actions through real logins: claims, scopes, metadata, denial, hostile scripts.
mod actions;

/// Actions fail closed and never starve: one test per class of defect.
mod actions_defects;

/// Ordinary Auth0 Actions from fixtures/actions/, run unchanged through real logins.
mod actions_auth0;

/// What Actions put in a real node's log: structured, capped, redacted.
mod actions_logs;

/// The client behind a trusted reverse proxy: its address and country, in Actions and counters.
mod actions_geoip;

/// SAML 2.0 and ADFS against a real IdP (pysaml2 + xmlsec1): signed, encrypted, IdP-initiated,
/// home realm discovery, Single Logout.
mod saml;

/// The SAML attack catalogue of fixtures/saml/make.py, each refused with nothing left behind.
mod saml_attacks;

/// A SAML login in headless Chromium: the IdP's form, its cross-origin POST to the ACS, binding.
mod saml_browser;
