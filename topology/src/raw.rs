//! The loose input form of a topology file, exactly as serde reads it.
//!
//! Addresses, prefixes and durations stay strings here so that validation can
//! report every malformed one at once, each with its field path, instead of
//! stopping at the first like a typed deserializer would.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDeployment {
    /// A short name for the deployment (used in logs and lab names).
    pub name: Option<String>,
    #[serde(default)]
    pub sites: BTreeMap<String, RawSite>,
    #[serde(default)]
    pub vips: BTreeMap<String, RawVip>,
    #[serde(default)]
    pub pools: BTreeMap<String, RawPool>,
    #[serde(default)]
    pub services: BTreeMap<String, RawService>,
    pub dns: Option<RawDns>,
    pub bus: Option<RawBus>,
    pub bgp: Option<RawBgp>,
    pub l4: Option<RawL4Settings>,
    /// Proxy-wide L7 settings in the L7 tier's syntax (`limits`,
    /// `forwarding`, `rate_limit`, `drain_timeout_ms`).
    pub l7: Option<toml::Table>,
}

/// Settings of every node's L4 stage.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawL4Settings {
    /// Maglev table size, a prime (default 65537). Must be the same on every
    /// node so that they all place a flow on the same backend.
    pub table_size: Option<u32>,
    /// How long established flows of a removed or draining backend are kept
    /// (default `30s`).
    pub drain_timeout: Option<String>,
    /// Where the XDP program runs: `generic` (default: any device),
    /// `native` (driver mode) or `auto` (native when the driver has it).
    pub xdp_mode: Option<String>,
    /// New flows per source for the userspace dataplane (connection-flood
    /// protection); unlimited without it.
    pub source_limit: Option<RawSourceLimit>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSourceLimit {
    pub per_second: u32,
    /// Default: twice `per_second`.
    pub burst: Option<u32>,
}

