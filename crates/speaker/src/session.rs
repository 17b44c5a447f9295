//! The thin tokio driver of one BGP session (RFC 4271 §8): it owns the TCP
//! connections (outbound and, during a collision, inbound), frames and
//! decodes messages with the negotiated context (RFC 6793, RFC 7911,
//! RFC 8654), arms the timers the sans-IO FSM asks for, and relays what the
//! FSM decides to the speaker. It makes no protocol decisions itself.

use crate::families;
use crate::{SessionCmd, SessionEvent, SpeakerMsg};
use bytes::Bytes;
use futures::StreamExt;
use petrel_bgp::fsm::{Action, ConnId, Event, Fsm, SessionConfig, State, Timer, cease};
use petrel_bgp::wire::notification::{CEASE_OTHER_CONFIG_CHANGE, CEASE_PEER_DECONFIGURED};
use petrel_bgp::wire::{self, Family, FrameCodec, FrameError, Message, WireContext};
use petrel_datastore::resolved::PeerConfig;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::codec::FramedRead;
use tracing::{Instrument, debug, info, info_span, warn};

/// Counters shared between a driver and the speaker's status view.
#[derive(Debug, Default)]
pub struct SessionStats {
    pub messages_received: AtomicU64,
    pub messages_sent: AtomicU64,
    pub connection_attempts: AtomicU64,
    /// Routes ignored because their family was not negotiated (RFC 4760),
    /// indexed like [`petrel_bgp::wire::Family::ALL`].
    pub unnegotiated_routes: [AtomicU64; 2],
}

/// How long an outgoing TCP connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a NOTIFICATION may take to flush before the socket is dropped.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
/// Delay before a session stopped by the speaker with `restart` comes back
/// (e.g. after Cease/Maximum Number of Prefixes Reached).
const RESTART_DELAY: Duration = Duration::from_secs(30);

/// Start the driver of session `id`.
pub fn spawn(
    id: u32,
    config: SessionConfig,
    peer: PeerConfig,
    speaker: mpsc::Sender<SpeakerMsg>,
    stats: Arc<SessionStats>,
) -> (
    mpsc::UnboundedSender<SessionCmd>,
    tokio::task::JoinHandle<()>,
) {
    let (cmd_tx, cmd_rx) = mpsc::unbounded_channel();
    let span = info_span!("session", peer = %peer.origin, address = %peer.address);
    let driver = Driver::new(id, config, peer, speaker, stats);
    let task = tokio::spawn(driver.run(cmd_rx).instrument(span));
    (cmd_tx, task)
}

enum IoEvent {
    Connected(u64, std::io::Result<TcpStream>),
    Frame(ConnId, u64, Bytes),
    FrameError(ConnId, u64, FrameError),
    Closed(ConnId, u64),
    Progress(ConnId, u64),
}

struct Conn {
    epoch: u64,
    out: mpsc::UnboundedSender<Bytes>,
    reader: tokio::task::JoinHandle<()>,
    writer: tokio::task::JoinHandle<()>,
    max_len: Arc<AtomicUsize>,
    local: SocketAddr,
    remote: SocketAddr,
}

struct Driver {
    id: u32,
    fsm: Fsm,
    peer: PeerConfig,
    speaker: mpsc::Sender<SpeakerMsg>,
    stats: Arc<SessionStats>,
    conns: HashMap<ConnId, Conn>,
    io_tx: mpsc::UnboundedSender<IoEvent>,
    io_rx: mpsc::UnboundedReceiver<IoEvent>,
    timers: HashMap<Timer, Instant>,
    ctx: WireContext,
    epoch: u64,
    connect_epoch: Option<u64>,
    established: Option<ConnId>,
    restart_at: Option<Instant>,
    exit: bool,
    /// Unnegotiated families already logged (once per peer and family).
    warned_families: Vec<Family>,
}

