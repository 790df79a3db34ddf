//! Active health checks: TCP connect and HTTP GET, with HAProxy's `inter`,
//! `rise` and `fall` semantics.
//!
//! The rise/fall state machine is pure ([`RiseFall`]); the probes and their
//! timers are the I/O edge. One task per backend of the node's own site,
//! whatever number of pools or services use it.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use edge_topology::{Check, CheckKind, Deployment};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};

/// HAProxy-style hysteresis: a backend goes down after `fall` failures in a
/// row and comes back after `rise` successes in a row. The first result
/// after start decides the initial state at once, so a node that starts
/// with healthy backends does not wait `rise × inter` to serve.
#[derive(Debug, Clone)]
pub struct RiseFall {
    rise: u32,
    fall: u32,
    streak: u32,
    state: Option<bool>,
}

impl RiseFall {
    pub fn new(rise: u32, fall: u32) -> Self {
        RiseFall {
            rise: rise.max(1),
            fall: fall.max(1),
            streak: 0,
            state: None,
        }
    }

    /// Feeds one probe result; returns the new state when it changes.
    pub fn observe(&mut self, ok: bool) -> Option<bool> {
        match self.state {
            None => {
                self.state = Some(ok);
                self.streak = 0;
                Some(ok)
            }
            Some(up) if up == ok => {
                self.streak = 0;
                None
            }
            Some(_) => {
                self.streak += 1;
                let needed = if ok { self.rise } else { self.fall };
                if self.streak >= needed {
                    self.state = Some(ok);
                    self.streak = 0;
                    Some(ok)
                } else {
                    None
                }
            }
        }
    }
}

/// Why a probe failed, for logs and `edge status`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    #[error("connect: {0}")]
    Connect(String),
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("http: {0}")]
    Http(String),
    #[error("status {0} not accepted")]
    Status(u16),
    #[error("body does not contain {0:?}")]
    Body(String),
    #[error("tls: {0}")]
    Tls(String),
}

/// Runs one probe against `addr`.
pub async fn probe(addr: SocketAddr, check: &Check) -> Result<(), ProbeError> {
    match tokio::time::timeout(check.timeout, probe_inner(addr, check)).await {
        Ok(r) => r,
        Err(_) => Err(ProbeError::Timeout(check.timeout)),
    }
}

async fn probe_inner(addr: SocketAddr, check: &Check) -> Result<(), ProbeError> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| ProbeError::Connect(e.to_string()))?;
    match check.kind {
        CheckKind::Tcp => Ok(()),
        CheckKind::Http => http_probe(stream, addr, check).await,
        CheckKind::Https => {
            let tls = tls_connect(stream, addr, check).await?;
            http_probe(tls, addr, check).await
        }
    }
}

/// TLS to a backend for an `https` check. Like HAProxy's `check-ssl` with
/// `verify none`, the certificate is not verified (backends commonly use
/// internal or self-signed certificates and the check is about liveness),
/// but the handshake itself — key exchange, signatures, protocol version
/// (TLS 1.2+) — must succeed. SNI is the check's Host when it is a name.
async fn tls_connect(
    stream: TcpStream,
    addr: SocketAddr,
    check: &Check,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ProbeError> {
    use rustls_pki_types::ServerName;
    let name = check
        .host
        .as_deref()
        .and_then(|h| ServerName::try_from(h.to_string()).ok())
        .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
    tokio_rustls::TlsConnector::from(tls_config()?)
        .connect(name, stream)
        .await
        .map_err(|e| ProbeError::Tls(e.to_string()))
}

fn tls_config() -> Result<std::sync::Arc<rustls::ClientConfig>, ProbeError> {
    use std::sync::{Arc, OnceLock};
    static CONFIG: OnceLock<Result<Arc<rustls::ClientConfig>, String>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let verifier = Arc::new(NoCertificateVerification(provider.clone()));
            let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map_err(|e| e.to_string())?
                .dangerous()
                .with_custom_certificate_verifier(verifier)
                .with_no_client_auth();
            cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
            Ok(Arc::new(cfg))
        })
        .clone()
        .map_err(ProbeError::Tls)
}

