//! From untrusted bytes to the one signed Assertion, or a refusal.
//!
//! Order matters: the strict reader first (no DTD, limits), then the shape every honest
//! response has (one Assertion, where it belongs; signatures only on the Response or that
//! Assertion, each referencing its parent's ID with only the two harmless transforms and an
//! allowed algorithm; unique IDs), then xmlsec with the pinned certificates only. Claims are
//! then read from xmlsec's pre-digest bytes — exactly what the signature covered — so no second
//! parser can be tricked into reading another node (the signature-wrapping family).

use samael::crypto::{AllowedSignatureAlgorithm, CertificateDer, Crypto, CryptoProvider, ReduceMode};

use crate::xml::{self, ASSERTION, DSIG, Element, Limits, PROTOCOL, XENC};

const ENVELOPED: &str = "http://www.w3.org/2000/09/xmldsig#enveloped-signature";
const EXC_C14N: &str = "http://www.w3.org/2001/10/xml-exc-c14n#";

const RSA_SHA1: &str = "http://www.w3.org/2000/09/xmldsig#rsa-sha1";
const SHA1: &str = "http://www.w3.org/2000/09/xmldsig#sha1";

/// Signature and digest algorithms accepted by default: SHA-256 and up, RSA or ECDSA.
const STRONG_SIGNATURES: [AllowedSignatureAlgorithm; 6] = [
    AllowedSignatureAlgorithm::RsaSha256,
    AllowedSignatureAlgorithm::RsaSha384,
    AllowedSignatureAlgorithm::RsaSha512,
    AllowedSignatureAlgorithm::EcdsaSha256,
    AllowedSignatureAlgorithm::EcdsaSha384,
    AllowedSignatureAlgorithm::EcdsaSha512,
];

/// What a connection accepts.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The IdP's signing certificates (DER), several during a rollover. Never empty: a
    /// connection without one does not open.
    pub certificates: Vec<Vec<u8>>,
    /// Accept a response whose Response is signed but whose Assertion is not.
    pub allow_response_signature_only: bool,
    /// Accept RSA-SHA1 (per-connection opt-in for old IdPs; logged at every use).
    pub allow_sha1: bool,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("{0}")]
    Xml(#[from] xml::XmlError),
    #[error("{0}")]
    Shape(String),
    #[error("signature does not verify with the configured certificates")]
    BadSignature,
    #[error("no signing certificate configured")]
    NoCertificate,
}

fn shape(msg: impl Into<String>) -> VerifyError {
    VerifyError::Shape(msg.into())
}

/// The outcome: the response as received (its unsigned parts may only ever make us refuse)
/// and the assertion exactly as signed.
#[derive(Debug, Clone)]
pub struct Verified {
    pub response: Element,
    pub assertion: Element,
    pub response_signed: bool,
    pub assertion_signed: bool,
    /// The signature used SHA-1 (allowed by opt-in only).
    pub weak_algorithm: bool,
}

/// The single Assertion or EncryptedAssertion of a response, checked to be a direct child.
pub enum Carried<'a> {
    Plain(&'a Element),
    Encrypted(&'a Element),
}

/// Parse and check the outer shape; shared by the plain and the encrypted paths.
pub fn parse_response(doc: &str) -> Result<Element, VerifyError> {
    let root = xml::parse(doc, &Limits::MESSAGE)?;
    if !root.is(PROTOCOL, "Response") {
        return Err(shape("the root element is not a SAML 2.0 protocol Response"));
    }
    unique_ids(&root)?;
    Ok(root)
}

pub fn carried(root: &Element) -> Result<Carried<'_>, VerifyError> {
    let all = root.descendants();
    let assertions = all.iter().filter(|e| e.is(ASSERTION, "Assertion")).count();
    let encrypted = all.iter().filter(|e| e.is(ASSERTION, "EncryptedAssertion")).count();
    if assertions + encrypted != 1 {
        return Err(shape(format!("expected exactly one assertion, found {}", assertions + encrypted)));
    }
    if let Some(a) = root.only_child(ASSERTION, "Assertion") {
        return Ok(Carried::Plain(a));
    }
    if let Some(a) = root.only_child(ASSERTION, "EncryptedAssertion") {
        return Ok(Carried::Encrypted(a));
    }
    Err(shape("the assertion is not a direct child of the Response"))
}

fn unique_ids(root: &Element) -> Result<(), VerifyError> {
    let mut seen = std::collections::HashSet::new();
    for e in root.descendants() {
        for a in &e.attrs {
            // xmlsec resolves references through attributes named ID; any two equal values
            // would let it and us pick different elements.
            if a.local.eq_ignore_ascii_case("id") && !seen.insert(a.value.clone()) {
                return Err(shape("duplicate ID attribute"));
            }
        }
    }
    Ok(())
}

