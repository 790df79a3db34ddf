//! The node: every tier of one edge node, composed.
//!
//! ```text
//!   signals / admin API ──► Node (reload, shutdown)
//!                              │
//!   checkers ─► reporter ─► health bus ─► controller (state machine) ─► plan
//!        ▲                                      ▲                        │
//!        └── reload restarts changed checks     └── ejections (L7) ◄─────┤
//!                                                                        ▼
//!        drivers: L4 dataplanes, L7 pools, `lo` addresses, BGP speaker, DNS view
//! ```
//! [`Node::build`] loads nothing and binds everything: sockets first, so a
//! port clash fails at once; [`Node::spawn`] starts the tasks;
//! [`Node::reload`] applies a new topology file; [`Node::shutdown`] stops in
//! reverse start order (withdraw, addresses, dataplanes, sessions).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use edge_bgp::{PeerConfig, Speaker, SpeakerConfig};
use edge_topology::Deployment;
use edge_topology::health::{HealthSnapshot, NodeReport};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use crate::admin::{self, NodeState, ReloadRequest, Verb};
use crate::controller::{Action, Controller, Input, Plan, Tier};
use crate::health::gossip::{GossipBus, Timing};
use crate::health::outlier::Ejected;
use crate::health::{HealthBus, LocalBus, ReportUpdate, check, run_reporter};
use crate::kernel::LoopbackVips;
use crate::reload::Changes;
use crate::upgrade::{Takeover, Upgrade};

/// How a node runs, beyond its topology file (the command line of `edge run`).
#[derive(Debug, Clone, Default)]
pub struct NodeOptions {
    /// Topology file; without it, the embedded single-node loopback demo.
    pub config: Option<PathBuf>,
    /// Which node of the topology this process is (optional when the
    /// topology has a single node).
    pub node: Option<String>,
    /// Overrides the node's admin API address.
    pub admin: Option<SocketAddr>,
    /// Overrides the address the health bus listens on.
    pub gossip: Option<SocketAddr>,
    /// Do not put served VIPs on `lo`.
    pub no_vip_on_lo: bool,
    /// Control plane only: bind no L4, L7 or DNS listeners.
    pub no_listeners: bool,
    /// Worker threads (0: the CPUs this process may run on).
    pub workers: usize,
    /// This program's version, shown by `/status` and `edge_node_info`.
    pub version: String,
    /// The binary `edge upgrade` starts by default (the one this process
    /// was started from) and the arguments it passes (this process's).
    pub exe: Option<PathBuf>,
    pub args: Vec<std::ffi::OsString>,
}

/// Loads the topology file, or the embedded demo without one.
pub fn load_config(config: Option<&Path>) -> Result<Deployment> {
    match config {
        Some(p) => edge_topology::load(p).with_context(|| format!("loading {}", p.display())),
        None => edge_topology::parse(edge_topology::DEMO).context("the embedded demo topology"),
    }
}

/// Runs a node until SIGTERM or SIGINT; SIGHUP reloads its topology file.
pub fn run(mut opts: NodeOptions) -> Result<()> {
    // available_parallelism honours the CPU affinity mask (taskset, cgroup
    // cpusets), so a node pinned to one core runs one worker.
    if opts.workers == 0 {
        opts.workers = std::thread::available_parallelism().map_or(1, usize::from);
    }
    tracing::info!(workers = opts.workers, "starting the runtime");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.workers)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    rt.block_on(async move {
        let mut node = Node::build(opts).await?;
        node.spawn();
        node.serve_signals().await?;
        node.shutdown().await
    })
}

/// One running edge node (see the module docs).
pub struct Node {
    opts: NodeOptions,
    name: String,
    /// The running configuration; the controller and the checkers follow it.
    cfg_tx: watch::Sender<Arc<Deployment>>,
    /// The pools the L7 tier serves; the controller follows them.
    l7_pools_tx: watch::Sender<BTreeSet<String>>,
    /// Turns true once the controller applied its first plan: the L7
    /// listeners accept only then.
    ready_tx: watch::Sender<bool>,
    state: Arc<NodeState>,
    bus: Arc<dyn HealthBus>,
    speaker: Option<Arc<Speaker>>,
    dns: Option<crate::tiers::dns::Dns>,
    l7: Option<crate::tiers::l7::L7>,
    /// Taken by [`Node::spawn`].
    l4: Option<crate::tiers::l4::L4Stage>,
    handoff: Option<edge_l4::handoff::Handoff>,
    admin_listener: Option<tokio::net::TcpListener>,
    report: NodeReport,
    stop_tx: watch::Sender<bool>,
    reload_rx: mpsc::Receiver<ReloadRequest>,
    tasks: JoinSet<()>,
    admin_task: Option<tokio::task::JoinHandle<Result<()>>>,
    controller_task: Option<tokio::task::JoinHandle<()>>,
    /// Set by [`Node::upgrade`] once the next process has taken over: the
    /// controller then stops without withdrawing or removing anything.
    handed_over: Arc<std::sync::atomic::AtomicBool>,
    /// The previous process this one takes over from (`edge upgrade`).
    takeover: Option<Arc<Takeover>>,
    /// Whether the data plane keeps forwarding while this process restarts
    /// (the F bit of graceful restart): true for a takeover, whose
    /// predecessor served until this process did.
    forwarding_preserved: bool,
}

