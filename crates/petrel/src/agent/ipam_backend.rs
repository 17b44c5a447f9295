//! The management API's IPAM service backed by the agent's IPAM owner task:
//! the bridge between `api::ipam` (what `petrel-ipam` and the CLI ask) and
//! `ipam::IpamHandle` (the allocator).

use ipnet::IpNet;
use petrel_crd::BlockState;
use petrel_ipam::backend::{
    AllocateArgs, AllocationInfo, AttachmentKey, BlockClaimState, BlockInfo, IpamBackend,
    IpamBackendError, IpamStatusInfo, PodAddress, PoolInfo,
};
use petrel_ipam::{Allocation, AllocationStatus, IpamConfig, IpamError, IpamHandle};
use std::collections::BTreeMap;
use std::net::IpAddr;
use tokio::sync::watch;

/// Attribute keys stored with each allocation.
const ATTR_NETWORK: &str = "network";
const ATTR_NAMESPACE: &str = "pod-namespace";
const ATTR_POD: &str = "pod-name";
const ATTR_NETNS: &str = "netns";

/// [`IpamBackend`] over the IPAM task.
pub struct Backend {
    pub ipam: IpamHandle,
    /// The pools selected for this node (to name an address's pool).
    pub config: watch::Receiver<IpamConfig>,
}

fn map_err(e: IpamError) -> IpamBackendError {
    let text = e.to_string();
    match e {
        IpamError::Exhausted { .. } => IpamBackendError::Exhausted(text),
        IpamError::NoPool { .. } => IpamBackendError::NotReady(text),
        IpamError::Invalid(_) => IpamBackendError::Invalid(text),
        IpamError::Store { .. } | IpamError::Contention { .. } => IpamBackendError::Datastore(text),
        IpamError::NotAllocated { .. } | IpamError::Stopped => IpamBackendError::Internal(text),
    }
}

impl Backend {
    fn pool_of(&self, block: &IpNet) -> String {
        self.config
            .borrow()
            .pools
            .iter()
            .find(|p| p.cidr.contains(block))
            .map(|p| p.name.clone())
            .unwrap_or_default()
    }

    fn addresses(&self, a: &Allocation) -> Vec<PodAddress> {
        a.addresses
            .iter()
            .filter_map(|x| {
                // The pod address with its block's prefix length (the API's
                // contract; petrel-ipam widens it to cover the gateway).
                Some(PodAddress {
                    address: IpNet::new(x.address, x.block.prefix_len()).ok()?,
                    gateway: x.gateway,
                    block: x.block,
                    pool: self.pool_of(&x.block),
                })
            })
            .collect()
    }

    fn info(&self, a: &Allocation, attrs: &BTreeMap<String, String>) -> AllocationInfo {
        AllocationInfo {
            addresses: self.addresses(a),
            ..attachment_info(&a.container_id, &a.ifname, attrs)
        }
    }

    /// Allocation infos from the status rows of released or current
    /// allocations (one row per address), grouped by attachment; `gateways`
    /// are this node's gateway addresses (one per family).
    fn group(&self, rows: &[AllocationStatus], gateways: &[IpAddr]) -> Vec<AllocationInfo> {
        let mut out: BTreeMap<(String, String), AllocationInfo> = BTreeMap::new();
        for r in rows {
            let entry = out
                .entry((r.container_id.clone(), r.ifname.clone()))
                .or_insert_with(|| attachment_info(&r.container_id, &r.ifname, &r.attributes));
            let gateway = gateways
                .iter()
                .find(|g| g.is_ipv4() == r.address.is_ipv4())
                .copied();
            if let (Ok(address), Some(gateway)) =
                (IpNet::new(r.address, r.block.prefix_len()), gateway)
            {
                entry.addresses.push(PodAddress {
                    address,
                    gateway,
                    block: r.block,
                    pool: self.pool_of(&r.block),
                });
            }
        }
        out.into_values().collect()
    }
}

/// An attachment with what the allocation's attributes say of it, no addresses.
fn attachment_info(
    container_id: &str,
    ifname: &str,
    attrs: &BTreeMap<String, String>,
) -> AllocationInfo {
    AllocationInfo {
        attachment: AttachmentKey {
            container_id: container_id.to_string(),
            ifname: ifname.to_string(),
        },
        network: attrs.get(ATTR_NETWORK).cloned().unwrap_or_default(),
        pod_namespace: attrs.get(ATTR_NAMESPACE).cloned(),
        pod_name: attrs.get(ATTR_POD).cloned(),
        netns: attrs.get(ATTR_NETNS).cloned().unwrap_or_default(),
        addresses: vec![],
    }
}

/// This node's gateway addresses: those reserved in its own blocks.
fn node_gateways(s: &petrel_ipam::IpamStatus) -> Vec<IpAddr> {
    s.blocks
        .iter()
        .filter(|b| b.owner == s.node)
        .filter_map(|b| b.gateway)
        .collect()
}

