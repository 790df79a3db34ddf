//! The nftables dataplane against a real kernel, in a namespace of its own:
//! it owns `inet edge_l4` and nothing else, replaces it atomically, reads
//! it back, and rewrites it when its own settings change.
//!
//! Needs root and nft; skips otherwise (fails under EDGE_LAB=require).

use std::process::Command;

use edge_l4::netns::NetnsThread;
use edge_l4::nftables::{NftConfig, NftDataplane, TABLE};
use edge_l4::{BackendSpec, Dataplane, L4State, Protocol, SchedulerKind, ServiceKey, ServiceSpec, TableSize};
use edge_tests::lab_ready;

struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn nft(ns: &str, args: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns, "nft"])
        .args(args)
        .output()
        .expect("nft");
    assert!(
        out.status.success(),
        "nft {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn state(ports: &[u16]) -> L4State {
    ports.iter().fold(L4State::default(), |st, &p| {
        st.with_service(
            ServiceKey::new("203.0.113.10".parse().unwrap(), p, Protocol::Tcp),
            ServiceSpec::new(SchedulerKind::Maglev)
                .with_backend("198.19.10.11:8080".parse().unwrap(), BackendSpec::active(1))
                .with_backend("198.19.10.12:8080".parse().unwrap(), BackendSpec::draining(3)),
        )
    })
}

#[test]
fn nftables_owns_one_table_and_reads_it_back() {
    if !lab_ready("nftables_owns_one_table", &["ip", "nft"]) {
        return;
    }
    let ns = format!("edge-l4nft{}", std::process::id());
    let st = Command::new("ip")
        .args(["netns", "add", &ns])
        .status()
        .expect("ip");
    assert!(st.success());
    let _ns = Netns(ns.clone());
    // Somebody else's table: must survive every apply and the removal.
    nft(
        &ns,
        &[
            "add table inet other ; add chain inet other c { type filter hook input priority 0 ; } ; add rule inet other c counter",
        ],
    );

    let worker = NetnsThread::spawn(&ns).expect("enter namespace");
    let small = |masquerade| NftConfig {
        table_size: TableSize::new(251).unwrap(),
        masquerade,
        ..NftConfig::default()
    };
    let (one, two) = (state(&[80]), state(&[80, 443]));
    let (one2, two2) = (one.clone(), two.clone());
    worker
        .run(move || {
            let mut dp = NftDataplane::new(small(false));
            assert_eq!(dp.observe().unwrap(), L4State::default(), "no table yet");
            assert!(dp.apply(&L4State::default()).unwrap().is_noop());
            assert_eq!(dp.apply(&one2).unwrap().changes.len(), 1);
            assert!(dp.apply(&one2).unwrap().is_noop());
            assert_eq!(dp.observe().unwrap(), one2);
            assert_eq!(dp.apply(&two2).unwrap().changes.len(), 1);
            assert_eq!(dp.observe().unwrap(), two2);
        })
        .unwrap();
    let listing = nft(&ns, &["list", "table", "inet", TABLE]);
    assert!(
        !listing.contains("ct status dnat"),
        "no masquerade rule: {listing}"
    );
    assert!(
        listing.contains("mod 251 seed 0x65646765 map @slots_1"),
        "{listing}"
    );

    // Same services, other settings: rewritten (the map would hash flows
    // differently otherwise).
    let two3 = two.clone();
    worker
        .run(move || {
            let mut dp = NftDataplane::new(small(true));
            dp.apply(&two3).unwrap();
            assert_eq!(dp.observe().unwrap(), two3);
        })
        .unwrap();
    let listing = nft(&ns, &["list", "table", "inet", TABLE]);
    assert!(
        listing.contains("ct status dnat ct original ip daddr @vips4 masquerade"),
        "{listing}"
    );
    assert!(listing.contains("masquerade=1"), "{listing}");

    worker
        .run(move || {
            let mut dp = NftDataplane::new(small(true));
            assert_eq!(dp.apply(&L4State::default()).unwrap().changes.len(), 2);
            assert_eq!(dp.observe().unwrap(), L4State::default());
            dp.remove().unwrap();
            assert_eq!(dp.observe().unwrap(), L4State::default());
        })
        .unwrap();
    let tables = nft(&ns, &["list", "tables"]);
    assert!(!tables.contains(TABLE), "{tables}");
    assert!(nft(&ns, &["list", "table", "inet", "other"]).contains("counter"));
}
