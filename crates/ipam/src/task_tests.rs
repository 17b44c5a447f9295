//! Tests of the owner task against the file store in a temporary directory:
//! allocation, idempotence, release, GC, restart, block claims when full,
//! exhaustion, empty-block release and recovery from a crash mid-claim.

use super::*;
use crate::file_store::FileStore;
use crate::{PoolConfig, block};
use petrel_crd::{
    AffinityState, AllowedUse, BlockAffinitySpec, BlockState, IpamBlockSpec, affinity_for,
    affinity_name, block_name,
};
use std::path::Path;

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

fn fast() -> IpamOptions {
    IpamOptions {
        resync_interval: Duration::from_millis(50),
        empty_block_grace: Duration::from_secs(3600),
        ..Default::default()
    }
}

struct Agent {
    handle: IpamHandle,
    join: JoinHandle<()>,
    _config: watch::Sender<IpamConfig>,
}

fn start(dir: &Path, node: &str, pools: Vec<PoolConfig>, options: IpamOptions) -> Agent {
    let store: Arc<dyn IpamStore> = Arc::new(FileStore::open(dir).unwrap());
    let (config, rx) = watch::channel(IpamConfig {
        node: node.into(),
        pools,
    });
    let (handle, join) = spawn(node.into(), rx, store, options);
    Agent {
        handle,
        join,
        _config: config,
    }
}

impl Agent {
    async fn stop(self) {
        drop(self.handle);
        tokio::time::timeout(Duration::from_secs(5), self.join)
            .await
            .expect("task stops when its handles are dropped")
            .unwrap();
    }
}

/// Waits until the view satisfies `f`.
async fn wait_view(h: &IpamHandle, f: impl Fn(&BlockView) -> bool) -> BlockView {
    let mut rx = h.blocks();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if f(&rx.borrow_and_update()) {
                return rx.borrow().clone();
            }
            rx.changed().await.unwrap();
        }
    })
    .await
    .expect("view reached the expected state")
}

fn attrs() -> BTreeMap<String, String> {
    [("namespace".to_string(), "default".to_string())].into()
}

#[tokio::test]
async fn allocate_is_idempotent_and_release_frees() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(
        dir.path(),
        "n1",
        vec![pool("p", "10.10.0.0/24", 26)],
        fast(),
    );
    let view = wait_view(&a.handle, |v| v.local.len() == 1).await;
    assert!(view.local[0].export);
    assert_eq!(view.all[0].owner, "n1");

    let first = a.handle.allocate("c1", "eth0", attrs()).await.unwrap();
    assert_eq!(first.addresses.len(), 1);
    let addr = &first.addresses[0];
    assert_eq!(addr.prefix_len, 32);
    assert_eq!(addr.block, view.local[0].cidr);
    assert_eq!(addr.gateway, block::gateway_candidate(&addr.block));
    assert_ne!(addr.address, addr.gateway);
    assert_eq!(
        a.handle.allocate("c1", "eth0", attrs()).await.unwrap(),
        first
    );
    assert_eq!(a.handle.check("c1", "eth0").await.unwrap(), first);
    let second = a.handle.allocate("c1", "eth1", attrs()).await.unwrap();
    assert_ne!(second.addresses[0].address, addr.address);
    assert_eq!(second.addresses[0].gateway, addr.gateway);

    let status = a.handle.status().await.unwrap();
    assert_eq!(status.allocations.len(), 2);
    assert_eq!(status.allocations[0].attributes, attrs());
    assert_eq!(status.blocks[0].used, 2);

    assert_eq!(
        a.handle.release("c1", "eth0").await.unwrap(),
        vec![addr.address]
    );
    assert!(a.handle.release("c1", "eth0").await.unwrap().is_empty());
    let err = a.handle.check("c1", "eth0").await.unwrap_err();
    assert!(matches!(err, IpamError::NotAllocated { .. }), "{err}");
    assert!(a.handle.allocate("", "eth0", attrs()).await.is_err());
    // The freed address is handed out again.
    let again = a.handle.allocate("c2", "eth0", attrs()).await.unwrap();
    assert_eq!(again.addresses[0].address, addr.address);
    a.stop().await;
}

