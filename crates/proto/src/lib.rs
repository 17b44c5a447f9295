//! The wire types of petrel's gRPC management API (`proto/petrel/v1/*.proto`,
//! package `petrel.v1`), generated at build time, and the client side of the
//! agent's Unix socket. The CLI and the CNI plugin depend on this crate only;
//! the server and the conversions from domain types live in `petrel-api`.

#[allow(clippy::all, missing_docs)]
pub mod pb {
    tonic::include_proto!("petrel.v1");
}

use std::path::{Path, PathBuf};

/// Errors of a client of the management API.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
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

/// A gRPC channel to the agent's Unix socket at `path` (for any service).
pub async fn channel(path: &Path) -> Result<tonic::transport::Channel, ClientError> {
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
        .map_err(|source| ClientError::Connect {
            path: path.to_path_buf(),
            source,
        })?;
    Ok(channel)
}

/// A client of the agent service (`petrel.v1.AgentService`) on `path`.
pub async fn connect(
    path: &Path,
) -> Result<pb::agent_service_client::AgentServiceClient<tonic::transport::Channel>, ClientError> {
    Ok(pb::agent_service_client::AgentServiceClient::new(
        channel(path).await?,
    ))
}

/// A client of the IPAM service (`petrel.v1.IpamService`) on `path`: what
/// `petrel-ipam` and `petrel ipam` use.
pub async fn connect_ipam(
    path: &Path,
) -> Result<pb::ipam_service_client::IpamServiceClient<tonic::transport::Channel>, ClientError> {
    Ok(pb::ipam_service_client::IpamServiceClient::new(
        channel(path).await?,
    ))
}
