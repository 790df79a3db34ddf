//! Userspace dataplane: a tokio TCP and UDP proxy per service.
//!
//! The reference [`Dataplane`]: it runs on any kernel, so every other backend
//! is checked against it.
//!
//! ```text
//!  controller ── apply(&L4State) ──► UserspaceDataplane (sync, owns the map)
//!                                      │ per ServiceKey
//!                                      ▼
//!                     ┌──────────── Service (Arc) ─────────────┐
//!                     │ Mutex<Selector>: backends + scheduler   │◄─ swapped whole on apply
//!                     │ Mutex<ConnTable>: id → backend, drain   │◄─ drain marks + timers
//!                     └─────────────────────────────────────────┘
//!   TCP: accept task ──► per-connection task: admit() → connect → copy (buffered or splice)
//!                                              └── cut when its drain timer fires
//!   UDP: recv task ──► flow table (client → queue) ──► relay task per flow (upstream socket)
//!                                              └── ends on idle expiry or drain timer
//! ```
//!
//! Picking and registering a flow happen under the selector lock, and so do
//! the selector swap and the drain marking in `apply`. A flow is therefore
//! either placed with the old backend set and then marked by the swap, or
//! placed with the new set: none slips through onto a removed backend
//! unmarked.
//!
//! Backend lifecycle for existing flows:
//! - removed from the spec, or `Draining`: no new flows; existing flows keep
//!   running and are cut `drain_timeout` after the backend left;
//! - weight 0 (quiesced, as in IPVS): no new flows; existing flows are left
//!   alone;
//! - back to `Active` before the timer fires: its flows are kept.
//!
//! TCP bytes are copied with `tokio::io::copy_bidirectional` (two userspace
//! copies per byte) by default, or moved with `splice(2)` through a pipe per
//! direction ([`TcpCopy::Splice`], Linux), which keeps payload in the kernel.
//! UDP always goes through userspace buffers.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::Serialize;
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::runtime::Handle;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{Instrument, debug, debug_span, info, warn};

use crate::hash::{FlowKey, Protocol};
use crate::maglev::TableSize;
use crate::sched::{self, Scheduler};
use crate::state::{L4State, ServiceKey, ServiceSpec, diff};
use crate::{Applied, Dataplane, DataplaneError};

#[cfg(target_os = "linux")]
mod limit;
mod splice;

pub use limit::SourceLimit;

/// [`Dataplane::name`] of this backend.
pub const NAME: &str = "userspace";

/// Largest UDP payload we relay (the IPv4/IPv6 maximum).
const UDP_BUF: usize = 65_535;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserspaceConfig {
    /// Maglev table size for `maglev` and `source_hash` services.
    pub table_size: TableSize,
    /// How long flows on a removed or draining backend may continue.
    pub drain_timeout: Duration,
    /// A UDP flow with no datagram either way for this long is forgotten.
    pub udp_idle_timeout: Duration,
    /// Give up on a backend that does not accept a TCP connection in time.
    pub connect_timeout: Duration,
    /// How TCP bytes are moved between client and backend.
    pub tcp_copy: TcpCopy,
    /// Most UDP flows per service. Each flow holds a socket; without a cap,
    /// datagrams from spoofed sources would exhaust file descriptors.
    /// Datagrams that would open a flow beyond it are dropped.
    pub udp_max_flows: usize,
    /// New flows per source (connection-flood protection): a TCP connection
    /// over the limit is reset right after `accept`, a datagram that would
    /// open a UDP flow over it is dropped. `None`: unlimited.
    pub source_limit: Option<SourceLimit>,
}

impl Default for UserspaceConfig {
    fn default() -> Self {
        UserspaceConfig {
            table_size: TableSize::default(),
            drain_timeout: Duration::from_secs(30),
            udp_idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            udp_max_flows: 65_536,
            tcp_copy: TcpCopy::default(),
            source_limit: None,
        }
    }
}

