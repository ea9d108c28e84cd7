//! The one pass over a configuration: collects every problem with its key path instead of
//! stopping at the first, and expands `${NAME}` references from the environment.

use serde::de::DeserializeOwned;

use super::ConfigError;

pub(super) struct Ctx<'a> {
    pub(super) errors: Vec<ConfigError>,
    pub(super) env: &'a dyn Fn(&str) -> Option<String>,
}

impl Ctx<'_> {
    pub(super) fn err(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { path: path.into(), message: message.into() });
    }

    /// Deserialize one value, recording a failure under `path`.
    pub(super) fn section<T: DeserializeOwned + Default>(&mut self, table: &mut toml::Table, key: &str) -> T {
        match table.remove(key) {
            None => T::default(),
            Some(v) => self.value(v, key).unwrap_or_default(),
        }
    }

    pub(super) fn value<T: DeserializeOwned>(&mut self, v: toml::Value, path: &str) -> Option<T> {
        match T::deserialize(v) {
            Ok(t) => Some(t),
            Err(e) => {
                self.err(path, e.message().trim().to_owned());
                None
            }
        }
    }

    pub(super) fn array(&mut self, table: &mut toml::Table, key: &str) -> Vec<(String, toml::Value)> {
        match table.remove(key) {
            None => Vec::new(),
            Some(toml::Value::Array(items)) => {
                items.into_iter().enumerate().map(|(i, v)| (format!("{key}[{i}]"), v)).collect()
            }
            Some(_) => {
                self.err(key, "must be an array of tables ([[".to_owned() + key + "]])");
                Vec::new()
            }
        }
    }

    /// Replace `${NAME}` in every string of the tree from the environment.
    pub(super) fn expand(&mut self, v: &mut toml::Value, path: &str) {
        match v {
            toml::Value::String(s) => {
                let mut out = String::with_capacity(s.len());
                let mut rest = s.as_str();
                while let Some(start) = rest.find("${") {
                    out.push_str(&rest[..start]);
                    let Some(end) = rest[start..].find('}') else {
                        self.err(path, "unterminated ${ reference");
                        return;
                    };
                    // ${NAME} or ${NAME:-default}
                    let reference = &rest[start + 2..start + end];
                    let (name, default) = match reference.split_once(":-") {
                        Some((n, d)) => (n, Some(d)),
                        None => (reference, None),
                    };
                    match ((self.env)(name).filter(|v| !v.is_empty()), default) {
                        (Some(value), _) => out.push_str(&value),
                        (None, Some(d)) => out.push_str(d),
                        (None, None) => self.err(path, format!("environment variable {name} is not set")),
                    }
                    rest = &rest[start + end + 1..];
                }
                out.push_str(rest);
                *s = out;
            }
            toml::Value::Array(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    self.expand(item, &format!("{path}[{i}]"));
                }
            }
            toml::Value::Table(t) => {
                for (k, item) in t.iter_mut() {
                    let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                    self.expand(item, &p);
                }
            }
            _ => {}
        }
    }
}

/// A number that must not be zero; absent means `default`.
pub(super) fn positive(ctx: &mut Ctx<'_>, path: &str, v: Option<u64>, default: u64) -> u64 {
    match v {
        Some(0) => {
            ctx.err(path, "must be greater than zero");
            default
        }
        Some(n) => n,
        None => default,
    }
}
