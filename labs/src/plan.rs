//! Derives a [`LabSpec`] from a deployment topology.
//!
//! The topology file only says who peers with whom and which addresses each
//! host has; the lab's wiring follows from that:
//!
//! * every router, edge node, client and backend gets its own namespace;
//! * every pair (node, router), (client, router) and (router, router) that
//!   shares a subnet gets one veth carrying all the addresses of that pair's
//!   shared subnets (v4 and v6);
//! * each site's LAN is a bridge in a `<site>-sw` namespace; nodes and
//!   backends attach to it with their LAN addresses;
//! * static routes send the lab ranges (never a default route) from clients
//!   and nodes to their router, and from backends to their site's first node.
//!
//! Interface names: the near end is named after the far end with a
//! one-letter kind prefix (`r-ams-r1`, `n-ams-e1`, `c-ams-c1`), which the
//! topology's 12-character name limit keeps within 15 bytes.

use std::collections::BTreeMap;
use std::net::IpAddr;

use edge_topology as topo;
use ipnet::IpNet;

use crate::error::{LabError, Result};
use crate::spec::{
    BridgePort, BridgeSpec, Endpoint, LabSpec, LinkSpec, NamespaceSpec, NeighborSpec, RouteSpec, RouterKind,
    RouterSpec, SysctlSpec,
};

/// Ranges a lab host routes towards its gateway (the whole lab plan).
const LAB_V4: [&str; 3] = ["198.18.0.0/15", "203.0.113.0/24", "198.51.100.0/24"];
const LAB_V6: &str = "2001:db8::/32";

/// The lab name for a deployment: its name without separators
/// (`two-pop` → `twopop`), as the harness wants `[a-z0-9]{1,16}`.
pub fn lab_name(dep: &topo::Deployment) -> String {
    dep.name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .take(16)
        .collect()
}

/// The namespace (local name) of a site's LAN switch.
pub fn switch_ns(site: &str) -> String {
    format!("{site}-sw")
}

fn lab_kind(k: topo::RouterKind, name: &str) -> Result<RouterKind> {
    match k {
        topo::RouterKind::Frr => Ok(RouterKind::Frr),
        topo::RouterKind::Bird => Ok(RouterKind::Bird),
        topo::RouterKind::Gobgp => Ok(RouterKind::Gobgp),
        topo::RouterKind::External => Err(LabError::Invalid(format!(
            "router {name} is `external`: a lab can only run frr, bird or gobgp routers"
        ))),
    }
}

/// The addresses of `a` that share a subnet with some address of `b`, and
/// vice versa.
fn shared(a: &[IpNet], b: &[IpNet]) -> (Vec<IpNet>, Vec<IpNet>) {
    let on = |x: &IpNet, y: &IpNet| x.contains(&y.addr()) && y.contains(&x.addr()) && x.addr() != y.addr();
    let sa = a.iter().filter(|x| b.iter().any(|y| on(x, y))).copied().collect();
    let sb = b.iter().filter(|y| a.iter().any(|x| on(x, y))).copied().collect();
    (sa, sb)
}

fn first_of(addrs: &[IpNet], v4: bool) -> Option<IpAddr> {
    addrs.iter().map(|a| a.addr()).find(|a| a.is_ipv4() == v4)
}

/// Routes the lab ranges from `ns` (whose addresses are `own`) via the first
/// gateway address of each family the host itself has.
fn gateway_routes(spec: &mut LabSpec, ns: &str, own: &[IpNet], gw: &[IpNet]) {
    let has = |v4: bool| own.iter().any(|a| a.addr().is_ipv4() == v4);
    if let (true, Some(g)) = (has(true), first_of(gw, true)) {
        for r in LAB_V4 {
            if let Ok(dst) = r.parse() {
                spec.routes.push(RouteSpec {
                    namespace: ns.to_string(),
                    destination: dst,
                    gateway: g,
                });
            }
        }
    }
    if let (true, Some(g), Ok(dst)) = (has(false), first_of(gw, false), LAB_V6.parse()) {
        spec.routes.push(RouteSpec {
            namespace: ns.to_string(),
            destination: dst,
            gateway: g,
        });
    }
}

