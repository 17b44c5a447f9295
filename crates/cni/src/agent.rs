//! The plugin's side of `petrel.v1.IpamService`: one gRPC channel over the
//! agent's Unix socket, every call bounded by the configured timeout, and
//! gRPC status codes turned into CNI errors (CNI spec 1.1.0 §5): an agent
//! that is down, starting, or out of addresses is "try again later" (11).

use super::error::CniError;
use super::pb;
use super::pb::ipam_service_client::IpamServiceClient;
use petrel_proto::ClientError;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::Channel;

/// A connected client of the agent's IPAM service.
pub struct Agent {
    client: IpamServiceClient<Channel>,
    socket: PathBuf,
    timeout: Duration,
}

/// The innermost cause of an error, e.g. "No such file or directory"
/// rather than tonic's chain of "transport error"s.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

impl Agent {
    /// Connects to the agent at `socket`, within `timeout`.
    pub async fn connect(socket: &Path, timeout: Duration) -> Result<Self, CniError> {
        let unreachable = |reason: String| CniError::AgentUnreachable {
            socket: socket.to_path_buf(),
            reason,
        };
        let client = match tokio::time::timeout(timeout, petrel_proto::connect_ipam(socket)).await {
            Err(_) => return Err(unreachable(format!("no connection within {timeout:?}"))),
            Ok(Err(ClientError::Connect { source, .. })) => {
                return Err(unreachable(root_cause(&source)));
            }
            Ok(Err(other)) => return Err(unreachable(other.to_string())),
            Ok(Ok(c)) => c,
        };
        Ok(Agent {
            client,
            socket: socket.to_path_buf(),
            timeout,
        })
    }

    /// Runs one call with the timeout and maps its failure.
    async fn call<T, F>(&self, op: &'static str, fut: F) -> Result<T, CniError>
    where
        F: Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        match tokio::time::timeout(self.timeout, fut).await {
            Err(_) => Err(CniError::Timeout {
                socket: self.socket.clone(),
                op,
                secs: self.timeout.as_secs(),
            }),
            Ok(Ok(r)) => Ok(r.into_inner()),
            Ok(Err(status)) => Err(status_error(&self.socket, op, &status)),
        }
    }

    /// `Allocate`.
    pub async fn allocate(
        &self,
        req: pb::AllocateRequest,
    ) -> Result<pb::AllocateResponse, CniError> {
        let mut c = self.client.clone();
        self.call("Allocate", c.allocate(req)).await
    }

    /// `Release`.
    pub async fn release(&self, req: pb::ReleaseRequest) -> Result<pb::ReleaseResponse, CniError> {
        let mut c = self.client.clone();
        self.call("Release", c.release(req)).await
    }

    /// `Check`; `Ok(None)` when the agent holds no allocation.
    pub async fn check(&self, req: pb::CheckRequest) -> Result<Option<pb::Allocation>, CniError> {
        let mut c = self.client.clone();
        match tokio::time::timeout(self.timeout, c.check(req)).await {
            Ok(Err(s)) if s.code() == tonic::Code::NotFound => Ok(None),
            Err(_) => Err(CniError::Timeout {
                socket: self.socket.clone(),
                op: "Check",
                secs: self.timeout.as_secs(),
            }),
            Ok(Err(s)) => Err(status_error(&self.socket, "Check", &s)),
            Ok(Ok(r)) => Ok(r.into_inner().allocation),
        }
    }

    /// `GarbageCollect`.
    pub async fn garbage_collect(
        &self,
        req: pb::GarbageCollectRequest,
    ) -> Result<pb::GarbageCollectResponse, CniError> {
        let mut c = self.client.clone();
        self.call("GarbageCollect", c.garbage_collect(req)).await
    }

    /// `GetIpamStatus`.
    pub async fn status(&self) -> Result<pb::GetIpamStatusResponse, CniError> {
        let mut c = self.client.clone();
        self.call(
            "GetIpamStatus",
            c.get_ipam_status(pb::GetIpamStatusRequest {}),
        )
        .await
    }

    /// The socket this client talks to.
    pub fn socket(&self) -> &Path {
        &self.socket
    }
}

/// Maps a gRPC status of the agent to a CNI error.
pub fn status_error(socket: &Path, op: &'static str, s: &tonic::Status) -> CniError {
    use tonic::Code;
    match s.code() {
        // Exhausted pools, start-up reconcile, datastore trouble, an agent
        // restarting under us: all clear up by themselves or by an operator,
        // and the runtime retries.
        Code::ResourceExhausted | Code::Unavailable | Code::Aborted | Code::DeadlineExceeded => {
            CniError::TryAgain {
                socket: socket.to_path_buf(),
                message: s.message().to_string(),
            }
        }
        Code::Unimplemented => CniError::Agent {
            socket: socket.to_path_buf(),
            op,
            message: "this agent does not serve petrel.v1.IpamService (upgrade petrel)".into(),
        },
        _ => CniError::Agent {
            socket: socket.to_path_buf(),
            op,
            message: format!("{:?}: {}", s.code(), s.message()),
        },
    }
}
