//! Kernel route programming over rtnetlink: owned, batched and reconciled.
//!
//! Standards: rtnetlink as specified by RFC 3549 and Linux `rtnetlink(7)`/`netlink(7)`;
//! BGP next-hop resolvability per RFC 4271 §5.1.3 and §9.1.2.1; the stale-route handling
//! follows the spirit of BGP Graceful Restart (RFC 4724 §4.2: keep forwarding, sweep after
//! End-of-RIB or a bounded timer).
//!
//! ```text
//! speaker ──apply()/set_routes()──► DataplaneHandle ──mpsc──► Dataplane task (one per netns)
//!                                                               │ State (sans-IO): desired, actual,
//!                                                               │ stale, foreign-route mirror,
//!                                                               │ next-hop resolutions
//!                                                               │ reconcile() ──► Vec<RouteOp>
//!                                           request socket ◄────┤ batches of ≤512 ops per datagram
//!                                           monitor socket ─────┘ RTNLGRP_IPV4/IPV6_ROUTE, LINK
//! ```
//!
//! **Ownership.** petrel only changes or deletes routes that carry its protocol number
//! ([`DataplaneConfig::protocol`], default [`RTPROT_PETREL`] = 200) in its table
//! ([`DataplaneConfig::table`], default 254 `main`) at the kernel's default metric. Deletes are
//! sent with that protocol, so the kernel itself refuses to remove anything else. A prefix where
//! a route of another protocol sits at the same metric is a *conflict*: petrel does not replace
//! it (that would overwrite the foreign route) and reports it once.
//!
//! **Life cycle.** [`start`] dumps the table and adopts the routes of ours it finds as *stale*:
//! they keep forwarding. A stale route the speaker claims again with an identical target is left
//! untouched (no flap across a restart). The others are swept after
//! [`DataplaneHandle::converged`] (End-of-RIB from every established peer) or after
//! [`DataplaneConfig::stale_timeout`]. [`DataplaneHandle::shutdown`] withdraws every route of
//! ours and waits until that is done. Dropping every handle instead stops the task and leaves
//! the routes in place for the next instance to adopt.
//!
//! **Repair.** Notifications not caused by petrel's own requests (those carry the request
//! socket's port id) update the view; a route of ours deleted or changed by someone else is put
//! back on the next turn of the task (milliseconds). A monitor overrun (`ENOBUFS`) or a failed
//! batch triggers a full dump-and-reconcile. Next hops are resolved over the mirror of foreign
//! routes (see [`resolve`]) and re-resolved whenever such a route changes.
//!
//! **Names.** [`rt_protos_entry`] gives the `/etc/iproute2/rt_protos.d/petrel.conf` line that
//! makes `ip route` print `proto petrel`; [`start`] writes that file when the directory exists
//! and the file does not (failures are logged, never fatal).
//!
//! **Limits.** Next hops are resolved one level deep through routes of other protocols only (not
//! through BGP routes), IPv4 routes with IPv6 next hops (RFC 8950) are not supported, and an IPv6
//! link-local next hop is only usable when exactly one interface has `fe80::/64`.

pub mod codec;
pub mod model;
pub mod netlink;
pub mod netns;
pub mod reconcile;
pub mod resolve;
mod state;
mod task;

#[cfg(test)]
mod itests;
#[cfg(test)]
mod itests_more;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tracing::{debug, info, warn};

pub use model::{DesiredRoute, KernelNextHop, KernelRoute, RouteOp, RouteTarget};
pub use reconcile::{Diagnosis, ReconcileView, diagnose, reconcile, reconcile_prefix};
pub use resolve::{Resolution, UnresolvedReason};
pub use task::Dataplane;

/// petrel's default route protocol number: free in iproute2's `rt_protos`, below FRR's
/// 186–198 range and distinct from Calico's 80 and BIRD's 12.
pub const RTPROT_PETREL: u8 = 200;

/// Where iproute2 reads extra protocol names from.
pub const RT_PROTOS_DIR: &str = "/etc/iproute2/rt_protos.d";

/// Dataplane settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DataplaneConfig {
    /// Routing table petrel installs into (default 254, `main`).
    pub table: u32,
    /// `rtm_protocol` marking petrel's routes (default [`RTPROT_PETREL`]).
    pub protocol: u8,
    /// How long routes adopted at start-up survive when convergence is never signalled.
    pub stale_timeout: Duration,
    /// Whether a next hop may be resolved through the default route (default true: a node whose
    /// eBGP multihop peer is only reachable via its default gateway still works).
    pub resolve_via_default: bool,
    /// Directory for the iproute2 protocol name file; `None` disables writing it.
    pub rt_protos_dir: Option<PathBuf>,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        Self {
            table: resolve::RT_TABLE_MAIN,
            protocol: RTPROT_PETREL,
            stale_timeout: Duration::from_secs(120),
            resolve_via_default: true,
            rt_protos_dir: Some(PathBuf::from(RT_PROTOS_DIR)),
        }
    }
}

