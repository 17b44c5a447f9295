//! Network-namespace testbed for petrel.
//!
//! Deploys containerlab-format topologies ([`topology`]) without containers:
//! every node is a network namespace, every link a veth pair, and each node
//! runs one routing daemon (petrel, BIRD 2, FRR's bgpd or GoBGP) in the
//! foreground with its own runtime directory ([`daemon`]). A [`Lab`] owns all
//! of it and tears it down on drop, also during a panic. Every node's view of
//! its sessions and routes is parsed into one form ([`status`]), and so is its
//! kernel routing table ([`kernel`]).
//!
//! ```no_run
//! use petrel_testbed::{Lab, wait_until};
//! use std::time::Duration;
//! let lab = Lab::deploy("testbed/topologies/interop-bird/topology.clab.yaml".as_ref())?;
//! wait_until(Duration::from_secs(30), "BIRD session up", || {
//!     lab.birdc("bird", "show protocols").ok().filter(|o| o.contains("Established"))
//! })?;
//! # anyhow::Ok(())
//! ```
//!
//! Needs root (namespaces, veths) and the daemons' Debian packages
//! (`.ci/setup` installs them).

pub mod apiproxy;
pub mod bench_daemons;
pub mod clab_keys;
pub mod cluster;
pub mod cni;
pub mod daemon;
pub mod faillog;
pub mod k8s;
pub mod kernel;
pub mod lab;
pub mod parse;
pub mod scale;
pub mod status;
pub mod topology;

pub use kernel::{KernelRoute, same_hops};
pub use lab::{Lab, cleanup_stale};
pub use status::{Afi, DaemonRoute, PetrelPeer, PetrelRoute, Session};
pub use topology::{Kind, Topology};

use std::time::{Duration, Instant};

/// Interval between two polls of [`wait_until`] and [`wait_for`].
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// Polls `f` until it returns `Some`, at most `timeout`; the error names `what`.
pub fn wait_until<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    wait_for(timeout, what, || {
        f().ok_or_else(|| anyhow::anyhow!("not yet"))
    })
}

/// Polls `f` until it returns `Ok`, at most `timeout`. On timeout the error
/// names `what` and carries the last error `f` returned, so checks can say
/// what they expected and what they saw.
pub fn wait_for<T>(
    timeout: Duration,
    what: &str,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(v) => return Ok(v),
            Err(e) if start.elapsed() >= timeout => {
                anyhow::bail!("timed out after {timeout:?} waiting for {what}; last seen: {e:#}")
            }
            Err(_) => std::thread::sleep(POLL_INTERVAL),
        }
    }
}

/// Whether this process runs as root (namespaces need it).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(|euid| euid == "0"))
        })
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_value_and_times_out_with_context() {
        let mut n = 0;
        let v = wait_until(Duration::from_secs(5), "three polls", || {
            n += 1;
            (n == 3).then_some(n)
        })
        .unwrap();
        assert_eq!(v, 3);
        let err = wait_for(Duration::from_millis(300), "the impossible", || {
            Err::<(), _>(anyhow::anyhow!("state is Active"))
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("the impossible") && err.contains("state is Active"),
            "{err}"
        );
    }
}