#[tokio::test]
async fn dual_stack_and_restart_keep_allocations() {
    let dir = tempfile::tempdir().unwrap();
    let pools = vec![
        pool("v4", "10.11.0.0/24", 26),
        pool("v6", "fd00:11::/120", 122),
    ];
    let a = start(dir.path(), "n1", pools.clone(), fast());
    let got = a.handle.allocate("c1", "eth0", attrs()).await.unwrap();
    assert_eq!(got.addresses.len(), 2);
    assert!(got.addresses[0].address.is_ipv4() && got.addresses[1].address.is_ipv6());
    assert_eq!(got.addresses[1].prefix_len, 128);
    assert!(got.addresses[1].gateway.is_ipv6());
    a.stop().await;

    let b = start(dir.path(), "n1", pools, fast());
    assert_eq!(b.handle.check("c1", "eth0").await.unwrap(), got);
    let other = b.handle.allocate("c2", "eth0", attrs()).await.unwrap();
    assert_eq!(other.addresses[0].gateway, got.addresses[0].gateway);
    let view = wait_view(&b.handle, |v| v.local.len() == 2).await;
    assert_eq!(view.all.len(), 2, "no new blocks after a restart");
    b.stop().await;
}

#[tokio::test]
async fn a_full_block_leads_to_a_second_claim_and_gc_frees() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(
        dir.path(),
        "n1",
        vec![pool("p", "10.12.0.0/24", 30)],
        fast(),
    );
    let mut addrs = HashSet::new();
    for i in 0..5 {
        let r = a
            .handle
            .allocate(&format!("c{i}"), "eth0", attrs())
            .await
            .unwrap();
        assert!(addrs.insert(r.addresses[0].address));
        assert_ne!(r.addresses[0].address, r.addresses[0].gateway);
    }
    let view = wait_view(&a.handle, |v| v.local.len() == 2).await;
    assert_eq!(view.local.len(), 2);
    let released = a
        .handle
        .gc(vec![
            ("c0".into(), "eth0".into()),
            ("c4".into(), "eth0".into()),
        ])
        .await
        .unwrap();
    assert_eq!(released.len(), 3);
    let status = a.handle.status().await.unwrap();
    let keys: Vec<&str> = status
        .allocations
        .iter()
        .map(|a| a.container_id.as_str())
        .collect();
    assert_eq!(keys.len(), 2);
    assert!(keys.contains(&"c0") && keys.contains(&"c4"));
    a.stop().await;
}

#[tokio::test]
async fn exhaustion_is_a_clear_error_and_in_the_status() {
    let dir = tempfile::tempdir().unwrap();
    let p = vec![pool("tiny", "10.13.0.0/30", 30)]; // one block: gateway + 3 pods
    let a = start(dir.path(), "n1", p.clone(), fast());
    for i in 0..3 {
        a.handle
            .allocate(&format!("c{i}"), "eth0", attrs())
            .await
            .unwrap();
    }
    let err = a.handle.allocate("c3", "eth0", attrs()).await.unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{msg}");
    assert!(
        msg.contains("tiny (10.13.0.0/30)") && msg.contains("n1"),
        "{msg}"
    );
    assert_eq!(a.handle.status().await.unwrap().last_error, Some(msg));
    assert!(matches!(
        a.handle.check("c3", "eth0").await,
        Err(IpamError::NotAllocated { .. })
    ));

    // A second node gets no block and says why.
    let b = start(dir.path(), "n2", p, fast());
    let status = b.handle.status().await.unwrap();
    assert!(status.last_error.unwrap_or_default().contains("exhausted"));
    assert!(b.handle.blocks().borrow().local.is_empty());
    assert_eq!(status.blocks.len(), 1);
    assert_eq!(status.blocks[0].owner, "n1");
    a.stop().await;
    b.stop().await;
}

