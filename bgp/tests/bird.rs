//! Interop with BIRD 2 on loopback (the other router the labs use).
//!
//! Same rules as `frr.rs`: skips with a one-line reason when not root or
//! BIRD is missing, unless `EDGE_LAB=require`; BIRD runs in the foreground
//! (`-f`) as our child and a Drop guard kills it whatever happens.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use edge_bgp::{Community, PeerConfig, Route, Speaker, SpeakerConfig, State};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

struct Daemon {
    child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn skip_or_fail(reason: &str) -> bool {
    if std::env::var("EDGE_LAB").as_deref() == Ok("require") {
        panic!("EDGE_LAB=require but {reason}");
    }
    println!("skipping BIRD interop test: {reason}");
    true
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn birdc(sock: &Path, args: &[&str]) -> String {
    let out = Command::new("birdc")
        .arg("-s")
        .arg(sock)
        .args(args)
        .output()
        .expect("run birdc");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

async fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = tokio::time::Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bird_receives_and_withdraws_our_routes() {
    if !is_root() && skip_or_fail("not running as root") {
        return;
    }
    if !(have("bird") && have("birdc")) && skip_or_fail("BIRD 2 is not installed") {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let conf = dir.join("bird.conf");
    let sock = dir.join("bird.ctl");
    // `multihop`: loopback is not a directly connected neighbor for BIRD.
    std::fs::write(
        &conf,
        format!(
            "log \"{log}\" all;\n\
             router id 198.51.100.253;\n\
             protocol device {{ }}\n\
             protocol bgp edge {{\n  \
               local 127.0.0.1 port {port} as 65000;\n  \
               neighbor 127.0.0.1 as 65010;\n  \
               passive on;\n  multihop;\n  \
               hold time 3; keepalive time 1;\n  \
               ipv4 {{ import all; export none; }};\n  \
               ipv6 {{ import all; export none; }};\n\
             }}\n",
            log = dir.join("bird.log").display()
        ),
    )
    .unwrap();
    let child = Command::new("bird")
        .arg("-f")
        .arg("-c")
        .arg(&conf)
        .arg("-s")
        .arg(&sock)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn bird");
    let _bird = Daemon { child };
    wait_for("bird control socket", || sock.exists()).await;

    let mut peer = PeerConfig::new(LO, 65000);
    peer.port = port;
    peer.hold_time = 3;
    peer.connect_retry = Duration::from_millis(250);
    peer.connect_retry_max = Duration::from_secs(2);
    peer.next_hop_v4 = Some(Ipv4Addr::new(198, 51, 100, 1));
    peer.next_hop_v6 = Some("2001:db8::1".parse().unwrap());
    let speaker = Speaker::start(SpeakerConfig {
        local_as: 65010,
        router_id: Ipv4Addr::new(198, 51, 100, 1),
        listen: None,
        peers: vec![peer],
    })
    .await
    .unwrap();
    let v4 = Route::new("203.0.113.10/32".parse().unwrap())
        .with_med(50)
        .with_community(Community::new(65000, 100));
    let v6 = Route::new("2001:db8:ffff::10/128".parse().unwrap()).with_prepend(2);
    speaker.announce([v4, v6].into_iter().collect());
    wait_for("session established", || {
        speaker.sessions()[0].state == State::Established
    })
    .await;

    wait_for("203.0.113.10/32 in BIRD", || {
        birdc(&sock, &["show", "route", "all", "203.0.113.10/32"]).contains("BGP.as_path")
    })
    .await;
    let r = birdc(&sock, &["show", "route", "all", "203.0.113.10/32"]);
    assert!(r.contains("BGP.as_path: 65010\n"), "{r}");
    assert!(r.contains("BGP.med: 50"), "{r}");
    assert!(r.contains("BGP.community: (65000,100)"), "{r}");
    assert!(r.contains("BGP.next_hop: 198.51.100.1"), "{r}");
    wait_for("IPv6 route in BIRD", || {
        birdc(&sock, &["show", "route", "all", "2001:db8:ffff::10/128"])
            .contains("BGP.as_path: 65010 65010 65010")
    })
    .await;

    speaker.announce(Default::default());
    wait_for("routes withdrawn from BIRD", || {
        let a = birdc(&sock, &["show", "route", "all", "203.0.113.10/32"]);
        let b = birdc(&sock, &["show", "route", "all", "2001:db8:ffff::10/128"]);
        !a.contains("BGP.") && !b.contains("BGP.")
    })
    .await;
    speaker.shutdown().await;
    wait_for("BIRD logs our Cease", || {
        std::fs::read_to_string(dir.join("bird.log"))
            .unwrap_or_default()
            .contains("Administrative shutdown")
    })
    .await;
}
