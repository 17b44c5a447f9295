//! The BGP speaker: the one task that owns the RIB and the peer table
//! (RFC 4271 §9: UPDATE processing, decision process, update-send process;
//! RFC 4724 §2 End-of-RIB and §4.2 graceful restart helper, with RFC 8538;
//! RFC 4486 prefix limits; RFC 8326 graceful shutdown).
//!
//! It is fed typed messages: resolved configuration from the datastore,
//! events from the per-session drivers ([`session`]), inbound connections
//! from the listeners, and queries from the management API. Nothing else
//! mutates its state.

pub mod bfd;
#[cfg(test)]
mod bfd_tests;
mod drain;
mod export;
mod families;
#[cfg(test)]
mod fixtures;
mod graceful;
mod import;
mod lifecycle;
#[cfg(test)]
mod lifecycle_tests;
mod listener;
mod nexthop;
mod peers;
pub mod session;
#[allow(unsafe_code)] // the one documented socket-options module
mod sockopt;
pub mod status;

use ipnet::IpNet;
use petrel_bgp::fsm::{Negotiated, State};
use petrel_bgp::rib::{PathSource, Rib};
use petrel_bgp::wire::{Family, Message, Nlri, PathAttributes};
use petrel_dataplane::RouteTarget;
use petrel_datastore::resolved::{NodeConfig, PeerOrigin};
use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::sync::CancellationToken;

pub use drain::{DRAIN_ON_STOP, GRACEFUL_SHUTDOWN};
pub use export::{NO_ADVERTISE, NO_EXPORT, NO_EXPORT_SUBCONFED};
pub use lifecycle::{
    END_OF_RIB_HOLD_IPAM, END_OF_RIB_HOLD_SERVICES, QUIET_PERIOD, SELECTION_DEFERRAL,
    SpeakerOptions,
};
pub use peers::PeerEntry;
pub use status::{
    AdjRibRoute, BestRoute, EventKind, PeerKind, PeerStatus, RestartPhase, RouteChange,
    RouteStatus, SessionTransition, SpeakerEvent,
};

/// Commands from the speaker to one session driver.
#[derive(Debug)]
pub enum SessionCmd {
    /// Hand over an accepted inbound connection from this peer.
    Inbound(TcpStream),
    /// Send these routes, all sharing one attribute set.
    Announce(Arc<PathAttributes>, Vec<Nlri>),
    Withdraw(Vec<Nlri>),
    /// Send a message on the established connection as it is (End-of-RIB,
    /// ROUTE-REFRESH demarcation).
    Send(Message),
    /// Stop the session with this NOTIFICATION (sent as is), then stay down
    /// (`restart == false`) or come back after a delay.
    Stop {
        notification: petrel_bgp::wire::Notification,
        restart: bool,
    },
    /// Stop the session with this NOTIFICATION and start it again at once
    /// (BFD Down: the session comes back as soon as the path does).
    Reset(petrel_bgp::wire::Notification),
    /// Configuration changed in a way that needs no reset (timers, limits).
    Reconfigure(Box<petrel_bgp::fsm::SessionConfig>),
}

/// Events from a session driver to the speaker.
#[derive(Debug)]
pub enum SessionEvent {
    State(State),
    Established {
        negotiated: Box<Negotiated>,
        local: SocketAddr,
        remote: SocketAddr,
    },
    /// The session left Established or an attempt failed.
    Down {
        reason: petrel_bgp::fsm::DownReason,
        was_established: bool,
    },
    Received(Message),
    /// RFC 7606 non-fatal errors applied to a received UPDATE.
    AttributeErrors(Vec<String>),
}

/// Queries from the management API.
#[derive(Debug)]
pub enum Query {
    Peers(oneshot::Sender<Vec<PeerStatus>>),
    Routes(Option<Family>, oneshot::Sender<Vec<RouteStatus>>),
    /// Adj-RIB-In before policy (`received`) or Adj-RIB-Out of the peers
    /// matching `peer` (an address or configuration name; all when `None`).
    PeerRoutes {
        peer: Option<String>,
        received: bool,
        family: Option<Family>,
        reply: oneshot::Sender<Vec<AdjRibRoute>>,
    },
    /// The BFD sessions (empty when no peer has a BFD profile).
    Bfd(oneshot::Sender<bfd::BfdSnapshot>),
}

