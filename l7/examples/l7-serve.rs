//! The L7 proxy alone, from an edge-l7 TOML configuration, on a tokio runtime
//! with a chosen number of worker threads. Used by `labs/bench/l7.sh` to show
//! what the runtime shape costs next to `edge run` (which always starts a
//! 2-worker runtime): same proxy code, same configuration, no control plane.
//!
//! ```text
//! cargo run --release -p edge-l7 --example l7-serve -- \
//!     --config l7.toml --listen 127.0.0.1:8080 [--listener NAME] [--workers 0|N]
//! ```
//!
//! `--workers 0` runs a current-thread runtime. Backends come from the
//! pools' `backends` lists and are all considered healthy (no checks).
//! Logs: `RUST_LOG` (default `warn`).

use std::net::SocketAddr;
use std::path::PathBuf;

use edge_l7::{Proxy, ProxyConfig};
use tokio::net::TcpListener;

struct Args {
    config: PathBuf,
    listen: SocketAddr,
    listener: Option<String>,
    workers: usize,
}

fn parse_args() -> Result<Args, String> {
    let (mut config, mut listen, mut listener, mut workers) = (None, None, None, 1usize);
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--config" => config = Some(PathBuf::from(val()?)),
            "--listen" => listen = Some(val()?.parse().map_err(|e| format!("--listen: {e}"))?),
            "--listener" => listener = Some(val()?),
            "--workers" => workers = val()?.parse().map_err(|e| format!("--workers: {e}"))?,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(Args {
        config: config.ok_or("--config is required")?,
        listen: listen.ok_or("--listen is required")?,
        listener,
        workers,
    })
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("l7-serve: {e}");
        std::process::exit(2);
    });
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let text = std::fs::read_to_string(&args.config).unwrap_or_else(|e| {
        eprintln!("l7-serve: {}: {e}", args.config.display());
        std::process::exit(1);
    });
    let cfg: ProxyConfig = toml::from_str(&text).unwrap_or_else(|e| {
        eprintln!("l7-serve: {}: {e}", args.config.display());
        std::process::exit(1);
    });
    let name = args
        .listener
        .clone()
        .or_else(|| cfg.listeners.first().map(|l| l.name.clone()))
        .unwrap_or_else(|| {
            eprintln!("l7-serve: no listener in the configuration");
            std::process::exit(1);
        });
    let rt = if args.workers == 0 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.workers)
            .enable_all()
            .build()
    }
    .unwrap_or_else(|e| {
        eprintln!("l7-serve: runtime: {e}");
        std::process::exit(1);
    });
    rt.block_on(async move {
        let mut registry = prometheus_client::registry::Registry::default();
        let (proxy, mut events) = Proxy::new(cfg, &mut registry).unwrap_or_else(|e| {
            eprintln!("l7-serve: proxy: {e}");
            std::process::exit(1);
        });
        // Passive health events have no consumer here: drain them.
        tokio::spawn(async move { while events.recv().await.is_some() {} });
        let sock = TcpListener::bind(args.listen).await.unwrap_or_else(|e| {
            eprintln!("l7-serve: bind {}: {e}", args.listen);
            std::process::exit(1);
        });
        let shutdown = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        let term = async {
            if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                s.recv().await;
            }
        };
        let stop = async {
            tokio::select! { _ = shutdown => {}, _ = term => {} }
        };
        if let Err(e) = proxy.serve(&name, sock, stop).await {
            eprintln!("l7-serve: serve: {e}");
            std::process::exit(1);
        }
    });
}
