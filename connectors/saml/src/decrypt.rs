//! XML Encryption of assertions: RSA-OAEP key transport, AES-GCM or AES-CBC content.
//!
//! Only OpenSSL primitives do cryptography here; this module picks them from the algorithm
//! URIs and refuses everything else — in particular RSA PKCS#1 v1.5 key transport, the
//! Bleichenbacher padding oracle. Every failure is the same error, so a CBC padding failure
//! cannot be told apart from any other (and a decrypted assertion must still be signed).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use openssl::encrypt::Decrypter;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Padding;
use openssl::symm::{Cipher, Crypter, Mode};

use crate::xml::{DSIG, Element, XENC};

const XENC11: &str = "http://www.w3.org/2009/xmlenc11#";
const RSA_OAEP_MGF1P: &str = "http://www.w3.org/2001/04/xmlenc#rsa-oaep-mgf1p";
const RSA_OAEP: &str = "http://www.w3.org/2009/xmlenc11#rsa-oaep";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the encrypted assertion could not be decrypted")]
pub struct DecryptError;

enum Content {
    Cbc(Cipher, usize),
    Gcm(Cipher, usize),
}

/// Content algorithms by their short names (the `encryption_algorithms` option).
pub const CONTENT_ALGORITHMS: [(&str, &str); 6] = [
    ("aes128-cbc", "http://www.w3.org/2001/04/xmlenc#aes128-cbc"),
    ("aes192-cbc", "http://www.w3.org/2001/04/xmlenc#aes192-cbc"),
    ("aes256-cbc", "http://www.w3.org/2001/04/xmlenc#aes256-cbc"),
    ("aes128-gcm", "http://www.w3.org/2009/xmlenc11#aes128-gcm"),
    ("aes192-gcm", "http://www.w3.org/2009/xmlenc11#aes192-gcm"),
    ("aes256-gcm", "http://www.w3.org/2009/xmlenc11#aes256-gcm"),
];

fn content_cipher(uri: &str) -> Option<Content> {
    Some(match uri {
        "http://www.w3.org/2001/04/xmlenc#aes128-cbc" => Content::Cbc(Cipher::aes_128_cbc(), 16),
        "http://www.w3.org/2001/04/xmlenc#aes192-cbc" => Content::Cbc(Cipher::aes_192_cbc(), 24),
        "http://www.w3.org/2001/04/xmlenc#aes256-cbc" => Content::Cbc(Cipher::aes_256_cbc(), 32),
        "http://www.w3.org/2009/xmlenc11#aes128-gcm" => Content::Gcm(Cipher::aes_128_gcm(), 16),
        "http://www.w3.org/2009/xmlenc11#aes192-gcm" => Content::Gcm(Cipher::aes_192_gcm(), 24),
        "http://www.w3.org/2009/xmlenc11#aes256-gcm" => Content::Gcm(Cipher::aes_256_gcm(), 32),
        _ => return None,
    })
}

fn digest(uri: Option<&str>) -> Option<MessageDigest> {
    Some(match uri {
        None | Some("http://www.w3.org/2000/09/xmldsig#sha1") => MessageDigest::sha1(),
        Some("http://www.w3.org/2001/04/xmlenc#sha256") => MessageDigest::sha256(),
        Some("http://www.w3.org/2001/04/xmldsig-more#sha384") => MessageDigest::sha384(),
        Some("http://www.w3.org/2001/04/xmlenc#sha512") => MessageDigest::sha512(),
        _ => return None,
    })
}

fn mgf(uri: Option<&str>) -> Option<MessageDigest> {
    Some(match uri {
        None | Some("http://www.w3.org/2009/xmlenc11#mgf1sha1") => MessageDigest::sha1(),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha256") => MessageDigest::sha256(),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha384") => MessageDigest::sha384(),
        Some("http://www.w3.org/2009/xmlenc11#mgf1sha512") => MessageDigest::sha512(),
        _ => return None,
    })
}

fn cipher_value(e: &Element) -> Result<Vec<u8>, DecryptError> {
    let text = e
        .only_child(XENC, "CipherData")
        .and_then(|d| d.only_child(XENC, "CipherValue"))
        .and_then(Element::text)
        .ok_or(DecryptError)?;
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    STANDARD.decode(compact).map_err(|_| DecryptError)
}

