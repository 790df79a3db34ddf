//! Helpers shared by the socket tests: a scripted BGP peer on a raw
//! socket and polling with a timeout.
// Each test file uses its own subset.
#![allow(dead_code)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use edge_bgp::PeerConfig;
use edge_bgp::wire::{self, Codec, Frame, Message, Notification, Open};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Both sides advertise 4-octet AS, so that is how UPDATEs are encoded.
pub const CODEC: Codec = Codec {
    four_octet_as: true,
    ibgp: false,
};

pub async fn wait_until(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !f() {
        assert!(start.elapsed() < timeout, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A peer config with short timers, dialling `addr:port`.
pub fn fast_peer(addr: IpAddr, port: u16, remote_as: u32) -> PeerConfig {
    let mut p = PeerConfig::new(addr, remote_as);
    p.port = port;
    p.hold_time = 30;
    p.connect_retry = Duration::from_millis(100);
    p.connect_retry_max = Duration::from_millis(400);
    p.families = vec![(1, 1)];
    p
}

/// A scripted peer listening on `ip` (any 127/8 address), one connection
/// at a time.
pub struct RawPeer {
    pub ip: IpAddr,
    pub listener: TcpListener,
}

impl RawPeer {
    pub async fn bind(ip: Ipv4Addr) -> RawPeer {
        let listener = TcpListener::bind(SocketAddr::new(IpAddr::V4(ip), 0))
            .await
            .unwrap();
        RawPeer {
            ip: IpAddr::V4(ip),
            listener,
        }
    }
    pub fn port(&self) -> u16 {
        self.listener.local_addr().unwrap().port()
    }
    /// The speaker's next connection, within `t`.
    pub async fn accept_within(&self, t: Duration) -> Option<Conn> {
        match tokio::time::timeout(t, self.listener.accept()).await {
            Ok(Ok((sock, _))) => Some(Conn {
                sock,
                buf: Vec::new(),
            }),
            _ => None,
        }
    }
    pub async fn accept(&self) -> Conn {
        self.accept_within(Duration::from_secs(5))
            .await
            .expect("the speaker did not connect")
    }
}

pub struct Conn {
    pub sock: TcpStream,
    pub buf: Vec<u8>,
}

/// What a read gave.
#[derive(Debug, PartialEq)]
pub enum Got {
    Msg(Message),
    /// The speaker closed the connection.
    Closed,
    /// Nothing within the time given.
    Silent,
}

impl Conn {
    /// The next message within `t`.
    pub async fn next_within(&mut self, t: Duration) -> Got {
        let deadline = tokio::time::Instant::now() + t;
        loop {
            if let Ok(Frame::Complete(n)) = wire::check_frame(&self.buf) {
                let frame: Vec<u8> = self.buf.drain(..n).collect();
                return Got::Msg(wire::decode(&frame, &CODEC).unwrap());
            }
            let mut tmp = [0u8; 4096];
            match tokio::time::timeout_at(deadline, self.sock.read(&mut tmp)).await {
                Err(_) => return Got::Silent,
                Ok(Ok(0)) | Ok(Err(_)) => return Got::Closed,
                Ok(Ok(n)) => self.buf.extend_from_slice(&tmp[..n]),
            }
        }
    }

    /// The next message (None on EOF); panics after 10 s of silence.
    pub async fn next(&mut self) -> Option<Message> {
        match self.next_within(Duration::from_secs(10)).await {
            Got::Msg(m) => Some(m),
            Got::Closed => None,
            Got::Silent => panic!("speaker silent for 10 s"),
        }
    }

    /// Skip KEEPALIVEs; the next other message.
    pub async fn next_non_keepalive(&mut self) -> Option<Message> {
        loop {
            match self.next().await {
                Some(Message::Keepalive) => continue,
                other => return other,
            }
        }
    }

    /// Read until a NOTIFICATION arrives.
    pub async fn notification(&mut self) -> Notification {
        loop {
            match self.next().await {
                Some(Message::Notification(n)) => return n,
                Some(_) => continue,
                None => panic!("connection closed without NOTIFICATION"),
            }
        }
    }

    pub async fn send(&mut self, m: &Message) {
        let b = wire::encode(m, &CODEC).unwrap();
        self.sock.write_all(&b).await.unwrap();
    }

    /// Read the speaker's OPEN, answer with `ours` and a KEEPALIVE; returns
    /// the speaker's OPEN.
    pub async fn establish(&mut self, ours: Open) -> Open {
        let Some(Message::Open(theirs)) = self.next().await else {
            panic!("expected OPEN")
        };
        self.send(&Message::Open(ours)).await;
        self.send(&Message::Keepalive).await;
        theirs
    }
}
