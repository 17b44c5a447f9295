//! Tests of the file store: the store semantics, the on-disk format, and
//! concurrent claims from many threads and many processes.

use super::*;
use crate::allocator::NodeIpam;
use crate::{Family, IpamError, PoolConfig, claim, store::conformance};
use petrel_crd::{AffinityState, AllowedUse, BlockState, affinity_for};
use std::collections::HashSet;
use std::process::Command;
use std::time::Duration;

fn pool(cidr: &str, block_size: u8) -> PoolConfig {
    PoolConfig {
        name: "pool".into(),
        cidr: cidr.parse().unwrap(),
        block_size,
        disabled: false,
        disable_bgp_export: false,
        allowed_uses: vec![AllowedUse::Workload],
    }
}

#[tokio::test]
async fn follows_the_store_semantics() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    conformance::check(&store).await;
}

#[tokio::test]
async fn files_are_whole_objects_and_no_temporary_file_remains() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let spec = IpamBlockSpec {
        cidr: "10.5.0.0/26".parse().unwrap(),
        affinity: affinity_for("n1"),
        state: BlockState::Confirmed,
        allocations: Default::default(),
        reserved: Vec::new(),
    };
    let b = store.create_block("10-5-0-0-26", &spec).await.unwrap();
    let text = fs::read_to_string(dir.path().join("ipamblocks/10-5-0-0-26.yaml")).unwrap();
    assert!(text.contains("kind: IPAMBlock"), "{text}");
    assert!(text.contains("apiVersion: petrel.dev/v1"), "{text}");
    assert!(
        text.contains(&format!("resourceVersion: '{}'", b.version))
            || text.contains(&format!("resourceVersion: \"{}\"", b.version)),
        "{text}"
    );
    let leftovers: Vec<_> = fs::read_dir(dir.path().join("ipamblocks"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // A second store on the same directory (another agent) sees it.
    let other = FileStore::open(dir.path()).unwrap();
    assert_eq!(other.get_block("10-5-0-0-26").await.unwrap(), Some(b));
}

#[tokio::test]
async fn bad_names_and_corrupt_files_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path()).unwrap();
    let spec = BlockAffinitySpec {
        node: "n".into(),
        cidr: "10.0.0.0/26".parse().unwrap(),
        state: AffinityState::Pending,
    };
    let err = store.create_affinity("../evil", &spec).await.unwrap_err();
    assert!(matches!(err, StoreError::Invalid { .. }), "{err}");
    fs::write(dir.path().join("blockaffinities/broken.yaml"), "spec: [").unwrap();
    let err = store.get_affinity("broken").await.unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, StoreError::Invalid { .. }) && msg.contains("broken.yaml"),
        "{msg}"
    );
    fs::write(
        dir.path().join("blockaffinities/renamed.yaml"),
        "apiVersion: petrel.dev/v1\nkind: BlockAffinity\nmetadata:\n  name: other\n  resourceVersion: \"3\"\nspec:\n  node: n\n  cidr: 10.0.0.0/26\n  state: pending\n",
    )
    .unwrap();
    let err = store.get_affinity("renamed").await.unwrap_err();
    assert!(err.to_string().contains("metadata.name"), "{err}");
}

/// Claims one block for `node` with its own store instance (its own lock
/// file descriptor, like another agent).
async fn claim_one(
    dir: std::path::PathBuf,
    node: String,
    p: PoolConfig,
) -> Result<IpNet, IpamError> {
    let store = FileStore::open(dir).unwrap();
    let mut ipam = NodeIpam::new(node);
    ipam.set_pools(vec![p]);
    // Like an agent's start-up: finish what a killed run left, and claim
    // only if the node has no block.
    claim::recover(&store, &mut ipam).await?;
    if let Some(b) = ipam.own_blocks().next() {
        return Ok(b.spec.cidr);
    }
    claim::claim_block(&store, &mut ipam, Family::V4)
        .await
        .map(|b| b.spec.cidr)
}

use ipnet::IpNet;

