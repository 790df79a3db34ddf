//! GSLB steering: a pure filter chain over candidate (VIP, site) pairs, in the
//! style of NS1 filter chains. No I/O, no clock, no randomness: the same
//! inputs always give the same [`Decision`], which is why `explain` can
//! promise it shows what the server answered.
//!
//! Filters come in two kinds:
//! - removing filters (`health`, `drain`, and load shedding in `weight`) drop
//!   candidates; `health` fails open to every configured candidate when all
//!   are down, the others are skipped when they would remove everything;
//! - ranking filters (`geo`, `latency`, and the weighted tie-break in
//!   `weight`) order candidates. A later ranking filter takes precedence and
//!   earlier ones break its ties (measured RTT beats a geographic guess);
//!   `weight` only breaks the ties that remain, by weighted rendezvous hashing
//!   of the client prefix, so load spreads across client prefixes while each
//!   prefix gets a stable answer.
//!
//! The first `answers` candidates are returned with the record's TTL.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use edge_topology::{Deployment, GslbFilter};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};
use ipnet::IpNet;

use crate::DnsError;
use crate::geo::{GeoDb, distance_km};
use crate::view::{DnsView, client_prefix};

/// Tunables of the steering filters that the topology does not carry.
#[derive(Debug, Clone, PartialEq)]
pub struct SteerOptions {
    /// `weight` skips sites whose load is above this (0.0–1.0).
    pub shed_load_above: f64,
    /// `latency` treats sites whose RTT is within this many microseconds of
    /// the best as equally close, keeping the earlier (geo) order among
    /// them: measurement noise must not flip answers.
    pub latency_tolerance_us: u32,
    /// Explicit client country (ISO code, upper case) → preferred sites; they
    /// rank before every site chosen by distance.
    pub country_sites: BTreeMap<String, Vec<String>>,
}

impl Default for SteerOptions {
    fn default() -> Self {
        Self {
            shed_load_above: 0.9,
            latency_tolerance_us: 5_000,
            country_sites: BTreeMap::new(),
        }
    }
}

/// One place a GSLB name can point at.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub vip: String,
    pub site: String,
    pub addrs: Vec<IpAddr>,
    pub lat: f64,
    pub lon: f64,
    pub country: String,
}

impl Candidate {
    fn label(&self) -> String {
        format!("{}@{}", self.vip, self.site)
    }
}

/// A GSLB record with its candidates resolved from the topology.
#[derive(Debug, Clone)]
pub struct GslbRecord {
    pub name: LowerName,
    pub ttl: u32,
    pub answers: u32,
    pub policy: Vec<GslbFilter>,
    pub candidates: Vec<Candidate>,
    /// Per candidate, its answer records: `[A, AAAA]` (built once).
    rrs: Vec<[Vec<Record>; 2]>,
    /// Per candidate, the index of its site in [`Steering::site_name`].
    site_ids: Vec<usize>,
}

impl GslbRecord {
    /// The A (or AAAA) records candidate `idx` answers with.
    pub(crate) fn records_of(&self, idx: usize, qtype: RecordType) -> &[Record] {
        let fam = usize::from(qtype != RecordType::A);
        self.rrs.get(idx).map_or(&[], |r| r[fam].as_slice())
    }

    /// The site index of candidate `idx`.
    pub(crate) fn site_id(&self, idx: usize) -> Option<usize> {
        self.site_ids.get(idx).copied()
    }
}

/// The steering engine: every GSLB record plus the GeoIP database.
#[derive(Debug, Clone)]
pub struct Steering {
    /// Every GSLB record, in name order.
    records: Vec<GslbRecord>,
    /// Name → index in `records`.
    index: BTreeMap<LowerName, usize>,
    /// Every site some candidate is at.
    sites: Vec<String>,
    geo: Option<Arc<GeoDb>>,
    options: SteerOptions,
}

/// The client information a decision may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo {
    /// Transport source (the resolver, usually).
    pub src: IpAddr,
    /// The ECS subnet after capping (/24, /56) and truncation; `None` when the
    /// query had no ECS or SOURCE PREFIX-LENGTH 0 (the resolver opted out).
    pub ecs: Option<IpNet>,
}

impl ClientInfo {
    /// The address steering locates: the ECS subnet's address, else the source.
    pub fn locate_by(&self) -> IpAddr {
        self.ecs.map_or(self.src, |n| n.addr())
    }

    /// How many leading bits of [`Self::locate_by`] the server actually saw.
    fn known_bits(&self) -> u8 {
        match (self.ecs, self.src) {
            (Some(n), _) => n.prefix_len(),
            (None, IpAddr::V4(_)) => 32,
            (None, IpAddr::V6(_)) => 128,
        }
    }
}

/// What one filter did.
#[derive(Debug, Clone, PartialEq)]
pub struct FilterTrace {
    pub filter: String,
    /// Candidate label → why it was removed.
    pub removed: Vec<(String, String)>,
    /// Human-readable note (ranking keys, skips, fail-open).
    pub note: String,
    /// Order of the remaining candidates after the filter.
    pub after: Vec<String>,
}