/// How the TCP proxy moves bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TcpCopy {
    /// `tokio::io::copy_bidirectional`: two userspace copies per byte; runs
    /// everywhere.
    Buffered,
    /// `splice(2)` through a pipe per direction: the payload stays in the
    /// kernel. Linux only; elsewhere this falls back to `Buffered`. The
    /// default: `labs/bench/l4.sh` measured 4.9 Gbit/s against 3.1 buffered
    /// (HAProxy `mode tcp` 4.3) on the lab's veth links.
    #[default]
    Splice,
}

pub struct UserspaceDataplane {
    handle: Handle,
    config: UserspaceConfig,
    services: BTreeMap<ServiceKey, Running>,
    /// Sockets handed in before `apply` (bound by `edge`, or by a test on an
    /// ephemeral port, and passed down), used instead of binding.
    prebound_tcp: BTreeMap<ServiceKey, std::net::TcpListener>,
    prebound_udp: BTreeMap<ServiceKey, std::net::UdpSocket>,
}

impl std::fmt::Debug for UserspaceDataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserspaceDataplane")
            .field("config", &self.config)
            .field("services", &self.services.keys().collect::<Vec<_>>())
            .field("prebound_tcp", &self.prebound_tcp.keys().collect::<Vec<_>>())
            .field("prebound_udp", &self.prebound_udp.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A service that `apply` brought up.
struct Running {
    spec: ServiceSpec,
    service: Arc<Service>,
    /// The accept (TCP) or receive (UDP) loop; owns the listening socket.
    task: JoinHandle<()>,
}

impl UserspaceDataplane {
    /// Tasks are spawned on `handle`; `apply` may be called from any thread.
    pub fn new(handle: Handle, config: UserspaceConfig) -> Self {
        UserspaceDataplane {
            handle,
            config,
            services: BTreeMap::new(),
            prebound_tcp: BTreeMap::new(),
            prebound_udp: BTreeMap::new(),
        }
    }

    /// Hands in a bound TCP listener; `apply` uses it for the service at its
    /// local address instead of binding one.
    pub fn register_tcp_listener(&mut self, listener: std::net::TcpListener) -> io::Result<ServiceKey> {
        let addr = listener.local_addr()?;
        let key = ServiceKey::new(addr.ip(), addr.port(), Protocol::Tcp);
        self.prebound_tcp.insert(key, listener);
        Ok(key)
    }

    /// Hands in a bound UDP socket, as [`Self::register_tcp_listener`].
    pub fn register_udp_socket(&mut self, socket: std::net::UdpSocket) -> io::Result<ServiceKey> {
        let addr = socket.local_addr()?;
        let key = ServiceKey::new(addr.ip(), addr.port(), Protocol::Udp);
        self.prebound_udp.insert(key, socket);
        Ok(key)
    }

    /// Stops accepting new flows on every service, without closing the
    /// established ones: an upgrade's successor serves the listening
    /// sockets now, and this process only finishes what it has. UDP flows
    /// end here too (their receive loop is the listening socket's).
    pub fn stop_accepting(&mut self) {
        for r in self.services.values() {
            r.task.abort();
        }
    }

    /// Open flows (TCP connections or UDP flows) of a service, including
    /// draining ones; `None` if the service is not running.
    pub fn active_flows(&self, key: &ServiceKey) -> Option<usize> {
        self.services.get(key).map(|r| lock(&r.service.conns).conns.len())
    }

    /// Counters and open flows of every running service.
    pub fn stats(&self) -> BTreeMap<ServiceKey, ServiceStats> {
        self.services
            .iter()
            .map(|(k, r)| (*k, r.service.stats()))
            .collect()
    }

    /// Open flows per backend address of a service.
    pub fn flows_by_backend(&self, key: &ServiceKey) -> Option<BTreeMap<SocketAddr, u64>> {
        self.services
            .get(key)
            .map(|r| lock(&r.service.conns).active.clone())
    }

    /// Forgets services whose loop has ended (it only ends if its socket
    /// failed), so the next diff brings them back.
    fn reap(&mut self) {
        self.services.retain(|key, r| {
            if r.task.is_finished() {
                warn!(service = %key, "service loop ended; will rebind on next apply");
                false
            } else {
                true
            }
        });
    }

    fn current(&self) -> L4State {
        L4State {
            services: self
                .services
                .iter()
                .filter(|(_, r)| !r.task.is_finished())
                .map(|(k, r)| (*k, r.spec.clone()))
                .collect(),
        }
    }

    fn start(&mut self, key: ServiceKey, spec: &ServiceSpec) -> Result<Running, DataplaneError> {
        let selector = Selector::build(key, spec, self.config.table_size)?;
        let service = Arc::new(Service::new(key, selector, self.config));
        let addr = key.socket_addr();
        let bind_err = |source| DataplaneError::Bind {
            service: key,
            addr,
            source,
        };
        let _guard = self.handle.enter();
        let span = debug_span!("l4", service = %key);
        let task = match key.protocol {
            Protocol::Tcp => {
                let std_listener = match self.prebound_tcp.remove(&key) {
                    Some(l) => l,
                    None => std::net::TcpListener::bind(addr).map_err(bind_err)?,
                };
                std_listener.set_nonblocking(true).map_err(bind_err)?;
                let listener = TcpListener::from_std(std_listener).map_err(bind_err)?;
                self.handle
                    .spawn(accept_loop(listener, service.clone()).instrument(span))
            }
            Protocol::Udp => {
                let std_socket = match self.prebound_udp.remove(&key) {
                    Some(s) => s,
                    None => std::net::UdpSocket::bind(addr).map_err(bind_err)?,
                };
                std_socket.set_nonblocking(true).map_err(bind_err)?;
                let socket = UdpSocket::from_std(std_socket).map_err(bind_err)?;
                self.handle
                    .spawn(udp_loop(Arc::new(socket), service.clone()).instrument(span))
            }
        };
        info!(service = %key, scheduler = %spec.scheduler, backends = spec.backends.len(), "service up");
        Ok(Running {
            spec: spec.clone(),
            service,
            task,
        })
    }
}

impl Drop for UserspaceDataplane {
    fn drop(&mut self) {
        // Listeners die with the dataplane; established flows finish on
        // their own (their tasks hold what they need).
        for r in self.services.values() {
            r.task.abort();
        }
    }
}

impl Dataplane for UserspaceDataplane {
    fn name(&self) -> &'static str {
        NAME
    }

    fn apply(&mut self, desired: &L4State) -> Result<Applied, DataplaneError> {
        desired.validate()?;
        self.reap();
        let changes = diff(&self.current(), desired);
        if changes.is_empty() {
            return Ok(Applied::default());
        }
        let mut done = Vec::new();
        let mut failed = Vec::new();
        // Walk every service mentioned by the diff once.
        let keys: std::collections::BTreeSet<ServiceKey> = changes.iter().map(change_service).collect();
        for key in keys {
            let wanted = desired.services.get(&key);
            let result = match (self.services.get(&key), wanted) {
                (Some(_), None) => {
                    if let Some(r) = self.services.remove(&key) {
                        r.task.abort();
                        r.service.retire(&self.handle);
                        info!(service = %key, "service down, draining its flows");
                    }
                    Ok(())
                }
                (None, Some(spec)) => self.start(key, spec).map(|r| {
                    self.services.insert(key, r);
                }),
                (Some(r), Some(spec)) => Selector::build(key, spec, self.config.table_size).map(|selector| {
                    r.service.update(selector, &self.handle);
                    info!(service = %key, scheduler = %spec.scheduler, backends = spec.backends.len(), "service updated");
                }),
                (None, None) => Ok(()),
            };
            match result {
                Ok(()) => {
                    if let (Some(r), Some(spec)) = (self.services.get_mut(&key), wanted) {
                        r.spec = spec.clone();
                    }
                    done.extend(changes.iter().filter(|c| change_service(c) == key).cloned());
                }
                Err(e) => {
                    warn!(service = %key, error = %e, "apply failed for service");
                    failed.push(e);
                }
            }
        }
        let applied = Applied { changes: done };
        if failed.is_empty() {
            Ok(applied)
        } else {
            Err(DataplaneError::Partial { applied, failed })
        }
    }

    fn observe(&self) -> Result<L4State, DataplaneError> {
        Ok(self.current())
    }
}

