//! What the admin API reports about the node, and the handles through
//! which its verbs act (bus, reload, BGP speaker, DNS explainer).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use edge_topology::Deployment;
use edge_topology::health::{HealthSnapshot, Intent, IntentOp, TargetKind};
use hyper::StatusCode;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use super::metrics::{BackendLabels, BgpMetrics, NodeLabels, VipLabels};
use crate::controller::{ActiveBackend, Announcement, Desired, Tier, Verdict};
use crate::health::HealthBus;
use edge_bgp::Speaker;

/// The plan the node applied last, for `/status`.
#[derive(Default)]
struct Applied {
    generation: u64,
    desired: Option<Arc<Desired>>,
    snapshot: Arc<HealthSnapshot>,
    /// Tiers whose last action failed (retried on the next step).
    failed: BTreeSet<Tier>,
}

/// What the admin API reports about this node.
pub struct NodeState {
    /// The running configuration; a reload sends a new one.
    config: watch::Receiver<Arc<Deployment>>,
    pub node: String,
    pub site: String,
    /// This program's version.
    pub version: String,
    pub started: Instant,
    registry: Registry,
    uptime: Gauge<f64, std::sync::atomic::AtomicU64>,
    vip_state: Family<VipLabels, Gauge>,
    backend_up: Family<BackendLabels, Gauge>,
    bus_members: Gauge,
    drained: Gauge,
    applied: Mutex<Applied>,
    bus: OnceLock<Arc<dyn HealthBus>>,
    reload: OnceLock<mpsc::Sender<ReloadRequest>>,
    speaker: Mutex<Option<Arc<Speaker>>>,
    bgp: BgpMetrics,
    pub(super) dns: OnceLock<crate::tiers::dns::Explainer>,
    /// The `lo` prefixes the node added (handed to an upgrade's successor).
    owned_local: Mutex<BTreeSet<ipnet::IpNet>>,
    /// Counters of the kernel L4 dataplanes, rendered by the controller
    /// (which owns them) about once a second.
    l4_metrics: Mutex<String>,
}

/// Where the node's main loop answers a reload request: the changes per
/// tier, or why nothing was applied.
pub type ReloadReply = oneshot::Sender<Result<String, String>>;

/// A verb of the node's main loop asked for through the admin API.
#[derive(Debug)]
pub enum Verb {
    /// Reload the topology file (`dry_run`: only report the changes).
    Reload { dry_run: bool },
    /// Hand the node over to a new process of `binary` (default: the
    /// binary this process was started from).
    Upgrade { binary: Option<std::path::PathBuf> },
}

/// A [`Verb`] and where to answer it.
#[derive(Debug)]
pub struct ReloadRequest {
    pub verb: Verb,
    pub reply: ReloadReply,
}

