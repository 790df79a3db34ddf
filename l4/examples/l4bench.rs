//! Helper for `labs/bench/l4.sh`: runs one piece of the L4 benchmark in the
//! network namespace it is started in (`ip netns exec NS l4bench …`).
//!
//! ```text
//! l4bench node  --kind xdp|xdp-native|nftables|userspace|userspace-buffered --uplink IF --vip IP --port P --backend IP:PORT...
//!     programs the dataplane, prints "ready", runs until stdin closes
//! l4bench serve --name NAME --port P
//!     backend: sends "NAME\n", then reads and discards until EOF
//! l4bench load  --target IP:PORT --mode conn|bulk --secs S --threads T
//!     conn: connect, read the greeting, close, repeat; prints conn/s
//!     bulk: one connection per thread, write 64 KiB blocks; prints Gbit/s
//! ```
//!
//! Measurements only: nothing here asserts a number.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use edge_l4::hosted::HostedUserspace;
use edge_l4::nftables::{NftConfig, NftDataplane};
use edge_l4::userspace::UserspaceConfig;
use edge_l4::xdp::{AttachMode, XdpConfig, XdpDataplane};
use edge_l4::{BackendSpec, Dataplane, L4State, Protocol, SchedulerKind, ServiceKey, ServiceSpec};

type Res<T> = Result<T, String>;

fn arg<'a>(args: &'a [String], name: &str) -> Res<&'a str> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map(String::as_str)
        .ok_or_else(|| format!("missing {name}"))
}

fn all_args<'a>(args: &'a [String], name: &str) -> Vec<&'a str> {
    args.windows(2)
        .filter(|w| w[0] == name)
        .map(|w| w[1].as_str())
        .collect()
}

fn parse<T: std::str::FromStr>(s: &str, what: &str) -> Res<T> {
    s.parse().map_err(|_| format!("bad {what}: {s}"))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("node") => node(&args),
        Some("serve") => serve(&args),
        Some("load") => load(&args),
        _ => Err("usage: l4bench node|serve|load … (see the source)".into()),
    };
    if let Err(e) = result {
        eprintln!("l4bench: {e}");
        std::process::exit(1);
    }
}

fn node(args: &[String]) -> Res<()> {
    let kind = arg(args, "--kind")?;
    let vip: IpAddr = parse(arg(args, "--vip")?, "vip")?;
    let port: u16 = parse(arg(args, "--port")?, "port")?;
    let mut spec = ServiceSpec::new(SchedulerKind::Maglev);
    for b in all_args(args, "--backend") {
        spec = spec.with_backend(parse(b, "backend")?, BackendSpec::active(1));
    }
    let state = L4State::default().with_service(ServiceKey::new(vip, port, Protocol::Tcp), spec);
    let mut dp: Box<dyn Dataplane> = match kind {
        "xdp" | "xdp-native" => Box::new(
            XdpDataplane::new(XdpConfig {
                interfaces: vec![arg(args, "--uplink")?.to_string()],
                mode: if kind == "xdp" {
                    AttachMode::Generic
                } else {
                    AttachMode::Native
                },
                ..XdpConfig::default()
            })
            .map_err(|e| e.to_string())?,
        ),
        "nftables" => Box::new(NftDataplane::new(NftConfig::default())),
        "userspace" => {
            Box::new(HostedUserspace::new(UserspaceConfig::default(), 2).map_err(|e| e.to_string())?)
        }
        "userspace-buffered" => Box::new(
            HostedUserspace::new(
                UserspaceConfig {
                    tcp_copy: edge_l4::userspace::TcpCopy::Buffered,
                    ..UserspaceConfig::default()
                },
                2,
            )
            .map_err(|e| e.to_string())?,
        ),
        other => return Err(format!("unknown kind {other}")),
    };
    dp.apply(&state).map_err(|e| e.to_string())?;
    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    // Run until the script closes our stdin.
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
    if kind == "nftables" {
        let mut nft = NftDataplane::new(NftConfig::default());
        nft.remove().map_err(|e| e.to_string())?;
    }
    drop(dp);
    Ok(())
}

fn serve(args: &[String]) -> Res<()> {
    let name = arg(args, "--name")?.to_string();
    let port: u16 = parse(arg(args, "--port")?, "port")?;
    let listener = TcpListener::bind(("0.0.0.0", port)).map_err(|e| e.to_string())?;
    for conn in listener.incoming() {
        let Ok(mut s) = conn else { continue };
        let greeting = format!("{name}\n");
        std::thread::spawn(move || {
            if s.write_all(greeting.as_bytes()).is_err() {
                return;
            }
            let mut buf = vec![0u8; 64 * 1024];
            while matches!(s.read(&mut buf), Ok(n) if n > 0) {}
        });
    }
    Ok(())
}

fn load(args: &[String]) -> Res<()> {
    let target: SocketAddr = parse(arg(args, "--target")?, "target")?;
    let secs: u64 = parse(arg(args, "--secs")?, "secs")?;
    let threads: usize = parse(arg(args, "--threads")?, "threads")?;
    let mode = arg(args, "--mode")?.to_string();
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let t0 = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (stop, count, errors, mode) = (stop.clone(), count.clone(), errors.clone(), mode.clone());
            std::thread::spawn(move || {
                if mode == "bulk" {
                    bulk(target, &stop, &count, &errors);
                } else {
                    conns(target, &stop, &count, &errors);
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(secs));
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        let _ = w.join();
    }
    let elapsed = t0.elapsed().as_secs_f64();
    let n = count.load(Ordering::Relaxed) as f64;
    let errs = errors.load(Ordering::Relaxed);
    if mode == "bulk" {
        println!("{:.3} Gbit/s errors={errs}", n * 8.0 / elapsed / 1e9);
    } else {
        println!("{:.0} conn/s errors={errs}", n / elapsed);
    }
    Ok(())
}

fn greeting(s: &TcpStream) -> bool {
    let mut line = String::new();
    matches!(BufReader::new(s).read_line(&mut line), Ok(n) if n > 0)
}

fn conns(target: SocketAddr, stop: &AtomicBool, count: &AtomicU64, errors: &AtomicU64) {
    while !stop.load(Ordering::Relaxed) {
        match TcpStream::connect_timeout(&target, Duration::from_secs(2)) {
            Ok(s) => {
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                if greeting(&s) {
                    count.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            Err(_) => {
                errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

fn bulk(target: SocketAddr, stop: &AtomicBool, bytes: &AtomicU64, errors: &AtomicU64) {
    let Ok(mut s) = TcpStream::connect_timeout(&target, Duration::from_secs(2)) else {
        errors.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if !greeting(&s) {
        errors.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let block = vec![0x5au8; 64 * 1024];
    while !stop.load(Ordering::Relaxed) {
        match s.write(&block) {
            Ok(n) => {
                bytes.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(_) => {
                errors.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }
}