/// Everything the speaker task receives.
#[derive(Debug)]
pub enum SpeakerMsg {
    Session {
        id: u32,
        event: SessionEvent,
    },
    Inbound {
        stream: TcpStream,
        remote: SocketAddr,
    },
    Query(Query),
    /// Originate (or stop originating) these prefixes, besides those of the
    /// configuration: service addresses from `petrel_services`.
    Originate {
        advertise: Vec<IpNet>,
        withdraw: Vec<IpNet>,
    },
    /// What this hold waited for is originated (see
    /// [`SpeakerOptions::end_of_rib_holds`]): End-of-RIB may go out once no
    /// hold is left. A pending configuration change is applied first.
    ReleaseEndOfRib(String),
    /// The addresses of the bound listeners.
    Listeners(oneshot::Sender<Vec<SocketAddr>>),
    /// The agent is stopping with `--drain-seconds`: drain (RFC 8326) until
    /// it stops.
    Drain,
}

/// Cloneable handle to the speaker task.
#[derive(Clone, Debug)]
pub struct SpeakerHandle {
    tx: mpsc::Sender<SpeakerMsg>,
    /// Session transitions and route changes for `WatchEvents`.
    events: tokio::sync::broadcast::Sender<SpeakerEvent>,
    /// Connections refused because no peer is configured for their address.
    rejected: Arc<std::sync::atomic::AtomicU64>,
    /// Why this node drains (RFC 8326), while it does.
    drain: watch::Receiver<Option<String>>,
}

impl SpeakerHandle {
    /// Connections refused so far because no peer is configured for the
    /// source address (each got Cease/Connection Rejected).
    pub fn rejected_connections(&self) -> u64 {
        self.rejected.load(std::sync::atomic::Ordering::Relaxed)
    }
    /// Session transitions and best-path changes from now on (a receiver
    /// that falls behind by [`EVENT_BACKLOG`] events gets `Lagged`).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<SpeakerEvent> {
        self.events.subscribe()
    }
    /// Why this node drains (graceful shutdown, RFC 8326), while it does.
    pub fn draining(&self) -> Option<String> {
        self.drain.borrow().clone()
    }
    /// Start draining until the speaker stops (`--drain-seconds`): every
    /// route this node originates goes out again with GRACEFUL_SHUTDOWN.
    pub async fn drain(&self) {
        let _ = self.tx.send(SpeakerMsg::Drain).await;
    }
    /// Whether the speaker task is still running (its inbox is open).
    pub fn is_running(&self) -> bool {
        !self.tx.is_closed()
    }
    pub async fn peers(&self) -> Vec<PeerStatus> {
        let (tx, rx) = oneshot::channel();
        if self
            .tx
            .send(SpeakerMsg::Query(Query::Peers(tx)))
            .await
            .is_err()
        {
            return vec![];
        }
        rx.await.unwrap_or_default()
    }
    /// See [`Query::PeerRoutes`].
    pub async fn peer_routes(
        &self,
        peer: Option<String>,
        received: bool,
        family: Option<Family>,
    ) -> Vec<AdjRibRoute> {
        let (reply, rx) = oneshot::channel();
        let q = Query::PeerRoutes {
            peer,
            received,
            family,
            reply,
        };
        if self.tx.send(SpeakerMsg::Query(q)).await.is_err() {
            return vec![];
        }
        rx.await.unwrap_or_default()
    }
    /// The BFD sessions and counters (`petrel bfd`, metrics).
    pub async fn bfd(&self) -> bfd::BfdSnapshot {
        let (tx, rx) = oneshot::channel();
        if self
            .tx
            .send(SpeakerMsg::Query(Query::Bfd(tx)))
            .await
            .is_err()
        {
            return bfd::BfdSnapshot::default();
        }
        rx.await.unwrap_or_default()
    }
    /// Start and stop originating prefixes (see [`SpeakerMsg::Originate`]).
    pub async fn originate(&self, advertise: Vec<IpNet>, withdraw: Vec<IpNet>) {
        if advertise.is_empty() && withdraw.is_empty() {
            return;
        }
        let _ = self
            .tx
            .send(SpeakerMsg::Originate {
                advertise,
                withdraw,
            })
            .await;
    }
    /// Release an End-of-RIB hold (see [`SpeakerMsg::ReleaseEndOfRib`]).
    pub async fn release_end_of_rib(&self, hold: &str) {
        let _ = self
            .tx
            .send(SpeakerMsg::ReleaseEndOfRib(hold.to_string()))
            .await;
    }
    /// The addresses the BGP listeners are bound to now.
    pub async fn listeners(&self) -> Vec<SocketAddr> {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(SpeakerMsg::Listeners(tx)).await.is_err() {
            return vec![];
        }
        rx.await.unwrap_or_default()
    }
    pub async fn routes(&self, family: Option<Family>) -> Vec<RouteStatus> {
        let (tx, rx) = oneshot::channel();
        if self
            .tx
            .send(SpeakerMsg::Query(Query::Routes(family, tx)))
            .await
            .is_err()
        {
            return vec![];
        }
        rx.await.unwrap_or_default()
    }
}

