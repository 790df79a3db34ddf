//! Fixed, documented hash functions shared by every edge node.
//!
//! Anycast sends a flow to whichever node is nearest, and a route change can
//! move it to another node mid-connection. Each node must then pick the same
//! backend, so all hashing here is pinned: SipHash-1-3 with constant keys,
//! fed an explicit byte encoding (never `std::hash::Hash`, whose integer
//! encoding follows native endianness, and never `RandomState`).
//!
//! Changing any key or encoding below changes every Maglev table in the fleet.
//! The golden fingerprint test in `maglev.rs` fails if that happens by
//! accident.

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

/// SipHash key `(k0, k1)`. The words spell ASCII tags so each use is
/// recognisable in a hex dump; their only job is to be different per use.
pub type SipKey = (u64, u64);

/// Key for a backend's Maglev `offset` ("edge-mgl" / "offset\0\0").
pub const MAGLEV_OFFSET_KEY: SipKey = (0x6564_6765_2d6d_676c, 0x6f66_6673_6574_0000);
/// Key for a backend's Maglev `skip` ("edge-mgl" / "skip\0\0\0\0").
pub const MAGLEV_SKIP_KEY: SipKey = (0x6564_6765_2d6d_676c, 0x736b_6970_0000_0000);
/// Key for the 5-tuple flow hash ("edge-flw" / "5tuple\0\0").
pub const FLOW_KEY: SipKey = (0x6564_6765_2d66_6c77, 0x3574_7570_6c65_0000);
/// Key for the source-IP hash ("edge-src" / "ip\0\0\0\0\0\0").
pub const SOURCE_KEY: SipKey = (0x6564_6765_2d73_7263, 0x6970_0000_0000_0000);

/// SipHash-1-3 (one compression round, three finalisation rounds), the
/// variant Rust's own `HashMap` uses: fast on the short inputs we hash, and
/// well mixed, so consecutive ports and addresses spread over the table.
///
/// The keys here are constants in public source, so this gives no HashDoS
/// resistance: a client who reads this file can choose source ports that
/// all map to one backend. That costs us nothing a client could not do by
/// opening many connections anyway; lookups stay O(1) whatever it picks.
pub fn siphash13(key: SipKey, data: &[u8]) -> u64 {
    siphash::<1, 3>(key, data)
}

/// SipHash-2-4, the reference parameters. Only used to check
/// [`siphash`] against the published test vectors.
#[cfg(test)]
fn siphash24(key: SipKey, data: &[u8]) -> u64 {
    siphash::<2, 4>(key, data)
}

/// SipHash-c-d over `data` as one message (Aumasson & Bernstein, 2012).
fn siphash<const C: usize, const D: usize>(key: SipKey, data: &[u8]) -> u64 {
    let (k0, k1) = key;
    let mut v = [
        k0 ^ 0x736f_6d65_7073_6575,
        k1 ^ 0x646f_7261_6e64_6f6d,
        k0 ^ 0x6c79_6765_6e65_7261,
        k1 ^ 0x7465_6462_7974_6573,
    ];
    let mut chunks = data.chunks_exact(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let m = u64::from_le_bytes(word);
        v[3] ^= m;
        for _ in 0..C {
            sip_round(&mut v);
        }
        v[0] ^= m;
    }
    // Last block: the remaining bytes, with the message length (mod 256) in
    // the top byte.
    let rest = chunks.remainder();
    let mut last = [0u8; 8];
    last[..rest.len()].copy_from_slice(rest);
    last[7] = data.len() as u8;
    let b = u64::from_le_bytes(last);
    v[3] ^= b;
    for _ in 0..C {
        sip_round(&mut v);
    }
    v[0] ^= b;
    v[2] ^= 0xff;
    for _ in 0..D {
        sip_round(&mut v);
    }
    v[0] ^ v[1] ^ v[2] ^ v[3]
}

