//! Tests of the sans-IO allocator: plans are applied directly to its state
//! (as a perfect store would), so the decisions are tested without I/O.

use super::*;
use petrel_crd::{AllowedUse, block_name};
use proptest::prelude::*;

fn pool(name: &str, cidr: &str, block_size: u8) -> PoolConfig {
    PoolConfig {
        name: name.into(),
        cidr: cidr.parse().unwrap(),
        block_size,
        disabled: false,
        disable_bgp_export: false,
        allowed_uses: vec![AllowedUse::Workload, AllowedUse::Tunnel],
    }
}

fn node(name: &str, pools: Vec<PoolConfig>) -> NodeIpam {
    let mut n = NodeIpam::new(name);
    n.set_pools(pools);
    n
}

/// Claims a block as the store protocol would, confirmed, at version 1.
fn claim(ipam: &mut NodeIpam, family: Family) -> Result<IpNet, IpamError> {
    let target = ipam.plan_claim(family)?;
    let mut spec = ipam.new_block_spec(target.cidr);
    spec.state = BlockState::Confirmed;
    ipam.upsert_block(StoredBlock {
        name: block_name(&target.cidr),
        version: "1".into(),
        spec,
    });
    Ok(target.cidr)
}

/// Allocates like the owner task: claim when needed, apply the write.
fn allocate(ipam: &mut NodeIpam, family: Family, key: &str) -> Result<IpAddr, IpamError> {
    for _ in 0..10 {
        match ipam.plan_assign(family, key, &BTreeMap::new()) {
            AssignPlan::Existing { address, .. } => return Ok(address),
            AssignPlan::Write { block, address } => {
                ipam.upsert_block(block);
                return Ok(address);
            }
            AssignPlan::NeedBlock => {
                claim(ipam, family)?;
            }
        }
    }
    panic!("allocation did not converge");
}

#[test]
fn first_block_reserves_the_gateway_and_pods_never_get_it() {
    let mut n = node("n1", vec![pool("p", "10.0.0.0/24", 30)]);
    assert_eq!(
        n.plan_assign(Family::V4, "a/eth0", &BTreeMap::new()),
        AssignPlan::NeedBlock
    );
    let a = allocate(&mut n, Family::V4, "a/eth0").unwrap();
    let (gw, gw_block) = n.gateway(Family::V4).unwrap();
    assert_eq!(gw, block::gateway_candidate(&gw_block.spec.cidr));
    assert_ne!(a, gw);
    // A /30 has 4 addresses: 1 gateway + 3 pods, then a second block without
    // a gateway of its own.
    let b = allocate(&mut n, Family::V4, "b/eth0").unwrap();
    let c = allocate(&mut n, Family::V4, "c/eth0").unwrap();
    assert_eq!(n.own_blocks().count(), 1);
    let d = allocate(&mut n, Family::V4, "d/eth0").unwrap();
    assert_eq!(n.own_blocks().count(), 2);
    let second = n.own_blocks().find(|b| b.spec.gateway().is_none()).unwrap();
    assert!(second.spec.cidr.contains(&d));
    let all: HashSet<IpAddr> = [a, b, c, d].into();
    assert_eq!(all.len(), 4);
    assert!(!all.contains(&gw));
    // Idempotent.
    assert_eq!(allocate(&mut n, Family::V4, "b/eth0").unwrap(), b);
}

#[test]
fn dual_stack_gets_one_address_per_family_with_a_gateway_each() {
    let mut n = node(
        "n1",
        vec![pool("v4", "10.0.0.0/16", 26), pool("v6", "fd00::/112", 122)],
    );
    assert_eq!(n.workload_families(), vec![Family::V4, Family::V6]);
    let a4 = allocate(&mut n, Family::V4, "a/eth0").unwrap();
    let a6 = allocate(&mut n, Family::V6, "a/eth0").unwrap();
    assert!(a4.is_ipv4() && a6.is_ipv6());
    let found = n.find("a/eth0");
    assert_eq!(found.len(), 2);
    let g4 = n.gateway(Family::V4).unwrap().0;
    let g6 = n.gateway(Family::V6).unwrap().0;
    assert!(g4.is_ipv4() && g6.is_ipv6());
    assert_ne!(g4, a4);
    assert_ne!(g6, a6);
}

#[test]
fn strict_affinity_never_uses_another_nodes_block() {
    let p = pool("p", "10.0.0.0/25", 26); // two blocks
    let mut other = node("other", vec![p.clone()]);
    claim(&mut other, Family::V4).unwrap();
    let other_block = other.own_blocks().next().unwrap().clone();
    let mut n = node("n1", vec![p.clone()]);
    n.upsert_block(other_block.clone());
    // The other node's block has 63 free addresses, but n1 must claim its own.
    assert_eq!(
        n.plan_assign(Family::V4, "a/eth0", &BTreeMap::new()),
        AssignPlan::NeedBlock
    );
    let a = allocate(&mut n, Family::V4, "a/eth0").unwrap();
    assert!(!other_block.spec.cidr.contains(&a));
    // Fill n1's block (63 pod addresses after the gateway).
    for i in 1..63 {
        allocate(&mut n, Family::V4, &format!("c{i}/eth0")).unwrap();
    }
    let err = allocate(&mut n, Family::V4, "full/eth0").unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{msg}");
    assert!(
        msg.contains("p (10.0.0.0/25)") && msg.contains("n1"),
        "{msg}"
    );
}

