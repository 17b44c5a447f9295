//! Peer lifecycle in the speaker: applying configuration changes with the
//! least disruption (RFC 4486 subcodes on reset), spawning session drivers,
//! routing inbound connections, and session events.

use super::{SessionCmd, SessionEvent, Speaker};
use crate::session::{self, SessionStats};
use ipnet::IpNet;
use petrel_bgp::fsm::{DownReason, Negotiated, SessionConfig, State};
use petrel_bgp::rib::PathSource;
use petrel_bgp::wire::{
    self, Family, Message, Notification, Origin, PathAttributes, RouteRefresh, notification as n,
};
use petrel_datastore::resolved::{Community, NodeConfig, PeerConfig, PeerOrigin};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{info, warn};

/// The speaker's view of one configured peer.
pub struct PeerEntry {
    pub id: u32,
    pub config: PeerConfig,
    pub cmd: mpsc::UnboundedSender<SessionCmd>,
    pub task: tokio::task::JoinHandle<()>,
    pub state: State,
    /// Set while Established: the source stamped on this peer's paths.
    pub source: Option<Arc<PathSource>>,
    pub negotiated: Option<Box<Negotiated>>,
    pub local_addr: Option<SocketAddr>,
    /// Our address of the other family on the session's interface, the
    /// next hop for routes of that family (RFC 2545 §3).
    pub other_family_hop: Option<IpAddr>,
    pub established_at: Option<Instant>,
    pub established_transitions: u64,
    pub last_error: String,
    /// The last NOTIFICATION sent or received: not overwritten by later
    /// connection failures that carry none.
    pub last_notification: String,
    /// Set when the speaker itself stops the session (a prefix limit): why,
    /// and the NOTIFICATION sent. Reported when the session goes down instead
    /// of the driver's generic "administratively stopped".
    pub stop_reason: Option<(String, Notification)>,
    pub stats: Arc<SessionStats>,
    /// Adj-RIB-Out: what this peer has been sent.
    pub adj_out: HashMap<IpNet, Arc<PathAttributes>>,
    pub eor_received: BTreeSet<Family>,
    /// When the last UPDATE came in this session (the quiet period of a peer
    /// without graceful restart, [`super::QUIET_PERIOD`]).
    pub last_update: Option<Instant>,
    /// Whether this session has been sent our End-of-RIB.
    pub eor_sent: bool,
    /// Pre-policy Adj-RIB-In, kept so a policy change can be re-applied
    /// without asking the peer to resend (soft reconfiguration inbound).
    pub adj_in_pre: HashMap<(IpNet, u32), Arc<PathAttributes>>,
    /// Routes of the peer not re-sent yet since its BoRR (RFC 7313).
    pub refresh_stale: std::collections::HashSet<(IpNet, u32)>,
    /// Set while the peer restarts gracefully (RFC 4724 §4.2): its stale
    /// routes, kept until it is back and has sent End-of-RIB.
    pub graceful: Option<super::graceful::Helper>,
    /// BFD state of the session, when the peer has a BFD profile.
    pub bfd: crate::bfd::PeerBfd,
}

impl PeerEntry {
    pub fn ebgp(&self) -> bool {
        self.config.peer_as != self.config.local_as
    }

    /// This node's addresses on the session: the local end of the TCP
    /// connection and the address of the other family on its interface.
    pub fn own_addresses(&self) -> [Option<IpAddr>; 2] {
        [
            self.local_addr.map(|a| a.ip().to_canonical()),
            self.other_family_hop,
        ]
    }
}

/// Does a change from `a` to `b` need the session to be reset?
fn needs_reset(a: &PeerConfig, b: &PeerConfig) -> bool {
    a.address != b.address
        || a.port != b.port
        || a.peer_as != b.peer_as
        || a.local_as != b.local_as
        || a.password != b.password
        || a.ttl_security != b.ttl_security
        || a.source_address != b.source_address
        || a.hold_time != b.hold_time
        || a.keepalive_time != b.keepalive_time
        || a.max_restart_time != b.max_restart_time
        || a.passive != b.passive
        || a.families != b.families
}

