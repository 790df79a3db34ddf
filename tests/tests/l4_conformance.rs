//! One conformance table for every L4 dataplane: the same cases run against
//! `userspace` on loopback (always, no privileges), and against
//! `userspace`, `nftables` and `xdp` each in its own lab of network
//! namespaces (root):
//!
//! ```text
//!  client ── c-n ══ n-c ── node (dataplane under test) ── lan0 ─┐
//!  198.18.1.2            198.18.1.1          198.19.10.1/24     │ br0 (ns sw)
//!  2001:db8:1::2         2001:db8:1::1       2001:db8:10::1/64  │
//!                                  b1 198.19.10.11 ── lan0 ─────┤
//!                                  b2 198.19.10.12 ── lan0 ─────┤
//!                                  b3 198.19.10.13 ── lan0 ─────┘
//!  (backends also 2001:db8:10::1N/64)
//!  VIPs 203.0.113.10:8080 and [2001:db8:ffff::10]:8080 on lo of every backend (arp_ignore=1,
//!  arp_announce=2: for XDP's L2 DSR), and on the node's lo for userspace.
//! ```
//!
//! Backends are `socat` servers that send their name, then echo. The
//! expected backend of each connection is computed from its real 5-tuple
//! (the client socket's addresses) with the dataplane's own predictor:
//! `ServiceTable::lookup` (SipHash flow hash; userspace and XDP) or
//! `NftDataplane::predict` (kernel jhash; nftables), both over the same
//! Maglev table.
//!
//! Cases: every flow lands on its predicted backend; apply is idempotent and
//! observe reads the state back; adding a backend moves new flows as the
//! new table says while open connections keep working; removing a backend
//! keeps its established connections working while new flows go elsewhere;
//! draining does the same for a backend still listed; an IPv6 service next
//! to the IPv4 one follows its table too.
//!
//! The namespace variants need root, `socat` and `nft`; they skip otherwise
//! (fail under EDGE_LAB=require). The loopback variant uses in-process
//! backends on 127.0.0.1 / ::1 and runs everywhere.

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_l4::hosted::HostedUserspace;
use edge_l4::netns::NetnsThread;
use edge_l4::nftables::{NftConfig, NftDataplane, nft_slot};
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
const VIP6: &str = "2001:db8:ffff::10";
const PORT: u16 = 8080;
const BACKENDS: [(&str, &str); 3] = [
    ("b1", "198.19.10.11"),
    ("b2", "198.19.10.12"),
    ("b3", "198.19.10.13"),
];
const IO: Duration = Duration::from_secs(5);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Userspace,
    Nftables,
    Xdp,
}

fn net(s: &str) -> IpNet {
    s.parse().expect("prefix")
}

fn service() -> ServiceKey {
    ServiceKey::new(VIP.parse().unwrap(), PORT, Protocol::Tcp)
}

fn service6() -> ServiceKey {
    ServiceKey::new(VIP6.parse().unwrap(), PORT, Protocol::Tcp)
}

/// Backend `bN`'s IPv6 address: 2001:db8:10::1N.
fn backend_addr6(name: &str) -> SocketAddr {
    let n = name.trim_start_matches('b');
    SocketAddr::new(format!("2001:db8:10::1{n}").parse().unwrap(), PORT)
}

/// The backend named `name`, in the address family of `svc`.
fn backend_of(svc: ServiceKey, name: &str) -> SocketAddr {
    if svc.vip.is_ipv4() {
        backend_addr(name)
    } else {
        backend_addr6(name)
    }
}

fn backend_addr(name: &str) -> SocketAddr {
    let ip = BACKENDS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, ip)| *ip)
        .expect("backend name");
    SocketAddr::new(ip.parse().unwrap(), PORT)
}

