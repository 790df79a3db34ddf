//! `edge`: the binary. Owns `main`, the command line, the admin API's
//! command-line client and the `edge lab` front end of the lab harness.
//! The node itself (every tier composed, health, controller, admin server)
//! is the `edge-node` library; this crate only parses, dispatches and
//! prints. Must never hold node or protocol logic: what a node does belongs
//! to `edge-node` and the tier crates, so it can be tested without the CLI.

mod cli;
mod client;
mod lab;

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
