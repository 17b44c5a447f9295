//! Prometheus metrics and health endpoints of `petrel agent`.
//!
//! An HTTP/1.1 server (RFC 9110, RFC 9112) on `--metrics-listen` serves:
//!
//! - `/metrics`: the Prometheus text exposition format 0.0.4, per BGP peer
//!   (RFC 4271 session state, RFC 4271 §3.2 Adj-RIB-In/Out prefix counts,
//!   message and connection counters), for the kernel dataplane, for IPAM
//!   (pools, this node's blocks and allocations) and service advertisement;
//! - `/healthz`: 200 while the agent's tasks (datastore watcher, speaker,
//!   dataplane) run and answer, else 503 naming the ones that do not;
//! - `/readyz`: 200 once healthy, a configuration for this node is loaded and
//!   routing has converged (every peer sent End-of-RIB, RFC 4724 §2, or, for
//!   a peer without graceful restart, stayed quiet for
//!   [`petrel_speaker::QUIET_PERIOD`]; at most `--stale-timeout`), else 503
//!   with the reasons, one a line.
//!
//! Nothing is accumulated here: every request takes a [`Snapshot`] from the
//! task handles ([`Sources`]) and renders it.

mod bfd;
mod collector;
mod extra;
pub mod server;
#[cfg(test)]
mod tests;

pub use bfd::BfdSeries;
pub use collector::{CONTENT_TYPE, SESSION_STATES, render};
pub use extra::{IpamState, MoreSources, ServicesCounts};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use petrel_dataplane::{DataplaneHandle, DataplaneStatus};
use petrel_datastore::resolved::NodeConfig;
use petrel_speaker::SpeakerHandle;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Default `--metrics-listen`: loopback, so that nothing is exposed unless
/// asked for (the address is per network namespace).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9179";

/// How long a scrape waits for a task to answer before calling it unhealthy.
pub const QUERY_TIMEOUT: Duration = Duration::from_secs(3);

/// `--metrics-listen`: an address, or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    Addr(SocketAddr),
}

impl std::str::FromStr for MetricsListen {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(MetricsListen::Off);
        }
        s.parse().map(MetricsListen::Addr).map_err(|_| {
            format!("invalid metrics address {s:?}: expected ADDR:PORT (e.g. 0.0.0.0:9179) or off")
        })
    }
}

impl std::fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsListen::Off => f.write_str("off"),
            MetricsListen::Addr(a) => a.fmt(f),
        }
    }
}

/// The handles a scrape reads.
#[derive(Clone, Debug)]
pub struct Sources {
    pub speaker: SpeakerHandle,
    /// `None` when the agent runs without a dataplane.
    pub dataplane: Option<DataplaneHandle>,
    /// The datastore watcher's output; closed when the watcher stopped.
    pub config: watch::Receiver<Option<NodeConfig>>,
}

/// What the dataplane said for this scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DataplaneState {
    /// The agent runs without a dataplane.
    Disabled,
    /// The dataplane task stopped or did not answer.
    Unavailable(String),
    Status(DataplaneStatus),
}

/// Kinds `petrel_config_invalid_objects` always has a series for.
pub const CONFIG_KINDS: [&str; 5] = ["BGPConfiguration", "BGPFilter", "BGPPeer", "IPPool", "Node"];

/// Invalid objects per kind, each object counted once whatever its number of
/// problems; every kind of [`CONFIG_KINDS`] is present (0 when all is well).
pub fn invalid_objects_by_kind(
    problems: &[petrel_datastore::resolved::ConfigProblem],
) -> std::collections::BTreeMap<String, u64> {
    let mut out: std::collections::BTreeMap<String, u64> =
        CONFIG_KINDS.iter().map(|k| (k.to_string(), 0)).collect();
    let objects: std::collections::BTreeSet<(&str, &str)> = problems
        .iter()
        .map(|p| (p.kind.as_str(), p.name.as_str()))
        .collect();
    for (kind, _) in objects {
        *out.entry(kind.to_string()).or_default() += 1;
    }
    out
}

/// Everything one scrape reports, read from the task handles.
#[derive(Clone, Debug, PartialEq)]
pub struct Snapshot {
    /// `None` when the speaker task stopped or did not answer.
    pub peers: Option<Vec<petrel_speaker::PeerStatus>>,
    pub dataplane: DataplaneState,
    pub config_loaded: bool,
    /// Objects the configuration could not use as they are, per kind
    /// (`NodeConfig::problems`, each object counted once).
    pub invalid_objects: std::collections::BTreeMap<String, u64>,
    pub watcher_running: bool,
    pub ipam: IpamState,
    /// `None` when the agent runs without service advertisement.
    pub services: Option<ServicesCounts>,
    /// BGP connections refused because no peer is configured for their
    /// source address.
    pub rejected_connections: u64,
    /// The BFD sessions (empty without BFD, or when the speaker did not answer).
    pub bfd: Vec<BfdSeries>,
}

