//! Rendering of a [`Snapshot`] in the Prometheus text exposition format
//! (version 0.0.4) through a `prometheus-client` [`Collector`].
//!
//! Every value is read from the snapshot taken for this scrape; nothing is
//! accumulated here. Counters come from counters the speaker and the dataplane
//! keep themselves, so they only reset when the agent restarts.

use super::{DataplaneState, Snapshot};
use petrel_speaker::PeerStatus;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;
use std::fmt;
use std::time::UNIX_EPOCH;

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// BGP session states (RFC 4271 §8.2.2), one `petrel_bgp_session_state`
/// series each.
pub const SESSION_STATES: [&str; 6] = [
    "Idle",
    "Connect",
    "Active",
    "OpenSent",
    "OpenConfirm",
    "Established",
];

/// Render a snapshot as Prometheus text.
pub fn render(snapshot: &Snapshot) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(snapshot.clone()));
    let mut out = String::new();
    // Writing into a String cannot fail, and the collector itself only fails
    // when its writer does.
    let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &registry);
    out
}

impl Collector for Snapshot {
    fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
        let mut info = enc.encode_descriptor(
            "petrel_build",
            "Version of the running petrel agent",
            None,
            MetricType::Info,
        )?;
        info.encode_info(&[("version", env!("CARGO_PKG_VERSION"))])?;
        gauge(
            &mut enc,
            "petrel_config_loaded",
            "1 once a configuration for this node has been loaded from the datastore",
            u64::from(self.config_loaded),
        )?;
        let mut m = enc.encode_descriptor(
            "petrel_config_invalid_objects",
            "Objects that are invalid, on their own or because of an object they depend on; \
             petrel uses their last valid version (or leaves them out) and reports them in the \
             PetrelNode's ConfigValid condition and `petrel status`",
            None,
            MetricType::Gauge,
        )?;
        for (kind, n) in &self.invalid_objects {
            ConstGauge::new(*n).encode(m.encode_family(&[("kind", kind.as_str())])?)?;
        }
        self.encode_peers(&mut enc)?;
        super::bfd::encode(&mut enc, &self.bfd)?;
        self.encode_dataplane(&mut enc)?;
        self.encode_ipam(&mut enc)?;
        self.encode_services(&mut enc)
    }
}