/// Checks that the directory holds `n` confirmed blocks, each owned by a
/// different node with a matching confirmed affinity, and nothing pending.
async fn assert_unique_owners(dir: &Path, n: usize) {
    let store = FileStore::open(dir).unwrap();
    let blocks = store.list_blocks().await.unwrap();
    assert_eq!(blocks.len(), n, "{blocks:?}");
    let owners: HashSet<String> = blocks
        .iter()
        .map(|b| b.spec.owner().unwrap().to_string())
        .collect();
    assert_eq!(owners.len(), n, "a node owns two blocks: {blocks:?}");
    assert!(blocks.iter().all(|b| b.spec.state == BlockState::Confirmed));
    let affinities = store.list_affinities().await.unwrap();
    assert_eq!(affinities.len(), n, "{affinities:?}");
    for a in &affinities {
        assert_eq!(a.spec.state, AffinityState::Confirmed);
        let b = blocks.iter().find(|b| b.spec.cidr == a.spec.cidr).unwrap();
        assert_eq!(b.spec.owner(), Some(a.spec.node.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claims_from_many_agents_never_share_a_block() {
    const N: usize = 16;
    let dir = tempfile::tempdir().unwrap();
    let p = pool("10.6.0.0/26", 30); // exactly 16 blocks
    let mut tasks = Vec::new();
    for i in 0..N {
        tasks.push(tokio::spawn(claim_one(
            dir.path().to_path_buf(),
            format!("node-{i}"),
            p.clone(),
        )));
    }
    let mut cidrs = HashSet::new();
    for t in tasks {
        let cidr = t.await.unwrap().expect("every node gets a block");
        assert!(cidrs.insert(cidr), "{cidr} given twice");
    }
    assert_eq!(cidrs.len(), N);
    assert_unique_owners(dir.path(), N).await;
    let err = claim_one(dir.path().to_path_buf(), "node-late".into(), p)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, IpamError::Exhausted { .. }), "{msg}");
    assert!(
        msg.contains("exhausted") && msg.contains("node-late") && msg.contains("10.6.0.0/26"),
        "{msg}"
    );
    assert_unique_owners(dir.path(), N).await;
}

const CHILD_DIR: &str = "PETREL_IPAM_TEST_CHILD_DIR";
const CHILD_NODE: &str = "PETREL_IPAM_TEST_CHILD_NODE";

/// Run only as a child process of `concurrent_claims_from_many_processes`:
/// claims one block and writes the outcome to `<dir>/result-<node>`.
#[tokio::test]
#[ignore = "child process of concurrent_claims_from_many_processes"]
async fn child_claimer() {
    let (Some(dir), Some(node)) = (std::env::var_os(CHILD_DIR), std::env::var(CHILD_NODE).ok())
    else {
        panic!("run by concurrent_claims_from_many_processes only");
    };
    let dir = std::path::PathBuf::from(dir);
    let outcome = match claim_one(dir.clone(), node.clone(), pool("10.7.0.0/27", 30)).await {
        Ok(cidr) => cidr.to_string(),
        Err(IpamError::Exhausted { .. }) => "exhausted".to_string(),
        Err(e) => format!("error: {e}"),
    };
    fs::write(dir.join(format!("result-{node}")), outcome).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_claims_from_many_processes() {
    const N: usize = 8; // 10.7.0.0/27 in /30 blocks
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // The test's name within this test binary (module path without the crate).
    let child = format!(
        "{}::child_claimer",
        module_path!().split_once("::").map_or("", |(_, m)| m)
    );
    let children: Vec<_> = (0..=N)
        .map(|i| {
            Command::new(&exe)
                .args([
                    "--exact",
                    child.as_str(),
                    "--ignored",
                    "--test-threads=1",
                    "--quiet",
                ])
                .env(CHILD_DIR, dir.path())
                .env(CHILD_NODE, format!("proc-{i}"))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        let status = tokio::task::spawn_blocking(move || c.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(status.success());
    }
    let mut got = HashSet::new();
    let mut exhausted = 0;
    for i in 0..=N {
        let r = fs::read_to_string(dir.path().join(format!("result-proc-{i}"))).unwrap();
        if r == "exhausted" {
            exhausted += 1;
        } else {
            assert!(!r.starts_with("error"), "{r}");
            assert!(got.insert(r.clone()), "{r} given twice");
        }
    }
    assert_eq!((got.len(), exhausted), (N, 1));
    assert_unique_owners(dir.path(), N).await;
}

/// Agents killed (SIGKILL) at random moments of their claims, then restarted
/// (recovery, then a claim if they have no block): no block is owned twice,
/// nothing stays pending, and the one node too many gets no block.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_claimers_recover_without_double_ownership() {
    const N: usize = 8; // 10.7.0.0/27 in /30 blocks
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    for round in 0..3 {
        let mut children: Vec<_> = (0..=N)
            .map(|i| {
                Command::new(&exe)
                    .args([
                        "--exact",
                        "ipam::file_store::tests::child_claimer",
                        "--ignored",
                        "--test-threads=1",
                        "--quiet",
                    ])
                    .env(CHILD_DIR, dir.path())
                    .env(CHILD_NODE, format!("proc-{i}"))
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .unwrap()
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(
            rand::random_range(0..30) + round * 10u64,
        ))
        .await;
        for c in children.iter_mut().filter(|_| rand::random_bool(0.6)) {
            let _ = c.kill();
        }
        for mut c in children {
            tokio::task::spawn_blocking(move || c.wait())
                .await
                .unwrap()
                .unwrap();
        }
    }
    // Restart every agent: recover, then claim if it has no block.
    let store = FileStore::open(dir.path()).unwrap();
    let mut exhausted = 0;
    for i in 0..=N {
        let mut ipam = NodeIpam::new(format!("proc-{i}"));
        ipam.set_pools(vec![pool("10.7.0.0/27", 30)]);
        claim::recover(&store, &mut ipam).await.unwrap();
        if ipam.own_blocks().next().is_none() {
            match claim::claim_block(&store, &mut ipam, Family::V4).await {
                Ok(_) => {}
                Err(IpamError::Exhausted { .. }) => exhausted += 1,
                Err(e) => panic!("{e}"),
            }
        }
    }
    assert_eq!(exhausted, 1);
    assert_unique_owners(dir.path(), N).await;
}

/// Holds `<dir>/.lock` exclusively, like an agent stuck while writing.
fn hold_lock(dir: &Path) -> Flock<File> {
    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .unwrap();
    Flock::lock(f, FlockArg::LockExclusive).unwrap()
}

/// A store operation never waits for the lock without bound: past the lock
/// timeout it fails with an error naming the lock (the caller logs it and
/// retries), and it works again once the lock is free. Before, `flock(2)`
/// blocked forever and the agent said nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_lock_is_an_error_after_the_timeout_not_a_silent_wait() {
    let dir = tempfile::tempdir().unwrap();
    let store = FileStore::open(dir.path())
        .unwrap()
        .with_lock_timeout(Duration::from_millis(300));
    let spec = BlockAffinitySpec {
        node: "n".into(),
        cidr: "10.0.0.0/26".parse().unwrap(),
        state: AffinityState::Pending,
    };
    let held = hold_lock(dir.path());
    let bounded = Duration::from_secs(10);
    let err = tokio::time::timeout(bounded, store.create_affinity("a", &spec))
        .await
        .expect("a create must not wait for the lock without bound")
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, StoreError::Backend { .. })
            && msg.contains(".lock")
            && msg.contains("not acquired"),
        "{msg}"
    );
    let err = tokio::time::timeout(bounded, store.list_blocks())
        .await
        .expect("a listing must not wait for the lock without bound")
        .unwrap_err();
    assert!(err.to_string().contains("not acquired"), "{err}");
    drop(held);
    store.create_affinity("a", &spec).await.unwrap();
    assert_eq!(store.list_affinities().await.unwrap().len(), 1);
}

/// Listings reuse parsed files but see every change, made through this store
/// or another one on the directory (another agent); the revision token
/// changes with every write and only then.
#[tokio::test]
async fn listings_see_every_change_and_the_revision_follows_writes() {
    let dir = tempfile::tempdir().unwrap();
    let a = FileStore::open(dir.path()).unwrap();
    let b = FileStore::open(dir.path()).unwrap();
    let spec = |cidr: &str, state| IpamBlockSpec {
        cidr: cidr.parse().unwrap(),
        affinity: affinity_for("n1"),
        state,
        allocations: Default::default(),
        reserved: Vec::new(),
    };
    let r0 = a.revision().await.unwrap().unwrap();
    assert_eq!(a.revision().await.unwrap().unwrap(), r0);
    let x = a
        .create_block("x", &spec("10.1.0.0/26", BlockState::Pending))
        .await
        .unwrap();
    let r1 = a.revision().await.unwrap().unwrap();
    assert_ne!(r1, r0);
    assert_eq!(b.revision().await.unwrap().unwrap(), r1);
    assert_eq!(a.list_blocks().await.unwrap(), vec![x.clone()]);
    assert_eq!(
        a.revision().await.unwrap().unwrap(),
        r1,
        "a listing is no write"
    );
    // Another agent updates x and creates y: both seen by a.
    let x2 = b
        .update_block("x", &spec("10.1.0.0/26", BlockState::Confirmed), &x.version)
        .await
        .unwrap();
    let y = b
        .create_block("y", &spec("10.1.0.64/26", BlockState::Pending))
        .await
        .unwrap();
    assert_ne!(a.revision().await.unwrap().unwrap(), r1);
    assert_eq!(a.list_blocks().await.unwrap(), vec![x2.clone(), y.clone()]);
    b.delete_block("x", &x2.version).await.unwrap();
    assert_eq!(a.list_blocks().await.unwrap(), vec![y.clone()]);
    // A file replaced by hand (same name, new content) is parsed again.
    let by_hand = fs::read_to_string(dir.path().join("ipamblocks/y.yaml"))
        .unwrap()
        .replace("state: pending", "state: confirmed");
    fs::write(dir.path().join("ipamblocks/.y.yaml.tmp"), by_hand).unwrap();
    fs::rename(
        dir.path().join("ipamblocks/.y.yaml.tmp"),
        dir.path().join("ipamblocks/y.yaml"),
    )
    .unwrap();
    let listed = a.list_blocks().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].spec.state, BlockState::Confirmed);
}
