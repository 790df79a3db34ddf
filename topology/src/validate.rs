//! Turns a [`RawDeployment`] into a validated [`Deployment`].
//!
//! Validation never stops at the first problem: it walks the whole file and
//! collects every error with the field path it belongs to, so an operator
//! fixes a broken file in one pass (as `haproxy -c` and `named-checkconf` do).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use crate::model::*;
use crate::raw::*;
use crate::{FieldError, TopologyError};

/// Default admin API address of a node (inside its own network namespace).
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9180";
pub const DEFAULT_BUS_PORT: u16 = 7946;
/// Longest site, node, router, client, backend, VIP, pool or service name.
pub const MAX_NAME: usize = 12;

#[derive(Default)]
struct Errs(Vec<FieldError>);

impl Errs {
    fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            reason: reason.into(),
        });
    }
}

pub fn validate(raw: &RawDeployment) -> Result<Deployment, TopologyError> {
    let mut e = Errs::default();
    let mut v = Validator { e: &mut e, raw };
    let dep = v.run();
    if e.0.is_empty() {
        Ok(dep)
    } else {
        Err(TopologyError::Invalid(e.0))
    }
}

struct Validator<'a> {
    e: &'a mut Errs,
    raw: &'a RawDeployment,
}

fn valid_name(name: &str) -> Result<(), String> {
    // Names become network-namespace and interface-name parts in labs (an
    // interface name is at most 15 bytes, and the lab prefixes peer names
    // with two characters) and are typed on command lines, so keep them
    // short and shell-safe.
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(format!("name {name:?} must be 1 to {MAX_NAME} characters"));
    }
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase());
    if !first_ok
        || !name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
    {
        return Err(format!(
            "name {name:?} must start with a lower-case letter and hold only a-z, 0-9 and '-'"
        ));
    }
    Ok(())
}

fn valid_asn(asn: u32) -> Result<(), String> {
    match asn {
        0 => Err("ASN 0 is reserved (RFC 7607)".into()),
        23456 => Err("ASN 23456 is AS_TRANS (RFC 6793) and cannot be used".into()),
        65535 | 4_294_967_295 => Err(format!("ASN {asn} is reserved (RFC 7300)")),
        _ => Ok(()),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?} is not a duration like 200ms or 2s: {e}"))
}

fn parse_community(s: &str) -> Result<(u16, u16), String> {
    let mut it = s.split(':');
    match (it.next(), it.next(), it.next()) {
        (Some(a), Some(b), None) => match (a.parse::<u16>(), b.parse::<u16>()) {
            (Ok(a), Ok(b)) => Ok((a, b)),
            _ => Err(format!("community {s:?}: both halves must be 0..=65535")),
        },
        _ => Err(format!("community {s:?} must be ASN:VALUE")),
    }
}

fn parse_large_community(s: &str) -> Result<(u32, u32, u32), String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 3 {
        return Err(format!("large community {s:?} must be GLOBAL:LOCAL1:LOCAL2"));
    }
    let mut vals = [0u32; 3];
    for (slot, p) in vals.iter_mut().zip(&parts) {
        *slot = p
            .parse()
            .map_err(|_| format!("large community {s:?}: each part must be a 32-bit number"))?;
    }
    Ok((vals[0], vals[1], vals[2]))
}

fn fqdn(s: &str) -> String {
    let l = s.to_ascii_lowercase();
    if l.ends_with('.') { l } else { format!("{l}.") }
}

fn valid_dns_name(s: &str) -> bool {
    let s = s.strip_suffix('.').unwrap_or(s);
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '*')
        })
}

/// Whether `a` and `b` sit on one subnet (as seen from `a`'s prefix length).
fn shares_subnet(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.addr()) && b.contains(&a.addr()) && a.addr() != b.addr()
}

