//! The health bus with several `edge` processes on loopback (no root):
//! propagation of a backend failure, node death, operator drain, and a
//! frozen ("partitioned") node rejoining.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EDGE: &str = env!("CARGO_BIN_EXE_edge");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free udp port")
}

fn get_status(admin: SocketAddr) -> Option<serde_json::Value> {
    let mut s = TcpStream::connect_timeout(&admin, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    serde_json::from_str(out.split("\r\n\r\n").nth(1)?).ok()
}

struct Node {
    name: &'static str,
    admin: SocketAddr,
    child: Option<Child>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = Command::new("kill").args(["-CONT", &c.id().to_string()]).status();
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

struct Cluster {
    nodes: Vec<Node>,
    backends: Vec<(&'static str, u16, Option<TcpListener>)>,
    _dir: tempfile::TempDir,
}

impl Cluster {
    /// Three nodes (two at ams, one at nyc), one backend per site.
    fn start() -> Cluster {
        let names = [("a1", "ams"), ("a2", "ams"), ("n1", "nyc")];
        let backends = vec![("ams-b1", free_port(), None), ("nyc-b1", free_port(), None)];
        let mut topo = String::from("name = \"bus\"\n[bus]\ninterval = \"50ms\"\n");
        for site in ["ams", "nyc"] {
            topo.push_str(&format!(
                "[sites.{site}]\nlocation = {{ lat = 1.0, lon = 1.0, country = \"NL\" }}\n"
            ));
        }
        let mut nodes = Vec::new();
        for (i, (name, site)) in names.iter().enumerate() {
            let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
            let gossip = free_udp_port();
            topo.push_str(&format!(
                "[[sites.{site}.nodes]]\nname = \"{name}\"\nrouter_id = \"198.18.255.{}\"\nasn = 65010\n\
                 addresses = [\"127.0.0.1/8\"]\nadmin = \"{admin}\"\ngossip = \"127.0.0.1:{gossip}\"\n",
                i + 1
            ));
            nodes.push(Node {
                name,
                admin,
                child: None,
            });
        }
        topo.push_str(
            "[vips.web]\nprefixes = [\"203.0.113.10/32\"]\nsites = [\"ams\", \"nyc\"]\n\
             [pools.web]\ncheck = { kind = \"tcp\", interval = \"100ms\", timeout = \"100ms\", rise = 1, fall = 2 }\n",
        );
        topo.push_str("backends = [\n");
        for (name, port, _) in &backends {
            let site = &name[..3];
            topo.push_str(&format!(
                "  {{ name = \"{name}\", site = \"{site}\", address = \"127.0.0.1\", port = {port} }},\n"
            ));
        }
        topo.push_str(
            "]\n[services.web]\nvip = \"web\"\npool = \"web\"\nl4 = [{ protocol = \"tcp\", port = 80 }]\n",
        );
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("bus.toml");
        std::fs::write(&file, &topo).expect("write topology");
        let mut c = Cluster {
            nodes,
            backends,
            _dir: dir,
        };
        for b in &mut c.backends {
            b.2 = Some(TcpListener::bind(("127.0.0.1", b.1)).expect("backend listener"));
        }
        for n in &mut c.nodes {
            let child = Command::new(EDGE)
                // Three nodes share the test's network namespace: none may
                // touch its `lo`.
                .args([
                    "run",
                    "--no-vip-on-lo",
                    "--no-listeners",
                    "--node",
                    n.name,
                    "--config",
                ])
                .arg(&file)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn edge");
            n.child = Some(child);
        }
        c
    }

    fn wait_all(&self, what: &str, timeout: Duration, pred: impl Fn(&serde_json::Value) -> bool) -> Duration {
        self.wait_nodes(&[0, 1, 2], what, timeout, pred)
    }

    fn wait_nodes(
        &self,
        idx: &[usize],
        what: &str,
        timeout: Duration,
        pred: impl Fn(&serde_json::Value) -> bool,
    ) -> Duration {
        let t0 = Instant::now();
        let mut last = Vec::new();
        while t0.elapsed() < timeout {
            last = idx.iter().map(|i| get_status(self.nodes[*i].admin)).collect();
            if last.iter().all(|s| s.as_ref().is_some_and(&pred)) {
                return t0.elapsed();
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        panic!("timed out after {timeout:?} waiting for {what}; last statuses: {last:#?}");
    }

    fn edge_cli(&self, args: &[&str], node: usize) -> std::process::Output {
        Command::new(EDGE)
            .args(args)
            .args(["--admin", &self.nodes[node].admin.to_string()])
            .output()
            .expect("edge cli")
    }
}

fn backend_seen(v: &serde_json::Value, node: &str, backend: &str) -> Option<bool> {
    v["cluster"][node]["backends"][backend].as_bool()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[test]
fn health_bus_propagation_drain_death_and_rejoin() {
    let mut c = Cluster::start();
    c.wait_all(
        "every node to see all three members and both backends up",
        Duration::from_secs(15),
        |v| {
            v["bus_members"].as_array().map(|a| a.len()) == Some(3)
                && backend_seen(v, "a1", "ams-b1") == Some(true)
                && backend_seen(v, "n1", "nyc-b1") == Some(true)
        },
    );

    // 1. A backend killed at ams is seen down by every node (ams and nyc).
    let mut samples = Vec::new();
    for _ in 0..5 {
        c.backends[0].2 = None; // close the listener: connects are refused
        let t = c.wait_all("ams-b1 down everywhere", Duration::from_secs(5), |v| {
            backend_seen(v, "a1", "ams-b1") == Some(false) && backend_seen(v, "a2", "ams-b1") == Some(false)
        });
        samples.push(t);
        c.backends[0].2 = Some(TcpListener::bind(("127.0.0.1", c.backends[0].1)).expect("rebind"));
        c.wait_all("ams-b1 up again everywhere", Duration::from_secs(5), |v| {
            backend_seen(v, "a1", "ams-b1") == Some(true) && backend_seen(v, "a2", "ams-b1") == Some(true)
        });
    }
    samples.sort();
    eprintln!(
        "backend death → seen by all 3 nodes (check inter 100ms fall 2, gossip 50ms): p50 {:?} p99 {:?} max {:?} over {} runs",
        percentile(&samples, 0.5),
        percentile(&samples, 0.99),
        samples[samples.len() - 1],
        samples.len()
    );
    assert!(samples.iter().all(|s| *s < Duration::from_secs(2)), "{samples:?}");

    // 2. An operator drain sent to one node reaches every node.
    let out = c.edge_cli(&["drain", "a1"], 2);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let t = c.wait_all("drain of a1 everywhere", Duration::from_secs(5), |v| {
        v["intent"]["drained_nodes"]
            .as_array()
            .is_some_and(|a| a.iter().any(|n| n == "a1"))
    });
    eprintln!("drain reached every node in {t:?}");
    c.wait_nodes(&[0], "a1 to drain its VIP", Duration::from_secs(5), |v| {
        v["vips"][0]["verdict"]["decision"] == "drain"
    });
    let bad = c.edge_cli(&["drain", "ghost"], 0);
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("no site, node or backend"));
    let out = c.edge_cli(&["undrain", "a1"], 1);
    assert!(out.status.success());
    c.wait_all("undrain everywhere", Duration::from_secs(5), |v| {
        v["intent"]["drained_nodes"]
            .as_array()
            .is_some_and(|a| a.is_empty())
    });

    // 3. A frozen node (SIGSTOP: it neither sends nor answers, as in a
    // partition) is declared dead by the others, keeps its own view, and
    // rejoins cleanly when it resumes.
    let pid = c.nodes[2]
        .child
        .as_ref()
        .map(|ch| ch.id().to_string())
        .expect("pid");
    assert!(
        Command::new("kill")
            .args(["-STOP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let t = c.wait_nodes(
        &[0, 1],
        "n1 to leave the live set",
        Duration::from_secs(20),
        |v| {
            v["bus_members"]
                .as_array()
                .is_some_and(|a| !a.iter().any(|n| n == "n1"))
                && v["cluster"].get("n1").is_none()
        },
    );
    eprintln!("frozen node detected dead after {t:?}");
    assert!(
        Command::new("kill")
            .args(["-CONT", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let v = c.wait_nodes(&[2], "n1 to answer again", Duration::from_secs(5), |_| true);
    let _ = v;
    let t = c.wait_all("n1 back in every live set", Duration::from_secs(20), |v| {
        v["bus_members"].as_array().map(|a| a.len()) == Some(3)
            && backend_seen(v, "n1", "nyc-b1") == Some(true)
    });
    eprintln!("resumed node rejoined in {t:?}");

    // 4. A killed node is detected and its state expires from the view.
    if let Some(ch) = &mut c.nodes[1].child {
        let _ = ch.kill();
        let _ = ch.wait();
    }
    let t = c.wait_nodes(&[0, 2], "a2's state to expire", Duration::from_secs(20), |v| {
        v["cluster"].get("a2").is_none() && v["bus_members"].as_array().map(|a| a.len()) == Some(2)
    });
    eprintln!("killed node expired from the view after {t:?}");
}
