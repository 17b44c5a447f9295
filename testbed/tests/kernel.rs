//! Kernel route programming, end to end: petrel against BIRD 2 and FRR in
//! network namespaces, checked with `ip -j route` / `ip monitor route` inside
//! the petrel node's namespace.
//!
//! * `kernel-bird`: petrel (10.0.0.1, fd00:10::1) and BIRD (10.0.0.2,
//!   fd00:10::2) announcing 198.51.100.0/24, 203.0.113.0/24,
//!   2001:db8:100::/48, 2001:db8:200::/48 (one static protocol each);
//! * `kernel-ecmp`: two FRR ToRs announcing 192.0.2.0/24 and 2001:db8:ec::/48;
//! * `kernel-bulk`: BIRD with a 9 s hold time, fed 100,000 /24s at run time.
//!
//! Run as root, one test at a time (the 100k test is heavy):
//! `cargo build --bins && cargo test -p petrel-testbed --test kernel -- --test-threads=1`.

mod common;
mod kernel_util;

use anyhow::Context;
use kernel_util::process::{RouteMonitor, kill_agent, terminate_agent};
use kernel_util::*;
use petrel_testbed::{Lab, wait_for};
use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

const PETREL: &str = "petrel";
const BIRD: &str = "bird";
const BIRD_V4: &str = "10.0.0.2";
const BIRD_V6: &str = "fd00:10::2";
/// BIRD's prefixes: `static4`, `static4b`, `static6`, `static6b`.
const A4: &str = "198.51.100.0/24";
const B4: &str = "203.0.113.0/24";
const A6: &str = "2001:db8:100::/48";
const B6: &str = "2001:db8:200::/48";

fn gateway(prefix: &str) -> &'static str {
    if prefix.contains(':') {
        BIRD_V6
    } else {
        BIRD_V4
    }
}

/// Deploys `kernel-bird` and waits until both sessions are up and BIRD's four
/// prefixes are in petrel's kernel.
fn bird_lab() -> Lab {
    let lab = deploy("kernel-bird");
    lab.check(|lab| {
        wait_petrel_established(lab, PETREL, BIRD_V4)?;
        wait_petrel_established(lab, PETREL, BIRD_V6)?;
        for p in [A4, B4, A6, B6] {
            wait_petrel_route(lab, PETREL, p, &[gateway(p)], PROPAGATE)?;
        }
        Ok(())
    });
    lab
}

/// Every route of another protocol in petrel's main tables, both families.
fn foreign_routes(lab: &Lab) -> anyhow::Result<BTreeSet<String>> {
    let mut all = lab.kernel_routes(PETREL, false)?;
    all.extend(lab.kernel_routes(PETREL, true)?);
    Ok(all
        .iter()
        .filter(|r| !r.is_petrel())
        .map(ToString::to_string)
        .collect())
}

/// Adds routes of other protocols: on two of petrel's prefixes at another
/// metric, and on prefixes petrel never has.
fn add_foreign_routes(lab: &Lab) -> anyhow::Result<()> {
    for cmd in [
        "ip route add 198.51.100.0/24 via 10.0.0.2 proto static metric 100",
        "ip -6 route add 2001:db8:100::/48 via fd00:10::2 proto static metric 2048",
        "ip route add 192.0.2.0/24 via 10.0.0.2 proto static",
        "ip route add blackhole 192.0.2.128/25 proto 12",
        "ip route add 100.64.0.0/10 via 10.0.0.2",
        "ip -6 route add 2001:db8:999::/48 via fd00:10::2 proto static",
        "ip -6 route add blackhole 2001:db8:998::/48 proto 186",
    ] {
        lab.exec(PETREL, cmd)?;
    }
    Ok(())
}

