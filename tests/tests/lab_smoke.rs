//! Smoke test of the lab harness (`edge-labs`): an FRR router and a BIRD
//! router in two namespaces peer over one veth (eBGP, IPv4 and IPv6), each
//! originates a prefix, and each must see the other's prefix in its BGP
//! RIB and in its kernel table. Then the lab is torn down and nothing may
//! be left: no namespace with the lab prefix, no process it started.
//!
//! ```text
//!   edge-<lab>-r1                         edge-<lab>-r2
//!   FRR AS65001   r1-r2 ========= r2-r1   BIRD AS65002
//!   198.18.0.1/30                         198.18.0.2/30
//!   2001:db8:0:1::1/64                    2001:db8:0:1::2/64
//!   originates 198.51.100.0/24            originates 203.0.113.0/24
//!              2001:db8:fffe::/48                    2001:db8:ffff::/48
//! ```
//!
//! Needs root and FRR/BIRD; skips otherwise (fails under EDGE_LAB=require).

use std::net::IpAddr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use edge_labs::{
    BridgePort, BridgeSpec, Endpoint, IpNet, Lab, LabSpec, LinkSpec, NamespaceSpec, NeighborSpec,
    ProcessSpec, RouteExpect, RouteSpec, RouterKind, RouterSpec, Timers,
};

const TOOLS: &[&str] = &[
    "ip",
    "vtysh",
    "bird",
    "birdc",
    "/usr/lib/frr/bgpd",
    "/usr/lib/frr/zebra",
];

/// BGP 1/3 s timers converge in ~2–3 s on this machine; 20 s leaves room
/// for a loaded CI host while keeping the test far below 30 s.
const CONVERGE: Duration = Duration::from_secs(20);

fn net(s: &str) -> IpNet {
    s.parse().expect("test prefix")
}

fn ip(s: &str) -> IpAddr {
    s.parse().expect("test address")
}

/// Unique per test process so parallel runs (other engineers, CI retries)
/// never share namespaces: `smoke<pid>` and `panic<pid>`.
fn lab_name(base: &str) -> String {
    format!("{base}{}", std::process::id())
}

fn spec(name: &str) -> LabSpec {
    two_routers(name, RouterKind::Frr, RouterKind::Bird)
}

/// r1 (AS65001, originates 198.51.100.0/24 + 2001:db8:fffe::/48) and r2
/// (AS65002, originates 203.0.113.0/24 + 2001:db8:ffff::/48) on one veth.
/// Routers are named after their kind ("frr", "bird", "gobgp").
fn two_routers(name: &str, k1: RouterKind, k2: RouterKind) -> LabSpec {
    let ns = |n: &str| NamespaceSpec {
        name: n.into(),
        forwarding: true,
        multipath_hash_l4: true,
        loopback: vec![],
    };
    let mut spec = LabSpec::new(name);
    spec.namespaces = vec![ns("r1"), ns("r2")];
    spec.links = vec![LinkSpec {
        a: Endpoint {
            namespace: "r1".into(),
            ifname: "r1-r2".into(),
            addresses: vec![net("198.18.0.1/30"), net("2001:db8:0:1::1/64")],
        },
        b: Endpoint {
            namespace: "r2".into(),
            ifname: "r2-r1".into(),
            addresses: vec![net("198.18.0.2/30"), net("2001:db8:0:1::2/64")],
        },
    }];
    let neighbor = |addr: &str, asn: u32, description: &str| NeighborSpec {
        address: ip(addr),
        asn,
        description: description.into(),
        password: None,
        ttl_security: false,
    };
    let kind_name = |k: RouterKind| match k {
        RouterKind::Frr => "frr",
        RouterKind::Bird => "bird",
        RouterKind::Gobgp => "gobgp",
    };
    spec.routers = vec![
        RouterSpec {
            name: kind_name(k1).into(),
            namespace: "r1".into(),
            kind: k1,
            asn: 65001,
            router_id: "198.18.0.1".parse().expect("router id"),
            neighbors: vec![
                neighbor("198.18.0.2", 65002, "r2 v4"),
                neighbor("2001:db8:0:1::2", 65002, "r2 v6"),
            ],
            originate: vec![net("198.51.100.0/24"), net("2001:db8:fffe::/48")],
            multipath: true,
            timers: Timers::default(),
            install_routes: None,
        },
        RouterSpec {
            name: kind_name(k2).into(),
            namespace: "r2".into(),
            kind: k2,
            asn: 65002,
            router_id: "198.18.0.2".parse().expect("router id"),
            neighbors: vec![
                neighbor("198.18.0.1", 65001, "r1 v4"),
                neighbor("2001:db8:0:1::1", 65001, "r1 v6"),
            ],
            originate: vec![net("203.0.113.0/24"), net("2001:db8:ffff::/48")],
            multipath: true,
            timers: Timers::default(),
            install_routes: None,
        },
    ];
    spec
}