/// How every node's BGP speaker behaves towards its routers.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBgp {
    /// Proposed hold time in seconds: 0 or 3..=65535 (default 9).
    pub hold_time: Option<u16>,
    /// Wait between connection attempts (default `1s`, backing off).
    pub connect_retry: Option<String>,
    /// How long a planned drain announces GRACEFUL_SHUTDOWN before it
    /// withdraws (default `5s`).
    pub drain: Option<String>,
    /// TCP port of the routers' BGP (default 179).
    pub port: Option<u16>,
    /// Close a session whose peer sends more prefixes than this (default 10000).
    pub max_prefixes: Option<u32>,
    /// RFC 4724 graceful restart, e.g. `{ restart_time = "120s" }`.
    pub graceful_restart: Option<RawGracefulRestart>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawGracefulRestart {
    /// How long the routers keep this node's routes while it restarts
    /// (default `120s`, at most `4095s`).
    pub restart_time: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSite {
    pub location: RawLocation,
    /// Subnets of the PoP LAN where the edge nodes meet their backends.
    #[serde(default)]
    pub lan: Vec<String>,
    #[serde(default)]
    pub routers: Vec<RawRouter>,
    #[serde(default)]
    pub nodes: Vec<RawNode>,
    /// Lab only: hosts that stand for users behind one of this site's routers.
    #[serde(default)]
    pub clients: Vec<RawClient>,
    /// Connection hand-off between the site's two nodes for the userspace
    /// L4 stage: a node forwards mid-connection TCP packets it has no state
    /// for to its peer on the LAN, so connections survive ECMP changes
    /// (drains, a node leaving). Needs exactly two nodes on the LAN.
    #[serde(default)]
    pub handoff: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLocation {
    pub lat: f64,
    pub lon: f64,
    /// ISO 3166-1 alpha-2 country code.
    pub country: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouter {
    pub name: String,
    pub kind: String,
    pub asn: u32,
    pub router_id: String,
    /// Interface addresses in CIDR form (`198.18.11.1/24`).
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Other routers (by name) this router has an eBGP/iBGP session with.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Prefixes the router originates itself (client and link subnets).
    #[serde(default)]
    pub networks: Vec<String>,
    /// Install several equal paths (ECMP) into the kernel; default true.
    pub multipath: Option<bool>,
    /// RFC 2385 TCP-MD5 password of the sessions with edge nodes.
    pub password: Option<String>,
    /// RFC 5082 GTSM on the sessions with edge nodes (directly connected).
    pub ttl_security: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub name: String,
    pub router_id: String,
    pub asn: u32,
    /// Interface addresses in CIDR form; every peer router must share one
    /// subnet with the node.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Routers (by name) the node's BGP speaker peers with.
    #[serde(default)]
    pub peers: Vec<String>,
    /// Local admin API (`ip:port`); default `127.0.0.1:9180`.
    pub admin: Option<String>,
    /// Health-bus gossip address (`ip:port`); default the node's first IPv4
    /// address with the bus port.
    pub gossip: Option<String>,
    /// Concurrent connections (L4 + L7) the node is sized for. With it the
    /// node's load (open connections / capacity) counts towards its site's
    /// load, which GSLB sheds above `dns.shed_load_above`.
    pub capacity: Option<u64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawClient {
    pub name: String,
    pub router: String,
    #[serde(default)]
    pub addresses: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawVip {
    /// Host prefixes (`203.0.113.10/32`, `2001:db8:ffff::10/128`) or wider.
    pub prefixes: Vec<String>,
    /// Sites whose nodes announce this VIP.
    pub sites: Vec<String>,
    /// Announce only while at least this many backends are healthy (default 1).
    pub min_healthy: Option<u32>,
    #[serde(default)]
    pub announce: RawAnnounce,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAnnounce {
    pub med: Option<u32>,
    #[serde(default)]
    pub prepend: u8,
    /// Standard communities `ASN:VALUE` (16-bit each).
    #[serde(default)]
    pub communities: Vec<String>,
    /// Large communities `GLOBAL:LOCAL1:LOCAL2` (32-bit each).
    #[serde(default)]
    pub large_communities: Vec<String>,
    /// LOCAL_PREF sent to iBGP peers.
    pub local_pref: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawPool {
    pub backends: Vec<RawBackend>,
    pub check: Option<RawCheck>,
    /// L7 settings of the pool in the L7 tier's syntax (`balance`, `sticky`,
    /// `retry`, `protocol`, `tls`, timeouts, `slow_start_ms`, ...).
    pub l7: Option<toml::Table>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub name: String,
    pub site: String,
    pub address: String,
    pub port: u16,
    pub weight: Option<u32>,
    #[serde(default)]
    pub backup: bool,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCheck {
    /// `tcp`, `http` or `https`.
    pub kind: String,
    pub path: Option<String>,
    pub host: Option<String>,
    /// Accepted HTTP status codes (default 200..=399).
    #[serde(default)]
    pub expect_status: Vec<u16>,
    /// A substring the body must contain.
    pub body: Option<String>,
    /// Port to check; default the backend's port.
    pub port: Option<u16>,
    /// HAProxy `inter` (default `2s`).
    pub interval: Option<String>,
    pub timeout: Option<String>,
    /// HAProxy `rise` (default 2) and `fall` (default 3).
    pub rise: Option<u32>,
    pub fall: Option<u32>,
    /// `up` (default) or `down`: what a backend is before its first check.
    pub init_state: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub vip: String,
    pub pool: String,
    #[serde(default)]
    pub l4: Vec<RawL4>,
    #[serde(default)]
    pub l7: Vec<RawL7>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawL4 {
    /// `tcp` or `udp`.
    pub protocol: String,
    pub port: u16,
    /// `maglev` (default), `rr`, `wrr`, `lc`, `wlc` or `sh`.
    pub algorithm: Option<String>,
    /// `userspace` (default), `xdp`, `nftables` or `ipvs`.
    pub dataplane: Option<String>,
    /// Port on the backends (default: each backend's own port).
    pub backend_port: Option<u16>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawL7 {
    pub port: u16,
    pub tls: Option<RawTls>,
    /// Route rules in the L7 tier's syntax (`edge-l7` `RouteRule`: `name`,
    /// `match`, `action`, header edits), evaluated in order; the service's
    /// pool serves whatever no rule takes. Checked by `edge validate`.
    #[serde(default)]
    pub routes: Vec<toml::Table>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub certs: Vec<RawCert>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCert {
    /// PEM chain; a path relative to the topology file's directory.
    pub cert: String,
    pub key: String,
    /// Server names (SNI) it is served for (`example.net`, `*.example.net`);
    /// the first certificate is also the default.
    #[serde(default)]
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    /// The VIP (by name) the DNS server answers on.
    pub vip: Option<String>,
    /// UDP/TCP port (default 53).
    pub port: Option<u16>,
    /// Path to a MaxMind DB (GeoIP2/GeoLite2 City or Country).
    pub geoip: Option<String>,
    #[serde(default)]
    pub zones: Vec<RawZone>,
    #[serde(default)]
    pub gslb: Vec<RawGslb>,
    /// Response rate limiting per client prefix.
    pub rrl: Option<RawRrl>,
    /// Sources (CIDR) allowed to transfer zones (AXFR, over TCP only).
    #[serde(default)]
    pub axfr_allow: Vec<String>,
    /// The `weight` filter skips sites whose load is above this (0..=1,
    /// default 0.9).
    pub shed_load_above: Option<f64>,
    /// RTTs within this of the best count as equal in the `latency` filter
    /// (default `5ms`).
    pub latency_tolerance: Option<String>,
    /// ISO country code → sites preferred for its clients, before distance.
    #[serde(default)]
    pub country_sites: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRrl {
    /// Responses per second per client prefix; 0 disables RRL (default 50).
    pub responses_per_second: Option<u32>,
    /// Bucket depth (default 100).
    pub burst: Option<u32>,
    /// Every n-th limited response goes out truncated (TC=1) so real
    /// clients retry over TCP; 0 never (default 2).
    pub slip: Option<u32>,
    /// Client prefix lengths (default /24 and /56).
    pub ipv4_prefix: Option<u8>,
    pub ipv6_prefix: Option<u8>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawZone {
    pub origin: String,
    pub ttl: Option<u32>,
    pub soa: RawSoa,
    pub ns: Vec<String>,
    #[serde(default)]
    pub records: Vec<RawRecord>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSoa {
    pub mname: String,
    pub rname: String,
    pub serial: Option<u32>,
    pub refresh: Option<u32>,
    pub retry: Option<u32>,
    pub expire: Option<u32>,
    pub minimum: Option<u32>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRecord {
    pub name: String,
    #[serde(rename = "type")]
    pub rtype: String,
    pub ttl: Option<u32>,
    pub value: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawGslb {
    /// Fully qualified name (`www.edge.example.`).
    pub name: String,
    /// Candidate VIPs; each names the site(s) that announce it.
    pub vips: Vec<String>,
    pub ttl: Option<u32>,
    /// How many answers to return (default 1).
    pub answers: Option<u32>,
    /// Filter chain, in order (default health, drain, geo, latency, weight).
    #[serde(default)]
    pub policy: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBus {
    /// Gossip UDP port (default 7946).
    pub port: Option<u16>,
    /// Nodes (by name) that every node contacts to join.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// Gossip round interval (default `100ms`).
    pub interval: Option<String>,
}
