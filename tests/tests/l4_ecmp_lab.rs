//! Anycast behind ECMP with the L4 dataplane in each edge node.
//!
//! ```text
//!                              ┌─ r-e1 ══ e1-r ─ edge1 (dataplane) ─ lan0 198.19.10.1 ─┐
//!  client ─ c-r ══ r-c ─ router (ECMP 203.0.113.10/32, L4 hash)                     br0 (sw)
//!  198.18.1.2        198.18.1.1  └─ r-e2 ══ e2-r ─ edge2 (dataplane) ─ lan0 198.19.10.2 ─┤
//!                                    backend1 198.19.10.11, backend2 .12, backend3 .13 ─┘
//!  VIP 203.0.113.10/32 on lo of every backend (arp_ignore=1, arp_announce=2);
//!  backends route the client prefix via edge1.
//! ```
//!
//! Each edge runs the dataplane through its `Dataplane` API from a thread
//! inside its namespace (`edge_l4::netns::NetnsThread`), so every map
//! update, neighbour lookup and DEVMAP ifindex is resolved there.
//!
//! * `xdp`: L2 DSR; backends answer the client directly (through edge1's
//!   plain forwarding path, not through the program).
//! * `userspace`: full proxy with the VIP on each edge's `lo`; backends
//!   answer the proxy.
//!
//! Both: 200 client connections land on the backend the Maglev table names
//! for their 5-tuple whichever edge ECMP picked, and both edges take part.
//! Then 50 long-lived connections are opened and edge2 is removed from the
//! ECMP route.
//! * `xdp`: all 50 keep working. The flows that ECMP moves to edge1 have no
//!   entry in edge1's connection table, and edge1's Maglev table names the
//!   same backend as edge2's did, so the backend's TCP state still matches.
//! * `userspace` + `edge_l4::handoff`: all 50 keep working too. A full
//!   proxy terminates TCP on the edge, so edge1 has no socket for the
//!   connections that lived on edge2; the hand-off makes edge1 forward their
//!   mid-connection packets (not SYN, no conntrack state) unchanged to
//!   edge2 over the LAN, and edge2's proxy keeps serving them.
//! * `userspace` alone documents why the hand-off exists: exactly the
//!   connections moved off edge2 are reset (promptly, not after a hang),
//!   every connection on edge1 keeps working.
//!
//! Needs root and socat; skips otherwise (fails under EDGE_LAB=require).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use edge_l4::handoff::{Handoff, HandoffConfig};
use edge_l4::hosted::HostedUserspace;
use edge_l4::netns::NetnsThread;
use edge_l4::userspace::UserspaceConfig;
use edge_l4::xdp::{XdpConfig, XdpDataplane};
use edge_l4::{
    BackendSpec, Dataplane, FlowKey, L4State, Protocol, SchedulerKind, ServiceKey, ServiceSpec, ServiceTable,
    TableSize,
};
use edge_labs::{
    BridgePort, BridgeSpec, Endpoint, IpNet, Lab, LabSpec, LinkSpec, NamespaceSpec, ProcessSpec, RouteSpec,
};
use edge_tests::lab_ready;

const VIP: &str = "203.0.113.10";
const PORT: u16 = 8080;
const BACKENDS: [(&str, &str); 3] = [
    ("backend1", "198.19.10.11"),
    ("backend2", "198.19.10.12"),
    ("backend3", "198.19.10.13"),
];
const EDGES: [(&str, &str, &str); 2] = [("edge1", "e1-r", "198.18.11.2"), ("edge2", "e2-r", "198.18.12.2")];
const IO: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Userspace,
    /// The proxy plus `edge_l4::handoff` between the two edges.
    UserspaceHandoff,
    Xdp,
}

