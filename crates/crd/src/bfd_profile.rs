//! `BFDProfile` (petrel.dev/v1): the parameters of Bidirectional Forwarding
//! Detection sessions, with the field names and meaning of MetalLB's
//! `metallb.io/v1beta1` BFDProfile. A `BGPPeer` names one in
//! `spec.bfdProfile`, the node-to-node mesh in
//! `BGPConfiguration.spec.nodeMeshBFDProfile`.
//! Related RFCs: RFC 5880 (BFD, asynchronous mode), RFC 5881 (single hop),
//! RFC 5883 (multihop), RFC 5882 (BFD clients such as BGP).
//!
//! petrel implements the asynchronous mode without the Echo function:
//! `echoMode: true` and `echoInterval` are rejected.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Default `receiveInterval` and `transmitInterval`, milliseconds (MetalLB's).
pub const DEFAULT_BFD_INTERVAL_MS: u32 = 300;
/// Default `detectMultiplier` (MetalLB's).
pub const DEFAULT_BFD_DETECT_MULTIPLIER: u32 = 3;
/// Default `minimumTtl` of multihop sessions: one router on the path.
pub const DEFAULT_BFD_MINIMUM_TTL: u32 = 254;
/// Smallest interval accepted, milliseconds (MetalLB's bound).
pub const MIN_BFD_INTERVAL_MS: u32 = 10;
/// Largest interval accepted, milliseconds (MetalLB's bound).
pub const MAX_BFD_INTERVAL_MS: u32 = 60_000;

/// The message for `echoMode: true`.
pub const ECHO_MODE_UNSUPPORTED: &str = "echoMode is not supported: petrel runs BFD in asynchronous mode without the Echo function (RFC 5880 §6.4); remove echoMode or set it to false";
/// The message for `echoInterval`.
pub const ECHO_INTERVAL_UNSUPPORTED: &str =
    "echoInterval is not supported: petrel runs BFD without the Echo function; remove echoInterval";

/// BFD session parameters for the BGP sessions that name this profile.
//
// The `x_kube` rules make the API server enforce the checks of the datastore
// loader (`petrel_datastore::validate`).
#[derive(
    CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq, Eq, Default,
)]
#[kube(
    group = "petrel.dev",
    version = "v1",
    kind = "BFDProfile",
    plural = "bfdprofiles",
    shortname = "bfdp",
    category = "petrel",
    derive = "PartialEq",
    doc = "BFD parameters referenced by BGPPeer.spec.bfdProfile and BGPConfiguration.spec.nodeMeshBFDProfile; MetalLB-compatible fields.",
    printcolumn = r#"{"name":"RX ms","type":"integer","jsonPath":".spec.receiveInterval"}"#,
    printcolumn = r#"{"name":"TX ms","type":"integer","jsonPath":".spec.transmitInterval"}"#,
    printcolumn = r#"{"name":"Multiplier","type":"integer","jsonPath":".spec.detectMultiplier"}"#,
    printcolumn = r#"{"name":"Passive","type":"boolean","jsonPath":".spec.passiveMode"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[schemars(transform = super::bgp_peer::kubernetes_int_formats)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[x_kube(validation = Rule::new("!has(self.echoMode) || !self.echoMode")
    .message(ECHO_MODE_UNSUPPORTED))]
#[x_kube(validation = Rule::new("!has(self.echoInterval)")
    .message(ECHO_INTERVAL_UNSUPPORTED))]
pub struct BfdProfileSpec {
    /// The minimum interval, in milliseconds, between received BFD Control
    /// packets that this system is capable of supporting (bfd.RequiredMinRxInterval).
    /// [Default: 300]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub receive_interval: Option<u32>,
    /// The minimum interval, in milliseconds, at which this system would like
    /// to send BFD Control packets, less any jitter (bfd.DesiredMinTxInterval).
    /// [Default: 300]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub transmit_interval: Option<u32>,
    /// The number of packets the remote system may lose before the session is
    /// declared down (bfd.DetectMult). [Default: 3]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 2, max = 255))]
    pub detect_multiplier: Option<u32>,
    /// Passive role (RFC 5880 §6.1): send nothing until the peer's first
    /// packet arrives. [Default: false]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive_mode: Option<bool>,
    /// For multihop sessions only: the smallest TTL / Hop Limit accepted on
    /// received packets (RFC 5883 §5). Single-hop sessions always require 255
    /// (RFC 5881 §5). [Default: 254]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1, max = 254))]
    pub minimum_ttl: Option<u32>,
    /// MetalLB's Echo function switch. Not supported: only `false` is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo_mode: Option<bool>,
    /// MetalLB's Echo interval. Not supported: rejected when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 10, max = 60000))]
    pub echo_interval: Option<u32>,
}

