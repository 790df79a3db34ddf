//! [`Proxy`]: building from config, serving listener sockets handed in by
//! the node, and the control-plane entry points (backend sets, certificates,
//! routes, whole-config reloads).
//!
//! ```text
//!  node ──bind──► TcpListener ──► Proxy::serve(name, socket, shutdown)
//!                                   ├─ accept loop ─► per-connection task
//!                                   │     (TLS handshake w/ timeout, SNI cert)
//!                                   │     hyper-util auto: HTTP/1.1 + h2/h2c
//!                                   │     └─ proxy::handle per request
//!                                   └─ shutdown or listener removed: stop
//!                                      accepting, graceful close of
//!                                      connections, drain timeout
//!  controller ──► set_backends / set_certificates / set_routes / reconfigure
//!                 (build a new `Shared` snapshot, ArcSwap it in)
//!  proxy ──► mpsc::Receiver<PassiveEvent> ──► node outlier detection
//! ```
//!
//! All state a request reads is one immutable [`Shared`] snapshot behind an
//! `ArcSwap`. A request loads it once and keeps it to the end, so it never
//! sees half of a change. Writers (all control-plane calls) take the
//! control mutex, build the next snapshot from the current one and swap it
//! in; the request path takes no lock.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use prometheus_client::registry::Registry;
use ring::hmac;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::balance::BackendStats;
use crate::client::UpstreamClient;
use crate::config::{Backend, CertConfig, Limits, PoolConfig, ProxyConfig};
use crate::error::ConfigError;
use crate::forward::ConnForwarding;
use crate::metrics::{ListenerLabels, Metrics};
use crate::proxy::{
    ConnCtx, FastMap, ListenerLife, ListenerRuntime, PassiveEvent, PoolRuntime, Shared, TlsRuntime, handle,
};
use crate::ratelimit::RateLimiter;
use crate::reload::{
    Change, ListenerChange, PoolChange, Reconfigured, diff, pool_settings_diff, same_client,
};
use crate::route::{RouteRule, RouteTable};
use crate::tls::{SniResolver, server_config, upstream_fingerprint};
use crate::upstream::{MemberKey, PoolView, RetryBudget, Upstreams, ViewSpec};

/// How long a connection accepted just before a drain may take to send its
/// first request (see `run_http`).
const FIRST_REQUEST_GRACE: Duration = Duration::from_millis(500);

/// Capacity of the passive-health channel; beyond it events are dropped
/// and counted in `l7_passive_health_dropped`.
const PASSIVE_QUEUE: usize = 4096;

/// Errors of [`Proxy::serve`].
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("unknown listener {0:?}")]
    UnknownListener(String),
    #[error("listener socket: {0}")]
    Socket(std::io::Error),
}

/// The L7 proxy. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct Proxy {
    inner: Arc<Inner>,
}

struct Inner {
    /// What requests and accept loops read.
    state: ArcSwap<Shared>,
    /// Serializes writers (each builds the next snapshot from the current
    /// one, so two at once would lose an update). Only the control path
    /// takes it.
    control: Mutex<Control>,
}

type StatsByPool = HashMap<String, HashMap<MemberKey, Arc<BackendStats>>>;

struct Control {
    /// The running configuration, kept current by `set_routes` and
    /// `set_certificates` too, so a reload reports changes against what
    /// actually runs. Pool members in it are not maintained (they are
    /// pushed separately and not part of a diff).
    config: ProxyConfig,
    /// Per-backend counters carried from view to view.
    stats: StatsByPool,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.inner.state.load();
        let mut listeners: Vec<&String> = state.listeners.keys().collect();
        listeners.sort();
        let mut pools: Vec<&String> = state.pools.keys().collect();
        pools.sort();
        f.debug_struct("Proxy")
            .field("listeners", &listeners)
            .field("pools", &pools)
            .finish()
    }
}

/// A new snapshot and what goes with it, built completely before anything
/// is swapped in.
struct Built {
    shared: Shared,
    stats: StatsByPool,
    /// Changes only visible by reading files (rotations).
    found: Vec<Change>,
}

/// What a reload builds upon.
struct Prev<'a> {
    shared: &'a Shared,
    control: &'a Control,
}

