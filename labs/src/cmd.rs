//! Running external tools with a time limit.
//!
//! The harness drives the kernel through `ip`, `sysctl`, `vtysh`, `birdc`
//! and `gobgp` subprocesses rather than netlink bindings: iproute2 is the
//! path verified in LAB-FACTS, error messages are the ones an engineer
//! would see typing the same command, and the builder stays readable as a
//! list of commands one can replay by hand.

use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use crate::error::{LabError, Result};

/// Default limit for one `ip`/`sysctl` call. They take milliseconds; a
/// hang means the machine is in trouble and the test should say so.
pub const CMD_TIMEOUT: Duration = Duration::from_secs(20);

/// The command line as a shell-like string, for error messages.
pub fn display(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        let a = a.to_string_lossy();
        if a.is_empty() || a.contains([' ', '\'', '"']) {
            s.push('\'');
            s.push_str(&a.replace('\'', "'\\''"));
            s.push('\'');
        } else {
            s.push_str(&a);
        }
    }
    s
}

/// Runs `cmd` to completion within `timeout` and returns its output
/// whatever the exit status. On timeout the child is killed.
pub fn output(cmd: &mut Command, timeout: Duration) -> Result<Output> {
    let line = display(cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().map_err(|source| LabError::Spawn {
        cmd: line.clone(),
        source,
    })?;
    let pid = child.id();
    // `wait_with_output` drains both pipes (no deadlock on large output);
    // running it on a thread lets us give up after `timeout`.
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(source)) => Err(LabError::Spawn { cmd: line, source }),
        Err(_) => {
            crate::procs::signal(pid, crate::procs::Sig::Kill);
            Err(LabError::Timeout {
                what: line,
                after: timeout,
            })
        }
    }
}

/// Runs `cmd` and fails unless it exits 0; returns stdout as text.
pub fn run(cmd: &mut Command, timeout: Duration) -> Result<String> {
    let out = output(cmd, timeout)?;
    check(cmd, out)
}

/// Turns an unsuccessful `Output` into [`LabError::Command`].
pub fn check(cmd: &Command, out: Output) -> Result<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let mut stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        if stderr.trim().is_empty() {
            // vtysh and birdc report errors on stdout.
            stderr = String::from_utf8_lossy(&out.stdout).into_owned();
        }
        Err(LabError::Command {
            cmd: display(cmd),
            status: out.status.to_string(),
            stderr,
        })
    }
}

/// `ip <args>` (in the root namespace, which only ever *names* lab
/// namespaces: `ip -n ns ...`, `ip link add ... netns ns`).
pub fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args), CMD_TIMEOUT)
}

/// `ip -n <ns> <args>`.
pub fn ip_n(ns: &str, args: &[&str]) -> Result<String> {
    run(Command::new("ip").arg("-n").arg(ns).args(args), CMD_TIMEOUT)
}

/// `ip netns exec <ns> <argv>` as a `Command` (not yet run).
pub fn netns_exec(ns: &str, argv: &[impl AsRef<std::ffi::OsStr>]) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", ns]);
    c.args(argv);
    c
}

/// Sets sysctls inside `ns` (`ip netns exec ns sysctl -qw k=v ...`).
pub fn sysctl(ns: &str, settings: &[&str]) -> Result<()> {
    let mut argv = vec!["sysctl", "-qw"];
    argv.extend_from_slice(settings);
    run(&mut netns_exec(ns, &argv), CMD_TIMEOUT).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_reports_command_and_stderr() {
        let err = run(
            Command::new("sh").args(["-c", "echo boom >&2; exit 3"]),
            CMD_TIMEOUT,
        )
        .expect_err("must fail")
        .to_string();
        assert!(err.contains("sh -c 'echo boom >&2; exit 3'"), "{err}");
        assert!(err.contains("boom"), "{err}");
        assert!(err.contains("exit status: 3"), "{err}");
    }

    #[test]
    fn timeout_kills_and_reports() {
        let t0 = std::time::Instant::now();
        let err = run(Command::new("sleep").arg("5"), Duration::from_millis(200)).expect_err("must time out");
        assert!(matches!(err, LabError::Timeout { .. }), "{err}");
        assert!(t0.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn missing_binary_is_a_spawn_error() {
        let err = run(&mut Command::new("/nonexistent/tool"), CMD_TIMEOUT).expect_err("fails");
        assert!(err.to_string().contains("cannot run /nonexistent/tool"), "{err}");
    }
}
