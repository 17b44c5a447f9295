//! The IPAM owner task: one tokio task owns this node's [`NodeIpam`], fed by
//! typed requests from [`IpamHandle`]s, configuration from a watch channel and
//! a resync timer. It commits the allocator's plans to the store with
//! compare-and-swap (re-reading on a lost race), claims blocks at start-up and
//! when its blocks are full, releases blocks that stayed empty for a grace
//! period, and publishes [`BlockView`] for the routing side. Blocks are
//! RFC 4632 prefixes; the model is Calico's block affinity model.

use super::allocator::{AssignPlan, NodeIpam};
use super::claim::{self, MAX_ATTEMPTS};
use super::store::{IpamStore, StoreError};
use super::{AllocationStatus, BlockStatus, BlockView, Family, IpamConfig, IpamError, PoolStatus};
use ipnet::IpNet;
use petrel_crd::allocation_key;
use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, warn};

/// Tuning of the owner task.
#[derive(Debug, Clone)]
pub struct IpamOptions {
    /// How often the store is re-read (other nodes' blocks for the import
    /// policy, empty-block release, retry after a store outage).
    pub resync_interval: Duration,
    /// How long a block must stay empty before it is released.
    pub empty_block_grace: Duration,
    /// A delay before the store is first read (tests: a slow IPAM view).
    pub start_delay: Duration,
    /// A failed block claim is retried after `resync_interval`, doubling
    /// with each failure in a row (with jitter) up to this.
    pub max_claim_backoff: Duration,
    /// With a store that reports block changes as they happen
    /// ([`IpamStore::watch_blocks`]), the whole store is re-read only this
    /// often (the resyncs in between use the view the events keep current):
    /// 200 agents each listing the store twice a second starved its writers.
    pub full_resync_interval: Duration,
}

impl Default for IpamOptions {
    fn default() -> Self {
        IpamOptions {
            resync_interval: Duration::from_millis(500),
            empty_block_grace: Duration::from_secs(60),
            start_delay: Duration::ZERO,
            max_claim_backoff: Duration::from_secs(30),
            full_resync_interval: Duration::from_secs(10),
        }
    }
}

/// One address handed to a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocatedAddress {
    pub address: IpAddr,
    /// Prefix length to configure with the address: 32 or 128 (a host route;
    /// the pod reaches everything through `gateway`).
    pub prefix_len: u8,
    /// The node's gateway address of this family (never a pod's address).
    pub gateway: IpAddr,
    /// The block the address belongs to.
    pub block: IpNet,
}

/// The addresses of one (container, interface), one per family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Allocation {
    pub container_id: String,
    pub ifname: String,
    pub addresses: Vec<AllocatedAddress>,
}

/// Status for the CLI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpamStatus {
    pub node: String,
    pub pools: Vec<PoolStatus>,
    pub blocks: Vec<BlockStatus>,
    pub allocations: Vec<AllocationStatus>,
    /// The last error (for example an exhausted pool), until an operation of
    /// the same kind succeeds.
    pub last_error: Option<String>,
}

enum Request {
    Allocate {
        container_id: String,
        ifname: String,
        attributes: BTreeMap<String, String>,
        reply: oneshot::Sender<Result<Allocation, IpamError>>,
    },
    Release {
        container_id: String,
        ifname: String,
        reply: oneshot::Sender<Result<Vec<IpAddr>, IpamError>>,
    },
    Check {
        container_id: String,
        ifname: String,
        reply: oneshot::Sender<Result<Allocation, IpamError>>,
    },
    Gc {
        keep: Vec<(String, String)>,
        reply: oneshot::Sender<Result<Vec<AllocationStatus>, IpamError>>,
    },
    Status {
        reply: oneshot::Sender<IpamStatus>,
    },
}

/// A cheap, cloneable handle to the owner task. The task stops when every
/// handle is dropped.
#[derive(Debug, Clone)]
pub struct IpamHandle {
    tx: mpsc::Sender<Request>,
    blocks: watch::Receiver<BlockView>,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ipam request")
    }
}

fn check_key(container_id: &str, ifname: &str) -> Result<(), IpamError> {
    if container_id.is_empty() || ifname.is_empty() {
        return Err(IpamError::Invalid(
            "the container ID and the interface name must not be empty".into(),
        ));
    }
    if ifname.contains('/') {
        return Err(IpamError::Invalid(format!(
            "interface name {ifname:?} contains '/'"
        )));
    }
    Ok(())
}

