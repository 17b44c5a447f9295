//! petrel against BIRD 2, FRR and GoBGP, over IPv4 and IPv6 sessions
//! (`interop-<daemon>` topologies: petrel AS 65001 at 10.0.0.1 / fd00:10::1,
//! the daemon AS 65002 at 10.0.0.2 / fd00:10::2).
//!
//! One test per daemon walks through, in order: sessions up on both sides;
//! routes both ways with AS path, next hop and communities; withdrawal both
//! ways; daemon restart; NOTIFICATION both ways (daemon administrative
//! shutdown, petrel peer de-configured); wrong peer AS with connect backoff.
//! Run as root: `cargo test -p petrel-testbed --test interop` (needs
//! `target/debug/petrel` or `PETREL_BIN`).

mod common;

use anyhow::Context;
use common::petrel::*;
use common::*;
use petrel_testbed::{Lab, wait_for};
use std::time::{Duration, Instant};

const PETREL: &str = "petrel";
const PETREL_V4: &str = "10.0.0.1";
const PETREL_V6: &str = "fd00:10::1";
const DAEMON_V4: &str = "10.0.0.2";
const DAEMON_V6: &str = "fd00:10::2";
/// What the daemon announces (first stays, second gets withdrawn).
const DAEMON_PREFIXES_V4: [&str; 2] = ["198.51.100.0/24", "203.0.113.0/24"];
const DAEMON_PREFIXES_V6: [&str; 2] = ["2001:db8:100::/48", "2001:db8:200::/48"];
/// What petrel originates (serviceClusterIPs).
const PETREL_PREFIX_V4: &str = "10.96.0.0/12";
const PETREL_PREFIX_V6: &str = "fd00:96::/108";
const BGPCONF: &str = "bgpconfiguration.yaml";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Daemon {
    Bird,
    Frr,
    Gobgp,
}

impl Daemon {
    fn node(self) -> &'static str {
        match self {
            Daemon::Bird => "bird",
            Daemon::Frr => "frr",
            Daemon::Gobgp => "gobgp",
        }
    }

    /// Withdraws one announced prefix on the daemon side.
    fn withdraw(self, lab: &Lab, prefix: &str) -> anyhow::Result<()> {
        let v6 = prefix.contains(':');
        match self {
            Daemon::Bird => {
                // One static protocol per prefix; see interop-bird/bird.conf.
                let proto = if v6 { "static6b" } else { "static4b" };
                lab.birdc("bird", &format!("disable {proto}"))?;
            }
            Daemon::Frr => {
                let af = if v6 { "ipv6" } else { "ipv4" };
                lab.vtysh(
                    "frr",
                    &format!(
                        "configure terminal\nrouter bgp 65002\naddress-family {af} unicast\n\
                         no network {prefix}"
                    ),
                )?;
            }
            Daemon::Gobgp => {
                let af = if v6 { "ipv6" } else { "ipv4" };
                lab.gobgp("gobgp", &format!("global rib del {prefix} -a {af}"))?;
            }
        }
        Ok(())
    }

    /// Asks petrel to re-send its IPv4 routes (ROUTE-REFRESH, RFC 2918).
    /// Returns false for GoBGP, whose `softresetin` re-applies policy to its
    /// own stored Adj-RIB-In and sends no ROUTE-REFRESH.
    fn request_refresh(self, lab: &Lab) -> anyhow::Result<bool> {
        match self {
            Daemon::Bird => lab.birdc("bird", "reload in petrel4").map(|_| true),
            Daemon::Frr => lab
                .vtysh(
                    "frr",
                    &format!("clear bgp ipv4 unicast {PETREL_V4} soft in"),
                )
                .map(|_| true),
            Daemon::Gobgp => Ok(false),
        }
    }

    /// Whether the daemon negotiates enhanced route refresh (RFC 7313), so
    /// petrel frames its answer with BoRR and EoRR.
    fn enhanced_route_refresh(self) -> bool {
        matches!(self, Daemon::Bird | Daemon::Frr)
    }

    /// Administratively shuts the session with `petrel_addr` down (the
    /// daemon sends Cease / Administrative Shutdown) or brings it back.
    fn admin_shutdown(self, lab: &Lab, petrel_addr: &str, down: bool) -> anyhow::Result<()> {
        match self {
            Daemon::Bird => {
                let proto = if petrel_addr.contains(':') {
                    "petrel6"
                } else {
                    "petrel4"
                };
                let verb = if down { "disable" } else { "enable" };
                lab.birdc("bird", &format!("{verb} {proto}"))?;
            }
            Daemon::Frr => {
                let no = if down { "" } else { "no " };
                lab.vtysh(
                    "frr",
                    &format!(
                        "configure terminal\nrouter bgp 65002\n{no}neighbor {petrel_addr} shutdown"
                    ),
                )?;
            }
            Daemon::Gobgp => {
                let verb = if down { "disable" } else { "enable" };
                lab.gobgp("gobgp", &format!("neighbor {petrel_addr} {verb}"))?;
            }
        }
        Ok(())
    }
}

