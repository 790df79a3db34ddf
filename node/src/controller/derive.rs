//! The controller's pure derivations: from the topology, this node's name and
//! the merged health snapshot, compute what the node announces, what DNS
//! answers may use and which backends the L4/L7 tiers send to.
//!
//! Nothing here does I/O or reads a clock; the controller state machine
//! ([`super::machine`]) calls these on every input and hands the results to
//! the drivers of the BGP speaker, the DNS server and the proxies.

use std::collections::{BTreeMap, BTreeSet};

use edge_topology::health::HealthSnapshot;
use std::time::Instant;

use edge_bgp::{Community, GRACEFUL_SHUTDOWN, LargeCommunity, Route};
use edge_l4::{BackendSpec, L4State, Protocol as L4Protocol, SchedulerKind, ServiceKey, ServiceSpec};
use edge_topology::{Backend, Check, Deployment, InitState, L4Algorithm};
use ipnet::IpNet;
use serde::Serialize;

/// What the node does with one VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// Announce normally.
    Announce,
    /// Planned drain: announce with GRACEFUL_SHUTDOWN, then withdraw.
    Drain,
    /// Withdraw now (no healthy service).
    Withdraw,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    pub decision: Decision,
    /// Healthy, undrained backends that count towards `min_healthy`.
    pub healthy: usize,
    pub needed: u32,
    /// Why, in words an operator reads in `edge status`.
    pub reason: String,
}

/// Whether a backend's health counts for announcing a VIP or for sending
/// traffic to it (they differ only before its first check result).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    Announce,
    Traffic,
}

/// Whether `backend` counts as up for `node`: this node's own checker
/// result, since the VIP's serviceability is about the path from *this*
/// node. A pool without a check is always up (HAProxy semantics). Before
/// its first result a checked backend takes traffic when the check's
/// `init_state` is `up` (no 503 while a starting node runs its first
/// checks), but never counts towards announcing a VIP: the announcement is
/// what brings traffic here, so it waits for a real result.
fn backend_up(
    node: &str,
    check: Option<&Check>,
    b: &Backend,
    view: &HealthSnapshot,
    purpose: Purpose,
) -> bool {
    let Some(check) = check else {
        return true;
    };
    match view.reports.get(node).and_then(|r| r.backends.get(&b.name)) {
        Some(up) => *up,
        None => purpose == Purpose::Traffic && check.init_state == InitState::Up,
    }
}

/// Whether this node has a check result for every backend of its site that
/// it checks (a node that just started has none).
pub fn checks_concluded(dep: &Deployment, node: &str, view: &HealthSnapshot) -> bool {
    let Some((site, _)) = dep.node(node) else {
        return true;
    };
    let own = view.reports.get(node);
    dep.pools
        .values()
        .filter(|p| p.check.is_some())
        .flat_map(|p| p.backends.iter())
        .filter(|b| b.site == site.name)
        .all(|b| own.is_some_and(|r| r.backends.contains_key(&b.name)))
}

/// The decision for every VIP the node's site announces.
pub fn vip_verdicts(dep: &Deployment, node: &str, view: &HealthSnapshot) -> BTreeMap<String, Verdict> {
    let mut out = BTreeMap::new();
    let Some((site, _)) = dep.node(node) else {
        return out;
    };
    let intent = &view.intent;
    // Drain precedence: an operator's planned drain of the site or the node
    // wins over health, because the point of GSHUT is to move traffic away
    // gracefully before anything breaks.
    let drained = if intent.drained_sites.contains(&site.name) {
        Some(format!("site {} is drained", site.name))
    } else if intent.drained_nodes.contains(node) {
        Some(format!("node {node} is drained"))
    } else {
        None
    };
    for vip in dep.vips_of_site(&site.name) {
        let services: Vec<_> = dep.services.values().filter(|s| s.vip == vip.name).collect();
        let mut healthy = usize::MAX;
        let mut weakest = String::new();
        for svc in &services {
            let Some(pool) = dep.pools.get(&svc.pool) else {
                continue;
            };
            let local = |b: &&Backend| b.site == site.name && !intent.drained_backends.contains(&b.name);
            let up = |b: &&Backend| backend_up(node, pool.check.as_ref(), b, view, Purpose::Announce);
            let primaries = pool
                .backends
                .iter()
                .filter(local)
                .filter(|b| !b.backup)
                .filter(up)
                .count();
            // Backups serve only when every primary is down (HAProxy `backup`).
            let n = if primaries > 0 {
                primaries
            } else {
                pool.backends
                    .iter()
                    .filter(local)
                    .filter(|b| b.backup)
                    .filter(up)
                    .count()
            };
            if n < healthy {
                healthy = n;
                weakest = format!("service {} has {n} healthy backends at {}", svc.name, site.name);
            }
        }
        let (decision, reason) = if let Some(why) = &drained {
            (Decision::Drain, why.clone())
        } else if services.is_empty() {
            // A VIP without backends (the DNS VIP) is served by the node itself.
            healthy = 0;
            (Decision::Announce, "served by the node itself".to_string())
        } else if healthy >= vip.min_healthy as usize {
            (Decision::Announce, weakest)
        } else {
            (
                Decision::Withdraw,
                format!("{weakest}, needs {}", vip.min_healthy),
            )
        };
        out.insert(
            vip.name.clone(),
            Verdict {
                decision,
                healthy: if healthy == usize::MAX { 0 } else { healthy },
                needed: vip.min_healthy,
                reason,
            },
        );
    }
    out
}