fn change_service(c: &crate::Change) -> ServiceKey {
    use crate::Change::*;
    match c {
        AddService { service, .. }
        | RemoveService { service }
        | SetScheduler { service, .. }
        | AddBackend { service, .. }
        | UpdateBackend { service, .. }
        | RemoveBackend { service, .. } => *service,
    }
}

/// Locks, recovering from poisoning: every critical section below leaves the
/// tables consistent before anything that could panic, so the data is
/// still good.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The backend set for new flows and its scheduler; replaced whole on apply.
#[derive(Debug)]
struct Selector {
    addrs: Vec<SocketAddr>,
    scheduler: Box<dyn Scheduler>,
    /// Backends whose existing flows are kept (every backend in the spec
    /// that is not `Draining`), including quiesced ones.
    keep: Vec<SocketAddr>,
}

impl Selector {
    fn build(key: ServiceKey, spec: &ServiceSpec, table_size: TableSize) -> Result<Self, DataplaneError> {
        let (addrs, weighted) = spec.schedulable();
        let scheduler = sched::build(spec.scheduler, &weighted, table_size)
            .map_err(|source| DataplaneError::Scheduler { service: key, source })?;
        let keep = spec
            .backends
            .iter()
            .filter(|(_, b)| b.state == crate::BackendState::Active)
            .map(|(a, _)| *a)
            .collect();
        Ok(Selector {
            addrs,
            scheduler,
            keep,
        })
    }
}

