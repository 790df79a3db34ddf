//! Upstream connections: a connector (TCP with connect timeout, optional
//! TLS), a keep-alive pool of HTTP/1.1 connections and a per-backend
//! multiplexed connection for HTTP/2; one [`UpstreamClient`] per pool.
//!
//! The HTTP/1.1 pool is our own rather than hyper-util's legacy client:
//! requests go out in origin form as received (no absolute URI built and
//! parsed again per request), idle connections are kept per serving thread
//! and backend (the L7 tier runs one single-threaded runtime per core, and a
//! connection's task lives on the thread that opened it), and a connection
//! goes back to the pool when its response body ends ([`Reuse`]), without a
//! task per request waiting for it.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::body::{BoxError, ProxyBody};
use crate::config::{PoolConfig, UpstreamProtocol};
use crate::error::ConfigError;

/// Why a connection could not be set up. Found again in the client error's
/// source chain to tell timeouts from refusals.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect timed out after {0:?}")]
    Timeout(Duration),
    #[error("connect: {0}")]
    Io(#[from] io::Error),
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    #[error("bad upstream URI {0}")]
    Uri(String),
}

#[derive(Clone)]
pub struct Connector {
    timeout: Duration,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Connector {
    pub fn new(pool: &PoolConfig) -> Result<Self, ConfigError> {
        let tls = match &pool.tls {
            Some(t) => {
                let cfg = crate::tls::client_config(t, pool.protocol)?;
                let name = ServerName::try_from(t.server_name.clone())
                    .map_err(|e| ConfigError::Tls(format!("server_name: {e}")))?;
                Some((TlsConnector::from(cfg), name))
            }
            None => None,
        };
        Ok(Connector {
            timeout: Duration::from_millis(pool.connect_timeout_ms),
            tls,
        })
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A connection to `addr` (TCP, then TLS when configured).
    pub async fn connect_addr(&self, addr: SocketAddr) -> Result<Conn, ConnectError> {
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout(self.timeout))??;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Conn::Plain(TokioIo::new(tcp))),
            Some((connector, name)) => {
                let tls = tokio::time::timeout(self.timeout, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| ConnectError::Timeout(self.timeout))?
                    .map_err(ConnectError::Tls)?;
                Ok(Conn::Tls(Box::new(TokioIo::new(tls))))
            }
        }
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = Conn;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Conn, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri.host().ok_or_else(|| ConnectError::Uri(uri.to_string()))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let ip: std::net::IpAddr = host.parse().map_err(|_| ConnectError::Uri(uri.to_string()))?;
            let port = uri.port_u16().ok_or_else(|| ConnectError::Uri(uri.to_string()))?;
            let tcp = tokio::time::timeout(this.timeout, TcpStream::connect((ip, port)))
                .await
                .map_err(|_| ConnectError::Timeout(this.timeout))??;
            let _ = tcp.set_nodelay(true);
            match this.tls {
                None => Ok(Conn::Plain(TokioIo::new(tcp))),
                Some((connector, name)) => {
                    let tls = tokio::time::timeout(this.timeout, connector.connect(name, tcp))
                        .await
                        .map_err(|_| ConnectError::Timeout(this.timeout))?
                        .map_err(ConnectError::Tls)?;
                    Ok(Conn::Tls(Box::new(TokioIo::new(tls))))
                }
            }
        })
    }
}

/// A backend connection, clear or TLS.
pub enum Conn {
    Plain(TokioIo<TcpStream>),
    Tls(Box<TokioIo<TlsStream<TcpStream>>>),
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self {
            Conn::Plain(_) => Connected::new(),
            Conn::Tls(t) => {
                let (_, session) = t.inner().get_ref();
                if session.alpn_protocol() == Some(b"h2") {
                    Connected::new().negotiated_h2()
                } else {
                    Connected::new()
                }
            }
        }
    }
}

impl Read for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl Write for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_flush(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Conn::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// A failed upstream exchange, split by whether the request could have
/// reached the backend (that decides what may be retried).
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("connect: {source}")]
    Connect { timeout: bool, source: BoxError },
    #[error("exchange: {0}")]
    Exchange(BoxError),
}

impl UpstreamError {
    pub fn inner(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        match self {
            UpstreamError::Connect { source, .. } => source.as_ref(),
            UpstreamError::Exchange(e) => e.as_ref(),
        }
    }
}

/// One pool's pooled client.
///
/// HTTP/1.1 uses hyper-util's pool (keyed by backend address, keep-alive,
/// idle expiry). HTTP/2 keeps one multiplexed connection per backend of its
/// own: the request URI can then carry the client's host as `:authority`
/// (gRPC servers and sidecars route on it) while still being sent to the
/// backend this proxy selected.
pub struct UpstreamClient {
    inner: Inner,
    pub scheme: &'static str,
    pub protocol: UpstreamProtocol,
}

enum Inner {
    Http1(Arc<H1Pool>),
    Http2(H2Pool),
}

