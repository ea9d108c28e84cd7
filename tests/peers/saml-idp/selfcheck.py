"""Self-check of the SAML IdP peer: drives idp.py as Gatehouse's tests will and checks every message.

Run: tests/peers/saml-idp/.venv/bin/python tests/peers/saml-idp/selfcheck.py
It plays the SP with pysaml2's client, checks signatures and decryption with the xmlsec1 command
line, and validates each response once more with pysaml2's SP-side parser. Exits non-zero on failure.
"""

import base64
import copy
import datetime
import html
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zlib

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from saml2 import BINDING_HTTP_POST, BINDING_HTTP_REDIRECT
from saml2.client import Saml2Client
from saml2.config import SPConfig
from saml2.s_utils import error_status_factory
from saml2.saml import NameID
from saml2.samlp import STATUS_RESPONDER, STATUS_SUCCESS, STATUS_UNKNOWN_PRINCIPAL
from saml2.sigver import verify_redirect_signature
from saml2.xmldsig import DIGEST_SHA256, SIG_RSA_SHA256

HERE = os.path.dirname(os.path.abspath(__file__))
PY = os.path.join(HERE, ".venv", "bin", "python")
SP_ID = "https://gatehouse.test/saml/sp"
ACS = "http://127.0.0.1:9/saml/acs"
SLO = "http://127.0.0.1:9/saml/slo"
PERSISTENT = "urn:oasis:names:tc:SAML:2.0:nameid-format:persistent"
URI = "urn:oasis:names:tc:SAML:2.0:attrname-format:uri"
BASIC = "urn:oasis:names:tc:SAML:2.0:attrname-format:basic"
UPN = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/upn"
ASSERTION_SIG = "//*[local-name()='Assertion']/*[local-name()='Signature']"
RESPONSE_SIG = "/*[local-name()='Response']/*[local-name()='Signature']"

TMP = tempfile.mkdtemp(prefix="saml-idp-check-")
failures = []


def check(cond, what):
    print(("ok   " if cond else "FAIL ") + what)
    if not cond:
        failures.append(what)


def path(name):
    return os.path.join(TMP, name)


CERTS = {}


def keypair(name):
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=" + name,
         "-keyout", path(name + ".key"), "-out", path(name + ".crt")],
        check=True, capture_output=True,
    )
    with open(path(name + ".crt")) as f:
        CERTS[name] = "".join(line for line in f.read().splitlines() if "-----" not in line)
    return CERTS[name]


def sp_metadata():
    # Shaped like Gatehouse's: separate signing and encryption keys, POST ACS, Redirect SLO.
    sign, enc = keypair("sp-sign"), keypair("sp-enc")
    kd = '<md:KeyDescriptor use="{}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor>'
    xml = f"""<?xml version="1.0"?>
<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{SP_ID}">
<md:SPSSODescriptor AuthnRequestsSigned="true" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
{kd.format("signing", sign)}
{kd.format("encryption", enc)}
<md:SingleLogoutService Binding="{BINDING_HTTP_REDIRECT}" Location="{SLO}"/>
<md:NameIDFormat>{PERSISTENT}</md:NameIDFormat>
<md:AssertionConsumerService Binding="{BINDING_HTTP_POST}" Location="{ACS}" index="0" isDefault="true"/>
</md:SPSSODescriptor>
</md:EntityDescriptor>
"""
    with open(path("sp-metadata.xml"), "w") as f:
        f.write(xml)


def port_to_try():
    """A port nobody listened on when asked; another process may bind it first, so the IdP
    start below moves to a fresh one when its bind fails."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args):
        return None


HTTP = urllib.request.build_opener(NoRedirect)


def http(url, data=None):
    """(status, headers, body) without following redirects."""
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    try:
        with HTTP.open(urllib.request.Request(url, data=body), timeout=30) as r:
            return r.status, r.headers, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode()


def fields(page):
    """What Gatehouse's tests read from an HTML form: the action and the name="" value="" pairs."""
    action = re.search(r'<form id="[^"]*" method="post" action="([^"]*)"', page)
    pairs = re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)"', page)
    return (html.unescape(action.group(1)) if action else None), {k: html.unescape(v) for k, v in pairs}