fn net(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

fn service() -> ServiceKey {
    ServiceKey::new(VIP.parse().unwrap(), PORT, Protocol::Tcp)
}

fn desired() -> L4State {
    let spec = BACKENDS
        .iter()
        .fold(ServiceSpec::new(SchedulerKind::Maglev), |s, (_, ip)| {
            s.with_backend(SocketAddr::new(ip.parse().unwrap(), PORT), BackendSpec::active(1))
        });
    L4State::default().with_service(service(), spec)
}

fn spec_for(kind: Kind, name: &str) -> LabSpec {
    let ns = |n: &str, forwarding: bool, l4hash: bool, loopback: Vec<IpNet>| NamespaceSpec {
        name: n.into(),
        forwarding,
        multipath_hash_l4: l4hash,
        loopback,
    };
    let vip = net(&format!("{VIP}/32"));
    let edge_lo = if kind == Kind::Xdp { vec![] } else { vec![vip] };
    let mut spec = LabSpec::new(name);
    spec.namespaces = vec![
        ns("client", false, false, vec![]),
        ns("router", true, true, vec![]),
        ns("edge1", true, false, edge_lo.clone()),
        ns("edge2", true, false, edge_lo),
        ns("sw", false, false, vec![]),
    ];
    for (b, _) in BACKENDS {
        spec.namespaces.push(ns(b, false, false, vec![vip]));
    }
    let link = |a: (&str, &str, &str), b: (&str, &str, &str)| LinkSpec {
        a: Endpoint {
            namespace: a.0.into(),
            ifname: a.1.into(),
            addresses: vec![net(a.2)],
        },
        b: Endpoint {
            namespace: b.0.into(),
            ifname: b.1.into(),
            addresses: vec![net(b.2)],
        },
    };
    spec.links = vec![
        link(
            ("client", "c-r", "198.18.1.2/24"),
            ("router", "r-c", "198.18.1.1/24"),
        ),
        link(
            ("router", "r-e1", "198.18.11.1/24"),
            ("edge1", "e1-r", "198.18.11.2/24"),
        ),
        link(
            ("router", "r-e2", "198.18.12.1/24"),
            ("edge2", "e2-r", "198.18.12.2/24"),
        ),
    ];
    let port = |ns: &str, addr: &str| BridgePort {
        namespace: ns.into(),
        ifname: "lan0".into(),
        addresses: vec![net(addr)],
        peer_ifname: None,
    };
    let mut ports = vec![port("edge1", "198.19.10.1/24"), port("edge2", "198.19.10.2/24")];
    for (b, ip) in BACKENDS {
        ports.push(port(b, &format!("{ip}/24")));
    }
    spec.bridges = vec![BridgeSpec {
        namespace: "sw".into(),
        name: "br0".into(),
        addresses: vec![],
        ports,
    }];
    let route = |ns: &str, dst: &str, gw: &str| RouteSpec {
        namespace: ns.into(),
        destination: net(dst),
        gateway: gw.parse().unwrap(),
    };
    spec.routes = vec![
        route("client", "203.0.113.0/24", "198.18.1.1"),
        route("edge1", "198.18.1.0/24", "198.18.11.1"),
        route("edge2", "198.18.1.0/24", "198.18.12.1"),
    ];
    for (b, _) in BACKENDS {
        spec.routes.push(route(b, "198.18.1.0/24", "198.19.10.1"));
        spec.processes.push(ProcessSpec {
            name: format!("srv-{b}"),
            namespace: b.into(),
            argv: vec![
                "socat".into(),
                "-T".into(),
                "60".into(),
                format!("TCP-LISTEN:{PORT},fork,reuseaddr"),
                format!("SYSTEM:echo {b}; exec cat"),
            ],
            env: BTreeMap::new(),
            log: None,
            cwd: None,
        });
    }
    spec
}

enum Node {
    Xdp(Box<XdpDataplane>),
    User(Box<HostedUserspace>, Option<Handoff>),
}

impl Node {
    fn dataplane(&mut self) -> &mut dyn Dataplane {
        match self {
            Node::Xdp(d) => d.as_mut(),
            Node::User(d, _) => d.as_mut(),
        }
    }

    /// New flows this edge placed (XDP: packets that created a connection
    /// entry; proxy: connections opened).
    fn new_flows(&self) -> u64 {
        match self {
            Node::Xdp(d) => d.stats().map(|s| s.conn_new.packets).unwrap_or(0),
            Node::User(d, _) => d
                .dataplane()
                .map(|p| p.stats().values().map(|s| s.flows_opened).sum())
                .unwrap_or(0),
        }
    }
}

type Shared = Arc<Mutex<Option<Node>>>;

struct Edge {
    node: Shared,
    thread: NetnsThread,
}

impl Edge {
    fn with<T: Send + 'static>(&self, f: impl FnOnce(&mut Node) -> T + Send + 'static) -> T {
        let node = self.node.clone();
        self.thread
            .run(move || f(node.lock().unwrap().as_mut().expect("dataplane running")))
            .expect("edge thread")
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        // Detach inside the namespace the program was attached in.
        let node = self.node.clone();
        let _ = self
            .thread
            .run(move || drop(node.lock().unwrap_or_else(|p| p.into_inner()).take()));
    }
}

struct Conn {
    backend: String,
    src: SocketAddr,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    fn echo(&mut self) -> std::io::Result<()> {
        let msg = format!("ping {}\n", self.src);
        self.stream.write_all(msg.as_bytes())?;
        let mut back = String::new();
        self.reader.read_line(&mut back)?;
        if back == msg {
            Ok(())
        } else {
            Err(std::io::Error::other(format!("echo {back:?} != {msg:?}")))
        }
    }
}

