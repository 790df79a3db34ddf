//! What a configuration reload changes in the DNS tier: [`DnsChanges`], a
//! sorted list of [`DnsChange`]s, computed from two [`Authority`]s (what
//! [`DnsServer::reload`](crate::DnsServer::reload) reports) or from two
//! deployments without any server ([`diff`], for a `--dry-run`).
//!
//! The comparison is made on the DNS data the server answers from (parsed
//! records, resolved GSLB candidates), not on the TOML text: a record moved
//! to another line, or a name spelled with other letter case, is no change;
//! a VIP address that a GSLB name answers with is one.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use edge_topology::Deployment;
use hickory_proto::rr::{LowerName, Record, RecordType};

use crate::DnsError;
use crate::server::{Authority, DnsOptions};
use crate::steer::{GslbRecord, Steering};
use crate::zone::{Zone, Zones};

/// Added, removed or changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Change {
    Added,
    Removed,
    Changed,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Change::Added => "added",
            Change::Removed => "removed",
            Change::Changed => "changed",
        })
    }
}

/// A change to a zone as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ZoneChange {
    Added,
    Removed,
    /// The SOA record (serial, timers, names or TTL).
    Soa,
    /// The apex NS RRset.
    Ns,
}

/// A change to one GSLB definition.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GslbChange {
    Added,
    Removed,
    Ttl,
    /// How many candidates are answered.
    Answers,
    /// The filter chain.
    Policy,
    /// A candidate (`vip@site`) appeared.
    CandidateAdded(String),
    /// A candidate (`vip@site`) disappeared.
    CandidateRemoved(String),
    /// A candidate's addresses or site location changed.
    CandidateChanged(String),
    /// The same candidates in another order (the order breaks ties).
    CandidatesReordered,
}

/// A change of the GeoIP database.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GeoIpChange {
    /// There was none; there is one now.
    Loaded,
    /// There was one; there is none now (the `geo` filter is a no-op).
    Removed,
    /// Another database, or the same file with other content.
    Reloaded,
    /// [`diff`] only: the deployment names another file (its content is not
    /// read by a dry run).
    PathChanged,
}

/// One change; `Display` gives the line an operator reads.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DnsChange {
    /// `zone edge.example.: added`, `zone edge.example.: SOA changed`.
    Zone { zone: String, change: ZoneChange },
    /// `zone edge.example.: record www.edge.example. A changed`: an RRset
    /// (owner and type) added, removed, or with other data or TTL.
    Record {
        zone: String,
        name: String,
        rtype: String,
        change: Change,
    },
    /// `gslb www.edge.example.: policy changed`.
    Gslb { name: String, change: GslbChange },
    /// `geoip: database reloaded`.
    GeoIp(GeoIpChange),
    /// `options: rrl changed`. `live` false: the setting only takes effect
    /// when the server is restarted (sockets and threads are not rebuilt by
    /// a reload): the line says so.
    Setting { name: String, live: bool },
}

impl fmt::Display for DnsChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DnsChange::Zone { zone, change } => {
                let what = match change {
                    ZoneChange::Added => "added",
                    ZoneChange::Removed => "removed",
                    ZoneChange::Soa => "SOA changed",
                    ZoneChange::Ns => "NS changed",
                };
                write!(f, "zone {zone}: {what}")
            }
            DnsChange::Record {
                zone,
                name,
                rtype,
                change,
            } => write!(f, "zone {zone}: record {name} {rtype} {change}"),
            DnsChange::Gslb { name, change } => {
                write!(f, "gslb {name}: ")?;
                match change {
                    GslbChange::Added => f.write_str("added"),
                    GslbChange::Removed => f.write_str("removed"),
                    GslbChange::Ttl => f.write_str("ttl changed"),
                    GslbChange::Answers => f.write_str("answers changed"),
                    GslbChange::Policy => f.write_str("policy changed"),
                    GslbChange::CandidateAdded(c) => write!(f, "candidate {c} added"),
                    GslbChange::CandidateRemoved(c) => write!(f, "candidate {c} removed"),
                    GslbChange::CandidateChanged(c) => write!(f, "candidate {c} changed"),
                    GslbChange::CandidatesReordered => f.write_str("candidates reordered"),
                }
            }
            DnsChange::GeoIp(c) => f.write_str(match c {
                GeoIpChange::Loaded => "geoip: database loaded",
                GeoIpChange::Removed => "geoip: database removed",
                GeoIpChange::Reloaded => "geoip: database reloaded",
                GeoIpChange::PathChanged => "geoip: database path changed",
            }),
            DnsChange::Setting { name, live: true } => write!(f, "options: {name} changed"),
            DnsChange::Setting { name, live: false } => {
                write!(f, "options: {name} changed (needs a restart; not applied)")
            }
        }
    }
}

