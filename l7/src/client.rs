//! Upstream connections: a connector (TCP with connect timeout, optional
//! TLS) plugged into hyper-util's pooled client, one client per pool.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http::Uri;
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use crate::body::ProxyBody;
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

/// One pool's pooled client: keep-alive connections per backend address
/// (hyper-util keys its pool by scheme and authority).
#[derive(Clone)]
pub struct UpstreamClient {
    pub client: Client<Connector, ProxyBody>,
    pub scheme: &'static str,
    pub protocol: UpstreamProtocol,
}

impl UpstreamClient {
    pub fn new(pool: &PoolConfig) -> Result<Arc<Self>, ConfigError> {
        let connector = Connector::new(pool)?;
        let scheme = if connector.is_tls() { "https" } else { "http" };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_millis(pool.idle_timeout_ms))
            .pool_max_idle_per_host(pool.max_idle_per_backend)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .http2_only(pool.protocol == UpstreamProtocol::Http2)
            // hyper resends only requests it never started writing on a
            // reused connection the backend had just closed: always safe,
            // and it keeps keep-alive races out of passive health.
            .retry_canceled_requests(true)
            .build(connector);
        Ok(Arc::new(UpstreamClient {
            client,
            scheme,
            protocol: pool.protocol,
        }))
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
