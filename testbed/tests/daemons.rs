//! The testbed itself: BIRD, FRR and GoBGP peer with each other in the
//! `daemons` topology (no petrel involved), and labs clean up after
//! themselves. Run as root: `cargo test -p petrel-testbed --test daemons`.

mod common;

use common::*;
use petrel_testbed::{Lab, wait_for};
use std::path::PathBuf;
use std::process::Command;

/// Every (node, neighbor address) pair of the `daemons` topology.
const SESSIONS: &[(&str, &str)] = &[
    ("bird", "10.10.12.2"),
    ("bird", "fd00:12::2"),
    ("bird", "10.10.31.1"),
    ("bird", "fd00:31::1"),
    ("frr", "10.10.12.1"),
    ("frr", "fd00:12::1"),
    ("frr", "10.10.23.2"),
    ("frr", "fd00:23::2"),
    ("gobgp", "10.10.23.1"),
    ("gobgp", "fd00:23::1"),
    ("gobgp", "10.10.31.2"),
    ("gobgp", "fd00:31::2"),
];

fn all_up(lab: &Lab) -> anyhow::Result<()> {
    for (node, peer) in SESSIONS {
        wait_established(lab, node, peer)?;
    }
    Ok(())
}

#[test]
fn daemons_exchange_routes_withdraw_and_recover_from_restart() {
    let lab = deploy("daemons");
    lab.check(|lab| {
        all_up(lab)?;
        // Routes with attributes, one per (origin daemon, family).
        let r = wait_route(lab, "bird", "192.0.2.20/32")?;
        check_route(&r, &[65020], "10.10.12.2", &["65020:20"], &["65020:1:20"])?;
        let r = wait_route(lab, "frr", "192.0.2.30/32")?;
        check_route(&r, &[65030], "10.10.23.2", &["65030:30"], &[])?;
        let r = wait_route(lab, "gobgp", "2001:db8:10::/48")?;
        check_route(&r, &[65010], "fd00:31::2", &["65010:10"], &["65010:1:10"])?;
        let r = wait_route(lab, "bird", "2001:db8:20::/48")?;
        check_route(&r, &[65020], "fd00:12::2", &["65020:20"], &["65020:1:20"])?;
        // zebra installed FRR's best route in the node's kernel table.
        wait_for(PROPAGATE, "192.0.2.30/32 in frr's kernel table", || {
            let out = lab.exec("frr", "ip route show 192.0.2.30/32")?;
            anyhow::ensure!(out.contains("via 10.10.23.2"), "ip route shows {out:?}");
            Ok(())
        })?;

        // Withdrawal: GoBGP deletes its route; both neighbors lose every path.
        lab.gobgp("gobgp", "global rib del 192.0.2.30/32 -a ipv4")?;
        wait_no_route(lab, "frr", "192.0.2.30/32")?;
        wait_no_route(lab, "bird", "192.0.2.30/32")?;

        // Restart: sessions come back and the re-injected routes are relearned.
        lab.restart_node("gobgp")?;
        for (node, peer) in SESSIONS {
            wait_established(lab, node, peer)?;
        }
        let r = wait_route(lab, "bird", "2001:db8:30::/48")?;
        check_route(&r, &[65030], "fd00:31::1", &["65030:30"], &[])?;
        wait_route(lab, "bird", "192.0.2.30/32")?;
        Ok(())
    });
}

#[test]
fn daemons_report_administrative_shutdown_both_ways() {
    let lab = deploy("daemons");
    lab.check(|lab| {
        all_up(lab)?;
        // BIRD disables its session: FRR sees Cease/Administrative Shutdown.
        lab.birdc("bird", "disable frr4")?;
        wait_session_error(lab, "frr", "10.10.12.1", &["administrative shutdown"])?;
        lab.birdc("bird", "enable frr4")?;
        wait_established(lab, "frr", "10.10.12.1")?;

        // FRR shuts its neighbor down: BIRD reports the received Cease.
        lab.vtysh(
            "frr",
            "configure terminal\nrouter bgp 65020\nneighbor fd00:12::1 shutdown",
        )?;
        wait_session_error(lab, "bird", "fd00:12::2", &["administrative shutdown"])?;
        Ok(())
    });
}

