//! Benchmark driver for `labs/bench/bgp.sh`: an edge [`Speaker`] that
//! dials one router, waits for the session to be Established and then
//! announces `--count` host routes in one `announce` call.
//!
//! It prints wall-clock timestamps (Unix epoch nanoseconds, the same clock
//! as `date +%s%N` in the script) so the script can time how long the router
//! takes to hold every route:
//!
//! ```text
//! established_ns <t>   session reached Established
//! announce_ns <t>      just before `announce` (the route set is prebuilt)
//! written_ns <t>       every UPDATE has been written to the socket
//! ```
//!
//! Then it keeps the session up for `--linger` seconds (or until killed).
//!
//! ```sh
//! cargo run --release -p edge-bgp --example bench_speaker -- \
//!     --peer 198.18.250.1 --peer-as 65000 --local 198.18.250.2 --local-as 65010 \
//!     --count 10000 --first 198.19.0.0
//! ```

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use edge_bgp::{PeerConfig, Route, Speaker, SpeakerConfig, State};
use ipnet::IpNet;

struct Args {
    peer: IpAddr,
    peer_as: u32,
    local: IpAddr,
    local_as: u32,
    count: u32,
    first: IpAddr,
    timeout: Duration,
    linger: Duration,
}

const USAGE: &str = "usage: bench_speaker --peer IP --peer-as ASN --local IP --local-as ASN \
                     [--count N] [--first IP] [--timeout SECS] [--linger SECS]";

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        peer: IpAddr::V4(Ipv4Addr::new(198, 18, 250, 1)),
        peer_as: 65000,
        local: IpAddr::V4(Ipv4Addr::new(198, 18, 250, 2)),
        local_as: 65010,
        count: 10_000,
        first: IpAddr::V4(Ipv4Addr::new(198, 19, 0, 0)),
        timeout: Duration::from_secs(30),
        linger: Duration::from_secs(600),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let v = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {v}: {e}");
        match flag.as_str() {
            "--peer" => a.peer = v.parse().map_err(|e| bad(&e))?,
            "--peer-as" => a.peer_as = v.parse().map_err(|e| bad(&e))?,
            "--local" => a.local = v.parse().map_err(|e| bad(&e))?,
            "--local-as" => a.local_as = v.parse().map_err(|e| bad(&e))?,
            "--count" => a.count = v.parse().map_err(|e| bad(&e))?,
            "--first" => a.first = v.parse().map_err(|e| bad(&e))?,
            "--timeout" => a.timeout = Duration::from_secs(v.parse().map_err(|e| bad(&e))?),
            "--linger" => a.linger = Duration::from_secs(v.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    Ok(a)
}

/// `count` consecutive host routes (/32 or /128) starting at `first`.
fn host_routes(first: IpAddr, count: u32) -> BTreeSet<Route> {
    (0..count)
        .map(|i| {
            let net = match first {
                IpAddr::V4(a) => IpNet::from(IpAddr::V4(Ipv4Addr::from(u32::from(a).wrapping_add(i)))),
                IpAddr::V6(a) => IpNet::from(IpAddr::V6(Ipv6Addr::from(
                    u128::from(a).wrapping_add(u128::from(i)),
                ))),
            };
            Route::new(net)
        })
        .collect()
}

fn epoch_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    let router_id = match args.local {
        IpAddr::V4(a) => a,
        IpAddr::V6(_) => Ipv4Addr::new(198, 18, 255, 2),
    };
    let mut peer = PeerConfig::new(args.peer, args.peer_as);
    peer.local_address = Some(args.local);
    peer.hold_time = 9;
    peer.connect_retry = Duration::from_millis(200);
    peer.connect_retry_max = Duration::from_secs(1);
    // One family per session, as the product configures its sessions.
    peer.families = if args.peer.is_ipv4() && args.first.is_ipv4() {
        vec![(edge_bgp::wire::AFI_IPV4, edge_bgp::wire::SAFI_UNICAST)]
    } else {
        vec![
            (edge_bgp::wire::AFI_IPV4, edge_bgp::wire::SAFI_UNICAST),
            (edge_bgp::wire::AFI_IPV6, edge_bgp::wire::SAFI_UNICAST),
        ]
    };
    let routes = host_routes(args.first, args.count);
    let speaker = match Speaker::start(SpeakerConfig {
        local_as: args.local_as,
        router_id,
        listen: None,
        peers: vec![peer],
    })
    .await
    {
        Ok(s) => s,
        Err(e) => {
            eprintln!("starting the speaker: {e}");
            return ExitCode::FAILURE;
        }
    };

    let established = |s: &Speaker| s.sessions().iter().any(|x| x.state == State::Established);
    let deadline = Instant::now() + args.timeout;
    while !established(&speaker) {
        if Instant::now() > deadline {
            eprintln!("no Established session within {:?}", args.timeout);
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!("established_ns {}", epoch_ns());

    println!("announce_ns {}", epoch_ns());
    speaker.announce(routes);

    // The driver records the advertised set before it writes the UPDATEs
    // and bumps `updates_out` once they are all written.
    let want = args.count as usize;
    let written = |s: &Speaker| {
        s.sessions()
            .iter()
            .any(|x| x.prefixes_sent >= want && x.updates_out > 0)
    };
    while !written(&speaker) {
        if Instant::now() > deadline + args.timeout {
            eprintln!("routes not written within the timeout");
            return ExitCode::FAILURE;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    println!("written_ns {}", epoch_ns());

    tokio::select! {
        _ = tokio::time::sleep(args.linger) => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    speaker.shutdown().await;
    ExitCode::SUCCESS
}