/// Every change between two configurations, sorted (zones, records, GSLB,
/// GeoIP, settings; then by name), so the same two inputs always print the
/// same lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsChanges(Vec<DnsChange>);

impl DnsChanges {
    /// Sorts and deduplicates `changes`.
    pub fn new(mut changes: Vec<DnsChange>) -> Self {
        changes.sort();
        changes.dedup();
        Self(changes)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn iter(&self) -> std::slice::Iter<'_, DnsChange> {
        self.0.iter()
    }

    pub fn as_slice(&self) -> &[DnsChange] {
        &self.0
    }

    /// The `Display` lines, one per change (nothing when unchanged).
    pub fn lines(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    /// Whether some change only takes effect after a restart.
    pub fn needs_restart(&self) -> bool {
        self.0
            .iter()
            .any(|c| matches!(c, DnsChange::Setting { live: false, .. }))
    }

    /// These changes and `more`, sorted.
    pub(crate) fn with(self, more: Vec<DnsChange>) -> Self {
        let mut all = self.0;
        all.extend(more);
        Self::new(all)
    }
}

impl<'a> IntoIterator for &'a DnsChanges {
    type Item = &'a DnsChange;
    type IntoIter = std::slice::Iter<'a, DnsChange>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter()
    }
}

/// One line per change; `unchanged` when there is none.
impl fmt::Display for DnsChanges {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("unchanged");
        }
        for (i, c) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

/// The changes that serving `new` instead of `old` makes, computed without a
/// server (for `edge reload --dry-run` and the like): zones, records and GSLB
/// definitions as [`DnsServer::reload`](crate::DnsServer::reload) reports
/// them, the GeoIP file by path only (a dry run does not read it), and the
/// `[dns]` settings (`rrl`, `axfr_allow`, the steering tunables live;
/// `vip` and `port` need a restart).
///
/// Errors when either deployment's DNS data cannot be built, which is
/// exactly when a reload to it would fail (a deployment without `[dns]`
/// counts as no zones here, but a reload refuses it).
pub fn diff(old: &Deployment, new: &Deployment) -> Result<DnsChanges, DnsError> {
    let (old_zones, old_steering) = build(old)?;
    let (new_zones, new_steering) = build(new)?;
    let mut out = data_changes(&old_zones, &old_steering, &new_zones, &new_steering);
    let (od, nd) = (old.dns.as_ref(), new.dns.as_ref());
    match (
        od.and_then(|d| d.geoip.as_ref()),
        nd.and_then(|d| d.geoip.as_ref()),
    ) {
        (None, Some(_)) => out.push(DnsChange::GeoIp(GeoIpChange::Loaded)),
        (Some(_), None) => out.push(DnsChange::GeoIp(GeoIpChange::Removed)),
        (Some(a), Some(b)) if a != b => out.push(DnsChange::GeoIp(GeoIpChange::PathChanged)),
        _ => {}
    }
    let base = DnsOptions::default();
    let (oo, no) = (
        base.clone().with_deployment(old),
        base.clone().with_deployment(new),
    );
    out.extend(option_changes(&oo, &no, &base));
    if oo.steer != no.steer {
        out.push(setting("steering", true));
    }
    if od.map(|d| &d.vip) != nd.map(|d| &d.vip) {
        out.push(setting("vip", false));
    }
    if od.map(|d| d.port) != nd.map(|d| d.port) {
        out.push(setting("port", false));
    }
    Ok(DnsChanges::new(out))
}