fn secs(d: Duration) -> u16 {
    d.as_secs().min(u16::MAX as u64) as u16
}

/// The FSM configuration for a peer of this node.
///
/// `restarting` sets the Restart State bit (RFC 4724 §4.1: this agent
/// restarted with its forwarding state and has not converged yet).
pub fn fsm_config(node: &NodeConfig, p: &PeerConfig, seed: u64, restarting: bool) -> SessionConfig {
    SessionConfig {
        local_as: p.local_as,
        peer_as: p.peer_as,
        router_id: node.router_id,
        hold_time: secs(p.hold_time),
        keepalive_time: p.keepalive_time.map(secs),
        connect_retry: Duration::from_secs(5),
        idle_hold: Duration::from_secs(2),
        max_idle_hold: Duration::from_secs(30),
        passive: p.passive,
        families: p.families.clone(),
        route_refresh: true,
        enhanced_route_refresh: true,
        extended_message: true,
        // Forwarding State set for every family (RFC 4724 §3): what petrel
        // advertises is forwarded by kernel routes it does not own and that
        // outlive the agent (the CNI's routes to pods, the service proxy's
        // rules), and a reflected route keeps its next hop. So a peer keeps
        // this node's routes across an agent restart until the node's
        // End-of-RIB, instead of flushing them when the session comes back.
        graceful_restart: Some(wire::GracefulRestartCap {
            restart_state: restarting,
            notification: true,
            restart_time: secs(p.max_restart_time).min(4095),
            families: p.families.iter().map(|f| (*f, true)).collect(),
        }),
        send_hold_time: None,
        seed,
    }
}

/// Attributes of a locally originated route (before export rewrites).
fn local_attrs(communities: &[Community]) -> Arc<PathAttributes> {
    let mut a = PathAttributes {
        origin: Some(Origin::Igp),
        ..Default::default()
    };
    for c in communities {
        match c {
            Community::Standard(v) => a.communities.push(*v),
            Community::Large(v) => a.large_communities.push(*v),
        }
    }
    Arc::new(a)
}

impl Speaker {
    /// Every prefix this node originates under `node`: the configuration's
    /// `originate`, and the dynamic set where the configuration has no entry.
    fn effective_origination(&self, node: &NodeConfig) -> BTreeMap<IpNet, Vec<Community>> {
        let mut out = node.originate.clone();
        for p in &self.dynamic {
            out.entry(*p).or_default();
        }
        out
    }

    /// Add and remove dynamically originated prefixes (service addresses).
    /// Work is proportional to the change: only the named prefixes are touched.
    pub(super) fn originate_delta(&mut self, advertise: Vec<IpNet>, withdraw: Vec<IpNet>) {
        let configured =
            |s: &Self, p: &IpNet| s.node.as_ref().is_some_and(|n| n.originate.contains_key(p));
        for p in withdraw {
            if self.dynamic.remove(&p) && self.node.is_some() && !configured(self, &p) {
                self.rib.remove(0, p, 0);
            }
        }
        for p in advertise {
            if self.dynamic.insert(p) && self.node.is_some() && !configured(self, &p) {
                let local = self.local.clone();
                self.rib.insert(&local, p, 0, local_attrs(&[]), None);
            }
        }
    }

