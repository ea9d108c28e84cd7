//! The `[store]` section into a [`StoreKind`]: memory, or Redis as one server, a Cluster or
//! Sentinels.

use super::StoreKind;
use super::ctx::Ctx;
use super::defaults;
use super::raw::RawStore;

fn redis_url(ctx: &mut Ctx<'_>, path: &str, url: &str) -> bool {
    match url::Url::parse(url) {
        Ok(u) if matches!(u.scheme(), "redis" | "rediss") && u.host_str().is_some() => true,
        _ => {
            ctx.err(path, "must be a redis:// or rediss:// URL with a host");
            false
        }
    }
}

pub(super) fn store_kind(ctx: &mut Ctx<'_>, s: RawStore) -> StoreKind {
    use crate::store::redis::{RedisConfig, Topology};
    match s.kind.as_deref() {
        None | Some("memory") => {
            for (set, key) in [
                (s.url.is_some(), "url"),
                (s.cluster.is_some(), "cluster"),
                (s.sentinels.is_some(), "sentinels"),
                (s.master_name.is_some(), "master_name"),
                (s.tls_ca_file.is_some(), "tls_ca_file"),
            ] {
                if set {
                    ctx.err(format!("store.{key}"), "only applies to kind = \"redis\"");
                }
            }
            StoreKind::Memory
        }
        Some("redis") => {
            let topology = match (s.url, s.cluster, s.sentinels) {
                (Some(url), None, None) => match url.strip_prefix("redis+cluster://") {
                    // redis+cluster://host1:7000,host2:7001 names the seed nodes of a Cluster.
                    Some(hosts) => Topology::Cluster(hosts.split(',').map(|h| format!("redis://{h}")).collect()),
                    None => {
                        redis_url(ctx, "store.url", &url);
                        Topology::Single(url)
                    }
                },
                (None, Some(nodes), None) if !nodes.is_empty() => {
                    for (i, n) in nodes.iter().enumerate() {
                        redis_url(ctx, &format!("store.cluster[{i}]"), n);
                    }
                    Topology::Cluster(nodes)
                }
                (url, None, Some(sentinels)) if !sentinels.is_empty() => {
                    for (i, n) in sentinels.iter().enumerate() {
                        redis_url(ctx, &format!("store.sentinels[{i}]"), n);
                    }
                    let master_name = s.master_name.unwrap_or_else(|| {
                        ctx.err("store.master_name", "is required with sentinels");
                        String::new()
                    });
                    Topology::Sentinel { sentinels, master_name, node_url: url }
                }
                _ => {
                    ctx.err("store", "kind = \"redis\" needs exactly one of url, cluster, sentinels");
                    Topology::Single(String::new())
                }
            };
            let key_prefix = s.key_prefix.unwrap_or_else(|| defaults::REDIS_KEY_PREFIX.into());
            if key_prefix.is_empty() || key_prefix.contains(['{', '}', ' ']) {
                ctx.err("store.key_prefix", "must be non-empty, without braces or spaces");
            }
            let timeout_ms = s.timeout_ms.unwrap_or(defaults::REDIS_TIMEOUT_MS);
            if timeout_ms == 0 {
                ctx.err("store.timeout_ms", "must be greater than zero");
            }
            let tls_ca = match s.tls_ca_file {
                None => None,
                Some(path) => match std::fs::read(&path) {
                    Ok(pem) if matches!(topology, Topology::Sentinel { .. }) => {
                        drop(pem);
                        ctx.err("store.tls_ca_file", "is supported with url and cluster, not yet with sentinels");
                        None
                    }
                    Ok(pem) => Some(pem),
                    Err(e) => {
                        ctx.err("store.tls_ca_file", format!("cannot read {path}: {e}"));
                        None
                    }
                },
            };
            StoreKind::Redis(RedisConfig {
                topology,
                key_prefix,
                timeout: std::time::Duration::from_millis(timeout_ms.max(1)),
                tls_ca,
            })
        }
        Some(other) => {
            ctx.err("store.kind", format!("{other} is not one of memory, redis"));
            StoreKind::Memory
        }
    }
}