#[tokio::test]
async fn empty_blocks_are_released_after_the_grace_period() {
    let dir = tempfile::tempdir().unwrap();
    let options = IpamOptions {
        resync_interval: Duration::from_millis(30),
        empty_block_grace: Duration::from_millis(200),
        ..Default::default()
    };
    let a = start(
        dir.path(),
        "n1",
        vec![pool("p", "10.14.0.0/24", 30)],
        options,
    );
    for i in 0..6 {
        a.handle
            .allocate(&format!("c{i}"), "eth0", attrs())
            .await
            .unwrap();
    }
    wait_view(&a.handle, |v| v.local.len() == 2).await;
    let gw = a.handle.check("c0", "eth0").await.unwrap().addresses[0].gateway;
    for i in 0..6 {
        a.handle.release(&format!("c{i}"), "eth0").await.unwrap();
    }
    let view = wait_view(&a.handle, |v| v.local.len() == 1).await;
    assert!(
        view.local[0].cidr.contains(&gw),
        "the gateway block is kept"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        a.handle.blocks().borrow().local.len(),
        1,
        "one block is always kept"
    );
    let store = FileStore::open(dir.path()).unwrap();
    assert_eq!(store.list_blocks().await.unwrap().len(), 1);
    assert_eq!(store.list_affinities().await.unwrap().len(), 1);
    a.stop().await;
}

#[tokio::test]
async fn nodes_see_each_others_blocks_and_export_flag() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pool("p", "10.15.0.0/24", 26);
    p.disable_bgp_export = true;
    let a = start(dir.path(), "n1", vec![p.clone()], fast());
    let b = start(dir.path(), "n2", vec![p], fast());
    let va = wait_view(&a.handle, |v| v.all.len() == 2 && v.local.len() == 1).await;
    let vb = wait_view(&b.handle, |v| v.all.len() == 2 && v.local.len() == 1).await;
    assert_eq!(va.all, vb.all);
    assert_ne!(va.local[0].cidr, vb.local[0].cidr);
    assert!(!va.local[0].export);
    assert!(
        va.all
            .iter()
            .any(|o| o.owner == "n2" && o.cidr == vb.local[0].cidr)
    );
    a.stop().await;
    b.stop().await;
}