    /// Apply a newly resolved node configuration.
    pub(super) async fn apply_config(&mut self, new: NodeConfig) {
        let old = self.node.take();
        let identity_changed = old
            .as_ref()
            .is_some_and(|o| o.local_as != new.local_as || o.router_id != new.router_id);
        if identity_changed {
            info!(node = %new.node_name, "AS number or router id changed; resetting all sessions");
            let keys: Vec<PeerOrigin> = self.peers.keys().cloned().collect();
            for k in keys {
                self.remove_peer(
                    &k,
                    n::CEASE_OTHER_CONFIG_CHANGE,
                    "local AS or router id changed",
                );
            }
        }
        self.local = PathSource::local(new.router_id);
        if old.as_ref().is_none_or(|o| o.max_paths != new.max_paths) {
            self.rib.set_max_paths(new.max_paths);
        }

        // Originated routes: the configuration's, plus the dynamic ones
        // (service addresses) where the configuration has none.
        let old_orig = old
            .as_ref()
            .map(|o| self.effective_origination(o))
            .unwrap_or_default();
        let new_orig = self.effective_origination(&new);
        for prefix in old_orig.keys() {
            if !new_orig.contains_key(prefix) || identity_changed {
                self.rib.remove(0, *prefix, 0);
            }
        }
        for (prefix, comms) in &new_orig {
            if old_orig.get(prefix) != Some(comms) || identity_changed {
                let local = self.local.clone();
                self.rib
                    .insert(&local, *prefix, 0, local_attrs(comms), None);
            }
        }

        // Listeners follow the port and bind mode.
        self.listeners.reconcile(&new, self.tx.clone()).await;

        // Peers. A session whose configuration object changed (two BGPPeers
        // for the same peer and one is deleted, or a new one takes over)
        // keeps running under the new name when nothing that needs a reset
        // differs.
        let gone: Vec<PeerOrigin> = self
            .peers
            .keys()
            .filter(|k| !new.peers.contains_key(*k))
            .cloned()
            .collect();
        for k in gone {
            let successor = self.peers.get(&k).and_then(|entry| {
                new.peers
                    .iter()
                    .find(|(o, pc)| !self.peers.contains_key(*o) && !needs_reset(&entry.config, pc))
                    .map(|(o, _)| o.clone())
            });
            if let Some(o) = successor
                && let Some(entry) = self.peers.remove(&k)
            {
                info!(peer = %o, previous = %k, "peer now configured by another object; session kept");
                self.ids.insert(entry.id, o.clone());
                self.peers.insert(o, entry);
            }
        }
        let removed: Vec<PeerOrigin> = self
            .peers
            .keys()
            .filter(|k| !new.peers.contains_key(*k))
            .cloned()
            .collect();
        for k in removed {
            self.remove_peer(
                &k,
                n::CEASE_PEER_DECONFIGURED,
                "peer removed from configuration",
            );
        }
        let mut reimport = old.as_ref().is_some_and(|o| {
            o.filters != new.filters
                || o.cluster != new.cluster
                || o.route_reflector_cluster_id != new.route_reflector_cluster_id
        });
        self.node = Some(new.clone());
        for (origin, pc) in &new.peers {
            match self.peers.get_mut(origin) {
                Some(entry) if needs_reset(&entry.config, pc) => {
                    info!(peer = %origin, "configuration change needs a session reset");
                    self.remove_peer(
                        origin,
                        n::CEASE_OTHER_CONFIG_CHANGE,
                        "configuration changed",
                    );
                    self.add_peer(origin.clone(), pc.clone());
                }
                Some(entry) => {
                    if entry.config != *pc {
                        info!(peer = %origin, "configuration updated in place");
                        reimport |= entry.config.filters != pc.filters
                            || entry.config.num_allowed_local_as != pc.num_allowed_local_as;
                        entry.config = pc.clone();
                        let _ = entry.cmd.send(SessionCmd::Reconfigure(Box::new(fsm_config(
                            &new,
                            pc,
                            u64::from(entry.id),
                            self.restarting.is_some(),
                        ))));
                        self.export_full(origin);
                    }
                }
                None => self.add_peer(origin.clone(), pc.clone()),
            }
        }
        self.listeners.set_keys(
            self.peers
                .values()
                .map(|p| (p.config.address, p.config.password.clone())),
        );
        self.sync_bfd();
        if reimport {
            info!("import policy changed: re-evaluating received routes");
            self.reimport_all();
        }
        let export_all = old.as_ref().is_some_and(|o| {
            o.filters != new.filters
                || o.prefix_communities != new.prefix_communities
                || o.pass_unknown_attributes != new.pass_unknown_attributes
                || o.route_reflector_cluster_id != new.route_reflector_cluster_id
                || o.ipv4_address != new.ipv4_address
                || o.ipv6_address != new.ipv6_address
        });
        if export_all {
            let origins: Vec<PeerOrigin> = self.peers.keys().cloned().collect();
            for o in &origins {
                self.export_full(o);
            }
        }
        self.update_drain();
        self.flush();
    }