impl DataplaneConfig {
    fn validate(&self) -> Result<(), DataplaneError> {
        if self.protocol <= 4 {
            return Err(DataplaneError::Config(format!(
                "protocol {} is reserved by the kernel (0 unspec, 1 redirect, 2 kernel, 3 boot, 4 static)",
                self.protocol
            )));
        }
        if matches!(self.table, 0 | 252 | 253 | 255) {
            return Err(DataplaneError::Config(format!(
                "table {} is reserved (0 unspec, 252 compat, 253 default, 255 local)",
                self.table
            )));
        }
        Ok(())
    }
}

/// The content of `/etc/iproute2/rt_protos.d/petrel.conf` for `protocol`.
pub fn rt_protos_entry(protocol: u8) -> String {
    format!(
        "# petrel BGP routing agent: routes it installs carry this protocol\n{protocol}\tpetrel\n"
    )
}

/// Writes `petrel.conf` into `dir` if `dir` exists and the file does not. Returns whether it
/// wrote the file.
pub fn write_rt_protos_file(dir: &Path, protocol: u8) -> std::io::Result<bool> {
    let path = dir.join("petrel.conf");
    if !dir.is_dir() || path.exists() {
        return Ok(false);
    }
    std::fs::write(&path, rt_protos_entry(protocol))?;
    Ok(true)
}

/// A snapshot of the dataplane for `petrel status` and the management API.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DataplaneStatus {
    /// Desired prefixes.
    pub desired: usize,
    /// Routes of ours in the kernel that are not stale.
    pub installed: usize,
    /// Routes adopted at start-up and not yet claimed or swept.
    pub stale: usize,
    /// `(prefix, next hop)` pairs whose next hop does not resolve.
    pub unresolved: Vec<(IpNet, IpAddr)>,
    /// Desired prefixes held by a route of another protocol.
    pub conflicts: Vec<IpNet>,
    /// Prefixes whose last operation the kernel rejected, with the error.
    pub errors: Vec<(IpNet, String)>,
    /// Whether convergence was signalled (or the stale timer fired).
    pub converged: bool,
    /// When the kernel table was last read in full.
    pub last_resync: Option<SystemTime>,
    /// Full reads of the kernel table so far (start-up included).
    pub resyncs: u64,
    /// Route operations executed so far.
    pub operations: u64,
    /// How long each reconcile pass took, from taking the operations to the
    /// kernel's acknowledgement of the last one.
    pub reconcile_latency: LatencyHistogram,
}