impl Driver {
    fn new(
        id: u32,
        config: SessionConfig,
        peer: PeerConfig,
        speaker: mpsc::Sender<SpeakerMsg>,
        stats: Arc<SessionStats>,
    ) -> Self {
        let (io_tx, io_rx) = mpsc::unbounded_channel();
        Driver {
            id,
            fsm: Fsm::new(config),
            peer,
            speaker,
            stats,
            conns: HashMap::new(),
            io_tx,
            io_rx,
            timers: HashMap::new(),
            ctx: WireContext::initial(),
            epoch: 0,
            connect_epoch: None,
            established: None,
            restart_at: None,
            exit: false,
            warned_families: Vec::new(),
        }
    }

    async fn run(mut self, mut cmds: mpsc::UnboundedReceiver<SessionCmd>) {
        self.event(Event::Start).await;
        while !self.exit {
            let deadline = self.timers.values().copied().chain(self.restart_at).min();
            tokio::select! {
                cmd = cmds.recv() => match cmd {
                    Some(cmd) => self.command(cmd).await,
                    None => {
                        self.stop(cease(CEASE_PEER_DECONFIGURED, None)).await;
                        self.exit = true;
                    }
                },
                Some(io) = self.io_rx.recv() => self.io(io).await,
                _ = sleep_until(deadline), if deadline.is_some() => self.expire().await,
            }
        }
        self.close_all().await;
    }

    async fn expire(&mut self) {
        let now = Instant::now();
        if self.restart_at.is_some_and(|t| t <= now) {
            self.restart_at = None;
            self.event(Event::Start).await;
        }
        let due: Vec<Timer> = self
            .timers
            .iter()
            .filter(|(_, t)| **t <= now)
            .map(|(k, _)| *k)
            .collect();
        for t in due {
            self.timers.remove(&t);
            self.event(Event::TimerExpired(t)).await;
        }
    }

    async fn stop(&mut self, notification: petrel_bgp::wire::Notification) {
        self.event(Event::Stop(notification)).await;
    }

    async fn command(&mut self, cmd: SessionCmd) {
        match cmd {
            SessionCmd::Inbound(stream) => self.inbound(stream).await,
            SessionCmd::Announce(attrs, nlri) => {
                match wire::encode_announce(&attrs, &nlri, &self.ctx) {
                    Ok(msgs) => self.send_raw(msgs),
                    Err(e) => warn!(error = %e, "cannot encode UPDATE"),
                }
            }
            SessionCmd::Withdraw(nlri) => match wire::encode_withdraw(&nlri, &self.ctx) {
                Ok(msgs) => self.send_raw(msgs),
                Err(e) => warn!(error = %e, "cannot encode withdrawal"),
            },
            SessionCmd::Send(msg) => {
                if let Some(c) = self.established {
                    self.send(c, &msg);
                }
            }
            SessionCmd::Stop {
                notification,
                restart,
            } => {
                self.stop(notification).await;
                if restart {
                    self.restart_at = Some(Instant::now() + RESTART_DELAY);
                } else {
                    self.exit = true;
                }
            }
            SessionCmd::Reset(notification) => {
                self.stop(notification).await;
                self.event(Event::Start).await;
            }
            SessionCmd::Reconfigure(c) => {
                if !self.fsm.update_config((*c).clone()) {
                    // The FSM refuses changes that need a reset while running:
                    // stop with Cease/Other Configuration Change, apply, restart.
                    info!("configuration change needs a session reset");
                    self.stop(cease(CEASE_OTHER_CONFIG_CHANGE, None)).await;
                    self.fsm.update_config(*c);
                    self.event(Event::Start).await;
                }
            }
        }
    }

    /// Queue already-encoded UPDATEs on the established connection.
    fn send_raw(&mut self, msgs: Vec<Bytes>) {
        let Some(c) = self.established.and_then(|c| self.conns.get(&c)) else {
            return;
        };
        for m in msgs {
            self.stats.messages_sent.fetch_add(1, Ordering::Relaxed);
            let _ = c.out.send(m);
        }
    }

