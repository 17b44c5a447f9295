//! The two rtnetlink sockets of the dataplane task.
//!
//! The request socket sends many route requests in one datagram. The kernel processes a datagram
//! synchronously inside `send()` and acknowledges failures always but successes only when asked
//! (`NLM_F_ACK`), so only the last request of a batch asks for an ack: when that ack arrives,
//! every earlier request has been processed and each failure has been reported with its sequence
//! number. That makes a batch of hundreds of routes cost two system calls.
//!
//! The monitor socket listens to `RTNLGRP_IPV4_ROUTE`, `RTNLGRP_IPV6_ROUTE` and `RTNLGRP_LINK`.
//! Notifications caused by our own requests carry the request socket's port id and are skipped.

use std::io;
use std::time::Duration;

use nix::sys::socket::{setsockopt, sockopt};
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::sys::{AsyncSocket, AsyncSocketExt, TokioSocket, protocols::NETLINK_ROUTE};

use super::codec::{
    self, NLM_F_ACK, NLM_F_DUMP, NLM_F_DUMP_INTR, NLM_F_REQUEST, NLMSG_DONE, NLMSG_ERROR, NlHeader,
};
use super::model::RouteOp;

/// Most requests per datagram; bounded so the notifications one datagram triggers fit the monitor
/// socket's buffer.
pub const MAX_BATCH: usize = 512;
/// Most bytes per request datagram (well below the default 208 KiB send buffer).
pub const MAX_DATAGRAM: usize = 64 * 1024;
const RX_BUF: usize = 64 * 1024;
const REQUEST_RCVBUF: usize = 4 << 20;
const MONITOR_RCVBUF: usize = 32 << 20;
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// The outcome of one request of a batch: `Err((errno, extended ack message))`.
pub type OpResult = Result<(), (i32, Option<String>)>;

/// Why a batch or dump could not complete; the kernel state is then unknown and the caller
/// resynchronises.
#[derive(Debug, thiserror::Error)]
pub enum BatchError {
    #[error("netlink socket I/O: {0}")]
    Io(#[from] io::Error),
    #[error("no reply from the kernel within {0:?}")]
    Timeout(Duration),
    #[error("route dump was interrupted by concurrent changes")]
    DumpInterrupted,
    #[error("kernel rejected the route dump request: errno {0}")]
    DumpRejected(i32),
}

fn raise_rcvbuf(sock: &TokioSocket, bytes: usize) {
    // SO_RCVBUFFORCE needs CAP_NET_ADMIN, which a routing agent has; fall back to the capped size.
    let fd = sock.socket_ref();
    if setsockopt(fd, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = setsockopt(fd, sockopt::RcvBuf, &bytes);
    }
}

fn open(groups: &[u32], rcvbuf: usize) -> io::Result<(TokioSocket, u32)> {
    let mut sock = TokioSocket::new(NETLINK_ROUTE)?;
    let addr = sock.socket_mut().bind_auto()?;
    sock.socket_ref().set_ext_ack(true)?;
    sock.socket_ref().set_cap_ack(true)?;
    for group in groups {
        sock.socket_ref().add_membership(*group)?;
    }
    raise_rcvbuf(&sock, rcvbuf);
    Ok((sock, addr.port_number()))
}

/// The socket that executes route operations and dumps.
pub struct RequestSocket {
    sock: TokioSocket,
    port: u32,
    seq: u32,
    tx: Vec<u8>,
    rx: Vec<u8>,
    table: u32,
    protocol: u8,
}

impl RequestSocket {
    /// Opens a request socket in the calling thread's network namespace.
    pub fn open(table: u32, protocol: u8) -> io::Result<Self> {
        let (sock, port) = open(&[], REQUEST_RCVBUF)?;
        sock.socket_ref().set_netlink_get_strict_chk(true)?;
        Ok(Self {
            sock,
            port,
            seq: 0,
            tx: Vec::with_capacity(RX_BUF),
            rx: Vec::with_capacity(RX_BUF),
            table,
            protocol,
        })
    }

    /// The netlink port id: notifications carrying it are echoes of our own requests.
    pub fn port(&self) -> u32 {
        self.port
    }

    fn next_seq(&mut self) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        self.seq
    }