fn connect(client: &NetnsThread) -> Conn {
    let vip = service().socket_addr();
    let stream = client
        .run(move || TcpStream::connect_timeout(&vip, IO))
        .expect("client thread")
        .expect("connect to the VIP");
    stream.set_read_timeout(Some(IO)).unwrap();
    let src = stream.local_addr().unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut name = String::new();
    reader
        .read_line(&mut name)
        .unwrap_or_else(|e| panic!("greeting on {src}: {e}"));
    Conn {
        backend: name.trim().to_string(),
        src,
        stream,
        reader,
    }
}

/// The backend name the Maglev table gives a client 5-tuple.
fn predicted(table: &ServiceTable, src: SocketAddr) -> String {
    let flow = FlowKey {
        src,
        dst: service().socket_addr(),
        protocol: Protocol::Tcp,
    };
    let addr = table.lookup(&flow).expect("backend");
    BACKENDS
        .iter()
        .find(|(_, ip)| ip.parse::<std::net::IpAddr>().ok() == Some(addr.ip()))
        .map(|(n, _)| (*n).to_string())
        .expect("known backend")
}

/// Client ports of the connections edge2 carries right now: from its
/// connection table (XDP) or its sockets (proxy). Asked of the edge rather
/// than predicted with `ip route get`: the router hashes locally generated
/// TCP by the sending socket's random `skb->hash` (it short-circuits
/// `fib_multipath_hash` when an L4 hash is present), so route get cannot
/// know it.
fn ports_on_edge2(kind: Kind, lab: &Lab, edge2: &Edge) -> BTreeSet<u16> {
    match kind {
        Kind::Xdp => edge2.with(|n| match n {
            Node::Xdp(d) => d.flows().into_iter().map(|(f, _)| f.src.port()).collect(),
            Node::User(..) => BTreeSet::new(),
        }),
        Kind::Userspace | Kind::UserspaceHandoff => {
            let out = lab
                .exec_ok(
                    "edge2",
                    &["ss", "-Htn", "state", "established", "( sport = :8080 )"],
                )
                .expect("ss");
            out.lines()
                .filter_map(|l| l.split_whitespace().last())
                .filter_map(|peer| peer.parse::<SocketAddr>().ok())
                .map(|a| a.port())
                .collect()
        }
    }
}

