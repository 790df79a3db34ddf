//! The local admin API: `/healthz`, `/status` (JSON) and `/metrics`
//! (Prometheus text format), served with hyper on the node's admin address.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use anyhow::Result;
use bytes::Bytes;
use edge_topology::Deployment;
use edge_topology::health::{HealthSnapshot, Intent, IntentOp, TargetKind};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot, watch};

use crate::controller::{self, ActiveBackend, Decision, SiteView, Verdict};
use crate::health::HealthBus;
use edge_bgp::{RibEntry, RibKind, SessionInfo, Speaker, State as BgpState};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct NodeLabels {
    node: String,
    site: String,
    version: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VipLabels {
    vip: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PeerLabels {
    peer: String,
}

/// Per-peer BGP series, refreshed from the speaker at every scrape.
#[derive(Default)]
struct BgpMetrics {
    established: Family<PeerLabels, Gauge>,
    state: Family<PeerLabels, Gauge>,
    uptime: Family<PeerLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    prefixes_sent: Family<PeerLabels, Gauge>,
    prefixes_received: Family<PeerLabels, Gauge>,
    updates_in: Family<PeerLabels, Gauge>,
    updates_out: Family<PeerLabels, Gauge>,
    flaps: Family<PeerLabels, Gauge>,
}

impl BgpMetrics {
    fn register(&self, r: &mut Registry) {
        r.register(
            "bgp_session_established",
            "1 while the BGP session is Established",
            self.established.clone(),
        );
        r.register(
            "bgp_session_state",
            "RFC 4271 state: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, 5 OpenConfirm, 6 Established",
            self.state.clone(),
        );
        r.register(
            "bgp_session_uptime_seconds",
            "Seconds the session has been Established",
            self.uptime.clone(),
        );
        r.register(
            "bgp_prefixes_sent",
            "Prefixes in the peer's Adj-RIB-Out",
            self.prefixes_sent.clone(),
        );
        r.register(
            "bgp_prefixes_received",
            "Prefixes in the peer's Adj-RIB-In",
            self.prefixes_received.clone(),
        );
        r.register(
            "bgp_updates_received",
            "UPDATE messages received since start",
            self.updates_in.clone(),
        );
        r.register(
            "bgp_updates_sent",
            "UPDATE messages sent since start",
            self.updates_out.clone(),
        );
        r.register(
            "bgp_session_flaps",
            "Times the session left Established since start",
            self.flaps.clone(),
        );
    }

    fn refresh(&self, sessions: &[SessionInfo]) {
        for s in sessions {
            let l = PeerLabels {
                peer: s.peer.to_string(),
            };
            let state = match s.state {
                BgpState::Idle => 1,
                BgpState::Connect => 2,
                BgpState::Active => 3,
                BgpState::OpenSent => 4,
                BgpState::OpenConfirm => 5,
                BgpState::Established => 6,
            };
            self.state.get_or_create(&l).set(state);
            self.established
                .get_or_create(&l)
                .set(i64::from(s.state == BgpState::Established));
            self.uptime
                .get_or_create(&l)
                .set(s.uptime.map(|u| u.as_secs_f64()).unwrap_or(0.0));
            self.prefixes_sent.get_or_create(&l).set(s.prefixes_sent as i64);
            self.prefixes_received
                .get_or_create(&l)
                .set(s.prefixes_received as i64);
            self.updates_in.get_or_create(&l).set(s.updates_in as i64);
            self.updates_out.get_or_create(&l).set(s.updates_out as i64);
            self.flaps.get_or_create(&l).set(s.flaps as i64);
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BackendLabels {
    backend: String,
}

/// What the controller last derived, for `/status`.
#[derive(Default)]
struct Derived {
    verdicts: BTreeMap<String, Verdict>,
    snapshot: Arc<HealthSnapshot>,
}

impl Derived {
    fn pools(&self, dep: &Deployment, node: &str) -> BTreeMap<String, Vec<ActiveBackend>> {
        dep.pools
            .keys()
            .map(|p| (p.clone(), controller::backend_set(dep, node, p, &self.snapshot)))
            .collect()
    }
}

/// What the admin API reports about this node.
pub struct NodeState {
    /// The running configuration; a reload sends a new one.
    config: watch::Receiver<Arc<Deployment>>,
    pub node: String,
    pub site: String,
    pub started: Instant,
    registry: Registry,
    uptime: Gauge<f64, std::sync::atomic::AtomicU64>,
    vip_state: Family<VipLabels, Gauge>,
    backend_up: Family<BackendLabels, Gauge>,
    bus_members: Gauge,
    drained: Gauge,
    derived: Mutex<Derived>,
    bus: OnceLock<Arc<dyn HealthBus>>,
    reload: OnceLock<mpsc::Sender<ReloadReply>>,
    speaker: Mutex<Option<Arc<Speaker>>>,
    bgp: BgpMetrics,
    dns: OnceLock<crate::dns::Explainer>,
    /// Counters of the kernel L4 dataplanes, rendered by the controller
    /// (which owns them) about once a second.
    l4_metrics: Mutex<String>,
}

/// Where the node's main loop answers a reload request.
pub type ReloadReply = oneshot::Sender<Result<String, String>>;

impl NodeState {
    pub fn new(
        config: watch::Receiver<Arc<Deployment>>,
        mut registry: Registry,
        node: String,
        site: String,
        started: Instant,
    ) -> Self {
        let deployment = config.borrow().clone();
        let info = Family::<NodeLabels, Gauge>::default();
        info.get_or_create(&NodeLabels {
            node: node.clone(),
            site: site.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
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
            derived: Mutex::new(Derived::default()),
            bus: OnceLock::new(),
            reload: OnceLock::new(),
            speaker: Mutex::new(None),
            dns: OnceLock::new(),
            l4_metrics: Mutex::new(String::new()),
        }
    }

    pub fn set_dns(&self, e: crate::dns::Explainer) {
        let _ = self.dns.set(e);
    }

    /// Connects the BGP observation endpoints to the speaker (or detaches
    /// it at shutdown).
    pub fn set_speaker(&self, sp: Option<Arc<Speaker>>) {
        if let Ok(mut s) = self.speaker.lock() {
            *s = sp;
        }
    }

    fn speaker(&self) -> Option<Arc<Speaker>> {
        self.speaker.lock().ok().and_then(|s| s.clone())
    }

    /// Connects `POST /reload` to the node's main loop.
    pub fn set_reload(&self, tx: mpsc::Sender<ReloadReply>) {
        let _ = self.reload.set(tx);
    }

    async fn request_reload(&self) -> Result<String, String> {
        let Some(tx) = self.reload.get() else {
            return Err("reload is not available yet".into());
        };
        let (reply, rx) = oneshot::channel();
        tx.send(reply)
            .await
            .map_err(|_| "the node is shutting down".to_string())?;
        rx.await.map_err(|_| "the node is shutting down".to_string())?
    }

    /// Connects the operator verbs to the health bus.
    pub fn set_bus(&self, bus: Arc<dyn HealthBus>) {
        let _ = self.bus.set(bus);
    }

    /// Applies an operator intent change, after checking what it names.
    fn apply_intent(&self, op: IntentOp) -> Result<(), (StatusCode, String)> {
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

    /// Records what the controller derived from a new snapshot.
    pub fn set_derived(&self, verdicts: BTreeMap<String, Verdict>, snapshot: Arc<HealthSnapshot>) {
        for (vip, v) in &verdicts {
            // Gauges hold integers: 2 = announce, 1 = draining, 0 = withdrawn.
            let value = match v.decision {
                Decision::Announce => 2,
                Decision::Drain => 1,
                Decision::Withdraw => 0,
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
        if let Ok(mut d) = self.derived.lock() {
            d.verdicts = verdicts;
            d.snapshot = snapshot;
        }
    }

    /// The configuration the node runs now.
    pub fn deployment(&self) -> Arc<Deployment> {
        self.config.borrow().clone()
    }

    fn status<'a>(&'a self, dep: &'a Deployment) -> Status<'a> {
        let (_, n) = dep.node(&self.node).unzip();
        let (verdicts, snapshot, pools) = match self.derived.lock() {
            Ok(d) => (d.verdicts.clone(), d.snapshot.clone(), d.pools(dep, &self.node)),
            Err(_) => Default::default(),
        };
        let own = snapshot.reports.get(&self.node);
        Status {
            node: &self.node,
            site: &self.site,
            deployment: &dep.name,
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            router_id: n.map(|n| n.router_id.to_string()).unwrap_or_default(),
            asn: n.map(|n| n.asn).unwrap_or_default(),
            vips: dep
                .vips_of_site(&self.site)
                .map(|v| VipStatus {
                    name: &v.name,
                    prefixes: v.prefixes.iter().map(|p| p.to_string()).collect(),
                    verdict: verdicts.get(&v.name).cloned(),
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
            pools,
            dns: controller::dns_view(dep, &snapshot),
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

    fn metrics(&self) -> String {
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
struct Status<'a> {
    node: &'a str,
    site: &'a str,
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
    /// GSLB candidate VIP → state of each site announcing it.
    dns: BTreeMap<String, Vec<SiteView>>,
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
}

#[derive(Serialize)]
struct PeerStatus<'a> {
    router: &'a str,
    remote: String,
    remote_asn: u32,
}

fn respond(status: StatusCode, ctype: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = ctype.parse() {
        r.headers_mut().insert(hyper::header::CONTENT_TYPE, v);
    }
    r
}

/// Largest request body the admin API reads (an intent is a few bytes).
const MAX_BODY: usize = 16 * 1024;

async fn handle(state: Arc<NodeState>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if req.method() == Method::POST && req.uri().path() == "/intent" {
        use http_body_util::{BodyExt, Limited};
        let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
            Ok(b) => b.to_bytes(),
            Err(e) => return Ok(respond(StatusCode::BAD_REQUEST, "text/plain", format!("{e}\n"))),
        };
        let op: IntentOp = match serde_json::from_slice(&body) {
            Ok(op) => op,
            Err(e) => {
                return Ok(respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("bad intent: {e}\n"),
                ));
            }
        };
        return Ok(match state.apply_intent(op) {
            Ok(()) => respond(StatusCode::OK, "text/plain", "ok\n"),
            Err((code, msg)) => respond(code, "text/plain", format!("{msg}\n")),
        });
    }
    if req.method() == Method::POST && req.uri().path() == "/reload" {
        return Ok(match state.request_reload().await {
            Ok(summary) => respond(StatusCode::OK, "text/plain", format!("ok: {summary}\n")),
            Err(e) => respond(StatusCode::UNPROCESSABLE_ENTITY, "text/plain", format!("{e}\n")),
        });
    }
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/healthz") => respond(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/status") => match serde_json::to_vec_pretty(&state.status(&state.deployment())) {
            Ok(body) => respond(StatusCode::OK, "application/json", body),
            Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string()),
        },
        (&Method::GET, "/bgp/sessions") => {
            let sessions = state.speaker().map(|s| s.sessions()).unwrap_or_default();
            json(&sessions)
        }
        (&Method::GET, "/bgp/routes") => bgp_routes(&state, req.uri().query().unwrap_or("")),
        (&Method::GET, "/dns/explain") => match state.dns.get() {
            None => respond(
                StatusCode::NOT_FOUND,
                "text/plain",
                "this node runs no DNS server\n",
            ),
            Some(e) => match e.explain_query(req.uri().query().unwrap_or("")) {
                Ok(text) => respond(StatusCode::OK, "text/plain", text),
                Err(msg) => respond(StatusCode::BAD_REQUEST, "text/plain", format!("{msg}\n")),
            },
        },
        (&Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            state.metrics(),
        ),
        _ => respond(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    };
    Ok(resp)
}

fn json<T: Serialize>(v: &T) -> Response<Full<Bytes>> {
    match serde_json::to_vec_pretty(v) {
        Ok(body) => respond(StatusCode::OK, "application/json", body),
        Err(e) => respond(StatusCode::INTERNAL_SERVER_ERROR, "text/plain", e.to_string()),
    }
}

/// `GET /bgp/routes?peer=IP&kind=advertised|received`: every peer (or one),
/// advertised routes by default.
fn bgp_routes(state: &NodeState, query: &str) -> Response<Full<Bytes>> {
    let mut peer = None;
    let mut kind = RibKind::Advertised;
    for kv in query.split('&').filter(|s| !s.is_empty()) {
        match kv.split_once('=') {
            Some(("peer", v)) => match v.parse::<std::net::IpAddr>() {
                Ok(ip) => peer = Some(ip),
                Err(_) => return respond(StatusCode::BAD_REQUEST, "text/plain", format!("bad peer {v:?}\n")),
            },
            Some(("kind", "advertised")) => kind = RibKind::Advertised,
            Some(("kind", "received")) => kind = RibKind::Received,
            _ => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    "text/plain",
                    format!("bad query {kv:?}\n"),
                );
            }
        }
    }
    let Some(sp) = state.speaker() else {
        return json(&BTreeMap::<String, Vec<RibEntry>>::new());
    };
    let peers: Vec<std::net::IpAddr> = match peer {
        Some(p) => vec![p],
        None => sp.sessions().iter().map(|s| s.peer).collect(),
    };
    let out: BTreeMap<String, Vec<RibEntry>> = peers
        .into_iter()
        .map(|p| (p.to_string(), sp.routes(p, kind)))
        .collect();
    json(&out)
}

/// Serves the admin API until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    state: Arc<NodeState>,
    mut stop: watch::Receiver<bool>,
) -> Result<()> {
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(x) => x,
                    Err(e) => {
                        // Accept errors (EMFILE and the like) are transient: log and go on.
                        tracing::warn!(error = %e, "admin accept failed");
                        continue;
                    }
                };
                let state = state.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                    if let Err(e) = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await
                    {
                        tracing::debug!(%peer, error = %e, "admin connection ended with an error");
                    }
                });
            }
            _ = stop.changed() => return Ok(()),
        }
    }
}