/// Leaves in the store what an agent killed at each step of a claim or a
/// release would leave, then starts the node's agent: everything is completed
/// or removed, and no block has two owners.
#[tokio::test]
async fn recovery_after_a_crash_mid_claim() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let net = |s: &str| -> IpNet { s.parse().unwrap() };
    let aff = |node: &str, cidr: &str, state| BlockAffinitySpec {
        node: node.into(),
        cidr: net(cidr),
        state,
    };
    let blk = |node: &str, cidr: &str, state| IpamBlockSpec {
        cidr: net(cidr),
        affinity: affinity_for(node),
        state,
        allocations: Default::default(),
        reserved: Vec::new(),
    };
    // Killed after step 1 (pending affinity, no block).
    let c1 = "10.16.0.0/26";
    store
        .create_affinity(
            &affinity_name("n1", &net(c1)),
            &aff("n1", c1, AffinityState::Pending),
        )
        .await
        .unwrap();
    // Killed after step 2 (pending affinity, pending block of n1).
    let c2 = "10.16.0.64/26";
    store
        .create_affinity(
            &affinity_name("n1", &net(c2)),
            &aff("n1", c2, AffinityState::Pending),
        )
        .await
        .unwrap();
    let mut spec2 = blk("n1", c2, BlockState::Pending);
    block::reserve_gateway(&mut spec2);
    store
        .create_block(&block_name(&net(c2)), &spec2)
        .await
        .unwrap();
    // Lost a race to n2 and was killed before deleting the pending affinity.
    let c3 = "10.16.0.128/26";
    store
        .create_affinity(
            &affinity_name("n1", &net(c3)),
            &aff("n1", c3, AffinityState::Pending),
        )
        .await
        .unwrap();
    store
        .create_affinity(
            &affinity_name("n2", &net(c3)),
            &aff("n2", c3, AffinityState::Confirmed),
        )
        .await
        .unwrap();
    store
        .create_block(&block_name(&net(c3)), &blk("n2", c3, BlockState::Confirmed))
        .await
        .unwrap();
    // Killed in the middle of releasing an empty block.
    let c4 = "10.16.0.192/26";
    store
        .create_affinity(
            &affinity_name("n1", &net(c4)),
            &aff("n1", c4, AffinityState::PendingDeletion),
        )
        .await
        .unwrap();
    store
        .create_block(&block_name(&net(c4)), &blk("n1", c4, BlockState::Confirmed))
        .await
        .unwrap();

    let a = start(
        dir.path(),
        "n1",
        vec![pool("p", "10.16.0.0/24", 26)],
        fast(),
    );
    let view = wait_view(&a.handle, |v| v.local.len() == 1).await;
    assert_eq!(
        view.local[0].cidr,
        net(c2),
        "the interrupted claim is completed"
    );
    let got = a.handle.allocate("c1", "eth0", attrs()).await.unwrap();
    assert_eq!(got.addresses[0].gateway, spec2.gateway().unwrap());

    let blocks = store.list_blocks().await.unwrap();
    let mut by_cidr: BTreeMap<IpNet, String> = BTreeMap::new();
    for b in &blocks {
        assert!(
            by_cidr
                .insert(b.spec.cidr, b.spec.affinity.clone())
                .is_none()
        );
        assert_eq!(b.spec.state, BlockState::Confirmed);
    }
    assert_eq!(by_cidr.get(&net(c2)).map(String::as_str), Some("host:n1"));
    assert_eq!(
        by_cidr.get(&net(c3)).map(String::as_str),
        Some("host:n2"),
        "n2's block is untouched"
    );
    assert!(
        !by_cidr.contains_key(&net(c4)),
        "the interrupted release is completed"
    );
    let affinities = store.list_affinities().await.unwrap();
    let mut states: Vec<(String, IpNet, AffinityState)> = affinities
        .iter()
        .map(|a| (a.spec.node.clone(), a.spec.cidr, a.spec.state))
        .collect();
    states.sort();
    assert_eq!(
        states,
        vec![
            ("n1".into(), net(c2), AffinityState::Confirmed),
            ("n2".into(), net(c3), AffinityState::Confirmed),
        ]
    );
    a.stop().await;
}

#[tokio::test]
async fn stopped_task_reports_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let a = start(
        dir.path(),
        "n1",
        vec![pool("p", "10.17.0.0/24", 26)],
        fast(),
    );
    let h = a.handle.clone();
    a.join.abort();
    let _ = a.join.await;
    let err = h.allocate("c", "eth0", attrs()).await.unwrap_err();
    assert!(matches!(err, IpamError::Stopped), "{err}");
}

#[tokio::test]
async fn the_view_says_when_it_holds_the_nodes_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let options = IpamOptions {
        start_delay: Duration::from_millis(300),
        ..fast()
    };
    let a = start(
        dir.path(),
        "n1",
        vec![pool("p", "10.15.0.0/24", 26)],
        options,
    );
    let early = a.handle.blocks().borrow().clone();
    assert!(!early.synced && early.local.is_empty(), "{early:?}");
    // Synced comes with the claimed block, never before it.
    let view = wait_view(&a.handle, |v| v.synced).await;
    assert_eq!(view.local.len(), 1, "{view:?}");
    a.stop().await;
}

