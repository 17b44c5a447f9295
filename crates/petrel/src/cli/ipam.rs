//! `petrel ipam show` and `petrel ipam check`: pools, blocks and pod
//! allocations of a running agent through `petrel.v1.IpamService`, and a
//! consistency check of this node's allocations. Addresses follow RFC 4632
//! (IPv4 CIDR) and RFC 4291 (IPv6).
//!
//! The JSON uses the enum names of the proto (`IP_FAMILY_IPV4`,
//! `BLOCK_STATE_CONFIRMED`) rather than their numbers, so scripts can read it.

use super::{CliError, Output, render, table};
use ipnet::IpNet;
use petrel_proto::{ClientError, pb};
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

/// An IPPool and its use (`petrel ipam show -o json`, `.pools[]`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct PoolJson {
    pub name: String,
    pub cidr: String,
    pub block_size: u32,
    /// `IP_FAMILY_IPV4` or `IP_FAMILY_IPV6`.
    pub family: &'static str,
    pub disabled: bool,
    pub export: bool,
    pub selected: bool,
    pub blocks_total: u64,
    pub blocks_claimed: u64,
    pub addresses_used: u64,
    pub addresses_free: u64,
}

/// A block claim (`.blocks[]`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct BlockJson {
    pub cidr: String,
    pub pool: String,
    pub owner_node: String,
    /// `BLOCK_STATE_PENDING`, `BLOCK_STATE_CONFIRMED` or `BLOCK_STATE_RELEASING`.
    pub state: &'static str,
    pub used: u64,
    pub free: u64,
    pub export: bool,
    pub gateway: String,
}

/// One address of an allocation (`.allocations[].addresses[]`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AddressJson {
    pub address: String,
    pub gateway: String,
    pub family: &'static str,
    pub block: String,
    pub pool: String,
}

/// One attachment's allocation (`.allocations[]`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct AllocationJson {
    pub container_id: String,
    pub ifname: String,
    pub network: String,
    pub pod_namespace: String,
    pub pod_name: String,
    pub netns: String,
    pub addresses: Vec<AddressJson>,
}

/// `petrel ipam show -o json`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IpamShow {
    pub node: String,
    pub ready: bool,
    pub not_ready_reason: String,
    pub last_error: String,
    pub pools: Vec<PoolJson>,
    pub blocks: Vec<BlockJson>,
    pub allocations: Vec<AllocationJson>,
}

fn family_name(v: i32) -> &'static str {
    pb::IpFamily::try_from(v)
        .unwrap_or(pb::IpFamily::Unspecified)
        .as_str_name()
}

fn state_name(v: i32) -> &'static str {
    pb::BlockState::try_from(v)
        .unwrap_or(pb::BlockState::Unspecified)
        .as_str_name()
}

/// Short form of a block state for tables: "confirmed".
fn state_short(v: i32) -> String {
    state_name(v)
        .trim_start_matches("BLOCK_STATE_")
        .to_ascii_lowercase()
}

pub fn block_json(b: &pb::IpamBlock) -> BlockJson {
    BlockJson {
        cidr: b.cidr.clone(),
        pool: b.pool.clone(),
        owner_node: b.owner_node.clone(),
        state: state_name(b.state),
        used: b.used,
        free: b.free,
        export: b.export,
        gateway: b.gateway.clone(),
    }
}

pub fn pool_json(p: &pb::IpPoolStatus) -> PoolJson {
    PoolJson {
        name: p.name.clone(),
        cidr: p.cidr.clone(),
        block_size: p.block_size,
        family: family_name(p.family),
        disabled: p.disabled,
        export: p.export,
        selected: p.selected,
        blocks_total: p.blocks_total,
        blocks_claimed: p.blocks_claimed,
        addresses_used: p.addresses_used,
        addresses_free: p.addresses_free,
    }
}

pub fn allocation_json(a: &pb::Allocation) -> AllocationJson {
    AllocationJson {
        container_id: a.container_id.clone(),
        ifname: a.ifname.clone(),
        network: a.network.clone(),
        pod_namespace: a.pod_namespace.clone(),
        pod_name: a.pod_name.clone(),
        netns: a.netns.clone(),
        addresses: a
            .addresses
            .iter()
            .map(|x| AddressJson {
                address: x.address.clone(),
                gateway: x.gateway.clone(),
                family: family_name(x.family),
                block: x.block.clone(),
                pool: x.pool.clone(),
            })
            .collect(),
    }
}

/// The JSON/YAML form of an IPAM status.
pub fn show_json(s: &pb::GetIpamStatusResponse) -> IpamShow {
    IpamShow {
        node: s.node.clone(),
        ready: s.ready,
        not_ready_reason: s.not_ready_reason.clone(),
        last_error: s.last_error.clone(),
        pools: s.pools.iter().map(pool_json).collect(),
        blocks: s.blocks.iter().map(block_json).collect(),
        allocations: s.allocations.iter().map(allocation_json).collect(),
    }
}