/// Builds the lab for a whole deployment.
pub fn plan(dep: &topo::Deployment) -> Result<LabSpec> {
    let mut spec = LabSpec::new(lab_name(dep));
    let routers: BTreeMap<&str, &topo::Router> = dep.routers().map(|r| (r.name.as_str(), r)).collect();

    for r in dep.routers() {
        let kind = lab_kind(r.kind, &r.name)?;
        spec.namespaces.push(NamespaceSpec {
            name: r.name.clone(),
            forwarding: true,
            multipath_hash_l4: true,
            loopback: Vec::new(),
        });
        let mut neighbors = Vec::new();
        // Sessions to the edge nodes, one per address family, as the
        // topology resolved them.
        for n in dep.nodes() {
            for p in n.peers.iter().filter(|p| p.router == r.name) {
                neighbors.push(NeighborSpec {
                    address: p.local,
                    asn: n.asn,
                    description: n.name.clone(),
                    password: r.password.clone(),
                    ttl_security: r.ttl_security,
                });
            }
        }
        for peer in &r.peers {
            let Some(other) = routers.get(peer.as_str()) else {
                continue;
            };
            let (_, theirs) = shared(&r.addresses, &other.addresses);
            for a in theirs {
                neighbors.push(NeighborSpec {
                    address: a.addr(),
                    asn: other.asn,
                    description: other.name.clone(),
                    password: None,
                    ttl_security: false,
                });
            }
        }
        spec.routers.push(RouterSpec {
            name: r.name.clone(),
            namespace: r.name.clone(),
            kind,
            asn: r.asn,
            router_id: r.router_id,
            neighbors,
            originate: r.networks.clone(),
            multipath: r.multipath,
            timers: Default::default(),
            install_routes: None,
        });
    }

    // Router-to-router links, once per pair.
    let all: Vec<&topo::Router> = dep.routers().collect();
    for (i, a) in all.iter().enumerate() {
        for b in &all[i + 1..] {
            if !(a.peers.contains(&b.name) || b.peers.contains(&a.name)) {
                continue;
            }
            let (sa, sb) = shared(&a.addresses, &b.addresses);
            spec.links.push(LinkSpec {
                a: Endpoint {
                    namespace: a.name.clone(),
                    ifname: format!("p-{}", b.name),
                    addresses: sa,
                },
                b: Endpoint {
                    namespace: b.name.clone(),
                    ifname: format!("p-{}", a.name),
                    addresses: sb,
                },
            });
        }
    }

    for site in dep.sites.values() {
        let mut lan_ports = Vec::new();
        let on_lan = |a: &IpNet| site.lan.iter().any(|l| l.contains(&a.addr()));

        for n in &site.nodes {
            spec.namespaces.push(NamespaceSpec {
                name: n.name.clone(),
                // Nodes route: kernel L4 dataplanes (nftables DNAT) forward
                // to backends and the L4 hand-off forwards to the peer node.
                forwarding: true,
                multipath_hash_l4: false,
                loopback: Vec::new(),
            });
            let mut first_router: Option<Vec<IpNet>> = None;
            let mut linked: Vec<&str> = Vec::new();
            for p in &n.peers {
                if linked.contains(&p.router.as_str()) {
                    continue;
                }
                linked.push(&p.router);
                let Some(r) = routers.get(p.router.as_str()) else {
                    continue;
                };
                let (mine, theirs) = shared(&n.addresses, &r.addresses);
                if first_router.is_none() {
                    first_router = Some(theirs.clone());
                }
                spec.links.push(LinkSpec {
                    a: Endpoint {
                        namespace: n.name.clone(),
                        ifname: format!("r-{}", r.name),
                        addresses: mine,
                    },
                    b: Endpoint {
                        namespace: r.name.clone(),
                        ifname: format!("n-{}", n.name),
                        addresses: theirs,
                    },
                });
            }
            if let Some(gw) = first_router {
                gateway_routes(&mut spec, &n.name, &n.addresses, &gw);
            }
            let lan: Vec<IpNet> = n.addresses.iter().copied().filter(on_lan).collect();
            if !lan.is_empty() {
                lan_ports.push(BridgePort {
                    namespace: n.name.clone(),
                    ifname: "lan".into(),
                    addresses: lan,
                    peer_ifname: None,
                });
            }
        }

        for c in &site.clients {
            spec.namespaces.push(NamespaceSpec {
                name: c.name.clone(),
                forwarding: false,
                multipath_hash_l4: false,
                loopback: Vec::new(),
            });
            let Some(r) = routers.get(c.router.as_str()) else {
                continue;
            };
            let (mine, theirs) = shared(&c.addresses, &r.addresses);
            gateway_routes(&mut spec, &c.name, &c.addresses, &theirs);
            spec.links.push(LinkSpec {
                a: Endpoint {
                    namespace: c.name.clone(),
                    ifname: format!("r-{}", r.name),
                    addresses: mine,
                },
                b: Endpoint {
                    namespace: r.name.clone(),
                    ifname: format!("c-{}", c.name),
                    addresses: theirs,
                },
            });
        }

        // Backends of this site, once each even if several pools use them.
        let mut backends: BTreeMap<&str, &topo::Backend> = BTreeMap::new();
        for pool in dep.pools.values() {
            for b in pool.backends.iter().filter(|b| b.site == site.name) {
                backends.entry(b.name.as_str()).or_insert(b);
            }
        }
        let first_node_lan: Vec<IpNet> = site
            .nodes
            .first()
            .map(|n| n.addresses.iter().copied().filter(on_lan).collect())
            .unwrap_or_default();
        // L2 DSR (the `xdp` dataplane): the backends of such a service hold
        // its VIP addresses on lo and never answer ARP for them; the nodes,
        // which hold the VIPs too and route the backends' replies, accept
        // packets from a local source address.
        let mut dsr_vips: BTreeMap<&str, Vec<IpNet>> = BTreeMap::new();
        for svc in dep.services.values() {
            if !svc.l4.iter().any(|l| l.dataplane == topo::DataplaneKind::Xdp) {
                continue;
            }
            let (Some(vip), Some(pool)) = (dep.vips.get(&svc.vip), dep.pools.get(&svc.pool)) else {
                continue;
            };
            if !vip.sites.contains(&site.name) {
                continue;
            }
            for b in pool.backends.iter().filter(|b| b.site == site.name) {
                let addrs = vip.prefixes.iter().filter(|p| {
                    p.prefix_len() == p.max_prefix_len() && p.addr().is_ipv4() == b.address.is_ipv4()
                });
                let entry = dsr_vips.entry(b.name.as_str()).or_default();
                for a in addrs {
                    if !entry.contains(a) {
                        entry.push(*a);
                    }
                }
            }
        }
        if !dsr_vips.is_empty() {
            for n in &site.nodes {
                spec.sysctls.push(SysctlSpec {
                    namespace: n.name.clone(),
                    key: "net.ipv4.conf.all.accept_local".into(),
                    value: "1".into(),
                });
            }
        }
        for b in backends.values() {
            let Some(net) = site.lan.iter().find(|l| l.contains(&b.address)) else {
                return Err(LabError::Invalid(format!(
                    "backend {} ({}) is on none of site {}'s LAN subnets, so the lab cannot attach it",
                    b.name, b.address, site.name
                )));
            };
            let addr = IpNet::new(b.address, net.prefix_len())
                .map_err(|e| LabError::Invalid(format!("backend {}: {e}", b.name)))?;
            let dsr = dsr_vips.get(b.name.as_str()).cloned().unwrap_or_default();
            if !dsr.is_empty() {
                for key in ["net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_announce"] {
                    spec.sysctls.push(SysctlSpec {
                        namespace: b.name.clone(),
                        key: key.into(),
                        value: if key.ends_with("ignore") { "1" } else { "2" }.into(),
                    });
                }
            }
            spec.namespaces.push(NamespaceSpec {
                name: b.name.clone(),
                forwarding: false,
                multipath_hash_l4: false,
                loopback: dsr,
            });
            lan_ports.push(BridgePort {
                namespace: b.name.clone(),
                ifname: "lan".into(),
                addresses: vec![addr],
                peer_ifname: None,
            });
            gateway_routes(&mut spec, &b.name, &[addr], &first_node_lan);
        }

        if !lan_ports.is_empty() {
            let sw = switch_ns(&site.name);
            spec.namespaces.push(NamespaceSpec {
                name: sw.clone(),
                forwarding: false,
                multipath_hash_l4: false,
                loopback: Vec::new(),
            });
            spec.bridges.push(BridgeSpec {
                namespace: sw,
                name: "br0".into(),
                addresses: Vec::new(),
                ports: lan_ports,
            });
        }
    }

    spec.validate()?;
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_pop() -> LabSpec {
        let dep = edge_topology::parse(edge_topology::TWO_POP).expect("valid topology");
        plan(&dep).expect("plan")
    }

    #[test]
    fn xdp_services_get_dsr_backends_and_accept_local_nodes() {
        assert!(two_pop().sysctls.is_empty(), "no DSR without an xdp service");
        let text = edge_topology::TWO_POP.replace(
            "{ protocol = \"tcp\", port = 9000, algorithm = \"maglev\", dataplane = \"userspace\", backend_port = 9000 }",
            "{ protocol = \"tcp\", port = 9000, dataplane = \"xdp\", backend_port = 9000 }",
        );
        let spec = plan(&edge_topology::parse(&text).expect("valid")).expect("plan");
        let vip: IpNet = "203.0.113.10/32".parse().expect("net");
        for b in ["ams-b1", "ams-b2", "nyc-b1", "nyc-b2"] {
            let ns = spec.namespaces.iter().find(|n| n.name == b).expect("backend");
            // IPv4 backends: only the IPv4 VIP address.
            assert_eq!(ns.loopback, vec![vip], "{b}");
            for (k, v) in [
                ("net.ipv4.conf.all.arp_ignore", "1"),
                ("net.ipv4.conf.all.arp_announce", "2"),
            ] {
                assert!(
                    spec.sysctls
                        .iter()
                        .any(|s| s.namespace == b && s.key == k && s.value == v),
                    "{b} {k}"
                );
            }
        }
        for n in ["ams-e1", "ams-e2", "nyc-e1", "nyc-e2"] {
            assert!(
                spec.sysctls
                    .iter()
                    .any(|s| s.namespace == n && s.key == "net.ipv4.conf.all.accept_local")
            );
        }
        assert!(!spec.sysctls.iter().any(|s| s.namespace == "ams-r1"));
    }

    #[test]
    fn two_pop_plan_has_every_host_and_link() {
        let spec = two_pop();
        assert_eq!(spec.name, "twopop");
        let ns: Vec<&str> = spec.namespaces.iter().map(|n| n.name.as_str()).collect();
        for want in [
            "ams-r1", "nyc-r1", "ams-e1", "ams-e2", "nyc-e1", "nyc-e2", "ams-c1", "nyc-c1", "ams-b1",
            "ams-b2", "nyc-b1", "nyc-b2", "ams-sw", "nyc-sw",
        ] {
            assert!(ns.contains(&want), "missing namespace {want} in {ns:?}");
        }
        // 4 node links + 2 client links + 1 router-router link.
        assert_eq!(spec.links.len(), 7);
        let inter = spec
            .links
            .iter()
            .find(|l| l.a.ifname == "p-nyc-r1")
            .expect("router-router link");
        let a: Vec<String> = inter.a.addresses.iter().map(|a| a.to_string()).collect();
        assert_eq!(a, ["198.18.100.1/24", "2001:db8:100::1/64"]);
        assert_eq!(spec.bridges.len(), 2);
        assert_eq!(
            spec.bridges[0].ports.len(),
            4,
            "2 nodes + 2 backends on the ams LAN"
        );
    }

    #[test]
    fn routers_peer_with_their_nodes_per_family_and_with_each_other() {
        let spec = two_pop();
        let ams = spec.routers.iter().find(|r| r.name == "ams-r1").expect("ams-r1");
        assert_eq!(ams.kind, RouterKind::Frr);
        let n: Vec<String> = ams
            .neighbors
            .iter()
            .map(|n| format!("{}/{}", n.address, n.asn))
            .collect();
        assert_eq!(
            n,
            [
                "198.18.11.2/65011",
                "2001:db8:11::2/65011",
                "198.18.12.2/65011",
                "2001:db8:12::2/65011",
                "198.18.100.2/65002",
                "2001:db8:100::2/65002",
            ]
        );
        assert!(ams.multipath);
        let nyc = spec.routers.iter().find(|r| r.name == "nyc-r1").expect("nyc-r1");
        assert_eq!(nyc.kind, RouterKind::Bird);
    }

    #[test]
    fn hosts_route_the_lab_ranges_to_their_gateway_and_never_a_default() {
        let spec = two_pop();
        let c: Vec<String> = spec
            .routes
            .iter()
            .filter(|r| r.namespace == "ams-c1")
            .map(|r| format!("{} via {}", r.destination, r.gateway))
            .collect();
        assert_eq!(
            c,
            [
                "198.18.0.0/15 via 198.18.1.1",
                "203.0.113.0/24 via 198.18.1.1",
                "198.51.100.0/24 via 198.18.1.1",
                "2001:db8::/32 via 2001:db8:1::1",
            ]
        );
        assert!(spec.routes.iter().all(|r| r.destination.prefix_len() > 0));
        let b: Vec<String> = spec
            .routes
            .iter()
            .filter(|r| r.namespace == "nyc-b2")
            .map(|r| r.gateway.to_string())
            .collect();
        assert_eq!(
            b, ["198.19.2.1"; 3],
            "IPv4-only backend routes via nyc-e1's LAN address"
        );
    }

    #[test]
    fn programs_start_backends_before_nodes() {
        let dep = edge_topology::parse(edge_topology::TWO_POP).expect("valid topology");
        let mut spec = plan(&dep).expect("plan");
        add_programs(
            &mut spec,
            &dep,
            &Programs {
                edge_bin: "/opt/edge".into(),
                config: "/run/lab/two-pop/deployment.toml".into(),
            },
        );
        let names: Vec<&str> = spec.processes.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "ams-b1-srv",
                "ams-b2-srv",
                "nyc-b1-srv",
                "nyc-b2-srv",
                "ams-e1-edge",
                "ams-e2-edge",
                "nyc-e1-edge",
                "nyc-e2-edge"
            ]
        );
        let b1 = &spec.processes[0];
        assert_eq!(b1.namespace, "ams-b1");
        assert!(b1.argv.windows(2).any(|w| w == ["--http", "198.19.1.11:8080"]));
        spec.validate().expect("still a valid spec");
    }

    #[test]
    fn an_external_router_cannot_be_emulated() {
        let text = edge_topology::TWO_POP.replace("kind = \"bird\"", "kind = \"external\"");
        let dep = edge_topology::parse(&text).expect("valid topology");
        let err = plan(&dep).expect_err("must refuse");
        assert!(err.to_string().contains("external"), "{err}");
    }
}

