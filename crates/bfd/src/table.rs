//! The set of sessions of one agent: local discriminator allocation (RFC
//! 5880 §6.3 and §6.8.1: unique, nonzero, random) and demultiplexing of
//! received packets (RFC 5880 §6.3 and §6.8.6; RFC 5881 §3 for single hop:
//! by remote address and interface when Your Discriminator is zero; RFC 5883
//! §4.1 for multihop: by the source/destination address pair).
//!
//! [`SessionTable::receive`] is the whole receive path for a driver:
//! decode (malformed datagrams are counted by rule), demultiplex (unknown
//! discriminators and paths are counted), then [`Session::receive`]
//! (session-level drops are counted by the session).
//!
//! Addresses are compared in canonical form, so an IPv4 peer seen through a
//! dual-stack socket as `::ffff:a.b.c.d` matches its IPv4 key.

use crate::RxMeta;
use crate::action::{Action, RxDrop};
use crate::config::{ConfigError, SessionConfig};
use crate::packet::{ControlPacket, DecodeError, decode};
use crate::session::Session;
use crate::status::TableCounters;
use crate::timers::{RandomSource, SplitMix64};
use crate::transport::Hop;
use std::collections::HashMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;
use thiserror::Error;

/// How a session's first packets (Your Discriminator zero) are recognised.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PathKey {
    /// Single hop (RFC 5881 §3): the peer's address and the interface the
    /// session is bound to (`None`: any interface, when the driver cannot
    /// bind it; an exact interface match is preferred).
    SingleHop {
        /// The peer's address.
        peer: IpAddr,
        /// Interface index.
        interface: Option<u32>,
    },
    /// Multihop (RFC 5883 §4.1): the address pair.
    MultiHop {
        /// The peer's address.
        peer: IpAddr,
        /// Our address the peer sends to.
        local: IpAddr,
    },
}

impl PathKey {
    fn canonical(self) -> PathKey {
        match self {
            PathKey::SingleHop { peer, interface } => PathKey::SingleHop {
                peer: peer.to_canonical(),
                interface,
            },
            PathKey::MultiHop { peer, local } => PathKey::MultiHop {
                peer: peer.to_canonical(),
                local: local.to_canonical(),
            },
        }
    }

    /// Whether this is a multihop key.
    pub fn is_multihop(&self) -> bool {
        matches!(self, PathKey::MultiHop { .. })
    }
}

impl fmt::Display for PathKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PathKey::SingleHop {
                peer,
                interface: Some(i),
            } => write!(f, "{peer} on interface {i}"),
            PathKey::SingleHop {
                peer,
                interface: None,
            } => write!(f, "{peer}"),
            PathKey::MultiHop { peer, local } => write!(f, "{peer} to {local} (multihop)"),
        }
    }
}

/// What the driver learned about a received datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Received {
    /// Source address and port.
    pub source: SocketAddr,
    /// Destination (our) address, from `IP_PKTINFO` / `IPV6_PKTINFO`.
    pub local: IpAddr,
    /// Index of the interface it arrived on.
    pub interface: u32,
    /// Received TTL / Hop Limit.
    pub ttl: u8,
    /// It arrived on the multihop port (4784) rather than 3784.
    pub multihop: bool,
}

/// Why a session could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum TableError {
    /// Another session already has this path.
    #[error("a BFD session for {0} already exists")]
    DuplicatePath(PathKey),
    /// A single-hop key with a multihop configuration, or the reverse.
    #[error("path {path} does not match the session's {hop} configuration")]
    HopMismatch {
        /// The key.
        path: PathKey,
        /// The configured hop mode.
        hop: Hop,
    },
    /// The configuration is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// No free discriminator found (the table would need billions of sessions).
    #[error("no free local discriminator")]
    DiscriminatorsExhausted,
}

/// Why a received datagram reached no session or was dropped by one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Error)]
pub enum RxError {
    /// Not a valid Control packet.
    #[error("malformed BFD packet: {0}")]
    Malformed(#[from] DecodeError),
    /// Your Discriminator names no session (§6.8.6: MUST be discarded).
    #[error("no session with discriminator {0}")]
    UnknownDiscriminator(u32),
    /// Your Discriminator is zero and no session has this path.
    #[error("no session for {0}")]
    NoSessionForPath(PathKey),
    /// The session is single hop and the packet came on the multihop port,
    /// or the reverse.
    #[error("packet for session {discriminator} arrived on the other hop mode's port")]
    WrongPort {
        /// The session's local discriminator.
        discriminator: u32,
    },
    /// The session dropped it.
    #[error("session {discriminator} dropped the packet: {reason}")]
    Dropped {
        /// The session's local discriminator.
        discriminator: u32,
        /// Why.
        reason: RxDrop,
    },
}

/// The sessions of one agent, by local discriminator and by path.
#[derive(Debug)]
pub struct SessionTable<R = SplitMix64> {
    sessions: HashMap<u32, (PathKey, Session<R>)>,
    paths: HashMap<PathKey, u32>,
    rng: R,
    counters: TableCounters,
}

const ALLOCATION_TRIES: usize = 64;

impl<R: RandomSource> SessionTable<R> {
    /// An empty table; `rng` picks discriminators and seeds each session's
    /// jitter source.
    pub fn new(rng: R) -> Self {
        SessionTable {
            sessions: HashMap::new(),
            paths: HashMap::new(),
            rng,
            counters: TableCounters::default(),
        }
    }

