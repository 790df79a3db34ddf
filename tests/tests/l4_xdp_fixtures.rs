//! Packet fixtures for the XDP program (katran style): each case is
//! `{description, input packet, expected verdict, expected output packet}`
//! and runs through the loaded program with BPF_PROG_TEST_RUN. Nothing is
//! transmitted; the program and its maps live in a namespace made by the
//! test, so the DEVMAP only ever holds that namespace's veth.
//!
//! The expected backend of every forwarded packet comes from the Rust
//! side (`ServiceTable::lookup`, i.e. `flow_hash` + `MaglevTable`), so these
//! cases also pin the C SipHash-1-3 flow hash to the Rust one: a single byte
//! of difference in the hashed tuple would send some flows elsewhere.
//!
//! Needs root; skips otherwise (fails under EDGE_LAB=require).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use edge_l4::netns::NetnsThread;
use edge_l4::xdp::{Egress, Neighbours, XdpConfig, XdpDataplane};
use edge_l4::{
    BackendSpec, Dataplane, FlowKey, L4State, Protocol, SchedulerKind, ServiceKey, ServiceSpec, ServiceTable,
    TableSize,
};
use edge_tests::lab_ready;

const XDP_PASS: u32 = 2;
const XDP_TX: u32 = 3;
const XDP_REDIRECT: u32 = 4;

const CLIENT_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
const NODE_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];
const LAN_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x03];
const B1_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x11];
const B2_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x12];
const B3_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x13];

struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?} failed");
}

