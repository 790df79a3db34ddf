//! Batched UDP I/O for the server's receive loops: on Linux up to
//! [`BATCH`] datagrams per `recvmmsg` and the responses of a batch with one
//! `sendmmsg` (through `nix`'s safe wrappers: the workspace forbids unsafe
//! code); elsewhere one `recvfrom`/`sendto` at a time behind the same API.
//!
//! [`Receiver::recv`] and [`Sender::send`] are non-blocking and go through
//! [`UdpSocket::try_io`], so a `WouldBlock` clears tokio's readiness and the
//! caller awaits `readable()`/`writable()` as with `try_recv_from`.
//! [`Receiver::recv_blocking`] and [`Sender::send_blocking`] are for a
//! thread of its own on a blocking socket: the receive sleeps in the kernel
//! until a datagram comes (`MSG_WAITFORONE`: then takes what is queued), so
//! an idle-then-busy server makes two system calls per batch, not four
//! (`epoll_wait`, the receive, the send, and the receive that finds nothing).

use std::io;
use std::net::SocketAddr;

use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Most datagrams received (and responses sent) per system call; a loop
/// uses [`DnsOptions::udp_batch`](crate::DnsOptions::udp_batch) of them.
#[cfg(target_os = "linux")]
pub(crate) const MAX_BATCH: usize = 64;
#[cfg(not(target_os = "linux"))]
pub(crate) const MAX_BATCH: usize = 1;

/// Largest UDP query read (as hickory's UDP stream); longer datagrams are
/// truncated to this, as `recvfrom` does.
pub(crate) const RECV_BUFFER: usize = 4096;

/// One response waiting to be sent, with what to count for it.
#[derive(Debug)]
pub(crate) struct Reply<C> {
    pub dst: SocketAddr,
    pub bytes: Vec<u8>,
    pub count: Option<C>,
}

/// `nix`'s preallocated message headers hold raw pointers, so they are not
/// `Send` and cannot live in a loop's future (a task may move between
/// worker threads): each thread keeps its own, used only inside one
/// non-blocking call.
#[cfg(target_os = "linux")]
type Headers = nix::sys::socket::MultiHeaders<nix::sys::socket::SockaddrStorage>;

#[cfg(target_os = "linux")]
thread_local! {
    static RECV_HEADERS: std::cell::RefCell<Headers> =
        std::cell::RefCell::new(Headers::preallocate(MAX_BATCH, None));
    static SEND_HEADERS: std::cell::RefCell<Headers> =
        std::cell::RefCell::new(Headers::preallocate(MAX_BATCH, None));
}

/// Receive buffers of one loop.
pub(crate) struct Receiver {
    bufs: Vec<Vec<u8>>,
    /// (length, source) of each datagram of the last batch.
    got: Vec<(usize, Option<SocketAddr>)>,
}

impl Receiver {
    /// Receives up to `batch` datagrams per call (1 to [`MAX_BATCH`]).
    pub(crate) fn new(batch: usize) -> Self {
        let batch = batch.clamp(1, MAX_BATCH);
        Self {
            bufs: (0..batch).map(|_| vec![0u8; RECV_BUFFER]).collect(),
            got: Vec::with_capacity(batch),
        }
    }

    /// Receives what is queued, up to the batch size; `WouldBlock` when
    /// nothing is. The datagrams are then [`Self::datagram`]`(0..n)`.
    pub(crate) fn recv(&mut self, socket: &UdpSocket) -> io::Result<usize> {
        socket.try_io(Interest::READABLE, || self.recv_now(socket, false))
    }

    /// Waits for at least one datagram on a blocking socket (up to its read
    /// timeout: then `WouldBlock` or `TimedOut`), then takes what is queued,
    /// up to the batch size.
    pub(crate) fn recv_blocking(&mut self, socket: &std::net::UdpSocket) -> io::Result<usize> {
        self.recv_now(socket, true)
    }