    fn send(&mut self, conn: ConnId, msg: &Message) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        match wire::encode(msg, &self.ctx) {
            Ok(b) => {
                self.stats.messages_sent.fetch_add(1, Ordering::Relaxed);
                let _ = c.out.send(b);
            }
            Err(e) => warn!(error = %e, "cannot encode message"),
        }
    }

    async fn inbound(&mut self, stream: TcpStream) {
        self.stats
            .connection_attempts
            .fetch_add(1, Ordering::Relaxed);
        if self.conns.contains_key(&ConnId::Inbound) {
            // The FSM holds one inbound connection at a time; a second one
            // is refused until the first is gone.
            debug!("second inbound connection while one is open; refusing it");
            drop(stream);
            return;
        }
        if self.attach(ConnId::Inbound, stream) {
            self.event(Event::TcpConnected(ConnId::Inbound)).await;
        }
    }

    /// Take ownership of a connected stream as `id`.
    fn attach(&mut self, id: ConnId, stream: TcpStream) -> bool {
        let (Ok(local), Ok(remote)) = (stream.local_addr(), stream.peer_addr()) else {
            return false;
        };
        let _ = stream.set_nodelay(true);
        self.epoch += 1;
        let epoch = self.epoch;
        let max_len = Arc::new(AtomicUsize::new(self.ctx.max_message_len()));
        let (rd, wr) = stream.into_split();
        let (out, out_rx) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(
            rd,
            id,
            epoch,
            max_len.clone(),
            self.io_tx.clone(),
        ));
        let writer = tokio::spawn(write_loop(wr, id, epoch, out_rx, self.io_tx.clone()));
        debug!(conn = %id, %local, %remote, "connection attached");
        self.conns.insert(
            id,
            Conn {
                epoch,
                out,
                reader,
                writer,
                max_len,
                local,
                remote,
            },
        );
        true
    }

    async fn close(&mut self, id: ConnId) {
        if id == ConnId::Outbound {
            // Abandon a pending attempt: its result will be ignored.
            self.connect_epoch = None;
        }
        if let Some(c) = self.conns.remove(&id) {
            c.reader.abort();
            drop(c.out);
            // The writer flushes what is queued (a NOTIFICATION, typically).
            let _ = tokio::time::timeout(FLUSH_TIMEOUT, c.writer).await;
        }
    }

    async fn close_all(&mut self) {
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            self.close(id).await;
        }
    }

    fn current(&self, id: ConnId, epoch: u64) -> bool {
        self.conns.get(&id).is_some_and(|c| c.epoch == epoch)
    }

    async fn io(&mut self, io: IoEvent) {
        match io {
            IoEvent::Connected(epoch, result) => {
                if self.connect_epoch != Some(epoch) {
                    return;
                }
                self.connect_epoch = None;
                match result {
                    Ok(stream) => {
                        if self.attach(ConnId::Outbound, stream) {
                            self.event(Event::TcpConnected(ConnId::Outbound)).await;
                        } else {
                            self.event(Event::TcpConnectFailed).await;
                        }
                    }
                    Err(e) => {
                        debug!(error = %e, "connect failed");
                        self.event(Event::TcpConnectFailed).await;
                    }
                }
            }
            IoEvent::Frame(id, epoch, frame) => {
                if !self.current(id, epoch) {
                    return;
                }
                self.stats.messages_received.fetch_add(1, Ordering::Relaxed);
                if frame.get(18) == Some(&2) && self.established != Some(id) {
                    // An UPDATE before the session is Established is an FSM
                    // error whatever it holds (RFC 4271 §8.2.2): not decoded,
                    // since the capabilities that govern its layout are not
                    // negotiated yet and a decode would report false errors.
                    let early = Message::Update(wire::Update::default());
                    self.event(Event::Received(id, early)).await;
                    return;
                }
                match wire::decode(&frame, &self.ctx) {
                    Ok(received) => {
                        if !received.errors.is_empty() {
                            let errs = received.errors.iter().map(|e| e.to_string()).collect();
                            self.to_speaker(SessionEvent::AttributeErrors(errs)).await;
                        }
                        if let Message::Open(remote) = &received.message {
                            // Raise the frame limit as soon as both OPENs are
                            // known, before the peer's first large UPDATE.
                            let ctx = WireContext::negotiated(&self.fsm.local_open(), remote);
                            if let Some(c) = self.conns.get(&id) {
                                c.max_len.store(ctx.max_message_len(), Ordering::Relaxed);
                            }
                        }
                        self.event(Event::Received(id, received.message)).await;
                    }
                    Err(e) => {
                        warn!(error = %e, "malformed message from peer");
                        self.event(Event::DecodeError(id, e.notification())).await;
                    }
                }
            }
            IoEvent::FrameError(id, epoch, e) => {
                if !self.current(id, epoch) {
                    return;
                }
                match e {
                    FrameError::Header(n) => self.event(Event::DecodeError(id, n)).await,
                    FrameError::Io(err) => {
                        debug!(error = %err, "read failed");
                        self.conns.remove(&id);
                        self.event(Event::TcpClosed(id)).await;
                    }
                }
            }
            IoEvent::Closed(id, epoch) => {
                if self.current(id, epoch) {
                    if let Some(c) = self.conns.remove(&id) {
                        c.reader.abort();
                        c.writer.abort();
                    }
                    self.event(Event::TcpClosed(id)).await;
                }
            }
            IoEvent::Progress(id, epoch) => {
                if self.current(id, epoch) {
                    self.event(Event::SendProgress).await;
                }
            }
        }
    }

    async fn to_speaker(&self, event: SessionEvent) {
        let _ = self
            .speaker
            .send(SpeakerMsg::Session { id: self.id, event })
            .await;
    }

    /// Feed one event to the FSM and carry out its actions.
    async fn event(&mut self, event: Event) {
        let actions = self.fsm.handle(event);
        for a in actions {
            self.action(a).await;
        }
    }

    async fn action(&mut self, action: Action) {
        match action {
            Action::Connect => self.connect(),
            Action::Send(id, msg) => self.send(id, &msg),
            Action::Close(id) => self.close(id).await,
            Action::StartTimer(t, d) => {
                self.timers.insert(t, Instant::now() + d);
            }
            Action::StopTimer(t) => {
                self.timers.remove(&t);
            }
            Action::StateChange { from, to } => {
                debug!(%from, %to, "state change");
                if to == State::Idle {
                    self.connect_epoch = None;
                }
                self.to_speaker(SessionEvent::State(to)).await;
            }
            Action::Established(neg) => {
                self.ctx = WireContext::negotiated(&neg.local_open, &neg.remote_open);
                let Some(c) = self.conns.get(&neg.conn) else {
                    return;
                };
                c.max_len
                    .store(self.ctx.max_message_len(), Ordering::Relaxed);
                let (local, remote) = (c.local, c.remote);
                self.established = Some(neg.conn);
                info!(%local, %remote, hold = neg.hold_time, "session established");
                self.to_speaker(SessionEvent::Established {
                    negotiated: Box::new(neg),
                    local,
                    remote,
                })
                .await;
            }
            Action::Deliver(msg) => {
                if let Some(msg) = self.negotiated_only(msg) {
                    self.to_speaker(SessionEvent::Received(msg)).await;
                }
            }
            Action::Down(reason) => {
                let was_established = self.established.take().is_some();
                self.ctx = WireContext::initial();
                self.to_speaker(SessionEvent::Down {
                    reason,
                    was_established,
                })
                .await;
            }
        }
    }

    /// Drops the NLRI of families not negotiated on this session (RFC 4760):
    /// counted, and logged once per family.
    fn negotiated_only(&mut self, msg: Message) -> Option<Message> {
        let Some(neg) = self.fsm.negotiated() else {
            return Some(msg);
        };
        let (msg, dropped) = families::filter(msg, &neg.families);
        for (fam, n) in dropped.0 {
            self.stats.unnegotiated_routes[families::family_index(fam)]
                .fetch_add(n, Ordering::Relaxed);
            if !self.warned_families.contains(&fam) {
                self.warned_families.push(fam);
                warn!(
                    family = fam.name(),
                    "peer sent routes for a family that was not negotiated; ignored (RFC 4760), \
                     further ones are only counted in petrel_bgp_unnegotiated_family_routes_total"
                );
            }
        }
        msg
    }

    /// Start an outgoing connection in the background.
    fn connect(&mut self) {
        self.stats
            .connection_attempts
            .fetch_add(1, Ordering::Relaxed);
        self.epoch += 1;
        let epoch = self.epoch;
        self.connect_epoch = Some(epoch);
        let peer = self.peer.clone();
        let tx = self.io_tx.clone();
        tokio::spawn(async move {
            let result = match tokio::time::timeout(CONNECT_TIMEOUT, connect(&peer)).await {
                Ok(r) => r,
                Err(_) => Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "connect timed out",
                )),
            };
            let _ = tx.send(IoEvent::Connected(epoch, result));
        });
    }
}

