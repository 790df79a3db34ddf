//! GSLB fed by what the nodes measure, end to end in the two-PoP lab:
//!
//! * latency: after the clients' resolvers query the DNS VIP, every node
//!   probes them and publishes its RTTs on the health bus; `edge dns
//!   explain` at any node then shows an RTT from both sites for the
//!   resolver's prefix (the `latency` filter has data; lab RTTs are far
//!   below the 5 ms tolerance, so geo still decides here);
//! * load: with `capacity = 1` on the ams nodes, a handful of open L4
//!   connections puts ams over `shed_load_above`, and ams-c1 is answered
//!   with nyc until the connections close.

use std::net::TcpStream;
use std::time::Duration;

use edge_tests::{TopologyLab, lab_ready, repo_root};

fn answer(t: &TopologyLab, client: &str) -> Result<String, String> {
    let out = t
        .lab
        .exec(
            client,
            &[
                "dig",
                "+tries=1",
                "+time=1",
                "+short",
                "@203.0.113.53",
                "www.edge.example",
            ],
        )
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !text.is_empty() {
        Ok(text)
    } else {
        Err(format!("{text:?}"))
    }
}

#[test]
fn measured_rtts_and_load_reach_the_gslb_decision() {
    if !lab_ready("gslb_feedback", &["ip", "vtysh", "bird", "dig"]) {
        return;
    }
    let text = std::fs::read_to_string(repo_root().join("labs/two-pop/deployment.toml"))
        .expect("two-pop topology")
        .replace(
            "name = \"two-pop\"",
            &format!("name = \"gf{}\"", std::process::id() % 100_000),
        )
        .replace("name = \"ams-e1\"", "name = \"ams-e1\"\ncapacity = 1")
        .replace("name = \"ams-e2\"", "name = \"ams-e2\"\ncapacity = 1");
    let t = TopologyLab::up(&text);
    let ams = TopologyLab::wait("ams-c1 answered with ams", Duration::from_secs(30), || {
        let a = answer(&t, "ams-c1")?;
        if a == "198.51.100.10" { Ok(a) } else { Err(a) }
    });
    assert_eq!(ams, "198.51.100.10");
    TopologyLab::wait("nyc-c1 answered with nyc", Duration::from_secs(10), || {
        let a = answer(&t, "nyc-c1")?;
        if a == "198.51.100.20" { Ok(a) } else { Err(a) }
    });

    // Latency: both sites measured ams-c1's resolver (probes every 5 s).
    let trace = TopologyLab::wait(
        "RTTs from both sites in the explain trace",
        Duration::from_secs(30),
        || {
            let out = t.edge(
                "nyc-e2",
                &["dns", "explain", "www.edge.example", "--client", "198.18.1.2"],
            );
            let s = String::from_utf8_lossy(&out.stdout).to_string();
            let line = s
                .lines()
                .find(|l| l.contains("198.18.1.0/24:"))
                .unwrap_or_default()
                .to_string();
            if line.contains("@ams") && line.contains("@nyc") && !line.contains("unmeasured") {
                Ok(s)
            } else {
                Err(s)
            }
        },
    );
    eprintln!("explain at nyc-e2 for ams-c1's resolver:\n{trace}");
    assert!(
        trace.contains("198.51.100.10"),
        "geo still decides within the tolerance: {trace}"
    );

    // Load: 6 open connections over two nodes of capacity 1 each.
    let client_ns = t.lab.kernel_ns("ams-c1").expect("ns");
    let nt = edge_l4::netns::NetnsThread::spawn(&client_ns).expect("enter the client namespace");
    let conns: Vec<TcpStream> = nt
        .run(|| {
            (0..6)
                .map(|_| TcpStream::connect(("203.0.113.10", 9000)).expect("L4 connect"))
                .collect()
        })
        .expect("namespace thread");
    TopologyLab::wait(
        "ams shed: ams-c1 answered with nyc",
        Duration::from_secs(10),
        || {
            let a = answer(&t, "ams-c1")?;
            if a == "198.51.100.20" { Ok(()) } else { Err(a) }
        },
    );
    // Every node sheds once the reports have gossiped; its trace says why.
    TopologyLab::wait(
        "the load filter in ams-e1's trace",
        Duration::from_secs(10),
        || {
            let out = t.edge(
                "ams-e1",
                &["dns", "explain", "www.edge.example", "--client", "198.18.1.2"],
            );
            let s = String::from_utf8_lossy(&out.stdout).to_string();
            if s.contains("load") && s.contains("198.51.100.20") {
                Ok(())
            } else {
                Err(s)
            }
        },
    );
    drop(conns);
    TopologyLab::wait(
        "ams back once the connections close",
        Duration::from_secs(10),
        || {
            let a = answer(&t, "ams-c1")?;
            if a == "198.51.100.10" { Ok(()) } else { Err(a) }
        },
    );
}