/// 1. BIRD's IPv4 and IPv6 prefixes are in the kernel via BIRD, with
///    protocol 200; withdrawals remove exactly the withdrawn prefixes.
#[test]
fn bird_routes_reach_the_kernel_and_leave_on_withdrawal() {
    let lab = bird_lab();
    lab.check(|lab| {
        for p in [A4, B4, A6, B6] {
            let r = check_petrel_route(lab, PETREL, p, &[gateway(p)])?;
            anyhow::ensure!(r.hops[0].dev == "eth1", "{p}: expected dev eth1, seen {r}");
        }
        // Proto 200 filtering in the kernel itself finds them too.
        let v4 = lab.exec(PETREL, "ip -4 route show proto 200")?;
        let v6 = lab.exec(PETREL, "ip -6 route show proto 200")?;
        for p in [A4, B4] {
            anyhow::ensure!(v4.contains(p), "ip route show proto 200 lacks {p}: {v4}");
        }
        for p in [A6, B6] {
            anyhow::ensure!(v6.contains(p), "ip -6 route show proto 200 lacks {p}: {v6}");
        }

        lab.birdc(BIRD, "disable static4b")?;
        lab.birdc(BIRD, "disable static6b")?;
        wait_no_petrel_route(lab, PETREL, B4, PROPAGATE)?;
        wait_no_petrel_route(lab, PETREL, B6, PROPAGATE)?;
        check_petrel_route(lab, PETREL, A4, &[BIRD_V4]).context("A4 must stay")?;
        check_petrel_route(lab, PETREL, A6, &[BIRD_V6]).context("A6 must stay")?;

        lab.birdc(BIRD, "disable static4")?;
        lab.birdc(BIRD, "disable static6")?;
        wait_for(PROPAGATE, "every petrel route to leave", || {
            let left = all_petrel_routes(lab, PETREL)?;
            anyhow::ensure!(left.is_empty(), "still there: {}", list(&left));
            Ok(())
        })?;

        // Re-announcement installs again.
        lab.birdc(BIRD, "enable static4b")?;
        lab.birdc(BIRD, "enable static6")?;
        wait_petrel_route(lab, PETREL, B4, &[BIRD_V4], PROPAGATE)?;
        wait_petrel_route(lab, PETREL, A6, &[BIRD_V6], PROPAGATE)?;
        let ours: Vec<String> = all_petrel_routes(lab, PETREL)?
            .iter()
            .map(|r| r.dst.clone())
            .collect();
        anyhow::ensure!(
            ours == [B4, A6],
            "expected petrel routes for {B4} and {A6} only, seen {ours:?}"
        );
        Ok(())
    });
}

/// 2. Two ToRs announcing the same prefix with equal attributes: one kernel
///    route with two next hops, back to one path when a ToR goes away.
#[test]
fn two_tors_give_one_ecmp_route() {
    const P4: &str = "192.0.2.0/24";
    const P6: &str = "2001:db8:ec::/48";
    let lab = deploy("kernel-ecmp");
    lab.check(|lab| {
        for peer in ["10.0.1.2", "10.0.2.2", "fd00:1::2", "fd00:2::2"] {
            wait_petrel_established(lab, PETREL, peer)?;
        }
        for (prefix, hops) in [
            (P4, [("10.0.1.2", "eth1"), ("10.0.2.2", "eth2")]),
            (P6, [("fd00:1::2", "eth1"), ("fd00:2::2", "eth2")]),
        ] {
            let r = wait_petrel_route(lab, PETREL, prefix, &[hops[0].0, hops[1].0], PROPAGATE)?;
            let devs: Vec<(&str, &str)> = r
                .hops
                .iter()
                .map(|h| (h.gateway.as_str(), h.dev.as_str()))
                .collect();
            anyhow::ensure!(devs == hops, "{prefix}: expected {hops:?}, seen {r}");
            let all = lab.kernel_routes_for(PETREL, prefix)?;
            anyhow::ensure!(
                all.len() == 1,
                "{prefix}: expected ONE kernel route (RTA_MULTIPATH), seen {}",
                list(&all)
            );
        }

        let monitor = RouteMonitor::start(lab, PETREL)?;
        lab.vtysh(
            "tor2",
            "configure terminal\nrouter bgp 65002\nneighbor 10.0.2.1 shutdown\n\
             neighbor fd00:2::1 shutdown",
        )?;
        wait_petrel_route(lab, PETREL, P4, &["10.0.1.2"], PROPAGATE)
            .context("tor2 gone: single path via tor1")?;
        wait_petrel_route(lab, PETREL, P6, &["fd00:1::2"], PROPAGATE)?;
        lab.vtysh(
            "tor2",
            "configure terminal\nrouter bgp 65002\nno neighbor 10.0.2.1 shutdown\n\
             no neighbor fd00:2::1 shutdown",
        )?;
        wait_petrel_route(lab, PETREL, P4, &["10.0.1.2", "10.0.2.2"], UP)
            .context("tor2 back: ECMP again")?;
        wait_petrel_route(lab, PETREL, P6, &["fd00:1::2", "fd00:2::2"], UP)?;
        // Path changes are replaces: the prefix never left the kernel.
        for prefix in [P4, P6] {
            let deleted: Vec<String> = monitor
                .events_for(prefix)?
                .into_iter()
                .filter(|l| l.starts_with("Deleted"))
                .collect();
            anyhow::ensure!(
                deleted.is_empty(),
                "{prefix} was deleted while a path remained: {deleted:?}"
            );
        }
        Ok(())
    });
}

