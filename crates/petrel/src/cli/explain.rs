//! `petrel explain IP`: the whole path of one address on this node, put
//! together from the management API: IPAM pool, block, owner and pod
//! allocation; the Loc-RIB route covering it with the best path and why the
//! others lost (RFC 4271 §9.1.2); the peer it came from and that session's
//! state (RFC 4271 §8); the kernel route used for it; and whether it is a
//! service address advertised here.

use super::ipam::{AllocationJson, BlockJson, PoolJson, allocation_json, block_json, pool_json};
use super::{CliError, Output, connect, render, table, uptime};
use ipnet::IpNet;
use petrel_proto::{ClientError, pb};
use serde::Serialize;
use std::net::IpAddr;
use std::path::Path;

/// The IPAM side of an address.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct IpamPart {
    /// Whether the agent serves IPAM (false: the other fields are empty).
    pub available: bool,
    pub pool: Option<PoolJson>,
    pub block: Option<BlockJson>,
    /// The block is owned by this node.
    pub block_local: bool,
    /// The pod attachment holding the address, when on this node.
    pub allocation: Option<AllocationJson>,
    /// The address is the gateway of its block.
    pub gateway: bool,
}

/// The Loc-RIB entry covering the address.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct RoutePart {
    /// Longest Loc-RIB prefix containing the address.
    pub prefix: String,
    /// The selected path, if any path is usable.
    pub best: Option<pb::Route>,
    /// Every path of the prefix, best first, each with why it lost.
    pub paths: Vec<pb::Route>,
}

/// Service advertisement of the address on this node.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ServicePart {
    /// Advertised service prefixes that contain the address.
    pub advertised: Vec<String>,
    /// Rejections of the address, with reasons.
    pub rejections: Vec<pb::ServiceRejection>,
}

/// `petrel explain IP -o json`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Explanation {
    pub address: String,
    pub node: String,
    pub ipam: IpamPart,
    pub route: Option<RoutePart>,
    /// The session of the best path's peer; null for local routes.
    pub peer: Option<pb::Peer>,
    /// The route of petrel's kernel table used for the address (longest
    /// match, any protocol); null when none or without a dataplane.
    pub kernel: Option<pb::KernelRoute>,
    pub service: ServicePart,
    /// Findings that explain a broken path, most important first.
    pub warnings: Vec<String>,
}

/// What the API returned, for [`explain`] (each part optional: an agent
/// without IPAM, dataplane or service advertisement still explains routing).
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub ipam: Option<pb::GetIpamStatusResponse>,
    pub routes: Vec<pb::Route>,
    pub peers: Vec<pb::Peer>,
    pub kernel: Option<pb::KernelRoute>,
    /// Whether the kernel lookup was answered (false: no dataplane).
    pub kernel_known: bool,
    pub services: Option<pb::ListServicesResponse>,
}

fn contains(cidr: &str, ip: IpAddr) -> bool {
    cidr.parse::<IpNet>().is_ok_and(|c| c.contains(&ip))
}

fn addr_of(s: &str) -> Option<IpAddr> {
    s.parse::<IpNet>()
        .map(|n| n.addr())
        .or_else(|_| s.parse::<IpAddr>())
        .ok()
}

