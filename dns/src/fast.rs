//! The UDP fast path: the common query (one A or AAAA question, IN, plain
//! labels, at most an EDNS OPT with nothing but an optional ECS option)
//! parsed and its answer (A/AAAA records of the question's name only, or no
//! records at all) encoded by hand, without building hickory's `Request` and
//! `MessageResponse`. Everything else, and every answer this encoder does not
//! cover (CNAMEs, SOA in authority, truncation…), goes the normal way.
//!
//! The bytes are exactly those hickory's encoder produces for the same
//! response (header, question copied as received, answers with the name
//! compression hickory applies, then the OPT record); a test in
//! `server.rs` compares both paths over many query shapes.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::IpAddr;
use std::ops::Range;

use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::ecs::{self, QueryEcs};
use crate::steer::Steering;
use crate::zone::{Step, Zones};

const OPT: u16 = 41;
/// Names with more labels go the normal way (hickory stops storing
/// compression candidates after 64).
const MAX_LABELS: usize = 16;

/// A query the fast path takes.
#[derive(Debug, Clone)]
pub(crate) struct FastQuery {
    pub id: u16,
    pub recursion_desired: bool,
    pub checking_disabled: bool,
    /// The question section in the query (name, type, class).
    pub question: Range<usize>,
    /// The question name in wire format, ASCII lower case (the key of
    /// [`FastNames`]); `key[..key_len]`.
    key: [u8; 256],
    key_len: usize,
    pub qtype: RecordType,
    /// The query's EDNS UDP payload size, if it had EDNS.
    pub edns_payload: Option<u16>,
    pub ecs: Option<QueryEcs>,
}

fn u16_at(b: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(i)?, *b.get(i + 1)?]))
}

/// Parses `query` if the fast path takes it; `None`: the normal path must
/// (it may also be malformed: the normal path then answers FORMERR).
pub(crate) fn parse(query: &[u8]) -> Option<FastQuery> {
    let header = query.get(..12)?;
    let (flags, flags2) = (header[2], header[3]);
    // QR=0 and OPCODE QUERY; the Z bit clear.
    if flags & 0xf8 != 0 || flags2 & 0x40 != 0 {
        return None;
    }
    let counts = [
        u16_at(header, 4)?,
        u16_at(header, 6)?,
        u16_at(header, 8)?,
        u16_at(header, 10)?,
    ];
    if counts[0] != 1 || counts[1] != 0 || counts[2] != 0 || counts[3] > 1 {
        return None;
    }
    // The name: plain labels of letters, digits, '-' and '_' only.
    let mut i = 12;
    let mut labels = 0;
    loop {
        let len = usize::from(*query.get(i)?);
        i += 1;
        if len == 0 {
            break;
        }
        if len > 63 || labels == MAX_LABELS {
            return None;
        }
        let label = query.get(i..i + len)?;
        if !label
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        {
            return None;
        }
        i += len;
        labels += 1;
    }
    if i - 12 > 255 {
        return None;
    }
    let qtype = match u16_at(query, i)? {
        1 => RecordType::A,
        28 => RecordType::AAAA,
        _ => return None,
    };
    if u16_at(query, i + 2)? != 1 {
        return None;
    }
    let question = 12..i + 4;
    let mut edns_payload = None;
    let mut subnet = None;
    let mut end = question.end;
    if counts[3] == 1 {
        // OPT: root name, TYPE 41, CLASS = payload, TTL = ext-rcode 0,
        // version 0, flags; RDATA: nothing or one ECS option.
        let rr = query.get(end..end + 11)?;
        if rr[0] != 0 || u16_at(rr, 1)? != OPT || rr[5] != 0 || rr[6] != 0 {
            return None;
        }
        let payload = u16_at(rr, 3)?;
        let rdlen = usize::from(u16_at(rr, 9)?);
        let rdata = query.get(end + 11..end + 11 + rdlen)?;
        if !rdata.is_empty() {
            if u16_at(rdata, 0)? != 8 || usize::from(u16_at(rdata, 2)?) + 4 != rdata.len() {
                return None;
            }
            // The only option: validated as `ecs::from_query` would.
            subnet = Some(ecs::validate(rdata.get(4..)?).ok()?);
        }
        edns_payload = Some(payload);
        end += 11 + rdlen;
    }
    if end != query.len() {
        return None;
    }
    let wire = query.get(12..question.end - 4)?;
    let mut key = [0u8; 256];
    key.get_mut(..wire.len())?.copy_from_slice(wire);
    key[..wire.len()].make_ascii_lowercase();
    Some(FastQuery {
        id: u16_at(header, 0)?,
        recursion_desired: flags & 0x01 != 0,
        checking_disabled: flags2 & 0x10 != 0,
        question,
        key,
        key_len: wire.len(),
        qtype,
        edns_payload,
        ecs: subnet,
    })
}

