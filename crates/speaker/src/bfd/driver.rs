//! The BFD driver thread: owns the `petrel_bfd` session table, the sockets
//! and the timers, and executes the table's actions. It runs with a raised
//! scheduling priority (`SCHED_FIFO` 10, else nice -10) when allowed.
//!
//! One loop on a current-thread runtime of its own thread: wake on the
//! earliest timer, a readable receive socket or a command; due timers are
//! served before anything else on every wake-up, and a burst of datagrams is
//! read in bounded batches, so neither commands nor packets delay a timer by
//! more than one batch.

use super::sock::{self, Datagram};
use super::{BfdEvent, BfdKey, BfdPeer, BfdSessionView, BfdSnapshot, Change, Cmd, plan};
use petrel_bfd::transport::{CONTROL_PORT, MULTIHOP_CONTROL_PORT};
use petrel_bfd::{
    Action, Diagnostic, PathKey, Received, SessionConfig, SessionTable, SplitMix64, State,
};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::time::Instant;
use tokio::io::Interest;
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Datagrams read per socket and wake-up before timers are checked again.
const BATCH: usize = 64;

/// Start the driver thread.
pub(super) fn spawn(
    cmds: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<BfdEvent>,
) -> io::Result<()> {
    let seed = rand::random::<u64>();
    std::thread::Builder::new()
        .name("petrel-bfd".into())
        .spawn(move || {
            // Timers must not wait behind other work of the machine either:
            // a starved thread misses its transmissions and the peer takes
            // the session down (seen under a load average of 200).
            match crate::sockopt::raise_thread_priority(10) {
                Ok(how) => info!(priority = how, "BFD thread priority raised"),
                Err(e) => warn!(error = %e,
                    "cannot raise the BFD thread's priority (needs CAP_SYS_NICE); \
                     under CPU contention BFD may flap"),
            }
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    warn!(error = %e, "cannot start the BFD runtime; BFD is off");
                    return;
                }
            };
            rt.block_on(Driver::new(events, seed).run(cmds));
        })?;
    Ok(())
}

struct Listener {
    sock: tokio::net::UdpSocket,
    multihop: bool,
}

/// The I/O side of one session.
struct SessionIo {
    key: BfdKey,
    socket: Option<UdpSocket>,
    error: Option<String>,
    tx_at: Option<Instant>,
    detect_at: Option<Instant>,
}

struct Driver {
    table: SessionTable<SplitMix64>,
    io: HashMap<u32, SessionIo>,
    by_key: BTreeMap<BfdKey, u32>,
    listeners: Vec<Listener>,
    /// (family is IPv6, multihop) of the listeners that are open.
    opened: Vec<(bool, bool)>,
    socket_errors: Vec<String>,
    events: mpsc::UnboundedSender<BfdEvent>,
    buf: Vec<u8>,
    max_lateness: std::time::Duration,
    late_timers: u64,
}

enum Wake {
    Timer,
    Cmd(Option<Cmd>),
    Readable(usize),
}

