//! `edge lab`: the command-line front end of the lab harness.

use std::process::ExitCode;

use anyhow::Result;
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Check the default lab topology.
    Check,
}

pub fn run(cmd: LabCommand) -> Result<ExitCode> {
    match cmd {
        LabCommand::Check => {
            let d = edge_topology::parse(edge_topology::TWO_POP)?;
            print!("{}", d.summary());
            Ok(ExitCode::SUCCESS)
        }
    }
}