fn yes(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// "ns/pod" or the container id when the pod is unknown.
pub fn pod_label(a: &AllocationJson) -> String {
    if a.pod_name.is_empty() {
        String::new()
    } else if a.pod_namespace.is_empty() {
        a.pod_name.clone()
    } else {
        format!("{}/{}", a.pod_namespace, a.pod_name)
    }
}

/// Renders `petrel ipam show` as text: a status line and three tables.
/// `wide` adds the network, netns and per-pool block totals.
pub fn show_text(s: &IpamShow, wide: bool) -> String {
    let mut out = format!(
        "IPAM on node {}: {}",
        s.node,
        if s.ready {
            "ready".to_string()
        } else {
            format!("not ready ({})", s.not_ready_reason)
        }
    );
    out.push('\n');
    if !s.last_error.is_empty() {
        out.push_str(&format!("last error: {}\n", s.last_error));
    }
    let mut t = table(&[
        "POOL", "CIDR", "BLOCK", "SELECTED", "DISABLED", "EXPORT", "BLOCKS", "USED", "FREE",
    ]);
    for p in &s.pools {
        t.add_row(vec![
            p.name.clone(),
            p.cidr.clone(),
            format!("/{}", p.block_size),
            yes(p.selected).into(),
            yes(p.disabled).into(),
            yes(p.export).into(),
            format!("{}/{}", p.blocks_claimed, blocks_label(p)),
            p.addresses_used.to_string(),
            p.addresses_free.to_string(),
        ]);
    }
    out.push_str(&format!("\n{t}\n"));
    let mut t = table(&[
        "BLOCK", "POOL", "OWNER", "STATE", "USED", "FREE", "GATEWAY", "EXPORT",
    ]);
    for b in &s.blocks {
        t.add_row(vec![
            b.cidr.clone(),
            b.pool.clone(),
            if b.owner_node == s.node {
                format!("{} (this node)", b.owner_node)
            } else {
                b.owner_node.clone()
            },
            b.state
                .trim_start_matches("BLOCK_STATE_")
                .to_ascii_lowercase(),
            b.used.to_string(),
            b.free.to_string(),
            b.gateway.clone(),
            yes(b.export).into(),
        ]);
    }
    out.push_str(&format!("\n{t}\n"));
    let mut header = vec!["ADDRESS", "POD", "CONTAINER", "IFNAME", "BLOCK"];
    if wide {
        header.extend(["NETWORK", "NETNS"]);
    }
    let mut t = table(&header);
    for a in &s.allocations {
        for x in &a.addresses {
            let mut row = vec![
                x.address.clone(),
                pod_label(a),
                a.container_id
                    .chars()
                    .take(if wide { 64 } else { 12 })
                    .collect(),
                a.ifname.clone(),
                x.block.clone(),
            ];
            if wide {
                row.extend([a.network.clone(), a.netns.clone()]);
            }
            t.add_row(row);
        }
    }
    out.push_str(&format!(
        "\nallocations on this node: {}\n{t}\n",
        s.allocations.len()
    ));
    out
}

/// One inconsistency found by `petrel ipam check`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// `outside-blocks`, `duplicate`, `gateway` or `invalid-address`.
    pub kind: &'static str,
    pub address: String,
    pub container_id: String,
    pub ifname: String,
    pub message: String,
}

/// `petrel ipam check -o json`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckReport {
    pub node: String,
    pub ok: bool,
    /// Allocations and addresses checked.
    pub allocations: usize,
    pub addresses: usize,
    pub problems: Vec<Problem>,
}