impl Proxy {
    /// Validates `config`, builds TLS contexts, clients and the initial
    /// backend views, and registers metrics in `registry`. Binds nothing.
    ///
    /// The receiver yields passive-health events (connect failures, resets,
    /// timeouts, 5xx); drop it if nobody consumes them.
    pub fn new(
        config: ProxyConfig,
        registry: &mut Registry,
    ) -> Result<(Proxy, mpsc::Receiver<PassiveEvent>), ConfigError> {
        config.validate()?;
        let (tx, rx) = mpsc::channel(PASSIVE_QUEUE);
        let built = build(&config, None, Metrics::new(registry), tx)?;
        let inner = Inner {
            state: ArcSwap::from_pointee(built.shared),
            control: Mutex::new(Control {
                config,
                stats: built.stats,
            }),
        };
        Ok((
            Proxy {
                inner: Arc::new(inner),
            },
            rx,
        ))
    }

    fn control(&self) -> MutexGuard<'_, Control> {
        // A panic while holding it cannot leave a half-built snapshot
        // behind (snapshots are swapped whole), so the data is usable.
        self.inner.control.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Applies a complete new configuration to the running proxy.
    ///
    /// Everything is validated and built first: route tables, TLS contexts
    /// (every certificate and key file is read again, so a rotation under
    /// the same path is picked up), upstream clients of new or changed
    /// pools. Any error is returned with the running proxy untouched. On
    /// success the new state is swapped in at once:
    ///
    /// - requests in flight finish with the state they started with; the
    ///   next request (also on an open keep-alive connection) sees the new
    ///   routes, pools and proxy-wide settings;
    /// - new TLS handshakes use the new certificates; open TLS connections
    ///   keep theirs;
    /// - unchanged pools keep their runtime (idle upstream connections,
    ///   retry budget) and members; changed pools get a new runtime and
    ///   keep their current members (and, where the connection settings and
    ///   the sticky settings are unchanged, their upstream connections and
    ///   cookie key); new pools start with the members their config lists
    ///   until [`Proxy::set_many`] pushes some;
    /// - removed listeners' [`Proxy::serve`] loops stop accepting and drain
    ///   their connections, then return; added listeners are served once
    ///   the node calls [`Proxy::serve`] with a socket for them;
    /// - `limits.max_connections` applies to serve loops started after the
    ///   change; the other limits apply to connections accepted after it.
    ///
    /// Metrics stay registered as at [`Proxy::new`].
    pub fn reconfigure(&self, config: ProxyConfig) -> Result<Reconfigured, ConfigError> {
        config.validate()?;
        let mut control = self.control();
        let current = self.inner.state.load_full();
        let built = build(
            &config,
            Some(Prev {
                shared: &current,
                control: &control,
            }),
            current.metrics.clone(),
            current.health.clone(),
        )?;
        // Nothing can fail from here on.
        let mut report = diff(&control.config, &config);
        for c in built.found {
            report.push(c);
        }
        let removed: Vec<Arc<ListenerLife>> = current
            .listeners
            .iter()
            .filter(|(name, _)| !built.shared.listeners.contains_key(*name))
            .map(|(_, l)| l.life.clone())
            .collect();
        self.inner.state.store(Arc::new(built.shared));
        control.stats = built.stats;
        control.config = config;
        drop(control);
        for life in removed {
            life.removed.send_replace(true);
        }
        if !report.is_empty() {
            tracing::info!(changes = %report.to_string().replace('\n', "; "), "L7 reconfigured");
        }
        Ok(report)
    }

