//! The block claim and release protocols over an [`IpamStore`], with
//! compare-and-swap and retries on lost races (Calico's block affinity model,
//! strict affinity; blocks are RFC 4632 prefixes).
//!
//! Claim of block `B` by node `N`:
//! 1. create the `BlockAffinity` `N-B` in state `pending` (other nodes ignore
//!    pending affinities: several nodes may race for one block);
//! 2. create the `IPAMBlock` `B` with `affinity: host:N`, state `pending`.
//!    Creation is atomic, so exactly one node wins; a loser deletes its
//!    pending affinity and tries its next block;
//! 3. update the affinity to `confirmed`, then the block to `confirmed`.
//!
//! Release of an empty block: affinity to `pendingDeletion`, delete the block
//! (conditional on the version in which it was seen empty), delete the
//! affinity.
//!
//! A crash at any step leaves objects that [`recover`] completes or removes
//! when the node's agent starts again; the block object alone decides
//! ownership, so no block is ever owned by two nodes.

use super::allocator::NodeIpam;
use super::store::{IpamStore, StoreError, StoredAffinity, StoredBlock};
use super::{Family, IpamError};
use petrel_crd::{AffinityState, BlockAffinitySpec, BlockState, affinity_name, block_name};
use tracing::{Instrument, debug, info, warn};

/// Most lost races tolerated in one operation before giving up.
pub const MAX_ATTEMPTS: usize = 100;

fn store_err(ipam: &NodeIpam, source: StoreError) -> IpamError {
    IpamError::Store {
        node: ipam.node().to_string(),
        source,
    }
}

/// Re-reads every block and this node's affinities, unless the store's
/// revision says nothing changed since the last re-read.
pub async fn refresh(store: &dyn IpamStore, ipam: &mut NodeIpam) -> Result<(), IpamError> {
    let revision = store.revision().await.map_err(|e| store_err(ipam, e))?;
    if revision.is_some() && revision == ipam.store_revision {
        return Ok(());
    }
    let blocks = store.list_blocks().await.map_err(|e| store_err(ipam, e))?;
    let affinities = store
        .list_affinities()
        .await
        .map_err(|e| store_err(ipam, e))?;
    ipam.replace_blocks(blocks);
    ipam.replace_affinities(affinities);
    ipam.store_revision = revision;
    Ok(())
}

/// Re-reads one block into `ipam`; returns it if it exists.
pub async fn refresh_block(
    store: &dyn IpamStore,
    ipam: &mut NodeIpam,
    name: &str,
) -> Result<Option<StoredBlock>, IpamError> {
    match store
        .get_block(name)
        .await
        .map_err(|e| store_err(ipam, e))?
    {
        Some(b) => {
            ipam.upsert_block(b.clone());
            Ok(Some(b))
        }
        None => {
            ipam.remove_block(name);
            Ok(None)
        }
    }
}

/// Claims one block of `family` for this node and returns it confirmed.
/// Fails with [`IpamError::Exhausted`] when every block of the family's
/// pools is owned.
pub async fn claim_block(
    store: &dyn IpamStore,
    ipam: &mut NodeIpam,
    family: Family,
) -> Result<StoredBlock, IpamError> {
    info!(node = %ipam.node(), %family, "claiming a block");
    for _ in 0..MAX_ATTEMPTS {
        let target = ipam.plan_claim(family)?;
        let span = tracing::info_span!("claim", node = %ipam.node(), block = %target.cidr);
        if let Some(b) = try_claim(store, ipam, target.cidr).instrument(span).await? {
            info!(node = %ipam.node(), block = %b.spec.cidr, pool = %target.pool, "claimed block");
            return Ok(b);
        }
        debug!(node = %ipam.node(), block = %target.cidr, "lost the race for the block; re-reading");
        refresh(store, ipam).await?;
    }
    Err(IpamError::Contention {
        node: ipam.node().to_string(),
        what: format!("claiming an {family} block"),
        attempts: MAX_ATTEMPTS,
    })
}

