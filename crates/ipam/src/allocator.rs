//! The sans-IO allocator of one node: what it knows of the store (every
//! block, its own affinities) and the decisions taken from it. No I/O and no
//! clock: the owner task reads and writes the store, feeds the results in and
//! passes the current time as an argument.
//!
//! Decisions are plans (a block spec to write with the version it was derived
//! from); the task commits them with compare-and-swap and, on a lost race,
//! re-reads and plans again. Blocks are RFC 4632 prefixes; the model is
//! Calico's block affinity model with strict affinity.

use super::block;
use super::store::{StoredAffinity, StoredBlock};
use super::{Family, IpamError, PoolConfig};
use ipnet::IpNet;
use petrel_crd::{BlockState, IpamBlockSpec, affinity_for};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// This node's confirmed block, for the speaker and the dataplane.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct LocalBlock {
    pub cidr: IpNet,
    /// Advertise over BGP (false when the pool has `disableBGPExport`).
    pub export: bool,
}

/// A block of any node with its owner, for the import policy.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OwnedBlock {
    pub cidr: IpNet,
    pub owner: String,
}

/// The blocks as the routing side needs them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BlockView {
    /// This node's confirmed blocks, sorted.
    pub local: Vec<LocalBlock>,
    /// Every node's blocks (this node's too), sorted by CIDR.
    pub all: Vec<OwnedBlock>,
    /// The store has been read once (this node's blocks recovered, a
    /// missing block claimed or tried): `local` is the node's real set, not
    /// the empty start.
    pub synced: bool,
}

/// One block in the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockStatus {
    pub name: String,
    pub cidr: IpNet,
    pub owner: String,
    pub state: BlockState,
    /// Pool containing the block (empty if no configured pool does).
    pub pool: String,
    pub used: u128,
    pub free: u128,
    pub reserved: usize,
    pub export: bool,
    /// The pods' gateway reserved in this block (the node's first block of
    /// each family has one).
    pub gateway: Option<IpAddr>,
}

/// One allocation of this node in the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllocationStatus {
    pub container_id: String,
    pub ifname: String,
    pub address: IpAddr,
    pub block: IpNet,
    pub attributes: BTreeMap<String, String>,
}

/// One pool in the status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolStatus {
    pub name: String,
    pub cidr: IpNet,
    pub block_size: u8,
    pub disabled: bool,
    pub export: bool,
    /// Blocks the pool holds (saturating).
    pub blocks_total: u128,
    /// Blocks claimed by any node.
    pub blocks_claimed: usize,
    /// Blocks claimed by this node.
    pub blocks_local: usize,
}

/// What an allocation in one family needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AssignPlan {
    /// The key already has this address.
    Existing { block: IpNet, address: IpAddr },
    /// Write `block` (its spec now holds the allocation) with CAS on its version.
    Write { block: StoredBlock, address: IpAddr },
    /// No own block has room: claim one first.
    NeedBlock,
}

/// A block to claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimTarget {
    pub pool: String,
    pub cidr: IpNet,
}

/// The allocator state of one node.
#[derive(Debug, Clone)]
pub struct NodeIpam {
    node: String,
    pools: Vec<PoolConfig>,
    blocks: BTreeMap<String, StoredBlock>,
    affinities: BTreeMap<String, StoredAffinity>,
    empty_since: HashMap<String, Instant>,
    /// The store's revision at the last full re-read
    /// ([`crate::store::IpamStore::revision`]).
    pub store_revision: Option<String>,
}