async fn readable_any(listeners: &[Listener]) -> usize {
    if listeners.is_empty() {
        return std::future::pending().await;
    }
    let futs: Vec<_> = listeners
        .iter()
        .map(|l| Box::pin(l.sock.readable()))
        .collect();
    let (_, i, _) = futures::future::select_all(futs).await;
    i
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(tokio::time::Instant::from_std(at)).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    fn new(events: mpsc::UnboundedSender<BfdEvent>, seed: u64) -> Driver {
        Driver {
            table: SessionTable::new(SplitMix64::new(seed)),
            io: HashMap::new(),
            by_key: BTreeMap::new(),
            listeners: Vec::new(),
            opened: Vec::new(),
            socket_errors: Vec::new(),
            events,
            buf: vec![0; 512],
            max_lateness: std::time::Duration::ZERO,
            late_timers: 0,
        }
    }

    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<Cmd>) {
        loop {
            let next = self.next_deadline();
            let wake = tokio::select! {
                biased;
                _ = sleep_until(next) => Wake::Timer,
                i = readable_any(&self.listeners) => Wake::Readable(i),
                c = cmds.recv() => Wake::Cmd(c),
            };
            match wake {
                Wake::Timer => {}
                Wake::Readable(i) => self.drain(i),
                Wake::Cmd(None) => break,
                Wake::Cmd(Some(Cmd::Sync(peers))) => self.sync(peers),
                Wake::Cmd(Some(Cmd::Snapshot(reply))) => {
                    let _ = reply.send(self.snapshot());
                }
            }
            self.fire_timers();
        }
        // The agent stops: tell the peers this is administrative (RFC 5882
        // §3.2: AdminDown is not a path failure).
        let keys: Vec<BfdKey> = self.by_key.keys().copied().collect();
        for k in keys {
            self.remove(k);
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.io
            .values()
            .flat_map(|s| [s.tx_at, s.detect_at])
            .flatten()
            .min()
    }

    fn fire_timers(&mut self) {
        let now = Instant::now();
        let mut late = std::time::Duration::ZERO;
        let due: Vec<(u32, bool, bool)> = self
            .io
            .iter()
            .filter_map(|(d, s)| {
                let tx = s.tx_at.is_some_and(|t| t <= now);
                let detect = s.detect_at.is_some_and(|t| t <= now);
                for t in [s.tx_at, s.detect_at].into_iter().flatten() {
                    late = late.max(now.saturating_duration_since(t));
                }
                (tx || detect).then_some((*d, tx, detect))
            })
            .collect();
        if late > super::LATE_TIMER {
            self.late_timers += 1;
            if late > self.max_lateness {
                warn!(late = ?late, "BFD timer fired late: the BFD thread was starved");
            }
        }
        self.max_lateness = self.max_lateness.max(late);
        for (d, tx, detect) in due {
            // Detection first: a packet sent after it carries the new state.
            if detect {
                if let Some(s) = self.io.get_mut(&d) {
                    s.detect_at = None;
                }
                if let Some(session) = self.table.get_mut(d) {
                    let actions = session.on_detect_timer(now);
                    self.execute(d, actions);
                }
            }
            if tx {
                if let Some(s) = self.io.get_mut(&d) {
                    s.tx_at = None;
                }
                if let Some(session) = self.table.get_mut(d) {
                    let actions = session.on_tx_timer(now);
                    self.execute(d, actions);
                }
            }
        }
    }

    fn execute(&mut self, d: u32, actions: Vec<Action>) {
        for action in actions {
            match action {
                Action::Send(packet) => self.send(d, &packet),
                Action::ArmTxTimer(at) => self.set_timer(d, Some(at), true),
                Action::DisarmTxTimer => self.set_timer(d, None, true),
                Action::ArmDetectTimer(at) => self.set_timer(d, Some(at), false),
                Action::DisarmDetectTimer => self.set_timer(d, None, false),
                Action::StateChanged(change) => {
                    let Some(s) = self.io.get(&d) else { continue };
                    let peer = s.key.peer;
                    if change.is_failure() {
                        warn!(%peer, from = change.from.as_str(), to = change.to.as_str(),
                            diagnostic = change.diagnostic.as_str(), "BFD session down");
                    } else {
                        info!(%peer, from = change.from.as_str(), to = change.to.as_str(),
                            diagnostic = change.diagnostic.as_str(), "BFD session state changed");
                    }
                    let _ = self.events.send(BfdEvent { peer, change });
                }
            }
        }
    }

    fn set_timer(&mut self, d: u32, at: Option<Instant>, tx: bool) {
        if let Some(s) = self.io.get_mut(&d) {
            if tx {
                s.tx_at = at;
            } else {
                s.detect_at = at;
            }
        }
    }

    fn send(&mut self, d: u32, packet: &petrel_bfd::ControlPacket) {
        let Some(s) = self.io.get_mut(&d) else { return };
        let Some(socket) = &s.socket else { return };
        let Some(session) = self.table.get(d) else {
            return;
        };
        let dest = SocketAddr::new(s.key.peer, session.config().hop.destination_port());
        self.buf.clear();
        if let Err(e) = packet.encode_into(&mut self.buf) {
            warn!(peer = %s.key.peer, error = %e, "cannot encode a BFD packet");
            return;
        }
        match socket.send_to(&self.buf, dest) {
            Ok(_) => s.error = None,
            // A full send buffer drops the packet; the next one follows.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => {
                if s.error.is_none() {
                    debug!(peer = %s.key.peer, error = %e, "cannot send a BFD packet");
                }
                s.error = Some(format!("send: {e}"));
            }
        }
    }

    /// Read up to [`BATCH`] datagrams from listener `i`.
    fn drain(&mut self, i: usize) {
        let mut buf = [0u8; 512];
        for _ in 0..BATCH {
            let Some(l) = self.listeners.get(i) else {
                return;
            };
            let multihop = l.multihop;
            let got = l
                .sock
                .try_io(Interest::READABLE, || sock::receive(&l.sock, &mut buf));
            match got {
                Ok(d) => self.received(&buf[..d.len.min(buf.len())], d, multihop),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) => {
                    debug!(error = %e, "BFD receive error");
                    return;
                }
            }
        }
    }

    fn received(&mut self, payload: &[u8], d: Datagram, multihop: bool) {
        let now = Instant::now();
        let rx = Received {
            source: d.source,
            local: d.local,
            interface: d.interface,
            ttl: d.ttl,
            multihop,
        };
        match self.table.receive(now, payload, &rx) {
            Ok((disc, actions)) => self.execute(disc, actions),
            Err(e) => debug!(source = %d.source, error = %e, "BFD packet dropped"),
        }
    }

    /// Open the receive sockets not open yet.
    fn open_listeners(&mut self) {
        self.socket_errors.clear();
        for (v6, multihop) in [(false, false), (true, false), (false, true), (true, true)] {
            if self.opened.contains(&(v6, multihop)) {
                continue;
            }
            let port = if multihop {
                MULTIHOP_CONTROL_PORT
            } else {
                CONTROL_PORT
            };
            let opened = sock::listener(v6, port)
                .and_then(|s| tokio::net::UdpSocket::from_std(UdpSocket::from(s)));
            match opened {
                Ok(sock) => {
                    self.listeners.push(Listener { sock, multihop });
                    self.opened.push((v6, multihop));
                }
                Err(e) => {
                    let family = if v6 { "IPv6" } else { "IPv4" };
                    let text = format!("cannot listen on UDP {port} ({family}): {e}");
                    warn!("{text}");
                    self.socket_errors.push(text);
                }
            }
        }
    }

    fn sync(&mut self, peers: Vec<BfdPeer>) {
        if !peers.is_empty() && self.opened.len() < 4 {
            self.open_listeners();
        }
        let current: BTreeMap<BfdKey, SessionConfig> = self
            .by_key
            .iter()
            .filter_map(|(k, d)| Some((*k, *self.table.get(*d)?.config())))
            .collect();
        for change in plan(&current, &peers) {
            match change {
                Change::Remove(key) => self.remove(key),
                Change::Add(peer) => self.add(peer),
                Change::Reconfigure(peer) => {
                    let Some(&d) = self.by_key.get(&peer.key) else {
                        continue;
                    };
                    let now = Instant::now();
                    let result = self
                        .table
                        .get_mut(d)
                        .map(|s| s.reconfigure(now, peer.config));
                    match result {
                        Some(Ok(actions)) => {
                            info!(peer = %peer.key.peer, "BFD parameters changed; renegotiating");
                            self.execute(d, actions);
                        }
                        Some(Err(e)) => {
                            info!(peer = %peer.key.peer, reason = %e, "BFD session replaced");
                            self.remove(peer.key);
                            self.add(peer);
                        }
                        None => {}
                    }
                }
            }
        }
    }

    fn add(&mut self, peer: BfdPeer) {
        let key = peer.key;
        let unspecified: IpAddr = if key.peer.is_ipv4() {
            Ipv4Addr::UNSPECIFIED.into()
        } else {
            Ipv6Addr::UNSPECIFIED.into()
        };
        let path = if key.multihop {
            PathKey::MultiHop {
                peer: key.peer,
                local: key.local.unwrap_or(unspecified),
            }
        } else {
            PathKey::SingleHop {
                peer: key.peer,
                interface: None,
            }
        };
        let now = Instant::now();
        let (d, actions) = match self.table.insert(path, peer.config, now) {
            Ok(x) => x,
            Err(e) => {
                warn!(peer = %key.peer, error = %e, "cannot create the BFD session");
                return;
            }
        };
        let (socket, error) = match sock::sender(key.peer, key.local, d) {
            Ok(s) => (Some(s), None),
            Err(e) => {
                warn!(peer = %key.peer, local = ?key.local, error = %e,
                    "cannot open the BFD send socket");
                (None, Some(format!("socket: {e}")))
            }
        };
        info!(peer = %key.peer, local = ?key.local, multihop = key.multihop, discriminator = d,
            "BFD session added");
        self.io.insert(
            d,
            SessionIo {
                key,
                socket,
                error,
                tx_at: None,
                detect_at: None,
            },
        );
        self.by_key.insert(key, d);
        self.execute(d, actions);
    }

    /// End a session, telling the peer it is administrative (AdminDown).
    fn remove(&mut self, key: BfdKey) {
        let Some(d) = self.by_key.remove(&key) else {
            return;
        };
        let now = Instant::now();
        if let Some(session) = self.table.get_mut(d)
            && session.state() != State::AdminDown
        {
            let actions = session.admin_down(now, Diagnostic::ADMINISTRATIVELY_DOWN);
            // Only the packet: the session is going away.
            for a in actions {
                if let Action::Send(p) = a {
                    self.send(d, &p);
                }
            }
        }
        self.table.remove(d);
        self.io.remove(&d);
        info!(peer = %key.peer, "BFD session removed");
    }

    fn snapshot(&self) -> BfdSnapshot {
        let now = Instant::now();
        let mut sessions: Vec<BfdSessionView> = self
            .by_key
            .iter()
            .filter_map(|(key, d)| {
                let session = self.table.get(*d)?;
                let io = self.io.get(d)?;
                let status = session.status();
                Some(BfdSessionView {
                    key: *key,
                    source_port: io
                        .socket
                        .as_ref()
                        .and_then(|s| s.local_addr().ok())
                        .map(|a| a.port()),
                    since_state_change: now.saturating_duration_since(status.last_state_change),
                    status,
                    error: io.error.clone(),
                })
            })
            .collect();
        sessions.sort_by_key(|s| s.key);
        BfdSnapshot {
            sessions,
            counters: *self.table.counters(),
            socket_errors: self.socket_errors.clone(),
            max_timer_lateness: self.max_lateness,
            late_timers: self.late_timers,
        }
    }
}
