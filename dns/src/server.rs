//! The server: an [`Authority`] that answers one question from the zones and
//! GSLB steering (pure, also used by `explain`), and a hickory-server
//! [`RequestHandler`] around it that adds EDNS/ECS, RRL, AXFR policy and
//! metrics, running on sockets the node binds and passes in.
//!
//! hickory's `Catalog` rebuilds the response EDNS and drops ECS, which is why
//! this is a `RequestHandler` of its own.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use edge_topology::Deployment;
use hickory_proto::op::{Edns, Header, HeaderCounts, MessageType, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA, HINFO};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::NetError;
use hickory_server::net::runtime::Time;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::{MessageResponse, MessageResponseBuilder, Queries};
use ipnet::IpNet;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::DnsError;
use crate::ecs::{self, QueryEcs};
use crate::geo::GeoDb;
use crate::metrics::{DnsMetrics, labels};
use crate::rrl::{Action, Rrl, RrlConfig};
use crate::steer::{ClientInfo, Decision, SteerOptions, Steering};
use crate::view::DnsView;
use crate::zone::{Step, Zones};
use prometheus_client::metrics::counter::Counter;

/// CNAME chains longer than this are cut (and answered as far as followed).
const MAX_CNAME_HOPS: usize = 8;

/// Server settings that the topology does not carry.
#[derive(Debug, Clone)]
pub struct DnsOptions {
    pub steer: SteerOptions,
    pub rrl: RrlConfig,
    /// Sources allowed to AXFR (over TCP only); empty refuses every transfer.
    pub axfr_allow: Vec<IpNet>,
    /// Largest UDP response we send, whatever the client advertises (1232 is
    /// the DNS Flag Day 2020 size that avoids IP fragmentation).
    pub max_udp_payload: u16,
    /// Idle TCP connections are closed after this.
    pub tcp_timeout: Duration,
    /// Receive loops (tasks) per UDP socket; `0`: one per tokio worker
    /// thread. One loop keeps the tail latency low when the server shares
    /// its CPU (two loops on one CPU preempt each other holding queries:
    /// p99 9 ms against 2-3 ms in `labs/bench/dns.sh`); more help only when
    /// one socket needs more than a core.
    pub udp_loops: usize,
}

impl Default for DnsOptions {
    fn default() -> Self {
        Self {
            steer: SteerOptions::default(),
            rrl: RrlConfig::default(),
            axfr_allow: Vec::new(),
            max_udp_payload: 1232,
            tcp_timeout: Duration::from_secs(10),
            udp_loops: 1,
        }
    }
}

/// The answer to one question, before it becomes a message.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub rcode: ResponseCode,
    pub authoritative: bool,
    pub answers: Vec<Record>,
    pub authority: Vec<Record>,
    pub additionals: Vec<Record>,
    /// ECS SCOPE PREFIX-LENGTH for the response (0: client-independent).
    pub scope: u8,
    /// The GSLB decisions taken (one per GSLB name met, CNAMEs included).
    /// Only [`Authority::answer`] and `explain` build them; the server
    /// answers without the trace.
    pub decisions: Vec<Decision>,
    /// A GSLB answer failed open.
    fail_open: bool,
    /// The site of the first chosen GSLB candidate (index into
    /// [`Steering::sites`]).
    site: Option<usize>,
}

impl Outcome {
    fn new(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            authoritative: false,
            answers: Vec::new(),
            authority: Vec::new(),
            additionals: Vec::new(),
            scope: 0,
            decisions: Vec::new(),
            fail_open: false,
            site: None,
        }
    }

    /// The addresses in the answer section, in order.
    pub fn addresses(&self) -> Vec<IpAddr> {
        self.answers
            .iter()
            .filter_map(|r| match &r.data {
                RData::A(a) => Some(IpAddr::V4(a.0)),
                RData::AAAA(a) => Some(IpAddr::V6(a.0)),
                _ => None,
            })
            .collect()
    }
}

/// The explain trace: every GSLB decision, then the message it produced.
impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for d in &self.decisions {
            writeln!(f, "{d}")?;
        }
        writeln!(
            f,
            "rcode {}{}, ECS scope /{}",
            rcode_name(self.rcode),
            if self.authoritative { " aa" } else { "" },
            self.scope
        )?;
        for (section, rrs) in [
            ("answer", &self.answers),
            ("authority", &self.authority),
            ("additional", &self.additionals),
        ] {
            for r in rrs {
                writeln!(
                    f,
                    "  {section:<10} {} {} {} {}",
                    r.name,
                    r.ttl,
                    r.record_type(),
                    r.data
                )?;
            }
        }
        Ok(())
    }
}

