//! `IPPool` (petrel.dev/v1): a range of pod addresses, split into blocks that
//! nodes claim. Field names follow Calico's `projectcalico.org/v3` IPPool.
//!
//! petrel routes pod addresses natively: it never encapsulates and never
//! NATs. `ipipMode` and `vxlanMode` are accepted only as `Never`, and
//! `natOutgoing` only as `false`, so that a Calico manifest that relies on
//! either is refused with a clear error instead of silently behaving
//! differently.
//!
//! Related RFCs: RFC 4632 (CIDR), RFC 4291 (IPv6 addressing), RFC 3927 /
//! RFC 5771 / RFC 6890 (special-purpose ranges a pool may not use).

use crate::selector::{Selector, SelectorError};
use ipnet::IpNet;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Default `blockSize` of an IPv4 pool.
pub const DEFAULT_BLOCK_SIZE_V4: u8 = 26;
/// Default `blockSize` of an IPv6 pool.
pub const DEFAULT_BLOCK_SIZE_V6: u8 = 122;
/// Allowed IPv4 block sizes.
pub const BLOCK_SIZE_RANGE_V4: std::ops::RangeInclusive<u8> = 20..=32;
/// Allowed IPv6 block sizes.
pub const BLOCK_SIZE_RANGE_V6: std::ops::RangeInclusive<u8> = 116..=128;

// The `x_kube` rules make the API server enforce what `IpPoolSpec::validate`
// checks on one object (overlaps between pools are the agent's: the pool
// created first wins).
const NO_ENCAPSULATION: &str = "petrel has no encapsulation (no IP-in-IP, no VXLAN): pods are routed natively over BGP; set it to Never or remove it";

/// A pool of pod addresses.
#[derive(
    CustomResource, Serialize, Deserialize, KubeSchema, Debug, Clone, PartialEq, Eq, Default,
)]
#[kube(
    group = "petrel.dev",
    version = "v1",
    kind = "IPPool",
    plural = "ippools",
    derive = "PartialEq",
    doc = "A pool of pod addresses split into per-node blocks; Calico-compatible fields.",
    printcolumn = r#"{"name":"CIDR","type":"string","jsonPath":".spec.cidr"}"#,
    printcolumn = r#"{"name":"Block Size","type":"integer","jsonPath":".spec.blockSize"}"#,
    printcolumn = r#"{"name":"Disabled","type":"boolean","jsonPath":".spec.disabled"}"#,
    printcolumn = r#"{"name":"Selector","type":"string","jsonPath":".spec.nodeSelector"}"#
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(transform = super::bgp_peer::kubernetes_int_formats)]
#[x_kube(validation = Rule::new("!has(self.blockSize) || !isCIDR(self.cidr) || \
        (cidr(self.cidr).ip().family() == 4 ? (self.blockSize >= 20 && self.blockSize <= 32) \
        : (self.blockSize >= 116 && self.blockSize <= 128))")
    .message("blockSize must be 20-32 for an IPv4 pool and 116-128 for an IPv6 pool")
    .field_path(".blockSize")
    .reason(Reason::FieldValueInvalid))]
#[x_kube(validation = Rule::new("!has(self.blockSize) || !isCIDR(self.cidr) || self.blockSize >= cidr(self.cidr).prefixLength()")
    .message("a block does not fit in the pool: blockSize must be at least the prefix length of cidr")
    .field_path(".blockSize")
    .reason(Reason::FieldValueInvalid))]
