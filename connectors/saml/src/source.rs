//! IdP metadata from a URL: fetched at start (in the background, so an unreachable IdP never
//! delays or stops Gatehouse), refreshed on a schedule so certificate rollovers arrive by
//! themselves, and never lost: when a refresh fails, the last good copy stays in use.

use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use gatehouse_connector::http::{Method, UpstreamHttp};
use gatehouse_connector::{ConnectorError, Url};

use crate::metadata::{self, IdpDescriptor};

/// Explicit settings that win over metadata.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    pub entity_id: Option<String>,
    pub sso_url: Option<Url>,
    pub slo_url: Option<Url>,
    pub certificates: Vec<Vec<u8>>,
}

impl Overrides {
    pub fn apply(&self, mut d: IdpDescriptor) -> IdpDescriptor {
        if let Some(e) = &self.entity_id {
            d.entity_id = e.clone();
        }
        if let Some(u) = &self.sso_url {
            d.sso_redirect = Some(u.to_string());
            d.sso_post = Some(u.to_string());
        }
        if let Some(u) = &self.slo_url {
            d.slo_redirect = Some(u.to_string());
        }
        if !self.certificates.is_empty() {
            d.certificates = self.certificates.clone();
        }
        d
    }
}

/// How long to wait before retrying after a failed fetch.
const RETRY: Duration = Duration::from_secs(30);

pub(crate) struct MetadataSource {
    connection: String,
    url: Url,
    refresh: Duration,
    http: UpstreamHttp,
    overrides: Overrides,
    /// The last good copy and when it was fetched.
    current: RwLock<Option<(Arc<IdpDescriptor>, Instant)>>,
    /// One fetch at a time: a burst of logins makes one request.
    fetching: tokio::sync::Mutex<()>,
}

impl MetadataSource {
    pub fn new(connection: String, url: Url, refresh: Duration, http: UpstreamHttp, overrides: Overrides) -> Self {
        Self { connection, url, refresh, http, overrides, current: RwLock::new(None), fetching: Default::default() }
    }

    fn fresh(&self) -> Option<Arc<IdpDescriptor>> {
        let guard = self.current.read().unwrap_or_else(|p| p.into_inner());
        guard.as_ref().filter(|(_, at)| at.elapsed() < self.refresh).map(|(d, _)| d.clone())
    }

    /// The IdP: the cached copy while fresh, else a fetch (the last good copy if it fails).
    pub async fn get(&self) -> Result<Arc<IdpDescriptor>, ConnectorError> {
        if let Some(d) = self.fresh() {
            return Ok(d);
        }
        let _one = self.fetching.lock().await;
        if let Some(d) = self.fresh() {
            return Ok(d);
        }
        self.fetch().await
    }

    async fn download(&self) -> Result<IdpDescriptor, ConnectorError> {
        let res = self.http.send(self.http.request(Method::GET, &self.url)).await?;
        if !res.status.is_success() {
            return Err(ConnectorError::Upstream(format!("IdP metadata: HTTP {}", res.status)));
        }
        let text = String::from_utf8(res.body)
            .map_err(|_| ConnectorError::InvalidResponse("IdP metadata is not UTF-8".into()))?;
        let d = metadata::parse_idp(&text, self.overrides.entity_id.as_deref())
            .map_err(|e| ConnectorError::InvalidResponse(e.to_string()))?;
        Ok(self.overrides.apply(d))
    }

    async fn fetch(&self) -> Result<Arc<IdpDescriptor>, ConnectorError> {
        let fetched = self.download().await;
        let mut guard = self.current.write().unwrap_or_else(|p| p.into_inner());
        match fetched {
            Ok(d) => {
                let d = Arc::new(d);
                let changed = guard.as_ref().is_none_or(|(old, _)| **old != *d);
                if changed {
                    tracing::info!(connection = %self.connection, certificates = d.certificates.len(), "IdP metadata loaded");
                }
                *guard = Some((d.clone(), Instant::now()));
                Ok(d)
            }
            Err(e) => match guard.as_mut() {
                Some((d, at)) => {
                    tracing::warn!(connection = %self.connection, error = %e, "IdP metadata refresh failed; keeping the last good copy");
                    // Looks fresh again for a short while: retried soon, not at every login.
                    *at = Instant::now().checked_sub(self.refresh.saturating_sub(RETRY)).unwrap_or_else(Instant::now);
                    Ok(d.clone())
                }
                None => {
                    tracing::warn!(connection = %self.connection, error = %e, "IdP metadata unavailable");
                    Err(e)
                }
            },
        }
    }