/// Zones plus steering: answers one question for one client under one view.
/// Pure; the server and `explain` both call [`Authority::answer`].
#[derive(Debug, Clone)]
pub struct Authority {
    zones: Zones,
    steering: Steering,
}

impl Authority {
    pub fn new(dep: &Deployment, geo: Option<Arc<GeoDb>>, options: SteerOptions) -> Result<Self, DnsError> {
        let dns = dep.dns.as_ref().ok_or(DnsError::NoDnsConfig)?;
        Ok(Self {
            zones: Zones::build(dns)?,
            steering: Steering::new(dep, geo, options)?,
        })
    }

    pub fn zones(&self) -> &Zones {
        &self.zones
    }

    pub fn steering(&self) -> &Steering {
        &self.steering
    }

    /// Answers `qtype` for `name` (not AXFR/IXFR: those are a transport
    /// policy, see the handler), with the GSLB decision trace.
    pub fn answer(&self, name: &LowerName, qtype: RecordType, client: ClientInfo, view: &DnsView) -> Outcome {
        self.answer_with(name, qtype, client, view, true)
    }

    /// [`Self::answer`]; `trace` false skips building the decision trace (the
    /// query path): the same filter chain runs either way.
    fn answer_with(
        &self,
        name: &LowerName,
        qtype: RecordType,
        client: ClientInfo,
        view: &DnsView,
        trace: bool,
    ) -> Outcome {
        let mut out = Outcome::new(ResponseCode::NoError);
        let mut name = name.clone();
        for hop in 0..MAX_CNAME_HOPS {
            let Some(zone) = self.zones.find(&name) else {
                if hop == 0 {
                    // Not ours and we do not recurse.
                    out.rcode = ResponseCode::Refused;
                }
                return out;
            };
            if hop == 0 {
                out.authoritative = true;
            }
            let step = zone.step(&name, qtype);
            if qtype == RecordType::ANY {
                // RFC 8482: answer ANY minimally, with one synthesized HINFO
                // (or the CNAME that is there), never the whole node.
                match step {
                    Step::Cname(c) => out.answers.push(*c),
                    Step::Answer(_) | Step::NoData | Step::Gslb => out.answers.push(Record::from_rdata(
                        Name::from(&name),
                        zone.soa.ttl,
                        RData::HINFO(HINFO::new("RFC8482".into(), String::new())),
                    )),
                    Step::NxDomain => {
                        out.rcode = ResponseCode::NXDomain;
                        out.authority.push(zone.negative_soa());
                    }
                    Step::Referral { ns, glue } => {
                        out.authoritative = false;
                        out.authority = ns;
                        out.additionals = glue;
                    }
                    Step::NotOurs => out.rcode = ResponseCode::Refused,
                }
                return out;
            }
            match step {
                Step::NotOurs => {
                    out.rcode = ResponseCode::Refused;
                    return out;
                }
                Step::Answer(rrs) => {
                    // Glue saves the resolver a round trip for in-zone targets.
                    for r in &rrs {
                        let target = match &r.data {
                            RData::NS(n) => Some(&n.0),
                            RData::MX(mx) => Some(&mx.exchange),
                            RData::SRV(srv) => Some(&srv.target),
                            _ => None,
                        };
                        if let Some(t) = target {
                            let t = LowerName::from(t);
                            if let Some(z) = self.zones.find(&t) {
                                out.additionals.extend(z.addresses_of(&t));
                            }
                        }
                    }
                    out.answers.extend(rrs);
                    return out;
                }
                Step::Cname(c) => {
                    let target = match &c.data {
                        RData::CNAME(t) => LowerName::from(&t.0),
                        _ => return out,
                    };
                    out.answers.push(*c);
                    name = target;
                }
                Step::Referral { ns, glue } => {
                    if hop == 0 {
                        out.authoritative = false;
                        out.authority = ns;
                        out.additionals = glue;
                    }
                    return out;
                }
                Step::NoData => {
                    out.authority.push(zone.negative_soa());
                    return out;
                }
                Step::NxDomain => {
                    out.rcode = ResponseCode::NXDomain;
                    out.authority.push(zone.negative_soa());
                    return out;
                }
                Step::Gslb => {
                    if !matches!(qtype, RecordType::A | RecordType::AAAA) {
                        out.authority.push(zone.negative_soa());
                        return out;
                    }
                    if trace {
                        let Some(d) = self.steering.decide(&name, qtype, client, view) else {
                            out.authority.push(zone.negative_soa());
                            return out;
                        };
                        out.site = d
                            .chosen
                            .first()
                            .and_then(|c| c.split('@').nth(1))
                            .and_then(|site| self.steering.sites().iter().position(|s| s == site));
                        out.fail_open |= d.fail_open;
                        if d.answer.is_empty() {
                            out.authority.push(zone.negative_soa());
                        } else {
                            let owner = Name::from(&name);
                            for a in &d.answer {
                                let data = match a {
                                    IpAddr::V4(v4) => RData::A(A(*v4)),
                                    IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                                };
                                out.answers.push(Record::from_rdata(owner.clone(), d.ttl, data));
                            }
                            out.scope = out.scope.max(d.scope);
                        }
                        out.decisions.push(d);
                        return out;
                    }
                    let Some((rec, choice)) = self.steering.choose(&name, qtype, client, view) else {
                        out.authority.push(zone.negative_soa());
                        return out;
                    };
                    let start = out.answers.len();
                    for idx in choice.chosen() {
                        for r in rec.records_of(idx, qtype) {
                            // Addresses are answered once, in order.
                            if !out.answers[start..].iter().any(|o| o.data == r.data) {
                                out.answers.push(r.clone());
                            }
                        }
                    }
                    out.fail_open |= choice.fail_open;
                    out.site = choice.chosen().next().and_then(|i| rec.site_id(i));
                    if out.answers.len() == start {
                        out.authority.push(zone.negative_soa());
                    } else {
                        out.scope = out.scope.max(choice.scope);
                    }
                    return out;
                }
            }
        }
        tracing::debug!(%name, "CNAME chain too long, answered as far as followed");
        out
    }