/// Upper bounds, in seconds, of the [`LatencyHistogram`] buckets (the last
/// bucket, above them, is `+Inf`).
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A latency histogram with the fixed [`LATENCY_BUCKETS`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LatencyHistogram {
    /// Observations per bucket (not cumulative); one more than
    /// `LATENCY_BUCKETS` for `+Inf`. Empty until the first observation.
    pub counts: Vec<u64>,
    /// Sum of all observations, in nanoseconds.
    pub sum_nanos: u64,
    pub count: u64,
}

impl LatencyHistogram {
    /// Records one observation.
    pub fn observe(&mut self, d: std::time::Duration) {
        if self.counts.is_empty() {
            self.counts = vec![0; LATENCY_BUCKETS.len() + 1];
        }
        let secs = d.as_secs_f64();
        let i = LATENCY_BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.counts[i] += 1;
        self.sum_nanos = self
            .sum_nanos
            .saturating_add(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.count += 1;
    }

    /// `(upper bound, count)` per bucket (not cumulative), `+Inf` last.
    pub fn buckets(&self) -> Vec<(f64, u64)> {
        LATENCY_BUCKETS
            .iter()
            .copied()
            .chain(std::iter::once(f64::INFINITY))
            .enumerate()
            .map(|(i, bound)| (bound, self.counts.get(i).copied().unwrap_or(0)))
            .collect()
    }

    /// The sum of all observations, in seconds.
    pub fn sum_seconds(&self) -> f64 {
        self.sum_nanos as f64 / 1e9
    }
}

/// Dataplane failures.
#[derive(Debug, thiserror::Error)]
pub enum DataplaneError {
    #[error("invalid dataplane configuration: {0}")]
    Config(String),
    #[error("cannot open the rtnetlink {which} socket: {source}")]
    Socket {
        which: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot dump routing table {table} ({family}): {source}")]
    Dump {
        table: u32,
        family: &'static str,
        #[source]
        source: netlink::BatchError,
    },
    #[error("the dataplane task has stopped")]
    Stopped,
}

/// A cloneable handle to the dataplane task.
#[derive(Clone, Debug)]
pub struct DataplaneHandle {
    tx: mpsc::Sender<task::Command>,
}

impl DataplaneHandle {
    async fn send(&self, cmd: task::Command) -> Result<(), DataplaneError> {
        self.tx.send(cmd).await.map_err(|_| DataplaneError::Stopped)
    }

    async fn ask<T>(
        &self,
        cmd: impl FnOnce(oneshot::Sender<T>) -> task::Command,
    ) -> Result<T, DataplaneError> {
        let (tx, rx) = oneshot::channel();
        self.send(cmd(tx)).await?;
        rx.await.map_err(|_| DataplaneError::Stopped)
    }

    /// Incremental changes to the desired routes (`None` withdraws a prefix). Returns once the
    /// task has queued them; use [`Self::flush`] to wait until the kernel has them.
    pub async fn apply(
        &self,
        changes: Vec<(IpNet, Option<RouteTarget>)>,
    ) -> Result<(), DataplaneError> {
        self.send(task::Command::Apply(changes)).await
    }

    /// The complete desired set; only differences reach the kernel.
    pub async fn set_routes(
        &self,
        routes: BTreeMap<IpNet, RouteTarget>,
    ) -> Result<(), DataplaneError> {
        self.send(task::Command::SetRoutes(routes)).await
    }

    /// Signals that every established peer has sent End-of-RIB: stale routes are swept.
    pub async fn converged(&self) -> Result<(), DataplaneError> {
        self.send(task::Command::Converged).await
    }

    /// Re-reads the kernel table in full and reconciles (what a monitor overrun triggers).
    pub async fn resync(&self) -> Result<(), DataplaneError> {
        self.send(task::Command::Resync).await
    }

    /// The current status.
    pub async fn status(&self) -> Result<DataplaneStatus, DataplaneError> {
        self.ask(task::Command::Status).await
    }

    /// Waits until every change submitted before this call has been programmed (or has failed
    /// and been recorded in [`DataplaneStatus::errors`]), then returns the status.
    pub async fn flush(&self) -> Result<DataplaneStatus, DataplaneError> {
        self.ask(task::Command::Flush).await
    }

    /// Withdraws every route of ours from the kernel and stops the task.
    pub async fn shutdown(&self) -> Result<(), DataplaneError> {
        match self.ask(task::Command::Shutdown).await {
            Ok(()) | Err(DataplaneError::Stopped) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// Opens the rtnetlink sockets in the calling thread's network namespace, adopts the routes of
/// ours already in the kernel as stale and spawns the dataplane task on the current runtime.
pub async fn start(
    config: DataplaneConfig,
) -> Result<(DataplaneHandle, JoinHandle<()>), DataplaneError> {
    config.validate()?;
    if let Some(dir) = &config.rt_protos_dir {
        match write_rt_protos_file(dir, config.protocol) {
            Ok(true) => {
                info!(dir = %dir.display(), "wrote petrel.conf so `ip route` shows `proto petrel`")
            }
            Ok(false) => debug!(dir = %dir.display(), "rt_protos.d absent or petrel.conf present"),
            Err(e) => warn!(dir = %dir.display(), error = %e, "cannot write petrel.conf"),
        }
    }
    // Subscribe before dumping so no change between the dump and the first read is lost.
    let mon = netlink::MonitorSocket::open().map_err(|source| DataplaneError::Socket {
        which: "monitor",
        source,
    })?;
    let mut req =
        netlink::RequestSocket::open(config.table, config.protocol).map_err(|source| {
            DataplaneError::Socket {
                which: "request",
                source,
            }
        })?;
    let snapshot = task::dump(&mut req, &config)
        .await
        .map_err(|(table, v4, source)| DataplaneError::Dump {
            table,
            family: if v4 { "IPv4" } else { "IPv6" },
            source,
        })?;
    info!(
        table = config.table,
        protocol = config.protocol,
        adopted = snapshot.ours(),
        "dataplane started; routes of ours found in the kernel are kept as stale until convergence"
    );
    let mut state = state::State::new(&config);
    state.load(snapshot, SystemTime::now(), true);
    let (tx, rx) = mpsc::channel(1024);
    let task = Dataplane::new(config, state, req, mon, rx);
    Ok((DataplaneHandle { tx }, tokio::spawn(task.run())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rt_protos_entry_names_the_protocol() {
        let entry = rt_protos_entry(200);
        assert!(entry.lines().any(|l| l == "200\tpetrel"), "{entry}");
        assert!(
            entry
                .lines()
                .all(|l| l.starts_with('#') || l.starts_with("200"))
        );
    }

    #[test]
    fn rt_protos_file_is_written_once_and_only_into_an_existing_dir() {
        let dir = tempfile::tempdir().unwrap();
        assert!(write_rt_protos_file(dir.path(), 201).unwrap());
        assert!(!write_rt_protos_file(dir.path(), 202).unwrap());
        let text = std::fs::read_to_string(dir.path().join("petrel.conf")).unwrap();
        assert_eq!(text, rt_protos_entry(201));
        assert!(!write_rt_protos_file(&dir.path().join("absent"), 201).unwrap());
    }

    #[test]
    fn reserved_protocols_and_tables_are_rejected() {
        let mut config = DataplaneConfig::default();
        assert!(config.validate().is_ok());
        config.protocol = 4;
        assert!(matches!(config.validate(), Err(DataplaneError::Config(_))));
        config.protocol = RTPROT_PETREL;
        config.table = 255;
        assert!(matches!(config.validate(), Err(DataplaneError::Config(_))));
    }
}
