//! BGP-4 wire format: framing, our typed [`Message`], and errors as data.
//!
//! The byte-level work for OPEN, UPDATE attributes, NLRI and ROUTE-REFRESH is
//! done by the vendored, patched zettabgp (`bgp/vendor/zettabgp`). This module
//! owns what zettabgp does not:
//! - the framing check (marker, 19..=4096 length, type) done *before* any
//!   decoder sees the bytes, so a bad header always maps to the right
//!   NOTIFICATION (RFC 4271 §6.1);
//! - walking the UPDATE path attributes one by one so that a malformed
//!   attribute is classified per RFC 7606 (treat-as-withdraw, attribute
//!   discard or session reset) instead of failing the whole message;
//! - NOTIFICATION with arbitrary data (zettabgp models the data as a `u16`).
//!
//! Nothing here allocates a socket or reads a clock.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Serialize};
use zettabgp::prelude::{
    BgpASitem, BgpASpath, BgpASseq, BgpASset, BgpAddr, BgpAddrV4, BgpAddrV6, BgpAddrs, BgpAttrItem,
    BgpAttrOrigin, BgpAttrUnknown, BgpCapGR, BgpCapability, BgpCommunity, BgpCommunityList,
    BgpLargeCommunity, BgpLargeCommunityList, BgpLocalpref, BgpMED, BgpMPUpdates, BgpMPWithdraws, BgpMessage,
    BgpNextHop, BgpOpenMessage, BgpOrigin, BgpRouterefreshMessage, BgpSessionParams, BgpTransportMode,
    BgpUpdateMessage, decode_bgpitems_from,
};

/// 16 octets of all ones (RFC 4271 §4.1; no authentication in the marker).
pub const MARKER: [u8; 16] = [0xff; 16];
/// Fixed header: marker, 2-octet length, 1-octet type.
pub const HEADER_LEN: usize = 19;
/// RFC 4271 §4.1 maximum (extended messages, RFC 8654, are not negotiated).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// RFC 6793: the 2-octet placeholder for a 4-octet ASN.
pub const AS_TRANS: u16 = 23456;
/// RFC 8326 GRACEFUL_SHUTDOWN well-known community 65535:0.
pub const GRACEFUL_SHUTDOWN: Community = Community(0xFFFF_0000);

pub const AFI_IPV4: u16 = 1;
pub const AFI_IPV6: u16 = 2;
pub const SAFI_UNICAST: u8 = 1;

const ATTR_AS4_PATH: u8 = 17;

const TYPE_OPEN: u8 = 1;
const TYPE_UPDATE: u8 = 2;
const TYPE_NOTIFICATION: u8 = 3;
const TYPE_KEEPALIVE: u8 = 4;
const TYPE_ROUTE_REFRESH: u8 = 5;

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// RFC 4271 §6.1 Message Header Error subcodes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum HeaderError {
    #[error("connection not synchronized (marker is not all ones)")]
    ConnectionNotSynchronized,
    #[error("bad message length {0}")]
    BadMessageLength(u16),
    #[error("bad message type {0}")]
    BadMessageType(u8),
}

/// RFC 4271 §6.2 OPEN Message Error subcodes that decoding can detect.
/// (Bad peer AS, bad BGP identifier and hold time are session policy: the
/// FSM checks those against its configuration.)
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum OpenError {
    #[error("unsupported version {0}")]
    UnsupportedVersion(u8),
    #[error("unsupported optional parameter type {0}")]
    UnsupportedOptionalParameter(u8),
    #[error("malformed OPEN: {0}")]
    Malformed(String),
}

/// RFC 4271 §6.3 UPDATE Message Error subcodes, for the errors RFC 7606 still
/// answers with a session reset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum UpdateError {
    #[error("malformed attribute list: {0}")]
    MalformedAttributeList(String),
    #[error("unrecognized well-known attribute {0}")]
    UnrecognizedWellKnown(u8),
    #[error("invalid network field: {0}")]
    InvalidNetworkField(String),
    #[error("malformed MP_REACH/MP_UNREACH: {0}")]
    MalformedMp(String),
}

