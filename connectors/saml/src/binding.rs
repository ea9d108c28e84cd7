//! Outgoing requests (AuthnRequest, LogoutRequest) and the two bindings they travel by, and
//! the incoming HTTP-Redirect messages (LogoutResponse) with their query signatures.

use std::io::{Read, Write};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use flate2::Compression;
use flate2::read::DeflateDecoder;
use flate2::write::DeflateEncoder;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::sign::{Signer, Verifier};
use openssl::x509::X509;
use samael::crypto::{Crypto, CryptoProvider};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use url::form_urlencoded::byte_serialize;

use crate::xml::escape;

pub const RSA_SHA256: &str = "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256";
/// Query-signature algorithms accepted on incoming Redirect messages: RSA with SHA-2 (an
/// ECDSA query signature is raw r||s, which OpenSSL's DER verifier would misread).
type Digest = fn() -> MessageDigest;
const QUERY_SIGNATURES: [(&str, Digest); 3] = [
    (RSA_SHA256, MessageDigest::sha256),
    ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha384", MessageDigest::sha384),
    ("http://www.w3.org/2001/04/xmldsig-more#rsa-sha512", MessageDigest::sha512),
];
/// A deflated message may inflate to at most this much; a deflate bomb stops here.
pub const MAX_INFLATED: usize = 256 * 1024;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BindingError {
    #[error("{0}")]
    Invalid(String),
    #[error("could not sign the request")]
    Sign,
}

fn invalid(msg: impl Into<String>) -> BindingError {
    BindingError::Invalid(msg.into())
}

/// A fresh message ID: `_` and 128 random bits in hex (IDs must not start with a digit).
pub fn new_id() -> String {
    let mut b = [0u8; 16];
    openssl::rand::rand_bytes(&mut b).expect("the OpenSSL CSPRNG works");
    format!("_{}", hex::encode(b))
}

pub fn instant(t: SystemTime) -> String {
    let t: OffsetDateTime = t.into();
    // Whole seconds, `Z`: the form every IdP parses.
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339).unwrap_or_default()
}

pub struct AuthnRequest<'a> {
    pub id: &'a str,
    pub issue_instant: SystemTime,
    pub destination: &'a str,
    pub acs_url: &'a str,
    pub sp_entity_id: &'a str,
    pub name_id_format: Option<&'a str>,
    pub force_authn: bool,
}

/// The enveloped-signature template xmlsec fills in (HTTP-POST binding).
fn signature_template(id: &str) -> String {
    format!(
        concat!(
            r#"<ds:Signature xmlns:ds="http://www.w3.org/2000/09/xmldsig#"><ds:SignedInfo>"#,
            r#"<ds:CanonicalizationMethod Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/>"#,
            r#"<ds:SignatureMethod Algorithm="{alg}"/>"#,
            r##"<ds:Reference URI="#{id}"><ds:Transforms>"##,
            r#"<ds:Transform Algorithm="http://www.w3.org/2000/09/xmldsig#enveloped-signature"/>"#,
            r#"<ds:Transform Algorithm="http://www.w3.org/2001/10/xml-exc-c14n#"/></ds:Transforms>"#,
            r#"<ds:DigestMethod Algorithm="http://www.w3.org/2001/04/xmlenc#sha256"/><ds:DigestValue/>"#,
            r#"</ds:Reference></ds:SignedInfo><ds:SignatureValue/></ds:Signature>"#
        ),
        alg = RSA_SHA256,
        id = id
    )
}