    /// The decision trace for a query as the server would see it: `src` is
    /// the resolver address, `ecs` the client subnet it sent (capped and
    /// truncated exactly like on the wire).
    pub fn explain(
        &self,
        name: &str,
        qtype: RecordType,
        src: IpAddr,
        ecs: Option<IpNet>,
        view: &DnsView,
    ) -> Result<Outcome, DnsError> {
        let name = Name::from_ascii(name)
            .map(|n| LowerName::from(&n))
            .map_err(|e| DnsError::Config {
                what: format!("query name {name:?}"),
                reason: e.to_string(),
            })?;
        let client = ClientInfo {
            src,
            ecs: ecs.and_then(|n| ecs::effective(n.addr(), n.prefix_len())),
        };
        Ok(self.answer(&name, qtype, client, view))
    }

    /// AXFR content of the zone at `apex`: SOA, every record (GSLB names with
    /// all their candidate addresses, as a fail-open secondary would need),
    /// SOA. `None` if we are not authoritative for exactly that apex.
    pub fn transfer(&self, apex: &LowerName) -> Option<Vec<Record>> {
        let zone = self.zones.apex(apex)?;
        let mut out = vec![zone.soa.clone()];
        out.extend(zone.all_records().cloned());
        for g in self.steering.records() {
            if self.zones.find(&g.name).map(|z| &z.origin) != Some(&zone.origin) {
                continue;
            }
            let mut seen = std::collections::BTreeSet::new();
            for a in g.candidates.iter().flat_map(|c| c.addrs.iter()) {
                if seen.insert(*a) {
                    let data = match a {
                        IpAddr::V4(v4) => RData::A(A(*v4)),
                        IpAddr::V6(v6) => RData::AAAA(AAAA(*v6)),
                    };
                    out.push(Record::from_rdata(Name::from(&g.name), g.ttl, data));
                }
            }
        }
        out.push(zone.soa.clone());
        Some(out)
    }
}

/// A handle the controller uses to publish a new view; cheap to clone.
#[derive(Debug, Clone)]
pub struct ViewHandle(Arc<ArcSwap<DnsView>>);

impl ViewHandle {
    /// Publishes `view`; the next query sees it (no lock on the query path).
    pub fn set(&self, view: DnsView) {
        self.0.store(Arc::new(view));
    }

    pub fn get(&self) -> Arc<DnsView> {
        self.0.load_full()
    }
}

struct Shared {
    authority: Authority,
    view: ViewHandle,
    rrl: Rrl,
    metrics: DnsMetrics,
    options: DnsOptions,
    /// `metrics.gslb_answers` by site index, created on first use.
    site_counters: Vec<OnceLock<Counter>>,
    /// `metrics.queries` by (qtype, rcode), created on first use: no label
    /// strings on the query path.
    query_counters: RwLock<HashMap<(Option<RecordType>, u16), Counter>>,
}

