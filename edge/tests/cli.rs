//! The `edge` binary driven as a user would: real process, real sockets.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const EDGE: &str = env!("CARGO_BIN_EXE_edge");

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn validate_accepts_every_example() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("topology/examples"))
        .expect("examples")
        .map(|e| e.expect("entry").path())
        .collect();
    files.push(repo().join("labs/two-pop/deployment.toml"));
    for f in files {
        let out = Command::new(EDGE)
            .arg("validate")
            .arg(&f)
            .output()
            .expect("run edge");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}: {stdout}", f.display());
        assert!(stdout.starts_with("ok\n"), "{stdout}");
        assert!(stdout.contains("deployment "), "{stdout}");
    }
}

#[test]
fn validate_rejects_a_broken_file_with_every_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("broken.toml");
    let text = std::fs::read_to_string(repo().join("labs/two-pop/deployment.toml"))
        .expect("read")
        .replace("router_id = \"198.18.22.2\"", "router_id = \"198.18.21.2\"")
        .replace(
            "pool = \"web\"\nl7 = [{ port = 80 }]\nl4",
            "pool = \"webb\"\nl7 = [{ port = 80 }]\nl4",
        )
        .replace("sites = [\"nyc\"]", "sites = [\"lon\"]");
    std::fs::write(&f, text).expect("write");
    let out = Command::new(EDGE)
        .arg("validate")
        .arg(&f)
        .output()
        .expect("run edge");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    for needle in [
        "sites.nyc.nodes[1].router_id: duplicates sites.nyc.nodes[0]",
        "services.web.pool: unknown pool \"webb\"",
        "vips.nyc-web.sites[0]: unknown site \"lon\"",
    ] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
}

#[test]
fn validate_reports_a_missing_file_as_an_error() {
    let out = Command::new(EDGE)
        .args(["validate", "/nonexistent/edge.toml"])
        .output()
        .expect("run edge");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr")
}