#[test]
fn no_pool_and_disabled_pools() {
    let n = node("n1", vec![]);
    assert!(matches!(
        n.plan_claim(Family::V4),
        Err(IpamError::NoPool { .. })
    ));
    let mut p = pool("p", "10.0.0.0/24", 26);
    p.disabled = true;
    let mut lb = pool("lb", "10.1.0.0/24", 26);
    lb.allowed_uses = vec![AllowedUse::LoadBalancer];
    let mut n = node("n1", vec![p.clone(), lb]);
    assert!(n.workload_families().is_empty());
    // A block of a pool that gets disabled is not used for new addresses.
    n.set_pools(vec![pool("p", "10.0.0.0/24", 26)]);
    claim(&mut n, Family::V4).unwrap();
    n.set_pools(vec![p]);
    assert_eq!(
        n.plan_assign(Family::V4, "a/eth0", &BTreeMap::new()),
        AssignPlan::NeedBlock
    );
    assert!(n.families_without_block().is_empty());
}

#[test]
fn claims_follow_the_pool_order_and_skip_taken_blocks() {
    let mut n = node(
        "n1",
        vec![pool("a", "10.0.0.0/26", 26), pool("b", "10.0.1.0/26", 26)],
    );
    assert_eq!(
        claim(&mut n, Family::V4).unwrap(),
        "10.0.0.0/26".parse::<IpNet>().unwrap()
    );
    assert_eq!(
        claim(&mut n, Family::V4).unwrap(),
        "10.0.1.0/26".parse::<IpNet>().unwrap()
    );
    assert!(matches!(
        claim(&mut n, Family::V4),
        Err(IpamError::Exhausted { .. })
    ));
}