fn csum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// Ethernet + IPv4/IPv6 + TCP (SYN) or UDP, with `payload`.
fn packet(src: SocketAddr, dst: SocketAddr, proto: Protocol, payload: &[u8]) -> Vec<u8> {
    let mut l4 = Vec::new();
    l4.extend_from_slice(&src.port().to_be_bytes());
    l4.extend_from_slice(&dst.port().to_be_bytes());
    match proto {
        Protocol::Tcp => {
            l4.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0]);
        }
        Protocol::Udp => {
            l4.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
            l4.extend_from_slice(&[0, 0]);
        }
    }
    l4.extend_from_slice(payload);
    let mut p = Vec::new();
    p.extend_from_slice(&NODE_MAC);
    p.extend_from_slice(&CLIENT_MAC);
    match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            p.extend_from_slice(&[0x08, 0x00]);
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&((20 + l4.len()) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto.number(), 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = csum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(&h);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&[0x86, 0xdd]);
            p.extend_from_slice(&[0x60, 0, 0, 0]);
            p.extend_from_slice(&(l4.len() as u16).to_be_bytes());
            p.extend_from_slice(&[proto.number(), 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    p.extend_from_slice(&l4);
    p
}

/// An IPv4 frame from [`packet`] with a 4-byte NOP option list inserted
/// (IHL 5 → 6), lengths and header checksum fixed.
fn with_ipv4_option(p: &[u8]) -> Vec<u8> {
    let mut out = p[..14 + 20].to_vec();
    out.extend_from_slice(&[1, 1, 1, 0]); // NOP, NOP, NOP, end of options
    out.extend_from_slice(&p[14 + 20..]);
    out[14] = 0x46;
    let total = (out.len() - 14) as u16;
    out[16..18].copy_from_slice(&total.to_be_bytes());
    out[24..26].copy_from_slice(&[0, 0]);
    let c = csum(&out[14..14 + 24]);
    out[24..26].copy_from_slice(&c.to_be_bytes());
    out
}

/// An ICMP "fragmentation needed" (v4) or ICMPv6 "packet too big" from a
/// router at `from` to the VIP, quoting the first bytes of the packet the
/// backend sent for the flow `client -> vip` (that is, `vip -> client`).
fn too_big(from: IpAddr, client: SocketAddr, vip: SocketAddr, proto: Protocol) -> Vec<u8> {
    // The quoted packet: IP header + the first 8 bytes of TCP/UDP.
    let quoted = packet(vip, client, proto, b"");
    let quoted_ip = match vip {
        SocketAddr::V4(_) => &quoted[14..14 + 20 + 8],
        SocketAddr::V6(_) => &quoted[14..14 + 40 + 8],
    };
    let mut icmp = match vip {
        SocketAddr::V4(_) => vec![3, 4, 0, 0, 0, 0, 0x05, 0x78], // frag needed, MTU 1400
        SocketAddr::V6(_) => vec![2, 0, 0, 0, 0, 0, 0x05, 0x78], // packet too big, MTU 1400
    };
    icmp.extend_from_slice(quoted_ip);
    let mut p = Vec::new();
    p.extend_from_slice(&NODE_MAC);
    p.extend_from_slice(&CLIENT_MAC);
    match (from, vip.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let c = csum(&icmp);
            icmp[2..4].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(&[0x08, 0x00]);
            let mut h = vec![0x45, 0];
            h.extend_from_slice(&((20 + icmp.len()) as u16).to_be_bytes());
            h.extend_from_slice(&[0, 1, 0, 0, 64, 1, 0, 0]);
            h.extend_from_slice(&s.octets());
            h.extend_from_slice(&d.octets());
            let c = csum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            p.extend_from_slice(&h);
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => {
            p.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            p.extend_from_slice(&(icmp.len() as u16).to_be_bytes());
            p.extend_from_slice(&[58, 64]);
            p.extend_from_slice(&s.octets());
            p.extend_from_slice(&d.octets());
        }
        _ => panic!("mixed families"),
    }
    p.extend_from_slice(&icmp);
    p
}

/// `input` with the MACs rewritten as the program must.
fn rewritten(input: &[u8], dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    let mut p = input.to_vec();
    p[..6].copy_from_slice(&dst);
    p[6..12].copy_from_slice(&src);
    p
}

/// Neighbour answers the test can change while the dataplane runs.
#[derive(Clone, Default)]
struct SharedNeighbours(Arc<Mutex<BTreeMap<IpAddr, Egress>>>);

impl Neighbours for SharedNeighbours {
    fn resolve(&mut self, ip: IpAddr) -> Option<Egress> {
        self.0.lock().unwrap().get(&ip).copied()
    }
}

/// Flows of removed backends are cut this long after the removal.
const DRAIN: Duration = Duration::from_secs(2);

struct Fixture {
    description: String,
    input: Vec<u8>,
    ingress: u32,
    verdict: u32,
    output: Vec<u8>,
}

fn run_all(dp: &XdpDataplane, fixtures: &[Fixture]) {
    for f in fixtures {
        let (verdict, out) = dp
            .test_run(&f.input, f.ingress)
            .unwrap_or_else(|e| panic!("{}: {e}", f.description));
        assert_eq!(verdict, f.verdict, "{}: verdict", f.description);
        assert_eq!(out, f.output, "{}: output packet", f.description);
    }
}

fn v4(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

#[test]
fn xdp_packet_fixtures() {
    if !lab_ready("xdp_packet_fixtures", &["ip"]) {
        return;
    }
    let ns = format!("edge-l4fx{}", std::process::id());
    ip(&["netns", "add", &ns]);
    let _ns = Netns(ns.clone());
    ip(&["-n", &ns, "link", "set", "lo", "up"]);
    ip(&[
        "-n", &ns, "link", "add", "fx-up", "type", "veth", "peer", "name", "fx-lan",
    ]);
    ip(&["-n", &ns, "link", "set", "fx-up", "up"]);
    ip(&["-n", &ns, "link", "set", "fx-lan", "up"]);
    let worker = NetnsThread::spawn(&ns).expect("enter namespace");
    worker.run(fixtures_in_namespace).expect("namespace thread");
}

fn ifindex(dev: &str) -> u32 {
    let out = Command::new("ip")
        .args(["-j", "link", "show", "dev", dev])
        .output()
        .expect("ip link");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    v[0]["ifindex"].as_u64().expect("ifindex") as u32
}

/// Runs inside the test namespace (NetnsThread).
fn fixtures_in_namespace() {
    let up = ifindex("fx-up");
    let lan = ifindex("fx-lan");
    let b1: IpAddr = "198.19.10.11".parse().unwrap();
    let b2: IpAddr = "198.19.10.12".parse().unwrap();
    let b3: IpAddr = "198.19.10.13".parse().unwrap();
    let b6: IpAddr = "2001:db8:10::11".parse().unwrap();
    let mut neigh = BTreeMap::new();
    for (ip, mac) in [(b1, B1_MAC), (b2, B2_MAC), (b6, B1_MAC)] {
        neigh.insert(
            ip,
            Egress {
                ifindex: lan,
                src_mac: LAN_MAC,
                dst_mac: Some(mac),
            },
        );
    }
    // b3 sits on the uplink itself (hairpin: XDP_TX) ...
    neigh.insert(
        b3,
        Egress {
            ifindex: up,
            src_mac: NODE_MAC,
            dst_mac: Some(B3_MAC),
        },
    );
    // ... and 198.19.10.14 has no MAC yet.
    let unresolved: IpAddr = "198.19.10.14".parse().unwrap();
    neigh.insert(
        unresolved,
        Egress {
            ifindex: lan,
            src_mac: LAN_MAC,
            dst_mac: None,
        },
    );
    let size = TableSize::new(251).unwrap();
    let cfg = XdpConfig {
        table_size: size,
        drain_timeout: DRAIN,
        ..XdpConfig::default()
    };
    let neighbours = SharedNeighbours(Arc::new(Mutex::new(neigh)));
    let mut dp = XdpDataplane::with_neighbours(cfg, Box::new(neighbours.clone())).expect("load xdp");

    let vip = ServiceKey::new("203.0.113.10".parse().unwrap(), 8080, Protocol::Tcp);
    let vip6 = ServiceKey::new("2001:db8:ffff::10".parse().unwrap(), 53, Protocol::Udp);
    let hairpin = ServiceKey::new("203.0.113.11".parse().unwrap(), 80, Protocol::Tcp);
    let dark = ServiceKey::new("203.0.113.12".parse().unwrap(), 80, Protocol::Tcp);
    let nomac = ServiceKey::new("203.0.113.13".parse().unwrap(), 80, Protocol::Tcp);
    let spec = |ips: &[IpAddr], port: u16| {
        ips.iter().fold(ServiceSpec::new(SchedulerKind::Maglev), |s, ip| {
            s.with_backend(SocketAddr::new(*ip, port), BackendSpec::active(1))
        })
    };
    let state = L4State::default()
        .with_service(vip, spec(&[b1, b2], 8080))
        .with_service(vip6, spec(&[b6], 53))
        .with_service(hairpin, spec(&[b3], 80))
        .with_service(dark, ServiceSpec::new(SchedulerKind::Maglev))
        .with_service(nomac, spec(&[unresolved], 80));
    let applied = dp.apply(&state).expect("apply");
    assert!(!applied.is_noop());
    assert!(
        dp.apply(&state).expect("apply again").is_noop(),
        "apply is idempotent"
    );
    assert_eq!(
        dp.observe().expect("observe"),
        state,
        "observe reads the maps back"
    );
    assert_eq!(dp.unresolved(), vec![unresolved]);

    let mac_of = |ip: IpAddr| if ip == b1 { B1_MAC } else { B2_MAC };
    let table = ServiceTable::build(vip, &state.services[&vip], size).unwrap();
    let mut fixtures = Vec::new();
    // Flow-hash equivalence: 300 flows, each must reach the backend the Rust
    // table names for it.
    let mut per_backend = BTreeMap::new();
    for port in 40_000..40_300u16 {
        let src = v4(&format!("198.18.1.2:{port}"));
        let flow = FlowKey {
            src,
            dst: vip.socket_addr(),
            protocol: Protocol::Tcp,
        };
        let want = table.lookup(&flow).expect("backend");
        *per_backend.entry(want).or_insert(0) += 1;
        let input = packet(src, vip.socket_addr(), Protocol::Tcp, b"");
        fixtures.push(Fixture {
            description: format!("IPv4 TCP SYN {src} -> VIP: redirected to {want} on the LAN"),
            output: rewritten(&input, mac_of(want.ip()), LAN_MAC),
            input,
            ingress: up,
            verdict: XDP_REDIRECT,
        });
    }
    assert_eq!(per_backend.len(), 2, "both backends get flows: {per_backend:?}");
    // IPv4 with options (IHL 6): the ports sit 4 bytes further in.
    let src = v4("198.18.1.2:41007");
    let flow = FlowKey {
        src,
        dst: vip.socket_addr(),
        protocol: Protocol::Tcp,
    };
    let want = table.lookup(&flow).expect("backend");
    let input = with_ipv4_option(&packet(src, vip.socket_addr(), Protocol::Tcp, b""));
    fixtures.push(Fixture {
        description: "IPv4 with a header option: ports found after the options".into(),
        output: rewritten(&input, mac_of(want.ip()), LAN_MAC),
        input,
        ingress: up,
        verdict: XDP_REDIRECT,
    });
    // Path MTU: a router's "fragmentation needed" about the backend's reply
    // of flow 198.18.1.2:41123 (no connection entry yet) goes to that flow's backend.
    let client = v4("198.18.1.2:41123");
    let flow = FlowKey {
        src: client,
        dst: vip.socket_addr(),
        protocol: Protocol::Tcp,
    };
    let want = table.lookup(&flow).expect("backend");
    let input = too_big(
        "198.18.1.1".parse().unwrap(),
        client,
        vip.socket_addr(),
        Protocol::Tcp,
    );
    fixtures.push(Fixture {
        description: "ICMP fragmentation needed about a flow: to its backend".into(),
        output: rewritten(&input, mac_of(want.ip()), LAN_MAC),
        input,
        ingress: up,
        verdict: XDP_REDIRECT,
    });
    let input = too_big(
        "2001:db8:1::1".parse().unwrap(),
        "[2001:db8:1::2]:5353".parse().unwrap(),
        vip6.socket_addr(),
        Protocol::Udp,
    );
    fixtures.push(Fixture {
        description: "ICMPv6 packet too big about a flow: to its backend".into(),
        output: rewritten(&input, B1_MAC, LAN_MAC),
        input,
        ingress: up,
        verdict: XDP_REDIRECT,
    });
    let mut other = too_big(
        "198.18.1.1".parse().unwrap(),
        client,
        vip.socket_addr(),
        Protocol::Tcp,
    );
    other[14 + 20] = 11; // time exceeded: not ours to forward
    fixtures.push(Fixture {
        description: "other ICMP to the VIP: left to the kernel".into(),
        output: other.clone(),
        input: other,
        ingress: up,
        verdict: XDP_PASS,
    });
    let v6src: SocketAddr = "[2001:db8:1::2]:5353".parse().unwrap();
    let input = packet(v6src, vip6.socket_addr(), Protocol::Udp, b"query");
    fixtures.push(Fixture {
        description: "IPv6 UDP to the v6 VIP: redirected to the v6 backend".into(),
        output: rewritten(&input, B1_MAC, LAN_MAC),
        input,
        ingress: up,
        verdict: XDP_REDIRECT,
    });
    let input = packet(v4("198.18.1.2:40000"), hairpin.socket_addr(), Protocol::Tcp, b"");
    fixtures.push(Fixture {
        description: "backend on the ingress interface: XDP_TX back out".into(),
        output: rewritten(&input, B3_MAC, NODE_MAC),
        input,
        ingress: up,
        verdict: XDP_TX,
    });
    let passes: Vec<(&str, Vec<u8>)> = vec![
        (
            "not a VIP",
            packet(v4("198.18.1.2:40000"), v4("198.18.11.2:8080"), Protocol::Tcp, b""),
        ),
        (
            "VIP, other port",
            packet(
                v4("198.18.1.2:40000"),
                v4("203.0.113.10:8081"),
                Protocol::Tcp,
                b"",
            ),
        ),
        (
            "VIP, other protocol",
            packet(
                v4("198.18.1.2:40000"),
                v4("203.0.113.10:8080"),
                Protocol::Udp,
                b"x",
            ),
        ),
        (
            "service without backends",
            packet(v4("198.18.1.2:40000"), dark.socket_addr(), Protocol::Tcp, b""),
        ),
        (
            "backend MAC unresolved",
            packet(v4("198.18.1.2:40000"), nomac.socket_addr(), Protocol::Tcp, b""),
        ),
        ("ARP", {
            let mut p = packet(v4("198.18.1.2:1"), vip.socket_addr(), Protocol::Tcp, b"");
            p[12..14].copy_from_slice(&[0x08, 0x06]);
            p
        }),
        ("truncated IPv4 header", {
            let p = packet(v4("198.18.1.2:40000"), vip.socket_addr(), Protocol::Tcp, b"");
            p[..14 + 12].to_vec()
        }),
        ("IPv4 fragment to the VIP", {
            let mut p = packet(v4("198.18.1.2:40000"), vip.socket_addr(), Protocol::Tcp, b"");
            p[14 + 6] = 0x20; // more fragments
            p
        }),
        // BPF_PROG_TEST_RUN refuses frames shorter than an Ethernet header,
        // so the shortest case is a bare header announcing IPv4.
        ("Ethernet header only", {
            let p = packet(v4("198.18.1.2:40000"), vip.socket_addr(), Protocol::Tcp, b"");
            p[..14].to_vec()
        }),
    ];
    for (what, input) in passes {
        fixtures.push(Fixture {
            description: format!("{what}: left to the kernel unchanged"),
            output: input.clone(),
            input,
            ingress: up,
            verdict: XDP_PASS,
        });
    }
    let before = dp.stats().expect("stats");
    run_all(&dp, &fixtures);
    let after = dp.stats().expect("stats");
    assert_eq!(after.redirect.packets - before.redirect.packets, 304);
    assert_eq!(after.icmp_too_big.packets - before.icmp_too_big.packets, 2);
    assert_eq!(after.tx.packets - before.tx.packets, 1);
    assert_eq!(after.pass_unresolved.packets - before.pass_unresolved.packets, 1);
    assert_eq!(after.pass_no_backend.packets - before.pass_no_backend.packets, 1);
    assert_eq!(after.pass_unparsed.packets - before.pass_unparsed.packets, 1);
    // 300 + options + v6 + hairpin, plus the unresolved one: its flow is
    // placed (and remembered) even though the packet goes to the kernel
    // until the MAC is known.
    assert_eq!(after.conn_new.packets - before.conn_new.packets, 304);
    assert_eq!(dp.conn_count(), 304);

    // Remove b2: flows already on b2 stay there (connection table), new
    // flows that the old table gave b2 now go to b1.
    let on_b2: Vec<SocketAddr> = (40_000..40_300u16)
        .map(|p| v4(&format!("198.18.1.2:{p}")))
        .filter(|src| {
            table.lookup(&FlowKey {
                src: *src,
                dst: vip.socket_addr(),
                protocol: Protocol::Tcp,
            }) == Some(SocketAddr::new(b2, 8080))
        })
        .collect();
    assert!(!on_b2.is_empty());
    let shrunk = state.clone().with_service(vip, spec(&[b1], 8080));
    let applied = dp.apply(&shrunk).expect("apply without b2");
    assert_eq!(applied.changes.len(), 1, "{:?}", applied.changes);
    assert_eq!(dp.observe().unwrap(), shrunk);
    let mut moved = Vec::new();
    for src in &on_b2 {
        let established = packet(*src, vip.socket_addr(), Protocol::Tcp, b"more data");
        moved.push(Fixture {
            description: format!("established flow {src} stays on removed b2"),
            output: rewritten(&established, B2_MAC, LAN_MAC),
            input: established,
            ingress: up,
            verdict: XDP_REDIRECT,
        });
        let mut fresh_src = *src;
        fresh_src.set_ip("198.18.1.3".parse().unwrap());
        let fresh = packet(fresh_src, vip.socket_addr(), Protocol::Tcp, b"");
        moved.push(Fixture {
            description: format!("new flow {fresh_src} goes to b1 only"),
            output: rewritten(&fresh, B1_MAC, LAN_MAC),
            input: fresh,
            ingress: up,
            verdict: XDP_REDIRECT,
        });
    }
    run_all(&dp, &moved);

    // The drain timeout passes: the next apply (nothing else changes) cuts
    // b2's flows, which Maglev now places on b1.
    std::thread::sleep(DRAIN + Duration::from_millis(200));
    assert!(
        dp.apply(&shrunk)
            .expect("apply after the drain timeout")
            .is_noop()
    );
    let cut: Vec<Fixture> = on_b2
        .iter()
        .map(|src| {
            let p = packet(*src, vip.socket_addr(), Protocol::Tcp, b"after drain");
            Fixture {
                description: format!("flow {src} of drained-out b2 re-placed on b1"),
                output: rewritten(&p, B1_MAC, LAN_MAC),
                input: p,
                ingress: up,
                verdict: XDP_REDIRECT,
            }
        })
        .collect();
    run_all(&dp, &cut);

    // b1 moves to another MAC: refresh_neighbours picks it up.
    const B1_NEW_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x21];
    neighbours.0.lock().unwrap().get_mut(&b1).unwrap().dst_mac = Some(B1_NEW_MAC);
    assert_eq!(dp.refresh_neighbours().expect("refresh"), 1);
    let p = packet(v4("198.18.1.9:1234"), vip.socket_addr(), Protocol::Tcp, b"");
    run_all(
        &dp,
        &[Fixture {
            description: "after the neighbour change, frames carry b1's new MAC".into(),
            output: rewritten(&p, B1_NEW_MAC, LAN_MAC),
            input: p.clone(),
            ingress: up,
            verdict: XDP_REDIRECT,
        }],
    );

    // b1's neighbour entry expires (nothing resolves it now): a refresh
    // keeps the last MAC instead of sending b1's flows to the kernel.
    neighbours.0.lock().unwrap().get_mut(&b1).unwrap().dst_mac = None;
    assert_eq!(dp.refresh_neighbours().expect("refresh"), 0);
    assert!(
        !dp.unresolved().contains(&b1),
        "b1 still counts as resolved: {:?}",
        dp.unresolved()
    );
    run_all(
        &dp,
        &[Fixture {
            description: "an unresolvable refresh keeps b1's last MAC".into(),
            output: rewritten(&p, B1_NEW_MAC, LAN_MAC),
            input: p,
            ingress: up,
            verdict: XDP_REDIRECT,
        }],
    );
}
