//! The node's XDP L4 dataplane, run by `edge run` in the two-PoP lab with
//! TCP 9000 switched to `dataplane = "xdp"`:
//!
//! * the program on each ams node's uplink places every client connection
//!   on the backend the shared Maglev table names for its 5-tuple, and
//!   forwards by L2 DSR (the lab gives the backends the VIP on `lo` with
//!   arp_ignore/arp_announce, and the nodes accept_local);
//! * both nodes take part (ECMP with an L4 hash at ams-r1), which their
//!   `/metrics` show;
//! * draining ams-e2 moves its flows to ams-e1 mid-connection, and all 50
//!   long-lived connections keep working: ams-e1 has no state for them but
//!   its Maglev table names the same backend.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use edge_l4::{
    BackendSpec, FlowKey, Protocol, SchedulerKind, ServiceKey, ServiceSpec, ServiceTable, TableSize,
};
use edge_labs::{IpNet, RouteExpect};
use edge_tests::{TopologyLab, lab_ready, repo_root};

const VIP: &str = "203.0.113.10";
const PORT: u16 = 9000;
const CONN_NEW: &str = "edge_l4_xdp_packets_total{verdict=\"conn_new\"} ";

fn metric(t: &TopologyLab, node: &str, line: &str) -> Result<u64, String> {
    let out = t
        .lab
        .exec(node, &["curl", "-s", "http://127.0.0.1:9180/metrics"])
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix(line).map(|v| v.trim().parse::<u64>()))
        .ok_or_else(|| format!("{line} not in {node}'s metrics"))?
        .map_err(|e| e.to_string())
}

fn gateways(t: &TopologyLab, vip: IpNet) -> Result<Vec<String>, String> {
    match t.lab.kernel_route("ams-r1", vip) {
        Ok(Some(r)) => Ok(r.gateways.iter().map(|g| g.to_string()).collect()),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    }
}

/// Reads one line with the stream's read timeout.
fn line(s: &TcpStream) -> Option<String> {
    let mut r = BufReader::new(s);
    let mut got = String::new();
    r.read_line(&mut got).ok().filter(|n| *n > 0)?;
    Some(got.trim_end().to_string())
}

