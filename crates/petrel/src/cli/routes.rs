//! `petrel routes` in its four views (Loc-RIB, a peer's pre-policy
//! Adj-RIB-In and its Adj-RIB-Out, RFC 4271 §3.2; the kernel routes petrel
//! owns), `petrel services` and `petrel log-level`.

use super::{CliError, Output, connect, filter_routes, render, routes_table, table};
use ipnet::IpNet;
use petrel_proto::{ClientError, pb};
use std::path::Path;

/// Which routes `petrel routes` shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteView {
    /// The Loc-RIB: every path, best first.
    LocRib,
    /// Per peer, received before import policy (Adj-RIB-In).
    Received,
    /// Per peer, advertised (Adj-RIB-Out).
    Advertised,
    /// The kernel routes petrel owns.
    Kernel,
}

fn join_as_path(p: &[u32]) -> String {
    p.iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Renders Adj-RIB routes. Received routes get an IMPORT column
/// ("accepted" or "rejected: reason"); `wide` adds ORIGIN, PATH ID and the
/// large communities.
pub fn peer_routes_text(routes: &[pb::PeerRoute], received: bool, wide: bool) -> String {
    let mut header = vec![
        "PEER",
        "PEER ADDRESS",
        "PREFIX",
        "NEXT HOP",
        "AS PATH",
        "LOCPRF",
        "MED",
        "COMMUNITIES",
    ];
    if received {
        header.push("IMPORT");
    }
    if wide {
        header.extend(["ORIGIN", "PATH ID", "LARGE COMMUNITIES"]);
    }
    let mut t = table(&header);
    for r in routes {
        let mut row = vec![
            r.peer.clone(),
            r.peer_address.clone(),
            r.prefix.clone(),
            r.next_hop.clone(),
            join_as_path(&r.as_path),
            if r.has_local_pref {
                r.local_pref.to_string()
            } else {
                String::new()
            },
            if r.has_med {
                r.med.to_string()
            } else {
                String::new()
            },
            r.communities.join(" "),
        ];
        if received {
            row.push(if r.accepted {
                "accepted".into()
            } else {
                format!("rejected: {}", r.reject_reason)
            });
        }
        if wide {
            row.extend([
                r.origin.clone(),
                r.path_id.to_string(),
                r.large_communities.join(" "),
            ]);
        }
        t.add_row(row);
    }
    format!("{t}\n")
}

/// "via 10.0.0.2 dev eth0 weight 1, via ..." or the route type.
pub fn kernel_hops(r: &pb::KernelRoute) -> String {
    // Only unicast routes forward; the kernel gives others `dev lo`.
    if r.next_hops.is_empty() || r.r#type != "unicast" {
        return r.r#type.clone();
    }
    r.next_hops
        .iter()
        .map(|h| {
            let mut s = String::new();
            if !h.gateway.is_empty() {
                s.push_str(&format!("via {} ", h.gateway));
            }
            if !h.interface.is_empty() {
                s.push_str(&format!("dev {} ", h.interface));
            }
            if r.next_hops.len() > 1 {
                s.push_str(&format!("weight {}", h.weight));
            }
            s.trim_end().to_string()
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Renders the kernel routes petrel owns.
pub fn kernel_routes_text(k: &pb::ListKernelRoutesResponse, wide: bool) -> String {
    let mut header = vec!["PREFIX", "TYPE", "NEXT HOPS"];
    if wide {
        header.extend(["METRIC", "PROTOCOL"]);
    }
    let mut t = table(&header);
    for r in &k.routes {
        let mut row = vec![r.prefix.clone(), r.r#type.clone(), kernel_hops(r)];
        if wide {
            row.extend([r.metric.to_string(), r.protocol.to_string()]);
        }
        t.add_row(row);
    }
    format!(
        "table {}, protocol {}: {} routes\n{t}\n",
        k.table,
        k.protocol,
        k.routes.len()
    )
}

fn covers(prefix: &str, query: &IpNet) -> bool {
    prefix.parse::<IpNet>().is_ok_and(|p| p.contains(query))
}

/// `petrel routes [PREFIX] [--peer ADDR] [--received|--advertised|--kernel]`
pub async fn routes(
    socket: &Path,
    view: RouteView,
    peer: Option<String>,
    family: Option<String>,
    query: Option<IpNet>,
    out: Output,
) -> Result<(), CliError> {
    let mut c = connect(socket).await?;
    let wide = out == Output::Wide;
    let family = family.unwrap_or_default();
    match view {
        RouteView::LocRib => {
            let mut routes = c
                .list_routes(pb::ListRoutesRequest { family })
                .await
                .map_err(ClientError::from)?
                .into_inner()
                .routes;
            if let Some(q) = &peer {
                // Loc-RIB paths name their peer: resolve an address first.
                let peers = c
                    .list_peers(pb::ListPeersRequest {})
                    .await
                    .map_err(ClientError::from)?
                    .into_inner()
                    .peers;
                let names: Vec<String> = super::filter_peers(peers, q)
                    .into_iter()
                    .map(|p| p.name)
                    .collect();
                if names.is_empty() {
                    return Err(CliError::NoPeer(q.clone()));
                }
                routes.retain(|r| names.contains(&r.peer));
            }
            if let Some(q) = query {
                routes = filter_routes(routes, &q);
                if routes.is_empty() {
                    return Err(CliError::NoRoute(q));
                }
            }
            print!(
                "{}",
                render(&routes, out, |r| routes_table(r, wide) + "\n")?
            );
        }
        RouteView::Received | RouteView::Advertised => {
            let received = view == RouteView::Received;
            let direction = if received {
                pb::RibDirection::Received
            } else {
                pb::RibDirection::Advertised
            };
            if let Some(q) = &peer {
                let peers = c
                    .list_peers(pb::ListPeersRequest {})
                    .await
                    .map_err(ClientError::from)?
                    .into_inner()
                    .peers;
                if super::filter_peers(peers, q).is_empty() {
                    return Err(CliError::NoPeer(q.clone()));
                }
            }
            let mut routes = c
                .list_peer_routes(pb::ListPeerRoutesRequest {
                    peer: peer.unwrap_or_default(),
                    direction: direction as i32,
                    family,
                })
                .await
                .map_err(ClientError::from)?
                .into_inner()
                .routes;
            if let Some(q) = query {
                routes.retain(|r| covers(&r.prefix, &q));
                if routes.is_empty() {
                    return Err(CliError::NoRoute(q));
                }
            }
            print!(
                "{}",
                render(&routes, out, |r| peer_routes_text(r, received, wide))?
            );
        }
        RouteView::Kernel => {
            if peer.is_some() {
                return Err(CliError::Usage(
                    "--peer does not apply to --kernel: kernel routes have next hops, not peers"
                        .into(),
                ));
            }
            let mut k = c
                .list_kernel_routes(pb::ListKernelRoutesRequest {
                    family,
                    lookup: String::new(),
                })
                .await
                .map_err(ClientError::from)?
                .into_inner();
            if let Some(q) = query {
                k.routes.retain(|r| covers(&r.prefix, &q));
                if k.routes.is_empty() {
                    return Err(CliError::NoRoute(q));
                }
            }
            print!("{}", render(&k, out, |k| kernel_routes_text(k, wide))?);
        }
    }
    Ok(())
}

/// Renders the service advertisement outcome.
pub fn services_text(s: &pb::ListServicesResponse) -> String {
    if !s.enabled {
        return "service advertisement does not run on this agent\n".into();
    }
    let mut out = format!("{} service prefixes advertised", s.advertised.len());
    if s.advertised.is_empty() {
        out.push('\n');
    } else {
        out.push_str(&format!(": {}\n", s.advertised.join(", ")));
    }
    if !s.rejections.is_empty() {
        let mut t = table(&["SERVICE", "KIND", "ADDRESS", "NOT ADVERTISED BECAUSE"]);
        for r in &s.rejections {
            t.add_row(vec![
                r.service.clone(),
                r.kind.clone(),
                r.address.clone(),
                r.message.clone(),
            ]);
        }
        out.push_str(&format!(
            "{} service addresses not advertised\n{t}\n",
            s.rejections.len()
        ));
    }
    out
}

/// `petrel services`
pub async fn services(socket: &Path, out: Output) -> Result<(), CliError> {
    let mut c = connect(socket).await?;
    let s = c
        .list_services(pb::ListServicesRequest {})
        .await
        .map_err(ClientError::from)?
        .into_inner();
    print!("{}", render(&s, out, services_text)?);
    Ok(())
}

/// `petrel log-level FILTER`: prints the previous and new filter.
pub async fn log_level(socket: &Path, filter: String) -> Result<(), CliError> {
    let mut c = connect(socket).await?;
    let r = c
        .set_log_level(pb::SetLogLevelRequest { filter })
        .await
        .map_err(ClientError::from)?
        .into_inner();
    println!("log filter: {} (was {})", r.current, r.previous);
    Ok(())
}
