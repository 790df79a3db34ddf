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
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError, RwLock};
use std::time::Duration;

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
use crate::cache;
use crate::ecs::{self, QueryEcs};
use crate::fast::{self, FastEdns, FastHeader, FastNames, FastStep};
use crate::geo::GeoDb;
use crate::metrics::{DnsMetrics, labels};
use crate::reload::{self, DnsChanges};
use crate::rrl::{Action, Rrl, RrlConfig};
use crate::steer::{ClientInfo, Decision, SteerOptions, Steering};
use crate::udp::{self, Reply};
use crate::view::DnsView;
use crate::zone::{Step, Zones};
use prometheus_client::metrics::counter::Counter;

/// CNAME chains longer than this are cut (and answered as far as followed).
const MAX_CNAME_HOPS: usize = 8;

/// Server settings that the topology does not carry.
///
/// [`DnsServer::reload`] applies `steer`, `rrl`, `axfr_allow` and
/// `max_udp_payload` from the next query on. `tcp_timeout`, `udp_loops`,
/// `udp_threads` and `udp_batch` shape the sockets, tasks and threads that
/// [`DnsServer::serve_udp`]/[`DnsServer::serve_tcp`] set up once: a reload
/// keeps the values the server started with (and reports a difference as
/// needing a restart), since rebuilding them would drop queries in flight.
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
    /// Run each UDP receive loop on a thread of its own, blocking in the
    /// receive call (woken by the kernel when a query comes, not by
    /// `epoll`), instead of as a task of the caller's runtime. On the
    /// multi-thread runtime the loop's task bounces between worker threads
    /// (every readiness wake-up unparks a sibling worker that steals it):
    /// with `edge run`'s 2 workers on one CPU that was ~50k context switches
    /// per second and ~30% of the throughput (80k against 112k qps with one
    /// worker, before batching).
    pub udp_threads: bool,
    /// Datagrams a UDP loop receives per system call (`recvmmsg`; its
    /// responses then leave with one `sendmmsg`), 1 to 64; other systems
    /// than Linux always use 1. Larger batches save system calls under
    /// load; the first query of a batch waits for the whole batch.
    pub udp_batch: usize,
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
            udp_threads: true,
            udp_batch: 32,
        }
    }
}

impl DnsOptions {
    /// These options with the settings the deployment's `[dns]` section
    /// carries (RRL, AXFR allow-list, steering tunables) applied; the
    /// others are kept. Without a `[dns]` section, unchanged.
    pub fn with_deployment(mut self, dep: &Deployment) -> Self {
        let Some(cfg) = &dep.dns else {
            return self;
        };
        self.rrl.responses_per_second = cfg.rrl.responses_per_second;
        self.rrl.burst = cfg.rrl.burst;
        self.rrl.slip = cfg.rrl.slip;
        self.rrl.ipv4_prefix = cfg.rrl.ipv4_prefix;
        self.rrl.ipv6_prefix = cfg.rrl.ipv6_prefix;
        self.axfr_allow = cfg.axfr_allow.clone();
        self.steer.shed_load_above = cfg.shed_load_above;
        self.steer.latency_tolerance_us =
            u32::try_from(cfg.latency_tolerance.as_micros()).unwrap_or(u32::MAX);
        self.steer.country_sites = cfg.country_sites.clone();
        self
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
    /// The first lookup step of the fast path's names, by wire-format name.
    fast: FastNames,
    /// Identity for the fast path's decision cache (a reload builds a new
    /// `Authority`, whose decisions must not be taken for this one's).
    id: u64,
}

/// At most this many answer records take [`Authority::fast_answer`].
const FAST_ANSWERS: usize = 16;

/// [`Authority::fast_answer`]: what `answer_with` answers (authoritative,
/// NOERROR, nothing in authority or additional), records borrowed.
struct FastOutcome<'a> {
    answers: [&'a Record; FAST_ANSWERS],
    len: usize,
    scope: u8,
    fail_open: bool,
    site: Option<usize>,
}

impl<'a> FastOutcome<'a> {
    fn answers(&self) -> &[&'a Record] {
        &self.answers[..self.len]
    }
}

impl Authority {
    pub fn new(dep: &Deployment, geo: Option<Arc<GeoDb>>, options: SteerOptions) -> Result<Self, DnsError> {
        let dns = dep.dns.as_ref().ok_or(DnsError::NoDnsConfig)?;
        let zones = Zones::build(dns)?;
        let steering = Steering::new(dep, geo, options)?;
        let fast = FastNames::build(&zones, &steering);
        Ok(Self {
            zones,
            steering,
            fast,
            id: cache::next_id(),
        })
    }

    /// [`Self::answer_with`] without the trace for an A or AAAA question
    /// whose name (`key`: wire format, lower case) [`FastNames`] knows and
    /// whose answer is records only. `None`: `answer_with` must answer (the
    /// name is not known, or the answer needs authority records, or more
    /// than [`FAST_ANSWERS`] records).
    fn fast_answer(
        &self,
        key: &[u8],
        qtype: RecordType,
        client: ClientInfo,
        view: &Arc<DnsView>,
    ) -> Option<FastOutcome<'_>> {
        match self.fast.get(key, qtype)? {
            FastStep::Answer(rrs) => {
                let first = rrs.first()?;
                if rrs.len() > FAST_ANSWERS {
                    return None;
                }
                let mut answers = [first; FAST_ANSWERS];
                for (slot, r) in answers.iter_mut().zip(rrs) {
                    *slot = r;
                }
                Some(FastOutcome {
                    answers,
                    len: rrs.len(),
                    scope: 0,
                    fail_open: false,
                    site: None,
                })
            }
            FastStep::Gslb(index) => {
                // As the `Step::Gslb` arm of `answer_with`, with the
                // decision from this thread's cache when the same inputs
                // were decided under this view already.
                let rec = self.steering.record_at(*index)?;
                let key = cache::Key::new(self.id, *index, qtype, &client);
                let choice = cache::get_or_decide(key, view, || {
                    let (_, c) = self.steering.choose_at(*index, qtype, client, view)?;
                    cache::Cached::new(c.chosen(), c.scope, c.fail_open)
                })?;
                let mut answers: Option<[&Record; FAST_ANSWERS]> = None;
                let mut len = 0;
                for idx in choice.chosen() {
                    for r in rec.records_of(idx, qtype) {
                        let list = answers.get_or_insert([r; FAST_ANSWERS]);
                        // Addresses are answered once, in order.
                        if !list[..len].iter().any(|o| o.data == r.data) {
                            *list.get_mut(len)? = r;
                            len += 1;
                        }
                    }
                }
                Some(FastOutcome {
                    answers: answers?,
                    len,
                    scope: choice.scope,
                    fail_open: choice.fail_open,
                    site: choice.chosen().next().and_then(|i| rec.site_id(i)),
                })
            }
        }
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

/// The [`Authority`] a server serves at one moment (see
/// [`DnsServer::authority`]): derefs to it, and keeps it alive while held.
#[derive(Clone)]
pub struct ServedAuthority(Arc<Served>);

impl std::ops::Deref for ServedAuthority {
    type Target = Authority;