impl IpamHandle {
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<T>) -> Request,
    ) -> Result<T, IpamError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(make(reply))
            .await
            .map_err(|_| IpamError::Stopped)?;
        rx.await.map_err(|_| IpamError::Stopped)
    }

    /// One address per family for (container, interface); idempotent.
    pub async fn allocate(
        &self,
        container_id: &str,
        ifname: &str,
        attributes: BTreeMap<String, String>,
    ) -> Result<Allocation, IpamError> {
        check_key(container_id, ifname)?;
        let (container_id, ifname) = (container_id.to_string(), ifname.to_string());
        self.call(|reply| Request::Allocate {
            container_id,
            ifname,
            attributes,
            reply,
        })
        .await?
    }

    /// Releases the addresses of (container, interface); returns them (empty
    /// if there were none: releasing twice is fine).
    pub async fn release(
        &self,
        container_id: &str,
        ifname: &str,
    ) -> Result<Vec<IpAddr>, IpamError> {
        check_key(container_id, ifname)?;
        let (container_id, ifname) = (container_id.to_string(), ifname.to_string());
        self.call(|reply| Request::Release {
            container_id,
            ifname,
            reply,
        })
        .await?
    }

    /// The current allocation of (container, interface), or
    /// [`IpamError::NotAllocated`].
    pub async fn check(&self, container_id: &str, ifname: &str) -> Result<Allocation, IpamError> {
        check_key(container_id, ifname)?;
        let (container_id, ifname) = (container_id.to_string(), ifname.to_string());
        self.call(|reply| Request::Check {
            container_id,
            ifname,
            reply,
        })
        .await?
    }

    /// Releases every allocation of this node whose (container, interface)
    /// is not in `keep`; returns the released ones.
    pub async fn gc(
        &self,
        keep: Vec<(String, String)>,
    ) -> Result<Vec<AllocationStatus>, IpamError> {
        self.call(|reply| Request::Gc { keep, reply }).await?
    }

    /// Pools, blocks, allocations and the last error.
    pub async fn status(&self) -> Result<IpamStatus, IpamError> {
        self.call(|reply| Request::Status { reply }).await
    }

    /// This node's confirmed blocks and every node's blocks with owners.
    pub fn blocks(&self) -> watch::Receiver<BlockView> {
        self.blocks.clone()
    }
}

/// Starts the owner task of `node`.
pub fn spawn(
    node: String,
    config_rx: watch::Receiver<IpamConfig>,
    store: Arc<dyn IpamStore>,
    options: IpamOptions,
) -> (IpamHandle, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel(256);
    let (view_tx, view_rx) = watch::channel(BlockView::default());
    let span = tracing::info_span!("ipam", node = %node);
    let task = Task {
        ipam: NodeIpam::new(node),
        store,
        options,
        view_tx,
        last_error: None,
        last_error_from_resync: false,
        recovered: false,
        claim_retry: Backoff::default(),
        watched: false,
        last_full_read: None,
    };
    let join = tokio::spawn(task.run(rx, config_rx).instrument(span));
    (
        IpamHandle {
            tx,
            blocks: view_rx,
        },
        join,
    )
}

struct Task {
    ipam: NodeIpam,
    store: Arc<dyn IpamStore>,
    options: IpamOptions,
    view_tx: watch::Sender<BlockView>,
    last_error: Option<String>,
    /// Whether `last_error` came from a resync (cleared by a good resync) or
    /// from a request (cleared by a good request of the same kind).
    last_error_from_resync: bool,
    recovered: bool,
    /// Failed claims in a row and when the next one may run.
    claim_retry: Backoff,
    /// The store's block change events are being followed.
    watched: bool,
    /// When the whole store was last re-read by a resync.
    last_full_read: Option<Instant>,
}

/// Retries of a failed block claim: `base` doubled per failure in a row,
/// plus up to a quarter of jitter, at most `max`.
#[derive(Debug, Default)]
struct Backoff {
    failures: u32,
    next: Option<Instant>,
}

impl Backoff {
    fn due(&self, now: Instant) -> bool {
        self.next.is_none_or(|t| now >= t)
    }

    /// Records a failure; returns the delay before the next try.
    fn failed(&mut self, now: Instant, base: Duration, max: Duration) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let exp = base.saturating_mul(1u32 << self.failures.saturating_sub(1).min(16));
        let capped = exp.min(max);
        let jitter = capped.mul_f64(rand::random_range(0.0..0.25));
        let delay = (capped + jitter).min(max.max(base));
        self.next = Some(now + delay);
        delay
    }

    /// Records a success; returns how many failures preceded it.
    fn succeeded(&mut self) -> u32 {
        self.next = None;
        std::mem::take(&mut self.failures)
    }
}

