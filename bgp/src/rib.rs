//! Routes we originate, the per-peer Adj-RIB-Out (what we last told the
//! peer, and the UPDATEs that move it to a new desired set) and the per-peer
//! Adj-RIB-In (what the peer told us, for observation only).
//!
//! Pure data structures: the driver owns one of each per peer and feeds them
//! the desired set and the received UPDATEs.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::wire::{
    self, AsSegment, Codec, Community, EncodeError, GRACEFUL_SHUTDOWN, LargeCommunity, Message, Origin,
    PathAttributes, Update,
};

/// A route this node originates. ORIGIN is always IGP and the next hop is
/// always "self" (the session's local address), so neither is a field.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Route {
    pub prefix: IpNet,
    /// Extra copies of the local AS on eBGP sessions (traffic engineering).
    #[serde(default)]
    pub prepend: u8,
    #[serde(default)]
    pub med: Option<u32>,
    #[serde(default)]
    pub communities: BTreeSet<Community>,
    #[serde(default)]
    pub large_communities: BTreeSet<LargeCommunity>,
    /// Sent on iBGP sessions only (default 100 there); ignored on eBGP.
    #[serde(default)]
    pub local_pref: Option<u32>,
}

impl Route {
    pub fn new(prefix: IpNet) -> Self {
        Route {
            prefix: prefix.trunc(),
            prepend: 0,
            med: None,
            communities: BTreeSet::new(),
            large_communities: BTreeSet::new(),
            local_pref: None,
        }
    }
    pub fn with_med(mut self, med: u32) -> Self {
        self.med = Some(med);
        self
    }
    pub fn with_community(mut self, c: Community) -> Self {
        self.communities.insert(c);
        self
    }
    pub fn with_large_community(mut self, c: LargeCommunity) -> Self {
        self.large_communities.insert(c);
        self
    }
    pub fn with_prepend(mut self, n: u8) -> Self {
        self.prepend = n;
        self
    }
    pub fn with_local_pref(mut self, lp: u32) -> Self {
        self.local_pref = Some(lp);
        self
    }
}

/// What a peer needs to turn a [`Route`] into path attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerContext {
    pub local_as: u32,
    pub ibgp: bool,
    /// Next hop for IPv4 prefixes (the session's local IPv4 address).
    pub next_hop_v4: Option<Ipv4Addr>,
    /// Next hop for IPv6 prefixes in MP_REACH_NLRI.
    pub next_hop_v6: Option<Ipv6Addr>,
    /// AFI/SAFIs negotiated with the peer; others are not sent.
    pub families: BTreeSet<(u16, u8)>,
}

/// One prefix as we advertise it: attributes plus the MP next hop for v6.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Advertisement {
    pub attributes: PathAttributes,
    pub ipv6_next_hop: Option<Ipv6Addr>,
}

fn family(p: &IpNet) -> (u16, u8) {
    match p {
        IpNet::V4(_) => (wire::AFI_IPV4, wire::SAFI_UNICAST),
        IpNet::V6(_) => (wire::AFI_IPV6, wire::SAFI_UNICAST),
    }
}

/// Build the per-peer advertisements for a desired route set. With
/// `draining` every route carries GRACEFUL_SHUTDOWN (RFC 8326) so the peer
/// moves traffic away before we withdraw. Routes the peer cannot take (family
/// not negotiated, no usable next hop) are left out.
pub fn advertisements(
    routes: &BTreeSet<Route>,
    ctx: &PeerContext,
    draining: bool,
) -> BTreeMap<IpNet, Advertisement> {
    let mut out = BTreeMap::new();
    for r in routes {
        let prefix = r.prefix.trunc();
        if !ctx.families.contains(&family(&prefix)) {
            continue;
        }
        let (next_hop, ipv6_next_hop) = match prefix {
            IpNet::V4(_) => match ctx.next_hop_v4 {
                Some(nh) => (Some(nh), None),
                None => continue,
            },
            IpNet::V6(_) => match ctx.next_hop_v6 {
                Some(nh) => (None, Some(nh)),
                None => continue,
            },
        };
        let as_path = if ctx.ibgp {
            // Locally originated routes carry an empty AS_PATH inside the AS.
            Vec::new()
        } else {
            vec![AsSegment::Sequence(vec![
                ctx.local_as;
                1 + usize::from(r.prepend)
            ])]
        };
        let mut communities = r.communities.clone();
        if draining {
            communities.insert(GRACEFUL_SHUTDOWN);
        }
        let attributes = PathAttributes {
            origin: Origin::Igp,
            as_path,
            next_hop,
            med: r.med,
            local_pref: ctx.ibgp.then(|| r.local_pref.unwrap_or(100)),
            communities,
            large_communities: r.large_communities.clone(),
        };
        // A later route for the same prefix replaces an earlier one.
        out.insert(
            prefix,
            Advertisement {
                attributes,
                ipv6_next_hop,
            },
        );
    }
    out
}