/// Checks this node's allocations: each address lies in one of this node's
/// confirmed blocks, no address is held twice, no gateway is handed out.
pub fn check(s: &pb::GetIpamStatusResponse) -> CheckReport {
    let mine: Vec<(IpNet, &pb::IpamBlock)> = s
        .blocks
        .iter()
        .filter(|b| b.owner_node == s.node && b.state == pb::BlockState::Confirmed as i32)
        .filter_map(|b| b.cidr.parse::<IpNet>().ok().map(|c| (c, b)))
        .collect();
    let gateways: BTreeMap<IpAddr, &str> = s
        .blocks
        .iter()
        .filter_map(|b| Some((b.gateway.parse::<IpAddr>().ok()?, b.cidr.as_str())))
        .collect();
    let mut holders: BTreeMap<IpAddr, Vec<(&str, &str)>> = BTreeMap::new();
    let mut problems = Vec::new();
    let mut addresses = 0;
    for a in &s.allocations {
        for x in &a.addresses {
            addresses += 1;
            let problem = |kind, message| Problem {
                kind,
                address: x.address.clone(),
                container_id: a.container_id.clone(),
                ifname: a.ifname.clone(),
                message,
            };
            let Some(ip) = x
                .address
                .parse::<IpNet>()
                .map(|n| n.addr())
                .or_else(|_| x.address.parse::<IpAddr>())
                .ok()
            else {
                problems.push(problem(
                    "invalid-address",
                    format!("{:?} is not an address", x.address),
                ));
                continue;
            };
            holders
                .entry(ip)
                .or_default()
                .push((&a.container_id, &a.ifname));
            if !mine.iter().any(|(c, _)| c.contains(&ip)) {
                let other = s
                    .blocks
                    .iter()
                    .find(|b| b.cidr.parse::<IpNet>().is_ok_and(|c| c.contains(&ip)));
                let message = match other {
                    Some(b) => format!(
                        "{ip} is in block {} owned by {} ({}), not a confirmed block of this node",
                        b.cidr,
                        b.owner_node,
                        state_short(b.state)
                    ),
                    None => format!("{ip} is in no block"),
                };
                problems.push(problem("outside-blocks", message));
            }
            if let Some(block) = gateways.get(&ip) {
                problems.push(problem(
                    "gateway",
                    format!("{ip} is the gateway of block {block}"),
                ));
            }
        }
    }
    for (ip, holders) in &holders {
        if holders.len() > 1 {
            let names: Vec<String> = holders.iter().map(|(c, i)| format!("{c}/{i}")).collect();
            for (c, i) in holders {
                problems.push(Problem {
                    kind: "duplicate",
                    address: ip.to_string(),
                    container_id: c.to_string(),
                    ifname: i.to_string(),
                    message: format!(
                        "{ip} is allocated {} times: {}",
                        holders.len(),
                        names.join(", ")
                    ),
                });
            }
        }
    }
    CheckReport {
        node: s.node.clone(),
        ok: problems.is_empty(),
        allocations: s.allocations.len(),
        addresses,
        problems,
    }
}

pub fn check_text(r: &CheckReport) -> String {
    if r.ok {
        return format!(
            "IPAM on node {} is consistent: {} addresses in {} allocations, each in a confirmed block of this node, none twice, no gateway.\n",
            r.node, r.addresses, r.allocations
        );
    }
    let mut t = table(&["PROBLEM", "ADDRESS", "CONTAINER", "IFNAME", "DETAIL"]);
    for p in &r.problems {
        t.add_row(vec![
            p.kind.to_string(),
            p.address.clone(),
            p.container_id.clone(),
            p.ifname.clone(),
            p.message.clone(),
        ]);
    }
    format!(
        "IPAM on node {}: {} problems in {} addresses\n{t}\n",
        r.node,
        r.problems.len(),
        r.addresses
    )
}

/// Fetches the IPAM status, mapping an agent without IPAM to a clear error.
pub(crate) async fn status(socket: &Path) -> Result<pb::GetIpamStatusResponse, CliError> {
    // Reachability is reported like every other command.
    super::connect(socket).await?;
    let mut c = petrel_proto::connect_ipam(socket).await?;
    match c.get_ipam_status(pb::GetIpamStatusRequest {}).await {
        Ok(r) => Ok(r.into_inner()),
        Err(s) if s.code() == tonic::Code::Unimplemented => Err(CliError::NoIpam),
        Err(s) => Err(ClientError::from(s).into()),
    }
}

/// `petrel ipam show`
pub async fn show(socket: &Path, out: Output) -> Result<(), CliError> {
    let s = show_json(&status(socket).await?);
    print!(
        "{}",
        render(&s, out, |s| show_text(s, out == Output::Wide))?
    );
    Ok(())
}

/// `petrel ipam check`: fails when a problem is found.
pub async fn check_cmd(socket: &Path, out: Output) -> Result<(), CliError> {
    let r = check(&status(socket).await?);
    print!("{}", render(&r, out, check_text)?);
    if r.ok {
        Ok(())
    } else {
        Err(CliError::Inconsistent(r.problems.len()))
    }
}

/// The pool's block count for the table: exact below 2^64, else as a
/// power of two (an IPv6 /48 of /122 blocks holds 2^74; the API's
/// `blocks_total` saturates at 2^64-1).
fn blocks_label(p: &PoolJson) -> String {
    let prefix_len = p
        .cidr
        .parse::<ipnet::IpNet>()
        .map(|n| u32::from(n.prefix_len()));
    match prefix_len {
        Ok(len) if p.block_size >= len + 64 => format!("2^{}", p.block_size - len),
        _ => p.blocks_total.to_string(),
    }
}

#[cfg(test)]
#[path = "ipam_tests.rs"]
mod tests;