impl NodeState {
    pub fn new(
        config: watch::Receiver<Arc<Deployment>>,
        mut registry: Registry,
        node: String,
        site: String,
        version: String,
        started: Instant,
    ) -> Self {
        let deployment = config.borrow().clone();
        let info = Family::<NodeLabels, Gauge>::default();
        info.get_or_create(&NodeLabels {
            node: node.clone(),
            site: site.clone(),
            version: version.clone(),
        })
        .set(1);
        registry.register("node_info", "Static facts about this edge node", info);
        let configured = Family::<VipLabels, Gauge>::default();
        for v in deployment.vips_of_site(&site) {
            configured
                .get_or_create(&VipLabels { vip: v.name.clone() })
                .set(1);
        }
        registry.register(
            "vip_configured",
            "VIPs this node's site is configured to announce",
            configured,
        );
        let uptime = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        registry.register("uptime_seconds", "Seconds since the node started", uptime.clone());
        let vip_state = Family::<VipLabels, Gauge>::default();
        registry.register(
            "vip_announced",
            "2 while the node announces the VIP, 1 while it drains it (GSHUT), 0 when withdrawn",
            vip_state.clone(),
        );
        let backend_up = Family::<BackendLabels, Gauge>::default();
        registry.register(
            "backend_up",
            "1 if this node's active check sees the backend up, 0 if down",
            backend_up.clone(),
        );
        let bgp = BgpMetrics::default();
        bgp.register(&mut registry);
        let bus_members = Gauge::default();
        registry.register(
            "bus_members",
            "Nodes the health bus currently sees alive (this one included)",
            bus_members.clone(),
        );
        let drained = Gauge::default();
        registry.register(
            "operator_drains",
            "Sites, nodes and backends currently drained by an operator",
            drained.clone(),
        );
        NodeState {
            version,
            bus_members,
            drained,
            bgp,
            config,
            node,
            site,
            started,
            registry,
            uptime,
            vip_state,
            backend_up,
            applied: Mutex::new(Applied::default()),
            owned_local: Mutex::new(BTreeSet::new()),
            bus: OnceLock::new(),
            reload: OnceLock::new(),
            speaker: Mutex::new(None),
            dns: OnceLock::new(),
            l4_metrics: Mutex::new(String::new()),
        }
    }

    pub fn set_dns(&self, e: crate::tiers::dns::Explainer) {
        let _ = self.dns.set(e);
    }

    /// Connects the BGP observation endpoints to the speaker (or detaches
    /// it at shutdown).
    pub fn set_speaker(&self, sp: Option<Arc<Speaker>>) {
        if let Ok(mut s) = self.speaker.lock() {
            *s = sp;
        }
    }

    pub(super) fn speaker(&self) -> Option<Arc<Speaker>> {
        self.speaker.lock().ok().and_then(|s| s.clone())
    }

    /// Connects `POST /reload` to the node's main loop.
    pub fn set_reload(&self, tx: mpsc::Sender<ReloadRequest>) {
        let _ = self.reload.set(tx);
    }

    pub(super) async fn request(&self, verb: Verb) -> Result<String, String> {
        let Some(tx) = self.reload.get() else {
            return Err("the node is not running yet".into());
        };
        let (reply, rx) = oneshot::channel();
        tx.send(ReloadRequest { verb, reply })
            .await
            .map_err(|_| "the node is shutting down".to_string())?;
        rx.await.map_err(|_| "the node is shutting down".to_string())?
    }

    /// Connects the operator verbs to the health bus.
    pub fn set_bus(&self, bus: Arc<dyn HealthBus>) {
        let _ = self.bus.set(bus);
    }