    fn add_peer(&mut self, origin: PeerOrigin, pc: PeerConfig) {
        let Some(node) = &self.node else { return };
        if let Some(other) = self.peers.values().find(|p| p.config.address == pc.address) {
            warn!(peer = %origin, other = %other.config.origin, address = %pc.address,
                "two peers are configured with the same address; ignoring the second");
            return;
        }
        let id = self.next_id;
        self.next_id += 1;
        let stats = Arc::new(SessionStats::default());
        let (cmd, task) = session::spawn(
            id,
            fsm_config(
                node,
                &pc,
                u64::from(id) ^ u64::from(u32::from(node.router_id)),
                self.restarting.is_some(),
            ),
            pc.clone(),
            self.tx.clone(),
            stats.clone(),
        );
        info!(peer = %origin, address = %pc.address, peer_as = pc.peer_as, "peer added");
        self.ids.insert(id, origin.clone());
        self.peers.insert(
            origin,
            PeerEntry {
                id,
                config: pc,
                cmd,
                task,
                state: State::Idle,
                source: None,
                negotiated: None,
                local_addr: None,
                other_family_hop: None,
                established_at: None,
                established_transitions: 0,
                last_error: String::new(),
                last_notification: String::new(),
                stop_reason: None,
                stats,
                adj_out: HashMap::new(),
                eor_received: BTreeSet::new(),
                last_update: None,
                eor_sent: false,
                adj_in_pre: HashMap::new(),
                refresh_stale: Default::default(),
                graceful: None,
                bfd: Default::default(),
            },
        );
    }

