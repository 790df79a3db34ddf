//! The tokio driver: sockets and timers around the sans-IO [`Session`].
//!
//! ```text
//!   Speaker (handle)                       shared: Mutex<BTreeMap<peer, PeerShared>>
//!     | announce()/drain() -> watch<Desired> -------------------+
//!     | shutdown()/abandon()/set_peers()                        |
//!     |                    -> mpsc<PeerCmd> per peer            |
//!     v                                                         v
//!   accept task ---- Incoming(TcpStream), by remote IP ---> peer task (one per peer)
//!   (optional listener, routes                               owns Session, AdjRibOut,
//!    through a shared peer map)                              the TcpStream, the timer
//!                                                            deadlines
//! ```
//! A peer task waits for the first of: a command, bytes from the socket, the
//! outgoing connect finishing, the earliest timer deadline, or a new desired
//! route set. It turns that into an FSM [`Input`], and carries out every
//! [`Output`] (write, connect, arm, close) before waiting again. Only this
//! module reads the clock; the FSM gets `now` as an argument.
//!
//! Peers can be added, removed and reconfigured on a running speaker with
//! [`Speaker::set_peers`]: only the sessions concerned are touched.
//!
//! Graceful Restart (RFC 4724): with [`PeerConfig::graceful_restart`] set,
//! a process upgrade is [`Speaker::abandon`] in the old process (no Cease,
//! no withdrawals: peers keep our routes as stale) and
//! [`Speaker::start_with_options`] with [`SpeakerOptions::restarting`] in
//! the new one.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, warn};

use crate::fsm::{
    DownReason, GracefulRestart, Input, Output, Session, SessionConfig, State, StopReason, Timer,
};
use crate::rib::{self, AdjRibIn, AdjRibOut, PeerContext, Route};
use crate::wire::{self, Codec, Frame, GracefulRestartCap, Message, Notification, PathAttributes};

/// One configured neighbor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PeerConfig {
    pub address: IpAddr,
    /// TCP port to dial (179 unless a lab says otherwise).
    pub port: u16,
    pub remote_as: u32,
    /// Source address for outgoing connections.
    pub local_address: Option<IpAddr>,
    pub hold_time: u16,
    pub connect_retry: Duration,
    pub connect_retry_max: Duration,
    /// Only accept connections from this peer, never dial.
    pub passive: bool,
    /// Close with Cease/1 when the peer sends more prefixes than this.
    pub max_prefixes: Option<u32>,
    /// Next hop for IPv4 routes; default: the session's local IPv4 address.
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 routes; default: the session's local IPv6 address.
    pub next_hop_v6: Option<Ipv6Addr>,
    pub families: Vec<(u16, u8)>,
    /// See [`SessionConfig::enforce_first_as`] (default on).
    pub enforce_first_as: bool,
    /// RFC 2385 TCP-MD5 password shared with the peer.
    pub password: Option<String>,
    /// RFC 5082 GTSM: TTL 255 out, drop packets with TTL < 254 (directly
    /// connected peers only).
    pub ttl_security: bool,
    /// RFC 4724 Graceful Restart, both roles (default off). Advertised in
    /// the OPEN; when the peer advertises it too, we send End-of-RIB after
    /// our initial routes and keep the peer's routes as stale when its
    /// connection drops without a NOTIFICATION.
    pub graceful_restart: Option<GracefulRestart>,
}

impl PeerConfig {
    pub fn new(address: IpAddr, remote_as: u32) -> Self {
        PeerConfig {
            address,
            port: 179,
            remote_as,
            local_address: None,
            hold_time: 90,
            connect_retry: Duration::from_secs(1),
            connect_retry_max: Duration::from_secs(30),
            passive: false,
            max_prefixes: None,
            next_hop_v4: None,
            next_hop_v6: None,
            families: vec![
                (wire::AFI_IPV4, wire::SAFI_UNICAST),
                (wire::AFI_IPV6, wire::SAFI_UNICAST),
            ],
            enforce_first_as: true,
            password: None,
            ttl_security: false,
            graceful_restart: None,
        }
    }