/// Everything that can be wrong with a received message. Each variant maps to
/// a NOTIFICATION through [`DecodeError::notification`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize)]
pub enum DecodeError {
    #[error("message header: {0}")]
    Header(#[from] HeaderError),
    #[error("OPEN: {0}")]
    Open(#[from] OpenError),
    #[error("UPDATE: {0}")]
    Update(#[from] UpdateError),
    /// A malformed NOTIFICATION is never answered with another one (RFC 4271
    /// §6.4); the session just closes.
    #[error("malformed NOTIFICATION")]
    Notification,
    /// RFC 7313 §5: ROUTE-REFRESH Message Error / Invalid Message Length.
    #[error("ROUTE-REFRESH with length {0}")]
    RouteRefreshLength(u16),
}

impl DecodeError {
    /// The NOTIFICATION to send for this error, if any.
    pub fn notification(&self) -> Option<Notification> {
        use DecodeError as D;
        let (code, subcode, data) = match self {
            D::Header(HeaderError::ConnectionNotSynchronized) => (1, 1, vec![]),
            // §6.1: the data field carries the erroneous length / type.
            D::Header(HeaderError::BadMessageLength(l)) => (1, 2, l.to_be_bytes().to_vec()),
            D::Header(HeaderError::BadMessageType(t)) => (1, 3, vec![*t]),
            // §6.2: data is the largest locally supported version, 2 octets.
            D::Open(OpenError::UnsupportedVersion(_)) => (2, 1, vec![0, 4]),
            D::Open(OpenError::UnsupportedOptionalParameter(_)) => (2, 4, vec![]),
            D::Open(OpenError::Malformed(_)) => (2, 0, vec![]),
            D::Update(UpdateError::MalformedAttributeList(_)) => (3, 1, vec![]),
            D::Update(UpdateError::UnrecognizedWellKnown(t)) => (3, 2, vec![*t]),
            D::Update(UpdateError::InvalidNetworkField(_)) => (3, 10, vec![]),
            D::Update(UpdateError::MalformedMp(_)) => (3, 9, vec![]),
            D::Notification => return None,
            D::RouteRefreshLength(_) => (7, 1, vec![]),
        };
        Some(Notification { code, subcode, data })
    }
}

// Errors that always have a NOTIFICATION convert straight into it (holo
// style `NotificationMsg::from(error)`).
impl From<HeaderError> for Notification {
    fn from(e: HeaderError) -> Self {
        DecodeError::Header(e)
            .notification()
            .unwrap_or_else(|| Notification::new(1, 0))
    }
}

impl From<OpenError> for Notification {
    fn from(e: OpenError) -> Self {
        DecodeError::Open(e)
            .notification()
            .unwrap_or_else(|| Notification::new(2, 0))
    }
}

impl From<UpdateError> for Notification {
    fn from(e: UpdateError) -> Self {
        DecodeError::Update(e)
            .notification()
            .unwrap_or_else(|| Notification::new(3, 0))
    }
}

/// Errors building a message to send. These are bugs or impossible requests
/// on our side, never caused by the peer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("message of {0} octets exceeds {MAX_MESSAGE_LEN}")]
    TooLong(usize),
    #[error("IPv4 NLRI announced without an IPv4 next hop")]
    MissingIpv4NextHop,
    #[error("IPv6 NLRI announced without an IPv6 next hop")]
    MissingIpv6NextHop,
    #[error("announced NLRI without path attributes")]
    MissingAttributes,
    #[error("codec: {0}")]
    Codec(String),
}

fn codec_err(e: zettabgp::error::BgpError) -> EncodeError {
    EncodeError::Codec(e.to_string())
}

// ---------------------------------------------------------------------------
// Framing
// ---------------------------------------------------------------------------

/// Result of looking at the front of a receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Frame {
    /// Fewer bytes than the header or than the header's length: read more.
    NeedMore,
    /// A whole message of this many octets (header included) is buffered.
    Complete(usize),
}

/// Check the header at the front of `buf` without decoding the body
/// (mini-redis `Frame::check`): marker, length within 19..=4096, known type.
/// Called before any decoder touches the bytes.
pub fn check_frame(buf: &[u8]) -> Result<Frame, HeaderError> {
    let Some(hdr) = buf.get(..HEADER_LEN) else {
        // Reject a bad marker as soon as we see it rather than waiting for
        // 19 bytes that a desynchronised stream may never deliver.
        let seen = buf.len().min(MARKER.len());
        if buf.get(..seen).is_some_and(|m| m.iter().any(|b| *b != 0xff)) {
            return Err(HeaderError::ConnectionNotSynchronized);
        }
        return Ok(Frame::NeedMore);
    };
    if hdr[..16] != MARKER {
        return Err(HeaderError::ConnectionNotSynchronized);
    }
    let len = u16::from_be_bytes([hdr[16], hdr[17]]);
    let ty = hdr[18];
    if !(HEADER_LEN..=MAX_MESSAGE_LEN).contains(&(len as usize)) {
        return Err(HeaderError::BadMessageLength(len));
    }
    if !(TYPE_OPEN..=TYPE_ROUTE_REFRESH).contains(&ty) {
        return Err(HeaderError::BadMessageType(ty));
    }
    // §6.1: per-type minimum/exact lengths are header errors too.
    let ok = match ty {
        TYPE_OPEN => len >= 29,
        TYPE_UPDATE => len >= 23,
        TYPE_NOTIFICATION => len >= 21,
        TYPE_KEEPALIVE => len == 19,
        _ => true, // ROUTE-REFRESH length is its own error (RFC 7313)
    };
    if !ok {
        return Err(HeaderError::BadMessageLength(len));
    }
    if buf.len() < len as usize {
        Ok(Frame::NeedMore)
    } else {
        Ok(Frame::Complete(len as usize))
    }
}

// ---------------------------------------------------------------------------
// Typed messages
// ---------------------------------------------------------------------------

/// What the decoder needs to know about the session (negotiated state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Codec {
    /// RFC 6793 4-octet AS numbers in AS_PATH (both sides advertised it).
    pub four_octet_as: bool,
    /// The peer is in our AS: LOCAL_PREF is meaningful.
    pub ibgp: bool,
}

impl Codec {
    fn params(&self) -> BgpSessionParams {
        let mut p = BgpSessionParams::new(
            0,
            0,
            // DEPS-FACTS 7: IPv4 transport mode; IPv6 rides in MP_REACH.
            BgpTransportMode::IPv4,
            Ipv4Addr::UNSPECIFIED,
            Vec::new(),
        );
        p.has_as32bit = self.four_octet_as;
        // DEPS-FACTS 6: never guess ADD-PATH; we do not negotiate it.
        p.fuzzy_pathid = false;
        p
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Message {
    Open(Open),
    Update(Update),
    Notification(Notification),
    Keepalive,
    RouteRefresh { afi: u16, safi: u8 },
}

impl Message {
    pub fn kind(&self) -> &'static str {
        match self {
            Message::Open(_) => "OPEN",
            Message::Update(_) => "UPDATE",
            Message::Notification(_) => "NOTIFICATION",
            Message::Keepalive => "KEEPALIVE",
            Message::RouteRefresh { .. } => "ROUTE-REFRESH",
        }
    }
}

/// Largest Restart Time the 12-bit field of RFC 4724 §3 can carry.
pub const MAX_RESTART_TIME: u16 = 0x0fff;

/// One AFI/SAFI of a Graceful Restart capability (RFC 4724 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GracefulRestartFamily {
    pub afi: u16,
    pub safi: u8,
    /// F bit: the sender kept its forwarding state for this family across
    /// its last restart.
    pub forwarding_preserved: bool,
}

/// The Graceful Restart capability (code 64, RFC 4724 §3):
///
/// ```text
/// +--------------------------------------------------+
/// | Restart Flags (4 bits) | Restart Time (12 bits)  |   R = 0x8000
/// +--------------------------------------------------+
/// | AFI (2 octets) | SAFI (1) | Flags (1, F = 0x80)  |   repeated
/// +--------------------------------------------------+
/// ```
/// The N bit (0x4000, RFC 8538) is not decoded: we do not implement the
/// NOTIFICATION extension, and RFC 8538 lets a speaker ignore it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GracefulRestartCap {
    /// R bit: the sender has just restarted; do not wait for its
    /// End-of-RIB before sending it routes.
    pub restarting: bool,
    /// Seconds the sender asks us to keep its routes after the session
    /// drops (0..=4095).
    pub restart_time: u16,
    /// Families the sender can restart gracefully. Empty: it only wants to
    /// help us restart (receiving speaker), it keeps no state itself.
    pub families: Vec<GracefulRestartFamily>,
}

