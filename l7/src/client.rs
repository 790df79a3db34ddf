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
//!
//! Most HTTP/1.1 exchanges (body in memory, no upgrade) do not use hyper's
//! client at all: [`UpstreamClient::send_buffered`] drives the [`crate::h1`]
//! codec from the request's own task over a pooled [`Stream`], one write and
//! usually one read per request, and a body already complete in the read
//! buffer puts the connection back before the response is even returned.
//! hyper's connection (a task per connection, channels per request) serves
//! upgrades and streamed request bodies.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, Method, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::body::{BoxError, ProxyBody};
use crate::config::{PoolConfig, UpstreamProtocol};
use crate::error::ConfigError;
use crate::h1;

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
        Ok(Conn(TokioIo::new(self.connect_stream(addr).await?)))
    }

    /// The same as a plain tokio stream (for the inline HTTP/1.1 client).
    pub async fn connect_stream(&self, addr: SocketAddr) -> Result<Stream, ConnectError> {
        let tcp = tokio::time::timeout(self.timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectError::Timeout(self.timeout))??;
        let _ = tcp.set_nodelay(true);
        match &self.tls {
            None => Ok(Stream::Plain(tcp)),
            Some((connector, name)) => {
                let tls = tokio::time::timeout(self.timeout, connector.connect(name.clone(), tcp))
                    .await
                    .map_err(|_| ConnectError::Timeout(self.timeout))?
                    .map_err(ConnectError::Tls)?;
                Ok(Stream::Tls(Box::new(tls)))
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
            this.connect_addr(SocketAddr::new(ip, port)).await
        })
    }
}

/// A backend connection, clear or TLS, for hyper's client (hyper's I/O
/// traits over [`Stream`]).
pub struct Conn(TokioIo<Stream>);

/// A backend connection as a tokio stream, clear or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Stream::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl Connection for Conn {
    fn connected(&self) -> Connected {
        match self.0.inner() {
            Stream::Tls(t) if t.get_ref().1.alpn_protocol() == Some(b"h2") => {
                Connected::new().negotiated_h2()
            }
            _ => Connected::new(),
        }
    }
}

impl Read for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: ReadBufCursor<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl Write for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
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
/// HTTP/1.1 keeps idle connections per serving thread and backend (the
/// inline client's and hyper's, see the module doc). HTTP/2 keeps one multiplexed connection per backend of its
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
                conns: IdleSet::new(),
                inline: IdleSet::new(),
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
    ) -> Result<(Response<RespBody>, Option<Reuse>), UpstreamError> {
        match &self.inner {
            Inner::Http1(pool) => {
                let (resp, reuse) = pool.send(backend, req).await?;
                Ok((resp.map(RespBody::Hyper), reuse))
            }
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
                let resp = pool.send(backend, self.scheme, req).await?;
                Ok((resp.map(RespBody::Hyper), None))
            }
        }
    }

    /// Whether [`UpstreamClient::send_buffered`] can carry requests: HTTP/1.1
    /// pools.
    pub fn sends_buffered(&self) -> bool {
        matches!(self.inner, Inner::Http1(_))
    }

    /// Sends a request whose body is in memory over HTTP/1.1, driven from
    /// the calling task ([`crate::h1`]). Not for upgrades. The connection
    /// goes back to the pool when the response body has been read to its
    /// end. `now` is a recent clock reading (it dates idle connections).
    pub async fn send_buffered(
        &self,
        backend: SocketAddr,
        req: &Buffered<'_>,
        now: Instant,
    ) -> Result<Response<RespBody>, UpstreamError> {
        match &self.inner {
            Inner::Http1(pool) => pool.exchange(backend, req, now).await,
            Inner::Http2(_) => Err(UpstreamError::Exchange(
                "buffered exchanges are HTTP/1.1 only".into(),
            )),
        }
    }
}

/// A request for [`UpstreamClient::send_buffered`]: borrowed, so that a
/// retry resends it without copying anything.
pub struct Buffered<'a> {
    pub method: &'a Method,
    /// Path and query (origin form).
    pub target: &'a str,
    pub headers: &'a HeaderMap,
    pub body: &'a Bytes,
}

fn build_uri(scheme: &str, authority: &str, pq: &str) -> Result<Uri, UpstreamError> {
    format!("{scheme}://{authority}{pq}")
        .parse::<Uri>()
        .map_err(|e| UpstreamError::Exchange(Box::new(e)))
}