fn sip_round(v: &mut [u64; 4]) {
    v[0] = v[0].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(13);
    v[1] ^= v[0];
    v[0] = v[0].rotate_left(32);
    v[2] = v[2].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(16);
    v[3] ^= v[2];
    v[0] = v[0].wrapping_add(v[3]);
    v[3] = v[3].rotate_left(21);
    v[3] ^= v[0];
    v[2] = v[2].wrapping_add(v[1]);
    v[1] = v[1].rotate_left(17);
    v[1] ^= v[2];
    v[2] = v[2].rotate_left(32);
}

/// Transport protocol of a service or flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    Tcp,
    Udp,
}

impl Protocol {
    /// IANA protocol number, which is what goes into the flow hash.
    pub const fn number(self) -> u8 {
        match self {
            Protocol::Tcp => 6,
            Protocol::Udp => 17,
        }
    }
}

impl std::fmt::Display for Protocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        })
    }
}

/// A flow's 5-tuple as seen by the node that receives it: `src` is the
/// client, `dst` the VIP and service port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub protocol: Protocol,
}

/// Writes an address as family tag (4 or 6) followed by its octets.
///
/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are folded to IPv4 first: a
/// dual-stack socket on one node reports the mapped form while a v4 socket
/// on another reports plain v4, and both must hash the same flow alike.
fn push_ip(buf: &mut Vec<u8>, ip: IpAddr) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            buf.push(4);
            buf.extend_from_slice(&v4.octets());
        }
        IpAddr::V6(v6) => {
            buf.push(6);
            buf.extend_from_slice(&v6.octets());
        }
    }
}

/// The fleet-wide flow hash.
///
/// Encoding, in order: src address (tag + octets), src port (big-endian u16),
/// dst address (tag + octets), dst port (big-endian u16), IANA protocol
/// number (one byte). Hash: [`siphash13`] with [`FLOW_KEY`].
pub fn flow_hash(flow: &FlowKey) -> u64 {
    let mut buf = Vec::with_capacity(39);
    push_ip(&mut buf, flow.src.ip());
    buf.extend_from_slice(&flow.src.port().to_be_bytes());
    push_ip(&mut buf, flow.dst.ip());
    buf.extend_from_slice(&flow.dst.port().to_be_bytes());
    buf.push(flow.protocol.number());
    siphash13(FLOW_KEY, &buf)
}

