//! The node runtime: `edge run`.
//!
//! ```text
//!   signals ──► shutdown (watch) ──┬──► admin API (status, metrics)
//!                                  └──► tiers (BGP, L4, L7, DNS) as they land
//! ```
//! Start-up binds the admin socket first so a port clash fails fast; shutdown
//! waits for every task to finish.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use edge_topology::Deployment;
use tokio::sync::watch;

use edge_topology::health::NodeReport;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::admin::{self, NodeState};
use crate::cli::RunArgs;
use std::collections::{BTreeMap, BTreeSet};

use edge_bgp::{PeerConfig, Speaker, SpeakerConfig};

use crate::controller::{self, Announcement, Decision};
use crate::health::gossip::{GossipBus, Timing};
use crate::health::{HealthBus, LocalBus, ReportUpdate, check, run_reporter};
use crate::kernel::LoopbackVips;

pub fn run(args: RunArgs) -> Result<ExitCode> {
    let dep = crate::cli::load_config(args.config.as_ref())?;
    let node = pick_node(&dep, args.node.as_deref())?;
    // available_parallelism honours the CPU affinity mask (taskset, cgroup
    // cpusets), so a node pinned to one core runs one worker.
    let workers = args
        .workers
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
        .max(1);
    tracing::info!(workers, "starting the runtime");
    // The L7 tier serves on as many threads of its own.
    let mut args = args;
    args.workers = Some(workers);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(serve(Arc::new(dep), node, args))?;
    Ok(ExitCode::SUCCESS)
}

/// The node this process runs: `--node`, or the only node of the topology.
fn pick_node(dep: &Deployment, wanted: Option<&str>) -> Result<String> {
    match wanted {
        Some(n) if dep.node(n).is_some() => Ok(n.to_string()),
        Some(n) => {
            let known: Vec<&str> = dep.nodes().map(|n| n.name.as_str()).collect();
            bail!(
                "no node {n:?} in topology {} (nodes: {})",
                dep.name,
                known.join(", ")
            )
        }
        None => {
            let mut nodes = dep.nodes();
            match (nodes.next(), nodes.next()) {
                (Some(only), None) => Ok(only.name.clone()),
                (None, _) => bail!("topology {} has no nodes", dep.name),
                (Some(_), Some(_)) => {
                    let known: Vec<&str> = dep.nodes().map(|n| n.name.as_str()).collect();
                    bail!(
                        "--node is required: topology {} has nodes {}",
                        dep.name,
                        known.join(", ")
                    )
                }
            }
        }
    }
}

