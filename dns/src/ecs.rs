//! EDNS Client Subnet (RFC 7871) on the authoritative side.
//!
//! hickory-proto decodes the option leniently (extra address octets and
//! non-zero bits past SOURCE PREFIX-LENGTH pass), so the option is validated
//! again from the raw query bytes here; §7.1.1 asks for FORMERR on those.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// Longest IPv4 source prefix we use: a /24 is enough to locate a client and
/// keeps us from holding per-host data (RFC 7871 §11.1).
pub const MAX_SOURCE_V4: u8 = 24;
/// Same for IPv6.
pub const MAX_SOURCE_V6: u8 = 56;

const OPT: u16 = 41;
const ECS_CODE: u16 = 8;

/// An ECS option exactly as the query carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryEcs {
    pub addr: IpAddr,
    pub source: u8,
}

impl QueryEcs {
    /// The subnet steering may use: capped at /24 or /56 and truncated;
    /// `None` for SOURCE PREFIX-LENGTH 0, the resolver's opt-out (§7.1.2).
    pub fn effective(&self) -> Option<IpNet> {
        effective(self.addr, self.source)
    }
}

/// Caps and truncates a client subnet as the server would.
pub fn effective(addr: IpAddr, source: u8) -> Option<IpNet> {
    if source == 0 {
        return None;
    }
    let cap = if addr.is_ipv4() {
        MAX_SOURCE_V4
    } else {
        MAX_SOURCE_V6
    };
    IpNet::new(addr, source.min(cap)).ok().map(|n| n.trunc())
}

/// Why an ECS option is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    #[error("message too short or inconsistent")]
    Truncated,
    #[error("ECS option shorter than 4 octets")]
    Short,
    #[error("unknown ECS family {0}")]
    Family(u16),
    #[error("SOURCE PREFIX-LENGTH {0} too long for the family")]
    SourceTooLong(u8),
    #[error("SCOPE PREFIX-LENGTH {0} must be 0 in a query")]
    ScopeInQuery(u8),
    #[error("ADDRESS has {got} octets, SOURCE PREFIX-LENGTH needs {want}")]
    AddressLength { got: usize, want: usize },
    #[error("ADDRESS has bits set past SOURCE PREFIX-LENGTH")]
    HostBits,
    #[error("more than one ECS option")]
    Duplicate,
}

/// Finds and validates the ECS option of a raw DNS query. Total: any input
/// gives `Ok` or `Err`, never a panic.
pub fn from_query(msg: &[u8]) -> Result<Option<QueryEcs>, EcsError> {
    let mut r = Reader { b: msg, i: 0 };
    r.skip(4)?;
    let qd = r.u16()?;
    let an = r.u16()?;
    let ns = r.u16()?;
    let ar = r.u16()?;
    for _ in 0..qd {
        r.name()?;
        r.skip(4)?;
    }
    for _ in 0..(u32::from(an) + u32::from(ns)) {
        r.name()?;
        r.skip(8)?;
        let len = r.u16()?;
        r.skip(usize::from(len))?;
    }
    let mut found = None;
    for _ in 0..ar {
        r.name()?;
        let rtype = r.u16()?;
        r.skip(6)?;
        let len = usize::from(r.u16()?);
        let rdata = r.take(len)?;
        if rtype != OPT {
            continue;
        }
        let mut o = Reader { b: rdata, i: 0 };
        while o.i < rdata.len() {
            let code = o.u16()?;
            let olen = usize::from(o.u16()?);
            let data = o.take(olen)?;
            if code == ECS_CODE {
                if found.is_some() {
                    return Err(EcsError::Duplicate);
                }
                found = Some(validate(data)?);
            }
        }
    }
    Ok(found)
}

/// Validates one ECS option's data (after its code and length).
pub(crate) fn validate(data: &[u8]) -> Result<QueryEcs, EcsError> {
    let [f0, f1, source, scope, addr @ ..] = data else {
        return Err(EcsError::Short);
    };
    let family = u16::from_be_bytes([*f0, *f1]);
    let max = match family {
        1 => 32,
        2 => 128,
        other => return Err(EcsError::Family(other)),
    };
    if *source > max {
        return Err(EcsError::SourceTooLong(*source));
    }
    if *scope != 0 {
        return Err(EcsError::ScopeInQuery(*scope));
    }
    let want = usize::from(source.div_ceil(8));
    if addr.len() != want {
        return Err(EcsError::AddressLength {
            got: addr.len(),
            want,
        });
    }
    if *source % 8 != 0 {
        let mask = 0xffu8 >> (source % 8);
        if addr.last().is_some_and(|b| b & mask != 0) {
            return Err(EcsError::HostBits);
        }
    }
    let ip = if family == 1 {
        let mut o = [0u8; 4];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::V4(Ipv4Addr::from(o))
    } else {
        let mut o = [0u8; 16];
        o[..addr.len()].copy_from_slice(addr);
        IpAddr::V6(Ipv6Addr::from(o))
    };
    Ok(QueryEcs {
        addr: ip,
        source: *source,
    })
}

