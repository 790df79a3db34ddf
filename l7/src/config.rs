//! The L7 configuration: what a node's controller hands to [`crate::Proxy`].
//!
//! These types are richer than `edge-topology`'s `L7Frontend`/`L7Route`; the
//! topology schema is meant to grow towards them. Every type deserializes with
//! `deny_unknown_fields` and is checked by [`ProxyConfig::validate`] before
//! anything is built, so a typo in a config file is an error, not a silent
//! default.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::ConfigError;
use crate::route::RouteRule;

/// Everything one proxy instance serves.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ProxyConfig {
    pub listeners: Vec<ListenerConfig>,
    pub pools: Vec<PoolConfig>,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub forwarding: ForwardingConfig,
    #[serde(default)]
    pub rate_limit: Option<RateLimitConfig>,
    /// Drain time for in-flight requests after shutdown is signalled.
    #[serde(default = "default_drain_ms")]
    pub drain_timeout_ms: u64,
}

fn default_drain_ms() -> u64 {
    10_000
}

/// One frontend. The socket itself is bound by the node and passed to
/// [`crate::Proxy::serve`] under this name.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerConfig {
    pub name: String,
    /// TLS termination; `None` serves clear HTTP/1.1 and h2c (prior knowledge).
    #[serde(default)]
    pub tls: Option<ListenerTls>,
    /// Evaluated in order; the first rule whose matches all hold decides.
    pub routes: Vec<RouteRule>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// Several certificates, picked by SNI. The first one is the default for
    /// clients that send no (or an unknown) server name.
    pub certs: Vec<CertConfig>,
    #[serde(default = "default_handshake_ms")]
    pub handshake_timeout_ms: u64,
}

fn default_handshake_ms() -> u64 {
    10_000
}

/// A certificate chain and its key, with the names it is served for
/// (`example.net` or `*.example.net`).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CertConfig {
    pub server_names: Vec<String>,
    pub cert: PemSource,
    pub key: PemSource,
}

/// PEM data, inline or from a file (read when the proxy is built or when
/// certificates are swapped).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum PemSource {
    Path(PathBuf),
    Pem(String),
}

impl PemSource {
    pub fn load(&self) -> Result<Vec<u8>, ConfigError> {
        match self {
            PemSource::Pem(s) => Ok(s.as_bytes().to_vec()),
            PemSource::Path(p) => std::fs::read(p).map_err(|error| ConfigError::Io {
                path: p.display().to_string(),
                error,
            }),
        }
    }
}

/// A backend pool and how to talk to and choose among its members.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    pub name: String,
    #[serde(default)]
    pub balance: Balance,
    #[serde(default)]
    pub protocol: UpstreamProtocol,
    #[serde(default)]
    pub tls: Option<UpstreamTls>,
    #[serde(default = "default_connect_ms")]
    pub connect_timeout_ms: u64,
    /// Time from sending the request to receiving response headers.
    #[serde(default = "default_request_ms")]
    pub request_timeout_ms: u64,
    /// Idle keep-alive connections are closed after this long.
    #[serde(default = "default_idle_ms")]
    pub idle_timeout_ms: u64,
    #[serde(default = "default_max_idle")]
    pub max_idle_per_backend: usize,
    /// A backend that (re)joins gets its weight ramped up over this long; 0 disables.
    #[serde(default)]
    pub slow_start_ms: u64,
    #[serde(default)]
    pub sticky: Option<StickyConfig>,
    #[serde(default)]
    pub retry: RetryConfig,
    /// Idle timeout of an upgraded (WebSocket) tunnel.
    #[serde(default = "default_tunnel_idle_ms")]
    pub tunnel_idle_timeout_ms: u64,
    /// Initial members; the controller replaces them with
    /// [`crate::Proxy::set_backends`].
    #[serde(default)]
    pub backends: Vec<Backend>,
}

fn default_connect_ms() -> u64 {
    3_000
}
fn default_request_ms() -> u64 {
    30_000
}
fn default_idle_ms() -> u64 {
    60_000
}
/// Idle keep-alive connections kept per backend. Large on purpose: with a
/// small cache a busy pool closes and reopens origin connections at every
/// burst (measured: 64 concurrent clients over two backends with 32 here
/// made ~18,000 new upstream connections in 3 s; HAProxy keeps every idle
/// connection by default).
fn default_max_idle() -> usize {
    1024
}
fn default_tunnel_idle_ms() -> u64 {
    300_000
}