/// One open flow.
struct Conn {
    backend: SocketAddr,
    /// Drain generation that marked this flow, if its backend left.
    drain: Option<u64>,
    /// Fired to cut the flow when its drain timer expires.
    cut: Option<oneshot::Sender<()>>,
}

#[derive(Default)]
struct ConnTable {
    next_id: u64,
    next_drain: u64,
    conns: BTreeMap<u64, Conn>,
    /// Open flows per backend, for the least-connection schedulers.
    active: BTreeMap<SocketAddr, u64>,
}

impl ConnTable {
    fn insert(&mut self, backend: SocketAddr, cut: oneshot::Sender<()>) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        self.conns.insert(
            id,
            Conn {
                backend,
                drain: None,
                cut: Some(cut),
            },
        );
        *self.active.entry(backend).or_default() += 1;
        id
    }

    fn remove(&mut self, id: u64) {
        if let Some(c) = self.conns.remove(&id)
            && let Some(n) = self.active.get_mut(&c.backend)
        {
            *n -= 1;
            if *n == 0 {
                self.active.remove(&c.backend);
            }
        }
    }

    /// Marks flows whose backend is not in `keep` (and not yet marked) with
    /// a new drain generation, and unmarks flows whose backend is back.
    /// Returns the generation if anything was newly marked.
    fn mark(&mut self, keep: &[SocketAddr]) -> Option<u64> {
        let generation = self.next_drain;
        let mut marked = false;
        for c in self.conns.values_mut() {
            let kept = keep.contains(&c.backend);
            match (kept, c.drain) {
                (false, None) => {
                    c.drain = Some(generation);
                    marked = true;
                }
                (true, Some(_)) => c.drain = None,
                _ => {}
            }
        }
        if marked {
            self.next_drain += 1;
            Some(generation)
        } else {
            None
        }
    }

    /// Cuts every flow still marked with `generation`.
    fn cut(&mut self, generation: u64) -> usize {
        let mut n = 0;
        for c in self.conns.values_mut() {
            if c.drain == Some(generation)
                && let Some(tx) = c.cut.take()
            {
                // The flow may have just ended on its own; nothing to do then.
                let _ = tx.send(());
                n += 1;
            }
        }
        n
    }
}

