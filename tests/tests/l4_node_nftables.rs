//! The node's nftables L4 dataplane, run by `edge run` in the two-PoP lab:
//! TCP to the anycast VIP is DNATed by the kernel to the PoP's backends
//! (Maglev slots in an nft map), with source NAT so the replies come back.

use std::time::Duration;

use edge_labs::{IpNet, RouteExpect};
use edge_tests::{TopologyLab, lab_ready, repo_root};

#[test]
fn nftables_dataplane_serves_the_vip_in_the_lab() {
    if !lab_ready("l4_node_nftables", &["ip", "nft", "vtysh", "bird", "socat"]) {
        return;
    }
    let text = std::fs::read_to_string(repo_root().join("labs/two-pop/deployment.toml"))
        .expect("two-pop topology")
        .replace("name = \"two-pop\"", &format!("name = \"nf{}\"", std::process::id() % 100_000))
        .replace(
            "{ protocol = \"tcp\", port = 9000, algorithm = \"maglev\", dataplane = \"userspace\", backend_port = 9000 }",
            "{ protocol = \"tcp\", port = 9000, algorithm = \"maglev\", dataplane = \"nftables\", backend_port = 9000 }",
        );
    assert!(text.contains("dataplane = \"nftables\""));
    let t = TopologyLab::up(&text);
    let vip: IpNet = "203.0.113.10/32".parse().expect("prefix");
    t.lab
        .wait_route("ams-r1", vip, RouteExpect::Ecmp(2), Duration::from_secs(30))
        .expect("anycast ECMP at ams");
    // The node programmed its own table.
    let table = TopologyLab::wait("the edge_l4 nft table on ams-e1", Duration::from_secs(10), || {
        let out = t
            .lab
            .exec("ams-e1", &["nft", "list", "table", "inet", "edge_l4"])
            .map_err(|e| e.to_string())?;
        let s = String::from_utf8_lossy(&out.stdout).to_string();
        if s.contains("203.0.113.10") { Ok(s) } else { Err(s) }
    });
    assert!(table.contains("dnat"), "{table}");
    let mut seen = std::collections::BTreeMap::new();
    for _ in 0..30 {
        let name = TopologyLab::wait("a TCP answer through nftables", Duration::from_secs(10), || {
            let out = t
                .lab
                .exec(
                    "ams-c1",
                    &["socat", "-T", "2", "-", "TCP:203.0.113.10:9000,connect-timeout=2"],
                )
                .map_err(|e| e.to_string())?;
            let first = String::from_utf8_lossy(&out.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string();
            if first.starts_with("ams-b") {
                Ok(first)
            } else {
                Err(format!("{first:?} {}", String::from_utf8_lossy(&out.stderr)))
            }
        });
        *seen.entry(name).or_insert(0) += 1;
    }
    eprintln!("nftables dataplane: 30 connections from ams-c1 → {seen:?}");
    assert_eq!(seen.len(), 2, "both ams backends serve: {seen:?}");
}