impl UpstreamClient {
    pub fn new(pool: &PoolConfig) -> Result<Arc<Self>, ConfigError> {
        let connector = Connector::new(pool)?;
        let scheme = if connector.is_tls() { "https" } else { "http" };
        let idle = Duration::from_millis(pool.idle_timeout_ms);
        let inner = match pool.protocol {
            UpstreamProtocol::Http1 => Inner::Http1(Arc::new(H1Pool {
                connector,
                idle,
                max_idle: pool.max_idle_per_backend,
                conns: Mutex::new(HashMap::new()),
            })),
            UpstreamProtocol::Http2 => Inner::Http2(H2Pool {
                connector,
                idle,
                conns: Mutex::new(HashMap::new()),
                gates: Mutex::new(HashMap::new()),
            }),
        };
        Ok(Arc::new(UpstreamClient {
            inner,
            scheme,
            protocol: pool.protocol,
        }))
    }

    /// Sends `req` (whose URI holds only path and query) to `backend`.
    /// `authority` is the client's host, used as `:authority` over HTTP/2.
    /// With HTTP/1.1, the [`Reuse`] gives the connection back to the pool
    /// once the response body has been read to its end.
    pub async fn send(
        &self,
        backend: SocketAddr,
        authority: Option<&str>,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Option<Reuse>), UpstreamError> {
        match &self.inner {
            Inner::Http1(pool) => pool.send(backend, req).await,
            Inner::Http2(pool) => {
                let pq = req
                    .uri()
                    .path_and_query()
                    .map(|p| p.as_str().to_string())
                    .unwrap_or_else(|| "/".to_string());
                let backend_authority = backend.to_string();
                let uri = authority
                    .and_then(|a| build_uri(self.scheme, a, &pq).ok())
                    .map(Ok)
                    .unwrap_or_else(|| build_uri(self.scheme, &backend_authority, &pq))?;
                *req.uri_mut() = uri;
                // :authority replaces Host in HTTP/2 (RFC 9113 §8.3.1).
                req.headers_mut().remove(http::header::HOST);
                Ok((pool.send(backend, self.scheme, req).await?, None))
            }
        }
    }
}

fn build_uri(scheme: &str, authority: &str, pq: &str) -> Result<Uri, UpstreamError> {
    format!("{scheme}://{authority}{pq}")
        .parse::<Uri>()
        .map_err(|e| UpstreamError::Exchange(Box::new(e)))
}

/// Idle connections (most recently used last) with the time each went idle:
/// oldest first, so expiry only ever looks at the front.
type IdleConns = VecDeque<(http1::SendRequest<ProxyBody>, Instant)>;

/// Idle HTTP/1.1 connections, by serving thread and backend.
struct H1Pool {
    connector: Connector,
    idle: Duration,
    max_idle: usize,
    conns: Mutex<HashMap<(std::thread::ThreadId, SocketAddr), IdleConns>>,
}

/// A pooled HTTP/1.1 connection lent to one exchange. [`Reuse::finish`]
/// gives it back once the response has been read to its end; dropped
/// otherwise, the connection closes (its state is unknown).
pub struct Reuse {
    pool: Arc<H1Pool>,
    backend: SocketAddr,
    sender: http1::SendRequest<ProxyBody>,
}

impl Reuse {
    pub fn finish(self) {
        self.pool.put(self.backend, self.sender);
    }
}

impl H1Pool {
    fn key(backend: SocketAddr) -> (std::thread::ThreadId, SocketAddr) {
        thread_local! {
            // `thread::current()` clones a handle each call; the id is all we need.
            static ID: std::thread::ThreadId = std::thread::current().id();
        }
        (ID.with(|id| *id), backend)
    }

    /// The most recently used live idle connection to `backend`.
    fn take(&self, backend: SocketAddr) -> Option<http1::SendRequest<ProxyBody>> {
        let now = Instant::now();
        // Poisoning only means a panic elsewhere mid-update of a plain map.
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let idle = conns.get_mut(&Self::key(backend))?;
        while let Some((sender, since)) = idle.pop_back() {
            if !sender.is_closed() && now.duration_since(since) < self.idle {
                return Some(sender);
            }
        }
        None
    }

    fn put(&self, backend: SocketAddr, sender: http1::SendRequest<ProxyBody>) {
        if sender.is_closed() || self.max_idle == 0 {
            return;
        }
        let now = Instant::now();
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let idle = conns.entry(Self::key(backend)).or_default();
        // Expired (or closed) ones at the front go first, then the oldest
        // when full: constant work per request however many are idle (a
        // closed one further back is skipped when taken).
        while idle
            .front()
            .is_some_and(|(s, since)| s.is_closed() || now.duration_since(*since) >= self.idle)
        {
            idle.pop_front();
        }
        if idle.len() >= self.max_idle {
            idle.pop_front();
        }
        idle.push_back((sender, now));
    }

