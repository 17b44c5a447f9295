//! `petrel agent`: wires the datastore, IPAM, service advertisement, the BGP
//! speaker, the dataplane and the management API together for one node, and
//! shuts them down in order.
//!
//! ```text
//!            ┌──────────── Snapshot ────────────┐
//! datastore ─┤ (file:DIR or kubernetes)         ├─► services ──originate Δ──┐
//!            ├─► resolve ──NodeConfig──┐        │                          ▼
//!            └─► IPAM config ─► ipam ──BlockView─► compose ──NodeConfig─► speaker ──FibChanges──► dataplane
//!                                 ▲                                        ▲   │
//!        api (Unix socket) ───────┴──── petrel-ipam (CNI), CLI ────────────┘   └──► session drivers ◄──► peers
//!
//! metrics (HTTP: /metrics, /healthz, /readyz) reads the speaker, the
//! dataplane and the resolved configuration at each request.
//! ```
//!
//! Data flows one way, from the datastore to the kernel; status flows back
//! through the API, the metrics and (with Kubernetes) the PetrelNode object.
//!
//! # Crates
//!
//! Each box above is a crate, and a crate depends only on crates below it
//! (`crates/petrel/tests/layering.rs` enforces this):
//!
//! ```text
//!   petrel (this crate: agent wiring, CLI, metrics)     petrel-cni (petrel-ipam plugin)
//!     │                                                  │
//!     ├──► petrel-api (gRPC server, domain → wire) ──────┼──► petrel-proto (wire types, client)
//!     │        │
//!     ├──► petrel-speaker (sessions, RIB owner, FIB feed, BFD driver)
//!     │        │        ├──► petrel-bfd (BFD protocol: pure)
//!     │        │        └──────────────────┐
//!     ├──► petrel-datastore (file, Kubernetes, resolve → NodeConfig)
//!     │        │        └──► petrel-ipam (allocator, claims, stores)
//!     │        └──► petrel-bgp (codec, FSM, RIB, policy: pure)  │
//!     ├──► petrel-services (service evaluation: pure)           │
//!     ├──► petrel-dataplane (kernel routes: pure reconcile + netlink writer)
//!     └──► petrel-crd (petrel.dev/v1 types, selectors, communities) ◄──┘
//! ```
//!
//! `petrel-bgp`, `petrel-ipam` and `petrel-services` read their inputs in the
//! configuration's own types (`petrel-crd`); the speaker also feeds the
//! dataplane, and the API reads every domain's status.

mod cni_conf;
mod compose;
mod ipam_backend;
mod pipeline;
mod status_report;

use crate::metrics::MetricsListen;
use anyhow::Context;
use petrel_dataplane::DataplaneConfig;
use petrel_ipam::store::IpamStore;
use petrel_speaker::{FibMsg, Speaker, SpeakerOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Where configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatastoreSpec {
    /// A directory of Kubernetes-style YAML manifests, watched live.
    File(PathBuf),
    /// The Kubernetes API server (in-cluster config, or `--kubeconfig`).
    Kubernetes,
}

impl std::str::FromStr for DatastoreSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("file", dir)) if !dir.is_empty() => Ok(DatastoreSpec::File(PathBuf::from(dir))),
            _ if s == "kubernetes" => Ok(DatastoreSpec::Kubernetes),
            _ => Err(format!(
                "invalid datastore {s:?}: expected file:DIR or kubernetes"
            )),
        }
    }
}

