"""A real SAML 2.0 Identity Provider (pysaml2 + xmlsec1) that Gatehouse's tests log in through.

Run: .venv/bin/python idp.py --config CONFIG.json  (see README.md for the config fields).
Prints one stdout line `READY <base_url>` once it listens; everything else goes to stderr.
"""

import argparse
import base64
import html
import json
import logging
import secrets
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote_plus, urlsplit

from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT, saml, samlp
from saml2.attribute_converter import AttributeConverter
from saml2.authn_context import PASSWORDPROTECTEDTRANSPORT
from saml2.config import IdPConfig
from saml2.metadata import create_metadata_string
from saml2.s_utils import do_ava, factory
from saml2.server import Server
from saml2.sigver import RSA_OAEP_MGF1P, extract_rsa_key_from_x509_cert, pem_format
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256, SIG_RSA_SHA384, SIG_RSA_SHA512

log = logging.getLogger("saml-idp")

PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
# config name -> (EncryptedData algorithm URI, xmlsec1 --session-key for it)
DATA_ENCRYPTION = {
    "aes128-cbc": ("http://www.w3.org/2001/04/xmlenc#aes128-cbc", "aes-128"),
    "aes256-cbc": ("http://www.w3.org/2001/04/xmlenc#aes256-cbc", "aes-256"),
    "aes128-gcm": ("http://www.w3.org/2009/xmlenc11#aes128-gcm", "aes-128"),
    "aes256-gcm": ("http://www.w3.org/2009/xmlenc11#aes256-gcm", "aes-256"),
}
# Query signatures we accept from the SP (no SHA-1).
QUERY_SIG_ALGS = {SIG_RSA_SHA256, SIG_RSA_SHA384, SIG_RSA_SHA512}


class VerbatimNames(AttributeConverter):
    """Emit attribute names exactly as configured, with the configured NameFormat.

    pysaml2's stock converters rename known names (mail -> urn:oid:...), drop the NameFormat of
    unknown ones, and its no-op converter lowercases them; tests need the names byte for byte.
    """

    def to_(self, attrvals):
        return [
            factory(saml.Attribute, name=name, name_format=self.name_format, attribute_value=do_ava(values))
            for name, values in attrvals.items()
        ]


def use_data_encryption(sec, algorithm_uri, session_key):
    """Make pysaml2 encrypt assertions with the chosen block cipher.

    pysaml2 always builds its EncryptedData template with tripledes-cbc and calls xmlsec1 with
    `--session-key des-192`, with no setting to change either; this keeps its whole
    sign-then-encrypt path and only swaps the algorithm in the template and the session key.
    """
    encrypt = sec.encrypt_assertion

    def encrypt_assertion(statement, enc_key, template, key_type=None, node_xpath=None):
        template.encryption_method.algorithm = algorithm_uri
        template.key_info.encrypted_key.encryption_method.algorithm = RSA_OAEP_MGF1P
        return encrypt(statement, enc_key, template, session_key, node_xpath)

    sec.encrypt_assertion = encrypt_assertion


def report_issued_sessions(server, on_issue):
    """Call on_issue(NameID, SessionIndex) for each assertion pysaml2 builds.

    pysaml2 draws the AuthnStatement's SessionIndex itself and hands back the response already
    signed, and possibly encrypted for the SP, so it cannot be read back from there; the
    assertion is caught as it is built instead.
    """
    setup = server.setup_assertion

    def setup_assertion(*args, **kwargs):
        assertion = setup(*args, **kwargs)
        on_issue(assertion.subject.name_id, assertion.authn_statement[0].session_index)
        return assertion

    server.setup_assertion = setup_assertion