fn ecmp_lab(kind: Kind, lab_name: &str) {
    let t0 = Instant::now();
    let dir = tempfile::Builder::new().prefix("l4e").tempdir().expect("tempdir");
    let lab = Lab::up(&spec_for(kind, lab_name), dir.path()).expect("lab up");
    for (b, _) in BACKENDS {
        lab.exec_ok(
            b,
            &[
                "sysctl",
                "-qw",
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.all.arp_announce=2",
            ],
        )
        .expect("sysctl");
    }
    lab.exec_ok(
        "router",
        &[
            "ip",
            "route",
            "add",
            &format!("{VIP}/32"),
            "nexthop",
            "via",
            EDGES[0].2,
            "nexthop",
            "via",
            EDGES[1].2,
        ],
    )
    .expect("ECMP route");

    let mut edges = Vec::new();
    for (name, uplink, _) in EDGES {
        let thread = NetnsThread::spawn(&lab.kernel_ns(name).unwrap()).expect("edge thread");
        // Backends listening (and resolved in this edge's neighbour table).
        for (b, ip) in BACKENDS {
            let addr = SocketAddr::new(ip.parse().unwrap(), PORT);
            let up = thread
                .run(move || {
                    (0..100).any(|_| {
                        let ok = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok();
                        if !ok {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        ok
                    })
                })
                .unwrap();
            assert!(up, "{b} not reachable from {name}");
        }
        let node: Shared = Arc::new(Mutex::new(None));
        let slot = node.clone();
        let uplink = uplink.to_string();
        let uplink_name = uplink.clone();
        // Each edge hands unknown mid-connection packets to the other one.
        let peer = if name == "edge1" {
            "198.19.10.2"
        } else {
            "198.19.10.1"
        };
        thread
            .run(move || {
                let mut n = match kind {
                    Kind::Xdp => Node::Xdp(Box::new(
                        XdpDataplane::new(XdpConfig {
                            interfaces: vec![uplink],
                            ..XdpConfig::default()
                        })
                        .expect("load xdp"),
                    )),
                    Kind::Userspace | Kind::UserspaceHandoff => Node::User(
                        Box::new(HostedUserspace::new(UserspaceConfig::default(), 2).expect("proxy")),
                        None,
                    ),
                };
                n.dataplane().apply(&desired()).expect("apply");
                if let (Kind::UserspaceHandoff, Node::User(_, handoff)) = (kind, &mut n) {
                    let config = HandoffConfig {
                        uplinks: vec![uplink_name],
                        peer: peer.parse().unwrap(),
                    };
                    *handoff = Some(Handoff::install(config, &[service()]).expect("install hand-off"));
                }
                if let Node::Xdp(d) = &n {
                    assert!(
                        d.unresolved().is_empty(),
                        "unresolved backends: {:?}",
                        d.unresolved()
                    );
                }
                *slot.lock().unwrap() = Some(n);
            })
            .expect("edge thread");
        edges.push(Edge { node, thread });
    }
    let client = NetnsThread::spawn(&lab.kernel_ns("client").unwrap()).expect("client thread");
    let table =
        ServiceTable::build(service(), &desired().services[&service()], TableSize::default()).unwrap();

    // Many short connections: each on its Maglev backend, whichever edge.
    let mut per_backend: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..200 {
        let c = connect(&client);
        assert_eq!(c.backend, predicted(&table, c.src), "{kind:?}: flow {}", c.src);
        *per_backend.entry(c.backend).or_default() += 1;
    }
    let per_edge: Vec<u64> = edges.iter().map(|e| e.with(|n| n.new_flows())).collect();
    eprintln!("{kind:?}: 200 connections, per backend {per_backend:?}, new flows per edge {per_edge:?}");
    assert_eq!(per_backend.len(), 3, "{kind:?}: {per_backend:?}");
    assert!(
        per_edge.iter().all(|&n| n > 0),
        "{kind:?}: ECMP used one edge only: {per_edge:?}"
    );

    // 50 long-lived connections, then edge2 leaves the ECMP route.
    let mut long: Vec<Conn> = (0..50).map(|_| connect(&client)).collect();
    for c in &mut long {
        c.echo()
            .unwrap_or_else(|e| panic!("{kind:?}: {} before the change: {e}", c.src));
    }
    let on_edge2 = ports_on_edge2(kind, &lab, &edges[1]);
    let via_edge2: BTreeSet<usize> = (0..long.len())
        .filter(|&i| on_edge2.contains(&long[i].src.port()))
        .collect();
    let moved = via_edge2.len();
    assert!(
        moved > 0,
        "{kind:?}: no long-lived connection went via edge2; the change would test nothing"
    );
    lab.exec_ok(
        "router",
        &["ip", "route", "replace", &format!("{VIP}/32"), "via", EDGES[0].2],
    )
    .expect("remove edge2 from ECMP");

    let mut failed = BTreeSet::new();
    for (i, c) in long.iter_mut().enumerate() {
        let t = Instant::now();
        let r = c.echo();
        if let Err(e) = r {
            // A reset must come fast, not after the read timeout.
            assert!(
                t.elapsed() < IO,
                "{kind:?}: {} hung instead of failing: {e}",
                c.src
            );
            failed.insert(i);
        }
    }
    eprintln!(
        "{kind:?}: 50 long-lived connections, {moved} moved from edge2 to edge1, {} failed after the change ({:?} total)",
        failed.len(),
        t0.elapsed()
    );
    match kind {
        Kind::Xdp | Kind::UserspaceHandoff => assert!(
            failed.is_empty(),
            "{kind:?}: connections broken by the ECMP change: {failed:?}"
        ),
        Kind::Userspace => {
            assert_eq!(
                failed, via_edge2,
                "userspace: exactly the connections moved off edge2 are reset"
            );
        }
    }
    // A second round trip on the survivors, after the change settled.
    for (i, c) in long.iter_mut().enumerate() {
        if !failed.contains(&i) {
            c.echo()
                .unwrap_or_else(|e| panic!("{kind:?}: {} second echo: {e}", c.src));
        }
    }
    drop(long);
    drop(edges);
    drop(client);
    lab.teardown().expect("teardown");
}

fn lab_name(tag: &str) -> String {
    format!("l4e{tag}{}", std::process::id())
}

#[test]
fn ecmp_anycast_xdp_keeps_connections_when_an_edge_leaves() {
    if !lab_ready("ecmp_anycast_xdp", &["ip", "socat"]) {
        return;
    }
    ecmp_lab(Kind::Xdp, &lab_name("x"));
}

#[test]
fn ecmp_anycast_userspace_with_handoff_keeps_connections_when_an_edge_leaves() {
    if !lab_ready("ecmp_anycast_userspace_handoff", &["ip", "socat", "nft"]) {
        return;
    }
    ecmp_lab(Kind::UserspaceHandoff, &lab_name("h"));
}

/// Documents the limit the hand-off removes: without it, the connections
/// moved off edge2 are reset (and only those).
#[test]
fn ecmp_anycast_userspace_proxy_without_handoff() {
    if !lab_ready("ecmp_anycast_userspace", &["ip", "socat"]) {
        return;
    }
    ecmp_lab(Kind::Userspace, &lab_name("u"));
}
