//! Zero-downtime binary upgrade: the running process starts the new binary
//! and hands it every listening socket over a unix socket (SCM_RIGHTS), as
//! HAProxy's seamless reload and Envoy's hot restart do.
//!
//! ```text
//!  old process                                  new process
//!  ───────────                                  ───────────
//!  listen on a private unix socket, spawn ────► connect (EDGE_UPGRADE_SOCKET)
//!  send each socket + the node's state   ────►  inherit the sockets, build every
//!                                               tier on them (nothing announced)
//!                                        ◄────  Built
//!  leave the bus, abandon BGP (no Cease:
//!  peers keep our routes as stale, RFC 4724)
//!                                        ────►  Go: join the bus, start BGP with
//!                                               the R bit and the old routes
//!                                        ◄────  Serving (first plan applied)
//!  stop accepting, finish in-flight
//!  requests and L4 flows, exit
//! ```
//!
//! Both processes accept from the same kernel sockets during the handover,
//! so no SYN and no query is refused. The old process leaves the VIP
//! addresses, the kernel dataplanes and the hand-off rules in place; the new
//! one adopts them.

use std::io::{IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use edge_bgp::Route;
use ipnet::IpNet;
use rustix::net::{
    AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, SocketAddrUnix, SocketType,
};
use serde::{Deserialize, Serialize};

use crate::sockets::SocketKey;

/// The environment variable that tells a new process where to take over.
pub const SOCKET_ENV: &str = "EDGE_UPGRADE_SOCKET";

/// How long each side waits for the other before it gives up.
const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// Largest message (a socket's key, or the node's state).
const MAX_MESSAGE: usize = 256 * 1024;

/// What the old process tells the new one besides the sockets.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// The routes it announced: the new process announces the same until
    /// its own checks have concluded, so the peers' tables do not change.
    pub routes: Vec<Route>,
    /// The VIP prefixes it put on `lo` (and would have removed at exit).
    pub local: Vec<IpNet>,
    /// Its version, for the logs.
    pub version: String,
}

#[derive(Debug, Serialize, Deserialize)]
enum Message {
    /// One listening socket (its descriptor travels with the message).
    Socket(SocketKey),
    State(State),
    Built,
    Go,
    Serving,
    Failed(String),
}

#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    #[error("{0}: {1}")]
    Io(&'static str, std::io::Error),
    #[error("the new process {0}")]
    Peer(String),
    #[error("protocol: {0}")]
    Protocol(String),
}

fn io(what: &'static str) -> impl FnOnce(std::io::Error) -> UpgradeError {
    move |e| UpgradeError::Io(what, e)
}

/// One end of the handover channel (a SOCK_SEQPACKET unix socket: one
/// message per send, with its descriptor).
struct Channel(OwnedFd);

impl Channel {
    fn send(&self, msg: &Message, fd: Option<&OwnedFd>) -> Result<(), UpgradeError> {
        let body = serde_json::to_vec(msg).map_err(|e| UpgradeError::Protocol(e.to_string()))?;
        let fds = fd.map(|f| [f.as_fd()]);
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        if let Some(fds) = &fds {
            control.push(SendAncillaryMessage::ScmRights(fds));
        }
        rustix::net::sendmsg(&self.0, &[IoSlice::new(&body)], &mut control, SendFlags::empty())
            .map_err(|e| UpgradeError::Io("sending on the handover socket", e.into()))?;
        Ok(())
    }

    fn recv(&self) -> Result<(Message, Option<OwnedFd>), UpgradeError> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            &self.0,
            &mut [IoSliceMut::new(&mut buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )
        .map_err(|e| UpgradeError::Io("receiving on the handover socket", e.into()))?;
        let mut fd = None;
        for m in control.drain() {
            if let RecvAncillaryMessage::ScmRights(mut fds) = m {
                fd = fds.next();
            }
        }
        if got.bytes == 0 {
            return Err(UpgradeError::Peer("closed the handover socket".into()));
        }
        let msg =
            serde_json::from_slice(&buf[..got.bytes]).map_err(|e| UpgradeError::Protocol(e.to_string()))?;
        Ok((msg, fd))
    }

