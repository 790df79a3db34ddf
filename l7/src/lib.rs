//! `edge-l7`: the L7 proxy tier of an edge node (hyper + rustls).
//!
//! Owns TLS termination, the route table, upstream selection and persistence,
//! retries, WebSocket and gRPC forwarding.
//!
//! Must never depend on `bgp`, `l4`, `dns` or `labs`.
//!
//! Entry point: [`Proxy::new`] (config + metrics registry, binds nothing),
//! [`Proxy::serve`] per listener socket handed in by the node, and the
//! control-plane calls [`Proxy::set_backends`], [`Proxy::set_many`],
//! [`Proxy::set_certificates`], [`Proxy::set_routes`], and
//! [`Proxy::reconfigure`] for a whole new [`ProxyConfig`] (its changes, as
//! data and text, from [`reload::diff`]). Backend failures seen on the
//! request path come out as [`PassiveEvent`]s.
//!
//! Pure parts (no I/O, no clock reads): [`route`] (matching), [`balance`]
//! (selection algorithms), [`forward`] (forwarding headers), [`ratelimit`]
//! and [`upstream`] (snapshots) take `now` as an argument.

pub mod balance;
pub mod body;
pub mod client;
pub mod config;
pub mod error;
pub mod forward;
pub mod h1;
pub mod metrics;
pub mod proxy;
pub mod ratelimit;
pub mod reload;
pub mod route;
pub mod server;
pub mod tls;
pub mod upstream;

pub use config::{
    Backend, Balance, CertConfig, ClientCert, ForwardingConfig, HashKey, Limits, ListenerConfig, ListenerTls,
    PemSource, PoolConfig, ProxyConfig, RateLimitConfig, RetryConfig, StickyConfig, UpstreamProtocol,
    UpstreamTls,
};
pub use error::{ConfigError, ErrorSource, ProxyErrorKind};
pub use proxy::{PassiveEvent, PassiveKind};
pub use reload::{Change, ConfigDiff, ListenerChange, PoolChange, ProxyChange, Reconfigured, diff};
pub use route::{Action, HeaderEdits, Match, Pattern, RouteRule};
pub use server::{Proxy, ServeError};
pub use upstream::Upstreams;