/// Events kept for a slow `WatchEvents` client before it loses some.
pub const EVENT_BACKLOG: usize = 4096;

/// Selected routes handed to the dataplane: prefix -> kernel route (`None` =
/// withdrawn). Learned routes go to their (multipath) next hops; the node's
/// own pod blocks become blackholes; other local routes are not installed.
pub type FibChanges = Vec<(IpNet, Option<RouteTarget>)>;

/// What the speaker tells the dataplane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FibMsg {
    Changes(FibChanges),
    /// Every peer has converged (see [`SpeakerOptions`]), or the stale
    /// timeout passed: routes adopted at start-up that are still unclaimed
    /// can go.
    Converged,
}

/// The kernel route for a Loc-RIB entry.
fn fib_target(dest: Option<&petrel_bgp::rib::Destination>, own_block: bool) -> Option<RouteTarget> {
    let dest = dest?;
    if dest.best()?.source.local {
        return own_block.then_some(RouteTarget::Blackhole);
    }
    let hops: Vec<IpAddr> = dest
        .multipath_paths()
        .iter()
        .filter(|p| !p.source.local)
        .filter_map(|p| p.next_hop)
        .collect();
    RouteTarget::from_next_hops(hops)
}

/// The speaker's state; see the module docs.
pub struct Speaker {
    node: Option<NodeConfig>,
    peers: BTreeMap<PeerOrigin, PeerEntry>,
    ids: HashMap<u32, PeerOrigin>,
    next_id: u32,
    rib: Rib,
    local: Arc<PathSource>,
    listeners: listener::Listeners,
    tx: mpsc::Sender<SpeakerMsg>,
    fib: Option<mpsc::UnboundedSender<FibMsg>>,
    converged: bool,
    /// Prefixes originated besides the configuration's (service addresses).
    dynamic: std::collections::BTreeSet<IpNet>,
    /// Published events (`status::publish_*`); built only when watched.
    events: tokio::sync::broadcast::Sender<SpeakerEvent>,
    /// Set while this agent restarts with its forwarding state preserved
    /// (routes of a previous agent were in the kernel): until when OPENs
    /// carry the Restart State bit (RFC 4724 §4.1), at the latest.
    restarting: Option<std::time::Instant>,
    /// When the wait for convergence ends even if some peers have not
    /// converged (start + `stale_timeout`).
    converge_deadline: std::time::Instant,
    /// End-of-RIB holds not released yet, with when each ends anyway.
    eor_holds: BTreeMap<String, std::time::Instant>,
    /// Shared with [`SpeakerHandle::rejected_connections`].
    rejected: Arc<std::sync::atomic::AtomicU64>,
    /// When a rejected connection from each source address was last logged.
    rejected_logged: HashMap<IpAddr, std::time::Instant>,
    /// The agent stops with `--drain-seconds`: drain until then.
    stopping: bool,
    /// Why the node drains, as last advertised (see [`drain`]).
    drain: watch::Sender<Option<String>>,
    /// RFC 4724 §4.1 selection deferral: this agent restarted with its
    /// forwarding state, and nothing selected goes to the kernel or the peers
    /// until every peer has sent End-of-RIB or `defer_deadline` passed.
    deferring: bool,
    defer_deadline: std::time::Instant,
    /// The BFD driver thread, once a peer has a BFD profile.
    bfd: Option<bfd::BfdHandle>,
    /// Where the BFD driver reports state changes; the receiver is taken by
    /// the speaker task.
    bfd_events: mpsc::UnboundedSender<bfd::BfdEvent>,
    bfd_rx: Option<mpsc::UnboundedReceiver<bfd::BfdEvent>>,
    /// Whether the BFD driver may be started (tests play it instead).
    bfd_autostart: bool,
}