#[test]
fn interop_bird() {
    interop(Daemon::Bird);
}

#[test]
fn interop_frr() {
    interop(Daemon::Frr);
}

#[test]
fn interop_gobgp() {
    interop(Daemon::Gobgp);
}

fn interop(d: Daemon) {
    let lab = deploy(&format!("interop-{}", d.node()));
    lab.check(|lab| {
        sessions_up(lab, d).context("step 1: sessions Established on both sides")?;
        routes_both_ways(lab, d).context("step 2: routes and attributes both ways")?;
        route_refresh(lab, d).context("step 2b: ROUTE-REFRESH from the daemon")?;
        daemon_withdraws(lab, d).context("step 3: withdrawal by the daemon")?;
        petrel_withdraws(lab, d)
            .context("step 4: withdrawal by petrel (serviceClusterIPs edit)")?;
        daemon_restart(lab, d).context("step 5: daemon restart")?;
        daemon_notification(lab, d)
            .context("step 6: daemon sends Cease/Administrative Shutdown")?;
        petrel_notification(lab, d).context("step 7: petrel sends Cease/Peer De-configured")?;
        wrong_peer_as(lab, d).context("step 8: wrong peer AS")?;
        Ok(())
    });
}

/// The daemon asks for a route refresh: petrel answers with its routes (and
/// BoRR/EoRR when enhanced route refresh is negotiated), the session stays up
/// and the daemon keeps petrel's routes.
fn route_refresh(lab: &Lab, d: Daemon) -> anyhow::Result<()> {
    let before = wait_petrel_established(lab, PETREL, DAEMON_V4)?;
    if !d.request_refresh(lab)? {
        return Ok(());
    }
    let min_sent = if d.enhanced_route_refresh() { 3 } else { 1 };
    let after = wait_for(PROPAGATE, "petrel to answer the ROUTE-REFRESH", || {
        let p = lab.petrel_peer(PETREL, DAEMON_V4)?;
        anyhow::ensure!(
            p.messages_received > before.messages_received
                && p.messages_sent >= before.messages_sent + min_sent,
            "messages received {} -> {}, sent {} -> {} (want at least {min_sent} more)",
            before.messages_received,
            p.messages_received,
            before.messages_sent,
            p.messages_sent
        );
        Ok(p)
    })?;
    anyhow::ensure!(
        after.established_transitions == before.established_transitions
            && after.state == "Established",
        "a route refresh must not reset the session: {after:?}"
    );
    if d == Daemon::Frr {
        // FRR counts petrel's BoRR and EoRR as received ROUTE-REFRESH messages.
        let json = lab.vtysh("frr", &format!("show bgp neighbors {PETREL_V4} json"))?;
        let v: serde_json::Value = serde_json::from_str(&json)?;
        let got = v[PETREL_V4]["messageStats"]["routeRefreshRecv"]
            .as_u64()
            .unwrap_or(0);
        anyhow::ensure!(
            got >= 2,
            "FRR saw {got} ROUTE-REFRESH messages from petrel, expected BoRR and EoRR"
        );
    }
    wait_route(lab, d.node(), PETREL_PREFIX_V4)?;
    if d == Daemon::Frr {
        // The other direction: FRR re-sends its routes framed by BoRR/EoRR;
        // petrel must keep every route FRR re-sent (RFC 7313 §4).
        let before = lab.petrel_peer(PETREL, DAEMON_V4)?;
        lab.vtysh(
            "frr",
            &format!("clear bgp ipv4 unicast {PETREL_V4} soft out"),
        )?;
        wait_for(
            PROPAGATE,
            "FRR's BoRR, UPDATE and EoRR to reach petrel",
            || {
                let p = lab.petrel_peer(PETREL, DAEMON_V4)?;
                anyhow::ensure!(
                    p.messages_received >= before.messages_received + 3,
                    "messages received {} -> {}",
                    before.messages_received,
                    p.messages_received
                );
                Ok(())
            },
        )?;
        std::thread::sleep(Duration::from_secs(1));
        for prefix in DAEMON_PREFIXES_V4 {
            lab.best_route(PETREL, prefix)
                .with_context(|| format!("{prefix} must survive FRR's enhanced route refresh"))?;
        }
    }
    Ok(())
}