impl FastQuery {
    /// The question name in wire format, lower case.
    pub fn key(&self) -> &[u8] {
        &self.key[..self.key_len]
    }

    /// The question name (built only when needed: a name [`FastNames`] does
    /// not know, or a log line). `None` if hickory does not read it.
    pub fn name(&self) -> Option<LowerName> {
        Name::read(&mut BinDecoder::new(self.key()))
            .ok()
            .map(|n| LowerName::from(&n))
    }
}

/// FNV-1a for the short keys of [`FastNames`] (std's SipHash costs more
/// than the rest of the lookup).
#[derive(Default)]
pub(crate) struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
        self.0 = h;
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// What the first lookup step gives for a name and A or AAAA, precomputed
/// when that step ends the answer with records only (no CNAME, referral,
/// NODATA or NXDOMAIN: those take [`crate::server::Authority`]'s general
/// code).
#[derive(Debug, Clone)]
pub(crate) enum FastStep {
    /// Static records of the asked type.
    Answer(Vec<Record>),
    /// A GSLB name: the record at this index of [`Steering::records`].
    Gslb(usize),
}

/// [`FastStep`]s by lower-case wire-format name, `[A, AAAA]`, built with the
/// zones: the fast path finds its answer with one hash lookup of the query
/// bytes instead of building a `Name` and walking the zones' `BTreeMap`s.
#[derive(Debug, Clone, Default)]
pub(crate) struct FastNames(HashMap<Box<[u8]>, [Option<FastStep>; 2], BuildHasherDefault<FnvHasher>>);

impl FastNames {
    /// Every owner and GSLB name of `zones`, with the step
    /// [`Zone::step`](crate::zone::Zone::step) takes for it (exactly what the
    /// first hop of `Authority::answer` does).
    pub(crate) fn build(zones: &Zones, steering: &Steering) -> Self {
        let mut map = HashMap::default();
        for zone in zones.iter() {
            for name in zone.names() {
                if zones.find(name).map(|z| &z.origin) != Some(&zone.origin) {
                    continue;
                }
                let steps = [RecordType::A, RecordType::AAAA].map(|qtype| match zone.step(name, qtype) {
                    Step::Answer(rrs)
                        if rrs.iter().all(|r| matches!(r.data, RData::A(_) | RData::AAAA(_))) =>
                    {
                        Some(FastStep::Answer(rrs))
                    }
                    Step::Gslb => steering.index_of(name).map(FastStep::Gslb),
                    _ => None,
                });
                if steps.iter().all(Option::is_none) {
                    continue;
                }
                if let Some(key) = wire_key(name) {
                    map.insert(key, steps);
                }
            }
        }
        Self(map)
    }

    /// The step for `key` (lower-case wire format) and A or AAAA.
    pub(crate) fn get(&self, key: &[u8], qtype: RecordType) -> Option<&FastStep> {
        let fam = match qtype {
            RecordType::A => 0,
            RecordType::AAAA => 1,
            _ => return None,
        };
        self.0.get(key)?[fam].as_ref()
    }
}

/// `name` in wire format, ASCII lower case.
fn wire_key(name: &LowerName) -> Option<Box<[u8]>> {
    let mut key = Vec::with_capacity(64);
    for label in name.iter() {
        key.push(u8::try_from(label.len()).ok()?);
        key.extend(label.iter().map(u8::to_ascii_lowercase));
    }
    key.push(0);
    Some(key.into_boxed_slice())
}

/// The response EDNS of a fast query: UDP payload size and the ECS option
/// echoed with our scope.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FastEdns {
    pub payload: u16,
    pub ecs: Option<(QueryEcs, u8)>,
}

/// The response header bits the server sets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FastHeader {
    pub authoritative: bool,
    pub truncation: bool,
    /// Must be below 16 (no extended RCODE).
    pub rcode: u16,
}