fn http_get(addr: SocketAddr, path: &str) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_millis(200)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn run_without_config_serves_the_demo_on_loopback_and_stops_on_sigterm() {
    let admin = free_port();
    let child = Command::new(EDGE)
        .args(["run", "--log-format", "json", "--admin", &admin.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn edge");
    let mut child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(r) = http_get(admin, "/status") {
            break r;
        }
        assert!(Instant::now() < deadline, "edge run did not serve its admin API");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let body = status.split("\r\n\r\n").nth(1).expect("body");
    let v: serde_json::Value = serde_json::from_str(body).expect("json");
    assert_eq!(v["node"], "demo");
    assert_eq!(v["vips"][0]["prefixes"][0], "127.0.0.1/32");

    let metrics = http_get(admin, "/metrics").expect("metrics");
    assert!(
        metrics.contains("edge_node_info{node=\"demo\",site=\"local\""),
        "{metrics}"
    );
    assert!(metrics.contains("edge_uptime_seconds"), "{metrics}");
    // The userspace L4 dataplane's counters (sampled once a second), inside
    // the OpenMetrics body.
    let deadline = Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let m = http_get(admin, "/metrics").expect("metrics");
        if m.contains("edge_l4_flows_opened_total{service=\"127.0.0.1:9000/tcp\"} 0") {
            break m;
        }
        assert!(Instant::now() < deadline, "no L4 series: {m}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        metrics.contains("# TYPE edge_l4_rate_limited counter"),
        "{metrics}"
    );
    assert!(metrics.trim_end().ends_with("# EOF"), "{metrics}");

    let pid = child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill")
            .success()
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    let code = loop {
        if let Some(st) = child.0.try_wait().expect("wait") {
            break st;
        }
        assert!(Instant::now() < deadline, "edge did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(code.success(), "exit status {code:?}");
    let mut logs = String::new();
    if let Some(mut e) = child.0.stderr.take() {
        let _ = e.read_to_string(&mut logs);
    }
    // JSON logs: one object per line, the last says we stopped.
    let last = logs.lines().last().expect("some logs");
    let v: serde_json::Value = serde_json::from_str(last).expect("json log line");
    assert_eq!(v["fields"]["message"], "stopped", "{logs}");
}

#[test]
fn run_refuses_an_unknown_node_and_a_busy_admin_port() {
    let out = Command::new(EDGE)
        .args(["run", "--node", "ghost"])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no node \"ghost\""));

    let busy = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = busy.local_addr().expect("addr").to_string();
    let out = Command::new(EDGE)
        .args(["run", "--admin", &addr])
        .output()
        .expect("run");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("binding the admin API"));
}

/// Waits until `/status` satisfies `pred`, returning the JSON.
fn wait_status(
    admin: SocketAddr,
    what: &str,
    timeout: Duration,
    pred: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let deadline = Instant::now() + timeout;
    let mut last = serde_json::Value::Null;
    while Instant::now() < deadline {
        if let Some(r) = http_get(admin, "/status")
            && let Some(body) = r.split("\r\n\r\n").nth(1)
            && let Ok(v) = serde_json::from_str::<serde_json::Value>(body)
        {
            if pred(&v) {
                return v;
            }
            last = v;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("timed out waiting for {what}; last status: {last:#}");
}

#[test]
fn active_checks_drive_the_vip_verdict() {
    let up = TcpListener::bind("127.0.0.1:0").expect("bind");
    let up_port = up.local_addr().expect("addr").port();
    let down_port = free_port().port();
    let gossip = free_port();
    let cfg = edge_topology_demo()
        .replace("port = 18081", &format!("port = {up_port}"))
        .replace("port = 18082", &format!("port = {down_port}"))
        .replace(
            "interval = \"1s\", timeout = \"500ms\"",
            "interval = \"100ms\", timeout = \"100ms\"",
        )
        .replace("127.0.0.1:7946", &gossip.to_string())
        .replace("port = 5353", &format!("port = {}", free_port().port()));
    let node = run_demo(&cfg, &["--no-vip-on-lo", "--no-listeners"]);
    let admin = node.admin;
    let v = wait_status(
        admin,
        "demo VIP announced, both checks concluded",
        Duration::from_secs(10),
        |v| v["vips"][0]["verdict"]["decision"] == "announce" && v["backends"]["demo-b2"].is_boolean(),
    );
    assert_eq!(v["backends"]["demo-b1"], true, "{v:#}");
    assert_eq!(v["backends"]["demo-b2"], false, "{v:#}");
    assert_eq!(v["pools"]["demo"].as_array().map(|a| a.len()), Some(1), "{v:#}");

    // Kill the only healthy backend: after `fall` failures the VIP goes.
    drop(up);
    let t0 = Instant::now();
    let v = wait_status(admin, "demo VIP withdrawn", Duration::from_secs(5), |v| {
        v["vips"][0]["verdict"]["decision"] == "withdraw"
    });
    eprintln!("withdraw verdict {:?} after the backend died", t0.elapsed());
    assert_eq!(v["backends"]["demo-b1"], false);
    let m = http_get(admin, "/metrics").expect("metrics");
    assert!(m.contains("edge_vip_announced{vip=\"demo\"} 0"), "{m}");
    assert!(m.contains("edge_backend_up{backend=\"demo-b1\"} 0"), "{m}");
    assert!(m.contains("edge_bus_members 1"), "{m}");
    assert!(m.contains("edge_operator_drains 0"), "{m}");
}

/// An `edge run` of a topology text, on loopback, with its admin API on a
/// free port; killed when dropped.
struct DemoNode {
    child: Killed,
    admin: SocketAddr,
    file: PathBuf,
    _dir: tempfile::TempDir,
}

fn run_demo(config: &str, flags: &[&str]) -> DemoNode {
    let admin = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("demo.toml");
    std::fs::write(&file, config).expect("write");
    let child = Command::new(EDGE)
        .arg("run")
        .args(flags)
        .arg("--config")
        .arg(&file)
        .args(["--admin", &admin.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn edge");
    DemoNode {
        child: Killed(child),
        admin,
        file,
        _dir: dir,
    }
}

fn edge_topology_demo() -> String {
    std::fs::read_to_string(repo().join("topology/examples/loopback-demo.toml")).expect("demo")
}

#[test]
fn reload_installs_a_valid_file_and_refuses_a_broken_one() {
    let gossip = free_port();
    let base = edge_topology_demo()
        .replace("127.0.0.1:7946", &gossip.to_string())
        .replace("port = 5353", &format!("port = {}", free_port().port()));
    let node = run_demo(&base, &["--no-vip-on-lo", "--no-listeners"]);
    let admin = node.admin;
    let vip_count = |v: &serde_json::Value| v["vips"].as_array().map(|a| a.len());
    wait_status(admin, "node up", Duration::from_secs(10), |v| {
        vip_count(v) == Some(1)
    });
    let reload = || {
        Command::new(EDGE)
            .args(["reload", "--admin", &admin.to_string()])
            .output()
            .expect("edge reload")
    };

    // A broken file: refused with its errors, the old config keeps running.
    std::fs::write(
        &node.file,
        base.replace("sites = [\"local\"]", "sites = [\"nowhere\"]"),
    )
    .expect("write");
    let out = reload();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("vips.demo.sites[0]: unknown site \"nowhere\""),
        "{err}"
    );
    let v = wait_status(admin, "still serving", Duration::from_secs(2), |v| {
        vip_count(v) == Some(1)
    });
    assert_eq!(v["vips"][0]["name"], "demo");

    // A valid change through the admin API.
    let with_extra = format!("{base}\n[vips.extra]\nprefixes = [\"127.0.0.2/32\"]\nsites = [\"local\"]\n");
    std::fs::write(&node.file, &with_extra).expect("write");
    let out = reload();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("2 VIPs"));
    wait_status(admin, "extra VIP", Duration::from_secs(5), |v| {
        vip_count(v) == Some(2) && v["vips"][1]["verdict"]["decision"] == "announce"
    });

    // And one through SIGHUP.
    std::fs::write(&node.file, &base).expect("write");
    let pid = node.child.0.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .expect("kill")
            .success()
    );
    wait_status(
        admin,
        "extra VIP gone after SIGHUP",
        Duration::from_secs(5),
        |v| vip_count(v) == Some(1),
    );
}

#[test]
fn validate_checks_l7_rules_in_the_l7_syntax() {
    let dir = tempfile::tempdir().expect("tempdir");
    let f = dir.path().join("bad-l7.toml");
    let text = std::fs::read_to_string(repo().join("topology/examples/haproxy-frontend.toml"))
        .expect("read")
        .replace(
            "match = [{ path_prefix = \"/api\" }]",
            "match = [{ path_starts = \"/api\" }]",
        );
    std::fs::write(&f, text).expect("write");
    let out = Command::new(EDGE)
        .arg("validate")
        .arg(&f)
        .output()
        .expect("run edge");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.contains("node ams-e1") && stdout.contains("path_starts"),
        "{stdout}"
    );
    // A route naming a pool that does not exist is a topology error.
    let text = std::fs::read_to_string(repo().join("topology/examples/haproxy-frontend.toml"))
        .expect("read")
        .replace("action = { pool = \"api\" }", "action = { pool = \"apii\" }");
    std::fs::write(&f, text).expect("write");
    let out = Command::new(EDGE)
        .arg("validate")
        .arg(&f)
        .output()
        .expect("run edge");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("services.www.l7[0].routes[2].action.pool: unknown pool \"apii\""),
        "{stdout}"
    );
}

