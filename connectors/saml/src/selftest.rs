//! A start-up self-test of the verifier, run once per process before any SAML connection
//! opens: a correctly signed response must verify and the same response with its NameID
//! changed after signing must not. It guards against a libxmlsec1 build or a future library
//! upgrade that quietly stops checking, the failure mode of an SP that "works" for years.

use std::sync::OnceLock;

use gatehouse_connector::ConnectorError;

use crate::verify::{Policy, VerifyError, verify};

const CERT: &str = include_str!("../selftest/selftest.crt");
const VALID: &str = include_str!("../selftest/valid.xml");
const TAMPERED: &str = include_str!("../selftest/tampered.xml");

fn check() -> Result<(), String> {
    let certificates = crate::metadata::pem_certificates(CERT).map_err(|e| e.to_string())?;
    let policy = Policy { certificates, allow_response_signature_only: false, allow_sha1: false };
    let valid = verify(VALID, &policy, false).map_err(|e| format!("the valid fixture was refused: {e}"))?;
    if valid.assertion.attr("ID") != Some("_22222222222222222222222222222222") {
        return Err("the valid fixture verified, but not its assertion".into());
    }
    match verify(TAMPERED, &policy, false) {
        Err(VerifyError::BadSignature) => Ok(()),
        Err(e) => Err(format!("the tampered fixture was refused for the wrong reason: {e}")),
        Ok(_) => Err("a response tampered after signing VERIFIED".into()),
    }
}

/// Run the self-test (once; the result is remembered).
pub fn run() -> Result<(), ConnectorError> {
    static RESULT: OnceLock<Result<(), String>> = OnceLock::new();
    RESULT
        .get_or_init(check)
        .clone()
        .map_err(|e| ConnectorError::Misconfigured(format!("SAML signature self-test failed, refusing to open: {e}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn self_test_passes() {
        super::check().unwrap();
    }

    #[test]
    fn fixtures_differ_only_after_signing() {
        // The tampered file is the valid one with one changed NameID: same signature bytes.
        let sig = |d: &str| d.split("<ds:SignatureValue>").nth(1).map(|s| s.split('<').next().unwrap().to_owned());
        assert_eq!(sig(super::VALID), sig(super::TAMPERED));
        assert_ne!(super::VALID, super::TAMPERED);
    }
}