async fn serve(dep: Arc<Deployment>, node: String, args: RunArgs) -> Result<()> {
    let (site, n) = dep.node(&node).context("node vanished from the topology")?;
    let site = site.name.clone();
    let admin_addr = args.admin.unwrap_or(n.admin);
    let (cfg_tx, cfg_rx) = watch::channel(dep.clone());
    let mut registry = prometheus_client::registry::Registry::with_prefix("edge");
    // Relative paths in the topology (GeoIP) are relative to its file.
    let base_dir = args
        .config
        .as_deref()
        .and_then(|p| p.parent())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| std::path::PathBuf::from("."));
    let dns = if args.no_listeners {
        None
    } else {
        crate::dns::start(&dep, &base_dir, &mut registry).await?
    };
    let mut l7 = if args.no_listeners {
        None
    } else {
        crate::l7::start(&dep, &node, &base_dir, &mut registry, args.workers.unwrap_or(1))?
    };
    let state = Arc::new(NodeState::new(
        cfg_rx.clone(),
        registry,
        node.clone(),
        site.clone(),
        Instant::now(),
    ));
    if let Some(d) = &dns {
        state.set_dns(d.explainer());
    }
    let listener = tokio::net::TcpListener::bind(admin_addr)
        .await
        .with_context(|| format!("binding the admin API on {admin_addr}"))?;
    let bound = listener.local_addr().context("admin socket address")?;
    tracing::info!(node = %node, site = %site, admin = %bound, "edge node started");

    let (stop_tx, stop_rx) = watch::channel(false);
    let (reload_tx, mut reload_rx) = mpsc::channel(4);
    state.set_reload(reload_tx);
    let admin_task = tokio::spawn(admin::serve(listener, state.clone(), stop_rx.clone()));

    // Health: checkers → reporter → bus → controller. A single-node
    // topology needs no gossip; otherwise every node joins the bus.
    let incarnation = incarnation();
    let bus: Arc<dyn HealthBus> = if dep.nodes().count() > 1 {
        let listen = args.gossip.unwrap_or(n.gossip);
        let timing = Timing {
            interval: dep.bus.interval,
            dead_grace: Duration::from_secs(60),
        };
        let bus = GossipBus::start(&dep, &node, listen, incarnation, timing).await?;
        tracing::info!(gossip = %listen, "health bus joined");
        Arc::new(bus)
    } else {
        Arc::new(LocalBus::new())
    };
    state.set_bus(bus.clone());
    let (report_tx, report_rx) = mpsc::channel(256);
    let report = NodeReport {
        node: node.clone(),
        site: site.clone(),
        incarnation,
        ..Default::default()
    };
    let mut tasks = JoinSet::new();
    tasks.spawn(run_reporter(report, bus.clone(), report_rx));
    tasks.spawn(run_checks(
        node.clone(),
        cfg_rx.clone(),
        report_tx.clone(),
        stop_rx.clone(),
    ));
    let speaker = if n.peers.is_empty() {
        None
    } else {
        let sp = Speaker::start(speaker_config(&dep, n))
            .await
            .context("starting the BGP speaker")?;
        tracing::info!(peers = n.peers.len(), "BGP speaker started");
        Some(Arc::new(sp))
    };
    state.set_speaker(speaker.clone());
    let (ejected_tx, ejected_rx) = watch::channel(crate::outlier::Ejected::new());
    // Dataplane first; the controller announces only after programming it.
    let l4 = if args.no_listeners {
        None
    } else {
        crate::l4::start(&dep, &node)?
    };
    // Held until shutdown; removing it takes away the rules it installed.
    let handoff = if l4.is_some() {
        crate::l4::handoff(&dep, &node)?
    } else {
        None
    };
    // Client latency for the GSLB `latency` filter: probe the resolvers any
    // node's DNS server saw (only when some GSLB name uses the filter).
    let uses_latency = dep.dns.as_ref().is_some_and(|d| {
        d.gslb
            .iter()
            .any(|g| g.policy.contains(&edge_topology::GslbFilter::Latency))
    });
    if uses_latency && !args.no_listeners {
        let seen = dns.as_ref().map(|d| d.resolvers());
        let snaps = bus.watch();
        let targets = move || {
            let mut t: Vec<std::net::IpAddr> = seen.as_ref().map(|s| s.snapshot()).unwrap_or_default();
            let snap = snaps.borrow().clone();
            t.extend(
                snap.reports
                    .values()
                    .flat_map(|r| r.client_rtt_us.keys().copied()),
            );
            t
        };
        tasks.spawn(crate::latency::run(
            crate::latency::ProbeConfig::default(),
            Arc::new(targets),
            report_tx.clone(),
            stop_rx.clone(),
        ));
    }
    let controller_task = tokio::spawn(run_controller(
        !args.no_vip_on_lo,
        cfg_rx.clone(),
        node.clone(),
        bus.watch(),
        report_tx,
        state.clone(),
        Consumers {
            speaker: speaker.clone(),
            dns_view: dns.as_ref().map(|d| d.view_handle()),
            l4,
            l7: l7.as_ref().map(|l| (l.proxy.clone(), l.pools.clone())),
            ejected: ejected_rx,
        },
        stop_rx.clone(),
    ));

    if let Some(l) = &mut l7 {
        l.serve(&stop_rx, &mut tasks);
        // Passive health: the proxy's failure reports drive ejections.
        let events = std::mem::replace(&mut l.events, mpsc::channel(1).1);
        tasks.spawn(crate::outlier::run_outliers(dep.clone(), events, ejected_tx));
    }
    let mut signals = Signals::new()?;
    loop {
        tokio::select! {
            sig = signals.next() => match sig {
                Signal::Hup => {
                    if let Err(e) = reload(args.config.as_deref(), &node, &cfg_tx) {
                        tracing::error!(error = %e, "reload refused; the running configuration is unchanged");
                    }
                }
                Signal::Term | Signal::Int => break,
            },
            Some(reply) = reload_rx.recv() => {
                let r = reload(args.config.as_deref(), &node, &cfg_tx);
                if let Err(e) = &r {
                    tracing::error!(error = %e, "reload refused; the running configuration is unchanged");
                }
                let _ = reply.send(r);
            }
        }
    }
    tracing::info!("shutting down");
    let _ = stop_tx.send(true);
    match admin_task.await {
        Ok(r) => r?,
        Err(e) => bail!("admin task failed: {e}"),
    }
    // The controller undoes its kernel changes before it returns.
    if tokio::time::timeout(Duration::from_secs(5), controller_task)
        .await
        .is_err()
    {
        tracing::warn!("controller did not stop within 5 s");
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if let Some(h) = handoff
        && let Err(e) = h.remove()
    {
        tracing::warn!(error = %e, "removing the L4 hand-off");
    }
    if let Some(mut d) = dns {
        d.shutdown().await;
    }
    // Last, close the BGP sessions with a Cease (the routes are withdrawn).
    state.set_speaker(None);
    if let Some(sp) = speaker.and_then(Arc::into_inner) {
        sp.shutdown().await;
    }
    tracing::info!("stopped");
    Ok(())
}

