//! The default two-PoP lab end to end (real FRR at ams, real BIRD at nyc,
//! four `edge` nodes, four backends, two clients): DNS steering with ECS,
//! PoP failure and heal (BGP and DNS), and an FRR restart. Each scenario
//! prints what it measured.

use std::time::{Duration, Instant};

use edge_labs::{IpNet, RouteExpect};
use edge_tests::{TopologyLab, lab_ready, repo_root};

fn vip() -> IpNet {
    "203.0.113.10/32".parse().expect("prefix")
}

fn dig(t: &TopologyLab, client: &str, extra: &[&str]) -> Result<String, String> {
    let mut argv = vec!["dig", "+tries=1", "+time=1", "@203.0.113.53", "www.edge.example"];
    argv.extend_from_slice(extra);
    let out = t.lab.exec(client, &argv).map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).to_string())
    }
}

fn answer(t: &TopologyLab, client: &str, extra: &[&str]) -> Result<String, String> {
    let text = dig(t, client, extra)?;
    text.lines()
        .find(|l| l.starts_with("www.edge.example.") && l.contains("\tA\t"))
        .and_then(|l| l.split_whitespace().last())
        .map(String::from)
        .ok_or(text)
}

fn backend(t: &TopologyLab, ip: &str, verb: &str) {
    let out = t
        .lab
        .exec(
            "ams-e1",
            &[
                "curl",
                "-s",
                "-m",
                "2",
                "-X",
                "POST",
                &format!("http://{ip}:8080/{verb}"),
            ],
        )
        .expect("curl");
    assert!(out.status.success(), "{verb} {ip}");
}

/// One HTTP request from `client` to the anycast VIP: (node, backend).
fn http(t: &TopologyLab, client: &str) -> Result<(String, String), String> {
    let out = t
        .lab
        .exec(
            client,
            &["curl", "-sS", "-m", "2", "-D", "-", "http://203.0.113.10/"],
        )
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)));
    }
    let node = text
        .lines()
        .find_map(|l| l.strip_prefix("x-edge-node: "))
        .map(|s| s.trim().to_string())
        .ok_or_else(|| text.clone())?;
    let backend = text.lines().last().unwrap_or_default().trim().to_string();
    Ok((node, backend))
}

