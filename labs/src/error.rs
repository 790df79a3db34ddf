//! The one error type of the crate. Every variant names what was being done
//! (the command line, the file, the spec field) so a failing lab test or
//! `edge lab up` tells the reader where to look without re-running.

use std::path::PathBuf;
use std::time::Duration;

/// Errors from building, inspecting or tearing down a lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// The `LabSpec` is inconsistent or breaks a naming/address rule.
    /// Raised before anything is created.
    #[error("invalid lab spec: {0}")]
    Invalid(String),

    /// A command ran and exited unsuccessfully.
    #[error("command failed ({status}): {cmd}\n--- stderr ---\n{stderr}")]
    Command {
        cmd: String,
        status: String,
        stderr: String,
    },

    /// A command could not be started at all (binary missing, fork failed).
    #[error("cannot run {cmd}: {source}")]
    Spawn {
        cmd: String,
        #[source]
        source: std::io::Error,
    },

    /// Something did not happen within its time budget.
    #[error("timed out after {after:?}: {what}")]
    Timeout { what: String, after: Duration },

    /// A file-system operation failed.
    #[error("{context} ({path}): {source}")]
    Io {
        context: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// `state.json` is missing or unreadable, or names something unknown.
    #[error("lab state: {0}")]
    State(String),

    /// A router or namespace name that the lab does not have.
    #[error("unknown {kind} {name:?} in lab {lab:?}")]
    Unknown {
        kind: &'static str,
        name: String,
        lab: String,
    },

    /// Output of a tool could not be parsed (e.g. `vtysh ... json`).
    #[error("cannot parse output of {cmd}: {detail}")]
    Parse { cmd: String, detail: String },
}

/// Result alias used throughout `edge-labs`.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

impl LabError {
    pub(crate) fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LabError::Io {
            context,
            path: path.into(),
            source,
        }
    }
}
