//! RFC 4724 Graceful Restart over real sockets: End-of-RIB after the
//! initial routes, the helper side keeping a restarting peer's routes as
//! stale, and `Speaker::abandon` as the restart exit path between two
//! speakers.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use common::{Got, RawPeer, fast_peer, wait_until};
use edge_bgp::wire::{
    AsSegment, GracefulRestartCap, GracefulRestartFamily, Message, Notification, Open, PathAttributes, Update,
};
use edge_bgp::{GracefulRestart, PeerConfig, RibKind, Route, Speaker, SpeakerConfig, SpeakerOptions, State};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const T: Duration = Duration::from_secs(10);

fn vip() -> Route {
    Route::new("203.0.113.10/32".parse().unwrap())
}

fn vip2() -> Route {
    Route::new("203.0.113.11/32".parse().unwrap())
}

fn gr_cap(restarting: bool, time: u16) -> GracefulRestartCap {
    GracefulRestartCap {
        restarting,
        restart_time: time,
        families: vec![GracefulRestartFamily {
            afi: 1,
            safi: 1,
            forwarding_preserved: true,
        }],
    }
}

fn peer_open(gr: Option<GracefulRestartCap>) -> Open {
    let o = Open::new(65020, 30, Ipv4Addr::new(198, 51, 100, 20), &[(1, 1)]);
    match gr {
        Some(g) => o.with_graceful_restart(g),
        None => o,
    }
}

fn gr_peer(raw: &RawPeer) -> PeerConfig {
    let mut p = fast_peer(raw.ip, raw.port(), 65020);
    p.graceful_restart = Some(GracefulRestart::new(Duration::from_secs(60)));
    p
}

async fn start(peers: Vec<PeerConfig>, restarting: bool) -> Speaker {
    Speaker::start_with_options(
        SpeakerConfig {
            local_as: 65010,
            router_id: Ipv4Addr::new(198, 51, 100, 10),
            listen: None,
            peers,
        },
        None,
        SpeakerOptions {
            restarting,
            ..Default::default()
        },
    )
    .unwrap()
}

/// An UPDATE from AS 65020 announcing `prefixes`.
fn routes_from_peer(prefixes: &[&str]) -> Message {
    Message::Update(Update {
        attributes: Some(PathAttributes {
            as_path: vec![AsSegment::Sequence(vec![65020])],
            next_hop: Some(Ipv4Addr::new(127, 0, 0, 2)),
            ..PathAttributes::default()
        }),
        announced: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
        ..Update::default()
    })
}

fn end_of_rib_v4() -> Message {
    Message::Update(Update {
        end_of_rib: Some((1, 1)),
        ..Update::default()
    })
}

/// (prefix, stale) of what the speaker holds from `peer`.
fn received(s: &Speaker, peer: IpAddr) -> Vec<(String, bool)> {
    s.routes(peer, RibKind::Received)
        .iter()
        .map(|r| (r.prefix.to_string(), r.stale))
        .collect()
}