impl PoolConfig {
    /// A pool with defaults for everything but the name and members.
    pub fn new(name: impl Into<String>, backends: Vec<Backend>) -> Self {
        PoolConfig {
            name: name.into(),
            balance: Balance::default(),
            protocol: UpstreamProtocol::default(),
            tls: None,
            connect_timeout_ms: default_connect_ms(),
            request_timeout_ms: default_request_ms(),
            idle_timeout_ms: default_idle_ms(),
            max_idle_per_backend: default_max_idle(),
            slow_start_ms: 0,
            sticky: None,
            retry: RetryConfig::default(),
            tunnel_idle_timeout_ms: default_tunnel_idle_ms(),
            backends,
        }
    }
}

/// One pool member as pushed by the controller. `healthy = false` (ejected by
/// active checks or outlier detection) keeps it out of the pool's view.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Backend {
    pub name: String,
    pub address: SocketAddr,
    #[serde(default = "default_weight")]
    pub weight: u32,
    #[serde(default)]
    pub backup: bool,
    #[serde(default = "default_true")]
    pub healthy: bool,
}

fn default_weight() -> u32 {
    1
}
fn default_true() -> bool {
    true
}

impl Backend {
    pub fn new(name: impl Into<String>, address: SocketAddr) -> Self {
        Backend {
            name: name.into(),
            address,
            weight: 1,
            backup: false,
            healthy: true,
        }
    }
    pub fn weight(mut self, weight: u32) -> Self {
        self.weight = weight;
        self
    }
    pub fn backup(mut self) -> Self {
        self.backup = true;
        self
    }
    pub fn healthy(mut self, healthy: bool) -> Self {
        self.healthy = healthy;
        self
    }
}

