//! Adj-RIB-Out diffs, drain and Adj-RIB-In limits.

use super::*;

fn ctx(ibgp: bool) -> PeerContext {
    PeerContext {
        local_as: 65010,
        ibgp,
        next_hop_v4: Some(Ipv4Addr::new(198, 18, 11, 2)),
        next_hop_v6: Some("2001:db8:11::2".parse().unwrap()),
        families: [(1, 1), (2, 1)].into_iter().collect(),
    }
}

fn codec() -> Codec {
    Codec {
        four_octet_as: true,
        ibgp: false,
    }
}

fn vip() -> Route {
    Route::new("203.0.113.10/32".parse().unwrap())
        .with_med(50)
        .with_community(Community::new(65000, 100))
}

fn vip6() -> Route {
    Route::new("2001:db8:ffff::10/128".parse().unwrap())
}

fn set(rs: &[Route]) -> BTreeSet<Route> {
    rs.iter().cloned().collect()
}

#[test]
fn ebgp_attributes_for_a_v4_route() {
    let adv = advertisements(
        &set(&[vip().with_prepend(2).with_local_pref(300)]),
        &ctx(false),
        false,
    );
    let a = &adv[&"203.0.113.10/32".parse::<IpNet>().unwrap()].attributes;
    assert_eq!(a.origin, Origin::Igp);
    assert_eq!(a.as_path, vec![AsSegment::Sequence(vec![65010, 65010, 65010])]);
    assert_eq!(a.next_hop, Some(Ipv4Addr::new(198, 18, 11, 2)));
    assert_eq!(a.med, Some(50));
    assert_eq!(a.local_pref, None, "no LOCAL_PREF on eBGP");
    assert!(a.communities.contains(&Community::new(65000, 100)));
}

#[test]
fn ibgp_attributes_have_empty_path_and_local_pref() {
    let adv = advertisements(&set(&[vip(), vip6().with_local_pref(200)]), &ctx(true), false);
    let a4 = &adv[&"203.0.113.10/32".parse::<IpNet>().unwrap()];
    assert!(a4.attributes.as_path.is_empty());
    assert_eq!(a4.attributes.local_pref, Some(100));
    let a6 = &adv[&"2001:db8:ffff::10/128".parse::<IpNet>().unwrap()];
    assert_eq!(a6.attributes.local_pref, Some(200));
    assert_eq!(a6.ipv6_next_hop, Some("2001:db8:11::2".parse().unwrap()));
    assert_eq!(a6.attributes.next_hop, None);
}

#[test]
fn routes_without_family_or_next_hop_are_not_advertised() {
    let mut c = ctx(false);
    c.families.remove(&(2, 1));
    assert_eq!(advertisements(&set(&[vip(), vip6()]), &c, false).len(), 1);
    let mut c = ctx(false);
    c.next_hop_v6 = None;
    assert_eq!(advertisements(&set(&[vip(), vip6()]), &c, false).len(), 1);
}

#[test]
fn diff_announces_then_is_quiet_then_reannounces_changes_then_withdraws() {
    let mut out = AdjRibOut::new();
    let c = ctx(false);
    let ups = out
        .diff(&advertisements(&set(&[vip(), vip6()]), &c, false), &codec())
        .unwrap();
    // One UPDATE per distinct attribute set (v4 and v6 differ).
    assert_eq!(ups.len(), 2);
    assert!(ups.iter().all(|u| u.withdrawn.is_empty()));
    let v6 = ups.iter().find(|u| u.ipv6_next_hop.is_some()).unwrap();
    assert_eq!(
        v6.announced,
        vec!["2001:db8:ffff::10/128".parse::<IpNet>().unwrap()]
    );
    assert_eq!(out.len(), 2);

    // Same desired set: nothing to send.
    let again = out
        .diff(&advertisements(&set(&[vip(), vip6()]), &c, false), &codec())
        .unwrap();
    assert!(again.is_empty());

    // MED change: re-announce only the changed prefix.
    let changed = out
        .diff(
            &advertisements(&set(&[vip().with_med(70), vip6()]), &c, false),
            &codec(),
        )
        .unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].attributes.as_ref().unwrap().med, Some(70));

    // Removing both: withdrawals (v4 classic and v6 MP_UNREACH in one UPDATE
    // model; the encoder puts each in its place).
    let gone = out.diff(&BTreeMap::new(), &codec()).unwrap();
    let withdrawn: Vec<IpNet> = gone.iter().flat_map(|u| u.withdrawn.clone()).collect();
    assert_eq!(withdrawn.len(), 2);
    assert!(gone.iter().all(|u| u.announced.is_empty()));
    assert!(out.is_empty());
    // And the bytes: IPv6 withdrawal is an MP_UNREACH (type 15) attribute.
    let bytes = wire::encode(&Message::Update(gone[0].clone()), &codec()).unwrap();
    assert!(bytes.windows(2).any(|w| w == [0x90, 15]));
}