/// NLRI per UPDATE before we check the encoded size; /32s take 5 octets,
/// so this stays well under 4096 for typical attribute sets.
const CHUNK: usize = 256;

/// Split `prefixes` into UPDATEs built by `make` that each encode within
/// 4096 octets (halving the batch until it fits).
fn pack(
    prefixes: &[IpNet],
    codec: &Codec,
    make: &dyn Fn(Vec<IpNet>) -> Update,
) -> Result<Vec<Update>, EncodeError> {
    let mut out = Vec::new();
    let mut rest = prefixes;
    while !rest.is_empty() {
        let mut n = rest.len().min(CHUNK);
        loop {
            let (batch, _) = rest.split_at(n);
            let u = make(batch.to_vec());
            match wire::encode(&Message::Update(u.clone()), codec) {
                Ok(_) => {
                    out.push(u);
                    rest = &rest[n..];
                    break;
                }
                Err(EncodeError::TooLong(_)) if n > 1 => n /= 2,
                Err(e) => return Err(e),
            }
        }
    }
    Ok(out)
}

/// What we last advertised to one peer.
#[derive(Debug, Clone, Default)]
pub struct AdjRibOut {
    advertised: BTreeMap<IpNet, Advertisement>,
}

impl AdjRibOut {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn advertised(&self) -> &BTreeMap<IpNet, Advertisement> {
        &self.advertised
    }
    pub fn len(&self) -> usize {
        self.advertised.len()
    }
    pub fn is_empty(&self) -> bool {
        self.advertised.is_empty()
    }
    /// The session went down: the peer has forgotten everything.
    pub fn clear(&mut self) {
        self.advertised.clear();
    }

    /// Compute the UPDATEs that take the peer from what we advertised to
    /// `desired`, and record `desired` as advertised. Withdrawals go first so
    /// a peer never holds both an old and a new view longer than needed.
    pub fn diff(
        &mut self,
        desired: &BTreeMap<IpNet, Advertisement>,
        codec: &Codec,
    ) -> Result<Vec<Update>, EncodeError> {
        let withdrawn: Vec<IpNet> = self
            .advertised
            .keys()
            .filter(|p| !desired.contains_key(p))
            .copied()
            .collect();
        let mut groups: BTreeMap<&Advertisement, Vec<IpNet>> = BTreeMap::new();
        for (p, adv) in desired {
            if self.advertised.get(p) != Some(adv) {
                groups.entry(adv).or_default().push(*p);
            }
        }
        let mut updates = pack(&withdrawn, codec, &|w| Update {
            withdrawn: w,
            ..Update::default()
        })?;
        for (adv, prefixes) in groups {
            updates.extend(pack(&prefixes, codec, &|a| Update {
                attributes: Some(adv.attributes.clone()),
                announced: a,
                ipv6_next_hop: adv.ipv6_next_hop,
                ..Update::default()
            })?);
        }
        self.advertised = desired.clone();
        Ok(updates)
    }

    /// Everything we advertise, as UPDATEs (for a ROUTE-REFRESH request).
    pub fn full(&self, codec: &Codec, family_filter: (u16, u8)) -> Result<Vec<Update>, EncodeError> {
        let mut fresh = AdjRibOut::new();
        let subset: BTreeMap<IpNet, Advertisement> = self
            .advertised
            .iter()
            .filter(|(p, _)| family(p) == family_filter)
            .map(|(p, a)| (*p, a.clone()))
            .collect();
        fresh.diff(&subset, codec)
    }
}