/// Load-balancing algorithm of a pool.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", tag = "algorithm", deny_unknown_fields)]
pub enum Balance {
    RoundRobin,
    /// nginx's smooth weighted round robin.
    #[default]
    WeightedRoundRobin,
    /// Fewest in-flight requests relative to weight.
    LeastConnections,
    /// Two random candidates, the less loaded wins.
    PowerOfTwoChoices,
    /// Peak-EWMA response time times in-flight requests (Finagle/linkerd).
    PeakEwma,
    Random,
    /// Maglev consistent hashing on a request attribute.
    ConsistentHash {
        key: HashKey,
    },
    /// Maglev consistent hashing on the client address.
    SourceIpHash,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum HashKey {
    /// Path and query.
    Uri,
    Header(String),
    Cookie(String),
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum UpstreamProtocol {
    #[default]
    Http1,
    /// HTTP/2 with prior knowledge (or ALPN `h2` over TLS): gRPC backends.
    Http2,
}

/// TLS towards the backends.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct UpstreamTls {
    /// Trust anchors the backend certificates are verified against.
    pub ca: PemSource,
    /// Name checked in the backend certificate and sent as SNI (backends are
    /// addressed by IP, so it must be configured).
    pub server_name: String,
    /// Client certificate for mTLS.
    #[serde(default)]
    pub client_cert: Option<ClientCert>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ClientCert {
    pub cert: PemSource,
    pub key: PemSource,
}

/// Cookie-insert persistence.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct StickyConfig {
    #[serde(default = "default_cookie")]
    pub cookie: String,
    /// Secret the opaque cookie value is derived from. Nodes of one anycast
    /// service must share it so that a client keeps its backend when its
    /// packets land on another node; `None` picks a random per-process key.
    #[serde(default)]
    pub secret: Option<String>,
}

fn default_cookie() -> String {
    "EDGE_SRV".to_string()
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RetryConfig {
    /// Extra attempts after the first one (0 disables retries).
    #[serde(default = "default_attempts")]
    pub attempts: u32,
    /// Retries allowed per original request on average (Finagle retry budget).
    #[serde(default = "default_ratio")]
    pub budget_ratio: f64,
    /// Retries always allowed on top of the ratio (a floor for low traffic).
    #[serde(default = "default_min_retries")]
    pub budget_min: u32,
    /// Request bodies up to this size are buffered so they can be replayed.
    #[serde(default = "default_retry_buffer")]
    pub buffer_bytes: usize,
}

fn default_attempts() -> u32 {
    2
}
fn default_ratio() -> f64 {
    0.2
}
fn default_min_retries() -> u32 {
    10
}
fn default_retry_buffer() -> usize {
    64 * 1024
}

impl Default for RetryConfig {
    fn default() -> Self {
        RetryConfig {
            attempts: default_attempts(),
            budget_ratio: default_ratio(),
            budget_min: default_min_retries(),
            buffer_bytes: default_retry_buffer(),
        }
    }
}

/// Limits protecting the proxy from clients.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// HTTP/1 header block (request line + headers) and HTTP/2 header list size.
    /// hyper needs at least 8192 for HTTP/1.
    #[serde(default = "default_header_bytes")]
    pub max_header_bytes: usize,
    #[serde(default = "default_streams")]
    pub max_concurrent_streams: u32,
    /// Request bodies above this get 413.
    #[serde(default = "default_body_bytes")]
    pub max_body_bytes: u64,
    /// A client must send its complete request head within this time. It
    /// also bounds the silence between requests on a keep-alive connection.
    #[serde(default = "default_header_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// Open client connections per listener; at the limit the listener stops
    /// accepting (new clients wait in the kernel backlog). `None`: no limit.
    #[serde(default)]
    pub max_connections: Option<usize>,
}

fn default_header_bytes() -> usize {
    64 * 1024
}
fn default_streams() -> u32 {
    128
}
fn default_body_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_header_timeout_ms() -> u64 {
    10_000
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: default_header_bytes(),
            max_concurrent_streams: default_streams(),
            max_body_bytes: default_body_bytes(),
            header_read_timeout_ms: default_header_timeout_ms(),
            max_connections: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ForwardingConfig {
    /// Clients in these networks are proxies whose X-Forwarded-For/Forwarded
    /// we extend; everyone else's are replaced (they could be forged).
    #[serde(default)]
    pub trusted_proxies: Vec<IpNet>,
    #[serde(default = "default_request_id")]
    pub request_id_header: String,
    /// Also emit the RFC 7239 `Forwarded` header.
    #[serde(default = "default_true")]
    pub forwarded: bool,
}

fn default_request_id() -> String {
    "x-request-id".to_string()
}

impl Default for ForwardingConfig {
    fn default() -> Self {
        ForwardingConfig {
            trusted_proxies: Vec::new(),
            request_id_header: default_request_id(),
            forwarded: true,
        }
    }
}

/// Per-client-address token bucket.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitConfig {
    pub requests_per_second: f64,
    pub burst: u32,
    /// Bound on tracked client addresses (memory cap under address churn).
    #[serde(default = "default_max_clients")]
    pub max_clients: usize,
}

fn default_max_clients() -> usize {
    100_000
}

impl ProxyConfig {
    /// Checks everything that can be checked without I/O: unique names,
    /// routes pointing at existing pools, limits hyper would panic on.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut pools = HashSet::new();
        for p in &self.pools {
            if !pools.insert(p.name.as_str()) {
                return Err(ConfigError::Duplicate {
                    what: "pool",
                    name: p.name.clone(),
                });
            }
            if !(0.0..=10.0).contains(&p.retry.budget_ratio) {
                return Err(invalid(
                    format!("pools.{}.retry.budget_ratio", p.name),
                    "must be within 0..=10",
                ));
            }
            if let Some(s) = &p.sticky {
                http::HeaderName::from_bytes(s.cookie.as_bytes())
                    .map_err(|_| ConfigError::Header(s.cookie.clone()))?;
                if s.cookie.is_empty() || s.cookie.contains(['=', ';', ',', ' ']) {
                    return Err(invalid(
                        format!("pools.{}.sticky.cookie", p.name),
                        "not a cookie name",
                    ));
                }
            }
            for f in [
                ("connect_timeout_ms", p.connect_timeout_ms),
                ("request_timeout_ms", p.request_timeout_ms),
                ("tunnel_idle_timeout_ms", p.tunnel_idle_timeout_ms),
            ] {
                if f.1 == 0 {
                    return Err(invalid(format!("pools.{}.{}", p.name, f.0), "must be > 0"));
                }
            }
        }
        let mut listeners = HashSet::new();
        for l in &self.listeners {
            if !listeners.insert(l.name.as_str()) {
                return Err(ConfigError::Duplicate {
                    what: "listener",
                    name: l.name.clone(),
                });
            }
            if let Some(tls) = &l.tls
                && tls.certs.is_empty()
            {
                return Err(invalid(format!("listeners.{}.tls.certs", l.name), "empty"));
            }
            for (i, r) in l.routes.iter().enumerate() {
                r.validate()?;
                if let Some(pool) = r.action.pool()
                    && !pools.contains(pool)
                {
                    return Err(ConfigError::UnknownPool {
                        listener: l.name.clone(),
                        route: r.name.clone().unwrap_or_else(|| i.to_string()),
                        pool: pool.to_string(),
                    });
                }
            }
        }
        // hyper asserts on smaller HTTP/1 buffers; refuse instead of panicking.
        if self.limits.max_header_bytes < 8192 {
            return Err(invalid("limits.max_header_bytes", "must be >= 8192"));
        }
        if self.limits.max_concurrent_streams == 0 {
            return Err(invalid("limits.max_concurrent_streams", "must be > 0"));
        }
        if self.limits.max_connections == Some(0) {
            return Err(invalid("limits.max_connections", "must be > 0"));
        }
        if self.limits.header_read_timeout_ms == 0 {
            return Err(invalid("limits.header_read_timeout_ms", "must be > 0"));
        }
        http::HeaderName::from_bytes(self.forwarding.request_id_header.as_bytes())
            .map_err(|_| ConfigError::Header(self.forwarding.request_id_header.clone()))?;
        if let Some(rl) = &self.rate_limit
            && (!rl.requests_per_second.is_finite()
                || rl.requests_per_second <= 0.0
                || rl.burst == 0
                || rl.max_clients == 0)
        {
            return Err(invalid(
                "rate_limit",
                "requests_per_second, burst and max_clients must be > 0",
            ));
        }
        Ok(())
    }
}