impl Shared {
    fn site_answers(&self, site: usize) -> &Counter {
        static NONE: OnceLock<Counter> = OnceLock::new();
        match self.site_counters.get(site) {
            Some(c) => c.get_or_init(|| {
                let name = self
                    .authority
                    .steering()
                    .sites()
                    .get(site)
                    .map_or("", String::as_str);
                self.metrics
                    .gslb_answers
                    .get_or_create(&labels(&[("site", name)]))
                    .clone()
            }),
            None => NONE.get_or_init(Counter::default),
        }
    }

    fn query_counter(&self, qtype: Option<RecordType>, rcode: ResponseCode) -> Counter {
        let key = (qtype, u16::from(rcode));
        if let Some(c) = self.query_counters.read().ok().and_then(|m| m.get(&key).cloned()) {
            return c;
        }
        let qtype = qtype.map_or_else(|| "none".to_string(), |q| q.to_string());
        let c = self
            .metrics
            .queries
            .get_or_create(&labels(&[("qtype", &qtype), ("rcode", &rcode_name(rcode))]))
            .clone();
        if let Ok(mut m) = self.query_counters.write() {
            m.insert(key, c.clone());
        }
        c
    }
}

/// The hickory [`RequestHandler`].
#[derive(Clone)]
pub struct GslbHandler(Arc<Shared>);

impl fmt::Debug for GslbHandler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GslbHandler").finish_non_exhaustive()
    }
}

/// The authoritative GSLB server.
pub struct DnsServer {
    handler: GslbHandler,
    /// TCP (hickory's connection handling).
    server: hickory_server::Server<GslbHandler>,
    /// UDP: our own receive loops (see [`udp_loop`]).
    udp: JoinSet<()>,
    stop: watch::Sender<bool>,
}

impl fmt::Debug for DnsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsServer").finish_non_exhaustive()
    }
}

impl DnsServer {
    /// Builds the server for `dep`'s `[dns]` section. `geo` is the opened
    /// GeoIP database (see [`GeoDb::open`]); without one the geo filter is a
    /// no-op. Registers the metrics in `registry` if given.
    pub fn new(
        dep: &Deployment,
        geo: Option<GeoDb>,
        view: DnsView,
        options: DnsOptions,
        registry: Option<&mut prometheus_client::registry::Registry>,
    ) -> Result<Self, DnsError> {
        let authority = Authority::new(dep, geo.map(Arc::new), options.steer.clone())?;
        let metrics = DnsMetrics::default();
        let authority_sites = authority.steering().sites().len();
        if let Some(r) = registry {
            metrics.register(r);
        }
        let handler = GslbHandler(Arc::new(Shared {
            authority,
            view: ViewHandle(Arc::new(ArcSwap::from_pointee(view))),
            rrl: Rrl::new(options.rrl.clone()),
            metrics,
            options,
            site_counters: (0..authority_sites).map(|_| OnceLock::new()).collect(),
            query_counters: RwLock::new(HashMap::new()),
        }));
        Ok(Self {
            server: hickory_server::Server::new(handler.clone()),
            handler,
            udp: JoinSet::new(),
            stop: watch::Sender::new(false),
        })
    }

    /// Serves UDP on a bound socket (one per service address: replies leave
    /// from the socket's address, not the query's destination). Must be
    /// called inside a tokio runtime.
    ///
    /// Each query is answered inline by the task that received it (no task
    /// per query, no channel back to a sender task): one `recvfrom` and one
    /// `sendto` per query and no thread wake-up while queries keep coming.
    pub fn serve_udp(&mut self, socket: UdpSocket) {
        let socket = Arc::new(socket);
        let loops = match self.handler.0.options.udp_loops {
            0 => tokio::runtime::Handle::current().metrics().num_workers(),
            n => n,
        };
        for _ in 0..loops.max(1) {
            self.udp.spawn(udp_loop(
                self.handler.clone(),
                socket.clone(),
                self.stop.subscribe(),
            ));
        }
    }

    /// Serves TCP on a bound listener.
    pub fn serve_tcp(&mut self, listener: TcpListener) {
        let timeout = self.handler.0.options.tcp_timeout;
        // The last argument is the per-connection queue of responses (in
        // messages); hickory handles one connection's queries in sequence,
        // so a short queue is plenty.
        self.server.register_listener(listener, timeout, 32);
    }