/// The full decision for one GSLB query: the explain trace and the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub name: String,
    pub qtype: RecordType,
    pub client: ClientInfo,
    /// Where the GeoIP database put the client, if it was consulted.
    pub location: Option<String>,
    pub candidates: Vec<String>,
    pub steps: Vec<FilterTrace>,
    pub fail_open: bool,
    /// Chosen candidates, best first.
    pub chosen: Vec<String>,
    /// Addresses answered (deduplicated, in order); empty means NODATA.
    pub answer: Vec<IpAddr>,
    pub ttl: u32,
    /// ECS SCOPE PREFIX-LENGTH: how many bits of the client subnet the answer
    /// depended on (0 = it did not depend on the client).
    pub scope: u8,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} from {}", self.name, self.qtype, self.client.src)?;
        match self.client.ecs {
            Some(n) => writeln!(f, " ECS {n} (locating {})", self.client.locate_by())?,
            None => writeln!(f, " no ECS (locating {})", self.client.locate_by())?,
        }
        if let Some(loc) = &self.location {
            writeln!(f, "  client location: {loc}")?;
        }
        writeln!(f, "  candidates: {}", list(&self.candidates))?;
        for s in &self.steps {
            write!(f, "  {:<8} ", s.filter)?;
            for (c, why) in &s.removed {
                write!(f, "-{c} ({why}) ")?;
            }
            if !s.note.is_empty() {
                write!(f, "{} ", s.note)?;
            }
            writeln!(f, "=> {}", list(&s.after))?;
        }
        if self.fail_open {
            writeln!(
                f,
                "  FAIL-OPEN: every candidate was down, answering with all of them"
            )?;
        }
        let addrs: Vec<String> = self.answer.iter().map(IpAddr::to_string).collect();
        if addrs.is_empty() {
            write!(f, "  answer: NODATA (no candidate has a {} address)", self.qtype)?;
        } else {
            write!(
                f,
                "  answer: {} via {} ttl {}",
                addrs.join(" "),
                list(&self.chosen),
                self.ttl
            )?;
        }
        write!(f, ", ECS scope /{}", self.scope)
    }
}

fn list(v: &[String]) -> String {
    if v.is_empty() {
        "(none)".into()
    } else {
        v.join(", ")
    }
}

impl Steering {
    /// Resolves every GSLB record's VIPs to (VIP, site, addresses) candidates.
    pub fn new(dep: &Deployment, geo: Option<Arc<GeoDb>>, options: SteerOptions) -> Result<Self, DnsError> {
        let mut records = BTreeMap::new();
        let mut sites: Vec<String> = Vec::new();
        let Some(dns) = &dep.dns else {
            return Ok(Self {
                records: Vec::new(),
                index: BTreeMap::new(),
                sites: Vec::new(),
                geo,
                options,
            });
        };
        for g in &dns.gslb {
            let what = format!("gslb {}", g.name);
            let name = Name::from_ascii(&g.name)
                .map(|n| LowerName::from(&n))
                .map_err(|e| DnsError::Config {
                    what: what.clone(),
                    reason: e.to_string(),
                })?;
            let mut candidates = Vec::new();
            for v in &g.vips {
                let vip = dep.vips.get(v).ok_or_else(|| DnsError::Config {
                    what: what.clone(),
                    reason: format!("unknown VIP {v}"),
                })?;
                for s in &vip.sites {
                    let site = dep.sites.get(s).ok_or_else(|| DnsError::Config {
                        what: what.clone(),
                        reason: format!("VIP {v} names unknown site {s}"),
                    })?;
                    candidates.push(Candidate {
                        vip: v.clone(),
                        site: s.clone(),
                        addrs: vip.prefixes.iter().map(IpNet::addr).collect(),
                        lat: site.location.lat,
                        lon: site.location.lon,
                        country: site.location.country().to_string(),
                    });
                }
            }
            let owner = Name::from(&name);
            let rrs = candidates
                .iter()
                .map(|c| {
                    let mut v4 = Vec::new();
                    let mut v6 = Vec::new();
                    for a in &c.addrs {
                        let (list, data) = match a {
                            IpAddr::V4(a) => (&mut v4, RData::A(A(*a))),
                            IpAddr::V6(a) => (&mut v6, RData::AAAA(AAAA(*a))),
                        };
                        list.push(Record::from_rdata(owner.clone(), g.ttl, data));
                    }
                    [v4, v6]
                })
                .collect();
            let site_ids = candidates
                .iter()
                .map(|c| match sites.iter().position(|s| *s == c.site) {
                    Some(i) => i,
                    None => {
                        sites.push(c.site.clone());
                        sites.len() - 1
                    }
                })
                .collect();
            records.insert(
                name.clone(),
                GslbRecord {
                    name,
                    ttl: g.ttl,
                    answers: g.answers.max(1),
                    policy: g.policy.clone(),
                    candidates,
                    rrs,
                    site_ids,
                },
            );
        }
        let index = records.keys().cloned().zip(0..).collect();
        Ok(Self {
            records: records.into_values().collect(),
            index,
            sites,
            geo,
            options,
        })
    }

    pub fn record(&self, name: &LowerName) -> Option<&GslbRecord> {
        self.records.get(*self.index.get(name)?)
    }

    /// The index of the GSLB record `name` (for [`Self::choose_at`]).
    pub(crate) fn index_of(&self, name: &LowerName) -> Option<usize> {
        self.index.get(name).copied()
    }

    pub fn records(&self) -> impl Iterator<Item = &GslbRecord> {
        self.records.iter()
    }

    /// Every site a GSLB candidate is at; [`GslbRecord`]s refer to them by index.
    pub fn sites(&self) -> &[String] {
        &self.sites
    }

