//! The batched UDP path (recvmmsg/sendmmsg on Linux): many queries in
//! flight at once over real 127.0.0.1 sockets, every one answered as if it
//! had come alone; RRL still engages inside a batch.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use edge_dns::{DnsOptions, RrlConfig};
use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

const WWW: &str = "www.edge.example.";

/// A query shape and what its response must be.
struct Shape {
    ask: Ask,
    rcode: ResponseCode,
    addrs: &'static [&'static str],
    /// (source, scope) echoed, or none.
    ecs: Option<(u8, u8)>,
    truncated: bool,
}

fn shapes() -> Vec<Shape> {
    let s = |ask: Ask, rcode, addrs, ecs, truncated| Shape {
        ask,
        rcode,
        addrs,
        ecs,
        truncated,
    };
    vec![
        s(
            Ask::new(WWW, RecordType::A).ecs("198.18.1.0/24"),
            ResponseCode::NoError,
            &[AMS],
            Some((24, 24)),
            false,
        ),
        s(
            Ask::new(WWW, RecordType::A).ecs("198.18.2.0/24"),
            ResponseCode::NoError,
            &[NYC],
            Some((24, 24)),
            false,
        ),
        s(
            Ask::new(WWW, RecordType::A).ecs("2001:db8:2::/56"),
            ResponseCode::NoError,
            &[NYC],
            Some((56, 56)),
            false,
        ),
        s(
            Ask::new(WWW, RecordType::A).ecs("198.18.1.77/32"),
            ResponseCode::NoError,
            &[AMS],
            Some((32, 24)),
            false,
        ),
        s(
            Ask::new("ns1.edge.example.", RecordType::A).ecs("198.18.1.0/24"),
            ResponseCode::NoError,
            &["203.0.113.53"],
            Some((24, 0)),
            false,
        ),
        s(
            Ask::new("ns1.edge.example.", RecordType::A).no_edns(),
            ResponseCode::NoError,
            &["203.0.113.53"],
            None,
            false,
        ),
        s(
            Ask::new("nope.edge.example.", RecordType::A),
            ResponseCode::NXDomain,
            &[],
            None,
            false,
        ),
        s(
            Ask::new("www.example.org.", RecordType::A),
            ResponseCode::Refused,
            &[],
            None,
            false,
        ),
        s(
            Ask::new("big.edge.example.", RecordType::TXT),
            ResponseCode::NoError,
            &[],
            None,
            true,
        ),
    ]
}

/// Sends `per_socket` queries from each of `sockets` without waiting, then
/// reads every response; returns them by (socket, id).
async fn burst(
    lab: &Lab,
    sockets: &[UdpSocket],
    per_socket: u16,
    query: impl Fn(usize, u16) -> Vec<u8>,
) -> HashMap<(usize, u16), Message> {
    for (i, s) in sockets.iter().enumerate() {
        for id in 0..per_socket {
            s.send_to(&query(i, id), lab.addr).await.unwrap();
        }
    }
    let mut got = HashMap::new();
    let mut buf = vec![0u8; 65_535];
    for (i, s) in sockets.iter().enumerate() {
        while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), s.recv(&mut buf)).await {
            let m = Message::from_vec(&buf[..n]).unwrap();
            assert!(
                got.insert((i, m.metadata.id), m).is_none(),
                "two responses to one query"
            );
            if got.keys().filter(|(j, _)| *j == i).count() == usize::from(per_socket) {
                break;
            }
        }
    }
    got
}