fn active(names: &[&'static str]) -> Vec<(&'static str, BackendSpec)> {
    names.iter().map(|n| (*n, BackendSpec::active(1))).collect()
}

fn spec_for(kind: Kind, name: &str) -> LabSpec {
    let ns = |n: &str, forwarding: bool, loopback: Vec<IpNet>| NamespaceSpec {
        name: n.into(),
        forwarding,
        multipath_hash_l4: false,
        loopback,
    };
    let vip = net(&format!("{VIP}/32"));
    let vip6 = net(&format!("{VIP6}/128"));
    let node_lo = if kind == Kind::Userspace {
        vec![vip, vip6]
    } else {
        vec![]
    };
    let mut spec = LabSpec::new(name);
    spec.namespaces = vec![
        ns("client", false, vec![]),
        ns("node", true, node_lo),
        ns("sw", false, vec![]),
    ];
    for (b, _) in BACKENDS {
        spec.namespaces.push(ns(b, false, vec![vip, vip6]));
    }
    spec.links = vec![LinkSpec {
        a: Endpoint {
            namespace: "client".into(),
            ifname: "c-n".into(),
            addresses: vec![net("198.18.1.2/24"), net("2001:db8:1::2/64")],
        },
        b: Endpoint {
            namespace: "node".into(),
            ifname: "n-c".into(),
            addresses: vec![net("198.18.1.1/24"), net("2001:db8:1::1/64")],
        },
    }];
    let mut ports = vec![BridgePort {
        namespace: "node".into(),
        ifname: "lan0".into(),
        addresses: vec![net("198.19.10.1/24"), net("2001:db8:10::1/64")],
        peer_ifname: None,
    }];
    for (b, ip) in BACKENDS {
        ports.push(BridgePort {
            namespace: b.into(),
            ifname: "lan0".into(),
            addresses: vec![
                net(&format!("{ip}/24")),
                net(&format!("{}/64", backend_addr6(b).ip())),
            ],
            peer_ifname: None,
        });
    }
    spec.bridges = vec![BridgeSpec {
        namespace: "sw".into(),
        name: "br0".into(),
        addresses: vec![],
        ports,
    }];
    spec.routes = vec![RouteSpec {
        namespace: "client".into(),
        destination: net("203.0.113.0/24"),
        gateway: "198.18.1.1".parse().unwrap(),
    }];
    spec.routes.push(RouteSpec {
        namespace: "client".into(),
        destination: net("2001:db8:ffff::/48"),
        gateway: "2001:db8:1::1".parse().unwrap(),
    });
    for (b, _) in BACKENDS {
        spec.routes.push(RouteSpec {
            namespace: b.into(),
            destination: net("198.18.1.0/24"),
            gateway: "198.19.10.1".parse().unwrap(),
        });
        spec.routes.push(RouteSpec {
            namespace: b.into(),
            destination: net("2001:db8:1::/64"),
            gateway: "2001:db8:10::1".parse().unwrap(),
        });
        spec.processes.push(ProcessSpec {
            name: format!("srv-{b}"),
            namespace: b.into(),
            argv: vec![
                "socat".into(),
                "-T".into(),
                "60".into(),
                // Dual stack: IPv4 clients arrive as mapped addresses.
                format!("TCP6-LISTEN:{PORT},fork,reuseaddr,ipv6only=0"),
                format!("SYSTEM:echo {b}; exec cat"),
            ],
            env: BTreeMap::new(),
            log: None,
            cwd: None,
        });
    }
    spec
}

/// The backend each dataplane must pick for a new flow: the Maglev table
/// of the service, indexed by the dataplane's own flow hash.
struct Predictor {
    kind: Kind,
    /// Building a 65537-slot table per connection would dominate the
    /// test's run time in debug builds: keep the ones already built.
    tables: RefCell<Vec<(ServiceKey, ServiceSpec, ServiceTable)>>,
}

impl Predictor {
    fn new(kind: Kind) -> Self {
        Predictor {
            kind,
            tables: RefCell::new(Vec::new()),
        }
    }

    fn predict(&self, st: &L4State, svc: ServiceKey, src: SocketAddr) -> SocketAddr {
        let spec = &st.services[&svc];
        let flow = FlowKey {
            src,
            dst: svc.socket_addr(),
            protocol: Protocol::Tcp,
        };
        let mut tables = self.tables.borrow_mut();
        let i = match tables.iter().position(|(k, s, _)| *k == svc && s == spec) {
            Some(i) => i,
            None => {
                let t = ServiceTable::build(svc, spec, TableSize::default()).unwrap();
                tables.push((svc, spec.clone(), t));
                tables.len() - 1
            }
        };
        let table = &tables[i].2;
        match self.kind {
            Kind::Userspace | Kind::Xdp => table.lookup(&flow),
            Kind::Nftables => {
                let cfg = NftConfig::default();
                table.backend_at(nft_slot(&flow, cfg.table_size.get(), cfg.seed) as usize)
            }
        }
        .expect("a backend takes new flows")
    }
}

/// What the cases need from a rig: the dataplane, a client, and the
/// addresses of the services and backends it set up.
trait Harness {
    fn kind(&self) -> Kind;
    fn apply(&self, st: &L4State) -> edge_l4::Applied;
    fn observe(&self) -> L4State;
    /// A TCP connection from the client to `svc`.
    fn dial(&self, svc: ServiceKey) -> std::io::Result<TcpStream>;
    /// The v4 service, or the v6 one.
    fn service(&self, v6: bool) -> ServiceKey;
    /// Backend `name` (`b1`..`b3`) as `svc` reaches it.
    fn backend(&self, name: &str, svc: ServiceKey) -> SocketAddr;
    fn predictor(&self) -> &Predictor;
}

fn spec_of(h: &dyn Harness, svc: ServiceKey, backends: &[(&str, BackendSpec)]) -> ServiceSpec {
    backends
        .iter()
        .fold(ServiceSpec::new(SchedulerKind::Maglev), |s, (n, b)| {
            s.with_backend(h.backend(n, svc), *b)
        })
}

/// The v4 service with `backends`.
fn state_of(h: &dyn Harness, backends: &[(&str, BackendSpec)]) -> L4State {
    let svc = h.service(false);
    L4State::default().with_service(svc, spec_of(h, svc, backends))
}

/// Connects, reads the backend's greeting (its name).
fn connect(h: &dyn Harness, svc: ServiceKey) -> Conn {
    let kind = h.kind();
    let stream = h
        .dial(svc)
        .unwrap_or_else(|e| panic!("{kind:?}: connect to {svc}: {e}"));
    stream.set_read_timeout(Some(IO)).unwrap();
    let src = stream.local_addr().unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut name = String::new();
    reader
        .read_line(&mut name)
        .unwrap_or_else(|e| panic!("{kind:?}: greeting on {src}: {e}"));
    let name = name.trim().to_string();
    assert!(
        !name.is_empty(),
        "{kind:?}: {src}: connection closed before the greeting"
    );
    Conn {
        backend: h.backend(&name, svc),
        src,
        stream,
        reader,
    }
}

/// Opens `n` connections to `svc` and checks each against the prediction.
fn open_checked(h: &dyn Harness, svc: ServiceKey, st: &L4State, n: usize, what: &str) -> Vec<Conn> {
    (0..n)
        .map(|_| {
            let c = connect(h, svc);
            assert_eq!(
                c.backend,
                h.predictor().predict(st, svc, c.src),
                "{:?} {what}: flow {}",
                h.kind(),
                c.src
            );
            c
        })
        .collect()
}

type Shared = Arc<Mutex<Option<Box<dyn Dataplane>>>>;

/// A lab with the dataplane `kind` running in its node namespace.
struct Rig {
    kind: Kind,
    predictor: Predictor,
    dp: Shared,
    node: NetnsThread,
    client: NetnsThread,
    // Last: torn down after the dataplane and the threads are gone.
    _lab: Lab,
    _dir: tempfile::TempDir,
}

impl Drop for Rig {
    fn drop(&mut self) {
        // Detach/flush from inside the namespace the dataplane lives in.
        let dp = self.dp.clone();
        let _ = self
            .node
            .run(move || drop(dp.lock().unwrap_or_else(|p| p.into_inner()).take()));
    }
}

impl Rig {
    fn up(kind: Kind, lab_name: &str) -> Rig {
        let dir = tempfile::Builder::new()
            .prefix("l4cf")
            .tempdir()
            .expect("tempdir");
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
        let node = NetnsThread::spawn(&lab.kernel_ns("node").unwrap()).expect("node thread");
        let client = NetnsThread::spawn(&lab.kernel_ns("client").unwrap()).expect("client thread");
        // Backends up (socat listening), and their MACs in the node's
        // neighbour table.
        for (b, _) in BACKENDS {
            let addr = backend_addr(b);
            let ok = node
                .run(move || {
                    for _ in 0..100 {
                        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                            return true;
                        }
                        std::thread::sleep(Duration::from_millis(50));
                    }
                    false
                })
                .unwrap();
            assert!(ok, "backend {b} never listened");
        }
        let dp: Shared = Arc::new(Mutex::new(None));
        let slot = dp.clone();
        node.run(move || {
            let d: Box<dyn Dataplane> = match kind {
                Kind::Userspace => {
                    Box::new(HostedUserspace::new(UserspaceConfig::default(), 2).expect("proxy"))
                }
                Kind::Nftables => Box::new(NftDataplane::new(NftConfig::default())),
                Kind::Xdp => Box::new(
                    XdpDataplane::new(XdpConfig {
                        interfaces: vec!["n-c".into()],
                        ..XdpConfig::default()
                    })
                    .expect("load xdp"),
                ),
            };
            *slot.lock().unwrap() = Some(d);
        })
        .unwrap();
        Rig {
            kind,
            predictor: Predictor::new(kind),
            dp,
            node,
            client,
            _lab: lab,
            _dir: dir,
        }
    }
}

