//! Negotiated decode/encode parameters (RFC 6793, RFC 7911, RFC 8654).

use super::types::{Family, Open};

/// The largest BGP message without RFC 8654 (RFC 4271 §4.1).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// The largest BGP message with RFC 8654 extended messages negotiated.
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;
/// Fixed header length: 16-octet marker, 2-octet length, 1-octet type.
pub const HEADER_LEN: usize = 19;

/// Negotiated decode/encode parameters.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WireContext {
    /// RFC 6793: both sides sent the 4-octet AS capability.
    pub four_octet_as: bool,
    /// Families whose received NLRI carry ADD-PATH path identifiers.
    pub add_path_rx: Vec<Family>,
    /// Families whose sent NLRI carry ADD-PATH path identifiers.
    pub add_path_tx: Vec<Family>,
    /// RFC 8654: both sides sent the extended message capability.
    pub extended_message: bool,
    /// The session is with an external peer (the two OPENs carry different
    /// AS numbers): LOCAL_PREF, ORIGINATOR_ID and CLUSTER_LIST from it are
    /// discarded on receipt (RFC 4271 §5.1.5, RFC 7606 §7.5, §7.9, §7.10).
    pub ebgp: bool,
}

impl WireContext {
    /// Parameters before and while OPENs are exchanged: 2-octet AS_PATH
    /// encoding, no ADD-PATH, 4096-byte messages.
    pub fn initial() -> Self {
        WireContext::default()
    }

    /// Parameters after both OPENs: a capability counts when both sides sent it.
    /// ADD-PATH is directional (RFC 7911 §4): we receive path identifiers for a
    /// family when we advertised Receive and the peer advertised Send, and we
    /// send them when we advertised Send and the peer advertised Receive.
    pub fn negotiated(local: &Open, remote: &Open) -> Self {
        let mode = |open: &Open, fam: Family| {
            open.caps
                .add_path
                .iter()
                .find(|(f, _)| *f == fam)
                .map(|(_, m)| *m)
        };
        let mut add_path_rx = Vec::new();
        let mut add_path_tx = Vec::new();
        for fam in Family::ALL {
            if let (Some(l), Some(r)) = (mode(local, fam), mode(remote, fam)) {
                if l.can_receive() && r.can_send() {
                    add_path_rx.push(fam);
                }
                if l.can_send() && r.can_receive() {
                    add_path_tx.push(fam);
                }
            }
        }
        WireContext {
            four_octet_as: local.caps.four_octet_as.is_some()
                && remote.caps.four_octet_as.is_some(),
            add_path_rx,
            add_path_tx,
            extended_message: local.caps.extended_message && remote.caps.extended_message,
            ebgp: real_as(local) != real_as(remote),
        }
    }

    /// 4096, or 65535 with RFC 8654 negotiated.
    pub fn max_message_len(&self) -> usize {
        if self.extended_message {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }

    pub(crate) fn rx_add_path(&self, fam: Family) -> bool {
        self.add_path_rx.contains(&fam)
    }

    pub(crate) fn tx_add_path(&self, fam: Family) -> bool {
        self.add_path_tx.contains(&fam)
    }
}

/// The AS of an OPEN's sender: the 4-octet AS capability when present.
fn real_as(open: &Open) -> u32 {
    open.caps.four_octet_as.unwrap_or(open.asn)
}