fn build(dep: &Deployment) -> Result<(Zones, Steering), DnsError> {
    let zones = match &dep.dns {
        Some(dns) => Zones::build(dns)?,
        None => Zones::default(),
    };
    Ok((zones, Steering::new(dep, None, Default::default())?))
}

fn setting(name: &str, live: bool) -> DnsChange {
    DnsChange::Setting {
        name: name.to_string(),
        live,
    }
}

impl Authority {
    /// What serving `new` instead of `self` changes: zones, records, GSLB
    /// definitions and the GeoIP database (by content), plus the steering
    /// tunables. [`DnsServer::reload`](crate::DnsServer::reload) adds the
    /// server settings.
    pub fn changes_to(&self, new: &Authority) -> DnsChanges {
        let mut out = data_changes(self.zones(), self.steering(), new.zones(), new.steering());
        match (self.steering().geo(), new.steering().geo()) {
            (None, Some(_)) => out.push(DnsChange::GeoIp(GeoIpChange::Loaded)),
            (Some(_), None) => out.push(DnsChange::GeoIp(GeoIpChange::Removed)),
            (Some(a), Some(b)) if a.fingerprint() != b.fingerprint() => {
                out.push(DnsChange::GeoIp(GeoIpChange::Reloaded));
            }
            _ => {}
        }
        if self.steering().options() != new.steering().options() {
            out.push(setting("steering", true));
        }
        DnsChanges::new(out)
    }
}

/// The server settings that differ between `old` and `new`; `start` holds
/// the settings the sockets and threads were set up with, which a reload
/// cannot change (a difference to them is reported as needing a restart).
/// The steering tunables are compared by [`Authority::changes_to`].
pub(crate) fn option_changes(old: &DnsOptions, new: &DnsOptions, start: &DnsOptions) -> Vec<DnsChange> {
    let mut out = Vec::new();
    if old.rrl != new.rrl {
        out.push(setting("rrl", true));
    }
    if old.axfr_allow != new.axfr_allow {
        out.push(setting("axfr_allow", true));
    }
    if old.max_udp_payload != new.max_udp_payload {
        out.push(setting("max_udp_payload", true));
    }
    if start.tcp_timeout != new.tcp_timeout {
        out.push(setting("tcp_timeout", false));
    }
    if start.udp_loops != new.udp_loops {
        out.push(setting("udp_loops", false));
    }
    if start.udp_threads != new.udp_threads {
        out.push(setting("udp_threads", false));
    }
    if start.udp_batch != new.udp_batch {
        out.push(setting("udp_batch", false));
    }
    out
}

