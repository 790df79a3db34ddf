//! Process bookkeeping through `/proc`: is a PID alive, is it still the
//! process we started, and stopping it.
//!
//! A recorded PID is only signalled after its `/proc/PID/cmdline` has been
//! compared with what we launched: `edge lab down` may run long after the
//! lab died and the PID may belong to something else by then.

use std::time::{Duration, Instant};

/// Signals the harness sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sig {
    Term,
    Kill,
}

/// Sends `sig` to `pid`, ignoring errors (the process may be gone).
pub fn signal(pid: u32, sig: Sig) {
    let Some(p) = i32::try_from(pid).ok().and_then(rustix::process::Pid::from_raw) else {
        return;
    };
    let s = match sig {
        Sig::Term => rustix::process::Signal::TERM,
        Sig::Kill => rustix::process::Signal::KILL,
    };
    let _ = rustix::process::kill_process(p, s);
}

/// True when `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // Format: "pid (comm) S ...": the state follows the last ')', since
    // comm may itself contain parentheses or spaces.
    let state = stat
        .rfind(')')
        .and_then(|i| stat[i + 1..].split_whitespace().next());
    !matches!(state, Some("Z" | "X" | "x") | None)
}

/// The argv of `pid` from `/proc/PID/cmdline`, or `None` if it is gone.
pub fn cmdline(pid: u32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|&b| b == 0)
            .filter(|s| !s.is_empty())
            .map(|s| String::from_utf8_lossy(s).into_owned())
            .collect(),
    )
}

/// Whether `pid` still runs `argv`, either already exec'ed (`argv`) or
/// still inside the `ip netns exec <ns>` wrapper that execs it.
pub fn matches(pid: u32, ns: &str, argv: &[String]) -> bool {
    let Some(actual) = cmdline(pid) else {
        return false;
    };
    if actual == argv {
        return true;
    }
    let wrapped: Vec<String> = ["ip", "netns", "exec", ns]
        .iter()
        .map(|s| s.to_string())
        .chain(argv.iter().cloned())
        .collect();
    actual == wrapped
}

/// The PID stored in a pid file (FRR `-i`, BIRD `-P`), if readable.
pub fn read_pid_file(path: &std::path::Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Waits until none of `pids` is alive, up to `timeout`. `reap` is called
/// on every round so the owner can `try_wait` its own children (which
/// otherwise stay zombies and would look alive to a parent's waitpid).
/// Returns the PIDs still alive at the end.
pub fn wait_gone(pids: &[u32], timeout: Duration, mut reap: impl FnMut()) -> Vec<u32> {
    let deadline = Instant::now() + timeout;
    loop {
        reap();
        let left: Vec<u32> = pids.iter().copied().filter(|&p| alive(p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// SIGTERM, wait up to `grace`, then SIGKILL whatever is left and wait up
/// to 2 s more. Returns PIDs that survived even SIGKILL (should be none).
pub fn stop_all(pids: &[u32], grace: Duration, mut reap: impl FnMut()) -> Vec<u32> {
    for &p in pids {
        signal(p, Sig::Term);
    }
    let left = wait_gone(pids, grace, &mut reap);
    for &p in &left {
        signal(p, Sig::Kill);
    }
    wait_gone(&left, Duration::from_secs(2), reap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive_and_cmdline_of_self() {
        let me = std::process::id();
        assert!(alive(me));
        let argv = cmdline(me).expect("own cmdline");
        assert!(!argv.is_empty());
        assert!(matches(me, "x", &argv));
        assert!(!matches(me, "x", &["definitely-not-this".to_string()]));
    }

    #[test]
    fn stop_all_terminates_a_child() {
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("spawn sleep");
        let pid = child.id();
        assert!(alive(pid));
        let left = stop_all(&[pid], Duration::from_secs(2), || {
            let _ = child.try_wait();
        });
        assert!(left.is_empty());
        assert!(!alive(pid));
    }

    #[test]
    fn pid_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("x.pid");
        std::fs::write(&p, "1234\n").expect("write");
        assert_eq!(read_pid_file(&p), Some(1234));
        assert_eq!(read_pid_file(&dir.path().join("none")), None);
    }
}
