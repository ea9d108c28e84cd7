//! What this test process logs, captured in memory, and every spelling of a secret to look
//! for in a log or a store dump.

use std::sync::{Arc, LazyLock};

/// What this test process logs, captured in memory: every event of every crate at trace level,
/// in Gatehouse's JSON log format (`telemetry::init_logging`'s shape: flattened events, span
/// fields such as the correlation id included). For tests about what reaches the logs.
#[derive(Clone)]
pub struct Logs(Arc<std::sync::Mutex<Vec<u8>>>);

struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Start capturing (once per process; later calls share the capture). Call it before the
/// node starts, so nothing is logged before the capture is in place.
pub fn capture_logs() -> Logs {
    static LOGS: LazyLock<Logs> = LazyLock::new(|| {
        let buf = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = buf.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new("trace"))
            .with_target(false)
            .with_writer(move || LogWriter(writer.clone()))
            .json()
            .flatten_event(true)
            .try_init()
            .expect("the log capture must be the process's first subscriber");
        Logs(buf)
    });
    LOGS.clone()
}

impl Logs {
    /// Everything logged so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }

    /// The events logged while serving the request with this correlation id.
    pub fn of_request(&self, correlation_id: &str) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|e| {
                e["span"]["correlation_id"] == correlation_id
                    || e["spans"].as_array().is_some_and(|s| s.iter().any(|s| s["correlation_id"] == correlation_id))
            })
            .collect()
    }
}

/// Every spelling of `secret` a log line could carry it in: as is, form- and
/// percent-encoded, JSON-escaped, hex, and base64 (standard and URL-safe) at each of the three
/// alignments it can have inside a longer encoded value (a Basic header's `id:secret`, a
/// JWT, a cookie), trimmed to the characters that depend on the secret alone.
pub fn encodings(secret: &str) -> Vec<String> {
    use base64::Engine as _;
    use base64::engine::general_purpose::{STANDARD, URL_SAFE};
    assert!(secret.len() >= 8, "too short to search for without false alarms: {secret:?}");
    let mut out = vec![
        secret.to_owned(),
        url::form_urlencoded::byte_serialize(secret.as_bytes()).collect::<String>(),
        secret.bytes().map(|b| format!("%{b:02X}")).collect(),
        serde_json::to_string(secret).unwrap().trim_matches('"').to_owned(),
        secret.bytes().map(|b| format!("{b:02x}")).collect(),
    ];
    for engine in [&STANDARD, &URL_SAFE] {
        for offset in 0..3usize {
            let mut bytes = vec![0u8; offset];
            bytes.extend_from_slice(secret.as_bytes());
            let encoded = engine.encode(&bytes);
            // Characters touched by the filler or by the padding of the last group are dropped.
            let skip = if offset == 0 { 0 } else { (offset * 8).div_ceil(6) };
            let whole = (bytes.len() / 3) * 4;
            if whole > skip + 4 {
                out.push(encoded[skip..whole].to_owned());
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Panics naming the first secret found in `logs` in any of its [`encodings`].
pub fn assert_no_secret_in(logs: &str, secrets: &[(&str, &str)]) {
    assert!(!logs.is_empty(), "nothing was logged: the capture is not working");
    for (what, secret) in secrets {
        for spelling in encodings(secret) {
            if let Some(at) = logs.find(&spelling) {
                let line = logs[..at].rfind('\n').map_or(0, |i| i + 1);
                let end = logs[at..].find('\n').map_or(logs.len(), |i| at + i);
                panic!("the {what} reached the logs (as {spelling:?}):\n{}", &logs[line..end]);
            }
        }
    }
}
