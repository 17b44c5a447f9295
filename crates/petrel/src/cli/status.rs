//! `petrel status`: a one-screen summary of a running agent in the manner of
//! `calicoctl node status`: sessions per state (RFC 4271 §8.2.2), a compact
//! peer table, the kernel route programming summary, this node's IPAM
//! blocks and the service advertisement counts.

use super::{CliError, connect, table, uptime};
use petrel_proto::{ClientError, pb};
use std::collections::BTreeMap;
use std::path::Path;

/// Session states in the order of RFC 4271 §8.2.2, most useful first.
const STATES: [&str; 6] = [
    "Established",
    "OpenConfirm",
    "OpenSent",
    "Active",
    "Connect",
    "Idle",
];

/// "2 peers: 1 Established, 1 Active" (states in FSM order, then any other).
fn state_counts(peers: &[pb::Peer]) -> String {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for p in peers {
        *counts.entry(p.state.as_str()).or_default() += 1;
    }
    let mut parts: Vec<String> = STATES
        .iter()
        .filter_map(|s| counts.remove(s).map(|n| format!("{n} {s}")))
        .collect();
    parts.extend(counts.into_iter().map(|(s, n)| format!("{n} {s}")));
    let noun = if peers.len() == 1 { "peer" } else { "peers" };
    if parts.is_empty() {
        format!("{} {noun}", peers.len())
    } else {
        format!("{} {noun}: {}", peers.len(), parts.join(", "))
    }
}

/// The INFO column: prefix counts when up, the reason when not.
fn info(p: &pb::Peer) -> String {
    if p.state == "Established" {
        format!(
            "{} received, {} accepted, {} sent",
            p.prefixes_received, p.prefixes_accepted, p.prefixes_advertised
        )
    } else if !p.last_error.is_empty() {
        p.last_error.clone()
    } else if p.passive {
        "passive: waiting for the peer to connect".into()
    } else {
        String::new()
    }
}

/// Renders the summary. `node` is shown when known.
pub fn status_text(node: Option<&str>, peers: &[pb::Peer], d: &pb::GetDataplaneResponse) -> String {
    let mut out = String::from("petrel agent is running");
    if let Some(n) = node.filter(|n| !n.is_empty()) {
        out.push_str(&format!(" on node {n}"));
    }
    out.push_str(".\n\n");
    out.push_str(&format!("BGP sessions: {}\n", state_counts(peers)));
    if !peers.is_empty() {
        let mut t = table(&["PEER ADDRESS", "PEER", "AS", "STATE", "UPTIME", "INFO"]);
        for p in peers {
            t.add_row(vec![
                p.address.clone(),
                p.name.clone(),
                p.peer_as.to_string(),
                p.state.clone(),
                uptime(&p.state, p.uptime_seconds),
                info(p),
            ]);
        }
        out.push_str(&format!("{t}\n"));
    }
    out.push_str(&format!(
        "\nDataplane (table {}, protocol {}): {} desired, {} installed, {} stale, converged: {}\n",
        d.table,
        d.protocol,
        d.desired,
        d.installed,
        d.stale,
        if d.converged { "yes" } else { "no" }
    ));
    let problems = [
        (d.unresolved.len(), "with a next hop that does not resolve"),
        (d.conflicts.len(), "held by another protocol"),
        (d.errors.len(), "rejected by the kernel"),
    ];
    for (n, what) in problems {
        if n > 0 {
            out.push_str(&format!(
                "  {n} {} {what} (see `petrel dataplane`)\n",
                if n == 1 { "route" } else { "routes" }
            ));
        }
    }
    out
}

/// The `Configuration:` line of the summary, one line per invalid object,
/// and the `Draining:` line while the node drains (RFC 8326).
pub fn config_text(c: &pb::GetConfigStatusResponse) -> String {
    let mut out = config_problems_text(c);
    if !c.draining.is_empty() {
        out.push_str(&format!(
            "Draining: {} (routes advertised with GRACEFUL_SHUTDOWN)\n",
            c.draining
        ));
    }
    out
}

fn config_problems_text(c: &pb::GetConfigStatusResponse) -> String {
    if !c.loaded {
        return "Configuration: not loaded yet\n".into();
    }
    if c.problems.is_empty() {
        return "Configuration: ok\n".into();
    }
    let objects: std::collections::BTreeSet<(&str, &str)> = c
        .problems
        .iter()
        .map(|p| (p.kind.as_str(), p.name.as_str()))
        .collect();
    let mut out = format!(
        "Configuration: {} invalid {} (last valid version kept, or left out)\n",
        objects.len(),
        if objects.len() == 1 {
            "object"
        } else {
            "objects"
        }
    );
    for p in &c.problems {
        out.push_str(&format!("  {}/{}: {}\n", p.kind, p.name, p.reason));
    }
    out
}

/// The IPAM and service lines of the summary (each when the agent serves it).
pub fn extras_text(
    ipam: Option<&pb::GetIpamStatusResponse>,
    services: Option<&pb::ListServicesResponse>,
) -> String {
    let mut out = String::new();
    if let Some(s) = ipam {
        let mine: Vec<&str> = s
            .blocks
            .iter()
            .filter(|b| b.owner_node == s.node)
            .map(|b| b.cidr.as_str())
            .collect();
        out.push_str(&format!(
            "IPAM: {}, {} {} of this node{}{}, {} pod {}\n",
            if s.ready {
                "ready".to_string()
            } else {
                format!("not ready ({})", s.not_ready_reason)
            },
            mine.len(),
            if mine.len() == 1 { "block" } else { "blocks" },
            if mine.is_empty() { "" } else { ": " },
            mine.join(", "),
            s.allocations.len(),
            if s.allocations.len() == 1 {
                "allocation"
            } else {
                "allocations"
            }
        ));
        if !s.last_error.is_empty() {
            out.push_str(&format!("  last IPAM error: {}\n", s.last_error));
        }
    }
    if let Some(s) = services.filter(|s| s.enabled) {
        out.push_str(&format!(
            "Services: {} prefixes advertised, {} addresses not advertised{}\n",
            s.advertised.len(),
            s.rejections.len(),
            if s.rejections.is_empty() {
                ""
            } else {
                " (see `petrel services`)"
            }
        ));
    }
    out
}

/// `petrel status`; the node name comes from `NODE_NAME` when set (as in the
/// DaemonSet), else from the agent's IPAM status.
pub async fn status(socket: &Path, node: Option<&str>) -> Result<(), CliError> {
    let mut c = connect(socket).await?;
    let peers = c
        .list_peers(pb::ListPeersRequest {})
        .await
        .map_err(ClientError::from)?
        .into_inner()
        .peers;
    let d = c
        .get_dataplane(pb::GetDataplaneRequest {})
        .await
        .map_err(ClientError::from)?
        .into_inner();
    // Optional parts: an agent without them still gets a summary.
    let ipam = super::ipam::status(socket).await.ok();
    let services = c
        .list_services(pb::ListServicesRequest {})
        .await
        .ok()
        .map(|r| r.into_inner());
    let config = c
        .get_config_status(pb::GetConfigStatusRequest {})
        .await
        .ok()
        .map(|r| r.into_inner());
    let node = node.or(ipam.as_ref().map(|s| s.node.as_str()));
    print!("{}", status_text(node, &peers, &d));
    if let Some(c) = &config {
        print!("{}", config_text(c));
    }
    print!("{}", extras_text(ipam.as_ref(), services.as_ref()));
    Ok(())
}
