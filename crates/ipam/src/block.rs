//! Pure operations on one block (RFC 4632 prefix) and the block search order
//! of a pool: address arithmetic, lowest-free allocation, the gateway
//! reservation, and the node-seeded walk over a pool's blocks (as in Calico,
//! competing nodes start their search at different offsets).

use super::Family;
use ipnet::IpNet;
pub use petrel_crd::stable_hash;
use petrel_crd::{BlockAllocation, IpamBlockSpec, RESERVED_GATEWAY, ReservedAddress};
use std::collections::{BTreeMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// Number of addresses of `net` (saturating at `u128::MAX` for `::/0`).
pub fn size(net: &IpNet) -> u128 {
    let host_bits = u32::from(net.max_prefix_len() - net.prefix_len());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

/// The address at `offset` from the start of `net`, if inside it.
pub fn addr_at(net: &IpNet, offset: u128) -> Option<IpAddr> {
    if offset >= size(net) {
        return None;
    }
    Some(match net {
        IpNet::V4(n) => IpAddr::V4(Ipv4Addr::from(
            u32::from(n.network()).wrapping_add(u32::try_from(offset).ok()?),
        )),
        IpNet::V6(n) => IpAddr::V6(Ipv6Addr::from(u128::from(n.network()).wrapping_add(offset))),
    })
}

/// The offset of `addr` inside `net`, if inside it.
pub fn offset_of(net: &IpNet, addr: IpAddr) -> Option<u128> {
    if !net.contains(&addr) {
        return None;
    }
    Some(match (net, addr) {
        (IpNet::V4(n), IpAddr::V4(a)) => u128::from(u32::from(a) - u32::from(n.network())),
        (IpNet::V6(n), IpAddr::V6(a)) => u128::from(a) - u128::from(n.network()),
        _ => return None,
    })
}

/// The address a new block reserves as the gateway: its first host address
/// (offset 1), or its only address for a one-address block.
pub fn gateway_candidate(net: &IpNet) -> IpAddr {
    addr_at(net, 1)
        .or_else(|| addr_at(net, 0))
        .unwrap_or_else(|| net.network())
}

/// Addresses in use: allocated or reserved.
fn used(spec: &IpamBlockSpec) -> HashSet<IpAddr> {
    spec.allocations
        .values()
        .map(|a| a.address)
        .chain(spec.reserved.iter().map(|r| r.address))
        .collect()
}

/// Number of addresses neither allocated nor reserved.
pub fn free_count(spec: &IpamBlockSpec) -> u128 {
    size(&spec.cidr).saturating_sub(used(spec).len() as u128)
}

/// The lowest address neither allocated nor reserved.
pub fn lowest_free(spec: &IpamBlockSpec) -> Option<IpAddr> {
    let used = used(spec);
    let n = size(&spec.cidr);
    // A block has at most 4096 addresses (blockSize >= 20 / 116); `used` is
    // smaller than the block, so the scan ends within used.len() + 1 steps.
    (0..n)
        .map_while(|i| addr_at(&spec.cidr, i))
        .find(|a| !used.contains(a))
}

/// The address allocated to `key`, if any.
pub fn find(spec: &IpamBlockSpec, key: &str) -> Option<IpAddr> {
    spec.allocations.get(key).map(|a| a.address)
}

/// Allocates the lowest free address to `key` (or returns the one it has).
pub fn assign(
    spec: &mut IpamBlockSpec,
    key: &str,
    attributes: &BTreeMap<String, String>,
) -> Option<IpAddr> {
    if let Some(a) = find(spec, key) {
        return Some(a);
    }
    let address = lowest_free(spec)?;
    spec.allocations.insert(
        key.to_string(),
        BlockAllocation {
            address,
            attributes: attributes.clone(),
        },
    );
    Some(address)
}

/// Releases `key`'s address; returns it if there was one.
pub fn release(spec: &mut IpamBlockSpec, key: &str) -> Option<IpAddr> {
    spec.allocations.remove(key).map(|a| a.address)
}

/// Reserves the gateway in `spec` (the first host address, or the lowest free
/// one if that is taken). Returns the gateway, or `None` if the block is full.
pub fn reserve_gateway(spec: &mut IpamBlockSpec) -> Option<IpAddr> {
    if let Some(gw) = spec.gateway() {
        return Some(gw);
    }
    let preferred = gateway_candidate(&spec.cidr);
    let used = used(spec);
    let address = if used.contains(&preferred) {
        lowest_free(spec)?
    } else {
        preferred
    };
    spec.reserved.push(ReservedAddress {
        address,
        reason: RESERVED_GATEWAY.to_string(),
    });
    Some(address)
}

/// Number of blocks of size `block_size` in `pool` (saturating).
pub fn block_count(pool: &IpNet, block_size: u8) -> u128 {
    let bits = u32::from(block_size.saturating_sub(pool.prefix_len()));
    1u128.checked_shl(bits).unwrap_or(u128::MAX)
}

/// The `index`-th block of `pool`.
pub fn block_at(pool: &IpNet, block_size: u8, index: u128) -> Option<IpNet> {
    let step_bits = u32::from(pool.max_prefix_len() - block_size);
    let offset = index.checked_shl(step_bits)?;
    if index >= block_count(pool, block_size) {
        return None;
    }
    let start = addr_at(&pool.trunc(), offset)?;
    IpNet::new(start, block_size).ok()
}

/// The first block of `pool`, in `node`'s search order, that is not in
/// `taken`. The walk starts at an offset from a hash of the node name and the
/// pool, and visits every block once; it stops early once it has seen more
/// blocks than `taken` holds, so it is fast even for huge IPv6 pools.
pub fn first_free_block(
    pool: &IpNet,
    block_size: u8,
    node: &str,
    taken: &HashSet<IpNet>,
) -> Option<IpNet> {
    let count = block_count(pool, block_size);
    if count == 0 || block_size < pool.prefix_len() || block_size > pool.max_prefix_len() {
        return None;
    }
    let seed = stable_hash(format!("{node}\0{pool}").as_bytes());
    let start = u128::from(seed) % count;
    // Among `taken.len() + 1` distinct blocks at least one is free, so the
    // walk never needs more steps than that (or than the pool has blocks).
    let limit = count.min(taken.len() as u128 + 1);
    let mut step: u128 = 0;
    while step < limit {
        let index = start.wrapping_add(step) % count;
        let block = block_at(pool, block_size, index)?;
        if !taken.contains(&block) {
            return Some(block);
        }
        step += 1;
    }
    None
}

/// The family of a block.
pub fn family(spec: &IpamBlockSpec) -> Family {
    Family::of(&spec.cidr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_crd::{BlockState, affinity_for};
    use proptest::prelude::*;

    fn spec(cidr: &str) -> IpamBlockSpec {
        IpamBlockSpec {
            cidr: cidr.parse().unwrap(),
            affinity: affinity_for("n"),
            state: BlockState::Confirmed,
            allocations: BTreeMap::new(),
            reserved: Vec::new(),
        }
    }

    #[test]
    fn arithmetic() {
        let n: IpNet = "10.0.1.0/26".parse().unwrap();
        assert_eq!(size(&n), 64);
        assert_eq!(addr_at(&n, 63), Some("10.0.1.63".parse().unwrap()));
        assert_eq!(addr_at(&n, 64), None);
        assert_eq!(offset_of(&n, "10.0.1.5".parse().unwrap()), Some(5));
        assert_eq!(offset_of(&n, "10.0.2.5".parse().unwrap()), None);
        let v6: IpNet = "fd00::40/122".parse().unwrap();
        assert_eq!(addr_at(&v6, 1), Some("fd00::41".parse().unwrap()));
        assert_eq!(
            gateway_candidate(&"10.0.0.7/32".parse().unwrap()),
            "10.0.0.7".parse::<IpAddr>().unwrap()
        );
        assert_eq!(size(&"::/0".parse().unwrap()), u128::MAX);
    }

    #[test]
    fn gateway_is_first_host_and_never_assigned() {
        let mut s = spec("10.0.0.0/30");
        assert_eq!(reserve_gateway(&mut s), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(reserve_gateway(&mut s), Some("10.0.0.1".parse().unwrap()));
        assert_eq!(s.reserved.len(), 1);
        let attrs = BTreeMap::new();
        let got: Vec<_> = (0..4)
            .map(|i| assign(&mut s, &format!("c{i}/eth0"), &attrs))
            .collect();
        assert_eq!(
            got,
            vec![
                Some("10.0.0.0".parse().unwrap()),
                Some("10.0.0.2".parse().unwrap()),
                Some("10.0.0.3".parse().unwrap()),
                None
            ]
        );
        assert_eq!(free_count(&s), 0);
        // Idempotent.
        assert_eq!(
            assign(&mut s, "c1/eth0", &attrs),
            Some("10.0.0.2".parse().unwrap())
        );
        assert_eq!(
            release(&mut s, "c1/eth0"),
            Some("10.0.0.2".parse().unwrap())
        );
        assert_eq!(release(&mut s, "c1/eth0"), None);
        assert_eq!(free_count(&s), 1);
        assert_eq!(
            assign(&mut s, "c9/eth0", &attrs),
            Some("10.0.0.2".parse().unwrap())
        );
    }

    #[test]
    fn gateway_moves_when_first_host_is_taken() {
        let mut s = spec("10.0.0.0/30");
        let attrs = BTreeMap::new();
        assign(&mut s, "a/eth0", &attrs);
        assign(&mut s, "b/eth0", &attrs);
        assert_eq!(reserve_gateway(&mut s), Some("10.0.0.2".parse().unwrap()));
        assign(&mut s, "c/eth0", &attrs);
        let mut full = s.clone();
        full.reserved.clear();
        assign(&mut full, "d/eth0", &attrs);
        assert_eq!(reserve_gateway(&mut full), None);
    }

    #[test]
    fn blocks_of_a_pool() {
        let pool: IpNet = "10.0.0.0/24".parse().unwrap();
        assert_eq!(block_count(&pool, 26), 4);
        assert_eq!(
            block_at(&pool, 26, 3),
            Some("10.0.0.192/26".parse().unwrap())
        );
        assert_eq!(block_at(&pool, 26, 4), None);
        let v6: IpNet = "fd00::/56".parse().unwrap();
        assert_eq!(block_count(&v6, 122), 1u128 << 66);
        assert!(block_at(&v6, 122, (1u128 << 66) - 1).is_some());
    }

    #[test]
    fn search_visits_every_block_and_reports_exhaustion() {
        let pool: IpNet = "10.0.0.0/24".parse().unwrap();
        let mut taken = HashSet::new();
        for _ in 0..4 {
            let b = first_free_block(&pool, 26, "node-a", &taken).expect("a free block");
            assert!(pool.contains(&b.network()));
            assert!(taken.insert(b), "{b} returned twice");
        }
        assert_eq!(first_free_block(&pool, 26, "node-a", &taken), None);
        // Huge pool: finds a block quickly.
        let v6: IpNet = "fd00::/48".parse().unwrap();
        assert!(first_free_block(&v6, 122, "n", &HashSet::new()).is_some());
    }

    #[test]
    fn competing_nodes_start_at_different_blocks() {
        let pool: IpNet = "10.0.0.0/16".parse().unwrap();
        let empty = HashSet::new();
        let starts: HashSet<IpNet> = (0..20)
            .map(|i| first_free_block(&pool, 26, &format!("node-{i}"), &empty).unwrap())
            .collect();
        assert!(starts.len() >= 18, "only {} distinct starts", starts.len());
    }

    proptest! {
        /// Random assign/release sequences never hand out one address twice,
        /// never hand out the gateway, and stay inside the block.
        #[test]
        fn no_address_twice(ops in proptest::collection::vec((0u8..40, any::<bool>()), 1..200)) {
            let mut s = spec("10.1.0.0/27");
            let gw = reserve_gateway(&mut s).unwrap();
            let attrs = BTreeMap::new();
            for (k, add) in ops {
                let key = format!("c{k}/eth0");
                if add {
                    let before = find(&s, &key);
                    let got = assign(&mut s, &key, &attrs);
                    if let Some(b) = before { prop_assert_eq!(got, Some(b)); }
                    if let Some(a) = got {
                        prop_assert!(a != gw);
                        prop_assert!(s.cidr.contains(&a));
                    } else {
                        prop_assert_eq!(free_count(&s), 0);
                    }
                } else {
                    release(&mut s, &key);
                }
                let addrs: Vec<IpAddr> = s.allocations.values().map(|a| a.address).collect();
                let unique: HashSet<IpAddr> = addrs.iter().copied().collect();
                prop_assert_eq!(addrs.len(), unique.len());
                prop_assert!(!unique.contains(&gw));
            }
        }
    }
}