/// A route received from a peer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedRoute {
    pub prefix: IpNet,
    pub attributes: PathAttributes,
    pub next_hop: Option<IpAddr>,
    /// RFC 4724 §4.2: kept from before the peer restarted and not
    /// re-announced yet. Goes on the peer's End-of-RIB or on a timer.
    pub stale: bool,
}

/// Exceeding the configured limit: the session must be closed with Cease/1
/// (RFC 4486 §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("maximum prefixes {limit} exceeded (AFI {afi} SAFI {safi})")]
pub struct MaxPrefixExceeded {
    pub afi: u16,
    pub safi: u8,
    pub limit: u32,
}

/// What one peer told us, for observation. The prefix limit applies per
/// address family (as FRR's `maximum-prefix` per AFI/SAFI): a peer's IPv6
/// table does not eat into its IPv4 allowance.
#[derive(Debug, Clone, Default)]
pub struct AdjRibIn {
    routes: BTreeMap<IpNet, ReceivedRoute>,
    max_prefixes: Option<u32>,
    /// Routes held per family: [IPv4, IPv6].
    counts: [usize; 2],
}

fn family_slot(p: &IpNet) -> usize {
    match p {
        IpNet::V4(_) => 0,
        IpNet::V6(_) => 1,
    }
}

impl AdjRibIn {
    pub fn new(max_prefixes: Option<u32>) -> Self {
        AdjRibIn {
            routes: BTreeMap::new(),
            max_prefixes,
            counts: [0; 2],
        }
    }
    pub fn routes(&self) -> impl Iterator<Item = &ReceivedRoute> {
        self.routes.values()
    }
    pub fn len(&self) -> usize {
        self.routes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.routes.is_empty()
    }
    pub fn clear(&mut self) {
        self.routes.clear();
        self.counts = [0; 2];
    }

    /// RFC 4724 §4.2, the peer restarts: keep its routes of `families`,
    /// marked stale, and forget those of every other family. Routes still
    /// stale from an earlier restart go too ("to deal with possible
    /// consecutive restarts, a route previously marked as stale MUST be
    /// deleted").
    pub fn mark_stale(&mut self, families: &BTreeSet<(u16, u8)>) {
        self.routes
            .retain(|p, r| !r.stale && families.contains(&family(p)));
        for r in self.routes.values_mut() {
            r.stale = true;
        }
        self.recount();
    }

    /// Drop the routes of `families` still marked stale (the peer's
    /// End-of-RIB came, or it did not come back in time). Returns how many.
    pub fn purge_stale(&mut self, families: &BTreeSet<(u16, u8)>) -> usize {
        let before = self.routes.len();
        self.routes
            .retain(|p, r| !(r.stale && families.contains(&family(p))));
        self.recount();
        before - self.routes.len()
    }

    /// Routes currently marked stale.
    pub fn stale_len(&self) -> usize {
        self.routes.values().filter(|r| r.stale).count()
    }

    fn recount(&mut self) {
        self.counts = [0; 2];
        for p in self.routes.keys() {
            self.counts[family_slot(p)] += 1;
        }
    }

    /// Routes held for the family of `p`.
    pub fn family_len(&self, p: &IpNet) -> usize {
        self.counts[family_slot(p)]
    }
    /// Apply a received UPDATE (withdrawals first, then announcements).
    pub fn apply(&mut self, u: &Update) -> Result<(), MaxPrefixExceeded> {
        for p in &u.withdrawn {
            if self.routes.remove(p).is_some() {
                self.counts[family_slot(p)] -= 1;
            }
        }
        if let Some(attrs) = &u.attributes {
            for p in &u.announced {
                let next_hop = match p {
                    IpNet::V4(_) => attrs.next_hop.map(IpAddr::V4),
                    IpNet::V6(_) => u.ipv6_next_hop.map(IpAddr::V6),
                };
                let fresh = self
                    .routes
                    .insert(
                        *p,
                        ReceivedRoute {
                            prefix: *p,
                            attributes: attrs.clone(),
                            next_hop,
                            stale: false,
                        },
                    )
                    .is_none();
                if fresh {
                    self.counts[family_slot(p)] += 1;
                }
                if let Some(limit) = self.max_prefixes
                    && self.counts[family_slot(p)] > limit as usize
                {
                    let (afi, safi) = family(p);
                    return Err(MaxPrefixExceeded { afi, safi, limit });
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
