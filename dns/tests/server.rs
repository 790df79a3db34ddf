//! The server on real 127.0.0.1 sockets, queried with hickory-proto messages
//! over UDP and TCP.

mod common;

use std::net::IpAddr;

use common::*;
use edge_dns::{DnsOptions, DnsView, RrlConfig, SiteState};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{RData, RecordType};

const WWW: &str = "www.edge.example.";

fn site(up: bool, drained: bool) -> SiteState {
    SiteState {
        up,
        drained,
        ..SiteState::default()
    }
}

#[tokio::test]
async fn geo_answer_follows_ecs_subnet_and_echoes_scope() {
    let lab = start(DnsOptions::default()).await;
    let ams = udp(lab.addr, &Ask::new(WWW, RecordType::A).ecs("198.18.1.0/24")).await;
    assert_eq!(ams.metadata.response_code, ResponseCode::NoError);
    assert!(ams.metadata.authoritative);
    assert!(!ams.metadata.recursion_available);
    assert_eq!(addrs(&ams), [AMS]);
    assert_eq!(ams.answers[0].ttl, 20);
    assert_eq!(ecs_echo(&ams), Some((24, 24)));

    let nyc = udp(lab.addr, &Ask::new(WWW, RecordType::A).ecs("198.18.2.0/24")).await;
    assert_eq!(addrs(&nyc), [NYC]);
    assert_eq!(ecs_echo(&nyc), Some((24, 24)));

    // IPv6 client subnets locate too; the /64 of the database is capped at
    // the /56 we use.
    let v6 = udp(lab.addr, &Ask::new(WWW, RecordType::A).ecs("2001:db8:2::/56")).await;
    assert_eq!(addrs(&v6), [NYC]);
    assert_eq!(ecs_echo(&v6), Some((56, 56)));

    // A /32 source is used as its /24 only, and the scope never claims more.
    let host = udp(lab.addr, &Ask::new(WWW, RecordType::A).ecs("198.18.1.77/32")).await;
    assert_eq!(addrs(&host), [AMS]);
    assert_eq!(ecs_echo(&host), Some((32, 24)));

    // A static record does not depend on the client: scope 0.
    let ns1 = udp(
        lab.addr,
        &Ask::new("ns1.edge.example.", RecordType::A).ecs("198.18.1.0/24"),
    )
    .await;
    assert_eq!(addrs(&ns1), ["203.0.113.53"]);
    assert_eq!(ecs_echo(&ns1), Some((24, 0)));

    // Source prefix 0 is the resolver's opt-out: answer, scope 0.
    let optout = udp(lab.addr, &Ask::new(WWW, RecordType::A).ecs("0.0.0.0/0")).await;
    assert_eq!(addrs(&optout).len(), 1);
    assert_eq!(ecs_echo(&optout), Some((0, 0)));

    // Without ECS there is nothing to echo.
    let plain = udp(lab.addr, &Ask::new(WWW, RecordType::A)).await;
    assert_eq!(ecs_echo(&plain), None);
    assert_eq!(lab.server.metrics().ecs_queries.get(), 6);
}

#[tokio::test]
async fn health_drain_and_fail_open_flip_answers_immediately() {
    let lab = start(DnsOptions::default()).await;
    let ask = Ask::new(WWW, RecordType::A).ecs("198.18.1.0/24");
    assert_eq!(addrs(&udp(lab.addr, &ask).await), [AMS]);

    let mut view = DnsView::default();
    view.sites.insert("ams".into(), site(false, false));
    lab.view.set(view);
    let m = udp(lab.addr, &ask).await;
    assert_eq!(addrs(&m), [NYC]);
    // Only one candidate was left: the answer no longer depends on the client.
    assert_eq!(ecs_echo(&m), Some((24, 0)));

    let mut view = DnsView::default();
    view.sites.insert("ams".into(), site(true, true));
    lab.server.set_view(view);
    assert_eq!(addrs(&udp(lab.addr, &ask).await), [NYC]);

    let mut view = DnsView::default();
    view.sites.insert("ams".into(), site(false, false));
    view.sites.insert("nyc".into(), site(false, false));
    lab.view.set(view);
    let m = udp(lab.addr, &ask).await;
    assert_eq!(addrs(&m), [AMS], "fail-open still ranks by geo");
    assert_eq!(lab.server.metrics().fail_open.get(), 1);

    lab.view.set(DnsView::default());
    assert_eq!(addrs(&udp(lab.addr, &ask).await), [AMS]);
    assert_eq!(lab.server.metrics().site_answers("ams"), 3);
    assert_eq!(lab.server.metrics().site_answers("nyc"), 2);
}

