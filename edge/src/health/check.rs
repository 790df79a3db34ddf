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
    #[error("https checks need the L7 tier's TLS client, which is not built yet")]
    Unsupported,
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
        CheckKind::Https => Err(ProbeError::Unsupported),
        CheckKind::Http => http_probe(stream, addr, check).await,
    }
}

async fn http_probe(stream: TcpStream, addr: SocketAddr, check: &Check) -> Result<(), ProbeError> {
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
