//! `LabSpec`: the data that describes a lab, and its validation.
//!
//! The spec is plain serde data so that `plan.rs` can derive it from the
//! deployment topology, `edge lab` can print or load it as JSON/TOML, and
//! `state.json` can embed it. All names are *local* (`r1`, not
//! `edge-smoke-r1`); the builder maps them to kernel names.
//!
//! `validate()` runs before anything touches the kernel, so a bad spec
//! never leaves half a lab behind.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::names::{validate_ifname, validate_lab_name, validate_local_name};

/// A whole lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LabSpec {
    /// `[a-z0-9]{1,16}`; namespaces become `edge-<name>-<ns>`.
    pub name: String,
    #[serde(default)]
    pub namespaces: Vec<NamespaceSpec>,
    #[serde(default)]
    pub links: Vec<LinkSpec>,
    #[serde(default)]
    pub bridges: Vec<BridgeSpec>,
    #[serde(default)]
    pub routes: Vec<RouteSpec>,
    #[serde(default)]
    pub routers: Vec<RouterSpec>,
    #[serde(default)]
    pub processes: Vec<ProcessSpec>,
    /// Extra sysctls per namespace, set right after it is created.
    #[serde(default)]
    pub sysctls: Vec<SysctlSpec>,
}

/// One sysctl in one namespace, e.g. `net.ipv4.conf.all.arp_ignore = 1`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SysctlSpec {
    pub namespace: String,
    pub key: String,
    pub value: String,
}

/// One network namespace. `lo` is always brought up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamespaceSpec {
    pub name: String,
    /// `net.ipv4.ip_forward` and `net.ipv6.conf.all.forwarding`.
    #[serde(default)]
    pub forwarding: bool,
    /// `fib_multipath_hash_policy=1` (L4 hash) for v4 and v6, so ECMP
    /// spreads flows by port and not only by address pair.
    #[serde(default)]
    pub multipath_hash_l4: bool,
    /// Addresses on `lo` (VIPs, router loopbacks), e.g. `203.0.113.10/32`.
    #[serde(default)]
    pub loopback: Vec<IpNet>,
}

/// One end of a veth pair or a bridge port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Endpoint {
    pub namespace: String,
    /// At most 15 bytes.
    pub ifname: String,
    /// Interface addresses with prefix length, v4 and/or v6
    /// (`198.18.1.1/24`, `2001:db8:1::1/64`).
    #[serde(default)]
    pub addresses: Vec<IpNet>,
}

/// A veth pair between two namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkSpec {
    pub a: Endpoint,
    pub b: Endpoint,
}

/// A Linux bridge inside a "switch" namespace. Each port is a veth whose
/// near end (`port.ifname`) sits in `port.namespace` and whose far end is
/// enslaved to the bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgeSpec {
    /// The namespace holding the bridge (must be declared in `namespaces`).
    pub namespace: String,
    /// The bridge interface name, e.g. `br0`.
    pub name: String,
    /// Addresses on the bridge interface itself (usually none).
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    #[serde(default)]
    pub ports: Vec<BridgePort>,
}

/// A namespace attached to a bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BridgePort {
    pub namespace: String,
    pub ifname: String,
    #[serde(default)]
    pub addresses: Vec<IpNet>,
    /// Name of the veth end enslaved to the bridge. Default:
    /// `<bridge>-p<index>` (e.g. `br0-p0`); must fit 15 bytes too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_ifname: Option<String>,
}

impl BridgePort {
    /// The name of the bridge-side veth end for port number `index`.
    pub fn bridge_side_name(&self, bridge: &str, index: usize) -> String {
        self.peer_ifname
            .clone()
            .unwrap_or_else(|| format!("{bridge}-p{index}"))
    }
}

/// A static route `destination via gateway` in a namespace. Default
/// routes are rejected: a lab namespace must never route "everything".
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSpec {
    pub namespace: String,
    pub destination: IpNet,
    pub gateway: IpAddr,
}

