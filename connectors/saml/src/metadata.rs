//! SAML metadata: reading an IdP's (SAML or ADFS `FederationMetadata.xml`) and writing ours.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::xml::{self, DSIG, Limits, METADATA, escape};

pub const REDIRECT: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect";
pub const POST: &str = "urn:oasis:names:tc:SAML:2.0:bindings:HTTP-POST";

/// What Gatehouse needs to know about an IdP.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdpDescriptor {
    pub entity_id: String,
    /// Signing certificates, DER. Several during a key rollover.
    pub certificates: Vec<Vec<u8>>,
    /// SingleSignOnService per binding.
    pub sso_redirect: Option<String>,
    pub sso_post: Option<String>,
    pub slo_redirect: Option<String>,
    pub want_authn_requests_signed: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MetadataError {
    #[error("metadata is not well-formed: {0}")]
    Xml(#[from] xml::XmlError),
    #[error("metadata: {0}")]
    Invalid(String),
}

fn invalid(msg: impl Into<String>) -> MetadataError {
    MetadataError::Invalid(msg.into())
}

/// Decode one certificate given as base64 DER (metadata's X509Certificate) or PEM.
pub fn certificate_der(text: &str) -> Result<Vec<u8>, MetadataError> {
    let body: String = if text.contains("-----BEGIN") {
        text.lines().filter(|l| !l.starts_with("-----")).collect()
    } else {
        text.to_owned()
    };
    let compact: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(compact).map_err(|_| invalid("a certificate is not valid base64"))?;
    openssl::x509::X509::from_der(&der).map_err(|_| invalid("a certificate does not parse as X.509"))?;
    Ok(der)
}

/// Every certificate in a PEM bundle.
pub fn pem_certificates(pem: &str) -> Result<Vec<Vec<u8>>, MetadataError> {
    let certs = openssl::x509::X509::stack_from_pem(pem.as_bytes()).map_err(|_| invalid("not a PEM certificate"))?;
    if certs.is_empty() {
        return Err(invalid("no certificate in PEM text"));
    }
    certs.iter().map(|c| c.to_der().map_err(|_| invalid("certificate"))).collect()
}

/// Read an IdP's metadata. `entity_id` picks one entity out of an `EntitiesDescriptor`.
pub fn parse_idp(doc: &str, entity_id: Option<&str>) -> Result<IdpDescriptor, MetadataError> {
    let root = xml::parse(doc, &Limits::METADATA)?;
    let entity = if root.is(METADATA, "EntityDescriptor") {
        &root
    } else if root.is(METADATA, "EntitiesDescriptor") {
        let mut found = root.descendants().into_iter().filter(|e| e.is(METADATA, "EntityDescriptor")).filter(|e| {
            entity_id.is_none_or(|want| e.attr("entityID") == Some(want))
                && e.child(METADATA, "IDPSSODescriptor").is_some()
        });
        let one = found.next().ok_or_else(|| invalid("no matching IdP EntityDescriptor"))?;
        if found.next().is_some() {
            return Err(invalid("several IdP entities: set idp_entity_id to pick one"));
        }
        one
    } else {
        return Err(invalid("root is neither EntityDescriptor nor EntitiesDescriptor"));
    };
    let id = entity.attr("entityID").filter(|s| !s.is_empty()).ok_or_else(|| invalid("no entityID"))?;
    if let Some(want) = entity_id
        && want != id
    {
        return Err(invalid(format!("entityID is {id}, configured {want}")));
    }
    let idp = entity.child(METADATA, "IDPSSODescriptor").ok_or_else(|| invalid("no IDPSSODescriptor"))?;
    let mut certificates = Vec::new();
    for kd in idp.children_named(METADATA, "KeyDescriptor") {
        if kd.attr("use").is_some_and(|u| u != "signing") {
            continue;
        }
        for x in kd.descendants().into_iter().filter(|e| e.is(DSIG, "X509Certificate")) {
            let der = certificate_der(&x.text().unwrap_or_default())?;
            if !certificates.contains(&der) {
                certificates.push(der);
            }
        }
    }
    if certificates.is_empty() {
        return Err(invalid("the IdP publishes no signing certificate"));
    }
    let service = |name: &str, binding: &str| {
        idp.children_named(METADATA, name)
            .find(|s| s.attr("Binding") == Some(binding))
            .and_then(|s| s.attr("Location"))
            .map(str::to_owned)
    };
    Ok(IdpDescriptor {
        entity_id: id.to_owned(),
        certificates,
        sso_redirect: service("SingleSignOnService", REDIRECT),
        sso_post: service("SingleSignOnService", POST),
        slo_redirect: service("SingleLogoutService", REDIRECT),
        want_authn_requests_signed: idp.attr("WantAuthnRequestsSigned") == Some("true"),
    })
}

/// What we publish about ourselves for one connection.
pub struct SpDescriptor<'a> {
    pub entity_id: &'a str,
    pub acs_url: &'a str,
    pub slo_url: &'a str,
    pub signing_certificate: Option<&'a [u8]>,
    pub encryption_certificate: Option<&'a [u8]>,
    pub name_id_formats: &'a [&'a str],
    pub sign_requests: bool,
}