impl Node {
    /// Loads and checks the topology, binds every socket the node serves
    /// on and builds each tier. Nothing is served or announced yet.
    pub async fn build(opts: NodeOptions) -> Result<Node> {
        // Started by `edge upgrade`: take the sockets over before binding.
        let takeover = tokio::task::block_in_place(Takeover::from_env)
            .context("taking over from the previous process")?
            .map(Arc::new);
        let built = Self::build_with(opts, takeover.clone()).await;
        if let (Err(e), Some(t)) = (&built, &takeover) {
            t.failed(&format!("{e:#}"));
        }
        built
    }

    async fn build_with(opts: NodeOptions, takeover: Option<Arc<Takeover>>) -> Result<Node> {
        let dep = Arc::new(load_config(opts.config.as_deref())?);
        let name = pick_node(&dep, opts.node.as_deref())?;
        let (site, n) = dep.node(&name).context("node vanished from the topology")?;
        let site = site.name.clone();
        let admin_addr = opts.admin.unwrap_or(n.admin);
        let (cfg_tx, cfg_rx) = watch::channel(dep.clone());
        let mut registry = prometheus_client::registry::Registry::with_prefix("edge");
        let base_dir = base_dir(opts.config.as_deref());
        let dns = if opts.no_listeners {
            None
        } else {
            crate::tiers::dns::start(&dep, &base_dir, &mut registry).await?
        };
        let l7 = if opts.no_listeners {
            None
        } else {
            crate::tiers::l7::start(&dep, &name, &base_dir, &mut registry, opts.workers.max(1))?
        };
        let state = Arc::new(NodeState::new(
            cfg_rx,
            registry,
            name.clone(),
            site.clone(),
            opts.version.clone(),
            Instant::now(),
        ));
        if let Some(d) = &dns {
            state.set_dns(d.explainer());
        }
        let admin_listener = crate::sockets::bind(admin_addr, socket2::Type::STREAM)
            .and_then(|s| Ok(tokio::net::TcpListener::from_std(s.into())?))
            .with_context(|| format!("binding the admin API on {admin_addr}"))?;
        let bound = admin_listener.local_addr().context("admin socket address")?;
        tracing::info!(node = %name, %site, admin = %bound, "edge node built");

        let l4 = if opts.no_listeners {
            None
        } else {
            crate::tiers::l4::start(&dep, &name)?
        };
        // Held until shutdown; removing it takes away the rules it installed.
        let handoff = if l4.is_some() {
            crate::tiers::l4::handoff(&dep, &name)?
        } else {
            None
        };
        // Every socket is bound (or inherited): the previous process may now
        // leave the bus and BGP to this one.
        if let Some(t) = &takeover {
            tokio::task::block_in_place(|| t.built()).context("waiting for the previous process")?;
            let unclaimed = crate::sockets::drop_unclaimed();
            if unclaimed > 0 {
                tracing::info!(
                    unclaimed,
                    "inherited sockets the new configuration does not serve were closed"
                );
            }
        }
        // A single-node topology needs no gossip; otherwise every node
        // joins the bus.
        let incarnation = incarnation();
        let bus: Arc<dyn HealthBus> = if dep.nodes().count() > 1 {
            let listen = opts.gossip.unwrap_or(n.gossip);
            let timing = Timing {
                interval: dep.bus.interval,
                dead_grace: Duration::from_secs(60),
            };
            let bus = join_bus(&dep, &name, listen, incarnation, timing, takeover.is_some()).await?;
            tracing::info!(gossip = %listen, "health bus joined");
            Arc::new(bus)
        } else {
            Arc::new(LocalBus::new())
        };
        state.set_bus(bus.clone());
        let forwarding_preserved = takeover.is_some();
        let speaker = if n.peers.is_empty() {
            None
        } else {
            // A takeover re-announces what its predecessor announced, with
            // the R bit, so the routers' stale routes are refreshed in place.
            let options = edge_bgp::SpeakerOptions {
                restarting: takeover.is_some(),
                initial_routes: takeover
                    .as_ref()
                    .map(|t| t.state.routes.iter().cloned().collect())
                    .unwrap_or_default(),
            };
            let sp =
                Speaker::start_with_options(speaker_config(&dep, n, forwarding_preserved), None, options)
                    .context("starting the BGP speaker")?;
            tracing::info!(peers = n.peers.len(), "BGP speaker started");
            Some(Arc::new(sp))
        };
        state.set_speaker(speaker.clone());
        let (stop_tx, _) = watch::channel(false);
        let l7_pools_tx = watch::Sender::new(
            l7.as_ref()
                .map(|l| l.pools.iter().cloned().collect())
                .unwrap_or_default(),
        );
        let (reload_tx, reload_rx) = mpsc::channel(4);
        state.set_reload(reload_tx);
        let report = NodeReport {
            node: name.clone(),
            site,
            incarnation,
            ..Default::default()
        };
        Ok(Node {
            opts,
            name,
            cfg_tx,
            l7_pools_tx,
            ready_tx: watch::Sender::new(false),
            state,
            bus,
            speaker,
            dns,
            l7,
            l4,
            handoff,
            admin_listener: Some(admin_listener),
            report,
            stop_tx,
            reload_rx,
            tasks: JoinSet::new(),
            admin_task: None,
            controller_task: None,
            handed_over: Arc::default(),
            takeover,
            forwarding_preserved,
        })
    }