/// Open the TCP connection to a peer with its MD5 key, GTSM / TTL and source
/// address applied before the SYN is sent.
async fn connect(peer: &PeerConfig) -> std::io::Result<TcpStream> {
    let v6 = peer.address.is_ipv6();
    let sock = if v6 {
        TcpSocket::new_v6()?
    } else {
        TcpSocket::new_v4()?
    };
    if let Some(key) = &peer.password {
        crate::sockopt::set_tcp_md5(&sock, peer.address, Some(key))?;
    }
    match peer.ttl_security {
        Some(hops) => crate::sockopt::set_gtsm(&sock, v6, hops)?,
        None => crate::sockopt::set_ttl(&sock, v6, 255)?,
    }
    if let Some(src) = peer.source_address {
        sock.bind(SocketAddr::new(src, 0))?;
    }
    sock.connect(SocketAddr::new(peer.address, peer.port)).await
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

async fn read_loop(
    rd: tokio::net::tcp::OwnedReadHalf,
    id: ConnId,
    epoch: u64,
    max_len: Arc<AtomicUsize>,
    tx: mpsc::UnboundedSender<IoEvent>,
) {
    let codec = FrameCodec::new(max_len.load(Ordering::Relaxed));
    let mut frames = FramedRead::with_capacity(rd, codec, 64 * 1024);
    loop {
        // The limit grows to 65535 once extended messages are negotiated.
        frames
            .decoder_mut()
            .set_max_len(max_len.load(Ordering::Relaxed));
        let event = match frames.next().await {
            Some(Ok(frame)) => IoEvent::Frame(id, epoch, frame),
            Some(Err(e)) => IoEvent::FrameError(id, epoch, e),
            None => IoEvent::Closed(id, epoch),
        };
        let last = !matches!(event, IoEvent::Frame(..));
        if tx.send(event).is_err() || last {
            return;
        }
    }
}

async fn write_loop(
    mut wr: tokio::net::tcp::OwnedWriteHalf,
    id: ConnId,
    epoch: u64,
    mut rx: mpsc::UnboundedReceiver<Bytes>,
    tx: mpsc::UnboundedSender<IoEvent>,
) {
    let mut last_progress = Instant::now();
    while let Some(b) = rx.recv().await {
        if wr.write_all(&b).await.is_err() {
            let _ = tx.send(IoEvent::Closed(id, epoch));
            return;
        }
        // Report progress for the send-hold timer (RFC 9687) at most once a
        // second, and whenever the queue drains.
        if rx.is_empty() || last_progress.elapsed() >= Duration::from_secs(1) {
            last_progress = Instant::now();
            let _ = tx.send(IoEvent::Progress(id, epoch));
        }
    }
    let _ = wr.shutdown().await;
}
