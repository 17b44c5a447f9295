//! The netlink task: the single owner of petrel's view of the kernel routing table. It moves
//! bytes between the sockets and [`State`], arms the stale and retry timers, and answers the
//! handle's commands.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use ipnet::IpNet;
use tokio::sync::{mpsc, oneshot};
use tokio::time::{Instant, sleep_until};
use tracing::{error, info, warn};

use super::codec::RTM_NEWROUTE;
use super::model::{RouteOp, RouteTarget};
use super::netlink::{BatchError, MonitorSocket, RequestSocket, is_overrun};
use super::resolve::RT_TABLE_MAIN;
use super::state::{Snapshot, State};
use super::{DataplaneConfig, DataplaneStatus};

const RETRY_INTERVAL: Duration = Duration::from_secs(10);
const DUMP_ATTEMPTS: usize = 5;

/// Messages from [`super::DataplaneHandle`] to the task.
pub enum Command {
    Apply(Vec<(IpNet, Option<RouteTarget>)>),
    SetRoutes(BTreeMap<IpNet, RouteTarget>),
    Converged,
    Resync,
    Status(oneshot::Sender<DataplaneStatus>),
    Flush(oneshot::Sender<DataplaneStatus>),
    Shutdown(oneshot::Sender<()>),
}

/// The dataplane task (see the module documentation for its life cycle).
pub struct Dataplane {
    config: DataplaneConfig,
    state: State,
    req: RequestSocket,
    mon: MonitorSocket,
    cmds: mpsc::Receiver<Command>,
    flush_waiters: Vec<oneshot::Sender<DataplaneStatus>>,
    shutdown: Option<oneshot::Sender<()>>,
    stale_deadline: Instant,
    retry_at: Option<Instant>,
    /// Duration of each reconcile pass that wrote to the kernel.
    latency: super::LatencyHistogram,
}

/// Dumps our table (and `main`, for next-hop resolution) in both families.
pub async fn dump(
    req: &mut RequestSocket,
    config: &DataplaneConfig,
) -> Result<Snapshot, (u32, bool, BatchError)> {
    let mut tables = vec![config.table];
    if config.table != RT_TABLE_MAIN {
        tables.push(RT_TABLE_MAIN);
    }
    let mut attempt = 0;
    'retry: loop {
        attempt += 1;
        let mut snapshot = Snapshot::new(config.table, config.protocol);
        for v4 in [true, false] {
            for table in &tables {
                let result = req
                    .dump(v4, *table, |h, payload| {
                        if h.kind == RTM_NEWROUTE {
                            snapshot.add(payload);
                        }
                    })
                    .await;
                match result {
                    Ok(()) => {}
                    Err(BatchError::DumpInterrupted) if attempt < DUMP_ATTEMPTS => continue 'retry,
                    Err(e) => return Err((*table, v4, e)),
                }
            }
        }
        return Ok(snapshot);
    }
}

impl Dataplane {
    pub(super) fn new(
        config: DataplaneConfig,
        state: State,
        req: RequestSocket,
        mon: MonitorSocket,
        cmds: mpsc::Receiver<Command>,
    ) -> Self {
        let stale_deadline = Instant::now() + config.stale_timeout;
        Self {
            config,
            state,
            req,
            mon,
            cmds,
            flush_waiters: Vec::new(),
            shutdown: None,
            stale_deadline,
            retry_at: None,
            latency: Default::default(),
        }
    }