    fn deref(&self) -> &Authority {
        &self.0.authority
    }
}

impl fmt::Debug for ServedAuthority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0.authority, f)
    }
}

/// Explains queries against what a [`DnsServer`] serves at the time of the
/// call: the authority of its last successful reload and its current view,
/// so `edge dns explain` shows what a client gets, not what the node
/// started with. Cheap to clone; see [`DnsServer::explainer`].
#[derive(Clone)]
pub struct DnsExplainer(Arc<Shared>);

impl fmt::Debug for DnsExplainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DnsExplainer").finish_non_exhaustive()
    }
}

impl DnsExplainer {
    /// [`Authority::explain`] with the served authority and view.
    pub fn explain(
        &self,
        name: &str,
        qtype: RecordType,
        src: IpAddr,
        ecs: Option<IpNet>,
    ) -> Result<Outcome, DnsError> {
        let served = self.0.served.load();
        let view = self.0.view.0.load();
        served.authority.explain(name, qtype, src, ecs, &view)
    }

    /// The view currently served.
    pub fn view(&self) -> Arc<DnsView> {
        self.0.view.get()
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

/// Everything a reload replaces, swapped as one: a query loads it once
/// ([`ArcSwap::load`]: no lock, no reference count taken) and answers, rate
/// limits and counts with that one version, so a reload between two steps
/// of a query cannot mix the authority of one configuration with the site
/// list of another. A query in flight keeps its version alive until it is
/// answered.
struct Served {
    authority: Authority,
    /// Kept across reloads whose RRL settings do not change, so a reload
    /// does not refill the buckets of a source being limited.
    rrl: Arc<Rrl>,
    /// The options in effect: the live ones as last given, the socket and
    /// thread ones as the server started (see [`DnsOptions`]).
    options: DnsOptions,
    /// `metrics.gslb_answers` by index into this authority's site list,
    /// created on first use. A new list per version: site indices are only
    /// meaningful within one authority, while the counters themselves (one
    /// per site name in the metric family) carry on across reloads.
    site_counters: Vec<OnceLock<Counter>>,
}

impl Served {
    fn new(authority: Authority, rrl: Arc<Rrl>, options: DnsOptions) -> Self {
        let sites = authority.steering().sites().len();
        Self {
            authority,
            rrl,
            options,
            site_counters: (0..sites).map(|_| OnceLock::new()).collect(),
        }
    }

    fn site_answers(&self, site: usize, metrics: &DnsMetrics) -> &Counter {
        static NONE: OnceLock<Counter> = OnceLock::new();
        match self.site_counters.get(site) {
            Some(c) => c.get_or_init(|| {
                let name = self
                    .authority
                    .steering()
                    .sites()
                    .get(site)
                    .map_or("", String::as_str);
                metrics
                    .gslb_answers
                    .get_or_create(&labels(&[("site", name)]))
                    .clone()
            }),
            None => NONE.get_or_init(Counter::default),
        }
    }
}

struct Shared {
    /// The configuration served; [`Shared::reload`] swaps it.
    served: ArcSwap<Served>,
    view: ViewHandle,
    metrics: DnsMetrics,
    /// The options the server started with: the socket and thread settings
    /// come from here (the live ones from [`Served::options`]).
    options: DnsOptions,
    /// Held while a reload builds and swaps, so two reloads cannot both
    /// compute their changes against the same old version.
    reloading: Mutex<()>,
    /// `metrics.queries` by (qtype, rcode), created on first use: no label
    /// strings on the query path.
    query_counters: RwLock<HashMap<(Option<RecordType>, u16), Counter>>,
    /// `metrics.queries` for A and AAAA answered NOERROR (most queries):
    /// no lock and no hashing for them.
    noerror_counters: [OnceLock<Counter>; 2],
    /// Sources of recent queries, for the node's latency prober.
    resolvers: Arc<crate::resolvers::RecentResolvers>,
}

impl Shared {
    /// See [`DnsServer::reload`].
    fn reload(
        &self,
        dep: &Deployment,
        geo: Option<GeoDb>,
        options: DnsOptions,
    ) -> Result<DnsChanges, DnsError> {
        let _one_at_a_time = self.reloading.lock().unwrap_or_else(PoisonError::into_inner);
        let old = self.served.load_full();
        // Everything is built before anything is swapped: an error leaves
        // the server exactly as it was.
        let authority = match Authority::new(dep, geo.map(Arc::new), options.steer.clone()) {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "DNS reload failed: still serving the previous configuration");
                return Err(e);
            }
        };
        let changes = old.authority.changes_to(&authority).with(reload::option_changes(
            &old.options,
            &options,
            &self.options,
        ));
        let options = DnsOptions {
            tcp_timeout: self.options.tcp_timeout,
            udp_loops: self.options.udp_loops,
            udp_threads: self.options.udp_threads,
            udp_batch: self.options.udp_batch,
            ..options
        };
        let rrl = if options.rrl == old.options.rrl {
            old.rrl.clone()
        } else {
            Arc::new(Rrl::new(options.rrl.clone()))
        };
        // Swapped even when nothing changed: the comparison covers what an
        // operator can change, the swap guarantees the server serves what
        // it was given.
        self.served.store(Arc::new(Served::new(authority, rrl, options)));
        if changes.is_empty() {
            tracing::info!("DNS configuration reloaded: unchanged");
        } else {
            tracing::info!(changes = changes.len(), "DNS configuration reloaded");
            for c in &changes {
                tracing::info!(change = %c, "DNS reload");
            }
            if changes.needs_restart() {
                tracing::warn!("some DNS settings changed that only a restart applies");
            }
        }
        Ok(changes)
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
        if let Some(r) = registry {
            metrics.register(r);
        }
        let rrl = Arc::new(Rrl::new(options.rrl.clone()));
        let handler = GslbHandler(Arc::new(Shared {
            served: ArcSwap::from_pointee(Served::new(authority, rrl, options.clone())),
            view: ViewHandle(Arc::new(ArcSwap::from_pointee(view))),
            metrics,
            options,
            reloading: Mutex::new(()),
            query_counters: RwLock::new(HashMap::new()),
            noerror_counters: [OnceLock::new(), OnceLock::new()],
            resolvers: Arc::default(),
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
    /// Each receive loop reads a batch of queries (up to
    /// [`DnsOptions::udp_batch`] per `recvmmsg` on Linux), answers them inline (no task per query, no channel back to
    /// a sender task) and sends the batch's responses with one `sendmmsg`.
    /// With [`DnsOptions::udp_threads`] (the default) every loop runs on a
    /// thread of its own that sleeps in `recvmmsg` (the socket is made
    /// blocking), so no thread wake-up happens while queries keep coming
    /// and an idle server makes two system calls per batch.
    pub fn serve_udp(&mut self, socket: UdpSocket) {
        let loops = match self.handler.0.options.udp_loops {
            0 => tokio::runtime::Handle::current().metrics().num_workers(),
            n => n,
        }
        .max(1);
        if !self.handler.0.options.udp_threads {
            let socket = Arc::new(socket);
            for _ in 0..loops {
                self.spawn_udp_task(socket.clone());
            }
            return;
        }
        let socket = match socket.into_std() {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot take the UDP socket off the runtime: UDP not served");
                return;
            }
        };
        // The threads sleep in the receive call, woken at least every
        // `UDP_STOP_POLL` to see whether the server stopped.
        let blocking = socket
            .set_nonblocking(false)
            .and_then(|()| socket.set_read_timeout(Some(UDP_STOP_POLL)));
        let mut started = 0;
        if let Err(e) = blocking {
            tracing::warn!(error = %e, "cannot make the UDP socket blocking: the receive loops run as tasks");
        } else {
            for _ in 0..loops {
                match self.spawn_udp_thread(&socket) {
                    Ok(()) => started += 1,
                    Err(e) => tracing::error!(error = %e, "UDP receive thread not started"),
                }
            }
        }
        if started > 0 {
            return;
        }
        // No thread at all: serve from the runtime instead.
        match socket
            .set_nonblocking(true)
            .and_then(|()| socket.set_read_timeout(None))
            .and_then(|()| UdpSocket::from_std(socket))
        {
            Ok(s) => {
                let s = Arc::new(s);
                for _ in 0..loops {
                    self.spawn_udp_task(s.clone());
                }
            }
            Err(e) => tracing::error!(error = %e, "UDP not served"),
        }
    }

    fn spawn_udp_task(&mut self, socket: Arc<UdpSocket>) {
        self.udp
            .spawn(udp_loop(self.handler.clone(), socket, self.stop.subscribe()));
    }

    /// One receive loop on a thread of its own, blocking on the socket (see
    /// [`udp_thread_loop`]); a task of the caller's runtime ends with it (for
    /// `shutdown`).
    fn spawn_udp_thread(&mut self, socket: &std::net::UdpSocket) -> std::io::Result<()> {
        let socket = socket.try_clone()?;
        // Only for the queries the fast path does not answer (hickory's
        // request handling is async).
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (done, ended) = tokio::sync::oneshot::channel::<()>();
        let handler = self.handler.clone();
        let stop = self.stop.subscribe();
        std::thread::Builder::new()
            .name("edge-dns-udp".into())
            .spawn(move || {
                let _done = done;
                udp_thread_loop(&handler, &socket, &stop, &rt);
            })?;
        self.udp.spawn(async move {
            let _ = ended.await;
        });
        Ok(())
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

    /// The resolvers that recently queried this server (sampled).
    pub fn resolvers(&self) -> Arc<crate::resolvers::RecentResolvers> {
        self.handler.0.resolvers.clone()
    }

    /// The authority currently served (the one from the last successful
    /// [`Self::reload`]); it stays valid, unchanged, after a later reload.
    pub fn authority(&self) -> ServedAuthority {
        ServedAuthority(self.handler.0.served.load_full())
    }

    /// [`Authority::explain`] with the authority and view currently served.
    pub fn explain(
        &self,
        name: &str,
        qtype: RecordType,
        src: IpAddr,
        ecs: Option<IpNet>,
    ) -> Result<Outcome, DnsError> {
        self.explainer().explain(name, qtype, src, ecs)
    }

    /// A handle that explains queries with whatever this server serves at
    /// the time of each call (authority and view), reloads included; cheap
    /// to clone and to keep (the admin API holds one).
    pub fn explainer(&self) -> DnsExplainer {
        DnsExplainer(self.handler.0.clone())
    }

    /// Replaces the zones, records, GSLB definitions, GeoIP database and
    /// live options (see [`DnsOptions`]) with those of `dep`, `geo` and
    /// `options`, and returns what changed.
    ///
    /// The new configuration is built completely first: on an error (a
    /// deployment without `[dns]`, a record or GSLB definition that cannot
    /// be served) nothing changes and the error is returned. On success it
    /// is swapped in atomically: queries being answered finish with the old
    /// configuration, the next one (UDP or TCP) gets the new one. The view
    /// is not touched: the controller publishes one for the new deployment
    /// with [`Self::set_view`] (sites and VIPs are looked up by name, so an
    /// old view keeps working meanwhile). The RRL buckets are kept unless
    /// the RRL settings change; the decision caches start over.
    ///
    /// `geo` is the database for `dep`'s `[dns] geoip` (see
    /// [`GeoDb::open`], or [`Self::reload_from_dir`] to have it opened);
    /// `None` turns the geo filter into a no-op, as in [`Self::new`].
    pub fn reload(
        &self,
        dep: &Deployment,
        geo: Option<GeoDb>,
        options: DnsOptions,
    ) -> Result<DnsChanges, DnsError> {
        self.handler.0.reload(dep, geo, options)
    }

    /// [`Self::reload`] with the GeoIP database the deployment names opened
    /// from `base_dir` ([`GeoDb::for_deployment`]): a file that cannot be
    /// read fails the reload, and the server keeps serving as it was.
    pub fn reload_from_dir(
        &self,
        dep: &Deployment,
        base_dir: &Path,
        options: DnsOptions,
    ) -> Result<DnsChanges, DnsError> {
        let geo = match GeoDb::for_deployment(dep, base_dir) {
            Ok(g) => g,
            Err(e) => {
                tracing::warn!(error = %e, "DNS reload failed: still serving the previous configuration");
                return Err(e);
            }
        };
        self.reload(dep, geo, options)
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
        self.respond(request, &mut Hickory(rh)).await
    }
}

/// What [`GslbHandler::respond`] counts for a response that was sent.
#[derive(Debug, Clone, Copy)]
struct Count {
    qtype: Option<RecordType>,
    rcode: ResponseCode,
    /// A UDP answer that did not fit and went out with TC=1.
    truncated: bool,
}

impl Shared {
    fn count(&self, c: Count) {
        if c.truncated {
            self.metrics.truncated.inc();
        }
        let common = match (c.qtype, c.rcode) {
            (Some(RecordType::A), ResponseCode::NoError) => self.noerror_counters.first(),
            (Some(RecordType::AAAA), ResponseCode::NoError) => self.noerror_counters.get(1),
            _ => None,
        };
        match common {
            Some(counter) => counter.get_or_init(|| self.query_counter(c.qtype, c.rcode)).inc(),
            None => self.query_counter(c.qtype, c.rcode).inc(),
        };
    }
}

/// Every response the server builds: records from slices (no boxed
/// iterators, one concrete type).
type Response<'q, 'a> = MessageResponse<
    'q,
    'a,
    std::slice::Iter<'a, Record>,
    std::slice::Iter<'a, Record>,
    std::iter::Empty<&'a Record>,
    std::slice::Iter<'a, Record>,
>;

/// `MessageResponseBuilder::build` over record slices; with empty slices the
/// same message as `build_no_records`/`error_msg`.
fn response<'q, 'a>(
    queries: &'q Queries,
    edns: Option<&'q Edns>,
    metadata: Metadata,
    answers: &'a [Record],
    authority: &'a [Record],
    additionals: &'a [Record],
) -> Response<'q, 'a> {
    MessageResponseBuilder::new(queries, edns).build(
        metadata,
        answers.iter(),
        authority.iter(),
        std::iter::empty(),
        additionals.iter(),
    )
}

/// Where [`GslbHandler::respond`] sends a response: hickory's TCP handle,
/// or a UDP batch sent after the whole batch is answered.
trait Sink: Send {
    fn send(
        &mut self,
        response: Response<'_, '_>,
    ) -> impl Future<Output = Result<ResponseInfo, NetError>> + Send;

    /// Counts the response `send` just accepted: at once, or with its batch.
    fn count(&mut self, shared: &Shared, c: Count);
}

/// A hickory [`ResponseHandler`] (TCP): sent and counted at once.
struct Hickory<R>(R);

impl<R: ResponseHandler> Sink for Hickory<R> {
    async fn send(&mut self, response: Response<'_, '_>) -> Result<ResponseInfo, NetError> {
        self.0.send_response(response).await
    }

    fn count(&mut self, shared: &Shared, c: Count) {
        shared.count(c);
    }
}

/// Collects the encoded UDP responses of one received batch.
struct Batch<'b> {
    replies: &'b mut Vec<Reply<Count>>,
    dst: std::net::SocketAddr,
    /// Buffers of sent replies, reused for the next ones (no allocation per
    /// fast-path response).
    spare: &'b mut Vec<Vec<u8>>,
}

impl Batch<'_> {
    fn buffer(&mut self) -> Vec<u8> {
        self.spare.pop().unwrap_or_else(|| Vec::with_capacity(512))
    }
}

impl Sink for Batch<'_> {
    async fn send(&mut self, response: Response<'_, '_>) -> Result<ResponseInfo, NetError> {
        let (info, bytes) = encode_udp(response)?;
        self.replies.push(Reply {
            dst: self.dst,
            bytes,
            count: None,
        });
        Ok(info)
    }

    fn count(&mut self, _shared: &Shared, c: Count) {
        if let Some(r) = self.replies.last_mut() {
            r.count = Some(c);
        }
    }
}

/// Queries a UDP loop answers in a row before it yields to other tasks.
const UDP_BURST: usize = 64;

/// Receives batches of queries on `socket`, answers every query of a batch,
/// sends the responses (one `sendmmsg` on Linux) and reads the next batch,
/// until `stop` turns true (or the server is dropped).
async fn udp_loop(handler: GslbHandler, socket: Arc<UdpSocket>, mut stop: watch::Receiver<bool>) {
    let mut receiver = udp::Receiver::new(handler.0.options.udp_batch);
    let mut sender = udp::Sender::new();
    let mut replies: Vec<Reply<Count>> = Vec::with_capacity(udp::MAX_BATCH);
    let mut spare: Vec<Vec<u8>> = Vec::with_capacity(udp::MAX_BATCH);
    let mut burst = 0usize;
    loop {
        match receiver.recv(&socket) {
            Ok(n) => {
                for i in 0..n {
                    match receiver.datagram(i) {
                        Some((query, Some(src))) => {
                            let mut sink = Batch {
                                replies: &mut replies,
                                dst: src,
                                spare: &mut spare,
                            };
                            handler.handle_udp(query, src, &mut sink).await;
                        }
                        Some((_, None)) => tracing::debug!("datagram from a non-IP source"),
                        None => {}
                    }
                }
                if !send_all(&handler.0, &socket, &mut sender, &replies, &mut stop).await {
                    return;
                }
                recycle(&mut replies, &mut spare);
                burst += n;
                if burst >= UDP_BURST {
                    burst = 0;
                    // Stopped, or the server dropped without a shutdown.
                    if *stop.borrow() || stop.has_changed().is_err() {
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
                if receive_failed(&e) {
                    return;
                }
                // Never spin on a socket that keeps failing.
                tokio::task::yield_now().await;
            }
        }
    }
}

/// How long a UDP thread sleeps in its receive call at most before it looks
/// whether the server stopped.
const UDP_STOP_POLL: Duration = Duration::from_millis(100);

/// [`udp_loop`] on a thread of its own and a blocking socket: the receive
/// waits in the kernel, so a batch costs one receive and one send call. The
/// fast path answers inline; other queries run hickory's async handling on
/// `rt`, this thread's own runtime.
fn udp_thread_loop(
    handler: &GslbHandler,
    socket: &std::net::UdpSocket,
    stop: &watch::Receiver<bool>,
    rt: &tokio::runtime::Runtime,
) {
    let mut receiver = udp::Receiver::new(handler.0.options.udp_batch);
    let mut sender = udp::Sender::new();
    let mut replies: Vec<Reply<Count>> = Vec::with_capacity(udp::MAX_BATCH);
    let mut spare: Vec<Vec<u8>> = Vec::with_capacity(udp::MAX_BATCH);
    let stopped = || *stop.borrow() || stop.has_changed().is_err();
    let mut burst = 0usize;
    loop {
        match receiver.recv_blocking(socket) {
            Ok(n) => {
                for i in 0..n {
                    match receiver.datagram(i) {
                        Some((query, Some(src))) => {
                            let mut sink = Batch {
                                replies: &mut replies,
                                dst: src,
                                spare: &mut spare,
                            };
                            if !handler.handle_udp_inline(query, src, &mut sink) {
                                rt.block_on(handler.handle_udp_async(query, src, &mut sink));
                            }
                        }
                        Some((_, None)) => tracing::debug!("datagram from a non-IP source"),
                        None => {}
                    }
                }
                send_all_blocking(&handler.0, socket, &mut sender, &replies);
                recycle(&mut replies, &mut spare);
                burst += n;
                if burst >= UDP_BURST {
                    burst = 0;
                    if stopped() {
                        return;
                    }
                }
            }
            // The read timeout: nothing came.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                burst = 0;
                if stopped() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => {
                if receive_failed(&e) {
                    return;
                }
                if stopped() {
                    return;
                }
            }
        }
    }
}

/// [`send_all`] on a blocking socket.
fn send_all_blocking(
    shared: &Shared,
    socket: &std::net::UdpSocket,
    sender: &mut udp::Sender,
    replies: &[Reply<Count>],
) {
    count_replies(shared, replies);
    let mut done = 0;
    let mut interrupted = 0;
    while let Some(rest) = replies.get(done..).filter(|r| !r.is_empty()) {
        match sender.send_blocking(socket, rest) {
            Ok(0) => done += 1,
            Ok(sent) => done += sent,
            // A signal, or a full buffer despite blocking: try again, a
            // bounded number of times.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::Interrupted | std::io::ErrorKind::WouldBlock
                ) && interrupted < 100 =>
            {
                interrupted += 1;
                std::thread::yield_now();
            }
            Err(e) => {
                send_failed(rest, &e);
                done += 1;
            }
        }
    }
}

/// Counts and sends every reply (the caller empties `replies`). Counted first, so a
/// client that has its response also sees it in the metrics (the loop may
/// run on another thread). A full socket buffer waits for writability, so
/// nothing is lost to it; a reply the kernel refuses (rare: a firewall, no
/// route) is logged and skipped, as a failed `sendto` was, but stays
/// counted. `false`: the server stopped while waiting.
async fn send_all(
    shared: &Shared,
    socket: &UdpSocket,
    sender: &mut udp::Sender,
    replies: &[Reply<Count>],
    stop: &mut watch::Receiver<bool>,
) -> bool {
    count_replies(shared, replies);
    let mut done = 0;
    let mut running = true;
    while let Some(rest) = replies.get(done..).filter(|r| !r.is_empty()) {
        match sender.send(socket, rest) {
            // sendmmsg reports an error rather than 0; never loop on it.
            Ok(0) => done += 1,
            Ok(sent) => done += sent,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                tokio::select! {
                    r = stop.changed() => if r.is_err() || *stop.borrow() {
                        running = false;
                        break;
                    },
                    r = socket.writable() => if let Err(e) = r {
                        tracing::warn!(error = %e, "UDP socket not writable");
                        running = false;
                        break;
                    },
                }
            }
            Err(e) => {
                send_failed(rest, &e);
                done += 1;
            }
        }
    }
    running
}

/// Logs a failed receive; `true` when the socket is gone (the loop ends).
/// Anything else (ICMP errors of earlier replies and the like) keeps it
/// serving.
fn receive_failed(e: &std::io::Error) -> bool {
    tracing::debug!(error = %e, "error receiving on the UDP socket");
    let closed = matches!(
        e.kind(),
        std::io::ErrorKind::NotConnected | std::io::ErrorKind::ConnectionAborted
    );
    if closed {
        tracing::warn!(error = %e, "UDP socket closed");
    }
    closed
}

/// Counts the replies of a batch before they are sent (a client that has its
/// response also sees it in the metrics).
fn count_replies(shared: &Shared, replies: &[Reply<Count>]) {
    for c in replies.iter().filter_map(|r| r.count) {
        shared.count(c);
    }
}

/// Logs the reply the kernel refused (the first of `rest`).
fn send_failed(rest: &[Reply<Count>], e: &std::io::Error) {
    if let Some(r) = rest.first() {
        if r.count.is_some() {
            tracing::warn!(dst = %r.dst, error = %e, "failed to send DNS response");
        } else {
            tracing::debug!(dst = %r.dst, error = %e, "failed to send FORMERR");
        }
    }
}

/// Empties `replies`, keeping their buffers for the next batch (at most one
/// batch of them, none grown large).
fn recycle(replies: &mut Vec<Reply<Count>>, spare: &mut Vec<Vec<u8>>) {
    spare.extend(
        replies
            .drain(..)
            .map(|r| r.bytes)
            .filter(|b| b.capacity() <= 4096),
    );
    spare.truncate(udp::MAX_BATCH);
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

/// What the fast path answers with (from [`Authority::fast_answer`] or
/// [`Outcome`]).
struct FastAnswer<'a, R> {
    authoritative: bool,
    rcode: ResponseCode,
    answers: &'a [R],
    scope: u8,
    fail_open: bool,
    site: Option<usize>,
}

/// The question name of a fast query in a log line, as `respond` logs it.
struct DisplayName<'a>(&'a fast::FastQuery);

