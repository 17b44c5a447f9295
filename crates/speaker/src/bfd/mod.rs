//! BFD for the speaker's sessions (RFC 5880 asynchronous mode, RFC 5881
//! single hop, RFC 5883 multihop, RFC 5882 §4.3 for BGP).
//!
//! The protocol is the sans-IO `petrel_bfd` crate. This module is its driver:
//! the session table, its sockets and its timers run on a dedicated OS thread
//! (`petrel-bfd`, with its own current-thread runtime), so a transmit or
//! detection timer never waits behind the speaker's bulk work (RIB updates,
//! kernel sync) on the agent's runtime. The speaker talks to it over
//! channels: [`BfdHandle::sync`] with the sessions it wants (computed by
//! [`bfd_peer`] from each peer's configuration), [`BfdEvent`]s back for every
//! state change, [`BfdHandle::snapshot`] for `petrel bfd` and the metrics.
//!
//! The thread and the sockets start with the first configured BFD session,
//! so an agent without BFD binds nothing.

mod coupling;
mod driver;
mod sock;

pub use coupling::PeerBfd;

pub use petrel_bfd::{
    Diagnostic, SessionConfig, SessionCounters, SessionStatus, State as BfdState, StateChange,
    TableCounters,
};

use petrel_bfd::transport::Hop;
use petrel_datastore::resolved::{NodeConfig, PeerConfig};
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// Which BFD session: the peer, our address and the hop mode. A change of
/// any of these is a new session (different ports and demultiplexing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BfdKey {
    pub peer: IpAddr,
    /// Our address: the session's packets leave from it; multihop sessions
    /// are demultiplexed by it (RFC 5883 §4.1).
    pub local: Option<IpAddr>,
    pub multihop: bool,
}

/// A session the speaker wants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BfdPeer {
    pub key: BfdKey,
    pub config: SessionConfig,
}

/// A state change of the session to `peer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BfdEvent {
    pub peer: IpAddr,
    pub change: StateChange,
}

/// One session, for `petrel bfd`, the metrics and `petrel peers`.
#[derive(Debug, Clone)]
pub struct BfdSessionView {
    pub key: BfdKey,
    /// The UDP source port of our packets (`None`: no send socket).
    pub source_port: Option<u16>,
    pub status: SessionStatus,
    /// Time since the last state change (or the session's creation).
    pub since_state_change: Duration,
    /// The last socket error of this session, if any.
    pub error: Option<String>,
}

/// Every session and the driver's counters.
#[derive(Debug, Clone, Default)]
pub struct BfdSnapshot {
    pub sessions: Vec<BfdSessionView>,
    /// Datagrams dropped before they reached a session.
    pub counters: TableCounters,
    /// Receive sockets that could not be opened.
    pub socket_errors: Vec<String>,
    /// The latest a timer of the driver thread has fired after its deadline
    /// (the thread was starved: CPU, or a stall of the process).
    pub max_timer_lateness: Duration,
    /// Timers that fired more than [`LATE_TIMER`] after their deadline.
    pub late_timers: u64,
}

/// A timer this late is counted in [`BfdSnapshot::late_timers`] and logged.
pub const LATE_TIMER: Duration = Duration::from_millis(50);

/// Commands to the driver thread.
#[derive(Debug)]
enum Cmd {
    Sync(Vec<BfdPeer>),
    Snapshot(oneshot::Sender<BfdSnapshot>),
}

/// Handle to the driver thread; dropping every handle stops it (its
/// sessions send AdminDown first, so peers do not take it for a failure).
#[derive(Debug, Clone)]
pub struct BfdHandle {
    tx: mpsc::UnboundedSender<Cmd>,
}

impl BfdHandle {
    /// Start the driver thread; state changes go to `events`.
    pub fn start(events: mpsc::UnboundedSender<BfdEvent>) -> std::io::Result<BfdHandle> {
        let (tx, rx) = mpsc::unbounded_channel();
        driver::spawn(rx, events)?;
        Ok(BfdHandle { tx })
    }

    /// Make the driver run exactly these sessions: new ones start, missing
    /// ones end (with AdminDown), changed parameters are renegotiated with a
    /// Poll Sequence without a reset (RFC 5880 §6.8.3).
    pub fn sync(&self, peers: Vec<BfdPeer>) {
        let _ = self.tx.send(Cmd::Sync(peers));
    }

    /// Answer `reply` with the current sessions (dropped if the driver stopped).
    pub fn snapshot_to(&self, reply: oneshot::Sender<BfdSnapshot>) {
        let _ = self.tx.send(Cmd::Snapshot(reply));
    }

    /// The current sessions.
    pub async fn snapshot(&self) -> BfdSnapshot {
        let (tx, rx) = oneshot::channel();
        self.snapshot_to(tx);
        rx.await.unwrap_or_default()
    }
}

/// Whether `peer` is on a subnet of one of this node's addresses: a directly
/// connected peer gets a single-hop session (RFC 5881), others multihop
/// (RFC 5883).
pub fn directly_connected(node: &NodeConfig, peer: IpAddr) -> bool {
    match peer.to_canonical() {
        IpAddr::V4(a) => node.ipv4_address.is_some_and(|n| n.contains(&a)),
        IpAddr::V6(a) => node.ipv6_address.is_some_and(|n| n.contains(&a)),
    }
}

/// The BFD session for a configured peer, or `None` when BFD is off for it.
/// Our address is the peer's source address, else the node's address of the
/// peer's family.
pub fn bfd_peer(node: &NodeConfig, pc: &PeerConfig) -> Option<BfdPeer> {
    let settings = pc.bfd.as_ref()?;
    let peer = pc.address.to_canonical();
    let local = pc.source_address.map(|a| a.to_canonical()).or(match peer {
        IpAddr::V4(_) => node.ipv4_address.map(|n| IpAddr::V4(n.addr())),
        IpAddr::V6(_) => node.ipv6_address.map(|n| IpAddr::V6(n.addr())),
    });
    let multihop = !directly_connected(node, peer);
    let hop = if multihop {
        Hop::MultiHop {
            min_ttl: settings.minimum_ttl.max(1),
        }
    } else {
        Hop::SingleHop
    };
    Some(BfdPeer {
        key: BfdKey {
            peer,
            local,
            multihop,
        },
        config: SessionConfig {
            desired_min_tx: settings.transmit_interval,
            required_min_rx: settings.receive_interval,
            detect_mult: settings.detect_multiplier.max(1),
            passive: settings.passive,
            hop,
        },
    })
}

/// What [`plan`] asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Change {
    Add(BfdPeer),
    Remove(BfdKey),
    Reconfigure(BfdPeer),
}

/// The changes that turn the `current` sessions into the `desired` ones:
/// removals first (a peer whose key changed frees its path), then additions
/// and reconfigurations, in key order. A repeated key keeps its first entry.
fn plan(current: &BTreeMap<BfdKey, SessionConfig>, desired: &[BfdPeer]) -> Vec<Change> {
    let mut wanted: BTreeMap<BfdKey, &BfdPeer> = BTreeMap::new();
    for p in desired {
        wanted.entry(p.key).or_insert(p);
    }
    let mut out: Vec<Change> = current
        .keys()
        .filter(|k| !wanted.contains_key(*k))
        .map(|k| Change::Remove(*k))
        .collect();
    for (key, p) in wanted {
        match current.get(&key) {
            None => out.push(Change::Add(p.clone())),
            Some(c) if *c != p.config => out.push(Change::Reconfigure(p.clone())),
            Some(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests;