/// One claim attempt of `cidr`: `Ok(None)` when another node owns it.
async fn try_claim(
    store: &dyn IpamStore,
    ipam: &mut NodeIpam,
    cidr: ipnet::IpNet,
) -> Result<Option<StoredBlock>, IpamError> {
    let node = ipam.node().to_string();
    let aname = affinity_name(&node, &cidr);
    let bname = block_name(&cidr);
    let pending = BlockAffinitySpec {
        node: node.clone(),
        cidr,
        state: AffinityState::Pending,
    };
    let affinity = match store.create_affinity(&aname, &pending).await {
        Ok(a) => a,
        Err(StoreError::AlreadyExists { .. }) => {
            match store
                .get_affinity(&aname)
                .await
                .map_err(|e| store_err(ipam, e))?
            {
                Some(a) => a,
                None => return Ok(None),
            }
        }
        Err(e) => return Err(store_err(ipam, e)),
    };
    ipam.upsert_affinity(affinity.clone());

    let spec = ipam.new_block_spec(cidr);
    let block = match store.create_block(&bname, &spec).await {
        Ok(b) => b,
        Err(StoreError::AlreadyExists { .. }) => match refresh_block(store, ipam, &bname).await? {
            Some(b) if b.spec.owner() == Some(node.as_str()) => b,
            Some(b) => {
                debug!(node = %node, block = %cidr, owner = ?b.spec.owner(), "block is owned by another node");
                drop_affinity(store, ipam, affinity).await?;
                return Ok(None);
            }
            None => return Ok(None),
        },
        // The pending affinity stays; `recover` removes it.
        Err(e) => return Err(store_err(ipam, e)),
    };
    ipam.upsert_block(block.clone());
    confirm(store, ipam, affinity, block).await.map(Some)
}

/// Deletes one of this node's affinities (retrying lost races).
async fn drop_affinity(
    store: &dyn IpamStore,
    ipam: &mut NodeIpam,
    mut affinity: StoredAffinity,
) -> Result<(), IpamError> {
    for _ in 0..MAX_ATTEMPTS {
        match store
            .delete_affinity(&affinity.name, &affinity.version)
            .await
        {
            Ok(()) | Err(StoreError::NotFound { .. }) => {
                ipam.remove_affinity(&affinity.name);
                return Ok(());
            }
            Err(StoreError::Conflict { .. }) => {
                match store
                    .get_affinity(&affinity.name)
                    .await
                    .map_err(|e| store_err(ipam, e))?
                {
                    Some(a) => affinity = a,
                    None => {
                        ipam.remove_affinity(&affinity.name);
                        return Ok(());
                    }
                }
            }
            Err(e) => return Err(store_err(ipam, e)),
        }
    }
    Err(IpamError::Contention {
        node: ipam.node().to_string(),
        what: format!("deleting affinity {}", affinity.name),
        attempts: MAX_ATTEMPTS,
    })
}

/// Sets this node's affinity to `state`, creating it if missing.
async fn set_affinity(
    store: &dyn IpamStore,
    ipam: &mut NodeIpam,
    cidr: ipnet::IpNet,
    state: AffinityState,
) -> Result<StoredAffinity, IpamError> {
    let node = ipam.node().to_string();
    let name = affinity_name(&node, &cidr);
    let spec = BlockAffinitySpec { node, cidr, state };
    for _ in 0..MAX_ATTEMPTS {
        let current = store
            .get_affinity(&name)
            .await
            .map_err(|e| store_err(ipam, e))?;
        let result = match &current {
            Some(a) if a.spec == spec => Ok(a.clone()),
            Some(a) => store.update_affinity(&name, &spec, &a.version).await,
            None => store.create_affinity(&name, &spec).await,
        };
        match result {
            Ok(a) => {
                ipam.upsert_affinity(a.clone());
                return Ok(a);
            }
            Err(e) if e.is_race() => continue,
            Err(e) => return Err(store_err(ipam, e)),
        }
    }
    Err(IpamError::Contention {
        node: ipam.node().to_string(),
        what: format!("updating affinity {name}"),
        attempts: MAX_ATTEMPTS,
    })
}

/// Confirms the affinity, then the block (this node owns `block`).
async fn confirm(
    store: &dyn IpamStore,
    ipam: &mut NodeIpam,
    affinity: StoredAffinity,
    mut block: StoredBlock,
) -> Result<StoredBlock, IpamError> {
    if affinity.spec.state != AffinityState::Confirmed {
        set_affinity(store, ipam, block.spec.cidr, AffinityState::Confirmed).await?;
    }
    for _ in 0..MAX_ATTEMPTS {
        if block.spec.state == BlockState::Confirmed {
            return Ok(block);
        }
        let mut spec = block.spec.clone();
        spec.state = BlockState::Confirmed;
        match store.update_block(&block.name, &spec, &block.version).await {
            Ok(b) => {
                ipam.upsert_block(b.clone());
                return Ok(b);
            }
            Err(e) if e.is_race() => match refresh_block(store, ipam, &block.name).await? {
                Some(b) if b.spec.owner() == Some(ipam.node()) => block = b,
                _ => {
                    return Err(IpamError::Store {
                        node: ipam.node().to_string(),
                        source: e,
                    });
                }
            },
            Err(e) => return Err(store_err(ipam, e)),
        }
    }
    Err(IpamError::Contention {
        node: ipam.node().to_string(),
        what: format!("confirming block {}", block.name),
        attempts: MAX_ATTEMPTS,
    })
}