    /// Applies an operator intent change, after checking what it names.
    pub(super) fn apply_intent(&self, op: IntentOp) -> Result<(), (StatusCode, String)> {
        let dep = &*self.deployment();
        let target = match &op {
            IntentOp::Drain { target } | IntentOp::Undrain { target } => target,
            IntentOp::Weight { backend, weight } => {
                if *weight > 256 {
                    return Err((
                        StatusCode::BAD_REQUEST,
                        format!("weight {weight} is outside 0..=256"),
                    ));
                }
                backend
            }
        };
        let is_backend = dep
            .pools
            .values()
            .any(|p| p.backends.iter().any(|b| &b.name == target));
        let kind = if dep.sites.contains_key(target) {
            TargetKind::Site
        } else if dep.node(target).is_some() {
            TargetKind::Node
        } else if is_backend {
            TargetKind::Backend
        } else {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no site, node or backend named {target:?}"),
            ));
        };
        if matches!(op, IntentOp::Weight { .. }) && kind != TargetKind::Backend {
            return Err((StatusCode::BAD_REQUEST, format!("{target:?} is not a backend")));
        }
        let Some(bus) = self.bus.get() else {
            return Err((
                StatusCode::SERVICE_UNAVAILABLE,
                "the health bus is not running yet".into(),
            ));
        };
        bus.intent(op, Some(kind));
        Ok(())
    }

    /// The desired state of the plan applied last.
    pub fn applied_desired(&self) -> Option<Arc<Desired>> {
        self.applied.lock().ok().and_then(|a| a.desired.clone())
    }

    /// Records which `lo` prefixes the node added.
    pub fn set_owned_local(&self, set: BTreeSet<ipnet::IpNet>) {
        if let Ok(mut o) = self.owned_local.lock() {
            *o = set;
        }
    }

    /// The `lo` prefixes the node added.
    pub fn owned_local(&self) -> BTreeSet<ipnet::IpNet> {
        self.owned_local.lock().map(|o| o.clone()).unwrap_or_default()
    }

    /// Records the plan the drivers applied (with the tiers that failed).
    pub fn set_applied(
        &self,
        generation: u64,
        desired: Arc<Desired>,
        snapshot: Arc<HealthSnapshot>,
        failed: BTreeSet<Tier>,
    ) {
        for (vip, a) in &desired.announcements {
            // Gauges hold integers: 2 = announced, 1 = draining (GSHUT), 0 = withdrawn.
            let value = match a {
                Announcement::Normal => 2,
                Announcement::GracefulShutdown => 1,
                Announcement::Withdrawn => 0,
            };
            self.vip_state
                .get_or_create(&VipLabels { vip: vip.clone() })
                .set(value);
        }
        self.bus_members.set(snapshot.alive.len() as i64);
        let i = &snapshot.intent;
        self.drained
            .set((i.drained_sites.len() + i.drained_nodes.len() + i.drained_backends.len()) as i64);
        if let Some(r) = snapshot.reports.get(&self.node) {
            for (b, up) in &r.backends {
                self.backend_up
                    .get_or_create(&BackendLabels { backend: b.clone() })
                    .set(i64::from(*up));
            }
        }
        if let Ok(mut a) = self.applied.lock() {
            *a = Applied {
                generation,
                desired: Some(desired),
                snapshot,
                failed,
            };
        }
    }

    /// The configuration the node runs now.
    pub fn deployment(&self) -> Arc<Deployment> {
        self.config.borrow().clone()
    }

    pub(super) fn status<'a>(&'a self, dep: &'a Deployment) -> Status<'a> {
        let (_, n) = dep.node(&self.node).unzip();
        let (generation, desired, snapshot, failed) = match self.applied.lock() {
            Ok(a) => (
                a.generation,
                a.desired.clone(),
                a.snapshot.clone(),
                a.failed.clone(),
            ),
            Err(_) => Default::default(),
        };
        let own = snapshot.reports.get(&self.node);
        Status {
            node: &self.node,
            site: &self.site,
            version: &self.version,
            pid: std::process::id(),
            deployment: &dep.name,
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            router_id: n.map(|n| n.router_id.to_string()).unwrap_or_default(),
            asn: n.map(|n| n.asn).unwrap_or_default(),
            vips: dep
                .vips_of_site(&self.site)
                .map(|v| VipStatus {
                    name: &v.name,
                    prefixes: v.prefixes.iter().map(|p| p.to_string()).collect(),
                    verdict: desired.as_ref().and_then(|d| d.verdicts.get(&v.name).cloned()),
                    announcement: desired
                        .as_ref()
                        .and_then(|d| d.announcements.get(&v.name).copied()),
                })
                .collect(),
            peers: n
                .map(|n| {
                    n.peers
                        .iter()
                        .map(|p| PeerStatus {
                            router: &p.router,
                            remote: p.remote.to_string(),
                            remote_asn: p.router_asn,
                        })
                        .collect()
                })
                .unwrap_or_default(),
            backends: own.map(|r| r.backends.clone()).unwrap_or_default(),
            pools: desired.as_ref().map(|d| d.pools.clone()).unwrap_or_default(),
            dns: desired.as_ref().map(|d| d.dns.clone()),
            plan: PlanStatus {
                generation,
                failed_tiers: failed,
                routes: desired
                    .as_ref()
                    .map(|d| d.routes.iter().map(|r| r.prefix.to_string()).collect())
                    .unwrap_or_default(),
                local: desired
                    .as_ref()
                    .map(|d| d.local.iter().map(|p| p.to_string()).collect())
                    .unwrap_or_default(),
            },
            bus_members: snapshot.alive.iter().cloned().collect(),
            cluster: snapshot
                .reports
                .values()
                .map(|r| {
                    (
                        r.node.clone(),
                        ClusterMember {
                            site: r.site.clone(),
                            alive: snapshot.alive.contains(&r.node),
                            backends: r.backends.clone(),
                            vips: r.vips.clone(),
                            active_connections: r.active_connections,
                        },
                    )
                })
                .collect(),
            intent: snapshot.intent.clone(),
        }
    }

    pub(super) fn metrics(&self) -> String {
        self.uptime.set(self.started.elapsed().as_secs_f64());
        if let Some(sp) = self.speaker() {
            self.bgp.refresh(&sp.sessions());
        }
        let mut out = String::new();
        // Encoding into a String cannot fail for want of space; an error here
        // would be a bug in a metric's encoder, reported in the body.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            out = format!("# encoding failed: {e}\n");
        }
        let l4 = self.l4_metrics.lock().map(|m| m.clone()).unwrap_or_default();
        if !l4.is_empty() {
            // Before the OpenMetrics terminator.
            match out.rfind("# EOF") {
                Some(i) => out.insert_str(i, &l4),
                None => out.push_str(&l4),
            }
        }
        out
    }

    /// Replaces the kernel L4 dataplanes' metric lines.
    pub fn set_l4_metrics(&self, text: String) {
        if let Ok(mut m) = self.l4_metrics.lock() {
            *m = text;
        }
    }
}

