//! Benchmark server for `labs/bench/dns.sh`: edge's GSLB DNS server exactly
//! as `edge run` builds it (`edge/src/dns.rs`: same topology `[dns]` section,
//! GeoIP database, `DnsOptions`, metrics registry, a 2-worker tokio runtime,
//! one UDP socket and one TCP listener on the DNS VIP), with two differences:
//!
//! * response rate limiting is off (`edge run` always enables RRL at
//!   50 responses/s per client /24, and the topology cannot change that, so a
//!   load generator on one address would measure the limiter);
//! * the view has every site and VIP of the topology up, instead of waiting
//!   for health reports (a benchmark wants both GSLB candidates present so the
//!   geo filter and ECS really decide every answer).
//!
//! ```sh
//! cargo run --release -p edge-dns --example bench_server -- \
//!     --config topo.toml --listen 127.0.0.71:5301 [--workers 2] [--rrl]
//! ```
//! `--workers` sets the tokio worker threads (2, as in `edge run`, by default);
//! `--rrl` turns the default rate limiter back on; `--udp-loops` overrides
//! `DnsOptions::udp_loops` (receive loops per UDP socket), `--udp-batch` sets
//! `DnsOptions::udp_batch` (datagrams per recvmmsg/sendmmsg) and
//! `--udp-in-runtime` clears `DnsOptions::udp_threads` (the loops run as
//! tasks of the tokio runtime instead of on threads of their own).
//! Runs until SIGINT/SIGTERM.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use edge_dns::{DnsOptions, DnsServer, DnsView, GeoDb, RrlConfig, SiteState};

fn usage() -> ExitCode {
    eprintln!(
        "usage: bench_server --config TOPOLOGY.toml --listen IP:PORT [--workers N] [--rrl] [--udp-loops N] [--udp-batch N] [--udp-in-runtime]"
    );
    ExitCode::from(2)
}

/// Every site up and serving every VIP it carries.
fn all_up(dep: &edge_topology::Deployment) -> DnsView {
    let mut view = DnsView::default();
    for site in dep.sites.keys() {
        let vip_up = dep.vips_of_site(site).map(|v| (v.name.clone(), true)).collect();
        view.sites.insert(
            site.clone(),
            SiteState {
                up: true,
                vip_up,
                ..SiteState::default()
            },
        );
    }
    view
}

/// What the command line changes in `DnsOptions`.
#[derive(Default)]
struct Tuning {
    udp_loops: Option<usize>,
    udp_batch: Option<usize>,
    udp_in_runtime: bool,
}

async fn serve(
    config: PathBuf,
    listen: SocketAddr,
    rrl: bool,
    tuning: Tuning,
) -> Result<(), Box<dyn std::error::Error>> {
    let dep = edge_topology::load(&config)?;
    // Relative paths in the topology (GeoIP) are relative to its file, as in `edge run`.
    let base = config.parent().unwrap_or(Path::new("."));
    let geo = GeoDb::for_deployment(&dep, base)?;
    if geo.is_none() {
        return Err("the topology names no GeoIP database: geo steering would not run".into());
    }
    let mut options = DnsOptions::default();
    if let Some(n) = tuning.udp_loops {
        options.udp_loops = n;
    }
    if let Some(n) = tuning.udp_batch {
        options.udp_batch = n;
    }
    options.udp_threads = !tuning.udp_in_runtime;
    if !rrl {
        options.rrl = RrlConfig {
            responses_per_second: 0,
            ..RrlConfig::default()
        };
    }
    let mut registry = prometheus_client::registry::Registry::with_prefix("edge");
    let mut server = DnsServer::new(&dep, geo, all_up(&dep), options, Some(&mut registry))?;
    server.serve_udp(tokio::net::UdpSocket::bind(listen).await?);
    server.serve_tcp(tokio::net::TcpListener::bind(listen).await?);
    eprintln!(
        "bench_server: serving {} on {listen} (rrl {})",
        config.display(),
        if rrl { "on" } else { "off" }
    );

    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    server.shutdown().await?;
    Ok(())
}

fn main() -> ExitCode {
    let (mut config, mut listen, mut rrl, mut workers) = (None, None, false, 2);
    let mut tuning = Tuning::default();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--config" => config = args.next().map(PathBuf::from),
            "--listen" => listen = args.next().and_then(|s| s.parse::<SocketAddr>().ok()),
            "--rrl" => rrl = true,
            "--udp-loops" => match args.next().and_then(|s| s.parse::<usize>().ok()) {
                Some(n) => tuning.udp_loops = Some(n),
                None => return usage(),
            },
            "--udp-batch" => match args.next().and_then(|s| s.parse::<usize>().ok()) {
                Some(n) if n > 0 => tuning.udp_batch = Some(n),
                _ => return usage(),
            },
            "--udp-in-runtime" => tuning.udp_in_runtime = true,
            "--workers" => match args.next().and_then(|s| s.parse::<usize>().ok()) {
                Some(n) if n > 0 => workers = n,
                _ => return usage(),
            },
            _ => return usage(),
        }
    }
    let (Some(config), Some(listen)) = (config, listen) else {
        return usage();
    };
    // The same runtime shape as `edge run` unless --workers says otherwise.
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("bench_server: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(serve(config, listen, rrl, tuning)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench_server: {e}");
            ExitCode::FAILURE
        }
    }
}
