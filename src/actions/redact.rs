//! Text an action produces on its way to the log: every secret of the action replaced, in its
//! usual encodings too, and the line capped.

use base64::Engine;
use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};

use super::limits::MAX_LOG_LINE;
use crate::types::Secret;

/// Shorter encoded fragments are not redacted: they would match ordinary text.
const MIN_FRAGMENT: usize = 6;

/// The forms a secret can take in a log line: itself, hex, percent- and form-encoding, and
/// base64 in both alphabets at each of the three alignments it can have inside a longer
/// encoded string (only the characters that depend on the secret alone).
fn encodings(secret: &str) -> Vec<String> {
    let bytes = secret.as_bytes();
    let mut out = vec![bytes.iter().map(|b| format!("{b:02x}")).collect()];
    out.push(bytes.iter().map(|b| format!("{b:02X}")).collect());
    let form: String = url::form_urlencoded::byte_serialize(bytes).collect();
    out.push(form.replace('+', "%20"));
    out.push(form);
    for engine in [STANDARD_NO_PAD, URL_SAFE_NO_PAD] {
        for lead in 0..3usize {
            let mut padded = vec![0u8; lead];
            padded.extend_from_slice(bytes);
            let encoded = engine.encode(&padded);
            // Characters of the first group depend on the lead bytes, those of the last partial
            // group on what follows the secret.
            let start = if lead == 0 { 0 } else { 4 };
            let end = (padded.len() / 3) * 4;
            if end > start {
                out.push(encoded[start..end].to_owned());
            }
        }
    }
    out.retain(|e| e.len() >= MIN_FRAGMENT);
    // The secret itself is redacted whatever its length.
    out.push(secret.to_owned());
    // Longest first, so a longer form is replaced whole before a fragment of it.
    out.sort_by_key(|e| std::cmp::Reverse(e.len()));
    out.dedup();
    out
}

/// `text` with each secret replaced by `[redacted]`, capped at [`MAX_LOG_LINE`] bytes.
pub fn for_log(text: &str, secrets: &[(String, Secret<String>)]) -> String {
    let mut out = text.to_owned();
    for (_, value) in secrets {
        if value.expose().is_empty() {
            continue;
        }
        for form in encodings(value.expose()) {
            out = out.replace(&form, "[redacted]");
        }
    }
    cap(out)
}

fn cap(mut text: String) -> String {
    if text.len() <= MAX_LOG_LINE {
        return text;
    }
    let mut end = MAX_LOG_LINE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let dropped = text.len() - end;
    text.truncate(end);
    text.push_str(&format!("… [{dropped} more bytes]"));
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets() -> Vec<(String, Secret<String>)> {
        vec![("KEY".into(), Secret::new("hunter2 s3cr3t/+?&".to_owned()))]
    }

    #[test]
    fn every_usual_encoding_is_redacted() {
        let s = "hunter2 s3cr3t/+?&";
        let b = s.as_bytes();
        let lines = [
            format!("raw {s}"),
            format!("hex {}", b.iter().map(|x| format!("{x:02x}")).collect::<String>()),
            format!("HEX {}", b.iter().map(|x| format!("{x:02X}")).collect::<String>()),
            format!("form {}", url::form_urlencoded::byte_serialize(b).collect::<String>()),
            format!("b64 {}", base64::engine::general_purpose::STANDARD.encode(b)),
            format!("b64url {}", URL_SAFE_NO_PAD.encode(b)),
            // Inside a longer encoded value, at each alignment.
            format!("basic {}", base64::engine::general_purpose::STANDARD.encode(format!("user:{s}"))),
            format!("a {}", STANDARD_NO_PAD.encode(format!("k={s}&x=1"))),
            format!("b {}", STANDARD_NO_PAD.encode(format!("kk={s}"))),
        ];
        for line in lines {
            let out = for_log(&line, &secrets());
            assert!(out.contains("[redacted]"), "{line} -> {out}");
            assert!(!out.contains(s), "{out}");
            // No run of the encoded secret's stable characters survives.
            for form in encodings(s) {
                assert!(!out.contains(&form), "{line} -> {out} still holds {form}");
            }
        }
        assert_eq!(for_log("nothing here", &secrets()), "nothing here");
    }

    #[test]
    fn a_long_line_is_capped() {
        let out = for_log(&"é".repeat(10_000), &[]);
        assert!(out.len() < MAX_LOG_LINE + 40, "{}", out.len());
        assert!(out.ends_with("more bytes]"));
    }
}
