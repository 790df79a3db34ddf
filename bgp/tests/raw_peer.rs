//! Our Speaker against a scripted peer on a raw socket: checks the
//! NOTIFICATIONs the driver + FSM put on the wire for peer errors.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use edge_bgp::wire::{self, Codec, Frame, Message, Notification, Open};
use edge_bgp::{PeerConfig, Speaker, SpeakerConfig, State};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

/// Start a Speaker (AS 65010) dialing a raw listener; return both ends.
async fn setup(hold: u16) -> (Speaker, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut peer = PeerConfig::new(LO, 65020);
    peer.port = l.local_addr().unwrap().port();
    peer.hold_time = hold;
    peer.connect_retry = Duration::from_millis(100);
    // Long backoff so the speaker does not re-dial during the assertions.
    peer.connect_retry_max = Duration::from_secs(60);
    let s = Speaker::start(SpeakerConfig {
        local_as: 65010,
        router_id: Ipv4Addr::new(198, 51, 100, 10),
        listen: None,
        peers: vec![peer],
    })
    .await
    .unwrap();
    let (sock, _) = tokio::time::timeout(Duration::from_secs(5), l.accept())
        .await
        .unwrap()
        .unwrap();
    (s, sock)
}

/// Read one message (or None on EOF).
async fn read_msg(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Message> {
    loop {
        if let Ok(Frame::Complete(n)) = wire::check_frame(buf) {
            let frame: Vec<u8> = buf.drain(..n).collect();
            return Some(wire::decode(&frame, &Codec::default()).unwrap());
        }
        let mut tmp = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(10), sock.read(&mut tmp))
            .await
            .expect("peer silent")
            .ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
}

/// Read until a NOTIFICATION arrives.
async fn notification(sock: &mut TcpStream, buf: &mut Vec<u8>) -> Notification {
    loop {
        match read_msg(sock, buf).await {
            Some(Message::Notification(n)) => return n,
            Some(_) => continue,
            None => panic!("connection closed without NOTIFICATION"),
        }
    }
}

async fn send(sock: &mut TcpStream, m: &Message) {
    let b = wire::encode(m, &Codec::default()).unwrap();
    sock.write_all(&b).await.unwrap();
}

/// Complete the OPEN/KEEPALIVE exchange as AS `asn`.
async fn establish(sock: &mut TcpStream, buf: &mut Vec<u8>, asn: u32, hold: u16) {
    let Some(Message::Open(o)) = read_msg(sock, buf).await else {
        panic!("expected OPEN")
    };
    assert_eq!(o.asn(), 65010);
    let open = Open::new(asn, hold, Ipv4Addr::new(198, 51, 100, 20), &[(1, 1)]);
    send(sock, &Message::Open(open)).await;
    send(sock, &Message::Keepalive).await;
}

#[tokio::test]
async fn silent_peer_gets_hold_timer_expired() {
    let (s, mut sock) = setup(3).await;
    let mut buf = Vec::new();
    establish(&mut sock, &mut buf, 65020, 3).await;
    let start = tokio::time::Instant::now();
    // We answer nothing; the speaker keeps sending KEEPALIVEs every second
    // and gives up after the 3 s hold time.
    let n = notification(&mut sock, &mut buf).await;
    assert_eq!((n.code, n.subcode), (4, 0));
    let waited = start.elapsed();
    assert!(waited >= Duration::from_millis(2500), "{waited:?}");
    assert!(read_msg(&mut sock, &mut buf).await.is_none(), "closed after");
    let info = &s.sessions()[0];
    assert_eq!(info.flaps, 1);
    assert_ne!(info.state, State::Established);
    s.shutdown().await;
}

#[tokio::test]
async fn oversized_length_gets_bad_message_length() {
    let (s, mut sock) = setup(30).await;
    let mut buf = Vec::new();
    establish(&mut sock, &mut buf, 65020, 30).await;
    let mut hdr = wire::MARKER.to_vec();
    hdr.extend_from_slice(&5000u16.to_be_bytes());
    hdr.push(2);
    sock.write_all(&hdr).await.unwrap();
    let n = notification(&mut sock, &mut buf).await;
    assert_eq!(
        (n.code, n.subcode, n.data),
        (1, 2, 5000u16.to_be_bytes().to_vec())
    );
    s.shutdown().await;
}

#[tokio::test]
async fn wrong_peer_as_gets_bad_peer_as() {
    let (s, mut sock) = setup(30).await;
    let mut buf = Vec::new();
    establish(&mut sock, &mut buf, 65099, 30).await;
    let n = notification(&mut sock, &mut buf).await;
    assert_eq!((n.code, n.subcode), (2, 2));
    s.shutdown().await;
}

#[tokio::test]
async fn unacceptable_hold_time_and_shutdown_cease() {
    let (s, mut sock) = setup(30).await;
    let mut buf = Vec::new();
    establish(&mut sock, &mut buf, 65020, 2).await;
    let n = notification(&mut sock, &mut buf).await;
    assert_eq!((n.code, n.subcode), (2, 6));
    s.shutdown().await;

    // A healthy session: shutdown() must send Cease / administrative
    // shutdown before closing.
    let (s, mut sock) = setup(30).await;
    let mut buf = Vec::new();
    establish(&mut sock, &mut buf, 65020, 30).await;
    tokio::time::timeout(Duration::from_secs(5), async {
        while s.sessions()[0].state != State::Established {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .unwrap();
    s.shutdown().await;
    let n = notification(&mut sock, &mut buf).await;
    assert_eq!((n.code, n.subcode), (6, 2));
}

/// Connection collision (RFC 4271 §6.8): the speaker (id 198.51.100.10)
/// dials us and we dial it back. The connection opened by the speaker with
/// the higher BGP identifier survives; the other gets Cease/7.
async fn collision(peer_id: Ipv4Addr) -> (Notification, bool) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let mut peer = PeerConfig::new(LO, 65020);
    peer.port = l.local_addr().unwrap().port();
    peer.hold_time = 30;
    peer.connect_retry_max = Duration::from_secs(60);
    let s = Speaker::start(SpeakerConfig {
        local_as: 65010,
        router_id: Ipv4Addr::new(198, 51, 100, 10),
        listen: Some("127.0.0.1:0".parse().unwrap()),
        peers: vec![peer],
    })
    .await
    .unwrap();
    // Connection 1: the speaker dials us and sends its OPEN.
    let (mut c1, _) = l.accept().await.unwrap();
    let mut b1 = Vec::new();
    assert!(matches!(read_msg(&mut c1, &mut b1).await, Some(Message::Open(_))));
    // Connection 2: we dial the speaker; it must answer with its OPEN too.
    let mut c2 = TcpStream::connect(s.local_addr().unwrap()).await.unwrap();
    let mut b2 = Vec::new();
    assert!(matches!(read_msg(&mut c2, &mut b2).await, Some(Message::Open(_))));
    let open = Message::Open(Open::new(65020, 30, peer_id, &[(1, 1)]));
    send(&mut c2, &open).await;
    send(&mut c2, &Message::Keepalive).await;
    // Connection 1 is answered only after the collision is settled:
    // answering it first could bring it to Established, after which the
    // existing connection always wins.
    let higher = u32::from(peer_id) > u32::from(Ipv4Addr::new(198, 51, 100, 10));
    let (loser, winner, wbuf) = if higher {
        (&mut c1, &mut c2, &mut b2)
    } else {
        (&mut c2, &mut c1, &mut b1)
    };
    let mut lbuf = Vec::new();
    let n = notification(loser, &mut lbuf).await;
    if !higher {
        send(winner, &open).await;
        send(winner, &Message::Keepalive).await;
    }
    // The winner carries on to Established.
    let mut up = false;
    for _ in 0..4 {
        match read_msg(winner, wbuf).await {
            Some(Message::Keepalive) => {
                up = tokio::time::timeout(Duration::from_secs(5), async {
                    while s.sessions()[0].state != State::Established {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                })
                .await
                .is_ok();
                break;
            }
            Some(Message::Notification(n)) => panic!("winner got {n}"),
            _ => {}
        }
    }
    s.shutdown().await;
    (n, up)
}

#[tokio::test]
async fn collision_peer_with_higher_id_wins() {
    let (n, up) = collision(Ipv4Addr::new(198, 51, 100, 20)).await;
    assert_eq!((n.code, n.subcode), (6, 7));
    assert!(up, "session on the peer's connection");
}

#[tokio::test]
async fn collision_peer_with_lower_id_loses() {
    let (n, up) = collision(Ipv4Addr::new(198, 51, 100, 5)).await;
    assert_eq!((n.code, n.subcode), (6, 7));
    assert!(up, "session on our connection");
}

/// An UPDATE from raw parts: withdrawn routes, path attributes, NLRI.
fn raw_update(attrs: &[u8], nlri: &[u8]) -> Vec<u8> {
    let len = 19 + 2 + 2 + attrs.len() + nlri.len();
    let mut m = vec![0xff; 16];
    m.extend_from_slice(&(len as u16).to_be_bytes());
    m.push(2); // UPDATE
    m.extend_from_slice(&[0, 0]); // no withdrawn routes
    m.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
    m.extend_from_slice(attrs);
    m.extend_from_slice(nlri);
    m
}

/// ORIGIN IGP, AS_PATH [65020] (4-octet), NEXT_HOP 127.0.0.1, plus `extra`.
fn attrs(extra: &[u8]) -> Vec<u8> {
    let mut a = vec![0x40, 1, 1, 0];
    a.extend_from_slice(&[0x40, 2, 6, 2, 1, 0, 0, 0xfd, 0xfc]);
    a.extend_from_slice(&[0x40, 3, 4, 127, 0, 0, 1]);
    a.extend_from_slice(extra);
    a
}

const NLRI_198_51_100: [u8; 4] = [24, 198, 51, 100];

async fn received(s: &Speaker) -> Vec<String> {
    s.routes(LO, edge_bgp::RibKind::Received)
        .iter()
        .map(|r| r.prefix.to_string())
        .collect()
}

async fn wait_received(s: &Speaker, want: &[&str]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let got = received(s).await;
        if got == want {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "received {got:?}, want {want:?}; sessions {:?}",
            s.sessions()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn malformed_updates_are_treated_as_withdraw_or_reset_per_rfc7606() {
    let (s, mut sock) = setup(30).await;
    let mut buf = Vec::new();
    establish(&mut sock, &mut buf, 65020, 30).await;

    // A valid route first.
    sock.write_all(&raw_update(&attrs(&[]), &NLRI_198_51_100))
        .await
        .unwrap();
    wait_received(&s, &["198.51.100.0/24"]).await;

    // MED with a length of 3 (must be 4): RFC 7606 §7.4 treat-as-withdraw.
    // The session stays up and the prefix is gone.
    sock.write_all(&raw_update(&attrs(&[0x80, 4, 3, 0, 0, 1]), &NLRI_198_51_100))
        .await
        .unwrap();
    wait_received(&s, &[]).await;
    assert_eq!(s.sessions()[0].state, State::Established);

    // Announced again, then a malformed ORIGIN value (3 is undefined):
    // RFC 7606 §7.1 treat-as-withdraw, session up.
    sock.write_all(&raw_update(&attrs(&[]), &NLRI_198_51_100))
        .await
        .unwrap();
    wait_received(&s, &["198.51.100.0/24"]).await;
    let mut bad_origin = attrs(&[]);
    bad_origin[3] = 3;
    sock.write_all(&raw_update(&bad_origin, &NLRI_198_51_100))
        .await
        .unwrap();
    wait_received(&s, &[]).await;
    assert_eq!(s.sessions()[0].state, State::Established);

    // A path attribute whose length runs past the attribute list: the
    // attributes cannot be parsed at all, so the session is reset with an
    // UPDATE Message Error (3/1 Malformed Attribute List) — never a panic.
    let mut broken = attrs(&[]);
    broken.extend_from_slice(&[0x40, 5, 200, 0, 0, 0, 100]); // LOCAL_PREF claiming 200 bytes
    sock.write_all(&raw_update(&broken, &NLRI_198_51_100))
        .await
        .unwrap();
    let n = notification(&mut sock, &mut buf).await;
    assert_eq!(n.code, 3, "UPDATE Message Error, got {n:?}");
    s.shutdown().await;
}
