//! gRPC management API (`proto/petrel/v1/*.proto`) served on a Unix socket, and
//! the client the CLI uses. Status flows back to users only through here.

use crate::bgp::speaker::SpeakerHandle;
use crate::bgp::wire::Family;
use crate::dataplane::{DataplaneConfig, DataplaneHandle};
use std::path::{Path, PathBuf};
use tokio_util::sync::CancellationToken;

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("petrel.v1");
}

pub mod ipam;

/// Errors of the management API.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot create API socket {path}: {source}")]
    Bind {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("API server on {path} failed: {source}")]
    Serve {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error(
        "cannot connect to the agent at {path}: {source} (is `petrel agent` running with this --api-socket?)"
    )]
    Connect {
        path: PathBuf,
        source: tonic::transport::Error,
    },
    #[error("agent returned an error: {0}")]
    Status(#[from] tonic::Status),
}

/// Everything the API reports on: the owners of state, read at each request.
#[derive(Clone)]
pub struct Sources {
    /// This node's name.
    pub node_name: String,
    pub speaker: SpeakerHandle,
    pub dataplane: Option<(DataplaneHandle, DataplaneConfig)>,
    /// IPAM (also serves `petrel-ipam`).
    pub ipam: Option<std::sync::Arc<dyn ipam::IpamBackend>>,
    /// What the service engine advertises and rejects.
    pub services: Option<tokio::sync::watch::Receiver<crate::agent::ServicesView>>,
}

struct Service {
    speaker: SpeakerHandle,
    dataplane: Option<(DataplaneHandle, DataplaneConfig)>,
}

#[tonic::async_trait]
impl pb::agent_server::Agent for Service {
    async fn list_peers(
        &self,
        _req: tonic::Request<pb::ListPeersRequest>,
    ) -> Result<tonic::Response<pb::ListPeersResponse>, tonic::Status> {
        Ok(tonic::Response::new(pb::ListPeersResponse {
            peers: self.speaker.peers().await,
        }))
    }

    async fn list_routes(
        &self,
        req: tonic::Request<pb::ListRoutesRequest>,
    ) -> Result<tonic::Response<pb::ListRoutesResponse>, tonic::Status> {
        let family = match req.get_ref().family.as_str() {
            "" => None,
            "ipv4" | "ipv4-unicast" => Some(Family::Ipv4Unicast),
            "ipv6" | "ipv6-unicast" => Some(Family::Ipv6Unicast),
            other => {
                return Err(tonic::Status::invalid_argument(format!(
                    "unknown family {other:?}: use ipv4 or ipv6"
                )));
            }
        };
        Ok(tonic::Response::new(pb::ListRoutesResponse {
            routes: self.speaker.routes(family).await,
        }))
    }

    async fn get_dataplane(
        &self,
        _req: tonic::Request<pb::GetDataplaneRequest>,
    ) -> Result<tonic::Response<pb::Dataplane>, tonic::Status> {
        let Some((handle, config)) = &self.dataplane else {
            return Err(tonic::Status::unavailable(
                "this agent runs without a dataplane",
            ));
        };
        let s = handle
            .status()
            .await
            .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
        Ok(tonic::Response::new(pb::Dataplane {
            desired: s.desired as u64,
            installed: s.installed as u64,
            stale: s.stale as u64,
            unresolved: s
                .unresolved
                .iter()
                .map(|(p, h)| pb::Unresolved {
                    prefix: p.to_string(),
                    next_hop: h.to_string(),
                })
                .collect(),
            conflicts: s.conflicts.iter().map(|p| p.to_string()).collect(),
            errors: s
                .errors
                .iter()
                .map(|(p, e)| pb::KernelError {
                    prefix: p.to_string(),
                    error: e.clone(),
                })
                .collect(),
            converged: s.converged,
            resyncs: s.resyncs,
            operations: s.operations,
            table: config.table,
            protocol: u32::from(config.protocol),
        }))
    }
}

/// Serve the API on `path` until `shutdown`; removes a stale socket first.
pub async fn serve(
    path: PathBuf,
    sources: Sources,
    shutdown: CancellationToken,
) -> Result<(), ApiError> {
    let Sources {
        speaker,
        dataplane,
        ipam,
        ..
    } = sources;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ApiError::Bind {
            path: path.clone(),
            source,
        })?;
    }
    let _ = std::fs::remove_file(&path);
    let listener = tokio::net::UnixListener::bind(&path).map_err(|source| ApiError::Bind {
        path: path.clone(),
        source,
    })?;
    // The API shows the whole routing state: only root (the agent's user)
    // may connect.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).map_err(
            |source| ApiError::Bind {
                path: path.clone(),
                source,
            },
        )?;
    }
    tracing::info!(socket = %path.display(), "management API listening");
    let result = tonic::transport::Server::builder()
        .add_service(pb::agent_server::AgentServer::new(Service {
            speaker,
            dataplane,
        }))
        .add_optional_service(ipam.map(ipam::service))
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::UnixListenerStream::new(listener),
            shutdown.cancelled_owned(),
        )
        .await;
    let _ = std::fs::remove_file(&path);
    result.map_err(|source| ApiError::Serve { path, source })
}

/// Connect to an agent's API socket.
pub async fn connect(
    path: &Path,
) -> Result<pb::agent_client::AgentClient<tonic::transport::Channel>, ApiError> {
    let p = path.to_path_buf();
    // The URI is required by tonic but unused: the connector dials the socket.
    let channel = tonic::transport::Endpoint::from_static("http://petrel.invalid")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let p = p.clone();
            async move {
                let s = tokio::net::UnixStream::connect(p).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
        .map_err(|source| ApiError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(pb::agent_client::AgentClient::new(channel))
}