impl GracefulRestartCap {
    /// Families listed in the capability with the F bit set.
    pub fn preserved_families(&self) -> BTreeSet<(u16, u8)> {
        self.families
            .iter()
            .filter(|f| f.forwarding_preserved)
            .map(|f| (f.afi, f.safi))
            .collect()
    }
    /// Families listed in the capability, whatever their F bit.
    pub fn listed_families(&self) -> BTreeSet<(u16, u8)> {
        self.families.iter().map(|f| (f.afi, f.safi)).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Capability {
    /// RFC 4760 multiprotocol extensions for one AFI/SAFI.
    Multiprotocol { afi: u16, safi: u8 },
    /// RFC 2918.
    RouteRefresh,
    /// RFC 6793, carrying the real ASN.
    FourOctetAs(u32),
    /// RFC 4724.
    GracefulRestart(GracefulRestartCap),
    /// A capability zettabgp understands but we neither use nor send
    /// (ADD-PATH, hostname, LLGR, ...), kept by code for logs.
    Other(u8),
}

impl Capability {
    fn from_zetta(c: &BgpCapability) -> Self {
        match c {
            BgpCapability::CapRR => Capability::RouteRefresh,
            BgpCapability::CapASN32(n) => Capability::FourOctetAs(*n),
            BgpCapability::CapEnhancedRR => Capability::Other(70),
            BgpCapability::CapGR {
                restart_time,
                restart_state,
                afis,
            } => Capability::GracefulRestart(GracefulRestartCap {
                restarting: *restart_state,
                restart_time: *restart_time & MAX_RESTART_TIME,
                families: afis
                    .iter()
                    .map(|a| GracefulRestartFamily {
                        afi: a.afi,
                        safi: a.safi,
                        forwarding_preserved: a.forwarding_state,
                    })
                    .collect(),
            }),
            BgpCapability::CapAddPath(_) => Capability::Other(69),
            BgpCapability::CapLLGR(_) => Capability::Other(71),
            BgpCapability::CapFQDN(..) => Capability::Other(73),
            BgpCapability::CapBFD => Capability::Other(74),
            other => match other.afi_safi() {
                Some((afi, safi)) => Capability::Multiprotocol { afi, safi },
                None => Capability::Other(0),
            },
        }
    }
    fn to_zetta(&self) -> Option<BgpCapability> {
        match self {
            Capability::Multiprotocol { afi, safi } => BgpCapability::from_afi_safi(*afi, *safi),
            Capability::RouteRefresh => Some(BgpCapability::CapRR),
            Capability::FourOctetAs(n) => Some(BgpCapability::CapASN32(*n)),
            Capability::GracefulRestart(gr) => Some(BgpCapability::CapGR {
                // zettabgp refuses (rather than truncates) a time over 12
                // bits; the configuration is validated, clamp anyway.
                restart_time: gr.restart_time.min(MAX_RESTART_TIME),
                restart_state: gr.restarting,
                afis: gr
                    .families
                    .iter()
                    .map(|f| BgpCapGR {
                        afi: f.afi,
                        safi: f.safi,
                        forwarding_state: f.forwarding_preserved,
                    })
                    .collect(),
            }),
            Capability::Other(_) => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Open {
    /// The 2-octet "My Autonomous System" field (AS_TRANS for 4-octet ASNs).
    pub my_as: u16,
    pub hold_time: u16,
    pub router_id: Ipv4Addr,
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// Our OPEN: MP for the given families, route refresh, 4-octet AS.
    pub fn new(asn: u32, hold_time: u16, router_id: Ipv4Addr, families: &[(u16, u8)]) -> Self {
        let mut capabilities: Vec<Capability> = families
            .iter()
            .map(|&(afi, safi)| Capability::Multiprotocol { afi, safi })
            .collect();
        capabilities.push(Capability::RouteRefresh);
        capabilities.push(Capability::FourOctetAs(asn));
        Open {
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            router_id,
            capabilities,
        }
    }
    /// The speaker's real ASN: the 4-octet capability if present (RFC 6793),
    /// else the 2-octet field.
    pub fn asn(&self) -> u32 {
        self.capabilities
            .iter()
            .find_map(|c| match c {
                Capability::FourOctetAs(n) => Some(*n),
                _ => None,
            })
            .unwrap_or(u32::from(self.my_as))
    }
    pub fn four_octet_as(&self) -> bool {
        self.capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)))
    }
    /// AFI/SAFIs the speaker supports. RFC 4760 §8: a speaker that sends no
    /// MP capability at all does IPv4 unicast only.
    pub fn families(&self) -> BTreeSet<(u16, u8)> {
        let mp: BTreeSet<(u16, u8)> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol { afi, safi } => Some((*afi, *safi)),
                _ => None,
            })
            .collect();
        if mp.is_empty() {
            [(AFI_IPV4, SAFI_UNICAST)].into_iter().collect()
        } else {
            mp
        }
    }
    pub fn route_refresh(&self) -> bool {
        self.capabilities.contains(&Capability::RouteRefresh)
    }
    /// Add the Graceful Restart capability (RFC 4724), replacing any.
    pub fn with_graceful_restart(mut self, gr: GracefulRestartCap) -> Self {
        self.capabilities
            .retain(|c| !matches!(c, Capability::GracefulRestart(_)));
        self.capabilities.push(Capability::GracefulRestart(gr));
        self
    }
    /// The speaker's Graceful Restart capability. RFC 4724 §3: if it is
    /// sent more than once, the last one counts.
    pub fn graceful_restart(&self) -> Option<&GracefulRestartCap> {
        self.capabilities.iter().rev().find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr),
            _ => None,
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Notification {
    pub code: u8,
    pub subcode: u8,
    pub data: Vec<u8>,
}

impl Notification {
    pub fn new(code: u8, subcode: u8) -> Self {
        Notification {
            code,
            subcode,
            data: Vec::new(),
        }
    }
    /// Cease (RFC 4486) with a subcode, e.g. 2 administrative shutdown.
    pub fn cease(subcode: u8) -> Self {
        Self::new(6, subcode)
    }
}

impl fmt::Display for Notification {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let code = match self.code {
            1 => "Message Header Error",
            2 => "OPEN Message Error",
            3 => "UPDATE Message Error",
            4 => "Hold Timer Expired",
            5 => "Finite State Machine Error",
            6 => "Cease",
            7 => "ROUTE-REFRESH Message Error",
            _ => "Unknown",
        };
        write!(f, "{code} ({}/{})", self.code, self.subcode)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub enum Origin {
    #[default]
    Igp,
    Egp,
    Incomplete,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum AsSegment {
    Sequence(Vec<u32>),
    Set(Vec<u32>),
}

/// RFC 1997 community, `high:low` (also its serde form, for configs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Community(pub u32);

impl std::str::FromStr for Community {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (h, l) = s
            .split_once(':')
            .ok_or_else(|| format!("community {s:?} is not high:low"))?;
        let h: u16 = h.parse().map_err(|_| format!("bad community {s:?}"))?;
        let l: u16 = l.parse().map_err(|_| format!("bad community {s:?}"))?;
        Ok(Community::new(h, l))
    }
}

impl TryFrom<String> for Community {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<Community> for String {
    fn from(c: Community) -> String {
        c.to_string()
    }
}

impl Community {
    pub fn new(high: u16, low: u16) -> Self {
        Community((u32::from(high) << 16) | u32::from(low))
    }
}

impl fmt::Display for Community {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.0 >> 16, self.0 & 0xffff)
    }
}

/// RFC 8092 large community, `global:local1:local2` (also its serde form).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct LargeCommunity(pub u32, pub u32, pub u32);

impl std::str::FromStr for LargeCommunity {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let parts: Vec<&str> = s.split(':').collect();
        let n = |i: usize| -> Result<u32, String> {
            parts
                .get(i)
                .and_then(|p| p.parse().ok())
                .ok_or_else(|| format!("large community {s:?} is not a:b:c"))
        };
        if parts.len() != 3 {
            return Err(format!("large community {s:?} is not a:b:c"));
        }
        Ok(LargeCommunity(n(0)?, n(1)?, n(2)?))
    }
}