/// What the node tells its routers about one VIP right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Announcement {
    Normal,
    /// Planned drain in progress: announced with GRACEFUL_SHUTDOWN.
    GracefulShutdown,
    Withdrawn,
}

/// Turns verdicts into announcements: a VIP in `Drain` is announced with
/// GRACEFUL_SHUTDOWN from the moment it entered the drain (`draining_since`)
/// for the deployment's drain time, then withdrawn.
pub fn announcements(
    dep: &Deployment,
    verdicts: &BTreeMap<String, Verdict>,
    draining_since: &BTreeMap<String, Instant>,
    now: Instant,
) -> BTreeMap<String, Announcement> {
    verdicts
        .iter()
        .map(|(vip, v)| {
            let a = match v.decision {
                Decision::Announce => Announcement::Normal,
                Decision::Withdraw => Announcement::Withdrawn,
                Decision::Drain => match draining_since.get(vip) {
                    Some(t) if now.saturating_duration_since(*t) >= dep.bgp.drain => Announcement::Withdrawn,
                    _ => Announcement::GracefulShutdown,
                },
            };
            (vip.clone(), a)
        })
        .collect()
}

/// The BGP routes for a set of announcements, with each VIP's policy.
pub fn routes(dep: &Deployment, ann: &BTreeMap<String, Announcement>) -> BTreeSet<Route> {
    let mut out = BTreeSet::new();
    for (name, a) in ann {
        let Some(vip) = dep.vips.get(name) else {
            continue;
        };
        if *a == Announcement::Withdrawn {
            continue;
        }
        let p = &vip.announce;
        for prefix in &vip.prefixes {
            let mut r = Route::new(*prefix);
            r.prepend = p.prepend;
            r.med = p.med;
            r.local_pref = p.local_pref;
            r.communities = p
                .communities
                .iter()
                .map(|(a, b)| Community((u32::from(*a) << 16) | u32::from(*b)))
                .collect();
            if *a == Announcement::GracefulShutdown {
                r.communities.insert(GRACEFUL_SHUTDOWN);
            }
            r.large_communities = p
                .large_communities
                .iter()
                .map(|(g, l1, l2)| LargeCommunity(*g, *l1, *l2))
                .collect();
            out.insert(r);
        }
    }
    out
}

/// The prefixes that belong on `lo`: those of every VIP the node serves or
/// drains. A drained VIP stays local even after its withdraw: the routers
/// send no new flows, but connections that still reach this node (through
/// the L4 hand-off, or routers slow to converge) must keep working.
pub fn local_prefixes(dep: &Deployment, verdicts: &BTreeMap<String, Verdict>) -> BTreeSet<IpNet> {
    verdicts
        .iter()
        .filter(|(_, v)| v.decision != Decision::Withdraw)
        .filter_map(|(name, _)| dep.vips.get(name))
        .flat_map(|v| v.prefixes.iter().copied())
        .collect()
}

/// A backend as the L4/L7 tiers should use it right now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ActiveBackend {
    pub name: String,
    pub addr: std::net::SocketAddr,
    pub weight: u32,
    pub backup: bool,
    /// Drained by the operator: keep existing flows, send no new ones.
    pub draining: bool,
}

/// The backends of `pool` at the node's site that are up (or draining).
pub fn backend_set(dep: &Deployment, node: &str, pool: &str, view: &HealthSnapshot) -> Vec<ActiveBackend> {
    let (Some((site, _)), Some(p)) = (dep.node(node), dep.pools.get(pool)) else {
        return Vec::new();
    };
    p.backends
        .iter()
        .filter(|b| b.site == site.name)
        .filter(|b| backend_up(node, p.check.as_ref(), b, view, Purpose::Traffic))
        .map(|b| ActiveBackend {
            name: b.name.clone(),
            addr: b.socket_addr(),
            weight: view.intent.weights.get(&b.name).copied().unwrap_or(b.weight),
            backup: b.backup,
            draining: view.intent.drained_backends.contains(&b.name),
        })
        .collect()
}