    /// Stop a peer's session with a Cease NOTIFICATION and forget it.
    pub(super) fn remove_peer(&mut self, origin: &PeerOrigin, subcode: u8, text: &str) {
        let Some(entry) = self.peers.remove(origin) else {
            return;
        };
        info!(peer = %origin, reason = text, "peer removed");
        self.publish_removed(origin, entry.config.address, entry.state, text);
        // The text goes out as an RFC 9003 communication on Administrative
        // Shutdown and Reset; other subcodes carry no data.
        let (local, peer) = super::graceful::caps(entry.negotiated.as_deref());
        let notification = super::graceful::hard_reset_if_needed(
            petrel_bgp::fsm::cease(subcode, Some(text)),
            local,
            peer,
        );
        let _ = entry.cmd.send(SessionCmd::Stop {
            notification,
            restart: false,
        });
        self.ids.remove(&entry.id);
        self.rib.remove_peer(entry.id);
        // The driver exits after sending the NOTIFICATION; dropping the
        // command channel ends it in any case.
        drop(entry.cmd);
        let task = entry.task;
        tokio::spawn(async move {
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                warn!("session driver did not stop within 5 s");
            }
        });
    }

    /// Route an accepted connection to its peer's driver, or reject it.
    pub(super) fn inbound(&mut self, stream: TcpStream, remote: SocketAddr) {
        let addr = remote.ip().to_canonical();
        let Some(entry) = self.peers.values().find(|p| p.config.address == addr) else {
            self.rejected
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if crate::listener::should_log_rejection(
                &mut self.rejected_logged,
                addr,
                Instant::now(),
            ) {
                warn!(remote = %remote,
                    "rejecting connection from an unconfigured peer (logged once a minute per \
                     address, all counted in petrel_bgp_rejected_connections_total)");
            }
            tokio::spawn(reject(stream));
            return;
        };
        if let Some(hops) = entry.config.ttl_security {
            // GTSM (RFC 5082 §3): refuse a connection whose handshake came
            // from further away than `hops`, before reading anything from it.
            let v6 = remote.is_ipv6() && !remote.ip().to_canonical().is_ipv4();
            let min = 256 - u16::from(hops.max(1));
            match crate::sockopt::handshake_ttl(&stream, v6) {
                Ok(ttl) if u16::from(ttl) < min => {
                    warn!(peer = %entry.config.origin, ttl, min_ttl = min,
                        "refusing connection: TTL below the ttlSecurity minimum (GTSM)");
                    return;
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(peer = %entry.config.origin, error = %e, "cannot read the TTL of an accepted connection");
                    return;
                }
            }
            if let Err(e) = crate::sockopt::set_gtsm(&stream, v6, hops) {
                warn!(peer = %entry.config.origin, error = %e, "cannot set GTSM on accepted connection");
                return;
            }
        }
        let _ = entry.cmd.send(SessionCmd::Inbound(stream));
    }

    pub(super) fn session_event(&mut self, id: u32, event: SessionEvent) {
        let Some(origin) = self.ids.get(&id).cloned() else {
            return;
        };
        match event {
            SessionEvent::State(s) => {
                if let Some(e) = self.peers.get_mut(&origin) {
                    e.state = s;
                }
            }
            SessionEvent::Established {
                negotiated,
                local,
                remote,
            } => {
                let Some(e) = self.peers.get_mut(&origin) else {
                    return;
                };
                info!(peer = %origin, %local, %remote, router_id = %negotiated.remote_open.router_id, "session established");
                let mut gone = Vec::new();
                if let Some(h) = &mut e.graceful {
                    // A family the new session did not negotiate sends no
                    // End-of-RIB: its stale routes go now.
                    let mut keep = super::graceful::keep_on_reestablish(
                        &h.families,
                        negotiated.peer_graceful_restart.as_ref(),
                    );
                    keep.retain(|f| negotiated.families.contains(f));
                    gone = h.reestablished(&keep, Instant::now());
                    info!(peer = %origin, kept = h.stale.len(), withdrawn = gone.len(),
                        "graceful restart: peer is back; stale routes stay until its End-of-RIB");
                    if h.is_done() {
                        e.graceful = None;
                    }
                }
                e.source = Some(Arc::new(PathSource {
                    peer: id,
                    name: Arc::from(origin.to_string()),
                    address: e.config.address,
                    router_id: negotiated.remote_open.router_id,
                    ebgp: e.ebgp(),
                    local: false,
                    cluster_node: super::import::peer_node(&origin).is_some(),
                }));
                e.state = State::Established;
                e.negotiated = Some(negotiated);
                e.local_addr = Some(local);
                e.other_family_hop = crate::nexthop::other_family_on_interface(local.ip());
                e.established_at = Some(Instant::now());
                e.established_transitions += 1;
                e.last_error.clear();
                e.stop_reason = None;
                e.adj_out.clear();
                e.eor_received.clear();
                e.last_update = None;
                e.eor_sent = false;
                self.drop_stale(&origin, &gone);
                self.export_full(&origin);
                // End-of-RIB only once what this node originates is in the
                // RIB (RFC 4724 §4.1: a helper drops what is missing).
                self.send_end_of_rib(&origin);
            }
            SessionEvent::Down {
                reason,
                was_established,
            } => {
                let Some(e) = self.peers.get_mut(&origin) else {
                    return;
                };
                // Ended by BFD Down (RFC 5882 §4.3): the peer's C bit then.
                let bfd_down = e.bfd.stopped.take();
                let (reason, error) = match (reason, e.stop_reason.take()) {
                    (DownReason::Stopped, Some((text, sent))) => {
                        (DownReason::NotificationSent(sent), Some(text))
                    }
                    (reason, _) => (reason, None),
                };
                let error = error.unwrap_or_else(|| reason.to_string());
                if was_established {
                    warn!(peer = %origin, %reason, %error, "session down");
                } else {
                    info!(peer = %origin, %reason, %error, "session attempt failed");
                }
                if matches!(
                    reason,
                    DownReason::NotificationSent(_) | DownReason::NotificationReceived(_)
                ) {
                    e.last_notification = reason.to_string();
                }
                // A restart of a peer that announced graceful restart keeps
                // its routes (RFC 4724 §4.2); a second failure before its
                // End-of-RIB, or any other loss, withdraws them.
                let retain = match (e.negotiated.as_deref(), was_established, &e.graceful) {
                    (Some(neg), true, None) => {
                        let (local, peer) = super::graceful::caps(Some(neg));
                        super::graceful::retain_on_down(&reason, local, peer, &neg.families)
                    }
                    _ => None,
                };
                // A BFD Down with the C bit while the peer restarts keeps its
                // routes until the restart ends (RFC 5882 §4.3).
                let helping = e.graceful.is_some() && (!was_established || bfd_down == Some(true));
                e.last_error = error;
                e.source = None;
                e.negotiated = None;
                e.established_at = None;
                e.adj_out.clear();
                e.refresh_stale.clear();
                e.eor_received.clear();
                e.last_update = None;
                e.eor_sent = false;
                if e.state == State::Established {
                    e.state = State::Idle;
                }
                if let Some((families, restart_time)) = retain {
                    e.adj_in_pre
                        .retain(|(p, _), _| families.contains(&Family::of(p)));
                    let stale: std::collections::HashSet<(IpNet, u32)> =
                        e.adj_in_pre.keys().copied().collect();
                    info!(peer = %origin, stale = stale.len(), ?families, ?restart_time,
                        "graceful restart: keeping the peer's routes while it restarts");
                    e.last_error = format!(
                        "{} (graceful restart: {} routes kept for up to {}s)",
                        e.last_error,
                        stale.len(),
                        restart_time.as_secs()
                    );
                    e.graceful = Some(super::graceful::Helper::start(
                        families.clone(),
                        stale,
                        restart_time,
                        Instant::now(),
                    ));
                    for f in [Family::Ipv4Unicast, Family::Ipv6Unicast] {
                        if !families.contains(&f) {
                            self.rib.remove_peer_family(id, f);
                        }
                    }
                } else if !helping {
                    if e.graceful.take().is_some() {
                        info!(peer = %origin, "graceful restart: the session failed again; withdrawing the stale routes");
                    }
                    e.adj_in_pre.clear();
                    self.rib.remove_peer(id);
                }
            }
            SessionEvent::Received(msg) => self.received(&origin, msg),
            SessionEvent::AttributeErrors(errs) => {
                for err in errs {
                    warn!(peer = %origin, error = %err, "malformed attribute handled per RFC 7606");
                }
            }
        }
    }

    fn received(&mut self, origin: &PeerOrigin, msg: Message) {
        match msg {
            Message::Update(u) => {
                if let Some(e) = self.peers.get_mut(origin) {
                    e.last_update = Some(Instant::now());
                }
                self.import(origin, u)
            }
            Message::EndOfRib(f) => {
                if let Some(e) = self.peers.get_mut(origin) {
                    info!(peer = %origin, family = f.name(), "End-of-RIB received");
                    e.eor_received.insert(f);
                    if let Some(h) = &mut e.graceful {
                        let gone = h.end_of_rib(f);
                        if h.is_done() {
                            e.graceful = None;
                            info!(peer = %origin, withdrawn = gone.len(), "graceful restart complete");
                        }
                        self.drop_stale(origin, &gone);
                    }
                }
            }
            Message::RouteRefresh(rr) => self.route_refresh(origin, rr),
            _ => {}
        }
    }
}