impl Snapshot {
    fn encode_peers(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        gauge(
            enc,
            "petrel_bgp_speaker_up",
            "1 when the BGP speaker task answered this scrape",
            u64::from(self.peers.is_some()),
        )?;
        {
            let m = enc.encode_descriptor(
                "petrel_bgp_rejected_connections",
                "BGP connections refused because no peer is configured for their source address",
                None,
                MetricType::Counter,
            )?;
            ConstCounter::new(self.rejected_connections).encode(m)?;
        }
        let peers = self.peers.as_deref().unwrap_or_default();
        gauge(
            enc,
            "petrel_bgp_peers",
            "Configured BGP peers",
            peers.len() as u64,
        )?;
        {
            let mut m = enc.encode_descriptor(
                "petrel_bgp_session_state",
                "BGP session state: 1 for the current state of the peer, 0 for the others",
                None,
                MetricType::Gauge,
            )?;
            for p in peers {
                let address = p.address.to_string();
                let current = p.state.to_string();
                for state in SESSION_STATES {
                    let labels = [
                        ("peer", p.name.as_str()),
                        ("address", address.as_str()),
                        ("state", state),
                    ];
                    ConstGauge::new(i64::from(current == state))
                        .encode(m.encode_family(&labels)?)?;
                }
            }
        }
        per_peer(
            enc,
            peers,
            "petrel_bgp_session_established",
            "1 when the BGP session is Established, else 0",
            MetricType::Gauge,
            |p| u64::from(p.established()),
        )?;
        per_peer(
            enc,
            peers,
            "petrel_bgp_session_uptime_seconds",
            "Seconds since the session reached Established (0 when it is not)",
            MetricType::Gauge,
            |p| p.uptime.map_or(0, |d| d.as_secs()),
        )?;
        per_peer(
            enc,
            peers,
            "petrel_bgp_prefixes_received",
            "Routes held from the peer before import policy (pre-policy Adj-RIB-In), all families",
            MetricType::Gauge,
            |p| p.prefixes_received,
        )?;
        per_peer(
            enc,
            peers,
            "petrel_bgp_prefixes_accepted",
            "Received prefixes that passed import policy",
            MetricType::Gauge,
            |p| p.prefixes_accepted,
        )?;
        per_peer(
            enc,
            peers,
            "petrel_bgp_stale_routes",
            "Routes kept from the peer while it restarts (graceful restart, RFC 4724)",
            MetricType::Gauge,
            |p| p.stale_routes,
        )?;
        per_peer(
            enc,
            peers,
            "petrel_bgp_prefixes_advertised",
            "Prefixes currently advertised to the peer (Adj-RIB-Out)",
            MetricType::Gauge,
            |p| p.prefixes_advertised,
        )?;
        per_peer(
            enc,
            peers,
            "petrel_bgp_messages_received",
            "BGP messages received from the peer",
            MetricType::Counter,
            |p| p.messages_received,
        )?;
        per_peer(
            enc,
            peers,
            "petrel_bgp_messages_sent",
            "BGP messages sent to the peer",
            MetricType::Counter,
            |p| p.messages_sent,
        )?;
        per_peer(
            enc,
            peers,
            "petrel_bgp_connection_attempts",
            "Outgoing TCP connection attempts and accepted connections for the peer",
            MetricType::Counter,
            |p| p.connection_attempts,
        )?;
        per_peer(
            enc,
            peers,
            "petrel_bgp_established_transitions",
            "Times the session entered the Established state",
            MetricType::Counter,
            |p| p.established_transitions,
        )?;
        let mut m = enc.encode_descriptor(
            "petrel_bgp_unnegotiated_family_routes",
            "Routes (announced or withdrawn) the peer sent for a family that was not negotiated, ignored (RFC 4760)",
            None,
            MetricType::Counter,
        )?;
        for p in peers {
            let address = p.address.to_string();
            for (fam, n) in &p.unnegotiated_routes {
                let labels = [
                    ("peer", p.name.as_str()),
                    ("address", address.as_str()),
                    ("afi_safi", fam.name()),
                ];
                ConstCounter::new(*n).encode(m.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }

    fn encode_dataplane(&self, enc: &mut DescriptorEncoder) -> fmt::Result {
        if self.dataplane == DataplaneState::Disabled {
            return Ok(());
        }
        gauge(
            enc,
            "petrel_dataplane_up",
            "1 when the dataplane task answered this scrape",
            u64::from(matches!(self.dataplane, DataplaneState::Status(_))),
        )?;
        let DataplaneState::Status(d) = &self.dataplane else {
            return Ok(());
        };
        let gauges: [(&str, &str, u64); 7] = [
            (
                "petrel_dataplane_routes_desired",
                "Prefixes the speaker wants in the kernel",
                d.desired as u64,
            ),
            (
                "petrel_dataplane_routes_installed",
                "petrel routes in the kernel that are not stale",
                d.installed as u64,
            ),
            (
                "petrel_dataplane_routes_stale",
                "Routes adopted at start-up and not yet claimed or removed",
                d.stale as u64,
            ),
            (
                "petrel_dataplane_routes_unresolved",
                "(prefix, next hop) pairs whose next hop does not resolve",
                d.unresolved.len() as u64,
            ),
            (
                "petrel_dataplane_routes_conflicts",
                "Desired prefixes held by a route of another protocol",
                d.conflicts.len() as u64,
            ),
            (
                "petrel_dataplane_routes_errors",
                "Prefixes whose last kernel operation failed",
                d.errors.len() as u64,
            ),
            (
                "petrel_dataplane_converged",
                "1 once routing converged (every peer sent End-of-RIB or, without graceful restart, was quiet) or the stale timeout passed",
                u64::from(d.converged),
            ),
        ];
        for (name, help, value) in gauges {
            gauge(enc, name, help, value)?;
        }
        if let Some(t) = d
            .last_resync
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        {
            let m = enc.encode_descriptor(
                "petrel_dataplane_last_resync_timestamp_seconds",
                "Unix time of the last full read of the kernel routing table",
                None,
                MetricType::Gauge,
            )?;
            ConstGauge::new(t.as_secs_f64()).encode(m)?;
        }
        counter(
            enc,
            "petrel_dataplane_route_operations",
            "Kernel route operations executed",
            d.operations,
        )?;
        counter(
            enc,
            "petrel_dataplane_resyncs",
            "Full reads of the kernel routing table, start-up included",
            d.resyncs,
        )?;
        let h = &d.reconcile_latency;
        let mut m = enc.encode_descriptor(
            "petrel_dataplane_reconcile_duration_seconds",
            "Duration of each reconcile pass that changed kernel routes, from taking the \
             operations to the kernel's acknowledgement of the last one",
            None,
            MetricType::Histogram,
        )?;
        m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
            h.sum_seconds(),
            h.count,
            // prometheus-client makes the counts cumulative itself.
            &h.buckets(),
            None,
        )
    }
}

pub(super) fn gauge(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
    ConstGauge::new(value).encode(m)
}

fn counter(enc: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> fmt::Result {
    let m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    ConstCounter::new(value).encode(m)
}

/// One series per peer, labelled `peer` (the configuration object) and
/// `address`.
fn per_peer(
    enc: &mut DescriptorEncoder,
    peers: &[PeerStatus],
    name: &str,
    help: &str,
    kind: MetricType,
    value: impl Fn(&PeerStatus) -> u64,
) -> fmt::Result {
    let mut m = enc.encode_descriptor(name, help, None, kind)?;
    for p in peers {
        let address = p.address.to_string();
        let labels = [("peer", p.name.as_str()), ("address", address.as_str())];
        let series = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => ConstCounter::new(value(p)).encode(series)?,
            _ => ConstGauge::new(value(p)).encode(series)?,
        }
    }
    Ok(())
}