/// Which BGP daemon runs a router.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RouterKind {
    /// FRR bgpd, plus zebra when routes are installed in the kernel.
    Frr,
    /// BIRD 2.
    Bird,
    /// GoBGP. It has no kernel integration here, so it is RIB-only
    /// (a speaker / route source, never a forwarding router).
    Gobgp,
}

/// A BGP router (one per namespace: they all want TCP port 179).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    pub name: String,
    pub namespace: String,
    pub kind: RouterKind,
    pub asn: u32,
    pub router_id: Ipv4Addr,
    #[serde(default)]
    pub neighbors: Vec<NeighborSpec>,
    /// Prefixes this router announces itself (v4 and v6).
    #[serde(default)]
    pub originate: Vec<IpNet>,
    /// ECMP: up to 8 paths, and paths via different neighbour ASNs count
    /// as equal (FRR `as-path multipath-relax`).
    #[serde(default)]
    pub multipath: bool,
    #[serde(default)]
    pub timers: Timers,
    /// Install learned routes into the namespace's kernel table. Default:
    /// yes for FRR (zebra) and BIRD; GoBGP cannot, so `Some(true)` with
    /// GoBGP is rejected rather than silently ignored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub install_routes: Option<bool>,
}

impl RouterSpec {
    /// Whether the router programs the kernel FIB (see `install_routes`).
    pub fn installs_routes(&self) -> bool {
        self.install_routes
            .unwrap_or(!matches!(self.kind, RouterKind::Gobgp))
    }

    /// IPv4 neighbours (they get the IPv4 unicast family).
    pub fn neighbors_v4(&self) -> impl Iterator<Item = &NeighborSpec> {
        self.neighbors.iter().filter(|n| n.address.is_ipv4())
    }

    /// IPv6 neighbours (they get the IPv6 unicast family).
    pub fn neighbors_v6(&self) -> impl Iterator<Item = &NeighborSpec> {
        self.neighbors.iter().filter(|n| n.address.is_ipv6())
    }

    /// Originated IPv4 prefixes, normalised to their network.
    pub fn originate_v4(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.originate
            .iter()
            .filter(|p| matches!(p, IpNet::V4(_)))
            .map(|p| p.trunc())
    }

    /// Originated IPv6 prefixes, normalised to their network.
    pub fn originate_v6(&self) -> impl Iterator<Item = IpNet> + '_ {
        self.originate
            .iter()
            .filter(|p| matches!(p, IpNet::V6(_)))
            .map(|p| p.trunc())
    }
}

/// A BGP neighbour. The address family is that of `address`: an IPv4
/// neighbour carries IPv4 unicast, an IPv6 neighbour IPv6 unicast.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NeighborSpec {
    pub address: IpAddr,
    pub asn: u32,
    #[serde(default)]
    pub description: String,
    /// RFC 2385 TCP-MD5 password for this session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// RFC 5082 GTSM (directly connected peer).
    #[serde(default)]
    pub ttl_security: bool,
}

/// BGP timers in seconds. The defaults (1/3/1) make failures visible in
/// about 3 s instead of FRR's 180 s (LAB-FACTS §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timers {
    #[serde(default = "Timers::default_keepalive")]
    pub keepalive: u16,
    #[serde(default = "Timers::default_hold")]
    pub hold: u16,
    #[serde(default = "Timers::default_connect")]
    pub connect: u16,
}

impl Timers {
    fn default_keepalive() -> u16 {
        1
    }
    fn default_hold() -> u16 {
        3
    }
    fn default_connect() -> u16 {
        1
    }
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            keepalive: Self::default_keepalive(),
            hold: Self::default_hold(),
            connect: Self::default_connect(),
        }
    }
}