/// Idle connections by serving thread and backend, each list most recently
/// used last with the time each went idle: oldest first, so expiry only
/// ever looks at the front.
struct IdleSet<T>(Mutex<HashMap<IdleKey, IdleList<T>, foldhash::fast::RandomState>>);

type IdleList<T> = VecDeque<(T, Instant)>;

/// Serving thread and backend.
type IdleKey = (std::thread::ThreadId, SocketAddr);

impl<T> IdleSet<T> {
    fn new() -> Self {
        IdleSet(Mutex::new(HashMap::default()))
    }

    fn key(backend: SocketAddr) -> IdleKey {
        thread_local! {
            // `thread::current()` clones a handle each call; the id is all we need.
            static ID: std::thread::ThreadId = std::thread::current().id();
        }
        (ID.with(|id| *id), backend)
    }

    /// The most recently used connection to `backend` idle for less than
    /// `ttl` that passes `live`.
    fn take(&self, backend: SocketAddr, now: Instant, ttl: Duration, live: impl Fn(&T) -> bool) -> Option<T> {
        // Poisoning only means a panic elsewhere mid-update of a plain map.
        let mut conns = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let idle = conns.get_mut(&Self::key(backend))?;
        while let Some((conn, since)) = idle.pop_back() {
            if now.duration_since(since) < ttl && live(&conn) {
                return Some(conn);
            }
        }
        None
    }

    /// Keeps `conn` for reuse. Expired (or `dead`) ones at the front go
    /// first, then the oldest when `max` are kept: constant work per request
    /// however many are idle (a dead one further back is skipped when taken).
    fn put(
        &self,
        backend: SocketAddr,
        conn: T,
        now: Instant,
        ttl: Duration,
        max: usize,
        dead: impl Fn(&T) -> bool,
    ) {
        if max == 0 {
            return;
        }
        let mut conns = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let idle = conns.entry(Self::key(backend)).or_default();
        while idle
            .front()
            .is_some_and(|(c, since)| dead(c) || now.duration_since(*since) >= ttl)
        {
            idle.pop_front();
        }
        if idle.len() >= max {
            idle.pop_front();
        }
        idle.push_back((conn, now));
    }
}

/// Idle HTTP/1.1 connections, by serving thread and backend: hyper's (for
/// upgrades and streamed bodies) and the inline client's.
struct H1Pool {
    connector: Connector,
    idle: Duration,
    max_idle: usize,
    conns: IdleSet<http1::SendRequest<ProxyBody>>,
    inline: IdleSet<H1Conn>,
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
    /// The most recently used live idle connection to `backend`.
    fn take(&self, backend: SocketAddr) -> Option<http1::SendRequest<ProxyBody>> {
        self.conns
            .take(backend, Instant::now(), self.idle, |s| !s.is_closed())
    }