impl fmt::Display for DisplayName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.name() {
            Some(n) => fmt::Display::fmt(&n, f),
            None => f.write_str("?"),
        }
    }
}

impl GslbHandler {
    /// One UDP datagram, handled as hickory's server would: no reply to a
    /// source that cannot take one, to anything shorter than a header or to a
    /// response; FORMERR to what does not parse.
    async fn handle_udp(&self, query: &[u8], src: std::net::SocketAddr, sink: &mut Batch<'_>) {
        if !self.handle_udp_inline(query, src, sink) {
            self.handle_udp_async(query, src, sink).await;
        }
    }

    /// The part of [`Self::handle_udp`] that needs no runtime: ignoring a
    /// source that cannot take a reply, and the fast path. `false`: call
    /// [`Self::handle_udp_async`].
    fn handle_udp_inline(&self, query: &[u8], src: std::net::SocketAddr, sink: &mut Batch<'_>) -> bool {
        let unusable = src.port() == 0
            || match src.ip() {
                IpAddr::V4(a) => a.is_unspecified() || a.is_broadcast(),
                IpAddr::V6(a) => a.is_unspecified(),
            };
        if unusable {
            tracing::debug!(%src, "cannot reply to this source");
            return true;
        }
        self.fast_udp(query, src, sink)
    }