    async fn connect(&self, backend: SocketAddr) -> Result<http1::SendRequest<ProxyBody>, UpstreamError> {
        let io = self
            .connector
            .connect_addr(backend)
            .await
            .map_err(|e| UpstreamError::Connect {
                timeout: matches!(e, ConnectError::Timeout(_)),
                source: Box::new(e),
            })?;
        let (sender, conn) =
            http1::Builder::new()
                .handshake(io)
                .await
                .map_err(|e| UpstreamError::Connect {
                    timeout: false,
                    source: Box::new(e),
                })?;
        tokio::spawn(async move {
            // Upgrades (WebSocket) take the connection over after a 101.
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!(%backend, error = %e, "upstream connection ended");
            }
        });
        Ok(sender)
    }

    async fn send(
        self: &Arc<Self>,
        backend: SocketAddr,
        mut req: Request<ProxyBody>,
    ) -> Result<(Response<Incoming>, Option<Reuse>), UpstreamError> {
        // A reused connection the backend has just closed fails before the
        // request is written; hyper then hands the request back and it goes
        // out on a new connection (always safe: it never left). This keeps
        // keep-alive races out of passive health, as hyper-util's
        // `retry_canceled_requests` did.
        loop {
            let (mut sender, reused) = match self.take(backend) {
                Some(s) => (s, true),
                None => (self.connect(backend).await?, false),
            };
            if sender.ready().await.is_err() {
                if reused {
                    continue;
                }
                return Err(UpstreamError::Connect {
                    timeout: false,
                    source: "the new connection closed at once".into(),
                });
            }
            match sender.try_send_request(req).await {
                Ok(resp) => {
                    let reuse = Reuse {
                        pool: self.clone(),
                        backend,
                        sender,
                    };
                    return Ok((resp, Some(reuse)));
                }
                Err(mut e) => match e.take_message() {
                    Some(back) if reused => req = back,
                    _ => return Err(UpstreamError::Exchange(Box::new(e.into_error()))),
                },
            }
        }
    }
}

struct H2Slot {
    sender: http2::SendRequest<ProxyBody>,
    last_used: Instant,
}

/// One HTTP/2 connection per backend, shared by all requests to it.
struct H2Pool {
    connector: Connector,
    idle: Duration,
    conns: Mutex<HashMap<SocketAddr, H2Slot>>,
    /// Per-backend connect gates: a burst of first requests opens one
    /// connection, not one each.
    gates: Mutex<HashMap<SocketAddr, Arc<tokio::sync::Mutex<()>>>>,
}

impl H2Pool {
    /// A live sender for `addr`. Also drops connections idle for longer
    /// than the idle timeout (their task ends once the sender is gone).
    fn cached(&self, addr: SocketAddr) -> Option<http2::SendRequest<ProxyBody>> {
        let now = Instant::now();
        // Poisoning only means a panic elsewhere mid-update of a plain map.
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.retain(|_, s| !s.sender.is_closed() && now.duration_since(s.last_used) < self.idle);
        let slot = conns.get_mut(&addr)?;
        slot.last_used = now;
        Some(slot.sender.clone())
    }

    async fn sender(
        &self,
        addr: SocketAddr,
        scheme: &str,
    ) -> Result<http2::SendRequest<ProxyBody>, UpstreamError> {
        if let Some(s) = self.cached(addr) {
            return Ok(s);
        }
        let gate = self
            .gates
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(addr)
            .or_default()
            .clone();
        let _held = gate.lock().await;
        if let Some(s) = self.cached(addr) {
            return Ok(s);
        }
        let uri = build_uri(scheme, &addr.to_string(), "/")?;
        let io = tower_service::Service::call(&mut self.connector.clone(), uri)
            .await
            .map_err(|e| UpstreamError::Connect {
                timeout: matches!(e, ConnectError::Timeout(_)),
                source: Box::new(e),
            })?;
        let (sender, conn) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .handshake(io)
            .await
            .map_err(|e| UpstreamError::Connect {
                timeout: false,
                source: Box::new(e),
            })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "h2 upstream connection ended");
            }
        });
        self.conns.lock().unwrap_or_else(|e| e.into_inner()).insert(
            addr,
            H2Slot {
                sender: sender.clone(),
                last_used: Instant::now(),
            },
        );
        Ok(sender)
    }

    async fn send(
        &self,
        addr: SocketAddr,
        scheme: &str,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, UpstreamError> {
        let mut sender = self.sender(addr, scheme).await?;
        sender
            .ready()
            .await
            .map_err(|e| UpstreamError::Exchange(Box::new(e)))?;
        sender
            .send_request(req)
            .await
            .map_err(|e| UpstreamError::Exchange(Box::new(e)))
    }
}

/// Walks an error's source chain for a [`ConnectError::Timeout`].
pub fn is_connect_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(ConnectError::Timeout(_)) = e.downcast_ref::<ConnectError>() {
            return true;
        }
        cur = e.source();
    }
    false
}
