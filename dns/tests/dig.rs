//! The server as a stock client sees it: `dig` over UDP and TCP, with ECS.
//! Skips (with the reason printed) when `dig` is missing, unless
//! `EDGE_LAB=require`, which CI sets so a missing tool cannot pass silently.

mod common;

use std::process::Command;

use common::*;
use edge_dns::{DnsOptions, DnsView, SiteState};

fn dig_available() -> bool {
    match Command::new("dig").arg("-v").output() {
        Ok(_) => true,
        Err(e) => {
            if std::env::var("EDGE_LAB").as_deref() == Ok("require") {
                panic!("EDGE_LAB=require but dig cannot run: {e}");
            }
            eprintln!(
                "SKIP: dig not available ({e}); install bind9-dnsutils or set EDGE_LAB=require to fail"
            );
            false
        }
    }
}

/// Runs dig off the async runtime (it blocks) and returns its output.
async fn dig(addr: std::net::SocketAddr, args: &[&str]) -> String {
    let mut cmd: Vec<String> = vec![
        format!("@{}", addr.ip()),
        "-p".into(),
        addr.port().to_string(),
        "+time=3".into(),
        "+tries=1".into(),
    ];
    cmd.extend(args.iter().map(|s| s.to_string()));
    let out = tokio::task::spawn_blocking(move || Command::new("dig").args(&cmd).output())
        .await
        .unwrap()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The address lines of dig's ANSWER SECTION.
fn answers(out: &str) -> Vec<String> {
    out.lines()
        .skip_while(|l| !l.starts_with(";; ANSWER SECTION"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().last().map(str::to_string))
        .collect()
}

#[tokio::test]
async fn dig_sees_geo_answers_ecs_scope_and_tcp() {
    if !dig_available() {
        return;
    }
    let lab = start(DnsOptions::default()).await;
    let out = dig(lab.addr, &["www.edge.example.", "A", "+subnet=198.18.1.0/24"]).await;
    assert_eq!(answers(&out), [AMS], "{out}");
    assert!(out.contains("CLIENT-SUBNET: 198.18.1.0/24/24"), "{out}");
    assert!(out.contains("flags: qr aa rd;"), "authoritative, no RA: {out}");

    let out = dig(
        lab.addr,
        &["www.edge.example.", "A", "+subnet=198.18.2.0/24", "+tcp"],
    )
    .await;
    assert_eq!(answers(&out), [NYC], "{out}");
    assert!(out.contains("CLIENT-SUBNET: 198.18.2.0/24/24"), "{out}");

    let out = dig(lab.addr, &["ns1.edge.example.", "A", "+subnet=198.18.2.0/24"]).await;
    assert!(
        out.contains("CLIENT-SUBNET: 198.18.2.0/24/0"),
        "static record, scope 0: {out}"
    );

    let mut view = DnsView::default();
    view.sites.insert(
        "ams".into(),
        SiteState {
            up: false,
            ..SiteState::default()
        },
    );
    lab.view.set(view);
    let out = dig(lab.addr, &["www.edge.example.", "A", "+subnet=198.18.1.0/24"]).await;
    assert_eq!(answers(&out), [NYC], "health flip: {out}");

    let out = dig(lab.addr, &["www.example.org.", "A"]).await;
    assert!(out.contains("status: REFUSED"), "{out}");
    let out = dig(lab.addr, &["nope.edge.example.", "A"]).await;
    assert!(out.contains("status: NXDOMAIN"), "{out}");
    assert!(out.contains("IN\tSOA\tns1.edge.example."), "{out}");

    // dig retries truncated UDP answers over TCP by itself.
    let out = dig(lab.addr, &["big.edge.example.", "TXT", "+noedns"]).await;
    assert!(out.contains("Truncated, retrying in TCP mode"), "{out}");
    assert_eq!(answers(&out).len(), 40, "{out}");
}