#[test]
fn drain_reannounces_with_graceful_shutdown_then_withdraw() {
    let mut out = AdjRibOut::new();
    let c = ctx(false);
    out.diff(&advertisements(&set(&[vip()]), &c, false), &codec())
        .unwrap();
    let drain = out
        .diff(&advertisements(&set(&[vip()]), &c, true), &codec())
        .unwrap();
    assert_eq!(drain.len(), 1);
    let comms = &drain[0].attributes.as_ref().unwrap().communities;
    assert!(comms.contains(&GRACEFUL_SHUTDOWN));
    assert!(comms.contains(&Community::new(65000, 100)));
    assert_eq!(GRACEFUL_SHUTDOWN.to_string(), "65535:0");
}

#[test]
fn large_sets_are_packed_into_messages_within_4096_octets() {
    // 2000 /24s with one shared attribute set: 8000 octets of NLRI.
    let shared: BTreeSet<Route> = (0..2000u32)
        .map(|i| {
            let p = ipnet::Ipv4Net::new(Ipv4Addr::from(0xC612_0000 + (i << 8)), 24).unwrap();
            Route::new(IpNet::V4(p))
        })
        .collect();
    let mut out = AdjRibOut::new();
    let ups = out
        .diff(&advertisements(&shared, &ctx(false), false), &codec())
        .unwrap();
    assert!(
        ups.len() >= 2,
        "2000 /24s (8000 octets of NLRI) need several UPDATEs"
    );
    let total: usize = ups.iter().map(|u| u.announced.len()).sum();
    assert_eq!(total, 2000);
    for u in &ups {
        let n = wire::encode(&Message::Update(u.clone()), &codec()).unwrap().len();
        assert!(n <= wire::MAX_MESSAGE_LEN);
    }
    let gone = out.diff(&BTreeMap::new(), &codec()).unwrap();
    assert_eq!(gone.iter().map(|u| u.withdrawn.len()).sum::<usize>(), 2000);
}

#[test]
fn full_resend_for_route_refresh_covers_one_family() {
    let mut out = AdjRibOut::new();
    out.diff(
        &advertisements(&set(&[vip(), vip6()]), &ctx(false), false),
        &codec(),
    )
    .unwrap();
    let v6 = out.full(&codec(), (2, 1)).unwrap();
    assert_eq!(v6.len(), 1);
    assert_eq!(v6[0].announced.len(), 1);
    assert!(v6[0].announced[0].addr().is_ipv6());
    assert_eq!(out.len(), 2, "resend does not change what is advertised");
}

fn announce(prefixes: &[&str]) -> Update {
    Update {
        attributes: Some(PathAttributes {
            as_path: vec![AsSegment::Sequence(vec![65000])],
            next_hop: Some(Ipv4Addr::new(198, 18, 11, 1)),
            ..PathAttributes::default()
        }),
        announced: prefixes.iter().map(|p| p.parse().unwrap()).collect(),
        ..Update::default()
    }
}

#[test]
fn adj_rib_in_applies_announce_and_withdraw() {
    let mut rib = AdjRibIn::new(None);
    rib.apply(&announce(&["198.51.100.0/24", "203.0.113.0/24"]))
        .unwrap();
    assert_eq!(rib.len(), 2);
    let r = rib.routes().next().unwrap();
    assert_eq!(r.next_hop, Some(IpAddr::V4(Ipv4Addr::new(198, 18, 11, 1))));
    rib.apply(&Update {
        withdrawn: vec!["198.51.100.0/24".parse().unwrap()],
        ..Update::default()
    })
    .unwrap();
    assert_eq!(rib.len(), 1);
}

#[test]
fn adj_rib_in_max_prefix_exceeded() {
    let mut rib = AdjRibIn::new(Some(2));
    rib.apply(&announce(&["198.51.100.0/24", "203.0.113.0/24"]))
        .unwrap();
    // Re-announcing a known prefix does not count twice.
    rib.apply(&announce(&["203.0.113.0/24"])).unwrap();
    let e = rib.apply(&announce(&["198.18.0.0/15"])).unwrap_err();
    assert_eq!(
        e,
        MaxPrefixExceeded {
            afi: 1,
            safi: 1,
            limit: 2
        }
    );
}