    fn timeout(&self, t: Duration) -> Result<(), UpgradeError> {
        rustix::net::sockopt::set_socket_timeout(&self.0, rustix::net::sockopt::Timeout::Recv, Some(t))
            .map_err(|e| UpgradeError::Io("setting a timeout", e.into()))
    }

    fn expect(&self, want: &str, f: impl Fn(&Message) -> bool) -> Result<(), UpgradeError> {
        match self.recv()? {
            (m, _) if f(&m) => Ok(()),
            (Message::Failed(why), _) => Err(UpgradeError::Peer(format!("failed: {why}"))),
            (m, _) => Err(UpgradeError::Protocol(format!("expected {want}, got {m:?}"))),
        }
    }
}

/// The old process's side of an upgrade in progress.
pub struct Upgrade {
    chan: Channel,
    child: std::process::Child,
}

impl std::fmt::Debug for Upgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upgrade")
            .field("child", &self.child.id())
            .finish()
    }
}

impl Upgrade {
    /// Starts `exe` with `args`, hands it `sockets` and `state`, and waits
    /// until it has built every tier on them. Blocking. On an error the new
    /// process is killed and this one goes on as it was.
    pub fn start(
        exe: &Path,
        args: &[std::ffi::OsString],
        sockets: Vec<(SocketKey, OwnedFd)>,
        state: &State,
    ) -> Result<Upgrade, UpgradeError> {
        let path = socket_path();
        let listener = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None)
            .map_err(|e| UpgradeError::Io("creating the handover socket", e.into()))?;
        let addr =
            SocketAddrUnix::new(path.as_path()).map_err(|e| UpgradeError::Io("handover path", e.into()))?;
        rustix::net::bind(&listener, &addr)
            .map_err(|e| UpgradeError::Io("binding the handover socket", e.into()))?;
        // Only this user may connect; the peer's pid is checked as well.
        let _ = std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600));
        let cleanup = RemoveOnDrop(path.clone());
        rustix::net::listen(&listener, 1)
            .map_err(|e| UpgradeError::Io("listening on the handover socket", e.into()))?;
        rustix::io::ioctl_fionbio(&listener, true).map_err(|e| UpgradeError::Io("non-blocking", e.into()))?;
        let mut child = std::process::Command::new(exe)
            .args(args)
            .env(SOCKET_ENV, &path)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(io("starting the new binary"))?;
        let chan = match accept_child(&listener, &mut child) {
            Ok(c) => c,
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(e);
            }
        };
        drop(cleanup);
        let up = Upgrade { chan, child };
        let handed = (|| {
            up.chan.timeout(STEP_TIMEOUT)?;
            for (key, fd) in &sockets {
                up.chan.send(&Message::Socket(*key), Some(fd))?;
            }
            up.chan.send(&Message::State(state.clone()), None)?;
            up.chan.expect("Built", |m| matches!(m, Message::Built))
        })();
        match handed {
            Ok(()) => Ok(up),
            Err(e) => {
                up.abort();
                Err(e)
            }
        }
    }

    /// Tells the new process to announce and serve, and waits until it
    /// does (its first plan is applied). Blocking.
    pub fn go(&self) -> Result<(), UpgradeError> {
        self.chan.send(&Message::Go, None)?;
        self.chan.expect("Serving", |m| matches!(m, Message::Serving))
    }

    /// The new process's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the new process (the upgrade failed before it took over).
    pub fn abort(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Leaves the new process running on its own: the old one exits and is
    /// no longer its parent in any sense that matters (systemd follows the
    /// main pid it is told about).
    pub fn detach(self) {
        drop(self.chan);
        std::mem::forget(self.child);
    }
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn socket_path() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    std::env::temp_dir().join(format!("edge-upgrade-{}-{nanos}.sock", std::process::id()))
}