pub struct IpPoolSpec {
    /// The pool's prefix (RFC 4632 CIDR notation), e.g. `10.244.0.0/16`.
    #[schemars(schema_with = "super::cidr_schema", length(max = 64))]
    #[x_kube(validation = Rule::new("isCIDR(self)").message("must be a CIDR such as 10.244.0.0/16 or fd00:10:244::/56"))]
    #[x_kube(validation = Rule::new("!isCIDR(self) || cidr(self) == cidr(self).masked()")
        .message("has host bits set: use the prefix itself, such as 10.40.0.0/16 for 10.40.1.7/16"))]
    pub cidr: IpNet,
    /// Prefix length of the blocks nodes claim. [Default: 26 (IPv4), 122 (IPv6);
    /// allowed 20–32 and 116–128]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub block_size: Option<u8>,
    /// Selector (Calico syntax) of the nodes that use this pool. [Default: all()]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    #[x_kube(validation = Rule::new(crate::selector::SELECTOR_CEL_RULE).message(crate::selector::SELECTOR_CEL_MESSAGE))]
    pub node_selector: Option<String>,
    /// Calico's per-namespace pool choice. petrel accepts only an empty
    /// selector or `all()`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<String>,
    /// When true, no new addresses are handed out from this pool (Calico
    /// semantics); addresses in use and the blocks holding them stay.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// When true, blocks of this pool are not advertised over BGP.
    #[serde(
        rename = "disableBGPExport",
        default,
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub disable_bgp_export: bool,
    /// What the pool's addresses are for. [Default: Workload, Tunnel]
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_uses: Vec<AllowedUse>,
    /// Calico's `assignmentMode`; petrel supports `Automatic` only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignment_mode: Option<AssignmentMode>,
    /// IP-in-IP encapsulation. petrel does not encapsulate: only `Never`.
    #[serde(rename = "ipipMode", default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 'Never'").message(NO_ENCAPSULATION).reason(Reason::FieldValueForbidden))]
    pub ipip_mode: Option<EncapsulationMode>,
    /// VXLAN encapsulation. petrel does not encapsulate: only `Never`.
    #[serde(rename = "vxlanMode", default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 'Never'").message(NO_ENCAPSULATION).reason(Reason::FieldValueForbidden))]
    pub vxlan_mode: Option<EncapsulationMode>,
    /// Source NAT of traffic leaving the pool. petrel routes pod addresses
    /// natively and does not NAT: only `false`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    #[x_kube(validation = Rule::new("!self")
        .message("true is not supported: petrel does not NAT, pod addresses are routed natively and must be reachable from outside; set it to false or remove it")
        .reason(Reason::FieldValueForbidden))]
    pub nat_outgoing: bool,
}

/// Calico's `allowedUses` values.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllowedUse {
    /// Pod addresses.
    Workload,
    /// Tunnel addresses of nodes (Calico); petrel has no tunnels but accepts it.
    Tunnel,
    /// Service LoadBalancer addresses; such pools are not used for pods.
    LoadBalancer,
}

/// Calico's `ipipMode` / `vxlanMode` values.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EncapsulationMode {
    Never,
    Always,
    CrossSubnet,
}

/// Calico's `assignmentMode` values.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AssignmentMode {
    Automatic,
    Manual,
}

impl fmt::Display for EncapsulationMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EncapsulationMode::Never => "Never",
            EncapsulationMode::Always => "Always",
            EncapsulationMode::CrossSubnet => "CrossSubnet",
        })
    }
}

impl IpPoolSpec {
    /// `blockSize`, or the default of the pool's family.
    pub fn effective_block_size(&self) -> u8 {
        self.block_size.unwrap_or(match self.cidr {
            IpNet::V4(_) => DEFAULT_BLOCK_SIZE_V4,
            IpNet::V6(_) => DEFAULT_BLOCK_SIZE_V6,
        })
    }

    /// `allowedUses`, or the default (Workload, Tunnel).
    pub fn effective_allowed_uses(&self) -> Vec<AllowedUse> {
        if self.allowed_uses.is_empty() {
            vec![AllowedUse::Workload, AllowedUse::Tunnel]
        } else {
            self.allowed_uses.clone()
        }
    }

    /// Whether pods get addresses from this pool (`Workload` allowed).
    pub fn for_workloads(&self) -> bool {
        self.effective_allowed_uses()
            .contains(&AllowedUse::Workload)
    }

    /// Whether the pool applies to a node with these labels (`nodeSelector`,
    /// Calico syntax; absent or empty selects every node).
    pub fn selects_node(&self, labels: &BTreeMap<String, String>) -> Result<bool, SelectorError> {
        match self.node_selector.as_deref().map(str::trim) {
            None | Some("") => Ok(true),
            Some(s) => Ok(Selector::parse(s)?.matches(labels)),
        }
    }