    #[cfg(target_os = "linux")]
    fn recv_now(&mut self, socket: &impl std::os::fd::AsRawFd, wait: bool) -> io::Result<usize> {
        use std::io::IoSliceMut;

        use nix::sys::socket::{MsgFlags, recvmmsg};

        let flags = if wait {
            MsgFlags::MSG_WAITFORONE
        } else {
            MsgFlags::MSG_DONTWAIT
        };

        self.got.clear();
        let (bufs, got) = (&mut self.bufs, &mut self.got);
        RECV_HEADERS.with(|headers| {
            // On the stack, no allocation per batch: a plain array (nix ties
            // the headers' borrow to the slices, which rules out containers
            // with a destructor), empty slices past the batch.
            let mut iovs: [[IoSliceMut<'_>; 1]; MAX_BATCH] =
                std::array::from_fn(|_| [IoSliceMut::new(&mut [])]);
            let mut n = 0;
            for (slot, b) in iovs.iter_mut().zip(bufs.iter_mut()) {
                *slot = [IoSliceMut::new(b)];
                n += 1;
            }
            let iovs = iovs.get_mut(..n).ok_or(io::ErrorKind::InvalidInput)?;
            // Never re-entered: the borrow ends with this call.
            let mut headers = headers
                .try_borrow_mut()
                .map_err(|_| io::ErrorKind::ResourceBusy)?;
            let msgs = recvmmsg(socket.as_raw_fd(), &mut headers, iovs.iter_mut(), flags, None)?;
            for m in msgs {
                got.push((m.bytes.min(RECV_BUFFER), m.address.as_ref().and_then(std_addr)));
            }
            Ok(got.len())
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn recv_now(&mut self, socket: &UdpSocket, _wait: bool) -> io::Result<usize> {
        self.got.clear();
        let buf = self.bufs.first_mut().ok_or(io::ErrorKind::InvalidInput)?;
        let (n, src) = socket.try_recv_from(buf)?;
        self.got.push((n, Some(src)));
        Ok(1)
    }

    #[cfg(not(target_os = "linux"))]
    pub(crate) fn recv_blocking(&mut self, socket: &std::net::UdpSocket) -> io::Result<usize> {
        self.got.clear();
        let buf = self.bufs.first_mut().ok_or(io::ErrorKind::InvalidInput)?;
        let (n, src) = socket.recv_from(buf)?;
        self.got.push((n, Some(src)));
        Ok(1)
    }

    /// The `i`th datagram of the last batch and its source (`None`: an
    /// address of another family than IP, which cannot be answered).
    pub(crate) fn datagram(&self, i: usize) -> Option<(&[u8], Option<SocketAddr>)> {
        let (n, src) = *self.got.get(i)?;
        Some((self.bufs.get(i)?.get(..n)?, src))
    }
}

#[cfg(target_os = "linux")]
fn std_addr(a: &nix::sys::socket::SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::from(*v4));
    }
    a.as_sockaddr_in6().map(|v6| SocketAddr::from(*v6))
}

/// Sends batches of responses.
pub(crate) struct Sender {
    /// Destination addresses of the batch being sent, kept between calls
    /// (no allocation, and no copy of a large stack array, per batch).
    #[cfg(target_os = "linux")]
    addrs: Vec<Option<nix::sys::socket::SockaddrStorage>>,
}

impl Sender {
    pub(crate) fn new() -> Self {
        Self {
            #[cfg(target_os = "linux")]
            addrs: Vec::with_capacity(MAX_BATCH),
        }
    }

    /// Sends a prefix of `replies` (at least one, at most [`MAX_BATCH`]) and
    /// returns how many left. `WouldBlock`: none could be sent now; any other
    /// error is the first reply's own.
    pub(crate) fn send<C>(&mut self, socket: &UdpSocket, replies: &[Reply<C>]) -> io::Result<usize> {
        if replies.is_empty() {
            return Ok(0);
        }
        socket.try_io(Interest::WRITABLE, || self.send_now(socket, replies, false))
    }

    /// [`Self::send`] on a blocking socket: waits while the send buffer is
    /// full.
    pub(crate) fn send_blocking<C>(
        &mut self,
        socket: &std::net::UdpSocket,
        replies: &[Reply<C>],
    ) -> io::Result<usize> {
        if replies.is_empty() {
            return Ok(0);
        }
        #[cfg(target_os = "linux")]
        return self.send_now(socket, replies, true);
        #[cfg(not(target_os = "linux"))]
        {
            let r = replies.first().ok_or(io::ErrorKind::InvalidInput)?;
            socket.send_to(&r.bytes, r.dst)?;
            Ok(1)
        }
    }

    #[cfg(target_os = "linux")]
    fn send_now<C>(
        &mut self,
        socket: &impl std::os::fd::AsRawFd,
        replies: &[Reply<C>],
        wait: bool,
    ) -> io::Result<usize> {
        use std::io::IoSlice;

        use nix::sys::socket::{ControlMessage, MsgFlags, SockaddrStorage, sendmmsg};

        let flags = if wait {
            MsgFlags::empty()
        } else {
            MsgFlags::MSG_DONTWAIT
        };

        let replies = replies.get(..MAX_BATCH).unwrap_or(replies);
        SEND_HEADERS.with(|headers| {
            // On the stack, no allocation per batch (see `recv_now`).
            let mut iovs: [[IoSlice<'_>; 1]; MAX_BATCH] = [[IoSlice::new(&[])]; MAX_BATCH];
            let mut n = 0;
            for (slot, r) in iovs.iter_mut().zip(replies) {
                *slot = [IoSlice::new(&r.bytes)];
                n += 1;
            }
            let iovs = iovs.get(..n).ok_or(io::ErrorKind::InvalidInput)?;
            let addrs = &mut self.addrs;
            addrs.clear();
            addrs.extend(replies.iter().map(|r| Some(SockaddrStorage::from(r.dst))));
            // Never re-entered: the borrow ends with this call.
            let mut headers = headers
                .try_borrow_mut()
                .map_err(|_| io::ErrorKind::ResourceBusy)?;
            let no_cmsgs: [ControlMessage<'_>; 0] = [];
            let sent = sendmmsg(socket.as_raw_fd(), &mut headers, iovs, &*addrs, no_cmsgs, flags)?;
            Ok(sent.count())
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn send_now<C>(&mut self, socket: &UdpSocket, replies: &[Reply<C>], _wait: bool) -> io::Result<usize> {
        let r = replies.first().ok_or(io::ErrorKind::InvalidInput)?;
        socket.try_send_to(&r.bytes, r.dst)?;
        Ok(1)
    }
}
