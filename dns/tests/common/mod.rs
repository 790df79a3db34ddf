//! Test harness: the two-pop lab deployment (plus a few extra static records)
//! served on 127.0.0.1 ephemeral ports, and a minimal DNS client over real
//! UDP and TCP sockets built on hickory-proto messages.
#![allow(dead_code)]

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use edge_dns::server::ViewHandle;
use edge_dns::{DnsOptions, DnsServer, DnsView, GeoDb};
use edge_topology::{Deployment, Record as TopoRecord, RecordType as TopoType};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

pub const AMS: &str = "198.51.100.10";
pub const NYC: &str = "198.51.100.20";

pub fn repo_path(rel: &str) -> String {
    format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"))
}

/// The two-pop lab deployment, with extra records the tests need: a name
/// whose TXT RRset is far larger than 512 or 1232 bytes, and one of each
/// static type.
pub fn deployment() -> Deployment {
    let mut dep = edge_topology::load(repo_path("labs/two-pop/deployment.toml")).unwrap();
    let zone = &mut dep.dns.as_mut().unwrap().zones[0];
    let rec = |name: &str, rtype, value: &str| TopoRecord {
        name: name.to_string(),
        rtype,
        ttl: 300,
        value: value.to_string(),
    };
    for i in 0..40 {
        zone.records.push(rec(
            "big.edge.example.",
            TopoType::Txt,
            &format!("{i:02} padding padding padding padding padding padding padding padding padding"),
        ));
    }
    zone.records.extend([
        rec("edge.example.", TopoType::Mx, "10 mx1.edge.example."),
        rec("mx1.edge.example.", TopoType::A, "203.0.113.25"),
        rec(
            "_sip._udp.edge.example.",
            TopoType::Srv,
            "1 10 5060 anycast.edge.example.",
        ),
        rec("edge.example.", TopoType::Caa, "0 issue \"ca.example.net\""),
        rec("web.edge.example.", TopoType::Cname, "www.edge.example."),
        rec("edge.example.", TopoType::Txt, "v=spf1 -all"),
    ]);
    dep
}

pub fn lab_geo() -> GeoDb {
    GeoDb::open(repo_path("labs/geoip/lab.mmdb")).unwrap()
}

pub struct Lab {
    pub server: DnsServer,
    pub addr: SocketAddr,
    pub view: ViewHandle,
}

/// Starts the server on one UDP socket and one TCP listener sharing a port,
/// as `dig` and `dig +tcp` expect.
pub async fn start(options: DnsOptions) -> Lab {
    start_with(&deployment(), options).await
}

/// [`start`] serving `dep` (with the lab GeoIP database).
pub async fn start_with(dep: &Deployment, options: DnsOptions) -> Lab {
    let mut server = DnsServer::new(dep, Some(lab_geo()), DnsView::default(), options, None).unwrap();
    let (udp, tcp) = bind_pair().await;
    let addr = udp.local_addr().unwrap();
    server.serve_udp(udp);
    server.serve_tcp(tcp);
    let view = server.view_handle();
    Lab { server, addr, view }
}

async fn bind_pair() -> (UdpSocket, TcpListener) {
    for _ in 0..50 {
        let udp = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let port = udp.local_addr().unwrap().port();
        if let Ok(tcp) = TcpListener::bind(("127.0.0.1", port)).await {
            return (udp, tcp);
        }
    }
    panic!("no free UDP+TCP port pair on 127.0.0.1");
}

/// How to ask.
#[derive(Clone, Debug)]
pub struct Ask {
    pub name: String,
    pub qtype: RecordType,
    /// `None`: no EDNS at all. `Some(size)`: EDNS with that UDP size.
    pub edns: Option<u16>,
    pub ecs: Option<(IpAddr, u8)>,
}

impl Ask {
    pub fn new(name: &str, qtype: RecordType) -> Self {
        Self {
            name: name.to_string(),
            qtype,
            edns: Some(1232),
            ecs: None,
        }
    }

    pub fn ecs(mut self, subnet: &str) -> Self {
        let net: ipnet::IpNet = subnet.parse().unwrap();
        self.ecs = Some((net.addr(), net.prefix_len()));
        self.edns = self.edns.or(Some(1232));
        self
    }

    pub fn no_edns(mut self) -> Self {
        self.edns = None;
        self
    }

    pub fn message(&self, id: u16) -> Vec<u8> {
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(&self.name).unwrap(), self.qtype));
        if let Some(size) = self.edns {
            let mut e = Edns::new();
            e.set_max_payload(size);
            if let Some((addr, src)) = self.ecs {
                e.options_mut()
                    .insert(EdnsOption::Subnet(ClientSubnet::new(addr, src, 0)));
            }
            m.edns = Some(e);
        }
        m.to_vec().unwrap()
    }
}

pub async fn udp_raw(addr: SocketAddr, bytes: &[u8]) -> Option<Message> {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    sock.send_to(bytes, addr).await.unwrap();
    let mut buf = vec![0u8; 65_535];
    let n = tokio::time::timeout(Duration::from_secs(3), sock.recv(&mut buf))
        .await
        .ok()?
        .unwrap();
    Some(Message::from_vec(&buf[..n]).unwrap())
}

pub async fn udp(addr: SocketAddr, ask: &Ask) -> Message {
    udp_raw(addr, &ask.message(0x1234))
        .await
        .expect("no UDP response")
}

pub async fn tcp(addr: SocketAddr, ask: &Ask) -> Message {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let msg = ask.message(0x4321);
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(&msg);
    s.write_all(&framed).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(3), s.read_exact(&mut len))
        .await
        .expect("TCP response timed out")
        .unwrap();
    let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut buf).await.unwrap();
    Message::from_vec(&buf).unwrap()
}

/// A and AAAA addresses in the answer section, as strings.
pub fn addrs(m: &Message) -> Vec<String> {
    m.answers
        .iter()
        .filter(|r| matches!(r.record_type(), RecordType::A | RecordType::AAAA))
        .map(|r| r.data.to_string())
        .collect()
}

/// The echoed ECS option: (source prefix, scope prefix).
pub fn ecs_echo(m: &Message) -> Option<(u8, u8)> {
    match m.edns.as_ref()?.option(EdnsCode::Subnet)? {
        EdnsOption::Subnet(s) => Some((s.source_prefix(), s.scope_prefix())),
        _ => None,
    }
}