    /// Publishes a new view; answers change from the next query on.
    pub fn set_view(&self, view: DnsView) {
        self.handler.0.view.set(view);
    }

    pub fn view_handle(&self) -> ViewHandle {
        self.handler.0.view.clone()
    }

    pub fn metrics(&self) -> &DnsMetrics {
        &self.handler.0.metrics
    }

    pub fn authority(&self) -> &Authority {
        &self.handler.0.authority
    }

    /// [`Authority::explain`] against the view currently served.
    pub fn explain(
        &self,
        name: &str,
        qtype: RecordType,
        src: IpAddr,
        ecs: Option<IpNet>,
    ) -> Result<Outcome, DnsError> {
        let view = self.handler.0.view.get();
        self.handler.0.authority.explain(name, qtype, src, ecs, &view)
    }

    /// Stops accepting queries and waits for the socket tasks to end.
    pub async fn shutdown(&mut self) -> Result<(), DnsError> {
        self.stop.send_replace(true);
        while self.udp.join_next().await.is_some() {}
        self.server
            .shutdown_gracefully()
            .await
            .map_err(|e| DnsError::Io(std::io::Error::other(e.to_string())))
    }

    /// Runs until every socket task ends (a socket error, or shutdown).
    pub async fn block_until_done(&mut self) -> Result<(), DnsError> {
        let udp = &mut self.udp;
        let (tcp, ()) = tokio::join!(self.server.block_until_done(), async {
            while udp.join_next().await.is_some() {}
        });
        tcp.map_err(|e| DnsError::Io(std::io::Error::other(e.to_string())))
    }
}

/// The mnemonic (`NOERROR`, `NXDOMAIN`…) used in metric labels, as `dig`
/// prints it; hickory's `Display` gives prose ("Non-Existent Domain").
fn rcode_name(r: ResponseCode) -> String {
    match r {
        ResponseCode::NoError => "NOERROR".into(),
        ResponseCode::FormErr => "FORMERR".into(),
        ResponseCode::ServFail => "SERVFAIL".into(),
        ResponseCode::NXDomain => "NXDOMAIN".into(),
        ResponseCode::NotImp => "NOTIMP".into(),
        ResponseCode::Refused => "REFUSED".into(),
        ResponseCode::NotAuth => "NOTAUTH".into(),
        ResponseCode::BADVERS => "BADVERS".into(),
        other => format!("RCODE{}", u16::from(other)),
    }
}

#[async_trait::async_trait]
impl RequestHandler for GslbHandler {
    async fn handle_request<R: ResponseHandler, T: Time>(&self, request: &Request, rh: R) -> ResponseInfo {
        self.respond(request, rh).await
    }
}

/// Largest UDP query read (as hickory's UDP stream).
const UDP_RECV_BUFFER: usize = 4096;
/// Queries a UDP loop answers in a row before it yields to other tasks.
const UDP_BURST: u32 = 64;