#[test]
fn xdp_dataplane_serves_the_vip_by_dsr_and_keeps_flows_across_a_node_drain() {
    if !lab_ready("l4_node_xdp", &["ip", "vtysh", "bird", "curl", "clang-14"]) {
        return;
    }
    let userspace = "{ protocol = \"tcp\", port = 9000, algorithm = \"maglev\", dataplane = \"userspace\", backend_port = 9000 }";
    let text = std::fs::read_to_string(repo_root().join("labs/two-pop/deployment.toml"))
        .expect("two-pop topology")
        .replace("name = \"two-pop\"", &format!("name = \"xd{}\"", std::process::id() % 100_000))
        .replace(
            userspace,
            "{ protocol = \"tcp\", port = 9000, algorithm = \"maglev\", dataplane = \"xdp\", backend_port = 9000 }",
        );
    assert!(text.contains("dataplane = \"xdp\""));
    let t = TopologyLab::up(&text);
    let vip: IpNet = format!("{VIP}/32").parse().expect("prefix");
    t.lab
        .wait_route("ams-r1", vip, RouteExpect::Ecmp(2), Duration::from_secs(30))
        .expect("anycast ECMP at ams");
    for node in ["ams-e1", "ams-e2"] {
        TopologyLab::wait(
            &format!("the xdp program on {node}"),
            Duration::from_secs(10),
            || metric(&t, node, "edge_l4_xdp_flows "),
        );
    }

    // What the nodes must compute: the Maglev table over ams's backends.
    let pool = &t.deployment.pools["web"];
    let names: BTreeMap<IpAddr, String> = pool
        .backends
        .iter()
        .filter(|b| b.site == "ams")
        .map(|b| (b.address, b.name.clone()))
        .collect();
    let key = ServiceKey::new(VIP.parse().expect("vip"), PORT, Protocol::Tcp);
    let mut spec = ServiceSpec::new(SchedulerKind::Maglev);
    for b in pool.backends.iter().filter(|b| b.site == "ams") {
        spec = spec.with_backend(SocketAddr::new(b.address, PORT), BackendSpec::active(b.weight));
    }
    let table = ServiceTable::build(key, &spec, TableSize::default()).expect("maglev table");

    let client_ns = t.lab.kernel_ns("ams-c1").expect("ns");
    let nt = edge_l4::netns::NetnsThread::spawn(&client_ns).expect("enter the client namespace");
    // The first connection may race the backends' ARP entries on the nodes.
    TopologyLab::wait("a first connection through xdp", Duration::from_secs(10), || {
        nt.run(|| {
            let s = TcpStream::connect_timeout(&(VIP, PORT).into_addr(), Duration::from_secs(1))
                .map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(2)))
                .map_err(|e| e.to_string())?;
            line(&s).ok_or_else(|| "no greeting".to_string())
        })
        .map_err(|e| e.to_string())?
    });
    let conns: Vec<(TcpStream, String)> = nt
        .run(|| {
            (0..50)
                .map(|_| {
                    let s = TcpStream::connect((VIP, PORT)).expect("L4 connect through xdp");
                    s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
                    let greeting = line(&s).expect("the backend greets");
                    (s, greeting)
                })
                .collect()
        })
        .expect("namespace thread");
    let mut per_backend: BTreeMap<String, usize> = BTreeMap::new();
    for (s, greeting) in &conns {
        let flow = FlowKey {
            src: s.local_addr().expect("local addr"),
            dst: s.peer_addr().expect("peer addr"),
            protocol: Protocol::Tcp,
        };
        let want = table.lookup(&flow).expect("a backend");
        assert_eq!(
            greeting,
            &names[&want.ip()],
            "flow {flow:?} must land where the Maglev table says"
        );
        *per_backend.entry(greeting.clone()).or_default() += 1;
    }
    eprintln!("xdp: 50 connections from ams-c1 → {per_backend:?}");
    assert_eq!(per_backend.len(), 2, "both ams backends serve: {per_backend:?}");
    // ECMP spreads flows over both nodes, and each node's program placed
    // some of them (new flows counted by the program itself).
    // (The counters are sampled into /metrics once a second.)
    let new_flows: Vec<u64> = TopologyLab::wait("both nodes to place flows", Duration::from_secs(5), || {
        let n: Vec<u64> = ["ams-e1", "ams-e2"]
            .iter()
            .map(|n| metric(&t, n, CONN_NEW))
            .collect::<Result<_, _>>()?;
        if n.iter().all(|n| *n > 0) && n.iter().sum::<u64>() >= 51 {
            Ok(n)
        } else {
            Err(format!("{n:?}"))
        }
    });
    eprintln!("xdp: new flows placed by ams-e1 / ams-e2: {new_flows:?}");

    let echo = |round: &str| -> usize {
        let mut ok = 0;
        for (i, (c, _)) in conns.iter().enumerate() {
            let mut w = c;
            if w.write_all(format!("{round}-{i}\n").as_bytes()).is_err() {
                continue;
            }
            if line(c).is_some_and(|l| l.ends_with(&format!("{round}-{i}"))) {
                ok += 1;
            }
        }
        ok
    };
    assert_eq!(echo("before"), 50, "all 50 connections work before the drain");

    // Take ams-e2 out of the ECMP route (GSHUT, then withdraw).
    let d0 = Instant::now();
    let out = t.edge("ams-e2", &["drain", "ams-e2"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    TopologyLab::wait(
        "ams-r1 to route the VIP via ams-e1 only",
        Duration::from_secs(10),
        || {
            let g = gateways(&t, vip)?;
            if g == ["198.18.11.2"] {
                Ok(())
            } else {
                Err(format!("{g:?}"))
            }
        },
    );
    eprintln!("drain: ams-e2 out of the ECMP route after {:?}", d0.elapsed());
    std::thread::sleep(t.deployment.bgp.drain + Duration::from_millis(500));
    let survived = echo("after");
    eprintln!("xdp: {survived}/50 long-lived connections survived ams-e2 leaving the ECMP route");
    assert_eq!(
        survived, 50,
        "every long-lived connection survives the node leaving"
    );
    // The moved flows were unknown to ams-e1: it placed them by Maglev.
    TopologyLab::wait(
        "ams-e1 to count the moved flows as new",
        Duration::from_secs(5),
        || {
            let n = metric(&t, "ams-e1", CONN_NEW)?;
            if n > new_flows[0] {
                Ok(())
            } else {
                Err(format!("{n} <= {}", new_flows[0]))
            }
        },
    );
    assert!(t.edge("ams-e2", &["undrain", "ams-e2"]).status.success());
}

trait IntoAddr {
    fn into_addr(self) -> SocketAddr;
}

impl IntoAddr for (&str, u16) {
    fn into_addr(self) -> SocketAddr {
        SocketAddr::new(self.0.parse().expect("address"), self.1)
    }
}