    /// The rest of [`Self::handle_udp`]: hickory's request parsing and
    /// [`Self::respond`], or FORMERR.
    async fn handle_udp_async(&self, query: &[u8], src: std::net::SocketAddr, sink: &mut Batch<'_>) {
        match Request::from_bytes(query.to_vec(), src, Protocol::Udp) {
            Ok(request) => {
                if request.metadata.message_type == MessageType::Response {
                    return;
                }
                self.respond(&request, sink).await;
            }
            Err(error) => {
                let Ok(header) = Header::read(&mut BinDecoder::new(query)) else {
                    return;
                };
                tracing::debug!(%src, %error, "malformed query: FORMERR");
                let Ok(queries) = Queries::read(&mut BinDecoder::new(&[]), 0) else {
                    return;
                };
                let mut meta = Metadata::response_from_request(&header.metadata);
                meta.response_code = ResponseCode::FormErr;
                let resp = response(&queries, None, meta, &[], &[], &[]);
                if let Err(e) = sink.send(resp).await {
                    tracing::debug!(%src, error = %e, "failed to encode FORMERR");
                }
            }
        }
    }

    /// The fast path ([`crate::fast`]): answers the common query exactly as
    /// [`Self::respond`] would (same bytes, RRL, metrics, logs) without
    /// building hickory's request and response. `false`: not taken, nothing
    /// done; the normal path must answer.
    fn fast_udp(&self, query: &[u8], src: std::net::SocketAddr, sink: &mut Batch<'_>) -> bool {
        let Some(q) = fast::parse(query) else {
            return false;
        };
        let s = &*self.0;
        let mut src = src;
        src.set_ip(src.ip().to_canonical());
        let client = ClientInfo {
            src: src.ip(),
            ecs: q.ecs.and_then(|e| e.effective()),
        };
        let served = s.served.load();
        let view = s.view.0.load();
        if let Some(o) = served.authority.fast_answer(q.key(), q.qtype, client, &view) {
            let answer = FastAnswer {
                authoritative: true,
                rcode: ResponseCode::NoError,
                answers: o.answers(),
                scope: o.scope,
                fail_open: o.fail_open,
                site: o.site,
            };
            return self.fast_send(&served, &q, query, src, client, &answer, sink);
        }
        let Some(name) = q.name() else {
            return false;
        };
        let o = served.authority.answer_with(&name, q.qtype, client, &view, false);
        if !o.authority.is_empty() || !o.additionals.is_empty() {
            return false;
        }
        let answer = FastAnswer {
            authoritative: o.authoritative,
            rcode: o.rcode,
            answers: &o.answers,
            scope: o.scope,
            fail_open: o.fail_open,
            site: o.site,
        };
        self.fast_send(&served, &q, query, src, client, &answer, sink)
    }