/// An extra process started in a namespace after the routers (edge nodes,
/// backends, traffic generators). It runs in the foreground; the lab keeps
/// its PID and stops it at teardown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessSpec {
    pub name: String,
    pub namespace: String,
    /// `argv[0]` is looked up on `PATH` (as `ip netns exec` does).
    pub argv: Vec<String>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// stdout+stderr go here; relative paths are under the workdir.
    /// Default: `logs/<name>.log`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log: Option<PathBuf>,
    /// Working directory; relative paths are under the workdir. Default:
    /// the workdir.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cwd: Option<PathBuf>,
}

/// Address space a lab may use (LAB-FACTS §0): links in 198.18.0.0/15,
/// VIPs in 203.0.113.0/24 and 198.51.100.0/24, IPv6 in 2001:db8::/32.
/// Everything else — notably the uplink's 192.0.2.0/24 and fd00::/64, and
/// RFC 1918 space — is refused.
pub const ALLOWED_RANGES: [&str; 4] = [
    "198.18.0.0/15",
    "203.0.113.0/24",
    "198.51.100.0/24",
    "2001:db8::/32",
];

fn allowed_ranges() -> Vec<IpNet> {
    ALLOWED_RANGES.iter().filter_map(|r| r.parse().ok()).collect()
}

/// Checks that a prefix (by its network, so `198.16.0.0/14` is refused
/// even though it contains 198.18/15) lies inside the lab address space.
pub fn check_net(what: &str, net: &IpNet) -> Result<()> {
    let n = net.trunc();
    if allowed_ranges().iter().any(|r| r.contains(&n)) {
        Ok(())
    } else {
        Err(LabError::Invalid(format!(
            "{what}: {net} is outside the lab address space ({})",
            ALLOWED_RANGES.join(", ")
        )))
    }
}

/// Same as [`check_net`] for a single address.
pub fn check_addr(what: &str, addr: IpAddr) -> Result<()> {
    if allowed_ranges().iter().any(|r| r.contains(&addr)) {
        Ok(())
    } else {
        Err(LabError::Invalid(format!(
            "{what}: {addr} is outside the lab address space ({})",
            ALLOWED_RANGES.join(", ")
        )))
    }
}

impl LabSpec {
    /// An empty spec with just a name.
    pub fn new(name: impl Into<String>) -> Self {
        LabSpec {
            name: name.into(),
            namespaces: Vec::new(),
            links: Vec::new(),
            bridges: Vec::new(),
            routes: Vec::new(),
            routers: Vec::new(),
            processes: Vec::new(),
            sysctls: Vec::new(),
        }
    }