    /// Starts every task: admin API, checkers, reporter, controller,
    /// passive health, latency prober and the L7 listeners. The controller
    /// programs the dataplanes before it announces anything.
    pub fn spawn(&mut self) {
        let stop_rx = self.stop_tx.subscribe();
        let dep = self.cfg_tx.borrow().clone();
        if let Some(listener) = self.admin_listener.take() {
            self.admin_task = Some(tokio::spawn(admin::serve(
                listener,
                self.state.clone(),
                stop_rx.clone(),
            )));
        }
        let (report_tx, report_rx) = mpsc::channel(256);
        self.tasks
            .spawn(run_reporter(self.report.clone(), self.bus.clone(), report_rx));
        self.tasks.spawn(run_checks(
            self.name.clone(),
            self.cfg_tx.subscribe(),
            report_tx.clone(),
            stop_rx.clone(),
        ));
        let (ejected_tx, ejected_rx) = watch::channel(Ejected::new());
        // Client latency for the GSLB `latency` filter: probe the resolvers
        // any node's DNS server saw (only when some GSLB name uses it).
        let uses_latency = dep.dns.as_ref().is_some_and(|d| {
            d.gslb
                .iter()
                .any(|g| g.policy.contains(&edge_topology::GslbFilter::Latency))
        });
        if uses_latency && !self.opts.no_listeners {
            let seen = self.dns.as_ref().map(|d| d.resolvers());
            let snaps = self.bus.watch();
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
            self.tasks.spawn(crate::health::latency::run(
                crate::health::latency::ProbeConfig::default(),
                Arc::new(targets),
                report_tx.clone(),
                stop_rx.clone(),
            ));
        }
        let controller = Controller::new(self.name.clone());
        let inherited = self.takeover.as_ref().map(|t| {
            (
                t.state.routes.iter().cloned().collect::<BTreeSet<_>>(),
                t.state.local.iter().copied().collect::<BTreeSet<_>>(),
            )
        });
        let drivers = Drivers {
            speaker: self.speaker.clone(),
            dns_view: self.dns.as_ref().map(|d| d.view_handle()),
            l4: self.l4.take(),
            l7: self.l7.as_ref().map(|l| l.proxy.clone()),
            l7_pools: Vec::new(),
            lo: None,
            report_tx,
            vip_on_lo: !self.opts.no_vip_on_lo,
            state: self.state.clone(),
        };
        self.controller_task = Some(tokio::spawn(drive_controller(
            controller,
            self.cfg_tx.subscribe(),
            self.l7_pools_tx.subscribe(),
            self.bus.watch(),
            ejected_rx,
            self.state.clone(),
            drivers,
            Startup {
                ready: self.ready_tx.clone(),
                inherited,
                handed_over: self.handed_over.clone(),
            },
            stop_rx.clone(),
        )));
        if let Some(t) = self.takeover.clone() {
            // The previous process stops accepting once this one serves.
            let mut ready = self.ready_tx.subscribe();
            self.tasks.spawn(async move {
                if ready.wait_for(|r| *r).await.is_ok()
                    && let Err(e) = tokio::task::spawn_blocking(move || t.serving()).await
                {
                    tracing::warn!(error = %e, "telling the previous process this one serves");
                }
            });
        }
        if let Some(l) = &mut self.l7 {
            l.serve(&self.ready_tx.subscribe(), &stop_rx, &mut self.tasks);
            // Passive health: the proxy's failure reports drive ejections.
            let events = std::mem::replace(&mut l.events, mpsc::channel(1).1);
            self.tasks.spawn(crate::health::outlier::run_outliers(
                self.cfg_tx.subscribe(),
                events,
                ejected_tx,
            ));
        }
    }

