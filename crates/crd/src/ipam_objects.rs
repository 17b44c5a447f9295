//! IPAM objects kept in the datastore (petrel.dev/v1): `IPAMBlock` (one block
//! of pod addresses, its owner and its allocations) and `BlockAffinity` (a
//! node's claim on a block, two-phase: pending, then confirmed).
//!
//! The design follows Calico's block affinity model (`IPAMBlock`,
//! `BlockAffinity` in `projectcalico.org/v3`), simplified for strict affinity:
//! a block always has an owner, and only its owner allocates from it.
//! Allocations are keyed by `<containerID>/<ifname>` (CNI's attachment key),
//! so an allocation is idempotent and survives an agent restart.
//!
//! Objects are written only with compare-and-swap on their version (see
//! `petrel_ipam::store`). They are stored as custom resources by the Kubernetes
//! datastore and as YAML files by `petrel_ipam::file_store`.
//!
//! Related RFCs: RFC 4632 (CIDR notation of the blocks), RFC 4291 / RFC 5952
//! (IPv6 addresses and their text form, used in object names).

use ipnet::IpNet;
use kube::CustomResource;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

/// Prefix of a block's `affinity` field: `host:<node>`.
pub const AFFINITY_HOST_PREFIX: &str = "host:";

/// Reason recorded for the address reserved as the pods' gateway.
pub const RESERVED_GATEWAY: &str = "gateway";

/// Longest Kubernetes object name (a DNS subdomain, RFC 1123).
const MAX_NAME_LEN: usize = 253;

/// One block of pod addresses (a CIDR inside an IPPool) owned by one node.
#[derive(
    CustomResource, Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq,
)]
#[kube(
    group = "petrel.dev",
    version = "v1",
    kind = "IPAMBlock",
    plural = "ipamblocks",
    derive = "PartialEq",
    doc = "A block of pod addresses owned by one node, with its allocations (written by petrel).",
    printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#,
    printcolumn = r#"{"name":"Affinity","type":"string","jsonPath":".spec.affinity"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = super::bgp_peer::kubernetes_int_formats)]
pub struct IpamBlockSpec {
    /// The block's prefix (RFC 4632 CIDR notation).
    #[schemars(schema_with = "super::cidr_schema")]
    pub cidr: IpNet,
    /// The owner: `host:<node>`. Only the owner allocates from the block.
    pub affinity: String,
    /// `pending` while the owner's claim is in progress, then `confirmed`.
    pub state: BlockState,
    /// Allocations keyed by `<containerID>/<ifname>`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub allocations: BTreeMap<String, BlockAllocation>,
    /// Addresses never handed to a pod (for example the pods' gateway).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reserved: Vec<ReservedAddress>,
}

/// Claim state of a block.
#[derive(
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
)]
#[serde(rename_all = "camelCase")]
pub enum BlockState {
    /// Created by a claim that has not confirmed its affinity yet.
    Pending,
    /// Claimed: the owner allocates from it and advertises it.
    Confirmed,
}

/// One address handed out from a block.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BlockAllocation {
    pub address: IpAddr,
    /// Free-form attributes given by the CNI plugin (namespace, pod name).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// An address of a block that is never handed to a pod.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReservedAddress {
    pub address: IpAddr,
    /// Why it is reserved, e.g. `gateway`.
    pub reason: String,
}

/// A node's claim on a block. Several nodes may hold a `pending` affinity for
/// the same CIDR while they race; the block object decides the winner.
#[derive(
    CustomResource, Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, PartialEq, Eq,
)]
#[kube(
    group = "petrel.dev",
    version = "v1",
    kind = "BlockAffinity",
    plural = "blockaffinities",
    derive = "PartialEq",
    doc = "A node's claim on an IPAM block (written by petrel).",
    printcolumn = r#"{"name":"Node","type":"string","jsonPath":".spec.node"}"#,
    printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#,
    printcolumn = r#"{"name":"State","type":"string","jsonPath":".spec.state"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = super::bgp_peer::kubernetes_int_formats)]
