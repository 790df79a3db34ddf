//! The tokio driver: sockets and timers around the sans-IO [`Session`].
//!
//! ```text
//!   Speaker (handle)                       shared: Mutex<BTreeMap<peer, PeerShared>>
//!     | announce()/drain() -> watch<Desired> -------------------+
//!     | shutdown()         -> mpsc<PeerCmd> per peer            |
//!     v                                                         v
//!   accept task ---- Incoming(TcpStream), by remote IP ---> peer task (one per peer)
//!   (optional listener)                                      owns Session, AdjRibOut,
//!                                                            AdjRibIn, the TcpStream,
//!                                                            the timer deadlines
//! ```
//! A peer task waits for the first of: a command, bytes from the socket, the
//! outgoing connect finishing, the earliest timer deadline, or a new desired
//! route set. It turns that into an FSM [`Input`], and carries out every
//! [`Output`] (write, connect, arm, close) before waiting again. Only this
//! module reads the clock; the FSM gets `now` as an argument.
//!
//! Not done here: TCP-MD5 (RFC 2385) and GTSM (RFC 5082).

use std::collections::{BTreeMap, BTreeSet, VecDeque};
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

use crate::fsm::{DownReason, Input, Output, Session, SessionConfig, State, StopReason, Timer};
use crate::rib::{self, AdjRibIn, AdjRibOut, PeerContext, Route};
use crate::wire::{self, Codec, Frame, Message, Notification, PathAttributes};

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
}

type Shared = Arc<Mutex<BTreeMap<IpAddr, PeerShared>>>;

/// The desired state pushed to every peer task.
#[derive(Debug, Clone, Default)]
struct Desired {
    routes: BTreeSet<Route>,
    draining: bool,
}

enum PeerCmd {
    Incoming(TcpStream),
    /// Send Cease/2 and end the task.
    Shutdown,
}

/// Handle to a running BGP speaker.
#[derive(Debug)]
pub struct Speaker {
    desired: watch::Sender<Desired>,
    peers: BTreeMap<IpAddr, mpsc::Sender<PeerCmd>>,
    tasks: Vec<JoinHandle<()>>,
    accept_task: Option<JoinHandle<()>>,
    shared: Shared,
    local_addr: Option<SocketAddr>,
}

impl std::fmt::Debug for PeerCmd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerCmd::Incoming(s) => write!(f, "Incoming({:?})", s.peer_addr().ok()),
            PeerCmd::Shutdown => write!(f, "Shutdown"),
        }
    }
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
        Self::start_with_listener(config, listener)
    }

    /// Like [`Speaker::start`] with a listener bound by the caller (so the
    /// binary can bind privileged ports or inherit sockets).
    pub fn start_with_listener(
        config: SpeakerConfig,
        listener: Option<TcpListener>,
    ) -> Result<Speaker, SpeakerError> {
        let shared: Shared = Arc::default();
        let (desired, desired_rx) = watch::channel(Desired::default());
        let mut peers = BTreeMap::new();
        let mut tasks = Vec::new();
        let mut seen = BTreeSet::new();
        for p in &config.peers {
            if !seen.insert(p.address) {
                return Err(SpeakerError::DuplicatePeer(p.address));
            }
            let sc = SessionConfig {
                local_as: config.local_as,
                peer_as: p.remote_as,
                router_id: config.router_id,
                hold_time: p.hold_time,
                connect_retry: p.connect_retry,
                connect_retry_max: p.connect_retry_max,
                passive: p.passive,
                families: p.families.clone(),
                enforce_first_as: p.enforce_first_as,
            };
            sc.validate().map_err(|source| SpeakerError::Config {
                peer: p.address,
                source,
            })?;
        }
        for p in config.peers.clone() {
            let (tx, rx) = mpsc::channel(8);
            peers.insert(p.address, tx);
            if let Ok(mut m) = shared.lock() {
                m.insert(
                    p.address,
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
                    },
                );
            }
            let span = tracing::info_span!("bgp_peer", peer = %p.address, remote_as = p.remote_as);
            let task = PeerTask::new(&config, p, rx, desired_rx.clone(), shared.clone());
            tasks.push(tokio::spawn(task.run().instrument(span)));
        }
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
        let local_addr = listener.as_ref().and_then(|l| l.local_addr().ok());
        let accept_task = listener.map(|l| {
            let routes = peers.clone();
            tokio::spawn(accept_loop(l, routes).instrument(tracing::info_span!("bgp_listener")))
        });
        Ok(Speaker {
            desired,
            peers,
            tasks,
            accept_task,
            shared,
            local_addr,
        })
    }

    /// Address the listener is bound to (useful with port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.local_addr
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
    pub async fn shutdown(mut self) {
        let peers = std::mem::take(&mut self.peers);
        for tx in peers.values() {
            let _ = tx.send(PeerCmd::Shutdown).await;
        }
        drop(peers);
        if let Some(t) = self.accept_task.take() {
            t.abort();
        }
        for t in std::mem::take(&mut self.tasks) {
            let abort = t.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), t).await.is_err() {
                abort.abort();
            }
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

async fn accept_loop(listener: TcpListener, peers: BTreeMap<IpAddr, mpsc::Sender<PeerCmd>>) {
    loop {
        match listener.accept().await {
            Ok((stream, from)) => {
                // Peers are matched by remote address only (port differs).
                let ip = canonical(from.ip());
                match peers.get(&ip) {
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
        sp: &SpeakerConfig,
        cfg: PeerConfig,
        cmds: mpsc::Receiver<PeerCmd>,
        desired: watch::Receiver<Desired>,
        shared: Shared,
    ) -> Self {
        let session = Session::new(SessionConfig {
            local_as: sp.local_as,
            peer_as: cfg.remote_as,
            router_id: sp.router_id,
            hold_time: cfg.hold_time,
            connect_retry: cfg.connect_retry,
            connect_retry_max: cfg.connect_retry_max,
            passive: cfg.passive,
            families: cfg.families.clone(),
            enforce_first_as: cfg.enforce_first_as,
        });
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
                Event::Cmd(Some(PeerCmd::Shutdown)) | Event::Cmd(None) | Event::Desired(false) => {
                    // The speaker is going away: Cease, then end the task.
                    self.exiting = true;
                    self.step(Input::ManualStop(StopReason::AdminShutdown)).await;
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
                // §6.8: we can only pick a connection once we know the
                // peer's BGP identifier, so run OPEN on this one as well.
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
                    Timer::Hold => d,
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
                self.with_shared(|s| s.established_at = Some(established_at));
                self.out_rib.clear();
                self.with_shared(|s| s.received.clear());
                let r = self.sync_routes_inner().await;
                if r.is_none() {
                    // RFC 4724 End-of-RIB per family after the initial table.
                    for (afi, safi) in &neg.families {
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
                self.with_shared(|s| {
                    s.established_at = None;
                    s.flaps = flaps;
                    s.advertised.clear();
                    s.received.clear();
                    if err.is_some() {
                        s.last_error = err;
                    }
                });
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
        })
        .collect()
}

fn rib_in_entries(r: &AdjRibIn) -> Vec<RibEntry> {
    r.routes()
        .map(|x| RibEntry {
            prefix: x.prefix,
            next_hop: x.next_hop,
            attributes: x.attributes.clone(),
        })
        .collect()
}