/// Loads, validates and installs a new configuration. Anything wrong with
/// it leaves the running configuration in place and says why.
fn reload(
    path: Option<&std::path::Path>,
    node: &str,
    cfg: &watch::Sender<Arc<Deployment>>,
) -> std::result::Result<String, String> {
    let Some(path) = path else {
        return Err("this node runs the embedded demo topology; there is no file to reload".into());
    };
    let new = edge_topology::load(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let Some((_, n)) = new.node(node) else {
        return Err(format!(
            "{}: node {node} is not in the new topology",
            path.display()
        ));
    };
    let old = cfg.borrow().clone();
    if let Some((_, o)) = old.node(node)
        && (o.admin != n.admin || o.gossip != n.gossip)
    {
        tracing::warn!("admin and gossip address changes take effect at the next restart");
    }
    let summary = new.summary().lines().next().unwrap_or_default().to_string();
    tracing::info!(file = %path.display(), %summary, "configuration reloaded");
    cfg.send_replace(Arc::new(new));
    Ok(summary)
}

/// Runs the active checkers for the backends of this node's site, and
/// restarts them when a reload changes what is checked.
async fn run_checks(
    node: String,
    mut cfg: watch::Receiver<Arc<Deployment>>,
    report_tx: mpsc::Sender<ReportUpdate>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let dep = cfg.borrow_and_update().clone();
        let targets = check::targets(&dep, &node);
        // Forget backends that are no longer checked (removed by a reload).
        let keep = targets.keys().cloned().collect();
        if report_tx.send(ReportUpdate::Retain(keep)).await.is_err() {
            return;
        }
        let (set_stop_tx, set_stop_rx) = watch::channel(false);
        let (tx, mut rx) = mpsc::channel(256);
        let mut set = JoinSet::new();
        for (backend, (addr, check)) in targets.clone() {
            set.spawn(check::run_checker(
                backend,
                addr,
                check,
                tx.clone(),
                set_stop_rx.clone(),
            ));
        }
        drop(tx);
        loop {
            tokio::select! {
                Some(t) = rx.recv() => {
                    if report_tx.send(ReportUpdate::Backend(t)).await.is_err() {
                        return;
                    }
                }
                changed = cfg.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    let next = check::targets(&cfg.borrow(), &node);
                    if next != targets {
                        break;
                    }
                }
                _ = stop.changed() => {
                    let _ = set_stop_tx.send(true);
                    return;
                }
            }
        }
        let _ = set_stop_tx.send(true);
        set.abort_all();
    }
}

/// A process incarnation for the health bus: milliseconds since the epoch,
/// so a restarted node's reports supersede its previous life's.
fn incarnation() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(1)
}

/// The controller: one task owns the derivation. On every new snapshot (or
/// reload, or drain deadline) it recomputes the VIP verdicts and pushes the
/// results to their consumers in start-up order: VIP addresses on `lo`
/// first, then the BGP announcements; removals go the other way round
/// (withdraw, then take the address away). On stop it withdraws everything
/// and removes what it added.
/// Where the controller pushes what it derives.
struct Consumers {
    speaker: Option<Arc<Speaker>>,
    dns_view: Option<edge_dns::ViewHandle>,
    l4: Option<crate::l4::L4Stage>,
    l7: Option<(edge_l7::Proxy, Vec<String>)>,
    /// Backends ejected by passive health, per pool.
    ejected: watch::Receiver<crate::outlier::Ejected>,
}