/// The command-line side of the admin API (`edge status`, `edge drain`, …).
///
/// A plain blocking HTTP/1.1 exchange over `std::net`: the CLI talks to our
/// own admin API on loopback, one request per process, so a runtime and an
/// HTTP client stack would add start-up time and nothing else.
pub mod client {
    use std::io::{Read, Write};
    use std::net::{SocketAddr, TcpStream};
    use std::process::ExitCode;
    use std::time::Duration;

    use anyhow::{Context, Result, bail};
    use edge_topology::health::IntentOp;

    fn request(admin: SocketAddr, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
        let mut s = TcpStream::connect_timeout(&admin, Duration::from_secs(2))
            .with_context(|| format!("connecting to the admin API at {admin} (is `edge run` up?)"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))?;
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: {admin}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )?;
        let mut raw = Vec::new();
        s.read_to_end(&mut raw)?;
        let text = String::from_utf8_lossy(&raw);
        let (head, body) = text.split_once("\r\n\r\n").context("malformed HTTP response")?;
        let code = head
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .context("malformed HTTP status line")?;
        Ok((code, body.to_string()))
    }

    pub fn status(admin: SocketAddr, json: bool) -> Result<ExitCode> {
        let (code, body) = request(admin, "GET", "/status", "")?;
        if code != 200 {
            bail!("admin API answered {code}: {body}");
        }
        if json {
            println!("{body}");
            return Ok(ExitCode::SUCCESS);
        }
        let v: serde_json::Value = serde_json::from_str(&body).context("status is not JSON")?;
        println!(
            "node {} (site {}, AS{}, id {}) up {:.0}s",
            v["node"].as_str().unwrap_or("?"),
            v["site"].as_str().unwrap_or("?"),
            v["asn"],
            v["router_id"].as_str().unwrap_or("?"),
            v["uptime_seconds"].as_f64().unwrap_or(0.0)
        );
        for vip in v["vips"].as_array().into_iter().flatten() {
            let verdict = &vip["verdict"];
            println!(
                "  vip {:<10} {:<9} {}",
                vip["name"].as_str().unwrap_or("?"),
                verdict["decision"].as_str().unwrap_or("pending"),
                verdict["reason"].as_str().unwrap_or("")
            );
        }
        if let Some(b) = v["backends"].as_object() {
            for (name, up) in b {
                println!(
                    "  backend {name:<10} {}",
                    if up.as_bool() == Some(true) { "up" } else { "DOWN" }
                );
            }
        }
        let members: Vec<&str> = v["bus_members"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m.as_str())
            .collect();
        println!("  bus members: {}", members.join(", "));
        println!("  intent: {}", v["intent"]);
        Ok(ExitCode::SUCCESS)
    }

    pub fn bgp_sessions(admin: SocketAddr, json: bool) -> Result<ExitCode> {
        let (code, body) = request(admin, "GET", "/bgp/sessions", "")?;
        if code != 200 {
            bail!("admin API answered {code}: {body}");
        }
        if json {
            println!("{body}");
            return Ok(ExitCode::SUCCESS);
        }
        let v: serde_json::Value = serde_json::from_str(&body).context("sessions are not JSON")?;
        println!(
            "{:<28} {:>10} {:<12} {:>9} {:>6} {:>6} {:>7} {:>7} {:>5}",
            "peer", "AS", "state", "up (s)", "sent", "rcvd", "upd in", "upd out", "flaps"
        );
        for s in v.as_array().into_iter().flatten() {
            println!(
                "{:<28} {:>10} {:<12} {:>9} {:>6} {:>6} {:>7} {:>7} {:>5}",
                s["peer"].as_str().unwrap_or("?"),
                s["remote_as"].to_string(),
                s["state"].as_str().unwrap_or("?"),
                s["uptime"]["secs"]
                    .as_u64()
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "-".into()),
                s["prefixes_sent"].to_string(),
                s["prefixes_received"].to_string(),
                s["updates_in"].to_string(),
                s["updates_out"].to_string(),
                s["flaps"].to_string()
            );
            if let Some(e) = s["last_error"].as_str() {
                println!("    last error: {e}");
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    pub fn bgp_routes(admin: SocketAddr, peer: Option<&str>, received: bool, json: bool) -> Result<ExitCode> {
        let mut path = format!(
            "/bgp/routes?kind={}",
            if received { "received" } else { "advertised" }
        );
        if let Some(p) = peer {
            path.push_str(&format!("&peer={p}"));
        }
        let (code, body) = request(admin, "GET", &path, "")?;
        if code != 200 {
            bail!("admin API answered {code}: {}", body.trim_end());
        }
        if json {
            println!("{body}");
            return Ok(ExitCode::SUCCESS);
        }
        let v: serde_json::Value = serde_json::from_str(&body).context("routes are not JSON")?;
        for (peer, routes) in v.as_object().into_iter().flatten() {
            println!(
                "peer {peer} ({}):",
                if received { "received" } else { "advertised" }
            );
            for r in routes.as_array().into_iter().flatten() {
                println!(
                    "  {:<24} next-hop {:<24} {}",
                    r["prefix"].as_str().unwrap_or("?"),
                    r["next_hop"].as_str().unwrap_or("-"),
                    r["attributes"]
                );
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    pub fn dns_explain(admin: SocketAddr, query: &str) -> Result<ExitCode> {
        let (code, body) = request(admin, "GET", &format!("/dns/explain?{query}"), "")?;
        if code != 200 {
            bail!("{}", body.trim_end());
        }
        print!("{body}");
        Ok(ExitCode::SUCCESS)
    }

    pub fn reload(admin: SocketAddr) -> Result<ExitCode> {
        let (code, resp) = request(admin, "POST", "/reload", "")?;
        if code == 200 {
            print!("{resp}");
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!(
                "edge: reload refused, the running configuration is unchanged:\n{}",
                resp.trim_end()
            );
            Ok(ExitCode::FAILURE)
        }
    }

    pub fn intent(admin: SocketAddr, op: &IntentOp) -> Result<ExitCode> {
        let body = serde_json::to_string(op)?;
        let (code, resp) = request(admin, "POST", "/intent", &body)?;
        if code == 200 {
            println!("ok");
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!("edge: {}", resp.trim_end());
            Ok(ExitCode::FAILURE)
        }
    }
}
