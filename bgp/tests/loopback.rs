//! Two speakers on 127.0.0.1 talking BGP over real sockets.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use edge_bgp::{Community, GRACEFUL_SHUTDOWN, PeerConfig, RibKind, Route, Speaker, SpeakerConfig, State};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn fast(mut p: PeerConfig) -> PeerConfig {
    p.hold_time = 3;
    p.connect_retry = Duration::from_millis(100);
    p.connect_retry_max = Duration::from_millis(400);
    p
}

/// B: AS 65020, passive, listening on an ephemeral port.
async fn speaker_b(listen: SocketAddr, max_prefixes: Option<u32>) -> Speaker {
    let mut peer = fast(PeerConfig::new(LO, 65010));
    peer.passive = true;
    peer.max_prefixes = max_prefixes;
    Speaker::start(SpeakerConfig {
        local_as: 65020,
        router_id: Ipv4Addr::new(198, 51, 100, 20),
        listen: Some(listen),
        peers: vec![peer],
    })
    .await
    .unwrap()
}

/// A: AS 65010, dials B.
async fn speaker_a(port: u16) -> Speaker {
    let mut peer = fast(PeerConfig::new(LO, 65020));
    peer.port = port;
    // The session runs over IPv4, so the IPv6 next hop must be configured.
    peer.next_hop_v6 = Some("2001:db8::10".parse().unwrap());
    Speaker::start(SpeakerConfig {
        local_as: 65010,
        router_id: Ipv4Addr::new(198, 51, 100, 10),
        listen: None,
        peers: vec![peer],
    })
    .await
    .unwrap()
}

fn vip4() -> Route {
    Route::new("203.0.113.10/32".parse().unwrap())
        .with_med(50)
        .with_community(Community::new(65000, 100))
}

fn vip6() -> Route {
    Route::new("2001:db8:ffff::10/128".parse().unwrap()).with_prepend(1)
}