    /// Serves signals and admin reload requests until SIGTERM or SIGINT.
    pub async fn serve_signals(&mut self) -> Result<()> {
        let mut signals = Signals::new()?;
        loop {
            tokio::select! {
                sig = signals.next() => match sig {
                    Signal::Hup => {
                        if let Err(e) = self.reload(false).await {
                            tracing::error!(error = %e, "reload refused; the running configuration is unchanged");
                        }
                    }
                    Signal::Usr2 => match self.upgrade(None).await {
                        Ok(done) => {
                            tracing::info!(%done, "upgraded");
                            return Ok(());
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "upgrade failed");
                            if self.handed_over.load(std::sync::atomic::Ordering::SeqCst) {
                                return Ok(());
                            }
                        }
                    },
                    Signal::Term | Signal::Int => return Ok(()),
                },
                Some(req) = self.reload_rx.recv() => match req.verb {
                    Verb::Reload { dry_run } => {
                        let r = self.reload(dry_run).await;
                        if let Err(e) = &r {
                            tracing::error!(error = %e, "reload refused; the running configuration is unchanged");
                        }
                        let _ = req.reply.send(r);
                    }
                    Verb::Upgrade { binary } => {
                        let r = self.upgrade(binary).await;
                        let done = r.is_ok() || self.handed_over.load(std::sync::atomic::Ordering::SeqCst);
                        if let Err(e) = &r {
                            tracing::error!(error = %e, "upgrade failed; this process goes on serving");
                        }
                        let _ = req.reply.send(r);
                        if done {
                            return Ok(());
                        }
                    }
                },
            }
        }
    }

    /// Loads, validates and applies the topology file again, and says
    /// what changed per tier (`dry_run`: only says it). The file gets the
    /// checks `edge validate` makes. A change that only a restart can apply
    /// refuses the whole reload, so that an "ok" means everything read was
    /// applied. The tiers are applied in an order where only the first
    /// steps can fail: bind the sockets of new L7 listeners, swap the L7
    /// configuration (it re-reads every certificate), swap the DNS
    /// authority (rolled back to the old L7 configuration if it fails),
    /// then the BGP peers and the controller's configuration, which cannot.
    pub async fn reload(&mut self, dry_run: bool) -> std::result::Result<String, String> {
        let Some(path) = self.opts.config.clone() else {
            return Err("this node runs the embedded demo topology; there is no file to reload".into());
        };
        let new = edge_topology::load(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let Some((_, n)) = new.node(&self.name) else {
            return Err(format!(
                "{}: node {} is not in the new topology",
                path.display(),
                self.name
            ));
        };
        let base = base_dir(Some(&path));
        let l7_errors = crate::validate_l7(&new, &base);
        if !l7_errors.is_empty() {
            return Err(format!("{}: invalid\n{}", path.display(), l7_errors.join("\n")));
        }
        let old = self.cfg_tx.borrow().clone();
        let mut changes = Changes::default();
        crate::reload::topology(&old, &new, &mut changes);
        crate::reload::restart_only(&old, &new, &self.name, !self.opts.no_listeners, &mut changes);

        // DNS: what the server would change (a file it cannot serve fails here).
        let dns_changes = if self.dns.is_some() {
            let d = edge_dns::diff(&old, &new).map_err(|e| format!("dns: {e}"))?;
            for c in d.iter() {
                if matches!(c, edge_dns::DnsChange::Setting { live: false, .. }) {
                    changes.needs_restart(format!("dns: {c}"));
                } else {
                    changes.push("dns", c.to_string());
                }
            }
            Some(d)
        } else {
            None
        };

        // L7: the new proxy configuration and the listeners it adds.
        let new_l7 = if self.opts.no_listeners {
            None
        } else {
            crate::tiers::l7::proxy_config(&new, &self.name, &base).map_err(|e| format!("l7: {e:#}"))?
        };
        let mut added_plans = Vec::new();
        match (&self.l7, &new_l7) {
            (Some(l7), Some((cfg, plans))) => {
                let diff = edge_l7::diff(&l7.proxy.config(), cfg);
                for c in diff.changes() {
                    changes.push("l7", c.to_string());
                }
                let added: BTreeSet<&str> = diff.listeners_added().into_iter().collect();
                added_plans = plans
                    .iter()
                    .filter(|p| added.contains(p.name.as_str()))
                    .cloned()
                    .collect();
            }
            (None, Some(_)) => changes.needs_restart("l7: this node's site gains its first L7 listener"),
            (Some(_), None) => changes.needs_restart("l7: this node's site loses its last L7 listener"),
            (None, None) => {}
        }

        // BGP: the peerings of this node.
        let new_peers = speaker_config(&new, n, self.forwarding_preserved).peers;
        let old_peers = old
            .node(&self.name)
            .map(|(_, o)| speaker_config(&old, o, self.forwarding_preserved).peers)
            .unwrap_or_default();
        match (&self.speaker, new_peers.is_empty()) {
            (Some(_), _) => {
                for line in crate::reload::peers(&old_peers, &new_peers) {
                    changes.push("bgp", line);
                }
            }
            (None, false) => changes.needs_restart("bgp: the node gains its first peering"),
            (None, true) => {}
        }
        if check::targets(&old, &self.name) != check::targets(&new, &self.name) {
            changes.push(
                "checks",
                "active checks restarted with the new targets and settings",
            );
        }

        if !changes.restart().is_empty() {
            return Err(format!(
                "{}: refused, nothing was applied: these changes need a restart of the node:\n  {}",
                path.display(),
                changes.restart().join("\n  ")
            ));
        }
        let summary = new.summary().lines().next().unwrap_or_default().to_string();
        if dry_run {
            return Ok(format!("dry run, nothing applied: {summary}\n{changes}"));
        }

        // Apply: only the first steps can fail, and they undo themselves.
        let sockets = match &self.l7 {
            Some(l7) if !added_plans.is_empty() => Some(
                crate::tiers::l7::bind_listeners(&added_plans, l7.threads())
                    .map_err(|e| format!("l7: {e:#}"))?,
            ),
            _ => None,
        };
        let mut old_l7 = None;
        if let (Some(l7), Some((cfg, _))) = (&self.l7, new_l7) {
            let before = l7.proxy.config();
            let applied = l7
                .proxy
                .reconfigure(cfg)
                .map_err(|e| format!("l7: {e}; nothing was applied"))?;
            changes.replace("l7", applied.changes().iter().map(|c| c.to_string()));
            old_l7 = Some(before);
        }
        if let (Some(dns), Some(_)) = (&self.dns, &dns_changes) {
            let r = tokio::task::block_in_place(|| dns.reload(&new, &base));
            match r {
                Ok(applied) => changes.replace("dns", applied.iter().map(|c| c.to_string())),
                Err(e) => {
                    if let (Some(l7), Some(before)) = (&self.l7, old_l7)
                        && let Err(back) = l7.proxy.reconfigure(before)
                    {
                        tracing::error!(error = %back, "rolling the L7 tier back after a failed DNS reload");
                    }
                    return Err(format!("dns: {e}; nothing was applied"));
                }
            }
        }
        if let (Some(l7), Some(sockets)) = (&self.l7, sockets) {
            let stop = self.stop_tx.subscribe();
            l7.serve_sockets(sockets, &self.ready_tx.subscribe(), &stop, &mut self.tasks);
        }
        if let Some(sp) = &self.speaker {
            match sp.set_peers(new_peers).await {
                Ok(pc) if !pc.is_empty() => changes.replace("bgp", pc.to_string().lines().map(String::from)),
                Ok(_) => {}
                // Checked before anything was applied; a refusal here means
                // the speaker's own validation differs from ours.
                Err(e) => tracing::error!(error = %e, "BGP peers not changed"),
            }
        }
        if let Some(l7) = &self.l7 {
            let pools: BTreeSet<String> = l7.proxy.config().pools.iter().map(|p| p.name.clone()).collect();
            self.l7_pools_tx.send_if_modified(|p| {
                let changed = *p != pools;
                *p = pools;
                changed
            });
        }
        tracing::info!(file = %path.display(), %summary, changes = %changes.to_string().trim_end().replace('\n', "; "), "configuration reloaded");
        self.cfg_tx.send_replace(Arc::new(new));
        Ok(format!("{summary}\n{changes}"))
    }

    /// Hands this node over to a new process of `binary` (default: the
    /// binary this one was started from) with the same arguments: every
    /// listening socket, the VIP addresses and the announced routes go to
    /// it (see [`crate::upgrade`]). On success this process has left the bus
    /// and BGP and should [`Node::shutdown`] (which then only finishes what
    /// it has); on an error nothing changed and it goes on serving.
    pub async fn upgrade(&mut self, binary: Option<PathBuf>) -> std::result::Result<String, String> {
        let exe = binary
            .or_else(|| self.opts.exe.clone())
            .ok_or("no binary to upgrade to: pass one")?;
        if !exe.is_file() {
            return Err(format!("{}: no such file", exe.display()));
        }
        let desired = self.state.applied_desired();
        let state = crate::upgrade::State {
            routes: desired
                .as_ref()
                .map(|d| d.routes.iter().cloned().collect())
                .unwrap_or_default(),
            local: self.state.owned_local().into_iter().collect(),
            version: self.opts.version.clone(),
        };
        let sockets = crate::sockets::for_handover().map_err(|e| format!("duplicating the sockets: {e}"))?;
        let n_sockets = sockets.len();
        let args = self.opts.args.clone();
        let t0 = Instant::now();
        tracing::info!(binary = %exe.display(), sockets = n_sockets, "upgrade: starting the new process");
        let up = tokio::task::spawn_blocking({
            let exe = exe.clone();
            move || Upgrade::start(&exe, &args, sockets, &state)
        })
        .await
        .map_err(|e| format!("upgrade task: {e}"))?
        .map_err(|e| format!("upgrade to {}: {e}; this process goes on serving", exe.display()))?;
        let pid = up.pid();
        // The new process has built every tier on our sockets. From here on
        // this process stops without withdrawing or removing anything.
        self.handed_over.store(true, std::sync::atomic::Ordering::SeqCst);
        // Leave the bus (it binds the gossip port next) and BGP, without a
        // Cease: peers with graceful restart keep our routes while it
        // re-establishes.
        if let Some(done) = self.bus.stop() {
            let _ = tokio::time::timeout(Duration::from_secs(2), done).await;
        }
        if let Some(sp) = &self.speaker {
            sp.abandon().await;
        }
        let went = tokio::task::spawn_blocking(move || up.go().map(|()| up))
            .await
            .map_err(|e| format!("upgrade task: {e}"))?;
        match went {
            Ok(up) => {
                up.detach();
                let took = t0.elapsed();
                tracing::info!(
                    pid,
                    ?took,
                    "upgrade: the new process serves; this one finishes what it has"
                );
                Ok(format!(
                    "process {pid} ({}) took over {n_sockets} sockets in {:.0} ms; process {} finishes its connections and exits",
                    exe.display(),
                    took.as_secs_f64() * 1000.0,
                    std::process::id()
                ))
            }
            // We have left the bus and BGP: there is no going back, and the
            // new process (if alive) carries on; say so.
            Err(e) => Err(format!(
                "upgrade: the new process {pid} did not confirm it serves: {e}; this process has already left BGP and the bus and stops"
            )),
        }
    }

    /// Stops the node in reverse start order: the controller withdraws
    /// every route and removes the VIP addresses and dataplanes, the
    /// listeners drain, and last the BGP sessions close with a Cease.
    pub async fn shutdown(mut self) -> Result<()> {
        tracing::info!("shutting down");
        let _ = self.stop_tx.send(true);
        if let Some(t) = self.admin_task.take() {
            match t.await {
                Ok(r) => r?,
                Err(e) => bail!("admin task failed: {e}"),
            }
        }
        // The controller undoes its kernel changes before it returns.
        if let Some(t) = self.controller_task.take()
            && tokio::time::timeout(Duration::from_secs(5), t).await.is_err()
        {
            tracing::warn!("controller did not stop within 5 s");
        }
        self.tasks.abort_all();
        while self.tasks.join_next().await.is_some() {}
        let handed_over = self.handed_over.load(std::sync::atomic::Ordering::SeqCst);
        if handed_over {
            // The new process uses the hand-off rules as they are.
            std::mem::forget(self.handoff.take());
        } else if let Some(h) = self.handoff.take()
            && let Err(e) = h.remove()
        {
            tracing::warn!(error = %e, "removing the L4 hand-off");
        }
        if let Some(mut d) = self.dns.take() {
            d.shutdown().await;
        }
        // Last, close the BGP sessions with a Cease (the routes are
        // withdrawn), unless they were abandoned to a new process.
        self.state.set_speaker(None);
        if let Some(sp) = self.speaker.take().and_then(Arc::into_inner)
            && !handed_over
        {
            sp.shutdown().await;
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Relative paths in the topology (certificates, GeoIP) are relative to
/// its file.
fn base_dir(config: Option<&Path>) -> PathBuf {
    config
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// Joins the health bus. A process that takes over from another binds the
/// gossip port its predecessor just released, which can take a moment.
async fn join_bus(
    dep: &Deployment,
    name: &str,
    listen: SocketAddr,
    incarnation: u64,
    timing: Timing,
    takeover: bool,
) -> Result<GossipBus> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match GossipBus::start(dep, name, listen, incarnation, timing).await {
            Ok(b) => return Ok(b),
            Err(e) if takeover && Instant::now() < deadline => {
                tracing::debug!(error = %format!("{e:#}"), "gossip port not free yet");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Where the controller's plans are carried out.
struct Drivers {
    speaker: Option<Arc<Speaker>>,
    dns_view: Option<edge_dns::ViewHandle>,
    l4: Option<crate::tiers::l4::L4Stage>,
    l7: Option<edge_l7::Proxy>,
    /// The pools the proxy serves (for its load figure).
    l7_pools: Vec<String>,
    lo: Option<LoopbackVips>,
    report_tx: mpsc::Sender<ReportUpdate>,
    vip_on_lo: bool,
    state: Arc<NodeState>,
}

/// What the controller task needs to know about how the node started and
/// how it stops.
struct Startup {
    /// Turned true once the first plan is applied (the L7 listeners wait).
    ready: watch::Sender<bool>,
    /// Routes and `lo` prefixes a predecessor left (an upgrade).
    inherited: Option<(BTreeSet<edge_bgp::Route>, BTreeSet<ipnet::IpNet>)>,
    /// Set when the node was handed over to a new process: stop without
    /// touching anything.
    handed_over: Arc<std::sync::atomic::AtomicBool>,
}

impl Drivers {
    /// Carries out `plan`'s actions in order. A failed action is logged
    /// where it failed and its tier returned, so the controller re-issues it.
    async fn apply(&mut self, plan: &Plan) -> BTreeSet<Tier> {
        let mut failed = BTreeSet::new();
        for action in &plan.actions {
            let ok = match action {
                Action::ProgramL4(p) => match &mut self.l4 {
                    // Kernel dataplane updates are blocking netlink/BPF calls.
                    Some(stage) => tokio::task::block_in_place(|| stage.apply(p)),
                    None => true,
                },
                Action::SetL7(sets) => match &self.l7 {
                    Some(proxy) => match proxy.set_many(crate::tiers::l7::backend_sets(sets)) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::error!(error = %e, "L7 backend update failed");
                            false
                        }
                    },
                    None => true,
                },
                Action::AddLocal(set) | Action::SetLocal(set) => match &mut self.lo {
                    Some(lo) => {
                        let ok = lo.reconcile(set).await;
                        self.state.set_owned_local(lo.owned().clone());
                        ok
                    }
                    None => true,
                },
                Action::Announce(routes) => {
                    if let Some(sp) = &self.speaker {
                        sp.announce(routes.clone());
                    }
                    true
                }
                Action::Report(serves) => self
                    .report_tx
                    .send(ReportUpdate::Vips(serves.clone()))
                    .await
                    .is_ok(),
                Action::SetDns(view) => {
                    if let Some(v) = &self.dns_view {
                        v.set(view.clone());
                    }
                    true
                }
                Action::Wait(d) => {
                    if self.speaker.is_some() {
                        tokio::time::sleep(*d).await;
                    }
                    true
                }
                Action::RemoveL4 => {
                    if let Some(stage) = &mut self.l4 {
                        stage.remove();
                    }
                    true
                }
            };
            if !ok && let Some(t) = action.tier() {
                failed.insert(t);
            }
        }
        failed
    }
}

/// Open connections and new flows per second, sampled for the bus.
#[derive(Default)]
struct LoadSampler {
    last_opened: Option<(u64, Instant)>,
    last: Option<(u64, u64)>,
}

/// The controller task: feeds the state machine and carries out its plans.
#[allow(clippy::too_many_arguments)]
async fn drive_controller(
    mut ctl: Controller,
    mut cfg: watch::Receiver<Arc<Deployment>>,
    mut l7_pools: watch::Receiver<BTreeSet<String>>,
    mut snapshots: watch::Receiver<Arc<HealthSnapshot>>,
    mut ejected: watch::Receiver<Ejected>,
    state: Arc<NodeState>,
    mut drivers: Drivers,
    startup: Startup,
    mut stop: watch::Receiver<bool>,
) {
    let Startup {
        ready,
        inherited,
        handed_over,
    } = startup;
    drivers.lo = match LoopbackVips::new().await {
        Ok(_) if !drivers.vip_on_lo => None,
        Ok(mut lo) => {
            // The predecessor's addresses are ours now (to remove at exit).
            if let Some((_, local)) = &inherited {
                lo.adopt(local.iter().copied());
            }
            Some(lo)
        }
        Err(e) => {
            tracing::warn!(error = %format!("{e:#}"), "no netlink: VIPs will not be put on lo");
            None
        }
    };
    // Load for the health bus (DNS load shedding, `edge status`): sampled
    // every second, published when it changes. The same tick retries any
    // tier whose last action failed.
    let mut load_tick = tokio::time::interval(Duration::from_secs(1));
    let mut load = LoadSampler::default();
    drivers.l7_pools = l7_pools.borrow().iter().cloned().collect();
    let mut inputs = vec![];
    if let Some((routes, local)) = inherited {
        inputs.push(Input::Inherited { routes, local });
    }
    inputs.extend([
        Input::L7Pools(l7_pools.borrow_and_update().clone()),
        Input::Snapshot(snapshots.borrow_and_update().clone()),
        Input::Ejected(ejected.borrow_and_update().clone()),
        Input::Config(cfg.borrow_and_update().clone()),
    ]);
    let mut wake_at = None;
    // No passive health (no L7 tier) closes the ejection channel at once:
    // that means "no ejections", not "stop". A bus that left (a handover)
    // closes the snapshot channel: the last view stays. Only `stop` stops.
    let mut ejections_open = true;
    let mut snapshots_open = true;
    loop {
        for input in inputs.drain(..) {
            let plan = ctl.step(Instant::now(), input);
            wake_at = plan.wake_at;
            let failed = drivers.apply(&plan).await;
            for t in &failed {
                ctl.failed(*t);
            }
            if let Some(d) = plan.desired {
                state.set_applied(plan.generation, d, snapshots.borrow().clone(), failed);
            }
        }
        // The first plan is applied: the L7 pools have their members.
        ready.send_if_modified(|r| !std::mem::replace(r, true));
        let sleep = async {
            match wake_at {
                Some(d) => tokio::time::sleep_until(tokio::time::Instant::from_std(d)).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = snapshots.changed(), if snapshots_open => match changed {
                Ok(()) => inputs.push(Input::Snapshot(snapshots.borrow_and_update().clone())),
                Err(_) => snapshots_open = false,
            },
            changed = cfg.changed() => match changed {
                Ok(()) => inputs.push(Input::Config(cfg.borrow_and_update().clone())),
                Err(_) => break,
            },
            changed = l7_pools.changed() => match changed {
                Ok(()) => {
                    let pools = l7_pools.borrow_and_update().clone();
                    drivers.l7_pools = pools.iter().cloned().collect();
                    inputs.push(Input::L7Pools(pools));
                }
                Err(_) => break,
            },
            changed = ejected.changed(), if ejections_open => match changed {
                Ok(()) => inputs.push(Input::Ejected(ejected.borrow_and_update().clone())),
                Err(_) => ejections_open = false,
            },
            _ = load_tick.tick() => {
                sample_load(&mut drivers, &mut load, &state);
                inputs.push(Input::Tick);
            }
            _ = sleep => inputs.push(Input::Tick),
            _ = stop.changed() => break,
        }
    }
    if handed_over.load(std::sync::atomic::Ordering::SeqCst) {
        ctl.step(Instant::now(), Input::Handover);
        finish_l4_after_handover(drivers.l4.take()).await;
        return;
    }
    let plan = ctl.step(Instant::now(), Input::Shutdown);
    drivers.apply(&plan).await;
}

/// After a handover the new process serves the L4 listeners; this one
/// stops accepting and keeps its established flows until they end or the
/// drain timeout passes. The kernel dataplanes (XDP program, nftables
/// rules) stay as they are: the new process adopts them.
async fn finish_l4_after_handover(stage: Option<crate::tiers::l4::L4Stage>) {
    let Some(mut stage) = stage else {
        return;
    };
    let drain = stage.drain_timeout();
    let deadline = Instant::now() + drain;
    if let Some(dp) = &mut stage.userspace {
        dp.stop_accepting();
        loop {
            let (open, _) = crate::tiers::l4::load(dp);
            if open == 0 {
                break;
            }
            if Instant::now() >= deadline {
                tracing::info!(open, ?drain, "drain timeout: closing the remaining L4 flows");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // Not dropped: dropping detaches the XDP program the new process uses.
    std::mem::forget(stage);
}

/// The once-a-second work of the controller task: kernel dataplane upkeep,
/// their metrics, and the node's load for the bus.
fn sample_load(drivers: &mut Drivers, load: &mut LoadSampler, state: &NodeState) {
    if let Some(stage) = &mut drivers.l4 {
        // Kernel dataplane upkeep runs `ip` and waits for ARP.
        tokio::task::block_in_place(|| stage.tick());
        let mut text = String::new();
        stage.metrics(&mut text);
        state.set_l4_metrics(text);
    }
    let (mut active, mut rate) = (0u64, 0u64);
    if let Some(dp) = drivers.l4.as_ref().and_then(|s| s.userspace.as_ref()) {
        let (a, opened) = crate::tiers::l4::load(dp);
        active += a;
        let now = Instant::now();
        if let Some((prev, at)) = load.last_opened {
            let secs = now.duration_since(at).as_secs_f64().max(0.001);
            rate = (opened.saturating_sub(prev) as f64 / secs).round() as u64;
        }
        load.last_opened = Some((opened, now));
    }
    if let Some(proxy) = &drivers.l7 {
        let ups = proxy.upstreams();
        active += drivers
            .l7_pools
            .iter()
            .filter_map(|p| ups.pool(p))
            .flat_map(|v| v.members.iter())
            .map(|m| m.stats.active())
            .sum::<u64>();
    }
    if load.last != Some((active, rate)) {
        load.last = Some((active, rate));
        let _ = drivers.report_tx.try_send(ReportUpdate::Load {
            active_connections: active,
            per_second: rate as f64,
        });
    }
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

/// The node's BGP speaker configuration: one session per peering (one per
/// address family), dialled from the node's address on the shared subnet.
/// `forwarding_preserved`: the F bit of graceful restart (see
/// [`Node::forwarding_preserved`]).
fn speaker_config(dep: &Deployment, n: &edge_topology::Node, forwarding_preserved: bool) -> SpeakerConfig {
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
            pc.graceful_restart = dep.bgp.graceful_restart.map(|t| edge_bgp::GracefulRestart {
                forwarding_preserved,
                ..edge_bgp::GracefulRestart::new(t)
            });
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
    Usr2,
}

/// SIGTERM/SIGINT stop the node; SIGHUP reloads the configuration; SIGUSR2
/// upgrades it (`edge upgrade` with the binary it was started from).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    usr2: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> Result<Signals> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).context("installing the SIGTERM handler")?,
            int: signal(SignalKind::interrupt()).context("installing the SIGINT handler")?,
            hup: signal(SignalKind::hangup()).context("installing the SIGHUP handler")?,
            usr2: signal(SignalKind::user_defined2()).context("installing the SIGUSR2 handler")?,
        })
    }

    async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.term.recv() => { tracing::info!("SIGTERM"); Signal::Term }
            _ = self.int.recv() => { tracing::info!("SIGINT"); Signal::Int }
            _ = self.hup.recv() => { tracing::info!("SIGHUP"); Signal::Hup }
            _ = self.usr2.recv() => { tracing::info!("SIGUSR2"); Signal::Usr2 }
        }
    }
}