impl TryFrom<String> for LargeCommunity {
    type Error = String;
    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl From<LargeCommunity> for String {
    fn from(c: LargeCommunity) -> String {
        c.to_string()
    }
}

impl fmt::Display for LargeCommunity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.0, self.1, self.2)
    }
}

/// The path attributes we originate and understand on receipt.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Default)]
pub struct PathAttributes {
    pub origin: Origin,
    pub as_path: Vec<AsSegment>,
    /// Classic NEXT_HOP (IPv4 NLRI only).
    pub next_hop: Option<Ipv4Addr>,
    pub med: Option<u32>,
    pub local_pref: Option<u32>,
    pub communities: BTreeSet<Community>,
    pub large_communities: BTreeSet<LargeCommunity>,
}

impl PathAttributes {
    /// ASNs of the path flattened in order (sets in their stored order).
    pub fn as_path_flat(&self) -> Vec<u32> {
        self.as_path
            .iter()
            .flat_map(|s| match s {
                AsSegment::Sequence(v) | AsSegment::Set(v) => v.iter().copied(),
            })
            .collect()
    }
    fn first_as(&self) -> Option<u32> {
        match self.as_path.first()? {
            AsSegment::Sequence(v) => v.first().copied(),
            AsSegment::Set(_) => None,
        }
    }
}

/// An UPDATE. IPv4 prefixes travel in the classic fields, IPv6 ones in
/// MP_REACH_NLRI / MP_UNREACH_NLRI (RFC 4760).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Default)]
pub struct Update {
    pub withdrawn: Vec<IpNet>,
    pub attributes: Option<PathAttributes>,
    pub announced: Vec<IpNet>,
    /// MP_REACH next hop for the IPv6 prefixes in `announced`.
    pub ipv6_next_hop: Option<Ipv6Addr>,
    /// Set on decode when RFC 7606 treat-as-withdraw applied: the prefixes
    /// the peer announced have been moved to `withdrawn` and this says why.
    pub treat_as_withdraw: Option<String>,
    /// Set on decode for an End-of-RIB marker (RFC 4724 §2): the family
    /// (AFI, SAFI) whose initial table the peer finished sending.
    pub end_of_rib: Option<(u16, u8)>,
}

impl Update {
    pub fn is_end_of_rib(&self) -> bool {
        self.withdrawn.is_empty() && self.announced.is_empty() && self.attributes.is_none()
    }
}

// ---------------------------------------------------------------------------
// Encoding
// ---------------------------------------------------------------------------

fn frame(ty: u8, body: &[u8]) -> Result<Vec<u8>, EncodeError> {
    let len = HEADER_LEN + body.len();
    if len > MAX_MESSAGE_LEN {
        return Err(EncodeError::TooLong(len));
    }
    let mut out = Vec::with_capacity(len);
    out.extend_from_slice(&MARKER);
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.push(ty);
    out.extend_from_slice(body);
    Ok(out)
}

/// Encode a whole message, header included.
pub fn encode(msg: &Message, codec: &Codec) -> Result<Vec<u8>, EncodeError> {
    let params = codec.params();
    // Large enough for any attribute set we build; the 4096 limit is checked
    // in `frame` so an oversized UPDATE is an error, not a truncation.
    let mut buf = vec![0u8; 65536];
    match msg {
        Message::Keepalive => frame(TYPE_KEEPALIVE, &[]),
        Message::Open(o) => {
            let mut z = BgpOpenMessage::new();
            z.as_num = u32::from(o.my_as);
            z.hold_time = o.hold_time;
            z.router_id = o.router_id;
            z.caps = o.capabilities.iter().filter_map(|c| c.to_zetta()).collect();
            let n = z.encode_to(&params, &mut buf).map_err(codec_err)?;
            frame(TYPE_OPEN, buf.get(..n).unwrap_or_default())
        }
        Message::Notification(n) => {
            let mut body = vec![n.code, n.subcode];
            body.extend_from_slice(&n.data);
            frame(TYPE_NOTIFICATION, &body)
        }
        Message::RouteRefresh { afi, safi } => {
            let z = BgpRouterefreshMessage {
                afi: *afi,
                safi: *safi,
                subtype: 0,
            };
            let n = z.encode_to(&params, &mut buf).map_err(codec_err)?;
            frame(TYPE_ROUTE_REFRESH, buf.get(..n).unwrap_or_default())
        }
        Message::Update(u) => {
            if let Some((afi, safi)) = u.end_of_rib
                && u.is_end_of_rib()
            {
                return Ok(end_of_rib(afi, safi));
            }
            let z = update_to_zetta(u, codec)?;
            let n = z.encode_to(&params, &mut buf).map_err(codec_err)?;
            frame(TYPE_UPDATE, buf.get(..n).unwrap_or_default())
        }
    }
}