/// Zone, record and GSLB changes.
fn data_changes(old_z: &Zones, old_s: &Steering, new_z: &Zones, new_s: &Steering) -> Vec<DnsChange> {
    let mut out = Vec::new();
    let old_zones: BTreeMap<String, &Zone> = old_z.iter().map(|z| (z.origin.to_string(), z)).collect();
    let new_zones: BTreeMap<String, &Zone> = new_z.iter().map(|z| (z.origin.to_string(), z)).collect();
    for (origin, &o) in &old_zones {
        let Some(&n) = new_zones.get(origin) else {
            out.push(DnsChange::Zone {
                zone: origin.clone(),
                change: ZoneChange::Removed,
            });
            continue;
        };
        zone_changes(origin, o, n, &mut out);
    }
    for origin in new_zones.keys().filter(|o| !old_zones.contains_key(*o)) {
        out.push(DnsChange::Zone {
            zone: origin.clone(),
            change: ZoneChange::Added,
        });
    }

    let old_g: BTreeMap<&LowerName, &GslbRecord> = old_s.records().map(|g| (&g.name, g)).collect();
    let new_g: BTreeMap<&LowerName, &GslbRecord> = new_s.records().map(|g| (&g.name, g)).collect();
    let names: BTreeSet<&LowerName> = old_g.keys().chain(new_g.keys()).copied().collect();
    for name in names {
        let gslb = |change| DnsChange::Gslb {
            name: name.to_string(),
            change,
        };
        match (old_g.get(name), new_g.get(name)) {
            (Some(_), None) => out.push(gslb(GslbChange::Removed)),
            (None, Some(_)) => out.push(gslb(GslbChange::Added)),
            (Some(o), Some(n)) => {
                for c in gslb_changes(o, n) {
                    out.push(gslb(c));
                }
            }
            (None, None) => {}
        }
    }
    out
}

fn zone_changes(origin: &str, o: &Zone, n: &Zone, out: &mut Vec<DnsChange>) {
    if o.soa != n.soa {
        out.push(DnsChange::Zone {
            zone: origin.to_string(),
            change: ZoneChange::Soa,
        });
    }
    if !same_rrset(&o.ns, &n.ns) {
        out.push(DnsChange::Zone {
            zone: origin.to_string(),
            change: ZoneChange::Ns,
        });
    }
    let (or, nr) = (o.rrsets(), n.rrsets());
    let keys: BTreeSet<&(LowerName, RecordType)> = or.keys().chain(nr.keys()).collect();
    for key in keys {
        let change = match (or.get(key), nr.get(key)) {
            (Some(_), None) => Change::Removed,
            (None, Some(_)) => Change::Added,
            (Some(a), Some(b)) if !same_rrset(a, b) => Change::Changed,
            _ => continue,
        };
        out.push(DnsChange::Record {
            zone: origin.to_string(),
            name: key.0.to_string(),
            rtype: key.1.to_string(),
            change,
        });
    }
}

/// The same records in any order (an RRset is a set; a record moved to
/// another line of the file is no change).
fn same_rrset(a: &[Record], b: &[Record]) -> bool {
    let key = |rs: &[Record]| {
        let mut v: Vec<(u32, String)> = rs.iter().map(|r| (r.ttl, r.data.to_string())).collect();
        v.sort();
        v
    };
    a.len() == b.len() && key(a) == key(b)
}

fn gslb_changes(o: &GslbRecord, n: &GslbRecord) -> Vec<GslbChange> {
    let mut out = Vec::new();
    if o.ttl != n.ttl {
        out.push(GslbChange::Ttl);
    }
    if o.answers != n.answers {
        out.push(GslbChange::Answers);
    }
    if o.policy != n.policy {
        out.push(GslbChange::Policy);
    }
    let label = |c: &crate::steer::Candidate| format!("{}@{}", c.vip, c.site);
    let oc: BTreeMap<String, _> = o.candidates.iter().map(|c| (label(c), c)).collect();
    let nc: BTreeMap<String, _> = n.candidates.iter().map(|c| (label(c), c)).collect();
    for (l, c) in &oc {
        match nc.get(l) {
            None => out.push(GslbChange::CandidateRemoved(l.clone())),
            Some(n) if n != c => out.push(GslbChange::CandidateChanged(l.clone())),
            Some(_) => {}
        }
    }
    for l in nc.keys().filter(|l| !oc.contains_key(*l)) {
        out.push(GslbChange::CandidateAdded(l.clone()));
    }
    let order = |g: &GslbRecord| g.candidates.iter().map(label).collect::<Vec<_>>();
    if oc.keys().eq(nc.keys()) && order(o) != order(n) {
        out.push(GslbChange::CandidatesReordered);
    }
    out
}