/// A throw-away topology directory for tests that need their own files.
struct TempTopo(PathBuf);

impl TempTopo {
    fn new(tag: &str, files: &[(&str, &str)]) -> TempTopo {
        let dir = std::env::temp_dir().join(format!("ptt{}-{tag}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        TempTopo(dir)
    }
    fn file(&self) -> PathBuf {
        self.0.join("topology.clab.yaml")
    }
}

impl Drop for TempTopo {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn lab_links_nodes_reports_exec_errors_and_cleans_up() {
    let topo = TempTopo::new(
        "linux",
        &[(
            "topology.clab.yaml",
            r#"
name: two-hosts
topology:
  nodes:
    a: { kind: linux, exec: ["ip addr add 192.0.2.1/30 dev eth1", "ip addr add fd00:99::1/64 dev eth1"] }
    b: { kind: linux, exec: ["ip addr add 192.0.2.2/30 dev eth1", "ip addr add fd00:99::2/64 dev eth1"] }
  links:
    - endpoints: ["a:eth1", "b:eth1"]
"#,
        )],
    );
    assert!(is_root_or_panic());
    let lab = Lab::deploy(&topo.file()).unwrap();
    let prefix = lab.prefix().to_string();
    let root = lab.root().to_path_buf();
    lab.check(|lab| {
        lab.exec("a", "ping -c1 -W2 192.0.2.2")?;
        lab.exec("b", "ping -c1 -W2 fd00:99::1")?;
        let err = format!("{:#}", lab.exec("a", "echo oops >&2; exit 3").unwrap_err());
        anyhow::ensure!(
            err.contains("oops"),
            "exec error should carry stderr, got {err}"
        );
        anyhow::ensure!(
            netns_list().contains(&format!("{prefix}-a")),
            "namespace {prefix}-a should exist while the lab runs"
        );
        Ok(())
    });
    drop(lab);
    let left = netns_list();
    assert!(
        !left.contains(&prefix),
        "namespaces of {prefix} left after drop: {left}"
    );
    assert!(!root.exists(), "{} left after drop", root.display());
}

#[test]
fn broken_daemon_config_fails_deploy_with_the_daemons_words() {
    let topo = TempTopo::new(
        "badbird",
        &[
            (
                "topology.clab.yaml",
                "name: bad\ntopology:\n  nodes:\n    r: { kind: bird, config: bird.conf }\n",
            ),
            (
                "bird.conf",
                "router id 10.0.0.1;\nprotocol bgp x { this is not bird }\n",
            ),
        ],
    );
    assert!(is_root_or_panic());
    let err = match Lab::deploy(&topo.file()) {
        Ok(_) => panic!("deploying a broken bird.conf should fail"),
        Err(e) => format!("{e:#}"),
    };
    assert!(
        err.contains("node r (bird)") && err.contains("syntax error"),
        "error should name the node and quote BIRD's complaint, got: {err}"
    );
}

fn is_root_or_panic() -> bool {
    assert!(
        petrel_testbed::is_root(),
        "the testbed integration tests must run as root"
    );
    true
}

#[test]
fn testbed_binary_deploys_waits_shows_and_exits() {
    assert!(is_root_or_panic());
    let out = Command::new(env!("CARGO_BIN_EXE_testbed"))
        .args(["deploy", "--wait", "30", "--show", "--exit"])
        .arg(topology("daemons"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "testbed failed: {stdout}\n{stderr}");
    for expected in [
        "all 6 BGP sessions Established (each seen from both ends: 12 session ends)",
        "===== bird =====",
        "===== frr =====",
        "===== gobgp =====",
        "birdc -s ",
    ] {
        assert!(
            stdout.contains(expected),
            "expected {expected:?} in:\n{stdout}"
        );
    }
    let prefix = stdout
        .split("prefix ")
        .nth(1)
        .and_then(|s| s.split(',').next())
        .unwrap_or_default()
        .to_string();
    assert!(prefix.starts_with("pt"), "no lab prefix in:\n{stdout}");
    assert!(
        !netns_list().contains(&prefix),
        "{prefix} namespaces left behind"
    );
}