pub struct BlockAffinitySpec {
    /// The claiming node.
    pub node: String,
    /// The claimed block (RFC 4632 CIDR notation).
    #[schemars(schema_with = "super::cidr_schema")]
    pub cidr: IpNet,
    pub state: AffinityState,
}

/// State of a block affinity.
#[derive(
    Serialize,
    Deserialize,
    schemars::JsonSchema,
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
)]
#[serde(rename_all = "camelCase")]
pub enum AffinityState {
    /// The node is claiming the block; counts as absent for everyone else.
    Pending,
    /// The node owns the block.
    Confirmed,
    /// The node is releasing the block.
    PendingDeletion,
}

impl fmt::Display for BlockState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BlockState::Pending => "pending",
            BlockState::Confirmed => "confirmed",
        })
    }
}

impl fmt::Display for AffinityState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AffinityState::Pending => "pending",
            AffinityState::Confirmed => "confirmed",
            AffinityState::PendingDeletion => "pendingDeletion",
        })
    }
}

impl IpamBlockSpec {
    /// The owning node named by `affinity`, if it has the `host:` form.
    pub fn owner(&self) -> Option<&str> {
        affinity_node(&self.affinity)
    }

    /// Whether `address` is reserved in this block.
    pub fn is_reserved(&self, address: IpAddr) -> bool {
        self.reserved.iter().any(|r| r.address == address)
    }

    /// The reserved gateway address of this block, if any.
    pub fn gateway(&self) -> Option<IpAddr> {
        self.reserved
            .iter()
            .find(|r| r.reason == RESERVED_GATEWAY)
            .map(|r| r.address)
    }
}

/// `host:<node>`, the `affinity` of a block owned by `node`.
pub fn affinity_for(node: &str) -> String {
    format!("{AFFINITY_HOST_PREFIX}{node}")
}

/// The node of an `affinity` value `host:<node>`.
pub fn affinity_node(affinity: &str) -> Option<&str> {
    affinity
        .strip_prefix(AFFINITY_HOST_PREFIX)
        .filter(|n| !n.is_empty())
}

/// The key of an allocation: `<containerID>/<ifname>`.
pub fn allocation_key(container_id: &str, ifname: &str) -> String {
    format!("{container_id}/{ifname}")
}

/// Object name of the block `cidr`: the address with `.` and `:` replaced by
/// `-`, then `-<prefix length>`, e.g. `10-244-1-0-26` or
/// `fd00-10-244--40-122`. An IPv6 address starting with `::` gets a leading
/// `0` so that the name starts with an alphanumeric character.
pub fn block_name(cidr: &IpNet) -> String {
    let addr = cidr.network().to_string().replace(['.', ':'], "-");
    let addr = if addr.starts_with('-') {
        format!("0{addr}")
    } else {
        addr
    };
    format!("{addr}-{}", cidr.prefix_len())
}

/// Object name of `node`'s affinity for the block `cidr`: `<node>-<block>`,
/// shortened with a hash when it would exceed 253 characters. Dots of the node
/// name are kept (a node name is already a DNS subdomain).
pub fn affinity_name(node: &str, cidr: &IpNet) -> String {
    let block = block_name(cidr);
    let node_part: String = node
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let full = format!("{node_part}-{block}");
    if full.len() <= MAX_NAME_LEN && node_part == node {
        return full;
    }
    // Too long, or the node name needed changes: keep the name unique with a
    // hash of the original node name.
    let hash = stable_hash(node.as_bytes());
    let keep = MAX_NAME_LEN - block.len() - 18;
    let prefix: String = node_part.chars().take(keep).collect();
    let prefix = prefix.trim_matches(|c: char| c == '-' || c == '.');
    let prefix = if prefix.is_empty() { "node" } else { prefix };
    format!("{prefix}-{hash:016x}-{block}")
}

