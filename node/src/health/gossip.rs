//! The cross-site health bus on chitchat (scuttlebutt anti-entropy and a
//! phi-accrual failure detector).
//!
//! Every node keeps two keys in its own chitchat state:
//! * `report`: its latest [`NodeReport`] as JSON;
//! * `intent`: the newest operator [`Intent`] it knows, as JSON with a stamp.
//!
//! Operator intent is last-writer-wins by `(stamp, origin node)`. Every node
//! re-publishes the newest intent it has seen under its own key, so a drain
//! outlives the node it was sent to.
//!
//! ```text
//!  publish/intent ──► bus task ──set keys──► chitchat ◄──UDP gossip──► peers
//!                         ▲                     │ live nodes watcher
//!                         └──── adopt newer ────┤
//!                                               ▼
//!                                  HealthSnapshot (watch) ──► controller
//! ```

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use chitchat::transport::UdpTransport;
use chitchat::{ChitchatConfig, ChitchatHandle, ChitchatId, FailureDetectorConfig, NodeState};
use edge_topology::Deployment;
use edge_topology::health::{HealthSnapshot, Intent, IntentOp, NodeReport, TargetKind};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, watch};

use super::HealthBus;

const REPORT_KEY: &str = "report";
const INTENT_KEY: &str = "intent";

/// Operator intent with its last-writer-wins stamp.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct StampedIntent {
    /// Milliseconds since the epoch when the operator changed it.
    stamp: u64,
    /// The node the operator talked to (tie-breaker).
    origin: String,
    intent: Intent,
}

impl StampedIntent {
    fn newer_than(&self, other: &StampedIntent) -> bool {
        (self.stamp, &self.origin) > (other.stamp, &other.origin)
    }
}

enum Cmd {
    Publish(NodeReport),
    Intent(IntentOp, Option<TargetKind>),
    /// Leave the bus and release the UDP socket (an upgrade's successor
    /// binds it next); the reply says it is released.
    Stop(tokio::sync::oneshot::Sender<()>),
}

/// Gossip timing: how fast changes spread and dead nodes are detected.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub interval: Duration,
    /// How long a dead node's state is kept before it is forgotten.
    pub dead_grace: Duration,
}

pub struct GossipBus {
    tx: mpsc::UnboundedSender<Cmd>,
    snapshots: watch::Receiver<Arc<HealthSnapshot>>,
}

impl GossipBus {
    /// Starts gossiping on `listen` as `node`. Seeds are the configured seed
    /// nodes' gossip addresses, or every other node's when none are set.
    pub async fn start(
        dep: &Deployment,
        node: &str,
        listen: SocketAddr,
        incarnation: u64,
        timing: Timing,
    ) -> Result<GossipBus> {
        let (_, me) = dep.node(node).context("node not in topology")?;
        let seed_names: Vec<&str> = if dep.bus.seeds.is_empty() {
            dep.nodes().map(|n| n.name.as_str()).collect()
        } else {
            dep.bus.seeds.iter().map(String::as_str).collect()
        };
        let seeds: Vec<String> = seed_names
            .iter()
            .filter(|n| **n != node)
            .filter_map(|n| dep.node(n))
            .map(|(_, n)| n.gossip.to_string())
            .collect();
        let config = ChitchatConfig {
            chitchat_id: ChitchatId::new(node.to_string(), incarnation, me.gossip),
            cluster_id: dep.name.clone(),
            gossip_interval: timing.interval,
            listen_addr: listen,
            seed_nodes: seeds,
            failure_detector_config: FailureDetectorConfig {
                // Liveness is judged on heartbeats that arrive every gossip
                // interval; start from that instead of chitchat's 5 s guess
                // so a node that dies right after joining is noticed quickly.
                initial_interval: timing.interval * 2,
                dead_node_grace_period: timing.dead_grace,
                ..FailureDetectorConfig::default()
            },
            marked_for_deletion_grace_period: Duration::from_secs(3600),
            catchup_callback: None,
            extra_liveness_predicate: None,
            protocol_version: chitchat::ProtocolVersion::V0,
        };
        let handle = chitchat::spawn_chitchat(config, Vec::new(), &UdpTransport)
            .await
            .with_context(|| format!("starting the health bus on {listen}"))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let (snap_tx, snapshots) = watch::channel(Arc::new(HealthSnapshot::default()));
        tokio::spawn(run(handle, node.to_string(), rx, snap_tx));
        Ok(GossipBus { tx, snapshots })
    }
}