#[allow(clippy::too_many_arguments)]
async fn run_controller(
    vip_on_lo: bool,
    mut cfg: watch::Receiver<Arc<Deployment>>,
    node: String,
    mut snapshots: watch::Receiver<Arc<edge_topology::health::HealthSnapshot>>,
    report_tx: mpsc::Sender<ReportUpdate>,
    state: Arc<NodeState>,
    consumers: Consumers,
    mut stop: watch::Receiver<bool>,
) {
    let speaker = consumers.speaker;
    let mut ejected_rx = consumers.ejected.clone();
    // Load for the health bus (DNS load shedding, `edge status`): sampled
    // every second, published when it changes.
    let mut load_tick = tokio::time::interval(Duration::from_secs(1));
    let mut last_opened: Option<(u64, std::time::Instant)> = None;
    let mut last_load = (u64::MAX, 0u64);
    let mut l4 = consumers.l4;
    let mut last_l4 = None;
    let mut last_l7: Option<std::collections::HashMap<String, Vec<edge_l7::Backend>>> = None;
    let mut lo = match LoopbackVips::new().await {
        Ok(_) if !vip_on_lo => None,
        Ok(lo) => Some(lo),
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no netlink: VIPs will not be put on lo");
            None
        }
    };
    let mut last_verdicts = None;
    let mut last_ann: Option<BTreeMap<String, Announcement>> = None;
    let mut draining_since: BTreeMap<String, std::time::Instant> = BTreeMap::new();
    let mut local = BTreeSet::new();
    loop {
        let now = std::time::Instant::now();
        let dep = cfg.borrow_and_update().clone();
        let snap = snapshots.borrow_and_update().clone();
        let verdicts = controller::vip_verdicts(&dep, &node, &snap);
        draining_since.retain(|vip, _| verdicts.get(vip).is_some_and(|v| v.decision == Decision::Drain));
        for (vip, v) in &verdicts {
            if v.decision == Decision::Drain {
                draining_since.entry(vip.clone()).or_insert(now);
            }
        }
        // Program the dataplane before anything is announced.
        if let Some(stage) = &mut l4 {
            let desired = controller::l4_state(&dep, &node, &snap);
            // Left unrecorded on failure so the next event retries it.
            if last_l4.as_ref() != Some(&desired)
                && tokio::task::block_in_place(|| stage.apply(&dep, &node, &snap))
            {
                last_l4 = Some(desired);
            }
        }
        if let Some((proxy, pools)) = &consumers.l7 {
            let ejected = ejected_rx.borrow_and_update().clone();
            let sets = crate::l7::backend_sets(&dep, &node, pools, &snap, &ejected);
            if last_l7.as_ref() != Some(&sets) {
                match proxy.set_many(sets.clone()) {
                    Ok(()) => last_l7 = Some(sets),
                    Err(e) => tracing::error!(error = %e, "L7 backend update failed"),
                }
            }
        }
        let ann = controller::announcements(&dep, &verdicts, &draining_since, now);
        if last_ann.as_ref() != Some(&ann) {
            for (vip, a) in &ann {
                tracing::info!(%vip, announcement = ?a, reason = %verdicts[vip].reason, "vip announcement");
            }
            let next_local = controller::local_prefixes(&dep, &verdicts);
            if let Some(lo) = &mut lo {
                // Addresses first, so traffic the routers send is accepted.
                let both = local.union(&next_local).copied().collect();
                lo.reconcile(&both).await;
            }
            if let Some(sp) = &speaker {
                sp.announce(controller::routes(&dep, &ann));
            }
            if let Some(lo) = &mut lo {
                lo.reconcile(&next_local).await;
            }
            local = next_local;
            last_ann = Some(ann);
        }
        if last_verdicts.as_ref() != Some(&verdicts) {
            let serves = verdicts
                .iter()
                .map(|(k, v)| (k.clone(), v.decision == Decision::Announce))
                .collect();
            if report_tx.send(ReportUpdate::Vips(serves)).await.is_err() {
                break;
            }
            last_verdicts = Some(verdicts.clone());
        }
        if let Some(v) = &consumers.dns_view {
            v.set(edge_dns::DnsView::from_snapshot(&dep, &snap));
        }
        state.set_derived(verdicts, snap);
        // Wake up when the next drain ends, to withdraw.
        let deadline = draining_since
            .values()
            .map(|t| *t + dep.bgp.drain)
            .filter(|d| *d > now)
            .min();
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = snapshots.changed() => if changed.is_err() { break },
            changed = cfg.changed() => if changed.is_err() { break },
            changed = ejected_rx.changed() => if changed.is_err() { break },
            _ = load_tick.tick() => {
                if let Some(stage) = &mut l4 {
                    // Kernel dataplane upkeep runs `ip` and waits for ARP.
                    tokio::task::block_in_place(|| stage.tick());
                    let mut text = String::new();
                    stage.metrics(&mut text);
                    state.set_l4_metrics(text);
                }
                let (mut active, mut rate) = (0u64, 0u64);
                if let Some(dp) = l4.as_ref().and_then(|s| s.userspace.as_ref()) {
                    let (a, opened) = crate::l4::load(dp);
                    active += a;
                    let now = std::time::Instant::now();
                    if let Some((prev, at)) = last_opened {
                        let secs = now.duration_since(at).as_secs_f64().max(0.001);
                        rate = (opened.saturating_sub(prev) as f64 / secs).round() as u64;
                    }
                    last_opened = Some((opened, now));
                }
                if let Some((proxy, pools)) = &consumers.l7 {
                    let ups = proxy.upstreams();
                    active += pools
                        .iter()
                        .filter_map(|p| ups.pool(p))
                        .flat_map(|v| v.members.iter())
                        .map(|m| m.stats.active())
                        .sum::<u64>();
                }
                if (active, rate) != last_load {
                    last_load = (active, rate);
                    let _ = report_tx.try_send(ReportUpdate::Load { active_connections: active, per_second: rate as f64 });
                }
                continue;
            }
            _ = sleep => {}
            _ = stop.changed() => break,
        }
    }
    // Shutdown in reverse: withdraw, let the UPDATEs leave, then addresses.
    if let Some(sp) = &speaker {
        sp.announce(BTreeSet::new());
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    if let Some(lo) = &mut lo {
        lo.clear().await;
    }
    if let Some(stage) = &mut l4 {
        stage.remove();
    }
}

