//! Metrics of IP address management (pools, this node's blocks and
//! allocations; RFC 4632 / RFC 4291 prefixes) and of service advertisement
//! (prefixes advertised, addresses rejected per reason).

use super::Snapshot;
use petrel_ipam::backend::{BlockClaimState, IpamBackend, IpamStatusInfo};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use tokio::sync::watch;

/// Sources beyond [`super::Sources`], each optional: an agent without IPAM
/// or service advertisement leaves them out and exports no such series.
#[derive(Clone, Default)]
pub struct MoreSources {
    pub ipam: Option<Arc<dyn IpamBackend>>,
    pub services: Option<watch::Receiver<petrel_services::ServicesView>>,
}

/// What IPAM said for this scrape.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IpamState {
    /// The agent runs without IPAM.
    Disabled,
    /// The IPAM task failed or did not answer.
    Unavailable(String),
    Status(IpamStatusInfo),
}

/// Service advertisement counts for this scrape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServicesCounts {
    /// Service prefixes this node advertises.
    pub advertised: u64,
    /// Rejected service addresses per reason code (`api::reject_code`).
    pub rejected: BTreeMap<&'static str, u64>,
}

impl ServicesCounts {
    pub fn of(view: &petrel_services::ServicesView) -> Self {
        let mut rejected = BTreeMap::new();
        for r in &view.rejections {
            *rejected
                .entry(petrel_api::reject_code(&r.reason))
                .or_default() += 1;
        }
        ServicesCounts {
            advertised: view.advertised.len() as u64,
            rejected,
        }
    }
}

/// Reads IPAM within [`super::QUERY_TIMEOUT`].
pub async fn take_ipam(more: &MoreSources) -> IpamState {
    let Some(ipam) = &more.ipam else {
        return IpamState::Disabled;
    };
    match tokio::time::timeout(super::QUERY_TIMEOUT, ipam.status()).await {
        Ok(Ok(s)) => IpamState::Status(s),
        Ok(Err(e)) => IpamState::Unavailable(e.to_string()),
        Err(_) => IpamState::Unavailable(format!(
            "no answer within {}s",
            super::QUERY_TIMEOUT.as_secs()
        )),
    }
}

fn state_label(s: BlockClaimState) -> &'static str {
    match s {
        BlockClaimState::Pending => "pending",
        BlockClaimState::Confirmed => "confirmed",
        BlockClaimState::Releasing => "releasing",
    }
}

/// A gauge family with one series per label set.
fn family<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: impl IntoIterator<Item = (Vec<(&'a str, String)>, u64)>,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    for (labels, value) in series {
        ConstGauge::new(value).encode(m.encode_family(&labels)?)?;
    }
    Ok(())
}

impl Snapshot {
    pub(super) fn encode_ipam(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let s = match &self.ipam {
            IpamState::Disabled => return Ok(()),
            IpamState::Unavailable(_) => None,
            IpamState::Status(s) => Some(s),
        };
        super::collector::gauge(
            enc,
            "petrel_ipam_up",
            "1 when IPAM answered this scrape",
            u64::from(s.is_some()),
        )?;
        let Some(s) = s else { return Ok(()) };
        super::collector::gauge(
            enc,
            "petrel_ipam_ready",
            "1 when pod addresses can be allocated (start-up reconcile done, a block or a free block in every family)",
            u64::from(s.ready),
        )?;
        let pool = |p: &petrel_ipam::backend::PoolInfo| {
            vec![("pool", p.name.clone()), ("cidr", p.cidr.to_string())]
        };
        family(
            enc,
            "petrel_ipam_pool_blocks",
            "Blocks the pool holds",
            s.pools.iter().map(|p| (pool(p), p.blocks_total)),
        )?;
        family(
            enc,
            "petrel_ipam_pool_blocks_claimed",
            "Blocks of the pool claimed by any node",
            s.pools.iter().map(|p| (pool(p), p.blocks_claimed)),
        )?;
        family(
            enc,
            "petrel_ipam_pool_addresses_used",
            "Pod addresses in use in this node's blocks of the pool",
            s.pools.iter().map(|p| (pool(p), p.addresses_used)),
        )?;
        family(
            enc,
            "petrel_ipam_pool_addresses_free",
            "Free pod addresses in this node's blocks of the pool",
            s.pools.iter().map(|p| (pool(p), p.addresses_free)),
        )?;
        // This node's blocks per pool and claim state; every state is
        // exported (0 when none) so that alerts can compare them.
        let mut blocks: BTreeMap<(&str, &str), u64> = BTreeMap::new();
        for p in &s.pools {
            for st in [
                BlockClaimState::Pending,
                BlockClaimState::Confirmed,
                BlockClaimState::Releasing,
            ] {
                blocks.insert((p.name.as_str(), state_label(st)), 0);
            }
        }
        for b in s.blocks.iter().filter(|b| b.owner_node == s.node) {
            *blocks
                .entry((b.pool.as_str(), state_label(b.state)))
                .or_default() += 1;
        }
        family(
            enc,
            "petrel_ipam_node_blocks",
            "Blocks this node owns or is claiming, per pool and claim state",
            blocks.into_iter().map(|((pool, state), n)| {
                (
                    vec![("pool", pool.to_string()), ("state", state.to_string())],
                    n,
                )
            }),
        )?;
        super::collector::gauge(
            enc,
            "petrel_ipam_allocations",
            "Pod attachments holding addresses on this node",
            s.allocations.len() as u64,
        )
    }

    pub(super) fn encode_services(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        let Some(s) = &self.services else {
            return Ok(());
        };
        super::collector::gauge(
            enc,
            "petrel_services_advertised_prefixes",
            "Service prefixes this node advertises (aggregates and host routes)",
            s.advertised,
        )?;
        family(
            enc,
            "petrel_services_rejected_addresses",
            "Service addresses this node does not advertise, per reason",
            s.rejected
                .iter()
                .map(|(r, n)| (vec![("reason", r.to_string())], *n)),
        )
    }
}
