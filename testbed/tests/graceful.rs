//! Graceful restart (RFC 4724 §4.2) with a real restarting speaker: FRR with
//! `bgp graceful-restart` and `preserve-fw-state` (topology `graceful`), and
//! petrel as the helper.
//!
//! | step | checks |
//! |---|---|
//! | FRR's bgpd is killed (SIGKILL: no NOTIFICATION) and comes back | petrel keeps FRR's routes, marked stale, and its kernel routes are never deleted (`ip monitor route` sees no deletion) until FRR is back and has sent End-of-RIB; then nothing is stale |
//! | petrel restarts with its routes kept (`PETREL_KEEP_ROUTES_ON_EXIT`) | FRR sees the Restart State bit in petrel's OPEN; after petrel has converged, the next OPEN has it clear |
//! | FRR is killed and stays down | the routes go after FRR's restart time (6 s), not before |

mod common;
mod kernel_util;

use common::*;
use kernel_util::process::RouteMonitor;
use petrel_testbed::{Lab, wait_for};
use std::time::{Duration, Instant};

const PETREL: &str = "petrel";
const FRR: &str = "frr";
const FRR_V4: &str = "10.0.0.2";
const FRR_V6: &str = "fd00:10::2";
const PREFIXES: [&str; 2] = ["198.51.100.0/24", "2001:db8:100::/48"];
/// FRR's `bgp graceful-restart restart-time` in this topology.
const RESTART_TIME: Duration = Duration::from_secs(6);

/// The deletions of `PREFIXES` the monitor has seen so far.
fn deletions(monitor: &RouteMonitor) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    for prefix in PREFIXES {
        out.extend(
            monitor
                .events_for(prefix)?
                .into_iter()
                .filter(|l| l.starts_with("Deleted")),
        );
    }
    Ok(out)
}

fn in_kernel(lab: &Lab, prefix: &str) -> anyhow::Result<bool> {
    let family = if prefix.contains(':') { "-6" } else { "-4" };
    Ok(!lab
        .exec(PETREL, &format!("ip {family} route show {prefix}"))?
        .trim()
        .is_empty())
}

fn wait_sessions(lab: &Lab) -> anyhow::Result<()> {
    for peer in [FRR_V4, FRR_V6] {
        wait_for(UP, &format!("petrel's session with {peer}"), || {
            let p = lab.petrel_peer(PETREL, peer)?;
            anyhow::ensure!(p.state == "Established", "{}", p.state);
            Ok(())
        })?;
    }
    for prefix in PREFIXES {
        wait_for(PROPAGATE, &format!("{prefix} in petrel's kernel"), || {
            anyhow::ensure!(in_kernel(lab, prefix)?, "not yet");
            Ok(())
        })?;
    }
    Ok(())
}

/// Whether petrel marks FRR's routes stale and its peers restarting.
fn helping(lab: &Lab) -> anyhow::Result<()> {
    for peer in [FRR_V4, FRR_V6] {
        let p = lab.petrel_peer(PETREL, peer)?;
        anyhow::ensure!(
            p.state != "Established" && p.graceful_restart == "restarting" && p.stale_routes == 1,
            "peer {peer}: {p:?}"
        );
    }
    let routes = lab.petrel_routes(PETREL)?;
    for prefix in PREFIXES {
        anyhow::ensure!(
            routes
                .iter()
                .any(|r| r.prefix == prefix && r.stale && r.best),
            "{prefix} is not a stale best route: {routes:?}"
        );
    }
    Ok(())
}

/// Whether FRR saw the Restart State bit in petrel's last OPEN (IPv4).
fn frr_sees_r_bit(lab: &Lab) -> anyhow::Result<bool> {
    let out = lab.vtysh(FRR, "show bgp neighbors 10.0.0.1 json")?;
    let v: serde_json::Value = serde_json::from_str(&out)?;
    let info = &v["10.0.0.1"]["gracefulRestartInfo"];
    info["rBit"]
        .as_bool()
        .ok_or_else(|| anyhow::anyhow!("no gracefulRestartInfo.rBit in {info:#}"))
}

