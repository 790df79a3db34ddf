//! SYN floods against the userspace L4 proxy: the half-open part of a flood
//! never reaches the proxy, because the node's kernel answers with SYN
//! cookies once the listener's SYN queue is full (`net.ipv4.tcp_syncookies`,
//! on by default; `edge run` warns when it is off). This test floods a node
//! namespace with spoofed SYNs and shows that a real client still gets
//! through the proxy with cookies on, and does not with them off: the
//! documented protection is what actually protects.
//!
//! ```text
//!  client ns 198.18.70.2 ══ veth ══ 198.18.70.1 node ns: proxy :9000 → backend 127.0.0.1:9100
//!  spoofed SYNs from 198.18.71.0/24 (their SYN-ACKs go back to the client ns and die there)
//! ```
//!
//! Needs root; skips otherwise (fails under EDGE_LAB=require).

use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream};
use std::process::Command;
use std::time::Duration;

use edge_l4::hosted::HostedUserspace;
use edge_l4::netns::NetnsThread;
use edge_l4::userspace::UserspaceConfig;
use edge_l4::{BackendSpec, Dataplane, L4State, Protocol, SchedulerKind, ServiceKey, ServiceSpec};
use edge_tests::lab_ready;

const NODE: Ipv4Addr = Ipv4Addr::new(198, 18, 70, 1);
const PORT: u16 = 9000;

struct Netns(Vec<String>);
impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0]).args(&args[1..]).output().expect("run");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn syncookies_sent(ns: &str) -> u64 {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "cat", "/proc/net/netstat"])
        .output()
        .expect("netstat");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut lines = text.lines();
    while let (Some(names), Some(values)) = (lines.next(), lines.next()) {
        if !names.starts_with("TcpExt:") {
            continue;
        }
        let i = names.split_whitespace().position(|n| n == "SyncookiesSent");
        return i
            .and_then(|i| values.split_whitespace().nth(i))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
    }
    0
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum: u32 = data
        .chunks(2)
        .map(|c| u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An IPv4 + TCP SYN from `src` to the node.
fn syn(src: Ipv4Addr, sport: u16, seq: u32) -> Vec<u8> {
    let mut tcp = vec![0u8; 20];
    tcp[0..2].copy_from_slice(&sport.to_be_bytes());
    tcp[2..4].copy_from_slice(&PORT.to_be_bytes());
    tcp[4..8].copy_from_slice(&seq.to_be_bytes());
    tcp[12] = 5 << 4; // data offset
    tcp[13] = 0x02; // SYN
    tcp[14..16].copy_from_slice(&64240u16.to_be_bytes());
    let mut pseudo = Vec::with_capacity(32);
    pseudo.extend_from_slice(&src.octets());
    pseudo.extend_from_slice(&NODE.octets());
    pseudo.extend_from_slice(&[0, 6, 0, 20]);
    pseudo.extend_from_slice(&tcp);
    let c = checksum(&pseudo);
    tcp[16..18].copy_from_slice(&c.to_be_bytes());
    let mut ip = vec![0u8; 20];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&40u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&src.octets());
    ip[16..20].copy_from_slice(&NODE.octets());
    let c = checksum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ip
}

/// Sends `n` SYNs from spoofed sources in 198.18.71.0/24.
fn flood(client: &NetnsThread, n: u32, round: u8) {
    client
        .run(move || {
            let s = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::RAW,
                Some(socket2::Protocol::from(255)), // IPPROTO_RAW: we write the IP header
            )
            .expect("raw socket");
            let dst = socket2::SockAddr::from(SocketAddrV4::new(NODE, 0));
            for i in 0..n {
                let src = Ipv4Addr::new(198, 18, 71, (i % 250) as u8 + 1);
                let sport = 1024 + (i / 250) as u16 + u16::from(round) * 4000;
                s.send_to(&syn(src, sport, i.wrapping_mul(2_654_435_761)), &dst)
                    .expect("send SYN");
            }
        })
        .expect("client thread");
}

