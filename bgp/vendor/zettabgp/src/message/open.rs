// Copyright 2021 Vladimir Melnikov.
//
// Licensed under the Apache License, Version 2.0 <LICENSE-APACHE or
// https://www.apache.org/licenses/LICENSE-2.0> or the MIT license
// <LICENSE-MIT or https://opensource.org/licenses/MIT>, at your
// option. This file may not be copied, modified, or distributed
// except according to those terms.

use crate::{getn_u16, setn_u16, slice, slice_mut, BgpCapability, BgpError, BgpMessage, BgpSessionParams};
use std::vec::Vec;
/// BGP open message
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BgpOpenMessage {
    /// Autonomous system number
    pub as_num: u32,
    /// Hold time in seconds
    pub hold_time: u16,
    /// router Id
    pub router_id: std::net::Ipv4Addr,
    /// Capability set
    pub caps: Vec<BgpCapability>,
}

impl BgpMessage for BgpOpenMessage {
    fn decode_from(&mut self, _peer: &BgpSessionParams, buf: &[u8]) -> Result<(), BgpError> {
        // PATCH(edge): parse the fixed part with safe code (it used an
        // `unsafe` cast to a packed struct) and honour the Optional
        // Parameters Length octet instead of reading to the end of `buf`.
        if buf.len() < 10 {
            return Err(BgpError::InsufficientBufferSize(file!(), line!()));
        }
        if buf[0] != 4 {
            return Err(BgpError::static_str("Invalid BGP version <> 4"));
        }
        self.as_num = getn_u16(&buf[1..3]) as u32;
        self.hold_time = getn_u16(&buf[3..5]);
        self.router_id = std::net::Ipv4Addr::new(buf[5], buf[6], buf[7], buf[8]);
        let optparams_len = buf[9] as usize;
        let optparams = slice(buf, 10, 10 + optparams_len)?;
        self.caps.clear();
        let mut pos: usize = 0;
        while pos < optparams.len() {
            if optparams[pos] != 2 {
                return Err(BgpError::from_string(format!(
                    "Invalid optional parameter in BGP open message {:?}!",
                    optparams[pos]
                )));
            }
            let optlen = *optparams
                .get(pos + 1)
                .ok_or(BgpError::InsufficientBufferSize(file!(), line!()))?
                as usize;
            pos += 2;
            let param = slice(optparams, pos, pos + optlen)?;
            pos += optlen;
            let mut cpos: usize = 0;
            while cpos < param.len() {
                let maybe_cap = BgpCapability::from_buffer(&param[cpos..])?;
                cpos += maybe_cap.1;
                match maybe_cap.0 {
                    Ok(cap) => self.caps.push(cap),
                    Err((captype, data)) => log::trace!(
                        "ignoring unknown capability code {} data {:x?}",
                        captype,
                        data
                    ),
                }
            }
        }
        Ok(())
    }
    fn encode_to(&self, _peer: &BgpSessionParams, buf: &mut [u8]) -> Result<usize, BgpError> {
        if buf.len() < 10 {
            return Err(BgpError::InsufficientBufferSize(file!(), line!()));
        }
        let optlen = self
            .caps
            .iter()
            .fold(0usize, |sum, i| sum + i.bytes_len() + 2);
        // PATCH(edge): the Optional Parameters Length is one octet; refuse
        // instead of silently truncating it (RFC 9072 extended parameters
        // are not supported).
        if optlen > 255 {
            return Err(BgpError::TooManyData(file!(), line!()));
        }
        buf[0] = 4;
        let as2 = if self.as_num < 65536 {
            self.as_num as u16
        } else {
            23456
        };
        setn_u16(as2, &mut buf[1..3]);
        setn_u16(self.hold_time, &mut buf[3..5]);
        buf[5..9].copy_from_slice(&self.router_id.octets());
        buf[9] = optlen as u8;
        let mut pos: usize = 10;
        for cp in self.caps.iter() {
            let caplen = cp.bytes_len();
            if caplen > 255 {
                return Err(BgpError::TooManyData(file!(), line!()));
            }
            let param = slice_mut(buf, pos, pos + 2 + caplen)?;
            param[0] = 2; //capability
            param[1] = caplen as u8;
            cp.fill_buffer(&mut param[2..])?;
            pos += 2 + caplen;
        }
        Ok(pos)
    }
}
impl BgpOpenMessage {
    pub fn new() -> BgpOpenMessage {
        BgpOpenMessage {
            as_num: 0,
            hold_time: 180,
            router_id: std::net::Ipv4Addr::new(127, 0, 0, 1),
            caps: Vec::new(),
        }
    }
}
impl Default for BgpOpenMessage {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::BgpTransportMode;

