//! Socket options that neither the standard library nor socket2 provide:
//! TCP MD5 signatures (RFC 2385) and the Generalized TTL Security Mechanism
//! (GTSM, RFC 5082); and the scheduling priority of the BFD thread, which
//! neither nix nor the standard library can set.
//!
//! This is the only module of petrel with `unsafe` code. Each `unsafe` block is
//! a single `setsockopt(2)` call on a file descriptor borrowed from a live
//! socket, with a pointer to a properly initialised, correctly sized value that
//! outlives the call, or a single `sched_setscheduler(2)` / `setpriority(2)`
//! call on the calling thread.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, RawFd};

/// Maximum TCP MD5 key length accepted by Linux (`TCP_MD5SIG_MAXKEYLEN`).
pub const MD5_MAX_KEY_LEN: usize = 80;

/// Linux `struct tcp_md5sig` (include/uapi/linux/tcp.h).
#[repr(C)]
struct TcpMd5Sig {
    addr: libc::sockaddr_storage,
    flags: u8,
    prefixlen: u8,
    keylen: u16,
    ifindex: libc::c_int,
    key: [u8; MD5_MAX_KEY_LEN],
}

fn sockaddr_storage(addr: IpAddr) -> libc::sockaddr_storage {
    let sa: socket2::SockAddr = SocketAddr::new(addr, 0).into();
    let mut storage = std::mem::MaybeUninit::<libc::sockaddr_storage>::zeroed();
    let len = (sa.len() as usize).min(std::mem::size_of::<libc::sockaddr_storage>());
    // SAFETY: `storage` is zero-initialised and at least `len` bytes long;
    // `sa.as_ptr()` points to `sa.len()` valid bytes of a sockaddr.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr() as *const u8,
            storage.as_mut_ptr() as *mut u8,
            len,
        );
        storage.assume_init()
    }
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, value: &T) -> io::Result<()> {
    // SAFETY: `value` is a valid, initialised `T` that lives for the duration of
    // the call, and we pass its exact size. The kernel validates `fd`.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            value as *const T as *const libc::c_void,
            std::mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Install (or, with `key == None`, remove) the TCP MD5 key used with `peer`
/// on `sock`. Works on listening sockets (one key per peer address) and on
/// sockets before `connect`.
pub fn set_tcp_md5<S: AsRawFd>(sock: &S, peer: IpAddr, key: Option<&str>) -> io::Result<()> {
    let key = key.unwrap_or("").as_bytes();
    if key.len() > MD5_MAX_KEY_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "TCP MD5 key is {} bytes, the kernel allows at most {MD5_MAX_KEY_LEN}",
                key.len()
            ),
        ));
    }
    // A v4 peer on a dual-stack (v6) socket appears as a v4-mapped address.
    let mut sig = TcpMd5Sig {
        addr: sockaddr_storage(peer),
        flags: 0,
        prefixlen: 0,
        keylen: key.len() as u16,
        ifindex: 0,
        key: [0; MD5_MAX_KEY_LEN],
    };
    sig.key[..key.len()].copy_from_slice(key);
    setsockopt(sock.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_MD5SIG, &sig)
}

