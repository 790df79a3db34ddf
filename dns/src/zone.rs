//! Static zones built from the topology: SOA, NS, A, AAAA, CNAME, TXT, MX,
//! SRV, CAA, delegations, and the owner names of GSLB records (whose data is
//! computed per query by [`crate::steer`]).
//!
//! A lookup is one step: the caller follows CNAMEs (possibly into a GSLB
//! name) and builds the message.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, Ipv6Addr};

use edge_topology as topo;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, SRV, TXT};
use hickory_proto::rr::{LowerName, Name, RData, Record, RecordType};

use crate::DnsError;

/// One authoritative zone.
#[derive(Debug, Clone)]
pub struct Zone {
    pub origin: LowerName,
    pub soa: Record,
    /// The apex NS RRset.
    pub ns: Vec<Record>,
    records: BTreeMap<(LowerName, RecordType), Vec<Record>>,
    /// Every name that exists: owners, their ancestors up to the apex (empty
    /// non-terminals exist too, RFC 8020), and GSLB names.
    names: BTreeSet<LowerName>,
    /// Owners of non-apex NS RRsets: we are not authoritative below them.
    cuts: BTreeSet<LowerName>,
    gslb: BTreeSet<LowerName>,
}

/// The result of one lookup step.
#[derive(Debug, Clone)]
pub enum Step {
    /// Not in any of our zones: REFUSED (we are not a resolver).
    NotOurs,
    /// Records of the asked type.
    Answer(Vec<Record>),
    /// The name is an alias; the caller restarts at the target.
    Cname(Box<Record>),
    /// Below a delegation: NS of the cut in authority and glue.
    Referral {
        ns: Vec<Record>,
        glue: Vec<Record>,
    },
    /// A GSLB name: the answer is computed per query.
    Gslb,
    /// The name exists without data of this type.
    NoData,
    NxDomain,
}

impl Zone {
    /// SOA for the authority section of negative answers; its TTL is the
    /// negative-caching TTL of RFC 2308 §3 (min of SOA TTL and MINIMUM).
    pub fn negative_soa(&self) -> Record {
        let mut soa = self.soa.clone();
        if let RData::SOA(s) = &soa.data {
            soa.ttl = soa.ttl.min(s.minimum);
        }
        soa
    }

    /// One lookup step for `name` (which must be in this zone).
    pub fn step(&self, name: &LowerName, qtype: RecordType) -> Step {
        // Walk down from the apex: a cut above (or at) the name means we only
        // refer, except that the NS RRset at a cut... is still a referral.
        let mut ancestor = name.clone();
        let mut cut = None;
        // (Most zones delegate nothing: no walk then.)
        while !self.cuts.is_empty() && ancestor != self.origin && self.origin.zone_of(&ancestor) {
            if self.cuts.contains(&ancestor) {
                cut = Some(ancestor.clone());
            }
            ancestor = ancestor.base_name();
        }
        if let Some(cut) = cut {
            let ns = self.get(&cut, RecordType::NS);
            let glue = ns
                .iter()
                .filter_map(|r| match &r.data {
                    RData::NS(t) => Some(LowerName::from(&t.0)),
                    _ => None,
                })
                .flat_map(|t| self.addresses_of(&t))
                .collect();
            return Step::Referral { ns, glue };
        }
        if self.gslb.contains(name) {
            return Step::Gslb;
        }
        if qtype != RecordType::CNAME
            && let Some(c) = self.get(name, RecordType::CNAME).into_iter().next()
        {
            return Step::Cname(Box::new(c));
        }
        let rrs = self.get(name, qtype);
        if !rrs.is_empty() {
            return Step::Answer(rrs);
        }
        if self.names.contains(name) {
            Step::NoData
        } else {
            Step::NxDomain
        }
    }

    /// Every name that exists in the zone (owners, empty non-terminals, GSLB).
    pub fn names(&self) -> impl Iterator<Item = &LowerName> {
        self.names.iter()
    }

    /// Whether `name` exists in the zone (owner, empty non-terminal or GSLB).
    pub fn exists(&self, name: &LowerName) -> bool {
        self.names.contains(name)
    }

    /// Static A and AAAA records of `name`, for the additional section (glue
    /// for NS, MX and SRV targets); GSLB names have none here on purpose:
    /// their addresses depend on the client and belong in an answer only.
    pub fn addresses_of(&self, name: &LowerName) -> Vec<Record> {
        let mut out = self.get(name, RecordType::A);
        out.extend(self.get(name, RecordType::AAAA));
        out
    }

    fn get(&self, name: &LowerName, rtype: RecordType) -> Vec<Record> {
        if name == &self.origin {
            match rtype {
                RecordType::SOA => return vec![self.soa.clone()],
                RecordType::NS => return self.ns.clone(),
                _ => {}
            }
        }
        self.records
            .get(&(name.clone(), rtype))
            .cloned()
            .unwrap_or_default()
    }