struct Reader<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], EcsError> {
        let end = self.i.checked_add(n).ok_or(EcsError::Truncated)?;
        let s = self.b.get(self.i..end).ok_or(EcsError::Truncated)?;
        self.i = end;
        Ok(s)
    }

    fn skip(&mut self, n: usize) -> Result<(), EcsError> {
        self.take(n).map(|_| ())
    }

    fn u16(&mut self) -> Result<u16, EcsError> {
        let s = self.take(2)?;
        Ok(u16::from_be_bytes([s[0], s[1]]))
    }

    /// Skips a (possibly compressed) name; pointers end a name in place.
    fn name(&mut self) -> Result<(), EcsError> {
        loop {
            let len = self.take(1)?[0];
            match len {
                0 => return Ok(()),
                l if l & 0xc0 == 0xc0 => return self.skip(1),
                l if l & 0xc0 == 0 => self.skip(usize::from(l))?,
                _ => return Err(EcsError::Truncated),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `a.` IN A with one OPT record holding `opt`.
    fn query(opt: &[u8]) -> Vec<u8> {
        let mut m = vec![0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1];
        m.extend_from_slice(&[1, b'a', 0, 0, 1, 0, 1]);
        m.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]);
        m.extend_from_slice(&(opt.len() as u16).to_be_bytes());
        m.extend_from_slice(opt);
        m
    }

    fn ecs(data: &[u8]) -> Vec<u8> {
        let mut o = vec![0, 8];
        o.extend_from_slice(&(data.len() as u16).to_be_bytes());
        o.extend_from_slice(data);
        o
    }

    #[test]
    fn valid_options_parse_and_cap() {
        let q = query(&ecs(&[0, 1, 24, 0, 198, 18, 1]));
        let e = from_query(&q).unwrap().unwrap();
        assert_eq!(e.addr, "198.18.1.0".parse::<IpAddr>().unwrap());
        assert_eq!(e.effective().unwrap().to_string(), "198.18.1.0/24");
        let q = query(&ecs(&[0, 1, 32, 0, 198, 18, 1, 77]));
        let e = from_query(&q).unwrap().unwrap();
        assert_eq!(e.source, 32);
        assert_eq!(e.effective().unwrap().to_string(), "198.18.1.0/24");
        let q = query(&ecs(&[0, 2, 64, 0, 0x20, 1, 0x0d, 0xb8, 0, 1, 0xff, 0xff]));
        let e = from_query(&q).unwrap().unwrap();
        assert_eq!(e.effective().unwrap().to_string(), "2001:db8:1:ff00::/56");
        let q = query(&ecs(&[0, 1, 0, 0]));
        assert_eq!(from_query(&q).unwrap().unwrap().effective(), None);
        assert_eq!(from_query(&query(&[])).unwrap(), None);
    }

    #[test]
    fn malformed_options_are_errors() {
        let cases: &[(&[u8], EcsError)] = &[
            (&[0, 1, 24], EcsError::Short),
            (&[0, 3, 24, 0, 1, 2, 3], EcsError::Family(3)),
            (&[0, 1, 33, 0, 1, 2, 3, 4, 5], EcsError::SourceTooLong(33)),
            (&[0, 1, 24, 8, 198, 18, 1], EcsError::ScopeInQuery(8)),
            (
                &[0, 1, 24, 0, 198, 18, 1, 0],
                EcsError::AddressLength { got: 4, want: 3 },
            ),
            (
                &[0, 1, 24, 0, 198, 18],
                EcsError::AddressLength { got: 2, want: 3 },
            ),
            (&[0, 1, 23, 0, 198, 18, 1], EcsError::HostBits),
        ];
        for (data, want) in cases {
            assert_eq!(from_query(&query(&ecs(data))).unwrap_err(), *want, "{data:?}");
        }
        let mut two = ecs(&[0, 1, 8, 0, 198]);
        two.extend(ecs(&[0, 1, 8, 0, 198]));
        assert_eq!(from_query(&query(&two)).unwrap_err(), EcsError::Duplicate);
    }

    #[test]
    fn truncated_messages_do_not_panic() {
        let q = query(&ecs(&[0, 1, 24, 0, 198, 18, 1]));
        for n in 0..q.len() {
            let _ = from_query(&q[..n]);
        }
        assert!(from_query(&[0xff; 40]).is_err());
    }
}