    /// Create a session for `path` with a fresh random local discriminator.
    /// Returns the discriminator and the session's first actions.
    pub fn insert(
        &mut self,
        path: PathKey,
        config: SessionConfig,
        now: Instant,
    ) -> Result<(u32, Vec<Action>), TableError> {
        let path = path.canonical();
        if path.is_multihop() != config.hop.is_multihop() {
            return Err(TableError::HopMismatch {
                path,
                hop: config.hop,
            });
        }
        if self.paths.contains_key(&path) {
            return Err(TableError::DuplicatePath(path));
        }
        config.validate()?;
        let discriminator = self.allocate()?;
        let (session, actions) = Session::new(discriminator, config, now, self.rng.fork())?;
        self.sessions.insert(discriminator, (path, session));
        self.paths.insert(path, discriminator);
        Ok((discriminator, actions))
    }

    fn allocate(&mut self) -> Result<u32, TableError> {
        for _ in 0..ALLOCATION_TRIES {
            let candidate = self.rng.next_u32();
            if candidate != 0 && !self.sessions.contains_key(&candidate) {
                return Ok(candidate);
            }
        }
        Err(TableError::DiscriminatorsExhausted)
    }

    /// Remove a session; its discriminator may be reused later.
    pub fn remove(&mut self, discriminator: u32) -> Option<(PathKey, Session<R>)> {
        let entry = self.sessions.remove(&discriminator)?;
        self.paths.remove(&entry.0);
        Some(entry)
    }

    /// The session with this local discriminator.
    pub fn get(&self, discriminator: u32) -> Option<&Session<R>> {
        self.sessions.get(&discriminator).map(|(_, s)| s)
    }

    /// The session with this local discriminator, to feed it events.
    pub fn get_mut(&mut self, discriminator: u32) -> Option<&mut Session<R>> {
        self.sessions.get_mut(&discriminator).map(|(_, s)| s)
    }

    /// The path of a session.
    pub fn path(&self, discriminator: u32) -> Option<PathKey> {
        self.sessions.get(&discriminator).map(|(p, _)| *p)
    }

    /// The session registered for exactly this path.
    pub fn find(&self, path: &PathKey) -> Option<u32> {
        self.paths.get(&path.canonical()).copied()
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    /// All sessions, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, PathKey, &Session<R>)> {
        self.sessions.iter().map(|(d, (p, s))| (*d, *p, s))
    }

    /// Datagrams dropped before reaching a session.
    pub fn counters(&self) -> &TableCounters {
        &self.counters
    }

    /// Select the session a decoded packet belongs to (§6.8.6): by Your
    /// Discriminator when nonzero, else by path. Failures are counted.
    pub fn demux(&mut self, packet: &ControlPacket, rx: &Received) -> Result<u32, RxError> {
        let found = if packet.your_discriminator != 0 {
            match self.sessions.get(&packet.your_discriminator) {
                Some(_) => packet.your_discriminator,
                None => {
                    self.counters.unknown_discriminator += 1;
                    return Err(RxError::UnknownDiscriminator(packet.your_discriminator));
                }
            }
        } else {
            let peer = rx.source.ip().to_canonical();
            let exact = if rx.multihop {
                PathKey::MultiHop {
                    peer,
                    local: rx.local.to_canonical(),
                }
            } else {
                PathKey::SingleHop {
                    peer,
                    interface: Some(rx.interface),
                }
            };
            let any_interface = (!rx.multihop).then_some(PathKey::SingleHop {
                peer,
                interface: None,
            });
            let found = self
                .paths
                .get(&exact)
                .or_else(|| any_interface.and_then(|k| self.paths.get(&k)));
            match found {
                Some(d) => *d,
                None => {
                    self.counters.no_session_for_path += 1;
                    return Err(RxError::NoSessionForPath(exact));
                }
            }
        };
        match self.sessions.get(&found) {
            Some((_, s)) if s.config().hop.is_multihop() == rx.multihop => Ok(found),
            _ => {
                self.counters.wrong_port += 1;
                Err(RxError::WrongPort {
                    discriminator: found,
                })
            }
        }
    }

    /// The whole receive path: decode `payload`, demultiplex, and let the
    /// session process it. Returns the session's discriminator and actions.
    pub fn receive(
        &mut self,
        now: Instant,
        payload: &[u8],
        rx: &Received,
    ) -> Result<(u32, Vec<Action>), RxError> {
        let packet = decode(payload).inspect_err(|e| self.counters.malformed.record(e))?;
        let discriminator = self.demux(&packet, rx)?;
        let session = self
            .get_mut(discriminator)
            .ok_or(RxError::UnknownDiscriminator(discriminator))?;
        let meta = RxMeta {
            ttl: rx.ttl,
            source: rx.source,
        };
        session
            .receive(now, &packet, meta)
            .map(|actions| (discriminator, actions))
            .map_err(|reason| RxError::Dropped {
                discriminator,
                reason,
            })
    }
}