fn sessions_up(lab: &Lab, d: Daemon) -> anyhow::Result<()> {
    for (petrel_addr, daemon_addr) in [(PETREL_V4, DAEMON_V4), (PETREL_V6, DAEMON_V6)] {
        let p = wait_petrel_established(lab, PETREL, daemon_addr)?;
        anyhow::ensure!(
            p.local_as == 65001 && p.peer_as == 65002,
            "petrel peer {daemon_addr}: expected local_as 65001 / peer_as 65002, seen {} / {}",
            p.local_as,
            p.peer_as
        );
        anyhow::ensure!(
            p.peer_router_id.as_deref() == Some("10.0.0.2"),
            "petrel peer {daemon_addr}: expected peer_router_id 10.0.0.2, seen {:?}",
            p.peer_router_id
        );
        wait_established(lab, d.node(), petrel_addr)?;
    }
    Ok(())
}

fn routes_both_ways(lab: &Lab, d: Daemon) -> anyhow::Result<()> {
    for (prefixes, next_hop) in [
        (DAEMON_PREFIXES_V4, DAEMON_V4),
        (DAEMON_PREFIXES_V6, DAEMON_V6),
    ] {
        for prefix in prefixes {
            let r = wait_route(lab, PETREL, prefix)?;
            check_route(&r, &[65002], next_hop, &["65002:100"], &["65002:1:2"])
                .with_context(|| format!("petrel's route for {prefix}"))?;
        }
    }
    for (prefix, next_hop) in [(PETREL_PREFIX_V4, PETREL_V4), (PETREL_PREFIX_V6, PETREL_V6)] {
        let r = wait_route(lab, d.node(), prefix)?;
        check_route(&r, &[65001], next_hop, &["65001:100"], &["65001:1:100"])
            .with_context(|| format!("{}'s route for {prefix}", d.node()))?;
    }
    for addr in [DAEMON_V4, DAEMON_V6] {
        let p = lab.petrel_peer(PETREL, addr)?;
        anyhow::ensure!(
            p.prefixes_received >= 2 && p.prefixes_accepted >= 2 && p.prefixes_advertised >= 1,
            "petrel peer {addr}: expected >= 2 received, >= 2 accepted, >= 1 advertised; seen \
             {} / {} / {}",
            p.prefixes_received,
            p.prefixes_accepted,
            p.prefixes_advertised
        );
    }
    Ok(())
}

fn daemon_withdraws(lab: &Lab, d: Daemon) -> anyhow::Result<()> {
    d.withdraw(lab, DAEMON_PREFIXES_V4[1])?;
    d.withdraw(lab, DAEMON_PREFIXES_V6[1])?;
    wait_no_route(lab, PETREL, DAEMON_PREFIXES_V4[1])?;
    wait_no_route(lab, PETREL, DAEMON_PREFIXES_V6[1])?;
    // Only what was withdrawn is gone.
    lab.best_route(PETREL, DAEMON_PREFIXES_V4[0])?;
    lab.best_route(PETREL, DAEMON_PREFIXES_V6[0])?;
    Ok(())
}