    fn put(&self, backend: SocketAddr, sender: http1::SendRequest<ProxyBody>) {
        if !sender.is_closed() {
            self.conns.put(
                backend,
                sender,
                Instant::now(),
                self.idle,
                self.max_idle,
                http1::SendRequest::is_closed,
            );
        }
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

/// Reads go into at least this much free buffer space.
const READ_SPARE: usize = 1024;
/// Buffer grown by this much when the free space runs low.
const READ_CHUNK: usize = 16 * 1024;
/// A body up to this size is written together with the head (one write).
const COALESCE_BODY: usize = 16 * 1024;

/// An HTTP/1.1 connection of the inline client, with its buffers.
struct H1Conn {
    stream: Stream,
    rbuf: BytesMut,
    wbuf: Vec<u8>,
}

impl H1Conn {
    /// Whether an idle connection can carry a request: nothing unread, and
    /// the backend has not closed it. The check costs no system
    /// call when the socket has not become readable since the last read.
    fn is_live(&self) -> bool {
        if !self.rbuf.is_empty() {
            return false;
        }
        let tcp = match &self.stream {
            Stream::Plain(tcp) => tcp,
            // Under TLS too: an idle connection has nothing to read unless
            // the backend is closing it (a close_notify alert, then EOF), so
            // any byte read here condemns the connection anyway.
            Stream::Tls(tls) => tls.get_ref().0,
        };
        matches!(tcp.try_read(&mut [0u8; 1]), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// Writes the request and reads up to the end of the response head.
    async fn round_trip(&mut self, req: &Buffered<'_>) -> Result<h1::ResponseHead, ExchangeError> {
        self.wbuf.clear();
        h1::encode_request(
            &mut self.wbuf,
            req.method,
            req.target,
            req.headers,
            req.body.len(),
        );
        let separate = req.body.len() > COALESCE_BODY;
        if !separate {
            self.wbuf.extend_from_slice(req.body);
        }
        // Let the other requests that became ready in this turn of the
        // event loop run up to here first, so that their writes to backends
        // leave together: a backend that wakes up to one request goes back
        // to sleep before the next one arrives otherwise, and every wake-up
        // is a cross-CPU interrupt paid by this thread (`sock_def_readable`
        // → `try_to_wake_up`). On `labs/bench/l7.sh` this halved the wake-ups
        // of the origins (29k → 14k in 2 s) and raised requests per CPU-second
        // by 12–19%; at low load it costs one extra poll of the task.
        tokio::task::yield_now().await;
        self.stream
            .write_all(&self.wbuf)
            .await
            .map_err(ExchangeError::Write)?;
        if separate {
            self.stream
                .write_all(req.body)
                .await
                .map_err(ExchangeError::Write)?;
        }
        self.stream.flush().await.map_err(ExchangeError::Write)?;
        let mut received = false;
        loop {
            if let Some(head) = h1::parse_response(&mut self.rbuf, req.method)? {
                return Ok(head);
            }
            if self.rbuf.capacity() - self.rbuf.len() < READ_SPARE {
                self.rbuf.reserve(READ_CHUNK);
            }
            match self.stream.read_buf(&mut self.rbuf).await {
                Ok(0) if !received => return Err(ExchangeError::Closed),
                Ok(0) => return Err(h1::H1Error::Incomplete.into()),
                Ok(_) => received = true,
                Err(e)
                    if !received
                        && matches!(
                            e.kind(),
                            io::ErrorKind::ConnectionReset | io::ErrorKind::ConnectionAborted
                        ) =>
                {
                    return Err(ExchangeError::Closed);
                }
                Err(e) => return Err(ExchangeError::Read(e)),
            }
        }
    }
}

/// A failed inline exchange.
#[derive(Debug, thiserror::Error)]
pub enum ExchangeError {
    #[error("writing the request: {0}")]
    Write(io::Error),
    #[error("reading the response: {0}")]
    Read(io::Error),
    #[error("the backend closed the connection without answering")]
    Closed,
    #[error(transparent)]
    Protocol(#[from] h1::H1Error),
}

impl H1Pool {
    fn take_inline(&self, backend: SocketAddr, now: Instant) -> Option<H1Conn> {
        self.inline.take(backend, now, self.idle, H1Conn::is_live)
    }

    /// `now` may be a little old (the exchange's start): idle expiry needs
    /// no fresh clock reading.
    fn put_inline(&self, backend: SocketAddr, conn: H1Conn, now: Instant) {
        self.inline
            .put(backend, conn, now, self.idle, self.max_idle, |_| false);
    }

    async fn connect_inline(&self, backend: SocketAddr) -> Result<H1Conn, UpstreamError> {
        let stream = self
            .connector
            .connect_stream(backend)
            .await
            .map_err(|e| UpstreamError::Connect {
                timeout: matches!(e, ConnectError::Timeout(_)),
                source: Box::new(e),
            })?;
        Ok(H1Conn {
            stream,
            rbuf: BytesMut::with_capacity(READ_CHUNK),
            wbuf: Vec::with_capacity(1024),
        })
    }

    async fn exchange(
        self: &Arc<Self>,
        backend: SocketAddr,
        req: &Buffered<'_>,
        now: Instant,
    ) -> Result<Response<RespBody>, UpstreamError> {
        loop {
            let (mut conn, reused) = match self.take_inline(backend, now) {
                Some(c) => (c, true),
                // Boxed: the connect future (TLS handshake state included) is
                // large and rare; inline it would enlarge every request's
                // future, which is moved into place per request.
                None => (Box::pin(self.connect_inline(backend)).await?, false),
            };
            match conn.round_trip(req).await {
                Ok(head) => return Ok(self.respond(backend, conn, head, now)),
                // A kept-alive connection the backend closed meanwhile (the
                // keep-alive race): the request goes out again on a new
                // connection if it cannot have been acted on (the write
                // failed) or may be repeated (idempotent), so the race
                // stays out of passive health.
                Err(ExchangeError::Write(_)) if reused => continue,
                Err(ExchangeError::Closed) if reused && crate::proxy::idempotent(req.method) => continue,
                Err(e) => return Err(UpstreamError::Exchange(Box::new(e))),
            }
        }
    }

    /// The response for `head`, its body taken whole from the buffer when it
    /// is all there (the connection is back in the pool at once), else
    /// streamed from the connection.
    fn respond(
        self: &Arc<Self>,
        backend: SocketAddr,
        mut conn: H1Conn,
        head: h1::ResponseHead,
        now: Instant,
    ) -> Response<RespBody> {
        let decoder = h1::Decoder::new(head.framing);
        let body = match decoder.remaining() {
            Some(n) if n <= conn.rbuf.len() as u64 => {
                let bytes = conn.rbuf.split_to(n as usize).freeze();
                if head.keep_alive && conn.rbuf.is_empty() {
                    self.put_inline(backend, conn, now);
                }
                RespBody::Full(Some(bytes))
            }
            _ => RespBody::Inline(InlineBody {
                conn: Some(conn),
                decoder,
                keep_alive: head.keep_alive,
                pool: self.clone(),
                backend,
            }),
        };
        let mut resp = Response::new(body);
        *resp.status_mut() = head.status;
        *resp.version_mut() = head.version;
        *resp.headers_mut() = head.headers;
        resp
    }
}

/// A response body from an upstream: hyper's, or the inline client's.
pub enum RespBody {
    Hyper(Incoming),
    /// Read whole with the head.
    Full(Option<Bytes>),
    Inline(InlineBody),
}

impl http_body::Body for RespBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        match self.get_mut() {
            RespBody::Hyper(b) => Pin::new(b).poll_frame(cx).map_err(BoxError::from),
            RespBody::Full(b) => Poll::Ready(
                b.take()
                    .filter(|b| !b.is_empty())
                    .map(|b| Ok(http_body::Frame::data(b))),
            ),
            RespBody::Inline(b) => b.poll(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RespBody::Hyper(b) => b.is_end_stream(),
            RespBody::Full(b) => b.as_ref().is_none_or(Bytes::is_empty),
            RespBody::Inline(b) => b.decoder.is_done(),
        }
    }

    fn size_hint(&self) -> http_body::SizeHint {
        match self {
            RespBody::Hyper(b) => b.size_hint(),
            RespBody::Full(b) => http_body::SizeHint::with_exact(b.as_ref().map_or(0, |b| b.len() as u64)),
            RespBody::Inline(b) => b
                .decoder
                .remaining()
                .map(http_body::SizeHint::with_exact)
                .unwrap_or_default(),
        }
    }
}

/// A response body read from its connection as it is polled. The connection
/// goes back to the pool when the body ends cleanly; dropped early or
/// broken, it closes.
pub struct InlineBody {
    conn: Option<H1Conn>,
    decoder: h1::Decoder,
    keep_alive: bool,
    pool: Arc<H1Pool>,
    backend: SocketAddr,
}

impl InlineBody {
    fn finish(&mut self) {
        if let Some(c) = self.conn.take()
            && self.keep_alive
            && c.rbuf.is_empty()
        {
            self.pool.put_inline(self.backend, c, Instant::now());
        }
    }

    fn fail(&mut self, e: impl Into<BoxError>) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        self.conn = None;
        Poll::Ready(Some(Err(e.into())))
    }

    fn poll(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<http_body::Frame<Bytes>, BoxError>>> {
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return Poll::Ready(None);
            };
            let frame = match self.decoder.decode(&mut conn.rbuf) {
                Err(e) => return self.fail(e),
                Ok(h1::Event::Data(b)) if b.is_empty() => continue,
                Ok(h1::Event::Data(b)) => http_body::Frame::data(b),
                Ok(h1::Event::Trailers(t)) => http_body::Frame::trailers(t),
                Ok(h1::Event::End) => {
                    self.finish();
                    return Poll::Ready(None);
                }
                Ok(h1::Event::NeedMore) => {
                    if conn.rbuf.capacity() - conn.rbuf.len() < READ_SPARE {
                        conn.rbuf.reserve(READ_CHUNK);
                    }
                    match tokio_util::io::poll_read_buf(Pin::new(&mut conn.stream), cx, &mut conn.rbuf) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(e)) => return self.fail(e),
                        Poll::Ready(Ok(0)) => match self.decoder.eof() {
                            // Close-delimited: the connection is spent.
                            Ok(_) => {
                                self.conn = None;
                                return Poll::Ready(None);
                            }
                            Err(e) => return self.fail(e),
                        },
                        Poll::Ready(Ok(_)) => continue,
                    }
                }
            };
            // The last frame: the connection goes back now, as the server
            // side may not poll again once the body says it has ended.
            if self.decoder.is_done() {
                self.finish();
            }
            return Poll::Ready(Some(Ok(frame)));
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