impl Speaker {
    /// A speaker that has no configuration yet; see [`SpeakerOptions`].
    fn new(
        tx: mpsc::Sender<SpeakerMsg>,
        fib: Option<mpsc::UnboundedSender<FibMsg>>,
        events: tokio::sync::broadcast::Sender<SpeakerEvent>,
        options: &SpeakerOptions,
        rejected: Arc<std::sync::atomic::AtomicU64>,
    ) -> Self {
        let now = std::time::Instant::now();
        let (bfd_events, bfd_rx) = mpsc::unbounded_channel();
        Speaker {
            node: None,
            peers: BTreeMap::new(),
            ids: HashMap::new(),
            next_id: 1,
            rib: Rib::default(),
            local: PathSource::local(std::net::Ipv4Addr::UNSPECIFIED),
            listeners: listener::Listeners::default(),
            tx,
            fib,
            converged: false,
            dynamic: Default::default(),
            events,
            restarting: options.restarting.map(|d| now + d),
            converge_deadline: now + options.stale_timeout,
            eor_holds: options
                .end_of_rib_holds
                .iter()
                .map(|(name, max)| (name.clone(), now + *max))
                .collect(),
            rejected,
            rejected_logged: HashMap::new(),
            stopping: false,
            drain: watch::channel(None).0,
            deferring: options.restarting.is_some(),
            defer_deadline: now + options.selection_deferral.min(options.stale_timeout),
            bfd: None,
            bfd_events,
            bfd_rx: Some(bfd_rx),
            bfd_autostart: true,
        }
    }

