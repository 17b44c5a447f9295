//! Composing the configuration the BGP speaker runs on: the datastore's
//! resolved node configuration, plus the pod blocks IPAM has claimed.
//!
//! When IP pools are configured, petrel's IPAM owns pod addressing: this
//! node's confirmed blocks are originated (RFC 4271) and blackholed, every
//! node's blocks feed the import policy that accepts a block only from its
//! owner, and `Node.spec.podCIDRs` is ignored (as Calico IPAM ignores it). A
//! block of a pool with `disableBGPExport` is originated with the RFC 1997
//! NO_ADVERTISE community: it is blackholed locally but sent to no peer.
//! Without IP pools, `Node.spec.podCIDRs` stays the source of pod blocks.

use ipnet::IpNet;
use petrel_datastore::resolved::{Community, NodeConfig};
use petrel_speaker::NO_ADVERTISE;

/// What IPAM contributes to the speaker's configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpamRoutes {
    /// CIDRs of the IP pools (every pool, not only those selecting this node).
    pub pools: Vec<IpNet>,
    /// This node's confirmed blocks, with whether they are advertised.
    pub own_blocks: Vec<(IpNet, bool)>,
    /// Every node's blocks, with their owner.
    pub all_blocks: Vec<(IpNet, String)>,
}

/// The speaker's configuration: `base` with IPAM's blocks in place of the
/// Node objects' `podCIDRs` when any pool is configured.
pub fn compose(base: &NodeConfig, ipam: &IpamRoutes) -> NodeConfig {
    let mut out = base.clone();
    if ipam.pools.is_empty() {
        return out;
    }
    for cidr in &base.pod_cidrs {
        // A pod CIDR that is also a service CIDR stays (it came from both).
        if !base.cluster.service_cidrs.contains(cidr) {
            out.originate.remove(cidr);
        }
    }
    out.pod_cidrs = ipam.own_blocks.iter().map(|(b, _)| *b).collect();
    for (block, export) in &ipam.own_blocks {
        let mut comms = base.communities_for(block);
        if !export {
            comms = vec![Community::Standard(NO_ADVERTISE)];
        }
        out.originate.insert(*block, comms);
    }
    out.cluster.pools = ipam.pools.clone();
    out.cluster.blocks = ipam.all_blocks.clone();
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use petrel_datastore::resolved::BindMode;
    use std::collections::BTreeMap;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn base() -> NodeConfig {
        let mut originate = BTreeMap::new();
        originate.insert(net("10.96.0.0/12"), vec![]);
        originate.insert(net("10.244.1.0/24"), vec![]);
        NodeConfig {
            node_name: "node-a".into(),
            local_as: 64512,
            router_id: "10.0.0.1".parse().unwrap(),
            ipv4_address: None,
            ipv6_address: None,
            route_reflector_cluster_id: None,
            listen_port: 179,
            bind_mode: BindMode::None,
            originate,
            peers: BTreeMap::new(),
            filters: BTreeMap::new(),
            prefix_communities: vec![(
                net("10.244.0.0/16"),
                vec![Community::Standard(65000 << 16 | 1)],
            )],
            pod_cidrs: vec![net("10.244.1.0/24")],
            cluster: petrel_bgp::policy::ClusterView {
                blocks: vec![(net("10.244.1.0/24"), "node-a".into())],
                service_cidrs: vec![net("10.96.0.0/12")],
                ..Default::default()
            },
            max_paths: 16,
            problems: Vec::new(),
            pass_unknown_attributes: false,
            graceful_shutdown: None,
        }
    }

    #[test]
    fn without_pools_the_node_pod_cidrs_stay() {
        let b = base();
        assert_eq!(compose(&b, &IpamRoutes::default()), b);
    }

    #[test]
    fn pools_replace_pod_cidrs_with_claimed_blocks() {
        let ipam = IpamRoutes {
            pools: vec![net("10.244.0.0/16")],
            own_blocks: vec![(net("10.244.7.0/26"), true), (net("10.244.7.64/26"), false)],
            all_blocks: vec![
                (net("10.244.7.0/26"), "node-a".into()),
                (net("10.244.7.64/26"), "node-a".into()),
                (net("10.244.8.0/26"), "node-b".into()),
            ],
        };
        let c = compose(&base(), &ipam);
        assert_eq!(
            c.pod_cidrs,
            vec![net("10.244.7.0/26"), net("10.244.7.64/26")]
        );
        assert!(
            !c.originate.contains_key(&net("10.244.1.0/24")),
            "podCIDRs ignored"
        );
        assert!(
            c.originate.contains_key(&net("10.96.0.0/12")),
            "service CIDR kept"
        );
        assert_eq!(
            c.originate[&net("10.244.7.0/26")],
            vec![Community::Standard(65000 << 16 | 1)],
            "prefixAdvertisements communities apply"
        );
        assert_eq!(
            c.originate[&net("10.244.7.64/26")],
            vec![Community::Standard(NO_ADVERTISE)],
            "disableBGPExport: blackholed, advertised to no peer"
        );
        assert_eq!(c.cluster.blocks, ipam.all_blocks);
        assert_eq!(c.cluster.pools, ipam.pools);
        assert_eq!(c.cluster.service_cidrs, vec![net("10.96.0.0/12")]);
    }
}
