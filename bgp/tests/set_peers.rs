//! `Speaker::set_peers` on a running speaker against scripted peers on
//! 127.0.0.x: only the sessions whose configuration changed are touched.

mod common;

use std::net::Ipv4Addr;
use std::time::Duration;

use common::{Conn, Got, RawPeer, fast_peer, wait_until};
use edge_bgp::wire::{Message, Open};
use edge_bgp::{Route, Speaker, SpeakerConfig, State};

fn vip() -> Route {
    Route::new("203.0.113.10/32".parse().unwrap()).with_med(50)
}

/// Establish as AS `asn` and wait for the UPDATE carrying the VIP.
async fn up_and_routes(c: &mut Conn, asn: u32, id: u8) -> Open {
    let theirs = c
        .establish(Open::new(asn, 30, Ipv4Addr::new(198, 51, 100, id), &[(1, 1)]))
        .await;
    match c.next_non_keepalive().await {
        Some(Message::Update(u)) => assert_eq!(u.announced, vec![vip().prefix]),
        other => panic!("expected the VIP, got {other:?}"),
    }
    match c.next_non_keepalive().await {
        Some(Message::Update(u)) => assert!(u.end_of_rib.is_some(), "End-of-RIB after the routes: {u:?}"),
        other => panic!("expected End-of-RIB, got {other:?}"),
    }
    theirs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn set_peers_resets_only_the_affected_sessions() {
    let keep = RawPeer::bind(Ipv4Addr::new(127, 0, 0, 2)).await;
    let gone = RawPeer::bind(Ipv4Addr::new(127, 0, 0, 3)).await;
    let added = RawPeer::bind(Ipv4Addr::new(127, 0, 0, 4)).await;
    let changed = RawPeer::bind(Ipv4Addr::new(127, 0, 0, 5)).await;
    let p_keep = fast_peer(keep.ip, keep.port(), 65020);
    let p_gone = fast_peer(gone.ip, gone.port(), 65030);
    let p_added = fast_peer(added.ip, added.port(), 65040);
    let p_changed = fast_peer(changed.ip, changed.port(), 65050);

    let s = Speaker::start(SpeakerConfig {
        local_as: 65010,
        router_id: Ipv4Addr::new(198, 51, 100, 10),
        listen: None,
        peers: vec![p_keep.clone(), p_gone.clone(), p_changed.clone()],
    })
    .await
    .unwrap();
    s.announce([vip()].into_iter().collect());

    let mut c_keep = keep.accept().await;
    let mut c_gone = gone.accept().await;
    let mut c_changed = changed.accept().await;
    up_and_routes(&mut c_keep, 65020, 20).await;
    up_and_routes(&mut c_gone, 65030, 30).await;
    let first = up_and_routes(&mut c_changed, 65050, 50).await;
    assert_eq!(first.hold_time, 30);
    let t = Duration::from_secs(5);
    wait_until("three sessions up", t, || {
        s.sessions().iter().all(|i| i.state == State::Established)
    })
    .await;
    let kept_before = s.sessions().into_iter().find(|i| i.peer == keep.ip).unwrap();

    let mut p_changed2 = p_changed.clone();
    p_changed2.hold_time = 60;
    let changes = s
        .set_peers(vec![p_keep.clone(), p_added.clone(), p_changed2])
        .await
        .unwrap();
    assert_eq!(changes.added, vec![added.ip]);
    assert_eq!(changes.removed, vec![gone.ip]);
    assert_eq!(changes.unchanged, vec![keep.ip]);
    assert_eq!(changes.changed.len(), 1);
    assert_eq!(changes.changed[0].address, changed.ip);
    assert_eq!(changes.changed[0].fields, vec!["hold_time"]);
    let text = changes.to_string();
    assert_eq!(text.lines().count(), 3, "{text}");
    assert!(text.contains("added peer 127.0.0.4"), "{text}");
    assert!(text.contains("removed peer 127.0.0.3"), "{text}");
    assert!(text.contains("changed peer 127.0.0.5 (hold_time;"), "{text}");

    // Removed: Cease / Peer De-configured, then the connection closes and
    // the speaker never dials it again.
    let n = c_gone.notification().await;
    assert_eq!((n.code, n.subcode), (6, 3));
    assert_eq!(c_gone.next_within(t).await, Got::Closed);
    assert!(gone.accept_within(Duration::from_millis(500)).await.is_none());

    // Changed: Cease / Other Configuration Change, then a new connection
    // with the new configuration.
    let n = c_changed.notification().await;
    assert_eq!((n.code, n.subcode), (6, 6));
    let mut c_changed = changed.accept().await;
    let again = up_and_routes(&mut c_changed, 65050, 50).await;
    assert_eq!(again.hold_time, 60);

    // Added: comes up and gets the announced routes.
    let mut c_added = added.accept().await;
    up_and_routes(&mut c_added, 65040, 40).await;

    // Kept: same connection, nothing but (possibly) KEEPALIVEs on it, no
    // new connection either.
    for _ in 0..3 {
        match c_keep.next_within(Duration::from_millis(300)).await {
            Got::Silent | Got::Msg(Message::Keepalive) => {}
            other => panic!("kept session was touched: {other:?}"),
        }
    }
    assert!(keep.accept_within(Duration::from_millis(200)).await.is_none());
    c_keep.send(&Message::Keepalive).await;

    wait_until("new sessions up", t, || {
        let v = s.sessions();
        v.len() == 3 && v.iter().all(|i| i.state == State::Established)
    })
    .await;
    let sessions = s.sessions();
    let peers: Vec<_> = sessions.iter().map(|i| i.peer).collect();
    assert_eq!(peers, vec![keep.ip, added.ip, changed.ip]);
    let kept = sessions.iter().find(|i| i.peer == keep.ip).unwrap();
    assert_eq!(kept.flaps, 0);
    assert_eq!(kept.updates_out, kept_before.updates_out, "no UPDATE re-sent");
    assert!(kept.uptime >= kept_before.uptime);

    // Same set again: nothing to do.
    let changes = s
        .set_peers(vec![p_added, p_keep, {
            let mut p = p_changed;
            p.hold_time = 60;
            p
        }])
        .await
        .unwrap();
    assert!(changes.is_empty());
    assert_eq!(changes.to_string(), "peers unchanged (3)");

    // A bad set is refused as a whole.
    let mut bad = fast_peer(gone.ip, gone.port(), 65030);
    bad.hold_time = 2;
    assert!(s.set_peers(vec![bad]).await.is_err());
    assert_eq!(s.sessions().len(), 3);
    s.shutdown().await;
}