fn split_prefixes(v: &[IpNet]) -> (Vec<BgpAddrV4>, Vec<BgpAddrV6>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    for p in v {
        match p.trunc() {
            IpNet::V4(n) => v4.push(BgpAddrV4::new(n.network(), n.prefix_len())),
            IpNet::V6(n) => v6.push(BgpAddrV6::new(n.network(), n.prefix_len())),
        }
    }
    (v4, v6)
}

fn update_to_zetta(u: &Update, codec: &Codec) -> Result<BgpUpdateMessage, EncodeError> {
    let mut z = BgpUpdateMessage::new();
    let (w4, w6) = split_prefixes(&u.withdrawn);
    let (a4, a6) = split_prefixes(&u.announced);
    if !w4.is_empty() {
        z.withdraws = BgpAddrs::IPV4U(w4);
    }
    if !a4.is_empty() || !a6.is_empty() {
        let attrs = u.attributes.as_ref().ok_or(EncodeError::MissingAttributes)?;
        // RFC 4271 §5: attributes in ascending type-code order.
        z.attrs
            .push(BgpAttrItem::Origin(BgpOrigin::new(match attrs.origin {
                Origin::Igp => BgpAttrOrigin::Igp,
                Origin::Egp => BgpAttrOrigin::Egp,
                Origin::Incomplete => BgpAttrOrigin::Incomplete,
            })));
        // RFC 6793 §4.2.2: towards a 2-octet-only peer, ASNs that do not fit
        // become AS_TRANS and the real path travels in AS4_PATH. (zettabgp
        // would otherwise truncate them to 16 bits.)
        let needs_as4 =
            !codec.four_octet_as && attrs.as_path_flat().iter().any(|a| u16::try_from(*a).is_err());
        let map = |a: u32| {
            if codec.four_octet_as {
                a
            } else {
                u16::try_from(a).map_or(u32::from(AS_TRANS), u32::from)
            }
        };
        z.attrs.push(BgpAttrItem::ASPath(BgpASpath {
            value: attrs
                .as_path
                .iter()
                .map(|s| match s {
                    AsSegment::Sequence(v) => BgpASitem::Seq(BgpASseq {
                        value: v.iter().map(|a| map(*a).into()).collect(),
                    }),
                    AsSegment::Set(v) => BgpASitem::Set(BgpASset {
                        value: v.iter().map(|a| map(*a).into()).collect(),
                    }),
                })
                .collect(),
        }));
        if !a4.is_empty() {
            let nh = attrs.next_hop.ok_or(EncodeError::MissingIpv4NextHop)?;
            z.attrs
                .push(BgpAttrItem::NextHop(BgpNextHop::new(IpAddr::V4(nh))));
        }
        if let Some(med) = attrs.med {
            z.attrs.push(BgpAttrItem::MED(BgpMED::new(med)));
        }
        if let Some(lp) = attrs.local_pref {
            z.attrs.push(BgpAttrItem::LocalPref(BgpLocalpref::new(lp)));
        }
        if !attrs.communities.is_empty() {
            z.attrs
                .push(BgpAttrItem::CommunityList(BgpCommunityList::from_vec(
                    attrs.communities.iter().map(|c| BgpCommunity::new(c.0)).collect(),
                )));
        }
        if !a6.is_empty() {
            let nh = u.ipv6_next_hop.ok_or(EncodeError::MissingIpv6NextHop)?;
            z.attrs.push(BgpAttrItem::MPUpdates(BgpMPUpdates {
                nexthop: BgpAddr::V6(nh),
                addrs: BgpAddrs::IPV6U(a6),
            }));
        }
        if !w6.is_empty() {
            z.attrs.push(BgpAttrItem::MPWithdraws(BgpMPWithdraws {
                addrs: BgpAddrs::IPV6U(w6.clone()),
            }));
        }
        if needs_as4 {
            let mut value = Vec::new();
            for seg in &attrs.as_path {
                let (ty, v) = match seg {
                    AsSegment::Set(v) => (1u8, v),
                    AsSegment::Sequence(v) => (2u8, v),
                };
                for chunk in v.chunks(255) {
                    value.push(ty);
                    value.push(chunk.len() as u8);
                    for a in chunk {
                        value.extend_from_slice(&a.to_be_bytes());
                    }
                }
            }
            let mut as4 = BgpAttrUnknown::new(ATTR_AS4_PATH, 0xc0);
            as4.value = value;
            z.attrs.push(BgpAttrItem::Unknown(as4));
        }
        if !attrs.large_communities.is_empty() {
            z.attrs
                .push(BgpAttrItem::LargeCommunityList(BgpLargeCommunityList {
                    value: attrs
                        .large_communities
                        .iter()
                        .map(|l| BgpLargeCommunity {
                            ga: l.0,
                            ldp1: l.1,
                            ldp2: l.2,
                        })
                        .collect(),
                }));
        }
        if !a4.is_empty() {
            z.updates = BgpAddrs::IPV4U(a4);
        }
    } else if !w6.is_empty() {
        // RFC 4760 §4: an UPDATE carrying only MP_UNREACH_NLRI needs no
        // other attributes.
        z.attrs.push(BgpAttrItem::MPWithdraws(BgpMPWithdraws {
            addrs: BgpAddrs::IPV6U(w6),
        }));
    }
    Ok(z)
}

/// The End-of-RIB marker for a family (RFC 4724 §2).
pub fn end_of_rib(afi: u16, safi: u8) -> Vec<u8> {
    if (afi, safi) == (AFI_IPV4, SAFI_UNICAST) {
        // An UPDATE with nothing in it.
        let mut v = MARKER.to_vec();
        v.extend_from_slice(&[0, 23, TYPE_UPDATE, 0, 0, 0, 0]);
        v
    } else {
        // An UPDATE with an empty MP_UNREACH_NLRI for the family.
        let [a, b] = afi.to_be_bytes();
        let mut v = MARKER.to_vec();
        v.extend_from_slice(&[0, 29, TYPE_UPDATE, 0, 0, 0, 6, 0x80, 15, 3, a, b, safi]);
        v
    }
}

// ---------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------

