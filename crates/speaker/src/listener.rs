//! Listening sockets for incoming BGP connections (RFC 4271 §8: passive TCP
//! open), with per-peer TCP MD5 keys (RFC 2385) installed on the listener.
//!
//! On a change of `listenPort` or `bindMode` the listeners that go are
//! closed (their accept tasks awaited) before the new ones are bound, so a
//! wildcard listener does not hold the port against a node-address one. A
//! bind that fails anyway (the address not configured yet, the port taken by
//! another process) is retried with a backoff of 1, 2, 4 … 30 s, for as long
//! as the configuration asks for that listener.

use super::SpeakerMsg;
use petrel_datastore::resolved::{BindMode, NodeConfig};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tracing::{debug, error, info, warn};

struct Bound {
    socket: Arc<TcpListener>,
    task: tokio::task::JoinHandle<()>,
}

/// First delay before binding a failed listener again.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest delay between two attempts.
const RETRY_MAX: Duration = Duration::from_secs(30);

/// A listener that could not be bound: when to try again, and the delay
/// after that attempt.
struct Pending {
    at: Instant,
    backoff: Duration,
    attempts: u32,
}

/// The set of listening sockets, following `listenPort` and `bindMode`.
#[derive(Default)]
pub struct Listeners {
    bound: BTreeMap<SocketAddr, Bound>,
    /// Wanted listeners not bound yet.
    pending: BTreeMap<SocketAddr, Pending>,
    /// Where accepted connections go (set by the first reconcile).
    tx: Option<mpsc::Sender<SpeakerMsg>>,
    /// Peer address -> key currently installed on the listeners.
    keys: BTreeMap<IpAddr, String>,
}