    /// Every rule beyond the types, as (field path, reason) pairs.
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let mut err = |field: &str, reason: String| errors.push((field.to_string(), reason));
        let cidr = self.cidr;
        if cidr.trunc() != cidr {
            err(
                "spec.cidr",
                format!(
                    "{cidr} has host bits set; the pool's prefix is {}",
                    cidr.trunc()
                ),
            );
        }
        if let Some(reason) = special_range(&cidr) {
            err(
                "spec.cidr",
                format!("{cidr} overlaps {reason} and cannot hold pod addresses"),
            );
        }
        let (range, family) = match cidr {
            IpNet::V4(_) => (BLOCK_SIZE_RANGE_V4, "IPv4"),
            IpNet::V6(_) => (BLOCK_SIZE_RANGE_V6, "IPv6"),
        };
        let bs = self.effective_block_size();
        if !range.contains(&bs) {
            err(
                "spec.blockSize",
                format!(
                    "{bs} is outside the allowed range for an {family} pool ({}–{})",
                    range.start(),
                    range.end()
                ),
            );
        } else if bs < cidr.prefix_len() {
            err(
                "spec.blockSize",
                format!(
                    "a /{bs} block does not fit in the pool {cidr}: blockSize must be at least the pool's prefix length ({})",
                    cidr.prefix_len()
                ),
            );
        }
        if let Some(s) = &self.node_selector
            && !s.trim().is_empty()
            && let Err(e) = Selector::parse(s)
        {
            err("spec.nodeSelector", e.to_string());
        }
        if let Some(s) = &self.namespace_selector {
            let s = s.trim();
            if !s.is_empty() && s != "all()" {
                err(
                    "spec.namespaceSelector",
                    format!(
                        "\"{s}\" is not supported: petrel chooses pools per node (nodeSelector) only; use all() or leave it empty"
                    ),
                );
            }
        }
        if self.assignment_mode == Some(AssignmentMode::Manual) {
            err(
                "spec.assignmentMode",
                "Manual is not supported: petrel assigns pool addresses automatically only".into(),
            );
        }
        let uses = &self.allowed_uses;
        if uses.contains(&AllowedUse::LoadBalancer) && uses.len() > 1 {
            err(
                "spec.allowedUses",
                "LoadBalancer cannot be combined with other uses".into(),
            );
        }
        for (field, mode) in [
            ("spec.ipipMode", self.ipip_mode),
            ("spec.vxlanMode", self.vxlan_mode),
        ] {
            if let Some(m) = mode
                && m != EncapsulationMode::Never
            {
                err(
                    field,
                    format!(
                        "{m} is not supported: petrel does not encapsulate, pods are routed natively over BGP; set it to Never or remove it"
                    ),
                );
            }
        }
        if self.nat_outgoing {
            err(
                "spec.natOutgoing",
                "true is not supported: petrel does not NAT, pod addresses are routed natively and must be reachable from outside; set it to false or remove it".into(),
            );
        }
        errors
    }
}

/// The special-purpose range `cidr` overlaps, if any.
fn special_range(cidr: &IpNet) -> Option<&'static str> {
    const RANGES: &[(&str, &str)] = &[
        ("0.0.0.0/8", "\"this network\" 0.0.0.0/8 (RFC 6890)"),
        ("127.0.0.0/8", "loopback 127.0.0.0/8"),
        ("169.254.0.0/16", "link-local 169.254.0.0/16 (RFC 3927)"),
        ("224.0.0.0/4", "multicast 224.0.0.0/4 (RFC 5771)"),
        ("240.0.0.0/4", "reserved 240.0.0.0/4 (RFC 6890)"),
        ("::/128", "the unspecified address ::"),
        ("::1/128", "loopback ::1"),
        ("fe80::/10", "link-local fe80::/10 (RFC 4291)"),
        ("ff00::/8", "multicast ff00::/8 (RFC 4291)"),
    ];
    RANGES.iter().find_map(|(net, name)| {
        let net: IpNet = net.parse().ok()?;
        nets_overlap(&net, cidr).then_some(*name)
    })
}

