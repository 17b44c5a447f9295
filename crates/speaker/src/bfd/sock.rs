//! The sockets of the BFD driver (RFC 5881 §4–§5, RFC 5883 §5).
//!
//! - Four receive sockets: UDP 3784 (single hop) and 4784 (multihop), one
//!   IPv4 and one IPv6-only each. They ask the kernel for the received TTL /
//!   Hop Limit (`IP_RECVTTL`, `IPV6_RECVHOPLIMIT`) and the destination
//!   address and interface (`IP_PKTINFO`, `IPV6_RECVPKTINFO`), which the
//!   protocol core checks (GTSM) and demultiplexes with. A datagram without
//!   the TTL control message is handed on with TTL 0: it fails GTSM.
//! - One send socket per session, bound to the session's local address (when
//!   known) and a source port in 49152–65535, sending with TTL / Hop Limit 255.
//!
//! Everything goes through socket2 and nix: no `unsafe` here.

use nix::sys::socket::{
    ControlMessageOwned, MsgFlags, SockaddrStorage, recvmsg, setsockopt, sockopt,
};
use petrel_bfd::transport::{SOURCE_PORTS, TX_TTL, source_port_candidate};
use socket2::{Domain, Protocol, Socket, Type};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;

/// One datagram received on a BFD port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Datagram {
    pub len: usize,
    pub source: SocketAddr,
    /// Destination address (ours), unspecified if the kernel did not say.
    pub local: IpAddr,
    pub interface: u32,
    /// Received TTL / Hop Limit; 0 when the kernel did not report it.
    pub ttl: u8,
}

/// A receive socket for `port` of one family.
pub fn listener(v6: bool, port: u16) -> io::Result<Socket> {
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_address(true)?;
    let any: IpAddr = if v6 {
        s.set_only_v6(true)?;
        setsockopt(&s, sockopt::Ipv6RecvHopLimit, &true).map_err(io::Error::from)?;
        setsockopt(&s, sockopt::Ipv6RecvPacketInfo, &true).map_err(io::Error::from)?;
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        setsockopt(&s, sockopt::Ipv4RecvTtl, &true).map_err(io::Error::from)?;
        setsockopt(&s, sockopt::Ipv4PacketInfo, &true).map_err(io::Error::from)?;
        Ipv4Addr::UNSPECIFIED.into()
    };
    s.set_nonblocking(true)?;
    s.bind(&SocketAddr::new(any, port).into())?;
    Ok(s)
}

/// Receive one datagram into `buf` (non-blocking: `WouldBlock` when none).
pub fn receive<S: AsRawFd>(sock: &S, buf: &mut [u8]) -> io::Result<Datagram> {
    let mut iov = [IoSliceMut::new(buf)];
    let mut cmsg = nix::cmsg_space!(libc::in6_pktinfo, libc::c_int, libc::in_pktinfo);
    let msg = recvmsg::<SockaddrStorage>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_DONTWAIT,
    )
    .map_err(io::Error::from)?;
    let mut ttl = 0u8;
    let mut local: Option<IpAddr> = None;
    let mut interface = 0u32;
    for c in msg.cmsgs().map_err(io::Error::from)? {
        match c {
            ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                ttl = u8::try_from(t).unwrap_or(0);
            }
            ControlMessageOwned::Ipv4PacketInfo(pi) => {
                local = Some(Ipv4Addr::from(u32::from_be(pi.ipi_addr.s_addr)).into());
                interface = u32::try_from(pi.ipi_ifindex).unwrap_or(0);
            }
            ControlMessageOwned::Ipv6PacketInfo(pi) => {
                local = Some(Ipv6Addr::from(pi.ipi6_addr.s6_addr).into());
                interface = pi.ipi6_ifindex;
            }
            _ => {}
        }
    }
    let source = msg
        .address
        .as_ref()
        .and_then(to_socket_addr)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "datagram without source"))?;
    let unspecified: IpAddr = if source.is_ipv4() {
        Ipv4Addr::UNSPECIFIED.into()
    } else {
        Ipv6Addr::UNSPECIFIED.into()
    };
    Ok(Datagram {
        len: msg.bytes,
        source,
        local: local.unwrap_or(unspecified),
        interface,
        ttl,
    })
}

fn to_socket_addr(a: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(v4) = a.as_sockaddr_in() {
        return Some(SocketAddr::V4((*v4).into()));
    }
    if let Some(v6) = a.as_sockaddr_in6() {
        return Some(SocketAddr::V6((*v6).into()));
    }
    None
}

/// The send socket of the session with local discriminator `discriminator`:
/// bound to `local` (or the unspecified address of `peer`'s family) and a
/// free port of 49152–65535, TTL / Hop Limit 255, non-blocking.
pub fn sender(peer: IpAddr, local: Option<IpAddr>, discriminator: u32) -> io::Result<UdpSocket> {
    let v6 = peer.is_ipv6();
    let domain = if v6 { Domain::IPV6 } else { Domain::IPV4 };
    let bind_ip = local.unwrap_or(if v6 {
        Ipv6Addr::UNSPECIFIED.into()
    } else {
        Ipv4Addr::UNSPECIFIED.into()
    });
    let attempts = u32::from(SOURCE_PORTS.end() - SOURCE_PORTS.start()) + 1;
    let mut last = io::Error::new(io::ErrorKind::AddrInUse, "no free BFD source port");
    for attempt in 0..attempts.min(512) {
        let port = source_port_candidate(discriminator, attempt as u16);
        let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if v6 {
            s.set_only_v6(true)?;
            s.set_unicast_hops_v6(u32::from(TX_TTL))?;
        } else {
            s.set_ttl_v4(u32::from(TX_TTL))?;
        }
        s.set_nonblocking(true)?;
        match s.bind(&SocketAddr::new(bind_ip, port).into()) {
            Ok(()) => return Ok(s.into()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_uses_the_rfc_5881_source_ports_and_ttl_255() {
        let peer: IpAddr = "127.0.0.1".parse().unwrap();
        let s = sender(peer, Some(peer), 7).unwrap();
        let port = s.local_addr().unwrap().port();
        assert!(SOURCE_PORTS.contains(&port), "{port}");
        assert_eq!(s.ttl().unwrap(), 255);
    }

    #[test]
    fn the_receiver_reports_ttl_destination_and_source() {
        // An ephemeral port: the test must not need 3784.
        for (v6, addr) in [(false, "127.0.0.1"), (true, "::1")] {
            let ip: IpAddr = addr.parse().unwrap();
            let l = listener(v6, 0).unwrap();
            let port = l.local_addr().unwrap().as_socket().unwrap().port();
            let s = sender(ip, Some(ip), 99).unwrap();
            s.send_to(b"hello", SocketAddr::new(ip, port)).unwrap();
            let mut buf = [0u8; 64];
            let mut got = None;
            for _ in 0..100 {
                match receive(&l, &mut buf) {
                    Ok(d) => {
                        got = Some(d);
                        break;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        std::thread::sleep(std::time::Duration::from_millis(10))
                    }
                    Err(e) => panic!("{e}"),
                }
            }
            let d = got.expect("datagram");
            assert_eq!(&buf[..d.len], b"hello");
            assert_eq!(d.ttl, 255, "v6={v6}");
            assert_eq!(d.local, ip);
            assert_eq!(d.source, s.local_addr().unwrap());
            assert_ne!(d.interface, 0);
        }
    }
}