#[tokio::test]
async fn measured_latency_overrides_geo_for_that_prefix_only() {
    let lab = start(DnsOptions::default()).await;
    let mut view = DnsView::default();
    let client: IpAddr = "198.18.1.1".parse().unwrap();
    view.set_rtt(client, "ams", 40_000);
    view.set_rtt(client, "nyc", 3_000);
    lab.view.set(view);
    let m = udp(lab.addr, &Ask::new(WWW, RecordType::A).ecs("198.18.1.0/24")).await;
    assert_eq!(addrs(&m), [NYC]);
    assert_eq!(ecs_echo(&m), Some((24, 24)));
    let m = udp(lab.addr, &Ask::new(WWW, RecordType::A).ecs("198.18.2.0/24")).await;
    assert_eq!(addrs(&m), [NYC]);
    let m = udp(lab.addr, &Ask::new(WWW, RecordType::A).ecs("203.0.113.0/24")).await;
    assert_eq!(addrs(&m), [AMS], "no RTT for this prefix: geo decides");
}

#[tokio::test]
async fn refused_nxdomain_nodata_and_static_types() {
    let lab = start(DnsOptions::default()).await;
    let m = udp(lab.addr, &Ask::new("example.org.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    assert!(!m.metadata.authoritative && !m.metadata.recursion_available);
    assert!(m.answers.is_empty());

    let m = udp(lab.addr, &Ask::new("nope.edge.example.", RecordType::A)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);
    assert_eq!(m.authorities[0].ttl, 60, "negative TTL is min(SOA TTL, MINIMUM)");

    let m = udp(lab.addr, &Ask::new("ns1.edge.example.", RecordType::AAAA)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), RecordType::SOA);

    // GSLB name, type it has no data for (the candidates are IPv4 only).
    for t in [RecordType::AAAA, RecordType::TXT] {
        let m = udp(lab.addr, &Ask::new(WWW, t)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{t}");
        assert!(m.answers.is_empty(), "{t}");
        assert_eq!(m.authorities[0].record_type(), RecordType::SOA, "{t}");
    }

    for (name, t, want) in [
        (
            "edge.example.",
            RecordType::SOA,
            "ns1.edge.example. hostmaster.edge.example. 1",
        ),
        ("edge.example.", RecordType::NS, "ns1.edge.example."),
        ("edge.example.", RecordType::MX, "10 mx1.edge.example."),
        ("edge.example.", RecordType::CAA, "ca.example.net"),
        ("edge.example.", RecordType::TXT, "v=spf1 -all"),
        (
            "_sip._udp.edge.example.",
            RecordType::SRV,
            "1 10 5060 anycast.edge.example.",
        ),
        ("anycast.edge.example.", RecordType::AAAA, "2001:db8:ffff::10"),
    ] {
        let m = udp(lab.addr, &Ask::new(name, t)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name} {t}");
        let got = m.answers.first().map(|r| r.data.to_string()).unwrap_or_default();
        assert!(got.contains(want), "{name} {t}: {got}");
    }

    // In-zone targets of NS, MX and SRV come with their addresses.
    for (name, t, glue) in [
        ("edge.example.", RecordType::NS, "203.0.113.53"),
        ("edge.example.", RecordType::MX, "203.0.113.25"),
        ("_sip._udp.edge.example.", RecordType::SRV, "2001:db8:ffff::10"),
    ] {
        let m = udp(lab.addr, &Ask::new(name, t)).await;
        let extra: Vec<String> = m.additionals.iter().map(|r| r.data.to_string()).collect();
        assert!(extra.iter().any(|a| a == glue), "{name} {t}: {extra:?}");
    }

    // CNAME into a GSLB name: the chain and the steered address.
    let m = udp(
        lab.addr,
        &Ask::new("web.edge.example.", RecordType::A).ecs("198.18.2.0/24"),
    )
    .await;
    assert_eq!(m.answers[0].record_type(), RecordType::CNAME);
    assert_eq!(addrs(&m), [NYC]);
    assert_eq!(ecs_echo(&m), Some((24, 24)));
}

#[tokio::test]
async fn tcp_answers_like_udp() {
    let lab = start(DnsOptions::default()).await;
    let m = tcp(lab.addr, &Ask::new(WWW, RecordType::A).ecs("198.18.2.0/24")).await;
    assert_eq!(addrs(&m), [NYC]);
    assert_eq!(ecs_echo(&m), Some((24, 24)));
    let m = tcp(lab.addr, &Ask::new("ns1.edge.example.", RecordType::A).no_edns()).await;
    assert_eq!(addrs(&m), ["203.0.113.53"]);
}

#[tokio::test]
async fn oversize_udp_answer_is_truncated_and_tcp_carries_it() {
    let lab = start(DnsOptions::default()).await;
    let big = Ask::new("big.edge.example.", RecordType::TXT);
    let m = udp(lab.addr, &big.clone().no_edns()).await;
    assert!(m.metadata.truncation, "no EDNS: 512 bytes max");
    assert!(m.answers.len() < 40);
    let m = udp(lab.addr, &big).await;
    assert!(m.metadata.truncation, "EDNS 1232 is still too small");
    let m = tcp(lab.addr, &big).await;
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 40);
    assert!(lab.server.metrics().truncated.get() >= 2);
    // A small answer is not truncated.
    let m = udp(lab.addr, &Ask::new("ns1.edge.example.", RecordType::A).no_edns()).await;
    assert!(!m.metadata.truncation);
}

#[tokio::test]
async fn any_is_answered_minimally() {
    let lab = start(DnsOptions::default()).await;
    for name in ["edge.example.", "big.edge.example.", WWW] {
        let m = udp(lab.addr, &Ask::new(name, RecordType::ANY)).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(m.answers.len(), 1, "{name}");
        match &m.answers[0].data {
            RData::HINFO(h) => assert_eq!(&*h.cpu, b"RFC8482"),
            other => panic!("{name}: {other:?}"),
        }
        assert!(!m.metadata.truncation);
    }
    let m = udp(lab.addr, &Ask::new("nope.edge.example.", RecordType::ANY)).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[tokio::test]
async fn malformed_ecs_gets_formerr() {
    let lab = start(DnsOptions::default()).await;
    let good = Ask::new(WWW, RecordType::A).ecs("198.18.1.0/24").message(7);
    // The ECS option is the last 11 bytes: code(2) len(2) family(2)
    // source(1) scope(1) address(3). Set SCOPE in the query: FORMERR.
    let mut bad = good.clone();
    let scope_at = bad.len() - 4;
    bad[scope_at] = 8;
    let m = udp_raw(lab.addr, &bad).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // Address bits set past the source prefix: FORMERR.
    let mut bad = good.clone();
    let src_at = bad.len() - 5;
    bad[src_at] = 20;
    let m = udp_raw(lab.addr, &bad).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
    // The untouched query is fine.
    let m = udp_raw(lab.addr, &good).await.unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(lab.server.metrics().query("A", "FORMERR"), 2);
}

#[tokio::test]
async fn rrl_drops_and_slips_over_udp_but_not_tcp() {
    let lab = start(DnsOptions {
        rrl: RrlConfig {
            responses_per_second: 1,
            burst: 3,
            slip: 2,
            ..RrlConfig::default()
        },
        ..DnsOptions::default()
    })
    .await;
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ask = Ask::new("ns1.edge.example.", RecordType::A);
    for id in 0..20u16 {
        sock.send_to(&ask.message(id), lab.addr).await.unwrap();
    }
    let (mut full, mut slipped) = (0, 0);
    let mut buf = vec![0u8; 4096];
    while let Ok(Ok(n)) =
        tokio::time::timeout(std::time::Duration::from_millis(500), sock.recv(&mut buf)).await
    {
        let m = hickory_proto::op::Message::from_vec(&buf[..n]).unwrap();
        if m.metadata.truncation {
            assert!(m.answers.is_empty());
            slipped += 1;
        } else {
            full += 1;
        }
    }
    assert!((3..20).contains(&full), "full answers: {full}");
    assert!(slipped >= 1, "no TC=1 slip seen");
    let m = lab.server.metrics();
    assert!(m.rrl_count("drop") >= 1);
    assert_eq!(m.rrl_count("slip"), slipped);
    assert_eq!(full + slipped + m.rrl_count("drop"), 20);
    // TCP is not rate limited: the source address is proven.
    let t = tcp(lab.addr, &ask).await;
    assert_eq!(addrs(&t), ["203.0.113.53"]);
}

#[tokio::test]
async fn axfr_only_over_tcp_from_allowed_sources() {
    let lab = start(DnsOptions::default()).await;
    let axfr = Ask::new("edge.example.", RecordType::AXFR).no_edns();
    let m = tcp(lab.addr, &axfr).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused);

    let lab = start(DnsOptions {
        axfr_allow: vec!["127.0.0.0/8".parse().unwrap()],
        ..DnsOptions::default()
    })
    .await;
    let m = udp(lab.addr, &axfr).await;
    assert_eq!(m.metadata.response_code, ResponseCode::Refused, "AXFR over UDP");
    let m = tcp(lab.addr, &axfr).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(m.answers.first().map(|r| r.record_type()), Some(RecordType::SOA));
    assert_eq!(m.answers.last().map(|r| r.record_type()), Some(RecordType::SOA));
    let www: Vec<String> = m
        .answers
        .iter()
        .filter(|r| r.name.to_string() == WWW)
        .map(|r| r.data.to_string())
        .collect();
    assert_eq!(www, [AMS, NYC]);
    let m = tcp(
        lab.addr,
        &Ask::new("big.edge.example.", RecordType::AXFR).no_edns(),
    )
    .await;
    assert_eq!(m.metadata.response_code, ResponseCode::NotAuth);
}

#[tokio::test]
async fn explain_matches_what_the_server_answered() {
    let lab = start(DnsOptions::default()).await;
    let resolver: IpAddr = "127.0.0.1".parse().unwrap();
    let mut latency = DnsView::default();
    latency.set_rtt("198.18.1.1".parse().unwrap(), "nyc", 2_000);
    latency.set_rtt("198.18.1.1".parse().unwrap(), "ams", 9_000);
    let mut drained = DnsView::default();
    drained.sites.insert("nyc".into(), site(true, true));
    let mut all_down = DnsView::default();
    all_down.sites.insert("ams".into(), site(false, false));
    all_down.sites.insert("nyc".into(), site(false, false));
    let views = [DnsView::default(), latency, drained, all_down];
    let subnets = [
        Some("198.18.1.0/24"),
        Some("198.18.2.0/24"),
        Some("2001:db8:a::/48"),
        None,
    ];
    for view in &views {
        lab.view.set(view.clone());
        for ecs in subnets {
            for (name, qtype) in [
                (WWW, RecordType::A),
                ("web.edge.example.", RecordType::A),
                (WWW, RecordType::AAAA),
            ] {
                let mut ask = Ask::new(name, qtype);
                if let Some(e) = ecs {
                    ask = ask.ecs(e);
                }
                let got = udp(lab.addr, &ask).await;
                let net = ecs.map(|e| e.parse().unwrap());
                let trace = lab
                    .server
                    .authority()
                    .explain(name, qtype, resolver, net, view)
                    .unwrap();
                let ctx = format!("{name} {qtype} ecs {ecs:?} view {view:?}\n{trace}");
                assert_eq!(
                    addrs(&got),
                    trace
                        .addresses()
                        .iter()
                        .map(IpAddr::to_string)
                        .collect::<Vec<_>>(),
                    "{ctx}"
                );
                assert_eq!(got.metadata.response_code, trace.rcode, "{ctx}");
                if ecs.is_some() {
                    assert_eq!(ecs_echo(&got).map(|e| e.1), Some(trace.scope), "{ctx}");
                }
                if qtype == RecordType::A {
                    let d = &trace.decisions[0];
                    assert_eq!(d.answer, trace.addresses(), "{ctx}");
                    assert!(trace.to_string().contains("answer:"), "{ctx}");
                }
            }
        }
    }
    // The server-side explain uses the view currently served.
    lab.view.set(DnsView::default());
    let t = lab
        .server
        .explain(
            WWW,
            RecordType::A,
            resolver,
            Some("198.18.1.0/24".parse().unwrap()),
        )
        .unwrap();
    let text = t.to_string();
    assert!(text.contains("198.51.100.10 via ams-web@ams ttl 20"), "{text}");
    assert!(text.contains("NL (52.37,4.90) per /24"), "{text}");
}

#[tokio::test]
async fn metrics_count_queries_by_type_and_rcode() {
    let mut registry = prometheus_client::registry::Registry::default();
    let mut server = edge_dns::DnsServer::new(
        &deployment(),
        Some(lab_geo()),
        DnsView::default(),
        DnsOptions::default(),
        Some(&mut registry),
    )
    .unwrap();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    server.serve_udp(sock);
    udp(addr, &Ask::new(WWW, RecordType::A).ecs("198.18.2.0/24")).await;
    udp(addr, &Ask::new("nope.edge.example.", RecordType::A)).await;
    udp(addr, &Ask::new("example.org.", RecordType::MX)).await;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for want in [
        r#"dns_queries_total{qtype="A",rcode="NOERROR"} 1"#,
        r#"dns_queries_total{qtype="A",rcode="NXDOMAIN"} 1"#,
        r#"dns_queries_total{qtype="MX",rcode="REFUSED"} 1"#,
        r#"dns_gslb_answers_total{site="nyc"} 1"#,
        "dns_ecs_queries_total 1",
    ] {
        assert!(text.contains(want), "missing {want} in\n{text}");
    }
    server.shutdown().await.unwrap();
}

#[tokio::test]
async fn edns_version_opcode_and_question_count_are_checked() {
    use hickory_proto::op::{Message, MessageType, OpCode, Query};
    use hickory_proto::rr::Name;
    let lab = start(DnsOptions::default()).await;

    // EDNS version 1: BADVERS (extended rcode 16), with an OPT in the reply.
    let mut m = hickory_proto::op::Message::from_vec(&Ask::new(WWW, RecordType::A).message(1)).unwrap();
    if let Some(e) = m.edns.as_mut() {
        e.set_version(1);
    }
    let r = udp_raw(lab.addr, &m.to_vec().unwrap()).await.unwrap();
    // 16 is both BADVERS and BADSIG; hickory decodes it as the latter.
    assert_eq!(u16::from(r.metadata.response_code), 16);
    assert!(r.edns.is_some());

    // A NOTIFY/UPDATE-style opcode we do not implement.
    let mut m = Message::new(2, MessageType::Query, OpCode::Update);
    m.add_query(Query::query(
        Name::from_ascii("edge.example.").unwrap(),
        RecordType::SOA,
    ));
    let r = udp_raw(lab.addr, &m.to_vec().unwrap()).await.unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::NotImp);

    // CHAOS class (version.bind probes): refused, nothing to fingerprint.
    let mut m = Message::new(4, MessageType::Query, OpCode::Query);
    let mut q = Query::query(Name::from_ascii("version.bind.").unwrap(), RecordType::TXT);
    q.set_query_class(hickory_proto::rr::DNSClass::CH);
    m.add_query(q);
    let r = udp_raw(lab.addr, &m.to_vec().unwrap()).await.unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::Refused);
    assert!(r.answers.is_empty());

    // Two questions in one message.
    let mut m = Message::new(3, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(WWW).unwrap(), RecordType::A));
    m.add_query(Query::query(
        Name::from_ascii("ns1.edge.example.").unwrap(),
        RecordType::A,
    ));
    let r = udp_raw(lab.addr, &m.to_vec().unwrap()).await.unwrap();
    assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
}