    /// Names of the fields that differ from `other` (for logs; the
    /// password's value is never shown).
    pub fn differences(&self, other: &PeerConfig) -> Vec<&'static str> {
        let mut out = Vec::new();
        let mut check = |name: &'static str, differs: bool| {
            if differs {
                out.push(name);
            }
        };
        check("address", self.address != other.address);
        check("port", self.port != other.port);
        check("remote_as", self.remote_as != other.remote_as);
        check("local_address", self.local_address != other.local_address);
        check("hold_time", self.hold_time != other.hold_time);
        check("connect_retry", self.connect_retry != other.connect_retry);
        check(
            "connect_retry_max",
            self.connect_retry_max != other.connect_retry_max,
        );
        check("passive", self.passive != other.passive);
        check("max_prefixes", self.max_prefixes != other.max_prefixes);
        check("next_hop_v4", self.next_hop_v4 != other.next_hop_v4);
        check("next_hop_v6", self.next_hop_v6 != other.next_hop_v6);
        check("families", self.families != other.families);
        check(
            "enforce_first_as",
            self.enforce_first_as != other.enforce_first_as,
        );
        check("password", self.password != other.password);
        check("ttl_security", self.ttl_security != other.ttl_security);
        check(
            "graceful_restart",
            self.graceful_restart != other.graceful_restart,
        );
        out
    }

    fn session_config(&self, local_as: u32, router_id: Ipv4Addr, restarting: bool) -> SessionConfig {
        SessionConfig {
            local_as,
            peer_as: self.remote_as,
            router_id,
            hold_time: self.hold_time,
            connect_retry: self.connect_retry,
            connect_retry_max: self.connect_retry_max,
            passive: self.passive,
            families: self.families.clone(),
            enforce_first_as: self.enforce_first_as,
            graceful_restart: self.graceful_restart,
            restarting: restarting && self.graceful_restart.is_some(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SpeakerConfig {
    pub local_as: u32,
    pub router_id: Ipv4Addr,
    /// Where to accept BGP connections (passive side); `None` = dial only.
    pub listen: Option<SocketAddr>,
    pub peers: Vec<PeerConfig>,
}

/// Process-level start options (not part of the node's configuration).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SpeakerOptions {
    /// This process replaces one that had the same sessions and left with
    /// [`Speaker::abandon`] (an upgrade or restart): the first OPEN to each
    /// Graceful Restart peer carries the R bit (RFC 4724 §3), so the peer
    /// sends its routes without waiting for our End-of-RIB and knows to
    /// keep our stale routes until we send ours.
    pub restarting: bool,
    /// Routes to advertise from the start, before any [`Speaker::announce`]:
    /// a restarting process re-announces what its predecessor announced,
    /// so the first UPDATEs and the End-of-RIB leave the peers' tables as
    /// they were.
    pub initial_routes: BTreeSet<Route>,
}

#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    #[error("peer {peer}: {source}")]
    Config {
        peer: IpAddr,
        source: crate::fsm::ConfigError,
    },
    #[error("peer {0} configured twice")]
    DuplicatePeer(IpAddr),
    #[error("listen on {addr}: {source}")]
    Listen { addr: SocketAddr, source: io::Error },
    #[error("peer {peer}: socket option: {source}")]
    Socket { peer: IpAddr, source: io::Error },
}

/// Which Adj-RIB of a peer to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RibKind {
    Advertised,
    Received,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RibEntry {
    pub prefix: IpNet,
    pub next_hop: Option<IpAddr>,
    pub attributes: PathAttributes,
    /// Received routes only: kept from before the peer's graceful restart
    /// and not re-announced yet (RFC 4724 §4.2).
    pub stale: bool,
}

/// Observation of one session, for `edge status` and metrics.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SessionInfo {
    pub peer: IpAddr,
    pub remote_as: u32,
    pub state: State,
    pub uptime: Option<Duration>,
    pub prefixes_sent: usize,
    pub prefixes_received: usize,
    pub updates_in: u64,
    pub updates_out: u64,
    pub flaps: u64,
    pub last_error: Option<String>,
    /// The peer's Graceful Restart capability when GR is negotiated on the
    /// current session, or while we keep its routes through its restart.
    pub graceful_restart: Option<GracefulRestartCap>,
    /// Received routes currently marked stale (included in
    /// `prefixes_received`).
    pub prefixes_stale: usize,
}

#[derive(Debug)]
struct PeerShared {
    remote_as: u32,
    state: Option<State>,
    established_at: Option<Instant>,
    updates_in: u64,
    updates_out: u64,
    flaps: u64,
    last_error: Option<String>,
    advertised: Vec<RibEntry>,
    /// Lives here (not in the peer task) so a large received table is
    /// updated in place and only copied when someone asks for it.
    received: AdjRibIn,
    graceful_restart: Option<GracefulRestartCap>,
}

impl PeerShared {
    fn new(p: &PeerConfig) -> Self {
        PeerShared {
            remote_as: p.remote_as,
            state: Some(State::Idle),
            established_at: None,
            updates_in: 0,
            updates_out: 0,
            flaps: 0,
            last_error: None,
            advertised: Vec::new(),
            received: AdjRibIn::new(p.max_prefixes),
            graceful_restart: None,
        }
    }
}

type Shared = Arc<Mutex<BTreeMap<IpAddr, PeerShared>>>;

/// Where the accept loop sends a connection, by remote address. Shared with
/// the [`Speaker`] so that [`Speaker::set_peers`] can change it.
type Routing = Arc<Mutex<BTreeMap<IpAddr, mpsc::Sender<PeerCmd>>>>;

/// The desired state pushed to every peer task.
#[derive(Debug, Clone, Default)]
struct Desired {
    routes: BTreeSet<Route>,
    draining: bool,
}

enum PeerCmd {
    Incoming(TcpStream),
    /// Send Cease with this subcode and end the task.
    Stop(StopReason),
    /// End the task without a NOTIFICATION, only closing the connection
    /// (graceful restart of this process).
    Abandon,
}

/// One running peer task.
#[derive(Debug)]
struct PeerHandle {
    config: PeerConfig,
    tx: mpsc::Sender<PeerCmd>,
    task: JoinHandle<()>,
}

/// What [`Speaker::set_peers`] did, by peer address.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PeerChanges {
    /// New peers, started.
    pub added: Vec<IpAddr>,
    /// Peers no longer configured: closed with Cease/3 Peer De-configured.
    pub removed: Vec<IpAddr>,
    /// Peers whose configuration changed: closed with Cease/6 Other
    /// Configuration Change and restarted with the new configuration.
    pub changed: Vec<ChangedPeer>,
    /// Peers left alone (session, connection and Adj-RIBs untouched).
    pub unchanged: Vec<IpAddr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedPeer {
    pub address: IpAddr,
    /// Names of the [`PeerConfig`] fields that changed.
    pub fields: Vec<&'static str>,
}

impl PeerChanges {
    /// Nothing added, removed or changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

impl fmt::Display for PeerChanges {
    /// One line per change; a single summary line when there is none.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "peers unchanged ({})", self.unchanged.len());
        }
        let mut lines = Vec::new();
        for p in &self.added {
            lines.push(format!("added peer {p}"));
        }
        for p in &self.removed {
            lines.push(format!("removed peer {p} (Cease/3 Peer De-configured)"));
        }
        for c in &self.changed {
            lines.push(format!(
                "changed peer {} ({}; reset with Cease/6 Other Configuration Change)",
                c.address,
                c.fields.join(", ")
            ));
        }
        write!(f, "{}", lines.join("\n"))
    }
}

/// What every peer task needs from the speaker-wide configuration.
#[derive(Debug, Clone, Copy)]
struct Ident {
    local_as: u32,
    router_id: Ipv4Addr,
}

/// Handle to a running BGP speaker.
#[derive(Debug)]
pub struct Speaker {
    desired: watch::Sender<Desired>,
    /// The running peer tasks. An async mutex: `set_peers` holds it while
    /// it waits for stopped tasks, so two calls never interleave.
    peers: tokio::sync::Mutex<BTreeMap<IpAddr, PeerHandle>>,
    routing: Routing,
    accept_task: Option<JoinHandle<()>>,
    /// Kept to install TCP-MD5 keys of peers added later.
    listener: Option<Arc<TcpListener>>,
    shared: Shared,
    local_addr: Option<SocketAddr>,
    ident: Ident,
}

