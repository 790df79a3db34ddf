//! Prometheus series, registered in a registry the node passes in (never a
//! global), under the `l7` prefix.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, Ordering};

use foldhash::fast::FixedState;
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
    /// Identity of these families for the per-thread handle cache of
    /// [`Metrics::observe_request`] (clones share it: same families).
    id: u64,
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
        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let m = Metrics {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
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

/// A request's series handles, cached per thread.
struct Handles {
    labels: RequestLabels,
    requests: Counter,
    latency: Histogram,
}

/// Cached handles per thread at most (then the cache starts over).
const MAX_CACHED: usize = 4096;

thread_local! {
    /// (metrics id, hash of the label values) → the series' handles.
    static HANDLES: RefCell<HashMap<(u64, u64), Handles>> = RefCell::new(HashMap::new());
}

impl Metrics {
    /// Counts a finished request in `requests` and `request_duration_seconds`.
    ///
    /// The families' own lookup takes a lock and wants owned label strings
    /// (six allocations per request); the handles of a label set seen
    /// before on this thread are taken from a cache instead, checked
    /// against the label values (a hash collision falls back to the
    /// families). Counters and histograms share their state with the
    /// family, so what is counted here is what `/metrics` shows.
    pub fn observe_request(
        &self,
        listener: &str,
        route: &str,
        pool: &str,
        backend: &str,
        status: u16,
        seconds: f64,
    ) {
        let class = status_class_str(status);
        // foldhash: a fixed-seed fast hash (a collision only costs a miss).
        let hash = FixedState::with_seed(0).hash_one((listener, route, pool, backend, class));
        let key = (self.id, hash);
        let hit = HANDLES.with(|c| {
            let c = c.try_borrow().ok()?;
            let e = c.get(&key)?;
            let l = &e.labels;
            (l.listener == listener
                && l.route == route
                && l.pool == pool
                && l.backend == backend
                && l.status == class)
                .then(|| {
                    e.requests.inc();
                    e.latency.observe(seconds);
                })
        });
        if hit.is_some() {
            return;
        }
        let labels = RequestLabels {
            listener: listener.to_string(),
            route: route.to_string(),
            pool: pool.to_string(),
            backend: backend.to_string(),
            status: class.to_string(),
        };
        let requests = self.requests.get_or_create(&labels).clone();
        let latency = self
            .latency
            .get_or_create(&LatencyLabels {
                listener: listener.to_string(),
                pool: pool.to_string(),
            })
            .clone();
        requests.inc();
        latency.observe(seconds);
        HANDLES.with(|c| {
            if let Ok(mut c) = c.try_borrow_mut() {
                if c.len() >= MAX_CACHED {
                    c.clear();
                }
                // Only an empty slot: a colliding label set stays uncached.
                c.entry(key).or_insert(Handles {
                    labels,
                    requests,
                    latency,
                });
            }
        });
    }
}

/// `2xx` for 200..=299 and so on (HTTP status codes are 100 to 999).
fn status_class_str(status: u16) -> &'static str {
    const CLASSES: [&str; 10] = [
        "0xx", "1xx", "2xx", "3xx", "4xx", "5xx", "6xx", "7xx", "8xx", "9xx",
    ];
    CLASSES[usize::from(status / 100).min(9)]
}