/// Receives queries on `socket` and answers each before reading the next,
/// until `stop` turns true (or the server is dropped).
async fn udp_loop(handler: GslbHandler, socket: Arc<UdpSocket>, mut stop: watch::Receiver<bool>) {
    let mut buf = vec![0u8; UDP_RECV_BUFFER];
    let mut burst = 0u32;
    loop {
        match socket.try_recv_from(&mut buf) {
            Ok((n, src)) => {
                let query = buf.get(..n).unwrap_or_default();
                handler.handle_udp(query, src, &socket).await;
                burst += 1;
                if burst >= UDP_BURST {
                    burst = 0;
                    if *stop.borrow() {
                        return;
                    }
                    tokio::task::yield_now().await;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                burst = 0;
                if *stop.borrow() {
                    return;
                }
                tokio::select! {
                    r = stop.changed() => if r.is_err() || *stop.borrow() { return },
                    r = socket.readable() => if let Err(e) = r {
                        tracing::warn!(error = %e, "UDP socket not readable");
                        return;
                    },
                }
            }
            Err(e) => {
                // ICMP errors of earlier replies and the like: keep serving.
                tracing::debug!(error = %e, "error receiving on the UDP socket");
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotConnected | std::io::ErrorKind::ConnectionAborted
                ) {
                    tracing::warn!(error = %e, "UDP socket closed");
                    return;
                }
                // Never spin on a socket that keeps failing.
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Sends a UDP response straight from the receiving task.
#[derive(Clone)]
struct UdpResponder {
    socket: Arc<UdpSocket>,
    dst: std::net::SocketAddr,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpResponder {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
            impl Iterator<Item = &'a Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, NetError> {
        let (info, bytes) = encode_udp(response)?;
        self.socket.send_to(&bytes, self.dst).await?;
        Ok(info)
    }
}

/// Encodes a UDP response as hickory does: at most the response EDNS
/// payload size (512 without EDNS), truncated with TC=1 beyond; SERVFAIL if
/// it cannot be encoded at all.
fn encode_udp<'a>(
    response: MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> Result<(ResponseInfo, Vec<u8>), NetError> {
    let id = response.metadata().id;
    let max = response.edns().map_or(512, Edns::max_payload);
    let mut bytes = Vec::with_capacity(512);
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(max);
    let error = match response.destructive_emit(&mut encoder) {
        Ok(info) => return Ok((info, bytes)),
        Err(e) => e,
    };
    tracing::error!(%error, "error encoding DNS response");
    bytes.clear();
    let mut encoder = BinEncoder::new(&mut bytes);
    encoder.set_max_size(512);
    let mut metadata = Metadata::new(id, MessageType::Response, OpCode::Query);
    metadata.response_code = ResponseCode::ServFail;
    let header = Header {
        metadata,
        counts: HeaderCounts::default(),
    };
    header.emit(&mut encoder)?;
    Ok((ResponseInfo::from(header), bytes))
}

impl GslbHandler {
    /// One UDP datagram, handled as hickory's server would: no reply to a
    /// source that cannot take one, to anything shorter than a header or to a
    /// response; FORMERR to what does not parse.
    async fn handle_udp(&self, query: &[u8], src: std::net::SocketAddr, socket: &Arc<UdpSocket>) {
        let unusable = src.port() == 0
            || match src.ip() {
                IpAddr::V4(a) => a.is_unspecified() || a.is_broadcast(),
                IpAddr::V6(a) => a.is_unspecified(),
            };
        if unusable {
            tracing::debug!(%src, "cannot reply to this source");
            return;
        }
        let mut rh = UdpResponder {
            socket: socket.clone(),
            dst: src,
        };
        match Request::from_bytes(query.to_vec(), src, Protocol::Udp) {
            Ok(request) => {
                if request.metadata.message_type == MessageType::Response {
                    return;
                }
                self.respond(&request, rh).await;
            }
            Err(error) => {
                let Ok(header) = Header::read(&mut BinDecoder::new(query)) else {
                    return;
                };
                tracing::debug!(%src, %error, "malformed query: FORMERR");
                let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                    return;
                };
                let resp = MessageResponseBuilder::new(&queries, None)
                    .error_msg(&header.metadata, ResponseCode::FormErr);
                if let Err(e) = rh.send_response(resp).await {
                    tracing::debug!(%src, error = %e, "failed to send FORMERR");
                }
            }
        }
    }

    async fn respond<R: ResponseHandler>(&self, request: &Request, mut rh: R) -> ResponseInfo {
        let s = &*self.0;
        let mut src = request.src();
        // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; steering,
        // RRL prefixes and the AXFR allow-list must see the IPv4 address.
        src.set_ip(src.ip().to_canonical());
        let udp = request.protocol() == Protocol::Udp;
        let meta = Metadata::response_from_request(&request.metadata);

        // Response EDNS mirrors the query's presence of EDNS (RFC 6891 §7).
        let mut resp_edns = request.edns.as_ref().map(|q| {
            let mut e = Edns::new();
            e.set_max_payload(q.max_payload().max(512).min(s.options.max_udp_payload.max(512)));
            e.set_version(0);
            e
        });
        let qtype_label = request.queries.queries().first().map(|q| q.query_type());

        let reply = |rcode: ResponseCode, edns: Option<Edns>| (rcode, edns);
        let early = if request.metadata.op_code != OpCode::Query {
            Some(reply(ResponseCode::NotImp, resp_edns.clone()))
        } else if request.edns.as_ref().is_some_and(|e| e.version() > 0) {
            let mut e = resp_edns.clone().unwrap_or_default();
            e.set_rcode_high(ResponseCode::BADVERS.high());
            Some(reply(ResponseCode::BADVERS, Some(e)))
        } else if request.queries.len() != 1 {
            Some(reply(ResponseCode::FormErr, resp_edns.clone()))
        } else {
            None
        };
        if let Some((rcode, edns)) = early {
            return self
                .send_error(request, rh, meta, rcode, edns.as_ref(), qtype_label)
                .await;
        }

        let ecs_opt: Option<QueryEcs> = match ecs::from_query(request.as_slice()) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(%src, error = %e, "malformed ECS option: FORMERR");
                return self
                    .send_error(
                        request,
                        rh,
                        meta,
                        ResponseCode::FormErr,
                        resp_edns.as_ref(),
                        qtype_label,
                    )
                    .await;
            }
        };
        if ecs_opt.is_some() {
            s.metrics.ecs_queries.inc();
        }
        let Some(query) = request.queries.queries().first() else {
            return self
                .send_error(
                    request,
                    rh,
                    meta,
                    ResponseCode::FormErr,
                    resp_edns.as_ref(),
                    qtype_label,
                )
                .await;
        };
        let qname = query.name().clone();
        let qtype = query.query_type();
        if query.query_class() != DNSClass::IN {
            // Our zones are IN only; CHAOS probes (version.bind) and the like
            // get nothing to fingerprint.
            return self
                .send_error(
                    request,
                    rh,
                    meta,
                    ResponseCode::Refused,
                    resp_edns.as_ref(),
                    qtype_label,
                )
                .await;
        }

        let outcome = if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            // IXFR is answered like AXFR (a full transfer is a valid IXFR
            // reply, RFC 1995 §4): we keep no zone history.
            let allowed = !udp && s.options.axfr_allow.iter().any(|n| n.contains(&src.ip()));
            match (allowed, s.authority.transfer(&qname)) {
                (true, Some(records)) => {
                    tracing::info!(%src, zone = %qname, "zone transfer");
                    let mut o = Outcome::new(ResponseCode::NoError);
                    o.authoritative = true;
                    o.answers = records;
                    o
                }
                (true, None) => Outcome::new(ResponseCode::NotAuth),
                (false, _) => {
                    tracing::info!(%src, zone = %qname, udp, "zone transfer refused");
                    Outcome::new(ResponseCode::Refused)
                }
            }
        } else {
            let client = ClientInfo {
                src: src.ip(),
                ecs: ecs_opt.and_then(|e| e.effective()),
            };
            let view = s.view.0.load();
            let o = s.authority.answer_with(&qname, qtype, client, &view, false);
            if let Some(site) = o.site {
                tracing::debug!(name = %qname, %src, ecs = ?client.ecs,
                    site = s.authority.steering().sites().get(site).map(String::as_str),
                    scope = o.scope, fail_open = o.fail_open, "gslb decision");
            }
            o
        };

        if let (Some(e), Some(q)) = (resp_edns.as_mut(), ecs_opt) {
            // Echo FAMILY, SOURCE PREFIX-LENGTH and ADDRESS as received, with
            // our SCOPE (RFC 7871 §7.2.1).
            e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
                q.addr,
                q.source,
                outcome.scope,
            )));
        }

        let mut meta = meta;
        meta.authoritative = outcome.authoritative;
        meta.recursion_available = false;
        meta.response_code = outcome.rcode;

        if udp {
            match s.rrl.check(src.ip(), Instant::now()) {
                Action::Send => {}
                Action::Drop => {
                    s.metrics.inc_rrl("drop");
                    tracing::debug!(%src, "RRL: response dropped");
                    return ResponseInfo::from(Header {
                        metadata: meta,
                        counts: HeaderCounts::default(),
                    });
                }
                Action::Slip => {
                    s.metrics.inc_rrl("slip");
                    meta.truncation = true;
                    let builder = MessageResponseBuilder::new(&request.queries, resp_edns.as_ref());
                    let resp = builder.build_no_records(meta);
                    return self.finish(rh.send_response(resp).await, request, qtype_label);
                }
            }
        }

        if outcome.fail_open {
            s.metrics.fail_open.inc();
        }
        if let Some(site) = outcome.site {
            s.site_answers(site).inc();
        }
        let builder = MessageResponseBuilder::new(&request.queries, resp_edns.as_ref());
        let resp = builder.build(
            meta,
            outcome.answers.iter(),
            outcome.authority.iter(),
            std::iter::empty(),
            outcome.additionals.iter(),
        );
        let sent = rh.send_response(resp).await;
        if let Ok(info) = &sent
            && info.truncation
            && udp
        {
            s.metrics.truncated.inc();
        }
        self.finish(sent, request, qtype_label)
    }

    async fn send_error<R: ResponseHandler>(
        &self,
        request: &Request,
        mut rh: R,
        mut meta: Metadata,
        rcode: ResponseCode,
        edns: Option<&Edns>,
        qtype: Option<RecordType>,
    ) -> ResponseInfo {
        meta.response_code = rcode;
        let builder = MessageResponseBuilder::new(&request.queries, edns);
        let resp = builder.build_no_records(meta);
        self.finish(rh.send_response(resp).await, request, qtype)
    }

    fn finish(
        &self,
        sent: Result<ResponseInfo, hickory_server::net::NetError>,
        request: &Request,
        qtype: Option<RecordType>,
    ) -> ResponseInfo {
        match sent {
            Ok(info) => {
                self.0.query_counter(qtype, info.response_code).inc();
                info
            }
            Err(e) => {
                tracing::warn!(src = %request.src(), error = %e, "failed to send DNS response");
                let mut meta = Metadata::response_from_request(&request.metadata);
                meta.response_code = ResponseCode::ServFail;
                ResponseInfo::from(Header {
                    metadata: meta,
                    counts: HeaderCounts::default(),
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use edge_topology::{Record as TopoRecord, RecordType as TopoType};

    use super::*;
    use crate::view::SiteState;

    /// xorshift64*: a fixed-seed generator, so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: u64) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
        }
    }

    /// The query path (no trace) answers exactly what `answer`/`explain`
    /// (with the trace) answers, whatever the view.
    #[test]
    fn query_path_answers_like_the_traced_path() {
        let root = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."));
        let mut dep = edge_topology::load(root.join("labs/two-pop/deployment.toml")).unwrap();
        dep.dns.as_mut().unwrap().zones[0].records.push(TopoRecord {
            name: "web.edge.example.".into(),
            rtype: TopoType::Cname,
            ttl: 300,
            value: "www.edge.example.".into(),
        });
        dep.vips
            .get_mut("ams-web")
            .unwrap()
            .prefixes
            .push("2001:db8:ffff::a/128".parse().unwrap());
        let geo = GeoDb::open(root.join("labs/geoip/lab.mmdb")).unwrap();
        let mut rng = Rng(0x0dd_ba11_5eed_0001);
        for (answers, geo) in [(1, Some(Arc::new(geo))), (2, None)] {
            dep.dns.as_mut().unwrap().gslb[0].answers = answers;
            let auth = Authority::new(&dep, geo, SteerOptions::default()).unwrap();
            for round in 0..2000 {
                let mut v = DnsView::default();
                for site in ["ams", "nyc"] {
                    v.sites.insert(
                        site.into(),
                        SiteState {
                            up: rng.below(4) != 0,
                            drained: rng.below(5) == 0,
                            load: rng.below(100) as f64 / 90.0,
                            weight: rng.below(3) as u32 * 50,
                            vip_up: [(format!("{site}-web"), rng.below(6) != 0)].into_iter().collect(),
                        },
                    );
                }
                let subnets = [
                    "198.18.1.0/24",
                    "198.18.2.0/24",
                    "198.18.9.0/24",
                    "2001:db8:a::/48",
                ];
                let subnet: IpNet = subnets[rng.below(4) as usize].parse().unwrap();
                if rng.below(2) == 0 {
                    v.set_rtt(subnet.addr(), "ams", rng.below(3) as u32 * 1000);
                    v.set_rtt(subnet.addr(), "nyc", rng.below(3) as u32 * 1000);
                }
                let client = ClientInfo {
                    src: "127.0.0.1".parse().unwrap(),
                    ecs: (rng.below(4) != 0).then_some(subnet),
                };
                for name in [
                    "www.edge.example.",
                    "web.edge.example.",
                    "edge.example.",
                    "nope.edge.example.",
                ] {
                    let name = LowerName::from(&Name::from_ascii(name).unwrap());
                    for qtype in [RecordType::A, RecordType::AAAA, RecordType::MX, RecordType::ANY] {
                        let t = auth.answer(&name, qtype, client, &v);
                        let q = auth.answer_with(&name, qtype, client, &v, false);
                        let ctx = format!("round {round} {name} {qtype} {client:?} {v:?}\n{t}");
                        assert_eq!(q.rcode, t.rcode, "{ctx}");
                        assert_eq!(q.authoritative, t.authoritative, "{ctx}");
                        assert_eq!(q.answers, t.answers, "{ctx}");
                        assert_eq!(q.authority, t.authority, "{ctx}");
                        assert_eq!(q.additionals, t.additionals, "{ctx}");
                        assert_eq!(q.scope, t.scope, "{ctx}");
                        assert_eq!(q.fail_open, t.fail_open, "{ctx}");
                        assert_eq!(q.site, t.site, "{ctx}");
                        assert!(q.decisions.is_empty());
                    }
                }
            }
        }
    }
}