/// The addresses a service listens on: the host addresses of its VIP's
/// prefixes (a wider prefix names a range, not one listener).
pub fn listen_addrs(vip: &edge_topology::Vip) -> Vec<std::net::IpAddr> {
    vip.prefixes
        .iter()
        .filter(|p| p.prefix_len() == p.max_prefix_len())
        .map(|p| p.addr())
        .collect()
}

fn scheduler(a: L4Algorithm) -> SchedulerKind {
    match a {
        L4Algorithm::Maglev => SchedulerKind::Maglev,
        L4Algorithm::Rr => SchedulerKind::RoundRobin,
        L4Algorithm::Wrr => SchedulerKind::WeightedRoundRobin,
        L4Algorithm::Lc => SchedulerKind::LeastConnections,
        L4Algorithm::Wlc => SchedulerKind::WeightedLeastConnections,
        L4Algorithm::Sh => SchedulerKind::SourceHash,
    }
}

/// The L4 desired state of this node: every L4 listener of every service on
/// a VIP of its site, with the pool's backends at the site that are up.
/// Backups appear only when no primary is up; drained backends keep their
/// flows but take no new ones.
pub fn l4_state(dep: &Deployment, node: &str, view: &HealthSnapshot) -> L4State {
    l4_state_of(dep, node, view, None)
}

/// [`l4_state`] restricted to the listeners of one dataplane (all when
/// `kind` is `None`).
pub fn l4_state_of(
    dep: &Deployment,
    node: &str,
    view: &HealthSnapshot,
    kind: Option<edge_topology::DataplaneKind>,
) -> L4State {
    let mut state = L4State::default();
    let Some((site, _)) = dep.node(node) else {
        return state;
    };
    for svc in dep.services.values() {
        let Some(vip) = dep.vips.get(&svc.vip) else {
            continue;
        };
        if !vip.sites.contains(&site.name) {
            continue;
        }
        let set = backend_set(dep, node, &svc.pool, view);
        let primaries_up = set.iter().any(|b| !b.backup && !b.draining);
        for l in svc.l4.iter().filter(|l| kind.is_none_or(|k| k == l.dataplane)) {
            let proto = match l.protocol {
                edge_topology::Protocol::Tcp => L4Protocol::Tcp,
                edge_topology::Protocol::Udp => L4Protocol::Udp,
            };
            // Kernel dataplanes translate addresses, so they cannot take an
            // IPv6 VIP to IPv4 backends (the userspace proxy can): such a
            // listener address is left to the local stack (see l4::start).
            let same_family_only = l.dataplane != edge_topology::DataplaneKind::Userspace;
            for ip in listen_addrs(vip) {
                let fits = |b: &&ActiveBackend| !same_family_only || b.addr.is_ipv4() == ip.is_ipv4();
                if same_family_only && !set.iter().any(|b| fits(&b)) {
                    continue;
                }
                let mut spec = ServiceSpec::new(scheduler(l.algorithm));
                for b in set.iter().filter(|b| b.backup != primaries_up).filter(fits) {
                    let addr =
                        std::net::SocketAddr::new(b.addr.ip(), l.backend_port.unwrap_or(b.addr.port()));
                    let bs = if b.draining {
                        BackendSpec::draining(b.weight)
                    } else {
                        BackendSpec::active(b.weight)
                    };
                    spec = spec.with_backend(addr, bs);
                }
                state = state.with_service(ServiceKey::new(ip, l.port, proto), spec);
            }
        }
    }
    state
}

#[cfg(test)]
mod tests {
    use super::*;
    use edge_topology::health::NodeReport;

    fn dep() -> Deployment {
        edge_topology::parse(edge_topology::TWO_POP).expect("two-pop")
    }

    fn view_with(node: &str, site: &str, up: &[(&str, bool)]) -> HealthSnapshot {
        let mut v = HealthSnapshot::default();
        v.merge(NodeReport {
            node: node.into(),
            site: site.into(),
            incarnation: 1,
            seq: 1,
            backends: up.iter().map(|(b, u)| (b.to_string(), *u)).collect(),
            ..Default::default()
        });
        v.alive.insert(node.into());
        v
    }