/// The node's BGP speaker configuration: one session per peering (one per
/// address family), dialled from the node's address on the shared subnet.
fn speaker_config(dep: &Deployment, n: &edge_topology::Node) -> SpeakerConfig {
    let peers = n
        .peers
        .iter()
        .map(|p| {
            let mut pc = PeerConfig::new(p.remote, p.router_asn);
            pc.port = dep.bgp.port;
            pc.local_address = Some(p.local);
            pc.hold_time = dep.bgp.hold_time;
            pc.connect_retry = dep.bgp.connect_retry;
            pc.max_prefixes = Some(dep.bgp.max_prefixes);
            if let Some(r) = dep.router(&p.router) {
                pc.password = r.password.clone();
                pc.ttl_security = r.ttl_security;
            }
            // The lab routers (and most operators) run one session per
            // family: IPv4 routes over the IPv4 session, IPv6 over IPv6.
            pc.families = if p.remote.is_ipv4() {
                vec![(edge_bgp::wire::AFI_IPV4, edge_bgp::wire::SAFI_UNICAST)]
            } else {
                vec![(edge_bgp::wire::AFI_IPV6, edge_bgp::wire::SAFI_UNICAST)]
            };
            pc
        })
        .collect();
    SpeakerConfig {
        local_as: n.asn,
        router_id: n.router_id,
        listen: None,
        peers,
    }
}

enum Signal {
    Term,
    Int,
    Hup,
}

/// SIGTERM/SIGINT stop the node; SIGHUP reloads the configuration.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => { tracing::info!("SIGTERM"); Signal::Term }
            _ = self.int.recv() => { tracing::info!("SIGINT"); Signal::Int }
            _ = self.hup.recv() => { tracing::info!("SIGHUP"); Signal::Hup }
        }
    }
}