/// Encodes the response, or `None` if the fast path does not cover it
/// (then hickory's encoder must): records that are not A/AAAA of one owner
/// name, an extended RCODE, or a message larger than `max`.
/// Encodes into `out` (a recycled buffer: cleared first).
pub(crate) fn encode<R: Borrow<Record>>(
    q: &FastQuery,
    query: &[u8],
    h: FastHeader,
    answers: &[R],
    edns: Option<FastEdns>,
    max: usize,
    mut out: Vec<u8>,
) -> Option<Vec<u8>> {
    if h.rcode >= 16 || answers.len() > 64 {
        return None;
    }
    let question = query.get(q.question.clone())?;
    out.clear();
    out.extend_from_slice(&q.id.to_be_bytes());
    out.push(
        0x80 | if h.authoritative { 0x04 } else { 0 }
            | if h.truncation { 0x02 } else { 0 }
            | u8::from(q.recursion_desired),
    );
    out.push(if q.checking_disabled { 0x10 } else { 0 } | h.rcode as u8);
    let an = u16::try_from(answers.len()).ok()?;
    for c in [1, an, 0, u16::from(edns.is_some())] {
        out.extend_from_slice(&c.to_be_bytes());
    }
    out.extend_from_slice(question);
    // hickory stores the question as one compression candidate that no
    // owner name matches (it includes TYPE and CLASS): the first answer's
    // owner is written in full, the others point to it.
    let mut owner: Option<(&Name, u16)> = None;
    for r in answers {
        let r: &Record = r.borrow();
        let mut buf = [0u8; 16];
        let (rtype, len) = match &r.data {
            RData::A(a) => {
                buf[..4].copy_from_slice(&a.0.octets());
                (1u16, 4)
            }
            RData::AAAA(a) => {
                buf.copy_from_slice(&a.0.octets());
                (28, 16)
            }
            _ => return None,
        };
        let rdata = &buf[..len];
        if r.dns_class != DNSClass::IN {
            return None;
        }
        match owner {
            Some((name, at)) => {
                if !same_labels(name, &r.name) {
                    return None;
                }
                out.extend_from_slice(&(0xC000 | at).to_be_bytes());
            }
            None => {
                let at = u16::try_from(out.len()).ok().filter(|a| *a < 0x3fff)?;
                let mut labels = 0;
                for label in r.name.iter() {
                    if label.is_empty() || label.len() > 63 {
                        return None;
                    }
                    labels += 1;
                    out.push(label.len() as u8);
                    out.extend_from_slice(label);
                }
                if labels == 0 || labels > MAX_LABELS {
                    return None;
                }
                out.push(0);
                owner = Some((&r.name, at));
            }
        }
        out.extend_from_slice(&rtype.to_be_bytes());
        out.extend_from_slice(&1u16.to_be_bytes());
        out.extend_from_slice(&r.ttl.to_be_bytes());
        out.extend_from_slice(&(rdata.len() as u16).to_be_bytes());
        out.extend_from_slice(rdata);
    }
    if let Some(e) = edns {
        out.push(0);
        out.extend_from_slice(&OPT.to_be_bytes());
        out.extend_from_slice(&e.payload.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        match e.ecs {
            Some((ecs, scope)) => {
                let mut octets = [0u8; 16];
                let family: u16 = match &ecs.addr {
                    IpAddr::V4(a) => {
                        octets[..4].copy_from_slice(&a.octets());
                        1
                    }
                    IpAddr::V6(a) => {
                        octets.copy_from_slice(&a.octets());
                        2
                    }
                };
                let max = if family == 1 { 4 } else { 16 };
                let n = usize::from(ecs.source.div_ceil(8));
                if n > max {
                    return None;
                }
                let addr = octets.get(..n)?;
                let len = 4 + addr.len() as u16;
                out.extend_from_slice(&(4 + len).to_be_bytes());
                out.extend_from_slice(&8u16.to_be_bytes());
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&family.to_be_bytes());
                out.push(ecs.source);
                out.push(scope);
                out.extend_from_slice(addr);
            }
            None => out.extend_from_slice(&0u16.to_be_bytes()),
        }
    }
    (out.len() <= max).then_some(out)
}

/// Same labels, byte for byte (hickory's compression compares bytes).
fn same_labels(a: &Name, b: &Name) -> bool {
    a.num_labels() == b.num_labels() && a.iter().zip(b.iter()).all(|(x, y)| x == y)
}