/// The next block change event, or never when the store has none.
async fn next_event(events: &mut Option<mpsc::UnboundedReceiver<String>>) -> Option<String> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Request>,
        mut config_rx: watch::Receiver<IpamConfig>,
    ) {
        self.apply_config(&config_rx.borrow_and_update().clone());
        if !self.options.start_delay.is_zero() {
            info!(delay = ?self.options.start_delay, "IPAM: delaying the first read of the store");
            tokio::time::sleep(self.options.start_delay).await;
            self.apply_config(&config_rx.borrow_and_update().clone());
        }
        // Follow the changes from before the first read, so none is missed.
        let mut events = self.store.watch_blocks();
        self.watched = events.is_some();
        self.resync().await;
        let mut tick = tokio::time::interval(self.options.resync_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut config_open = true;
        loop {
            tokio::select! {
                req = rx.recv() => match req {
                    Some(req) => self.handle(req).await,
                    None => break,
                },
                changed = config_rx.changed(), if config_open => match changed {
                    Ok(()) => {
                        let cfg = config_rx.borrow_and_update().clone();
                        self.apply_config(&cfg);
                        self.resync().await;
                    }
                    Err(_) => config_open = false,
                },
                _ = tick.tick() => self.resync().await,
                name = next_event(&mut events) => match name {
                    Some(name) => self.on_block_events(name, &mut events).await,
                    None => {
                        events = None;
                        self.watched = false;
                    }
                },
            }
        }
        info!(node = %self.ipam.node(), "IPAM task stopped");
    }

    /// Re-reads the blocks named by the store's change events (this one and
    /// every one already queued), so that other nodes' new blocks are in the
    /// view at once.
    async fn on_block_events(
        &mut self,
        first: String,
        events: &mut Option<mpsc::UnboundedReceiver<String>>,
    ) {
        let mut names = std::collections::BTreeSet::from([first]);
        if let Some(rx) = events.as_mut() {
            while let Ok(n) = rx.try_recv() {
                names.insert(n);
            }
        }
        if names.contains(crate::file_watch::OVERFLOW) {
            self.last_full_read = None;
            self.resync().await;
            return;
        }
        let store = self.store.clone();
        for name in names {
            if let Err(e) = claim::refresh_block(store.as_ref(), &mut self.ipam, &name).await {
                debug!(node = %self.ipam.node(), block = %name, error = %e, "IPAM: re-reading a changed block failed; the next resync retries");
            }
        }
        self.publish();
    }

    fn apply_config(&mut self, cfg: &IpamConfig) {
        if !cfg.node.is_empty() && cfg.node != self.ipam.node() {
            warn!(node = %self.ipam.node(), config_node = %cfg.node, "IPAM configuration is for another node; using its pools anyway");
        }
        self.ipam.set_pools(cfg.pools.clone());
        self.publish();
    }

    fn publish(&self) {
        let mut view = self.ipam.view();
        view.synced = self.recovered;
        self.view_tx.send_if_modified(|v| {
            if *v == view {
                false
            } else {
                *v = view;
                true
            }
        });
    }

    /// Records an error for the status; logs it once while it repeats (a
    /// resync every half second must not flood the log).
    fn note(&mut self, r: Result<(), IpamError>) {
        if let Err(e) = r {
            let msg = e.to_string();
            if self.last_error.as_deref() == Some(msg.as_str()) {
                debug!(node = %self.ipam.node(), error = %msg, "IPAM (repeated)");
            } else {
                warn!(node = %self.ipam.node(), error = %msg, "IPAM");
                self.last_error = Some(msg);
            }
        }
    }

    /// Re-reads the store, finishes recovery, claims missing blocks, releases
    /// blocks that stayed empty, and publishes the view.
    async fn resync(&mut self) {
        match self.resync_inner().await {
            Ok(false) => {
                if self.last_error_from_resync {
                    // The store is back, or the claim that failed has succeeded.
                    self.last_error = None;
                }
                self.last_error_from_resync = false;
            }
            // A claim failed (logged and recorded) or waits for its retry.
            Ok(true) => {}
            Err(e) => {
                self.last_error_from_resync = true;
                self.note(Err(e));
            }
        }
        self.publish();
    }

    /// Returns whether a block claim failed or waits for its retry.
    async fn resync_inner(&mut self) -> Result<bool, IpamError> {
        let store = self.store.clone();
        // Recovery runs on every resync, not only the first: a claim that
        // failed half-way (the store's lock timed out) leaves this node's
        // pending affinity or block, which must be completed before another
        // block is claimed (it would be one block too many).
        let now = Instant::now();
        let reread = !self.watched
            || self.last_full_read.is_none_or(|t| {
                now.saturating_duration_since(t) >= self.options.full_resync_interval
            });
        claim::recover_with(store.as_ref(), &mut self.ipam, reread).await?;
        if reread {
            self.last_full_read = Some(now);
        }
        self.recovered = true;
        // A failed claim (an exhausted family) must not stop the release of
        // empty blocks nor the claims of the other family. Every failure is
        // logged and retried with backoff.
        let missing = self.ipam.families_without_block();
        let claim_pending = !missing.is_empty();
        if !missing.is_empty() && self.claim_retry.due(Instant::now()) {
            let mut failed = None;
            for family in missing {
                match claim::claim_block(store.as_ref(), &mut self.ipam, family).await {
                    Ok(_) => self.last_error = None,
                    Err(e) => failed = Some((family, e)),
                }
            }
            match failed {
                None => {
                    let failures = self.claim_retry.succeeded();
                    if failures > 0 {
                        info!(node = %self.ipam.node(), failures, "IPAM: block claimed after failed attempts");
                    }
                }
                Some((family, e)) => {
                    let delay = self.claim_retry.failed(
                        Instant::now(),
                        self.options.resync_interval,
                        self.options.max_claim_backoff,
                    );
                    warn!(node = %self.ipam.node(), %family, attempt = self.claim_retry.failures,
                        retry_in = ?delay, error = %e, "IPAM: claiming a block failed; will retry");
                    self.last_error = Some(e.to_string());
                    self.last_error_from_resync = true;
                }
            }
        }
        let now = Instant::now();
        self.ipam.observe_empty(now);
        for b in self.ipam.releasable(now, self.options.empty_block_grace) {
            claim::release_block(store.as_ref(), &mut self.ipam, &b).await?;
        }
        Ok(claim_pending && !self.ipam.families_without_block().is_empty())
    }

    async fn handle(&mut self, req: Request) {
        match req {
            Request::Allocate {
                container_id,
                ifname,
                attributes,
                reply,
            } => {
                let span = tracing::info_span!("allocate", node = %self.ipam.node(), container = %container_id, ifname = %ifname);
                let r = self
                    .allocate(&container_id, &ifname, &attributes)
                    .instrument(span)
                    .await;
                match &r {
                    Ok(_) => self.last_error = None,
                    Err(e) => {
                        warn!(node = %self.ipam.node(), container = %container_id, ifname = %ifname, error = %e, "allocation failed");
                        self.last_error = Some(e.to_string());
                        self.last_error_from_resync = false;
                    }
                }
                self.publish();
                let _ = reply.send(r);
            }
            Request::Release {
                container_id,
                ifname,
                reply,
            } => {
                let key = allocation_key(&container_id, &ifname);
                let r = self.release(&key).await;
                let _ = reply.send(r.map(|v| v.into_iter().map(|a| a.address).collect()));
            }
            Request::Check {
                container_id,
                ifname,
                reply,
            } => {
                let r = self.existing(&container_id, &ifname);
                let _ = reply.send(r);
            }
            Request::Gc { keep, reply } => {
                let keep: HashSet<String> =
                    keep.iter().map(|(c, i)| allocation_key(c, i)).collect();
                let r = self.gc(&keep).await;
                let _ = reply.send(r);
            }
            Request::Status { reply } => {
                let _ = reply.send(IpamStatus {
                    node: self.ipam.node().to_string(),
                    pools: self.ipam.pool_status(),
                    blocks: self.ipam.block_status(),
                    allocations: self.ipam.allocation_status(),
                    last_error: self.last_error.clone(),
                });
            }
        }
    }

    /// The allocation of `key` as currently stored.
    fn existing(&self, container_id: &str, ifname: &str) -> Result<Allocation, IpamError> {
        let key = allocation_key(container_id, ifname);
        let mut addresses = Vec::new();
        for (block, address) in self.ipam.find(&key) {
            let family = Family::of(&block);
            let Some((gateway, _)) = self.ipam.gateway(family) else {
                continue;
            };
            addresses.push(AllocatedAddress {
                address,
                prefix_len: family.host_prefix_len(),
                gateway,
                block,
            });
        }
        if addresses.is_empty() {
            return Err(IpamError::NotAllocated {
                node: self.ipam.node().to_string(),
                container_id: container_id.to_string(),
                ifname: ifname.to_string(),
            });
        }
        addresses.sort_by_key(|a| Family::of_addr(&a.address));
        Ok(Allocation {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
            addresses,
        })
    }

    async fn allocate(
        &mut self,
        container_id: &str,
        ifname: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<Allocation, IpamError> {
        let key = allocation_key(container_id, ifname);
        let families = self.ipam.workload_families();
        if families.is_empty() {
            return Err(IpamError::NoPool {
                node: self.ipam.node().to_string(),
            });
        }
        let had = !self.ipam.find(&key).is_empty();
        for family in families {
            if let Err(e) = self.assign_family(family, &key, attributes).await {
                // A pod gets every family or nothing: undo a partial new one.
                if !had && let Err(undo) = self.release(&key).await {
                    warn!(node = %self.ipam.node(), error = %undo, "cannot undo a partial allocation");
                }
                return Err(e);
            }
        }
        self.existing(container_id, ifname)
    }

    async fn assign_family(
        &mut self,
        family: Family,
        key: &str,
        attributes: &BTreeMap<String, String>,
    ) -> Result<(), IpamError> {
        let store = self.store.clone();
        for _ in 0..MAX_ATTEMPTS {
            match self.ipam.plan_assign(family, key, attributes) {
                AssignPlan::Existing { .. } => return Ok(()),
                AssignPlan::Write { block, address } => {
                    match store
                        .update_block(&block.name, &block.spec, &block.version)
                        .await
                    {
                        Ok(b) => {
                            info!(node = %self.ipam.node(), block = %b.spec.cidr, %address, key, "allocated");
                            self.ipam.upsert_block(b);
                            return Ok(());
                        }
                        Err(e) if e.is_race() => {
                            claim::refresh_block(store.as_ref(), &mut self.ipam, &block.name)
                                .await?;
                        }
                        Err(e) => return Err(self.store_err(e)),
                    }
                }
                AssignPlan::NeedBlock => {
                    claim::claim_block(store.as_ref(), &mut self.ipam, family).await?;
                    self.publish();
                }
            }
        }
        Err(IpamError::Contention {
            node: self.ipam.node().to_string(),
            what: format!("allocating an {family} address for {key}"),
            attempts: MAX_ATTEMPTS,
        })
    }

    fn store_err(&self, source: StoreError) -> IpamError {
        IpamError::Store {
            node: self.ipam.node().to_string(),
            source,
        }
    }

    /// Commits release plans until none is left (re-reading on races).
    async fn commit_removals(
        &mut self,
        plan: impl Fn(&NodeIpam) -> Vec<super::store::StoredBlock>,
    ) -> Result<Vec<AllocationStatus>, IpamError> {
        let store = self.store.clone();
        let mut released = Vec::new();
        for _ in 0..MAX_ATTEMPTS {
            let writes = plan(&self.ipam);
            if writes.is_empty() {
                return Ok(released);
            }
            for w in writes {
                let before: Vec<AllocationStatus> = self
                    .ipam
                    .allocation_status()
                    .into_iter()
                    .filter(|a| a.block == w.spec.cidr)
                    .collect();
                match store.update_block(&w.name, &w.spec, &w.version).await {
                    Ok(b) => {
                        for a in before {
                            let key = allocation_key(&a.container_id, &a.ifname);
                            if !b.spec.allocations.contains_key(&key) {
                                info!(node = %self.ipam.node(), block = %b.spec.cidr, address = %a.address, key, "released");
                                released.push(a);
                            }
                        }
                        self.ipam.upsert_block(b);
                    }
                    Err(e) if e.is_race() => {
                        claim::refresh_block(store.as_ref(), &mut self.ipam, &w.name).await?;
                    }
                    Err(e) => return Err(self.store_err(e)),
                }
            }
        }
        Err(IpamError::Contention {
            node: self.ipam.node().to_string(),
            what: "releasing addresses".into(),
            attempts: MAX_ATTEMPTS,
        })
    }

    async fn release(&mut self, key: &str) -> Result<Vec<AllocationStatus>, IpamError> {
        let key = key.to_string();
        self.commit_removals(move |ipam| ipam.plan_release(&key))
            .await
    }

    async fn gc(&mut self, keep: &HashSet<String>) -> Result<Vec<AllocationStatus>, IpamError> {
        let store = self.store.clone();
        // Decide on fresh data: allocations made by a previous agent run
        // are in the store.
        claim::refresh(store.as_ref(), &mut self.ipam).await?;
        let keep = keep.clone();
        self.commit_removals(move |ipam| ipam.plan_gc(&keep)).await
    }
}

#[cfg(test)]
#[path = "task_tests.rs"]
mod tests;