async fn sockets(n: usize) -> Vec<UdpSocket> {
    let mut v = Vec::new();
    for _ in 0..n {
        v.push(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    }
    v
}

#[tokio::test]
async fn every_query_of_a_burst_gets_its_own_answer() {
    let lab = start(DnsOptions {
        rrl: RrlConfig {
            responses_per_second: 0,
            ..RrlConfig::default()
        },
        ..DnsOptions::default()
    })
    .await;
    let shapes = shapes();
    let socks = sockets(4).await;
    // Waves of 4 x 24 queries: several batches each, and well within the
    // sockets' receive buffers (a lost datagram would fail the test).
    let pick = |i: usize, id: u16| (i * 7 + usize::from(id)) % shapes.len();
    let mut total = 0u64;
    for wave in 0..8u16 {
        let got = burst(&lab, &socks, 24, |i, id| {
            shapes[pick(i, id + wave)].ask.message(id)
        })
        .await;
        assert_eq!(got.len(), 4 * 24, "wave {wave}: every query answered once");
        for ((i, id), m) in &got {
            let want = &shapes[pick(*i, *id + wave)];
            let ctx = format!("wave {wave} socket {i} id {id} {:?}", want.ask);
            assert_eq!(m.metadata.response_code, want.rcode, "{ctx}");
            assert_eq!(m.metadata.truncation, want.truncated, "{ctx}");
            assert_eq!(m.queries[0].name().to_ascii(), want.ask.name, "{ctx}");
            assert_eq!(m.queries[0].query_type(), want.ask.qtype, "{ctx}");
            assert_eq!(addrs(m), want.addrs, "{ctx}");
            assert_eq!(ecs_echo(m), want.ecs, "{ctx}");
            assert_eq!(m.edns.is_some(), want.ask.edns.is_some(), "{ctx}");
        }
        total += got.len() as u64;
    }
    let metrics = lab.server.metrics();
    let counted: u64 = ["NOERROR", "NXDOMAIN", "REFUSED"]
        .iter()
        .flat_map(|r| ["A", "TXT"].map(|t| metrics.query(t, r)))
        .sum();
    assert_eq!(counted, total, "every response counted once");
    assert!(metrics.truncated.get() >= 1);
    // The fast path notes resolvers for the latency prober too.
    let me: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    assert!(lab.server.resolvers().snapshot().contains(&me));
}

#[tokio::test]
async fn rrl_engages_inside_a_batch() {
    let lab = start(DnsOptions {
        rrl: RrlConfig {
            responses_per_second: 1,
            burst: 10,
            slip: 2,
            ..RrlConfig::default()
        },
        ..DnsOptions::default()
    })
    .await;
    let ask = Ask::new(WWW, RecordType::A).ecs("198.18.1.0/24");
    // 60 queries from one /24 at once: the bucket's 10, then every second
    // limited one slips (TC=1, no records), the others are dropped.
    let socks = sockets(1).await;
    let got = burst(&lab, &socks, 60, |_, id| ask.message(id)).await;
    let full: Vec<_> = got.values().filter(|m| !m.metadata.truncation).collect();
    let slipped: Vec<_> = got.values().filter(|m| m.metadata.truncation).collect();
    assert!((10..=11).contains(&full.len()), "full answers: {}", full.len());
    for m in &full {
        assert_eq!(addrs(m), [AMS]);
        assert_eq!(ecs_echo(m), Some((24, 24)));
    }
    assert!(!slipped.is_empty(), "no TC=1 slip seen");
    for m in &slipped {
        assert!(m.answers.is_empty());
        assert_eq!(ecs_echo(m), Some((24, 24)), "a slip echoes ECS too");
    }
    let metrics = lab.server.metrics();
    assert_eq!(metrics.rrl_count("slip"), slipped.len() as u64);
    assert_eq!(
        full.len() as u64 + metrics.rrl_count("slip") + metrics.rrl_count("drop"),
        60
    );
    assert_eq!(metrics.query("A", "NOERROR"), got.len() as u64);
}

#[tokio::test]
async fn udp_loop_as_a_task_answers_the_same() {
    // DnsOptions::udp_threads off: the loop runs on the caller's runtime.
    let lab = start(DnsOptions {
        udp_threads: false,
        rrl: RrlConfig {
            responses_per_second: 0,
            ..RrlConfig::default()
        },
        ..DnsOptions::default()
    })
    .await;
    let socks = sockets(2).await;
    let ask = Ask::new(WWW, RecordType::A).ecs("198.18.2.0/24");
    let got = burst(&lab, &socks, 40, |_, id| ask.message(id)).await;
    assert_eq!(got.len(), 80);
    for m in got.values() {
        assert_eq!(addrs(m), [NYC]);
        assert_eq!(ecs_echo(m), Some((24, 24)));
    }
}

#[tokio::test]
async fn shutdown_stops_the_udp_threads() {
    let mut lab = start(DnsOptions::default()).await;
    let m = udp(lab.addr, &Ask::new(WWW, RecordType::A).ecs("198.18.1.0/24")).await;
    assert_eq!(addrs(&m), [AMS]);
    tokio::time::timeout(Duration::from_secs(5), lab.server.shutdown())
        .await
        .expect("shutdown waits for the UDP loops, which must end")
        .unwrap();
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(&Ask::new(WWW, RecordType::A).message(1), lab.addr)
        .await
        .unwrap();
    let mut buf = [0u8; 512];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), sock.recv(&mut buf))
            .await
            .is_err(),
        "answered after shutdown"
    );
}
