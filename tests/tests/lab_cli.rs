//! `edge lab up / routes / status / exec / down` on the two-PoP topology,
//! driven through the `edge` binary as a user would, against real FRR and
//! BIRD routers in namespaces.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use edge_tests::{edge_bin, lab_ready, repo_root};

fn edge(args: &[&str], file: &Path, workdir: &Path) -> Output {
    let bin = edge_bin();
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --workspace --bins` before the tests",
        bin.display()
    );
    // `edge lab <verb> --file F --workdir W <rest>`: the flags go before
    // the rest, which for `exec` ends with `-- CMD`.
    let (head, rest) = args.split_at(args.len().min(2));
    let mut cmd = Command::new(bin);
    cmd.args(head)
        .arg("--file")
        .arg(file)
        .arg("--workdir")
        .arg(workdir)
        .args(rest);
    cmd.output().expect("run edge")
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn namespaces_with(prefix: &str) -> Vec<String> {
    let out = Command::new("ip")
        .args(["netns", "list"])
        .output()
        .expect("ip netns");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(String::from)
        .collect()
}

/// Tears the lab down even if an assertion fails half-way.
struct Down<'a> {
    file: &'a Path,
    workdir: &'a Path,
}
impl Drop for Down<'_> {
    fn drop(&mut self) {
        let _ = edge(&["lab", "down"], self.file, self.workdir);
    }
}

#[test]
fn lab_up_routes_and_down_on_the_two_pop_topology() {
    if !lab_ready(
        "lab_up_routes_and_down_on_the_two_pop_topology",
        &[
            "ip",
            "vtysh",
            "bird",
            "birdc",
            "/usr/lib/frr/bgpd",
            "/usr/lib/frr/zebra",
        ],
    ) {
        return;
    }
    // The default lab under another name, so it cannot collide with a lab
    // a developer has up on the same machine.
    // Laid out like the repository, so its `../geoip/lab.mmdb` resolves.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("topology")).expect("mkdir");
    std::fs::create_dir_all(dir.path().join("geoip")).expect("mkdir");
    std::fs::copy(
        repo_root().join("labs/geoip/lab.mmdb"),
        dir.path().join("geoip/lab.mmdb"),
    )
    .expect("copy");
    let file = dir.path().join("topology/deployment.toml");
    let topo = std::fs::read_to_string(repo_root().join("labs/two-pop/deployment.toml"))
        .expect("two-pop topology")
        .replace("name = \"two-pop\"", "name = \"clilab\"");
    std::fs::write(&file, topo).expect("write topology");
    let workdir = dir.path().join("work");
    let _down = Down {
        file: &file,
        workdir: &workdir,
    };

    let t0 = Instant::now();
    let up = edge(&["lab", "up"], &file, &workdir);
    assert!(up.status.success(), "edge lab up failed:\n{}", text(&up));
    assert!(text(&up).contains("Try next:"), "{}", text(&up));
    eprintln!("edge lab up took {:?}", t0.elapsed());
    assert_eq!(namespaces_with("edge-clilab-").len(), 14);

    // The eBGP session between the PoPs comes up and each router learns the
    // other PoP's client subnet, in its RIB and in its kernel table.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ams = edge(&["lab", "routes", "ams-r1", "198.18.2.0/24"], &file, &workdir);
        let nyc = edge(&["lab", "routes", "nyc-r1", "198.18.1.0/24"], &file, &workdir);
        let (a, n) = (text(&ams), text(&nyc));
        let ams_ok = a.contains("65002") && a.contains("198.18.2.0/24 via 198.18.100.2");
        let nyc_ok = n.contains("BGP.as_path: 65001") && n.contains("198.18.1.0/24 via 198.18.100.1");
        if ams_ok && nyc_ok {
            eprintln!("routes exchanged {:?} after lab up", t0.elapsed());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "routes not exchanged in 30 s\n--- ams-r1\n{a}\n--- nyc-r1\n{n}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // A client at ams reaches the nyc client across both routers.
    let ping = edge(
        &[
            "lab",
            "exec",
            "ams-c1",
            "--",
            "ping",
            "-c",
            "1",
            "-W",
            "2",
            "198.18.2.2",
        ],
        &file,
        &workdir,
    );
    assert!(ping.status.success(), "{}", text(&ping));

    // DNS steering through `edge lab dig`, and `edge lab fail/heal` of the
    // two ams backends moving the answer to nyc and back.
    let dig = |want: &str| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = edge(
                &[
                    "lab",
                    "dig",
                    "ams-c1",
                    "www.edge.example",
                    "--",
                    "+short",
                    "+time=1",
                ],
                &file,
                &workdir,
            );
            let got = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if got == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "dig answered {got:?}, want {want:?}: {}",
                text(&out)
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    };
    dig("198.51.100.10");
    for b in ["ams-b1", "ams-b2"] {
        let out = edge(&["lab", "fail", b], &file, &workdir);
        assert!(out.status.success(), "{}", text(&out));
    }
    dig("198.51.100.20");
    for b in ["ams-b1", "ams-b2"] {
        assert!(edge(&["lab", "heal", b], &file, &workdir).status.success());
    }
    dig("198.51.100.10");
    // A router losing its links, then getting them (and the routes) back.
    assert!(edge(&["lab", "fail", "nyc-r1"], &file, &workdir).status.success());
    let lost = edge(
        &[
            "lab",
            "exec",
            "ams-c1",
            "--",
            "ping",
            "-c",
            "1",
            "-W",
            "1",
            "198.18.2.2",
        ],
        &file,
        &workdir,
    );
    assert!(
        !lost.status.success(),
        "nyc must be unreachable while its router is down"
    );
    assert!(edge(&["lab", "heal", "nyc-r1"], &file, &workdir).status.success());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ping = edge(
            &[
                "lab",
                "exec",
                "ams-c1",
                "--",
                "ping",
                "-c",
                "1",
                "-W",
                "1",
                "198.18.2.2",
            ],
            &file,
            &workdir,
        );
        if ping.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "nyc unreachable after heal: {}",
            text(&ping)
        );
    }
    let bad = edge(&["lab", "fail", "nobody"], &file, &workdir);
    assert!(!bad.status.success() && text(&bad).contains("no backend, node or router"));

    let st = edge(&["lab", "status", "--json"], &file, &workdir);
    assert!(st.status.success(), "{}", text(&st));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("status json");
    assert_eq!(v["lab"], "clilab");

    // A second `up` is refused while the first is recorded.
    let again = edge(&["lab", "up"], &file, &workdir);
    assert!(!again.status.success());
    assert!(text(&again).contains("edge lab down"), "{}", text(&again));

    let down = edge(&["lab", "down"], &file, &workdir);
    assert!(down.status.success(), "{}", text(&down));
    let deadline = Instant::now() + Duration::from_secs(5);
    while !namespaces_with("edge-clilab-").is_empty() {
        assert!(
            Instant::now() < deadline,
            "namespaces left: {:?}",
            namespaces_with("edge-clilab-")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let pgrep = Command::new("pgrep")
        .args(["-f", "clilab"])
        .output()
        .expect("pgrep");
    assert!(
        pgrep.stdout.is_empty(),
        "processes left: {}",
        String::from_utf8_lossy(&pgrep.stdout)
    );
}
