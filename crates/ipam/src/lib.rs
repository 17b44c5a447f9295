//! IP address management (IPAM) of pod addresses.
//!
//! Nodes claim blocks of addresses (RFC 4632 CIDR prefixes of the pool's
//! `blockSize`) from the IPPools selected for them, and hand out single
//! addresses of their own blocks to pods. The design follows Calico's block
//! affinity model, with strict affinity (a node never allocates from another
//! node's block):
//!
//! * **Claim** (two-phase, see [`claim`]): a `pending` `BlockAffinity`, then
//!   the `IPAMBlock` created with the node's affinity (creation is atomic: the
//!   first creator owns the block), then the affinity and the block are
//!   `confirmed`. A pending affinity counts as absent for other nodes. The
//!   search for a free block starts at an offset derived from a hash of the
//!   node name, so competing nodes try different blocks.
//! * **Allocation** (see [`allocator`]): the lowest free address of one of the
//!   node's blocks, stored in the block object under `<containerID>/<ifname>`,
//!   which makes it idempotent and restart-safe. Per family, one address of the
//!   node's first block is reserved as the pods' gateway (the address the CNI
//!   `ptp` plugin puts on the host side of every pod's veth) and is never given
//!   to a pod.
//! * **Release**: an empty block is given back after a grace period; a node
//!   keeps at least one block per family (the one holding the gateway).
//! * Every write is a compare-and-swap on the object's version
//!   ([`store::IpamStore`]); a lost race is retried after re-reading.
//!
//! [`spawn`] starts the owner task that the agent and the CNI API use through
//! [`IpamHandle`]. [`file_store::FileStore`] keeps the objects in a directory
//! shared safely by many agents on one host.
//!
//! Related RFCs: RFC 4632 (CIDR), RFC 4291 (IPv6 addressing).

pub mod allocator;
pub mod backend;
pub mod block;
pub mod claim;
pub mod file_store;
pub mod file_watch;
pub mod store;
mod task;

pub use allocator::{
    AllocationStatus, BlockStatus, BlockView, LocalBlock, NodeIpam, OwnedBlock, PoolStatus,
};
pub use task::{AllocatedAddress, Allocation, IpamHandle, IpamOptions, IpamStatus, spawn};

use ipnet::IpNet;
use petrel_crd::{AllowedUse, IPPool};
use std::collections::BTreeMap;
use std::fmt;
use store::StoreError;

/// Address family of a pool, block or address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    /// The family of a prefix.
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    /// The family of an address.
    pub fn of_addr(addr: &std::net::IpAddr) -> Family {
        if addr.is_ipv4() {
            Family::V4
        } else {
            Family::V6
        }
    }

    /// Length of a host prefix: 32 or 128.
    pub fn host_prefix_len(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        })
    }
}

/// One pool selected for this node (the agent evaluates `nodeSelector`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolConfig {
    /// The IPPool's name.
    pub name: String,
    pub cidr: IpNet,
    /// Prefix length of the pool's blocks.
    pub block_size: u8,
    /// No new addresses from a disabled pool (Calico semantics).
    pub disabled: bool,
    /// Blocks of the pool are not advertised over BGP.
    pub disable_bgp_export: bool,
    pub allowed_uses: Vec<AllowedUse>,
}

impl PoolConfig {
    /// The configuration of a validated IPPool.
    pub fn from_ip_pool(pool: &IPPool) -> PoolConfig {
        PoolConfig {
            name: pool.metadata.name.clone().unwrap_or_default(),
            cidr: pool.spec.cidr,
            block_size: pool.spec.effective_block_size(),
            disabled: pool.spec.disabled,
            disable_bgp_export: pool.spec.disable_bgp_export,
            allowed_uses: pool.spec.effective_allowed_uses(),
        }
    }

    /// Whether pods may get addresses from this pool.
    pub fn for_workloads(&self) -> bool {
        self.allowed_uses.contains(&AllowedUse::Workload)
    }

    pub fn family(&self) -> Family {
        Family::of(&self.cidr)
    }
}

/// The IPAM configuration of one node: the pools selected for it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpamConfig {
    pub node: String,
    pub pools: Vec<PoolConfig>,
}

impl IpamConfig {
    /// The configuration for `node` from every IPPool: the pools whose
    /// `nodeSelector` selects the node's labels (a pool with an unparsable
    /// selector selects nothing; validation reports it).
    pub fn for_node(node: &str, labels: &BTreeMap<String, String>, pools: &[IPPool]) -> Self {
        IpamConfig {
            node: node.to_string(),
            pools: pools
                .iter()
                .filter(|p| p.spec.selects_node(labels).unwrap_or(false))
                .map(PoolConfig::from_ip_pool)
                .collect(),
        }
    }
}

/// Errors of IPAM operations.
#[derive(Debug, thiserror::Error)]
pub enum IpamError {
    /// Every block of the family's pools is owned and this node's are full.
    #[error(
        "{family} pool(s) {pools} exhausted for node {node}: every block is owned by a node and this node's blocks are full; add an IPPool or free addresses"
    )]
    Exhausted {
        family: Family,
        node: String,
        pools: String,
    },
    /// No enabled workload pool selects this node (in any family).
    #[error("no enabled IPPool for pods selects node {node}")]
    NoPool { node: String },
    /// No allocation with this key (`check`).
    #[error(
        "no address is allocated to container {container_id} interface {ifname} on node {node}"
    )]
    NotAllocated {
        node: String,
        container_id: String,
        ifname: String,
    },
    /// A bad request (empty container ID or interface name).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// The store failed.
    #[error("IPAM store error for node {node}: {source}")]
    Store {
        node: String,
        #[source]
        source: StoreError,
    },
    /// Too many lost compare-and-swap races in a row.
    #[error("node {node}: gave up on {what} after {attempts} concurrent changes")]
    Contention {
        node: String,
        what: String,
        attempts: usize,
    },
    /// The owner task has stopped.
    #[error("the IPAM task has stopped")]
    Stopped,
}