    /// The static RRsets (apex SOA and NS excepted) by owner and type, in
    /// name order: what a reload compares ([`crate::reload`]).
    pub(crate) fn rrsets(&self) -> &BTreeMap<(LowerName, RecordType), Vec<Record>> {
        &self.records
    }

    /// Every static record, for AXFR (without the leading/trailing SOA).
    pub fn all_records(&self) -> impl Iterator<Item = &Record> {
        self.ns.iter().chain(self.records.values().flatten())
    }

    /// Records the GSLB name as existing in this zone.
    fn add_gslb(&mut self, name: LowerName) {
        self.add_name(&name);
        self.gslb.insert(name);
    }

    fn add_name(&mut self, name: &LowerName) {
        let mut n = name.clone();
        while self.origin.zone_of(&n) && self.names.insert(n.clone()) && n != self.origin {
            n = n.base_name();
        }
    }
}

/// All zones we are authoritative for.
#[derive(Debug, Clone, Default)]
pub struct Zones {
    /// Longest origin first, so the first zone containing a name is the most
    /// specific one.
    zones: Vec<Zone>,
}

impl Zones {
    /// Builds the zones and registers the GSLB owner names.
    pub fn build(dns: &topo::Dns) -> Result<Self, DnsError> {
        let mut zones = Vec::new();
        for z in &dns.zones {
            zones.push(build_zone(z)?);
        }
        zones.sort_by_key(|z: &Zone| std::cmp::Reverse(z.origin.num_labels()));
        let mut out = Zones { zones };
        for g in &dns.gslb {
            let name = parse_name(&g.name, None, &g.name)?;
            let Some(zone) = out.zones.iter_mut().find(|z| z.origin.zone_of(&name)) else {
                return Err(DnsError::Config {
                    what: format!("gslb {}", g.name),
                    reason: "is in none of the zones".into(),
                });
            };
            if zone.names.contains(&name) && !zone.gslb.contains(&name) {
                return Err(DnsError::Config {
                    what: format!("gslb {}", g.name),
                    reason: "also has static records".into(),
                });
            }
            zone.add_gslb(name);
        }
        Ok(out)
    }

    /// The most specific zone containing `name`.
    pub fn find(&self, name: &LowerName) -> Option<&Zone> {
        self.zones.iter().find(|z| z.origin.zone_of(name))
    }

    /// The zone whose apex is exactly `name`.
    pub fn apex(&self, name: &LowerName) -> Option<&Zone> {
        self.zones.iter().find(|z| &z.origin == name)
    }