#[test]
fn adj_rib_in_max_prefix_counts_each_family_on_its_own() {
    let mut rib = AdjRibIn::new(Some(2));
    rib.apply(&announce(&["198.51.100.0/24", "203.0.113.0/24"]))
        .unwrap();
    // Two IPv6 prefixes fit beside two IPv4 ones.
    rib.apply(&announce(&["2001:db8:1::/48", "2001:db8:2::/48"]))
        .unwrap();
    assert_eq!(rib.family_len(&"2001:db8::/32".parse().unwrap()), 2);
    // A withdrawal frees room in its family only.
    let mut w = Update::default();
    w.withdrawn.push("198.51.100.0/24".parse().unwrap());
    w.withdrawn.push("198.18.0.0/15".parse().unwrap()); // never announced
    rib.apply(&w).unwrap();
    assert_eq!(rib.family_len(&"198.18.0.0/15".parse().unwrap()), 1);
    rib.apply(&announce(&["198.18.0.0/15"])).unwrap();
    let e = rib.apply(&announce(&["2001:db8:3::/48"])).unwrap_err();
    assert_eq!(
        e,
        MaxPrefixExceeded {
            afi: 2,
            safi: 1,
            limit: 2
        }
    );
}

#[test]
fn community_text_forms_parse() {
    assert_eq!(
        "65000:100".parse::<Community>().unwrap(),
        Community::new(65000, 100)
    );
    assert!("65000".parse::<Community>().is_err());
    assert!("70000:1".parse::<Community>().is_err());
    assert_eq!(
        "4200000000:1:2".parse::<LargeCommunity>().unwrap(),
        LargeCommunity(4_200_000_000, 1, 2)
    );
    assert!("1:2".parse::<LargeCommunity>().is_err());
    let r: Route = serde_json::from_str(
        r#"{"prefix":"203.0.113.10/32","med":50,"communities":["65000:100"],"large_communities":["65010:1:2"]}"#,
    )
    .unwrap();
    assert_eq!(r.communities.iter().next().unwrap().to_string(), "65000:100");
    assert_eq!(r.prepend, 0);
}

fn stale_of(rib: &AdjRibIn) -> Vec<(String, bool)> {
    rib.routes().map(|r| (r.prefix.to_string(), r.stale)).collect()
}

#[test]
fn adj_rib_in_graceful_restart_stale_marking_and_purge() {
    let v4 = [(1u16, 1u8)].into_iter().collect();
    let both = [(1u16, 1u8), (2, 1)].into_iter().collect();
    let mut rib = AdjRibIn::new(None);
    rib.apply(&announce(&["198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"]))
        .unwrap();
    // The peer restarts; it only listed IPv4 in its capability.
    rib.mark_stale(&v4);
    assert_eq!(
        stale_of(&rib),
        [("198.51.100.0/24".into(), true), ("203.0.113.0/24".into(), true)]
    );
    assert_eq!((rib.len(), rib.stale_len()), (2, 2));
    assert_eq!(rib.family_len(&"2001:db8::/32".parse().unwrap()), 0);
    // Back: it re-announces one prefix (fresh again), then End-of-RIB.
    rib.apply(&announce(&["198.51.100.0/24"])).unwrap();
    assert_eq!(rib.stale_len(), 1);
    assert_eq!(rib.purge_stale(&both), 1);
    assert_eq!(stale_of(&rib), [("198.51.100.0/24".into(), false)]);
    assert_eq!(rib.family_len(&"198.51.100.0/24".parse().unwrap()), 1);
}

#[test]
fn adj_rib_in_consecutive_restart_drops_what_was_already_stale() {
    let v4 = [(1u16, 1u8)].into_iter().collect();
    let mut rib = AdjRibIn::new(None);
    rib.apply(&announce(&["198.51.100.0/24", "203.0.113.0/24"]))
        .unwrap();
    rib.mark_stale(&v4);
    rib.apply(&announce(&["198.51.100.0/24"])).unwrap();
    // Down again before End-of-RIB (RFC 4724 §4.2): the route that was
    // still stale goes, the re-announced one becomes stale.
    rib.mark_stale(&v4);
    assert_eq!(stale_of(&rib), [("198.51.100.0/24".into(), true)]);
    // Purging another family leaves IPv4 alone.
    assert_eq!(rib.purge_stale(&[(2u16, 1u8)].into_iter().collect()), 0);
    assert_eq!(rib.purge_stale(&v4), 1);
    assert!(rib.is_empty());
}