    /// The GeoIP database the `geo` filter uses, if any.
    pub fn geo(&self) -> Option<&GeoDb> {
        self.geo.as_deref()
    }

    /// The tunables the filters run with.
    pub fn options(&self) -> &SteerOptions {
        &self.options
    }

    /// Runs the filter chain. `None` when `name` is not a GSLB record.
    pub fn decide(
        &self,
        name: &LowerName,
        qtype: RecordType,
        client: ClientInfo,
        view: &DnsView,
    ) -> Option<Decision> {
        let rec = self.record(name)?;
        Some(self.run(rec, qtype, client, view))
    }
}

/// A candidate still in the running.
struct Live {
    idx: usize,
    /// The view's state of the candidate's site (looked up once per query).
    serves: bool,
    drained: bool,
    load: f64,
    weight: u32,
    /// Rank among the remaining candidates by every ranking key so far
    /// (equal keys, equal group; `live` is kept sorted by it).
    group: u32,
    /// The key of the ranking filter being applied.
    key: u64,
    /// Weighted rendezvous score (only computed to break ties).
    score: f64,
}

impl Live {
    fn new(idx: usize, c: &Candidate, view: &DnsView) -> Self {
        let site = view.site(&c.site);
        Self {
            idx,
            serves: site.serves(&c.vip),
            drained: site.drained,
            load: site.load,
            weight: site.weight,
            group: 0,
            key: 0,
            score: 0.0,
        }
    }
}

/// Sorts by the new `key` first and the previous ranking second, then
/// renumbers the groups: the same order as sorting by the whole key vector,
/// newest component first.
fn rank(live: &mut [Live]) {
    live.sort_by(|a, b| a.key.cmp(&b.key).then(a.group.cmp(&b.group)));
    let mut g = 0;
    let mut prev: Option<(u64, u32)> = None;
    for l in live.iter_mut() {
        let k = (l.key, l.group);
        if prev.is_some_and(|p| p != k) {
            g += 1;
        }
        prev = Some(k);
        l.group = g;
    }
}

/// The outcome of the chain as plain data: what the server answers with.
/// [`Decision`] (the explain trace) is built from the same run.
pub(crate) struct Choice {
    live: Vec<Live>,
    /// How many of `live` are chosen.
    n: usize,
    pub(crate) fail_open: bool,
    pub(crate) scope: u8,
}

impl Choice {
    /// Chosen candidate indices, best first.
    pub(crate) fn chosen(&self) -> impl Iterator<Item = usize> + '_ {
        self.live.iter().take(self.n).map(|l| l.idx)
    }
}

/// A short string on the stack (an `IpNet` as text) for hashing.
struct StackStr {
    buf: [u8; 64],
    len: usize,
}