    #[test]
    fn a_vip_is_announced_while_enough_backends_are_healthy() {
        let d = dep();
        let v = view_with("ams-e1", "ams", &[("ams-b1", true), ("ams-b2", false)]);
        let out = vip_verdicts(&d, "ams-e1", &v);
        assert_eq!(out["anycast"].decision, Decision::Announce);
        assert_eq!(out["anycast"].healthy, 1);
        assert_eq!(out["ams-web"].decision, Decision::Announce);
        assert!(!out.contains_key("nyc-web"), "nyc's VIP is not ams's to announce");
        assert_eq!(
            out["dns"].decision,
            Decision::Announce,
            "no backends: node serves it"
        );
    }

    #[test]
    fn a_vip_is_withdrawn_when_its_backends_fail_or_are_unknown() {
        let d = dep();
        let v = view_with("ams-e1", "ams", &[("ams-b1", false), ("ams-b2", false)]);
        let out = vip_verdicts(&d, "ams-e1", &v);
        assert_eq!(out["anycast"].decision, Decision::Withdraw);
        assert!(
            out["anycast"].reason.contains("0 healthy"),
            "{}",
            out["anycast"].reason
        );
        // Another node's good news does not count for this node's path.
        let v = view_with("ams-e2", "ams", &[("ams-b1", true), ("ams-b2", true)]);
        assert_eq!(
            vip_verdicts(&d, "ams-e1", &v)["anycast"].decision,
            Decision::Withdraw
        );
    }

    #[test]
    fn drain_precedence_site_then_node_over_health() {
        let d = dep();
        let mut v = view_with("ams-e1", "ams", &[("ams-b1", false), ("ams-b2", false)]);
        v.intent.drained_nodes.insert("ams-e1".into());
        let out = vip_verdicts(&d, "ams-e1", &v);
        assert_eq!(
            out["anycast"].decision,
            Decision::Drain,
            "planned drain wins over health"
        );
        assert_eq!(out["dns"].decision, Decision::Drain);
        v.intent.drained_sites.insert("ams".into());
        assert!(
            vip_verdicts(&d, "ams-e1", &v)["anycast"]
                .reason
                .contains("site ams")
        );
        assert_eq!(
            vip_verdicts(&d, "ams-e2", &v)["anycast"].decision,
            Decision::Drain
        );
        // nyc is untouched by ams's drain.
        let n = view_with("nyc-e1", "nyc", &[("nyc-b1", true)]);
        let mut n2 = n.clone();
        n2.intent = v.intent.clone();
        assert_eq!(
            vip_verdicts(&d, "nyc-e1", &n2)["anycast"].decision,
            Decision::Announce
        );
    }

    #[test]
    fn lo_holds_announced_and_draining_vips_only() {
        let d = dep();
        let now = Instant::now();
        let v = view_with("ams-e1", "ams", &[("ams-b1", false), ("ams-b2", false)]);
        let verdicts = vip_verdicts(&d, "ams-e1", &v);
        let p: Vec<String> = local_prefixes(&d, &verdicts)
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(p, ["203.0.113.53/32"], "only the DNS VIP survives dead backends");
        let mut v = view_with("ams-e1", "ams", &[("ams-b1", true)]);
        v.intent.drained_nodes.insert("ams-e1".into());
        let verdicts = vip_verdicts(&d, "ams-e1", &v);
        // Even after the drain time, when nothing is announced any more.
        let since = verdicts.keys().map(|k| (k.clone(), now)).collect();
        let ann_after = announcements(&d, &verdicts, &since, now + d.bgp.drain * 2);
        assert!(
            ann_after.values().all(|a| *a == Announcement::Withdrawn),
            "{ann_after:?}"
        );
        let p = local_prefixes(&d, &verdicts);
        assert_eq!(p.len(), 4, "a drained node keeps every VIP local: {p:?}");
    }