/// The programs a full lab runs besides the routers.
#[derive(Debug, Clone)]
pub struct Programs {
    /// The `edge` binary (it also serves as the backend server:
    /// `edge lab backend`).
    pub edge_bin: std::path::PathBuf,
    /// The topology file the nodes run from.
    pub config: std::path::PathBuf,
}

/// Adds one backend server per backend and one `edge run` per node to the
/// lab, backends first so the nodes' first health checks find them up.
pub fn add_programs(spec: &mut LabSpec, dep: &topo::Deployment, p: &Programs) {
    let bin = p.edge_bin.display().to_string();
    let mut seen = std::collections::BTreeSet::new();
    for pool in dep.pools.values() {
        for b in &pool.backends {
            if !seen.insert(b.name.clone()) {
                continue;
            }
            spec.processes.push(crate::spec::ProcessSpec {
                name: format!("{}-srv", b.name),
                namespace: b.name.clone(),
                argv: vec![
                    bin.clone(),
                    "lab".into(),
                    "backend".into(),
                    "--name".into(),
                    b.name.clone(),
                    "--http".into(),
                    b.socket_addr().to_string(),
                    "--tcp".into(),
                    "0.0.0.0:9000".into(),
                    "--udp".into(),
                    "0.0.0.0:9000".into(),
                ],
                env: Default::default(),
                log: None,
                cwd: None,
            });
        }
    }
    for n in dep.nodes() {
        spec.processes.push(crate::spec::ProcessSpec {
            name: format!("{}-edge", n.name),
            namespace: n.name.clone(),
            argv: vec![
                bin.clone(),
                "run".into(),
                "--log-format".into(),
                "json".into(),
                "--config".into(),
                p.config.display().to_string(),
                "--node".into(),
                n.name.clone(),
            ],
            env: Default::default(),
            log: None,
            cwd: None,
        });
    }
}