impl AuthnRequest<'_> {
    /// The XML; `with_signature_template` leaves room for an enveloped signature after the
    /// Issuer, where the schema puts it.
    pub fn xml(&self, with_signature_template: bool) -> String {
        let policy = self
            .name_id_format
            .map(|f| format!(r#"<samlp:NameIDPolicy Format="{}" AllowCreate="true"/>"#, escape(f)))
            .unwrap_or_else(|| r#"<samlp:NameIDPolicy AllowCreate="true"/>"#.to_owned());
        format!(
            concat!(
                r#"<samlp:AuthnRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
                r#" ID="{id}" Version="2.0" IssueInstant="{instant}" Destination="{dest}""#,
                r#" AssertionConsumerServiceURL="{acs}" ProtocolBinding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST"{force}>"#,
                "<saml:Issuer>{issuer}</saml:Issuer>{sig}{policy}</samlp:AuthnRequest>"
            ),
            id = self.id,
            instant = instant(self.issue_instant),
            dest = escape(self.destination),
            acs = escape(self.acs_url),
            force = if self.force_authn { r#" ForceAuthn="true""# } else { "" },
            issuer = escape(self.sp_entity_id),
            sig = if with_signature_template { signature_template(self.id) } else { String::new() },
            policy = policy,
        )
    }
}

/// Our answer to an IdP-initiated LogoutRequest.
pub struct LogoutResponse<'a> {
    pub id: &'a str,
    pub issue_instant: SystemTime,
    pub destination: &'a str,
    pub in_response_to: &'a str,
    pub sp_entity_id: &'a str,
}

impl LogoutResponse<'_> {
    pub fn xml(&self) -> String {
        format!(
            concat!(
                r#"<samlp:LogoutResponse xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
                r#" ID="{id}" Version="2.0" IssueInstant="{instant}" Destination="{dest}" InResponseTo="{irt}">"#,
                "<saml:Issuer>{issuer}</saml:Issuer>",
                r#"<samlp:Status><samlp:StatusCode Value="urn:oasis:names:tc:SAML:2.0:status:Success"/></samlp:Status>"#,
                "</samlp:LogoutResponse>"
            ),
            id = self.id,
            instant = instant(self.issue_instant),
            dest = escape(self.destination),
            irt = escape(self.in_response_to),
            issuer = escape(self.sp_entity_id),
        )
    }
}

pub struct LogoutRequest<'a> {
    pub id: &'a str,
    pub issue_instant: SystemTime,
    pub destination: &'a str,
    pub sp_entity_id: &'a str,
    pub name_id: &'a str,
    pub name_id_format: Option<&'a str>,
    pub name_qualifier: Option<&'a str>,
    pub sp_name_qualifier: Option<&'a str>,
    pub session_index: Option<&'a str>,
}

