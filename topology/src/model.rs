//! The validated model: every reference resolved, every address parsed.
//!
//! A value of [`Deployment`] is only ever built by [`crate::validate`], so code
//! that holds one can rely on the invariants listed on each type.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

/// A whole deployment: every site, node, VIP, service and pool.
#[derive(Debug, Clone, Serialize)]
pub struct Deployment {
    pub name: String,
    pub sites: BTreeMap<String, Site>,
    pub vips: BTreeMap<String, Vip>,
    pub pools: BTreeMap<String, Pool>,
    pub services: BTreeMap<String, Service>,
    pub dns: Option<Dns>,
    pub bus: Bus,
    pub bgp: Bgp,
    pub l4: L4Settings,
    /// Proxy-wide L7 settings in the L7 tier's syntax.
    pub l7: Option<toml::Table>,
}

/// L4 stage settings shared by every node.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct L4Settings {
    /// Maglev table size (prime).
    pub table_size: u32,
    pub drain_timeout: Duration,
    pub xdp_mode: XdpMode,
    /// New flows per source per second and burst (userspace dataplane).
    pub source_limit: Option<SourceLimit>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct SourceLimit {
    pub per_second: u32,
    pub burst: u32,
}

impl Default for L4Settings {
    fn default() -> Self {
        L4Settings {
            table_size: 65_537,
            drain_timeout: Duration::from_secs(30),
            xdp_mode: XdpMode::Generic,
            source_limit: None,
        }
    }
}

/// Where the XDP program is attached.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum XdpMode {
    Generic,
    Native,
    Auto,
}

/// BGP speaker settings shared by every node.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Bgp {
    pub hold_time: u16,
    pub connect_retry: Duration,
    pub drain: Duration,
    pub port: u16,
    pub max_prefixes: u32,
    /// RFC 4724 graceful restart: the routers keep the node's routes this
    /// long while it restarts (an upgrade); `None`: off.
    pub graceful_restart: Option<Duration>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Site {
    pub name: String,
    pub location: Location,
    pub lan: Vec<IpNet>,
    pub routers: Vec<Router>,
    pub nodes: Vec<Node>,
    pub clients: Vec<Client>,
    /// L4 connection hand-off between the site's two nodes.
    pub handoff: bool,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
    pub country: [u8; 2],
}

impl Location {
    pub fn country(&self) -> &str {
        std::str::from_utf8(&self.country).unwrap_or("??")
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    Frr,
    Bird,
    Gobgp,
    /// A router edge peers with but does not manage (production routers).
    External,
}

impl fmt::Display for RouterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RouterKind::Frr => "frr",
            RouterKind::Bird => "bird",
            RouterKind::Gobgp => "gobgp",
            RouterKind::External => "external",
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Router {
    pub name: String,
    pub site: String,
    pub kind: RouterKind,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    pub addresses: Vec<IpNet>,
    /// Other routers, by name; each shares a subnet with this one.
    pub peers: Vec<String>,
    pub networks: Vec<IpNet>,
    pub multipath: bool,
    /// TCP-MD5 password of the sessions with edge nodes.
    #[serde(skip_serializing)]
    pub password: Option<String>,
    /// GTSM on the sessions with edge nodes.
    pub ttl_security: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub name: String,
    pub site: String,
    pub router_id: Ipv4Addr,
    pub asn: u32,
    pub addresses: Vec<IpNet>,
    /// BGP peers resolved to the router's address on the shared subnet.
    pub peers: Vec<Peering>,
    pub admin: SocketAddr,
    pub gossip: SocketAddr,
    /// Concurrent connections the node is sized for (load = open / capacity).
    pub capacity: Option<u64>,
}

/// One BGP session between a node and a router, over a subnet they share.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Peering {
    pub router: String,
    pub router_asn: u32,
    /// The node's own address on the shared subnet (session source).
    pub local: IpAddr,
    /// The router's address on that subnet.
    pub remote: IpAddr,
}