    #[test]
    fn a_drain_announces_gshut_for_the_drain_time_then_withdraws() {
        let d = dep();
        let t0 = Instant::now();
        let mut v = view_with("ams-e1", "ams", &[("ams-b1", true), ("ams-b2", true)]);
        let verdicts = vip_verdicts(&d, "ams-e1", &v);
        let normal = routes(&d, &announcements(&d, &verdicts, &BTreeMap::new(), t0));
        let anycast: Vec<&Route> = normal
            .iter()
            .filter(|r| {
                r.prefix.to_string().starts_with("203.0.113.10") || r.prefix.to_string().contains("ffff")
            })
            .collect();
        assert_eq!(anycast.len(), 2, "v4 and v6 prefixes of the anycast VIP");
        assert!(anycast.iter().all(|r| r.med == Some(50)
            && r.communities.contains(&Community(65000 << 16 | 100))
            && r.large_communities.contains(&LargeCommunity(65000, 1, 10))
            && !r.communities.contains(&GRACEFUL_SHUTDOWN)));

        v.intent.drained_nodes.insert("ams-e1".into());
        let verdicts = vip_verdicts(&d, "ams-e1", &v);
        let since: BTreeMap<String, Instant> = verdicts.keys().map(|k| (k.clone(), t0)).collect();
        let during = routes(&d, &announcements(&d, &verdicts, &since, t0 + d.bgp.drain / 2));
        assert_eq!(during.len(), normal.len(), "same prefixes while draining");
        assert!(during.iter().all(|r| r.communities.contains(&GRACEFUL_SHUTDOWN)));
        let after = announcements(&d, &verdicts, &since, t0 + d.bgp.drain);
        assert!(after.values().all(|a| *a == Announcement::Withdrawn));
        assert!(routes(&d, &after).is_empty());
    }

    #[test]
    fn drained_backends_do_not_count_and_are_marked_draining() {
        let d = dep();
        let mut v = view_with("ams-e1", "ams", &[("ams-b1", true), ("ams-b2", true)]);
        v.intent.drained_backends.insert("ams-b1".into());
        v.intent.weights.insert("ams-b2".into(), 7);
        assert_eq!(vip_verdicts(&d, "ams-e1", &v)["anycast"].healthy, 1);
        let set = backend_set(&d, "ams-e1", "web", &v);
        assert_eq!(set.len(), 2);
        assert!(set[0].draining && !set[1].draining);
        assert_eq!(set[1].weight, 7);
        assert!(
            set.iter()
                .all(|b| b.addr.ip().to_string().starts_with("198.19.1."))
        );
    }

    #[test]
    fn l4_state_lists_listeners_with_backends_that_are_up() {
        let d = dep();
        let mut v = view_with("ams-e1", "ams", &[("ams-b1", true), ("ams-b2", false)]);
        let st = l4_state(&d, "ams-e1", &v);
        let keys: Vec<String> = st
            .services
            .keys()
            .map(|k| format!("{:?} {}", k.protocol, k.socket_addr()))
            .collect();
        assert_eq!(
            keys,
            [
                "Tcp 203.0.113.10:9000",
                "Udp 203.0.113.10:9000",
                "Tcp [2001:db8:ffff::10]:9000",
                "Udp [2001:db8:ffff::10]:9000"
            ]
        );
        for spec in st.services.values() {
            let b: Vec<String> = spec.backends.keys().map(|a| a.to_string()).collect();
            assert_eq!(b, ["198.19.1.11:9000"], "backend_port 9000, only the healthy one");
        }
        v.intent.drained_backends.insert("ams-b1".into());
        let st = l4_state(&d, "ams-e1", &v);
        let spec = st.services.values().next().expect("a service");
        assert!(
            spec.backends.values().all(|b| !b.takes_new_flows()),
            "drained: no new flows"
        );
    }

    #[test]
    fn before_its_first_check_a_backend_takes_traffic_but_does_not_get_a_vip_announced() {
        let d = dep();
        // ams-e1 has a result for ams-b1 only; ams-b2 is unknown.
        let v = view_with("ams-e1", "ams", &[("ams-b1", false)]);
        let set = backend_set(&d, "ams-e1", "web", &v);
        let names: Vec<&str> = set.iter().map(|b| b.name.as_str()).collect();
        assert_eq!(
            names,
            ["ams-b2"],
            "init_state up: unknown serves, known-down does not"
        );
        assert_eq!(
            vip_verdicts(&d, "ams-e1", &v)["anycast"].decision,
            Decision::Withdraw
        );

        let down = edge_topology::parse(&edge_topology::TWO_POP.replace(
            "rise = 2, fall = 3 }",
            "rise = 2, fall = 3, init_state = \"down\" }",
        ))
        .expect("parse");
        assert!(
            backend_set(&down, "ams-e1", "web", &v).is_empty(),
            "init_state down"
        );
    }

    #[test]
    fn an_unknown_init_state_is_a_field_error() {
        let err = edge_topology::parse(&edge_topology::TWO_POP.replace(
            "rise = 2, fall = 3 }",
            "rise = 2, fall = 3, init_state = \"maybe\" }",
        ))
        .expect_err("invalid");
        assert!(err.to_string().contains("pools.web.check.init_state"), "{err}");
    }
}
