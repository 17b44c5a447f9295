//! The `petrel peers` and `petrel routes` commands: thin clients of the
//! management API that print a table or JSON.

use crate::api::{self, ApiError, pb};
use comfy_table::{Table, presets::UTF8_BORDERS_ONLY};
use std::path::Path;

/// Output format of the CLI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    Table,
    Json,
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_style(UTF8_BORDERS_ONLY).set_header(header.to_vec());
    t
}

fn uptime(state: &str, secs: u64) -> String {
    if state != "Established" {
        return "-".into();
    }
    format!("{}h{:02}m{:02}s", secs / 3600, (secs / 60) % 60, secs % 60)
}

/// Render peers as a table.
pub fn peers_table(peers: &[pb::Peer]) -> String {
    let mut t = table(&[
        "PEER",
        "ADDRESS",
        "AS",
        "STATE",
        "UPTIME",
        "RCVD",
        "ACCEPTED",
        "SENT",
        "LAST ERROR",
    ]);
    for p in peers {
        t.add_row(vec![
            p.name.clone(),
            p.address.clone(),
            p.peer_as.to_string(),
            p.state.clone(),
            uptime(&p.state, p.uptime_seconds),
            p.prefixes_received.to_string(),
            p.prefixes_accepted.to_string(),
            p.prefixes_advertised.to_string(),
            p.last_error.clone(),
        ]);
    }
    t.to_string()
}

/// Render routes as a table.
pub fn routes_table(routes: &[pb::Route]) -> String {
    let mut t = table(&[
        "",
        "PREFIX",
        "NEXT HOP",
        "FROM",
        "AS PATH",
        "LOCPRF",
        "MED",
        "COMMUNITIES",
        "NOT BEST BECAUSE",
    ]);
    for r in routes {
        let comms: Vec<String> = r
            .communities
            .iter()
            .chain(&r.large_communities)
            .cloned()
            .collect();
        t.add_row(vec![
            if r.best { "*".into() } else { String::new() },
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
        ]);
    }
    t.to_string()
}

fn print<T: serde::Serialize>(items: &[T], out: Output, table: impl Fn(&[T]) -> String) {
    match out {
        Output::Json => match serde_json::to_string_pretty(items) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot encode JSON: {e}"),
        },
        Output::Table => println!("{}", table(items)),
    }
}

/// `petrel peers`
pub async fn peers(socket: &Path, out: Output) -> Result<(), ApiError> {
    let mut c = api::connect(socket).await?;
    let peers = c
        .list_peers(pb::ListPeersRequest {})
        .await?
        .into_inner()
        .peers;
    print(&peers, out, peers_table);
    Ok(())
}

/// `petrel routes`
pub async fn routes(socket: &Path, family: Option<String>, out: Output) -> Result<(), ApiError> {
    let mut c = api::connect(socket).await?;
    let routes = c
        .list_routes(pb::ListRoutesRequest {
            family: family.unwrap_or_default(),
        })
        .await?
        .into_inner()
        .routes;
    print(&routes, out, routes_table);
    Ok(())
}

/// Render the dataplane status as text.
pub fn dataplane_text(d: &pb::Dataplane) -> String {
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
pub async fn dataplane(socket: &Path, out: Output) -> Result<(), ApiError> {
    let mut c = api::connect(socket).await?;
    let d = c
        .get_dataplane(pb::GetDataplaneRequest {})
        .await?
        .into_inner();
    match out {
        Output::Json => match serde_json::to_string_pretty(&d) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot encode JSON: {e}"),
        },
        Output::Table => print!("{}", dataplane_text(&d)),
    }
    Ok(())
}