/// Hash of the client address alone (tag + octets, [`SOURCE_KEY`]), for
/// source-IP affinity: every port of one client lands on one backend.
pub fn source_hash(ip: IpAddr) -> u64 {
    let mut buf = Vec::with_capacity(17);
    push_ip(&mut buf, ip);
    siphash13(SOURCE_KEY, &buf)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const REF_KEY: SipKey = (0x0706_0504_0302_0100, 0x0f0e_0d0c_0b0a_0908);

    /// Vectors from the SipHash paper's reference implementation
    /// (key 00..0f, message 00..len-1).
    #[test]
    fn siphash24_matches_reference_vectors() {
        let msg: Vec<u8> = (0u8..64).collect();
        assert_eq!(siphash24(REF_KEY, &msg[..0]), 0x726f_db47_dd0e_0e31);
        assert_eq!(siphash24(REF_KEY, &msg[..1]), 0x74f8_39c5_93dc_67fd);
        assert_eq!(siphash24(REF_KEY, &msg[..8]), 0x93f5_f579_9a93_2462);
        assert_eq!(siphash24(REF_KEY, &msg[..15]), 0xa129_ca61_49be_45e5);
    }

    /// Cross-check every length 0..64 against std's (deprecated but stable)
    /// SipHash-2-4, so the shared round/padding code is right for all tails.
    #[test]
    #[allow(deprecated)]
    fn siphash24_matches_std_for_all_tail_lengths() {
        use std::hash::{Hasher, SipHasher};
        let msg: Vec<u8> = (0u8..64).map(|b| b.wrapping_mul(37)).collect();
        for len in 0..msg.len() {
            let mut std_hasher = SipHasher::new_with_keys(REF_KEY.0, REF_KEY.1);
            std_hasher.write(&msg[..len]);
            assert_eq!(siphash24(REF_KEY, &msg[..len]), std_hasher.finish(), "len {len}");
        }
    }

    /// Pins SipHash-1-3 itself (no public vectors exist for it): a change to
    /// the round counts or padding would move every table in the fleet.
    /// Cross-check SipHash-1-3 for every tail length against an
    /// independent implementation (the `siphasher` crate).
    #[test]
    fn siphash13_matches_independent_implementation() {
        use siphasher::sip::SipHasher13;
        use std::hash::Hasher;
        let msg: Vec<u8> = (0u8..64).map(|b| b.wrapping_mul(91)).collect();
        for len in 0..msg.len() {
            let mut other = SipHasher13::new_with_keys(REF_KEY.0, REF_KEY.1);
            other.write(&msg[..len]);
            assert_eq!(siphash13(REF_KEY, &msg[..len]), other.finish(), "len {len}");
        }
    }

    #[test]
    fn siphash13_is_pinned() {
        let msg: Vec<u8> = (0u8..15).collect();
        assert_eq!(siphash13(REF_KEY, &msg), GOLDEN_SIPHASH13_15);
        assert_ne!(siphash13(REF_KEY, &msg), siphash24(REF_KEY, &msg));
    }
    const GOLDEN_SIPHASH13_15: u64 = 15213397504630561110;

    fn flow(src: &str, dst: &str) -> FlowKey {
        FlowKey {
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            protocol: Protocol::Tcp,
        }
    }

    #[test]
    fn flow_hash_covers_every_field() {
        let base = flow("127.0.0.1:40000", "127.0.0.1:80");
        let h = flow_hash(&base);
        let variants = [
            flow("127.0.0.2:40000", "127.0.0.1:80"),
            flow("127.0.0.1:40001", "127.0.0.1:80"),
            flow("127.0.0.1:40000", "127.0.0.3:80"),
            flow("127.0.0.1:40000", "127.0.0.1:81"),
            FlowKey {
                protocol: Protocol::Udp,
                ..base
            },
            // Swapping src and dst is a different flow.
            flow("127.0.0.1:80", "127.0.0.1:40000"),
        ];
        for v in variants {
            assert_ne!(flow_hash(&v), h, "{v:?}");
        }
        assert_eq!(flow_hash(&base), h);
    }

    #[test]
    fn mapped_v6_hashes_like_v4() {
        let mapped = Ipv4Addr::LOCALHOST.to_ipv6_mapped();
        let v4 = flow("127.0.0.1:40000", "127.0.0.1:80");
        let v6 = FlowKey {
            src: SocketAddr::new(IpAddr::V6(mapped), 40000),
            dst: SocketAddr::new(IpAddr::V6(mapped), 80),
            protocol: Protocol::Tcp,
        };
        assert_eq!(flow_hash(&v4), flow_hash(&v6));
        assert_eq!(
            source_hash(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            source_hash(IpAddr::V6(mapped))
        );
        // ::1 is not a mapped address and must stay distinct.
        assert_ne!(
            source_hash(IpAddr::V6(Ipv6Addr::LOCALHOST)),
            source_hash(IpAddr::V4(Ipv4Addr::LOCALHOST))
        );
    }

    #[test]
    fn flow_hash_is_pinned() {
        assert_eq!(flow_hash(&flow("127.0.0.1:40000", "127.0.0.1:80")), GOLDEN_FLOW);
        assert_eq!(source_hash("::1".parse().unwrap()), GOLDEN_SOURCE);
    }
    const GOLDEN_FLOW: u64 = 16106150954624030651;
    const GOLDEN_SOURCE: u64 = 10762385091494254491;
}