    /// Runs until [`super::DataplaneHandle::shutdown`] (routes withdrawn) or until every handle
    /// is dropped (routes left in place for the next instance to adopt).
    pub async fn run(mut self) {
        loop {
            if self.state.has_work() {
                self.work().await;
            }
            if let Some(done) = self.shutdown.take() {
                self.withdraw_all().await;
                let _ = done.send(());
                return;
            }
            if !self.state.has_work() {
                let status = self.status();
                for waiter in self.flush_waiters.drain(..) {
                    let _ = waiter.send(status.clone());
                }
            }
            if self.state.has_failures() && self.retry_at.is_none() {
                self.retry_at = Some(Instant::now() + RETRY_INTERVAL);
            }
            let retry_at = self.retry_at.unwrap_or_else(Instant::now);
            tokio::select! {
                cmd = self.cmds.recv() => match cmd {
                    Some(cmd) => self.command(cmd),
                    None => {
                        info!("every dataplane handle was dropped; leaving routes installed");
                        return;
                    }
                },
                received = self.mon.recv() => match received {
                    Ok(datagram) => self.state.monitor(datagram, self.req.port()),
                    Err(e) if is_overrun(&e) => {
                        warn!("route notifications were lost (ENOBUFS); resynchronising with the kernel");
                        self.state.request_resync();
                    }
                    Err(e) => {
                        error!(error = %e, "route monitor socket failed; resynchronising");
                        self.state.request_resync();
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                },
                () = sleep_until(self.stale_deadline), if self.state.has_stale() => {
                    info!(timeout = ?self.config.stale_timeout, "stale-route timer expired before convergence");
                    self.state.sweep();
                }
                () = sleep_until(retry_at), if self.retry_at.is_some() => {
                    self.retry_at = None;
                    self.state.retry_failures();
                }
            }
        }
    }

    /// The state's status with the task's latency histogram.
    fn status(&self) -> super::DataplaneStatus {
        let mut s = self.state.status();
        s.reconcile_latency = self.latency.clone();
        s
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Apply(changes) => self.state.apply(changes),
            Command::SetRoutes(routes) => self.state.set_routes(routes),
            Command::Converged => self.state.sweep(),
            Command::Resync => self.state.request_resync(),
            Command::Status(reply) => {
                let _ = reply.send(self.status());
            }
            Command::Flush(reply) => self.flush_waiters.push(reply),
            Command::Shutdown(reply) => self.shutdown = Some(reply),
        }
    }

    /// Takes every queued notification and command without waiting.
    fn drain(&mut self) {
        while let Some(received) = self.mon.try_recv() {
            match received {
                Ok(datagram) => self.state.monitor(datagram, self.req.port()),
                Err(e) => {
                    if is_overrun(&e) {
                        warn!(
                            "route notifications were lost (ENOBUFS); resynchronising with the kernel"
                        );
                    } else {
                        error!(error = %e, "route monitor socket failed; resynchronising");
                    }
                    self.state.request_resync();
                    break;
                }
            }
        }
        while let Ok(cmd) = self.cmds.try_recv() {
            self.command(cmd);
        }
    }

    async fn resync(&mut self) {
        match dump(&mut self.req, &self.config).await {
            Ok(snapshot) => {
                info!(
                    ours = snapshot.ours(),
                    "resynchronised with the kernel routing table"
                );
                self.state.load(snapshot, SystemTime::now(), false);
            }
            Err((table, v4, e)) => {
                error!(table, ipv4 = v4, error = %e, "route dump failed; keeping the previous view");
                self.state.load_failed();
            }
        }
    }

    async fn work(&mut self) {
        loop {
            self.drain();
            if self.shutdown.is_some() {
                return;
            }
            if self.state.resync_needed() {
                self.resync().await;
                self.drain();
            }
            let started = Instant::now();
            let ops = self.state.take_ops();
            let executed = self.execute(&ops).await;
            if !ops.is_empty() {
                self.latency.observe(started.elapsed());
            }
            if !executed {
                // The resync runs on the next turn; do not spin if the kernel keeps failing us.
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            if !self.state.has_work() {
                return;
            }
        }
    }

    /// Executes ops in batches; `false` if a batch failed as a whole (a resync is then pending).
    async fn execute(&mut self, ops: &[RouteOp]) -> bool {
        let mut rest = ops;
        while !rest.is_empty() {
            match self.req.execute(rest).await {
                Ok(results) => {
                    let done = results.len();
                    for (op, result) in rest.iter().zip(results) {
                        self.state.op_done(op, result);
                    }
                    rest = &rest[done..];
                }
                Err(e) => {
                    warn!(error = %e, "route batch failed; resynchronising with the kernel");
                    self.state.request_resync();
                    return false;
                }
            }
            self.drain();
            if self.shutdown.is_some() {
                return true;
            }
        }
        true
    }

    async fn withdraw_all(&mut self) {
        let ops = self.state.withdraw_ops();
        info!(
            routes = ops.len(),
            "shutting down: withdrawing our kernel routes"
        );
        if !self.execute(&ops).await {
            // A batch failed: read the kernel once more and delete what is left.
            self.resync().await;
            let ops = self.state.withdraw_ops();
            self.execute(&ops).await;
        }
        for waiter in self.flush_waiters.drain(..) {
            let _ = waiter.send(self.state.status());
        }
    }
}