/// Configure GTSM (RFC 5082) on a socket talking to a peer of `family`:
/// send with TTL / hop limit 255 and drop anything that arrives with less than
/// `256 - max_hops`.
pub fn set_gtsm<S: AsRawFd>(sock: &S, ipv6: bool, max_hops: u8) -> io::Result<()> {
    let hops = max_hops.max(1) as libc::c_int;
    let min = 256 - hops;
    let fd = sock.as_raw_fd();
    if ipv6 {
        setsockopt(
            fd,
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            &255 as &libc::c_int,
        )?;
        setsockopt(fd, libc::IPPROTO_IPV6, libc::IPV6_MINHOPCOUNT, &min)
    } else {
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_TTL, &255 as &libc::c_int)?;
        setsockopt(fd, libc::IPPROTO_IP, libc::IP_MINTTL, &min)
    }
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are valid for writes of the sizes passed; the
    // kernel writes at most `len` bytes and validates `fd`.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            &mut value as *mut libc::c_int as *mut libc::c_void,
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// The TTL (IPv4) or hop limit (IPv6) of the segment that completed the TCP
/// handshake of an accepted connection.
///
/// Linux records it in the new socket's multicast TTL / hops field when it
/// creates the socket from the handshake (`tcp_v4_syn_recv_sock`,
/// `tcp_v6_syn_recv_sock`), so GTSM (RFC 5082) can be checked before a
/// single byte of the peer's OPEN is read: `IP_MINTTL` set after `accept`
/// cannot stop data that was queued before it.
pub fn handshake_ttl<S: AsRawFd>(sock: &S, ipv6: bool) -> io::Result<u8> {
    let v = if ipv6 {
        getsockopt_int(
            sock.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_MULTICAST_HOPS,
        )?
    } else {
        getsockopt_int(sock.as_raw_fd(), libc::IPPROTO_IP, libc::IP_MULTICAST_TTL)?
    };
    Ok(v.clamp(0, 255) as u8)
}

/// Set the outgoing TTL / hop limit without a minimum (plain eBGP multihop).
pub fn set_ttl<S: AsRawFd>(sock: &S, ipv6: bool, ttl: u8) -> io::Result<()> {
    let ttl = ttl as libc::c_int;
    if ipv6 {
        setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IPV6,
            libc::IPV6_UNICAST_HOPS,
            &ttl,
        )
    } else {
        setsockopt(sock.as_raw_fd(), libc::IPPROTO_IP, libc::IP_TTL, &ttl)
    }
}

/// Raise the calling thread's scheduling priority: `SCHED_FIFO` at
/// `rt_priority` when allowed (CAP_SYS_NICE), else nice -10. Returns what was
/// applied. On Linux both calls with id 0 apply to the calling thread only.
pub fn raise_thread_priority(rt_priority: i32) -> io::Result<&'static str> {
    let param = libc::sched_param {
        sched_priority: rt_priority,
    };
    // SAFETY: id 0 is the calling thread; `param` is a valid, initialised
    // sched_param that outlives the call.
    if unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) } == 0 {
        return Ok("SCHED_FIFO");
    }
    // SAFETY: plain integer arguments; id 0 is the calling thread.
    if unsafe { libc::setpriority(libc::PRIO_PROCESS, 0, -10) } == 0 {
        return Ok("nice -10");
    }
    Err(io::Error::last_os_error())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn md5_key_longer_than_kernel_limit_is_refused() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let long = "k".repeat(81);
        let err = set_tcp_md5(&s, "127.0.0.2".parse().unwrap(), Some(&long)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn md5_and_gtsm_apply_to_a_real_socket() {
        let s = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        set_tcp_md5(&s, "127.0.0.2".parse().unwrap(), Some("secret")).unwrap();
        set_tcp_md5(&s, "127.0.0.2".parse().unwrap(), None).unwrap();
        set_gtsm(&s, false, 1).unwrap();
        let s6 = std::net::TcpListener::bind("[::1]:0").unwrap();
        set_gtsm(&s6, true, 2).unwrap();
    }

    #[test]
    fn handshake_ttl_reports_the_ttl_the_client_sent() {
        for (ttl, v6, addr) in [
            (7u8, false, "127.0.0.1:0"),
            (255, false, "127.0.0.1:0"),
            (9, true, "[::1]:0"),
        ] {
            let l = std::net::TcpListener::bind(addr).unwrap();
            let target = l.local_addr().unwrap();
            let domain = socket2::Domain::for_address(target);
            let c = socket2::Socket::new(domain, socket2::Type::STREAM, None).unwrap();
            set_ttl(&c, v6, ttl).unwrap();
            c.connect(&target.into()).unwrap();
            let (accepted, _) = l.accept().unwrap();
            assert_eq!(handshake_ttl(&accepted, v6).unwrap(), ttl, "v6={v6}");
        }
    }
}
