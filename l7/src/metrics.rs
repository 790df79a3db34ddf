//! Prometheus series, registered in a registry the node passes in (never a
//! global), under the `l7` prefix.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub listener: String,
    pub route: String,
    pub pool: String,
    pub backend: String,
    /// `2xx`, `4xx`, ...: bounded cardinality, unlike raw status codes.
    pub status: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LatencyLabels {
    pub listener: String,
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ListenerLabels {
    pub listener: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PoolLabels {
    pub pool: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct UpstreamErrorLabels {
    pub pool: String,
    pub backend: String,
    pub kind: String,
}

type HistogramFamily = Family<LatencyLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms .. ~32 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

#[derive(Debug, Clone)]
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub latency: HistogramFamily,
    pub active_connections: Family<ListenerLabels, Gauge>,
    pub retries: Family<PoolLabels, Counter>,
    pub upstream_errors: Family<UpstreamErrorLabels, Counter>,
    pub rate_limited: Family<ListenerLabels, Counter>,
    pub passive_events_dropped: Counter,
}

impl Metrics {
    pub fn new(registry: &mut Registry) -> Self {
        let m = Metrics {
            requests: Family::default(),
            latency: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            active_connections: Family::default(),
            retries: Family::default(),
            upstream_errors: Family::default(),
            rate_limited: Family::default(),
            passive_events_dropped: Counter::default(),
        };
        let r = registry.sub_registry_with_prefix("l7");
        r.register(
            "requests",
            "Requests by listener, route, pool, backend and status class",
            m.requests.clone(),
        );
        r.register(
            "request_duration_seconds",
            "Time from request received to response headers sent",
            m.latency.clone(),
        );
        r.register(
            "active_connections",
            "Open client connections",
            m.active_connections.clone(),
        );
        r.register("retries", "Requests resent to another backend", m.retries.clone());
        r.register(
            "upstream_errors",
            "Backend failures (connect, reset, timeout, 5xx)",
            m.upstream_errors.clone(),
        );
        r.register(
            "rate_limited",
            "Requests refused with 429",
            m.rate_limited.clone(),
        );
        r.register(
            "passive_health_dropped",
            "Passive-health events dropped because the consumer lagged",
            m.passive_events_dropped.clone(),
        );
        m
    }
}

pub fn status_class(status: u16) -> String {
    format!("{}xx", status / 100)
}