impl std::fmt::Debug for PeerCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerCmd::Incoming(s) => write!(f, "Incoming({:?})", s.peer_addr().ok()),
            PeerCmd::Stop(r) => write!(f, "Stop({r:?})"),
            PeerCmd::Abandon => write!(f, "Abandon"),
        }
    }
}

/// Wait for a task to end, aborting it after 5 s (time enough to write a
/// NOTIFICATION to a live peer, not to hang on a dead one).
async fn join_or_abort(t: JoinHandle<()>) {
    let abort = t.abort_handle();
    if tokio::time::timeout(Duration::from_secs(5), t).await.is_err() {
        abort.abort();
    }
}

fn validate_peers(ident: Ident, peers: &[PeerConfig]) -> Result<(), SpeakerError> {
    let mut seen = BTreeSet::new();
    for p in peers {
        if !seen.insert(p.address) {
            return Err(SpeakerError::DuplicatePeer(p.address));
        }
        p.session_config(ident.local_as, ident.router_id, false)
            .validate()
            .map_err(|source| SpeakerError::Config {
                peer: p.address,
                source,
            })?;
    }
    Ok(())
}

impl Speaker {
    /// Validate the config, bind the listener (if any) and start one task
    /// per peer. Must be called inside a tokio runtime.
    pub async fn start(config: SpeakerConfig) -> Result<Speaker, SpeakerError> {
        let listener = match config.listen {
            Some(addr) => Some(
                TcpListener::bind(addr)
                    .await
                    .map_err(|source| SpeakerError::Listen { addr, source })?,
            ),
            None => None,
        };
        Self::start_with_options(config, listener, SpeakerOptions::default())
    }

    /// Like [`Speaker::start`] with a listener bound by the caller (so the
    /// binary can bind privileged ports or inherit sockets).
    pub fn start_with_listener(
        config: SpeakerConfig,
        listener: Option<TcpListener>,
    ) -> Result<Speaker, SpeakerError> {
        Self::start_with_options(config, listener, SpeakerOptions::default())
    }

    /// Like [`Speaker::start_with_listener`], with process-level options
    /// (see [`SpeakerOptions::restarting`]). `config.listen` is ignored:
    /// pass the bound listener.
    pub fn start_with_options(
        config: SpeakerConfig,
        listener: Option<TcpListener>,
        options: SpeakerOptions,
    ) -> Result<Speaker, SpeakerError> {
        let ident = Ident {
            local_as: config.local_as,
            router_id: config.router_id,
        };
        validate_peers(ident, &config.peers)?;
        // A listener must know every peer's key before their SYNs arrive.
        if let Some(l) = &listener {
            for p in config.peers.iter().filter(|p| p.password.is_some()) {
                let pw = p.password.as_deref().unwrap_or_default();
                crate::sockopt::set_tcp_md5(l, p.address, pw.as_bytes()).map_err(|source| {
                    SpeakerError::Socket {
                        peer: p.address,
                        source,
                    }
                })?;
            }
        }
        let (desired, _) = watch::channel(Desired {
            routes: options.initial_routes.clone(),
            ..Desired::default()
        });
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let listener = listener.map(Arc::new);
        let routing: Routing = Arc::default();
        let accept_task = listener.as_ref().map(|l| {
            tokio::spawn(
                accept_loop(l.clone(), routing.clone()).instrument(tracing::info_span!("bgp_listener")),
            )
        });
        let mut speaker = Speaker {
            desired,
            peers: tokio::sync::Mutex::new(BTreeMap::new()),
            routing,
            accept_task,
            listener,
            shared: Arc::default(),
            local_addr,
            ident,
        };
        let mut peers = BTreeMap::new();
        for p in config.peers {
            let h = speaker.spawn_peer(p, options.restarting);
            peers.insert(h.config.address, h);
        }
        *speaker.peers.get_mut() = peers;
        Ok(speaker)
    }

    /// Start the task of one (validated) peer and route its connections.
    fn spawn_peer(&self, p: PeerConfig, restarting: bool) -> PeerHandle {
        let (tx, rx) = mpsc::channel(8);
        if let Ok(mut m) = self.shared.lock() {
            m.insert(p.address, PeerShared::new(&p));
        }
        let span = tracing::info_span!("bgp_peer", peer = %p.address, remote_as = p.remote_as);
        let task = PeerTask::new(
            self.ident,
            p.clone(),
            restarting,
            rx,
            self.desired.subscribe(),
            self.shared.clone(),
        );
        let task = tokio::spawn(task.run().instrument(span));
        if let Ok(mut r) = self.routing.lock() {
            r.insert(p.address, tx.clone());
        }
        PeerHandle { config: p, tx, task }
    }