#[test]
fn release_and_gc_plans() {
    let mut n = node("n1", vec![pool("p", "10.0.0.0/24", 26)]);
    for k in ["a/eth0", "b/eth0", "c/eth0"] {
        allocate(&mut n, Family::V4, k).unwrap();
    }
    let w = n.plan_release("b/eth0");
    assert_eq!(w.len(), 1);
    assert!(!w[0].spec.allocations.contains_key("b/eth0"));
    assert_eq!(w[0].spec.allocations.len(), 2);
    assert!(n.plan_release("zzz/eth0").is_empty());
    let keep: HashSet<String> = ["a/eth0".to_string()].into();
    let w = n.plan_gc(&keep);
    assert_eq!(w.len(), 1);
    assert_eq!(
        w[0].spec.allocations.keys().collect::<Vec<_>>(),
        vec!["a/eth0"]
    );
    // The gateway survives a GC.
    assert!(w[0].spec.gateway().is_some());
    let all: HashSet<String> = ["a/eth0", "b/eth0", "c/eth0"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    assert!(n.plan_gc(&all).is_empty());
}

#[test]
fn empty_blocks_are_released_after_the_grace_period_keeping_one() {
    let mut n = node("n1", vec![pool("p", "10.0.0.0/24", 30)]);
    for i in 0..6 {
        allocate(&mut n, Family::V4, &format!("c{i}/eth0")).unwrap();
    }
    assert_eq!(n.own_blocks().count(), 2);
    let t0 = Instant::now();
    let grace = Duration::from_secs(60);
    n.observe_empty(t0);
    assert!(
        n.releasable(t0 + grace, grace).is_empty(),
        "nothing is empty"
    );
    for i in 0..6 {
        for w in n.plan_release(&format!("c{i}/eth0")) {
            n.upsert_block(w);
        }
    }
    n.observe_empty(t0);
    assert!(n.releasable(t0 + Duration::from_secs(59), grace).is_empty());
    let r = n.releasable(t0 + grace, grace);
    // Both are empty; the gateway block is kept, the other goes.
    assert_eq!(r.len(), 1, "{r:?}");
    assert!(r[0].spec.gateway().is_none());
    n.remove_block(&r[0].name);
    assert!(n.releasable(t0 + grace * 10, grace).is_empty());
    // A block that gets an allocation is no longer empty.
    allocate(&mut n, Family::V4, "x/eth0").unwrap();
    n.observe_empty(t0 + grace * 11);
    assert!(n.releasable(t0 + grace * 20, grace).is_empty());
}

#[test]
fn blocks_of_a_removed_pool_are_released_when_empty() {
    let mut n = node("n1", vec![pool("old", "10.0.0.0/24", 26)]);
    let a = allocate(&mut n, Family::V4, "a/eth0").unwrap();
    n.set_pools(vec![pool("new", "10.1.0.0/24", 26)]);
    let t0 = Instant::now();
    let grace = Duration::from_secs(1);
    n.observe_empty(t0);
    assert!(n.releasable(t0 + grace, grace).is_empty(), "still used");
    for w in n.plan_release("a/eth0") {
        n.upsert_block(w);
    }
    n.observe_empty(t0);
    let r = n.releasable(t0 + grace, grace);
    assert_eq!(r.len(), 1);
    assert!(r[0].spec.cidr.contains(&a));
    assert!(
        r[0].spec.gateway().is_some(),
        "even the gateway block goes with its pool"
    );
}

#[test]
fn view_lists_confirmed_local_blocks_and_owners() {
    let mut p = pool("p", "10.0.0.0/24", 26);
    p.disable_bgp_export = true;
    let mut n = node("n1", vec![p, pool("q", "10.1.0.0/24", 26)]);
    let c = claim(&mut n, Family::V4).unwrap();
    let mut other = node("n2", vec![pool("q", "10.1.0.0/24", 26)]);
    let oc = claim(&mut other, Family::V4).unwrap();
    n.upsert_block(other.own_blocks().next().unwrap().clone());
    // A pending block of this node is owned but not yet advertised.
    let target = n.plan_claim(Family::V4).unwrap();
    let pending = n.new_block_spec(target.cidr);
    assert_eq!(pending.state, BlockState::Pending);
    assert!(
        pending.gateway().is_none(),
        "the node already has a gateway"
    );
    n.upsert_block(StoredBlock {
        name: block_name(&target.cidr),
        version: "1".into(),
        spec: pending,
    });
    let v = n.view();
    assert_eq!(
        v.local,
        vec![LocalBlock {
            cidr: c,
            export: false
        }]
    );
    assert_eq!(v.all.len(), 3);
    assert!(v.all.contains(&OwnedBlock {
        cidr: oc,
        owner: "n2".into()
    }));
    assert!(v.all.contains(&OwnedBlock {
        cidr: target.cidr,
        owner: "n1".into()
    }));
    let status = n.block_status();
    assert_eq!(status.len(), 3);
    let mine = status.iter().find(|b| b.cidr == c).unwrap();
    assert_eq!(
        (mine.used, mine.free, mine.reserved, mine.export),
        (0, 63, 1, false)
    );
    let pools = n.pool_status();
    assert_eq!(pools[0].blocks_total, 4);
    assert_eq!((pools[0].blocks_claimed, pools[0].blocks_local), (2, 2));
    assert_eq!((pools[1].blocks_claimed, pools[1].blocks_local), (1, 0));
}

proptest! {
    /// Random allocations and releases over two nodes sharing one small pool:
    /// no address is ever held twice, no pod gets a gateway, every address is
    /// in a block of its own node, and exhaustion is reported only when the
    /// node's blocks are full and no block is free.
    #[test]
    fn allocations_never_collide(ops in proptest::collection::vec((0usize..2, 0u8..24, any::<bool>()), 1..150)) {
        let p = pool("p", "10.2.0.0/27", 29); // 4 blocks of 8
        let mut nodes = [node("a", vec![p.clone()]), node("b", vec![p])];
        for (who, k, add) in ops {
            // Share the other node's blocks, as a store read would.
            let others: Vec<StoredBlock> = nodes[1 - who].own_blocks().cloned().collect();
            for b in others { nodes[who].upsert_block(b); }
            let n = &mut nodes[who];
            let key = format!("c{k}/eth0");
            if add {
                match allocate(n, Family::V4, &key) {
                    Ok(a) => {
                        let blk = n.own_blocks().find(|b| b.spec.cidr.contains(&a)).unwrap();
                        prop_assert_eq!(block::find(&blk.spec, &key), Some(a));
                    }
                    Err(IpamError::Exhausted { .. }) => {
                        prop_assert!(n.plan_claim(Family::V4).is_err());
                    }
                    Err(e) => prop_assert!(false, "{e}"),
                }
            } else {
                for w in n.plan_release(&key) { n.upsert_block(w); }
            }
            let mut seen = HashSet::new();
            let mut cidrs = HashSet::new();
            for node in &nodes {
                let gw = node.gateway(Family::V4).map(|g| g.0);
                for b in node.own_blocks() {
                    prop_assert!(cidrs.insert(b.spec.cidr), "block {} owned twice", b.spec.cidr);
                    for a in b.spec.allocations.values() {
                        prop_assert!(b.spec.cidr.contains(&a.address));
                        prop_assert!(Some(a.address) != gw);
                        prop_assert!(!b.spec.is_reserved(a.address));
                        prop_assert!(seen.insert(a.address), "{} twice", a.address);
                    }
                }
            }
        }
    }
}
