//! The command-line client: `petrel peers`, `routes`, `dataplane`,
//! `status`, `services`, `bfd` ([`bfd`]), `ipam` ([`ipam`]), `explain` ([`explain`]) and
//! `log-level` are thin clients of the management API that print a table,
//! JSON or YAML; `petrel convert-calico` translates Calico manifests
//! ([`convert`]). Related RFCs: RFC 4271 §8 (the session states shown),
//! §3.2 (Adj-RIB-In, Loc-RIB, Adj-RIB-Out).

pub mod bfd;
pub mod convert;
pub mod events;
pub mod explain;
pub mod ipam;
mod routes;
pub(crate) mod status;

pub use routes::{
    RouteView, kernel_routes_text, log_level, peer_routes_text, routes, services, services_text,
};
pub use status::{status, status_text};

use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use ipnet::IpNet;
use petrel_proto::{ClientError, pb};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// Output format of the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    /// The table with more columns.
    Wide,
    Json,
    Yaml,
}

/// Errors of the CLI commands.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(transparent)]
    Api(#[from] ClientError),
    /// The agent's socket cannot be reached: one line, the root cause only.
    #[error(
        "cannot connect to the agent at {path}: {reason} (is `petrel agent` running with this --api-socket?)"
    )]
    Unreachable { path: PathBuf, reason: String },
    #[error("no peer with address or name {0:?}")]
    NoPeer(String),
    #[error("no route for {0}")]
    NoRoute(IpNet),
    #[error("this agent runs without IPAM")]
    NoIpam,
    #[error("IPAM check found {0} problem(s)")]
    Inconsistent(usize),
    #[error("{0}")]
    Usage(String),
    #[error("cannot encode {format}: {reason}")]
    Encode {
        format: &'static str,
        reason: String,
    },
}

/// Connects to the agent, turning a connection failure into
/// [`CliError::Unreachable`] with the innermost cause (e.g. "No such file or
/// directory") rather than tonic's chain of "transport error"s.
pub(crate) async fn connect(
    socket: &Path,
) -> Result<pb::agent_service_client::AgentServiceClient<tonic::transport::Channel>, CliError> {
    petrel_proto::connect(socket).await.map_err(|e| match e {
        ClientError::Connect { path, source } => {
            let mut cause: &dyn std::error::Error = &source;
            while let Some(next) = cause.source() {
                cause = next;
            }
            CliError::Unreachable {
                path,
                reason: cause.to_string(),
            }
        }
        other => CliError::Api(other),
    })
}

/// Parses a route query: a prefix (`10.0.0.0/8`) or an address (a host prefix).
pub fn parse_prefix(s: &str) -> Result<IpNet, String> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Ok(n.trunc());
    }
    s.parse::<IpAddr>()
        .map(IpNet::from)
        .map_err(|_| format!("{s:?} is neither a prefix (10.0.0.0/8) nor an address"))
}

/// Peers whose address (compared as an IP address) or name is `query`.
pub fn filter_peers(peers: Vec<pb::Peer>, query: &str) -> Vec<pb::Peer> {
    let ip = query.parse::<IpAddr>().ok();
    peers
        .into_iter()
        .filter(|p| match ip {
            Some(ip) => p.address.parse::<IpAddr>().ok() == Some(ip),
            None => p.name == query,
        })
        .collect()
}

/// Routes for `query`: the prefix itself and the prefixes covering it, as in
/// `birdc show route for` (all paths of each, best first as listed).
pub fn filter_routes(routes: Vec<pb::Route>, query: &IpNet) -> Vec<pb::Route> {
    routes
        .into_iter()
        .filter(|r| r.prefix.parse::<IpNet>().is_ok_and(|p| p.contains(query)))
        .collect()
}

pub(crate) fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    t
}

pub(crate) fn uptime(state: &str, secs: u64) -> String {
    if state != "Established" {
        return "-".into();
    }
    format!("{}h{:02}m{:02}s", secs / 3600, (secs / 60) % 60, secs % 60)
}

/// Render peers as a table; `wide` adds the peer type, router id, timers,
/// families, capabilities, message counters, session flaps and the last
/// NOTIFICATION.
pub fn peers_table(peers: &[pb::Peer], wide: bool) -> String {
    let mut header = vec![
        "PEER",
        "ADDRESS",
        "AS",
        "STATE",
        "UPTIME",
        "RCVD",
        "ACCEPTED",
        "SENT",
        "LAST ERROR",
    ];
    if wide {
        header.extend([
            "TYPE",
            "LOCAL AS",
            "ROUTER ID",
            "HOLD/KEEPALIVE",
            "FAMILIES",
            "CAPABILITIES",
            "MSGS IN/OUT",
            "ESTABLISHED",
            "LAST NOTIFICATION",
            "BFD",
        ]);
    }
    let mut t = table(&header);
    for p in peers {
        let mut row = vec![
            p.name.clone(),
            p.address.clone(),
            p.peer_as.to_string(),
            if p.graceful_restart.is_empty() {
                p.state.clone()
            } else {
                format!(
                    "{} (graceful restart: {}, {} stale routes, {}s left)",
                    p.state,
                    p.graceful_restart,
                    p.stale_routes,
                    p.graceful_restart_remaining_seconds
                )
            },
            uptime(&p.state, p.uptime_seconds),
            p.prefixes_received.to_string(),
            p.prefixes_accepted.to_string(),
            p.prefixes_advertised.to_string(),
            p.last_error.clone(),
        ];
        if wide {
            row.extend([
                p.peer_type.clone(),
                p.local_as.to_string(),
                p.peer_router_id.clone(),
                if p.hold_time > 0 {
                    format!("{}s/{}s", p.hold_time, p.keepalive_time)
                } else {
                    String::new()
                },
                p.families.join(","),
                p.capabilities.join(","),
                format!("{}/{}", p.messages_received, p.messages_sent),
                p.established_transitions.to_string(),
                p.last_notification.clone(),
                if p.bfd_state.is_empty() {
                    "-".to_string()
                } else {
                    p.bfd_state.clone()
                },
            ]);
        }
        t.add_row(row);
    }
    t.to_string()
}