/// Accepts any certificate but checks the handshake signatures with the
/// provider's algorithms.
#[derive(Debug)]
struct NoCertificateVerification(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoCertificateVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls_pki_types::CertificateDer<'_>,
        _intermediates: &[rustls_pki_types::CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls_pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

async fn http_probe<S>(stream: S, addr: SocketAddr, check: &Check) -> Result<(), ProbeError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use http_body_util::{BodyExt, Empty};
    use hyper::Request;
    use hyper_util::rt::TokioIo;

    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| ProbeError::Http(e.to_string()))?;
    // The connection future ends when the request is done or dropped.
    tokio::spawn(async move {
        let _ = conn.await;
    });
    let host = check.host.clone().unwrap_or_else(|| addr.to_string());
    let req = Request::get(check.path.as_str())
        .header(hyper::header::HOST, host)
        .header(hyper::header::USER_AGENT, "edge-health-check")
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<bytes::Bytes>::new())
        .map_err(|e| ProbeError::Http(e.to_string()))?;
    let resp = sender
        .send_request(req)
        .await
        .map_err(|e| ProbeError::Http(e.to_string()))?;
    let status = resp.status().as_u16();
    let accepted = if check.expect_status.is_empty() {
        (200..400).contains(&status)
    } else {
        check.expect_status.contains(&status)
    };
    if !accepted {
        return Err(ProbeError::Status(status));
    }
    if let Some(want) = &check.body {
        // Bounded read: a health endpoint that streams forever must not
        // hold the checker; the timeout around the probe covers slowness.
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ProbeError::Http(e.to_string()))?
            .to_bytes();
        let text = String::from_utf8_lossy(&body[..body.len().min(64 * 1024)]);
        if !text.contains(want.as_str()) {
            return Err(ProbeError::Body(want.clone()));
        }
    }
    Ok(())
}

/// A state change of one backend, as seen by this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub backend: String,
    pub up: bool,
    pub reason: String,
}

/// A small deterministic PRNG (xorshift64*) so each checker's jitter differs
/// without a clock or an OS random source in the loop.
struct Jitter(u64);

impl Jitter {
    fn new(seed: &str) -> Self {
        // FNV-1a of the backend name: stable, spreads names apart.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in seed.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Jitter(h | 1)
    }