    #[test]
    fn test_good_open() {
        // Setup
        let mut buf = vec![0_u8; 4096];
        let caps = vec![
            BgpCapability::SafiIPv4u,
            BgpCapability::CapRR,
            BgpCapability::CapASN32(65450),
        ];
        let params = BgpSessionParams::new(
            65001,
            30,
            BgpTransportMode::IPv4,
            "198.18.0.1".parse().unwrap(),
            caps.clone(),
        );
        let msg = BgpOpenMessage {
            as_num: 200,
            router_id: "198.18.0.1".parse().unwrap(),
            caps,
            hold_time: 180,
        };

        let encode = msg.encode_to(&params, &mut buf);
        assert!(encode.is_ok());

        let mut decode_msg = BgpOpenMessage::new();

        // Trucate to fit encoded message length
        buf.truncate(encode.unwrap());

        let decode = decode_msg.decode_from(&params, &buf);
        match decode {
            Ok(_) => {
                assert_eq!(decode_msg.as_num, msg.as_num);
                assert_eq!(decode_msg.hold_time, msg.hold_time);
                assert_eq!(decode_msg.router_id, msg.router_id,);
                assert_eq!(decode_msg.caps.len(), msg.caps.len());
                for c in decode_msg.caps.iter() {
                    assert!(msg.caps.contains(c));
                }
            }
            _ => panic!("incorrect decode: {:?}", decode),
        }
    }

    #[test]
    fn test_concatenated_open() {
        // Setup
        let mut buf = vec![0_u8; 4096];
        let caps = vec![
            BgpCapability::SafiIPv4u,
            BgpCapability::CapRR,
            BgpCapability::CapASN32(65450),
        ];
        let params = BgpSessionParams::new(
            65001,
            30,
            BgpTransportMode::IPv4,
            "198.18.0.1".parse().unwrap(),
            caps.clone(),
        );
        let msg = BgpOpenMessage {
            as_num: 200,
            router_id: "198.18.0.1".parse().unwrap(),
            caps,
            hold_time: 180,
        };

        let encode = msg.encode_to(&params, &mut buf);
        assert!(encode.is_ok());

        let encode = msg.encode_to(&params, &mut buf);
        assert!(encode.is_ok());

        // Trucate to fit encoded message length
        buf.truncate(encode.unwrap());

        let mut decode_msg = BgpOpenMessage::new();
        let decode = decode_msg.decode_from(&params, &buf);
        match decode {
            Ok(_) => {
                assert_eq!(decode_msg.as_num, msg.as_num);
                assert_eq!(decode_msg.hold_time, msg.hold_time);
                assert_eq!(decode_msg.router_id, msg.router_id);
                assert_eq!(decode_msg.caps.len(), msg.caps.len());
                for c in decode_msg.caps.iter() {
                    assert!(params.caps.contains(c), "caps.contains(): {:?}", c);
                }
            }
            _ => panic!("incorrect decode: {:?}", decode),
        }

        let mut decode_msg = BgpOpenMessage::new();
        let decode = decode_msg.decode_from(&params, &buf);
        match decode {
            Ok(_) => {
                assert_eq!(decode_msg.as_num, msg.as_num);
                assert_eq!(decode_msg.hold_time, msg.hold_time);
                assert_eq!(decode_msg.router_id, msg.router_id);
                assert_eq!(decode_msg.caps.len(), msg.caps.len());
                for c in decode_msg.caps.iter() {
                    assert!(params.caps.contains(c), "caps.contains(): {:?}", c);
                }
            }
            _ => panic!("incorrect decode: {:?}", decode),
        }
    }

    #[test]
    fn test_bad_open_decode_length() {
        // Setup
        let mut buf = vec![0_u8; 4096];
        let caps = vec![
            BgpCapability::SafiIPv4u,
            BgpCapability::CapRR,
            BgpCapability::CapASN32(65450),
        ];
        let params = BgpSessionParams::new(
            65001,
            30,
            BgpTransportMode::IPv4,
            "198.18.0.1".parse().unwrap(),
            caps.clone(),
        );
        let mut msg = BgpOpenMessage {
            as_num: 200,
            router_id: "198.18.0.1".parse().unwrap(),
            caps,
            hold_time: 180,
        };

        let encode = msg.encode_to(&params, &mut buf);
        assert!(encode.is_ok());

        // Truncate encoded cap data
        let truncate_amount = 3;
        buf.truncate(encode.unwrap() - truncate_amount as usize);
        let decode = msg.decode_from(&params, &buf);
        assert!(matches!(
            decode,
            Err(BgpError::InsufficientBufferSize(_, _))
        ));
    }