    /// Address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
    }

    /// Replace the set of peers on the running speaker. Peers are keyed by
    /// address: new ones start; removed ones get Cease/3 (Peer
    /// De-configured, RFC 4486) and close; those whose configuration
    /// differs in any field get Cease/6 (Other Configuration Change) and
    /// start again with the new one; the others are not touched at all
    /// (same connection, no UPDATE re-sent). New sessions get the current
    /// announced route set. Waits (up to 5 s per peer) for the stopped
    /// sessions to send their NOTIFICATION. On a validation error nothing
    /// changes.
    pub async fn set_peers(&self, peers: Vec<PeerConfig>) -> Result<PeerChanges, SpeakerError> {
        validate_peers(self.ident, &peers)?;
        let mut running = self.peers.lock().await;
        let mut changes = PeerChanges::default();
        let wanted: BTreeMap<IpAddr, PeerConfig> = peers.into_iter().map(|p| (p.address, p)).collect();
        let mut stop = Vec::new();
        for (addr, h) in running.iter() {
            match wanted.get(addr) {
                None => {
                    changes.removed.push(*addr);
                    stop.push((*addr, StopReason::PeerDeconfigured));
                }
                Some(p) if *p != h.config => {
                    changes.changed.push(ChangedPeer {
                        address: *addr,
                        fields: h.config.differences(p),
                    });
                    stop.push((*addr, StopReason::ConfigurationChange));
                }
                Some(_) => changes.unchanged.push(*addr),
            }
        }
        changes.added = wanted
            .keys()
            .filter(|a| !running.contains_key(a))
            .copied()
            .collect();

        // Keys first, so a (re)started peer's SYN is accepted. A key that
        // cannot be installed fails the call before any session is touched.
        if let Some(l) = &self.listener {
            let touched = changes
                .added
                .iter()
                .chain(changes.changed.iter().map(|c| &c.address));
            for addr in touched {
                if let Some(pw) = wanted.get(addr).and_then(|p| p.password.as_deref()) {
                    crate::sockopt::set_tcp_md5(l.as_ref(), *addr, pw.as_bytes())
                        .map_err(|source| SpeakerError::Socket { peer: *addr, source })?;
                }
            }
        }

        let mut stopping = Vec::new();
        for (addr, reason) in stop {
            // Refuse its connections until the new task (if any) is up.
            if let Ok(mut r) = self.routing.lock() {
                r.remove(&addr);
            }
            if let Some(h) = running.remove(&addr) {
                info!(peer = %addr, ?reason, "stopping peer");
                let _ = h.tx.send(PeerCmd::Stop(reason)).await;
                stopping.push((addr, h.task));
            }
        }
        for (_, task) in stopping {
            join_or_abort(task).await;
        }
        for addr in &changes.removed {
            if let Ok(mut m) = self.shared.lock() {
                m.remove(addr);
            }
            // Drop the key of a removed peer, or of one that no longer has
            // a password; "no such key" is fine.
            if let Some(l) = &self.listener {
                let _ = crate::sockopt::set_tcp_md5(l.as_ref(), *addr, &[]);
            }
        }
        for c in &changes.changed {
            if let (Some(l), Some(p)) = (&self.listener, wanted.get(&c.address))
                && p.password.is_none()
            {
                let _ = crate::sockopt::set_tcp_md5(l.as_ref(), c.address, &[]);
            }
        }
        let start: Vec<IpAddr> = changes
            .added
            .iter()
            .chain(changes.changed.iter().map(|c| &c.address))
            .copied()
            .collect();
        for addr in start {
            if let Some(p) = wanted.get(&addr) {
                info!(peer = %addr, "starting peer");
                let h = self.spawn_peer(p.clone(), false);
                running.insert(addr, h);
            }
        }
        info!(changes = %changes, "peers updated");
        Ok(changes)
    }

    /// Set the full desired route set; each peer gets only the difference
    /// from what it was last sent.
    pub fn announce(&self, routes: BTreeSet<Route>) {
        self.desired.send_modify(|d| d.routes = routes);
    }

    /// RFC 8326 graceful drain: re-announce everything with
    /// GRACEFUL_SHUTDOWN, wait `wait` for the peers to move traffic, then
    /// withdraw everything. Later `announce` calls stay drained (they carry
    /// the community) until [`Speaker::undrain`].
    pub async fn drain(&self, wait: Duration) {
        self.desired.send_modify(|d| d.draining = true);
        tokio::time::sleep(wait).await;
        self.desired.send_modify(|d| d.routes.clear());
    }

    /// Stop tagging announcements with GRACEFUL_SHUTDOWN.
    pub fn undrain(&self) {
        self.desired.send_modify(|d| d.draining = false);
    }

    pub fn sessions(&self) -> Vec<SessionInfo> {
        let now = Instant::now();
        let Ok(m) = self.shared.lock() else {
            return Vec::new();
        };
        m.iter()
            .map(|(peer, s)| SessionInfo {
                peer: *peer,
                remote_as: s.remote_as,
                state: s.state.unwrap_or(State::Idle),
                uptime: s.established_at.map(|t| now.saturating_duration_since(t)),
                prefixes_sent: s.advertised.len(),
                prefixes_received: s.received.len(),
                updates_in: s.updates_in,
                updates_out: s.updates_out,
                flaps: s.flaps,
                last_error: s.last_error.clone(),
                graceful_restart: s.graceful_restart.clone(),
                prefixes_stale: s.received.stale_len(),
            })
            .collect()
    }

    pub fn routes(&self, peer: IpAddr, kind: RibKind) -> Vec<RibEntry> {
        let Ok(m) = self.shared.lock() else {
            return Vec::new();
        };
        m.get(&peer)
            .map(|s| match kind {
                RibKind::Advertised => s.advertised.clone(),
                RibKind::Received => rib_in_entries(&s.received),
            })
            .unwrap_or_default()
    }

    /// Send Cease (administrative shutdown) on every session and stop all
    /// tasks. Waits up to 5 s for the NOTIFICATIONs to be written.
    pub async fn shutdown(self) {
        self.stop_all(|| PeerCmd::Stop(StopReason::AdminShutdown)).await;
    }

    /// The upgrade/restart exit path (RFC 4724 graceful restart): stop
    /// every session WITHOUT a NOTIFICATION and without withdrawing any
    /// route, only closing the TCP connections. Peers that negotiated
    /// Graceful Restart keep our routes (marked stale) for our Restart
    /// Time, and traffic keeps flowing, while the next process starts with
    /// [`SpeakerOptions::restarting`], re-establishes, re-announces and
    /// sends End-of-RIB, after which the peers drop what was not
    /// re-announced. Peers without GR just see the connection close and
    /// withdraw our routes.
    ///
    /// The node must only use this when the next process follows within
    /// the Restart Time and its data plane keeps forwarding meanwhile (as
    /// advertised with `forwarding_preserved`); to leave for good use
    /// [`Speaker::drain`] then [`Speaker::shutdown`]. Exiting the process
    /// without calling either has the same effect on the wire as this
    /// (the kernel closes the sockets).
    ///
    /// It takes `&self` so that a node whose speaker is shared can abandon
    /// it during a handover; the speaker has no sessions afterwards.
    pub async fn abandon(&self) {
        self.stop_all(|| PeerCmd::Abandon).await;
    }

    async fn stop_all(&self, cmd: impl Fn() -> PeerCmd) {
        if let Some(t) = &self.accept_task {
            t.abort();
        }
        if let Ok(mut r) = self.routing.lock() {
            r.clear();
        }
        let peers = std::mem::take(&mut *self.peers.lock().await);
        for h in peers.values() {
            let _ = h.tx.send(cmd()).await;
        }
        for (_, h) in peers {
            join_or_abort(h.task).await;
        }
    }
}