    /// Serves listener `name` on `socket` (bound by the node) until
    /// `shutdown` completes or a [`Proxy::reconfigure`] removes the
    /// listener, then stops accepting, asks open connections to close
    /// gracefully and waits up to the drain timeout for them.
    ///
    /// Each accepted connection gets the listener as currently configured
    /// (TLS certificates and settings, limits); each request the current
    /// routes.
    pub async fn serve(
        &self,
        name: &str,
        socket: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let (life, max_connections) = {
            let state = self.inner.state.load();
            let l = state
                .listeners
                .get(name)
                .ok_or_else(|| ServeError::UnknownListener(name.to_string()))?;
            (l.life.clone(), state.limits.max_connections)
        };
        let mut removed = life.removed.subscribe();
        // Either way out: the node's shutdown, or a reload removing us.
        let stopping = async move {
            tokio::select! {
                _ = shutdown => {}
                // The borrow guard from wait_for must not be kept.
                _ = async { drop(removed.wait_for(|r| *r).await) } => {
                    tracing::info!(listener = name, "listener removed, draining");
                }
            }
        };
        tokio::pin!(stopping);
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        let slots = max_connections.map(|n| Arc::new(Semaphore::new(n)));
        loop {
            // At the connection limit, stop accepting until one closes:
            // excess clients queue in the kernel backlog instead of being
            // accepted and starved.
            let permit = match &slots {
                Some(sem) => tokio::select! {
                    _ = &mut stopping => break,
                    p = sem.clone().acquire_owned() => match p {
                        Ok(p) => Some(p),
                        Err(_) => break,
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                },
                None => None,
            };
            tokio::select! {
                _ = &mut stopping => break,
                accepted = socket.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        // The listener as configured now (one snapshot load
                        // per connection, not per request).
                        let state = self.inner.state.load();
                        let Some(listener) = state
                            .listeners
                            .get(name)
                            .filter(|l| Arc::ptr_eq(&l.life, &life))
                            .cloned()
                        else {
                            // Removed since the accept: `stopping` is
                            // about to complete.
                            continue;
                        };
                        let limits = state.limits.clone();
                        drop(state);
                        let inner = self.inner.clone();
                        let stop = stop_rx.clone();
                        conns.spawn(async move {
                            serve_conn(inner, listener, limits, tcp, peer, stop).await;
                            drop(permit);
                        });
                    }
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning.
                        tracing::warn!(listener = name, error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        }
        drop(socket);
        let _ = stop_tx.send(true);
        let drain = self.inner.state.load().drain;
        let drained = tokio::time::timeout(drain, async { while conns.join_next().await.is_some() {} }).await;
        if drained.is_err() {
            tracing::warn!(
                listener = name,
                left = conns.len(),
                "drain timeout, closing connections"
            );
            conns.abort_all();
        }
        Ok(())
    }

    /// [`Proxy::serve`] for a std listener (inherited or bound by a
    /// privileged helper); it is switched to non-blocking mode here.
    pub async fn serve_std(
        &self,
        name: &str,
        socket: std::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        socket.set_nonblocking(true).map_err(ServeError::Socket)?;
        let socket = TcpListener::from_std(socket).map_err(ServeError::Socket)?;
        self.serve(name, socket, shutdown).await
    }

    /// Replaces the members of `pool` (an atomic swap; in-flight requests
    /// keep the view they started with).
    pub fn set_backends(&self, pool: &str, backends: Vec<Backend>) -> Result<(), ConfigError> {
        self.set_many(std::iter::once((pool.to_string(), backends)).collect())
    }

    /// Replaces the members of several pools in one swap, so no request can
    /// see some pools updated and others not.
    pub fn set_many(&self, sets: HashMap<String, Vec<Backend>>) -> Result<(), ConfigError> {
        let mut control = self.control();
        let current = self.inner.state.load_full();
        for name in sets.keys() {
            if !current.pools.contains_key(name) {
                return Err(ConfigError::NoSuchPool(name.clone()));
            }
        }
        let now = Instant::now();
        let mut pools = current.upstreams.pools.clone();
        for (name, backends) in sets {
            let Some(rt) = current.pools.get(&name) else {
                continue;
            };
            let stats = control.stats.entry(name.clone()).or_default();
            let view = PoolView::build(
                &view_spec(rt),
                backends,
                current.upstreams.pool(&name).map(|v| &**v),
                stats,
                now,
            );
            pools.insert(name, Arc::new(view));
        }
        let mut next = (*current).clone();
        next.upstreams = Arc::new(Upstreams { pools });
        self.inner.state.store(Arc::new(next));
        Ok(())
    }

    /// Swaps a TLS listener's certificates; running connections keep theirs.
    pub fn set_certificates(&self, listener: &str, certs: &[CertConfig]) -> Result<(), ConfigError> {
        let mut control = self.control();
        let current = self.inner.state.load();
        let l = current
            .listeners
            .get(listener)
            .ok_or_else(|| ConfigError::NoSuchListener(listener.to_string()))?;
        let tls = l.tls.as_ref().ok_or_else(|| ConfigError::Invalid {
            field: format!("listeners.{listener}.tls"),
            reason: "listener has no TLS".into(),
        })?;
        if certs.is_empty() {
            return Err(ConfigError::Tls("no certificates".into()));
        }
        tls.resolver.replace(certs)?;
        if let Some(t) = control
            .config
            .listeners
            .iter_mut()
            .find(|l| l.name == listener)
            .and_then(|l| l.tls.as_mut())
        {
            t.certs = certs.to_vec();
        }
        Ok(())
    }

    /// Swaps a listener's route table (pools must exist).
    pub fn set_routes(&self, listener: &str, routes: &[RouteRule]) -> Result<(), ConfigError> {
        let mut control = self.control();
        let current = self.inner.state.load_full();
        let l = current
            .listeners
            .get(listener)
            .ok_or_else(|| ConfigError::NoSuchListener(listener.to_string()))?;
        for (i, r) in routes.iter().enumerate() {
            if let Some(p) = r.action.pool()
                && !current.pools.contains_key(p)
            {
                return Err(ConfigError::UnknownPool {
                    listener: listener.to_string(),
                    route: r.name.clone().unwrap_or_else(|| i.to_string()),
                    pool: p.to_string(),
                });
            }
        }
        let runtime = ListenerRuntime {
            name: l.name.clone(),
            routes: RouteTable::new(routes)?,
            tls: l.tls.clone(),
            life: l.life.clone(),
        };
        let mut next = (*current).clone();
        next.listeners.insert(listener.to_string(), Arc::new(runtime));
        self.inner.state.store(Arc::new(next));
        if let Some(l) = control.config.listeners.iter_mut().find(|l| l.name == listener) {
            l.routes = routes.to_vec();
        }
        Ok(())
    }

    /// The running configuration (as last applied by `new`, `reconfigure`,
    /// `set_routes` and `set_certificates`), e.g. for a dry run:
    /// `edge_l7::diff(&proxy.config(), &candidate)`. Pool `backends` are as
    /// configured, not the members pushed since (see [`Proxy::upstreams`]).
    pub fn config(&self) -> ProxyConfig {
        self.control().config.clone()
    }

    /// The current upstream snapshot (for status output and tests).
    pub fn upstreams(&self) -> Arc<Upstreams> {
        self.inner.state.load().upstreams.clone()
    }
}

/// Builds the snapshot for `config` (already validated). With `prev` (a
/// reload), what did not change is shared with the running snapshot rather
/// than rebuilt, and members and counters are carried over. Reads every
/// certificate file; touches nothing running.
fn build(
    config: &ProxyConfig,
    prev: Option<Prev<'_>>,
    metrics: Metrics,
    health: mpsc::Sender<PassiveEvent>,
) -> Result<Built, ConfigError> {
    let now = Instant::now();
    let mut found = Vec::new();
    let mut pools = FastMap::default();
    let mut views = HashMap::new();
    let mut stats_by_pool = HashMap::new();
    for p in &config.pools {
        let tls_fingerprint = p.tls.as_ref().map(upstream_fingerprint).transpose()?;
        let old = prev.as_ref().and_then(|prev| {
            prev.shared.pools.get(&p.name).map(|rt| {
                (
                    rt,
                    prev.shared.upstreams.pool(&p.name),
                    prev.control.stats.get(&p.name),
                )
            })
        });
        let Some((old_rt, old_view, old_stats)) = old else {
            // New pool (or first build): members from the config.
            let rt = pool_runtime(p, None, tls_fingerprint)?;
            let mut stats = HashMap::new();
            let view = PoolView::build(&view_spec(&rt), p.backends.clone(), None, &mut stats, now);
            views.insert(p.name.clone(), Arc::new(view));
            stats_by_pool.insert(p.name.clone(), stats);
            pools.insert(p.name.clone(), Arc::new(rt));
            continue;
        };
        let settings_same = pool_settings_diff(&old_rt.config, p).is_empty();
        let files_same = old_rt.tls_fingerprint == tls_fingerprint;
        if !files_same && old_rt.config.tls == p.tls {
            found.push(Change::Pool {
                name: p.name.clone(),
                change: PoolChange::TlsFilesReread,
            });
        }
        let mut stats = old_stats.cloned().unwrap_or_default();
        if settings_same && files_same {
            // Unchanged: same runtime, same members.
            pools.insert(p.name.clone(), old_rt.clone());
            if let Some(v) = old_view {
                views.insert(p.name.clone(), v.clone());
            }
        } else {
            // Changed: new runtime, current members, rebuilt selector (the
            // algorithm or cookie key may differ). The previous view keeps
            // slow-start ramps going.
            let reuse_client = files_same;
            let rt = pool_runtime(p, Some((old_rt, reuse_client)), tls_fingerprint)?;
            let members = old_view
                .map(|v| v.members.iter().map(|m| m.backend.clone()).collect())
                .unwrap_or_default();
            let view = PoolView::build(&view_spec(&rt), members, old_view.map(|v| &**v), &mut stats, now);
            views.insert(p.name.clone(), Arc::new(view));
            pools.insert(p.name.clone(), Arc::new(rt));
        }
        stats_by_pool.insert(p.name.clone(), stats);
    }

    let mut listeners = FastMap::default();
    for l in &config.listeners {
        let old = prev.as_ref().and_then(|prev| prev.shared.listeners.get(&l.name));
        let old_tls = old.and_then(|o| o.tls.as_ref());
        let tls = match &l.tls {
            None => None,
            Some(t) => {
                // Always read again: a rotation keeps the path.
                let resolver = SniResolver::new(&t.certs)?;
                let handshake_timeout = Duration::from_millis(t.handshake_timeout_ms);
                match old_tls {
                    Some(o)
                        if o.resolver.fingerprint() == resolver.fingerprint()
                            && o.handshake_timeout == handshake_timeout =>
                    {
                        // Nothing new: keep the acceptor (and its session
                        // cache, so clients can still resume).
                        Some(o.clone())
                    }
                    _ => {
                        let same_certs_config = prev
                            .as_ref()
                            .and_then(|p| p.control.config.listeners.iter().find(|o| o.name == l.name))
                            .and_then(|o| o.tls.as_ref())
                            .is_some_and(|o| o.certs == t.certs);
                        if let Some(o) = old_tls
                            && same_certs_config
                            && o.resolver.fingerprint() != resolver.fingerprint()
                        {
                            found.push(Change::Listener {
                                name: l.name.clone(),
                                change: ListenerChange::CertificatesReread,
                            });
                        }
                        let resolver = Arc::new(resolver);
                        let acceptor = tokio_rustls::TlsAcceptor::from(server_config(resolver.clone())?);
                        Some(Arc::new(TlsRuntime {
                            resolver,
                            acceptor,
                            handshake_timeout,
                        }))
                    }
                }
            }
        };
        listeners.insert(
            l.name.clone(),
            Arc::new(ListenerRuntime {
                name: l.name.clone(),
                routes: RouteTable::new(&l.routes)?,
                tls,
                life: old.map(|o| o.life.clone()).unwrap_or_else(ListenerLife::new),
            }),
        );
    }

    let request_id = http::HeaderName::from_bytes(config.forwarding.request_id_header.as_bytes())
        .map_err(|_| ConfigError::Header(config.forwarding.request_id_header.clone()))?;
    // Same settings: keep the buckets (a reload must not hand every client
    // a fresh burst).
    let rate = match prev.as_ref() {
        Some(p) if p.control.config.rate_limit == config.rate_limit => p.shared.rate.clone(),
        _ => config
            .rate_limit
            .as_ref()
            .map(|r| Arc::new(RateLimiter::new(r.requests_per_second, r.burst, r.max_clients))),
    };
    Ok(Built {
        shared: Shared {
            listeners,
            pools,
            upstreams: Arc::new(Upstreams { pools: views }),
            limits: config.limits.clone(),
            trusted: config.forwarding.trusted_proxies.clone(),
            forwarded: config.forwarding.forwarded,
            request_id,
            rate,
            metrics,
            health,
            drain: Duration::from_millis(config.drain_timeout_ms),
        },
        stats: stats_by_pool,
        found,
    })
}

/// A pool's runtime. With `prev` (a changed pool), the upstream client is
/// kept when `reuse_client` and the connection settings are the same (no
/// reconnect storm for, say, a balance change), and the sticky cookie key
/// when the sticky settings are (a random key would otherwise change and
/// unpin every client).
fn pool_runtime(
    p: &PoolConfig,
    prev: Option<(&PoolRuntime, bool)>,
    tls_fingerprint: Option<[u8; 32]>,
) -> Result<PoolRuntime, ConfigError> {
    let kept_key = prev
        .filter(|(old, _)| old.config.sticky == p.sticky)
        .and_then(|(old, _)| old.sticky_key.clone());
    let sticky_key =
        match (&p.sticky, kept_key) {
            (None, _) => None,
            (Some(_), Some(k)) => Some(k),
            (Some(s), None) => Some(match &s.secret {
                Some(secret) => hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
                None => hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new()).map_err(
                    |_| ConfigError::Invalid {
                        field: format!("pools.{}.sticky", p.name),
                        reason: "no system randomness for the cookie key".into(),
                    },
                )?,
            }),
        };
    let mut cfg = p.clone();
    cfg.backends = Vec::new();
    let client = match prev {
        Some((old, true)) if same_client(&old.config, &cfg) => old.client.clone(),
        _ => UpstreamClient::new(&cfg)?,
    };
    Ok(PoolRuntime {
        client,
        budget: RetryBudget::new(cfg.retry.budget_ratio, cfg.retry.budget_min),
        sticky_key,
        tls_fingerprint,
        config: cfg,
    })
}

fn view_spec(rt: &PoolRuntime) -> ViewSpec<'_> {
    ViewSpec {
        name: &rt.config.name,
        algorithm: &rt.config.balance,
        sticky_key: rt.sticky_key.as_ref(),
        slow_start: Duration::from_millis(rt.config.slow_start_ms),
    }
}

