//! Shared harness: loopback backends (HTTP/1, h2c, WebSocket echo, gRPC-style
//! trailers, TLS with optional client auth), a running proxy, and a hyper
//! client. Only 127.0.0.1 is used.
#![allow(dead_code)]

use std::collections::HashMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use bytes::Bytes;
use edge_l7::body::{ProxyBody, full};
use edge_l7::*;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use prometheus_client::registry::Registry;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;

pub const LOCAL: &str = "127.0.0.1:0";

/// How a test backend answers.
#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// JSON echo of what it received, with this status.
    Echo(u16),
    /// Echo with 200 after sleeping this many milliseconds.
    Slow(u64),
    /// Headers promising 1000 bytes, then 10 bytes and a broken stream.
    Truncate,
}

/// A backend on 127.0.0.1; `kill` stops the listener and every open
/// connection (they live in a JoinSet owned by the accept task).
pub struct TestBackend {
    pub addr: SocketAddr,
    pub name: String,
    /// TCP connections accepted so far (keep-alive reuse shows as few).
    pub accepted: Arc<AtomicUsize>,
    handle: tokio::task::JoinHandle<()>,
}

impl TestBackend {
    pub fn kill(&self) {
        self.handle.abort();
    }
    pub fn backend(&self) -> Backend {
        Backend::new(self.name.clone(), self.addr)
    }
}

impl Drop for TestBackend {
    fn drop(&mut self) {
        self.handle.abort();
    }
}

pub async fn backend(name: &str) -> TestBackend {
    backend_with(name, Mode::Echo(200), None).await
}

pub async fn backend_status(name: &str, status: u16) -> TestBackend {
    backend_with(name, Mode::Echo(status), None).await
}

/// `tls`: a rustls server config (for TLS/mTLS backends).
pub async fn backend_with(name: &str, mode: Mode, tls: Option<Arc<rustls::ServerConfig>>) -> TestBackend {
    let listener = TcpListener::bind(LOCAL).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let name_arc = Arc::new(name.to_string());
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let handle = tokio::spawn(async move {
        let mut conns = JoinSet::new();
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let name = name_arc.clone();
            let tls = tls.clone();
            conns.spawn(async move {
                let svc = service_fn(move |req| handler(name.clone(), mode, req));
                let builder = auto::Builder::new(TokioExecutor::new());
                match tls {
                    None => {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                            .await;
                    }
                    Some(cfg) => {
                        let Ok(stream) = tokio_rustls::TlsAcceptor::from(cfg).accept(tcp).await else {
                            return;
                        };
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                            .await;
                    }
                }
            });
            while conns.try_join_next().is_some() {}
        }
    });
    TestBackend {
        addr,
        name: name.to_string(),
        accepted,
        handle,
    }
}

async fn handler(
    name: Arc<String>,
    mode: Mode,
    mut req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let is_ws = req
        .headers()
        .get("upgrade")
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if is_ws {
        return Ok(websocket_accept(&name, &mut req));
    }
    if req
        .headers()
        .get("content-type")
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
    {
        return Ok(grpc_reply(&name, req).await);
    }
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let version = format!("{:?}", req.version());
    let authority = req.uri().authority().map(|a| a.to_string());
    let mut headers = serde_json::Map::new();
    for k in req.headers().keys() {
        let joined: Vec<&str> = req
            .headers()
            .get_all(k)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        headers.insert(k.to_string(), joined.join(", ").into());
    }
    let body_len = match req.into_body().collect().await {
        Ok(b) => b.to_bytes().len() as i64,
        Err(_) => -1,
    };
    let status = match mode {
        Mode::Echo(s) => s,
        Mode::Truncate => {
            let mut resp = Response::new(
                Broken::new(Bytes::from_static(b"0123456789"))
                    .map_err(|e| -> edge_l7::body::BoxError { e.into() })
                    .boxed_unsync(),
            );
            resp.headers_mut()
                .insert("content-length", "1000".parse().unwrap());
            return Ok(resp);
        }
        Mode::Slow(ms) => {
            tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
            200
        }
    };
    let json = serde_json::json!({
        "backend": *name,
        "method": method,
        "path": path,
        "version": version,
        "authority": authority,
        "headers": headers,
        "body_len": body_len,
    });
    let mut resp = Response::new(full(json.to_string()));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap();
    resp.headers_mut().insert("x-backend", name.parse().unwrap());
    Ok(resp)
}

/// RFC 6455 §4.2.2 accept key: base64(SHA-1(key + GUID)).
pub fn ws_accept_key(key: &str) -> String {
    let mut data = key.as_bytes().to_vec();
    data.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    let d = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &data);
    base64(d.as_ref())
}

fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn websocket_accept(name: &Arc<String>, req: &mut Request<Incoming>) -> Response<ProxyBody> {
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let on = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(up) = on.await else { return };
        let mut io = TokioIo::new(up);
        // Echo server: read client frames (masked), send them back unmasked.
        loop {
            let Ok(frame) = read_frame(&mut io).await else {
                return;
            };
            let (opcode, payload) = frame;
            if opcode == 0x8 {
                let _ = io.write_all(&encode_frame(0x8, &payload, None)).await;
                return;
            }
            if io.write_all(&encode_frame(opcode, &payload, None)).await.is_err() {
                return;
            }
        }
    });
    let mut resp = Response::new(edge_l7::body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("connection", "Upgrade".parse().unwrap());
    h.insert("sec-websocket-accept", ws_accept_key(&key).parse().unwrap());
    h.insert("x-backend", name.parse().unwrap());
    resp
}

/// Minimal RFC 6455 frame codec (FIN frames, payloads < 64 KiB).
pub fn encode_frame(opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if mask.is_some() { 0x80 } else { 0 };
    if payload.len() < 126 {
        out.push(mask_bit | payload.len() as u8);
    } else {
        out.push(mask_bit | 126);
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

pub async fn read_frame<R: tokio::io::AsyncRead + Unpin>(r: &mut R) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 2];
    r.read_exact(&mut h).await?;
    let opcode = h[0] & 0x0f;
    let masked = h[1] & 0x80 != 0;
    let mut len = u64::from(h[1] & 0x7f);
    if len == 126 {
        let mut l = [0u8; 2];
        r.read_exact(&mut l).await?;
        len = u64::from(u16::from_be_bytes(l));
    } else if len == 127 {
        let mut l = [0u8; 8];
        r.read_exact(&mut l).await?;
        len = u64::from_be_bytes(l);
    }
    let mut mask = [0u8; 4];
    if masked {
        r.read_exact(&mut mask).await?;
    }
    let mut payload = vec![0u8; len as usize];
    r.read_exact(&mut payload).await?;
    if masked {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= mask[i % 4];
        }
    }
    Ok((opcode, payload))
}

/// A body that yields one data frame and then trailers (gRPC style).
pub struct DataThenTrailers {
    data: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl Body for DataThenTrailers {
    type Data = Bytes;
    type Error = Infallible;
    fn poll_frame(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(d) = this.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if let Some(t) = this.trailers.take() {
            return Poll::Ready(Some(Ok(Frame::trailers(t))));
        }
        Poll::Ready(None)
    }
}

/// Yields its data, waits (so headers and data are flushed), then fails:
/// the server aborts the connection mid-body.
pub struct Broken(Option<Bytes>, Option<Pin<Box<tokio::time::Sleep>>>);

impl Broken {
    pub fn new(data: Bytes) -> Self {
        Broken(Some(data), None)
    }
}

impl Body for Broken {
    type Data = Bytes;
    type Error = std::io::Error;
    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, std::io::Error>>> {
        let this = self.get_mut();
        if let Some(d) = this.0.take() {
            this.1 = Some(Box::pin(tokio::time::sleep(std::time::Duration::from_millis(
                100,
            ))));
            return Poll::Ready(Some(Ok(Frame::data(d))));
        }
        if let Some(sleep) = this.1.as_mut()
            && sleep.as_mut().poll(cx).is_pending()
        {
            return Poll::Pending;
        }
        Poll::Ready(Some(Err(std::io::Error::other("backend gave up"))))
    }
}

/// gRPC length-prefixed message framing.
pub fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut b = vec![0u8];
    b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    b.extend_from_slice(msg);
    Bytes::from(b)
}

async fn grpc_reply(name: &Arc<String>, req: Request<Incoming>) -> Response<ProxyBody> {
    let te_ok = req.headers().get("te").is_some_and(|v| v == "trailers");
    let version = req.version();
    let authority = req.uri().authority().map(|a| a.to_string()).unwrap_or_default();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let msg = body.get(5..).unwrap_or_default();
    let reply = format!(
        "hello {} from {} via {version:?} for {authority}",
        String::from_utf8_lossy(msg),
        name
    );
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", if te_ok { "0" } else { "3" }.parse().unwrap());
    trailers.insert("grpc-message", "ok".parse().unwrap());
    let body = DataThenTrailers {
        data: Some(grpc_frame(reply.as_bytes())),
        trailers: Some(trailers),
    };
    let mut resp = Response::new(body.map_err(|e| match e {}).boxed_unsync());
    resp.headers_mut()
        .insert("content-type", "application/grpc".parse().unwrap());
    resp
}