impl LogoutRequest<'_> {
    pub fn xml(&self) -> String {
        let mut name_attrs = String::new();
        for (k, v) in [
            ("Format", self.name_id_format),
            ("NameQualifier", self.name_qualifier),
            ("SPNameQualifier", self.sp_name_qualifier),
        ] {
            if let Some(v) = v {
                name_attrs.push_str(&format!(r#" {k}="{}""#, escape(v)));
            }
        }
        let session = self
            .session_index
            .map(|s| format!("<samlp:SessionIndex>{}</samlp:SessionIndex>", escape(s)))
            .unwrap_or_default();
        format!(
            concat!(
                r#"<samlp:LogoutRequest xmlns:samlp="urn:oasis:names:tc:SAML:2.0:protocol" xmlns:saml="urn:oasis:names:tc:SAML:2.0:assertion""#,
                r#" ID="{id}" Version="2.0" IssueInstant="{instant}" Destination="{dest}">"#,
                "<saml:Issuer>{issuer}</saml:Issuer><saml:NameID{attrs}>{name}</saml:NameID>{session}</samlp:LogoutRequest>"
            ),
            id = self.id,
            instant = instant(self.issue_instant),
            dest = escape(self.destination),
            issuer = escape(self.sp_entity_id),
            attrs = name_attrs,
            name = escape(self.name_id),
            session = session,
        )
    }
}

fn encode(s: &str) -> String {
    byte_serialize(s.as_bytes()).collect()
}

/// HTTP-Redirect binding: deflate, base64, and (with a key) the query signature over the
/// exact encoded parameters, in the order the binding specifies.
pub fn redirect_url(
    endpoint: &str,
    param: &str,
    xml: &str,
    relay_state: Option<&str>,
    key: Option<&PKey<Private>>,
) -> Result<url::Url, BindingError> {
    let mut z = DeflateEncoder::new(Vec::new(), Compression::default());
    z.write_all(xml.as_bytes()).map_err(|_| BindingError::Sign)?;
    let deflated = z.finish().map_err(|_| BindingError::Sign)?;
    let mut query = format!("{param}={}", encode(&STANDARD.encode(deflated)));
    if let Some(rs) = relay_state {
        query.push_str(&format!("&RelayState={}", encode(rs)));
    }
    if let Some(key) = key {
        query.push_str(&format!("&SigAlg={}", encode(RSA_SHA256)));
        let mut signer = Signer::new(MessageDigest::sha256(), key).map_err(|_| BindingError::Sign)?;
        let sig = signer.sign_oneshot_to_vec(query.as_bytes()).map_err(|_| BindingError::Sign)?;
        query.push_str(&format!("&Signature={}", encode(&STANDARD.encode(sig))));
    }
    let mut url = url::Url::parse(endpoint).map_err(|_| invalid("bad endpoint URL"))?;
    let joined = match url.query() {
        Some(q) if !q.is_empty() => format!("{q}&{query}"),
        _ => query,
    };
    url.set_query(Some(&joined));
    Ok(url)
}

/// HTTP-POST binding: the message, enveloped-signed with `key` when there is one.
pub fn post_value(xml_with_template: &str, key: Option<&PKey<Private>>) -> Result<String, BindingError> {
    let xml = match key {
        Some(key) => {
            let der = key.private_key_to_der().map_err(|_| BindingError::Sign)?;
            Crypto::sign_xml(xml_with_template, &der).map_err(|_| BindingError::Sign)?
        }
        None => xml_with_template.to_owned(),
    };
    Ok(STANDARD.encode(xml.as_bytes()))
}

/// One incoming HTTP-Redirect message, parameters as they were encoded on the wire.
pub struct RedirectMessage {
    pub xml: String,
    pub relay_state: Option<String>,
}

fn raw_param<'a>(query: &'a str, name: &str) -> Result<Option<&'a str>, BindingError> {
    let mut found = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        if k == name {
            if found.is_some() {
                return Err(invalid(format!("{name} given twice")));
            }
            found = Some(v);
        }
    }
    Ok(found)
}

