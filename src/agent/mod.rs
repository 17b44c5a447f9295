//! `petrel agent`: wires the datastore, the BGP speaker, the dataplane and the
//! management API together for one node, and shuts them down in order.
//!
//! ```text
//! datastore::watch_dir ──NodeConfig──► bgp::speaker ──FibChanges──► dataplane
//!                                          ▲   │
//!                      api (Unix socket) ──┘   └──► session drivers ◄──► peers
//!
//! metrics (HTTP: /metrics, /healthz, /readyz) reads the speaker, the
//! dataplane and the watcher's output at each request.
//! ```

use crate::bgp::speaker::{FibMsg, Speaker};
use crate::dataplane::DataplaneConfig;
use crate::metrics::MetricsListen;
use anyhow::Context;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{error, info};

/// Where configuration comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatastoreSpec {
    /// A directory of Kubernetes-style YAML manifests, watched live.
    File(PathBuf),
}

impl std::str::FromStr for DatastoreSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once(':') {
            Some(("file", dir)) if !dir.is_empty() => Ok(DatastoreSpec::File(PathBuf::from(dir))),
            _ if s == "kubernetes" => Err(
                "the kubernetes datastore is not available in this version; use file:DIR".into(),
            ),
            _ => Err(format!("invalid datastore {s:?}: expected file:DIR")),
        }
    }
}

/// Options of `petrel agent`.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub node_name: String,
    pub datastore: DatastoreSpec,
    pub api_socket: PathBuf,
    pub dataplane: DataplaneConfig,
    /// Where to serve `/metrics`, `/healthz` and `/readyz`.
    pub metrics_listen: MetricsListen,
}

/// Run the agent until SIGINT or SIGTERM.
pub async fn run(opts: AgentOptions) -> anyhow::Result<()> {
    let DatastoreSpec::File(dir) = &opts.datastore;
    if !dir.is_dir() {
        anyhow::bail!("datastore directory {} does not exist", dir.display());
    }
    info!(node = %opts.node_name, datastore = %dir.display(), "petrel agent starting");
    // Bind first: a taken port is a start-up error, not a silent gap.
    let metrics_listener = match opts.metrics_listen {
        MetricsListen::Off => None,
        MetricsListen::Addr(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen for metrics on {addr}"))?,
        ),
    };
    let shutdown = CancellationToken::new();
    let (config, watcher) =
        crate::datastore::watch_dir(dir.clone(), opts.node_name.clone(), Duration::from_secs(1));
    let (dataplane, dataplane_task) = crate::dataplane::start(opts.dataplane.clone()).await?;
    let (fib_tx, fib_rx) = tokio::sync::mpsc::unbounded_channel();
    let fib_task = tokio::spawn(forward_fib(fib_rx, dataplane.clone()));
    let (speaker, speaker_task) = Speaker::spawn(config.clone(), Some(fib_tx), shutdown.clone());
    let metrics = metrics_listener.map(|listener| {
        info!(listen = %opts.metrics_listen, "serving /metrics, /healthz and /readyz");
        let sources = crate::metrics::Sources {
            speaker: speaker.clone(),
            dataplane: Some(dataplane.clone()),
            config,
        };
        tokio::spawn(crate::metrics::serve(listener, sources, shutdown.clone()))
    });
    let api = tokio::spawn(crate::api::serve(
        opts.api_socket.clone(),
        speaker,
        Some((dataplane.clone(), opts.dataplane.clone())),
        shutdown.clone(),
    ));

    wait_for_signal().await;
    info!("shutting down");
    shutdown.cancel();
    watcher.abort();
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
    // Without graceful restart, our routes leave the kernel with us.
    info!("removing petrel's kernel routes");
    if let Err(e) = dataplane.shutdown().await {
        error!(error = %e, "cannot remove kernel routes");
    }
    let _ = tokio::time::timeout(Duration::from_secs(5), dataplane_task).await;
    Ok(())
}

/// Hand the speaker's selected-route changes to the dataplane.
async fn forward_fib(
    mut rx: tokio::sync::mpsc::UnboundedReceiver<FibMsg>,
    dataplane: crate::dataplane::DataplaneHandle,
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

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
