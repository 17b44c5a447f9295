//! The IPAM service as the rest of the agent sees it: the operations that
//! the management API (and through it the `petrel-ipam` CNI plugin, CNI spec
//! 1.0.0/1.1.0 ADD, DEL, CHECK, GC, STATUS) needs, in plain Rust types. The
//! agent implements [`IpamBackend`] with its IPAM owner task; `petrel-api`
//! serves it over gRPC and maps [`IpamBackendError`] to status codes.

use ipnet::IpNet;
use std::net::IpAddr;

/// A CNI attachment: `(CNI_CONTAINERID, CNI_IFNAME)`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachmentKey {
    pub container_id: String,
    pub ifname: String,
}

/// What an allocation is requested for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocateArgs {
    pub attachment: AttachmentKey,
    /// Name of the CNI network configuration.
    pub network: String,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    /// Path of the pod's network namespace.
    pub netns: String,
}

/// One pod address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodAddress {
    /// The pod address with the prefix length of its block, e.g.
    /// `10.65.0.5/26` (host bits kept: `address.addr()` is the pod address).
    pub address: IpNet,
    /// The block's gateway, configured on the host side of the pod's link.
    /// Never equal to a pod address.
    pub gateway: IpAddr,
    /// The block the address is in.
    pub block: IpNet,
    /// Name of the IPPool of the block.
    pub pool: String,
}

/// Everything one attachment holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationInfo {
    pub attachment: AttachmentKey,
    pub network: String,
    pub pod_namespace: Option<String>,
    pub pod_name: Option<String>,
    pub netns: String,
    pub addresses: Vec<PodAddress>,
}

/// Claim state of a block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockClaimState {
    Pending,
    Confirmed,
    Releasing,
}

/// One block claim, of this node or another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockInfo {
    pub cidr: IpNet,
    pub pool: String,
    pub owner_node: String,
    pub state: BlockClaimState,
    pub used: u64,
    pub free: u64,
    /// Advertised over BGP (the pool is not `disableBGPExport`).
    pub export: bool,
    pub gateway: Option<IpAddr>,
}

/// One IPPool and its use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolInfo {
    pub name: String,
    pub cidr: IpNet,
    pub block_size: u8,
    pub disabled: bool,
    pub export: bool,
    /// The pool's nodeSelector selects this node.
    pub selected: bool,
    pub blocks_total: u64,
    pub blocks_claimed: u64,
    pub addresses_used: u64,
    pub addresses_free: u64,
}

/// The IPAM state seen by this node.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IpamStatusInfo {
    pub node: String,
    /// Allocate can be served now.
    pub ready: bool,
    pub not_ready_reason: Option<String>,
    pub pools: Vec<PoolInfo>,
    pub blocks: Vec<BlockInfo>,
    pub allocations: Vec<AllocationInfo>,
    pub last_error: Option<String>,
}

/// Failures of an [`IpamBackend`]; each maps to one gRPC status code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IpamBackendError {
    /// No free address and no free block to claim (`RESOURCE_EXHAUSTED`).
    /// The message names the pools.
    #[error("{0}")]
    Exhausted(String),
    /// Not ready yet, e.g. the start-up reconcile is running (`UNAVAILABLE`).
    #[error("{0}")]
    NotReady(String),
    /// The datastore cannot be reached or keeps conflicting (`UNAVAILABLE`).
    #[error("{0}")]
    Datastore(String),
    /// The request cannot be served as asked (`INVALID_ARGUMENT`).
    #[error("{0}")]
    Invalid(String),
    /// Anything else (`INTERNAL`).
    #[error("{0}")]
    Internal(String),
}

/// The IPAM operations the service needs; the agent implements it with its
/// IPAM owner task.
#[async_trait::async_trait]
pub trait IpamBackend: Send + Sync + 'static {
    /// The addresses of `args.attachment`, allocating one per family of the
    /// pools selected for this node if it has none (idempotent).
    async fn allocate(&self, args: AllocateArgs) -> Result<Vec<PodAddress>, IpamBackendError>;
    /// Frees the addresses of an attachment; `Ok(vec![])` when it has none.
    async fn release(
        &self,
        attachment: AttachmentKey,
        network: String,
    ) -> Result<Vec<PodAddress>, IpamBackendError>;
    /// The allocation of an attachment, `None` when it has none.
    async fn check(
        &self,
        attachment: AttachmentKey,
        network: String,
    ) -> Result<Option<AllocationInfo>, IpamBackendError>;
    /// Releases every allocation of `network` whose attachment is not in
    /// `keep`, returning what was released. A backend that does not record
    /// networks treats every allocation as belonging to `network`.
    async fn gc(
        &self,
        network: String,
        keep: Vec<AttachmentKey>,
    ) -> Result<Vec<AllocationInfo>, IpamBackendError>;
    /// Pools, blocks and allocations.
    async fn status(&self) -> Result<IpamStatusInfo, IpamBackendError>;
}