impl Validator<'_> {
    fn addrs(&mut self, path: &str, list: &[String]) -> Vec<IpNet> {
        let mut out = Vec::new();
        for (i, s) in list.iter().enumerate() {
            match IpNet::from_str(s) {
                Ok(n) => out.push(n),
                Err(_) => self.e.push(
                    format!("{path}[{i}]"),
                    format!("{s:?} is not an address in CIDR form like 198.18.1.1/24"),
                ),
            }
        }
        out
    }

    fn prefixes(&mut self, path: &str, list: &[String]) -> Vec<IpNet> {
        let mut out = Vec::new();
        for (i, s) in list.iter().enumerate() {
            match IpNet::from_str(s) {
                Ok(n) if n.trunc() != n => self.e.push(
                    format!("{path}[{i}]"),
                    format!("{s:?} has host bits set (did you mean {}?)", n.trunc()),
                ),
                Ok(n) => out.push(n),
                Err(_) => self.e.push(
                    format!("{path}[{i}]"),
                    format!("{s:?} is not a prefix like 203.0.113.10/32"),
                ),
            }
        }
        out
    }

    fn name(&mut self, path: String, name: &str) {
        if let Err(r) = valid_name(name) {
            self.e.push(path, r);
        }
    }

    fn run(&mut self) -> Deployment {
        let raw = self.raw;
        let name = raw.name.clone().unwrap_or_else(|| "edge".to_string());
        if let Err(r) = valid_name(&name) {
            self.e.push("name", r);
        }
        if raw.sites.is_empty() {
            self.e.push("sites", "a deployment needs at least one site");
        }

        // Global name spaces: every node, router and client name is unique,
        // because `edge lab` and the admin verbs address them by name alone.
        let mut host_names: BTreeMap<String, String> = BTreeMap::new();
        let mut router_ids: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
        let mut sites = BTreeMap::new();

        let bus_port = raw.bus.as_ref().and_then(|b| b.port).unwrap_or(DEFAULT_BUS_PORT);
        if bus_port == 0 {
            self.e.push("bus.port", "port 0 is not a usable port");
        }

        for (sname, rs) in &raw.sites {
            let sp = format!("sites.{sname}");
            self.name(sp.clone(), sname);
            let location = self.location(&sp, &rs.location);
            let lan = self.prefixes(&format!("{sp}.lan"), &rs.lan);
            let mut routers = Vec::new();
            for (i, r) in rs.routers.iter().enumerate() {
                let p = format!("{sp}.routers[{i}]");
                self.host_name(&mut host_names, &p, &r.name);
                let kind = match r.kind.as_str() {
                    "frr" => RouterKind::Frr,
                    "bird" => RouterKind::Bird,
                    "gobgp" => RouterKind::Gobgp,
                    "external" => RouterKind::External,
                    other => {
                        self.e.push(
                            format!("{p}.kind"),
                            format!("unknown router kind {other:?} (expected frr, bird, gobgp or external)"),
                        );
                        RouterKind::External
                    }
                };
                if let Err(r) = valid_asn(r.asn) {
                    self.e.push(format!("{p}.asn"), r);
                }
                let router_id = self.router_id(&mut router_ids, &p, &r.router_id);
                let addresses = self.addrs(&format!("{p}.addresses"), &r.addresses);
                let networks = self.prefixes(&format!("{p}.networks"), &r.networks);
                if let Some(pw) = &r.password {
                    // Router configs quote it and the kernel caps the key at 80.
                    if pw.is_empty()
                        || pw.len() > 80
                        || !pw.chars().all(|c| c.is_ascii_graphic() && c != '"' && c != '\\')
                    {
                        self.e.push(
                            format!("{p}.password"),
                            "must be 1 to 80 printable ASCII characters without quotes, backslashes or spaces",
                        );
                    }
                }
                routers.push(Router {
                    name: r.name.clone(),
                    site: sname.clone(),
                    kind,
                    asn: r.asn,
                    router_id,
                    addresses,
                    peers: r.peers.clone(),
                    networks,
                    multipath: r.multipath.unwrap_or(true),
                    password: r.password.clone(),
                    ttl_security: r.ttl_security.unwrap_or(false),
                });
            }
            let mut nodes = Vec::new();
            for (i, n) in rs.nodes.iter().enumerate() {
                let p = format!("{sp}.nodes[{i}]");
                if n.capacity == Some(0) {
                    self.e
                        .push(format!("{p}.capacity"), "must be at least 1 connection");
                }
                self.host_name(&mut host_names, &p, &n.name);
                if let Err(r) = valid_asn(n.asn) {
                    self.e.push(format!("{p}.asn"), r);
                }
                let router_id = self.router_id(&mut router_ids, &p, &n.router_id);
                let addresses = self.addrs(&format!("{p}.addresses"), &n.addresses);
                if !lan.is_empty()
                    && !addresses
                        .iter()
                        .any(|a| lan.iter().any(|l| l.contains(&a.addr())))
                {
                    self.e.push(
                        format!("{p}.addresses"),
                        format!("node has no address on site {sname}'s LAN, so it cannot reach its backends"),
                    );
                }
                let admin = match n.admin.as_deref().unwrap_or(DEFAULT_ADMIN).parse::<SocketAddr>() {
                    Ok(a) => a,
                    Err(_) => {
                        self.e.push(format!("{p}.admin"), "not an ip:port address");
                        SocketAddr::from(([127, 0, 0, 1], 9180))
                    }
                };
                let gossip = match &n.gossip {
                    Some(g) => match g.parse::<SocketAddr>() {
                        Ok(a) => {
                            if !a.ip().is_loopback()
                                && !a.ip().is_unspecified()
                                && !addresses.iter().any(|n| n.addr() == a.ip())
                            {
                                self.e.push(
                                    format!("{p}.gossip"),
                                    format!("{} is not one of the node's addresses", a.ip()),
                                );
                            }
                            a
                        }
                        Err(_) => {
                            self.e.push(format!("{p}.gossip"), "not an ip:port address");
                            SocketAddr::from(([127, 0, 0, 1], bus_port))
                        }
                    },
                    None => {
                        let ip = addresses
                            .iter()
                            .map(|a| a.addr())
                            .find(IpAddr::is_ipv4)
                            .or_else(|| addresses.first().map(|a| a.addr()))
                            .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
                        SocketAddr::new(ip, bus_port)
                    }
                };
                nodes.push(Node {
                    name: n.name.clone(),
                    site: sname.clone(),
                    router_id,
                    asn: n.asn,
                    addresses,
                    peers: Vec::new(),
                    admin,
                    gossip,
                    capacity: n.capacity,
                });
            }
            let mut clients = Vec::new();
            for (i, c) in rs.clients.iter().enumerate() {
                let p = format!("{sp}.clients[{i}]");
                self.host_name(&mut host_names, &p, &c.name);
                let addresses = self.addrs(&format!("{p}.addresses"), &c.addresses);
                clients.push(Client {
                    name: c.name.clone(),
                    site: sname.clone(),
                    router: c.router.clone(),
                    addresses,
                });
            }
            if rs.handoff && (nodes.len() != 2 || lan.is_empty()) {
                self.e.push(
                    format!("{sp}.handoff"),
                    format!(
                        "needs exactly two nodes on a LAN, the site has {} node(s)",
                        nodes.len()
                    ),
                );
            }
            sites.insert(
                sname.clone(),
                Site {
                    name: sname.clone(),
                    location,
                    lan,
                    routers,
                    nodes,
                    clients,
                    handoff: rs.handoff,
                },
            );
        }

        self.resolve_peerings(&mut sites);
        self.check_admin_ports(&sites);

        let vips = self.vips(&sites);
        let pools = self.pools(&sites);
        let services = self.services(&vips, &pools);
        let dns = raw.dns.as_ref().map(|d| self.dns(d, &vips, &services));
        let bus = self.bus(&sites);
        let bgp = self.bgp();
        let l4 = self.l4();

        Deployment {
            name,
            sites,
            vips,
            pools,
            services,
            dns,
            bus,
            bgp,
            l4,
            l7: raw.l7.clone(),
        }
    }

    fn l4(&mut self) -> L4Settings {
        let rl = self.raw.l4.clone().unwrap_or_default();
        let mut out = L4Settings::default();
        if let Some(size) = rl.table_size {
            let prime = size >= 3
                && (2..)
                    .take_while(|d: &u64| d * d <= u64::from(size))
                    .all(|d| u64::from(size) % d != 0);
            if !prime || size > 16_777_259 {
                self.e.push(
                    "l4.table_size",
                    format!(
                        "{size} is not a prime between 3 and 16777259 (Maglev needs a prime, e.g. 65537)"
                    ),
                );
            } else {
                out.table_size = size;
            }
        }
        if let Some(d) = &rl.drain_timeout {
            match parse_duration(d) {
                Ok(d) => out.drain_timeout = d,
                Err(r) => self.e.push("l4.drain_timeout", r),
            }
        }
        if let Some(sl) = &rl.source_limit {
            let burst = sl.burst.unwrap_or(sl.per_second.saturating_mul(2));
            if sl.per_second == 0 || burst == 0 {
                self.e.push(
                    "l4.source_limit",
                    "per_second and burst must be at least 1 (leave source_limit out for no limit)",
                );
            } else {
                out.source_limit = Some(SourceLimit {
                    per_second: sl.per_second,
                    burst,
                });
            }
        }
        match rl.xdp_mode.as_deref() {
            None | Some("generic") => {}
            Some("native") => out.xdp_mode = XdpMode::Native,
            Some("auto") => out.xdp_mode = XdpMode::Auto,
            Some(other) => self.e.push(
                "l4.xdp_mode",
                format!("unknown mode {other:?} (expected generic, native or auto)"),
            ),
        }
        out
    }

    fn bgp(&mut self) -> Bgp {
        let rb = self.raw.bgp.clone().unwrap_or_default();
        let hold_time = rb.hold_time.unwrap_or(9);
        if (1..3).contains(&hold_time) {
            self.e.push(
                "bgp.hold_time",
                format!("{hold_time} s: RFC 4271 allows 0 or at least 3"),
            );
        }
        let mut dur = |field: &str, v: &Option<String>, default: Duration| match v {
            None => default,
            Some(s) => match parse_duration(s) {
                Ok(d) => d,
                Err(r) => {
                    self.e.push(format!("bgp.{field}"), r);
                    default
                }
            },
        };
        let connect_retry = dur("connect_retry", &rb.connect_retry, Duration::from_secs(1));
        let drain = dur("drain", &rb.drain, Duration::from_secs(5));
        let graceful_restart = rb.graceful_restart.as_ref().map(|g| {
            dur(
                "graceful_restart.restart_time",
                &g.restart_time,
                Duration::from_secs(120),
            )
        });
        if connect_retry.is_zero() {
            self.e.push("bgp.connect_retry", "must be greater than zero");
        }
        let port = rb.port.unwrap_or(179);
        if port == 0 {
            self.e.push("bgp.port", "port 0 is not a usable port");
        }
        if let Some(t) = graceful_restart
            && (t.is_zero() || t > Duration::from_secs(4095))
        {
            self.e.push(
                "bgp.graceful_restart.restart_time",
                format!("{t:?}: RFC 4724 allows 1 s to 4095 s"),
            );
        }
        Bgp {
            hold_time,
            connect_retry,
            drain,
            port,
            max_prefixes: rb.max_prefixes.unwrap_or(10_000),
            graceful_restart,
        }
    }

    fn location(&mut self, sp: &str, l: &RawLocation) -> Location {
        if !(-90.0..=90.0).contains(&l.lat) {
            self.e.push(
                format!("{sp}.location.lat"),
                format!("{} is outside -90..=90", l.lat),
            );
        }
        if !(-180.0..=180.0).contains(&l.lon) {
            self.e.push(
                format!("{sp}.location.lon"),
                format!("{} is outside -180..=180", l.lon),
            );
        }
        let b = l.country.as_bytes();
        let country = if b.len() == 2 && b.iter().all(u8::is_ascii_uppercase) {
            [b[0], b[1]]
        } else {
            self.e.push(
                format!("{sp}.location.country"),
                format!("{:?} is not an ISO 3166-1 alpha-2 code like NL or US", l.country),
            );
            *b"ZZ"
        };
        Location {
            lat: l.lat,
            lon: l.lon,
            country,
        }
    }

    fn host_name(&mut self, seen: &mut BTreeMap<String, String>, path: &str, name: &str) {
        self.name(format!("{path}.name"), name);
        if let Some(first) = seen.get(name) {
            self.e
                .push(format!("{path}.name"), format!("{name:?} duplicates {first}"));
        } else {
            seen.insert(name.to_string(), path.to_string());
        }
    }

    fn router_id(&mut self, seen: &mut BTreeMap<Ipv4Addr, String>, path: &str, s: &str) -> Ipv4Addr {
        match s.parse::<Ipv4Addr>() {
            Ok(id) if id.is_unspecified() => {
                self.e.push(
                    format!("{path}.router_id"),
                    "0.0.0.0 is not a valid BGP identifier",
                );
                id
            }
            Ok(id) => {
                if let Some(first) = seen.get(&id) {
                    self.e
                        .push(format!("{path}.router_id"), format!("duplicates {first}"));
                } else {
                    seen.insert(id, path.to_string());
                }
                id
            }
            Err(_) => {
                self.e.push(
                    format!("{path}.router_id"),
                    format!("{s:?} is not an IPv4 address"),
                );
                Ipv4Addr::UNSPECIFIED
            }
        }
    }

    /// Resolves node→router and router→router sessions to the addresses of
    /// the subnet the two ends share (one session per address family).
    fn resolve_peerings(&mut self, sites: &mut BTreeMap<String, Site>) {
        let routers: BTreeMap<String, (u32, Vec<IpNet>, RouterKind)> = sites
            .values()
            .flat_map(|s| s.routers.iter())
            .map(|r| (r.name.clone(), (r.asn, r.addresses.clone(), r.kind)))
            .collect();
        for (sname, site) in sites.iter_mut() {
            for (i, n) in site.nodes.iter_mut().enumerate() {
                let raw_peers = &self.raw.sites[sname].nodes[i].peers;
                for (j, rname) in raw_peers.iter().enumerate() {
                    let path = format!("sites.{sname}.nodes[{i}].peers[{j}]");
                    let Some((asn, raddrs, _)) = routers.get(rname) else {
                        self.e.push(path, format!("unknown router {rname:?}"));
                        continue;
                    };
                    let mut found = false;
                    for a in &n.addresses {
                        for b in raddrs {
                            if shares_subnet(a, b) {
                                found = true;
                                n.peers.push(Peering {
                                    router: rname.clone(),
                                    router_asn: *asn,
                                    local: a.addr(),
                                    remote: b.addr(),
                                });
                            }
                        }
                    }
                    if !found {
                        self.e.push(
                            path,
                            format!(
                                "node {} has no address on a subnet shared with router {rname}",
                                n.name
                            ),
                        );
                    }
                }
            }
            for (i, r) in site.routers.iter().enumerate() {
                for (j, peer) in r.peers.iter().enumerate() {
                    let path = format!("sites.{sname}.routers[{i}].peers[{j}]");
                    match routers.get(peer) {
                        None => self.e.push(path, format!("unknown router {peer:?}")),
                        Some((_, paddrs, _)) => {
                            if peer == &r.name {
                                self.e.push(path, "a router cannot peer with itself");
                            } else if !r
                                .addresses
                                .iter()
                                .any(|a| paddrs.iter().any(|b| shares_subnet(a, b)))
                            {
                                self.e.push(
                                    path,
                                    format!(
                                        "router {} has no address on a subnet shared with router {peer}",
                                        r.name
                                    ),
                                );
                            }
                        }
                    }
                }
            }
            for (i, c) in site.clients.iter().enumerate() {
                let path = format!("sites.{sname}.clients[{i}].router");
                match routers.get(&c.router) {
                    None => self.e.push(path, format!("unknown router {:?}", c.router)),
                    Some((_, raddrs, _)) => {
                        if !c
                            .addresses
                            .iter()
                            .any(|a| raddrs.iter().any(|b| shares_subnet(a, b)))
                        {
                            self.e.push(
                                path,
                                format!(
                                    "client {} has no address on a subnet shared with router {}",
                                    c.name, c.router
                                ),
                            );
                        }
                    }
                }
            }
        }
    }

    /// Two nodes that share an address namespace (loopback demos) cannot
    /// bind the same admin or gossip address.
    fn check_admin_ports(&mut self, sites: &BTreeMap<String, Site>) {
        let mut seen: BTreeMap<SocketAddr, String> = BTreeMap::new();
        for (sname, site) in sites {
            for (i, n) in site.nodes.iter().enumerate() {
                if n.gossip.ip().is_loopback() {
                    let path = format!("sites.{sname}.nodes[{i}].gossip");
                    if let Some(first) = seen.get(&n.gossip) {
                        self.e.push(path, format!("{} is also used by {first}", n.gossip));
                    } else {
                        seen.insert(n.gossip, path);
                    }
                }
            }
        }
    }

    fn vips(&mut self, sites: &BTreeMap<String, Site>) -> BTreeMap<String, Vip> {
        let mut out = BTreeMap::new();
        let mut all: Vec<(IpNet, String)> = Vec::new();
        for (vname, rv) in &self.raw.vips {
            let p = format!("vips.{vname}");
            self.name(p.clone(), vname);
            if rv.prefixes.is_empty() {
                self.e
                    .push(format!("{p}.prefixes"), "a VIP needs at least one prefix");
            }
            let prefixes = self.prefixes(&format!("{p}.prefixes"), &rv.prefixes);
            for (i, pre) in prefixes.iter().enumerate() {
                for (other, opath) in &all {
                    if other == pre {
                        self.e
                            .push(format!("{p}.prefixes[{i}]"), format!("{pre} duplicates {opath}"));
                    } else if other.contains(pre) || pre.contains(other) {
                        self.e.push(
                            format!("{p}.prefixes[{i}]"),
                            format!("{pre} overlaps {other} ({opath})"),
                        );
                    }
                }
                all.push((*pre, format!("{p}.prefixes[{i}]")));
            }
            if rv.sites.is_empty() {
                self.e.push(format!("{p}.sites"), "a VIP needs at least one site");
            }
            for (i, s) in rv.sites.iter().enumerate() {
                match sites.get(s) {
                    None => self
                        .e
                        .push(format!("{p}.sites[{i}]"), format!("unknown site {s:?}")),
                    Some(site) if site.nodes.is_empty() => self.e.push(
                        format!("{p}.sites[{i}]"),
                        format!("site {s} has no edge nodes to announce it"),
                    ),
                    Some(_) => {}
                }
            }
            let mut communities = Vec::new();
            for (i, c) in rv.announce.communities.iter().enumerate() {
                match parse_community(c) {
                    Ok(c) => communities.push(c),
                    Err(r) => self.e.push(format!("{p}.announce.communities[{i}]"), r),
                }
            }
            let mut large = Vec::new();
            for (i, c) in rv.announce.large_communities.iter().enumerate() {
                match parse_large_community(c) {
                    Ok(c) => large.push(c),
                    Err(r) => self.e.push(format!("{p}.announce.large_communities[{i}]"), r),
                }
            }
            if rv.announce.prepend > 10 {
                self.e.push(
                    format!("{p}.announce.prepend"),
                    "more than 10 prepends is almost surely a mistake",
                );
            }
            out.insert(
                vname.clone(),
                Vip {
                    name: vname.clone(),
                    prefixes,
                    sites: rv.sites.clone(),
                    min_healthy: rv.min_healthy.unwrap_or(1),
                    announce: AnnouncePolicy {
                        med: rv.announce.med,
                        prepend: rv.announce.prepend,
                        communities,
                        large_communities: large,
                        local_pref: rv.announce.local_pref,
                    },
                },
            );
        }
        out
    }

    fn pools(&mut self, sites: &BTreeMap<String, Site>) -> BTreeMap<String, Pool> {
        let mut out = BTreeMap::new();
        // A backend name means one address:port everywhere, since operators
        // drain and weight backends by name.
        let mut backend_names: BTreeMap<String, (SocketAddr, String)> = BTreeMap::new();
        for (pname, rp) in &self.raw.pools {
            let p = format!("pools.{pname}");
            self.name(p.clone(), pname);
            if rp.backends.is_empty() {
                self.e.push(
                    format!("{p}.backends"),
                    "pool is empty: it needs at least one backend",
                );
            }
            let mut backends = Vec::new();
            for (i, b) in rp.backends.iter().enumerate() {
                let bp = format!("{p}.backends[{i}]");
                self.name(format!("{bp}.name"), &b.name);
                let address = match b.address.parse::<IpAddr>() {
                    Ok(a) => a,
                    Err(_) => {
                        self.e.push(
                            format!("{bp}.address"),
                            format!("{:?} is not an IP address", b.address),
                        );
                        IpAddr::V4(Ipv4Addr::UNSPECIFIED)
                    }
                };
                if b.port == 0 {
                    self.e.push(format!("{bp}.port"), "port 0 is not a usable port");
                }
                match sites.get(&b.site) {
                    None => self
                        .e
                        .push(format!("{bp}.site"), format!("unknown site {:?}", b.site)),
                    Some(site) => {
                        if !site.lan.is_empty()
                            && !address.is_unspecified()
                            && !site.lan.iter().any(|l| l.contains(&address))
                        {
                            self.e.push(
                                format!("{bp}.address"),
                                format!("{address} is outside site {}'s LAN subnets", b.site),
                            );
                        }
                    }
                }
                let weight = b.weight.unwrap_or(1);
                if weight > 256 {
                    self.e
                        .push(format!("{bp}.weight"), format!("{weight} is outside 0..=256"));
                }
                let sa = SocketAddr::new(address, b.port);
                match backend_names.get(&b.name) {
                    Some((other, opath)) if *other != sa => self.e.push(
                        format!("{bp}.name"),
                        format!("{:?} is {other} in {opath} but {sa} here", b.name),
                    ),
                    Some(_) => {}
                    None => {
                        backend_names.insert(b.name.clone(), (sa, bp.clone()));
                    }
                }
                if backends.iter().any(|x: &Backend| x.name == b.name) {
                    self.e.push(
                        format!("{bp}.name"),
                        format!("{:?} appears twice in pool {pname}", b.name),
                    );
                }
                backends.push(Backend {
                    name: b.name.clone(),
                    site: b.site.clone(),
                    address,
                    port: b.port,
                    weight,
                    backup: b.backup,
                });
            }
            let check = rp.check.as_ref().map(|c| self.check(&format!("{p}.check"), c));
            out.insert(
                pname.clone(),
                Pool {
                    name: pname.clone(),
                    backends,
                    check,
                    l7: rp.l7.clone(),
                },
            );
        }
        out
    }

    fn check(&mut self, p: &str, c: &RawCheck) -> Check {
        let kind = match c.kind.as_str() {
            "tcp" => CheckKind::Tcp,
            "http" => CheckKind::Http,
            "https" => CheckKind::Https,
            other => {
                self.e.push(
                    format!("{p}.kind"),
                    format!("unknown check kind {other:?} (expected tcp, http or https)"),
                );
                CheckKind::Tcp
            }
        };
        let mut dur = |field: &str, v: &Option<String>, default: Duration| match v {
            None => default,
            Some(s) => match parse_duration(s) {
                Ok(d) if d.is_zero() => {
                    self.e.push(format!("{p}.{field}"), "must be greater than zero");
                    default
                }
                Ok(d) => d,
                Err(r) => {
                    self.e.push(format!("{p}.{field}"), r);
                    default
                }
            },
        };
        let interval = dur("interval", &c.interval, Duration::from_secs(2));
        let timeout = dur("timeout", &c.timeout, interval.min(Duration::from_secs(1)));
        if timeout > interval {
            self.e.push(
                format!("{p}.timeout"),
                format!("{timeout:?} is longer than the interval {interval:?}, so checks would overlap"),
            );
        }
        let rise = c.rise.unwrap_or(2);
        let fall = c.fall.unwrap_or(3);
        if rise == 0 {
            self.e.push(format!("{p}.rise"), "must be at least 1");
        }
        if fall == 0 {
            self.e.push(format!("{p}.fall"), "must be at least 1");
        }
        let init_state = match c.init_state.as_deref() {
            None | Some("up") => InitState::Up,
            Some("down") => InitState::Down,
            Some(other) => {
                self.e.push(
                    format!("{p}.init_state"),
                    format!("{other:?} is not one of \"up\", \"down\""),
                );
                InitState::Up
            }
        };
        let path = c.path.clone().unwrap_or_else(|| "/".to_string());
        if kind != CheckKind::Tcp && !path.starts_with('/') {
            self.e
                .push(format!("{p}.path"), format!("{path:?} must start with '/'"));
        }
        if kind == CheckKind::Tcp && (c.path.is_some() || c.body.is_some() || !c.expect_status.is_empty()) {
            self.e.push(
                p.to_string(),
                "path, body and expect_status only apply to http and https checks",
            );
        }
        for (i, s) in c.expect_status.iter().enumerate() {
            if !(100..=599).contains(s) {
                self.e.push(
                    format!("{p}.expect_status[{i}]"),
                    format!("{s} is not an HTTP status"),
                );
            }
        }
        Check {
            kind,
            path,
            host: c.host.clone(),
            expect_status: c.expect_status.clone(),
            body: c.body.clone(),
            port: c.port,
            interval,
            timeout,
            rise,
            fall,
            init_state,
        }
    }

    fn services(
        &mut self,
        vips: &BTreeMap<String, Vip>,
        pools: &BTreeMap<String, Pool>,
    ) -> BTreeMap<String, Service> {
        let mut out = BTreeMap::new();
        // (vip, protocol, port) → first user, to catch two listeners on one socket.
        let mut sockets: BTreeMap<(String, Protocol, u16), String> = BTreeMap::new();
        for (sname, rs) in &self.raw.services {
            let p = format!("services.{sname}");
            self.name(p.clone(), sname);
            let vip = vips.get(&rs.vip);
            if vip.is_none() {
                self.e
                    .push(format!("{p}.vip"), format!("unknown VIP {:?}", rs.vip));
            }
            let pool = pools.get(&rs.pool);
            if pool.is_none() {
                self.e
                    .push(format!("{p}.pool"), format!("unknown pool {:?}", rs.pool));
            }
            if let (Some(vip), Some(pool)) = (vip, pool) {
                for site in &vip.sites {
                    let primaries = pool
                        .backends
                        .iter()
                        .filter(|b| &b.site == site && !b.backup)
                        .count();
                    let any = pool.backends.iter().filter(|b| &b.site == site).count();
                    if any == 0 {
                        self.e.push(
                            format!("{p}.pool"),
                            format!(
                                "pool {} has no backend at site {site}, which announces VIP {}",
                                pool.name, vip.name
                            ),
                        );
                    } else if (primaries as u32) < vip.min_healthy {
                        self.e.push(
                            format!("{p}.pool"),
                            format!(
                                "VIP {} needs {} healthy backends but pool {} has only {primaries} primaries at site {site}, so it could never be announced",
                                vip.name, vip.min_healthy, pool.name
                            ),
                        );
                    }
                }
            }
            if rs.l4.is_empty() && rs.l7.is_empty() {
                self.e.push(
                    p.clone(),
                    "a service needs at least one l4 listener or l7 frontend",
                );
            }
            let mut l4 = Vec::new();
            for (i, l) in rs.l4.iter().enumerate() {
                let lp = format!("{p}.l4[{i}]");
                let protocol = match l.protocol.as_str() {
                    "tcp" => Protocol::Tcp,
                    "udp" => Protocol::Udp,
                    other => {
                        self.e.push(
                            format!("{lp}.protocol"),
                            format!("unknown protocol {other:?} (expected tcp or udp)"),
                        );
                        Protocol::Tcp
                    }
                };
                let algorithm = match l.algorithm.as_deref().unwrap_or("maglev") {
                    "maglev" => L4Algorithm::Maglev,
                    "rr" => L4Algorithm::Rr,
                    "wrr" => L4Algorithm::Wrr,
                    "lc" => L4Algorithm::Lc,
                    "wlc" => L4Algorithm::Wlc,
                    "sh" => L4Algorithm::Sh,
                    other => {
                        self.e.push(
                            format!("{lp}.algorithm"),
                            format!("unknown algorithm {other:?} (expected maglev, rr, wrr, lc, wlc or sh)"),
                        );
                        L4Algorithm::Maglev
                    }
                };
                let dataplane = match l.dataplane.as_deref().unwrap_or("userspace") {
                    "userspace" => DataplaneKind::Userspace,
                    "xdp" => DataplaneKind::Xdp,
                    "nftables" => DataplaneKind::Nftables,
                    "ipvs" => DataplaneKind::Ipvs,
                    other => {
                        self.e.push(
                            format!("{lp}.dataplane"),
                            format!(
                                "unknown dataplane {other:?} (expected userspace, xdp, nftables or ipvs)"
                            ),
                        );
                        DataplaneKind::Userspace
                    }
                };
                self.socket(&mut sockets, &lp, &rs.vip, protocol, l.port);
                if l.backend_port == Some(0) {
                    self.e
                        .push(format!("{lp}.backend_port"), "port 0 is not a usable port");
                }
                if dataplane == DataplaneKind::Xdp {
                    // The XDP program places flows with the shared Maglev
                    // table and forwards by L2 DSR, which keeps the packet's
                    // destination (VIP:port) as it is.
                    if algorithm != L4Algorithm::Maglev {
                        self.e.push(
                            format!("{lp}.algorithm"),
                            "the xdp dataplane balances with maglev only",
                        );
                    }
                    if let Some(bp) = l.backend_port.filter(|bp| *bp != l.port) {
                        self.e.push(
                            format!("{lp}.backend_port"),
                            format!(
                                "the xdp dataplane forwards by L2 DSR, which cannot rewrite port {} to {bp}",
                                l.port
                            ),
                        );
                    } else if l.backend_port.is_none()
                        && let Some(b) = pool.and_then(|p| p.backends.iter().find(|b| b.port != l.port))
                    {
                        self.e.push(
                            format!("{lp}.backend_port"),
                            format!(
                                "the xdp dataplane forwards by L2 DSR, which cannot rewrite port {} to backend {}'s port {}; set backend_port = {}",
                                l.port, b.name, b.port, l.port
                            ),
                        );
                    }
                }
                l4.push(L4Listener {
                    protocol,
                    port: l.port,
                    algorithm,
                    dataplane,
                    backend_port: l.backend_port,
                });
            }
            let mut l7 = Vec::new();
            for (i, f) in rs.l7.iter().enumerate() {
                let fp = format!("{p}.l7[{i}]");
                self.socket(&mut sockets, &fp, &rs.vip, Protocol::Tcp, f.port);
                let mut tls = Vec::new();
                if let Some(t) = &f.tls {
                    if t.certs.is_empty() {
                        self.e
                            .push(format!("{fp}.tls.certs"), "TLS needs at least one certificate");
                    }
                    for (j, c) in t.certs.iter().enumerate() {
                        if c.cert.is_empty() || c.key.is_empty() {
                            self.e.push(
                                format!("{fp}.tls.certs[{j}]"),
                                "cert and key paths must not be empty",
                            );
                        }
                        tls.push(CertPair {
                            cert: c.cert.clone(),
                            key: c.key.clone(),
                            names: c.names.clone(),
                        });
                    }
                }
                // The rules' own syntax is the L7 tier's to check (edge
                // validate does); the cross reference to pools is ours.
                for (j, r) in f.routes.iter().enumerate() {
                    let pool = r
                        .get("action")
                        .and_then(|a| a.get("pool"))
                        .and_then(|p| p.as_str());
                    if let Some(pool) = pool
                        && !pools.contains_key(pool)
                    {
                        self.e.push(
                            format!("{fp}.routes[{j}].action.pool"),
                            format!("unknown pool {pool:?}"),
                        );
                    }
                }
                let routes = f.routes.clone();
                l7.push(L7Frontend {
                    port: f.port,
                    tls,
                    routes,
                });
            }
            out.insert(
                sname.clone(),
                Service {
                    name: sname.clone(),
                    vip: rs.vip.clone(),
                    pool: rs.pool.clone(),
                    l4,
                    l7,
                },
            );
        }
        out
    }

    fn socket(
        &mut self,
        seen: &mut BTreeMap<(String, Protocol, u16), String>,
        path: &str,
        vip: &str,
        proto: Protocol,
        port: u16,
    ) {
        if port == 0 {
            self.e.push(format!("{path}.port"), "port 0 is not a usable port");
            return;
        }
        let key = (vip.to_string(), proto, port);
        if let Some(first) = seen.get(&key) {
            self.e.push(
                format!("{path}.port"),
                format!("VIP {vip} port {port} is already used by {first}"),
            );
        } else {
            seen.insert(key, path.to_string());
        }
    }

    fn dns(&mut self, d: &RawDns, vips: &BTreeMap<String, Vip>, services: &BTreeMap<String, Service>) -> Dns {
        if let Some(v) = &d.vip
            && !vips.contains_key(v)
        {
            self.e.push("dns.vip", format!("unknown VIP {v:?}"));
        }
        let port = d.port.unwrap_or(53);
        if port == 0 {
            self.e.push("dns.port", "port 0 is not a usable port");
        }
        let mut zones: Vec<Zone> = Vec::new();
        for (i, z) in d.zones.iter().enumerate() {
            let zp = format!("dns.zones[{i}]");
            if !valid_dns_name(&z.origin) {
                self.e.push(
                    format!("{zp}.origin"),
                    format!("{:?} is not a domain name", z.origin),
                );
            }
            let origin = fqdn(&z.origin);
            if zones.iter().any(|o| o.origin == origin) {
                self.e
                    .push(format!("{zp}.origin"), format!("zone {origin} is defined twice"));
            }
            let ttl = z.ttl.unwrap_or(300);
            if z.ns.is_empty() {
                self.e
                    .push(format!("{zp}.ns"), "a zone needs at least one NS name");
            }
            let mut records = Vec::new();
            for (j, r) in z.records.iter().enumerate() {
                let rp = format!("{zp}.records[{j}]");
                let name = if r.name == "@" {
                    origin.clone()
                } else if r.name.ends_with('.') {
                    r.name.to_ascii_lowercase()
                } else {
                    format!("{}.{origin}", r.name.to_ascii_lowercase())
                };
                if !valid_dns_name(&name) {
                    self.e
                        .push(format!("{rp}.name"), format!("{:?} is not a domain name", r.name));
                } else if name != origin && !name.ends_with(&format!(".{origin}")) {
                    self.e
                        .push(format!("{rp}.name"), format!("{name} is outside zone {origin}"));
                }
                let rtype = match r.rtype.to_ascii_uppercase().as_str() {
                    "A" => RecordType::A,
                    "AAAA" => RecordType::Aaaa,
                    "CNAME" => RecordType::Cname,
                    "TXT" => RecordType::Txt,
                    "MX" => RecordType::Mx,
                    "SRV" => RecordType::Srv,
                    "CAA" => RecordType::Caa,
                    "NS" => RecordType::Ns,
                    other => {
                        self.e.push(
                            format!("{rp}.type"),
                            format!(
                                "unsupported record type {other:?} (A, AAAA, CNAME, TXT, MX, SRV, CAA, NS)"
                            ),
                        );
                        RecordType::Txt
                    }
                };
                let bad_value = match rtype {
                    RecordType::A => r.value.parse::<std::net::Ipv4Addr>().is_err(),
                    RecordType::Aaaa => r.value.parse::<std::net::Ipv6Addr>().is_err(),
                    RecordType::Cname | RecordType::Ns => !valid_dns_name(&r.value),
                    RecordType::Mx => {
                        let mut it = r.value.split_whitespace();
                        !(it.next().is_some_and(|p| p.parse::<u16>().is_ok())
                            && it.next().is_some_and(valid_dns_name)
                            && it.next().is_none())
                    }
                    RecordType::Srv => {
                        let parts: Vec<&str> = r.value.split_whitespace().collect();
                        !(parts.len() == 4
                            && parts[..3].iter().all(|p| p.parse::<u16>().is_ok())
                            && valid_dns_name(parts[3]))
                    }
                    RecordType::Caa => r.value.split_whitespace().count() < 3,
                    RecordType::Txt => false,
                };
                if bad_value {
                    self.e.push(
                        format!("{rp}.value"),
                        format!("{:?} is not a valid {} value", r.value, r.rtype),
                    );
                }
                records.push(Record {
                    name,
                    rtype,
                    ttl: r.ttl.unwrap_or(ttl),
                    value: r.value.clone(),
                });
            }
            zones.push(Zone {
                origin,
                ttl,
                soa: Soa {
                    mname: fqdn(&z.soa.mname),
                    rname: fqdn(&z.soa.rname),
                    serial: z.soa.serial.unwrap_or(1),
                    refresh: z.soa.refresh.unwrap_or(3600),
                    retry: z.soa.retry.unwrap_or(600),
                    expire: z.soa.expire.unwrap_or(604_800),
                    minimum: z.soa.minimum.unwrap_or(60),
                },
                ns: z.ns.iter().map(|n| fqdn(n)).collect(),
                records,
            });
        }
        let mut gslb = Vec::new();
        for (i, g) in d.gslb.iter().enumerate() {
            let gp = format!("dns.gslb[{i}]");
            let name = fqdn(&g.name);
            if !valid_dns_name(&name) {
                self.e
                    .push(format!("{gp}.name"), format!("{:?} is not a domain name", g.name));
            } else if !zones
                .iter()
                .any(|z| name == z.origin || name.ends_with(&format!(".{}", z.origin)))
            {
                self.e.push(
                    format!("{gp}.name"),
                    format!("{name} is in none of the configured zones"),
                );
            }
            if g.vips.is_empty() {
                self.e.push(
                    format!("{gp}.vips"),
                    "a GSLB record needs at least one candidate VIP",
                );
            }
            for (j, v) in g.vips.iter().enumerate() {
                if !vips.contains_key(v) {
                    self.e
                        .push(format!("{gp}.vips[{j}]"), format!("unknown VIP {v:?}"));
                } else if !services.values().any(|s| &s.vip == v) {
                    self.e.push(
                        format!("{gp}.vips[{j}]"),
                        format!("VIP {v} has no service, so its health cannot be known"),
                    );
                }
            }
            let policy = if g.policy.is_empty() {
                vec![
                    GslbFilter::Health,
                    GslbFilter::Drain,
                    GslbFilter::Geo,
                    GslbFilter::Latency,
                    GslbFilter::Weight,
                ]
            } else {
                let mut out = Vec::new();
                for (j, f) in g.policy.iter().enumerate() {
                    match f.as_str() {
                        "health" => out.push(GslbFilter::Health),
                        "drain" => out.push(GslbFilter::Drain),
                        "geo" => out.push(GslbFilter::Geo),
                        "latency" => out.push(GslbFilter::Latency),
                        "weight" => out.push(GslbFilter::Weight),
                        other => self.e.push(
                            format!("{gp}.policy[{j}]"),
                            format!("unknown filter {other:?} (health, drain, geo, latency, weight)"),
                        ),
                    }
                }
                out
            };
            let answers = g.answers.unwrap_or(1);
            if answers == 0 {
                self.e.push(format!("{gp}.answers"), "must be at least 1");
            }
            gslb.push(Gslb {
                name,
                vips: g.vips.clone(),
                ttl: g.ttl.unwrap_or(30),
                answers,
                policy,
            });
        }
        let r = d.rrl.clone().unwrap_or_default();
        let rrl = Rrl {
            responses_per_second: r.responses_per_second.unwrap_or(50),
            burst: r.burst.unwrap_or(100),
            slip: r.slip.unwrap_or(2),
            ipv4_prefix: r.ipv4_prefix.unwrap_or(24),
            ipv6_prefix: r.ipv6_prefix.unwrap_or(56),
        };
        if rrl.ipv4_prefix > 32 {
            self.e.push(
                "dns.rrl.ipv4_prefix",
                format!("/{} is longer than /32", rrl.ipv4_prefix),
            );
        }
        if rrl.ipv6_prefix > 128 {
            self.e.push(
                "dns.rrl.ipv6_prefix",
                format!("/{} is longer than /128", rrl.ipv6_prefix),
            );
        }
        if rrl.responses_per_second > 0 && rrl.burst == 0 {
            self.e.push("dns.rrl.burst", "must be at least 1 while RRL is on");
        }
        let axfr_allow = self.prefixes("dns.axfr_allow", &d.axfr_allow);
        let shed_load_above = d.shed_load_above.unwrap_or(0.9);
        if !(0.0..=1.0).contains(&shed_load_above) {
            self.e.push(
                "dns.shed_load_above",
                format!("{shed_load_above} is not between 0 and 1"),
            );
        }
        let latency_tolerance = match d.latency_tolerance.as_deref().map(parse_duration) {
            None => Duration::from_millis(5),
            Some(Ok(t)) if t <= Duration::from_secs(10) => t,
            Some(Ok(t)) => {
                self.e
                    .push("dns.latency_tolerance", format!("{t:?} is longer than 10s"));
                Duration::from_millis(5)
            }
            Some(Err(r)) => {
                self.e.push("dns.latency_tolerance", r);
                Duration::from_millis(5)
            }
        };
        let mut country_sites = BTreeMap::new();
        for (cc, sites) in &d.country_sites {
            let cp = format!("dns.country_sites.{cc}");
            if cc.len() != 2 || !cc.chars().all(|c| c.is_ascii_alphabetic()) {
                self.e.push(cp.clone(), "not a two-letter ISO country code");
            }
            for s in sites {
                if !self.raw.sites.contains_key(s) {
                    self.e.push(cp.clone(), format!("unknown site {s:?}"));
                }
            }
            country_sites.insert(cc.to_ascii_uppercase(), sites.clone());
        }
        Dns {
            vip: d.vip.clone(),
            port,
            geoip: d.geoip.clone(),
            zones,
            gslb,
            rrl,
            axfr_allow,
            shed_load_above,
            latency_tolerance,
            country_sites,
        }
    }

    fn bus(&mut self, sites: &BTreeMap<String, Site>) -> Bus {
        let nodes: BTreeSet<&str> = sites
            .values()
            .flat_map(|s| s.nodes.iter().map(|n| n.name.as_str()))
            .collect();
        let rb = self.raw.bus.clone().unwrap_or_default();
        for (i, s) in rb.seeds.iter().enumerate() {
            if !nodes.contains(s.as_str()) {
                self.e
                    .push(format!("bus.seeds[{i}]"), format!("unknown node {s:?}"));
            }
        }
        let interval = match &rb.interval {
            None => Duration::from_millis(100),
            Some(s) => match parse_duration(s) {
                Ok(d) if !d.is_zero() => d,
                Ok(_) => {
                    self.e.push("bus.interval", "must be greater than zero");
                    Duration::from_millis(100)
                }
                Err(r) => {
                    self.e.push("bus.interval", r);
                    Duration::from_millis(100)
                }
            },
        };
        Bus {
            port: rb.port.unwrap_or(DEFAULT_BUS_PORT),
            seeds: rb.seeds,
            interval,
        }
    }
}