/// Keeps `l7_active_connections` right whichever way a connection ends.
struct ConnGauge(prometheus_client::metrics::gauge::Gauge);

impl Drop for ConnGauge {
    fn drop(&mut self) {
        self.0.dec();
    }
}

async fn serve_conn(
    inner: Arc<Inner>,
    listener: Arc<ListenerRuntime>,
    limits: Limits,
    tcp: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let gauge = inner
        .state
        .load()
        .metrics
        .active_connections
        .get_or_create_owned(&ListenerLabels {
            listener: listener.name.clone(),
        });
    gauge.inc();
    let _gauge = ConnGauge(gauge);
    let local = tcp.local_addr().unwrap_or(peer);
    let _ = tcp.set_nodelay(true);
    match listener.tls.clone() {
        None => {
            let ctx = Arc::new(ConnCtx {
                listener,
                peer,
                local,
                tls: false,
                stop: stop.clone(),
                forwarding: ConnForwarding::new(peer.ip(), Some(local.ip())),
            });
            run_http(inner, &limits, ctx, tcp, stop).await;
        }
        Some(tls) => {
            // Bounded so a client that stalls the handshake (slowloris on
            // TLS) does not pin a task forever.
            match tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let ctx = Arc::new(ConnCtx {
                        listener,
                        peer,
                        local,
                        tls: true,
                        stop: stop.clone(),
                        forwarding: ConnForwarding::new(peer.ip(), Some(local.ip())),
                    });
                    run_http(inner, &limits, ctx, stream, stop).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timeout"),
            }
        }
    }
}