impl NodeIpam {
    pub fn new(node: impl Into<String>) -> Self {
        NodeIpam {
            node: node.into(),
            pools: Vec::new(),
            blocks: BTreeMap::new(),
            affinities: BTreeMap::new(),
            empty_since: HashMap::new(),
            store_revision: None,
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn pools(&self) -> &[PoolConfig] {
        &self.pools
    }

    pub fn set_pools(&mut self, pools: Vec<PoolConfig>) {
        self.pools = pools;
    }

    /// Replaces the known blocks with a fresh list of the store.
    pub fn replace_blocks(&mut self, blocks: Vec<StoredBlock>) {
        self.blocks = blocks.into_iter().map(|b| (b.name.clone(), b)).collect();
    }

    /// Replaces the known affinities (only this node's are kept).
    pub fn replace_affinities(&mut self, affinities: Vec<StoredAffinity>) {
        self.affinities = affinities
            .into_iter()
            .filter(|a| a.spec.node == self.node)
            .map(|a| (a.name.clone(), a))
            .collect();
    }

    pub fn upsert_block(&mut self, b: StoredBlock) {
        self.blocks.insert(b.name.clone(), b);
    }

    pub fn remove_block(&mut self, name: &str) {
        self.blocks.remove(name);
        self.empty_since.remove(name);
    }

    pub fn upsert_affinity(&mut self, a: StoredAffinity) {
        if a.spec.node == self.node {
            self.affinities.insert(a.name.clone(), a);
        }
    }

    pub fn remove_affinity(&mut self, name: &str) {
        self.affinities.remove(name);
    }

    pub fn block(&self, name: &str) -> Option<&StoredBlock> {
        self.blocks.get(name)
    }

    pub fn blocks(&self) -> impl Iterator<Item = &StoredBlock> {
        self.blocks.values()
    }

    /// This node's affinities.
    pub fn affinities(&self) -> impl Iterator<Item = &StoredAffinity> {
        self.affinities.values()
    }

    fn is_own(&self, b: &StoredBlock) -> bool {
        b.spec.owner() == Some(self.node.as_str())
    }

    /// This node's blocks (any state).
    pub fn own_blocks(&self) -> impl Iterator<Item = &StoredBlock> {
        self.blocks.values().filter(|b| self.is_own(b))
    }

    /// The configured pool containing `cidr`.
    pub fn pool_of(&self, cidr: &IpNet) -> Option<&PoolConfig> {
        self.pools
            .iter()
            .find(|p| p.cidr.contains(&cidr.network()) && p.cidr.prefix_len() <= cidr.prefix_len())
    }

    fn usable_pool(&self, cidr: &IpNet) -> bool {
        self.pool_of(cidr)
            .is_some_and(|p| !p.disabled && p.for_workloads())
    }

    /// Families with at least one enabled pool for pods.
    pub fn workload_families(&self) -> Vec<Family> {
        let mut f: Vec<Family> = self
            .pools
            .iter()
            .filter(|p| !p.disabled && p.for_workloads())
            .map(PoolConfig::family)
            .collect();
        f.sort();
        f.dedup();
        f
    }

    /// The gateway of `family` and the block holding it (the lowest such block
    /// if, unusually, several do).
    pub fn gateway(&self, family: Family) -> Option<(IpAddr, &StoredBlock)> {
        self.own_blocks()
            .filter(|b| Family::of(&b.spec.cidr) == family)
            .find_map(|b| b.spec.gateway().map(|g| (g, b)))
    }

    /// The addresses allocated to `key` (one per family normally).
    pub fn find(&self, key: &str) -> Vec<(IpNet, IpAddr)> {
        self.own_blocks()
            .filter_map(|b| block::find(&b.spec, key).map(|a| (b.spec.cidr, a)))
            .collect()
    }

    /// Families in which this node has no usable confirmed block.
    pub fn families_without_block(&self) -> Vec<Family> {
        self.workload_families()
            .into_iter()
            .filter(|f| {
                !self.own_blocks().any(|b| {
                    b.spec.state == BlockState::Confirmed
                        && Family::of(&b.spec.cidr) == *f
                        && self.usable_pool(&b.spec.cidr)
                })
            })
            .collect()
    }

    /// Plans the allocation of one address of `family` to `key`. The gateway
    /// of the family is reserved in the same write if the node has none.
    pub fn plan_assign(
        &self,
        family: Family,
        key: &str,
        attributes: &BTreeMap<String, String>,
    ) -> AssignPlan {
        if let Some((cidr, address)) = self
            .find(key)
            .into_iter()
            .find(|(c, _)| Family::of(c) == family)
        {
            return AssignPlan::Existing {
                block: cidr,
                address,
            };
        }
        let need_gateway = self.gateway(family).is_none();
        let mut candidates: Vec<&StoredBlock> = self
            .own_blocks()
            .filter(|b| {
                b.spec.state == BlockState::Confirmed
                    && Family::of(&b.spec.cidr) == family
                    && self.usable_pool(&b.spec.cidr)
            })
            .collect();
        // Fill the gateway block first, then the others in address order.
        candidates.sort_by_key(|b| (b.spec.gateway().is_none(), b.spec.cidr));
        for b in candidates {
            let mut spec = b.spec.clone();
            if need_gateway && block::reserve_gateway(&mut spec).is_none() {
                continue;
            }
            if let Some(address) = block::assign(&mut spec, key, attributes) {
                return AssignPlan::Write {
                    block: StoredBlock {
                        name: b.name.clone(),
                        version: b.version.clone(),
                        spec,
                    },
                    address,
                };
            }
        }
        AssignPlan::NeedBlock
    }

    /// The next block to claim for `family`: the first free block, in this
    /// node's search order, of the first enabled pool that has one.
    pub fn plan_claim(&self, family: Family) -> Result<ClaimTarget, IpamError> {
        let taken: HashSet<IpNet> = self.blocks.values().map(|b| b.spec.cidr).collect();
        let pools: Vec<&PoolConfig> = self
            .pools
            .iter()
            .filter(|p| p.family() == family && !p.disabled && p.for_workloads())
            .collect();
        if pools.is_empty() {
            return Err(IpamError::NoPool {
                node: self.node.clone(),
            });
        }
        for p in &pools {
            if let Some(cidr) = block::first_free_block(&p.cidr, p.block_size, &self.node, &taken) {
                return Ok(ClaimTarget {
                    pool: p.name.clone(),
                    cidr,
                });
            }
        }
        Err(IpamError::Exhausted {
            family,
            node: self.node.clone(),
            pools: pools
                .iter()
                .map(|p| format!("{} ({})", p.name, p.cidr))
                .collect::<Vec<_>>()
                .join(", "),
        })
    }

    /// The spec of a block this node creates when claiming `cidr`; it
    /// reserves the family's gateway if the node has none yet.
    pub fn new_block_spec(&self, cidr: IpNet) -> IpamBlockSpec {
        let mut spec = IpamBlockSpec {
            cidr,
            affinity: affinity_for(&self.node),
            state: BlockState::Pending,
            allocations: BTreeMap::new(),
            reserved: Vec::new(),
        };
        if self.gateway(Family::of(&cidr)).is_none() {
            block::reserve_gateway(&mut spec);
        }
        spec
    }

    /// Writes that release `key`'s addresses.
    pub fn plan_release(&self, key: &str) -> Vec<StoredBlock> {
        self.own_blocks()
            .filter(|b| b.spec.allocations.contains_key(key))
            .map(|b| {
                let mut spec = b.spec.clone();
                block::release(&mut spec, key);
                StoredBlock {
                    name: b.name.clone(),
                    version: b.version.clone(),
                    spec,
                }
            })
            .collect()
    }

    /// Writes that release every allocation whose key is not in `keep`.
    pub fn plan_gc(&self, keep: &HashSet<String>) -> Vec<StoredBlock> {
        self.own_blocks()
            .filter(|b| b.spec.allocations.keys().any(|k| !keep.contains(k)))
            .map(|b| {
                let mut spec = b.spec.clone();
                spec.allocations.retain(|k, _| keep.contains(k));
                StoredBlock {
                    name: b.name.clone(),
                    version: b.version.clone(),
                    spec,
                }
            })
            .collect()
    }

    /// Notes which of this node's blocks are empty, and since when.
    pub fn observe_empty(&mut self, now: Instant) {
        let mut seen = HashSet::new();
        for b in self.blocks.values() {
            if b.spec.owner() == Some(self.node.as_str())
                && b.spec.state == BlockState::Confirmed
                && b.spec.allocations.is_empty()
            {
                seen.insert(b.name.clone());
                self.empty_since.entry(b.name.clone()).or_insert(now);
            }
        }
        self.empty_since.retain(|k, _| seen.contains(k));
    }

    /// This node's blocks to release now: empty for at least `grace`, never
    /// the last usable block of a family, and never the gateway block while
    /// its pool is configured or the family still has allocations.
    pub fn releasable(&self, now: Instant, grace: Duration) -> Vec<StoredBlock> {
        let mut out = Vec::new();
        let mut usable_left: HashMap<Family, usize> = HashMap::new();
        for b in self.own_blocks() {
            if b.spec.state == BlockState::Confirmed && self.usable_pool(&b.spec.cidr) {
                *usable_left.entry(Family::of(&b.spec.cidr)).or_default() += 1;
            }
        }
        let mut candidates: Vec<&StoredBlock> = self
            .own_blocks()
            .filter(|b| {
                self.empty_since
                    .get(&b.name)
                    .is_some_and(|since| now.saturating_duration_since(*since) >= grace)
                    && b.spec.allocations.is_empty()
            })
            .collect();
        // Release blocks of removed pools first, then the highest addresses.
        candidates.sort_by_key(|b| {
            (
                self.pool_of(&b.spec.cidr).is_some(),
                std::cmp::Reverse(b.spec.cidr),
            )
        });
        for b in candidates {
            let family = Family::of(&b.spec.cidr);
            let usable = self.usable_pool(&b.spec.cidr);
            if b.spec.gateway().is_some() {
                let family_in_use = self
                    .own_blocks()
                    .any(|o| Family::of(&o.spec.cidr) == family && !o.spec.allocations.is_empty());
                if self.pool_of(&b.spec.cidr).is_some() || family_in_use {
                    continue;
                }
            }
            if usable {
                let left = usable_left.entry(family).or_default();
                if *left <= 1 {
                    continue;
                }
                *left -= 1;
            }
            out.push(b.clone());
        }
        out
    }

    /// The blocks for the routing side.
    pub fn view(&self) -> BlockView {
        let mut local: Vec<LocalBlock> = self
            .own_blocks()
            .filter(|b| b.spec.state == BlockState::Confirmed)
            .map(|b| LocalBlock {
                cidr: b.spec.cidr,
                export: self
                    .pool_of(&b.spec.cidr)
                    .is_none_or(|p| !p.disable_bgp_export),
            })
            .collect();
        local.sort();
        let mut all: Vec<OwnedBlock> = self
            .blocks
            .values()
            .filter_map(|b| {
                b.spec.owner().map(|o| OwnedBlock {
                    cidr: b.spec.cidr,
                    owner: o.to_string(),
                })
            })
            .collect();
        all.sort();
        BlockView {
            local,
            all,
            synced: false,
        }
    }

    /// Every known block, for the status.
    pub fn block_status(&self) -> Vec<BlockStatus> {
        let mut v: Vec<BlockStatus> = self
            .blocks
            .values()
            .map(|b| {
                let pool = self.pool_of(&b.spec.cidr);
                BlockStatus {
                    name: b.name.clone(),
                    cidr: b.spec.cidr,
                    owner: b.spec.owner().unwrap_or_default().to_string(),
                    state: b.spec.state,
                    pool: pool.map(|p| p.name.clone()).unwrap_or_default(),
                    used: b.spec.allocations.len() as u128,
                    free: block::free_count(&b.spec),
                    reserved: b.spec.reserved.len(),
                    export: pool.is_none_or(|p| !p.disable_bgp_export),
                    gateway: b.spec.gateway(),
                }
            })
            .collect();
        v.sort_by_key(|b| b.cidr);
        v
    }

    /// This node's allocations, for the status.
    pub fn allocation_status(&self) -> Vec<AllocationStatus> {
        let mut v = Vec::new();
        for b in self.own_blocks() {
            for (key, a) in &b.spec.allocations {
                let (cid, ifname) = key.rsplit_once('/').unwrap_or((key.as_str(), ""));
                v.push(AllocationStatus {
                    container_id: cid.to_string(),
                    ifname: ifname.to_string(),
                    address: a.address,
                    block: b.spec.cidr,
                    attributes: a.attributes.clone(),
                });
            }
        }
        v.sort_by_key(|a| a.address);
        v
    }

    /// Every configured pool, for the status.
    pub fn pool_status(&self) -> Vec<PoolStatus> {
        self.pools
            .iter()
            .map(|p| {
                let inside = |b: &&StoredBlock| p.cidr.contains(&b.spec.cidr.network());
                PoolStatus {
                    name: p.name.clone(),
                    cidr: p.cidr,
                    block_size: p.block_size,
                    disabled: p.disabled,
                    export: !p.disable_bgp_export,
                    blocks_total: block::block_count(&p.cidr, p.block_size),
                    blocks_claimed: self.blocks.values().filter(inside).count(),
                    blocks_local: self.own_blocks().filter(inside).count(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
#[path = "allocator_tests.rs"]
mod tests;
