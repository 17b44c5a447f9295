//! A reduced `testbed scale` run in CI: 30 petrel agents in two racks behind
//! FRR ToRs, two in-cluster route reflectors, the file datastore with one
//! shared IPAM directory. Asserts correctness only (no timing): every node
//! claims a block of each family, every node gets every other node's blocks
//! in its kernel, new blocks claimed on 5 nodes reach every other node, and
//! a stopped and a crashed node's blocks go away everywhere.
//!
//! Run as root after `cargo build --bins`:
//! `cargo test -p petrel-testbed --test scale -- --test-threads=1`.
//! `PETREL_SCALE_NODES=<n>` runs another size.

use petrel_testbed::is_root;
use petrel_testbed::scale::{ScaleArgs, generate, measure, render};

#[test]
fn thirty_nodes_every_node_gets_every_block() {
    assert!(
        is_root(),
        "the testbed integration tests create network namespaces and must run as root"
    );
    let nodes = std::env::var("PETREL_SCALE_NODES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    let args = ScaleArgs {
        nodes,
        claims: 5,
        timeout: 300,
        idle_secs: 2,
        no_withdrawal: false,
        generate_only: None,
        out: None,
    };
    let cluster = generate::nodes(args.nodes).unwrap();
    let report = match measure(&args, &cluster) {
        Ok(r) => r,
        Err(e) => panic!("scale run failed: {e:#}"),
    };
    eprintln!("{}", render(&args, &report));
    assert!(report.all_claimed.is_some(), "a node claimed no block");
    assert!(
        report.converged.is_some(),
        "a node lacks another node's block"
    );
    assert!(
        report.propagation_failures.is_empty(),
        "{:?}",
        report.propagation_failures
    );
    assert_eq!(report.propagation.count, args.claims);
    assert!(report.withdrawal_clean_ms.is_some());
    assert!(report.withdrawal_crash_ms.is_some());
}