impl Harness for Rig {
    fn kind(&self) -> Kind {
        self.kind
    }

    fn apply(&self, st: &L4State) -> edge_l4::Applied {
        let dp = self.dp.clone();
        let st = st.clone();
        self.node
            .run(move || dp.lock().unwrap().as_mut().expect("dataplane").apply(&st))
            .unwrap()
            .unwrap_or_else(|e| panic!("{:?} apply: {e}", self.kind))
    }

    fn observe(&self) -> L4State {
        let dp = self.dp.clone();
        self.node
            .run(move || dp.lock().unwrap().as_ref().expect("dataplane").observe())
            .unwrap()
            .expect("observe")
    }

    fn dial(&self, svc: ServiceKey) -> std::io::Result<TcpStream> {
        let vip = svc.socket_addr();
        self.client
            .run(move || TcpStream::connect_timeout(&vip, IO))
            .map_err(std::io::Error::other)?
    }

    fn service(&self, v6: bool) -> ServiceKey {
        if v6 { service6() } else { service() }
    }

    fn backend(&self, name: &str, svc: ServiceKey) -> SocketAddr {
        backend_of(svc, name)
    }

    fn predictor(&self) -> &Predictor {
        &self.predictor
    }
}

struct Conn {
    backend: SocketAddr,
    src: SocketAddr,
    stream: TcpStream,
    reader: BufReader<TcpStream>,
}