/// Puts the parts together and draws the conclusions.
pub fn explain(ip: IpAddr, input: &Inputs) -> Explanation {
    let mut warnings = Vec::new();
    let mut ipam = IpamPart::default();
    let mut node = String::new();
    if let Some(s) = &input.ipam {
        node = s.node.clone();
        ipam.available = true;
        ipam.pool = s
            .pools
            .iter()
            .filter(|p| contains(&p.cidr, ip))
            .max_by_key(|p| p.cidr.parse::<IpNet>().map(|c| c.prefix_len()).unwrap_or(0))
            .map(pool_json);
        let block = s.blocks.iter().find(|b| contains(&b.cidr, ip));
        ipam.block_local = block.is_some_and(|b| b.owner_node == s.node);
        ipam.gateway = block.is_some_and(|b| b.gateway.parse::<IpAddr>().ok() == Some(ip));
        ipam.block = block.map(block_json);
        ipam.allocation = s
            .allocations
            .iter()
            .find(|a| a.addresses.iter().any(|x| addr_of(&x.address) == Some(ip)))
            .map(allocation_json);
        if ipam.pool.is_some() && ipam.block.is_none() {
            warnings.push(format!(
                "{ip} is in pool {} but in no claimed block: no node can have given it to a pod",
                ipam.pool.as_ref().map(|p| p.name.as_str()).unwrap_or("")
            ));
        }
        if ipam.block_local && ipam.allocation.is_none() && !ipam.gateway {
            warnings.push(format!(
                "{ip} is in a block of this node but allocated to no pod here: traffic to it is dropped (blackhole)"
            ));
        }
    }
    // Longest Loc-RIB prefix containing the address, with all its paths.
    let prefix = input
        .routes
        .iter()
        .filter_map(|r| r.prefix.parse::<IpNet>().ok())
        .filter(|p| p.contains(&ip))
        .max_by_key(|p| p.prefix_len());
    let route = prefix.map(|p| {
        let paths: Vec<pb::Route> = input
            .routes
            .iter()
            .filter(|r| r.prefix.parse::<IpNet>().ok() == Some(p))
            .cloned()
            .collect();
        RoutePart {
            prefix: p.to_string(),
            best: paths.iter().find(|r| r.best).cloned(),
            paths,
        }
    });
    let best = route.as_ref().and_then(|r| r.best.as_ref());
    let peer = best
        .filter(|b| b.peer != "local")
        .and_then(|b| input.peers.iter().find(|p| p.name == b.peer))
        .cloned();
    match (&route, best) {
        (None, _) if !ipam.block_local => {
            warnings.push(format!("no route in the Loc-RIB covers {ip}"))
        }
        (Some(r), None) => warnings.push(format!(
            "the Loc-RIB has {} path(s) for {} but none is usable",
            r.paths.len(),
            r.prefix
        )),
        _ => {}
    }
    if let Some(p) = &peer
        && p.state != "Established"
    {
        warnings.push(format!(
            "the session with {} ({}) is {}, not Established",
            p.name, p.address, p.state
        ));
    }
    if let Some(b) = best.filter(|b| b.stale) {
        let remaining = peer
            .as_ref()
            .map(|p| {
                format!(
                    " (withdrawn in {}s unless it completes)",
                    p.graceful_restart_remaining_seconds
                )
            })
            .unwrap_or_default();
        warnings.push(format!(
            "the route {} is stale: {} is restarting (graceful restart) and it is kept until the peer sends it again or its End-of-RIB{remaining}",
            b.prefix, b.peer
        ));
    }
    if let (Some(b), Some(block)) = (best, &ipam.block)
        && b.peer == "local"
        && !ipam.block_local
    {
        warnings.push(format!(
            "block {} is owned by {} but this node originates {}",
            block.cidr, block.owner_node, b.prefix
        ));
    }
    let kernel = input.kernel.clone();
    if let (Some(b), Some(k)) = (best, &kernel)
        && b.peer != "local"
        && !b.next_hop.is_empty()
    {
        // The kernel's gateway may differ from the BGP next hop (recursive
        // resolution), so only a less specific kernel route is a finding.
        if k.prefix != b.prefix
            && k.prefix.parse::<IpNet>().ok().map(|p| p.prefix_len())
                < b.prefix.parse::<IpNet>().ok().map(|p| p.prefix_len())
        {
            warnings.push(format!(
                "the Loc-RIB route {} is not in the kernel: the kernel uses {} ({})",
                b.prefix, k.prefix, k.r#type
            ));
        }
    }
    if input.kernel_known && kernel.is_none() && best.is_some_and(|b| b.peer != "local") {
        warnings.push(format!(
            "the kernel has no route for {ip} in petrel's table"
        ));
    }
    let mut service = ServicePart::default();
    if let Some(s) = &input.services {
        service.advertised = s
            .advertised
            .iter()
            .filter(|p| contains(p, ip))
            .cloned()
            .collect();
        service.rejections = s
            .rejections
            .iter()
            .filter(|r| r.address.parse::<IpAddr>().ok() == Some(ip))
            .cloned()
            .collect();
        for r in &service.rejections {
            warnings.push(format!(
                "{} {} of service {} is not advertised by this node: {}",
                r.kind, r.address, r.service, r.message
            ));
        }
    }
    Explanation {
        address: ip.to_string(),
        node,
        ipam,
        route,
        peer,
        kernel,
        service,
        warnings,
    }
}

fn row(t: &mut comfy_table::Table, k: &str, v: String) {
    t.add_row(vec![k.to_string(), v]);
}

