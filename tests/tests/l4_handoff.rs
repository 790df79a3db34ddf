//! The connection hand-off installs its rule, route and nft table in the
//! namespace it is called from, and takes all of it away again, putting the
//! `local` routing rule back at preference 0. (Its effect on traffic is
//! tested in `l4_ecmp_lab.rs`.)
//!
//! Needs root and nft; skips otherwise (fails under EDGE_LAB=require).

use std::process::Command;

use edge_l4::handoff::{FWMARK, Handoff, HandoffConfig, ROUTE_TABLE, TABLE};
use edge_l4::netns::NetnsThread;
use edge_l4::{Protocol, ServiceKey};
use edge_tests::lab_ready;

struct Netns(String);
impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

fn run(ns: &str, argv: &[&str]) -> String {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(argv)
        .output()
        .expect("ip netns exec");
    assert!(
        out.status.success(),
        "{argv:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn handoff_installs_and_removes_cleanly() {
    if !lab_ready("handoff_installs_and_removes_cleanly", &["ip", "nft"]) {
        return;
    }
    let ns = format!("edge-l4ho{}", std::process::id());
    assert!(
        Command::new("ip")
            .args(["netns", "add", &ns])
            .status()
            .expect("ip")
            .success()
    );
    let _ns = Netns(ns.clone());
    run(&ns, &["ip", "link", "set", "lo", "up"]);
    run(
        &ns,
        &["ip", "link", "add", "up0", "type", "veth", "peer", "name", "lan0"],
    );
    run(&ns, &["ip", "link", "set", "up0", "up"]);
    run(&ns, &["ip", "link", "set", "lan0", "up"]);
    run(&ns, &["ip", "addr", "add", "198.19.10.1/24", "dev", "lan0"]);
    let rules_before = run(&ns, &["ip", "-4", "rule", "show"]);
    assert!(
        rules_before.contains("0:\tfrom all lookup local"),
        "{rules_before}"
    );

    let worker = NetnsThread::spawn(&ns).expect("enter namespace");
    let services = vec![
        ServiceKey::new("203.0.113.10".parse().unwrap(), 443, Protocol::Tcp),
        ServiceKey::new("203.0.113.10".parse().unwrap(), 53, Protocol::Udp),
        ServiceKey::new("203.0.113.11".parse().unwrap(), 80, Protocol::Tcp),
    ];
    let handoff = worker
        .run(move || {
            Handoff::install(
                HandoffConfig {
                    uplinks: vec!["up0".into()],
                    peer: "198.19.10.2".parse().unwrap(),
                },
                &services,
            )
        })
        .unwrap()
        .expect("install");

    let rules = run(&ns, &["ip", "-4", "rule", "show"]);
    assert!(
        rules.contains(&format!("fwmark {FWMARK:#x} lookup {ROUTE_TABLE}")),
        "{rules}"
    );
    assert!(rules.contains("100:\tfrom all lookup local"), "{rules}");
    assert!(
        !rules.lines().any(|l| l.starts_with("0:")),
        "local still at 0: {rules}"
    );
    let routes = run(&ns, &["ip", "route", "show", "table", &ROUTE_TABLE.to_string()]);
    assert!(routes.contains("203.0.113.10 via 198.19.10.2"), "{routes}");
    assert!(routes.contains("203.0.113.11 via 198.19.10.2"), "{routes}");
    let table = run(&ns, &["nft", "list", "table", "inet", TABLE]);
    // TCP services only: UDP has no connection state to hand off.
    assert!(table.contains("203.0.113.10 . 443"), "{table}");
    assert!(table.contains("203.0.113.11 . 80"), "{table}");
    assert!(!table.contains(". 53"), "{table}");
    assert!(table.contains("iifname \"up0\""), "{table}");

    worker.run(move || handoff.remove()).unwrap().expect("remove");
    assert_eq!(run(&ns, &["ip", "-4", "rule", "show"]), rules_before);
    assert_eq!(
        run(&ns, &["ip", "route", "show", "table", &ROUTE_TABLE.to_string()]),
        ""
    );
    assert!(!run(&ns, &["nft", "list", "tables"]).contains(TABLE));
}