/// One real client connection through the proxy: the backend's greeting,
/// or why not.
fn real_client(client: &NetnsThread) -> Result<String, String> {
    client
        .run(|| {
            let addr = SocketAddr::from((NODE, PORT));
            let mut s =
                TcpStream::connect_timeout(&addr, Duration::from_millis(2500)).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(3)))
                .map_err(|e| e.to_string())?;
            let mut buf = [0u8; 16];
            let n = s.read(&mut buf).map_err(|e| e.to_string())?;
            Ok(String::from_utf8_lossy(&buf[..n]).to_string())
        })
        .map_err(|e| e.to_string())?
}

#[test]
fn syn_cookies_keep_the_userspace_proxy_reachable_under_a_syn_flood() {
    if !lab_ready("l4_syn_flood", &["ip"]) {
        return;
    }
    let id = std::process::id() % 100_000;
    let (node, client) = (format!("edge-sfn{id}"), format!("edge-sfc{id}"));
    for ns in [&node, &client] {
        sh(&["ip", "netns", "add", ns]);
    }
    let _guard = Netns(vec![node.clone(), client.clone()]);
    sh(&[
        "ip", "-n", &node, "link", "add", "n0", "type", "veth", "peer", "name", "c0", "netns", &client,
    ]);
    sh(&["ip", "-n", &node, "addr", "add", "198.18.70.1/24", "dev", "n0"]);
    sh(&["ip", "-n", &client, "addr", "add", "198.18.70.2/24", "dev", "c0"]);
    for (ns, dev) in [(&node, "n0"), (&client, "c0")] {
        sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
        sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
    }
    // SYN-ACKs to the spoofed sources go to the client namespace, which
    // does not forward them: nobody ever completes those handshakes.
    sh(&[
        "ip",
        "-n",
        &node,
        "route",
        "add",
        "198.18.71.0/24",
        "via",
        "198.18.70.2",
    ]);
    // A small accept backlog so that the flood fills the SYN queue quickly.
    sh(&[
        "ip",
        "netns",
        "exec",
        &node,
        "sysctl",
        "-qw",
        "net.core.somaxconn=16",
        "net.ipv4.tcp_syncookies=1",
    ]);

    let node_t = NetnsThread::spawn(&node).expect("node thread");
    let client_t = NetnsThread::spawn(&client).expect("client thread");
    // Backend (greets and closes) and the proxy, both inside the node.
    node_t
        .run(|| {
            let l = std::net::TcpListener::bind("127.0.0.1:9100").expect("backend");
            std::thread::spawn(move || {
                for mut s in l.incoming().flatten() {
                    let _ = std::io::Write::write_all(&mut s, b"backend\n");
                }
            });
        })
        .expect("node thread");
    let proxy = node_t
        .run(|| {
            let mut p = HostedUserspace::new(UserspaceConfig::default(), 1).expect("proxy");
            let key = ServiceKey::new(NODE.into(), PORT, Protocol::Tcp);
            let spec = ServiceSpec::new(SchedulerKind::RoundRobin)
                .with_backend("127.0.0.1:9100".parse().expect("addr"), BackendSpec::active(1));
            p.apply(&L4State::default().with_service(key, spec))
                .expect("apply");
            p
        })
        .expect("node thread");
    assert_eq!(
        real_client(&client_t).as_deref(),
        Ok("backend\n"),
        "before the flood"
    );

    let before = syncookies_sent(&node);
    flood(&client_t, 3000, 0);
    let got = real_client(&client_t);
    let sent = syncookies_sent(&node) - before;
    eprintln!("syn flood, cookies on: real client got {got:?}; SYN cookies sent {sent}");
    assert_eq!(got.as_deref(), Ok("backend\n"), "a real client gets through");
    assert!(sent > 0, "the kernel answered the flood with cookies");

    // The same flood with cookies off: the queue stays full of half-open
    // handshakes (SYN-ACKs are retried for seconds) and real SYNs are
    // dropped. This is what the sysctl protects against.
    sh(&[
        "ip",
        "netns",
        "exec",
        &node,
        "sysctl",
        "-qw",
        "net.ipv4.tcp_syncookies=0",
    ]);
    flood(&client_t, 3000, 1);
    let got = real_client(&client_t);
    eprintln!("syn flood, cookies off: real client got {got:?}");
    assert!(
        got.is_err(),
        "without cookies the flood locks real clients out: {got:?}"
    );
    drop(proxy);
}
