//! Zero-copy TCP relay with `splice(2)` (Linux).
//!
//! Each direction moves bytes socket → pipe → socket inside the kernel, so
//! payload never enters userspace: no copy into a userspace buffer and out
//! again as with `copy_bidirectional`. The semantics match
//! `copy_bidirectional`: each direction runs until EOF, then shuts down the
//! write half of the other socket; an error in either direction ends both.
//!
//! Readiness comes from tokio (`readable`/`writable` + `try_io`), so this is
//! still one task per connection with no blocking syscalls. All syscalls go
//! through `rustix`, which keeps the crate free of `unsafe`.

use std::io;

use rustix::net::Shutdown;
use rustix::pipe::{PipeFlags, SpliceFlags, pipe_with, splice};
use tokio::io::Interest;
use tokio::net::TcpStream;

/// Bytes asked of one splice call: the default pipe capacity (16 pages).
const CHUNK: usize = 64 * 1024;

/// Relays both directions until both have reached EOF. Returns bytes moved
/// `(a → b, b → a)`, like `copy_bidirectional`.
pub(super) async fn relay(a: &TcpStream, b: &TcpStream) -> io::Result<(u64, u64)> {
    tokio::try_join!(one_way(a, b), one_way(b, a))
}

async fn one_way(from: &TcpStream, to: &TcpStream) -> io::Result<u64> {
    let (pipe_out, pipe_in) = pipe_with(PipeFlags::NONBLOCK | PipeFlags::CLOEXEC)?;
    let flags = SpliceFlags::NONBLOCK | SpliceFlags::MOVE;
    let mut in_pipe = 0usize;
    let mut moved = 0u64;
    let mut eof = false;
    loop {
        // Fill: socket → pipe, while there is room and the peer may send.
        if !eof && in_pipe < CHUNK {
            let r = from.try_io(Interest::READABLE, || {
                splice(from, None, &pipe_in, None, CHUNK - in_pipe, flags).map_err(io::Error::from)
            });
            match r {
                Ok(0) => eof = true,
                Ok(n) => in_pipe += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    if in_pipe == 0 {
                        // Nothing to drain either: wait for the peer.
                        from.readable().await?;
                        continue;
                    }
                }
                Err(e) => return Err(e),
            }
        }
        // Drain: pipe → socket.
        if in_pipe > 0 {
            let r = to.try_io(Interest::WRITABLE, || {
                splice(&pipe_out, None, to, None, in_pipe, flags).map_err(io::Error::from)
            });
            match r {
                Ok(n) => {
                    in_pipe -= n;
                    moved += n as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => to.writable().await?,
                Err(e) => return Err(e),
            }
        } else if eof {
            // Propagate the half-close. ENOTCONN means the peer is already
            // gone, which is the state we wanted anyway.
            match rustix::net::shutdown(to, Shutdown::Write) {
                Ok(()) | Err(rustix::io::Errno::NOTCONN) => return Ok(moved),
                Err(e) => return Err(e.into()),
            }
        }
    }
}