#[tonic::async_trait]
impl IpamBackend for Backend {
    async fn allocate(&self, args: AllocateArgs) -> Result<Vec<PodAddress>, IpamBackendError> {
        let mut attrs = BTreeMap::new();
        attrs.insert(ATTR_NETWORK.to_string(), args.network.clone());
        attrs.insert(ATTR_NETNS.to_string(), args.netns.clone());
        if let Some(ns) = &args.pod_namespace {
            attrs.insert(ATTR_NAMESPACE.to_string(), ns.clone());
        }
        if let Some(pod) = &args.pod_name {
            attrs.insert(ATTR_POD.to_string(), pod.clone());
        }
        let a = self
            .ipam
            .allocate(
                &args.attachment.container_id,
                &args.attachment.ifname,
                attrs,
            )
            .await
            .map_err(map_err)?;
        Ok(self.addresses(&a))
    }

    async fn release(
        &self,
        attachment: AttachmentKey,
        _network: String,
    ) -> Result<Vec<PodAddress>, IpamBackendError> {
        let held = match self
            .ipam
            .check(&attachment.container_id, &attachment.ifname)
            .await
        {
            Ok(a) => self.addresses(&a),
            Err(IpamError::NotAllocated { .. }) => vec![],
            Err(e) => return Err(map_err(e)),
        };
        self.ipam
            .release(&attachment.container_id, &attachment.ifname)
            .await
            .map_err(map_err)?;
        Ok(held)
    }

    async fn check(
        &self,
        attachment: AttachmentKey,
        _network: String,
    ) -> Result<Option<AllocationInfo>, IpamBackendError> {
        match self
            .ipam
            .check(&attachment.container_id, &attachment.ifname)
            .await
        {
            Ok(a) => {
                let status = self.ipam.status().await.map_err(map_err)?;
                let attrs = status
                    .allocations
                    .iter()
                    .find(|r| r.container_id == a.container_id && r.ifname == a.ifname)
                    .map(|r| r.attributes.clone())
                    .unwrap_or_default();
                Ok(Some(self.info(&a, &attrs)))
            }
            Err(IpamError::NotAllocated { .. }) => Ok(None),
            Err(e) => Err(map_err(e)),
        }
    }

    async fn gc(
        &self,
        network: String,
        keep: Vec<AttachmentKey>,
    ) -> Result<Vec<AllocationInfo>, IpamBackendError> {
        // Allocations of other networks are not this GC's to release.
        let status = self.ipam.status().await.map_err(map_err)?;
        let mut keep: Vec<(String, String)> = keep
            .into_iter()
            .map(|k| (k.container_id, k.ifname))
            .collect();
        for r in &status.allocations {
            let net = r.attributes.get(ATTR_NETWORK).map(String::as_str);
            if net.is_some_and(|n| !n.is_empty() && n != network) {
                keep.push((r.container_id.clone(), r.ifname.clone()));
            }
        }
        let gateways = node_gateways(&status);
        let released = self.ipam.gc(keep).await.map_err(map_err)?;
        Ok(self.group(&released, &gateways))
    }

    async fn status(&self) -> Result<IpamStatusInfo, IpamBackendError> {
        let s = self.ipam.status().await.map_err(map_err)?;
        let selected: Vec<String> = self
            .config
            .borrow()
            .pools
            .iter()
            .map(|p| p.name.clone())
            .collect();
        let pools = s
            .pools
            .iter()
            .map(|p| {
                let (used, free) = s
                    .blocks
                    .iter()
                    .filter(|b| b.pool == p.name && b.owner == s.node)
                    .fold((0u128, 0u128), |(u, f), b| (u + b.used, f + b.free));
                PoolInfo {
                    name: p.name.clone(),
                    cidr: p.cidr,
                    block_size: p.block_size,
                    disabled: p.disabled,
                    export: p.export,
                    selected: selected.contains(&p.name),
                    blocks_total: u64::try_from(p.blocks_total).unwrap_or(u64::MAX),
                    blocks_claimed: p.blocks_claimed as u64,
                    addresses_used: u64::try_from(used).unwrap_or(u64::MAX),
                    addresses_free: u64::try_from(free).unwrap_or(u64::MAX),
                }
            })
            .collect();
        let blocks = s
            .blocks
            .iter()
            .map(|b| BlockInfo {
                cidr: b.cidr,
                pool: b.pool.clone(),
                owner_node: b.owner.clone(),
                state: match b.state {
                    BlockState::Pending => BlockClaimState::Pending,
                    BlockState::Confirmed => BlockClaimState::Confirmed,
                },
                used: u64::try_from(b.used).unwrap_or(u64::MAX),
                free: u64::try_from(b.free).unwrap_or(u64::MAX),
                export: b.export,
                gateway: b.gateway,
            })
            .collect();
        let allocations = self.group(&s.allocations, &node_gateways(&s));
        let ready = !selected.is_empty();
        Ok(IpamStatusInfo {
            node: s.node.clone(),
            ready,
            not_ready_reason: (!ready)
                .then(|| format!("no enabled IPPool selects node {}", s.node)),
            pools,
            blocks,
            allocations,
            last_error: s.last_error.clone(),
        })
    }
}
