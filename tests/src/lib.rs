//! `edge-tests`: cross-crate and lab integration tests.
//!
//! The tests live under `tests/tests/`; this library holds the helpers they
//! share (finding the `edge` binary, deciding whether a lab test may run).
//! Lab tests assert through the peers' own tools (`vtysh`, `birdc`, `gobgp`,
//! `dig`), never through edge internals.

use std::path::PathBuf;

/// What a test that needs root or external tools should do when they are
/// missing: `EDGE_LAB=require` (CI) turns a missing prerequisite into a test
/// failure; anything else lets the test skip with a one-line reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LabMode {
    Require,
    Optional,
}

impl LabMode {
    pub fn from_env() -> Self {
        match std::env::var("EDGE_LAB").as_deref() {
            Ok("require") => LabMode::Require,
            _ => LabMode::Optional,
        }
    }
}

/// Checks that the process runs as root and that every named tool is on
/// `PATH` (or is an absolute path that exists). Returns `true` when the lab
/// test may run. When something is missing it panics under
/// `EDGE_LAB=require` and otherwise prints why the test is skipped and
/// returns `false`.
pub fn lab_ready(test: &str, tools: &[&str]) -> bool {
    let mut missing = Vec::new();
    if !is_root() {
        missing.push("root (uid 0)".to_string());
    }
    for tool in tools {
        if find_tool(tool).is_none() {
            missing.push((*tool).to_string());
        }
    }
    if missing.is_empty() {
        return true;
    }
    let msg = format!("{test}: needs {}", missing.join(", "));
    match LabMode::from_env() {
        LabMode::Require => panic!("{msg} (EDGE_LAB=require)"),
        LabMode::Optional => {
            eprintln!("SKIP {msg}; set EDGE_LAB=require to make this a failure");
            false
        }
    }
}

fn is_root() -> bool {
    // /proc/self/status "Uid:\treal\teffective..." avoids a libc dependency.
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|e| e == "0"))
        })
        .unwrap_or(false)
}

/// Finds a tool by absolute path or on `PATH` (plus the sbin directories,
/// which a non-login root shell may lack).
pub fn find_tool(tool: &str) -> Option<PathBuf> {
    let p = PathBuf::from(tool);
    if p.is_absolute() {
        return p.exists().then_some(p);
    }
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/sbin", "/usr/lib/frr"])
        .map(|d| PathBuf::from(d).join(tool))
        .find(|c| c.is_file())
}

/// The `edge` binary built for this test run.
pub fn edge_bin() -> PathBuf {
    // Integration tests of this crate run from target/<profile>/deps.
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .and_then(|d| d.parent())
        .map(PathBuf::from)
        .unwrap_or_default();
    dir.join("edge")
}

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// A lab built from a topology text the way `edge lab up --file` builds it:
/// routers, backends and one `edge run` per node. The lab (and so every
/// namespace and process) goes away when the returned value is dropped.
pub struct TopologyLab {
    pub lab: edge_labs::Lab,
    pub deployment: edge_topology::Deployment,
    /// Holds the topology file and the lab workdir.
    pub dir: tempfile::TempDir,
}

impl TopologyLab {
    pub fn up(topology: &str) -> TopologyLab {
        Self::up_with(topology, |_| {})
    }

    /// [`TopologyLab::up`], after `prepare` has written what the topology
    /// refers to (certificates, …) into the directory that holds it.
    pub fn up_with(topology: &str, prepare: impl FnOnce(&std::path::Path)) -> TopologyLab {
        let deployment = match edge_topology::parse(topology) {
            Ok(d) => d,
            Err(e) => panic!("test topology is invalid:\n{e}"),
        };
        // Laid out like the repository (topology/ next to geoip/), so the
        // two-PoP file's `../geoip/lab.mmdb` resolves.
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("topology")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("geoip")).expect("mkdir");
        std::fs::copy(
            repo_root().join("labs/geoip/lab.mmdb"),
            dir.path().join("geoip/lab.mmdb"),
        )
        .expect("copy the lab GeoIP database");
        let config = dir.path().join("topology/deployment.toml");
        std::fs::write(&config, topology).expect("write topology");
        prepare(&dir.path().join("topology"));
        let mut spec = edge_labs::plan::plan(&deployment).expect("lab plan");
        let edge_bin = edge_bin();
        assert!(
            edge_bin.exists(),
            "{} is missing: run `cargo build --workspace --bins` before the tests",
            edge_bin.display()
        );
        edge_labs::plan::add_programs(
            &mut spec,
            &deployment,
            &edge_labs::plan::Programs { edge_bin, config },
        );
        let lab = match edge_labs::Lab::up(&spec, &dir.path().join("work")) {
            Ok(l) => l,
            Err(e) => panic!("lab up failed: {e}"),
        };
        TopologyLab { lab, deployment, dir }
    }

    /// Runs `edge ARGS` inside a node's namespace (CLI against its admin API).
    pub fn edge(&self, node: &str, args: &[&str]) -> std::process::Output {
        let bin = edge_bin().display().to_string();
        let mut argv = vec![bin.as_str()];
        argv.extend_from_slice(args);
        self.lab.exec(node, &argv).expect("edge cli in the lab")
    }

    /// Polls `f` every 50 ms until it returns `Some`, for at most `timeout`;
    /// panics with `what` and the last value `last` produced otherwise.
    pub fn wait<T>(what: &str, timeout: std::time::Duration, mut f: impl FnMut() -> Result<T, String>) -> T {
        let t0 = std::time::Instant::now();
        loop {
            match f() {
                Ok(v) => return v,
                Err(last) => {
                    if t0.elapsed() > timeout {
                        panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
                    }
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }
}
