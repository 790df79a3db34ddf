//! One regression test per fix listed in PATCHES.md, written against the
//! public API so each can go upstream with its patch.

use zettabgp::prelude::*;

fn params(as32: bool) -> BgpSessionParams {
    let mut p = BgpSessionParams::new(
        64512,
        90,
        BgpTransportMode::IPv4,
        std::net::Ipv4Addr::new(198, 51, 100, 1),
        vec![BgpCapability::SafiIPv4u],
    );
    p.has_as32bit = as32;
    p.fuzzy_pathid = false;
    p
}

#[test]
fn aspath_sequence_encodes_as_type_2_and_set_as_type_1() {
    let p = params(true);
    let path = BgpASpath::from([64512u32, 64513]);
    let mut buf = [0u8; 64];
    let n = BgpAttrItem::ASPath(path).encode_to(&p, &mut buf).unwrap();
    // flags 0x50 (transitive, extended length), type 2, length 10,
    // segment AS_SEQUENCE(2) with 2 ASNs.
    assert_eq!(
        &buf[..n],
        &[0x50, 2, 0, 10, 2, 2, 0, 0, 0xfc, 0x00, 0, 0, 0xfc, 0x01]
    );

    let set = BgpASpath {
        value: vec![BgpASitem::Set(BgpASset {
            value: [BgpAS::new(64514)].into_iter().collect(),
        })],
    };
    let n = BgpAttrItem::ASPath(set).encode_to(&p, &mut buf).unwrap();
    assert_eq!(&buf[4..n], &[1, 1, 0, 0, 0xfc, 0x02]);
}

#[test]
fn aspath_round_trips_through_decode() {
    let p = params(true);
    let path = BgpASpath::from([64512u32, 4_200_000_000]);
    let mut buf = [0u8; 64];
    let n = path.encode_to(&p, &mut buf).unwrap();
    assert_eq!(BgpASpath::decode_from(&p, &buf[..n]).unwrap(), path);
}

#[test]
fn aspath_decode_rejects_overrun_zero_length_and_stray_octet() {
    let p4 = params(true);
    let p2 = params(false);
    // Segment claims 3 ASNs but carries 1.
    assert!(BgpASpath::decode_from(&p4, &[2, 3, 0, 0, 0xfc, 0]).is_err());
    // Shorter than one 4-octet ASN: used to underflow `buf.len() - 4`.
    assert!(BgpASpath::decode_from(&p4, &[2, 1, 0]).is_err());
    // RFC 7606 §7.2: a zero segment length is malformed.
    assert!(BgpASpath::decode_from(&p4, &[2, 0]).is_err());
    // One octet left after a good segment: used to loop forever.
    assert!(BgpASpath::decode_from(&p2, &[2, 1, 0xfc, 0, 7]).is_err());
    // Unknown segment type.
    assert!(BgpASpath::decode_from(&p2, &[9, 1, 0xfc, 0]).is_err());
    // Empty attribute is an empty path (iBGP).
    assert_eq!(BgpASpath::decode_from(&p4, &[]).unwrap().value.len(), 0);
}

#[test]
fn hostname_capability_decodes_with_domain_name() {
    // What FRR sends: code 73, len, hostname "r1", domain "lab".
    let cap = [73u8, 7, 2, b'r', b'1', 3, b'l', b'a', b'b'];
    let (c, n) = BgpCapability::from_buffer(&cap).unwrap();
    assert_eq!(n, cap.len());
    assert_eq!(c.unwrap(), BgpCapability::CapFQDN("r1".into(), "lab".into()));
    // Trailing garbage inside the capability is still refused.
    let bad = [73u8, 8, 2, b'r', b'1', 3, b'l', b'a', b'b', 0];
    assert!(BgpCapability::from_buffer(&bad).is_err());
}

#[test]
fn hostname_capability_encodes_correctly_and_round_trips() {
    let p = params(true);
    let mut open = BgpOpenMessage::new();
    open.caps = vec![BgpCapability::CapFQDN("edge1".into(), "example.net".into())];
    let mut buf = [0u8; 128];
    let n = open.encode_to(&p, &mut buf).unwrap();
    // Opt params length 22; parameter type 2, length 20; capability 73, length 18.
    assert_eq!(&buf[9..14], &[22, 2, 20, 73, 18]);
    assert_eq!(buf[14], 5);
    assert_eq!(&buf[15..20], b"edge1");
    assert_eq!(buf[20], 11);
    assert_eq!(&buf[21..32], b"example.net");
    assert_eq!(n, 32);
    let mut back = BgpOpenMessage::new();
    back.decode_from(&p, &buf[..n]).unwrap();
    assert_eq!(back.caps, open.caps);
}

#[test]
fn message_header_length_below_19_is_an_error() {
    let p = params(true);
    let mut hdr = [0xffu8; 19];
    hdr[16] = 0;
    hdr[17] = 18;
    hdr[18] = 4;
    assert!(p.decode_message_head(&hdr).is_err());
    hdr[17] = 19;
    let (t, len) = p.decode_message_head(&hdr).unwrap();
    assert_eq!((t, len), (BgpMessageType::Keepalive, 0));
}

