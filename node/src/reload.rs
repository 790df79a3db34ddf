//! What a reload changes, per tier, before anything is applied.
//!
//! [`Node::reload`](crate::Node::reload) loads and validates the new file,
//! asks each tier what would change (these pure diffs), refuses the whole
//! reload when something can only change with a restart (a reload that says
//! "ok" has applied everything it read), and otherwise applies the tiers in
//! an order where only the first steps can fail.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use edge_bgp::PeerConfig;
use edge_topology::Deployment;
use serde::Serialize;

/// The changes of one reload, by tier, in the order they are applied.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    lines: Vec<(&'static str, String)>,
    restart: Vec<String>,
}

impl Changes {
    /// A change of `tier` that the reload applies.
    pub fn push(&mut self, tier: &'static str, line: impl Into<String>) {
        self.lines.push((tier, line.into()));
    }

    /// A change that only a restart can apply: the reload is refused.
    pub fn needs_restart(&mut self, line: impl Into<String>) {
        self.restart.push(line.into());
    }

    /// What only a restart can apply.
    pub fn restart(&self) -> &[String] {
        &self.restart
    }

    /// Whether any tier changes.
    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Replaces the lines of `tier` with what the tier reported when it
    /// applied them (it knows more than the dry diff, e.g. certificates
    /// whose files changed).
    pub fn replace(&mut self, tier: &'static str, lines: impl IntoIterator<Item = String>) {
        self.lines.retain(|(t, _)| *t != tier);
        self.lines.extend(lines.into_iter().map(|l| (tier, l)));
    }
}

impl fmt::Display for Changes {
    /// One line per change, `tier: change`; `no changes` when there is none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.lines.is_empty() {
            return writeln!(f, "no changes");
        }
        for (tier, line) in &self.lines {
            writeln!(f, "{tier}: {line}")?;
        }
        Ok(())
    }
}

/// Names added, removed and changed between two maps of serialisable
/// items, as `kind name: added|removed|changed` lines.
fn section<T: Serialize>(kind: &str, old: &BTreeMap<String, T>, new: &BTreeMap<String, T>) -> Vec<String> {
    let mut out = Vec::new();
    for (name, n) in new {
        match old.get(name) {
            None => out.push(format!("{kind} {name}: added")),
            Some(o) if !same(o, n) => out.push(format!("{kind} {name}: changed")),
            Some(_) => {}
        }
    }
    for name in old.keys().filter(|k| !new.contains_key(*k)) {
        out.push(format!("{kind} {name}: removed"));
    }
    out
}

/// The deployment-wide changes: sites, VIPs, pools and services (what the
/// controller derives the routes, addresses and backend sets from) and the
/// BGP settings it uses live (drain time, communities are per VIP).
pub fn topology(old: &Deployment, new: &Deployment, changes: &mut Changes) {
    for line in section("site", &old.sites, &new.sites)
        .into_iter()
        .chain(section("vip", &old.vips, &new.vips))
        .chain(section("pool", &old.pools, &new.pools))
        .chain(section("service", &old.services, &new.services))
    {
        changes.push("topology", line);
    }
    if old.bgp.drain != new.bgp.drain {
        changes.push(
            "topology",
            format!("bgp drain time {:?} -> {:?}", old.bgp.drain, new.bgp.drain),
        );
    }
}

/// What node `name` binds at start and cannot change live (`listeners`:
/// whether the node serves its L4, L7 and DNS listeners at all).
pub fn restart_only(old: &Deployment, new: &Deployment, name: &str, listeners: bool, changes: &mut Changes) {
    if let (Some((_, o)), Some((_, n))) = (old.node(name), new.node(name)) {
        if o.admin != n.admin {
            changes.needs_restart(format!("node {name}: admin address {} -> {}", o.admin, n.admin));
        }
        if o.gossip != n.gossip {
            changes.needs_restart(format!(
                "node {name}: gossip address {} -> {}",
                o.gossip, n.gossip
            ));
        }
        if (o.asn, o.router_id) != (n.asn, n.router_id) {
            changes.needs_restart(format!("node {name}: BGP identity (asn, router_id)"));
        }
    }
    if !same(&old.bus, &new.bus) {
        changes.needs_restart("bus settings (the gossip bus is joined at start)");
    }
    if !listeners {
        return;
    }
    if old.l4 != new.l4 {
        changes.needs_restart("l4 settings (the dataplanes are built at start)");
    }
    // What the L4 stage binds or attaches at start; the algorithms and
    // backends behind a listener change live through the controller.
    let l4_listeners = |d: &Deployment| -> BTreeSet<String> {
        let Some((site, _)) = d.node(name) else {
            return BTreeSet::new();
        };
        d.services
            .values()
            .filter_map(|s| {
                d.vips
                    .get(&s.vip)
                    .filter(|v| v.sites.contains(&site.name))
                    .map(|v| (s, v))
            })
            .flat_map(|(s, v)| {
                s.l4.iter().map(move |l| {
                    format!(
                        "{} {:?} {} {:?} {:?}",
                        s.name, l.protocol, l.port, l.dataplane, v.prefixes
                    )
                })
            })
            .collect()
    };
    if l4_listeners(old) != l4_listeners(new) {
        changes.needs_restart("l4 listeners or dataplanes of this node's site (bound at start)");
    }
    let handoff = |d: &Deployment| d.node(name).map(|(s, _)| s.handoff);
    if handoff(old) != handoff(new) {
        changes.needs_restart("the site's L4 hand-off");
    }
    let dns_vip = |d: &Deployment| d.dns.as_ref().and_then(|c| c.vip.clone().map(|v| (v, c.port)));
    if dns_vip(old) != dns_vip(new) {
        changes.needs_restart("the DNS server's VIP or port (bound at start)");
    }
}

