//! Loopback load generator for the L7 proxy: backends, proxy and clients in
//! one process, so numbers are only comparable between runs on the same
//! machine (they measure proxy overhead, not a network).
//!
//! ```text
//! cargo run --release -p edge-l7 --example l7-bench -- --secs 5 --conns 32 --proto both
//! ```
//!
//! For each protocol it drives the backends directly (baseline) and through
//! the proxy, and prints requests/s and latency percentiles.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use edge_l7::body::{ProxyBody, full};
use edge_l7::{
    Action, Backend, Balance, ForwardingConfig, Limits, ListenerConfig, PoolConfig, Proxy, ProxyConfig,
    RouteRule,
};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
struct Args {
    secs: u64,
    conns: usize,
    backends: usize,
    h1: bool,
    h2: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        secs: 5,
        conns: 32,
        backends: 2,
        h1: true,
        h2: true,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--secs" => a.secs = val()?.parse().map_err(|e| format!("--secs: {e}"))?,
            "--conns" => a.conns = val()?.parse().map_err(|e| format!("--conns: {e}"))?,
            "--backends" => a.backends = val()?.parse().map_err(|e| format!("--backends: {e}"))?,
            "--proto" => match val()?.as_str() {
                "h1" => (a.h1, a.h2) = (true, false),
                "h2" => (a.h1, a.h2) = (false, true),
                "both" => (a.h1, a.h2) = (true, true),
                other => return Err(format!("--proto: unknown {other}")),
            },
            "-h" | "--help" => {
                return Err(
                    "usage: l7-bench [--secs N] [--conns N] [--backends N] [--proto h1|h2|both]".into(),
                );
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if a.conns == 0 || a.backends == 0 || a.secs == 0 {
        return Err("--secs, --conns and --backends must be > 0".into());
    }
    Ok(a)
}

async fn spawn_backend() -> std::io::Result<SocketAddr> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let addr = l.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = l.accept().await else { continue };
            tokio::spawn(async move {
                let svc = service_fn(|_req| async {
                    Ok::<_, Infallible>(
                        hyper::Response::new(full(Bytes::from_static(b"ok\n"))) as hyper::Response<ProxyBody>
                    )
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

struct Report {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    lat_us: Vec<u64>,
}

async fn drive(url: String, h2: bool, conns: usize, secs: u64) -> Report {
    let mut b = Client::builder(TokioExecutor::new());
    b.http2_only(h2).pool_max_idle_per_host(conns);
    let client: Client<_, Full<Bytes>> = b.build_http();
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..conns {
        let (client, url, stop) = (client.clone(), url.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                let req = hyper::Request::get(url.as_str()).body(Full::new(Bytes::new()));
                let Ok(req) = req else {
                    errors += 1;
                    continue;
                };
                match client.request(req).await {
                    Ok(resp) if resp.status().is_success() => {
                        if resp.into_body().collect().await.is_ok() {
                            lat.push(t.elapsed().as_micros() as u64);
                        } else {
                            errors += 1;
                        }
                    }
                    _ => errors += 1,
                }
            }
            (lat, errors)
        }));
    }
    tokio::time::sleep(Duration::from_secs(secs)).await;
    stop.store(true, Ordering::Relaxed);
    let mut lat_us = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lat_us.extend(l);
            errors += e;
        }
    }
    lat_us.sort_unstable();
    Report {
        requests: lat_us.len(),
        errors,
        elapsed: start.elapsed(),
        lat_us,
    }
}

fn pct(v: &[u64], p: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn print(label: &str, r: &Report) {
    println!(
        "{label:<22} {:>10.0} req/s  p50 {:>6} us  p99 {:>6} us  max {:>7} us  errors {}",
        r.requests as f64 / r.elapsed.as_secs_f64(),
        pct(&r.lat_us, 0.5),
        pct(&r.lat_us, 0.99),
        r.lat_us.last().copied().unwrap_or(0),
        r.errors
    );
}

#[tokio::main]
async fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(2);
        }
    };
    let mut backends = Vec::new();
    for i in 0..args.backends {
        match spawn_backend().await {
            Ok(addr) => backends.push(Backend::new(format!("b{i}"), addr)),
            Err(e) => {
                eprintln!("backend: {e}");
                std::process::exit(1);
            }
        }
    }
    let mut pool = PoolConfig::new("bench", backends.clone());
    pool.balance = Balance::LeastConnections;
    pool.max_idle_per_backend = args.conns * 2;
    let cfg = ProxyConfig {
        listeners: vec![ListenerConfig {
            name: "bench".into(),
            tls: None,
            routes: vec![RouteRule::new("all", vec![], Action::Pool("bench".into()))],
        }],
        pools: vec![pool],
        limits: Limits::default(),
        forwarding: ForwardingConfig::default(),
        rate_limit: None,
        drain_timeout_ms: 1_000,
    };
    let mut registry = prometheus_client::registry::Registry::default();
    let (proxy, _events) = match Proxy::new(cfg, &mut registry) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("proxy: {e}");
            std::process::exit(1);
        }
    };
    let sock = match TcpListener::bind("127.0.0.1:0").await {
        Ok(s) => s,
        Err(e) => {
            eprintln!("bind: {e}");
            std::process::exit(1);
        }
    };
    let Ok(proxy_addr) = sock.local_addr() else {
        std::process::exit(1);
    };
    tokio::spawn(async move { proxy.serve("bench", sock, std::future::pending()).await });

    println!(
        "l7-bench: {} s per run, {} concurrent requests, {} backends, {} worker threads",
        args.secs,
        args.conns,
        args.backends,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    let direct = format!("http://{}/", backends[0].address);
    let proxied = format!("http://{proxy_addr}/");
    for (enabled, h2, name) in [(args.h1, false, "http/1.1"), (args.h2, true, "h2c")] {
        if !enabled {
            continue;
        }
        print(
            &format!("{name} direct"),
            &drive(direct.clone(), h2, args.conns, args.secs).await,
        );
        print(
            &format!("{name} via proxy"),
            &drive(proxied.clone(), h2, args.conns, args.secs).await,
        );
    }
}
