//! `state.json`: everything a lab created, so that another process
//! (`edge lab status`, `edge lab down`) can inspect and remove it.
//!
//! The file is rewritten after every kernel object or process is created,
//! so even a builder that crashes half-way leaves an accurate record.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{LabError, Result};
use crate::spec::{LabSpec, RouterKind};

/// File name of the state file inside the workdir.
pub const STATE_FILE: &str = "state.json";

/// Bumped when the layout changes incompatibly.
pub const STATE_VERSION: u32 = 1;

/// The persisted record of a lab.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    pub version: u32,
    pub lab: String,
    /// Absolute workdir.
    pub workdir: PathBuf,
    pub spec: LabSpec,
    /// Kernel namespace names this lab created, in creation order. Only
    /// namespaces that `ip netns add` actually created are listed, so
    /// teardown never deletes a namespace someone else owned.
    pub namespaces: Vec<String>,
    /// Processes in start order (router daemons and extra processes).
    pub processes: Vec<ProcessRecord>,
    pub routers: Vec<RouterRecord>,
}

/// One started process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProcessRecord {
    /// `r1/zebra`, `r1/bgpd`, `r2/bird`, or the `ProcessSpec` name.
    pub name: String,
    /// Local namespace name.
    pub namespace: String,
    /// Kernel namespace name.
    pub kernel_ns: String,
    /// The argv exec'ed inside the namespace (compared with
    /// `/proc/PID/cmdline` before signalling).
    pub argv: Vec<String>,
    pub pid: u32,
    /// Pid file the daemon writes itself (FRR `-i`, BIRD `-P`); read at
    /// teardown, never copied at start (BIRD writes it late).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_file: Option<PathBuf>,
    pub log: PathBuf,
}

/// Where to reach a router's control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterRecord {
    pub name: String,
    pub kind: RouterKind,
    pub namespace: String,
    pub kernel_ns: String,
    /// Config/log directory.
    pub dir: PathBuf,
    /// FRR: the `--vty_socket` directory; BIRD: the control socket;
    /// GoBGP: the gRPC address inside the namespace.
    pub control: String,
}

impl LabState {
    pub fn path(workdir: &Path) -> PathBuf {
        workdir.join(STATE_FILE)
    }

    /// Loads `<workdir>/state.json`.
    pub fn load(workdir: &Path) -> Result<LabState> {
        let path = Self::path(workdir);
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                LabError::State(format!(
                    "no {STATE_FILE} in {}: no lab is running from this workdir",
                    workdir.display()
                ))
            } else {
                LabError::io("reading lab state", &path, e)
            }
        })?;
        let state: LabState =
            serde_json::from_str(&text).map_err(|e| LabError::State(format!("{}: {e}", path.display())))?;
        if state.version != STATE_VERSION {
            return Err(LabError::State(format!(
                "{} has version {}, this build understands {STATE_VERSION}",
                path.display(),
                state.version
            )));
        }
        Ok(state)
    }

    /// Writes the state atomically (temp file + rename), so a reader never
    /// sees half a file.
    pub fn save(&self) -> Result<()> {
        let path = Self::path(&self.workdir);
        let tmp = self.workdir.join(format!(".{STATE_FILE}.tmp"));
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| LabError::State(format!("serialising state: {e}")))?;
        std::fs::write(&tmp, text).map_err(|e| LabError::io("writing lab state", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| LabError::io("writing lab state", &path, e))
    }

    /// Removes the state file (after a complete teardown).
    pub fn remove(workdir: &Path) -> Result<()> {
        let path = Self::path(workdir);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(LabError::io("removing lab state", &path, e)),
        }
    }

    pub fn router(&self, name: &str) -> Result<&RouterRecord> {
        self.routers
            .iter()
            .find(|r| r.name == name)
            .ok_or_else(|| LabError::Unknown {
                kind: "router",
                name: name.to_string(),
                lab: self.lab.clone(),
            })
    }

    /// Kernel name of a local namespace declared in the spec.
    pub fn kernel_ns(&self, ns: &str) -> Result<String> {
        if self.spec.namespaces.iter().any(|n| n.name == ns) {
            Ok(crate::names::kernel_ns(&self.lab, ns))
        } else {
            Err(LabError::Unknown {
                kind: "namespace",
                name: ns.to_string(),
                lab: self.lab.clone(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::tests::two_router_spec;

    #[test]
    fn save_load_roundtrip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = LabState {
            version: STATE_VERSION,
            lab: "unit".into(),
            workdir: dir.path().to_path_buf(),
            spec: two_router_spec(),
            namespaces: vec!["edge-unit-r1".into()],
            processes: vec![ProcessRecord {
                name: "r1/bgpd".into(),
                namespace: "r1".into(),
                kernel_ns: "edge-unit-r1".into(),
                argv: vec!["/usr/lib/frr/bgpd".into()],
                pid: 42,
                pid_file: Some(dir.path().join("bgpd.pid")),
                log: dir.path().join("bgpd.out"),
            }],
            routers: vec![],
        };
        state.save().expect("save");
        assert_eq!(LabState::load(dir.path()).expect("load"), state);
        assert_eq!(state.kernel_ns("r2").expect("declared"), "edge-unit-r2");
        assert!(state.kernel_ns("zz").is_err());
        LabState::remove(dir.path()).expect("remove");
        let err = LabState::load(dir.path()).expect_err("gone").to_string();
        assert!(err.contains("no lab is running"), "{err}");
    }
}