/// Shared by a service's loop, its flow tasks and its drain timers.
struct Service {
    key: ServiceKey,
    config: UserspaceConfig,
    selector: Mutex<Selector>,
    conns: Mutex<ConnTable>,
    counters: Counters,
    limiter: Option<limit::SourceLimiter>,
}

/// Monotonic per-service counters, read by [`UserspaceDataplane::stats`].
#[derive(Default)]
struct Counters {
    opened: AtomicU64,
    no_backend: AtomicU64,
    backend_errors: AtomicU64,
    drain_cuts: AtomicU64,
    udp_dropped: AtomicU64,
    rate_limited: AtomicU64,
}

fn bump(c: &AtomicU64, n: u64) {
    // Relaxed: independent counters, read only for metrics.
    c.fetch_add(n, Ordering::Relaxed);
}

/// A snapshot of one service's counters, for `/metrics` and `edge status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ServiceStats {
    /// Flows (TCP connections, UDP flows) placed on a backend since start.
    pub flows_opened: u64,
    /// New flows refused because no backend takes new flows.
    pub no_backend: u64,
    /// TCP connects that failed or timed out; UDP upstream sockets that
    /// could not be opened.
    pub backend_errors: u64,
    /// Flows ended by a drain timeout.
    pub drain_cuts: u64,
    /// Datagrams dropped: flow table full, or a flow's queue full.
    pub udp_dropped: u64,
    /// New flows refused by the per-source limit.
    pub rate_limited: u64,
    /// Open flows per backend, including draining ones.
    pub active: BTreeMap<SocketAddr, u64>,
}

/// A flow admitted to a backend.
struct Admitted {
    id: u64,
    backend: SocketAddr,
    cut: oneshot::Receiver<()>,
}

impl Service {
    fn new(key: ServiceKey, selector: Selector, config: UserspaceConfig) -> Self {
        Service {
            key,
            config,
            selector: Mutex::new(selector),
            conns: Mutex::new(ConnTable::default()),
            counters: Counters::default(),
            limiter: config.source_limit.map(limit::SourceLimiter::new),
        }
    }

    fn stats(&self) -> ServiceStats {
        let c = &self.counters;
        ServiceStats {
            flows_opened: c.opened.load(Ordering::Relaxed),
            no_backend: c.no_backend.load(Ordering::Relaxed),
            backend_errors: c.backend_errors.load(Ordering::Relaxed),
            drain_cuts: c.drain_cuts.load(Ordering::Relaxed),
            udp_dropped: c.udp_dropped.load(Ordering::Relaxed),
            rate_limited: c.rate_limited.load(Ordering::Relaxed),
            active: lock(&self.conns).active.clone(),
        }
    }

    /// Picks a backend and registers the flow, atomically with respect to
    /// `update` (see the module docs).
    /// The per-source new-flow limit; counts refusals.
    fn source_admits(&self, src: IpAddr) -> bool {
        let ok = self
            .limiter
            .as_ref()
            .is_none_or(|l| l.admit(src, std::time::Instant::now()));
        if !ok {
            bump(&self.counters.rate_limited, 1);
        }
        ok
    }

    fn admit(&self, flow: &FlowKey) -> Option<Admitted> {
        let mut selector = lock(&self.selector);
        let mut conns = lock(&self.conns);
        let active: Vec<u64> = selector
            .addrs
            .iter()
            .map(|a| conns.active.get(a).copied().unwrap_or(0))
            .collect();
        let i = selector.scheduler.pick(flow, &active)?;
        let backend = *selector.addrs.get(i)?;
        let (tx, rx) = oneshot::channel();
        let id = conns.insert(backend, tx);
        bump(&self.counters.opened, 1);
        Some(Admitted { id, backend, cut: rx })
    }

    fn release(&self, id: u64) {
        lock(&self.conns).remove(id);
    }

