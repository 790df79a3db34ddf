//! `edge-dns`: the authoritative GSLB DNS server of an edge node.
//!
//! Owns the steering policies (pure functions over a [`DnsView`]), the static
//! zones and GSLB records built from the topology, ECS handling, response rate
//! limiting, metrics, and the server that runs on sockets it is given.
//!
//! ```text
//!   controller ──set_view(DnsView)──▶ ArcSwap<DnsView> ◀──load()── per query
//!   config reload ──reload(Deployment)─▶ ArcSwap<Served> ◀──load()── per query
//!                                         (Authority, RRL, options)    │
//!   UdpSocket/TcpListener ─▶ hickory Server ─▶ GslbHandler ─▶ Authority::answer
//!                                               (ECS, RRL,     ├─ zone::Zones (static)
//!                                                metrics)      └─ steer::Steering (GSLB)
//! ```
//!
//! [`DnsServer::reload`] builds a whole new [`Authority`] from a new
//! deployment and swaps it in, loaded once per query like the view (queries
//! in flight finish on the version they loaded); it returns the
//! [`DnsChanges`], and [`diff`] computes the same list from two deployments
//! without a server (a dry run).
//!
//! [`explain`](DnsServer::explain) runs the very same [`Authority::answer`]
//! code and GSLB filter chain the server runs (the server only skips
//! recording the trace), so the trace it prints is the answer a client gets.
//!
//! Must never depend on `bgp`, `l4`, `l7` or `labs`.

mod cache;
pub mod ecs;
mod fast;
pub mod geo;
pub mod metrics;
pub mod mmdb;
pub mod reload;
pub mod resolvers;
pub mod rrl;
pub mod server;
pub mod steer;
mod udp;
pub mod view;
pub mod zone;

pub use geo::{GeoDb, GeoHit, GeoLookup};
/// Re-exported so callers (`edge dns explain`) can name query types without
/// depending on hickory themselves.
pub use hickory_proto::rr::RecordType;
pub use metrics::DnsMetrics;
pub use reload::{DnsChange, DnsChanges, diff};
pub use rrl::RrlConfig;
pub use server::{Authority, DnsExplainer, DnsOptions, DnsServer, Outcome, ServedAuthority, ViewHandle};
pub use steer::{Decision, SteerOptions};
pub use view::{DnsView, SiteState};

/// Errors building or running the DNS server. Wire input never produces one of
/// these: malformed queries get FORMERR (or nothing) and a log line.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DnsError {
    /// The topology has no `[dns]` section.
    #[error("the deployment has no [dns] section")]
    NoDnsConfig,
    /// A zone or GSLB record of the topology cannot be turned into DNS data.
    #[error("{what}: {reason}")]
    Config { what: String, reason: String },
    /// The GeoIP database cannot be read.
    #[error("geoip database {source_name}: {reason}")]
    GeoIp { source_name: String, reason: String },
    /// The MaxMind DB writer was given bad input.
    #[error("mmdb: {0}")]
    Mmdb(String),
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
}
