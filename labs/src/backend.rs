//! The lab's backend server (`edge lab backend`). It answers with its own name so
//! tests and people can see where a request landed, and its health endpoint
//! can be failed on purpose.
//!
//! * HTTP on `--http` (default 0.0.0.0:8080): `GET /` → `<name>\n`;
//!   `GET /health` → 200 `ok` while healthy, 503 while failed;
//!   `POST /fail` and `POST /heal` flip that switch (so does SIGUSR1/SIGUSR2).
//! * TCP on `--tcp` (default 0.0.0.0:9000): sends `<name>\n`, then echoes
//!   every line it receives prefixed with the name (long-lived connections).
//! * UDP on `--udp` (default 0.0.0.0:9000): answers each datagram with
//!   `<name> <datagram>`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, UdpSocket};

struct Backend {
    name: String,
    healthy: AtomicBool,
    requests: AtomicU64,
}

/// What `edge lab backend` was asked to serve. An address of `None`
/// disables that listener.
#[derive(Debug, Clone)]
pub struct BackendArgs {
    pub name: String,
    pub http: Option<SocketAddr>,
    pub tcp: Option<SocketAddr>,
    pub udp: Option<SocketAddr>,
    /// Start with a failing health endpoint.
    pub unhealthy: bool,
}

/// Serves until SIGTERM or SIGINT. SIGUSR1 fails the health endpoint,
/// SIGUSR2 heals it.
pub async fn run(args: BackendArgs) -> Result<()> {
    if args.name.is_empty() {
        bail!("a backend needs a name");
    }
    let b = Arc::new(Backend {
        name: args.name.clone(),
        healthy: AtomicBool::new(!args.unhealthy),
        requests: AtomicU64::new(0),
    });
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(a) = args.http {
        let l = TcpListener::bind(a)
            .await
            .with_context(|| format!("binding {a}"))?;
        tasks.spawn(serve_http(l, b.clone()));
    }
    if let Some(a) = args.tcp {
        let l = TcpListener::bind(a)
            .await
            .with_context(|| format!("binding {a}"))?;
        tasks.spawn(serve_tcp(l, b.clone()));
    }
    if let Some(a) = args.udp {
        let s = UdpSocket::bind(a).await.with_context(|| format!("binding {a}"))?;
        tasks.spawn(serve_udp(s, b.clone()));
    }
    use tokio::signal::unix::{SignalKind, signal};
    let mut usr1 = signal(SignalKind::user_defined1())?;
    let mut usr2 = signal(SignalKind::user_defined2())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tracing::info!(name = %b.name, ?args.http, ?args.tcp, ?args.udp, "backend ready");
    loop {
        tokio::select! {
            _ = usr1.recv() => b.healthy.store(false, Ordering::SeqCst),
            _ = usr2.recv() => b.healthy.store(true, Ordering::SeqCst),
            _ = term.recv() => return Ok(()),
            _ = int.recv() => return Ok(()),
        }
    }
}

fn reply(code: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = code;
    r
}

async fn handle(b: Arc<Backend>, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    let n = b.requests.fetch_add(1, Ordering::Relaxed) + 1;
    let resp = match (req.method(), req.uri().path()) {
        (&Method::GET, "/health") => {
            if b.healthy.load(Ordering::SeqCst) {
                reply(StatusCode::OK, "ok\n".into())
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, "failed on purpose\n".into())
            }
        }
        (&Method::POST, "/fail") => {
            b.healthy.store(false, Ordering::SeqCst);
            reply(StatusCode::OK, format!("{} now fails its health check\n", b.name))
        }
        (&Method::POST, "/heal") => {
            b.healthy.store(true, Ordering::SeqCst);
            reply(StatusCode::OK, format!("{} is healthy again\n", b.name))
        }
        (&Method::GET, "/stats") => reply(StatusCode::OK, format!("{} requests {n}\n", b.name)),
        _ => reply(StatusCode::OK, format!("{}\n", b.name)),
    };
    Ok(resp)
}

async fn serve_http(l: TcpListener, b: Arc<Backend>) {
    loop {
        let Ok((s, _)) = l.accept().await else { continue };
        let b = b.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| handle(b.clone(), req));
            let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                .serve_connection(TokioIo::new(s), svc)
                .await;
        });
    }
}

async fn serve_tcp(l: TcpListener, b: Arc<Backend>) {
    loop {
        let Ok((s, _)) = l.accept().await else { continue };
        let name = b.name.clone();
        tokio::spawn(async move {
            let (r, mut w) = s.into_split();
            if w.write_all(format!("{name}\n").as_bytes()).await.is_err() {
                return;
            }
            let mut lines = BufReader::new(r).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if w.write_all(format!("{name} {line}\n").as_bytes()).await.is_err() {
                    return;
                }
            }
        });
    }
}

async fn serve_udp(s: UdpSocket, b: Arc<Backend>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let Ok((n, from)) = s.recv_from(&mut buf).await else {
            continue;
        };
        let mut out = format!("{} ", b.name).into_bytes();
        out.extend_from_slice(&buf[..n]);
        let _ = s.send_to(&out, from).await;
    }
}