def xmlsec(*args):
    return subprocess.run(["xmlsec1", *args], capture_output=True, text=True)


def verify_sig(xml_file, node_xpath, what):
    r = xmlsec("--verify", "--pubkey-cert-pem", path("idp.crt"), "--id-attr:ID",
               "urn:oasis:names:tc:SAML:2.0:assertion:Assertion", "--id-attr:ID",
               "urn:oasis:names:tc:SAML:2.0:protocol:Response", "--node-xpath", node_xpath, xml_file)
    check(r.returncode == 0 and "OK" in r.stderr, f"{what}: xmlsec1 --verify ({r.stderr.strip().splitlines()[-1:]})")


def recent(xml, attr, what, slack=10):
    stamps = re.findall(attr + r'="([^"]+)"', xml)
    now = datetime.datetime.now(datetime.timezone.utc)
    ok = bool(stamps) and all(
        abs((datetime.datetime.fromisoformat(s.replace("Z", "+00:00")) - now).total_seconds()) < slack for s in stamps
    )
    check(ok, f"{what}: {attr} is now ({stamps})")


class Peer:
    def __init__(self, name, **extra):
        for _ in range(5):
            if self.start(name, port_to_try(), extra):
                return
        check(False, f"[{name}] five ports in a row were taken by others")

    def start(self, name, port, extra):
        """Start the IdP on `port`; False when another process held it."""
        self.name = name
        self.port = port
        self.base = f"http://127.0.0.1:{self.port}"
        self.idp_id = self.base + "/metadata"
        cfg = {
            "port": self.port, "base_url": self.base, "entity_id": self.idp_id,
            "key_file": path("idp.key"), "cert_file": path("idp.crt"),
            "sp_metadata_file": path("sp-metadata.xml"),
            "users": {
                "alice": {"password": "alice-pw", "name_id": "alice-0001",
                          "attributes": {"email": ["alice@example.com"], "displayName": ["Alice Example"],
                                         "groups": ["admins", "staff"]}},
            },
        }
        cfg.update(extra)
        self.cfg = cfg
        with open(path(name + ".json"), "w") as f:
            json.dump(cfg, f, indent=1)
        self.proc = subprocess.Popen([PY, os.path.join(HERE, "idp.py"), "--config", path(name + ".json")],
                                     stdout=subprocess.PIPE, stderr=open(path(name + ".log"), "w"), text=True)
        line = self.proc.stdout.readline().strip()
        if not line and self.proc.wait() != 0:
            with open(path(name + ".log")) as log:
                if "Address already in use" in log.read():
                    return False
        check(line == "READY " + self.base, f"[{name}] READY line: {line!r}")
        status, _, md = http(self.base + "/metadata")
        check(status == 200 and "IDPSSODescriptor" in md, f"[{name}] /metadata")
        with open(path(name + "-idp.xml"), "w") as f:
            f.write(md)
        conf = SPConfig()
        conf.load({
            "entityid": SP_ID, "xmlsec_binary": "/usr/bin/xmlsec1",
            "key_file": path("sp-sign.key"), "cert_file": path("sp-sign.crt"),
            "encryption_keypairs": [{"key_file": path("sp-enc.key"), "cert_file": path("sp-enc.crt")}],
            "metadata": {"local": [path(name + "-idp.xml")]},
            "allow_unknown_attributes": True,
            "service": {"sp": {
                "endpoints": {"assertion_consumer_service": [(ACS, BINDING_HTTP_POST)],
                              "single_logout_service": [(SLO, BINDING_HTTP_REDIRECT)]},
                "authn_requests_signed": True, "signing_algorithm": SIG_RSA_SHA256, "digest_algorithm": DIGEST_SHA256, "want_assertions_signed": extra.get("sign_assertion", True),
                "want_response_signed": extra.get("sign_response", False), "allow_unsolicited": True,
            }},
        })
        self.client = Saml2Client(config=conf)
        return True

    def stop(self):
        self.proc.terminate()
        self.proc.wait()

    def login(self, relay_state="rs-1", signed=True, binding=BINDING_HTTP_REDIRECT):
        """SP -> /sso/* -> /login; returns (request id, auto-post page fields)."""
        if binding == BINDING_HTTP_REDIRECT:
            req_id, info = self.client.prepare_for_authenticate(
                entityid=self.idp_id, relay_state=relay_state, sign=signed, sigalg=SIG_RSA_SHA256)
            status, _, page = http(dict(info["headers"])["Location"])
        else:
            req_id, req = self.client.create_authn_request(self.base + "/sso/post", sign=signed)
            status, _, page = http(self.base + "/sso/post", {
                "SAMLRequest": base64.b64encode(str(req).encode()).decode(), "RelayState": relay_state})
        if status != 200:
            return req_id, status, page
        action, hidden = fields(page)
        assert action == "/login" and 'id="username"' in page and 'id="submit"' in page, page
        status, _, page = http(self.base + "/login", {**hidden, "username": "alice", "password": "wrong"})
        check(status == 401 and 'id="login"' in page, f"[{self.name}] wrong password -> 401 and the form again")
        status, _, page = http(self.base + "/login", {**hidden, "username": "alice", "password": "alice-pw"})
        return req_id, status, page

    def check_response(self, page, req_id, relay_state="rs-1"):
        n = self.name
        action, hidden = fields(page)
        check(action == ACS and "document.getElementById('saml-post').submit()" in page and "<noscript>" in page,
              f"[{n}] auto-post form to the ACS")
        check(hidden.get("RelayState") == relay_state, f"[{n}] RelayState echoed exactly: {hidden.get('RelayState')!r}")
        xml = base64.b64decode(hidden["SAMLResponse"]).decode()
        resp_file = path(n + "-response.xml")
        with open(resp_file, "w") as f:
            f.write(xml)
        check(f'Destination="{ACS}"' in xml, f"[{n}] Response Destination")
        if req_id:
            check(f'InResponseTo="{req_id}"' in xml, f"[{n}] InResponseTo")
        else:
            check("InResponseTo" not in xml, f"[{n}] unsolicited: no InResponseTo")
        if self.cfg.get("sign_response"):
            verify_sig(resp_file, RESPONSE_SIG, f"[{n}] Response signature")
        if self.cfg.get("encrypt_assertion"):
            alg = self.cfg.get("encryption_algorithm", "aes256-gcm")
            methods = re.findall(r'EncryptionMethod Algorithm="([^"]+)"', xml)
            print(f"     [{n}] EncryptionMethods: {methods}")
            check("<saml:Assertion" not in xml and "EncryptedAssertion" in xml, f"[{n}] assertion is encrypted")
            check(methods[0].endswith("#" + alg) and methods[1] == "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
                  f"[{n}] EncryptedData uses {alg}, EncryptedKey uses rsa-oaep-mgf1p")
            r = xmlsec("--decrypt", "--privkey-pem", path("sp-enc.key"), resp_file)
            check(r.returncode == 0, f"[{n}] xmlsec1 --decrypt with the SP encryption key")
            wrong = xmlsec("--decrypt", "--privkey-pem", path("sp-sign.key"), resp_file)
            check(wrong.returncode != 0, f"[{n}] the SP signing key cannot decrypt it")
            xml = r.stdout
            resp_file = path(n + "-decrypted.xml")
            with open(resp_file, "w") as f:
                f.write(xml)
        if self.cfg.get("sign_assertion", True):
            verify_sig(resp_file, ASSERTION_SIG, f"[{n}] Assertion signature")
        for attr in ("IssueInstant", "AuthnInstant", "NotBefore"):
            recent(xml, attr, f"[{n}]")
        # The whole response once more through a real SP implementation (pysaml2's).
        outstanding = {req_id: "/"} if req_id else {}
        parsed = self.client.parse_authn_request_response(hidden["SAMLResponse"], BINDING_HTTP_POST, outstanding)
        ava = parsed.get_identity()
        sub = parsed.get_subject()
        check(sub.text == "alice-0001" and sub.format == self.cfg.get("name_id_format", PERSISTENT),
              f"[{n}] pysaml2 SP accepts it; NameID {sub.text} {sub.format}")
        expect = self.cfg["users"]["alice"]["attributes"]
        check(ava == expect, f"[{n}] attributes exactly as configured: {ava}")
        fmt = self.cfg.get("attribute_name_format", BASIC)
        attrs = re.findall(r"<(?:\w+:)?Attribute [^>]*>", xml)
        check(attrs and all(f'NameFormat="{fmt}"' in a for a in attrs),
              f"[{n}] every Attribute has NameFormat {fmt}")
        check(re.search(f"<(\\w+:)?Audience>{re.escape(SP_ID)}</", xml) and "SessionIndex=" in xml,
              f"[{n}] Audience and SessionIndex")
        sigs = re.findall(r'(?:SignatureMethod|DigestMethod) Algorithm="([^"]+)"', xml)
        check(sigs and all(a.endswith(("rsa-sha256", "sha256")) for a in sigs), f"[{n}] RSA-SHA256/SHA-256 only: {set(sigs)}")
        if req_id:
            check(re.search(f'SubjectConfirmationData [^>]*InResponseTo="{req_id}"', xml),
                  f"[{n}] SubjectConfirmationData InResponseTo")
        return xml

    def logout(self):
        n = self.name
        req_id, req = self.client.create_logout_request(
            self.base + "/slo/redirect", self.idp_id, name_id=NameID(format=PERSISTENT, text="alice-0001"),
            reason="", expire=None)
        info = self.client.apply_binding(BINDING_HTTP_REDIRECT, str(req), self.base + "/slo/redirect",
                                         "slo-rs", sign=True, sigalg=SIG_RSA_SHA256)
        location = dict(info["headers"])["Location"]
        status, _, body = http(location.replace("Signature=", "Signature=AAAA"))
        check(status == 400, f"[{n}] LogoutRequest with a bad signature -> 400")
        status, headers, _ = http(location)
        loc = headers.get("Location", "")
        check(status == 302 and loc.startswith(SLO + "?"), f"[{n}] SLO -> 302 to the SP SLO URL")
        q = {k: v[0] for k, v in urllib.parse.parse_qs(urllib.parse.urlsplit(loc).query).items()}
        check(q.get("RelayState") == "slo-rs" and q.get("SigAlg") == SIG_RSA_SHA256, f"[{n}] SLO RelayState and SigAlg")
        check(verify_redirect_signature(q, self.client.sec.sec_backend, CERTS["idp"]), f"[{n}] LogoutResponse query signature")
        xml = zlib.decompress(base64.b64decode(q["SAMLResponse"]), -15).decode()
        check(f'InResponseTo="{req_id}"' in xml and "status:Success" in xml, f"[{n}] LogoutResponse Success, InResponseTo")
        status, _, body = http(self.base + "/slo/log")
        check(json.loads(body) == ["alice-0001"], f"[{n}] /slo/log: {body}")

    def initiate_logout(self, query):
        """GET /slo/initiate; returns (LogoutRequest message, raw query, decoded query) at the fake SP SLO URL."""
        n = self.name
        status, headers, body = http(self.base + "/slo/initiate?" + query)
        loc = headers.get("Location", "")
        check(status == 302 and loc.startswith(SLO + "?"), f"[{n}] /slo/initiate?{query} -> 302 to the SP SLO URL")
        raw = urllib.parse.urlsplit(loc).query
        names = [part.partition("=")[0] for part in raw.split("&")]
        check(names == ["SAMLRequest", "RelayState", "SigAlg", "Signature"], f"[{n}] LogoutRequest query order: {names}")
        q = {k: v[0] for k, v in urllib.parse.parse_qs(raw).items()}
        check(q.get("SigAlg") == SIG_RSA_SHA256, f"[{n}] LogoutRequest SigAlg RSA-SHA256")
        # SAML Bindings 3.4.4.1: the signature covers the parameters exactly as they are on the wire.
        signed = raw[: raw.index("&Signature=")].encode()
        with open(path("idp.crt"), "rb") as f:
            idp_key = x509.load_pem_x509_certificate(f.read()).public_key()
        try:
            idp_key.verify(base64.b64decode(q["Signature"]), signed, padding.PKCS1v15(), hashes.SHA256())
            raw_ok = True
        except Exception:
            raw_ok = False
        check(raw_ok, f"[{n}] LogoutRequest query signature over the raw octets, with idp.crt")
        check(verify_redirect_signature(q, self.client.sec.sec_backend, CERTS["idp"]),
              f"[{n}] LogoutRequest query signature (pysaml2)")
        xml = zlib.decompress(base64.b64decode(q["SAMLRequest"]), -15).decode()
        with open(path(n + "-logout-request.xml"), "w") as f:
            f.write(xml)
        check("Signature" not in xml, f"[{n}] no XML signature inside a Redirect-bound LogoutRequest")
        recent(xml, "IssueInstant", f"[{n}] LogoutRequest")
        # The SP side of pysaml2 parses it too (it checks Destination against its SLO endpoint).
        req = self.client.parse_logout_request(q["SAMLRequest"], BINDING_HTTP_REDIRECT)
        msg = req.message
        check(msg.issuer.text == self.idp_id and msg.destination == SLO,
              f"[{n}] LogoutRequest Issuer {msg.issuer.text}, Destination {msg.destination}")
        return msg, raw, q

    def logout_response(self, msg, relay_state, status=None, sign=True, key="sp-sign", edit=None):
        """The SP's LogoutResponse to msg, built by pysaml2 (then edit(resp), if given, before it is signed);
        returns the /slo/redirect URL carrying it."""
        resp = self.client.create_logout_response(msg, [BINDING_HTTP_REDIRECT], status=status, sign=False)
        if edit:
            edit(resp)
        info = self.client.apply_binding(BINDING_HTTP_REDIRECT, str(resp), self.base + "/slo/redirect", relay_state,
                                         response=True, sign=sign, sigalg=SIG_RSA_SHA256)
        url = dict(info["headers"])["Location"]
        if key != "sp-sign":
            # Same message and signed octets, signed with another key than the one in the SP metadata.
            signed = url[url.index("?") + 1: url.index("&Signature=")]
            with open(path(key + ".key"), "rb") as f:
                sig = serialization.load_pem_private_key(f.read(), None).sign(signed.encode(), padding.PKCS1v15(),
                                                                              hashes.SHA256())
            url = url[: url.index("&Signature=")] + "&" + urllib.parse.urlencode({"Signature": base64.b64encode(sig)})
        return url

    def idp_initiated_logout(self, assertion_xml):
        """IdP-initiated SLO for the session of assertion_xml, with this peer as the SP's front channel."""
        n = self.name
        session_index = re.search(r'SessionIndex="([^"]+)"', assertion_xml).group(1)
        name_id = re.search(r'<(?:\w+:)?NameID Format="([^"]+)"[^>]*>([^<]+)<', assertion_xml).groups()
        fmt = self.cfg.get("name_id_format", PERSISTENT)
        check(name_id == (fmt, "alice-0001"), f"[{n}] issued NameID {name_id}")
        _, _, before = http(self.base + "/slo/responses")
        before = json.loads(before)

        # Negative first: another SessionIndex; the SP answers with an error status. The session stays.
        msg, _, q = self.initiate_logout("user=alice&session_index=not-" + session_index)
        check([si.text for si in msg.session_index] == ["not-" + session_index], f"[{n}] session_index override sent")
        status = error_status_factory((STATUS_UNKNOWN_PRINCIPAL, "no such session"))
        status_code, _, page = http(self.logout_response(msg, q["RelayState"], status=status))
        check(status_code == 200 and "Signed out" in page, f"[{n}] error LogoutResponse recorded -> 200 Signed out")
        overridden = {"in_response_to": msg.id, "status": STATUS_RESPONDER, "relay_state": q["RelayState"],
                      "issuer": SP_ID}

        rs = "slo ~*&<>\"'é/=+"
        msg, raw, q = self.initiate_logout("user=alice&relay_state=" + urllib.parse.quote(rs, safe=""))
        check(q.get("RelayState") == rs, f"[{n}] LogoutRequest RelayState as given: {q.get('RelayState')!r}")
        check(msg.name_id.text == "alice-0001" and msg.name_id.format == fmt,
              f"[{n}] LogoutRequest NameID {msg.name_id.text} {msg.name_id.format}")
        check([si.text for si in msg.session_index] == [session_index],
              f"[{n}] LogoutRequest SessionIndex is the issued one: {session_index}")
        # One more, answered only after the session has ended.
        late, _, late_q = self.initiate_logout("user=alice")
        check(len(late_q.get("RelayState", "")) >= 16, f"[{n}] default RelayState is random: {late_q.get('RelayState')!r}")

        good = self.logout_response(msg, rs)
        check(http(self.logout_response(msg, rs, sign=False))[0] == 400, f"[{n}] unsigned LogoutResponse -> 400")
        check(http(self.logout_response(msg, rs, key="sp-enc"))[0] == 400,
              f"[{n}] LogoutResponse signed with a key not in the SP metadata -> 400")
        check(http(good.replace("RelayState=slo", "RelayState=SLO"))[0] == 400, f"[{n}] tampered RelayState -> 400")
        check(http(self.logout_response(msg, rs, edit=lambda r: setattr(r, "destination", SLO)))[0] == 400,
              f"[{n}] LogoutResponse with another Destination -> 400")
        check(http(self.logout_response(msg, rs, edit=lambda r: setattr(r.issuer, "text", SP_ID + "/x")))[0] == 400,
              f"[{n}] LogoutResponse from another Issuer -> 400")
        unknown = copy.deepcopy(msg)
        unknown.id = "id-never-sent"
        check(http(self.logout_response(unknown, rs))[0] == 400, f"[{n}] LogoutResponse to an unknown request -> 400")
        status_code, _, page = http(good)
        check(status_code == 200 and "Signed out" in page, f"[{n}] signed LogoutResponse -> 200 Signed out")
        check(http(good)[0] == 400, f"[{n}] the same LogoutResponse again -> 400")
        _, _, body = http(self.base + "/slo/responses")
        expected = before + [overridden, {"in_response_to": msg.id, "status": STATUS_SUCCESS, "relay_state": rs,
                                          "issuer": SP_ID}]
        check(json.loads(body) == expected, f"[{n}] /slo/responses: {body}")
        check(http(self.base + "/slo/initiate?user=alice")[0] == 400, f"[{n}] session ended: /slo/initiate -> 400")
        check(http(self.logout_response(late, late_q["RelayState"]))[0] == 200,
              f"[{n}] a late answer to an earlier LogoutRequest is still accepted")