/// petrel's `BGPConfiguration` advertising `cidrs` as serviceClusterIPs,
/// each with the communities of the topology's file.
fn bgp_configuration(cidrs: &[&str]) -> String {
    let mut s = String::from(
        "apiVersion: petrel.dev/v1\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  \
         asNumber: 65001\n  nodeToNodeMeshEnabled: false\n  serviceClusterIPs:\n",
    );
    for c in cidrs {
        s.push_str(&format!("    - cidr: {c}\n"));
    }
    s.push_str(
        "  communities:\n    - name: svc\n      value: \"65001:100\"\n    - name: svc-large\n      \
         value: \"65001:1:100\"\n  prefixAdvertisements:\n",
    );
    for c in cidrs {
        s.push_str(&format!(
            "    - cidr: {c}\n      communities: [svc, svc-large]\n"
        ));
    }
    s
}

fn petrel_withdraws(lab: &Lab, d: Daemon) -> anyhow::Result<()> {
    let original = read_manifest(lab, PETREL, BGPCONF)?;
    write_manifest(
        lab,
        PETREL,
        BGPCONF,
        &bgp_configuration(&[PETREL_PREFIX_V6]),
    )?;
    wait_no_route(lab, d.node(), PETREL_PREFIX_V4)?;
    lab.best_route(d.node(), PETREL_PREFIX_V6)
        .context("the IPv6 service CIDR must stay advertised")?;

    write_manifest(
        lab,
        PETREL,
        BGPCONF,
        &bgp_configuration(&[PETREL_PREFIX_V4]),
    )?;
    wait_no_route(lab, d.node(), PETREL_PREFIX_V6)?;
    let r =
        wait_route(lab, d.node(), PETREL_PREFIX_V4).context("re-adding the IPv4 service CIDR")?;
    check_route(&r, &[65001], PETREL_V4, &["65001:100"], &["65001:1:100"])?;

    write_manifest(lab, PETREL, BGPCONF, &original)?;
    let r = wait_route(lab, d.node(), PETREL_PREFIX_V6)?;
    check_route(&r, &[65001], PETREL_V6, &["65001:100"], &["65001:1:100"])?;
    lab.best_route(d.node(), PETREL_PREFIX_V4)?;
    Ok(())
}

fn daemon_restart(lab: &Lab, d: Daemon) -> anyhow::Result<()> {
    let before = lab.petrel_peer(PETREL, DAEMON_V4)?.established_transitions;
    lab.stop_node(d.node())?;
    wait_for(PROPAGATE, "petrel to notice the daemon stopped", || {
        let p = lab.petrel_peer(PETREL, DAEMON_V4)?;
        anyhow::ensure!(p.state != "Established", "peer still {}", p.state);
        Ok(())
    })?;
    lab.start_node(d.node())?;
    sessions_up(lab, d)?;
    let after = lab.petrel_peer(PETREL, DAEMON_V4)?.established_transitions;
    anyhow::ensure!(
        after > before,
        "established_transitions should grow across the restart: before {before}, after {after}"
    );
    // The restarted daemon announces all four prefixes again (its config is
    // reloaded) and relearns petrel's.
    for prefix in DAEMON_PREFIXES_V4.iter().chain(&DAEMON_PREFIXES_V6) {
        let r = wait_route(lab, PETREL, prefix)?;
        check_route(
            &r,
            &[65002],
            if prefix.contains(':') {
                DAEMON_V6
            } else {
                DAEMON_V4
            },
            &["65002:100"],
            &[],
        )?;
    }
    wait_route(lab, d.node(), PETREL_PREFIX_V4)?;
    wait_route(lab, d.node(), PETREL_PREFIX_V6)?;
    Ok(())
}