#[test]
fn lab_clab_writes_the_committed_containerlab_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(EDGE)
        .args(["lab", "clab"])
        .arg(repo().join("labs/two-pop/deployment.toml"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .expect("edge lab clab");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let fresh = std::fs::read_to_string(dir.path().join("twopop.clab.yml")).expect("generated");
    let committed =
        std::fs::read_to_string(repo().join("labs/two-pop/clab/twopop.clab.yml")).expect("committed");
    assert_eq!(
        fresh, committed,
        "regenerate with `edge lab clab labs/two-pop/deployment.toml`"
    );
}

/// A tiny HTTP/1.1 server answering every request with `status` and `body`.
fn http_backend(status: u16, body: &'static str) -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {
                            let resp = format!(
                                "HTTP/1.1 {status} X\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(resp.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
    port
}

#[test]
fn passive_health_ejects_a_backend_that_keeps_failing() {
    let bad = http_backend(500, "bad");
    let good = http_backend(200, "good");
    let l7 = free_port().port();
    let l4 = free_port().port();
    let cfg = edge_topology_demo()
        .replace("port = 18081", &format!("port = {bad}"))
        .replace("port = 18082", &format!("port = {good}"))
        .replace("127.0.0.1:7946", &free_port().to_string())
        .replace("port = 5353", &format!("port = {}", free_port().port()))
        .replace("port = 9000", &format!("port = {l4}"))
        .replace("l7 = [{ port = 8080 }]", &format!("l7 = [{{ port = {l7} }}]"))
        .replace(
            "check = { kind = \"tcp\", interval = \"1s\", timeout = \"500ms\", rise = 2, fall = 3 }",
            "check = { kind = \"tcp\", interval = \"100ms\", timeout = \"100ms\", rise = 1, fall = 1 }\nl7 = { balance = { algorithm = \"round_robin\" } }",
        );
    let node = run_demo(&cfg, &["--no-vip-on-lo"]);
    let admin = node.admin;
    wait_status(admin, "both backends up", Duration::from_secs(10), |v| {
        v["backends"]["demo-b1"] == true && v["backends"]["demo-b2"] == true
    });
    let l7addr: SocketAddr = format!("127.0.0.1:{l7}").parse().expect("addr");
    let mut answers = Vec::new();
    for _ in 0..30 {
        let r = http_get(l7addr, "/").unwrap_or_default();
        answers.push(if r.ends_with("good") {
            "good"
        } else if r.ends_with("bad") {
            "bad"
        } else {
            "error"
        });
        std::thread::sleep(Duration::from_millis(20));
    }
    let bad_seen = answers.iter().filter(|a| **a == "bad").count();
    // Round robin sends every other request to the bad backend until five
    // consecutive failures eject it; after that only the good one answers.
    assert!((5..=6).contains(&bad_seen), "{answers:?}");
    assert!(
        answers[answers.len() - 15..].iter().all(|a| *a == "good"),
        "{answers:?}"
    );
}

/// Sends `n` A queries for www.edge.example. over UDP at about 2000/s
/// (a burst for RRL) and counts full (not truncated) answers. A reader
/// thread drains the answers as they come, so the server never has more
/// than a few queries in flight.
fn dns_burst(server: SocketAddr, n: u16) -> usize {
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    sock.set_read_timeout(Some(Duration::from_millis(1000)))
        .expect("timeout");
    let reader = sock.try_clone().expect("clone");
    let counter = std::thread::spawn(move || {
        let mut full = 0;
        let mut buf = [0u8; 1500];
        while let Ok((len, _)) = reader.recv_from(&mut buf) {
            // Header byte 2, bit 0x02: TC (a slipped, truncated answer).
            if len > 12 && buf[2] & 0x02 == 0 {
                full += 1;
            }
        }
        full
    });
    for id in 0..n {
        let mut q = Vec::new();
        q.extend_from_slice(&id.to_be_bytes());
        q.extend_from_slice(&[0x00, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
        for label in ["www", "edge", "example"] {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, 1, 0, 1]);
        let _ = sock.send_to(&q, server);
        if id % 10 == 9 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    counter.join().expect("reader")
}

#[test]
fn dns_rate_limiting_is_configurable() {
    for (rrl, expect_all) in [("", false), ("rrl = { responses_per_second = 0 }\n", true)] {
        let dns = free_port();
        let cfg = edge_topology_demo()
            .replace("127.0.0.1:7946", &free_port().to_string())
            .replace("port = 9000", &format!("port = {}", free_port().port()))
            .replace(
                "l7 = [{ port = 8080 }]",
                &format!("l7 = [{{ port = {} }}]", free_port().port()),
            )
            .replace("port = 5353\n", &format!("port = {}\n{rrl}", dns.port()));
        let node = run_demo(&cfg, &["--no-vip-on-lo"]);
        let admin = node.admin;
        wait_status(admin, "node up", Duration::from_secs(10), |_| true);
        let full = dns_burst(dns, 300);
        if expect_all {
            assert_eq!(full, 300, "RRL off: every query answered");
        } else {
            assert!(
                (50..250).contains(&full),
                "default RRL (50/s, burst 100) limits a burst: {full}"
            );
        }
    }
}

/// A demo node whose checks cannot conclude for a few seconds (they probe a
/// port that accepts and never answers, with a long timeout), with both
/// backends really serving on their own ports.
fn slow_check_demo(init_state: &str) -> (DemoNode, SocketAddr, TcpListener) {
    let b1 = http_backend(200, "good");
    let b2 = http_backend(200, "good");
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    let l7 = free_port().port();
    let cfg = edge_topology_demo()
        .replace("port = 18081", &format!("port = {b1}"))
        .replace("port = 18082", &format!("port = {b2}"))
        .replace("127.0.0.1:7946", &free_port().to_string())
        .replace("port = 5353", &format!("port = {}", free_port().port()))
        .replace("port = 9000", &format!("port = {}", free_port().port()))
        .replace("l7 = [{ port = 8080 }]", &format!("l7 = [{{ port = {l7} }}]"))
        .replace(
            "check = { kind = \"tcp\", interval = \"1s\", timeout = \"500ms\", rise = 2, fall = 3 }",
            &format!(
                "check = {{ kind = \"http\", port = {silent_port}, interval = \"8s\", timeout = \"4s\", \
                 rise = 1, fall = 1, init_state = \"{init_state}\" }}"
            ),
        );
    let node = run_demo(&cfg, &["--no-vip-on-lo"]);
    let l7addr: SocketAddr = format!("127.0.0.1:{l7}").parse().expect("addr");
    (node, l7addr, silent)
}

/// The first answer of the node's L7 listener, as soon as it accepts.
fn first_answer(l7: SocketAddr) -> (String, Duration) {
    let t0 = Instant::now();
    loop {
        if let Some(r) = http_get(l7, "/") {
            return (r, t0.elapsed());
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "L7 listener never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_starting_node_serves_before_its_first_checks_but_announces_only_after_them() {
    let (node, l7, _silent) = slow_check_demo("up");
    let (answer, after) = first_answer(l7);
    assert!(
        answer.starts_with("HTTP/1.1 200"),
        "init_state up: no 503 at start: {answer}"
    );
    assert!(answer.ends_with("good"), "{answer}");
    let v = wait_status(node.admin, "a plan", Duration::from_secs(5), |v| {
        v["plan"]["generation"].as_u64() > Some(0)
    });
    assert!(
        v["backends"].as_object().is_some_and(|b| b.is_empty()),
        "no check has concluded yet ({after:?} after start), so this proves nothing: {v:#}"
    );
    assert_eq!(v["vips"][0]["verdict"]["decision"], "withdraw", "{v:#}");
    assert_eq!(v["vips"][0]["announcement"], "withdrawn", "{v:#}");
    assert_eq!(v["pools"]["demo"].as_array().map(Vec::len), Some(2), "{v:#}");
    // The first results (timeouts) take the backends out.
    wait_status(
        node.admin,
        "checks concluded down",
        Duration::from_secs(15),
        |v| v["backends"]["demo-b1"] == false && v["backends"]["demo-b2"] == false,
    );
    let r = http_get(l7, "/").expect("answer");
    assert!(r.starts_with("HTTP/1.1 503"), "{r}");
}

#[test]
fn with_init_state_down_a_starting_node_sends_nothing_before_a_check_passes() {
    let (node, l7, _silent) = slow_check_demo("down");
    let (answer, _) = first_answer(l7);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let v = wait_status(node.admin, "a plan", Duration::from_secs(5), |v| {
        v["plan"]["generation"].as_u64() > Some(0)
    });
    assert_eq!(v["pools"]["demo"].as_array().map(Vec::len), Some(0), "{v:#}");
}

#[test]
fn upgrade_hands_every_socket_to_a_new_process_without_a_failed_request() {
    let b1 = http_backend(200, "good");
    let b2 = http_backend(200, "good");
    let l7 = free_port().port();
    let dns = free_port().port();
    let cfg = edge_topology_demo()
        .replace("port = 18081", &format!("port = {b1}"))
        .replace("port = 18082", &format!("port = {b2}"))
        .replace("127.0.0.1:7946", &free_port().to_string())
        .replace("port = 5353", &format!("port = {dns}"))
        .replace("port = 9000", &format!("port = {}", free_port().port()))
        .replace("l7 = [{ port = 8080 }]", &format!("l7 = [{{ port = {l7} }}]"))
        .replace(
            "interval = \"1s\", timeout = \"500ms\"",
            "interval = \"100ms\", timeout = \"100ms\"",
        );
    let node = run_demo(&cfg, &["--no-vip-on-lo"]);
    let l7: SocketAddr = format!("127.0.0.1:{l7}").parse().expect("addr");
    let before = wait_status(node.admin, "announced", Duration::from_secs(10), |v| {
        v["vips"][0]["verdict"]["decision"] == "announce"
    });
    let old_pid = before["pid"].as_u64().expect("pid");
    // A keep-alive connection used before the upgrade, and a loop of new
    // connections during it.
    let mut kept = TcpStream::connect(l7).expect("connect");
    kept.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(kept, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
    let mut buf = [0u8; 256];
    let n = kept.read(&mut buf).expect("answer on the kept connection");
    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (ok, failed, upgrade) = std::thread::scope(|s| {
        let looper = s.spawn(|| {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match http_get(l7, "/") {
                    Some(r) if r.starts_with("HTTP/1.1 200") => ok += 1,
                    other => failed.push(other),
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            (ok, failed)
        });
        std::thread::sleep(Duration::from_millis(300));
        // A binary that does not exist: refused, nothing changes.
        let bad = Command::new(EDGE)
            .args([
                "upgrade",
                "--binary",
                "/nonexistent/edge",
                "--admin",
                &node.admin.to_string(),
            ])
            .output()
            .expect("edge upgrade");
        assert!(!bad.status.success());
        let out = Command::new(EDGE)
            .args(["upgrade", "--admin", &node.admin.to_string()])
            .output()
            .expect("edge upgrade");
        std::thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (ok, failed) = looper.join().expect("loop");
        (ok, failed, out)
    });
    let text = String::from_utf8_lossy(&upgrade.stdout).to_string();
    assert!(
        upgrade.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&upgrade.stderr)
    );
    assert!(text.contains("took over"), "{text}");
    eprintln!(
        "upgrade: {}; {ok} requests ok, {} failed",
        text.trim(),
        failed.len()
    );
    assert!(ok > 20, "{ok}");
    assert!(
        failed.is_empty(),
        "failed requests during the upgrade: {failed:?}"
    );
    let after = wait_status(node.admin, "the new process", Duration::from_secs(5), |v| {
        v["pid"].as_u64().is_some_and(|p| p != old_pid)
    });
    // Not our child: stopped when the test ends, whatever happens.
    let _new = TermOnDrop(after["pid"].to_string());
    assert_eq!(after["vips"][0]["verdict"]["decision"], "announce", "{after:#}");
    // The old process closed the idle keep-alive connection cleanly (a FIN,
    // not a reset), as a graceful drain does: the client opens a new one.
    let mut rest = Vec::new();
    match kept.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => panic!("the idle connection was reset instead of closed: {e}"),
    }
    // DNS is answered by the new process.
    let dig = Command::new("dig")
        .args([
            "+short",
            "+time=1",
            "+tries=2",
            "-p",
            &dns.to_string(),
            "@127.0.0.1",
            "www.edge.example",
        ])
        .output();
    if let Ok(d) = dig {
        assert_eq!(String::from_utf8_lossy(&d.stdout).trim(), "127.0.0.1");
    }
    // The old process exits once its connections are done; the new one
    // stops on SIGTERM as usual (the DemoNode's child is the old process).
    drop(kept);
    let new_pid = after["pid"].as_u64().expect("pid").to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::fs::metadata(format!("/proc/{old_pid}")).is_ok()
        && !std::fs::read_to_string(format!("/proc/{old_pid}/stat")).is_ok_and(|s| s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "the old process did not exit");
        std::thread::sleep(Duration::from_millis(50));
    }
    // SIGUSR2 upgrades too (to the binary the node was started from).
    let _ = Command::new("kill").args(["-USR2", &new_pid]).status();
    let third = wait_status(
        node.admin,
        "the process after SIGUSR2",
        Duration::from_secs(10),
        |v| {
            v["pid"]
                .as_u64()
                .is_some_and(|p| p.to_string() != new_pid && p != old_pid)
                && v["vips"][0]["verdict"]["decision"] == "announce"
        },
    );
    let _third = TermOnDrop(third["pid"].to_string());
}

/// Sends SIGTERM to a process when dropped (processes started by an
/// upgrade are not the test's children).
struct TermOnDrop(String);

impl Drop for TermOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("kill").args(["-TERM", &self.0]).status();
    }
}

#[test]
fn reload_dry_run_reports_the_changes_per_tier_and_applies_nothing() {
    let b1 = http_backend(200, "good");
    let b2 = http_backend(200, "good");
    let l7 = free_port().port();
    let l4 = free_port().port();
    let base = edge_topology_demo()
        .replace("port = 18081", &format!("port = {b1}"))
        .replace("port = 18082", &format!("port = {b2}"))
        .replace("127.0.0.1:7946", &free_port().to_string())
        .replace("port = 5353", &format!("port = {}", free_port().port()))
        .replace("port = 9000", &format!("port = {l4}"))
        .replace(
            "interval = \"1s\", timeout = \"500ms\"",
            "interval = \"100ms\", timeout = \"100ms\"",
        );
    let plain = base.replace("l7 = [{ port = 8080 }]", &format!("l7 = [{{ port = {l7} }}]"));
    let blocking = base.replace(
        "l7 = [{ port = 8080 }]",
        &format!(
            "l7 = [{{ port = {l7}, routes = [{{ name = \"block\", match = [{{ path_prefix = \"/blocked\" }}], \
             action = {{ deny = {{ status = 403 }} }} }}] }}]"
        ),
    );
    let node = run_demo(&plain, &["--no-vip-on-lo"]);
    let l7: SocketAddr = format!("127.0.0.1:{l7}").parse().expect("addr");
    wait_status(node.admin, "announced", Duration::from_secs(10), |v| {
        v["vips"][0]["verdict"]["decision"] == "announce"
    });
    let status_of = |path: &str| http_get(l7, path).map(|r| r.lines().next().unwrap_or_default().to_string());
    assert_eq!(status_of("/blocked").as_deref(), Some("HTTP/1.1 200 OK"));
    let reload = |args: &[&str]| {
        Command::new(EDGE)
            .arg("reload")
            .args(args)
            .args(["--admin", &node.admin.to_string()])
            .output()
            .expect("edge reload")
    };
    std::fs::write(&node.file, &blocking).expect("write");
    let dry = reload(&["--dry-run"]);
    let text = String::from_utf8_lossy(&dry.stdout).to_string();
    assert!(
        dry.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&dry.stderr)
    );
    assert!(text.contains("dry run, nothing applied"), "{text}");
    assert!(
        text.contains(&format!("l7: listener demo:{}: routes changed", l7.port())),
        "{text}"
    );
    assert_eq!(
        status_of("/blocked").as_deref(),
        Some("HTTP/1.1 200 OK"),
        "a dry run applies nothing"
    );
    let real = reload(&[]);
    let text = String::from_utf8_lossy(&real.stdout).to_string();
    assert!(
        real.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&real.stderr)
    );
    assert!(text.starts_with("ok: "), "{text}");
    assert!(text.contains("routes changed"), "{text}");
    assert_eq!(
        status_of("/blocked").as_deref().map(|s| &s[..12]),
        Some("HTTP/1.1 403")
    );
    // What only a restart can apply refuses the whole reload.
    let moved = blocking
        .replace("\"block\"", "\"block2\"")
        .replace(&format!("port = {l4}"), &format!("port = {}", free_port().port()));
    std::fs::write(&node.file, &moved).expect("write");
    let refused = reload(&[]);
    let err = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success(), "{err}");
    assert!(
        err.contains("need a restart") && err.contains("l4 listeners"),
        "{err}"
    );
    assert_eq!(
        status_of("/blocked").as_deref().map(|s| &s[..12]),
        Some("HTTP/1.1 403"),
        "the refused reload changed nothing"
    );
}