/// Accepts the new process's connection, and only its own.
fn accept_child(listener: &OwnedFd, child: &mut std::process::Child) -> Result<Channel, UpgradeError> {
    let deadline = Instant::now() + STEP_TIMEOUT;
    loop {
        match rustix::net::accept(listener) {
            Ok(fd) => {
                rustix::io::ioctl_fionbio(&fd, false).map_err(|e| UpgradeError::Io("blocking", e.into()))?;
                let cred = rustix::net::sockopt::socket_peercred(&fd)
                    .map_err(|e| UpgradeError::Io("reading the peer's credentials", e.into()))?;
                if cred.pid.as_raw_nonzero().get() as u32 == child.id() {
                    return Ok(Channel(fd));
                }
                tracing::warn!(
                    pid = cred.pid.as_raw_nonzero().get(),
                    "handover: a connection from another process, refused"
                );
            }
            Err(rustix::io::Errno::AGAIN) => {}
            Err(e) => return Err(UpgradeError::Io("accepting the new process", e.into())),
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(UpgradeError::Peer(format!(
                "exited before taking over ({status})"
            )));
        }
        if Instant::now() > deadline {
            return Err(UpgradeError::Peer("did not connect in time".into()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The new process's side: it takes over from the process that started it.
pub struct Takeover {
    chan: Channel,
    /// What the old process handed over besides the sockets.
    pub state: State,
}

impl std::fmt::Debug for Takeover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Takeover").field("state", &self.state).finish()
    }
}

impl Takeover {
    /// When this process was started by `edge upgrade`: connects to the old
    /// process and receives its sockets (handed to [`crate::sockets`]) and
    /// state. Blocking.
    pub fn from_env() -> Result<Option<Takeover>, UpgradeError> {
        let Some(path) = std::env::var_os(SOCKET_ENV) else {
            return Ok(None);
        };
        let fd = rustix::net::socket(AddressFamily::UNIX, SocketType::SEQPACKET, None)
            .map_err(|e| UpgradeError::Io("creating the handover socket", e.into()))?;
        let addr =
            SocketAddrUnix::new(Path::new(&path)).map_err(|e| UpgradeError::Io("handover path", e.into()))?;
        rustix::net::connect(&fd, &addr)
            .map_err(|e| UpgradeError::Io("connecting to the old process", e.into()))?;
        let chan = Channel(fd);
        chan.timeout(STEP_TIMEOUT)?;
        let mut sockets = Vec::new();
        let state = loop {
            match chan.recv()? {
                (Message::Socket(key), Some(fd)) => sockets.push((key, fd)),
                (Message::Socket(key), None) => {
                    return Err(UpgradeError::Protocol(format!(
                        "socket {key:?} without a descriptor"
                    )));
                }
                (Message::State(s), _) => break s,
                (m, _) => return Err(UpgradeError::Protocol(format!("unexpected {m:?}"))),
            }
        };
        tracing::info!(
            sockets = sockets.len(),
            from = %state.version,
            "taking over from the previous process"
        );
        crate::sockets::inherit(sockets);
        Ok(Some(Takeover { chan, state }))
    }

    /// Every tier is built on the inherited sockets: waits for the old
    /// process to leave the bus and BGP. Blocking.
    pub fn built(&self) -> Result<(), UpgradeError> {
        self.chan.send(&Message::Built, None)?;
        self.chan.expect("Go", |m| matches!(m, Message::Go))
    }

    /// The first plan is applied: the old process may stop accepting.
    pub fn serving(&self) -> Result<(), UpgradeError> {
        self.chan.send(&Message::Serving, None)
    }

    /// Tells the old process why this one gives up (it keeps serving).
    pub fn failed(&self, why: &str) {
        let _ = self.chan.send(&Message::Failed(why.to_string()), None);
    }
}