impl Drop for Speaker {
    /// Without `shutdown()` the peer tasks still send Cease (their watch
    /// channel closes); the accept loop would live forever, so abort it.
    fn drop(&mut self) {
        if let Some(t) = self.accept_task.take() {
            t.abort();
        }
    }
}

async fn accept_loop(listener: Arc<TcpListener>, routing: Routing) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                // Peers are matched by remote address only (port differs).
                let ip = canonical(from.ip());
                let tx = routing.lock().ok().and_then(|r| r.get(&ip).cloned());
                match tx {
                    Some(tx) => {
                        if tx.send(PeerCmd::Incoming(stream)).await.is_err() {
                            debug!(%from, "peer task gone, dropping connection");
                        }
                    }
                    None => info!(%from, "connection from unconfigured address refused"),
                }
            }
            Err(e) => {
                warn!(error = %e, "accept failed");
                // Do not spin on persistent errors (e.g. EMFILE).
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack listener) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

type ConnectFuture = Pin<Box<dyn Future<Output = io::Result<TcpStream>> + Send>>;

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

enum Event {
    Cmd(Option<PeerCmd>),
    Read(io::Result<usize>),
    CandidateRead(io::Result<usize>),
    Connected(io::Result<TcpStream>),
    Timer(Timer),
    Desired(bool),
}

struct PeerTask {
    cfg: PeerConfig,
    local_as: u32,
    session: Session,
    conn: Option<Conn>,
    /// A second connection from the peer during OpenSent/OpenConfirm,
    /// waiting for its OPEN so the collision can be resolved (§6.8).
    candidate: Option<Conn>,
    connecting: Option<ConnectFuture>,
    timers: BTreeMap<Timer, Instant>,
    out_rib: AdjRibOut,
    ctx: Option<PeerContext>,
    desired: watch::Receiver<Desired>,
    cmds: mpsc::Receiver<PeerCmd>,
    shared: Shared,
    exiting: bool,
    rng: u64,
}

async fn read_some(conn: &mut Option<Conn>) -> io::Result<usize> {
    match conn {
        Some(c) => {
            c.buf.reserve(4096);
            c.stream.read_buf(&mut c.buf).await
        }
        None => std::future::pending().await,
    }
}