#[derive(Debug, Clone, Serialize)]
pub struct Client {
    pub name: String,
    pub site: String,
    pub router: String,
    pub addresses: Vec<IpNet>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Vip {
    pub name: String,
    pub prefixes: Vec<IpNet>,
    pub sites: Vec<String>,
    pub min_healthy: u32,
    pub announce: AnnouncePolicy,
}

#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct AnnouncePolicy {
    pub med: Option<u32>,
    pub prepend: u8,
    pub communities: Vec<(u16, u16)>,
    pub large_communities: Vec<(u32, u32, u32)>,
    pub local_pref: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Pool {
    pub name: String,
    /// Never empty.
    pub backends: Vec<Backend>,
    pub check: Option<Check>,
    /// L7 pool settings in the L7 tier's syntax.
    pub l7: Option<toml::Table>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Backend {
    pub name: String,
    pub site: String,
    pub address: IpAddr,
    pub port: u16,
    pub weight: u32,
    pub backup: bool,
}

impl Backend {
    pub fn socket_addr(&self) -> SocketAddr {
        SocketAddr::new(self.address, self.port)
    }
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    Tcp,
    Http,
    Https,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Check {
    pub kind: CheckKind,
    pub path: String,
    pub host: Option<String>,
    pub expect_status: Vec<u16>,
    pub body: Option<String>,
    pub port: Option<u16>,
    pub interval: Duration,
    pub timeout: Duration,
    pub rise: u32,
    pub fall: u32,
    /// What a backend is before its first check result (see [`InitState`]).
    pub init_state: InitState,
}

/// A checked backend's state before its first check result.
///
/// With `Up` (the default, as HAProxy starts servers up) the L4 and L7 tiers
/// send to it at once, so a starting or upgraded node answers no 503 while
/// its first checks run; the node still announces a VIP only once every
/// backend it counts has a first result, because the announcement is what
/// brings traffic to the node. With `Down` the backend takes no traffic
/// until its first successful check.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum InitState {
    #[default]
    Up,
    Down,
}

#[derive(Debug, Clone, Serialize)]
pub struct Service {
    pub name: String,
    pub vip: String,
    pub pool: String,
    pub l4: Vec<L4Listener>,
    pub l7: Vec<L7Frontend>,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum L4Algorithm {
    Maglev,
    Rr,
    Wrr,
    Lc,
    Wlc,
    Sh,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneKind {
    Userspace,
    Xdp,
    Nftables,
    Ipvs,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct L4Listener {
    pub protocol: Protocol,
    pub port: u16,
    pub algorithm: L4Algorithm,
    pub dataplane: DataplaneKind,
    /// Port on the backends; `None` = each backend's own port.
    pub backend_port: Option<u16>,
}

#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct L7Frontend {
    pub port: u16,
    pub tls: Vec<CertPair>,
    /// Route rules in the L7 tier's syntax; every `action.pool` names a pool.
    pub routes: Vec<toml::Table>,
}

#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CertPair {
    pub cert: String,
    pub key: String,
    pub names: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Dns {
    pub vip: Option<String>,
    pub port: u16,
    pub geoip: Option<String>,
    pub zones: Vec<Zone>,
    pub gslb: Vec<Gslb>,
    pub rrl: Rrl,
    pub axfr_allow: Vec<IpNet>,
    pub shed_load_above: f64,
    pub latency_tolerance: Duration,
    /// Upper-case ISO country code → preferred sites.
    pub country_sites: BTreeMap<String, Vec<String>>,
}

/// DNS response rate limiting (RRL) per client prefix.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub struct Rrl {
    /// 0 disables it.
    pub responses_per_second: u32,
    pub burst: u32,
    pub slip: u32,
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
}

#[derive(Debug, Clone, Serialize)]
pub struct Zone {
    /// Lower case, fully qualified (ends with a dot).
    pub origin: String,
    pub ttl: u32,
    pub soa: Soa,
    pub ns: Vec<String>,
    pub records: Vec<Record>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Soa {
    pub mname: String,
    pub rname: String,
    pub serial: u32,
    pub refresh: u32,
    pub retry: u32,
    pub expire: u32,
    pub minimum: u32,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
pub enum RecordType {
    A,
    Aaaa,
    Cname,
    Txt,
    Mx,
    Srv,
    Caa,
    Ns,
}

#[derive(Debug, Clone, Serialize)]
pub struct Record {
    /// Fully qualified, lower case.
    pub name: String,
    pub rtype: RecordType,
    pub ttl: u32,
    pub value: String,
}

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum GslbFilter {
    Health,
    Drain,
    Geo,
    Latency,
    Weight,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gslb {
    pub name: String,
    pub vips: Vec<String>,
    pub ttl: u32,
    pub answers: u32,
    pub policy: Vec<GslbFilter>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Bus {
    pub port: u16,
    pub seeds: Vec<String>,
    pub interval: Duration,
}

impl Deployment {
    /// The node called `name`, with its site.
    pub fn node(&self, name: &str) -> Option<(&Site, &Node)> {
        self.sites
            .values()
            .find_map(|s| s.nodes.iter().find(|n| n.name == name).map(|n| (s, n)))
    }

    /// The router called `name`.
    pub fn router(&self, name: &str) -> Option<&Router> {
        self.sites
            .values()
            .find_map(|s| s.routers.iter().find(|r| r.name == name))
    }

    pub fn nodes(&self) -> impl Iterator<Item = &Node> {
        self.sites.values().flat_map(|s| s.nodes.iter())
    }

    pub fn routers(&self) -> impl Iterator<Item = &Router> {
        self.sites.values().flat_map(|s| s.routers.iter())
    }

    pub fn clients(&self) -> impl Iterator<Item = &Client> {
        self.sites.values().flat_map(|s| s.clients.iter())
    }

    /// The VIPs a node announces (those whose sites include the node's site).
    pub fn vips_of_site<'a>(&'a self, site: &'a str) -> impl Iterator<Item = &'a Vip> + 'a {
        self.vips
            .values()
            .filter(move |v| v.sites.iter().any(|s| s == site))
    }

    /// A one-screen summary for `edge validate`.
    pub fn summary(&self) -> String {
        use std::fmt::Write as _;
        let mut out = String::new();
        let nodes = self.nodes().count();
        let routers = self.routers().count();
        let backends: usize = self.pools.values().map(|p| p.backends.len()).sum();
        let _ = writeln!(
            out,
            "deployment {}: {} sites, {} routers, {} nodes, {} VIPs, {} services, {} pools ({} backends)",
            self.name,
            self.sites.len(),
            routers,
            nodes,
            self.vips.len(),
            self.services.len(),
            self.pools.len(),
            backends
        );
        for site in self.sites.values() {
            let _ = writeln!(
                out,
                "  site {} ({}, {:.2},{:.2})",
                site.name,
                site.location.country(),
                site.location.lat,
                site.location.lon
            );
            for r in &site.routers {
                let _ = writeln!(
                    out,
                    "    router {} {} AS{} id {}",
                    r.name, r.kind, r.asn, r.router_id
                );
            }
            for n in &site.nodes {
                let peers: Vec<String> = n
                    .peers
                    .iter()
                    .map(|p| format!("{}@{}", p.router, p.remote))
                    .collect();
                let _ = writeln!(
                    out,
                    "    node {} AS{} id {} peers [{}]",
                    n.name,
                    n.asn,
                    n.router_id,
                    peers.join(", ")
                );
            }
        }
        for v in self.vips.values() {
            let prefixes: Vec<String> = v.prefixes.iter().map(|p| p.to_string()).collect();
            let _ = writeln!(
                out,
                "  vip {} [{}] at [{}] min_healthy {}",
                v.name,
                prefixes.join(", "),
                v.sites.join(", "),
                v.min_healthy
            );
        }
        for p in self.pools.values() {
            let b: Vec<String> = p
                .backends
                .iter()
                .map(|b| format!("{}={}@{}", b.name, b.socket_addr(), b.site))
                .collect();
            let _ = writeln!(out, "  pool {} [{}]", p.name, b.join(", "));
        }
        if let Some(dns) = &self.dns {
            let _ = writeln!(
                out,
                "  dns: {} zones, {} gslb records",
                dns.zones.len(),
                dns.gslb.len()
            );
        }
        out
    }
}