/// 3. A route of ours deleted by hand, or all of them flushed, come back
///    within 2 s.
#[test]
fn deleted_and_flushed_routes_are_restored() {
    let lab = bird_lab();
    lab.check(|lab| {
        let monitor = RouteMonitor::start(lab, PETREL)?;
        for (prefix, cmd) in [
            (A4, "ip route del 198.51.100.0/24 proto 200"),
            (A6, "ip -6 route del 2001:db8:100::/48 proto 200"),
        ] {
            let start = Instant::now();
            lab.exec(PETREL, cmd)?;
            wait_petrel_route(lab, PETREL, prefix, &[gateway(prefix)], REPAIR)
                .with_context(|| format!("after `{cmd}`"))?;
            eprintln!("{prefix} restored, seen after {:?}", start.elapsed());
            // The deletion happened, and the route was added back after it.
            let events = monitor.events_for(prefix)?;
            let del = events.iter().position(|l| l.starts_with("Deleted"));
            anyhow::ensure!(
                del.is_some_and(|i| events[i + 1..].iter().any(|l| !l.starts_with("Deleted"))),
                "{prefix}: expected a deletion then a re-add in `ip monitor route`, seen {events:?}"
            );
        }

        let start = Instant::now();
        lab.exec(
            PETREL,
            "ip -4 route flush proto 200 && ip -6 route flush proto 200",
        )?;
        for p in [A4, B4, A6, B6] {
            let left = REPAIR.saturating_sub(start.elapsed());
            wait_petrel_route(lab, PETREL, p, &[gateway(p)], left)
                .with_context(|| format!("{p} after `ip route flush proto 200`"))?;
        }
        eprintln!(
            "all four routes restored after a flush within {:?}",
            start.elapsed()
        );
        // `ip route flush` dumps and deletes again while it finds routes, so
        // petrel's repairs make it delete several times (up to its 10
        // rounds); each prefix must have been deleted by it at least once
        // and end up re-added.
        for p in [A4, B4, A6, B6] {
            let events = monitor.events_for(p)?;
            let deletions = events.iter().filter(|l| l.starts_with("Deleted")).count();
            let by_hand = if p == A4 || p == A6 { 1 } else { 0 };
            anyhow::ensure!(
                deletions > by_hand && events.last().is_some_and(|l| !l.starts_with("Deleted")),
                "{p}: expected the flush to delete it and petrel to re-add it in \
                 `ip monitor route`, seen {events:#?}"
            );
        }
        Ok(())
    });
}