    async fn recv(&mut self) -> Result<(), BatchError> {
        self.rx.clear();
        self.rx.reserve(RX_BUF);
        match tokio::time::timeout(REPLY_TIMEOUT, self.sock.recv(&mut self.rx)).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(BatchError::Timeout(REPLY_TIMEOUT)),
        }
    }

    /// Executes a prefix of `ops` (at most [`MAX_BATCH`] operations and [`MAX_DATAGRAM`] bytes)
    /// in one datagram and returns one result per executed op: `ops[..results.len()]`.
    pub async fn execute(&mut self, ops: &[RouteOp]) -> Result<Vec<OpResult>, BatchError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        self.tx.clear();
        let first = self.seq.wrapping_add(1);
        let mut count = 0;
        let mut last_start = 0;
        let limit = ops.len().min(MAX_BATCH);
        for (i, op) in ops[..limit].iter().enumerate() {
            let (kind, flags, msg) = codec::op_message(op, self.table, self.protocol);
            let start = self.tx.len();
            let flags = if i + 1 == limit {
                flags | NLM_F_ACK
            } else {
                flags
            };
            codec::encode(
                &mut self.tx,
                kind,
                flags,
                first.wrapping_add(i as u32),
                &msg,
            );
            if i > 0 && self.tx.len() > MAX_DATAGRAM {
                // Full: drop this message; the previous one becomes the fence.
                self.tx.truncate(start);
                set_ack_flag(&mut self.tx, last_start);
                break;
            }
            last_start = start;
            count = i + 1;
        }
        self.seq = first.wrapping_add(count as u32 - 1);
        let ops = &ops[..count];
        let mut results = vec![Ok(()); count];
        let last = self.seq;
        self.sock.send(&self.tx).await?;
        loop {
            self.recv().await?;
            let mut done = false;
            for (h, payload) in codec::messages(&self.rx) {
                if h.kind != NLMSG_ERROR {
                    continue;
                }
                let index = h.seq.wrapping_sub(first) as usize;
                if index >= ops.len() {
                    continue; // a late reply to an earlier, abandoned batch
                }
                let (code, message) = codec::parse_error(&h, payload);
                let deleting = matches!(ops[index], RouteOp::Delete { .. });
                let gone = code == -libc::ESRCH || code == -libc::ENOENT;
                if code != 0 && !(deleting && gone) {
                    results[index] = Err((-code, message));
                }
                done |= h.seq == last;
            }
            if done {
                return Ok(results);
            }
        }
    }

    /// Dumps the routes of `table` for one family, calling `each` with every message.
    pub async fn dump(
        &mut self,
        v4: bool,
        table: u32,
        mut each: impl FnMut(NlHeader, &[u8]),
    ) -> Result<(), BatchError> {
        let seq = self.next_seq();
        let msg: RouteMessage = codec::dump_request(v4, table);
        self.tx.clear();
        codec::encode(
            &mut self.tx,
            codec::RTM_GETROUTE,
            NLM_F_REQUEST | NLM_F_DUMP,
            seq,
            &msg,
        );
        self.sock.send(&self.tx).await?;
        let mut interrupted = false;
        loop {
            self.recv().await?;
            for (h, payload) in codec::messages(&self.rx) {
                if h.seq != seq {
                    continue;
                }
                interrupted |= h.flags & NLM_F_DUMP_INTR != 0;
                match h.kind {
                    NLMSG_DONE if interrupted => return Err(BatchError::DumpInterrupted),
                    NLMSG_DONE => return Ok(()),
                    NLMSG_ERROR => {
                        let (code, _) = codec::parse_error(&h, payload);
                        return Err(BatchError::DumpRejected(-code));
                    }
                    _ => each(h, payload),
                }
            }
        }
    }
}

/// Sets `NLM_F_ACK` on the encoded message starting at offset `start` of `buf`.
fn set_ack_flag(buf: &mut [u8], start: usize) {
    let at = start + 6;
    let flags = u16::from_ne_bytes([buf[at], buf[at + 1]]) | NLM_F_ACK;
    buf[at..at + 2].copy_from_slice(&flags.to_ne_bytes());
}

/// The socket receiving route and link notifications.
pub struct MonitorSocket {
    sock: TokioSocket,
    rx: Vec<u8>,
}

impl MonitorSocket {
    /// Opens the monitor in the calling thread's network namespace.
    pub fn open() -> io::Result<Self> {
        let groups = [
            codec::RTNLGRP_IPV4_ROUTE,
            codec::RTNLGRP_IPV6_ROUTE,
            codec::RTNLGRP_LINK,
        ];
        let (sock, _) = open(&groups, MONITOR_RCVBUF)?;
        Ok(Self {
            sock,
            rx: Vec::with_capacity(RX_BUF),
        })
    }

    /// Waits for the next datagram. `Err` with `ENOBUFS` means notifications were lost.
    pub async fn recv(&mut self) -> io::Result<&[u8]> {
        self.rx.clear();
        self.rx.reserve(RX_BUF);
        self.sock.recv(&mut self.rx).await?;
        Ok(&self.rx)
    }

    /// The next datagram if one is queued, without waiting.
    pub fn try_recv(&mut self) -> Option<io::Result<&[u8]>> {
        self.rx.clear();
        self.rx.reserve(RX_BUF);
        match self
            .sock
            .socket_ref()
            .recv(&mut self.rx, libc::MSG_DONTWAIT)
        {
            Ok(_) => Some(Ok(&self.rx)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// Whether an I/O error is the netlink overrun signal.
pub fn is_overrun(err: &io::Error) -> bool {
    err.raw_os_error() == Some(libc::ENOBUFS)
}
