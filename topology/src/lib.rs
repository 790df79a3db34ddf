//! `edge-topology`: the declarative model of a whole edge deployment.
//!
//! Owns the topology file schema (sites, routers, edge nodes, VIPs, services,
//! backend pools, DNS zones and GSLB records, the health bus), its loose serde
//! input form and the validated model built from it, with every error
//! reported at once together with its field path.
//!
//! Must never depend on tokio, sockets or any other edge crate: it is the
//! shared vocabulary every other crate builds on.

pub mod health;
pub mod model;
pub mod raw;
pub mod validate;

use std::fmt;
use std::path::Path;

pub use model::*;
pub use raw::RawDeployment;

/// One problem found in a topology file, at a field path such as
/// `sites.ams.nodes[1].router_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub path: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.reason)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TopologyError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not well-formed TOML or does not fit the schema (unknown
    /// field, wrong type); the message carries the line and column.
    #[error("{0}")]
    Parse(String),
    /// The file parsed but is inconsistent; every problem is listed.
    #[error("{}", display_all(.0))]
    Invalid(Vec<FieldError>),
}

fn display_all(errs: &[FieldError]) -> String {
    let mut s = format!("{} error(s):", errs.len());
    for e in errs {
        s.push_str("\n  ");
        s.push_str(&e.to_string());
    }
    s
}

impl TopologyError {
    /// The field errors, if this is a validation failure.
    pub fn field_errors(&self) -> &[FieldError] {
        match self {
            TopologyError::Invalid(v) => v,
            _ => &[],
        }
    }
}

/// Parses TOML text into the loose input form.
pub fn parse_raw(text: &str) -> Result<RawDeployment, TopologyError> {
    toml::from_str(text).map_err(|e| TopologyError::Parse(e.to_string()))
}

/// Parses and validates a topology from TOML text.
pub fn parse(text: &str) -> Result<Deployment, TopologyError> {
    validate::validate(&parse_raw(text)?)
}

/// Reads, parses and validates a topology file.
pub fn load(path: impl AsRef<Path>) -> Result<Deployment, TopologyError> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Io {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|e| match e {
        TopologyError::Parse(m) => TopologyError::Parse(format!("{}: {m}", path.display())),
        other => other,
    })
}

/// The single-node loopback demo topology that `edge run` uses when no
/// configuration file is given.
pub const DEMO: &str = include_str!("../examples/loopback-demo.toml");

/// The default two-PoP lab topology (`labs/two-pop/deployment.toml`).
pub const TWO_POP: &str = include_str!("../../labs/two-pop/deployment.toml");
