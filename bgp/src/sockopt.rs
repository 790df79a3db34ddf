//! Socket options for BGP session security that no crate exposes:
//! TCP-MD5 signatures (RFC 2385, `TCP_MD5SIG`) and the Generalized TTL
//! Security Mechanism (RFC 5082: send with TTL 255, accept only TTL ≥ 254).
//!
//! socket2, rustix and nix (checked at the versions in Cargo.lock) have
//! `IP_TTL` but neither `TCP_MD5SIG` nor `IP_MINTTL`/`IPV6_MINHOPCOUNT`, so
//! these are the only `setsockopt` calls written by hand. The MD5 option
//! takes a `struct tcp_md5sig`; it is laid out here as bytes with the
//! kernel's offsets (include/uapi/linux/tcp.h) rather than as a `repr(C)`
//! struct, so no padding or alignment question arises.
#![allow(unsafe_code)]

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsRawFd;

/// `TCP_MD5SIG_MAXKEYLEN`.
pub const MAX_KEY_LEN: usize = 80;
/// sizeof(struct tcp_md5sig): sockaddr_storage (128) + flags, prefixlen,
/// keylen (4) + ifindex (4) + key (80).
const MD5SIG_LEN: usize = 216;

fn setsockopt_raw(fd: i32, level: i32, name: i32, value: &[u8]) -> io::Result<()> {
    let len = libc::socklen_t::try_from(value.len()).map_err(|_| io::Error::other("option too large"))?;
    // SAFETY: `value` is a live, initialised buffer of exactly `len` bytes
    // for the duration of the call, and the kernel only reads from it.
    let rc = unsafe { libc::setsockopt(fd, level, name, value.as_ptr().cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn setsockopt_int(fd: i32, level: i32, name: i32, v: i32) -> io::Result<()> {
    setsockopt_raw(fd, level, name, &v.to_ne_bytes())
}

/// The `struct tcp_md5sig` bytes for `peer` and `key`.
fn md5sig(peer: IpAddr, key: &[u8]) -> io::Result<[u8; MD5SIG_LEN]> {
    if key.len() > MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("TCP-MD5 key longer than {MAX_KEY_LEN} bytes"),
        ));
    }
    let mut b = [0u8; MD5SIG_LEN];
    match peer {
        IpAddr::V4(a) => {
            // struct sockaddr_in: family, port, address.
            b[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
            b[4..8].copy_from_slice(&a.octets());
        }
        IpAddr::V6(a) => {
            // struct sockaddr_in6: family, port, flowinfo, address.
            b[0..2].copy_from_slice(&(libc::AF_INET6 as u16).to_ne_bytes());
            b[8..24].copy_from_slice(&a.octets());
        }
    }
    // tcpm_flags = 0, tcpm_prefixlen = 0 (exact address), keylen, ifindex 0.
    b[130..132].copy_from_slice(&(key.len() as u16).to_ne_bytes());
    b[136..136 + key.len()].copy_from_slice(key);
    Ok(b)
}

/// Signs (and requires signatures on) the TCP segments exchanged with
/// `peer` on this socket: set it on the connecting socket before `connect`
/// and on the listening socket for each peer that uses a password.
pub fn set_tcp_md5(sock: &impl AsRawFd, peer: IpAddr, key: &[u8]) -> io::Result<()> {
    let b = md5sig(peer, key)?;
    setsockopt_raw(sock.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_MD5SIG, &b)
}

/// RFC 5082 for a directly connected peer: our packets leave with TTL (hop
/// limit) 255 and the kernel drops the peer's packets that arrive with less
/// than 254, so nobody further away can reach the session.
pub fn set_gtsm(sock: &impl AsRawFd, peer: SocketAddr) -> io::Result<()> {
    let fd = sock.as_raw_fd();
    match peer {
        SocketAddr::V4(_) => {
            setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_TTL, 255)?;
            setsockopt_int(fd, libc::IPPROTO_IP, libc::IP_MINTTL, 254)
        }
        SocketAddr::V6(_) => {
            setsockopt_int(fd, libc::IPPROTO_IPV6, libc::IPV6_UNICAST_HOPS, 255)?;
            setsockopt_int(fd, libc::IPPROTO_IPV6, IPV6_MINHOPCOUNT, 254)
        }
    }
}

/// `IPV6_MINHOPCOUNT` from include/uapi/linux/in6.h (not in every libc).
const IPV6_MINHOPCOUNT: i32 = 73;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5sig_layout_matches_the_kernel_struct() {
        let b = md5sig("198.18.11.1".parse().unwrap(), b"secret").unwrap();
        assert_eq!(u16::from_ne_bytes([b[0], b[1]]), libc::AF_INET as u16);
        assert_eq!(&b[4..8], &[198, 18, 11, 1]);
        assert_eq!(u16::from_ne_bytes([b[130], b[131]]), 6);
        assert_eq!(&b[136..142], b"secret");
        let b6 = md5sig("2001:db8:11::1".parse().unwrap(), b"k").unwrap();
        assert_eq!(u16::from_ne_bytes([b6[0], b6[1]]), libc::AF_INET6 as u16);
        assert_eq!(b6[8..10], [0x20, 0x01]);
        assert!(md5sig("198.18.11.1".parse().unwrap(), &[0; 81]).is_err());
    }

    #[test]
    fn options_apply_to_real_sockets() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_gtsm(&s, s.local_addr().unwrap()).unwrap();
        // TCP_MD5SIG may be compiled out of a kernel; only then is an error fine.
        match set_tcp_md5(&s, "127.0.0.1".parse().unwrap(), b"secret") {
            Ok(()) => {}
            Err(e) => assert_eq!(e.raw_os_error(), Some(libc::ENOPROTOOPT), "{e}"),
        }
    }
}
