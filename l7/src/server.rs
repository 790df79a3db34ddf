//! [`Proxy`]: building from config, serving listener sockets handed in by
//! the node, and the control-plane entry points (backend sets, certificates,
//! routes).
//!
//! ```text
//!  node ──bind──► TcpListener ──► Proxy::serve(name, socket, shutdown)
//!                                   ├─ accept loop ─► per-connection task
//!                                   │     (TLS handshake w/ timeout, SNI cert)
//!                                   │     hyper-util auto: HTTP/1.1 + h2/h2c
//!                                   │     └─ proxy::handle per request
//!                                   └─ shutdown: stop accepting, graceful
//!                                      close of connections, drain timeout
//!  controller ──► set_backends / set_certificates / set_routes (ArcSwap)
//!  proxy ──► mpsc::Receiver<PassiveEvent> ──► node outlier detection
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
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

use crate::client::UpstreamClient;
use crate::config::{Backend, CertConfig, ProxyConfig};
use crate::error::ConfigError;
use crate::forward::ConnForwarding;
use crate::metrics::{ListenerLabels, Metrics};
use crate::proxy::{ConnCtx, ListenerRuntime, PassiveEvent, PoolRuntime, Shared, TlsRuntime, handle};
use crate::ratelimit::RateLimiter;
use crate::route::{RouteRule, RouteTable};
use crate::tls::{SniResolver, server_config};
use crate::upstream::{PoolView, RetryBudget, Upstreams, ViewSpec};

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
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("listeners", &self.shared.listeners.keys().collect::<Vec<_>>())
            .field("pools", &self.shared.pools.keys().collect::<Vec<_>>())
            .finish()
    }
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
        let now = Instant::now();
        let mut pools = HashMap::new();
        let mut views = HashMap::new();
        let mut stats_by_pool = HashMap::new();
        for p in &config.pools {
            let sticky_key = match &p.sticky {
                Some(s) => Some(match &s.secret {
                    Some(secret) => hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes()),
                    None => hmac::Key::generate(hmac::HMAC_SHA256, &ring::rand::SystemRandom::new())
                        .map_err(|_| ConfigError::Invalid {
                            field: format!("pools.{}.sticky", p.name),
                            reason: "no system randomness for the cookie key".into(),
                        })?,
                }),
                None => None,
            };
            let mut cfg = p.clone();
            let backends = std::mem::take(&mut cfg.backends);
            let rt = PoolRuntime {
                client: UpstreamClient::new(&cfg)?,
                budget: RetryBudget::new(cfg.retry.budget_ratio, cfg.retry.budget_min),
                sticky_key,
                config: cfg,
            };
            let mut stats = HashMap::new();
            let view = PoolView::build(&view_spec(&rt), backends, None, &mut stats, now);
            views.insert(p.name.clone(), Arc::new(view));
            stats_by_pool.insert(p.name.clone(), stats);
            pools.insert(p.name.clone(), Arc::new(rt));
        }
        let mut listeners = HashMap::new();
        for l in &config.listeners {
            let tls = match &l.tls {
                Some(t) => {
                    let resolver = Arc::new(SniResolver::new(&t.certs)?);
                    let acceptor = tokio_rustls::TlsAcceptor::from(server_config(resolver.clone())?);
                    Some(TlsRuntime {
                        resolver,
                        acceptor,
                        handshake_timeout: Duration::from_millis(t.handshake_timeout_ms),
                    })
                }
                None => None,
            };
            listeners.insert(
                l.name.clone(),
                Arc::new(ListenerRuntime {
                    name: l.name.clone(),
                    routes: ArcSwap::from_pointee(RouteTable::new(&l.routes)?),
                    tls,
                }),
            );
        }
        let request_id = http::HeaderName::from_bytes(config.forwarding.request_id_header.as_bytes())
            .map_err(|_| ConfigError::Header(config.forwarding.request_id_header.clone()))?;
        let (tx, rx) = mpsc::channel(PASSIVE_QUEUE);
        let shared = Shared {
            listeners,
            pools,
            upstreams: ArcSwap::from_pointee(Upstreams { pools: views }),
            control: Mutex::new(stats_by_pool),
            rate: config
                .rate_limit
                .as_ref()
                .map(|r| RateLimiter::new(r.requests_per_second, r.burst, r.max_clients)),
            limits: config.limits,
            trusted: config.forwarding.trusted_proxies,
            forwarded: config.forwarding.forwarded,
            request_id,
            metrics: Metrics::new(registry),
            health: tx,
            drain: Duration::from_millis(config.drain_timeout_ms),
        };
        Ok((
            Proxy {
                shared: Arc::new(shared),
            },
            rx,
        ))
    }

    /// Serves listener `name` on `socket` (bound by the node) until
    /// `shutdown` completes, then stops accepting, asks open connections to
    /// close gracefully and waits up to the drain timeout for them.
    pub async fn serve(
        &self,
        name: &str,
        socket: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let listener = self
            .shared
            .listeners
            .get(name)
            .cloned()
            .ok_or_else(|| ServeError::UnknownListener(name.to_string()))?;
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut conns = JoinSet::new();
        tokio::pin!(shutdown);
        let slots = self
            .shared
            .limits
            .max_connections
            .map(|n| Arc::new(Semaphore::new(n)));
        loop {
            // At the connection limit, stop accepting until one closes:
            // excess clients queue in the kernel backlog instead of being
            // accepted and starved.
            let permit = match &slots {
                Some(sem) => tokio::select! {
                    _ = &mut shutdown => break,
                    p = sem.clone().acquire_owned() => match p {
                        Ok(p) => Some(p),
                        Err(_) => break,
                    },
                    Some(_) = conns.join_next(), if !conns.is_empty() => continue,
                },
                None => None,
            };
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = socket.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        let shared = self.shared.clone();
                        let listener = listener.clone();
                        let stop = stop_rx.clone();
                        conns.spawn(async move {
                            serve_conn(shared, listener, tcp, peer, stop).await;
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
        let drained = tokio::time::timeout(self.shared.drain, async {
            while conns.join_next().await.is_some() {}
        })
        .await;
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
        for name in sets.keys() {
            if !self.shared.pools.contains_key(name) {
                return Err(ConfigError::NoSuchPool(name.clone()));
            }
        }
        let now = Instant::now();
        let mut control = self.shared.control.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.shared.upstreams.load_full();
        let mut pools = current.pools.clone();
        for (name, backends) in sets {
            let Some(rt) = self.shared.pools.get(&name) else {
                continue;
            };
            let stats = control.entry(name.clone()).or_default();
            let view = PoolView::build(
                &view_spec(rt),
                backends,
                current.pool(&name).map(|v| &**v),
                stats,
                now,
            );
            pools.insert(name, Arc::new(view));
        }
        self.shared.upstreams.store(Arc::new(Upstreams { pools }));
        Ok(())
    }

    /// Swaps a TLS listener's certificates; running connections keep theirs.
    pub fn set_certificates(&self, listener: &str, certs: &[CertConfig]) -> Result<(), ConfigError> {
        let l = self
            .shared
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
        tls.resolver.replace(certs)
    }

    /// Swaps a listener's route table (pools must exist).
    pub fn set_routes(&self, listener: &str, routes: &[RouteRule]) -> Result<(), ConfigError> {
        let l = self
            .shared
            .listeners
            .get(listener)
            .ok_or_else(|| ConfigError::NoSuchListener(listener.to_string()))?;
        for (i, r) in routes.iter().enumerate() {
            if let Some(p) = r.action.pool()
                && !self.shared.pools.contains_key(p)
            {
                return Err(ConfigError::UnknownPool {
                    listener: listener.to_string(),
                    route: r.name.clone().unwrap_or_else(|| i.to_string()),
                    pool: p.to_string(),
                });
            }
        }
        l.routes.store(Arc::new(RouteTable::new(routes)?));
        Ok(())
    }

    /// The current upstream snapshot (for status output and tests).
    pub fn upstreams(&self) -> Arc<Upstreams> {
        self.shared.upstreams.load_full()
    }
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
    shared: Arc<Shared>,
    listener: Arc<ListenerRuntime>,
    tcp: TcpStream,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
) {
    let gauge = shared
        .metrics
        .active_connections
        .get_or_create_owned(&ListenerLabels {
            listener: listener.name.clone(),
        });
    gauge.inc();
    let _gauge = ConnGauge(gauge);
    let local = tcp.local_addr().unwrap_or(peer);
    let _ = tcp.set_nodelay(true);
    match &listener.tls {
        None => {
            let ctx = Arc::new(ConnCtx {
                listener: listener.clone(),
                peer,
                local,
                tls: false,
                stop: stop.clone(),
                forwarding: ConnForwarding::new(peer.ip(), Some(local.ip())),
            });
            run_http(shared, ctx, tcp, stop).await;
        }
        Some(tls) => {
            // Bounded so a client that stalls the handshake (slowloris on
            // TLS) does not pin a task forever.
            match tokio::time::timeout(tls.handshake_timeout, tls.acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let ctx = Arc::new(ConnCtx {
                        listener: listener.clone(),
                        peer,
                        local,
                        tls: true,
                        stop: stop.clone(),
                        forwarding: ConnForwarding::new(peer.ip(), Some(local.ip())),
                    });
                    run_http(shared, ctx, stream, stop).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timeout"),
            }
        }
    }
}

async fn run_http<I>(shared: Arc<Shared>, ctx: Arc<ConnCtx>, io: I, mut stop: watch::Receiver<bool>)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = &shared.limits;
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
    let svc_shared = shared.clone();
    // Boxed: the request future is several KB, and hyper moves it (into
    // the h2 stream task it spawns, into the h1 dispatcher); moving a
    // pointer instead measurably helps HTTP/2 (`labs/bench/l7.sh`).
    let svc = service_fn(move |req| Box::pin(handle(svc_shared.clone(), ctx.clone(), req)));
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
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection closed with error during drain");
            }
        }
    }
}