/// Options of `petrel agent`.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub node_name: String,
    pub datastore: DatastoreSpec,
    /// Kubeconfig file for `--datastore kubernetes` (else in-cluster config,
    /// then `$KUBECONFIG` / `~/.kube/config`).
    pub kubeconfig: Option<PathBuf>,
    /// Namespace of the Secrets that BGPPeers name (Kubernetes datastore).
    pub namespace: String,
    /// Where the Kubernetes datastore caches its last good configuration, so
    /// the agent can start while the API server is down.
    pub cache_file: Option<PathBuf>,
    /// IPAM state for the file datastore (default `<datastore dir>/ipam`).
    pub ipam_dir: Option<PathBuf>,
    /// Where to install the CNI network configuration (`10-petrel.conflist`).
    pub cni_conf_dir: Option<PathBuf>,
    /// MTU of pod interfaces in the CNI configuration (default: the ptp plugin's).
    pub cni_mtu: Option<u32>,
    pub api_socket: PathBuf,
    pub dataplane: DataplaneConfig,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`.
    pub metrics_listen: MetricsListen,
    /// Leave the kernel routes in place on exit (restarts and upgrades:
    /// the next agent adopts them).
    pub keep_routes_on_exit: bool,
    /// On SIGTERM, drain this long first (RFC 8326 graceful shutdown: the
    /// node's routes go out with GRACEFUL_SHUTDOWN), then stop.
    pub drain: Duration,
}

/// Run the agent until SIGINT or SIGTERM.
pub async fn run(opts: AgentOptions) -> anyhow::Result<()> {
    let node = opts.node_name.clone();
    // Bind first: a taken port is a start-up error, not a silent gap.
    let metrics_listener = match opts.metrics_listen {
        MetricsListen::Off => None,
        MetricsListen::Addr(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?,
        ),
    };
    let Datastore {
        snapshots,
        task: datastore_task,
        store,
        client,
    } = open_datastore(&opts).await?;
    let shutdown = CancellationToken::new();
    let (base_config, resolver) =
        petrel_datastore::resolve_snapshots(snapshots.clone(), node.clone());
    let (ipam_config, ipam_config_task) = pipeline::ipam_config(snapshots.clone(), node.clone());
    let (ipam, ipam_task) = petrel_ipam::spawn(
        node.clone(),
        ipam_config.clone(),
        store,
        petrel_ipam::IpamOptions {
            start_delay: test_ipam_start_delay(),
            ..Default::default()
        },
    );
    let pipeline::Composed {
        config,
        mut ipam_synced,
        task: compose_task,
    } = pipeline::compose_config(base_config, snapshots.clone(), ipam.blocks());
    let (dataplane, dataplane_task) = petrel_dataplane::start(opts.dataplane.clone()).await?;
    let (fib_tx, fib_rx) = tokio::sync::mpsc::unbounded_channel();
    let fib_task = tokio::spawn(forward_fib(fib_rx, dataplane.clone()));
    // Routes of a previous agent in the kernel: this is a restart with the
    // forwarding state preserved (RFC 4724 §4.1, the Restart State bit).
    let restarting = match dataplane.status().await {
        Ok(s) if s.stale > 0 => Some(opts.dataplane.stale_timeout),
        _ => None,
    };
    // BGP starts with IPAM's view of this node's blocks when it comes in
    // time; End-of-RIB waits for it in any case (and for the service
    // addresses), so a peer never drops a block of this node for lack of it.
    if tokio::time::timeout(IPAM_START_WAIT, ipam_synced.wait_for(|s| *s))
        .await
        .is_err()
    {
        tracing::warn!(wait = ?IPAM_START_WAIT,
            "IPAM has not read this node's blocks yet; starting BGP, End-of-RIB held until it has");
    }
    let hold = |h: &str| (h.to_string(), END_OF_RIB_HOLD_MAX);
    let (speaker, speaker_task) = Speaker::spawn(
        config.clone(),
        Some(fib_tx),
        shutdown.clone(),
        SpeakerOptions {
            restarting,
            stale_timeout: opts.dataplane.stale_timeout,
            end_of_rib_holds: vec![
                hold(petrel_speaker::END_OF_RIB_HOLD_IPAM),
                hold(petrel_speaker::END_OF_RIB_HOLD_SERVICES),
            ],
            selection_deferral: petrel_speaker::SELECTION_DEFERRAL,
        },
    );
    let release_task = {
        let speaker = speaker.clone();
        tokio::spawn(async move {
            if ipam_synced.wait_for(|s| *s).await.is_ok() {
                speaker
                    .release_end_of_rib(petrel_speaker::END_OF_RIB_HOLD_IPAM)
                    .await;
            }
        })
    };
    let (services_tx, services_view) =
        tokio::sync::watch::channel(petrel_services::ServicesView::default());
    let services_task = tokio::spawn(pipeline::advertise_services(
        snapshots,
        node.clone(),
        speaker.clone(),
        services_tx,
    ));
    let backend: Arc<dyn petrel_ipam::backend::IpamBackend> = Arc::new(ipam_backend::Backend {
        ipam: ipam.clone(),
        config: ipam_config,
    });
    let metrics = metrics_listener.map(|listener| {
        info!(listen = %opts.metrics_listen, "serving /metrics, /healthz and /readyz");
        let sources = crate::metrics::Sources {
            speaker: speaker.clone(),
            dataplane: Some(dataplane.clone()),
            config: config.clone(),
        };
        let more = crate::metrics::MoreSources {
            ipam: Some(backend.clone()),
            services: Some(services_view.clone()),
        };
        tokio::spawn(crate::metrics::serve_with(
            listener,
            sources,
            more,
            shutdown.clone(),
        ))
    });
    // With Kubernetes, the node's status goes to its PetrelNode object.
    let status_tasks = client.map(|client| {
        let (tx, rx) = tokio::sync::watch::channel(petrel_crd::NodeStatusReport::default());
        let reporter = tokio::spawn(status_report::run(
            speaker.clone(),
            backend.clone(),
            config.clone(),
            tx,
        ));
        let writer = petrel_datastore::kube::spawn_status_writer(client, node.clone(), rx);
        [reporter, writer]
    });
    let api = tokio::spawn(petrel_api::serve(
        opts.api_socket.clone(),
        petrel_api::Sources {
            node_name: node.clone(),
            speaker: speaker.clone(),
            dataplane: Some((dataplane.clone(), opts.dataplane.clone())),
            ipam: Some(backend),
            services: Some(services_view),
            config: Some(status_report::config_status_fn(config.clone())),
        },
        shutdown.clone(),
    ));
    if let Some(dir) = &opts.cni_conf_dir {
        match cni_conf::install(dir, &opts.api_socket, opts.cni_mtu) {
            Ok(path) => info!(path = %path.display(), "CNI network configuration installed"),
            Err(e) => {
                error!(dir = %dir.display(), error = %e, "cannot write the CNI network configuration")
            }
        }
    }

    let mut signals = Signals::new();
    let signal = signals.next().await;
    if signal == Signal::Terminate && !opts.drain.is_zero() {
        // RFC 8326: peers and the other nodes move their traffic to other
        // paths while this node still forwards; a second signal cuts it short.
        info!(drain = ?opts.drain, "SIGTERM: draining before stopping (--drain-seconds)");
        speaker.drain().await;
        tokio::select! {
            _ = tokio::time::sleep(opts.drain) => info!("drain time over"),
            s = signals.next() => info!(signal = ?s, "second signal: stopping now"),
        }
    }
    info!("shutting down");
    shutdown.cancel();
    for task in [
        &datastore_task,
        &resolver,
        &ipam_config_task,
        &compose_task,
        &services_task,
        &release_task,
    ] {
        task.abort();
    }
    for task in status_tasks.iter().flatten() {
        task.abort();
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), speaker_task).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), fib_task).await;
    if let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(2), api).await {
        error!(error = %e, "management API failed");
    }
    if let Some(metrics) = metrics
        && let Ok(Ok(Err(e))) = tokio::time::timeout(Duration::from_secs(2), metrics).await
    {
        error!(error = %e, "metrics endpoint failed");
    }
    // Pod addresses stay allocated (they live in the datastore); the IPAM
    // task only stops.
    drop(ipam);
    ipam_task.abort();
    if opts.keep_routes_on_exit {
        // A restart or upgrade: forwarding goes on while no agent runs; the
        // next one adopts these routes and sweeps what is no longer wanted
        // after End-of-RIB (peers keep this node's routes meanwhile: graceful
        // restart).
        info!("leaving petrel's kernel routes in place (--keep-routes-on-exit)");
        // The task leaves the routes when every handle is gone; the API
        // server may still hold one, so stop it after a moment.
        drop(dataplane);
        let abort = dataplane_task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(1), dataplane_task)
            .await
            .is_err()
        {
            abort.abort();
        }
    } else {
        info!("removing petrel's kernel routes");
        if let Err(e) = dataplane.shutdown().await {
            error!(error = %e, "cannot remove kernel routes");
        }
        let _ = tokio::time::timeout(Duration::from_secs(5), dataplane_task).await;
    }
    Ok(())
}

/// How long BGP waits at start-up for IPAM's first view of this node's blocks.
const IPAM_START_WAIT: Duration = Duration::from_secs(10);
/// The longest End-of-RIB waits for IPAM's view or the service addresses.
const END_OF_RIB_HOLD_MAX: Duration = Duration::from_secs(120);
/// Test hook: `PETREL_TEST_IPAM_START_DELAY_MS` delays IPAM's first read of
/// the store (the testbed's slow-IPAM restart test). Not for production.
const IPAM_DELAY_ENV: &str = "PETREL_TEST_IPAM_START_DELAY_MS";

fn test_ipam_start_delay() -> Duration {
    match std::env::var(IPAM_DELAY_ENV).ok().map(|v| v.parse::<u64>()) {
        None => Duration::ZERO,
        Some(Ok(ms)) => {
            tracing::warn!(
                env = IPAM_DELAY_ENV,
                ms,
                "test hook: delaying IPAM's first view"
            );
            Duration::from_millis(ms)
        }
        Some(Err(e)) => {
            error!(env = IPAM_DELAY_ENV, error = %e, "ignoring an invalid delay");
            Duration::ZERO
        }
    }
}

/// How often the file datastore's directory is read. A change applies once
/// two reads agree, so edits take effect within about half a second.
const FILE_POLL_INTERVAL: Duration = Duration::from_millis(250);

type Snapshots = tokio::sync::watch::Receiver<Option<Arc<petrel_datastore::Snapshot>>>;

/// A running configuration source.
struct Datastore {
    snapshots: Snapshots,
    task: tokio::task::JoinHandle<()>,
    /// The IPAM store that goes with it.
    store: Arc<dyn IpamStore>,
    /// The API client, with the Kubernetes datastore.
    client: Option<kube::Client>,
}

/// Starts the configuration source and opens the IPAM store that goes with it.
async fn open_datastore(opts: &AgentOptions) -> anyhow::Result<Datastore> {
    match &opts.datastore {
        DatastoreSpec::File(dir) => {
            if !dir.is_dir() {
                anyhow::bail!("datastore directory {} does not exist", dir.display());
            }
            let ipam_dir = opts.ipam_dir.clone().unwrap_or_else(|| dir.join("ipam"));
            info!(node = %opts.node_name, datastore = %dir.display(), ipam = %ipam_dir.display(), "petrel agent starting");
            let store = petrel_ipam::file_store::FileStore::open(&ipam_dir)
                .with_context(|| format!("IPAM directory {}", ipam_dir.display()))?;
            let (snapshots, task) =
                petrel_datastore::watch_snapshots(dir.clone(), FILE_POLL_INTERVAL);
            Ok(Datastore {
                snapshots,
                task,
                store: Arc::new(store),
                client: None,
            })
        }
        DatastoreSpec::Kubernetes => {
            let client = kube_client(opts.kubeconfig.as_deref()).await?;
            info!(node = %opts.node_name, "petrel agent starting with the Kubernetes datastore");
            let mut kopts = petrel_datastore::kube::KubeOptions::new(opts.node_name.clone());
            kopts.namespace = opts.namespace.clone();
            kopts.cache_file = opts.cache_file.clone();
            let mut store =
                petrel_datastore::kube::ipam::KubeIpamStore::new(client.clone()).with_watch();
            if let Some(cache) = &opts.cache_file {
                store = store.with_cache(cache);
            }
            let (snapshots, task) = petrel_datastore::kube::watch(client.clone(), kopts);
            Ok(Datastore {
                snapshots,
                task,
                store: Arc::new(store),
                client: Some(client),
            })
        }
    }
}

/// A client from `--kubeconfig`, else the in-cluster configuration, else the
/// usual kubeconfig search (`$KUBECONFIG`, `~/.kube/config`).
async fn kube_client(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .with_context(|| format!("invalid kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no in-cluster configuration and no kubeconfig; use --kubeconfig")?,
    };
    kube::Client::try_from(config).context("cannot create the Kubernetes client")
}

/// Hand the speaker's selected-route changes to the dataplane.
async fn forward_fib(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<FibMsg>,
    dataplane: petrel_dataplane::DataplaneHandle,
) {
    while let Some(msg) = rx.recv().await {
        match msg {
            FibMsg::Changes(changes) => {
                if let Err(e) = dataplane.apply(changes).await {
                    error!(error = %e, "dataplane stopped; kernel routes are no longer updated");
                    return;
                }
            }
            FibMsg::Converged => {
                if let Err(e) = dataplane.converged().await {
                    error!(error = %e, "dataplane stopped");
                    return;
                }
            }
        }
    }
}

/// A stop signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Signal {
    Terminate,
    Interrupt,
}

/// SIGTERM and SIGINT, from the moment the agent runs.
struct Signals {
    term: Option<tokio::signal::unix::Signal>,
    int: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        if let Err(e) = term.as_ref().and(int.as_ref()) {
            error!(error = %e, "cannot install the signal handlers; stopping on Ctrl-C only");
        }
        Signals {
            term: term.ok(),
            int: int.ok(),
        }
    }

    async fn next(&mut self) -> Signal {
        match (&mut self.term, &mut self.int) {
            (Some(term), Some(int)) => tokio::select! {
                _ = term.recv() => Signal::Terminate,
                _ = int.recv() => Signal::Interrupt,
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
                Signal::Interrupt
            }
        }
    }
}