/// A proxy serving all its listeners on fresh loopback ports.
pub struct Running {
    pub proxy: Proxy,
    pub addrs: HashMap<String, SocketAddr>,
    pub events: mpsc::Receiver<PassiveEvent>,
    pub registry: Registry,
    stops: Vec<oneshot::Sender<()>>,
    pub tasks: Vec<tokio::task::JoinHandle<Result<(), ServeError>>>,
}

impl Running {
    pub fn addr(&self, listener: &str) -> SocketAddr {
        self.addrs[listener]
    }
    pub fn url(&self, listener: &str, path: &str) -> String {
        format!("http://{}{}", self.addr(listener), path)
    }
    pub fn metrics(&self) -> String {
        let mut s = String::new();
        prometheus_client::encoding::text::encode(&mut s, &self.registry).unwrap();
        s
    }
    /// Signals shutdown to every listener and waits for them to drain.
    pub async fn shutdown(mut self) {
        for s in self.stops.drain(..) {
            let _ = s.send(());
        }
        for t in self.tasks.drain(..) {
            t.await.unwrap().unwrap();
        }
    }
}

pub async fn start(cfg: ProxyConfig) -> Running {
    let mut registry = Registry::default();
    let (proxy, events) = Proxy::new(cfg.clone(), &mut registry).unwrap();
    let mut addrs = HashMap::new();
    let mut stops = Vec::new();
    let mut tasks = Vec::new();
    for l in &cfg.listeners {
        let sock = TcpListener::bind(LOCAL).await.unwrap();
        addrs.insert(l.name.clone(), sock.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        stops.push(tx);
        let p = proxy.clone();
        let name = l.name.clone();
        tasks.push(tokio::spawn(async move {
            p.serve(&name, sock, async move {
                let _ = rx.await;
            })
            .await
        }));
    }
    Running {
        proxy,
        addrs,
        events,
        registry,
        stops,
        tasks,
    }
}

pub fn config(listeners: Vec<ListenerConfig>, pools: Vec<PoolConfig>) -> ProxyConfig {
    ProxyConfig {
        listeners,
        pools,
        limits: Limits::default(),
        forwarding: ForwardingConfig::default(),
        rate_limit: None,
        drain_timeout_ms: 2_000,
    }
}

pub fn listener(name: &str, routes: Vec<RouteRule>) -> ListenerConfig {
    ListenerConfig {
        name: name.to_string(),
        tls: None,
        routes,
    }
}

pub fn to_pool(name: &str) -> RouteRule {
    RouteRule::new(name, vec![], Action::Pool(name.to_string()))
}

pub fn pool(name: &str, backends: &[&TestBackend]) -> PoolConfig {
    PoolConfig::new(name, backends.iter().map(|b| b.backend()).collect())
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build_http()
}

pub fn h2_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http()
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", String::from_utf8_lossy(&self.body)))
    }
    pub fn backend(&self) -> String {
        self.json()["backend"].as_str().unwrap().to_string()
    }
    pub fn seen_header(&self, name: &str) -> Option<String> {
        self.json()["headers"][name].as_str().map(str::to_string)
    }
}

pub async fn send(c: &TestClient, req: Request<Full<Bytes>>) -> Reply {
    let resp = c.request(req).await.unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

pub async fn get(c: &TestClient, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut b = Request::get(url);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    send(c, b.body(Full::new(Bytes::new())).unwrap()).await
}

/// Whether curl exists; without it the test is skipped with a printed
/// reason, unless `EDGE_LAB=require` demands it.
pub fn curl_available() -> bool {
    let ok = std::path::Path::new("/usr/bin/curl").exists();
    if !ok {
        if std::env::var("EDGE_LAB").as_deref() == Ok("require") {
            panic!("EDGE_LAB=require but /usr/bin/curl is missing");
        }
        eprintln!("skipping: /usr/bin/curl not found");
    }
    ok
}

/// A test PKI: one CA and leaf certificates signed by it.
pub struct Pki {
    pub ca_pem: String,
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub der: Vec<u8>,
}

impl Pki {
    pub fn new() -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "edge test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca_pem: cert.pem(),
            issuer: rcgen::Issuer::new(params, key),
        }
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names.clone()).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, names[0].clone());
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }
}

impl Leaf {
    pub fn cert_config(&self, names: &[&str]) -> CertConfig {
        CertConfig {
            server_names: names.iter().map(|s| s.to_string()).collect(),
            cert: PemSource::Pem(self.cert_pem.clone()),
            key: PemSource::Pem(self.key_pem.clone()),
        }
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

pub fn roots(ca_pem: &str) -> rustls::RootCertStore {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(c.unwrap()).unwrap();
    }
    roots
}

/// A TLS client config trusting `ca_pem`.
pub fn tls_client(ca_pem: &str, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca_pem))
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}