/// Check the signatures of a response whose assertion is in the clear, then verify them
/// with xmlsec and return the signed assertion. `require_assertion_signature` is set for a
/// decrypted assertion, which must carry its own signature whatever the policy.
pub fn verify(doc: &str, policy: &Policy, require_assertion_signature: bool) -> Result<Verified, VerifyError> {
    verify_parsed(doc, parse_response(doc)?, policy, require_assertion_signature)
}

/// [`verify`] for a document already read by [`parse_response`] (`root` is `doc`'s tree).
pub fn verify_parsed(
    doc: &str,
    root: Element,
    policy: &Policy,
    require_assertion_signature: bool,
) -> Result<Verified, VerifyError> {
    if policy.certificates.is_empty() {
        // samael verifies nothing when it is given no certificate: never call it that way.
        return Err(VerifyError::NoCertificate);
    }
    crate::quiet::silence_xmlsec();
    let Carried::Plain(assertion) = carried(&root)? else {
        return Err(shape("encrypted assertion where a decrypted one was expected"));
    };
    let root_id = root.attr("ID").filter(|v| !v.is_empty()).ok_or_else(|| shape("Response has no ID"))?;
    let assertion_id =
        assertion.attr("ID").filter(|v| !v.is_empty()).ok_or_else(|| shape("Assertion has no ID"))?.to_owned();

    // Every Signature anywhere must be the enveloped signature of the Response or of the
    // Assertion; anything else (in Extensions, in an Object, under Subject) is refused.
    let mut weak = false;
    let mut response_signed = false;
    let mut assertion_signed = false;
    let mut signatures = 0;
    for e in root.descendants() {
        signatures += e.children_named(DSIG, "Signature").count();
    }
    for sig in root.children_named(DSIG, "Signature") {
        weak |= check_signature(sig, root_id, policy)?;
        if response_signed {
            return Err(shape("two Response signatures"));
        }
        response_signed = true;
    }
    for sig in assertion.children_named(DSIG, "Signature") {
        weak |= check_signature(sig, &assertion_id, policy)?;
        if assertion_signed {
            return Err(shape("two Assertion signatures"));
        }
        assertion_signed = true;
    }
    if signatures != usize::from(response_signed) + usize::from(assertion_signed) {
        return Err(shape("a Signature in an unexpected place"));
    }
    if !assertion_signed && (require_assertion_signature || !policy.allow_response_signature_only || !response_signed) {
        return Err(shape(if response_signed {
            "the assertion is not signed (response-only signing is not enabled for this connection)"
        } else {
            "the response is not signed"
        }));
    }

    // Check they are the element we meant (its ID), never some other node.
    let signed = signed_content(doc, policy)?;
    let signed_assertion = if signed.is(PROTOCOL, "Response") {
        if signed.attr("ID") != Some(root_id) {
            return Err(VerifyError::BadSignature);
        }
        let Carried::Plain(a) = carried(&signed)? else { return Err(VerifyError::BadSignature) };
        a.clone()
    } else if signed.is(ASSERTION, "Assertion") {
        signed
    } else {
        return Err(VerifyError::BadSignature);
    };
    if signed_assertion.attr("ID") != Some(assertion_id.as_str()) {
        return Err(VerifyError::BadSignature);
    }
    Ok(Verified {
        response: root,
        assertion: signed_assertion,
        response_signed,
        assertion_signed,
        weak_algorithm: weak,
    })
}

/// Verify the Response signature of a response carrying an EncryptedAssertion, as sent
/// (before decryption changes it). It must be the only signature in the document.
pub fn verify_response_only(doc: &str, root: &Element, policy: &Policy) -> Result<(), VerifyError> {
    if policy.certificates.is_empty() {
        return Err(VerifyError::NoCertificate);
    }
    crate::quiet::silence_xmlsec();
    let root_id = root.attr("ID").filter(|v| !v.is_empty()).ok_or_else(|| shape("Response has no ID"))?;
    let total: usize = root.descendants().iter().map(|e| e.children_named(DSIG, "Signature").count()).sum();
    let sig = root.only_child(DSIG, "Signature").ok_or_else(|| shape("expected one Response signature"))?;
    if total != 1 {
        return Err(shape("a Signature in an unexpected place"));
    }
    check_signature(sig, root_id, policy)?;
    let signed = signed_content(doc, policy)?;
    if !signed.is(PROTOCOL, "Response") || signed.attr("ID") != Some(root_id) {
        return Err(VerifyError::BadSignature);
    }
    Ok(())
}