#[test]
fn community_lengths_must_be_multiples() {
    assert!(BgpLargeCommunityList::decode_from(&[0u8; 13]).is_err());
    assert!(BgpLargeCommunityList::decode_from(&[0u8; 11]).is_err());
    assert_eq!(
        BgpLargeCommunityList::decode_from(&[0u8; 24]).unwrap().value.len(),
        1
    );
    assert!(BgpCommunityList::decode_from(&[0u8; 5]).is_err());
    assert_eq!(
        BgpCommunityList::decode_from(&[0, 1, 0, 2, 0, 1, 0, 3]).unwrap().value.len(),
        2
    );
}

#[test]
fn open_honours_optional_parameters_length() {
    let p = params(true);
    // Version 4, AS 64512, hold 90, id 198.51.100.1, opt len 8: one
    // parameter carrying route refresh (2,0) and 4-octet AS would not fit.
    let mut body = vec![4, 0xfc, 0, 0, 90, 198, 51, 100, 1, 4, 2, 2, 2, 0];
    let mut m = BgpOpenMessage::new();
    m.decode_from(&p, &body).unwrap();
    assert_eq!(m.caps, vec![BgpCapability::CapRR]);
    // Bytes after the announced optional parameters are not capabilities.
    body.extend_from_slice(&[2, 2, 70, 0]);
    m.decode_from(&p, &body).unwrap();
    assert_eq!(m.caps, vec![BgpCapability::CapRR]);
    // Announced but missing.
    body.truncate(11);
    assert!(m.decode_from(&p, &body).is_err());
}

#[test]
fn open_encode_refuses_oversized_optional_parameters() {
    let p = params(true);
    let mut open = BgpOpenMessage::new();
    open.caps = (0..40).map(|_| BgpCapability::CapASN32(1)).collect();
    let mut buf = [0u8; 1024];
    assert!(open.encode_to(&p, &mut buf).is_err());
}

#[test]
fn open_encodes_as_trans_for_4_octet_asn() {
    let p = params(true);
    let mut open = BgpOpenMessage::new();
    open.as_num = 4_200_000_000;
    let mut buf = [0u8; 64];
    open.encode_to(&p, &mut buf).unwrap();
    assert_eq!(&buf[1..3], &23456u16.to_be_bytes());
}

#[test]
fn short_attributes_are_errors_not_panics() {
    let p = params(true);
    // MP_REACH with only AFI/SAFI, MP_UNREACH with only AFI.
    assert!(BgpAttrItem::decode_from(&p, 14, 0x90, 3, &[0, 2, 1]).is_err());
    assert!(BgpAttrItem::decode_from(&p, 15, 0x90, 2, &[0, 2]).is_err());
    // MP_REACH whose next-hop length overruns the attribute.
    assert!(BgpAttrItem::decode_from(&p, 14, 0x90, 6, &[0, 2, 1, 16, 0x20, 0x01]).is_err());
    // ORIGINATOR_ID and OTC shorter than 4 octets.
    assert!(BgpAttrItem::decode_from(&p, 9, 0x80, 2, &[1, 2]).is_err());
    assert!(BgpAttrItem::decode_from(&p, 35, 0xc0, 2, &[1, 2]).is_err());
    // IPv4 prefix length 255: `bits + 7` used to overflow.
    assert!(BgpAddrs::decode_from(&p, 1, 1, &[255, 1, 2, 3]).is_err());
}

#[test]
fn update_with_truncated_attribute_header_is_an_error() {
    let p = params(true);
    // No withdrawals, 1 octet of path attributes (half a header).
    let body = [0u8, 0, 0, 1, 0x40];
    assert!(BgpUpdateMessage::new().decode_from(&p, &body).is_err());
    // 2 octets: flags + type, but the length octet is missing.
    let body = [0u8, 0, 0, 2, 0x40, 1];
    assert!(BgpUpdateMessage::new().decode_from(&p, &body).is_err());
}

#[test]
fn large_community_is_sent_without_partial_bit() {
    let p = params(true);
    let lc = BgpLargeCommunityList {
        value: [BgpLargeCommunity {
            ga: 64512,
            ldp1: 1,
            ldp2: 2,
        }]
        .into_iter()
        .collect(),
    };
    let mut buf = [0u8; 32];
    let n = BgpAttrItem::LargeCommunityList(lc).encode_to(&p, &mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        &[0xd0, 32, 0, 12, 0, 0, 0xfc, 0, 0, 0, 0, 1, 0, 0, 0, 2]
    );
}

#[test]
fn attribute_encode_into_tiny_buffer_is_an_error() {
    let p = params(true);
    let mut buf = [0u8; 2];
    assert!(BgpAttrItem::MED(BgpMED { value: 1 }).encode_to(&p, &mut buf).is_err());
}
