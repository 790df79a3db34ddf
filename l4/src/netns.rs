//! Runs work inside another network namespace from a dedicated thread.
//!
//! A kernel dataplane must be programmed from the namespace it serves:
//! DEVMAP values and `ip neigh` answers are interpreted in the namespace of
//! the *calling thread* (LAB-FACTS §0: an ifindex written from the root
//! namespace once pointed at the wrong device). Network namespaces are per
//! thread, so a thread that `setns(2)`s once and then runs every call keeps
//! all of them in the right place, and so do the processes it spawns
//! (`nft`, `ip`), which inherit the thread's namespace.
//!
//! ```text
//!  caller ── run(closure) ──► [mpsc] ──► NetnsThread (setns once) ── runs closure ──► reply
//! ```

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;

use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};
use thiserror::Error;

#[derive(Debug, Error)]
#[non_exhaustive]
pub enum NetnsError {
    #[error("cannot open network namespace {path}: {source}")]
    Open { path: PathBuf, source: std::io::Error },
    #[error("cannot enter network namespace {path}: {source}")]
    Enter { path: PathBuf, source: std::io::Error },
    #[error("cannot start the namespace thread: {0}")]
    Spawn(std::io::Error),
    #[error("the namespace thread for {0} is gone (a job panicked or it was stopped)")]
    Gone(PathBuf),
}

type Job = Box<dyn FnOnce() + Send + 'static>;

/// A thread living in one network namespace, running closures sent to it
/// one at a time. Dropping it stops the thread after the queued jobs.
pub struct NetnsThread {
    path: PathBuf,
    tx: Option<mpsc::Sender<Job>>,
    handle: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for NetnsThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NetnsThread").field("path", &self.path).finish()
    }
}

/// `/run/netns/<name>` for a name from `ip netns add`, or the path itself
/// when it contains a `/` (e.g. `/proc/<pid>/ns/net`).
pub fn ns_path(ns: &str) -> PathBuf {
    if ns.contains('/') {
        PathBuf::from(ns)
    } else {
        Path::new("/run/netns").join(ns)
    }
}

impl NetnsThread {
    /// Starts a thread in namespace `ns` (a name or a path, see [`ns_path`]).
    /// Returns once the thread is inside it, or with the reason it is not.
    pub fn spawn(ns: &str) -> Result<Self, NetnsError> {
        let path = ns_path(ns);
        let file = std::fs::File::open(&path).map_err(|source| NetnsError::Open {
            path: path.clone(),
            source,
        })?;
        let (tx, rx) = mpsc::channel::<Job>();
        let (ready_tx, ready_rx) = mpsc::sync_channel::<Result<(), std::io::Error>>(1);
        let handle = std::thread::Builder::new()
            .name(format!(
                "netns-{}",
                path.file_name()
                    .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
            ))
            .spawn(move || {
                let entered = move_into_link_name_space(
                    std::os::fd::AsFd::as_fd(&file),
                    Some(LinkNameSpaceType::Network),
                );
                let ok = entered.is_ok();
                // The caller is waiting on this; if it went away there is
                // nobody to run jobs for.
                if ready_tx.send(entered.map_err(std::io::Error::from)).is_err() || !ok {
                    return;
                }
                drop(file);
                while let Ok(job) = rx.recv() {
                    job();
                }
            })
            .map_err(NetnsError::Spawn)?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(NetnsThread {
                path,
                tx: Some(tx),
                handle: Some(handle),
            }),
            Ok(Err(source)) => {
                let _ = handle.join();
                Err(NetnsError::Enter { path, source })
            }
            Err(_) => {
                let _ = handle.join();
                Err(NetnsError::Gone(path))
            }
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` inside the namespace and returns its result. A panic in
    /// `f` is caught in the namespace thread (which keeps serving) and
    /// resumed here, in the caller.
    pub fn run<T, F>(&self, f: F) -> Result<T, NetnsError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            // The caller may have given up waiting; the result is then moot.
            let _ = reply_tx.send(result);
        });
        let gone = || NetnsError::Gone(self.path.clone());
        self.tx.as_ref().ok_or_else(gone)?.send(job).map_err(|_| gone())?;
        match reply_rx.recv().map_err(|_| gone())? {
            Ok(v) => Ok(v),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl Drop for NetnsThread {
    fn drop(&mut self) {
        // Closing the channel ends the loop once queued jobs are done.
        self.tx.take();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}
