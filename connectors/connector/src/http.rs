//! The HTTP client connectors use to talk to their upstream: it follows no redirects (an
//! upstream cannot bounce Gatehouse to an internal address), every call has a deadline, and
//! every response body is read up to a limit.

use std::time::Duration;

use crate::{ConnectorError, Url};

pub use reqwest::{Method, StatusCode};

/// Defaults suited to identity providers: 10 s per call, 1 MiB per response.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

#[derive(Clone)]
pub struct UpstreamHttp {
    client: reqwest::Client,
    max_body: usize,
}

/// A response whose body was read in full (within the limit).
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(&self) -> Result<serde_json::Value, ConnectorError> {
        serde_json::from_slice(&self.body)
            .map_err(|e| ConnectorError::InvalidResponse(format!("upstream sent invalid JSON ({}): {e}", self.status)))
    }
}

impl UpstreamHttp {
    pub fn new(timeout: Duration, max_body: usize) -> Result<Self, ConnectorError> {
        // One process-wide TLS provider: aws-lc-rs, as everywhere else in Gatehouse.
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(5)))
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ConnectorError::Misconfigured(format!("cannot build the HTTP client: {e}")))?;
        Ok(Self { client, max_body })
    }

    pub fn with_defaults() -> Result<Self, ConnectorError> {
        Self::new(DEFAULT_TIMEOUT, DEFAULT_MAX_BODY)
    }

    /// A request to build on; send it with [`UpstreamHttp::send`].
    pub fn request(&self, method: Method, url: &Url) -> reqwest::RequestBuilder {
        self.client.request(method, url.as_str())
    }

    /// Send and read the body up to the limit. Network errors and timeouts are `Upstream`;
    /// an oversized body is `InvalidResponse`.
    pub async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, ConnectorError> {
        let mut r = request.send().await.map_err(|e| ConnectorError::Upstream(describe(e)))?;
        if r.content_length().is_some_and(|n| n > self.max_body as u64) {
            return Err(ConnectorError::InvalidResponse(format!(
                "upstream response larger than {} bytes",
                self.max_body
            )));
        }
        let status = r.status();
        let content_type =
            r.headers().get(reqwest::header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = r.chunk().await.map_err(|e| ConnectorError::Upstream(describe(e)))? {
            if body.len() + chunk.len() > self.max_body {
                return Err(ConnectorError::InvalidResponse(format!(
                    "upstream response larger than {} bytes",
                    self.max_body
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Response { status, content_type, body })
    }

    /// Run an `http::Request` (the shape protocol crates such as `openidconnect` use).
    pub async fn execute(&self, request: http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, ConnectorError> {
        let (parts, body) = request.into_parts();
        let builder = self.client.request(parts.method, parts.uri.to_string()).headers(parts.headers).body(body);
        let r = self.send(builder).await?;
        let mut response = http::Response::builder().status(r.status);
        if let Some(ct) = &r.content_type {
            response = response.header(http::header::CONTENT_TYPE, ct);
        }
        response.body(r.body).map_err(|e| ConnectorError::Upstream(e.to_string()))
    }
}

fn describe(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    // The URL is left out: it may carry a code or a token in its query.
    format!("{kind}: {}", e.without_url())
}