fn desired(node: &NodeConfig) -> BTreeSet<SocketAddr> {
    let port = node.listen_port;
    match node.bind_mode {
        BindMode::None => [
            SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port),
            SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port),
        ]
        .into_iter()
        .collect(),
        BindMode::NodeIp => node
            .ipv4_address
            .map(|a| SocketAddr::new(IpAddr::V4(a.addr()), port))
            .into_iter()
            .chain(
                node.ipv6_address
                    .map(|a| SocketAddr::new(IpAddr::V6(a.addr()), port)),
            )
            .collect(),
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let domain = socket2::Domain::for_address(addr);
    let s = socket2::Socket::new(domain, socket2::Type::STREAM, Some(socket2::Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(128)?;
    TcpListener::from_std(s.into())
}

impl Listeners {
    /// Bind the listeners `node` asks for and close the others (closed
    /// first: see the module docs).
    pub async fn reconcile(&mut self, node: &NodeConfig, tx: mpsc::Sender<SpeakerMsg>) {
        self.tx = Some(tx);
        let want = desired(node);
        let gone: Vec<SocketAddr> = self
            .bound
            .keys()
            .filter(|a| !want.contains(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(b) = self.bound.remove(&addr) {
                info!(%addr, "closing BGP listener");
                b.task.abort();
                // The accept task holds the socket: it is closed once the
                // task is gone.
                let _ = b.task.await;
                drop(b.socket);
            }
        }
        self.pending.retain(|addr, _| want.contains(addr));
        let now = Instant::now();
        for addr in want {
            if self.bound.contains_key(&addr) || self.pending.contains_key(&addr) {
                continue;
            }
            self.pending.insert(
                addr,
                Pending {
                    at: now,
                    backoff: RETRY_FIRST,
                    attempts: 0,
                },
            );
        }
        self.retry(now).await;
    }

    /// Try again to bind the listeners whose retry time has come.
    pub async fn retry(&mut self, now: Instant) {
        let Some(tx) = self.tx.clone() else { return };
        let due: Vec<SocketAddr> = self
            .pending
            .iter()
            .filter(|(_, p)| p.at <= now)
            .map(|(a, _)| *a)
            .collect();
        for addr in due {
            match bind(addr) {
                Ok(l) => {
                    let attempts = self.pending.remove(&addr).map_or(0, |p| p.attempts);
                    info!(%addr, attempts = attempts + 1, "listening for BGP connections");
                    let socket = Arc::new(l);
                    for (peer, key) in &self.keys {
                        if peer.is_ipv6() == addr.is_ipv6()
                            && let Err(e) = crate::sockopt::set_tcp_md5(&*socket, *peer, Some(key))
                        {
                            error!(%peer, error = %e, "cannot install TCP MD5 key on listener");
                        }
                    }
                    let task = tokio::spawn(accept_loop(socket.clone(), tx.clone()));
                    self.bound.insert(addr, Bound { socket, task });
                }
                Err(e) => {
                    let Some(p) = self.pending.get_mut(&addr) else {
                        continue;
                    };
                    p.attempts += 1;
                    // Logged loudly once; an IPv6 listener on a host without
                    // IPv6 would otherwise fill the log.
                    if p.attempts == 1 {
                        warn!(%addr, error = %e, retry_in = ?p.backoff, "cannot bind BGP listener; retrying");
                    } else {
                        debug!(%addr, error = %e, attempts = p.attempts, retry_in = ?p.backoff, "cannot bind BGP listener; retrying");
                    }
                    p.at = now + p.backoff;
                    p.backoff = (p.backoff * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// The addresses bound now.
    pub fn addresses(&self) -> Vec<SocketAddr> {
        self.bound
            .values()
            .filter_map(|b| b.socket.local_addr().ok())
            .collect()
    }

    /// Install the MD5 keys for the configured peers on every listener and
    /// remove keys of peers that are gone or lost their password.
    pub fn set_keys(&mut self, peers: impl Iterator<Item = (IpAddr, Option<String>)>) {
        let want: BTreeMap<IpAddr, String> = peers.filter_map(|(a, k)| k.map(|k| (a, k))).collect();
        for b in self.bound.values() {
            let v6 = b.socket.local_addr().map(|a| a.is_ipv6()).unwrap_or(false);
            for peer in self.keys.keys() {
                if peer.is_ipv6() == v6 && !want.contains_key(peer) {
                    let _ = crate::sockopt::set_tcp_md5(&*b.socket, *peer, None);
                }
            }
            for (peer, key) in &want {
                if peer.is_ipv6() == v6
                    && self.keys.get(peer) != Some(key)
                    && let Err(e) = crate::sockopt::set_tcp_md5(&*b.socket, *peer, Some(key))
                {
                    error!(%peer, error = %e, "cannot install TCP MD5 key on listener");
                }
            }
        }
        self.keys = want;
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for b in self.bound.values() {
            b.task.abort();
        }
    }
}

/// Longest pause after a failed accept (e.g. EMFILE: the connection stays
/// in the backlog until a descriptor is free).
const MAX_ACCEPT_BACKOFF: Duration = Duration::from_secs(1);
/// Accept errors are logged at most this often.
const ACCEPT_LOG_EVERY: Duration = Duration::from_secs(60);

async fn accept_loop(socket: Arc<TcpListener>, tx: mpsc::Sender<SpeakerMsg>) {
    let mut backoff = AcceptBackoff::default();
    loop {
        match socket.accept().await {
            Ok((stream, remote)) => {
                backoff.reset();
                if tx
                    .send(SpeakerMsg::Inbound { stream, remote })
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Err(e) => {
                let (pause, log) = backoff.failed(Instant::now());
                if let Some(suppressed) = log {
                    warn!(error = %e, suppressed, "accept failed");
                }
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// Exponential pause between failed accepts and a rate limit on their log.
#[derive(Debug, Default)]
struct AcceptBackoff {
    pause: Duration,
    last_log: Option<Instant>,
    suppressed: u64,
}

impl AcceptBackoff {
    fn reset(&mut self) {
        self.pause = Duration::ZERO;
    }

    /// The pause before the next accept, and `Some(errors not logged since
    /// the last message)` when this error is to be logged.
    fn failed(&mut self, now: Instant) -> (Duration, Option<u64>) {
        self.pause = (self.pause * 2).clamp(Duration::from_millis(100), MAX_ACCEPT_BACKOFF);
        let log = match self.last_log {
            Some(t) if now.duration_since(t) < ACCEPT_LOG_EVERY => {
                self.suppressed += 1;
                None
            }
            _ => {
                self.last_log = Some(now);
                Some(std::mem::take(&mut self.suppressed))
            }
        };
        (self.pause, log)
    }
}

/// A rejected connection from one address is logged at most this often.
const REJECTION_LOG_EVERY: Duration = Duration::from_secs(60);
/// Addresses remembered for [`REJECTION_LOG_EVERY`]; older entries are
/// dropped beyond this many, so a scan from many addresses stays bounded.
const REJECTION_LOG_MAX: usize = 1024;

/// Whether a rejected connection from `addr` at `now` is to be logged:
/// once per address per [`REJECTION_LOG_EVERY`].
pub(crate) fn should_log_rejection(
    logged: &mut HashMap<IpAddr, Instant>,
    addr: IpAddr,
    now: Instant,
) -> bool {
    if logged
        .get(&addr)
        .is_some_and(|t| now.duration_since(*t) < REJECTION_LOG_EVERY)
    {
        return false;
    }
    if logged.len() >= REJECTION_LOG_MAX {
        logged.retain(|_, t| now.duration_since(*t) < REJECTION_LOG_EVERY);
        if logged.len() >= REJECTION_LOG_MAX {
            // Still full of recent addresses: stay quiet until they age out.
            return false;
        }
    }
    logged.insert(addr, now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_errors_back_off_and_are_logged_once_a_minute() {
        let mut b = AcceptBackoff::default();
        let t0 = Instant::now();
        let pauses: Vec<_> = (0..6)
            .map(|i| b.failed(t0 + Duration::from_millis(i)))
            .collect();
        let ms: Vec<u128> = pauses.iter().map(|(p, _)| p.as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        let logged: Vec<_> = pauses.iter().map(|(_, l)| *l).collect();
        assert_eq!(logged, [Some(0), None, None, None, None, None]);
        let (_, log) = b.failed(t0 + ACCEPT_LOG_EVERY);
        assert_eq!(log, Some(5));
        b.reset();
        assert_eq!(
            b.failed(t0 + ACCEPT_LOG_EVERY).0,
            Duration::from_millis(100)
        );
    }

    #[test]
    fn rejected_connections_are_logged_once_a_minute_per_address() {
        let mut logged = HashMap::new();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.9".parse().unwrap();
        let b: IpAddr = "192.0.2.10".parse().unwrap();
        assert!(should_log_rejection(&mut logged, a, t0));
        assert!(!should_log_rejection(
            &mut logged,
            a,
            t0 + Duration::from_secs(1)
        ));
        assert!(should_log_rejection(
            &mut logged,
            b,
            t0 + Duration::from_secs(1)
        ));
        assert!(should_log_rejection(
            &mut logged,
            a,
            t0 + REJECTION_LOG_EVERY
        ));
        // Many addresses: the table stays bounded.
        for i in 0..(2 * REJECTION_LOG_MAX as u32) {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            should_log_rejection(&mut logged, addr, t0 + REJECTION_LOG_EVERY);
        }
        assert!(logged.len() <= REJECTION_LOG_MAX);
    }
}