#[derive(Serialize)]
pub(super) struct Status<'a> {
    node: &'a str,
    site: &'a str,
    version: &'a str,
    /// The process serving this node (it changes with `edge upgrade`).
    pid: u32,
    deployment: &'a str,
    uptime_seconds: f64,
    router_id: String,
    asn: u32,
    vips: Vec<VipStatus<'a>>,
    peers: Vec<PeerStatus<'a>>,
    /// Backend name → up, from this node's own checks.
    backends: BTreeMap<String, bool>,
    /// Pool → backends in rotation at this node's site.
    pools: BTreeMap<String, Vec<ActiveBackend>>,
    /// The steering view handed to the DNS server (sites, drains, RTTs).
    dns: Option<edge_dns::DnsView>,
    /// The plan applied last.
    plan: PlanStatus,
    bus_members: Vec<String>,
    /// Every node's latest report, as this node's bus sees it.
    cluster: BTreeMap<String, ClusterMember>,
    intent: Intent,
}

#[derive(Serialize)]
struct ClusterMember {
    site: String,
    alive: bool,
    backends: BTreeMap<String, bool>,
    vips: BTreeMap<String, bool>,
    active_connections: u64,
}

#[derive(Serialize)]
struct VipStatus<'a> {
    name: &'a str,
    prefixes: Vec<String>,
    verdict: Option<Verdict>,
    /// What the routers are told (GSHUT while draining).
    announcement: Option<Announcement>,
}

/// The controller's last applied plan, as `/status` shows it.
#[derive(Serialize)]
struct PlanStatus {
    /// Counts plans that changed something.
    generation: u64,
    /// Tiers whose last action failed; they are retried.
    failed_tiers: BTreeSet<Tier>,
    /// Prefixes announced to the routers.
    routes: Vec<String>,
    /// Prefixes on `lo`.
    local: Vec<String>,
}

#[derive(Serialize)]
struct PeerStatus<'a> {
    router: &'a str,
    remote: String,
    remote_asn: u32,
}