impl Speaker {
    /// Withdraws stale routes of a peer (graceful restart).
    fn drop_stale(&mut self, origin: &PeerOrigin, keys: &[(IpNet, u32)]) {
        let Some(e) = self.peers.get_mut(origin) else {
            return;
        };
        for key in keys {
            e.adj_in_pre.remove(key);
            self.rib.remove(e.id, key.0, key.1);
        }
    }

    /// This agent's own restart is over (every peer sent End-of-RIB, or
    /// the deadline passed): later OPENs carry the Restart State bit clear.
    /// Sessions are not reset for it.
    pub(super) fn end_own_restart(&mut self, why: &str) {
        if self.restarting.take().is_none() {
            return;
        }
        info!(
            reason = why,
            "restart complete: clearing the Restart State bit"
        );
        let Some(node) = &self.node else { return };
        for entry in self.peers.values() {
            let _ = entry.cmd.send(SessionCmd::Reconfigure(Box::new(fsm_config(
                node,
                &entry.config,
                u64::from(entry.id),
                false,
            ))));
        }
    }

    /// Withdraws the stale routes of peers whose restart or stale time has
    /// passed (RFC 4724 §4.2).
    pub(super) fn graceful_tick(&mut self, now: Instant) {
        if self.restarting.is_some_and(|deadline| now >= deadline) {
            self.end_own_restart("no End-of-RIB from every peer in time");
        }
        let expired: Vec<PeerOrigin> = self
            .peers
            .iter()
            .filter(|(_, e)| e.graceful.as_ref().is_some_and(|h| h.expired(now)))
            .map(|(o, _)| o.clone())
            .collect();
        for origin in expired {
            let Some(e) = self.peers.get_mut(&origin) else {
                continue;
            };
            let Some(mut h) = e.graceful.take() else {
                continue;
            };
            let phase = h.phase;
            let gone = h.take_all();
            warn!(peer = %origin, withdrawn = gone.len(), ?phase,
                "graceful restart: time is up; withdrawing the stale routes");
            self.drop_stale(&origin, &gone);
        }
    }