    /// Fetch now and every `refresh` after, for as long as the connection exists. Outside a
    /// Tokio runtime (`check-config`), nothing is spawned and metadata is fetched at first use.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else { return };
        let weak: Weak<Self> = Arc::downgrade(self);
        rt.spawn(async move {
            loop {
                let wait = {
                    let Some(me) = weak.upgrade() else { return };
                    let ok = {
                        let _one = me.fetching.lock().await;
                        me.fetch().await.is_ok()
                    };
                    if ok { me.refresh } else { RETRY.min(me.refresh) }
                };
                tokio::time::sleep(wait).await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    const CERT: &str = include_str!("../selftest/selftest.crt");

    fn metadata_xml(sso: &str) -> String {
        let der = metadata::pem_certificates(CERT).unwrap().remove(0);
        let b64 = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, der);
        format!(
            r#"<md:EntityDescriptor xmlns:md="urn:oasis:names:tc:SAML:2.0:metadata" xmlns:ds="http://www.w3.org/2000/09/xmldsig#" entityID="https://idp.test"><md:IDPSSODescriptor protocolSupportEnumeration="urn:oasis:names:tc:SAML:2.0:protocol"><md:KeyDescriptor use="signing"><ds:KeyInfo><ds:X509Data><ds:X509Certificate>{b64}</ds:X509Certificate></ds:X509Data></ds:KeyInfo></md:KeyDescriptor><md:SingleSignOnService Binding="urn:oasis:names:tc:SAML:2.0:bindings:HTTP-Redirect" Location="{sso}"/></md:IDPSSODescriptor></md:EntityDescriptor>"#
        )
    }

    /// A one-route HTTP server: the metadata while `healthy`, 500 after; counts requests.
    async fn server(hits: Arc<AtomicUsize>, healthy_for: usize) -> Url {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = Url::parse(&format!("http://{}/metadata", listener.local_addr().unwrap())).unwrap();
        tokio::spawn(async move {
            loop {
                let (mut sock, _) = listener.accept().await.unwrap();
                let n = hits.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 4096];
                let _ = sock.read(&mut buf).await;
                let (status, body) = if n < healthy_for {
                    ("200 OK", metadata_xml(&format!("https://idp.test/sso/{n}")))
                } else {
                    ("500 Internal Server Error", String::new())
                };
                let head = format!("HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
                let _ = sock.write_all(head.as_bytes()).await;
                let _ = sock.write_all(body.as_bytes()).await;
            }
        });
        url
    }

    fn source(url: Url, refresh: Duration) -> Arc<MetadataSource> {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let http = UpstreamHttp::new(Duration::from_secs(2), 1 << 20).unwrap();
        Arc::new(MetadataSource::new("acme".into(), url, refresh, http, Overrides::default()))
    }

    #[tokio::test]
    async fn fetched_at_start_refreshed_and_kept_when_the_idp_fails() {
        let hits = Arc::new(AtomicUsize::new(0));
        let url = server(hits.clone(), 2).await;
        let s = source(url, Duration::from_secs(1));
        s.spawn_refresher();
        // Fetched without any login asking for it: a copy appears with no `get` asking.
        // (Polled, not slept: a loaded machine may take its time, never the wrong path.)
        let deadline = Instant::now() + Duration::from_secs(20);
        while s.fresh().is_none() {
            assert!(Instant::now() < deadline, "metadata was not fetched at start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        // The first copy (or, on a machine slow enough to miss a 1 s period, the second).
        let first = s.get().await.unwrap().sso_redirect.clone().unwrap();
        assert!(["https://idp.test/sso/0", "https://idp.test/sso/1"].contains(&first.as_str()), "{first}");
        // The schedule fetches again (the second copy), then the IdP breaks (the third fetch
        // fails): the last good copy stays. A `get` during a fetch waits for it.
        while hits.load(Ordering::SeqCst) < 3 {
            assert!(Instant::now() < deadline, "not refreshed on schedule");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let d = s.get().await.unwrap();
        assert_eq!(d.sso_redirect.as_deref(), Some("https://idp.test/sso/1"), "the last good copy");
        assert_eq!(d.certificates.len(), 1);
    }

    #[tokio::test]
    async fn an_idp_never_reached_is_an_upstream_error() {
        let hits = Arc::new(AtomicUsize::new(0));
        let url = server(hits, 0).await;
        let s = source(url, Duration::from_secs(60));
        assert!(matches!(s.get().await, Err(ConnectorError::Upstream(_))));
    }
}