fn established(s: &Speaker) -> bool {
    s.sessions().iter().all(|i| i.state == State::Established)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_speakers_establish_exchange_withdraw_drain_and_reconnect() {
    let b = speaker_b("127.0.0.1:0".parse().unwrap(), None).await;
    let port = b.local_addr().unwrap().port();
    let a = speaker_a(port).await;
    a.announce([vip4(), vip6()].into_iter().collect());

    let t = Duration::from_secs(10);
    wait_until("session up", t, || established(&a) && established(&b)).await;
    wait_until("routes at B", t, || b.routes(LO, RibKind::Received).len() == 2).await;

    let got = b.routes(LO, RibKind::Received);
    let v4 = got.iter().find(|r| r.prefix == vip4().prefix).unwrap();
    assert_eq!(v4.attributes.as_path_flat(), vec![65010]);
    assert_eq!(v4.attributes.med, Some(50));
    assert!(v4.attributes.communities.contains(&Community::new(65000, 100)));
    // Next hop self: the local address of A's socket.
    assert_eq!(v4.next_hop, Some(LO));
    let v6 = got.iter().find(|r| r.prefix == vip6().prefix).unwrap();
    assert_eq!(v6.attributes.as_path_flat(), vec![65010, 65010]);
    assert_eq!(v6.next_hop, Some("2001:db8::10".parse().unwrap()));

    let info = &a.sessions()[0];
    assert_eq!(info.prefixes_sent, 2);
    assert!(info.updates_out >= 2);
    assert!(info.uptime.is_some());
    assert_eq!(a.routes(LO, RibKind::Advertised).len(), 2);
    assert!(b.sessions()[0].updates_in >= 2);

    // Withdraw the IPv4 route: only the difference goes out.
    let before = a.sessions()[0].updates_out;
    a.announce([vip6()].into_iter().collect());
    wait_until("v4 withdrawn at B", t, || {
        let r = b.routes(LO, RibKind::Received);
        r.len() == 1 && r[0].prefix == vip6().prefix
    })
    .await;
    assert_eq!(a.sessions()[0].updates_out, before + 1, "one withdraw UPDATE");

    // Graceful drain: GRACEFUL_SHUTDOWN first, then nothing.
    let drain = a.drain(Duration::from_millis(500));
    let watch = async {
        wait_until("GRACEFUL_SHUTDOWN seen", t, || {
            b.routes(LO, RibKind::Received)
                .iter()
                .any(|r| r.attributes.communities.contains(&GRACEFUL_SHUTDOWN))
        })
        .await
    };
    tokio::join!(drain, watch);
    wait_until("drained", t, || b.routes(LO, RibKind::Received).is_empty()).await;
    a.undrain();

    // Peer restart: B goes away (Cease), A notices and re-dials with backoff
    // until a new B listens on the same port.
    let addr = b.local_addr().unwrap();
    b.shutdown().await;
    wait_until("A sees the session drop", t, || !established(&a)).await;
    assert_eq!(a.sessions()[0].flaps, 1);
    assert!(
        a.sessions()[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("Cease")
    );
    a.announce([vip4()].into_iter().collect());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let b2 = speaker_b(addr, None).await;
    wait_until("re-established", t, || established(&a) && established(&b2)).await;
    wait_until("route re-sent", t, || b2.routes(LO, RibKind::Received).len() == 1).await;

    a.shutdown().await;
    wait_until("B2 sees Cease", t, || !established(&b2)).await;
    b2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_prefix_limit_closes_with_cease_1() {
    let b = speaker_b("127.0.0.1:0".parse().unwrap(), Some(1)).await;
    let a = speaker_a(b.local_addr().unwrap().port()).await;
    // The limit is per family: one IPv4 and one IPv6 prefix are fine...
    let routes: BTreeSet<Route> = [vip4(), vip6()].into_iter().collect();
    a.announce(routes.clone());
    let t = Duration::from_secs(10);
    wait_until("B holds both", t, || b.sessions()[0].prefixes_received == 2).await;
    assert!(a.sessions()[0].last_error.is_none());
    // ...a second IPv4 prefix is not.
    let mut more = routes;
    more.insert(Route::new("203.0.113.11/32".parse().unwrap()));
    a.announce(more);
    wait_until("A receives Cease/1", t, || {
        a.sessions()[0]
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("received Cease (6/1)"))
    })
    .await;
    assert!(
        b.sessions()[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("sent Cease (6/1)")
    );
    a.shutdown().await;
    b.shutdown().await;
}

/// Both sides dial and listen (the usual edge <-> router setup): the
/// connection collision must still converge to one Established session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_active_and_listening_converge() {
    // Bind both listeners first so each side knows the other's port.
    let la = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let lb = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (pa, pb) = (la.local_addr().unwrap().port(), lb.local_addr().unwrap().port());
    let mk = |local_as, remote_as, port, id| {
        let mut p = fast(PeerConfig::new(LO, remote_as));
        p.port = port;
        SpeakerConfig {
            local_as,
            router_id: Ipv4Addr::new(198, 51, 100, id),
            listen: None,
            peers: vec![p],
        }
    };
    let a = Speaker::start_with_listener(mk(65010, 65020, pb, 10), Some(la)).unwrap();
    let b = Speaker::start_with_listener(mk(65020, 65010, pa, 20), Some(lb)).unwrap();
    a.announce([vip4()].into_iter().collect());
    let t = Duration::from_secs(15);
    wait_until("both established", t, || established(&a) && established(&b)).await;
    wait_until("route at B", t, || b.routes(LO, RibKind::Received).len() == 1).await;
    // Stays up (no flapping between the two connections).
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(established(&a) && established(&b));
    assert_eq!(a.sessions()[0].flaps + b.sessions()[0].flaps, 0);
    a.shutdown().await;
    b.shutdown().await;
}

/// The session itself over IPv6 (::1): IPv6 routes take the socket's local
/// address as next hop, IPv4 routes the configured one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_over_ipv6_loopback() {
    let lo6: IpAddr = "::1".parse().unwrap();
    let Ok(l) = tokio::net::TcpListener::bind("[::1]:0").await else {
        println!("skipping: no IPv6 loopback");
        return;
    };
    let mut pb = fast(PeerConfig::new(lo6, 65010));
    pb.passive = true;
    let port = l.local_addr().unwrap().port();
    let b = Speaker::start_with_listener(
        SpeakerConfig {
            local_as: 65020,
            router_id: Ipv4Addr::new(198, 51, 100, 20),
            listen: None,
            peers: vec![pb],
        },
        Some(l),
    )
    .unwrap();
    let mut pa = fast(PeerConfig::new(lo6, 65020));
    pa.port = port;
    pa.next_hop_v4 = Some(Ipv4Addr::new(198, 51, 100, 10));
    let a = Speaker::start(SpeakerConfig {
        local_as: 65010,
        router_id: Ipv4Addr::new(198, 51, 100, 10),
        listen: None,
        peers: vec![pa],
    })
    .await
    .unwrap();
    a.announce([vip4(), vip6()].into_iter().collect());
    let t = Duration::from_secs(10);
    wait_until("routes over v6 session", t, || {
        b.routes(lo6, RibKind::Received).len() == 2
    })
    .await;
    let r = b.routes(lo6, RibKind::Received);
    let v6 = r.iter().find(|e| e.prefix == vip6().prefix).unwrap();
    assert_eq!(v6.next_hop, Some(lo6));
    let v4 = r.iter().find(|e| e.prefix == vip4().prefix).unwrap();
    assert_eq!(v4.next_hop, Some(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 10))));
    a.shutdown().await;
    b.shutdown().await;
}

/// A few thousand routes cross in several packed UPDATEs and all arrive;
/// changing one attribute of all of them re-sends them, and withdrawing all
/// empties the peer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_routes() {
    let b = speaker_b("127.0.0.1:0".parse().unwrap(), None).await;
    let a = speaker_a(b.local_addr().unwrap().port()).await;
    let routes = |med: u32| -> BTreeSet<Route> {
        (0..5000u32)
            .map(|i| {
                let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i);
                Route::new(format!("{ip}/32").parse().unwrap()).with_med(med)
            })
            .collect()
    };
    a.announce(routes(1));
    let t = Duration::from_secs(20);
    wait_until("5000 routes at B", t, || {
        b.sessions()[0].prefixes_received == 5000
    })
    .await;
    let sent = a.sessions()[0].updates_out;
    assert!(sent >= 7, "5000 /32s need several UPDATEs, sent {sent}");
    a.announce(routes(2));
    wait_until("MED 2 everywhere", t, || {
        b.routes(LO, RibKind::Received)
            .iter()
            .all(|r| r.attributes.med == Some(2))
    })
    .await;
    a.announce(BTreeSet::new());
    wait_until("all withdrawn", t, || b.sessions()[0].prefixes_received == 0).await;
    a.shutdown().await;
    b.shutdown().await;
}