#[tokio::test]
async fn garbage_never_kills_the_server() {
    let lab = start(DnsOptions::default()).await;
    let good = Ask::new(WWW, RecordType::A).ecs("198.18.1.0/24").message(9);
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    // Deterministic junk: every truncation of a valid query, and the query
    // with each byte flipped.
    let mut inputs: Vec<Vec<u8>> = (0..good.len()).map(|n| good[..n].to_vec()).collect();
    for i in 0..good.len() {
        let mut b = good.clone();
        b[i] ^= 0xff;
        inputs.push(b);
    }
    for b in &inputs {
        sock.send_to(b, lab.addr).await.unwrap();
    }
    // Whatever those got, a valid query still gets its answer.
    let m = udp(lab.addr, &Ask::new(WWW, RecordType::A).ecs("198.18.1.0/24")).await;
    assert_eq!(addrs(&m), [AMS]);
    let m = tcp(lab.addr, &Ask::new(WWW, RecordType::A).ecs("198.18.2.0/24")).await;
    assert_eq!(addrs(&m), [NYC]);
}

#[tokio::test]
async fn dual_stack_socket_sees_ipv4_clients_as_ipv4() {
    // Where the host has no IPv6 there is no dual-stack socket to test.
    let Ok(listener) = tokio::net::TcpListener::bind("[::]:0").await else {
        eprintln!("SKIP: cannot bind [::]:0 (no IPv6 on this host)");
        return;
    };
    let port = listener.local_addr().unwrap().port();
    let mut server = edge_dns::DnsServer::new(
        &deployment(),
        Some(lab_geo()),
        DnsView::default(),
        DnsOptions {
            axfr_allow: vec!["127.0.0.0/8".parse().unwrap()],
            ..DnsOptions::default()
        },
        None,
    )
    .unwrap();
    server.serve_tcp(listener);
    // The query arrives from ::ffff:127.0.0.1; the IPv4 allow-list applies.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let m = tcp(addr, &Ask::new("edge.example.", RecordType::AXFR).no_edns()).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
}