/// Namespaces currently on the machine whose name starts with `prefix`.
fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns list");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect()
}

/// A PID counts as gone when `/proc/PID` is absent or a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st != "Z"))
        })
        .unwrap_or(false)
}

fn assert_nothing_left(lab: &str, pids: &[u32]) {
    let prefix = edge_labs::lab_prefix(lab);
    let left = namespaces_with(&prefix);
    assert!(left.is_empty(), "namespaces left behind: {left:?}");
    let alive: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
    assert!(alive.is_empty(), "lab processes still alive: {alive:?}");
}

/// Polls the FRR RIB until `prefix` has a best path.
fn wait_frr_rib(lab: &Lab, af: &str, prefix: &str) -> serde_json::Value {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let v = lab
            .vtysh_json("frr", &format!("show bgp {af} unicast {prefix}"))
            .expect("vtysh json");
        let has_best = v["paths"].as_array().is_some_and(|paths| {
            paths
                .iter()
                .any(|p| p["bestpath"]["overall"].as_bool() == Some(true))
        });
        if has_best {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "FRR has no best path for {prefix} after {CONVERGE:?}: {v}\n{:?}",
            lab.router_routes("frr", None)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Polls BIRD until `prefix` is in its table as a BGP route.
fn wait_bird_rib(lab: &Lab, prefix: &str) -> String {
    let deadline = Instant::now() + CONVERGE;
    loop {
        let text = lab.router_routes("bird", Some(net(prefix))).expect("birdc").bgp;
        if text.contains(prefix) && text.contains("BGP.as_path: 65001") {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "BIRD has no BGP route for {prefix} after {CONVERGE:?}:\n{text}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn frr_and_bird_exchange_v4_and_v6_routes() {
    if !edge_tests::lab_ready("lab_smoke", TOOLS) {
        return;
    }
    let t0 = Instant::now();
    let name = lab_name("smoke");
    let workdir = tempfile::tempdir().expect("workdir");
    let lab = Lab::up(&spec(&name), workdir.path()).expect("lab up");
    let pids = lab.pids();
    // zebra, bgpd, bird.
    assert_eq!(pids.len(), 3, "{:?}", lab.state().processes);
    assert_eq!(
        namespaces_with(&edge_labs::lab_prefix(&name)).len(),
        2,
        "both namespaces exist with the lab prefix"
    );

    // Status from the state file, as `edge lab status` would read it.
    let status = Lab::status(workdir.path()).expect("status");
    assert!(status.healthy(), "{status:?}");

    // BIRD → FRR: in FRR's RIB (vtysh json) and FRR's kernel table (zebra).
    let v4 = wait_frr_rib(&lab, "ipv4", "203.0.113.0/24");
    assert!(
        v4["paths"][0]["aspath"]["string"]
            .as_str()
            .is_some_and(|s| s.contains("65002")),
        "{v4}"
    );
    wait_frr_rib(&lab, "ipv6", "2001:db8:ffff::/48");
    let k4 = lab
        .wait_route("r1", net("203.0.113.0/24"), RouteExpect::Ecmp(1), CONVERGE)
        .expect("v4 route in r1 kernel")
        .expect("present");
    assert_eq!(k4.gateways, vec![ip("198.18.0.2")], "{}", k4.raw);
    let k6 = lab
        .wait_route("r1", net("2001:db8:ffff::/48"), RouteExpect::Present, CONVERGE)
        .expect("v6 route in r1 kernel")
        .expect("present");
    assert!(k6.raw.contains("r1-r2"), "{}", k6.raw);

    // FRR → BIRD: in BIRD's table and in r2's kernel table.
    wait_bird_rib(&lab, "198.51.100.0/24");
    wait_bird_rib(&lab, "2001:db8:fffe::/48");
    let k4 = lab
        .wait_route("r2", net("198.51.100.0/24"), RouteExpect::Present, CONVERGE)
        .expect("v4 route in r2 kernel")
        .expect("present");
    assert_eq!(k4.gateways, vec![ip("198.18.0.1")], "{}", k4.raw);
    lab.wait_route("r2", net("2001:db8:fffe::/48"), RouteExpect::Present, CONVERGE)
        .expect("v6 route in r2 kernel");

    // The text view shows both BGP and kernel tables.
    let routes = lab
        .router_routes("frr", Some(net("203.0.113.0/24")))
        .expect("router_routes");
    assert!(routes.bgp.contains("203.0.113.0/24"), "{routes:?}");
    assert!(routes.kernel_v4.contains("198.18.0.2"), "{routes:?}");

    // A prefix nobody originates is absent, and waiting for it says so.
    lab.wait_route(
        "r1",
        net("203.0.113.128/25"),
        RouteExpect::Absent,
        Duration::from_secs(1),
    )
    .expect("absent");
    let err = lab
        .wait_route(
            "r1",
            net("203.0.113.128/25"),
            RouteExpect::Present,
            Duration::from_millis(300),
        )
        .expect_err("never appears");
    assert!(err.to_string().contains("no route"), "{err}");

    // Withdraw at the source: BIRD disables its originating protocol and
    // the route leaves FRR's kernel table.
    lab.birdc("bird", "disable originate4").expect("birdc disable");
    lab.wait_route("r1", net("203.0.113.0/24"), RouteExpect::Absent, CONVERGE)
        .expect("withdrawn");

    let report = lab.teardown().expect("teardown");
    assert_eq!(report.deleted_namespaces.len(), 2, "{report:?}");
    assert_nothing_left(&name, &pids);
    assert!(
        !workdir.path().join("state.json").exists(),
        "state file removed after a complete teardown"
    );
    let elapsed = t0.elapsed();
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
}

#[test]
fn lab_dropped_during_panic_leaves_nothing() {
    if !edge_tests::lab_ready("lab_smoke", TOOLS) {
        return;
    }
    let name = lab_name("panic");
    let workdir = tempfile::tempdir().expect("workdir");
    let seen_pids = Mutex::new(Vec::new());
    let result = catch_unwind(AssertUnwindSafe(|| {
        let lab = Lab::up(&spec(&name), workdir.path()).expect("lab up");
        seen_pids.lock().expect("lock").extend(lab.pids());
        // Make sure the lab is really running before it is abandoned.
        lab.wait_route("r1", net("203.0.113.0/24"), RouteExpect::Present, CONVERGE)
            .expect("route before panic");
        panic!("deliberate panic with a running lab");
    }));
    assert!(result.is_err(), "the closure panicked");
    let pids = seen_pids.into_inner().expect("lock");
    assert_eq!(pids.len(), 3, "zebra, bgpd, bird were started: {pids:?}");
    assert_nothing_left(&name, &pids);
}

#[test]
fn down_from_state_file_stops_a_detached_lab() {
    if !edge_tests::lab_ready("lab_smoke", TOOLS) {
        return;
    }
    // `edge lab up` detaches; `edge lab down` (another process) only has
    // the workdir. A BIRD-only lab keeps this test quick.
    let name = lab_name("down");
    let workdir = tempfile::tempdir().expect("workdir");
    let mut s = spec(&name);
    s.routers.retain(|r| r.kind == RouterKind::Bird);
    let lab = Lab::up(&s, workdir.path()).expect("lab up");
    let pids = lab.pids();
    let dir = lab.detach();
    assert!(pids.iter().all(|&p| alive(p)), "detached lab keeps running");
    assert_eq!(namespaces_with(&edge_labs::lab_prefix(&name)).len(), 2);

    // A second `up` of the same lab is refused before it creates anything,
    // so it cannot disturb the running one.
    let other = tempfile::tempdir().expect("second workdir");
    let err = Lab::up(&s, other.path())
        .expect_err("lab already running")
        .to_string();
    assert!(err.contains("already exists"), "{err}");
    assert!(pids.iter().all(|&p| alive(p)), "refused up left the lab alone");

    let attached = Lab::attach(&dir).expect("attach");
    assert!(attached.birdc("bird", "show status").is_ok());
    drop(attached); // non-owning: must not tear down
    assert!(Lab::status(&dir).expect("status").healthy());

    let report = Lab::down(&dir).expect("down");
    assert_eq!(report.deleted_namespaces.len(), 2, "{report:?}");
    assert_nothing_left(&name, &pids);
    assert!(Lab::status(&dir).is_err(), "no state after down");
}

#[test]
fn gobgp_originates_into_bird() {
    if !edge_tests::lab_ready("lab_smoke", &["ip", "bird", "birdc", "gobgpd", "gobgp"]) {
        return;
    }
    let name = lab_name("gobgp");
    let workdir = tempfile::tempdir().expect("workdir");
    let lab = Lab::up(
        &two_routers(&name, RouterKind::Bird, RouterKind::Gobgp),
        workdir.path(),
    )
    .expect("lab up");
    let pids = lab.pids();
    // GoBGP's prefixes (added through its API after start) reach BIRD's
    // kernel table in r1.
    for p in ["203.0.113.0/24", "2001:db8:ffff::/48"] {
        let r = lab
            .wait_route("r1", net(p), RouteExpect::Ecmp(1), CONVERGE)
            .expect("GoBGP route in r1 kernel")
            .expect("present");
        assert!(r.raw.contains("r1-r2"), "{}", r.raw);
    }
    // BIRD's prefixes reach GoBGP's RIB (GoBGP installs nothing).
    let deadline = Instant::now() + CONVERGE;
    loop {
        let v4 = lab
            .router_routes("gobgp", Some(net("198.51.100.0/24")))
            .expect("rib");
        let v6 = lab
            .router_routes("gobgp", Some(net("2001:db8:fffe::/48")))
            .expect("rib");
        if v4.bgp.contains("198.51.100.0/24") && v6.bgp.contains("2001:db8:fffe::/48") {
            assert!(v4.kernel_v4.trim().is_empty(), "GoBGP is RIB-only: {v4:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "GoBGP never learned BIRD's prefixes: {v4:?} {v6:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(lab);
    assert_nothing_left(&name, &pids);
}

/// Bridges, static routes, forwarding, extra processes and `exec`:
///
/// ```text
///  client --c-r/r-c-- router --r-lan--+
///                                     | br0 in "sw"
///                      b1 --b1-lan----+   (ports br0-p0, br0-p1, sw-b2)
///                      b2 --b2-lan----+
/// ```
/// b1 serves "b1" on 198.19.10.11:8080 and b2 serves "b2" on
/// [2001:db8:10::12]:8080 (socat, started as lab processes); the client
/// reaches both through the router and the bridge via static routes.
#[test]
fn bridge_routes_and_processes() {
    if !edge_tests::lab_ready("lab_smoke", &["ip", "socat"]) {
        return;
    }
    let name = lab_name("lan");
    let workdir = tempfile::tempdir().expect("workdir");
    let ns = |n: &str, forwarding: bool| NamespaceSpec {
        name: n.into(),
        forwarding,
        multipath_hash_l4: false,
        loopback: vec![],
    };
    let ep = |n: &str, ifname: &str, addrs: &[&str]| Endpoint {
        namespace: n.into(),
        ifname: ifname.into(),
        addresses: addrs.iter().map(|a| net(a)).collect(),
    };
    let route = |n: &str, dst: &str, gw: &str| RouteSpec {
        namespace: n.into(),
        destination: net(dst),
        gateway: ip(gw),
    };
    let serve = |name: &str, n: &str, listen: &str, answer: &str| ProcessSpec {
        name: name.into(),
        namespace: n.into(),
        argv: vec![
            "socat".into(),
            format!("{listen},reuseaddr,fork"),
            format!("SYSTEM:echo {answer}"),
        ],
        env: Default::default(),
        log: None,
        cwd: None,
    };
    let mut spec = LabSpec::new(name.clone());
    spec.namespaces = vec![
        ns("client", false),
        ns("router", true),
        ns("b1", false),
        ns("b2", false),
        ns("sw", false),
    ];
    spec.links = vec![LinkSpec {
        a: ep("client", "c-r", &["198.18.1.2/24", "2001:db8:1::2/64"]),
        b: ep("router", "r-c", &["198.18.1.1/24", "2001:db8:1::1/64"]),
    }];
    let port = |n: &str, ifname: &str, addrs: &[&str], peer: Option<&str>| BridgePort {
        namespace: n.into(),
        ifname: ifname.into(),
        addresses: addrs.iter().map(|a| net(a)).collect(),
        peer_ifname: peer.map(String::from),
    };
    spec.bridges = vec![BridgeSpec {
        namespace: "sw".into(),
        name: "br0".into(),
        addresses: vec![],
        ports: vec![
            port("router", "r-lan", &["198.19.10.1/24", "2001:db8:10::1/64"], None),
            port("b1", "b1-lan", &["198.19.10.11/24"], None),
            port("b2", "b2-lan", &["2001:db8:10::12/64"], Some("sw-b2")),
        ],
    }];
    spec.routes = vec![
        route("client", "198.19.10.0/24", "198.18.1.1"),
        route("client", "2001:db8:10::/64", "2001:db8:1::1"),
        route("b1", "198.18.1.0/24", "198.19.10.1"),
        route("b2", "2001:db8:1::/64", "2001:db8:10::1"),
    ];
    spec.processes = vec![
        serve("b1-http", "b1", "TCP4-LISTEN:8080,bind=198.19.10.11", "b1"),
        serve("b2-http", "b2", "TCP6-LISTEN:8080,bind=[2001:db8:10::12]", "b2"),
    ];
    let mut lab = Lab::up(&spec, workdir.path()).expect("lab up");
    let pids = lab.pids();
    assert_eq!(pids.len(), 2);

    let ports = lab
        .exec_ok("sw", &["ip", "-o", "link", "show", "master", "br0"])
        .expect("bridge ports");
    for p in ["br0-p0", "br0-p1", "sw-b2"] {
        assert!(ports.contains(p), "{p} missing from br0: {ports}");
    }
    // Forwarding is per namespace: on in router, off in client.
    let fwd = |n: &str| {
        lab.exec_ok(n, &["sysctl", "-n", "net.ipv4.ip_forward"])
            .expect("sysctl")
            .trim()
            .to_string()
    };
    assert_eq!((fwd("router"), fwd("client")), ("1".into(), "0".into()));

    // The listeners may need a moment; `fetch` retries briefly.
    assert_eq!(fetch(&lab, "TCP4:198.19.10.11:8080"), "b1");
    assert_eq!(fetch(&lab, "TCP6:[2001:db8:10::12]:8080"), "b2");
    assert!(workdir.path().join("logs/b1-http.log").exists());

    // Processes can be stopped and started while the lab runs (an edge
    // node failing and coming back).
    let old = lab.pid("b1-http").expect("b1-http pid");
    lab.stop_process("b1-http").expect("stop");
    assert!(!alive(old), "stopped process is gone");
    let new = lab
        .spawn_process(&serve(
            "b1-http2",
            "b1",
            "TCP4-LISTEN:8080,bind=198.19.10.11",
            "b1again",
        ))
        .expect("spawn");
    assert_eq!(fetch(&lab, "TCP4:198.19.10.11:8080"), "b1again");
    let mut pids = pids;
    pids.push(new);

    let report = lab.teardown().expect("teardown");
    assert_eq!(report.deleted_namespaces.len(), 5, "{report:?}");
    assert_nothing_left(&name, &pids);
}

/// Reads what a TCP server answers, from the `client` namespace, retrying
/// for up to 10 s while the listener starts.
fn fetch(lab: &Lab, target: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = lab
            .exec_timeout(
                "client",
                &["socat", "-u", "-T", "2", target, "STDOUT"],
                Duration::from_secs(5),
            )
            .expect("socat client");
        let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() && !text.is_empty() {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "client cannot reach {target}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