impl Conn {
    /// Round trip on the open connection.
    fn echo(&mut self, kind: Kind, what: &str) {
        let msg = format!("ping {}\n", self.src);
        self.stream
            .write_all(msg.as_bytes())
            .unwrap_or_else(|e| panic!("{kind:?} {what}: write on {}: {e}", self.src));
        let mut back = String::new();
        self.reader
            .read_line(&mut back)
            .unwrap_or_else(|e| panic!("{kind:?} {what}: read on {}: {e}", self.src));
        assert_eq!(
            back, msg,
            "{kind:?} {what}: echo on {} (backend {})",
            self.src, self.backend
        );
    }
}

/// The table itself: every case, against any rig.
fn conformance(h: &dyn Harness) {
    let kind = h.kind();
    let svc = h.service(false);
    let b = |name: &str| h.backend(name, svc);
    let all = state_of(h, &active(&["b1", "b2", "b3"]));

    // 1. Every flow lands where the Maglev table says; all backends used.
    assert!(!h.apply(&all).is_noop());
    let conns = open_checked(h, svc, &all, 60, "flows follow the table");
    let used: BTreeSet<SocketAddr> = conns.iter().map(|c| c.backend).collect();
    assert_eq!(used.len(), 3, "{kind:?}: 60 flows over 3 backends used {used:?}");
    drop(conns);

    // 2. Idempotent apply; observe reads the state back.
    assert!(
        h.apply(&all).is_noop(),
        "{kind:?}: second apply changed something"
    );
    assert_eq!(h.observe(), all, "{kind:?}: observe");

    // 3. Add a backend: open connections keep working, new flows follow
    // the new table.
    let two = state_of(h, &active(&["b1", "b2"]));
    h.apply(&two);
    let mut before = open_checked(h, svc, &two, 30, "two backends");
    let applied = h.apply(&all);
    assert_eq!(applied.changes.len(), 1, "{kind:?}: {:?}", applied.changes);
    for c in &mut before {
        c.echo(kind, "open across add");
    }
    let after = open_checked(h, svc, &all, 40, "after adding b3");
    assert!(
        after.iter().any(|c| c.backend == b("b3")),
        "{kind:?}: b3 got no new flow"
    );
    drop((before, after));

    // 4. Remove a backend: its established connections keep working, new
    // flows never go there.
    let mut open = open_checked(h, svc, &all, 40, "before removing b2");
    assert!(
        open.iter().any(|c| c.backend == b("b2")),
        "{kind:?}: no flow on b2"
    );
    let without_b2 = state_of(h, &active(&["b1", "b3"]));
    h.apply(&without_b2);
    for c in &mut open {
        c.echo(kind, "established across removal");
    }
    let fresh = open_checked(h, svc, &without_b2, 40, "after removing b2");
    assert!(fresh.iter().all(|c| c.backend != b("b2")));
    drop((open, fresh));

    // 5. Drain: b1 stays listed but takes no new flows; its established
    // connections keep working.
    h.apply(&all);
    let mut open = open_checked(h, svc, &all, 40, "before draining b1");
    assert!(
        open.iter().any(|c| c.backend == b("b1")),
        "{kind:?}: no flow on b1"
    );
    let drained = state_of(
        h,
        &[
            ("b1", BackendSpec::draining(1)),
            ("b2", BackendSpec::active(1)),
            ("b3", BackendSpec::active(1)),
        ],
    );
    h.apply(&drained);
    assert_eq!(h.observe(), drained, "{kind:?}: observe while draining");
    for c in &mut open {
        c.echo(kind, "established while draining");
    }
    let fresh = open_checked(h, svc, &drained, 40, "while b1 drains");
    assert!(fresh.iter().all(|c| c.backend != b("b1")));
    drop((open, fresh));

    // 6. IPv6: a second service on the v6 VIP over the backends' v6
    // addresses, next to the v4 one.
    let svc6 = h.service(true);
    let dual = all
        .clone()
        .with_service(svc6, spec_of(h, svc6, &active(&["b1", "b2", "b3"])));
    h.apply(&dual);
    assert_eq!(h.observe(), dual, "{kind:?}: observe with the v6 service");
    let mut v6 = open_checked(h, svc6, &dual, 40, "IPv6 flows follow the table");
    let used: BTreeSet<SocketAddr> = v6.iter().map(|c| c.backend).collect();
    assert_eq!(used.len(), 3, "{kind:?}: 40 v6 flows used {used:?}");
    for c in &mut v6 {
        c.echo(kind, "IPv6 round trip");
    }
    let v4 = open_checked(h, svc, &dual, 10, "v4 next to v6");
    drop((v6, v4));
}