impl HealthBus for GossipBus {
    fn publish(&self, report: NodeReport) {
        let _ = self.tx.send(Cmd::Publish(report));
    }

    fn intent(&self, op: IntentOp, kind: Option<TargetKind>) {
        let _ = self.tx.send(Cmd::Intent(op, kind));
    }

    fn watch(&self) -> watch::Receiver<Arc<HealthSnapshot>> {
        self.snapshots.clone()
    }

    fn stop(&self) -> Option<tokio::sync::oneshot::Receiver<()>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.tx.send(Cmd::Stop(tx)).ok().map(|()| rx)
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn build_snapshot(live: &BTreeMap<ChitchatId, NodeState>, intent: &Intent) -> HealthSnapshot {
    let mut snap = HealthSnapshot {
        intent: intent.clone(),
        ..Default::default()
    };
    for (id, st) in live {
        snap.alive.insert(id.node_id.to_string());
        if let Some(r) = st.get(REPORT_KEY) {
            match serde_json::from_str::<NodeReport>(r) {
                Ok(report) => {
                    snap.merge(report);
                }
                Err(e) => tracing::warn!(node = %id.node_id, error = %e, "undecodable health report"),
            }
        }
    }
    snap
}

/// The bus task: the only writer of this node's chitchat keys.
async fn run(
    handle: ChitchatHandle,
    node: String,
    mut rx: mpsc::UnboundedReceiver<Cmd>,
    snap_tx: watch::Sender<Arc<HealthSnapshot>>,
) {
    let chitchat = handle.chitchat();
    let mut live = chitchat.lock().await.live_nodes_watcher();
    let mut intent = StampedIntent::default();
    loop {
        tokio::select! {
            cmd = rx.recv() => {
                let cmd = match cmd {
                    None => {
                        let _ = handle.initiate_shutdown();
                        return;
                    }
                    Some(Cmd::Stop(done)) => {
                        if let Err(e) = handle.shutdown().await {
                            tracing::warn!(error = %e, "leaving the health bus");
                        }
                        let _ = done.send(());
                        return;
                    }
                    Some(cmd) => cmd,
                };
                let mut cc = chitchat.lock().await;
                match cmd {
                    Cmd::Publish(report) => match serde_json::to_string(&report) {
                        Ok(json) => cc.self_node_state().set(REPORT_KEY, json),
                        Err(e) => tracing::error!(error = %e, "cannot encode health report"),
                    },
                    Cmd::Stop(_) => {}
                    Cmd::Intent(op, kind) => {
                        let mut next = intent.intent.clone();
                        if next.apply(&op, kind) {
                            intent = StampedIntent { stamp: now_ms().max(intent.stamp + 1), origin: node.clone(), intent: next };
                            tracing::info!(?op, "operator intent changed");
                            if let Ok(json) = serde_json::to_string(&intent) {
                                cc.self_node_state().set(INTENT_KEY, json);
                            }
                        }
                    }
                }
                let live_now = live.borrow().clone();
                drop(cc);
                publish_snapshot(&snap_tx, &live_now, &intent.intent);
            }
            changed = live.changed() => {
                if changed.is_err() {
                    return;
                }
                let live_now = live.borrow_and_update().clone();
                // Adopt the newest intent any live node carries, and carry
                // it ourselves so it survives that node.
                let newest = live_now
                    .values()
                    .filter_map(|st| st.get(INTENT_KEY))
                    .filter_map(|j| serde_json::from_str::<StampedIntent>(j).ok())
                    .fold(intent.clone(), |a, b| if b.newer_than(&a) { b } else { a });
                if newest != intent {
                    intent = newest;
                    if let Ok(json) = serde_json::to_string(&intent) {
                        chitchat.lock().await.self_node_state().set(INTENT_KEY, json);
                    }
                }
                publish_snapshot(&snap_tx, &live_now, &intent.intent);
            }
        }
    }
}

fn publish_snapshot(
    tx: &watch::Sender<Arc<HealthSnapshot>>,
    live: &BTreeMap<ChitchatId, NodeState>,
    intent: &Intent,
) {
    let snap = build_snapshot(live, intent);
    tx.send_if_modified(|cur| {
        if **cur == snap {
            false
        } else {
            *cur = Arc::new(snap);
            true
        }
    });
}