/// Render Loc-RIB routes as a table; `wide` adds ORIGIN and the large
/// communities in their own column.
pub fn routes_table(routes: &[pb::Route], wide: bool) -> String {
    let mut header = vec![
        "",
        "PREFIX",
        "NEXT HOP",
        "FROM",
        "AS PATH",
        "LOCPRF",
        "MED",
        "COMMUNITIES",
        "NOT BEST BECAUSE",
    ];
    if wide {
        header.extend(["ORIGIN", "LARGE COMMUNITIES"]);
    }
    let mut t = table(&header);
    for r in routes {
        let comms: Vec<String> = if wide {
            r.communities.clone()
        } else {
            r.communities
                .iter()
                .chain(&r.large_communities)
                .cloned()
                .collect()
        };
        let mut row = vec![
            format!(
                "{}{}",
                if r.best { "*" } else { "" },
                if r.stale { "S" } else { "" }
            ),
            r.prefix.clone(),
            if r.next_hop.is_empty() {
                "local".into()
            } else {
                r.next_hop.clone()
            },
            r.peer.clone(),
            r.as_path
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(" "),
            r.local_pref.to_string(),
            if r.has_med {
                r.med.to_string()
            } else {
                String::new()
            },
            comms.join(" "),
            r.reason.clone(),
        ];
        if wide {
            row.extend([r.origin.clone(), r.large_communities.join(" ")]);
        }
        t.add_row(row);
    }
    t.to_string()
}

/// Renders `value` as JSON or YAML, or with `text` for tables.
pub fn render<T: serde::Serialize>(
    value: &T,
    out: Output,
    text: impl FnOnce(&T) -> String,
) -> Result<String, CliError> {
    match out {
        Output::Json => serde_json::to_string_pretty(value)
            .map(|s| s + "\n")
            .map_err(|e| CliError::Encode {
                format: "JSON",
                reason: e.to_string(),
            }),
        Output::Yaml => serde_saphyr::to_string(value).map_err(|e| CliError::Encode {
            format: "YAML",
            reason: e.to_string(),
        }),
        Output::Table | Output::Wide => Ok(text(value)),
    }
}

/// `petrel peers [ADDR]`
pub async fn peers(socket: &Path, query: Option<String>, out: Output) -> Result<(), CliError> {
    let mut c = connect(socket).await?;
    let mut peers = c
        .list_peers(pb::ListPeersRequest {})
        .await
        .map_err(ClientError::from)?
        .into_inner()
        .peers;
    if let Some(q) = query {
        peers = filter_peers(peers, &q);
        if peers.is_empty() {
            return Err(CliError::NoPeer(q));
        }
    }
    print!(
        "{}",
        render(&peers, out, |p| peers_table(p, out == Output::Wide) + "\n")?
    );
    Ok(())
}

/// Render the dataplane status as text.
pub fn dataplane_text(d: &pb::GetDataplaneResponse) -> String {
    let mut out = format!(
        "table {}, protocol {}: {} desired, {} installed, {} stale (converged: {})\n\
         {} route operations, {} full resyncs\n",
        d.table,
        d.protocol,
        d.desired,
        d.installed,
        d.stale,
        if d.converged { "yes" } else { "no" },
        d.operations,
        d.resyncs
    );
    if !d.unresolved.is_empty() {
        let mut t = table(&["NOT INSTALLED", "NEXT HOP DOES NOT RESOLVE"]);
        for u in &d.unresolved {
            t.add_row(vec![u.prefix.clone(), u.next_hop.clone()]);
        }
        out.push_str(&format!("{t}\n"));
    }
    if !d.conflicts.is_empty() {
        out.push_str(&format!(
            "held by a route of another protocol (left alone): {}\n",
            d.conflicts.join(", ")
        ));
    }
    if !d.errors.is_empty() {
        let mut t = table(&["PREFIX", "KERNEL ERROR"]);
        for e in &d.errors {
            t.add_row(vec![e.prefix.clone(), e.error.clone()]);
        }
        out.push_str(&format!("{t}\n"));
    }
    out
}

/// `petrel dataplane`
pub async fn dataplane(socket: &Path, out: Output) -> Result<(), CliError> {
    let mut c = connect(socket).await?;
    let d = c
        .get_dataplane(pb::GetDataplaneRequest {})
        .await
        .map_err(ClientError::from)?
        .into_inner();
    print!("{}", render(&d, out, dataplane_text)?);
    Ok(())
}

#[cfg(test)]
mod tests;
