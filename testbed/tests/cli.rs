//! The operator CLI against a real agent (`interop-bird` topology: petrel AS
//! 65001 at 10.0.0.1 / fd00:10::1, BIRD AS 65002 at 10.0.0.2 / fd00:10::2,
//! BIRD announcing 198.51.100.0/24 with community 65002:100): `petrel
//! status`, the peer and route filters with JSON and YAML output, and the
//! error for an unreachable agent.
//! Run as root: `cargo test -p petrel-testbed --test cli` (needs
//! `target/debug/petrel` or `PETREL_BIN`).

mod common;

use common::petrel::*;
use common::*;
use petrel_testbed::daemon::petrel_bin;
use std::process::Command;

const PETREL: &str = "petrel";

#[test]
fn cli_against_bird() -> anyhow::Result<()> {
    let lab = deploy("interop-bird");
    wait_petrel_established(&lab, PETREL, "10.0.0.2")?;
    wait_petrel_established(&lab, PETREL, "fd00:10::2")?;
    wait_route(&lab, PETREL, "198.51.100.0/24")?;

    // status: both sessions up, the table lists them, the dataplane line.
    let status = lab.petrel(PETREL, "status")?;
    anyhow::ensure!(
        status.contains("BGP sessions: 2 peers: 2 Established"),
        "status:\n{status}"
    );
    for needle in ["10.0.0.2", "fd00:10::2", "65002", "Dataplane (table 254"] {
        anyhow::ensure!(
            status.contains(needle),
            "no {needle:?} in status:\n{status}"
        );
    }

    // peers ADDR -o json: exactly the IPv4 session.
    let json = lab.petrel(PETREL, "peers 10.0.0.2 -o json")?;
    let peers: serde_json::Value = serde_json::from_str(&json)?;
    let list = peers.as_array().expect("a JSON array");
    anyhow::ensure!(list.len() == 1, "expected one peer:\n{json}");
    anyhow::ensure!(
        list[0]["address"] == "10.0.0.2"
            && list[0]["state"] == "Established"
            && list[0]["peer_as"] == 65002
            && list[0]["local_as"] == 65001,
        "unexpected peer:\n{json}"
    );

    // routes PREFIX -o yaml: BIRD's route with its AS path and community.
    let yaml = lab.petrel(PETREL, "routes 198.51.100.0/24 -o yaml")?;
    let routes: serde_json::Value = serde_saphyr::from_str(&yaml)?;
    let list = routes.as_array().expect("a YAML sequence");
    anyhow::ensure!(!list.is_empty(), "no routes:\n{yaml}");
    for r in list {
        anyhow::ensure!(r["prefix"] == "198.51.100.0/24", "other prefix:\n{yaml}");
    }
    let best = list
        .iter()
        .find(|r| r["best"] == true)
        .ok_or_else(|| anyhow::anyhow!("no best route:\n{yaml}"))?;
    anyhow::ensure!(
        best["next_hop"] == "10.0.0.2"
            && best["as_path"] == serde_json::json!([65002])
            && best["communities"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c == "65002:100")),
        "unexpected best route:\n{yaml}"
    );

    // A prefix nobody announces: non-zero exit, one line.
    let err = lab
        .petrel(PETREL, "routes 192.0.2.0/24")
        .expect_err("no route for 192.0.2.0/24");
    anyhow::ensure!(
        format!("{err:#}").contains("no route for 192.0.2.0/24"),
        "{err:#}"
    );

    // The API socket is for root only.
    let socket = lab
        .node_dir(PETREL)
        .parent()
        .map(|d| d.join("petrel.sock"))
        .ok_or_else(|| anyhow::anyhow!("no runtime dir"))?;
    let mode = std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&socket)?.permissions());
    anyhow::ensure!(
        mode & 0o777 == 0o600,
        "{} has mode {:o}",
        socket.display(),
        mode & 0o777
    );
    Ok(())
}

#[test]
fn unreachable_agent_is_one_line_and_fails() -> anyhow::Result<()> {
    let out = Command::new(petrel_bin()?)
        .args(["--api-socket", "/nonexistent", "peers"])
        .output()?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(!out.status.success(), "exit status {}", out.status);
    anyhow::ensure!(out.stdout.is_empty(), "stdout: {:?}", out.stdout);
    anyhow::ensure!(
        stderr.lines().count() == 1
            && stderr.starts_with("petrel: cannot connect to the agent at /nonexistent: "),
        "stderr: {stderr:?}"
    );
    Ok(())
}
