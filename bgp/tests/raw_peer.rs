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