/// Requests from `client` every 50 ms until `stop`; counts (ok, failed).
fn request_loop(
    t: &TopologyLab,
    client: &'static str,
    stop: &std::sync::atomic::AtomicBool,
) -> (usize, usize) {
    let (mut ok, mut failed) = (0, 0);
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        match http(t, client) {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    (ok, failed)
}

fn gateways(t: &TopologyLab) -> Result<Vec<String>, String> {
    match t.lab.kernel_route("ams-r1", vip()) {
        Ok(Some(r)) => Ok(r.gateways.iter().map(|g| g.to_string()).collect()),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

#[test]
fn two_pop_steering_pop_failure_and_router_restart() {
    if !lab_ready(
        "two_pop",
        &[
            "ip",
            "vtysh",
            "bird",
            "birdc",
            "dig",
            "curl",
            "/usr/lib/frr/bgpd",
            "/usr/lib/frr/zebra",
        ],
    ) {
        return;
    }
    let text = std::fs::read_to_string(repo_root().join("labs/two-pop/deployment.toml"))
        .expect("two-pop topology")
        .replace(
            "name = \"two-pop\"",
            &format!("name = \"tp{}\"", std::process::id() % 100_000),
        );
    let t0 = Instant::now();
    let t = TopologyLab::up(&text);

    // Everything converges: ECMP at ams over both ams nodes.
    t.lab
        .wait_route("ams-r1", vip(), RouteExpect::Ecmp(2), Duration::from_secs(30))
        .expect("anycast ECMP at ams");
    t.lab
        .wait_route("nyc-r1", vip(), RouteExpect::Ecmp(2), Duration::from_secs(30))
        .expect("anycast ECMP at nyc");
    eprintln!("lab converged (ECMP at both PoPs) {:?} after start", t0.elapsed());

    // 1. Steering: each client gets its own PoP; ECS of the other region
    // moves the answer and its scope is echoed.
    // Both PoPs must be seen healthy on the bus before steering is by
    // geography; wait for the answer that proves it.
    let full = TopologyLab::wait(
        "ECS answer from the other region",
        Duration::from_secs(20),
        || {
            let d = dig(&t, "ams-c1", &["+subnet=198.18.2.0/24"])?;
            if d.contains("198.51.100.20") {
                Ok(d)
            } else {
                Err(d)
            }
        },
    );
    eprintln!("DNS steering ready {:?} after start", t0.elapsed());
    let ams = answer(&t, "ams-c1", &[]).expect("dig at ams");
    assert_eq!(ams, "198.51.100.10");
    let nyc = answer(&t, "nyc-c1", &[]).expect("dig at nyc");
    assert_eq!(nyc, "198.51.100.20");
    assert!(full.contains("198.51.100.20"), "{full}");
    assert!(
        full.contains("CLIENT-SUBNET: 198.18.2.0/24/24"),
        "scope echoed: {full}"
    );
    let full = dig(&t, "nyc-c1", &["+subnet=198.18.1.0/24"]).expect("dig");
    assert!(
        full.contains("198.51.100.10") && full.contains("CLIENT-SUBNET: 198.18.1.0/24/24"),
        "{full}"
    );
    eprintln!("steering: ams-c1 → {ams}, nyc-c1 → {nyc}, ECS flips the answer with scope /24");

    // 2. Anycast + ECMP: HTTP to the VIP from each client lands on its own
    // PoP, spread over both of its nodes and both of its backends.
    for (client, site) in [("ams-c1", "ams"), ("nyc-c1", "nyc")] {
        let mut nodes = std::collections::BTreeMap::new();
        let mut backends = std::collections::BTreeMap::new();
        for _ in 0..40 {
            let (n, b) = TopologyLab::wait("an HTTP answer", Duration::from_secs(10), || http(&t, client));
            assert!(
                n.starts_with(site) && b.starts_with(site),
                "{client} reached {n}/{b}"
            );
            *nodes.entry(n).or_insert(0) += 1;
            *backends.entry(b).or_insert(0) += 1;
        }
        eprintln!("HTTP from {client}: nodes {nodes:?}, backends {backends:?}");
        assert_eq!(nodes.len(), 2, "both {site} nodes take requests: {nodes:?}");
        assert_eq!(backends.len(), 2, "both {site} backends serve: {backends:?}");
    }

    // 3. PoP failure: both ams backends fail their checks, while a request
    // loop runs from the ams client.
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, failed) = std::thread::scope(|scope| {
        let looper = scope.spawn(|| request_loop(&t, "ams-c1", &stop));
        std::thread::sleep(Duration::from_millis(300));
        backend(&t, "198.19.1.11", "fail");
        backend(&t, "198.19.1.12", "fail");
        let f0 = Instant::now();
        TopologyLab::wait(
            "ams-r1 to reach the VIP via nyc only",
            Duration::from_secs(10),
            || {
                let g = gateways(&t)?;
                if g == ["198.18.100.2"] {
                    Ok(())
                } else {
                    Err(format!("{g:?}"))
                }
            },
        );
        let bgp_failover = f0.elapsed();
        TopologyLab::wait("DNS at ams to answer nyc", Duration::from_secs(10), || {
            let a = answer(&t, "ams-c1", &[])?;
            if a == "198.51.100.20" { Ok(()) } else { Err(a) }
        });
        let dns_failover = f0.elapsed();
        eprintln!(
            "PoP failure: ams-r1 routes the VIP via nyc after {bgp_failover:?}; DNS at ams answers nyc after {dns_failover:?}"
        );
        assert!(bgp_failover < Duration::from_secs(2), "{bgp_failover:?}");
        assert!(dns_failover < Duration::from_secs(3), "{dns_failover:?}");

        backend(&t, "198.19.1.11", "heal");
        backend(&t, "198.19.1.12", "heal");
        let h0 = Instant::now();
        t.lab
            .wait_route("ams-r1", vip(), RouteExpect::Ecmp(2), Duration::from_secs(10))
            .expect("ECMP back at ams");
        TopologyLab::wait("DNS at ams back to ams", Duration::from_secs(10), || {
            let a = answer(&t, "ams-c1", &[])?;
            if a == "198.51.100.10" { Ok(()) } else { Err(a) }
        });
        eprintln!("heal: routes and DNS back at ams after {:?}", h0.elapsed());
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        looper.join().expect("request loop")
    });
    eprintln!("request loop from ams-c1 through failure and heal: {ok} ok, {failed} failed");
    assert!(ok >= 10, "{ok}");
    // Only requests in flight while the path moved may fail.
    assert!(failed <= 2, "{failed} requests failed");

    // 4. Node drain: drain ams-e1 while 50 long-lived TCP connections (L4,
    // through both nodes) and an HTTP request loop run. GSHUT moves the
    // routers' traffic to ams-e2 before the withdraw; connections that were
    // on ams-e1 reach ams-e2 mid-stream and are handed back to ams-e1
    // (site hand-off), so none breaks and no request fails.
    let client_ns = t.lab.kernel_ns("ams-c1").expect("ns");
    let nt = edge_l4::netns::NetnsThread::spawn(&client_ns).expect("enter the client namespace");
    let conns: Vec<std::net::TcpStream> = nt
        .run(|| {
            (0..50)
                .map(|_| {
                    let s = std::net::TcpStream::connect(("203.0.113.10", 9000)).expect("L4 connect");
                    s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
                    s
                })
                .collect()
        })
        .expect("namespace thread");
    let echo = |conns: &[std::net::TcpStream], round: &str| -> usize {
        use std::io::{BufRead, Write};
        let mut ok = 0;
        for (i, mut c) in conns.iter().enumerate() {
            let line = format!("{round}-{i}\n");
            if c.write_all(line.as_bytes()).is_err() {
                continue;
            }
            let mut r = std::io::BufReader::new(c);
            let mut got = String::new();
            // The first line a backend sends is its name; then the echo.
            while r.read_line(&mut got).is_ok_and(|n| n > 0) {
                if got.trim_end().ends_with(&format!("{round}-{i}")) {
                    ok += 1;
                    break;
                }
                got.clear();
            }
        }
        ok
    };
    assert_eq!(
        echo(&conns, "before"),
        50,
        "all 50 connections work before the drain"
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, failed, survived) = std::thread::scope(|scope| {
        let looper = scope.spawn(|| request_loop(&t, "ams-c1", &stop));
        std::thread::sleep(Duration::from_millis(300));
        let d0 = Instant::now();
        let out = t.edge("ams-e1", &["drain", "ams-e1"]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        TopologyLab::wait(
            "ams-r1 to route the VIP via ams-e2 only",
            Duration::from_secs(10),
            || {
                let g = gateways(&t)?;
                if g == ["198.18.12.2"] {
                    Ok(())
                } else {
                    Err(format!("{g:?}"))
                }
            },
        );
        eprintln!("drain: traffic moved to ams-e2 after {:?}", d0.elapsed());
        // Past the drain time: ams-e1 has withdrawn, not just GSHUT.
        std::thread::sleep(t.deployment.bgp.drain + Duration::from_millis(500));
        let survived = echo(&conns, "after");
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = looper.join().expect("request loop");
        (ok, failed, survived)
    });
    eprintln!(
        "node drain: {survived}/50 long-lived connections survived; request loop {ok} ok, {failed} failed"
    );
    assert_eq!(survived, 50, "every long-lived connection survives the drain");
    assert_eq!(failed, 0, "no request fails during a planned drain");
    assert!(t.edge("ams-e1", &["undrain", "ams-e1"]).status.success());
    t.lab
        .wait_route("ams-r1", vip(), RouteExpect::Ecmp(2), Duration::from_secs(10))
        .expect("ECMP back after undrain");
    drop(conns);

    // 5. FRR at ams restarts; the edge nodes reconnect on their own.
    let procs = t.lab.state().processes.clone();
    let daemons: Vec<_> = procs
        .iter()
        .filter(|p| p.name == "ams-r1/zebra" || p.name == "ams-r1/bgpd")
        .cloned()
        .collect();
    assert_eq!(daemons.len(), 2, "{procs:?}");
    for d in daemons.iter().rev() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &d.pid.to_string()])
            .status();
    }
    TopologyLab::wait("FRR to exit", Duration::from_secs(10), || {
        // The lab spawned them, so they stay zombies until it reaps them.
        let alive: Vec<u32> = daemons
            .iter()
            .map(|d| d.pid)
            .filter(|p| {
                std::fs::read_to_string(format!("/proc/{p}/stat"))
                    .map(|st| !st.contains(") Z "))
                    .unwrap_or(false)
            })
            .collect();
        if alive.is_empty() {
            Ok(())
        } else {
            Err(format!("{alive:?}"))
        }
    });
    let r0 = Instant::now();
    let mut restarted = Vec::new();
    for d in &daemons {
        // Same command line, same namespace; the lab's teardown stops
        // whatever runs in its namespaces.
        let child = std::process::Command::new("ip")
            .args(["netns", "exec", &d.kernel_ns])
            .args(&d.argv)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("restart FRR daemon");
        restarted.push(child);
        std::thread::sleep(Duration::from_millis(300));
    }
    t.lab
        .wait_route("ams-r1", vip(), RouteExpect::Ecmp(2), Duration::from_secs(30))
        .expect("routes back after the FRR restart");
    eprintln!(
        "FRR restart: sessions re-established and ECMP back {:?} after the daemons restarted",
        r0.elapsed()
    );
    eprintln!("two-PoP scenarios took {:?} in all", t0.elapsed());
    // Teardown stops everything in the lab's namespaces; reap our restarts.
    drop(t);
    for mut c in restarted {
        let _ = c.kill();
        let _ = c.wait();
    }
}
