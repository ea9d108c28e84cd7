//! Logs and metrics. Logs go through `tracing` (text or JSON); metrics are Prometheus text
//! served at `/metrics`. Neither ever carries a secret, code, token or password.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

type Labels = [(&'static str, String); 1];
type Labels2 = [(&'static str, String); 2];

pub struct Metrics {
    registry: Registry,
    pub requests: Family<Labels2, Counter>,
    pub latency: Family<Labels, Histogram>,
    pub logins: Family<Labels2, Counter>,
    pub tokens: Family<Labels, Counter>,
    pub errors: Family<Labels, Counter>,
}

fn latency_histogram() -> Histogram {
    Histogram::new([0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5])
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("gatehouse");
        let requests = Family::<Labels2, Counter>::default();
        let latency = Family::<Labels, Histogram>::new_with_constructor(latency_histogram as fn() -> Histogram);
        let logins = Family::<Labels2, Counter>::default();
        let tokens = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        registry.register("http_requests", "HTTP requests by route and status class", requests.clone());
        registry.register("http_request_duration_seconds", "HTTP request latency by route", latency.clone());
        registry.register("logins", "Completed login attempts by connection and result", logins.clone());
        registry.register("tokens_issued", "Token responses by grant type", tokens.clone());
        registry.register("errors", "Errors by kind", errors.clone());
        Self { registry, requests, latency, logins, tokens, errors }
    }
}

impl Metrics {
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
    pub fn request(&self, route: &str, status: u16, seconds: f64) {
        let class = format!("{}xx", status / 100);
        self.requests.get_or_create(&[("route", route.to_owned()), ("status", class)]).inc();
        self.latency.get_or_create(&[("route", route.to_owned())]).observe(seconds);
    }
    pub fn login(&self, connection: &str, result: &'static str) {
        self.logins.get_or_create(&[("connection", connection.to_owned()), ("result", result.to_owned())]).inc();
    }
    pub fn token(&self, grant: &'static str) {
        self.tokens.get_or_create(&[("grant_type", grant.to_owned())]).inc();
    }
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&[("kind", kind.to_owned())]).inc();
    }
}

/// Install the global log subscriber (once per process; later calls are ignored).
pub fn init_logging(json: bool, filter: &str) {
    use tracing_subscriber::EnvFilter;
    let spec = std::env::var("GATEHOUSE_LOG").unwrap_or_else(|_| filter.to_owned());
    let filter = EnvFilter::try_new(crate::http::log_filter(&spec))
        .unwrap_or_else(|_| EnvFilter::new(crate::http::log_filter(filter)));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_writer(std::io::stderr);
    let _ = if json { builder.json().flatten_event(true).try_init() } else { builder.try_init() };
}
