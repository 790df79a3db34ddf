//! One conformance table for every L4 dataplane: the same cases run against
//! `userspace` (always built), `nftables` and `xdp`, each in its own lab
//! of network namespaces:
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
//! Needs root, `socat` and `nft`; skips otherwise (fails under
//! EDGE_LAB=require).

use std::cell::RefCell;
use std::collections::BTreeMap;
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

fn state(backends: &[(&str, BackendSpec)]) -> L4State {
    let spec = backends
        .iter()
        .fold(ServiceSpec::new(SchedulerKind::Maglev), |s, (n, b)| {
            s.with_backend(backend_addr(n), *b)
        });
    L4State::default().with_service(service(), spec)
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

type Shared = Arc<Mutex<Option<Box<dyn Dataplane>>>>;

/// A lab with the dataplane `kind` running in its node namespace.
struct Rig {
    kind: Kind,
    tables: RefCell<Vec<(ServiceKey, ServiceSpec, ServiceTable)>>,
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
            tables: RefCell::new(Vec::new()),
            dp,
            node,
            client,
            _lab: lab,
            _dir: dir,
        }
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

    /// The backend this dataplane must pick for a new flow.
    fn predict(&self, st: &L4State, svc: ServiceKey, src: SocketAddr) -> SocketAddr {
        let spec = &st.services[&svc];
        let flow = FlowKey {
            src,
            dst: svc.socket_addr(),
            protocol: Protocol::Tcp,
        };
        let size = TableSize::default();
        // Building a 65537-slot table per connection would dominate the
        // test's run time in debug builds: keep the ones already built.
        let mut tables = self.tables.borrow_mut();
        let i = match tables.iter().position(|(k, s, _)| *k == svc && s == spec) {
            Some(i) => i,
            None => {
                tables.push((svc, spec.clone(), ServiceTable::build(svc, spec, size).unwrap()));
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

    fn connect(&self, svc: ServiceKey) -> Conn {
        let vip = svc.socket_addr();
        let stream = self
            .client
            .run(move || TcpStream::connect_timeout(&vip, IO))
            .unwrap()
            .unwrap_or_else(|e| panic!("{:?}: connect to the VIP: {e}", self.kind));
        stream.set_read_timeout(Some(IO)).unwrap();
        let src = stream.local_addr().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut name = String::new();
        reader
            .read_line(&mut name)
            .unwrap_or_else(|e| panic!("{:?}: greeting on {src}: {e}", self.kind));
        let name = name.trim().to_string();
        assert!(
            !name.is_empty(),
            "{:?}: {src}: connection closed before the greeting",
            self.kind
        );
        Conn {
            backend: backend_of(svc, &name),
            src,
            stream,
            reader,
        }
    }

    /// Opens `n` connections and checks each against the prediction.
    fn open_checked(&self, st: &L4State, n: usize, what: &str) -> Vec<Conn> {
        self.open_checked_on(service(), st, n, what)
    }

    fn open_checked_on(&self, svc: ServiceKey, st: &L4State, n: usize, what: &str) -> Vec<Conn> {
        (0..n)
            .map(|_| {
                let c = self.connect(svc);
                assert_eq!(
                    c.backend,
                    self.predict(st, svc, c.src),
                    "{:?} {what}: flow {}",
                    self.kind,
                    c.src
                );
                c
            })
            .collect()
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

fn conformance(kind: Kind, lab_name: &str) {
    let rig = Rig::up(kind, lab_name);
    let all = state(&active(&["b1", "b2", "b3"]));

    // 1. Every flow lands where the Maglev table says; all backends used.
    assert!(!rig.apply(&all).is_noop());
    let conns = rig.open_checked(&all, 60, "flows follow the table");
    let used: std::collections::BTreeSet<SocketAddr> = conns.iter().map(|c| c.backend).collect();
    assert_eq!(used.len(), 3, "{kind:?}: 60 flows over 3 backends used {used:?}");
    drop(conns);

    // 2. Idempotent apply; observe reads the state back.
    assert!(
        rig.apply(&all).is_noop(),
        "{kind:?}: second apply changed something"
    );
    assert_eq!(rig.observe(), all, "{kind:?}: observe");

    // 3. Add a backend: open connections keep working, new flows follow
    // the new table.
    let two = state(&active(&["b1", "b2"]));
    rig.apply(&two);
    let mut before = rig.open_checked(&two, 30, "two backends");
    let applied = rig.apply(&all);
    assert_eq!(applied.changes.len(), 1, "{kind:?}: {:?}", applied.changes);
    for c in &mut before {
        c.echo(kind, "open across add");
    }
    let after = rig.open_checked(&all, 40, "after adding b3");
    assert!(
        after.iter().any(|c| c.backend == backend_addr("b3")),
        "{kind:?}: b3 got no new flow"
    );
    drop((before, after));

    // 4. Remove a backend: its established connections keep working, new
    // flows never go there.
    let mut open = rig.open_checked(&all, 40, "before removing b2");
    assert!(
        open.iter().any(|c| c.backend == backend_addr("b2")),
        "{kind:?}: no flow on b2"
    );
    let without_b2 = state(&active(&["b1", "b3"]));
    rig.apply(&without_b2);
    for c in &mut open {
        c.echo(kind, "established across removal");
    }
    let fresh = rig.open_checked(&without_b2, 40, "after removing b2");
    assert!(fresh.iter().all(|c| c.backend != backend_addr("b2")));
    drop((open, fresh));

    // 5. Drain: b1 stays listed but takes no new flows; its established
    // connections keep working.
    rig.apply(&all);
    let mut open = rig.open_checked(&all, 40, "before draining b1");
    assert!(
        open.iter().any(|c| c.backend == backend_addr("b1")),
        "{kind:?}: no flow on b1"
    );
    let drained = state(&[
        ("b1", BackendSpec::draining(1)),
        ("b2", BackendSpec::active(1)),
        ("b3", BackendSpec::active(1)),
    ]);
    rig.apply(&drained);
    assert_eq!(rig.observe(), drained, "{kind:?}: observe while draining");
    for c in &mut open {
        c.echo(kind, "established while draining");
    }
    let fresh = rig.open_checked(&drained, 40, "while b1 drains");
    assert!(fresh.iter().all(|c| c.backend != backend_addr("b1")));
    drop((open, fresh));

    // 6. IPv6: a second service on the v6 VIP over the backends' v6
    // addresses, next to the v4 one.
    let spec6 = BACKENDS
        .iter()
        .fold(ServiceSpec::new(SchedulerKind::Maglev), |s, (n, _)| {
            s.with_backend(backend_addr6(n), BackendSpec::active(1))
        });
    let dual = all.clone().with_service(service6(), spec6);
    rig.apply(&dual);
    assert_eq!(rig.observe(), dual, "{kind:?}: observe with the v6 service");
    let mut v6 = rig.open_checked_on(service6(), &dual, 40, "IPv6 flows follow the table");
    let used: std::collections::BTreeSet<SocketAddr> = v6.iter().map(|c| c.backend).collect();
    assert_eq!(used.len(), 3, "{kind:?}: 40 v6 flows used {used:?}");
    for c in &mut v6 {
        c.echo(kind, "IPv6 round trip");
    }
    let v4 = rig.open_checked(&dual, 10, "v4 next to v6");
    drop((v6, v4));
    drop(rig);
}

fn lab_name(tag: &str) -> String {
    format!("l4cf{tag}{}", std::process::id())
}

#[test]
fn conformance_userspace() {
    if !lab_ready("conformance_userspace", &["ip", "socat"]) {
        return;
    }
    conformance(Kind::Userspace, &lab_name("u"));
}

#[test]
fn conformance_nftables() {
    if !lab_ready("conformance_nftables", &["ip", "socat", "nft"]) {
        return;
    }
    conformance(Kind::Nftables, &lab_name("n"));
}

#[test]
fn conformance_xdp() {
    if !lab_ready("conformance_xdp", &["ip", "socat"]) {
        return;
    }
    conformance(Kind::Xdp, &lab_name("x"));
}