    /// Checks names, references, uniqueness and the address rules.
    pub fn validate(&self) -> Result<()> {
        validate_lab_name(&self.name)?;

        let mut ns_names = BTreeSet::new();
        for ns in &self.namespaces {
            validate_local_name("namespace", &ns.name)?;
            if !ns_names.insert(ns.name.as_str()) {
                return Err(LabError::Invalid(format!(
                    "namespace {:?} declared twice",
                    ns.name
                )));
            }
            for a in &ns.loopback {
                check_net(&format!("loopback address in {}", ns.name), a)?;
            }
        }
        let known_ns = |what: &str, ns: &str| -> Result<()> {
            if ns_names.contains(ns) {
                Ok(())
            } else {
                Err(LabError::Invalid(format!(
                    "{what} refers to namespace {ns:?}, which is not declared in `namespaces`"
                )))
            }
        };

        // Interface names must be unique per namespace, across links,
        // bridge ports and bridges.
        let mut ifnames: BTreeSet<(String, String)> = BTreeSet::new();
        let mut claim = |ns: &str, ifname: &str| -> Result<()> {
            validate_ifname(ns, ifname)?;
            if ifnames.insert((ns.to_string(), ifname.to_string())) {
                Ok(())
            } else {
                Err(LabError::Invalid(format!(
                    "interface {ifname:?} is used twice in namespace {ns:?}"
                )))
            }
        };
        let check_endpoint_addrs = |e: &Endpoint| -> Result<()> {
            for a in &e.addresses {
                check_net(&format!("address of {}:{}", e.namespace, e.ifname), a)?;
            }
            Ok(())
        };

        for l in &self.links {
            for e in [&l.a, &l.b] {
                known_ns("link", &e.namespace)?;
                claim(&e.namespace, &e.ifname)?;
                check_endpoint_addrs(e)?;
            }
        }
        for b in &self.bridges {
            known_ns(&format!("bridge {}", b.name), &b.namespace)?;
            claim(&b.namespace, &b.name)?;
            for a in &b.addresses {
                check_net(&format!("address of bridge {}", b.name), a)?;
            }
            for (i, p) in b.ports.iter().enumerate() {
                known_ns(&format!("port {i} of bridge {}", b.name), &p.namespace)?;
                claim(&p.namespace, &p.ifname)?;
                claim(&b.namespace, &p.bridge_side_name(&b.name, i))?;
                for a in &p.addresses {
                    check_net(&format!("address of {}:{}", p.namespace, p.ifname), a)?;
                }
            }
        }

        for sc in &self.sysctls {
            known_ns(&format!("sysctl {}", sc.key), &sc.namespace)?;
            let key_ok = !sc.key.is_empty()
                && sc.key.starts_with("net.")
                && sc
                    .key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
            let value_ok = !sc.value.is_empty() && sc.value.chars().all(|c| c.is_ascii_alphanumeric());
            if !key_ok || !value_ok {
                return Err(LabError::Invalid(format!(
                    "sysctl {}={} in {}: only net.* keys with plain values are allowed (they are per namespace)",
                    sc.key, sc.value, sc.namespace
                )));
            }
        }

        for r in &self.routes {
            known_ns("route", &r.namespace)?;
            if r.destination.prefix_len() == 0 {
                return Err(LabError::Invalid(format!(
                    "route {} in {}: default routes are not allowed in a lab",
                    r.destination, r.namespace
                )));
            }
            check_net(&format!("route in {}", r.namespace), &r.destination)?;
            check_addr(
                &format!("gateway of {} in {}", r.destination, r.namespace),
                r.gateway,
            )?;
            if r.destination.addr().is_ipv4() != r.gateway.is_ipv4() {
                return Err(LabError::Invalid(format!(
                    "route {} via {} in {}: destination and gateway families differ",
                    r.destination, r.gateway, r.namespace
                )));
            }
        }

        let mut router_names = BTreeSet::new();
        let mut router_ns = BTreeSet::new();
        for r in &self.routers {
            validate_local_name("router", &r.name)?;
            if !router_names.insert(r.name.as_str()) {
                return Err(LabError::Invalid(format!("router {:?} declared twice", r.name)));
            }
            known_ns(&format!("router {}", r.name), &r.namespace)?;
            if !router_ns.insert(r.namespace.as_str()) {
                return Err(LabError::Invalid(format!(
                    "namespace {:?} has two routers; each BGP daemon needs port 179 to itself",
                    r.namespace
                )));
            }
            if r.asn == 0 {
                return Err(LabError::Invalid(format!("router {}: asn 0", r.name)));
            }
            check_addr(&format!("router-id of {}", r.name), IpAddr::V4(r.router_id))?;
            if r.kind == RouterKind::Gobgp && r.install_routes == Some(true) {
                return Err(LabError::Invalid(format!(
                    "router {}: GoBGP cannot install routes into the kernel here; \
                     use frr or bird, or drop install_routes",
                    r.name
                )));
            }
            let t = r.timers;
            if t.keepalive == 0 || t.connect == 0 || t.hold < 3 || t.hold < t.keepalive {
                return Err(LabError::Invalid(format!(
                    "router {}: timers keepalive {} hold {} connect {}: need keepalive >= 1, \
                     hold >= 3 and >= keepalive, connect >= 1",
                    r.name, t.keepalive, t.hold, t.connect
                )));
            }
            let mut seen = BTreeSet::new();
            for n in &r.neighbors {
                check_addr(&format!("neighbor of {}", r.name), n.address)?;
                if !seen.insert(n.address) {
                    return Err(LabError::Invalid(format!(
                        "router {}: neighbor {} listed twice",
                        r.name, n.address
                    )));
                }
                if n.asn == 0 {
                    return Err(LabError::Invalid(format!(
                        "router {}: neighbor {} has asn 0",
                        r.name, n.address
                    )));
                }
                if n.description.contains(['"', '\n', '\\']) {
                    return Err(LabError::Invalid(format!(
                        "router {}: description of neighbor {} contains a quote, backslash \
                         or newline",
                        r.name, n.address
                    )));
                }
            }
            for p in &r.originate {
                check_net(&format!("prefix originated by {}", r.name), p)?;
            }
        }

        let mut proc_names = BTreeSet::new();
        for p in &self.processes {
            validate_local_name("process", &p.name)?;
            if router_names.contains(p.name.as_str()) || !proc_names.insert(p.name.as_str()) {
                return Err(LabError::Invalid(format!(
                    "process name {:?} is not unique among routers and processes",
                    p.name
                )));
            }
            known_ns(&format!("process {}", p.name), &p.namespace)?;
            if p.argv.is_empty() || p.argv[0].is_empty() {
                return Err(LabError::Invalid(format!("process {}: argv is empty", p.name)));
            }
        }
        Ok(())
    }