class IdP:
    def __init__(self, cfg):
        self.cfg = cfg
        base = cfg["base_url"].rstrip("/")
        self.base = base
        self.users = cfg["users"]
        self.name_id_format = cfg.get("name_id_format") or PERSISTENT
        attr_format = cfg.get("attribute_name_format") or BASIC
        self.sign_assertion = cfg.get("sign_assertion", True)
        self.sign_response = cfg.get("sign_response", False)
        self.encrypt = cfg.get("encrypt_assertion", False)
        self.want_signed = cfg.get("want_authn_requests_signed", False)
        conf = IdPConfig()
        conf.load(
            {
                "entityid": cfg["entity_id"],
                "xmlsec_binary": "/usr/bin/xmlsec1",
                "key_file": cfg["key_file"],
                "cert_file": cfg["cert_file"],
                "metadata": {"local": [cfg["sp_metadata_file"]]},
                "accepted_time_diff": 60,
                "service": {
                    "idp": {
                        "endpoints": {
                            "single_sign_on_service": [
                                (base + "/sso/redirect", BINDING_HTTP_REDIRECT),
                                (base + "/sso/post", BINDING_HTTP_POST),
                            ],
                            "single_logout_service": [(base + "/slo/redirect", BINDING_HTTP_REDIRECT)],
                        },
                        "name_id_format": [self.name_id_format],
                        "want_authn_requests_signed": self.want_signed,
                        # Here, not at the top level: the IdP reads them in its own context and
                        # silently falls back to RSA-SHA1 otherwise.
                        "signing_algorithm": SIG_RSA_SHA256,
                        "digest_algorithm": DIGEST_SHA256,
                        # The SP rejects assertions older than 60 s, so keep their validity short too.
                        "policy": {"default": {"lifetime": {"minutes": 5}, "name_form": attr_format}},
                    }
                },
            }
        )
        conf.attribute_converters = [VerbatimNames(attr_format)]
        # The metadata advertises WantAuthnRequestsSigned; then the check itself is ours (see
        # query_signature_ok), so pysaml2 must not run its own while parsing.
        self.metadata_xml = create_metadata_string(None, config=conf).decode()
        conf.setattr("idp", "want_authn_requests_signed", False)
        self.server = Server(config=conf)
        sps = list(self.server.metadata.with_descriptor("spsso"))
        if len(sps) != 1:
            raise SystemExit(f"sp_metadata_file must describe exactly one SP, found {sps}")
        self.sp = sps[0]
        if self.encrypt:
            if not self.server.metadata.certs(self.sp, "spsso", "encryption"):
                # pysaml2 would silently send the assertion in clear text.
                raise SystemExit("encrypt_assertion is set but the SP metadata has no encryption certificate")
            alg = cfg.get("encryption_algorithm") or "aes256-gcm"
            if alg not in DATA_ENCRYPTION:
                raise SystemExit(f"encryption_algorithm must be one of {sorted(DATA_ENCRYPTION)}")
            use_data_encryption(self.server.sec, *DATA_ENCRYPTION[alg])
        # pysaml2 is not thread-safe (shared signer objects, temp files): one request at a time.
        self.lock = threading.Lock()
        self.pending = {}  # pending-request id -> what the response to that AuthnRequest needs
        # username -> {"name_id": NameID, "session_index": str} of the last assertion issued to the SP
        self.sessions = {}
        self.issued = None  # (NameID, SessionIndex) of the assertion pysaml2 built last
        report_issued_sessions(self.server, lambda name_id, index: setattr(self, "issued", (name_id, index)))
        self.logged_out = []  # NameIDs ended by a LogoutRequest from the SP, in order
        self.logout_requests = {}  # ID of a LogoutRequest we sent, not yet answered -> user, SessionIndex sent
        self.logout_responses = []  # what the SP answered to them, in order (GET /slo/responses)

    def query_signature_ok(self, raw_query, kind, sp_entity_id):
        """Verify an HTTP-Redirect query signature against the SP's signing certificates.

        SAML Bindings 3.4.4.1 signs the parameters as they were URL-encoded on the wire; pysaml2's
        verify_redirect_signature re-encodes the decoded values instead, which fails for any SP
        that percent-encodes differently from Python. So the raw octets are sliced out here.
        """
        raw = {}
        for part in raw_query.split("&"):
            name, _, value = part.partition("=")
            if name in raw:
                return False
            raw[name] = value
        if "SigAlg" not in raw or "Signature" not in raw:
            return False
        sigalg = unquote_plus(raw["SigAlg"])
        if sigalg not in QUERY_SIG_ALGS:
            return False
        signed = "&".join(f"{k}={raw[k]}" for k in (kind, "RelayState", "SigAlg") if k in raw).encode("ascii")
        signature = base64.b64decode(unquote_plus(raw["Signature"]))
        signer = self.server.sec.sec_backend.get_signer(sigalg)
        certs = self.server.metadata.certs(sp_entity_id, "spsso", "signing")
        return any(
            signer.verify(signed, signature, extract_rsa_key_from_x509_cert(pem_format(cert))) for _, cert in certs
        )

    def accept_authn_request(self, saml_request, binding, relay_state, raw_query=""):
        """Parse and check an AuthnRequest; return the pending-request id for the login form."""
        with self.lock:
            req = self.server.parse_authn_request(saml_request, binding)
            msg = req.message
            if self.want_signed:
                signed = (
                    self.query_signature_ok(raw_query, "SAMLRequest", msg.issuer.text)
                    if binding == BINDING_HTTP_REDIRECT
                    # An embedded signature, if present, was already verified by the parse above.
                    else msg.signature is not None
                )
                if not signed:
                    raise ValueError("AuthnRequest is not signed, or its signature does not verify")
            # Picks the ACS from the request, checked against the SP metadata, or the default one.
            args = self.server.response_args(msg, [BINDING_HTTP_POST])
        pid = secrets.token_urlsafe(16)
        self.pending[pid] = {
            "in_response_to": args["in_response_to"],
            "destination": args["destination"],
            "sp_entity_id": args["sp_entity_id"],
            "relay_state": relay_state,
        }
        return pid

    def check_password(self, username, password):
        user = self.users.get(username)
        return user is not None and secrets.compare_digest(user["password"].encode(), password.encode())

    def authn_response(self, username, in_response_to, destination, sp_entity_id):
        """The base64 SAMLResponse, built, signed and encrypted by pysaml2."""
        user = self.users[username]
        with self.lock:
            resp = self.server.create_authn_response(
                identity={k: list(v) for k, v in user.get("attributes", {}).items()},
                in_response_to=in_response_to,
                destination=destination,
                sp_entity_id=sp_entity_id,
                name_id=saml.NameID(format=self.name_id_format, text=user["name_id"]),
                authn={"class_ref": PASSWORDPROTECTEDTRANSPORT},
                sign_assertion=self.sign_assertion,
                sign_response=self.sign_response,
                encrypt_assertion=self.encrypt,
            )
            name_id, session_index = self.issued
            self.sessions[username] = {"name_id": name_id, "session_index": session_index}
        return base64.b64encode(str(resp).encode()).decode()

    def acs_url(self):
        return self.server.metadata.assertion_consumer_service(self.sp, BINDING_HTTP_POST)[0]["location"]

    def logout(self, saml_request, relay_state, raw_query):
        """Handle a LogoutRequest; return the URL carrying the signed LogoutResponse."""
        with self.lock:
            req = self.server.parse_logout_request(saml_request, BINDING_HTTP_REDIRECT)
            msg = req.message
            if "Signature=" in raw_query and not self.query_signature_ok(raw_query, "SAMLRequest", msg.issuer.text):
                raise ValueError("LogoutRequest signature does not verify")
            name_id = msg.name_id.text if msg.name_id is not None else None
            for user in [u for u, s in self.sessions.items() if s["name_id"].text == name_id]:
                del self.sessions[user]
            self.logged_out.append(name_id)
            destination = self.server.response_args(msg, [BINDING_HTTP_REDIRECT])["destination"]
            resp = self.server.create_logout_response(msg, [BINDING_HTTP_REDIRECT], sign=False)
            info = self.server.apply_binding(
                BINDING_HTTP_REDIRECT, str(resp), destination, relay_state, response=True, sign=True, sigalg=SIG_RSA_SHA256
            )
        return dict(info["headers"])["Location"]

    def initiate_logout(self, username, relay_state, session_index=None):
        """Start IdP-initiated Single Logout; return the SP URL carrying the signed LogoutRequest.

        None if the user has no session. session_index replaces the issued SessionIndex (for a
        negative test: the SP must not end a session it was not asked to end).
        """
        with self.lock:
            session = self.sessions.get(username)
            if session is None:
                return None
            sent_index = session_index or session["session_index"]
            slo = self.server.metadata.single_logout_service(self.sp, BINDING_HTTP_REDIRECT, "spsso")
            destination = slo[0]["location"]
            # The NameID is the issued one itself, so its Format (and any qualifier) match. No XML
            # signature: the Redirect binding signs the query instead (Bindings 3.4.4.1).
            req_id, req = self.server.create_logout_request(
                destination, self.sp, name_id=session["name_id"], session_indexes=[sent_index], sign=False
            )
            info = self.server.apply_binding(
                BINDING_HTTP_REDIRECT, str(req), destination, relay_state, sign=True, sigalg=SIG_RSA_SHA256
            )
            self.logout_requests[req_id] = {"user": username, "session_index": sent_index}
        return dict(info["headers"])["Location"]

    def logout_response(self, saml_response, relay_state, raw_query):
        """Check and record the SP's LogoutResponse to a LogoutRequest from initiate_logout.

        Returns its top-level StatusCode. Raises ValueError for anything that must get a 400.
        """
        with self.lock:
            # pysaml2's schema classes parse it; its parse_logout_request_response would raise on any
            # status other than Success, and recording the status is the point here.
            xml = self.server.unravel(saml_response, BINDING_HTTP_REDIRECT, "logout_response")
            msg = samlp.logout_response_from_string(xml)
            if msg is None:
                raise ValueError("not a LogoutResponse")
            issuer = msg.issuer.text.strip() if msg.issuer is not None and msg.issuer.text else None
            if issuer != self.sp:
                raise ValueError(f"Issuer {issuer!r} is not the SP {self.sp!r}")
            # A LogoutRequest's query signature is optional here, a LogoutResponse's is not: the
            # tests must see that the SP signs what it sends.
            if not self.query_signature_ok(raw_query, "SAMLResponse", self.sp):
                raise ValueError("LogoutResponse is unsigned or its query signature does not verify")
            if msg.version != "2.0":
                raise ValueError(f"Version {msg.version!r}")
            # Bindings 3.4.5.2: a signed message names the URL it was sent to.
            if msg.destination != self.base + "/slo/redirect":
                raise ValueError(f"Destination {msg.destination!r} is not {self.base}/slo/redirect")
            if msg.status is None or msg.status.status_code is None or not msg.status.status_code.value:
                raise ValueError("no Status/StatusCode")
            # Checked last, so that a rejected message does not use up the request ID.
            sent = self.logout_requests.pop(msg.in_response_to, None)
            if sent is None:
                raise ValueError(f"InResponseTo {msg.in_response_to!r} is not an unanswered LogoutRequest of ours")
            status = msg.status.status_code.value
            # The IdP session ends once the SP confirms the logout of that very session; a failure,
            # or a request sent with an overridden SessionIndex, leaves it for the next test step.
            session = self.sessions.get(sent["user"])
            if status == samlp.STATUS_SUCCESS and session and session["session_index"] == sent["session_index"]:
                del self.sessions[sent["user"]]
            self.logout_responses.append(
                {"in_response_to": msg.in_response_to, "status": status, "relay_state": relay_state, "issuer": issuer}
            )
        return status