fn key_descriptor(usage: &str, der: &[u8], extra: &str) -> String {
    format!(
        r#"<md:KeyDescriptor use="{usage}"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{}</ds:X509Certificate></ds:X509Data></ds:KeyInfo>{extra}</md:KeyDescriptor>"#,
        STANDARD.encode(der)
    )
}

pub fn sp_metadata(sp: &SpDescriptor<'_>) -> String {
    let mut keys = String::new();
    if let Some(der) = sp.signing_certificate {
        keys.push_str(&key_descriptor("signing", der, ""));
    }
    if let Some(der) = sp.encryption_certificate {
        let methods = [
            "http://www.w3.org/2009/xmlenc11#aes256-gcm",
            "http://www.w3.org/2009/xmlenc11#aes128-gcm",
            "http://www.w3.org/2001/04/xmlenc#aes256-cbc",
            "http://www.w3.org/2001/04/xmlenc#aes128-cbc",
            "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p",
        ]
        .iter()
        .map(|m| format!(r#"<md:EncryptionMethod Algorithm="{m}"/>"#))
        .collect::<String>();
        keys.push_str(&key_descriptor("encryption", der, &methods));
    }
    let formats: String =
        sp.name_id_formats.iter().map(|f| format!("<md:NameIDFormat>{}</md:NameIDFormat>", escape(f))).collect();
    format!(
        concat!(
            r#"<?xml version="1.0" encoding="UTF-8"?>"#,
            "\n",
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="{entity}">"#,
            r#"<md:SPSSODescriptor AuthnRequestsSigned="{signed}" WantAssertionsSigned="true" protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">"#,
            "{keys}",
            r#"<md:SingleLogoutService Binding="{redirect}" Location="{slo}"/>"#,
            "{formats}",
            r#"<md:AssertionConsumerService Binding="{post}" Location="{acs}" index="0" isDefault="true"/>"#,
            "</md:SPSSODescriptor></md:EntityDescriptor>\n"
        ),
        entity = escape(sp.entity_id),
        signed = sp.sign_requests,
        keys = keys,
        redirect = REDIRECT,
        slo = escape(sp.slo_url),
        formats = formats,
        post = POST,
        acs = escape(sp.acs_url),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str = "MIIBszCCAVmgAwIBAgIUZ4P0";

    #[test]
    fn refuses_metadata_without_signing_key() {
        let doc = r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="https://idp">
          <md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol">
            <md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="https://idp/sso"/>
          </md:IDPSSODescriptor></md:EntityDescriptor>"#;
        assert_eq!(parse_idp(doc, None), Err(invalid("the IdP publishes no signing certificate")));
        let _ = CERT;
    }

    #[test]
    fn refuses_doctype_in_metadata() {
        let doc = r#"<!DOCTYPE x [<!ENTITY a "b">]><md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" entityID="x"/>"#;
        assert_eq!(parse_idp(doc, None), Err(MetadataError::Xml(xml::XmlError::Doctype)));
    }

    #[test]
    fn sp_metadata_parses_back() {
        let m = sp_metadata(&SpDescriptor {
            entity_id: "https://gh/saml/x/metadata",
            acs_url: "https://gh/callback/x",
            slo_url: "https://gh/saml/x/slo",
            signing_certificate: None,
            encryption_certificate: None,
            name_id_formats: &["urn:oasis:names:tc:SAML:1.1:nameid-format:emailAddress"],
            sign_requests: false,
        });
        let root = xml::parse(&m, &Limits::METADATA).unwrap();
        assert_eq!(root.attr("entityID"), Some("https://gh/saml/x/metadata"));
        let sp = root.child(METADATA, "SPSSODescriptor").unwrap();
        let acs = sp.child(METADATA, "AssertionConsumerService").unwrap();
        assert_eq!(acs.attr("Location"), Some("https://gh/callback/x"));
        assert_eq!(acs.attr("Binding"), Some(POST));
    }
}