    pub fn step(&self, name: &LowerName, qtype: RecordType) -> Step {
        match self.find(name) {
            Some(z) => z.step(name, qtype),
            None => Step::NotOurs,
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter()
    }
}

fn parse_name(s: &str, origin: Option<&Name>, what: &str) -> Result<LowerName, DnsError> {
    Name::parse(s, origin)
        .map(|n| LowerName::from(&n))
        .map_err(|e| DnsError::Config {
            what: what.to_string(),
            reason: format!("{s:?} is not a domain name: {e}"),
        })
}

fn build_zone(z: &topo::Zone) -> Result<Zone, DnsError> {
    let what = format!("zone {}", z.origin);
    let origin_name = Name::from_ascii(&z.origin).map_err(|e| DnsError::Config {
        what: what.clone(),
        reason: e.to_string(),
    })?;
    let origin = LowerName::from(&origin_name);
    let name_in = |s: &str, w: &str| parse_name(s, Some(&origin_name), w).map(|n| Name::from(&n));
    let soa_data = SOA::new(
        name_in(&z.soa.mname, &what)?,
        name_in(&z.soa.rname, &what)?,
        z.soa.serial,
        clamp_i32(z.soa.refresh),
        clamp_i32(z.soa.retry),
        clamp_i32(z.soa.expire),
        z.soa.minimum,
    );
    let soa = Record::from_rdata(origin_name.clone(), z.ttl, RData::SOA(soa_data));
    let mut ns = Vec::new();
    for n in &z.ns {
        ns.push(Record::from_rdata(
            origin_name.clone(),
            z.ttl,
            RData::NS(NS(name_in(n, &what)?)),
        ));
    }
    let mut zone = Zone {
        origin: origin.clone(),
        soa,
        ns,
        records: BTreeMap::new(),
        names: BTreeSet::new(),
        cuts: BTreeSet::new(),
        gslb: BTreeSet::new(),
    };
    zone.add_name(&origin);
    for r in &z.records {
        let rwhat = format!("{what} record {} {:?}", r.name, r.rtype);
        let owner = parse_name(&r.name, Some(&origin_name), &rwhat)?;
        if !origin.zone_of(&owner) {
            return Err(DnsError::Config {
                what: rwhat,
                reason: "is outside the zone".into(),
            });
        }
        let (rtype, data) = rdata(r, &origin_name).map_err(|reason| DnsError::Config {
            what: rwhat.clone(),
            reason,
        })?;
        if rtype == RecordType::NS && owner == origin {
            // Apex NS come from `ns`; an explicit one just adds to the set.
            zone.ns.push(Record::from_rdata(Name::from(&owner), r.ttl, data));
            continue;
        }
        if rtype == RecordType::NS {
            zone.cuts.insert(owner.clone());
        }
        zone.add_name(&owner);
        zone.records
            .entry((owner.clone(), rtype))
            .or_default()
            .push(Record::from_rdata(Name::from(&owner), r.ttl, data));
    }
    // RFC 1034 §3.6.2: a CNAME owner has no other data (and the apex always
    // has SOA and NS).
    if zone.records.contains_key(&(origin.clone(), RecordType::CNAME)) {
        return Err(DnsError::Config {
            what: format!("{what} apex"),
            reason: "a CNAME cannot be at the zone apex".into(),
        });
    }
    for (owner, t) in zone.records.keys() {
        if *t == RecordType::CNAME
            && zone
                .records
                .keys()
                .any(|(o, t2)| o == owner && *t2 != RecordType::CNAME)
        {
            return Err(DnsError::Config {
                what: format!("{what} name {owner}"),
                reason: "a CNAME cannot coexist with other records".into(),
            });
        }
    }
    Ok(zone)
}

fn clamp_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

/// Turns the topology's textual value into RDATA. Names in values may be
/// relative to the zone origin, as in a zone file.
fn rdata(r: &topo::Record, origin: &Name) -> Result<(RecordType, RData), String> {
    let name = |s: &str| Name::parse(s, Some(origin)).map_err(|e| format!("{s:?}: {e}"));
    let num = |s: &str| s.parse::<u16>().map_err(|e| format!("{s:?}: {e}"));
    let v = r.value.trim();
    Ok(match r.rtype {
        topo::RecordType::A => (
            RecordType::A,
            RData::A(A(v.parse::<Ipv4Addr>().map_err(|e| e.to_string())?)),
        ),
        topo::RecordType::Aaaa => (
            RecordType::AAAA,
            RData::AAAA(AAAA(v.parse::<Ipv6Addr>().map_err(|e| e.to_string())?)),
        ),
        topo::RecordType::Cname => (RecordType::CNAME, RData::CNAME(CNAME(name(v)?))),
        topo::RecordType::Ns => (RecordType::NS, RData::NS(NS(name(v)?))),
        topo::RecordType::Mx => {
            let f: Vec<&str> = v.split_whitespace().collect();
            let [pref, host] = f[..] else {
                return Err("MX needs `preference exchange`".into());
            };
            (RecordType::MX, RData::MX(MX::new(num(pref)?, name(host)?)))
        }
        topo::RecordType::Srv => {
            let f: Vec<&str> = v.split_whitespace().collect();
            let [prio, weight, port, target] = f[..] else {
                return Err("SRV needs `priority weight port target`".into());
            };
            (
                RecordType::SRV,
                RData::SRV(SRV::new(num(prio)?, num(weight)?, num(port)?, name(target)?)),
            )
        }
        topo::RecordType::Txt => {
            let data = if v.starts_with('"') {
                // Quoted character-strings, zone-file style.
                RData::try_from_str(RecordType::TXT, v).map_err(|e| e.to_string())?
            } else {
                // One string, split at the 255-octet character-string limit.
                let chunks = v
                    .as_bytes()
                    .chunks(255)
                    .map(|c| String::from_utf8_lossy(c).into_owned())
                    .collect::<Vec<_>>();
                RData::TXT(TXT::new(if chunks.is_empty() {
                    vec![String::new()]
                } else {
                    chunks
                }))
            };
            (RecordType::TXT, data)
        }
        topo::RecordType::Caa => (
            RecordType::CAA,
            RData::try_from_str(RecordType::CAA, v).map_err(|e| e.to_string())?,
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn zone_config() -> topo::Dns {
        let text = r#"
name = "z"
[sites.ams]
location = { lat = 52.37, lon = 4.90, country = "NL" }
[[sites.ams.nodes]]
name = "ams-e1"
router_id = "198.18.11.2"
asn = 65011
addresses = ["198.18.11.2/24"]
[vips.ams-web]
prefixes = ["198.51.100.10/32"]
sites = ["ams"]
[pools.web]
backends = [{ name = "b1", site = "ams", address = "198.19.1.11", port = 8080 }]
[services.ams-web]
vip = "ams-web"
pool = "web"
l7 = [{ port = 80 }]
[dns]
[[dns.zones]]
origin = "edge.example."
ns = ["ns1.edge.example."]
soa = { mname = "ns1", rname = "hostmaster", serial = 7, minimum = 30 }
records = [
  { name = "ns1", type = "A", value = "203.0.113.53" },
  { name = "mail", type = "MX", value = "10 mx1" },
  { name = "a.b.c", type = "TXT", value = "hello world" },
  { name = "q", type = "TXT", value = "\"one\" \"two\"" },
  { name = "_sip._udp", type = "SRV", value = "1 2 5060 sip.edge.example." },
  { name = "@", type = "CAA", value = "0 issue \"ca.example.net\"" },
  { name = "alias", type = "CNAME", value = "ns1" },
  { name = "sub", type = "NS", value = "ns.sub" },
  { name = "ns.sub", type = "A", value = "198.51.100.53" },
]
[[dns.gslb]]
name = "www.edge.example."
vips = ["ams-web"]
"#;
        edge_topology::parse(text).unwrap().dns.unwrap()
    }

    fn n(s: &str) -> LowerName {
        LowerName::from(&Name::from_ascii(s).unwrap())
    }

    #[test]
    fn steps_cover_answer_nodata_nxdomain_cname_referral_and_gslb() {
        let zones = Zones::build(&zone_config()).unwrap();
        assert!(
            matches!(zones.step(&n("ns1.edge.example."), RecordType::A), Step::Answer(r) if r.len() == 1)
        );
        assert!(matches!(
            zones.step(&n("ns1.edge.example."), RecordType::AAAA),
            Step::NoData
        ));
        // `b.c.edge.example.` only exists as an ancestor of a.b.c: NODATA.
        assert!(matches!(
            zones.step(&n("b.c.edge.example."), RecordType::A),
            Step::NoData
        ));
        assert!(matches!(
            zones.step(&n("nope.edge.example."), RecordType::A),
            Step::NxDomain
        ));
        assert!(matches!(
            zones.step(&n("alias.edge.example."), RecordType::A),
            Step::Cname(_)
        ));
        assert!(matches!(
            zones.step(&n("alias.edge.example."), RecordType::CNAME),
            Step::Answer(_)
        ));
        assert!(matches!(
            zones.step(&n("www.edge.example."), RecordType::A),
            Step::Gslb
        ));
        assert!(matches!(
            zones.step(&n("example.org."), RecordType::A),
            Step::NotOurs
        ));
        match zones.step(&n("x.sub.edge.example."), RecordType::A) {
            Step::Referral { ns, glue } => {
                assert_eq!(ns.len(), 1);
                assert_eq!(glue.len(), 1);
            }
            other => panic!("{other:?}"),
        }
        let apex = n("edge.example.");
        assert!(matches!(zones.step(&apex, RecordType::SOA), Step::Answer(_)));
        assert!(matches!(zones.step(&apex, RecordType::NS), Step::Answer(_)));
        assert!(matches!(zones.step(&apex, RecordType::CAA), Step::Answer(_)));
        let zone = zones.find(&apex).unwrap();
        assert_eq!(zone.negative_soa().ttl, 30);
        match zones.step(&n("q.edge.example."), RecordType::TXT) {
            Step::Answer(r) => match &r[0].data {
                RData::TXT(t) => assert_eq!(t.txt_data.len(), 2),
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
        match zones.step(&n("mail.edge.example."), RecordType::MX) {
            Step::Answer(r) => assert_eq!(r[0].data.to_string(), "10 mx1.edge.example."),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn cname_conflicts_are_config_errors() {
        let mut dns = zone_config();
        dns.zones[0].records.push(topo::Record {
            name: "edge.example.".into(),
            rtype: topo::RecordType::Cname,
            ttl: 60,
            value: "elsewhere.example.".into(),
        });
        let err = Zones::build(&dns).unwrap_err().to_string();
        assert!(err.contains("apex"), "{err}");
        let mut dns = zone_config();
        dns.zones[0].records.push(topo::Record {
            name: "alias.edge.example.".into(),
            rtype: topo::RecordType::Txt,
            ttl: 60,
            value: "x".into(),
        });
        let err = Zones::build(&dns).unwrap_err().to_string();
        assert!(err.contains("coexist"), "{err}");
        // A GSLB name cannot also carry static data.
        let mut dns = zone_config();
        dns.zones[0].records.push(topo::Record {
            name: "www.edge.example.".into(),
            rtype: topo::RecordType::A,
            ttl: 60,
            value: "198.51.100.99".into(),
        });
        let err = Zones::build(&dns).unwrap_err().to_string();
        assert!(err.contains("static records"), "{err}");
    }
}