/// Completes or undoes what a crashed agent of this node left behind:
/// pending affinities and blocks, half-released blocks, affinities without a
/// block, and blocks of this node without an affinity.
pub async fn recover(store: &dyn IpamStore, ipam: &mut NodeIpam) -> Result<(), IpamError> {
    recover_with(store, ipam, true).await
}

/// [`recover`], re-reading the store first only if `reread` (the owner task
/// skips it when the store's change events keep its view current).
pub async fn recover_with(
    store: &dyn IpamStore,
    ipam: &mut NodeIpam,
    reread: bool,
) -> Result<(), IpamError> {
    if reread {
        refresh(store, ipam).await?;
    }
    let node = ipam.node().to_string();
    let affinities: Vec<StoredAffinity> = ipam.affinities().cloned().collect();
    for a in affinities {
        let bname = block_name(&a.spec.cidr);
        let block = ipam.block(&bname).cloned();
        match block {
            Some(b) if b.spec.owner() == Some(node.as_str()) => {
                if a.spec.state == AffinityState::PendingDeletion && b.spec.allocations.is_empty() {
                    info!(node = %node, block = %b.spec.cidr, "finishing an interrupted release");
                    match store.delete_block(&b.name, &b.version).await {
                        Ok(()) | Err(StoreError::NotFound { .. }) => {
                            ipam.remove_block(&b.name);
                            drop_affinity(store, ipam, a).await?;
                        }
                        Err(e) if e.is_race() => refresh(store, ipam).await?,
                        Err(e) => return Err(store_err(ipam, e)),
                    }
                } else if a.spec.state != AffinityState::Confirmed
                    || b.spec.state != BlockState::Confirmed
                {
                    info!(node = %node, block = %b.spec.cidr, "finishing an interrupted claim");
                    confirm(store, ipam, a, b).await?;
                }
            }
            _ => {
                info!(node = %node, block = %a.spec.cidr, state = %a.spec.state, "removing an affinity without a block of this node");
                drop_affinity(store, ipam, a).await?;
            }
        }
    }
    // Blocks of this node whose affinity is missing or not yet confirmed.
    let own: Vec<StoredBlock> = ipam.own_blocks().cloned().collect();
    for b in own {
        let aname = affinity_name(&node, &b.spec.cidr);
        let confirmed = ipam
            .affinities()
            .any(|a| a.name == aname && a.spec.state == AffinityState::Confirmed);
        if !confirmed || b.spec.state != BlockState::Confirmed {
            warn!(node = %node, block = %b.spec.cidr, "repairing the affinity of a block of this node");
            let a = set_affinity(store, ipam, b.spec.cidr, AffinityState::Confirmed).await?;
            confirm(store, ipam, a, b).await?;
        }
    }
    Ok(())
}

/// Releases one of this node's empty blocks. Returns false (and changes
/// nothing) if the block changed meanwhile, e.g. got an allocation.
pub async fn release_block(
    store: &dyn IpamStore,
    ipam: &mut NodeIpam,
    block: &StoredBlock,
) -> Result<bool, IpamError> {
    let node = ipam.node().to_string();
    if block.spec.owner() != Some(node.as_str()) || !block.spec.allocations.is_empty() {
        return Ok(false);
    }
    let affinity =
        set_affinity(store, ipam, block.spec.cidr, AffinityState::PendingDeletion).await?;
    match store.delete_block(&block.name, &block.version).await {
        Ok(()) | Err(StoreError::NotFound { .. }) => {
            ipam.remove_block(&block.name);
            drop_affinity(store, ipam, affinity).await?;
            info!(node = %node, block = %block.spec.cidr, "released empty block");
            Ok(true)
        }
        Err(StoreError::Conflict { .. }) => {
            // Changed meanwhile: keep it.
            set_affinity(store, ipam, block.spec.cidr, AffinityState::Confirmed).await?;
            refresh_block(store, ipam, &block.name).await?;
            Ok(false)
        }
        Err(e) => Err(store_err(ipam, e)),
    }
}