fn daemon_notification(lab: &Lab, d: Daemon) -> anyhow::Result<()> {
    d.admin_shutdown(lab, PETREL_V4, true)?;
    wait_petrel_error(lab, PETREL, DAEMON_V4, &["administrative shutdown"])?;
    wait_no_route(lab, PETREL, DAEMON_PREFIXES_V4[0])
        .context("routes of a shut-down session must be withdrawn")?;
    d.admin_shutdown(lab, PETREL_V4, false)?;
    wait_petrel_established(lab, PETREL, DAEMON_V4)?;
    wait_route(lab, PETREL, DAEMON_PREFIXES_V4[0])?;
    Ok(())
}

fn petrel_notification(lab: &Lab, d: Daemon) -> anyhow::Result<()> {
    remove_manifest(lab, PETREL, "bgppeer-v6.yaml")?;
    wait_session_error(
        lab,
        d.node(),
        PETREL_V6,
        &["de-configured", "deconfigured", "unconfigured"],
    )?;
    wait_petrel_peer_gone(lab, PETREL, DAEMON_V6)?;
    wait_no_route(lab, PETREL, DAEMON_PREFIXES_V6[0])?;
    // A de-configured peer must drop petrel's routes at once, not keep them
    // for a graceful-restart time (RFC 8538 §5: Hard Reset).
    wait_no_route(lab, d.node(), PETREL_PREFIX_V6)
        .context("the de-configured daemon still routes to petrel")?;
    Ok(())
}

fn wrong_peer_as(lab: &Lab, d: Daemon) -> anyhow::Result<()> {
    write_manifest(
        lab,
        PETREL,
        "bgppeer-v4.yaml",
        &bgp_peer(&format!("{}-v4", d.node()), DAEMON_V4, 65099, ""),
    )?;
    let p = wait_for(UP, "petrel or the daemon to report Bad Peer AS", || {
        let p = lab.petrel_peer(PETREL, DAEMON_V4)?;
        let mine = p
            .last_error
            .clone()
            .unwrap_or_default()
            .to_ascii_lowercase();
        let theirs = lab
            .session(d.node(), PETREL_V4)?
            .last_error
            .unwrap_or_default()
            .to_ascii_lowercase();
        anyhow::ensure!(
            p.peer_as == 65099 && (mine.contains("bad peer as") || theirs.contains("bad peer as")),
            "petrel peer_as {} last_error {:?}; {} says {theirs:?}",
            p.peer_as,
            p.last_error,
            d.node()
        );
        Ok(p)
    })?;
    let window = Duration::from_secs(20);
    let start = Instant::now();
    std::thread::sleep(window);
    anyhow::ensure!(
        lab.is_running(PETREL)?,
        "the agent exited after a Bad Peer AS (it must keep running)"
    );
    let later = lab.petrel_peer(PETREL, DAEMON_V4)?;
    anyhow::ensure!(
        later.state != "Established",
        "a session with the wrong peer AS must not come up, state {}",
        later.state
    );
    let attempts = later
        .connection_attempts
        .saturating_sub(p.connection_attempts);
    anyhow::ensure!(
        attempts <= 6,
        "connection attempts should back off: expected <= 6 in {:?}, seen {attempts} \
         ({} -> {})",
        start.elapsed(),
        p.connection_attempts,
        later.connection_attempts
    );
    Ok(())
}

/// The generated configuration used for withdrawals must be the topology's
/// own file when both CIDRs are advertised (otherwise step 4 tests something
/// else than the lab starts with).
#[test]
fn generated_bgp_configuration_matches_the_topology_files() {
    let generated: serde_json::Value =
        serde_saphyr::from_str(&bgp_configuration(&[PETREL_PREFIX_V4, PETREL_PREFIX_V6])).unwrap();
    for d in ["bird", "frr", "gobgp"] {
        let path = topology(&format!("interop-{d}"))
            .with_file_name("petrel")
            .join(BGPCONF);
        let text = std::fs::read_to_string(&path).unwrap();
        let file: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(
            file,
            generated,
            "{} differs from bgp_configuration()",
            path.display()
        );
    }
}