/// Whether two prefixes share an address.
pub fn nets_overlap(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// Two pools whose CIDRs overlap.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("IPPool {pool} ({cidr}) overlaps IPPool {other} ({other_cidr}); pools must not overlap")]
pub struct PoolOverlap {
    pub pool: String,
    pub cidr: IpNet,
    pub other: String,
    pub other_cidr: IpNet,
}

/// Every pair of overlapping pools, each pair once. The pool created later
/// (`metadata.creationTimestamp`, then the name when the times are equal) is
/// the one reported: the pool that existed first, and may have blocks in
/// use, wins. Pools without a creation time (manifest files) come after, in
/// input order.
pub fn check_pool_overlaps(pools: &[IPPool]) -> Vec<PoolOverlap> {
    let mut pools: Vec<&IPPool> = pools.iter().collect();
    pools.sort_by(|a, b| {
        match (
            &a.metadata.creation_timestamp,
            &b.metadata.creation_timestamp,
        ) {
            (Some(x), Some(y)) => x.cmp(y).then_with(|| a.metadata.name.cmp(&b.metadata.name)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    });
    let mut out = Vec::new();
    for (i, a) in pools.iter().enumerate() {
        for b in &pools[i + 1..] {
            if nets_overlap(&a.spec.cidr, &b.spec.cidr) {
                out.push(PoolOverlap {
                    pool: b.metadata.name.clone().unwrap_or_default(),
                    cidr: b.spec.cidr,
                    other: a.metadata.name.clone().unwrap_or_default(),
                    other_cidr: a.spec.cidr,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(yaml: &str) -> IpPoolSpec {
        serde_saphyr::from_str(yaml).unwrap_or_else(|e| panic!("{yaml}: {e}"))
    }

    fn errors(yaml: &str) -> Vec<(String, String)> {
        pool(yaml).validate()
    }

    fn named(name: &str, cidr: &str) -> IPPool {
        IPPool::new(
            name,
            IpPoolSpec {
                cidr: cidr.parse().unwrap(),
                ..Default::default()
            },
        )
    }

    #[test]
    fn calico_pool_parses_with_defaults() {
        let p = pool(
            "cidr: 10.244.0.0/16\nipipMode: Never\nvxlanMode: Never\nnatOutgoing: false\nnodeSelector: all()\ndisableBGPExport: true\nallowedUses: [Workload, Tunnel]\n",
        );
        assert_eq!(p.effective_block_size(), 26);
        assert!(p.disable_bgp_export);
        assert!(p.for_workloads());
        assert!(p.validate().is_empty(), "{:?}", p.validate());
        let v6 = pool("cidr: fd00:10:244::/56\n");
        assert_eq!(v6.effective_block_size(), 122);
        assert_eq!(
            v6.effective_allowed_uses(),
            vec![AllowedUse::Workload, AllowedUse::Tunnel]
        );
        assert!(v6.validate().is_empty());
        let yaml = serde_json::to_value(&p).unwrap();
        for key in [
            "cidr",
            "disableBGPExport",
            "ipipMode",
            "vxlanMode",
            "allowedUses",
        ] {
            assert!(yaml.get(key).is_some(), "{key} in {yaml}");
        }
    }

    #[test]
    fn unknown_field_is_rejected() {
        assert!(
            serde_saphyr::from_str::<IpPoolSpec>("cidr: 10.0.0.0/16\nblocksize: 24\n").is_err()
        );
    }

    #[test]
    fn block_size_ranges() {
        assert!(errors("cidr: 10.0.0.0/16\nblockSize: 20\n").is_empty());
        assert!(errors("cidr: 10.0.0.0/16\nblockSize: 32\n").is_empty());
        let e = errors("cidr: 10.0.0.0/16\nblockSize: 19\n");
        assert_eq!(e[0].0, "spec.blockSize");
        assert!(e[0].1.contains("20–32"), "{e:?}");
        let e = errors("cidr: fd00::/64\nblockSize: 115\n");
        assert!(e[0].1.contains("116–128"), "{e:?}");
        assert!(errors("cidr: fd00::/64\nblockSize: 128\n").is_empty());
        let e = errors("cidr: 10.0.0.0/28\nblockSize: 26\n");
        assert_eq!(e[0].0, "spec.blockSize");
        assert!(e[0].1.contains("does not fit"), "{e:?}");
    }

    #[test]
    fn encapsulation_and_nat_are_refused_clearly() {
        let e = errors("cidr: 10.0.0.0/16\nipipMode: Always\nvxlanMode: CrossSubnet\n");
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].0, "spec.ipipMode");
        assert!(e[0].1.contains("does not encapsulate"), "{e:?}");
        assert_eq!(e[1].0, "spec.vxlanMode");
        assert!(e[1].1.starts_with("CrossSubnet"), "{e:?}");
        let e = errors("cidr: 10.0.0.0/16\nnatOutgoing: true\n");
        assert_eq!(e[0].0, "spec.natOutgoing");
        assert!(e[0].1.contains("does not NAT"), "{e:?}");
        assert!(errors("cidr: 10.0.0.0/16\nipipMode: Never\nvxlanMode: Never\n").is_empty());
    }

    #[test]
    fn cidr_rules() {
        let e = errors("cidr: 10.0.0.1/16\n");
        assert_eq!(e[0].0, "spec.cidr");
        assert!(e[0].1.contains("10.0.0.0/16"), "{e:?}");
        for bad in [
            "169.254.0.0/16",
            "127.0.0.0/24",
            "224.0.0.0/8",
            "fe80::/64",
            "ff02::/64",
        ] {
            let e = errors(&format!(
                "cidr: {bad}\nblockSize: {}\n",
                if bad.contains(':') { 122 } else { 26 }
            ));
            assert!(
                e.iter()
                    .any(|(f, r)| f == "spec.cidr" && r.contains("cannot hold")),
                "{bad}: {e:?}"
            );
        }
        assert!(errors("cidr: 100.64.0.0/16\n").is_empty());
    }

    #[test]
    fn selectors_and_uses() {
        let e = errors("cidr: 10.0.0.0/16\nnodeSelector: \"rack ==\"\n");
        assert_eq!(e[0].0, "spec.nodeSelector");
        let e = errors("cidr: 10.0.0.0/16\nnamespaceSelector: \"team == 'a'\"\n");
        assert_eq!(e[0].0, "spec.namespaceSelector");
        assert!(errors("cidr: 10.0.0.0/16\nnamespaceSelector: all()\n").is_empty());
        let e = errors("cidr: 10.0.0.0/16\nassignmentMode: Manual\n");
        assert_eq!(e[0].0, "spec.assignmentMode");
        let e = errors("cidr: 10.0.0.0/16\nallowedUses: [LoadBalancer, Workload]\n");
        assert_eq!(e[0].0, "spec.allowedUses");
        let lb = pool("cidr: 10.0.0.0/16\nallowedUses: [LoadBalancer]\n");
        assert!(lb.validate().is_empty());
        assert!(!lb.for_workloads());
    }

    #[test]
    fn node_selection() {
        let mut labels = BTreeMap::new();
        labels.insert("rack".to_string(), "r1".to_string());
        let all = pool("cidr: 10.0.0.0/16\n");
        assert!(all.selects_node(&labels).unwrap());
        let r1 = pool("cidr: 10.0.0.0/16\nnodeSelector: rack == 'r1'\n");
        assert!(r1.selects_node(&labels).unwrap());
        let r2 = pool("cidr: 10.0.0.0/16\nnodeSelector: rack == 'r2'\n");
        assert!(!r2.selects_node(&labels).unwrap());
        assert!(!r2.selects_node(&BTreeMap::new()).unwrap());
    }

    #[test]
    fn overlaps_name_both_pools() {
        let pools = [
            named("a", "10.0.0.0/16"),
            named("b", "10.1.0.0/16"),
            named("c", "10.0.128.0/24"),
            named("v6", "fd00::/48"),
            named("v6b", "fd00:0:0:1::/64"),
        ];
        let o = check_pool_overlaps(&pools);
        assert_eq!(o.len(), 2, "{o:?}");
        assert_eq!((o[0].pool.as_str(), o[0].other.as_str()), ("c", "a"));
        assert_eq!((o[1].pool.as_str(), o[1].other.as_str()), ("v6b", "v6"));
        let msg = o[0].to_string();
        assert!(
            msg.contains("IPPool c (10.0.128.0/24)") && msg.contains("IPPool a (10.0.0.0/16)"),
            "{msg}"
        );
        assert!(check_pool_overlaps(&pools[..2]).is_empty());
        // The pool created first wins, whatever the names.
        let mut old = named("pods", "10.123.0.0/16");
        let mut new = named("aaa-overlap", "10.123.0.0/17");
        let t = |s: &str| k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(s.parse().unwrap());
        old.metadata.creation_timestamp = Some(t("2026-01-01T00:00:00Z"));
        new.metadata.creation_timestamp = Some(t("2026-06-01T00:00:00Z"));
        for pools in [[old.clone(), new.clone()], [new, old]] {
            let o = check_pool_overlaps(&pools);
            assert_eq!(o.len(), 1, "{o:?}");
            assert_eq!(
                (o[0].pool.as_str(), o[0].other.as_str()),
                ("aaa-overlap", "pods")
            );
        }
        assert!(!nets_overlap(
            &"10.0.0.0/24".parse().unwrap(),
            &"fd00::/8".parse().unwrap()
        ));
    }
}