/// Whether `name` is a valid Kubernetes object name (RFC 1123 DNS subdomain).
pub fn is_valid_object_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// FNV-1a, 64 bits: a small hash that never changes across releases (unlike
/// std's hasher); used for the search order and in object names.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn block_names_are_valid_kubernetes_names() {
        assert_eq!(block_name(&net("10.244.1.0/26")), "10-244-1-0-26");
        assert_eq!(
            block_name(&net("fd00:10:244::40/122")),
            "fd00-10-244--40-122"
        );
        assert_eq!(block_name(&net("::/120")), "0---120");
        for n in [
            "10.244.1.0/26",
            "fd00:10:244::40/122",
            "::/120",
            "::1/128",
            "2001:db8::/116",
        ] {
            let name = block_name(&net(n));
            assert!(is_valid_object_name(&name), "{name}");
        }
    }

    #[test]
    fn affinity_names_are_valid_and_unique() {
        let cidr = net("10.244.1.0/26");
        assert_eq!(affinity_name("node-a", &cidr), "node-a-10-244-1-0-26");
        assert_eq!(
            affinity_name("n1.example.com", &cidr),
            "n1.example.com-10-244-1-0-26"
        );
        let long = "a".repeat(250);
        let long_name = affinity_name(&long, &cidr);
        assert!(is_valid_object_name(&long_name), "{long_name}");
        let other = affinity_name(&format!("{}b", "a".repeat(249)), &cidr);
        assert_ne!(long_name, other);
        let upper = affinity_name("Node_A", &cidr);
        assert!(is_valid_object_name(&upper), "{upper}");
        assert_ne!(upper, affinity_name("node-a", &cidr));
    }

    #[test]
    fn invalid_names_are_detected() {
        for bad in ["", "-a", "a-", "A", "a..b", "a_b", &"a".repeat(254)] {
            assert!(!is_valid_object_name(bad), "{bad:?}");
        }
    }

    #[test]
    fn affinity_round_trip() {
        assert_eq!(affinity_for("n1"), "host:n1");
        assert_eq!(affinity_node("host:n1"), Some("n1"));
        assert_eq!(affinity_node("host:"), None);
        assert_eq!(affinity_node("n1"), None);
        assert_eq!(allocation_key("abc", "eth0"), "abc/eth0");
    }

    #[test]
    fn block_serializes_with_calico_like_fields() {
        let mut spec = IpamBlockSpec {
            cidr: net("10.244.1.0/26"),
            affinity: affinity_for("n1"),
            state: BlockState::Confirmed,
            allocations: BTreeMap::new(),
            reserved: vec![ReservedAddress {
                address: "10.244.1.1".parse().unwrap(),
                reason: RESERVED_GATEWAY.into(),
            }],
        };
        spec.allocations.insert(
            allocation_key("c1", "eth0"),
            BlockAllocation {
                address: "10.244.1.2".parse().unwrap(),
                attributes: BTreeMap::new(),
            },
        );
        let block = IPAMBlock::new("10-244-1-0-26", spec.clone());
        let yaml = serde_saphyr::to_string(&block).unwrap();
        assert!(yaml.contains("kind: IPAMBlock"), "{yaml}");
        assert!(yaml.contains("affinity: host:n1"), "{yaml}");
        assert!(yaml.contains("c1/eth0"), "{yaml}");
        let back: IPAMBlock = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back.spec, spec);
        assert_eq!(back.spec.owner(), Some("n1"));
        assert_eq!(back.spec.gateway(), Some("10.244.1.1".parse().unwrap()));
        assert!(back.spec.is_reserved("10.244.1.1".parse().unwrap()));
        assert!(!back.spec.is_reserved("10.244.1.2".parse().unwrap()));

        let aff = BlockAffinity::new(
            "n1-10-244-1-0-26",
            BlockAffinitySpec {
                node: "n1".into(),
                cidr: net("10.244.1.0/26"),
                state: AffinityState::PendingDeletion,
            },
        );
        let yaml = serde_saphyr::to_string(&aff).unwrap();
        assert!(yaml.contains("state: pendingDeletion"), "{yaml}");
        let back: BlockAffinity = serde_saphyr::from_str(&yaml).unwrap();
        assert_eq!(back.spec, aff.spec);
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let yaml = "cidr: 10.0.0.0/26\naffinity: host:a\nstate: confirmed\nbogus: 1\n";
        assert!(serde_saphyr::from_str::<IpamBlockSpec>(yaml).is_err());
    }
}