/// The userspace proxy on loopback: in-process backends on 127.0.0.1 and
/// ::1 (distinct ports stand in for distinct hosts), the service sockets
/// bound here and handed to the proxy, as `edge` does. No privileges.
struct Loopback {
    dp: RefCell<HostedUserspace>,
    v4: ServiceKey,
    v6: ServiceKey,
    backends: BTreeMap<(String, bool), SocketAddr>,
    predictor: Predictor,
}

/// A backend that sends its name, then echoes lines. Its thread lives as
/// long as the test process (it only ever blocks in `accept`).
fn loopback_backend(name: &str, ip: &str) -> SocketAddr {
    let listener = std::net::TcpListener::bind((ip, 0)).expect("bind backend");
    let addr = listener.local_addr().unwrap();
    let name = name.to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut s) = conn else { continue };
            let name = name.clone();
            std::thread::spawn(move || {
                if s.write_all(format!("{name}\n").as_bytes()).is_err() {
                    return;
                }
                let Ok(read) = s.try_clone() else { return };
                for line in BufReader::new(read).lines() {
                    let Ok(line) = line else { return };
                    if s.write_all(format!("{line}\n").as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

impl Loopback {
    fn up() -> Loopback {
        let mut dp = HostedUserspace::new(UserspaceConfig::default(), 2).expect("proxy");
        let mut backends = BTreeMap::new();
        for name in ["b1", "b2", "b3"] {
            backends.insert((name.to_string(), false), loopback_backend(name, "127.0.0.1"));
            backends.insert((name.to_string(), true), loopback_backend(name, "::1"));
        }
        let proxy = dp.dataplane_mut().expect("proxy");
        let v4 = proxy
            .register_tcp_listener(std::net::TcpListener::bind("127.0.0.1:0").expect("bind service"))
            .expect("register");
        let v6 = proxy
            .register_tcp_listener(std::net::TcpListener::bind("[::1]:0").expect("bind service"))
            .expect("register");
        Loopback {
            dp: RefCell::new(dp),
            v4,
            v6,
            backends,
            predictor: Predictor::new(Kind::Userspace),
        }
    }
}

impl Harness for Loopback {
    fn kind(&self) -> Kind {
        Kind::Userspace
    }

    fn apply(&self, st: &L4State) -> edge_l4::Applied {
        self.dp.borrow_mut().apply(st).expect("apply")
    }

    fn observe(&self) -> L4State {
        self.dp.borrow().observe().expect("observe")
    }

    fn dial(&self, svc: ServiceKey) -> std::io::Result<TcpStream> {
        TcpStream::connect_timeout(&svc.socket_addr(), IO)
    }

    fn service(&self, v6: bool) -> ServiceKey {
        if v6 { self.v6 } else { self.v4 }
    }

    fn backend(&self, name: &str, svc: ServiceKey) -> SocketAddr {
        self.backends[&(name.to_string(), svc.vip.is_ipv6())]
    }

    fn predictor(&self) -> &Predictor {
        &self.predictor
    }
}

#[test]
fn conformance_userspace_loopback() {
    conformance(&Loopback::up());
}

fn lab_name(tag: &str) -> String {
    format!("l4cf{tag}{}", std::process::id())
}

#[test]
fn conformance_userspace() {
    if !lab_ready("conformance_userspace", &["ip", "socat"]) {
        return;
    }
    conformance(&Rig::up(Kind::Userspace, &lab_name("u")));
}

#[test]
fn conformance_nftables() {
    if !lab_ready("conformance_nftables", &["ip", "socat", "nft"]) {
        return;
    }
    conformance(&Rig::up(Kind::Nftables, &lab_name("n")));
}

#[test]
fn conformance_xdp() {
    if !lab_ready("conformance_xdp", &["ip", "socat"]) {
        return;
    }
    conformance(&Rig::up(Kind::Xdp, &lab_name("x")));
}