/// 4. Routes of other protocols are never changed or deleted: at another
///    metric on our prefixes, at our metric (a conflict petrel must not
///    overwrite), and on prefixes petrel does not have.
#[test]
fn foreign_routes_are_never_touched() {
    let lab = bird_lab();
    lab.check(|lab| {
        add_foreign_routes(lab)?;
        let before = foreign_routes(lab)?;
        for p in [A4, A6] {
            check_petrel_route(lab, PETREL, p, &[gateway(p)])
                .context("ours coexists with the foreign route at another metric")?;
        }

        // Churn: repair, flush, withdraw and re-announce.
        lab.exec(PETREL, "ip route del 198.51.100.0/24 proto 200")?;
        wait_petrel_route(lab, PETREL, A4, &[BIRD_V4], REPAIR)?;
        lab.exec(
            PETREL,
            "ip -4 route flush proto 200 && ip -6 route flush proto 200",
        )?;
        for p in [A4, B4, A6, B6] {
            wait_petrel_route(lab, PETREL, p, &[gateway(p)], REPAIR)?;
        }
        lab.birdc(BIRD, "disable static4")?;
        lab.birdc(BIRD, "disable static6")?;
        wait_no_petrel_route(lab, PETREL, A4, PROPAGATE)?;
        wait_no_petrel_route(lab, PETREL, A6, PROPAGATE)?;
        let mid = foreign_routes(lab)?;
        anyhow::ensure!(
            mid == before,
            "foreign routes changed by a withdrawal:\nbefore {before:#?}\nafter {mid:#?}"
        );
        lab.birdc(BIRD, "enable static4")?;
        lab.birdc(BIRD, "enable static6")?;
        wait_petrel_route(lab, PETREL, A4, &[BIRD_V4], PROPAGATE)?;
        wait_petrel_route(lab, PETREL, A6, &[BIRD_V6], PROPAGATE)?;

        // A foreign route replacing ours at our metric is a conflict: left
        // alone while it is there, ours comes back once it is gone.
        for (prefix, foreign) in [
            (
                B4,
                "ip route replace 203.0.113.0/24 via 10.0.0.2 proto static",
            ),
            (
                B6,
                "ip -6 route replace 2001:db8:200::/48 via fd00:10::2 proto static",
            ),
        ] {
            lab.exec(PETREL, foreign)?;
            std::thread::sleep(REPAIR + Duration::from_secs(1));
            let seen = lab.kernel_routes_for(PETREL, prefix)?;
            anyhow::ensure!(
                seen.len() == 1 && seen[0].protocol == "static",
                "{prefix}: petrel must not overwrite a foreign route at its metric; seen {}",
                list(&seen)
            );
            let del = foreign.replace(" replace ", " del ");
            lab.exec(PETREL, &del)?;
            wait_petrel_route(lab, PETREL, prefix, &[gateway(prefix)], REPAIR)
                .context("the conflict is gone: petrel installs its route again")?;

            // Withdrawn while the conflict stands: the foreign route stays.
            lab.exec(PETREL, foreign)?;
            std::thread::sleep(Duration::from_millis(500));
            let proto = if prefix == B4 { "static4b" } else { "static6b" };
            lab.birdc(BIRD, &format!("disable {proto}"))?;
            std::thread::sleep(REPAIR + Duration::from_secs(1));
            let seen = lab.kernel_routes_for(PETREL, prefix)?;
            anyhow::ensure!(
                seen.len() == 1 && seen[0].protocol == "static",
                "{prefix}: a withdrawal must leave the foreign route; seen {}",
                list(&seen)
            );
            lab.exec(PETREL, &del)?;
            lab.birdc(BIRD, &format!("enable {proto}"))?;
            wait_petrel_route(lab, PETREL, prefix, &[gateway(prefix)], PROPAGATE)?;
        }

        let after = foreign_routes(lab)?;
        anyhow::ensure!(
            after == before,
            "foreign routes changed:\nbefore {before:#?}\nafter {after:#?}"
        );
        Ok(())
    });
}

/// 5. A crashed agent (SIGKILL) leaves its routes; the next one adopts them
///    without touching the unchanged ones and sweeps the no longer announced
///    ones only after End-of-RIB.
#[test]
fn restart_keeps_unchanged_routes_and_sweeps_stale_ones() {
    let lab = bird_lab();
    lab.check(|lab| {
        let monitor = RouteMonitor::start(lab, PETREL)?;
        kill_agent(lab, PETREL)?;
        for p in [A4, B4, A6, B6] {
            check_petrel_route(lab, PETREL, p, &[gateway(p)])
                .context("a killed agent leaves its routes")?;
        }
        // While petrel is down, BIRD stops announcing B4 and B6, and holds
        // its sessions down so the new agent starts without any peer.
        lab.birdc(BIRD, "disable static4b")?;
        lab.birdc(BIRD, "disable static6b")?;
        let out = lab.birdc(BIRD, "disable \"petrel*\"")?;
        anyhow::ensure!(
            out.contains("petrel4: disabled") && out.contains("petrel6: disabled"),
            "birdc disable \"petrel*\": {out}"
        );
        let restart = Instant::now();
        lab.start_node(PETREL)?;
        std::thread::sleep(Duration::from_secs(3));
        for p in [A4, B4, A6, B6] {
            check_petrel_route(lab, PETREL, p, &[gateway(p)])
                .context("without End-of-RIB, adopted routes stay")?;
        }
        let out = lab.birdc(BIRD, "enable \"petrel*\"")?;
        anyhow::ensure!(
            out.contains("petrel4: enabled") && out.contains("petrel6: enabled"),
            "birdc enable \"petrel*\": {out}"
        );
        wait_petrel_established(lab, PETREL, BIRD_V4)?;
        wait_petrel_established(lab, PETREL, BIRD_V6)?;
        wait_no_petrel_route(lab, PETREL, B4, PROPAGATE).context("stale B4 swept")?;
        wait_no_petrel_route(lab, PETREL, B6, PROPAGATE).context("stale B6 swept")?;
        eprintln!(
            "stale routes swept {:?} after the restart",
            restart.elapsed()
        );
        std::thread::sleep(Duration::from_secs(1));
        for p in [A4, A6] {
            check_petrel_route(lab, PETREL, p, &[gateway(p)])?;
            let events = monitor.events_for(p)?;
            anyhow::ensure!(
                events.is_empty(),
                "{p} is unchanged: no kernel change expected across the restart, seen {events:?}"
            );
        }
        for p in [B4, B6] {
            let events = monitor.events_for(p)?;
            anyhow::ensure!(
                events.len() == 1 && events[0].starts_with("Deleted"),
                "{p}: expected exactly one deletion, seen {events:?}"
            );
        }
        Ok(())
    });
}