fn decode(raw: &str) -> Result<String, BindingError> {
    let spaced = raw.replace('+', " ");
    url::form_urlencoded::parse(format!("x={spaced}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| invalid("bad encoding"))
        .map(|v| v.replace(' ', "+"))
}

fn decode_text(raw: &str) -> Result<String, BindingError> {
    url::form_urlencoded::parse(format!("x={raw}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .ok_or_else(|| invalid("bad encoding"))
}

/// Inflate under a hard output limit.
pub fn inflate(deflated: &[u8]) -> Result<String, BindingError> {
    let mut out = Vec::new();
    DeflateDecoder::new(deflated)
        .take(MAX_INFLATED as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|_| invalid("message does not inflate"))?;
    if out.len() > MAX_INFLATED {
        return Err(invalid("message inflates beyond the limit (deflate bomb?)"));
    }
    String::from_utf8(out).map_err(|_| invalid("message is not UTF-8"))
}

/// Read an HTTP-Redirect message (`param` is `SAMLResponse` or `SAMLRequest`) from the raw
/// query and check its signature against the pinned certificates. Unsigned messages are
/// refused.
pub fn read_redirect(query: &str, param: &str, certificates: &[Vec<u8>]) -> Result<RedirectMessage, BindingError> {
    if query.len() > 64 * 1024 {
        return Err(invalid("query too long"));
    }
    let msg = raw_param(query, param)?.ok_or_else(|| invalid(format!("no {param}")))?;
    let relay = raw_param(query, "RelayState")?;
    let sig_alg = raw_param(query, "SigAlg")?.ok_or_else(|| invalid("the message is not signed"))?;
    let signature = raw_param(query, "Signature")?.ok_or_else(|| invalid("the message is not signed"))?;
    let alg = decode_text(sig_alg)?;
    let digest = QUERY_SIGNATURES
        .iter()
        .find(|(uri, _)| *uri == alg)
        .map(|(_, md)| md())
        .ok_or_else(|| invalid("the query signature algorithm is not accepted"))?;
    let mut signed = format!("{param}={msg}");
    if let Some(r) = relay {
        signed.push_str(&format!("&RelayState={r}"));
    }
    signed.push_str(&format!("&SigAlg={sig_alg}"));
    let sig = STANDARD.decode(decode(signature)?).map_err(|_| invalid("bad signature encoding"))?;
    let ok = certificates.iter().any(|der| {
        let Ok(key) = X509::from_der(der).and_then(|c| c.public_key()) else { return false };
        if key.rsa().is_err() {
            return false;
        }
        let Ok(mut v) = Verifier::new(digest, &key) else { return false };
        v.verify_oneshot(&sig, signed.as_bytes()).unwrap_or(false)
    });
    if !ok {
        return Err(invalid("query signature does not verify with the configured certificates"));
    }
    let deflated = STANDARD.decode(decode(msg)?).map_err(|_| invalid("bad base64"))?;
    Ok(RedirectMessage { xml: inflate(&deflated)?, relay_state: relay.map(decode_text).transpose()? })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openssl::rsa::Rsa;

    fn key() -> PKey<Private> {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    }

    fn cert(key: &PKey<Private>) -> Vec<u8> {
        let mut b = openssl::x509::X509Builder::new().unwrap();
        b.set_pubkey(key).unwrap();
        b.set_not_before(&openssl::asn1::Asn1Time::days_from_now(0).unwrap()).unwrap();
        b.set_not_after(&openssl::asn1::Asn1Time::days_from_now(1).unwrap()).unwrap();
        b.sign(key, MessageDigest::sha256()).unwrap();
        b.build().to_der().unwrap()
    }

    #[test]
    fn redirect_round_trip_and_tamper() {
        let k = key();
        let url = redirect_url("https://idp/slo?x=1", "SAMLResponse", "<a>hi +/=</a>", Some("r s+"), Some(&k)).unwrap();
        let q = url.query().unwrap().strip_prefix("x=1&").unwrap().to_owned();
        let m = read_redirect(&q, "SAMLResponse", &[cert(&k)]).unwrap();
        assert_eq!(m.xml, "<a>hi +/=</a>");
        assert_eq!(m.relay_state.as_deref(), Some("r s+"));
        // Another key, a changed RelayState, no signature: all refused.
        assert!(read_redirect(&q, "SAMLResponse", &[cert(&key())]).is_err());
        assert!(read_redirect(&q.replace("RelayState=r", "RelayState=x"), "SAMLResponse", &[cert(&k)]).is_err());
        let unsigned = redirect_url("https://idp/slo", "SAMLResponse", "<a/>", None, None).unwrap();
        assert!(read_redirect(unsigned.query().unwrap(), "SAMLResponse", &[cert(&k)]).is_err());
    }

    #[test]
    fn deflate_bomb_stops_at_the_limit() {
        let mut z = DeflateEncoder::new(Vec::new(), Compression::best());
        z.write_all(&vec![b' '; 20 * 1024 * 1024]).unwrap();
        let bomb = z.finish().unwrap();
        assert!(bomb.len() < 64 * 1024);
        assert!(matches!(inflate(&bomb), Err(BindingError::Invalid(m)) if m.contains("limit")));
    }
}