    /// Local namespace names in declaration order.
    pub fn namespace_names(&self) -> impl Iterator<Item = &str> {
        self.namespaces.iter().map(|n| n.name.as_str())
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn net(s: &str) -> IpNet {
        s.parse().expect("test prefix")
    }

    /// Two namespaces, one veth, FRR peering with BIRD over v4 and v6.
    pub(crate) fn two_router_spec() -> LabSpec {
        let mut spec = LabSpec::new("unit");
        spec.namespaces = vec![
            NamespaceSpec {
                name: "r1".into(),
                forwarding: true,
                multipath_hash_l4: true,
                loopback: vec![],
            },
            NamespaceSpec {
                name: "r2".into(),
                forwarding: false,
                multipath_hash_l4: false,
                loopback: vec![net("203.0.113.10/32")],
            },
        ];
        spec.links = vec![LinkSpec {
            a: Endpoint {
                namespace: "r1".into(),
                ifname: "r1-r2".into(),
                addresses: vec![net("198.18.0.1/30"), net("2001:db8:0:1::1/64")],
            },
            b: Endpoint {
                namespace: "r2".into(),
                ifname: "r2-r1".into(),
                addresses: vec![net("198.18.0.2/30"), net("2001:db8:0:1::2/64")],
            },
        }];
        spec.routers = vec![RouterSpec {
            name: "r1".into(),
            namespace: "r1".into(),
            kind: RouterKind::Frr,
            asn: 65001,
            router_id: "198.18.0.1".parse().expect("ip"),
            neighbors: vec![
                NeighborSpec {
                    address: "198.18.0.2".parse().expect("ip"),
                    asn: 65002,
                    description: "r2 v4".into(),
                    password: None,
                    ttl_security: false,
                },
                NeighborSpec {
                    address: "2001:db8:0:1::2".parse().expect("ip"),
                    asn: 65002,
                    description: "r2 v6".into(),
                    password: None,
                    ttl_security: false,
                },
            ],
            originate: vec![net("198.51.100.0/24"), net("2001:db8:fffe::/48")],
            multipath: true,
            timers: Timers::default(),
            install_routes: None,
        }];
        spec
    }

    #[test]
    fn valid_spec_passes() {
        two_router_spec().validate().expect("valid");
    }

    #[test]
    fn spec_roundtrips_through_json_and_toml() {
        let spec = two_router_spec();
        let j = serde_json::to_string(&spec).expect("json");
        assert_eq!(serde_json::from_str::<LabSpec>(&j).expect("parse json"), spec);
        let t = toml::to_string(&spec).expect("toml");
        assert_eq!(toml::from_str::<LabSpec>(&t).expect("parse toml"), spec);
    }

    #[test]
    fn timers_default_when_omitted() {
        let t: Timers = serde_json::from_str("{}").expect("parse");
        assert_eq!((t.keepalive, t.hold, t.connect), (1, 3, 1));
        let err = serde_json::from_str::<LabSpec>(r#"{"name":"x","bogus":1}"#);
        assert!(err.is_err(), "unknown fields are rejected");
    }

    fn invalid(spec: &LabSpec, needle: &str) {
        let err = spec.validate().expect_err("must be invalid").to_string();
        assert!(err.contains(needle), "{err:?} should mention {needle:?}");
    }

    #[test]
    fn forbidden_addresses_are_refused() {
        for bad in [
            "192.0.2.5/24",
            "10.0.0.1/8",
            "172.16.0.1/24",
            "192.168.1.1/24",
            "fd00::2/64",
            "198.16.0.1/14",
        ] {
            let mut spec = two_router_spec();
            spec.links[0].a.addresses.push(net(bad));
            invalid(&spec, "outside the lab address space");
        }
        let mut spec = two_router_spec();
        spec.routers[0].neighbors[0].address = "192.0.2.1".parse().expect("ip");
        invalid(&spec, "neighbor of r1");
        let mut spec = two_router_spec();
        spec.routers[0].originate.push(net("10.0.0.0/8"));
        invalid(&spec, "prefix originated by r1");
        let mut spec = two_router_spec();
        spec.namespaces[1].loopback.push(net("fd00::10/128"));
        invalid(&spec, "loopback address in r2");
    }

    #[test]
    fn default_routes_are_refused() {
        let mut spec = two_router_spec();
        spec.routes.push(RouteSpec {
            namespace: "r2".into(),
            destination: net("0.0.0.0/0"),
            gateway: "198.18.0.1".parse().expect("ip"),
        });
        invalid(&spec, "default routes are not allowed");
        spec.routes[0].destination = net("2001:db8::/32");
        invalid(&spec, "families differ");
        spec.routes[0].destination = net("198.18.0.0/15");
        spec.validate().expect("valid route");
    }

    #[test]
    fn names_and_references_are_checked() {
        let mut spec = two_router_spec();
        spec.links[0].b.ifname = "a-very-long-ifname".into();
        invalid(&spec, "at most 15");

        let mut spec = two_router_spec();
        spec.links[0].b.namespace = "nowhere".into();
        invalid(&spec, "not declared");

        let mut spec = two_router_spec();
        spec.links[0].b.ifname = "r1-r2".into();
        spec.links[0].b.namespace = "r1".into();
        invalid(&spec, "used twice");

        let mut spec = two_router_spec();
        let mut second = spec.routers[0].clone();
        second.name = "r1b".into();
        spec.routers.push(second);
        invalid(&spec, "two routers");

        let mut spec = two_router_spec();
        spec.routers[0].kind = RouterKind::Gobgp;
        spec.routers[0].install_routes = Some(true);
        invalid(&spec, "GoBGP cannot install");

        let mut spec = two_router_spec();
        spec.name = "two-pop".into();
        invalid(&spec, "lab name");
    }

    #[test]
    fn bridge_side_names_are_validated() {
        let mut spec = two_router_spec();
        spec.namespaces.push(NamespaceSpec {
            name: "sw".into(),
            forwarding: false,
            multipath_hash_l4: false,
            loopback: vec![],
        });
        spec.bridges.push(BridgeSpec {
            namespace: "sw".into(),
            name: "backendlan-br".into(), // 13 bytes: "-p0" makes 16
            addresses: vec![],
            ports: vec![BridgePort {
                namespace: "r2".into(),
                ifname: "r2-lan".into(),
                addresses: vec![net("198.19.10.2/24")],
                peer_ifname: None,
            }],
        });
        invalid(&spec, "\"backendlan-br-p0\" in namespace \"sw\" is 16 bytes");
        spec.bridges[0].ports[0].peer_ifname = Some("sw-r2".into());
        spec.validate().expect("explicit peer name fits");
    }
}