#[test]
fn petrel_keeps_a_restarting_frrs_routes_until_its_end_of_rib() {
    let lab = deploy("graceful");
    lab.check(|lab| {
        wait_sessions(lab)?;
        let monitor = RouteMonitor::start(lab, PETREL)?;

        // A crash and a restart within the restart time: nothing moves.
        lab.kill_node(FRR)?;
        wait_for(
            Duration::from_secs(5),
            "petrel to keep FRR's routes as stale",
            || helping(lab),
        )?;
        for prefix in PREFIXES {
            anyhow::ensure!(in_kernel(lab, prefix)?, "{prefix} left the kernel");
        }
        lab.start_node(FRR)?;
        wait_for(PROPAGATE, "FRR back, End-of-RIB received", || {
            for peer in [FRR_V4, FRR_V6] {
                let p = lab.petrel_peer(PETREL, peer)?;
                anyhow::ensure!(
                    p.state == "Established" && p.graceful_restart.is_empty(),
                    "peer {peer}: {p:?}"
                );
            }
            let routes = lab.petrel_routes(PETREL)?;
            for prefix in PREFIXES {
                anyhow::ensure!(
                    routes
                        .iter()
                        .any(|r| r.prefix == prefix && !r.stale && r.best),
                    "{prefix}: {routes:?}"
                );
            }
            Ok(())
        })?;
        let deleted = deletions(&monitor)?;
        anyhow::ensure!(
            deleted.is_empty(),
            "kernel routes deleted during FRR's graceful restart: {deleted:?}"
        );

        // petrel restarts with its kernel routes kept: its OPEN carries the
        // Restart State bit until it has converged, and the bit is clear in
        // the OPENs after that.
        lab.restart_node(PETREL)?;
        wait_sessions(lab)?;
        anyhow::ensure!(
            frr_sees_r_bit(lab)?,
            "FRR did not see the Restart State bit of a restarting petrel"
        );
        // The restart is over once every peer has sent End-of-RIB, which is
        // also when the dataplane reports convergence.
        wait_for(PROPAGATE, "petrel to converge after its restart", || {
            let out = lab.petrel(PETREL, "dataplane -o json")?;
            let v: serde_json::Value = serde_json::from_str(&out)?;
            anyhow::ensure!(v["converged"] == true, "{out}");
            Ok(())
        })?;
        lab.vtysh(FRR, "clear bgp 10.0.0.1")?;
        wait_sessions(lab)?;
        wait_for(PROPAGATE, "a fresh OPEN from petrel", || {
            anyhow::ensure!(!frr_sees_r_bit(lab)?, "R-bit still set");
            Ok(())
        })?;

        // A crash with no return: the routes go after the restart time.
        lab.kill_node(FRR)?;
        let killed = Instant::now();
        wait_for(
            RESTART_TIME + Duration::from_secs(10),
            "FRR's routes to leave petrel's kernel",
            || {
                for prefix in PREFIXES {
                    anyhow::ensure!(!in_kernel(lab, prefix)?, "{prefix} still there");
                }
                Ok(())
            },
        )?;
        let after = killed.elapsed();
        std::thread::sleep(Duration::from_millis(200));
        anyhow::ensure!(
            deletions(&monitor)?.len() >= PREFIXES.len(),
            "`ip monitor route` did not report the withdrawal (the check above could not fail)"
        );
        eprintln!("FRR's routes withdrawn {after:.1?} after it was killed (restart time 6 s)");
        anyhow::ensure!(
            after >= RESTART_TIME - Duration::from_secs(1),
            "withdrawn after {after:?}, before FRR's restart time {RESTART_TIME:?}"
        );
        Ok(())
    });
}