async fn run_http<I>(
    inner: Arc<Inner>,
    limits: &Limits,
    ctx: Arc<ConnCtx>,
    io: I,
    mut stop: watch::Receiver<bool>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(limits.header_read_timeout_ms))
        .max_buf_size(limits.max_header_bytes)
        // Head and body in one buffer and one `send`: responses through a
        // proxy are mostly small, and a copy costs less than a scatter list
        // (TLS streams flatten anyway).
        .writev(false);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_concurrent_streams)
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let peer = ctx.peer;
    let opened = tokio::time::Instant::now();
    // Boxed: the request future is several KB, and hyper moves it (into
    // the h2 stream task it spawns, into the h1 dispatcher); moving a
    // pointer instead measurably helps HTTP/2 (`labs/bench/l7.sh`). Each
    // request takes the current snapshot: one `ArcSwap` load and one
    // reference count, as the former per-request `Arc` clone did.
    let svc = service_fn(move |req| Box::pin(handle(inner.state.load_full(), ctx.clone(), req)));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "connection closed with error");
            }
        }
        // The borrow guard from wait_for must not live across the drain.
        _ = async { drop(stop.wait_for(|s| *s).await) } => {
            // A connection accepted just before the drain has not sent its
            // first request yet, and hyper would close it as idle: the
            // client would see its request fail. Give it a moment to arrive
            // (it is then answered before the close); keep-alive
            // connections that sat idle for longer close at once.
            let grace = opened + FIRST_REQUEST_GRACE;
            if tokio::time::Instant::now() < grace {
                tokio::select! {
                    r = conn.as_mut() => {
                        if let Err(e) = r {
                            tracing::debug!(%peer, error = %e, "connection closed with error");
                        }
                        return;
                    }
                    _ = tokio::time::sleep_until(grace) => {}
                }
            }
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection closed with error during drain");
            }
        }
    }
}
