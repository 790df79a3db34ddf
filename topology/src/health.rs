//! The shared health view: what every node reports about itself, what the
//! operator asked for, and the pure merge of reports into one snapshot.
//!
//! Every node publishes a [`NodeReport`] on the health bus; every node merges
//! all reports it sees into a [`HealthSnapshot`] with [`HealthSnapshot::merge`].
//! Reports are last-writer-wins by `(incarnation, seq)`: a restarted node
//! starts a new incarnation, so its first report replaces anything older
//! even though its sequence number starts again at zero.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// One node's view of itself and of the backends it checks.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeReport {
    pub node: String,
    pub site: String,
    /// Chosen at process start (e.g. start time in ms); larger is newer.
    pub incarnation: u64,
    /// Increases with every report of one incarnation.
    pub seq: u64,
    /// Backend name → healthy, as this node's own checks see it.
    pub backends: BTreeMap<String, bool>,
    /// VIP name → this node can serve it (and announces it).
    pub vips: BTreeMap<String, bool>,
    /// Active connections through this node (L4 + L7).
    pub active_connections: u64,
    /// Requests (or new connections) per second through this node.
    pub requests_per_second: f64,
    /// Round-trip time in microseconds that this node measured to resolvers
    /// that query the DNS servers (any node's): what GSLB's latency filter
    /// compares across sites, per client prefix. Every node probes every
    /// resolver listed in any report, so all sites measure the same ones.
    #[serde(default)]
    pub client_rtt_us: BTreeMap<std::net::IpAddr, u32>,
}

/// What an operator asked for; travels on the bus and applies everywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intent {
    pub drained_sites: BTreeSet<String>,
    pub drained_nodes: BTreeSet<String>,
    pub drained_backends: BTreeSet<String>,
    /// Backend name → weight overriding the topology's.
    pub weights: BTreeMap<String, u32>,
}

/// An operator intent change, as `edge drain|undrain|weight` send it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum IntentOp {
    Drain { target: String },
    Undrain { target: String },
    Weight { backend: String, weight: u32 },
}

/// What a drain/undrain target name refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetKind {
    Site,
    Node,
    Backend,
}

impl Intent {
    /// Applies one operator change; `kind` says what the target names (the
    /// caller resolves it against the topology). Returns whether anything
    /// changed.
    pub fn apply(&mut self, op: &IntentOp, kind: Option<TargetKind>) -> bool {
        match (op, kind) {
            (IntentOp::Drain { target }, Some(TargetKind::Site)) => self.drained_sites.insert(target.clone()),
            (IntentOp::Drain { target }, Some(TargetKind::Node)) => self.drained_nodes.insert(target.clone()),
            (IntentOp::Drain { target }, Some(TargetKind::Backend)) => {
                self.drained_backends.insert(target.clone())
            }
            (IntentOp::Undrain { target }, Some(TargetKind::Site)) => self.drained_sites.remove(target),
            (IntentOp::Undrain { target }, Some(TargetKind::Node)) => self.drained_nodes.remove(target),
            (IntentOp::Undrain { target }, Some(TargetKind::Backend)) => self.drained_backends.remove(target),
            (IntentOp::Weight { backend, weight }, _) => {
                self.weights.insert(backend.clone(), *weight) != Some(*weight)
            }
            (_, None) => false,
        }
    }
}

/// Everything a node knows about every node: the merged view from which the
/// controller derives BGP routes, DNS answers and backend sets.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HealthSnapshot {
    /// Latest report of each node, by node name.
    pub reports: BTreeMap<String, NodeReport>,
    /// Nodes the failure detector currently considers alive. A node that is
    /// not alive keeps its last report here only until the bus expires it.
    pub alive: BTreeSet<String>,
    pub intent: Intent,
}

/// Whether a merge changed the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Changed {
    Yes,
    No,
}