impl BfdProfileSpec {
    /// `receiveInterval` with its default, milliseconds.
    pub fn receive_interval_ms(&self) -> u32 {
        self.receive_interval.unwrap_or(DEFAULT_BFD_INTERVAL_MS)
    }
    /// `transmitInterval` with its default, milliseconds.
    pub fn transmit_interval_ms(&self) -> u32 {
        self.transmit_interval.unwrap_or(DEFAULT_BFD_INTERVAL_MS)
    }
    /// `detectMultiplier` with its default.
    pub fn detect_multiplier_or_default(&self) -> u32 {
        self.detect_multiplier
            .unwrap_or(DEFAULT_BFD_DETECT_MULTIPLIER)
    }
    /// `minimumTtl` with its default.
    pub fn minimum_ttl_or_default(&self) -> u32 {
        self.minimum_ttl.unwrap_or(DEFAULT_BFD_MINIMUM_TTL)
    }

    /// The loader's checks (the CRD schema enforces the same): each problem
    /// as (field, reason).
    pub fn validate(&self) -> Vec<(String, String)> {
        let mut errors = Vec::new();
        let interval = |errors: &mut Vec<(String, String)>, field: &str, v: Option<u32>| {
            if let Some(v) = v
                && !(MIN_BFD_INTERVAL_MS..=MAX_BFD_INTERVAL_MS).contains(&v)
            {
                errors.push((
                    format!("spec.{field}"),
                    format!(
                        "must be {MIN_BFD_INTERVAL_MS}..{MAX_BFD_INTERVAL_MS} milliseconds, found {v}"
                    ),
                ));
            }
        };
        interval(&mut errors, "receiveInterval", self.receive_interval);
        interval(&mut errors, "transmitInterval", self.transmit_interval);
        if let Some(m) = self.detect_multiplier
            && !(2..=255).contains(&m)
        {
            errors.push((
                "spec.detectMultiplier".into(),
                format!("must be 2..255, found {m}"),
            ));
        }
        if let Some(t) = self.minimum_ttl
            && !(1..=254).contains(&t)
        {
            errors.push((
                "spec.minimumTtl".into(),
                format!("must be 1..254, found {t}"),
            ));
        }
        if self.echo_mode == Some(true) {
            errors.push(("spec.echoMode".into(), ECHO_MODE_UNSUPPORTED.into()));
        }
        if self.echo_interval.is_some() {
            errors.push(("spec.echoInterval".into(), ECHO_INTERVAL_UNSUPPORTED.into()));
        }
        errors
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metallb_field_names_and_defaults() {
        let yaml = "receiveInterval: 100\ntransmitInterval: 200\ndetectMultiplier: 5\npassiveMode: true\nminimumTtl: 250\n";
        let spec: BfdProfileSpec = serde_saphyr::from_str(yaml).unwrap();
        assert_eq!(spec.receive_interval_ms(), 100);
        assert_eq!(spec.transmit_interval_ms(), 200);
        assert_eq!(spec.detect_multiplier_or_default(), 5);
        assert_eq!(spec.passive_mode, Some(true));
        assert_eq!(spec.minimum_ttl_or_default(), 250);
        assert!(spec.validate().is_empty());
        let empty = BfdProfileSpec::default();
        assert_eq!(empty.receive_interval_ms(), 300);
        assert_eq!(empty.transmit_interval_ms(), 300);
        assert_eq!(empty.detect_multiplier_or_default(), 3);
        assert_eq!(empty.minimum_ttl_or_default(), 254);
        assert!(serde_saphyr::from_str::<BfdProfileSpec>("receiveIntervl: 1\n").is_err());
    }

    #[test]
    fn echo_is_rejected_with_a_clear_message() {
        let spec = BfdProfileSpec {
            echo_mode: Some(true),
            echo_interval: Some(50),
            ..Default::default()
        };
        let errors = spec.validate();
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(errors[0].1.contains("echoMode is not supported"));
        assert!(errors[1].1.contains("echoInterval is not supported"));
        let off = BfdProfileSpec {
            echo_mode: Some(false),
            ..Default::default()
        };
        assert!(off.validate().is_empty());
    }

    #[test]
    fn ranges_are_metallbs() {
        for (spec, field) in [
            (
                BfdProfileSpec {
                    receive_interval: Some(9),
                    ..Default::default()
                },
                "spec.receiveInterval",
            ),
            (
                BfdProfileSpec {
                    transmit_interval: Some(60_001),
                    ..Default::default()
                },
                "spec.transmitInterval",
            ),
            (
                BfdProfileSpec {
                    detect_multiplier: Some(1),
                    ..Default::default()
                },
                "spec.detectMultiplier",
            ),
            (
                BfdProfileSpec {
                    minimum_ttl: Some(255),
                    ..Default::default()
                },
                "spec.minimumTtl",
            ),
        ] {
            let errors = spec.validate();
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!(errors[0].0, field);
        }
    }

    #[test]
    fn the_crd_carries_the_echo_rules() {
        use kube::CustomResourceExt;
        let crd = serde_json::to_string(&BFDProfile::crd()).unwrap();
        assert!(crd.contains("echoMode is not supported"));
        assert!(crd.contains("\"scope\":\"Cluster\""));
    }
}