    /// Run the speaker until `shutdown` is cancelled or `config` closes. `fib` receives selected-route
    /// changes for the dataplane, when one is attached. See [`SpeakerOptions`].
    pub fn spawn(
        mut config: watch::Receiver<Option<NodeConfig>>,
        fib: Option<mpsc::UnboundedSender<FibMsg>>,
        shutdown: CancellationToken,
        options: SpeakerOptions,
    ) -> (SpeakerHandle, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel(1024);
        let (events, _) = tokio::sync::broadcast::channel(EVENT_BACKLOG);
        let rejected = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let mut speaker = Speaker::new(tx.clone(), fib, events.clone(), &options, rejected.clone());
        let handle = SpeakerHandle {
            tx,
            events,
            rejected,
            drain: speaker.drain.subscribe(),
        };
        let mut bfd_rx = speaker.bfd_rx.take();
        let task = tokio::spawn(async move {
            let initial = config.borrow_and_update().clone();
            if let Some(c) = initial {
                speaker.apply_config(c).await;
            }
            // Graceful restart deadlines (restart and stale times, seconds).
            let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => {
                        let now = std::time::Instant::now();
                        speaker.graceful_tick(now);
                        speaker.flush();
                        speaker.lifecycle_tick(now);
                        speaker.listeners.retry(now).await;
                    }
                    changed = config.changed() => {
                        if changed.is_err() {
                            break;
                        }
                        let c = config.borrow_and_update().clone();
                        if let Some(c) = c {
                            speaker.apply_config(c).await;
                        }
                    }
                    Some(msg) = rx.recv() => {
                        // What a released hold waited for may be in a
                        // configuration not applied yet (IPAM's blocks).
                        if matches!(msg, SpeakerMsg::ReleaseEndOfRib(_))
                            && config.has_changed().unwrap_or(false)
                        {
                            let c = config.borrow_and_update().clone();
                            if let Some(c) = c {
                                speaker.apply_config(c).await;
                            }
                        }
                        speaker.handle(msg).await
                    }
                    Some(ev) = async {
                        match bfd_rx.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    } => {
                        let ids: Vec<u32> = speaker.peers.values().map(|e| e.id).collect();
                        let before: Vec<_> = ids.iter().map(|id| speaker.watched_state(*id)).collect();
                        speaker.bfd_event(ev);
                        for (id, before) in ids.into_iter().zip(before) {
                            speaker.publish_transition(id, before);
                        }
                        speaker.flush();
                    }
                    _ = shutdown.cancelled() => break,
                }
            }
            speaker.shutdown().await;
        });
        (handle, task)
    }

    async fn handle(&mut self, msg: SpeakerMsg) {
        match msg {
            SpeakerMsg::Session { id, event } => {
                let before = self.watched_state(id);
                self.session_event(id, event);
                self.publish_transition(id, before);
            }
            SpeakerMsg::Inbound { stream, remote } => self.inbound(stream, remote),
            SpeakerMsg::Query(Query::Peers(reply)) => {
                let _ = reply.send(self.peer_views());
            }
            SpeakerMsg::Query(Query::Routes(family, reply)) => {
                let _ = reply.send(self.route_views(family));
            }
            SpeakerMsg::Query(Query::Bfd(reply)) => match &self.bfd {
                Some(h) => h.snapshot_to(reply),
                None => {
                    let _ = reply.send(bfd::BfdSnapshot::default());
                }
            },
            SpeakerMsg::Query(Query::PeerRoutes {
                peer,
                received,
                family,
                reply,
            }) => {
                let _ = reply.send(self.peer_route_views(peer.as_deref(), received, family));
            }
            SpeakerMsg::Originate {
                advertise,
                withdraw,
            } => self.originate_delta(advertise, withdraw),
            SpeakerMsg::ReleaseEndOfRib(hold) => {
                self.flush();
                self.release_end_of_rib(&hold);
            }
            SpeakerMsg::Listeners(reply) => {
                let _ = reply.send(self.listeners.addresses());
            }
            SpeakerMsg::Drain => {
                self.stopping = true;
                self.update_drain();
            }
        }
        self.flush();
        self.check_converged(std::time::Instant::now());
    }

    /// Push pending best-path changes to the peers and the dataplane.
    fn flush(&mut self) {
        if self.deferring {
            // RFC 4724 §4.1: the changes wait for the deferred selection;
            // the forwarding state kept from before the restart serves.
            return;
        }
        let changed = self.rib.take_changes();
        if changed.is_empty() {
            return;
        }
        self.publish_route_changes(&changed);
        self.export_changes(&changed);
        if let Some(fib) = &self.fib {
            let pod_cidrs: &[IpNet] = self.node.as_ref().map(|n| &n.pod_cidrs[..]).unwrap_or(&[]);
            let changes: FibChanges = changed
                .iter()
                .map(|prefix| {
                    (
                        *prefix,
                        fib_target(self.rib.get(prefix), pod_cidrs.contains(prefix)),
                    )
                })
                .collect();
            let _ = fib.send(FibMsg::Changes(changes));
        }
    }

    async fn shutdown(&mut self) {
        let keys: Vec<PeerOrigin> = self.peers.keys().cloned().collect();
        for k in keys {
            self.remove_peer(
                &k,
                petrel_bgp::wire::notification::CEASE_ADMIN_SHUTDOWN,
                "petrel agent shutting down",
            );
        }
        // The BFD thread ends its sessions with AdminDown.
        self.bfd = None;
        // Give the drivers a moment to flush their NOTIFICATIONs.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}