impl HealthSnapshot {
    /// Merges one report, last-writer-wins by `(incarnation, seq)`.
    pub fn merge(&mut self, report: NodeReport) -> Changed {
        match self.reports.get(&report.node) {
            Some(old) if (old.incarnation, old.seq) >= (report.incarnation, report.seq) => Changed::No,
            Some(old) if old == &report => Changed::No,
            _ => {
                self.reports.insert(report.node.clone(), report);
                Changed::Yes
            }
        }
    }

    /// Whether a backend is healthy in the eyes of the nodes of its own site
    /// that are alive: healthy if any such node sees it up (a single node's
    /// broken path to a backend must not take it out for everyone), unknown
    /// (`None`) if no live node of the site reports it.
    pub fn backend_up(&self, backend: &str, site: &str) -> Option<bool> {
        let mut seen = None;
        for r in self.reports.values() {
            if r.site != site || !self.alive.contains(&r.node) {
                continue;
            }
            if let Some(up) = r.backends.get(backend) {
                if *up {
                    return Some(true);
                }
                seen = Some(false);
            }
        }
        seen
    }

    /// Whether any live node of `site` reports that it serves `vip`.
    pub fn site_serves(&self, site: &str, vip: &str) -> bool {
        self.reports.values().any(|r| {
            r.site == site && self.alive.contains(&r.node) && r.vips.get(vip).copied().unwrap_or(false)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(node: &str, inc: u64, seq: u64) -> NodeReport {
        NodeReport {
            node: node.into(),
            site: "ams".into(),
            incarnation: inc,
            seq,
            ..Default::default()
        }
    }

    #[test]
    fn merge_is_last_writer_wins_by_incarnation_then_seq() {
        let mut s = HealthSnapshot::default();
        assert_eq!(s.merge(report("a", 1, 5)), Changed::Yes);
        assert_eq!(s.merge(report("a", 1, 4)), Changed::No, "older seq ignored");
        assert_eq!(s.merge(report("a", 1, 5)), Changed::No, "same report ignored");
        assert_eq!(
            s.merge(report("a", 2, 0)),
            Changed::Yes,
            "restart wins with seq 0"
        );
        assert_eq!(s.reports["a"].incarnation, 2);
        assert_eq!(
            s.merge(report("a", 1, 99)),
            Changed::No,
            "old incarnation never wins"
        );
    }

    #[test]
    fn a_backend_is_up_if_any_live_node_of_its_site_sees_it_up() {
        let mut s = HealthSnapshot::default();
        let mut a = report("a", 1, 1);
        a.backends.insert("b1".into(), false);
        let mut b = report("b", 1, 1);
        b.backends.insert("b1".into(), true);
        s.merge(a);
        s.merge(b);
        s.alive.insert("a".into());
        assert_eq!(s.backend_up("b1", "ams"), Some(false), "b is not alive yet");
        s.alive.insert("b".into());
        assert_eq!(s.backend_up("b1", "ams"), Some(true));
        assert_eq!(s.backend_up("b1", "nyc"), None, "no node of nyc reports it");
        assert_eq!(s.backend_up("b9", "ams"), None);
    }

    #[test]
    fn intent_ops_apply_and_report_change() {
        let mut i = Intent::default();
        let drain = IntentOp::Drain { target: "ams".into() };
        assert!(i.apply(&drain, Some(TargetKind::Site)));
        assert!(!i.apply(&drain, Some(TargetKind::Site)), "idempotent");
        assert!(i.drained_sites.contains("ams"));
        assert!(i.apply(
            &IntentOp::Undrain { target: "ams".into() },
            Some(TargetKind::Site)
        ));
        assert!(i.drained_sites.is_empty());
        let w = IntentOp::Weight {
            backend: "b1".into(),
            weight: 5,
        };
        assert!(i.apply(&w, None));
        assert!(!i.apply(&w, None));
        assert!(
            !i.apply(&IntentOp::Drain { target: "x".into() }, None),
            "unknown target"
        );
    }
}