    /// Encodes and queues the fast path's answer, with RRL, metrics and
    /// logs exactly as [`Self::respond`]. `false`: it does not encode here,
    /// nothing done.
    #[allow(clippy::too_many_arguments)]
    fn fast_send<R: std::borrow::Borrow<Record>>(
        &self,
        served: &Served,
        q: &fast::FastQuery,
        query: &[u8],
        src: std::net::SocketAddr,
        client: ClientInfo,
        o: &FastAnswer<'_, R>,
        sink: &mut Batch<'_>,
    ) -> bool {
        let s = &*self.0;
        let edns = q.edns_payload.map(|p| FastEdns {
            payload: p.max(512).min(served.options.max_udp_payload.max(512)),
            ecs: q.ecs.map(|e| (e, o.scope)),
        });
        let max = edns.map_or(512, |e| usize::from(e.payload));
        let header = FastHeader {
            authoritative: o.authoritative,
            truncation: false,
            rcode: u16::from(o.rcode),
        };
        let Some(bytes) = fast::encode(q, query, header, o.answers, edns, max, sink.buffer()) else {
            return false;
        };
        // Taken: from here on exactly what `respond` does.
        s.resolvers.note(src.ip());
        if q.ecs.is_some() {
            s.metrics.ecs_queries.inc();
        }
        if let Some(site) = o.site {
            tracing::debug!(name = %DisplayName(q), %src, ecs = ?client.ecs,
                site = served.authority.steering().sites().get(site).map(String::as_str),
                scope = o.scope, fail_open = o.fail_open, "gslb decision");
        }
        let count = Count {
            qtype: Some(q.qtype),
            rcode: o.rcode,
            truncated: false,
        };
        let bytes = match served.rrl.check_now(src.ip()) {
            Action::Send => {
                if o.fail_open {
                    s.metrics.fail_open.inc();
                }
                if let Some(site) = o.site {
                    served.site_answers(site, &s.metrics).inc();
                }
                bytes
            }
            Action::Drop => {
                s.metrics.inc_rrl("drop");
                tracing::debug!(%src, "RRL: response dropped");
                return true;
            }
            Action::Slip => {
                s.metrics.inc_rrl("slip");
                let tc = FastHeader {
                    truncation: true,
                    ..header
                };
                // No records: always encodable when the full answer was.
                match fast::encode::<Record>(q, query, tc, &[], edns, max, bytes) {
                    Some(b) => b,
                    None => return true,
                }
            }
        };
        sink.replies.push(Reply {
            dst: sink.dst,
            bytes,
            count: Some(count),
        });
        true
    }