/// Decode one whole message (as delimited by [`check_frame`]).
pub fn decode(frame_bytes: &[u8], codec: &Codec) -> Result<Message, DecodeError> {
    let len = match check_frame(frame_bytes)? {
        Frame::Complete(n) if n == frame_bytes.len() => n,
        // The caller must pass exactly one frame; anything else is a length
        // mismatch between the header and the bytes we hold.
        _ => {
            return Err(
                HeaderError::BadMessageLength(u16::try_from(frame_bytes.len()).unwrap_or(u16::MAX)).into(),
            );
        }
    };
    let ty = frame_bytes.get(18).copied().unwrap_or_default();
    let body = frame_bytes.get(HEADER_LEN..len).unwrap_or_default();
    match ty {
        TYPE_OPEN => decode_open(body).map(Message::Open),
        TYPE_UPDATE => decode_update(body, codec).map(Message::Update),
        TYPE_NOTIFICATION => match body {
            [code, subcode, data @ ..] => Ok(Message::Notification(Notification {
                code: *code,
                subcode: *subcode,
                data: data.to_vec(),
            })),
            _ => Err(DecodeError::Notification),
        },
        TYPE_KEEPALIVE => Ok(Message::Keepalive),
        TYPE_ROUTE_REFRESH => {
            if body.len() != 4 {
                return Err(DecodeError::RouteRefreshLength(len as u16));
            }
            let mut z = BgpRouterefreshMessage::new();
            z.decode_from(&codec.params(), body)
                .map_err(|_| DecodeError::RouteRefreshLength(len as u16))?;
            Ok(Message::RouteRefresh {
                afi: z.afi,
                safi: z.safi,
            })
        }
        other => Err(HeaderError::BadMessageType(other).into()),
    }
}

fn decode_open(body: &[u8]) -> Result<Open, DecodeError> {
    // Checked here rather than left to zettabgp so each maps to its own
    // NOTIFICATION subcode (§6.2).
    let version = body.first().copied().unwrap_or_default();
    if version != 4 {
        return Err(OpenError::UnsupportedVersion(version).into());
    }
    let opt_len = usize::from(body.get(9).copied().unwrap_or_default());
    let opts = body
        .get(10..10 + opt_len)
        .ok_or_else(|| OpenError::Malformed("optional parameters truncated".into()))?;
    if body.len() != 10 + opt_len {
        return Err(OpenError::Malformed("trailing bytes after optional parameters".into()).into());
    }
    let mut pos = 0;
    while let [ty, plen, ..] = opts.get(pos..).unwrap_or_default() {
        if *ty != 2 {
            return Err(OpenError::UnsupportedOptionalParameter(*ty).into());
        }
        pos += 2 + usize::from(*plen);
    }
    let mut z = BgpOpenMessage::new();
    z.decode_from(&Codec::default().params(), body)
        .map_err(|e| OpenError::Malformed(e.to_string()))?;
    Ok(Open {
        my_as: u16::try_from(z.as_num).unwrap_or(AS_TRANS),
        hold_time: z.hold_time,
        router_id: z.router_id,
        capabilities: z.caps.iter().map(Capability::from_zetta).collect(),
    })
}

/// AS4_PATH body: segments with 4-octet ASNs. `None` if malformed.
fn parse_as4_path(mut data: &[u8]) -> Option<Vec<AsSegment>> {
    let mut out = Vec::new();
    while let [ty, n, rest @ ..] = data {
        let len = usize::from(*n) * 4;
        if *n == 0 || rest.len() < len {
            return None;
        }
        let (body, tail) = rest.split_at(len);
        let v: Vec<u32> = body
            .chunks_exact(4)
            .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        out.push(match ty {
            1 => AsSegment::Set(v),
            2 => AsSegment::Sequence(v),
            _ => return None,
        });
        data = tail;
    }
    data.is_empty().then_some(out)
}

fn path_len(p: &[AsSegment]) -> usize {
    p.iter()
        .map(|s| match s {
            AsSegment::Sequence(v) => v.len(),
            AsSegment::Set(_) => 1,
        })
        .sum()
}

/// RFC 6793 §4.2.3: keep the leading ASes of AS_PATH that AS4_PATH does not
/// cover, then append AS4_PATH. A longer AS4_PATH is ignored.
fn merge_as4_path(path: &[AsSegment], as4: &[AsSegment]) -> Vec<AsSegment> {
    let (n, m) = (path_len(path), path_len(as4));
    if n < m {
        return path.to_vec();
    }
    let mut keep = n - m;
    let mut out: Vec<AsSegment> = Vec::new();
    for seg in path {
        if keep == 0 {
            break;
        }
        match seg {
            AsSegment::Sequence(v) => {
                let k = keep.min(v.len());
                out.push(AsSegment::Sequence(v.iter().take(k).copied().collect()));
                keep -= k;
            }
            AsSegment::Set(v) => {
                out.push(AsSegment::Set(v.clone()));
                keep -= 1;
            }
        }
    }
    for seg in as4 {
        // Join adjacent sequences so [65001] + [4200000001] is one segment.
        match (out.last_mut(), seg) {
            (Some(AsSegment::Sequence(a)), AsSegment::Sequence(b)) => a.extend(b),
            _ => out.push(seg.clone()),
        }
    }
    out
}

/// What RFC 7606 tells us to do with one bad attribute.
enum AttrFault {
    TreatAsWithdraw(String),
    Discard,
}

fn decode_nlri_v4(bytes: &[u8], what: &str) -> Result<Vec<IpNet>, DecodeError> {
    let (items, _) = decode_bgpitems_from::<BgpAddrV4>(bytes)
        .map_err(|e| UpdateError::InvalidNetworkField(format!("{what}: {e}")))?;
    items
        .into_iter()
        .map(|a| {
            Ipv4Net::new(a.addr, a.prefixlen)
                .map(|n| IpNet::V4(n.trunc()))
                .map_err(|e| UpdateError::InvalidNetworkField(format!("{what}: {e}")).into())
        })
        .collect()
}

fn v6_prefixes(addrs: &BgpAddrs) -> Result<Vec<IpNet>, DecodeError> {
    match addrs {
        BgpAddrs::IPV6U(v) => v
            .iter()
            .map(|a| {
                Ipv6Net::new(a.addr, a.prefixlen)
                    .map(|n| IpNet::V6(n.trunc()))
                    .map_err(|e| UpdateError::MalformedMp(e.to_string()).into())
            })
            .collect(),
        BgpAddrs::IPV4U(v) => v
            .iter()
            .map(|a| {
                Ipv4Net::new(a.addr, a.prefixlen)
                    .map(|n| IpNet::V4(n.trunc()))
                    .map_err(|e| UpdateError::MalformedMp(e.to_string()).into())
            })
            .collect(),
        BgpAddrs::None => Ok(Vec::new()),
        // Families we never negotiate: ignore them (RFC 4760 §7 lets us).
        _ => Ok(Vec::new()),
    }
}