async fn connect_done(f: &mut Option<ConnectFuture>) -> io::Result<TcpStream> {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

async fn sleep_until(deadline: Option<(Timer, Instant)>) -> Timer {
    match deadline {
        Some((t, at)) => {
            tokio::time::sleep_until(at).await;
            t
        }
        None => std::future::pending().await,
    }
}

impl PeerTask {
    fn new(
        sp: Ident,
        cfg: PeerConfig,
        restarting: bool,
        cmds: mpsc::Receiver<PeerCmd>,
        desired: watch::Receiver<Desired>,
        shared: Shared,
    ) -> Self {
        let session = Session::new(cfg.session_config(sp.local_as, sp.router_id, restarting));
        let addr_bits: u128 = match cfg.address {
            IpAddr::V4(a) => u128::from(u32::from(a)),
            IpAddr::V6(a) => u128::from(a),
        };
        let seed = (u64::from(u32::from(sp.router_id)) << 32)
            ^ (addr_bits as u64)
            ^ ((addr_bits >> 64) as u64)
            ^ u64::from(cfg.port)
            ^ 0x9E37_79B9_7F4A_7C15;
        PeerTask {
            rng: seed | 1,
            cfg,
            local_as: sp.local_as,
            session,
            conn: None,
            candidate: None,
            connecting: None,
            timers: BTreeMap::new(),
            out_rib: AdjRibOut::new(),
            ctx: None,
            desired,
            cmds,
            shared,
            exiting: false,
        }
    }

    /// `d` scaled by a factor in [0.75, 1.0] from a per-peer xorshift.
    /// Seeded from our router id and the peer address: no clock, no OS
    /// randomness, yet different on the two ends of a session.
    fn jitter(&mut self, d: Duration) -> Duration {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        let frac = (x % 1024) as u32; // 0..1023
        d.mul_f64(0.75) + d.mul_f64(0.25).mul_f64(f64::from(frac) / 1023.0)
    }

    fn with_shared(&self, f: impl FnOnce(&mut PeerShared)) {
        if let Ok(mut m) = self.shared.lock()
            && let Some(s) = m.get_mut(&self.cfg.address)
        {
            f(s);
        }
    }

    fn with_shared_ret<T: Default>(&self, f: impl FnOnce(&mut PeerShared) -> T) -> T {
        let mut out = T::default();
        self.with_shared(|s| out = f(s));
        out
    }

    async fn next_event(&mut self) -> Event {
        let deadline = self
            .timers
            .iter()
            .min_by_key(|(_, at)| **at)
            .map(|(t, at)| (*t, *at));
        tokio::select! {
            cmd = self.cmds.recv() => Event::Cmd(cmd),
            r = read_some(&mut self.conn) => Event::Read(r),
            r = read_some(&mut self.candidate) => Event::CandidateRead(r),
            r = connect_done(&mut self.connecting) => Event::Connected(r),
            t = sleep_until(deadline) => Event::Timer(t),
            r = self.desired.changed() => Event::Desired(r.is_ok()),
        }
    }

    async fn run(mut self) {
        self.step(Input::ManualStart).await;
        while !self.exiting {
            let ev = self.next_event().await;
            match ev {
                Event::Cmd(Some(PeerCmd::Incoming(stream))) => self.incoming(stream).await,
                Event::Cmd(Some(PeerCmd::Stop(reason))) => {
                    // Shutdown or de-configuration: Cease, then end the task.
                    self.exiting = true;
                    self.step(Input::ManualStop(reason)).await;
                }
                Event::Cmd(None) | Event::Desired(false) => {
                    // The speaker went away without saying how: Cease.
                    self.exiting = true;
                    self.step(Input::ManualStop(StopReason::AdminShutdown)).await;
                }
                Event::Cmd(Some(PeerCmd::Abandon)) => {
                    // Graceful restart of this process (RFC 4724 §4.1): no
                    // NOTIFICATION, no withdrawals; the connection is closed
                    // below and the peer keeps our routes as stale.
                    info!("abandoning the session for a graceful restart");
                    self.exiting = true;
                    self.candidate = None;
                    self.connecting = None;
                }
                Event::Read(Ok(0)) => {
                    debug!("peer closed the connection");
                    self.step(Input::TcpConnectionFails).await;
                }
                Event::Read(Ok(_)) => self.drain_frames().await,
                Event::CandidateRead(Ok(n)) if n > 0 => self.candidate_frames().await,
                Event::CandidateRead(_) => {
                    debug!("colliding connection closed");
                    self.candidate = None;
                }
                Event::Read(Err(e)) => {
                    debug!(error = %e, "read failed");
                    self.step(Input::TcpConnectionFails).await;
                }
                Event::Connected(r) => {
                    self.connecting = None;
                    match r {
                        Ok(stream) => {
                            let _ = stream.set_nodelay(true);
                            self.conn = Some(Conn {
                                stream,
                                buf: Vec::with_capacity(8192),
                            });
                            self.step(Input::TcpConnectionAcknowledged).await;
                        }
                        Err(e) => {
                            debug!(error = %e, "connect failed");
                            self.step(Input::TcpConnectionFails).await;
                        }
                    }
                }
                Event::Timer(t) => {
                    self.timers.remove(&t);
                    self.step(Input::Expired(t)).await;
                }
                Event::Desired(true) => self.sync_routes().await,
            }
        }
        if let Some(mut c) = self.conn.take() {
            let _ = c.stream.shutdown().await;
        }
        self.with_shared(|s| {
            s.state = Some(State::Idle);
            s.established_at = None;
        });
    }

    async fn incoming(&mut self, stream: TcpStream) {
        if self.cfg.ttl_security {
            let peer = SocketAddr::new(self.cfg.address, self.cfg.port);
            if let Err(e) = crate::sockopt::set_gtsm(&stream, peer) {
                warn!(error = %e, "GTSM on an accepted connection failed; closing it");
                return;
            }
        }
        let state = self.session.state();
        if state == State::Idle && self.timers.contains_key(&Timer::IdleHold) {
            // The peer came back before our restart timer: start now
            // (AutomaticStart) instead of refusing it.
            self.timers.remove(&Timer::IdleHold);
            self.step(Input::Expired(Timer::IdleHold)).await;
        }
        match self.session.state() {
            State::Connect | State::Active => {
                // Collision before any OPEN: keep the incoming connection,
                // abandon our own attempt.
                self.connecting = None;
                let _ = stream.set_nodelay(true);
                self.conn = Some(Conn {
                    stream,
                    buf: Vec::with_capacity(8192),
                });
                self.step(Input::TcpConnectionConfirmed).await;
            }
            State::OpenSent | State::OpenConfirm if self.candidate.is_none() => {
                self.run_open_on_candidate(stream).await
            }
            State::Established if self.candidate.is_none() && self.graceful_restart_negotiated() => {
                // RFC 4724 §4.2: a peer that restarted may reconnect before
                // we notice its old connection is dead. Its OPEN on the new
                // connection tells (see `candidate_frames`).
                self.run_open_on_candidate(stream).await
            }
            other => {
                // Established (or a collision already pending): the
                // existing connection wins.
                debug!(?other, "refusing second connection");
                let mut conn = Conn {
                    stream,
                    buf: Vec::new(),
                };
                Self::cease_collision(&mut conn).await;
            }
        }
    }

    fn graceful_restart_negotiated(&self) -> bool {
        self.session
            .negotiated()
            .is_some_and(|n| n.graceful_restart.is_some())
    }

    /// Send our OPEN on a second connection and keep it as the candidate
    /// until its OPEN arrives.
    async fn run_open_on_candidate(&mut self, stream: TcpStream) {
        // §6.8: we can only pick a connection once we know the peer's BGP
        // identifier, so run OPEN on this one as well.
        let mut conn = Conn {
            stream,
            buf: Vec::with_capacity(8192),
        };
        let open = self.session.open_message();
        match wire::encode(&open, &Codec::default()) {
            Ok(b) if conn.stream.write_all(&b).await.is_ok() => {
                self.candidate = Some(conn);
            }
            _ => debug!("colliding connection failed"),
        }
    }

    /// Close a connection with Cease / Connection Collision Resolution.
    async fn cease_collision(conn: &mut Conn) {
        let n = Message::Notification(Notification::cease(7));
        if let Ok(b) = wire::encode(&n, &Codec::default()) {
            let _ = conn.stream.write_all(&b).await;
        }
        let _ = conn.stream.shutdown().await;
    }

    /// Wait for the colliding connection's OPEN, then keep the connection
    /// initiated by the speaker with the higher BGP identifier (§6.8).
    async fn candidate_frames(&mut self) {
        let Some(c) = self.candidate.as_mut() else {
            return;
        };
        let open = match wire::check_frame(&c.buf) {
            Ok(Frame::NeedMore) => return,
            Ok(Frame::Complete(n)) => {
                let frame: Vec<u8> = c.buf.drain(..n).collect();
                match wire::decode(&frame, &Codec::default()) {
                    Ok(Message::Open(o)) => o,
                    _ => {
                        self.candidate = None;
                        return;
                    }
                }
            }
            Err(_) => {
                self.candidate = None;
                return;
            }
        };
        let Some(mut cand) = self.candidate.take() else {
            return;
        };
        let state = self.session.state();
        if state == State::Established && self.graceful_restart_negotiated() {
            // RFC 4724 §4.2: an OPEN on a new connection while Established
            // means the peer restarted: the old connection is dead (closed
            // without NOTIFICATION, routes kept stale), go on with the new.
            info!(%open.router_id, "OPEN on a new connection: the peer restarted (graceful restart)");
            self.step(Input::TcpConnectionFails).await;
            // AutomaticStart now rather than after the backoff, then adopt
            // the new connection as in a collision.
            self.timers.remove(&Timer::IdleHold);
            self.step(Input::Expired(Timer::IdleHold)).await;
            self.connecting = None;
            self.conn = Some(cand);
            self.step(Input::ConnectionReplaced).await;
            self.step(Input::Received(Message::Open(open))).await;
            self.drain_frames().await;
            return;
        }
        let ours = u32::from(self.session.config().router_id);
        let theirs = u32::from(open.router_id);
        let main_alive = matches!(state, State::OpenSent | State::OpenConfirm);
        if state == State::Established || state == State::Idle || (main_alive && ours > theirs) {
            info!(%open.router_id, "collision: keeping the existing connection");
            Self::cease_collision(&mut cand).await;
            return;
        }
        info!(%open.router_id, "collision: switching to the peer's connection");
        if let Some(mut old) = self.conn.take() {
            Self::cease_collision(&mut old).await;
        }
        self.connecting = None;
        self.conn = Some(cand);
        self.step(Input::ConnectionReplaced).await;
        self.step(Input::Received(Message::Open(open))).await;
        // Bytes that followed the OPEN (its KEEPALIVE) are already buffered.
        self.drain_frames().await;
    }

    /// Decode every complete frame in the buffer and feed it to the FSM.
    async fn drain_frames(&mut self) {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            let input = match wire::check_frame(&conn.buf) {
                Ok(Frame::NeedMore) => return,
                Ok(Frame::Complete(n)) => {
                    let frame: Vec<u8> = conn.buf.drain(..n).collect();
                    match wire::decode(&frame, &self.session.codec()) {
                        Ok(m) => Input::Received(m),
                        Err(e) => Input::Malformed(e),
                    }
                }
                Err(h) => {
                    conn.buf.clear();
                    Input::Malformed(h.into())
                }
            };
            if let Input::Malformed(e) = &input {
                warn!(error = %e, "malformed message");
            }
            self.step(input).await;
        }
    }

    /// Feed one input and carry out the outputs, including inputs they cause
    /// (a failed write becomes TcpConnectionFails).
    async fn step(&mut self, input: Input) {
        let mut queue = VecDeque::from([input]);
        while let Some(input) = queue.pop_front() {
            let outputs = self.session.handle(std::time::Instant::now(), input);
            for o in outputs {
                if let Some(next) = self.execute(o).await {
                    queue.push_back(next);
                }
            }
        }
    }

    async fn send(&mut self, msg: &Message) -> Result<(), Input> {
        let codec = self.session.codec();
        let bytes = match wire::encode(msg, &codec) {
            Ok(b) => b,
            Err(e) => {
                // Our own bug; never put a broken message on the wire.
                warn!(error = %e, kind = msg.kind(), "encode failed");
                return Ok(());
            }
        };
        let Some(conn) = self.conn.as_mut() else {
            return Ok(());
        };
        match conn.stream.write_all(&bytes).await {
            Ok(()) => Ok(()),
            Err(e) => {
                debug!(error = %e, "write failed");
                Err(Input::TcpConnectionFails)
            }
        }
    }

    async fn execute(&mut self, o: Output) -> Option<Input> {
        match o {
            Output::Connect => {
                let addr = SocketAddr::new(self.cfg.address, self.cfg.port);
                let local = self.cfg.local_address;
                let password = self.cfg.password.clone();
                let gtsm = self.cfg.ttl_security;
                self.connecting = Some(Box::pin(async move {
                    let sock = match addr {
                        SocketAddr::V4(_) => TcpSocket::new_v4()?,
                        SocketAddr::V6(_) => TcpSocket::new_v6()?,
                    };
                    // Both must be in place before the SYN leaves.
                    if let Some(pw) = &password {
                        crate::sockopt::set_tcp_md5(&sock, addr.ip(), pw.as_bytes())?;
                    }
                    if gtsm {
                        crate::sockopt::set_gtsm(&sock, addr)?;
                    }
                    if let Some(l) = local {
                        sock.bind(SocketAddr::new(l, 0))?;
                    }
                    sock.connect(addr).await
                }));
                None
            }
            Output::Send(m) => {
                if let Message::Notification(n) = &m {
                    warn!(notification = %n, "sending NOTIFICATION");
                    let text = n.to_string();
                    self.with_shared(|s| s.last_error = Some(format!("sent {text}")));
                }
                self.send(&m).await.err()
            }
            Output::Arm(t, d) => {
                let d = match t {
                    // RFC 4271 §10: jitter the retry timers (x 0.75..1.0) so
                    // two speakers that both dial do not collide in lockstep.
                    Timer::ConnectRetry | Timer::IdleHold | Timer::Keepalive => self.jitter(d),
                    Timer::Hold | Timer::GracefulRestart | Timer::StaleRoutes => d,
                };
                self.timers.insert(t, Instant::now() + d);
                None
            }
            Output::Disarm(t) => {
                self.timers.remove(&t);
                None
            }
            Output::Close => {
                self.connecting = None;
                if let Some(mut c) = self.conn.take() {
                    // Flush what we wrote (a NOTIFICATION) before the FIN.
                    let _ = c.stream.shutdown().await;
                }
                None
            }
            Output::State { from, to } => {
                info!(?from, ?to, "state change");
                if to == State::Idle {
                    self.candidate = None;
                }
                self.with_shared(|s| s.state = Some(to));
                None
            }
            Output::Up(neg) => {
                info!(hold = neg.hold_time, families = ?neg.families, "session established");
                let local = self
                    .conn
                    .as_ref()
                    .and_then(|c| c.stream.local_addr().ok())
                    .map(|a| canonical(a.ip()));
                self.ctx = Some(PeerContext {
                    local_as: self.local_as,
                    ibgp: neg.ibgp,
                    next_hop_v4: self.cfg.next_hop_v4.or(match local {
                        Some(IpAddr::V4(a)) => Some(a),
                        _ => None,
                    }),
                    next_hop_v6: self.cfg.next_hop_v6.or(match local {
                        Some(IpAddr::V6(a)) => Some(a),
                        _ => None,
                    }),
                    families: neg.families.clone(),
                });
                let established_at = Instant::now();
                let gr = neg.graceful_restart.clone();
                self.with_shared(|s| {
                    s.established_at = Some(established_at);
                    s.graceful_restart = gr;
                });
                // The Adj-RIB-In is not cleared here: the FSM did on the way
                // down, unless it keeps stale routes through the peer's
                // graceful restart (those go on its End-of-RIB).
                self.out_rib.clear();
                let r = self.sync_routes_inner().await;
                if r.is_none() {
                    // RFC 4724 §4: End-of-RIB per family after the initial
                    // table, when GR is negotiated.
                    for (afi, safi) in &neg.end_of_rib_families() {
                        let eor = wire::end_of_rib(*afi, *safi);
                        if let Some(c) = self.conn.as_mut()
                            && c.stream.write_all(&eor).await.is_err()
                        {
                            return Some(Input::TcpConnectionFails);
                        }
                    }
                }
                r
            }
            Output::Down(reason) => {
                warn!(?reason, "session down");
                self.ctx = None;
                self.out_rib.clear();
                let flaps = self.session.flaps();
                let err = match &reason {
                    DownReason::NotificationReceived(n) => Some(format!("received {n}")),
                    DownReason::HoldTimerExpired => Some("hold timer expired".into()),
                    DownReason::ConnectionLost => Some("connection lost".into()),
                    _ => None,
                };
                // Received routes are the FSM's call (ClearReceived or
                // MarkStale follows).
                let gr = self.session.restarting_peer().cloned();
                self.with_shared(|s| {
                    s.established_at = None;
                    s.flaps = flaps;
                    s.advertised.clear();
                    s.graceful_restart = gr;
                    if err.is_some() {
                        s.last_error = err;
                    }
                });
                None
            }
            Output::ClearReceived => {
                self.with_shared(|s| s.received.clear());
                None
            }
            Output::MarkStale(families) => {
                let n = self.with_shared_ret(|s| {
                    s.received.mark_stale(&families);
                    s.received.len()
                });
                info!(stale = n, families = ?families, "peer restarting: keeping its routes as stale (RFC 4724)");
                None
            }
            Output::PurgeStale(families) => {
                let established = self.session.state() == State::Established;
                let gr = self
                    .session
                    .negotiated()
                    .and_then(|n| n.graceful_restart.clone())
                    .or_else(|| self.session.restarting_peer().cloned());
                let n = self.with_shared_ret(|s| {
                    if !established {
                        s.graceful_restart = gr;
                    }
                    s.received.purge_stale(&families)
                });
                info!(purged = n, families = ?families, "stale routes removed");
                None
            }
            Output::Received(u) => {
                if let Some(why) = &u.treat_as_withdraw {
                    warn!(reason = %why, "RFC 7606 treat-as-withdraw");
                }
                let mut r = Ok(());
                self.with_shared(|s| {
                    s.updates_in += 1;
                    r = s.received.apply(&u);
                });
                match r {
                    Ok(()) => None,
                    Err(e) => {
                        warn!(error = %e, "closing session");
                        Some(Input::ManualStop(StopReason::MaxPrefixes {
                            afi: e.afi,
                            safi: e.safi,
                            limit: e.limit,
                        }))
                    }
                }
            }
            Output::RouteRefresh { afi, safi } => {
                let codec = self.session.codec();
                match self.out_rib.full(&codec, (afi, safi)) {
                    Ok(updates) => self.send_updates(updates).await,
                    Err(e) => {
                        warn!(error = %e, "route refresh encode failed");
                        None
                    }
                }
            }
        }
    }

    async fn sync_routes(&mut self) {
        if let Some(input) = self.sync_routes_inner().await {
            self.step(input).await;
        }
    }

    /// Send the difference between what the peer has and the desired set.
    async fn sync_routes_inner(&mut self) -> Option<Input> {
        if self.session.state() != State::Established {
            return None;
        }
        let ctx = self.ctx.clone()?;
        let desired = self.desired.borrow_and_update().clone();
        let adv = rib::advertisements(&desired.routes, &ctx, desired.draining);
        let prefixes: BTreeSet<IpNet> = desired.routes.iter().map(|r| r.prefix.trunc()).collect();
        if adv.len() < prefixes.len() {
            // Family not negotiated, or no next hop of that family (an IPv6
            // route on an IPv4 session needs `next_hop_v6`).
            debug!(
                skipped = prefixes.len() - adv.len(),
                "routes not advertised to this peer"
            );
        }
        let codec: Codec = self.session.codec();
        let updates = match self.out_rib.diff(&adv, &codec) {
            Ok(u) => u,
            Err(e) => {
                warn!(error = %e, "building UPDATEs failed");
                return None;
            }
        };
        let advertised = rib_out_entries(&self.out_rib);
        self.with_shared(|s| s.advertised = advertised);
        self.send_updates(updates).await
    }

    async fn send_updates(&mut self, updates: Vec<wire::Update>) -> Option<Input> {
        let n = updates.len() as u64;
        for u in updates {
            if let Err(input) = self.send(&Message::Update(u)).await {
                return Some(input);
            }
        }
        if n > 0 {
            debug!(updates = n, "sent UPDATEs");
            self.with_shared(|s| s.updates_out += n);
        }
        None
    }
}

fn rib_out_entries(r: &AdjRibOut) -> Vec<RibEntry> {
    r.advertised()
        .iter()
        .map(|(p, a)| RibEntry {
            prefix: *p,
            next_hop: a
                .attributes
                .next_hop
                .map(IpAddr::V4)
                .or(a.ipv6_next_hop.map(IpAddr::V6)),
            attributes: a.attributes.clone(),
            stale: false,
        })
        .collect()
}

fn rib_in_entries(r: &AdjRibIn) -> Vec<RibEntry> {
    r.routes()
        .map(|x| RibEntry {
            prefix: x.prefix,
            next_hop: x.next_hop,
            attributes: x.attributes.clone(),
            stale: x.stale,
        })
        .collect()
}