fn owned(v: &[(&str, bool)]) -> Vec<(String, bool)> {
    v.iter().map(|(p, s)| (p.to_string(), *s)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn end_of_rib_follows_the_initial_routes_when_negotiated_and_abandon_sends_no_cease() {
    let raw = RawPeer::bind(Ipv4Addr::new(127, 0, 0, 2)).await;
    let s = start(vec![gr_peer(&raw)], true).await;
    s.announce([vip(), vip2()].into_iter().collect());
    let mut c = raw.accept().await;
    let ours = c.establish(peer_open(Some(gr_cap(false, 120)))).await;
    // Our OPEN after a restart of this process: R bit, our restart time,
    // IPv4 unicast with its forwarding state preserved.
    assert_eq!(ours.graceful_restart(), Some(&gr_cap(true, 60)));
    let Some(Message::Update(u)) = c.next_non_keepalive().await else {
        panic!("expected the routes")
    };
    assert_eq!(u.announced, vec![vip().prefix, vip2().prefix]);
    let Some(Message::Update(eor)) = c.next_non_keepalive().await else {
        panic!("expected End-of-RIB")
    };
    assert_eq!(eor.end_of_rib, Some((1, 1)));
    wait_until("established", T, || s.sessions()[0].state == State::Established).await;
    assert_eq!(s.sessions()[0].graceful_restart, Some(gr_cap(false, 120)));

    // The restart exit path: the connection closes with no NOTIFICATION
    // and no withdrawal before it.
    s.abandon().await;
    loop {
        match c.next_within(T).await {
            Got::Msg(Message::Keepalive) => continue,
            Got::Closed => break,
            other => panic!("abandon must only close the connection, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_graceful_restart_end_of_rib_still_follows_the_routes() {
    // The peer does not advertise GR (we do): GR is not negotiated, but the
    // End-of-RIB still marks the end of the initial table (RFC 4724 §2).
    let raw = RawPeer::bind(Ipv4Addr::new(127, 0, 0, 2)).await;
    let s = start(vec![gr_peer(&raw)], false).await;
    s.announce([vip()].into_iter().collect());
    let mut c = raw.accept().await;
    let ours = c.establish(peer_open(None)).await;
    assert!(!ours.graceful_restart().unwrap().restarting);
    assert!(
        matches!(c.next_non_keepalive().await, Some(Message::Update(u)) if u.announced == vec![vip().prefix])
    );
    assert!(
        matches!(c.next_non_keepalive().await, Some(Message::Update(u)) if u.end_of_rib == Some((1, 1))),
        "End-of-RIB after the routes"
    );
    assert_eq!(s.sessions()[0].graceful_restart, None);
    s.shutdown().await;
    // shutdown keeps sending Cease.
    let n = c.notification().await;
    assert_eq!((n.code, n.subcode), (6, 2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_keeps_stale_routes_until_the_restarted_peer_sends_end_of_rib() {
    let raw = RawPeer::bind(Ipv4Addr::new(127, 0, 0, 2)).await;
    let s = start(vec![gr_peer(&raw)], false).await;
    let mut c = raw.accept().await;
    c.establish(peer_open(Some(gr_cap(false, 30)))).await;
    c.send(&routes_from_peer(&["198.18.0.0/24", "198.51.100.0/24"]))
        .await;
    c.send(&end_of_rib_v4()).await;
    let fresh = owned(&[("198.18.0.0/24", false), ("198.51.100.0/24", false)]);
    wait_until("routes received", T, || received(&s, raw.ip) == fresh).await;

    // The peer restarts: its TCP connection goes away, no NOTIFICATION.
    drop(c);
    wait_until("session down", T, || s.sessions()[0].state != State::Established).await;
    let stale = owned(&[("198.18.0.0/24", true), ("198.51.100.0/24", true)]);
    assert_eq!(received(&s, raw.ip), stale);
    let info = &s.sessions()[0];
    assert_eq!((info.prefixes_received, info.prefixes_stale), (2, 2));
    assert_eq!(info.graceful_restart, Some(gr_cap(false, 30)));

    // Back (R bit), re-announces one of the two, still waiting for the
    // rest until its End-of-RIB.
    let mut c = raw.accept().await;
    c.establish(peer_open(Some(gr_cap(true, 30)))).await;
    c.send(&routes_from_peer(&["198.51.100.0/24"])).await;
    let partly = owned(&[("198.18.0.0/24", true), ("198.51.100.0/24", false)]);
    wait_until("re-announced route fresh", T, || received(&s, raw.ip) == partly).await;
    c.send(&end_of_rib_v4()).await;
    let after = owned(&[("198.51.100.0/24", false)]);
    wait_until("stale route purged on End-of-RIB", T, || {
        received(&s, raw.ip) == after
    })
    .await;
    let info = &s.sessions()[0];
    assert_eq!((info.prefixes_received, info.prefixes_stale), (1, 0));
    assert!(info.graceful_restart.as_ref().is_some_and(|g| g.restarting));

    // A NOTIFICATION ends the session for good: no stale routes.
    c.send(&Message::Notification(Notification::cease(2))).await;
    wait_until("routes gone on Cease", T, || received(&s, raw.ip).is_empty()).await;
    s.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_purges_stale_routes_when_the_peer_is_not_back_in_time() {
    let raw = RawPeer::bind(Ipv4Addr::new(127, 0, 0, 2)).await;
    let ip = raw.ip;
    let s = start(vec![gr_peer(&raw)], false).await;
    let mut c = raw.accept().await;
    c.establish(peer_open(Some(gr_cap(false, 1)))).await;
    c.send(&routes_from_peer(&["198.18.0.0/24"])).await;
    wait_until("route received", T, || received(&s, ip).len() == 1).await;
    // Gone for good: no listener to come back to.
    drop(raw);
    drop(c);
    wait_until("marked stale", T, || {
        received(&s, ip) == owned(&[("198.18.0.0/24", true)])
    })
    .await;
    let down = tokio::time::Instant::now();
    wait_until("purged after the 1 s restart time", T, || {
        received(&s, ip).is_empty()
    })
    .await;
    assert!(
        down.elapsed() >= Duration::from_millis(700),
        "{:?}",
        down.elapsed()
    );
    assert_eq!(s.sessions()[0].graceful_restart, None);
    s.shutdown().await;
}

/// Two speakers: A (AS 65010) dials B (AS 65020, passive), both with GR.
fn b_config() -> SpeakerConfig {
    let mut pb = fast_peer(LO, 0, 65010);
    pb.passive = true;
    pb.graceful_restart = Some(GracefulRestart::new(Duration::from_secs(30)));
    SpeakerConfig {
        local_as: 65020,
        router_id: Ipv4Addr::new(198, 51, 100, 20),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        peers: vec![pb],
    }
}

fn a_config(port: u16) -> SpeakerConfig {
    let mut pa = fast_peer(LO, port, 65020);
    pa.graceful_restart = Some(GracefulRestart::new(Duration::from_secs(30)));
    SpeakerConfig {
        local_as: 65010,
        router_id: Ipv4Addr::new(198, 51, 100, 10),
        listen: None,
        peers: vec![pa],
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandon_then_restart_keeps_routes_stale_at_the_peer_until_end_of_rib() {
    let b = Speaker::start(b_config()).await.unwrap();
    let port = b.local_addr().unwrap().port();
    let a = Speaker::start(a_config(port)).await.unwrap();
    a.announce([vip(), vip2()].into_iter().collect());
    let both = owned(&[("203.0.113.10/32", false), ("203.0.113.11/32", false)]);
    wait_until("routes at B", T, || received(&b, LO) == both).await;

    // Upgrade, old process: leave without Cease or withdrawals.
    a.abandon().await;
    wait_until("B sees the session drop", T, || {
        b.sessions()[0].state != State::Established
    })
    .await;
    let stale = owned(&[("203.0.113.10/32", true), ("203.0.113.11/32", true)]);
    assert_eq!(received(&b, LO), stale, "B keeps A's routes, stale");
    let info = &b.sessions()[0];
    assert_eq!(info.last_error.as_deref(), Some("connection lost"));
    assert_eq!(info.prefixes_stale, 2);

    // New process: R bit, announces only one of the two routes, then
    // End-of-RIB makes B drop the other one.
    let a2 = Speaker::start_with_options(
        a_config(port),
        None,
        SpeakerOptions {
            restarting: true,
            ..Default::default()
        },
    )
    .unwrap();
    a2.announce([vip()].into_iter().collect());
    let after = owned(&[("203.0.113.10/32", false)]);
    wait_until("B refreshed after End-of-RIB", T, || received(&b, LO) == after).await;
    let info = &b.sessions()[0];
    assert_eq!(info.state, State::Established);
    assert!(
        info.graceful_restart.as_ref().is_some_and(|g| g.restarting),
        "{info:?}"
    );
    assert_eq!(info.prefixes_stale, 0);

    // Leaving for good is still shutdown(): Cease, and B drops the routes
    // at once.
    a2.shutdown().await;
    wait_until("routes withdrawn with Cease", T, || received(&b, LO).is_empty()).await;
    assert!(
        b.sessions()[0]
            .last_error
            .as_deref()
            .unwrap_or("")
            .contains("Cease")
    );
    b.shutdown().await;
}

/// Connect to `to` from 127.0.0.2 (the configured peer address).
async fn dial_from_peer(to: std::net::SocketAddr) -> common::Conn {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    common::Conn {
        sock: sock.connect(to).await.unwrap(),
        buf: Vec::new(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn helper_treats_an_open_on_a_new_connection_as_the_peer_restarting() {
    // The speaker only listens; the peer (127.0.0.2) dials it.
    let peer_ip = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));
    let mut p = fast_peer(peer_ip, 179, 65020);
    p.passive = true;
    p.graceful_restart = Some(GracefulRestart::new(Duration::from_secs(60)));
    let s = Speaker::start(SpeakerConfig {
        local_as: 65010,
        router_id: Ipv4Addr::new(198, 51, 100, 10),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        peers: vec![p],
    })
    .await
    .unwrap();
    let addr = s.local_addr().unwrap();
    let mut c1 = dial_from_peer(addr).await;
    c1.establish(peer_open(Some(gr_cap(false, 30)))).await;
    c1.send(&routes_from_peer(&["198.18.0.0/24"])).await;
    wait_until("route received", T, || received(&s, peer_ip).len() == 1).await;

    // The peer restarted and its old connection is still open on our side:
    // the OPEN on the new connection wins (RFC 4724 §4.2), the old one is
    // closed without NOTIFICATION and the route is kept stale.
    let mut c2 = dial_from_peer(addr).await;
    c2.establish(peer_open(Some(gr_cap(true, 30)))).await;
    loop {
        match c1.next_within(T).await {
            // Our End-of-RIB of the first session, KEEPALIVEs.
            Got::Msg(Message::Keepalive | Message::Update(_)) => continue,
            Got::Closed => break,
            other => panic!("old connection: expected a plain close, got {other:?}"),
        }
    }
    wait_until("route stale", T, || {
        received(&s, peer_ip) == owned(&[("198.18.0.0/24", true)])
    })
    .await;
    wait_until("up on the new connection", T, || {
        s.sessions()[0].state == State::Established
    })
    .await;
    assert_eq!(s.sessions()[0].flaps, 1);
    c2.send(&end_of_rib_v4()).await;
    wait_until("stale route purged", T, || received(&s, peer_ip).is_empty()).await;
    assert_eq!(s.sessions()[0].state, State::Established);
    s.shutdown().await;
    let n = c2.notification().await;
    assert_eq!((n.code, n.subcode), (6, 2));
}