def login_page(pid, error=""):
    err = f'<p id="error">{html.escape(error)}</p>\n' if error else ""
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Test IdP sign-in</title></head>
<body>
<h1>Test IdP sign-in</h1>
{err}<form id="login" method="post" action="/login">
<input type="hidden" name="pending" value="{html.escape(pid)}">
<label>Username <input name="username" id="username" autocomplete="username"></label>
<label>Password <input name="password" id="password" type="password"></label>
<button id="submit" type="submit">Sign in</button>
</form>
</body></html>
"""


def auto_post_page(acs, saml_response, relay_state):
    relay = ""
    if relay_state is not None:
        relay = f'<input type="hidden" name="RelayState" value="{html.escape(relay_state)}">\n'
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Signing in</title></head>
<body>
<form id="saml-post" method="post" action="{html.escape(acs)}">
<input type="hidden" name="SAMLResponse" value="{html.escape(saml_response)}">
{relay}<noscript><button type="submit">Continue</button></noscript>
</form>
<script>document.getElementById('saml-post').submit()</script>
</body></html>
"""


def signed_out_page(status):
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>Signed out</title></head>
<body>
<h1>Signed out</h1>
<p id="status">{html.escape(status)}</p>
</body></html>
"""


def handler_for(idp):
    class Handler(BaseHTTPRequestHandler):
        def send(self, status, body, ctype="text/html; charset=utf-8", headers=()):
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            for name, value in headers:
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def fail(self, status, text):
            log.warning("%s %s -> %d: %s", self.command, self.path.split("?")[0], status, text)
            self.send(status, text + "\n", "text/plain; charset=utf-8")

        def form(self):
            length = int(self.headers.get("Content-Length") or 0)
            return {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode(), keep_blank_values=True).items()}

        def do_GET(self):
            self.safely(self.get)

        def do_POST(self):
            self.safely(self.post)

        def safely(self, route):
            try:
                route()
            except Exception as e:  # a peer bug: answer 500 with the cause rather than hang up
                log.exception("internal error")
                self.fail(500, f"internal error: {e!r}")

        def get(self):
            url = urlsplit(self.path)
            q = {k: v[0] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
            if url.path == "/metadata":
                self.send(200, idp.metadata_xml, "application/samlmetadata+xml")
            elif url.path == "/sso/redirect":
                self.sso(q, BINDING_HTTP_REDIRECT, url.query)
            elif url.path == "/idp-initiated":
                if not idp.check_password(q.get("user", ""), q.get("password", "")):
                    return self.fail(401, "wrong user or password")
                acs = idp.acs_url()
                resp = idp.authn_response(q["user"], None, acs, idp.sp)
                self.send(200, auto_post_page(acs, resp, q.get("relay_state")))
            elif url.path == "/slo/redirect":
                if ("SAMLRequest" in q) == ("SAMLResponse" in q):
                    return self.fail(400, "need exactly one of SAMLRequest and SAMLResponse")
                if "SAMLResponse" in q:
                    try:
                        status = idp.logout_response(q["SAMLResponse"], q.get("RelayState"), url.query)
                    except Exception as e:
                        return self.fail(400, f"bad LogoutResponse: {e!r}")
                    return self.send(200, signed_out_page(status))
                try:
                    location = idp.logout(q["SAMLRequest"], q.get("RelayState"), url.query)
                except Exception as e:
                    return self.fail(400, f"bad LogoutRequest: {e!r}")
                self.send(302, "", headers=[("Location", location)])
            elif url.path == "/slo/log":
                self.send(200, json.dumps(idp.logged_out), "application/json")
            elif url.path == "/slo/initiate":
                # The RelayState is random unless given, so that an SP echoing a constant shows up.
                relay_state = q.get("relay_state") or secrets.token_urlsafe(16)
                location = idp.initiate_logout(q.get("user", ""), relay_state, q.get("session_index"))
                if location is None:
                    return self.fail(400, f"no session for user {q.get('user', '')!r}")
                self.send(302, "", headers=[("Location", location)])
            elif url.path == "/slo/responses":
                self.send(200, json.dumps(idp.logout_responses), "application/json")
            else:
                self.fail(404, "not found")

        def post(self):
            if self.path == "/sso/post":
                self.sso(self.form(), BINDING_HTTP_POST)
            elif self.path == "/login":
                f = self.form()
                pid = f.get("pending", "")
                if pid not in idp.pending:
                    return self.fail(400, "unknown or used login request")
                if not idp.check_password(f.get("username", ""), f.get("password", "")):
                    return self.send(401, login_page(pid, "Wrong username or password."))
                pending = idp.pending.pop(pid, None)  # single use, even under a double submit
                if pending is None:
                    return self.fail(400, "unknown or used login request")
                resp = idp.authn_response(
                    f["username"], pending["in_response_to"], pending["destination"], pending["sp_entity_id"]
                )
                self.send(200, auto_post_page(pending["destination"], resp, pending["relay_state"]))
            else:
                self.fail(404, "not found")

        def sso(self, params, binding, raw_query=""):
            if "SAMLRequest" not in params:
                return self.fail(400, "missing SAMLRequest")
            try:
                pid = idp.accept_authn_request(params["SAMLRequest"], binding, params.get("RelayState"), raw_query)
            except Exception as e:
                return self.fail(400, f"bad AuthnRequest: {e!r}")
            self.send(200, login_page(pid))

        def log_message(self, fmt, *args):
            log.info("%s %s", self.address_string(), fmt % args)

    return Handler


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True)
    args = parser.parse_args()
    logging.basicConfig(stream=sys.stderr, level=logging.INFO, format="saml-idp %(levelname)s %(message)s")
    logging.getLogger("saml2").setLevel(logging.WARNING)
    with open(args.config) as f:
        cfg = json.load(f)
    idp = IdP(cfg)
    httpd = ThreadingHTTPServer(("127.0.0.1", cfg["port"]), handler_for(idp))
    print(f"READY {idp.base}", flush=True)
    httpd.serve_forever()


if __name__ == "__main__":
    main()