/// The peer changes `new` makes to `old`, as `PeerChanges` would report them.
pub fn peers(old: &[PeerConfig], new: &[PeerConfig]) -> Vec<String> {
    let by = |v: &[PeerConfig]| -> BTreeMap<std::net::IpAddr, PeerConfig> {
        v.iter().map(|p| (p.address, p.clone())).collect()
    };
    let (o, n) = (by(old), by(new));
    let mut out = Vec::new();
    for (addr, p) in &n {
        match o.get(addr) {
            None => out.push(format!("added peer {addr}")),
            Some(q) => {
                let d = q.differences(p);
                if !d.is_empty() {
                    out.push(format!("changed peer {addr} ({})", d.join(", ")));
                }
            }
        }
    }
    for addr in o.keys().filter(|a| !n.contains_key(*a)) {
        out.push(format!("removed peer {addr}"));
    }
    out
}

/// Whether two serialisable settings are equal (for types without
/// `PartialEq`).
fn same<T: Serialize>(a: &T, b: &T) -> bool {
    serde_json::to_value(a).ok() == serde_json::to_value(b).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dep(text: &str) -> Deployment {
        edge_topology::parse(text).expect("parse")
    }

    #[test]
    fn an_unchanged_file_changes_nothing() {
        let d = dep(edge_topology::TWO_POP);
        let mut c = Changes::default();
        topology(&d, &d, &mut c);
        restart_only(&d, &d, "ams-e1", true, &mut c);
        assert!(c.is_empty() && c.restart().is_empty(), "{c}");
        assert_eq!(c.to_string(), "no changes\n");
    }

    #[test]
    fn vip_and_pool_changes_are_listed_by_name() {
        let old = dep(edge_topology::TWO_POP);
        let new = dep(&edge_topology::TWO_POP
            .replace("med = 50", "med = 60")
            .replace("drain = \"3s\"", "drain = \"5s\""));
        let mut c = Changes::default();
        topology(&old, &new, &mut c);
        assert_eq!(
            c.to_string(),
            "topology: vip anycast: changed\ntopology: bgp drain time 3s -> 5s\n"
        );
    }

    #[test]
    fn what_is_bound_at_start_needs_a_restart() {
        let old = dep(edge_topology::TWO_POP);
        let new = dep(&edge_topology::TWO_POP
            .replace("port = 9000, algorithm = \"maglev\", dataplane = \"userspace\", backend_port = 9000 },\n  { protocol = \"udp\"", "port = 9001, algorithm = \"maglev\", dataplane = \"userspace\", backend_port = 9000 },\n  { protocol = \"udp\"")
            .replace("interval = \"100ms\"", "interval = \"200ms\""));
        let mut c = Changes::default();
        restart_only(&old, &new, "ams-e1", true, &mut c);
        let r = c.restart().join("\n");
        assert!(r.contains("l4 listeners"), "{r}");
        assert!(r.contains("bus settings"), "{r}");
    }

    #[test]
    fn peer_changes_name_the_fields() {
        let a = PeerConfig::new("198.18.11.1".parse().expect("ip"), 65001);
        let mut b = a.clone();
        b.hold_time = 9;
        let c = PeerConfig::new("198.18.12.1".parse().expect("ip"), 65001);
        let lines = peers(&[a.clone(), c.clone()], &[b]);
        assert_eq!(
            lines,
            ["changed peer 198.18.11.1 (hold_time)", "removed peer 198.18.12.1"]
        );
        assert!(peers(std::slice::from_ref(&a), std::slice::from_ref(&a)).is_empty());
    }
}