    fn update(self: &Arc<Self>, selector: Selector, handle: &Handle) {
        let mut current = lock(&self.selector);
        let generation = lock(&self.conns).mark(&selector.keep);
        *current = selector;
        drop(current);
        if let Some(generation) = generation {
            self.arm_drain(generation, handle);
        }
    }

    /// The service is gone: every flow drains.
    fn retire(self: &Arc<Self>, handle: &Handle) {
        let generation = {
            let mut selector = lock(&self.selector);
            selector.keep.clear();
            selector.addrs.clear();
            lock(&self.conns).mark(&[])
        };
        if let Some(generation) = generation {
            self.arm_drain(generation, handle);
        }
    }

    fn arm_drain(self: &Arc<Self>, generation: u64, handle: &Handle) {
        let service = self.clone();
        let drain = self.config.drain_timeout;
        handle.spawn(async move {
            tokio::time::sleep(drain).await;
            let n = {
                let mut conns = lock(&service.conns);
                let n = conns.cut(generation);
                // Counted before the lock drops, so anyone who sees the cut
                // flow gone also sees it counted.
                bump(&service.counters.drain_cuts, n as u64);
                n
            };
            if n > 0 {
                info!(service = %service.key, flows = n, "drain timeout: cut flows");
            }
        });
    }

    /// The destination of a flow as every node sees it: the VIP, or the
    /// socket's local address if the service listens on a wildcard.
    fn flow_dst(&self, local: Option<SocketAddr>) -> SocketAddr {
        let vip = self.key.socket_addr();
        if vip.ip().is_unspecified() {
            local.unwrap_or(vip)
        } else {
            vip
        }
    }
}