/// Every signature of `doc` verified by xmlsec with the pinned certificates, and what they
/// covered (the pre-digest bytes), read back with the same strict reader.
fn signed_content(doc: &str, policy: &Policy) -> Result<Element, VerifyError> {
    let certs: Vec<CertificateDer> = policy.certificates.iter().cloned().map(CertificateDer::from).collect();
    // With SHA-1 allowed, our own allow-list (check_signature) is the only one: samael's
    // cannot name SHA-1.
    let allowed = (!policy.allow_sha1).then_some(&STRONG_SIGNATURES[..]);
    let signed = Crypto::reduce_xml_to_signed_with_allowed_algorithms(doc, &certs, ReduceMode::PreDigest, allowed)
        .map_err(|_| VerifyError::BadSignature)?;
    Ok(xml::parse(&signed, &Limits::MESSAGE)?)
}

/// The shape of one enveloped signature over the element with ID `id`. Returns whether it
/// uses SHA-1.
fn check_signature(sig: &Element, id: &str, policy: &Policy) -> Result<bool, VerifyError> {
    for child in sig.elements() {
        let allowed = child.ns == DSIG && matches!(child.local.as_str(), "SignedInfo" | "SignatureValue" | "KeyInfo");
        if !allowed {
            return Err(shape(format!("unexpected <{}> in a Signature", child.local)));
        }
    }
    let signed_info = sig.only_child(DSIG, "SignedInfo").ok_or_else(|| shape("Signature needs one SignedInfo"))?;
    sig.only_child(DSIG, "SignatureValue").ok_or_else(|| shape("Signature needs one SignatureValue"))?;
    if let Some(ki) = sig.child(DSIG, "KeyInfo")
        && ki.descendants().iter().any(|e| e.is(DSIG, "RetrievalMethod"))
    {
        return Err(shape("RetrievalMethod in KeyInfo"));
    }
    let c14n = signed_info
        .only_child(DSIG, "CanonicalizationMethod")
        .and_then(|c| c.attr("Algorithm"))
        .ok_or_else(|| shape("SignedInfo needs one CanonicalizationMethod"))?;
    if c14n != EXC_C14N {
        return Err(shape(format!("canonicalization {c14n} is not accepted")));
    }
    let method = signed_info
        .only_child(DSIG, "SignatureMethod")
        .and_then(|c| c.attr("Algorithm"))
        .ok_or_else(|| shape("SignedInfo needs one SignatureMethod"))?;
    let mut weak = false;
    if method == RSA_SHA1 && policy.allow_sha1 {
        weak = true;
    } else if !STRONG_SIGNATURES.iter().any(|a| a.signature_uri() == method) {
        return Err(shape(format!("signature algorithm {method} is not accepted")));
    }
    let mut refs = signed_info.children_named(DSIG, "Reference");
    let reference = refs.next().ok_or_else(|| shape("SignedInfo has no Reference"))?;
    if refs.next().is_some() {
        return Err(shape("SignedInfo has several References"));
    }
    if reference.attr("URI") != Some(&format!("#{id}")) {
        return Err(shape("the Reference does not point at the signed element's ID"));
    }
    if let Some(transforms) = reference.child(DSIG, "Transforms") {
        for t in transforms.elements() {
            if !t.is(DSIG, "Transform") {
                return Err(shape("unexpected element in Transforms"));
            }
            match t.attr("Algorithm") {
                Some(ENVELOPED) | Some(EXC_C14N) => {}
                other => return Err(shape(format!("transform {} is not accepted", other.unwrap_or("(none)")))),
            }
            // Exclusive c14n may name InclusiveNamespaces; nothing else (XPath, XSLT) may appear.
            if t.elements().any(|c| c.local != "InclusiveNamespaces") {
                return Err(shape("unexpected content in a Transform"));
            }
        }
    }
    let digest = reference
        .only_child(DSIG, "DigestMethod")
        .and_then(|c| c.attr("Algorithm"))
        .ok_or_else(|| shape("Reference needs one DigestMethod"))?;
    if digest == SHA1 && policy.allow_sha1 {
        weak = true;
    } else if !STRONG_SIGNATURES.iter().any(|a| a.digest_uri() == digest) {
        return Err(shape(format!("digest algorithm {digest} is not accepted")));
    }
    Ok(weak)
}

/// The `EncryptedData` of an `EncryptedAssertion`, for the decryptor.
pub fn encrypted_data(enc: &Element) -> Result<&Element, VerifyError> {
    enc.only_child(XENC, "EncryptedData").ok_or_else(|| shape("EncryptedAssertion needs one EncryptedData"))
}