impl fmt::Write for StackStr {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        let dst = self.buf.get_mut(self.len..end).ok_or(fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

impl Steering {
    /// Runs the filter chain without building the trace (the query path).
    pub(crate) fn choose(
        &self,
        name: &LowerName,
        qtype: RecordType,
        client: ClientInfo,
        view: &DnsView,
    ) -> Option<(&GslbRecord, Choice)> {
        self.choose_at(self.index_of(name)?, qtype, client, view)
    }

    /// The record at `index` (see [`Self::index_of`]).
    pub(crate) fn record_at(&self, index: usize) -> Option<&GslbRecord> {
        self.records.get(index)
    }

    /// [`Self::choose`] for the record at `index` (see [`Self::index_of`]).
    pub(crate) fn choose_at(
        &self,
        index: usize,
        qtype: RecordType,
        client: ClientInfo,
        view: &DnsView,
    ) -> Option<(&GslbRecord, Choice)> {
        let rec = self.records.get(index)?;
        Some((rec, self.chain(rec, qtype, client, view, None)))
    }

    /// Runs the filter chain and builds the explain trace from the same run.
    fn run(&self, rec: &GslbRecord, qtype: RecordType, client: ClientInfo, view: &DnsView) -> Decision {
        let cands = &rec.candidates;
        let mut d = Decision {
            name: rec.name.to_string(),
            qtype,
            client,
            location: None,
            candidates: cands.iter().map(Candidate::label).collect(),
            steps: Vec::new(),
            fail_open: false,
            chosen: Vec::new(),
            answer: Vec::new(),
            ttl: rec.ttl,
            scope: 0,
        };
        let choice = self.chain(rec, qtype, client, view, Some(&mut d));
        let want_v4 = qtype == RecordType::A;
        for idx in choice.chosen() {
            d.chosen.push(cands[idx].label());
            for a in cands[idx].addrs.iter().filter(|a| a.is_ipv4() == want_v4) {
                if !d.answer.contains(a) {
                    d.answer.push(*a);
                }
            }
        }
        d.fail_open = choice.fail_open;
        d.scope = choice.scope;
        d
    }

    /// The filter chain. With `trace`, records every step in it (text is
    /// only ever built there).
    fn chain(
        &self,
        rec: &GslbRecord,
        qtype: RecordType,
        client: ClientInfo,
        view: &DnsView,
        mut trace: Option<&mut Decision>,
    ) -> Choice {
        let want_v4 = qtype == RecordType::A;
        let has_family = |c: &Candidate| c.addrs.iter().any(|a| a.is_ipv4() == want_v4);
        let cands = &rec.candidates;
        let label = |l: &Live| cands[l.idx].label();
        let labels = |live: &[Live]| live.iter().map(label).collect::<Vec<_>>();
        // Only candidates with an address of the asked family can answer.
        let family = || {
            (0..cands.len())
                .filter(|&i| has_family(&cands[i]))
                .map(|i| Live::new(i, &cands[i], view))
        };
        let mut live: Vec<Live> = Vec::with_capacity(cands.len());
        live.extend(family());
        let mut choice_fail_open = false;
        if live.len() < cands.len()
            && let Some(d) = trace.as_deref_mut()
        {
            let removed = (0..cands.len())
                .filter(|&i| !has_family(&cands[i]))
                .map(|i| (cands[i].label(), format!("no {qtype} address")))
                .collect();
            d.steps.push(FilterTrace {
                filter: "family".into(),
                removed,
                note: String::new(),
                after: labels(&live),
            });
        }
        if live.is_empty() {
            return Choice {
                live,
                n: 0,
                fail_open: false,
                scope: 0,
            };
        }
        // Bits of the client address the answer depended on.
        let mut depends: u8 = 0;
        for filter in &rec.policy {
            let mut t = trace.as_ref().map(|_| FilterTrace {
                filter: filter_name(*filter).into(),
                removed: Vec::new(),
                note: String::new(),
                after: Vec::new(),
            });
            match filter {
                GslbFilter::Health => {
                    let serves = |l: &Live| l.serves;
                    if let Some(t) = t.as_mut() {
                        t.removed = live
                            .iter()
                            .filter(|l| !serves(l))
                            .map(|l| {
                                let s = view.site(&cands[l.idx].site);
                                let why = if s.up { "service down" } else { "site down" };
                                (label(l), why.to_string())
                            })
                            .collect();
                    }
                    live.retain(serves);
                    if live.is_empty() {
                        // Answering with nothing turns an outage of our
                        // health signal into an outage of the service.
                        choice_fail_open = true;
                        if let Some(t) = t.as_mut() {
                            t.note = "every candidate down: failing open to all configured".into();
                        }
                        tracing::warn!(name = %rec.name, "GSLB fail-open: every candidate is down");
                        live.extend(family());
                    }
                }
                GslbFilter::Drain => {
                    let drained = |l: &Live| l.drained;
                    if live.iter().all(drained) {
                        if let Some(t) = t.as_mut() {
                            t.note = "every remaining candidate is drained: drain not applied".into();
                        }
                    } else {
                        if let Some(t) = t.as_mut() {
                            t.removed = live
                                .iter()
                                .filter(|l| drained(l))
                                .map(|l| (label(l), "drained".into()))
                                .collect();
                        }
                        live.retain(|l| !drained(l));
                    }
                }
                GslbFilter::Geo => match &self.geo {
                    None => {
                        if let Some(t) = t.as_mut() {
                            t.note = "no GeoIP database".into();
                        }
                    }
                    Some(_) if live.len() < 2 => {
                        if let Some(t) = t.as_mut() {
                            t.note = "single candidate, nothing to rank".into();
                        }
                    }
                    Some(db) => {
                        let at = client.locate_by();
                        let found = db.lookup_cached(at);
                        // Whether found or not, another client could have
                        // been placed elsewhere: the answer depends on the
                        // network the database matched.
                        depends = depends.max(found.prefix_len);
                        match &found.hit {
                            None => {
                                if let Some(d) = trace.as_deref_mut() {
                                    d.location =
                                        Some(format!("{at}: not in database (/{})", found.prefix_len));
                                }
                                if let Some(t) = t.as_mut() {
                                    t.note = "client location unknown".into();
                                }
                            }
                            Some(hit) => {
                                let country = hit.country.as_deref().unwrap_or_default();
                                let preferred = self.options.country_sites.get(country);
                                if let Some(d) = trace.as_deref_mut() {
                                    d.location = Some(match hit.coords {
                                        Some((lat, lon)) => {
                                            format!("{country} ({lat:.2},{lon:.2}) per /{}", found.prefix_len)
                                        }
                                        None => format!("{country} per /{}", found.prefix_len),
                                    });
                                }
                                let mut notes = Vec::new();
                                for l in &mut live {
                                    let c = &cands[l.idx];
                                    l.key = if preferred.is_some_and(|p| p.contains(&c.site)) {
                                        if t.is_some() {
                                            notes.push(format!("{} mapped for {country}", c.label()));
                                        }
                                        0
                                    } else if let Some(ll) = hit.coords {
                                        let km = distance_km(ll, (c.lat, c.lon)).round() as u64;
                                        if t.is_some() {
                                            notes.push(format!("{} {km} km", c.label()));
                                        }
                                        1 + km
                                    } else if c.country == country {
                                        if t.is_some() {
                                            notes.push(format!("{} same country", c.label()));
                                        }
                                        1
                                    } else {
                                        if t.is_some() {
                                            notes.push(format!("{} other country", c.label()));
                                        }
                                        2
                                    };
                                }
                                if let Some(t) = t.as_mut() {
                                    t.note = format!("ranked: {}", notes.join(", "));
                                }
                                rank(&mut live);
                            }
                        }
                    }
                },
                GslbFilter::Latency => {
                    if view.rtt.is_empty() {
                        if let Some(t) = t.as_mut() {
                            t.note = "no RTT measurements".into();
                        }
                    } else if live.len() < 2 {
                        if let Some(t) = t.as_mut() {
                            t.note = "single candidate, nothing to rank".into();
                        }
                    } else {
                        let prefix = client_prefix(client.locate_by());
                        depends = depends.max(prefix.prefix_len());
                        match view.rtts_for(client.locate_by()) {
                            None => {
                                if let Some(t) = t.as_mut() {
                                    t.note = format!("no RTT for {prefix}");
                                }
                            }
                            Some(rtts) => {
                                let mut notes = Vec::new();
                                for l in &mut live {
                                    let c = &cands[l.idx];
                                    l.key = match rtts.get(&c.site) {
                                        Some(us) => {
                                            if t.is_some() {
                                                notes.push(format!(
                                                    "{} {:.1} ms",
                                                    c.label(),
                                                    f64::from(*us) / 1000.0
                                                ));
                                            }
                                            u64::from(*us)
                                        }
                                        None => {
                                            if t.is_some() {
                                                notes.push(format!("{} unmeasured", c.label()));
                                            }
                                            u64::MAX
                                        }
                                    };
                                }
                                let best = live.iter().map(|l| l.key).min().unwrap_or(u64::MAX);
                                let tol = u64::from(self.options.latency_tolerance_us);
                                for l in &mut live {
                                    if l.key != u64::MAX && l.key <= best.saturating_add(tol) {
                                        l.key = 0;
                                    }
                                }
                                if let Some(t) = t.as_mut() {
                                    t.note = format!(
                                        "{prefix}: {} (within {:.1} ms of the best: equal)",
                                        notes.join(", "),
                                        tol as f64 / 1000.0
                                    );
                                }
                                rank(&mut live);
                            }
                        }
                    }
                }
                GslbFilter::Weight => {
                    let shed = self.options.shed_load_above;
                    let over = |l: &Live| l.load > shed;
                    let mut notes = Vec::new();
                    if live.iter().all(over) {
                        if t.is_some() {
                            notes.push(
                                "every remaining candidate is over its load limit: shedding not applied"
                                    .to_string(),
                            );
                        }
                    } else {
                        if let Some(t) = t.as_mut() {
                            t.removed = live
                                .iter()
                                .filter(|l| over(l))
                                .map(|l| {
                                    let load = view.site(&cands[l.idx].site).load;
                                    (label(l), format!("load {load:.2} > {shed:.2}"))
                                })
                                .collect();
                        }
                        live.retain(|l| !over(l));
                    }
                    let hash_prefix = client_prefix(client.locate_by());
                    // `live` is sorted by group: ties are neighbours.
                    let tied = |i: usize| {
                        let g = live[i].group;
                        (i > 0 && live[i - 1].group == g) || live.get(i + 1).is_some_and(|o| o.group == g)
                    };
                    // Does a tie that weight must break reach into the answer?
                    let n = (rec.answers as usize).min(live.len());
                    if (0..n).any(tied) {
                        depends = depends.max(hash_prefix.prefix_len());
                        if t.is_some() {
                            notes.push(format!("weighted tie-break for {hash_prefix}"));
                        }
                    }
                    if (0..live.len()).any(tied) {
                        let mut text = StackStr { buf: [0; 64], len: 0 };
                        let key: &[u8] =
                            if fmt::Write::write_fmt(&mut text, format_args!("{hash_prefix}")).is_ok() {
                                &text.buf[..text.len]
                            } else {
                                &[]
                            };
                        for l in &mut live {
                            let c = &cands[l.idx];
                            l.score = hrw_score(key, &c.vip, &c.site, l.weight);
                        }
                        live.sort_by(|a, b| a.group.cmp(&b.group).then_with(|| b.score.total_cmp(&a.score)));
                    }
                    if let Some(t) = t.as_mut() {
                        t.note = notes.join("; ");
                    }
                }
            }
            if let (Some(d), Some(mut t)) = (trace.as_deref_mut(), t) {
                t.after = labels(&live);
                d.steps.push(t);
            }
        }
        let n = (rec.answers as usize).min(live.len());
        // The answer is the same for every client in the subnet we saw, so
        // the scope never claims more bits than we were given.
        let scope = if client.ecs.is_some() {
            depends.min(client.known_bits())
        } else {
            0
        };
        Choice {
            live,
            n,
            fail_open: choice_fail_open,
            scope,
        }
    }
}

fn filter_name(f: GslbFilter) -> &'static str {
    match f {
        GslbFilter::Health => "health",
        GslbFilter::Drain => "drain",
        GslbFilter::Geo => "geo",
        GslbFilter::Latency => "latency",
        GslbFilter::Weight => "weight",
    }
}

/// Weighted rendezvous (highest random weight) score: `weight / -ln(u)` with
/// `u` a stable hash of (client prefix as text, candidate) in (0, 1). Each candidate
/// wins for a share of prefixes proportional to its weight, and adding or
/// removing a site only moves the prefixes that site wins or loses.
fn hrw_score(prefix: &[u8], vip: &str, site: &str, weight: u32) -> f64 {
    if weight == 0 {
        return 0.0;
    }
    let mut h = Fnv::default();
    h.write(prefix);
    h.write(&[0]);
    h.write(vip.as_bytes());
    h.write(&[0]);
    h.write(site.as_bytes());
    let x = splitmix(h.0);
    let u = ((x >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    f64::from(weight) / -u.ln()
}

/// FNV-1a, spelled out because std's hasher is not promised to be stable and
/// `explain` may run in another process than the server.
#[derive(Default)]
struct Fnv(u64);

impl Fnv {
    fn write(&mut self, bytes: &[u8]) {
        if self.0 == 0 {
            self.0 = 0xcbf2_9ce4_8422_2325;
        }
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mmdb;
    use crate::view::SiteState;

    pub(crate) fn two_pop() -> Deployment {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../labs/two-pop/deployment.toml");
        edge_topology::load(path).unwrap()
    }

    fn lab_geo() -> Arc<GeoDb> {
        let csv = "198.18.1.0/24,NL,EU,52.37,4.90\n198.18.2.0/24,US,NA,40.71,-74.01\n\
                   203.0.113.0/24,DE,EU,50.11,8.68\n198.51.100.0/24,JP,AS,35.68,139.69\n";
        let rows = mmdb::parse_csv(csv).unwrap();
        Arc::new(GeoDb::from_bytes(mmdb::write(&rows, "t", "t", 1).unwrap(), "t").unwrap())
    }

    fn www() -> LowerName {
        LowerName::from(&Name::from_ascii("www.edge.example.").unwrap())
    }

    fn ecs(s: &str) -> ClientInfo {
        ClientInfo {
            src: "127.0.0.1".parse().unwrap(),
            ecs: Some(s.parse().unwrap()),
        }
    }

    fn down(site: &str) -> (String, SiteState) {
        (
            site.to_string(),
            SiteState {
                up: false,
                ..SiteState::default()
            },
        )
    }

    fn answer(s: &Steering, c: ClientInfo, v: &DnsView) -> Vec<String> {
        let d = s.decide(&www(), RecordType::A, c, v).unwrap();
        d.answer.iter().map(|a| a.to_string()).collect()
    }

    #[test]
    fn geo_picks_nearest_site_with_scope_of_the_matched_network() {
        let s = Steering::new(&two_pop(), Some(lab_geo()), SteerOptions::default()).unwrap();
        let v = DnsView::default();
        let d = s.decide(&www(), RecordType::A, ecs("198.18.1.0/24"), &v).unwrap();
        assert_eq!(d.answer, vec!["198.51.100.10".parse::<IpAddr>().unwrap()]);
        assert_eq!(d.scope, 24);
        assert_eq!(answer(&s, ecs("198.18.2.0/24"), &v), ["198.51.100.20"]);
        // Frankfurt and Tokyo (9 300 km vs 10 850 km, great circle) are
        // both nearer to Amsterdam.
        assert_eq!(answer(&s, ecs("203.0.113.0/24"), &v), ["198.51.100.10"]);
        assert_eq!(answer(&s, ecs("198.51.100.0/24"), &v), ["198.51.100.10"]);
        let text = d.to_string();
        assert!(text.contains("ams-web@ams 0 km"), "{text}");
    }

    #[test]
    fn country_level_database_prefers_same_country() {
        // A Country database has no coordinates: same country first, and
        // otherwise nothing to rank on, so weight decides.
        let rows = mmdb::parse_csv("198.18.1.0/24,NL,EU,,\n198.18.2.0/24,US,NA,,\n203.0.113.0/24,DE,EU,,\n")
            .unwrap();
        let db = GeoDb::from_bytes(mmdb::write(&rows, "t-Country", "t", 1).unwrap(), "t").unwrap();
        assert_eq!(db.lookup("198.18.1.1".parse().unwrap()).hit.unwrap().coords, None);
        let s = Steering::new(&two_pop(), Some(Arc::new(db)), SteerOptions::default()).unwrap();
        let v = DnsView::default();
        assert_eq!(answer(&s, ecs("198.18.1.0/24"), &v), ["198.51.100.10"]);
        assert_eq!(answer(&s, ecs("198.18.2.0/24"), &v), ["198.51.100.20"]);
        let d = s
            .decide(&www(), RecordType::A, ecs("203.0.113.0/24"), &v)
            .unwrap();
        assert!(d.to_string().contains("other country"), "{d}");
        assert!(
            d.steps.iter().any(|t| t.note.contains("weighted tie-break")),
            "{d}"
        );
    }

    #[test]
    fn country_map_beats_distance() {
        let mut o = SteerOptions::default();
        o.country_sites.insert("NL".into(), vec!["nyc".into()]);
        let s = Steering::new(&two_pop(), Some(lab_geo()), o).unwrap();
        assert_eq!(
            answer(&s, ecs("198.18.1.0/24"), &DnsView::default()),
            ["198.51.100.20"]
        );
    }

    #[test]
    fn health_drain_and_fail_open() {
        let s = Steering::new(&two_pop(), Some(lab_geo()), SteerOptions::default()).unwrap();
        let mut v = DnsView::default();
        v.sites.extend([down("ams")]);
        assert_eq!(answer(&s, ecs("198.18.1.0/24"), &v), ["198.51.100.20"]);
        // A VIP-level outage counts too.
        let mut v = DnsView::default();
        let mut ams = SiteState::default();
        ams.vip_up.insert("ams-web".into(), false);
        v.sites.insert("ams".into(), ams);
        let d = s.decide(&www(), RecordType::A, ecs("198.18.1.0/24"), &v).unwrap();
        assert_eq!(
            d.steps[0].removed,
            vec![("ams-web@ams".into(), "service down".into())]
        );
        // Drained.
        let mut v = DnsView::default();
        v.sites.insert(
            "ams".into(),
            SiteState {
                drained: true,
                ..SiteState::default()
            },
        );
        assert_eq!(answer(&s, ecs("198.18.1.0/24"), &v), ["198.51.100.20"]);
        // Every site down: fail open, geo still ranks.
        let mut v = DnsView::default();
        v.sites.extend([down("ams"), down("nyc")]);
        let d = s.decide(&www(), RecordType::A, ecs("198.18.1.0/24"), &v).unwrap();
        assert!(d.fail_open);
        assert_eq!(d.answer, vec!["198.51.100.10".parse::<IpAddr>().unwrap()]);
        assert!(d.to_string().contains("FAIL-OPEN"));
    }

    #[test]
    fn measured_latency_beats_geo_and_widens_nothing_without_data() {
        let s = Steering::new(&two_pop(), Some(lab_geo()), SteerOptions::default()).unwrap();
        let mut v = DnsView::default();
        v.set_rtt("198.18.1.9".parse().unwrap(), "ams", 30_000);
        v.set_rtt("198.18.1.9".parse().unwrap(), "nyc", 5_000);
        let d = s.decide(&www(), RecordType::A, ecs("198.18.1.0/24"), &v).unwrap();
        assert_eq!(d.chosen, vec!["nyc-web@nyc".to_string()]);
        assert_eq!(d.scope, 24);
        // Another prefix without measurements keeps the geo answer.
        assert_eq!(answer(&s, ecs("198.18.2.0/24"), &v), ["198.51.100.20"]);
        // Differences within the tolerance (5 ms) are noise: geo decides.
        let mut v = DnsView::default();
        v.set_rtt("198.18.1.9".parse().unwrap(), "ams", 4_000);
        v.set_rtt("198.18.1.9".parse().unwrap(), "nyc", 300);
        assert_eq!(answer(&s, ecs("198.18.1.0/24"), &v), ["198.51.100.10"]);
        let d = s.decide(&www(), RecordType::A, ecs("198.18.1.0/24"), &v).unwrap();
        assert!(d.to_string().contains("within 5.0 ms of the best"), "{d}");
    }

    #[test]
    fn load_shedding_and_weighted_tie_break() {
        // No GeoIP: geo cannot rank, so weight decides among equals.
        let s = Steering::new(&two_pop(), None, SteerOptions::default()).unwrap();
        let mut v = DnsView::default();
        v.sites.insert(
            "ams".into(),
            SiteState {
                load: 0.95,
                ..SiteState::default()
            },
        );
        for i in 0..20 {
            let c = ecs(&format!("198.18.{i}.0/24"));
            assert_eq!(answer(&s, c, &v), ["198.51.100.20"]);
        }
        // Weight 0 never wins while another candidate remains.
        let mut v = DnsView::default();
        v.sites.insert(
            "nyc".into(),
            SiteState {
                weight: 0,
                ..SiteState::default()
            },
        );
        for i in 0..20 {
            assert_eq!(
                answer(&s, ecs(&format!("198.18.{i}.0/24")), &v),
                ["198.51.100.10"]
            );
        }
        // Equal weights spread prefixes over both sites, deterministically.
        let v = DnsView::default();
        let picks: Vec<Vec<String>> = (0..64)
            .map(|i| answer(&s, ecs(&format!("198.18.{i}.0/24")), &v))
            .collect();
        let ams = picks.iter().filter(|p| p[0] == "198.51.100.10").count();
        assert!(ams > 8 && ams < 56, "{ams} of 64");
        let again: Vec<Vec<String>> = (0..64)
            .map(|i| answer(&s, ecs(&format!("198.18.{i}.0/24")), &v))
            .collect();
        assert_eq!(picks, again);
        let d = s.decide(&www(), RecordType::A, ecs("198.18.1.0/24"), &v).unwrap();
        assert_eq!(d.scope, 24);
    }

    #[test]
    fn scope_is_zero_without_client_dependency_and_capped_by_source() {
        let s = Steering::new(&two_pop(), None, SteerOptions::default()).unwrap();
        let mut v = DnsView::default();
        v.sites.extend([down("ams")]);
        // One candidate left: nothing about the client mattered.
        let d = s.decide(&www(), RecordType::A, ecs("198.18.1.0/24"), &v).unwrap();
        assert_eq!(d.scope, 0);
        let s = Steering::new(&two_pop(), Some(lab_geo()), SteerOptions::default()).unwrap();
        let d = s
            .decide(&www(), RecordType::A, ecs("198.18.0.0/16"), &DnsView::default())
            .unwrap();
        assert!(d.scope <= 16, "{}", d.scope);
    }

    #[test]
    fn answers_returns_first_n_and_aaaa_uses_v6_candidates_only() {
        let mut dep = two_pop();
        dep.dns.as_mut().unwrap().gslb[0].answers = 2;
        dep.vips
            .get_mut("ams-web")
            .unwrap()
            .prefixes
            .push("2001:db8:ffff::a/128".parse().unwrap());
        let s = Steering::new(&dep, Some(lab_geo()), SteerOptions::default()).unwrap();
        let v = DnsView::default();
        let d = s.decide(&www(), RecordType::A, ecs("198.18.2.0/24"), &v).unwrap();
        assert_eq!(d.chosen, ["nyc-web@nyc", "ams-web@ams"]);
        assert_eq!(d.answer.len(), 2);
        let d = s
            .decide(&www(), RecordType::AAAA, ecs("198.18.2.0/24"), &v)
            .unwrap();
        assert_eq!(d.answer, vec!["2001:db8:ffff::a".parse::<IpAddr>().unwrap()]);
        assert_eq!(
            d.steps[0].removed,
            vec![("nyc-web@nyc".into(), "no AAAA address".into())]
        );
        // One candidate of the family: the answer cannot depend on the client.
        assert_eq!(d.scope, 0);
    }

    #[test]
    fn aaaa_without_v6_candidates_is_nodata() {
        let s = Steering::new(&two_pop(), None, SteerOptions::default()).unwrap();
        let d = s
            .decide(
                &www(),
                RecordType::AAAA,
                ecs("198.18.1.0/24"),
                &DnsView::default(),
            )
            .unwrap();
        assert!(d.answer.is_empty());
        assert!(d.to_string().contains("NODATA"));
    }

    /// Two more sites and VIPs on top of the two-pop lab, so the chain has
    /// real choices to make.
    fn four_sites() -> Deployment {
        let mut dep = two_pop();
        for (name, lat, lon, cc, addr) in [
            ("fra", 50.11, 8.68, *b"DE", "198.51.100.30/32"),
            ("tyo", 35.68, 139.69, *b"JP", "198.51.100.40/32"),
        ] {
            let mut site = dep.sites["ams"].clone();
            site.name = name.into();
            site.location = edge_topology::Location {
                lat,
                lon,
                country: cc,
            };
            dep.sites.insert(name.into(), site);
            let mut vip = dep.vips["ams-web"].clone();
            vip.name = format!("{name}-web");
            vip.prefixes = vec![addr.parse().unwrap()];
            vip.sites = vec![name.into()];
            dep.vips.insert(vip.name.clone(), vip.clone());
            dep.dns.as_mut().unwrap().gslb[0].vips.push(vip.name);
        }
        dep.dns.as_mut().unwrap().gslb[0].answers = 2;
        dep
    }

    /// xorshift64*: a fixed-seed generator, so failures reproduce.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }
        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    #[test]
    fn chain_invariants_hold_for_random_views() {
        let dep = four_sites();
        let s = Steering::new(&dep, Some(lab_geo()), SteerOptions::default()).unwrap();
        let sites = ["ams", "nyc", "fra", "tyo"];
        let clients = [
            "198.18.1.0/24",
            "198.18.2.0/24",
            "203.0.113.0/24",
            "198.51.100.0/24",
            "198.18.77.0/24",
        ];
        let mut rng = Rng(0x5eed_1234_abcd_0001);
        for round in 0..3000 {
            let mut v = DnsView::default();
            for site in sites {
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
            let client = clients[rng.below(clients.len() as u64) as usize];
            if rng.below(2) == 0 {
                for site in sites {
                    if rng.below(2) == 0 {
                        v.set_rtt(
                            client.parse::<IpNet>().unwrap().addr(),
                            site,
                            rng.below(100_000) as u32,
                        );
                    }
                }
            }
            let c = ecs(client);
            let d = s.decide(&www(), RecordType::A, c, &v).unwrap();
            let ctx = format!("round {round}: {v:?}\n{d}");
            assert_eq!(
                s.decide(&www(), RecordType::A, c, &v).as_ref(),
                Some(&d),
                "deterministic: {ctx}"
            );
            assert!(!d.answer.is_empty() && d.chosen.len() <= 2, "{ctx}");
            assert!(d.scope <= 24, "{ctx}");
            let site_of = |label: &str| label.split('@').nth(1).unwrap_or_default().to_string();
            let serving: Vec<&str> = sites
                .iter()
                .copied()
                .filter(|x| v.site(x).serves(&format!("{x}-web")))
                .collect();
            assert_eq!(d.fail_open, serving.is_empty(), "{ctx}");
            if serving.is_empty() {
                continue;
            }
            let chosen: Vec<String> = d.chosen.iter().map(|l| site_of(l)).collect();
            assert!(
                chosen.iter().all(|x| serving.contains(&x.as_str())),
                "health: {ctx}"
            );
            let undrained: Vec<&str> = serving.iter().copied().filter(|x| !v.site(x).drained).collect();
            if !undrained.is_empty() {
                assert!(
                    chosen.iter().all(|x| undrained.contains(&x.as_str())),
                    "drain: {ctx}"
                );
            }
            let pool = if undrained.is_empty() {
                serving.clone()
            } else {
                undrained
            };
            let cool: Vec<&str> = pool.iter().copied().filter(|x| v.site(x).load <= 0.9).collect();
            if !cool.is_empty() {
                assert!(chosen.iter().all(|x| cool.contains(&x.as_str())), "load: {ctx}");
                // The lowest measured RTT among eligible sites wins, up to
                // the tolerance within which RTTs count as equal.
                if let Some(rtts) = v.rtts_for(c.locate_by())
                    && let Some(best) = cool
                        .iter()
                        .filter(|x| rtts.contains_key(**x))
                        .min_by_key(|x| (rtts[**x], **x))
                {
                    let best_rtt = rtts[*best];
                    let tol = SteerOptions::default().latency_tolerance_us;
                    let got = rtts.get(&chosen[0]).copied();
                    assert!(
                        got.is_some_and(|r| r <= best_rtt + tol),
                        "latency: {got:?} vs best {best_rtt}: {ctx}"
                    );
                }
            }
        }
    }
}