async fn accept_loop(listener: TcpListener, service: Arc<Service>) {
    loop {
        match listener.accept().await {
            Ok((client, peer)) => {
                if !service.source_admits(peer.ip()) {
                    // Reset at once (SO_LINGER 0, which makes close send an
                    // RST and never blocks): the flood pays, not us.
                    #[cfg(target_os = "linux")]
                    let _ = rustix::net::sockopt::set_socket_linger(&client, Some(Duration::ZERO));
                    drop(client);
                    debug!(%peer, "new connection over the per-source limit; reset");
                    continue;
                }
                let service = service.clone();
                tokio::spawn(
                    async move { proxy_tcp(client, peer, service).await }
                        .instrument(debug_span!("conn", %peer)),
                );
            }
            Err(e) => {
                // Per-connection errors (ECONNABORTED) and fd exhaustion
                // (EMFILE) are both transient; back off briefly so the
                // latter does not spin.
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn proxy_tcp(mut client: TcpStream, peer: SocketAddr, service: Arc<Service>) {
    let flow = FlowKey {
        src: peer,
        dst: service.flow_dst(client.local_addr().ok()),
        protocol: Protocol::Tcp,
    };
    let Some(admitted) = service.admit(&flow) else {
        bump(&service.counters.no_backend, 1);
        debug!("no backend takes new flows; closing");
        return;
    };
    let Admitted { id, backend, cut } = admitted;
    let connect_timeout = service.config.connect_timeout;
    let relay = async {
        let connected = tokio::time::timeout(connect_timeout, TcpStream::connect(backend))
            .await
            .unwrap_or_else(|_| Err(io::Error::new(io::ErrorKind::TimedOut, "connect timeout")));
        let mut upstream = connected.inspect_err(|_| bump(&service.counters.backend_errors, 1))?;
        // Small writes (handshakes, RPCs) should not wait for Nagle.
        let _ = upstream.set_nodelay(true);
        let _ = client.set_nodelay(true);
        match service.config.tcp_copy {
            #[cfg(target_os = "linux")]
            TcpCopy::Splice => splice::relay(&client, &upstream).await,
            _ => tokio::io::copy_bidirectional(&mut client, &mut upstream).await,
        }
    };
    tokio::select! {
        r = relay => match r {
            Ok((up, down)) => debug!(%backend, up, down, "connection closed"),
            Err(e) => debug!(%backend, error = %e, "connection ended with error"),
        },
        // Only an explicit cut ends the flow; a dropped sender (flow table
        // entry removed) cannot happen while this task runs.
        Ok(()) = cut => debug!(%backend, "cut by drain timeout"),
    }
    service.release(id);
}

/// Datagrams queued per UDP flow towards its backend. When full, new ones
/// are dropped (UDP semantics) rather than stalling the service's receive
/// loop, and with it every other client.
const UDP_FLOW_QUEUE: usize = 256;

/// A UDP flow: one client, one task with an upstream socket connected to its
/// backend.
struct UdpFlow {
    id: u64,
    to_backend: mpsc::Sender<Vec<u8>>,
    last_seen: Instant,
}

type UdpFlows = Arc<Mutex<BTreeMap<SocketAddr, UdpFlow>>>;

async fn udp_loop(socket: Arc<UdpSocket>, service: Arc<Service>) {
    let flows: UdpFlows = Arc::default();
    let local = socket.local_addr().ok();
    let mut buf = vec![0u8; UDP_BUF];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(x) => x,
            Err(e) => {
                warn!(error = %e, "udp receive failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let existing = {
            let mut table = lock(&flows);
            table.get_mut(&client).map(|f| {
                f.last_seen = Instant::now();
                f.to_backend.clone()
            })
        };
        let to_backend = match existing {
            Some(tx) => tx,
            None => {
                let flow = FlowKey {
                    src: client,
                    dst: service.flow_dst(local),
                    protocol: Protocol::Udp,
                };
                match open_udp_flow(&socket, &service, &flows, flow).await {
                    Some(tx) => tx,
                    None => continue,
                }
            }
        };
        if let Err(e) = to_backend.try_send(buf[..n].to_vec()) {
            bump(&service.counters.udp_dropped, 1);
            debug!(%client, error = %e, "udp flow queue full or closed; datagram dropped");
        }
    }
}

async fn open_udp_flow(
    socket: &Arc<UdpSocket>,
    service: &Arc<Service>,
    flows: &UdpFlows,
    flow: FlowKey,
) -> Option<mpsc::Sender<Vec<u8>>> {
    let client = flow.src;
    if !service.source_admits(client.ip()) {
        debug!(%client, "new udp flow over the per-source limit; dropping datagram");
        return None;
    }
    if lock(flows).len() >= service.config.udp_max_flows {
        bump(&service.counters.udp_dropped, 1);
        debug!(%client, "udp flow table full; dropping datagram");
        return None;
    }
    let Some(Admitted { id, backend, cut }) = service.admit(&flow) else {
        bump(&service.counters.no_backend, 1);
        debug!(%client, "no backend takes new flows; dropping datagram");
        return None;
    };
    let unspecified: IpAddr = if backend.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    let upstream = match UdpSocket::bind((unspecified, 0)).await {
        Ok(s) => s,
        Err(e) => {
            warn!(%client, error = %e, "cannot open upstream udp socket");
            bump(&service.counters.backend_errors, 1);
            service.release(id);
            return None;
        }
    };
    if let Err(e) = upstream.connect(backend).await {
        warn!(%client, %backend, error = %e, "cannot connect upstream udp socket");
        bump(&service.counters.backend_errors, 1);
        service.release(id);
        return None;
    }
    let (tx, rx) = mpsc::channel(UDP_FLOW_QUEUE);
    lock(flows).insert(
        client,
        UdpFlow {
            id,
            to_backend: tx.clone(),
            last_seen: Instant::now(),
        },
    );
    debug!(%client, %backend, "udp flow opened");
    let relay = UdpRelay {
        socket: socket.clone(),
        upstream,
        service: service.clone(),
        flows: flows.clone(),
        client,
        id,
    };
    tokio::spawn(
        relay
            .run(rx, cut)
            .instrument(debug_span!("udp_flow", %client, %backend)),
    );
    Some(tx)
}

/// Both directions of one UDP flow.
struct UdpRelay {
    /// The service socket, for replies: they must come from the VIP.
    socket: Arc<UdpSocket>,
    upstream: UdpSocket,
    service: Arc<Service>,
    flows: UdpFlows,
    client: SocketAddr,
    id: u64,
}

impl UdpRelay {
    /// Runs until the flow idles out or is cut, then forgets it.
    async fn run(self, mut from_client: mpsc::Receiver<Vec<u8>>, mut cut: oneshot::Receiver<()>) {
        let idle = self.service.config.udp_idle_timeout;
        let mut buf = vec![0u8; UDP_BUF];
        loop {
            let deadline = match lock(&self.flows).get(&self.client) {
                Some(f) if f.id == self.id => f.last_seen + idle,
                _ => break,
            };
            tokio::select! {
                Some(datagram) = from_client.recv() => {
                    if let Err(e) = self.upstream.send(&datagram).await {
                        debug!(error = %e, "udp send to backend failed");
                    }
                }
                r = self.upstream.recv(&mut buf) => match r {
                    Ok(n) => {
                        if let Some(f) = lock(&self.flows).get_mut(&self.client) {
                            f.last_seen = Instant::now();
                        }
                        if let Err(e) = self.socket.send_to(&buf[..n], self.client).await {
                            debug!(error = %e, "udp send to client failed");
                        }
                    }
                    // ECONNREFUSED from an ICMP port-unreachable: the backend
                    // is momentarily down; keep the flow, the client may retry.
                    Err(e) => debug!(error = %e, "udp receive from backend failed"),
                },
                () = tokio::time::sleep_until(deadline) => {
                    let now = Instant::now();
                    let still_idle = lock(&self.flows)
                        .get(&self.client)
                        .is_none_or(|f| f.id != self.id || f.last_seen + idle <= now);
                    if still_idle {
                        debug!("udp flow idle, expiring");
                        break;
                    }
                }
                Ok(()) = &mut cut => {
                    debug!("udp flow cut by drain timeout");
                    break;
                }
            }
        }
        {
            let mut table = lock(&self.flows);
            if table.get(&self.client).is_some_and(|f| f.id == self.id) {
                table.remove(&self.client);
            }
        }
        self.service.release(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn be(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn conn_table_counts_per_backend() {
        let mut t = ConnTable::default();
        let a = t.insert(be(1), oneshot::channel().0);
        let b = t.insert(be(1), oneshot::channel().0);
        let c = t.insert(be(2), oneshot::channel().0);
        assert_eq!(t.active, BTreeMap::from([(be(1), 2), (be(2), 1)]));
        t.remove(a);
        t.remove(c);
        t.remove(c); // twice is harmless
        assert_eq!(t.active, BTreeMap::from([(be(1), 1)]));
        t.remove(b);
        assert!(t.active.is_empty() && t.conns.is_empty());
    }

    #[test]
    fn drain_marks_cut_only_their_generation() {
        let mut t = ConnTable::default();
        let (tx1, mut rx1) = oneshot::channel();
        let (tx2, mut rx2) = oneshot::channel();
        let (tx3, mut rx3) = oneshot::channel();
        t.insert(be(1), tx1);
        t.insert(be(2), tx2);
        t.insert(be(3), tx3);

        // Backend 1 leaves: generation 0 marks its flow only.
        let g0 = t.mark(&[be(2), be(3)]).unwrap();
        // Nothing new to mark: no generation, no timer.
        assert_eq!(t.mark(&[be(2), be(3)]), None);
        // Backend 2 leaves later: its own generation.
        let g1 = t.mark(&[be(3)]).unwrap();
        assert_ne!(g0, g1);
        // Backend 2 comes back before its timer fires: unmarked.
        assert_eq!(t.mark(&[be(2), be(3)]), None);

        assert_eq!(t.cut(g1), 0);
        assert!(rx2.try_recv().is_err());
        assert_eq!(t.cut(g0), 1);
        assert!(rx1.try_recv().is_ok());
        assert!(rx3.try_recv().is_err());
        // A flow is cut once.
        assert_eq!(t.cut(g0), 0);
    }
}