    /// A fraction in [0, 1).
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The backends this node checks: every backend of its own site in a pool
/// that has a check, once each (the first pool's check wins for a backend
/// listed in several pools).
pub fn targets(dep: &Deployment, node: &str) -> BTreeMap<String, (SocketAddr, Check)> {
    let mut out = BTreeMap::new();
    let Some((site, _)) = dep.node(node) else {
        return out;
    };
    for pool in dep.pools.values() {
        let Some(check) = &pool.check else {
            continue;
        };
        for b in pool.backends.iter().filter(|b| b.site == site.name) {
            let addr = SocketAddr::new(b.address, check.port.unwrap_or(b.port));
            out.entry(b.name.clone()).or_insert((addr, check.clone()));
        }
    }
    out
}

/// Runs the checker for one backend until `stop` turns true, sending each
/// state change on `tx`.
pub async fn run_checker(
    backend: String,
    addr: SocketAddr,
    check: Check,
    tx: mpsc::Sender<Transition>,
    mut stop: watch::Receiver<bool>,
) {
    let mut rf = RiseFall::new(check.rise, check.fall);
    let mut jitter = Jitter::new(&backend);
    // Start at a random phase within one interval so checks of many
    // backends do not fire together.
    let mut delay = check.interval.mul_f64(jitter.next() * 0.5);
    loop {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => return,
        }
        let result = probe(addr, &check).await;
        let ok = result.is_ok();
        if let Some(up) = rf.observe(ok) {
            let reason = match &result {
                Ok(()) => format!("{:?} check passed", check.kind),
                Err(e) => e.to_string(),
            };
            tracing::info!(%backend, %addr, up, %reason, "backend state changed");
            if tx
                .send(Transition {
                    backend: backend.clone(),
                    up,
                    reason,
                })
                .await
                .is_err()
            {
                return;
            }
        }
        // ±10% around `inter`, as HAProxy's `spread-checks` does.
        delay = check.interval.mul_f64(0.9 + 0.2 * jitter.next());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_result_decides_then_rise_and_fall_apply() {
        let mut rf = RiseFall::new(2, 3);
        assert_eq!(rf.observe(true), Some(true));
        assert_eq!(rf.observe(false), None);
        assert_eq!(rf.observe(false), None);
        assert_eq!(rf.observe(true), None, "a success resets the fall streak");
        assert_eq!(rf.observe(false), None);
        assert_eq!(rf.observe(false), None);
        assert_eq!(rf.observe(false), Some(false), "third failure in a row");
        assert_eq!(rf.observe(true), None);
        assert_eq!(rf.observe(true), Some(true), "second success in a row");
        assert_eq!(rf.state, Some(true));
    }

    #[test]
    fn jitter_is_deterministic_per_name_and_in_range() {
        let mut a = Jitter::new("ams-b1");
        let mut b = Jitter::new("ams-b1");
        let mut c = Jitter::new("ams-b2");
        let xs: Vec<f64> = (0..100).map(|_| a.next()).collect();
        let ys: Vec<f64> = (0..100).map(|_| b.next()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs[0], c.next());
        assert!(xs.iter().all(|x| (0.0..1.0).contains(x)));
    }

    fn check(kind: CheckKind) -> Check {
        Check {
            kind,
            path: "/health".into(),
            host: None,
            expect_status: vec![],
            body: Some("ok".into()),
            port: None,
            interval: Duration::from_millis(100),
            timeout: Duration::from_millis(500),
            rise: 1,
            fall: 1,
            init_state: Default::default(),
        }
    }

    async fn http_server(status: u16, body: &'static str) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let resp = format!(
                    "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn http_probe_checks_status_and_body() {
        let good = http_server(200, "all ok").await;
        assert_eq!(probe(good, &check(CheckKind::Http)).await, Ok(()));
        let bad = http_server(503, "ok").await;
        assert_eq!(
            probe(bad, &check(CheckKind::Http)).await,
            Err(ProbeError::Status(503))
        );
        let wrong = http_server(200, "nope").await;
        assert!(matches!(
            probe(wrong, &check(CheckKind::Http)).await,
            Err(ProbeError::Body(_))
        ));
        assert_eq!(probe(good, &check(CheckKind::Tcp)).await, Ok(()));
    }

    #[tokio::test]
    async fn https_probe_completes_a_tls_handshake_and_checks_the_answer() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let cert = rcgen::generate_simple_self_signed(vec!["backend.test".into()]).unwrap();
        let key = rustls_pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let server = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert.cert.der().clone()], key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(server));
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((s, _)) = l.accept().await {
                let Ok(mut tls) = acceptor.accept(s).await else {
                    continue;
                };
                let mut buf = [0u8; 1024];
                let _ = tls.read(&mut buf).await;
                let _ = tls
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    .await;
                let _ = tls.shutdown().await;
            }
        });
        let mut c = check(CheckKind::Https);
        c.host = Some("backend.test".into());
        assert_eq!(probe(addr, &c).await, Ok(()));
        // Plain HTTP against the TLS port fails (no valid HTTP answer).
        assert!(probe(addr, &check(CheckKind::Http)).await.is_err());
        // And TLS against a plain HTTP server fails the handshake.
        let plain = http_server(200, "ok").await;
        assert!(matches!(
            probe(plain, &check(CheckKind::Https)).await,
            Err(ProbeError::Tls(_))
        ));
    }

    #[tokio::test]
    async fn a_closed_port_fails_the_tcp_probe() {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        assert!(matches!(
            probe(addr, &check(CheckKind::Tcp)).await,
            Err(ProbeError::Connect(_))
        ));
    }
}