impl Snapshot {
    /// Ask every task for its state, each within [`QUERY_TIMEOUT`].
    pub async fn take(sources: &Sources) -> Snapshot {
        let peers = async {
            if !sources.speaker.is_running() {
                return None;
            }
            let peers = tokio::time::timeout(QUERY_TIMEOUT, sources.speaker.peers())
                .await
                .ok()?;
            // An empty answer can also mean the speaker stopped meanwhile.
            (!peers.is_empty() || sources.speaker.is_running()).then_some(peers)
        };
        let dataplane = async {
            let Some(dp) = &sources.dataplane else {
                return DataplaneState::Disabled;
            };
            match tokio::time::timeout(QUERY_TIMEOUT, dp.status()).await {
                Ok(Ok(status)) => DataplaneState::Status(status),
                Ok(Err(e)) => DataplaneState::Unavailable(e.to_string()),
                Err(_) => DataplaneState::Unavailable(format!(
                    "no answer within {}s",
                    QUERY_TIMEOUT.as_secs()
                )),
            }
        };
        let bfd = async {
            if !sources.speaker.is_running() {
                return Vec::new();
            }
            tokio::time::timeout(QUERY_TIMEOUT, sources.speaker.bfd())
                .await
                .map(|s| BfdSeries::of(&s))
                .unwrap_or_default()
        };
        let (peers, dataplane, bfd) = tokio::join!(peers, dataplane, bfd);
        Snapshot {
            peers,
            dataplane,
            config_loaded: sources.config.borrow().is_some(),
            invalid_objects: invalid_objects_by_kind(
                sources
                    .config
                    .borrow()
                    .as_ref()
                    .map_or(&[][..], |c| &c.problems[..]),
            ),
            watcher_running: sources.config.has_changed().is_ok(),
            ipam: IpamState::Disabled,
            services: None,
            rejected_connections: sources.speaker.rejected_connections(),
            bfd,
        }
    }

    /// [`Snapshot::take`], plus IPAM and service advertisement.
    pub async fn take_all(sources: &Sources, more: &MoreSources) -> Snapshot {
        let (mut snap, ipam) = tokio::join!(Snapshot::take(sources), extra::take_ipam(more));
        snap.ipam = ipam;
        snap.services = more
            .services
            .as_ref()
            .map(|rx| ServicesCounts::of(&rx.borrow()));
        snap
    }

    /// Liveness: `Err` lists the tasks that stopped or do not answer.
    pub fn health(&self) -> Result<(), Vec<String>> {
        let mut problems = Vec::new();
        if self.peers.is_none() {
            problems.push("BGP speaker: stopped or not answering".to_string());
        }
        if let DataplaneState::Unavailable(e) = &self.dataplane {
            problems.push(format!("dataplane: {e}"));
        }
        if !self.watcher_running {
            problems.push("datastore watcher: stopped".to_string());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// Readiness: healthy, configured and converged; `Err` says what is
    /// missing.
    pub fn readiness(&self) -> Result<(), Vec<String>> {
        let mut problems = self.health().err().unwrap_or_default();
        if !self.config_loaded {
            problems.push("no configuration for this node loaded from the datastore yet".into());
        }
        if let DataplaneState::Status(s) = &self.dataplane
            && !s.converged
        {
            problems.push(
                "dataplane not converged: waiting for the peers (End-of-RIB, or 3 s without an UPDATE from a peer without graceful restart), at most --stale-timeout"
                    .into(),
            );
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// The HTTP routes, for [`serve`] and for tests.
pub fn router(sources: Sources) -> Router {
    router_with(sources, MoreSources::default())
}

/// [`router`] with IPAM and service advertisement metrics.
pub fn router_with(sources: Sources, more: MoreSources) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(Arc::new((sources, more)))
}

/// Serve the endpoints on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    sources: Sources,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    serve_with(listener, sources, MoreSources::default(), shutdown).await
}

/// [`serve`] with IPAM and service advertisement metrics.
pub async fn serve_with(
    listener: TcpListener,
    sources: Sources,
    more: MoreSources,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    server::serve(
        listener,
        router_with(sources, more),
        server::Limits::default(),
        shutdown,
    )
    .await
}

type Shared = Arc<(Sources, MoreSources)>;

async fn metrics(State(s): State<Shared>) -> Response {
    let body = render(&Snapshot::take_all(&s.0, &s.1).await);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], body).into_response()
}

async fn healthz(State(s): State<Shared>) -> Response {
    check(Snapshot::take(&s.0).await.health())
}

async fn readyz(State(s): State<Shared>) -> Response {
    check(Snapshot::take(&s.0).await.readiness())
}

fn check(result: Result<(), Vec<String>>) -> Response {
    let text = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    match result {
        Ok(()) => (StatusCode::OK, text, "ok\n".to_string()).into_response(),
        Err(problems) => {
            let mut body = problems.join("\n");
            body.push('\n');
            (StatusCode::SERVICE_UNAVAILABLE, text, body).into_response()
        }
    }
}