/// 5b. After a crash, the routes of a peer that comes back later than
///    another are kept until that peer's End-of-RIB too: RFC 4724 §4.1
///    defers selection until End-of-RIB from all peers (bounded by a
///    timer), so the first peer's End-of-RIB must not delete and re-add the
///    unchanged routes of the second.
#[test]
fn restart_keeps_routes_of_a_peer_that_comes_back_late() {
    let lab = bird_lab();
    lab.check(|lab| {
        let monitor = RouteMonitor::start(lab, PETREL)?;
        kill_agent(lab, PETREL)?;
        lab.birdc(BIRD, "disable petrel6")?;
        lab.start_node(PETREL)?;
        wait_petrel_established(lab, PETREL, BIRD_V4)?;
        // Well past the IPv4 session's End-of-RIB.
        std::thread::sleep(Duration::from_secs(3));
        for p in [A6, B6] {
            check_petrel_route(lab, PETREL, p, &[BIRD_V6])
                .context("the IPv6 peer is not back yet: its adopted routes must stay")?;
        }
        lab.birdc(BIRD, "enable petrel6")?;
        wait_petrel_established(lab, PETREL, BIRD_V6)?;
        std::thread::sleep(Duration::from_secs(2));
        for p in [A4, B4, A6, B6] {
            check_petrel_route(lab, PETREL, p, &[gateway(p)])?;
            let events = monitor.events_for(p)?;
            anyhow::ensure!(
                events.is_empty(),
                "{p} is unchanged: no kernel change expected across the restart, seen {events:?}"
            );
        }
        Ok(())
    });
}

/// 6. 100,000 routes reach the kernel without the session (hold time 9 s)
///    going down.
#[test]
fn hundred_thousand_routes_keep_the_session_up() {
    const N: u32 = 100_000;
    let lab = deploy("kernel-bulk");
    lab.check(|lab| {
        wait_petrel_established(lab, PETREL, BIRD_V4)?;
        let conf = lab.rundir(BIRD)?.join("bird.conf");
        let mut text = std::fs::read_to_string(&conf)?;
        text.push_str("\nprotocol static bulk {\n  ipv4;\n");
        for i in 0..N {
            writeln!(
                text,
                "  route {}.{}.{}.0/24 blackhole;",
                16 + (i >> 16),
                (i >> 8) & 255,
                i & 255
            )?;
        }
        text.push_str("}\n");
        std::fs::write(&conf, text)?;

        let count = || -> anyhow::Result<u32> {
            let out = lab.exec(PETREL, "ip -4 route show proto 200 | wc -l")?;
            out.trim().parse().context("wc -l output")
        };
        let session_ok = || -> anyhow::Result<()> {
            let p = lab.petrel_peer(PETREL, BIRD_V4)?;
            anyhow::ensure!(
                p.state == "Established" && p.established_transitions == 1,
                "session lost: state {}, established_transitions {}, last_error {:?}",
                p.state,
                p.established_transitions,
                p.last_error
            );
            Ok(())
        };
        let start = Instant::now();
        let out = lab.birdc(BIRD, "configure")?;
        anyhow::ensure!(out.contains("Reconfigured"), "birdc configure: {out}");
        wait_for(
            Duration::from_secs(300),
            "100,000 routes in the kernel",
            || {
                session_ok()?;
                let n = count()?;
                anyhow::ensure!(n == N, "{n} routes of proto 200");
                Ok(())
            },
        )?;
        let install = start.elapsed();
        eprintln!("100,000 routes installed in {install:?} (from `birdc configure`)");
        // Past one more hold time, the session is still the first one.
        let settle = Instant::now();
        while settle.elapsed() < Duration::from_secs(10) {
            session_ok()?;
            std::thread::sleep(Duration::from_secs(1));
        }
        let p = lab.petrel_peer(PETREL, BIRD_V4)?;
        anyhow::ensure!(
            p.prefixes_received >= u64::from(N),
            "prefixes_received {}",
            p.prefixes_received
        );
        anyhow::ensure!(count()? == N, "route count changed after install");
        for p in ["16.0.0.0/24", "16.255.255.0/24", "17.134.159.0/24"] {
            check_petrel_route(lab, PETREL, p, &[BIRD_V4])?;
        }

        let start = Instant::now();
        lab.birdc(BIRD, "disable bulk")?;
        wait_for(Duration::from_secs(300), "100,000 routes removed", || {
            session_ok()?;
            let n = count()?;
            anyhow::ensure!(n == 0, "{n} routes of proto 200 left");
            Ok(())
        })?;
        eprintln!(
            "100,000 routes removed in {:?} (from `birdc disable`)",
            start.elapsed()
        );
        Ok(())
    });
}