/// Renders an explanation as a two-column table, then the Loc-RIB paths.
pub fn explain_text(e: &Explanation) -> String {
    let mut t = table(&["", &e.address]);
    if !e.ipam.available {
        row(&mut t, "IPAM", "not served by this agent".into());
    } else {
        row(
            &mut t,
            "pool",
            e.ipam
                .pool
                .as_ref()
                .map(|p| format!("{} ({})", p.name, p.cidr))
                .unwrap_or_else(|| "none".into()),
        );
        row(
            &mut t,
            "block",
            e.ipam
                .block
                .as_ref()
                .map(|b| {
                    format!(
                        "{} owned by {}{} ({})",
                        b.cidr,
                        b.owner_node,
                        if e.ipam.block_local {
                            " (this node)"
                        } else {
                            ""
                        },
                        b.state
                            .trim_start_matches("BLOCK_STATE_")
                            .to_ascii_lowercase()
                    )
                })
                .unwrap_or_else(|| "none".into()),
        );
        let pod = match (&e.ipam.allocation, e.ipam.gateway) {
            (_, true) => "the block's gateway (host side of pod links)".to_string(),
            (Some(a), _) => {
                let who = super::ipam::pod_label(a);
                format!(
                    "{}container {} interface {}",
                    if who.is_empty() {
                        String::new()
                    } else {
                        format!("pod {who}, ")
                    },
                    a.container_id,
                    a.ifname
                )
            }
            (None, _) if e.ipam.block_local => "not allocated".into(),
            (None, _) => "not on this node".into(),
        };
        row(&mut t, "pod", pod);
    }
    match &e.route {
        None => row(&mut t, "route", "none in the Loc-RIB".into()),
        Some(r) => {
            let best = match &r.best {
                Some(b) if b.peer == "local" => "originated by this node".to_string(),
                Some(b) if b.as_path.is_empty() => {
                    format!("via {} from {}, empty AS path", b.next_hop, b.peer)
                }
                Some(b) => format!(
                    "via {} from {}, AS path {}",
                    b.next_hop,
                    b.peer,
                    b.as_path
                        .iter()
                        .map(|a| a.to_string())
                        .collect::<Vec<_>>()
                        .join(" ")
                ),
                None => "no usable path".into(),
            };
            row(
                &mut t,
                "route",
                format!(
                    "{} ({} {}): {best}",
                    r.prefix,
                    r.paths.len(),
                    if r.paths.len() == 1 { "path" } else { "paths" }
                ),
            );
        }
    }
    if let Some(p) = &e.peer {
        let mut s = format!("{} {} AS {}: {}", p.name, p.address, p.peer_as, p.state);
        if p.state == "Established" {
            s.push_str(&format!(" for {}", uptime(&p.state, p.uptime_seconds)));
        } else if !p.last_error.is_empty() {
            s.push_str(&format!(" ({})", p.last_error));
        }
        row(&mut t, "session", s);
    }
    row(
        &mut t,
        "kernel",
        e.kernel
            .as_ref()
            .map(|k| {
                format!(
                    "{} {}{}",
                    k.prefix,
                    super::routes::kernel_hops(k),
                    if k.owned {
                        " (petrel)".to_string()
                    } else {
                        format!(" (protocol {})", k.protocol)
                    }
                )
            })
            .unwrap_or_else(|| "no route".into()),
    );
    let svc = if !e.service.advertised.is_empty() {
        format!("advertised here as {}", e.service.advertised.join(", "))
    } else if let Some(r) = e.service.rejections.first() {
        format!("{} of {}, not advertised: {}", r.kind, r.service, r.message)
    } else {
        "not a service address advertised here".into()
    };
    row(&mut t, "service", svc);
    let mut out = format!("{t}\n");
    if let Some(r) = &e.route
        && r.paths.len() > 1
    {
        out.push_str(&format!(
            "\npaths for {}:\n{}\n",
            r.prefix,
            super::routes_table(&r.paths, false)
        ));
    }
    for w in &e.warnings {
        out.push_str(&format!("warning: {w}\n"));
    }
    out
}

/// `petrel explain IP`
pub async fn run(socket: &Path, ip: IpAddr, out: Output) -> Result<(), CliError> {
    let mut c = connect(socket).await?;
    let routes = c
        .list_routes(pb::ListRoutesRequest {
            family: String::new(),
        })
        .await
        .map_err(ClientError::from)?
        .into_inner()
        .routes;
    let peers = c
        .list_peers(pb::ListPeersRequest {})
        .await
        .map_err(ClientError::from)?
        .into_inner()
        .peers;
    // Parts an agent may lack: absent, not an error.
    let kernel = c
        .list_kernel_routes(pb::ListKernelRoutesRequest {
            family: String::new(),
            lookup: ip.to_string(),
        })
        .await
        .ok();
    let kernel_known = kernel.is_some();
    let kernel = kernel.and_then(|r| r.into_inner().routes.into_iter().next());
    let services = c
        .list_services(pb::ListServicesRequest {})
        .await
        .ok()
        .map(|r| r.into_inner());
    let mut ipam_error = None;
    let ipam = match super::ipam::status(socket).await {
        Ok(s) => Some(s),
        Err(CliError::NoIpam) => None,
        Err(e @ CliError::Unreachable { .. }) => return Err(e),
        Err(e) => {
            ipam_error = Some(format!("IPAM status unavailable: {e}"));
            None
        }
    };
    let mut e = explain(
        ip,
        &Inputs {
            ipam,
            routes,
            peers,
            kernel,
            kernel_known,
            services,
        },
    );
    e.warnings.extend(ipam_error);
    print!("{}", render(&e, out, explain_text)?);
    Ok(())
}

#[cfg(test)]
#[path = "explain_tests.rs"]
mod tests;