    /// ROUTE-REFRESH from the peer (RFC 2918, RFC 7313).
    fn route_refresh(&mut self, origin: &PeerOrigin, rr: RouteRefresh) {
        let Some(e) = self.peers.get_mut(origin) else {
            return;
        };
        let enhanced = e
            .negotiated
            .as_ref()
            .is_some_and(|n| n.enhanced_route_refresh);
        match rr.subtype {
            // A request: re-send our whole Adj-RIB-Out for the family, framed
            // by BoRR/EoRR when enhanced route refresh was negotiated.
            0 => {
                e.adj_out.retain(|p, _| Family::of(p) != rr.family);
                let demarcate = |subtype| {
                    Message::RouteRefresh(RouteRefresh {
                        family: rr.family,
                        subtype,
                    })
                };
                if enhanced {
                    let _ = e.cmd.send(SessionCmd::Send(demarcate(1)));
                }
                self.export_full(origin);
                if enhanced && let Some(e) = self.peers.get(origin) {
                    let _ = e.cmd.send(SessionCmd::Send(demarcate(2)));
                }
            }
            // BoRR: the peer re-sends its routes; what it does not re-send
            // before EoRR is gone (RFC 7313 §4).
            1 => {
                e.refresh_stale = e
                    .adj_in_pre
                    .keys()
                    .filter(|(p, _)| Family::of(p) == rr.family)
                    .copied()
                    .collect();
            }
            2 => {
                let stale: Vec<(IpNet, u32)> = std::mem::take(&mut e.refresh_stale)
                    .into_iter()
                    .filter(|(p, _)| Family::of(p) == rr.family)
                    .collect();
                let id = e.id;
                for key in &stale {
                    e.adj_in_pre.remove(key);
                }
                for (prefix, path_id) in stale {
                    self.rib.remove(id, prefix, path_id);
                }
            }
            _ => {}
        }
    }
}

/// Send Cease/Connection Rejected (RFC 4486) to an unexpected peer and close.
async fn reject(mut stream: TcpStream) {
    let msg = Message::Notification(Notification {
        code: n::CEASE,
        subcode: n::CEASE_CONNECTION_REJECTED,
        data: vec![],
    });
    if let Ok(bytes) = wire::encode(&msg, &wire::WireContext::initial()) {
        let _ = tokio::time::timeout(Duration::from_secs(2), stream.write_all(&bytes)).await;
    }
    let _ = stream.shutdown().await;
}

/// The IP of an address family, for next-hop selection.
pub(super) fn same_family(a: IpAddr, f: Family) -> bool {
    matches!(
        (a, f),
        (IpAddr::V4(_), Family::Ipv4Unicast) | (IpAddr::V6(_), Family::Ipv6Unicast)
    )
}