/// 7. SIGTERM: the agent removes every route of its own before it exits;
///    routes of other protocols stay.
#[test]
fn sigterm_removes_only_petrels_routes() {
    let lab = bird_lab();
    lab.check(|lab| {
        add_foreign_routes(lab)?;
        let before = foreign_routes(lab)?;
        let took = terminate_agent(lab, PETREL, Duration::from_secs(20))?;
        eprintln!("agent exited {took:?} after SIGTERM");
        let left = all_petrel_routes(lab, PETREL)?;
        anyhow::ensure!(
            left.is_empty(),
            "petrel's routes must be gone when it has exited: {}",
            list(&left)
        );
        let after = foreign_routes(lab)?;
        anyhow::ensure!(
            after == before,
            "foreign routes changed by the shutdown:\nbefore {before:#?}\nafter {after:#?}"
        );
        Ok(())
    });
}

/// 7b. SIGTERM with `--keep-routes-on-exit` (here through its environment
///    variable, as a DaemonSet sets it): the routes stay in the kernel while
///    no agent runs, and the next agent adopts them without changing any.
#[test]
fn sigterm_with_keep_routes_leaves_them_for_the_next_agent() {
    let path = common::topology("kernel-bird").with_file_name("keep-routes.clab.yaml");
    let lab = match Lab::deploy(&path) {
        Ok(lab) => lab,
        Err(e) => panic!("deploying {}: {e:#}", path.display()),
    };
    lab.check(|lab| {
        wait_petrel_established(lab, PETREL, BIRD_V4)?;
        wait_petrel_established(lab, PETREL, BIRD_V6)?;
        for p in [A4, B4, A6, B6] {
            wait_petrel_route(lab, PETREL, p, &[gateway(p)], PROPAGATE)?;
        }
        let monitor = RouteMonitor::start(lab, PETREL)?;
        let took = terminate_agent(lab, PETREL, Duration::from_secs(20))?;
        eprintln!("agent exited {took:?} after SIGTERM");
        for p in [A4, B4, A6, B6] {
            check_petrel_route(lab, PETREL, p, &[gateway(p)])
                .context("the routes stay after SIGTERM with --keep-routes-on-exit")?;
        }
        lab.start_node(PETREL)?;
        wait_petrel_established(lab, PETREL, BIRD_V4)?;
        wait_petrel_established(lab, PETREL, BIRD_V6)?;
        std::thread::sleep(Duration::from_secs(2)); // End-of-RIB and the sweep
        for p in [A4, B4, A6, B6] {
            check_petrel_route(lab, PETREL, p, &[gateway(p)])?;
            let events = monitor.events_for(p)?;
            anyhow::ensure!(
                events.is_empty(),
                "{p}: no kernel change expected across the restart, seen {events:?}"
            );
        }
        Ok(())
    });
}