def raw_signed_query(client, peer, tilde_as):
    """A signed Redirect query percent-encoded the way another SP stack might (here: '~' as %7E)."""
    req_id, req = client.create_authn_request(peer.base + "/sso/redirect", binding=BINDING_HTTP_REDIRECT)
    deflated = zlib.compress(str(req).encode())[2:-4]

    def enc(s):
        return urllib.parse.quote_plus(s, safe="").replace("~", tilde_as)

    signed = "&".join([f"SAMLRequest={enc(base64.b64encode(deflated).decode())}",
                       f"RelayState={enc('a~b c')}", f"SigAlg={enc(SIG_RSA_SHA256)}"])
    with open(path("sp-sign.key"), "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    sig = key.sign(signed.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{peer.base}/sso/redirect?{signed}&Signature={enc(base64.b64encode(sig).decode())}"


def main():
    keypair("idp")
    sp_metadata()

    p = Peer("default", want_authn_requests_signed=True)
    try:
        md = open(path("default-idp.xml")).read()
        check('WantAuthnRequestsSigned="true"' in md and "/sso/redirect" in md and "/sso/post" in md
              and "/slo/redirect" in md and 'use="signing"' in md and PERSISTENT in md, "[default] metadata content")
        req_id, status, page = p.login(relay_state="rs ~*&<>\"'é/=+")
        check(status == 200, "[default] signed Redirect AuthnRequest -> login -> 200")
        p.check_response(page, req_id, relay_state="rs ~*&<>\"'é/=+")
        _, status, body = p.login(signed=False)
        check(status == 400, f"[default] unsigned AuthnRequest rejected: {status} {body.strip()}")
        status, _, _ = http(raw_signed_query(p.client, p, "%7E"))
        check(status == 200, "[default] query signed over '~' encoded as %7E verifies (raw octets)")
        status, _, _ = http(raw_signed_query(p.client, p, "%7E").replace("RelayState=a", "RelayState=b"))
        check(status == 400, "[default] tampered RelayState -> 400")
        req_id, status, page = p.login(binding=BINDING_HTTP_POST)
        check(status == 200, "[default] signed POST AuthnRequest -> 200")
        p.check_response(page, req_id)
        _, status, _ = p.login(binding=BINDING_HTTP_POST, signed=False)
        check(status == 400, "[default] unsigned POST AuthnRequest rejected")
        _, req = p.client.create_authn_request(p.base + "/sso/post", sign=True)
        forged = str(req).replace('ProtocolBinding=', 'ForceAuthn="true" ProtocolBinding=', 1)
        check(forged != str(req) and http(p.base + "/sso/post", {
            "SAMLRequest": base64.b64encode(forged.encode()).decode()})[0] == 400,
            "[default] POST AuthnRequest altered after signing rejected")
        status, _, page = http(p.base + "/idp-initiated?user=alice&password=alice-pw&relay_state=ur")
        p.check_response(page, None, relay_state="ur")
        status, _, page = http(p.base + "/idp-initiated?user=alice&password=alice-pw")
        check(status == 200 and 'name="RelayState"' not in page, "[default] idp-initiated without RelayState")
        check(http(p.base + "/idp-initiated?user=alice&password=x")[0] == 401, "[default] idp-initiated bad password")
        check(http(p.base + "/sso/redirect?SAMLRequest=bm9wZQ")[0] == 400, "[default] garbage AuthnRequest -> 400")
        p.logout()
        # The SP-initiated logout above ended alice's IdP session.
        check(http(p.base + "/slo/initiate?user=alice")[0] == 400, "[default] /slo/initiate without a session -> 400")
        check(http(p.base + "/slo/initiate?user=nobody")[0] == 400, "[default] /slo/initiate unknown user -> 400")
        check(http(p.base + "/slo/redirect?RelayState=x")[0] == 400, "[default] /slo/redirect without a message -> 400")
        status, _, page = http(p.base + "/idp-initiated?user=alice&password=alice-pw")
        p.idp_initiated_logout(p.check_response(page, None, relay_state=None))
    finally:
        p.stop()

    adfs_users = {"alice": {"password": "alice-pw", "name_id": "alice-0001", "attributes": {
        UPN: ["alice@corp.example"],
        "http://schemas.xmlsoap.org/claims/Group": ["Domain Users", "Admins"]}}}
    p = Peer("adfs", sign_response=True, attribute_name_format=URI, users=adfs_users,
             name_id_format="urn:oasis:names:tc:SAML:1.1:nameid-format:unspecified")
    try:
        req_id, status, page = p.login(signed=False)
        check(status == 200, "[adfs] unsigned AuthnRequest accepted when not required")
        xml = p.check_response(page, req_id)
        check(f'Name="{UPN}"' in xml, "[adfs] claim-URI attribute name kept verbatim")
        p.idp_initiated_logout(xml)
    finally:
        p.stop()

    for alg in ("aes128-cbc", "aes256-cbc", "aes128-gcm", "aes256-gcm"):
        p = Peer("enc-" + alg, encrypt_assertion=True, encryption_algorithm=alg, sign_response=(alg == "aes128-gcm"))
        try:
            req_id, status, page = p.login()
            check(status == 200, f"[enc-{alg}] login -> 200")
            p.check_response(page, req_id)
        finally:
            p.stop()
    p = Peer("enc-default", encrypt_assertion=True)
    try:
        req_id, status, page = p.login()
        # The SessionIndex is inside the encrypted assertion here: the IdP must still know it.
        p.idp_initiated_logout(p.check_response(page, req_id))
    finally:
        p.stop()

    print(f"\nlogs and messages in {TMP}")
    print("ALL OK" if not failures else f"{len(failures)} FAILED: {failures}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