fn invalid(field: impl Into<String>, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        field: field.into(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::{Action, RouteRule};

    const EXAMPLE: &str = include_str!("../examples/l7.toml");

    #[test]
    fn example_config_parses_and_validates() {
        let cfg: ProxyConfig = toml::from_str(EXAMPLE).unwrap();
        cfg.validate().unwrap();
        assert_eq!(cfg.listeners.len(), 2);
        let api = cfg.pools.iter().find(|p| p.name == "api").unwrap();
        assert_eq!(api.balance, Balance::PeakEwma);
        assert!(api.backends[2].backup);
        let stat = cfg.pools.iter().find(|p| p.name == "static").unwrap();
        assert_eq!(stat.balance, Balance::ConsistentHash { key: HashKey::Uri });
        let grpc = cfg.pools.iter().find(|p| p.name == "grpc").unwrap();
        assert_eq!(grpc.protocol, UpstreamProtocol::Http2);
        let def = cfg.pools.iter().find(|p| p.name == "default").unwrap();
        assert!(!def.backends[1].healthy);
        assert!(cfg.listeners[1].tls.as_ref().unwrap().certs.len() == 2);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let bad = EXAMPLE.replace("drain_timeout_ms", "drain_timeout");
        assert!(toml::from_str::<ProxyConfig>(&bad).is_err());
        let bad = EXAMPLE.replace("slow_start_ms", "slowstart_ms");
        assert!(toml::from_str::<ProxyConfig>(&bad).is_err());
        let bad = EXAMPLE.replace("algorithm = \"peak_ewma\"", "algorithm = \"fastest\"");
        assert!(toml::from_str::<ProxyConfig>(&bad).is_err());
        let bad = EXAMPLE.replace("^/v1/(users|orders)$", "^/v1/(users");
        assert!(
            toml::from_str::<ProxyConfig>(&bad).is_err(),
            "bad regex must fail at parse"
        );
    }

    fn minimal() -> ProxyConfig {
        ProxyConfig {
            listeners: vec![ListenerConfig {
                name: "l".into(),
                tls: None,
                routes: vec![RouteRule::new("r", vec![], Action::Pool("p".into()))],
            }],
            pools: vec![PoolConfig::new("p", vec![])],
            limits: Limits::default(),
            forwarding: ForwardingConfig::default(),
            rate_limit: None,
            drain_timeout_ms: 1000,
        }
    }

    #[test]
    fn validation_catches_what_serde_cannot() {
        minimal().validate().unwrap();
        let mut c = minimal();
        c.pools.push(PoolConfig::new("p", vec![]));
        assert!(matches!(c.validate(), Err(ConfigError::Duplicate { .. })));
        let mut c = minimal();
        c.listeners[0].routes[0].action = Action::Pool("missing".into());
        assert!(matches!(c.validate(), Err(ConfigError::UnknownPool { .. })));
        let mut c = minimal();
        c.limits.max_header_bytes = 4096;
        assert!(c.validate().is_err(), "hyper would panic below 8192");
        let mut c = minimal();
        c.pools[0].sticky = Some(StickyConfig {
            cookie: "bad name".into(),
            secret: None,
        });
        assert!(c.validate().is_err());
        let mut c = minimal();
        c.rate_limit = Some(RateLimitConfig {
            requests_per_second: f64::NAN,
            burst: 1,
            max_clients: 1,
        });
        assert!(c.validate().is_err());
        let mut c = minimal();
        c.listeners[0].tls = Some(ListenerTls {
            certs: vec![],
            handshake_timeout_ms: 1,
        });
        assert!(c.validate().is_err());
    }
}
