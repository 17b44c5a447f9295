//! BFD metrics (RFC 5880 sessions of the peers with a BFDProfile): one
//! series per session, labelled with the peer address and the hop mode.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::fmt;

/// What a scrape reports about one BFD session.
#[derive(Clone, Debug, PartialEq)]
pub struct BfdSeries {
    pub address: String,
    /// `single-hop` or `multihop`.
    pub hop: &'static str,
    pub up: bool,
    pub state_transitions: u64,
    pub packets_received: u64,
    pub packets_sent: u64,
    /// `None` until the peer's parameters are known.
    pub detection_time_seconds: Option<f64>,
}

impl BfdSeries {
    /// The series of the speaker's BFD sessions.
    pub fn of(snapshot: &petrel_speaker::bfd::BfdSnapshot) -> Vec<BfdSeries> {
        snapshot
            .sessions
            .iter()
            .map(|s| BfdSeries {
                address: s.key.peer.to_string(),
                hop: if s.key.multihop {
                    "multihop"
                } else {
                    "single-hop"
                },
                up: s.status.state == petrel_speaker::bfd::BfdState::Up,
                state_transitions: s.status.counters.state_changes,
                packets_received: s.status.counters.packets_received,
                packets_sent: s.status.counters.packets_sent,
                detection_time_seconds: s.status.detection_time.map(|d| d.as_secs_f64()),
            })
            .collect()
    }
}

/// A metric family: name, help, and the value of one session.
type Family = (&'static str, &'static str, fn(&BfdSeries) -> u64);

/// Encode the BFD families.
pub(super) fn encode(enc: &mut DescriptorEncoder, sessions: &[BfdSeries]) -> fmt::Result {
    let gauges: [Family; 1] = [(
        "petrel_bfd_session_up",
        "1 when the BFD session is Up, else 0",
        |s| u64::from(s.up),
    )];
    let counters: [Family; 3] = [
        (
            "petrel_bfd_state_transitions",
            "BFD session state changes since the session was created",
            |s| s.state_transitions,
        ),
        (
            "petrel_bfd_packets_received",
            "BFD Control packets accepted (every RFC 5880 §6.8.6 and GTSM check passed)",
            |s| s.packets_received,
        ),
        ("petrel_bfd_packets_sent", "BFD Control packets sent", |s| {
            s.packets_sent
        }),
    ];
    for (name, help, value) in gauges {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Gauge)?;
        for s in sessions {
            let labels = [("address", s.address.as_str()), ("hop", s.hop)];
            ConstGauge::new(value(s)).encode(m.encode_family(&labels)?)?;
        }
    }
    for (name, help, value) in counters {
        let mut m = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
        for s in sessions {
            let labels = [("address", s.address.as_str()), ("hop", s.hop)];
            ConstCounter::new(value(s)).encode(m.encode_family(&labels)?)?;
        }
    }
    let mut m = enc.encode_descriptor(
        "petrel_bfd_detection_time_seconds",
        "Negotiated BFD Detection Time (remote Detect Mult × agreed interval, RFC 5880 §6.8.4)",
        None,
        MetricType::Gauge,
    )?;
    for s in sessions {
        if let Some(t) = s.detection_time_seconds {
            let labels = [("address", s.address.as_str()), ("hop", s.hop)];
            ConstGauge::new(t).encode(m.encode_family(&labels)?)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_bfd_family_is_exposed() {
        let series = vec![BfdSeries {
            address: "10.0.0.1".into(),
            hop: "single-hop",
            up: true,
            state_transitions: 2,
            packets_received: 10,
            packets_sent: 11,
            detection_time_seconds: Some(0.9),
        }];
        let mut registry = prometheus_client::registry::Registry::default();
        #[derive(Debug)]
        struct C(Vec<BfdSeries>);
        impl prometheus_client::collector::Collector for C {
            fn encode(&self, mut enc: DescriptorEncoder) -> fmt::Result {
                encode(&mut enc, &self.0)
            }
        }
        registry.register_collector(Box::new(C(series)));
        let mut out = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut out, &registry).unwrap();
        for want in [
            "petrel_bfd_session_up{address=\"10.0.0.1\",hop=\"single-hop\"} 1",
            "petrel_bfd_state_transitions_total{address=\"10.0.0.1\",hop=\"single-hop\"} 2",
            "petrel_bfd_packets_received_total{address=\"10.0.0.1\",hop=\"single-hop\"} 10",
            "petrel_bfd_packets_sent_total{address=\"10.0.0.1\",hop=\"single-hop\"} 11",
            "petrel_bfd_detection_time_seconds{address=\"10.0.0.1\",hop=\"single-hop\"} 0.9",
        ] {
            assert!(out.contains(want), "{want} missing in\n{out}");
        }
    }
}