    async fn respond<S: Sink>(&self, request: &Request, sink: &mut S) -> ResponseInfo {
        let s = &*self.0;
        let mut src = request.src();
        // A dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d; steering,
        // RRL prefixes and the AXFR allow-list must see the IPv4 address.
        src.set_ip(src.ip().to_canonical());
        s.resolvers.note(src.ip());
        let udp = request.protocol() == Protocol::Udp;
        let meta = Metadata::response_from_request(&request.metadata);

        // Response EDNS mirrors the query's presence of EDNS (RFC 6891 §7).
        // (A query racing a reload may take this size from the configuration
        // before the one that answers it: both are valid sizes.)
        let max_udp_payload = s.served.load().options.max_udp_payload;
        let mut resp_edns = request.edns.as_ref().map(|q| {
            let mut e = Edns::new();
            e.set_max_payload(q.max_payload().max(512).min(max_udp_payload.max(512)));
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
                .send_error(request, sink, meta, rcode, edns.as_ref(), qtype_label)
                .await;
        }

        let ecs_opt: Option<QueryEcs> = match ecs::from_query(request.as_slice()) {
            Ok(e) => e,
            Err(e) => {
                tracing::debug!(%src, error = %e, "malformed ECS option: FORMERR");
                return self
                    .send_error(
                        request,
                        sink,
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
                    sink,
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
                    sink,
                    meta,
                    ResponseCode::Refused,
                    resp_edns.as_ref(),
                    qtype_label,
                )
                .await;
        }

        // One version of the configuration answers, rate limits and counts
        // (see `Served`); the guard is dropped before any await.
        let (outcome, action) = {
            let served = s.served.load();
            let outcome = self.outcome(&served, &qname, qtype, src, udp, ecs_opt);
            let action = if udp {
                served.rrl.check_now(src.ip())
            } else {
                Action::Send
            };
            if action == Action::Send {
                if outcome.fail_open {
                    s.metrics.fail_open.inc();
                }
                if let Some(site) = outcome.site {
                    served.site_answers(site, &s.metrics).inc();
                }
            }
            (outcome, action)
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

        match action {
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
                let resp = response(&request.queries, resp_edns.as_ref(), meta, &[], &[], &[]);
                let sent = sink.send(resp).await;
                return self.finish(sent, request, qtype_label, false, sink);
            }
        }

        let resp = response(
            &request.queries,
            resp_edns.as_ref(),
            meta,
            &outcome.answers,
            &outcome.authority,
            &outcome.additionals,
        );
        let sent = sink.send(resp).await;
        self.finish(sent, request, qtype_label, udp, sink)
    }

    /// The outcome of `respond`'s question under `served`: a zone transfer
    /// (policy checked here) or [`Authority::answer_with`] without the
    /// trace.
    fn outcome(
        &self,
        served: &Served,
        qname: &LowerName,
        qtype: RecordType,
        src: std::net::SocketAddr,
        udp: bool,
        ecs_opt: Option<QueryEcs>,
    ) -> Outcome {
        if matches!(qtype, RecordType::AXFR | RecordType::IXFR) {
            // IXFR is answered like AXFR (a full transfer is a valid IXFR
            // reply, RFC 1995 §4): we keep no zone history.
            let allowed = !udp && served.options.axfr_allow.iter().any(|n| n.contains(&src.ip()));
            match (allowed, served.authority.transfer(qname)) {
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
            let view = self.0.view.0.load();
            let o = served.authority.answer_with(qname, qtype, client, &view, false);
            if let Some(site) = o.site {
                tracing::debug!(name = %qname, %src, ecs = ?client.ecs,
                    site = served.authority.steering().sites().get(site).map(String::as_str),
                    scope = o.scope, fail_open = o.fail_open, "gslb decision");
            }
            o
        }
    }

    async fn send_error<S: Sink>(
        &self,
        request: &Request,
        sink: &mut S,
        mut meta: Metadata,
        rcode: ResponseCode,
        edns: Option<&Edns>,
        qtype: Option<RecordType>,
    ) -> ResponseInfo {
        meta.response_code = rcode;
        let resp = response(&request.queries, edns, meta, &[], &[], &[]);
        let sent = sink.send(resp).await;
        self.finish(sent, request, qtype, false, sink)
    }

    /// Counts a sent response (`udp_truncation`: count TC=1 as truncated),
    /// or logs why it could not be sent.
    fn finish<S: Sink>(
        &self,
        sent: Result<ResponseInfo, hickory_server::net::NetError>,
        request: &Request,
        qtype: Option<RecordType>,
        udp_truncation: bool,
        sink: &mut S,
    ) -> ResponseInfo {
        match sent {
            Ok(info) => {
                sink.count(
                    &self.0,
                    Count {
                        qtype,
                        rcode: info.response_code,
                        truncated: udp_truncation && info.truncation,
                    },
                );
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
    use crate::RrlConfig;
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

    /// A raw query of random shape: mostly what the fast path takes, plus
    /// every way to fall off it (case, types, classes, EDNS versions and
    /// options, malformed ECS, trailing bytes, header bits).
    fn random_query(rng: &mut Rng) -> Vec<u8> {
        let names = [
            "www.edge.example.",
            "WWW.Edge.example.",
            "web.edge.example.",
            "edge.example.",
            "ns1.edge.example.",
            "anycast.edge.example.",
            "nope.edge.example.",
            "www.example.org.",
            "a_b-c.edge.example.",
        ];
        let mut m = Vec::new();
        m.extend_from_slice(&(rng.below(65536) as u16).to_be_bytes());
        let mut f1 = if rng.below(2) == 0 { 0x01 } else { 0 };
        if rng.below(20) == 0 {
            f1 |= 0x02; // TC in a query
        }
        if rng.below(30) == 0 {
            f1 |= 0x10; // opcode 2
        }
        let mut f2 = 0u8;
        if rng.below(3) == 0 {
            f2 |= 0x10; // CD
        }
        if rng.below(5) == 0 {
            f2 |= 0x20; // AD
        }
        m.extend_from_slice(&[f1, f2, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in names[rng.below(names.len() as u64) as usize]
            .trim_end_matches('.')
            .split('.')
        {
            m.push(label.len() as u8);
            m.extend_from_slice(label.as_bytes());
        }
        m.push(0);
        let qtypes = [1u16, 1, 1, 28, 28, 15, 16, 255, 2];
        m.extend_from_slice(&qtypes[rng.below(qtypes.len() as u64) as usize].to_be_bytes());
        m.extend_from_slice(&(if rng.below(20) == 0 { 3u16 } else { 1 }).to_be_bytes());
        if rng.below(4) != 0 {
            m[11] = 1;
            let payloads = [0u16, 100, 512, 1232, 1400, 4096, 65535];
            let mut opt = vec![0, 0, 41];
            opt.extend_from_slice(&payloads[rng.below(payloads.len() as u64) as usize].to_be_bytes());
            let version = if rng.below(15) == 0 { 1 } else { 0 };
            let do_bit = if rng.below(3) == 0 { 0x80 } else { 0 };
            opt.extend_from_slice(&[0, version, do_bit, 0]);
            let ecs: &[&[u8]] = &[
                &[0, 1, 24, 0, 198, 18, 1],
                &[0, 1, 24, 0, 198, 18, 2],
                &[0, 1, 32, 0, 198, 18, 1, 77],
                &[0, 1, 25, 0, 203, 0, 113, 128],
                &[0, 1, 16, 0, 198, 18],
                &[0, 1, 0, 0],
                &[0, 2, 48, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 0x0a],
                &[0, 2, 56, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 2, 0],
                &[0, 2, 64, 0, 0x20, 0x01, 0x0d, 0xb8, 0, 2, 0, 1],
                &[0, 1, 24, 8, 198, 18, 1], // scope in a query
                &[0, 1, 23, 0, 198, 18, 1], // host bits
                &[0, 3, 8, 0, 1],           // family
            ];
            let mut options = Vec::new();
            if rng.below(4) != 0 {
                let e = ecs[rng.below(ecs.len() as u64) as usize];
                options.extend_from_slice(&[0, 8]);
                options.extend_from_slice(&(e.len() as u16).to_be_bytes());
                options.extend_from_slice(e);
            }
            if rng.below(8) == 0 {
                options.extend_from_slice(&[0, 10, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8]); // cookie
            }
            opt.extend_from_slice(&(options.len() as u16).to_be_bytes());
            opt.extend_from_slice(&options);
            m.extend_from_slice(&opt);
        }
        if rng.below(25) == 0 {
            m.push(0);
        }
        m
    }

    /// The fast path gives byte for byte the response of the normal path,
    /// with the same metric counts, or leaves the query to it.
    #[tokio::test]
    async fn fast_path_answers_like_the_normal_path() {
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
        let mut rng = Rng(0x0dd_ba11_5eed_0002);
        let (mut taken, mut common, mut several) = (0, 0, 0);
        let total = 6000;
        for answers in [1, 2] {
            dep.dns.as_mut().unwrap().gslb[0].answers = answers;
            let geo = GeoDb::open(root.join("labs/geoip/lab.mmdb")).unwrap();
            let options = DnsOptions {
                rrl: RrlConfig {
                    responses_per_second: 0,
                    ..RrlConfig::default()
                },
                ..DnsOptions::default()
            };
            let server = DnsServer::new(&dep, Some(geo), DnsView::default(), options, None).unwrap();
            let h = server.handler.clone();
            for round in 0..total / 2 {
                if round % 50 == 0 {
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
                    server.set_view(v);
                }
                let q = random_query(&mut rng);
                let src: std::net::SocketAddr = if rng.below(2) == 0 {
                    "127.0.0.1:5353".parse().unwrap()
                } else {
                    "[::ffff:198.18.1.1]:5353".parse().unwrap()
                };
                let mut normal = Vec::new();
                if let Ok(req) = Request::from_bytes(q.clone(), src, Protocol::Udp) {
                    let mut sink = Batch {
                        replies: &mut normal,
                        dst: src,
                        spare: &mut Vec::new(),
                    };
                    h.respond(&req, &mut sink).await;
                }
                let mut fast = Vec::new();
                let mut sink = Batch {
                    replies: &mut fast,
                    dst: src,
                    spare: &mut Vec::new(),
                };
                if !h.fast_udp(&q, src, &mut sink) {
                    assert!(fast.is_empty());
                    continue;
                }
                taken += 1;
                if q.get(12..16) == Some(&[3, b'w', b'w', b'w'][..]) && q.len() > 40 {
                    common += 1;
                }
                let ctx = format!("round {round} answers {answers} query {q:02x?}");
                assert_eq!(fast.len(), 1, "{ctx}");
                assert_eq!(normal.len(), 1, "{ctx}");
                assert_eq!(fast[0].bytes, normal[0].bytes, "{ctx}");
                if fast[0].bytes.get(6..8).is_some_and(|an| an[1] >= 2) {
                    several += 1; // the second owner name is a pointer
                }
                assert_eq!(
                    format!("{:?}", fast[0].count),
                    format!("{:?}", normal[0].count),
                    "{ctx}"
                );
            }
        }
        // The fast path is really taken, for the benchmark's shape too.
        assert!(taken > total / 10, "fast path taken {taken} of {total}");
        assert!(common > 100, "www A/AAAA with ECS taken {common} times");
        assert!(several > 10, "answers of several records taken {several} times");
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