/// A claim that cannot get the store's lock is not a silent wait: the error
/// is in the status (and the log) while the lock is held, and the claim is
/// retried and succeeds once it is free. Before, the owner task waited in
/// `flock(2)` forever: no claim, no error, no retry, and not even a status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_claim_blocked_by_the_store_lock_is_reported_and_retried() {
    use nix::fcntl::{Flock, FlockArg};
    let dir = tempfile::tempdir().unwrap();
    // The directory exists before the lock is taken, as with a running agent.
    FileStore::open(dir.path()).unwrap();
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.path().join(".lock"))
        .unwrap();
    let held = Flock::lock(file, FlockArg::LockExclusive).unwrap();
    let store: Arc<dyn IpamStore> = Arc::new(
        FileStore::open(dir.path())
            .unwrap()
            .with_lock_timeout(Duration::from_millis(200)),
    );
    let (_config, rx) = watch::channel(IpamConfig {
        node: "n1".into(),
        pools: vec![pool("p", "10.18.0.0/24", 26)],
    });
    let (handle, join) = spawn("n1".into(), rx, store, fast());
    let error = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let status = handle.status().await.unwrap();
            if let Some(e) = status.last_error {
                return e;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the status is answered and names the lock within 10 s");
    assert!(
        error.contains(".lock") && error.contains("not acquired"),
        "{error}"
    );
    assert!(handle.blocks().borrow().local.is_empty());
    drop(held);
    let view = wait_view(&handle, |v| v.local.len() == 1).await;
    assert_eq!(view.all.len(), 1);
    assert_eq!(handle.status().await.unwrap().last_error, None);
    drop(handle);
    join.await.unwrap();
}

/// Many agents (each with its own store on one directory, as separate
/// processes have) started at once, dual-stack: every one claims one block
/// of each family and no block has two owners. `PETREL_IPAM_CLAIMERS=<n>`
/// sets how many (default 60); the 200 agents of the file datastore
/// left 19 without a block after 150 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_agents_on_one_directory_all_claim_blocks() {
    let n: usize = std::env::var("PETREL_IPAM_CLAIMERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let dir = tempfile::tempdir().unwrap();
    let pools = vec![
        pool("v4", "10.64.0.0/16", 26),
        pool("v6", "fd00:64::/104", 122),
    ];
    let t0 = std::time::Instant::now();
    let agents: Vec<Agent> = (0..n)
        .map(|i| {
            start(
                dir.path(),
                &format!("node-{i:03}"),
                pools.clone(),
                IpamOptions::default(),
            )
        })
        .collect();
    let deadline = Duration::from_secs(240);
    for (i, a) in agents.iter().enumerate() {
        let mut rx = a.handle.blocks();
        let got = tokio::time::timeout(deadline.saturating_sub(t0.elapsed()), async {
            loop {
                if rx.borrow_and_update().local.len() == 2 {
                    return;
                }
                rx.changed().await.unwrap();
            }
        })
        .await;
        if got.is_err() {
            let status = a.handle.status().await.unwrap();
            panic!(
                "node-{i:03} has no block of each family after {:?}: {status:?}",
                t0.elapsed()
            );
        }
    }
    eprintln!("{n} agents claimed 2 blocks each in {:?}", t0.elapsed());
    let store = FileStore::open(dir.path()).unwrap();
    let blocks = store.list_blocks().await.unwrap();
    let mut per_node: BTreeMap<(String, bool), Vec<String>> = BTreeMap::new();
    for b in &blocks {
        per_node
            .entry((
                b.spec.owner().unwrap_or("?").to_string(),
                b.spec.cidr.addr().is_ipv4(),
            ))
            .or_default()
            .push(format!("{} {}", b.spec.cidr, b.spec.state));
    }
    per_node.retain(|_, v| v.len() > 1);
    assert!(
        per_node.is_empty(),
        "nodes with two blocks of a family: {per_node:?}"
    );
    assert_eq!(blocks.len(), 2 * n, "one block per family and node");
    let owners: HashSet<(String, bool)> = blocks
        .iter()
        .map(|b| {
            (
                b.spec.owner().unwrap().to_string(),
                b.spec.cidr.addr().is_ipv4(),
            )
        })
        .collect();
    assert_eq!(owners.len(), 2 * n, "a node owns two blocks of a family");
    for a in agents {
        a.join.abort();
    }
}