fn decode_update(body: &[u8], codec: &Codec) -> Result<Update, DecodeError> {
    let params = codec.params();
    let mal = |s: &str| DecodeError::from(UpdateError::MalformedAttributeList(s.to_string()));
    let wlen = body
        .get(..2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| mal("no withdrawn routes length"))?;
    let withdrawn_bytes = body
        .get(2..2 + wlen)
        .ok_or_else(|| mal("withdrawn routes overrun the message"))?;
    let alen_at = 2 + wlen;
    let alen = body
        .get(alen_at..alen_at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .ok_or_else(|| mal("no path attribute length"))?;
    let attrs_bytes = body
        .get(alen_at + 2..alen_at + 2 + alen)
        .ok_or_else(|| mal("path attributes overrun the message"))?;
    let nlri_bytes = body.get(alen_at + 2 + alen..).unwrap_or_default();

    let mut update = Update {
        withdrawn: decode_nlri_v4(withdrawn_bytes, "withdrawn routes")?,
        announced: decode_nlri_v4(nlri_bytes, "NLRI")?,
        ..Update::default()
    };

    // Classic NLRI needs NEXT_HOP; MP_REACH prefixes (added below) do not.
    let has_nlri = !update.announced.is_empty();
    let mut pa = PathAttributes::default();
    let mut as4_path: Option<Vec<AsSegment>> = None;
    let mut seen = BTreeSet::new();
    let mut fault: Option<String> = None;
    let (mut has_origin, mut has_path, mut has_nh) = (false, false, false);
    let mut mp_unreach_family: Option<(u16, u8)> = None;
    let mut pos = 0;
    while pos < attrs_bytes.len() {
        let (flags, ty) = match attrs_bytes.get(pos..pos + 2) {
            Some([f, t]) => (*f, *t),
            _ => return Err(mal("truncated attribute header")),
        };
        let ext = flags & 0x10 != 0;
        let hlen = if ext { 4 } else { 3 };
        let len = match attrs_bytes.get(pos + 2..pos + hlen) {
            Some([l]) => usize::from(*l),
            Some([h, l]) => usize::from(u16::from_be_bytes([*h, *l])),
            _ => return Err(mal("truncated attribute length")),
        };
        // RFC 7606 §4: an attribute overrunning the attribute field leaves
        // the message unparseable: session reset.
        let data = attrs_bytes
            .get(pos + hlen..pos + hlen + len)
            .ok_or_else(|| mal("attribute length overruns path attributes"))?;
        pos += hlen + len;

        // RFC 7606 §3.g: repeated MP attributes reset the session, other
        // repeats are discarded (first one wins).
        if !seen.insert(ty) {
            if ty == 14 || ty == 15 {
                return Err(UpdateError::MalformedMp(format!("attribute {ty} repeated")).into());
            }
            continue;
        }
        if ty == 15
            && let Some([a1, a2, sa]) = data.get(..3)
        {
            mp_unreach_family = Some((u16::from_be_bytes([*a1, *a2]), *sa));
        }
        if ty == ATTR_AS4_PATH {
            // RFC 6793 §6: only meaningful from a 2-octet speaker; a
            // malformed one is discarded (RFC 7606 §7.2 via RFC 6793 §6).
            if !codec.four_octet_as {
                as4_path = parse_as4_path(data);
            }
            continue;
        }
        match decode_attribute(&params, codec, flags, ty, data, &mut pa, &mut update)? {
            Ok(()) => match ty {
                1 => has_origin = true,
                2 => has_path = true,
                3 => has_nh = true,
                _ => {}
            },
            Err(AttrFault::Discard) => {}
            Err(AttrFault::TreatAsWithdraw(why)) => {
                fault.get_or_insert(why);
            }
        }
    }

    let has_mp_reach = seen.contains(&14);
    if (has_nlri || has_mp_reach) && fault.is_none() {
        // RFC 7606 §3.d: a missing well-known mandatory attribute is
        // treat-as-withdraw, not a reset. NEXT_HOP is only mandatory for
        // classic NLRI (RFC 4760 §3).
        if !has_origin {
            fault = Some("missing ORIGIN".into());
        } else if !has_path {
            fault = Some("missing AS_PATH".into());
        } else if has_nlri && !has_nh {
            fault = Some("missing NEXT_HOP".into());
        }
    }
    if let Some(as4) = as4_path {
        pa.as_path = merge_as4_path(&pa.as_path, &as4);
    }
    if !codec.ibgp {
        // LOCAL_PREF from an external peer is ignored (RFC 4271 §5.1.5).
        pa.local_pref = None;
    }
    if let Some(why) = fault {
        let moved = std::mem::take(&mut update.announced);
        update.withdrawn.extend(moved);
        update.attributes = None;
        update.ipv6_next_hop = None;
        update.treat_as_withdraw = Some(why);
    } else if !update.announced.is_empty() {
        update.attributes = Some(pa);
    }
    if update.withdrawn.is_empty() && update.announced.is_empty() && update.treat_as_withdraw.is_none() {
        // IPv4: an UPDATE with nothing at all; other families: only an
        // empty MP_UNREACH_NLRI for the family.
        if attrs_bytes.is_empty() {
            update.end_of_rib = Some((1, 1));
        } else if seen.len() == 1 && seen.contains(&15) {
            update.end_of_rib = mp_unreach_family;
        }
    }
    Ok(update)
}

/// Decode one attribute into `pa`/`update`. The outer `Result` is a session
/// reset, the inner one an RFC 7606 attribute-level outcome.
fn decode_attribute(
    params: &BgpSessionParams,
    codec: &Codec,
    flags: u8,
    ty: u8,
    data: &[u8],
    pa: &mut PathAttributes,
    update: &mut Update,
) -> Result<Result<(), AttrFault>, DecodeError> {
    let optional = flags & 0x80 != 0;
    let transitive = flags & 0x40 != 0;
    let taw = |s: String| Ok(Err(AttrFault::TreatAsWithdraw(s)));
    // RFC 7606 §3.c: wrong flags for a known attribute are handled like a
    // malformed value of that attribute.
    let well_known = matches!(ty, 1 | 2 | 3 | 5 | 6);
    if matches!(ty, 1..=8 | 14 | 15 | 32) {
        let expect_optional = !well_known;
        if optional != expect_optional || (well_known && !transitive) {
            return match ty {
                6 | 7 => Ok(Err(AttrFault::Discard)),
                14 | 15 => Err(UpdateError::MalformedMp(format!("bad flags on {ty}")).into()),
                _ => taw(format!("bad flags 0x{flags:02x} on attribute {ty}")),
            };
        }
    }
    let zetta = |ty: u8| BgpAttrItem::decode_from(params, ty, flags, data.len(), data);
    match ty {
        1 => match data {
            [0] => pa.origin = Origin::Igp,
            [1] => pa.origin = Origin::Egp,
            [2] => pa.origin = Origin::Incomplete,
            _ => return taw("malformed ORIGIN".into()),
        },
        2 => match zetta(2) {
            Ok(BgpAttrItem::ASPath(p)) => {
                pa.as_path = p
                    .value
                    .iter()
                    .map(|s| match s {
                        BgpASitem::Seq(v) => AsSegment::Sequence(v.value.iter().map(|a| a.value).collect()),
                        BgpASitem::Set(v) => AsSegment::Set(v.value.iter().map(|a| a.value).collect()),
                    })
                    .collect();
            }
            _ => return taw("malformed AS_PATH".into()),
        },
        3 => match data {
            [a, b, c, d] => pa.next_hop = Some(Ipv4Addr::new(*a, *b, *c, *d)),
            _ => return taw("malformed NEXT_HOP".into()),
        },
        4 => match data {
            [a, b, c, d] => pa.med = Some(u32::from_be_bytes([*a, *b, *c, *d])),
            _ => return taw("malformed MULTI_EXIT_DISC".into()),
        },
        5 => match data {
            [a, b, c, d] => pa.local_pref = Some(u32::from_be_bytes([*a, *b, *c, *d])),
            // §7.5: from an external peer the attribute is discarded anyway.
            _ if !codec.ibgp => return Ok(Err(AttrFault::Discard)),
            _ => return taw("malformed LOCAL_PREF".into()),
        },
        6 | 7 => {
            // ATOMIC_AGGREGATE / AGGREGATOR: informational; a bad length is
            // attribute discard (§7.6, §7.7). We do not keep them.
            let ok = match ty {
                6 => data.is_empty(),
                _ => data.len() == if codec.four_octet_as { 8 } else { 6 },
            };
            if !ok {
                return Ok(Err(AttrFault::Discard));
            }
        }
        8 => match zetta(8) {
            Ok(BgpAttrItem::CommunityList(c)) => {
                pa.communities = c.value.iter().map(|c| Community(c.value)).collect();
            }
            _ => return taw("malformed COMMUNITIES".into()),
        },
        14 => match zetta(14) {
            Ok(BgpAttrItem::MPUpdates(mp)) => {
                let prefixes = v6_prefixes(&mp.addrs)?;
                if let BgpAddr::V6(nh) = mp.nexthop {
                    update.ipv6_next_hop = Some(nh);
                }
                update.announced.extend(prefixes);
            }
            // §7.11: an MP_REACH we cannot parse (unknown AFI/SAFI included)
            // tells us nothing we could withdraw: reset.
            Ok(_) => return Err(UpdateError::MalformedMp("unexpected".into()).into()),
            Err(e) => {
                let afi = data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                let safi = data.get(2).copied();
                if !matches!((afi, safi), (Some(1 | 2), Some(1))) {
                    // A family we never negotiated: ignore (RFC 4760 §7).
                    return Ok(Err(AttrFault::Discard));
                }
                return Err(UpdateError::MalformedMp(e.to_string()).into());
            }
        },
        15 => match zetta(15) {
            Ok(BgpAttrItem::MPWithdraws(mp)) => {
                let prefixes = v6_prefixes(&mp.addrs)?;
                update.withdrawn.extend(prefixes);
            }
            Ok(_) => return Err(UpdateError::MalformedMp("unexpected".into()).into()),
            Err(e) => {
                let afi = data.get(..2).map(|b| u16::from_be_bytes([b[0], b[1]]));
                let safi = data.get(2).copied();
                if !matches!((afi, safi), (Some(1 | 2), Some(1))) {
                    return Ok(Err(AttrFault::Discard));
                }
                return Err(UpdateError::MalformedMp(e.to_string()).into());
            }
        },
        32 => match zetta(32) {
            Ok(BgpAttrItem::LargeCommunityList(l)) => {
                pa.large_communities = l
                    .value
                    .iter()
                    .map(|c| LargeCommunity(c.ga, c.ldp1, c.ldp2))
                    .collect();
            }
            _ => return taw("malformed LARGE_COMMUNITY".into()),
        },
        _ => {
            // RFC 4271 §6.3: an unrecognized well-known attribute is fatal;
            // unknown optional ones are ignored (we do not re-advertise).
            if !optional {
                return Err(UpdateError::UnrecognizedWellKnown(ty).into());
            }
        }
    }
    Ok(Ok(()))
}

/// AS loop detection (RFC 4271 §9.1.2): a route whose AS_PATH already
/// contains our AS came back to us and is ignored, which for a received
/// UPDATE means it replaces (withdraws) what the peer sent before.
pub fn check_as_loop(update: &mut Update, local_as: u32) {
    let looped = update
        .attributes
        .as_ref()
        .is_some_and(|a| a.as_path_flat().contains(&local_as));
    if looped {
        let moved = std::mem::take(&mut update.announced);
        update.withdrawn.extend(moved);
        update.attributes = None;
        update.ipv6_next_hop = None;
        update.treat_as_withdraw = Some(format!("AS_PATH contains our AS {local_as}"));
    }
}

/// eBGP sanity (RFC 4271 §6.3, RFC 7606 §7.2 treat-as-withdraw): the first
/// AS of a route from an external peer must be that peer's AS.
pub fn check_first_as(update: &mut Update, peer_as: u32) {
    let bad = update
        .attributes
        .as_ref()
        .is_some_and(|a| a.first_as() != Some(peer_as));
    if bad {
        let moved = std::mem::take(&mut update.announced);
        update.withdrawn.extend(moved);
        update.attributes = None;
        update.ipv6_next_hop = None;
        update.treat_as_withdraw = Some(format!("AS_PATH does not start with peer AS {peer_as}"));
    }
}

#[cfg(test)]
mod tests;