    #[test]
    fn test_bad_open_bgp_version() {
        // Setup
        let mut buf = vec![0_u8; 4096];
        let caps = vec![
            BgpCapability::SafiIPv4u,
            BgpCapability::CapRR,
            BgpCapability::CapASN32(65450),
        ];
        let params = BgpSessionParams::new(
            65001,
            30,
            BgpTransportMode::IPv4,
            "198.18.0.1".parse().unwrap(),
            caps.clone(),
        );
        let msg = BgpOpenMessage {
            as_num: 200,
            router_id: "198.18.0.1".parse().unwrap(),
            caps,
            hold_time: 180,
        };

        let encode = msg.encode_to(&params, &mut buf);
        assert!(encode.is_ok());

        // Set bgp version to be 3
        buf[0] = 3;

        let mut decode_msg = BgpOpenMessage::new();
        let decode = decode_msg.decode_from(&params, &buf);
        assert!(matches!(
            decode,
            Err(BgpError::Static("Invalid BGP version <> 4"))
        ));
    }

    #[test]
    fn test_bad_open_decode_empty() {
        // Setup
        let buf = vec![0_u8; 0];
        let caps = vec![
            BgpCapability::SafiIPv4u,
            BgpCapability::CapRR,
            BgpCapability::CapASN32(65450),
        ];
        let params = BgpSessionParams::new(
            65001,
            30,
            BgpTransportMode::IPv4,
            "198.18.0.1".parse().unwrap(),
            caps,
        );

        let mut decode_msg = BgpOpenMessage::new();
        let decode = decode_msg.decode_from(&params, &buf);
        assert!(matches!(
            decode,
            Err(BgpError::InsufficientBufferSize(_, _))
        ));
    }

    #[test]
    fn test_bad_open_missing_optlen() {
        // Setup
        let mut buf = vec![0_u8; 4096];
        let caps = vec![
            BgpCapability::SafiIPv4u,
            BgpCapability::CapRR,
            BgpCapability::CapASN32(65450),
        ];
        let params = BgpSessionParams::new(
            65001,
            30,
            BgpTransportMode::IPv4,
            "198.18.0.1".parse().unwrap(),
            caps.clone(),
        );
        let msg = BgpOpenMessage {
            as_num: 200,
            router_id: "198.18.0.1".parse().unwrap(),
            caps,
            hold_time: 180,
        };

        let encode = msg.encode_to(&params, &mut buf);
        assert!(encode.is_ok());

        // Truncate to remove the optional parameters while the Optional
        // Parameters Length octet still announces them.
        buf.truncate(10_usize);

        // PATCH(edge): this used to decode "successfully" with no
        // capabilities; the message is truncated, so it must be an error.
        let mut decode_msg = BgpOpenMessage::new();
        let decode = decode_msg.decode_from(&params, &buf);
        assert!(matches!(
            decode,
            Err(BgpError::InsufficientBufferSize(_, _))
        ));
    }

    #[test]
    fn test_bad_open_encode_empty() {
        // Setup
        let mut buf = vec![0_u8; 0];
        let caps = vec![
            BgpCapability::SafiIPv4u,
            BgpCapability::CapRR,
            BgpCapability::CapASN32(65450),
        ];
        let params = BgpSessionParams::new(
            65001,
            30,
            BgpTransportMode::IPv4,
            "198.18.0.1".parse().unwrap(),
            caps.clone(),
        );
        let msg = BgpOpenMessage {
            as_num: 200,
            router_id: "198.18.0.1".parse().unwrap(),
            caps,
            hold_time: 180,
        };

        let encode = msg.encode_to(&params, &mut buf);
        assert!(matches!(
            encode,
            Err(BgpError::InsufficientBufferSize(_, _))
        ));
    }

    #[test]
    fn test_bad_open_encode_length() {
        // Setup
        let mut buf = vec![0_u8; 20];
        let caps = vec![
            BgpCapability::SafiIPv4u,
            BgpCapability::CapRR,
            BgpCapability::CapASN32(65450),
        ];
        let params = BgpSessionParams::new(
            65001,
            30,
            BgpTransportMode::IPv4,
            "198.18.0.1".parse().unwrap(),
            caps.clone(),
        );
        let msg = BgpOpenMessage {
            as_num: 200,
            router_id: "198.18.0.1".parse().unwrap(),
            caps,
            hold_time: 180,
        };

        let encode = msg.encode_to(&params, &mut buf);
        assert!(matches!(
            encode,
            Err(BgpError::InsufficientBufferSize(_, _))
        ));
    }
}