fn unwrap_key(encrypted_key: &Element, key: &PKey<Private>) -> Result<Vec<u8>, DecryptError> {
    let method = encrypted_key.only_child(XENC, "EncryptionMethod").ok_or(DecryptError)?;
    let (md, mgf1) = match method.attr("Algorithm") {
        Some(RSA_OAEP_MGF1P) => {
            (digest(method.child(DSIG, "DigestMethod").and_then(|d| d.attr("Algorithm"))), Some(MessageDigest::sha1()))
        }
        Some(RSA_OAEP) => (
            digest(method.child(DSIG, "DigestMethod").and_then(|d| d.attr("Algorithm"))),
            mgf(method.child(XENC11, "MGF").and_then(|d| d.attr("Algorithm"))),
        ),
        // rsa-1_5 and anything unknown.
        _ => return Err(DecryptError),
    };
    let (md, mgf1) = (md.ok_or(DecryptError)?, mgf1.ok_or(DecryptError)?);
    let wrapped = cipher_value(encrypted_key)?;
    let mut d = Decrypter::new(key).map_err(|_| DecryptError)?;
    d.set_rsa_padding(Padding::PKCS1_OAEP).map_err(|_| DecryptError)?;
    d.set_rsa_oaep_md(md).map_err(|_| DecryptError)?;
    d.set_rsa_mgf1_md(mgf1).map_err(|_| DecryptError)?;
    let mut out = vec![0; d.decrypt_len(&wrapped).map_err(|_| DecryptError)?];
    let n = d.decrypt(&wrapped, &mut out).map_err(|_| DecryptError)?;
    out.truncate(n);
    Ok(out)
}

/// Decrypt the `EncryptedAssertion` element `enc` with the SP's private key; the result is
/// the assertion's XML text, still to be parsed and verified like any other. `allowed` lists
/// the content algorithm URIs this connection takes: the EncryptionMethod is not
/// authenticated, so pinning it (GCM only, say) closes the CBC downgrade.
pub fn decrypt_assertion(enc: &Element, key: &PKey<Private>, allowed: &[&str]) -> Result<String, DecryptError> {
    let data = enc.only_child(XENC, "EncryptedData").ok_or(DecryptError)?;
    if data.attr("Type").is_some_and(|t| t != "http://www.w3.org/2001/04/xmlenc#Element") {
        return Err(DecryptError);
    }
    let content = data
        .only_child(XENC, "EncryptionMethod")
        .and_then(|m| m.attr("Algorithm"))
        .filter(|uri| allowed.contains(uri))
        .and_then(content_cipher);
    let content = content.ok_or(DecryptError)?;
    // The key travels inside EncryptedData's KeyInfo, or beside EncryptedData (then KeyInfo
    // only points at it; the pointer is never followed).
    let inner = data.child(DSIG, "KeyInfo").and_then(|k| k.only_child(XENC, "EncryptedKey"));
    let beside = enc.only_child(XENC, "EncryptedKey");
    let encrypted_key = match (inner, beside) {
        (Some(k), None) | (None, Some(k)) => k,
        _ => return Err(DecryptError),
    };
    let cek = unwrap_key(encrypted_key, key)?;
    let body = cipher_value(data)?;
    let plain = match content {
        Content::Gcm(cipher, len) => {
            const IV: usize = 12;
            const TAG: usize = 16;
            if cek.len() != len || body.len() < IV + TAG {
                return Err(DecryptError);
            }
            let (iv, rest) = body.split_at(IV);
            let (ct, tag) = rest.split_at(rest.len() - TAG);
            openssl::symm::decrypt_aead(cipher, &cek, Some(iv), &[], ct, tag).map_err(|_| DecryptError)?
        }
        Content::Cbc(cipher, len) => {
            const BLOCK: usize = 16;
            if cek.len() != len || body.len() < 2 * BLOCK || body.len() % BLOCK != 0 {
                return Err(DecryptError);
            }
            let (iv, ct) = body.split_at(BLOCK);
            let mut c = Crypter::new(cipher, Mode::Decrypt, &cek, Some(iv)).map_err(|_| DecryptError)?;
            // XML Encryption pads with arbitrary bytes and the count last (not PKCS#7).
            c.pad(false);
            let mut out = vec![0; ct.len() + BLOCK];
            let mut n = c.update(ct, &mut out).map_err(|_| DecryptError)?;
            n += c.finalize(&mut out[n..]).map_err(|_| DecryptError)?;
            out.truncate(n);
            let pad = usize::from(*out.last().ok_or(DecryptError)?);
            if pad == 0 || pad > BLOCK || pad > out.len() {
                return Err(DecryptError);
            }
            out.truncate(out.len() - pad);
            out
        }
    };
    String::from_utf8(plain).map_err(|_| DecryptError)
}
