//! `edge`: the binary that composes every tier of an edge node.
//!
//! Owns the command line, configuration loading, the node runtime (admin API,
//! metrics registry, shutdown) and the `edge lab` front end of the lab
//! harness. It holds no protocol logic: BGP, DNS, L4 and L7 live in their
//! crates and meet here. This is the only crate that uses `anyhow` and
//! `#[tokio::main]`.

mod admin;
mod cli;
mod controller;
mod dns;
mod health;
mod kernel;
mod l4;
mod l7;
mod lab;
mod latency;
mod outlier;
mod run;
mod sockets;

use std::process::ExitCode;

use clap::Parser;

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    quiet_broken_pipe();
    let cli = cli::Cli::parse();
    let _log_guard = cli::init_tracing(cli.log_format, cli.verbose);
    match cli::dispatch(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("edge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// `edge status | head` closes our stdout early; Rust's `println!` then
/// panics. Exit quietly with the shell's SIGPIPE status instead, as other
/// command-line tools do, and keep the default report for real panics.
fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.contains("failed printing to stdout") && msg.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}
