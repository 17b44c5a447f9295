//! Our OPEN, checks of the peer's OPEN and capability negotiation (RFC 4271
//! §6.2, RFC 6286 §2.2, RFC 5492, RFC 4760, RFC 6793, RFC 2918, RFC 7313,
//! RFC 8654, RFC 4724).

use super::notify::{
    self, OPEN_BAD_BGP_ID, OPEN_BAD_PEER_AS, OPEN_ERROR, OPEN_UNACCEPTABLE_HOLD_TIME,
    OPEN_UNSUPPORTED_CAPABILITY,
};
use super::{ConnId, Negotiated, SessionConfig};
use crate::wire::{Capabilities, Family, Notification, Open};

/// AS_TRANS (RFC 6793).
const AS_TRANS: u16 = 23456;

/// The OPEN we send for `cfg`.
pub(crate) fn local_open(cfg: &SessionConfig) -> Open {
    let mut families: Vec<Family> = Vec::with_capacity(cfg.families.len());
    for f in &cfg.families {
        if !families.contains(f) {
            families.push(*f);
        }
    }
    Open {
        asn: cfg.local_as,
        hold_time: cfg.effective_hold_time(),
        router_id: cfg.router_id,
        caps: Capabilities {
            multiprotocol: families,
            route_refresh: cfg.route_refresh,
            enhanced_route_refresh: cfg.enhanced_route_refresh,
            four_octet_as: Some(cfg.local_as),
            extended_message: cfg.extended_message,
            graceful_restart: cfg.graceful_restart.clone(),
            ..Capabilities::default()
        },
    }
}

/// The peer's real AS: the 4-octet AS capability when present, else My AS.
pub(crate) fn remote_as(open: &Open) -> u32 {
    open.caps.four_octet_as.unwrap_or(open.asn)
}

/// Families the peer supports: its multiprotocol capabilities, or IPv4
/// unicast alone when it sent none (RFC 4760 §1: a speaker without the
/// capability exchanges IPv4 unicast only). A peer whose only multiprotocol
/// capabilities are for families petrel does not know did send the
/// capability: nothing is implied for it.
fn peer_families(open: &Open) -> Vec<Family> {
    let sent_unknown_mp = open.caps.unknown.iter().any(|(code, _)| *code == 1);
    if open.caps.multiprotocol.is_empty() && !sent_unknown_mp {
        vec![Family::Ipv4Unicast]
    } else {
        open.caps.multiprotocol.clone()
    }
}

/// Checks the peer's OPEN against our configuration; `Err` carries the
/// NOTIFICATION to send (see the module docs of `fsm` for the order).
pub(crate) fn check_open(
    cfg: &SessionConfig,
    local: &Open,
    remote: &Open,
) -> Result<(), Notification> {
    if matches!(remote.hold_time, 1 | 2) {
        let data = remote.hold_time.to_be_bytes().to_vec();
        return Err(notify::notification(
            OPEN_ERROR,
            OPEN_UNACCEPTABLE_HOLD_TIME,
            data,
        ));
    }
    let peer_as = remote_as(remote);
    if peer_as != cfg.peer_as {
        let data = match remote.caps.four_octet_as {
            Some(asn) => asn.to_be_bytes().to_vec(),
            None => u16::try_from(remote.asn)
                .unwrap_or(AS_TRANS)
                .to_be_bytes()
                .to_vec(),
        };
        return Err(notify::notification(OPEN_ERROR, OPEN_BAD_PEER_AS, data));
    }
    if remote.router_id.is_unspecified() || (cfg.is_ibgp() && remote.router_id == cfg.router_id) {
        let data = remote.router_id.octets().to_vec();
        return Err(notify::notification(OPEN_ERROR, OPEN_BAD_BGP_ID, data));
    }
    if common_families(local, remote).is_empty() {
        let data = notify::multiprotocol_caps_data(&local.caps.multiprotocol);
        return Err(notify::notification(
            OPEN_ERROR,
            OPEN_UNSUPPORTED_CAPABILITY,
            data,
        ));
    }
    Ok(())
}

fn common_families(local: &Open, remote: &Open) -> Vec<Family> {
    let theirs = peer_families(remote);
    local
        .caps
        .multiprotocol
        .iter()
        .copied()
        .filter(|f| theirs.contains(f))
        .collect()
}

/// Keepalive interval in seconds for a negotiated hold time (0 = none).
pub(crate) fn keepalive_interval(cfg: &SessionConfig, hold: u16) -> u16 {
    if hold == 0 {
        return 0;
    }
    let third = (hold / 3).max(1);
    match cfg.keepalive_time {
        Some(k) if k > 0 => k.min(third),
        _ => third,
    }
}

/// What the two OPENs agree on (the peer's OPEN must have passed [`check_open`]).
pub(crate) fn negotiate(
    cfg: &SessionConfig,
    local: &Open,
    remote: &Open,
    conn: ConnId,
) -> Negotiated {
    let hold_time = local.hold_time.min(remote.hold_time);
    let (l, r) = (&local.caps, &remote.caps);
    Negotiated {
        local_open: local.clone(),
        remote_open: remote.clone(),
        hold_time,
        keepalive: keepalive_interval(cfg, hold_time),
        families: common_families(local, remote),
        four_octet_as: l.four_octet_as.is_some() && r.four_octet_as.is_some(),
        route_refresh: l.route_refresh && r.route_refresh,
        enhanced_route_refresh: l.enhanced_route_refresh && r.enhanced_route_refresh,
        extended_message: l.extended_message && r.extended_message,
        peer_graceful_restart: r.graceful_restart.clone(),
        conn,
    }
}
