//! Health: active checkers, this node's report, and the bus that shares
//! reports between nodes.
//!
//! ```text
//!  checkers ──Transition──► reporter ──NodeReport──► HealthBus ──snapshot──► controller
//!                              ▲                                                │
//!                              └──────────── VIP serviceability ◄───────────────┘
//! ```
//! Passive health: the L7 tier's failure reports drive per-pool outlier
//! detection ([`detector`] is its pure core, [`outlier`] the task). Client
//! latency for GSLB is measured by [`latency`]. Only the node knows about
//! the bus; the tier crates receive derived state.

pub mod check;
pub mod detector;
pub mod gossip;
pub mod latency;
pub mod outlier;

use std::collections::BTreeMap;
use std::sync::Arc;

use edge_topology::health::{HealthSnapshot, IntentOp, NodeReport, TargetKind};
use tokio::sync::{mpsc, watch};

/// The shared health view, whatever carries it.
pub trait HealthBus: Send + Sync + 'static {
    /// Publishes this node's latest report.
    fn publish(&self, report: NodeReport);
    /// Applies an operator change (drain, undrain, weight) everywhere.
    fn intent(&self, op: IntentOp, kind: Option<TargetKind>);
    /// The merged view of every node, updated on every change.
    fn watch(&self) -> watch::Receiver<Arc<HealthSnapshot>>;
    /// Leaves the bus and releases its socket (an upgrade hands the node's
    /// place to the next process); the receiver completes once released.
    fn stop(&self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        None
    }
}

/// A bus for a single node (the loopback demo, tests): the snapshot holds
/// this node's report only, and the node is always alive.
pub struct LocalBus {
    tx: watch::Sender<Arc<HealthSnapshot>>,
}

impl LocalBus {
    pub fn new() -> Self {
        LocalBus {
            tx: watch::Sender::new(Arc::new(HealthSnapshot::default())),
        }
    }
}

impl Default for LocalBus {
    fn default() -> Self {
        Self::new()
    }
}

impl HealthBus for LocalBus {
    fn publish(&self, report: NodeReport) {
        self.tx.send_if_modified(|snap| {
            let mut next = (**snap).clone();
            next.alive.insert(report.node.clone());
            if next.merge(report) == edge_topology::health::Changed::Yes {
                *snap = Arc::new(next);
                true
            } else {
                false
            }
        });
    }

    fn intent(&self, op: IntentOp, kind: Option<TargetKind>) {
        self.tx.send_if_modified(|snap| {
            let mut next = (**snap).clone();
            if next.intent.apply(&op, kind) {
                *snap = Arc::new(next);
                true
            } else {
                false
            }
        });
    }

    fn watch(&self) -> watch::Receiver<Arc<HealthSnapshot>> {
        self.tx.subscribe()
    }
}

/// What changes this node's report.
#[derive(Debug)]
pub enum ReportUpdate {
    Backend(check::Transition),
    /// VIP name → whether this node serves it, from the controller.
    Vips(BTreeMap<String, bool>),
    /// Keep only these backends (a reload removed the others).
    Retain(std::collections::BTreeSet<String>),
    /// Open connections and new flows/requests per second through the node.
    Load {
        active_connections: u64,
        per_second: f64,
    },
    /// Round-trip times this node measured to client prefixes.
    ClientRtt(BTreeMap<std::net::IpAddr, u32>),
}

/// Owns this node's [`NodeReport`]: applies updates, bumps `seq`, publishes.
pub async fn run_reporter(
    mut report: NodeReport,
    bus: Arc<dyn HealthBus>,
    mut rx: mpsc::Receiver<ReportUpdate>,
) {
    bus.publish(report.clone());
    while let Some(u) = rx.recv().await {
        let changed = match u {
            ReportUpdate::Backend(t) => report.backends.insert(t.backend, t.up) != Some(t.up),
            ReportUpdate::Retain(keep) => {
                let before = report.backends.len();
                report.backends.retain(|b, _| keep.contains(b));
                report.backends.len() != before
            }
            ReportUpdate::ClientRtt(m) => {
                let changed = report.client_rtt_us != m;
                report.client_rtt_us = m;
                changed
            }
            ReportUpdate::Load {
                active_connections,
                per_second,
            } => {
                let changed = report.active_connections != active_connections
                    || report.requests_per_second != per_second;
                report.active_connections = active_connections;
                report.requests_per_second = per_second;
                changed
            }
            ReportUpdate::Vips(v) => {
                let changed = report.vips != v;
                report.vips = v;
                changed
            }
        };
        if changed {
            report.seq += 1;
            bus.publish(report.clone());
        }
    }
}
