//! Message encoding through netgauze, with the guards it lacks: the
//! negotiated maximum length (RFC 8654; netgauze writes a truncated length
//! field above 65535), optional-parameter and attribute length limits, and
//! RFC 6793 AS_TRANS/AS4_PATH/AS4_AGGREGATOR on 2-octet sessions.

mod attrs;
mod pack;

pub use pack::{encode_announce, encode_withdraw};

use super::context::{HEADER_LEN, MAX_MESSAGE_LEN, WireContext};
use super::error::EncodeError;
use super::types::{AddPathMode, Family, Message, Notification, Open, RouteRefresh};
use bytes::Bytes;
use netgauze_bgp_pkt::BgpMessage;
use netgauze_bgp_pkt::capabilities::{
    AddPathAddressFamily, AddPathCapability, BgpCapability, ExtendedNextHopEncoding,
    ExtendedNextHopEncodingCapability, FourOctetAsCapability, GracefulRestartAddressFamily,
    GracefulRestartCapability, MultiProtocolExtensionsCapability, UnrecognizedCapability,
};
use netgauze_bgp_pkt::iana::RouteRefreshSubcode;
use netgauze_bgp_pkt::open::{BgpOpenMessage, BgpOpenMessageParameter};
use netgauze_bgp_pkt::route_refresh::BgpRouteRefreshMessage;
use netgauze_iana::address_family::{AddressFamily, AddressType};
use netgauze_parse_utils::WritablePdu;

pub(crate) const AS_TRANS: u32 = 23456;

pub(crate) fn address_type(fam: Family) -> AddressType {
    match fam {
        Family::Ipv4Unicast => AddressType::Ipv4Unicast,
        Family::Ipv6Unicast => AddressType::Ipv6Unicast,
    }
}

/// Encodes one message. Fails rather than emit anything longer than
/// `ctx.max_message_len()` (OPEN and KEEPALIVE: always 4096, RFC 8654 §3).
pub fn encode(msg: &Message, ctx: &WireContext) -> Result<Bytes, EncodeError> {
    let ng = match msg {
        Message::Notification(notif) => return encode_notification(notif, ctx),
        Message::Keepalive => BgpMessage::KeepAlive,
        Message::Open(open) => BgpMessage::Open(open_to_netgauze(open)?),
        Message::RouteRefresh(rr) => BgpMessage::RouteRefresh(route_refresh_to_netgauze(rr)?),
        Message::Update(u) => BgpMessage::Update(attrs::build_update(
            &u.withdrawn,
            u.attrs.as_deref(),
            &u.announced,
            None,
            ctx,
        )?),
        Message::EndOfRib(fam) => {
            BgpMessage::Update(attrs::build_update(&[], None, &[], Some(*fam), ctx)?)
        }
    };
    let max = match msg {
        Message::Open(_) | Message::Keepalive => MAX_MESSAGE_LEN,
        _ => ctx.max_message_len(),
    };
    write_checked(&ng, max)
}

/// Writes a netgauze message after checking its length against `max`, and
/// verifies the written length field.
pub(crate) fn write_checked(msg: &BgpMessage, max: usize) -> Result<Bytes, EncodeError> {
    let len = msg.len();
    if len > max {
        return Err(EncodeError::TooLong { len, max });
    }
    let mut buf = Vec::with_capacity(len);
    msg.write(&mut buf)
        .map_err(|e| EncodeError::invalid("message", e))?;
    if buf.len() != len || usize::from(u16::from_be_bytes([buf[16], buf[17]])) != len {
        return Err(EncodeError::invalid(
            "message",
            format!("serializer wrote {} bytes, expected {len}", buf.len()),
        ));
    }
    Ok(Bytes::from(buf))
}

/// NOTIFICATION is written here: netgauze cannot represent subcodes it does
/// not know, and petrel must be able to send and echo any code/subcode.
fn encode_notification(n: &Notification, ctx: &WireContext) -> Result<Bytes, EncodeError> {
    let len = HEADER_LEN + 2 + n.data.len();
    let max = ctx.max_message_len();
    if len > max {
        return Err(EncodeError::TooLong { len, max });
    }
    let mut buf = Vec::with_capacity(len);
    buf.extend_from_slice(&[0xff; 16]);
    buf.extend_from_slice(&(len as u16).to_be_bytes());
    buf.extend_from_slice(&[3, n.code, n.subcode]);
    buf.extend_from_slice(&n.data);
    Ok(Bytes::from(buf))
}

fn route_refresh_to_netgauze(rr: &RouteRefresh) -> Result<BgpRouteRefreshMessage, EncodeError> {
    let sub = match rr.subtype {
        0 => RouteRefreshSubcode::NormalRequest,
        1 => RouteRefreshSubcode::BeginningOfRouteRefresh,
        2 => RouteRefreshSubcode::EndOfRouteRefresh,
        s => {
            return Err(EncodeError::invalid(
                "ROUTE-REFRESH",
                format!("subtype {s}"),
            ));
        }
    };
    Ok(BgpRouteRefreshMessage::new(address_type(rr.family), sub))
}

fn open_to_netgauze(open: &Open) -> Result<BgpOpenMessage, EncodeError> {
    let c = &open.caps;
    let mut caps = Vec::new();
    for fam in &c.multiprotocol {
        caps.push(BgpCapability::MultiProtocolExtensions(
            MultiProtocolExtensionsCapability::new(address_type(*fam)),
        ));
    }
    if c.route_refresh {
        caps.push(BgpCapability::RouteRefresh);
    }
    if c.enhanced_route_refresh {
        caps.push(BgpCapability::EnhancedRouteRefresh);
    }
    if let Some(asn) = c.four_octet_as {
        caps.push(BgpCapability::FourOctetAs(FourOctetAsCapability::new(asn)));
    }
    if !c.add_path.is_empty() {
        let fams: Vec<_> = c
            .add_path
            .iter()
            .map(|(fam, mode)| {
                let (send, recv) = match mode {
                    AddPathMode::Receive => (false, true),
                    AddPathMode::Send => (true, false),
                    AddPathMode::Both => (true, true),
                };
                AddPathAddressFamily::new(address_type(*fam), send, recv)
            })
            .collect();
        caps.push(BgpCapability::AddPath(AddPathCapability::new(fams)));
    }
    if c.extended_message {
        caps.push(BgpCapability::ExtendedMessage);
    }
    if let Some(gr) = &c.graceful_restart {
        if gr.restart_time > 0x0fff {
            return Err(EncodeError::invalid(
                "OPEN",
                format!("restart time {} > 4095", gr.restart_time),
            ));
        }
        let fams: Vec<_> = gr
            .families
            .iter()
            .map(|(fam, fwd)| GracefulRestartAddressFamily::new(*fwd, address_type(*fam)))
            .collect();
        caps.push(BgpCapability::GracefulRestartCapability(
            GracefulRestartCapability::new(
                gr.restart_state,
                gr.notification,
                gr.restart_time,
                fams,
            ),
        ));
    }
    if !c.extended_next_hop.is_empty() {
        let mut encs = Vec::new();
        for (fam, nh_afi) in &c.extended_next_hop {
            let afi = AddressFamily::try_from(*nh_afi).map_err(|_| {
                EncodeError::invalid("OPEN", format!("extended next hop AFI {nh_afi}"))
            })?;
            encs.push(ExtendedNextHopEncoding::new(address_type(*fam), afi));
        }
        caps.push(BgpCapability::ExtendedNextHopEncoding(
            ExtendedNextHopEncodingCapability::new(encs),
        ));
    }
    for (code, value) in &c.unknown {
        if value.len() > 255 {
            return Err(EncodeError::invalid(
                "OPEN",
                format!("capability {code} longer than 255 bytes"),
            ));
        }
        caps.push(BgpCapability::Unrecognized(UnrecognizedCapability::new(
            *code,
            value.clone(),
        )));
    }
    let params = if caps.is_empty() {
        Vec::new()
    } else {
        let p = BgpOpenMessageParameter::new_capabilities(caps);
        // netgauze casts the parameter and parameters lengths to u8.
        if p.len() > 255 {
            return Err(EncodeError::invalid(
                "OPEN",
                format!("capabilities need {} bytes, max 255", p.len()),
            ));
        }
        vec![p]
    };
    let my_as = u16::try_from(open.asn).unwrap_or(AS_TRANS as u16);
    if open.asn > 0xffff && c.four_octet_as != Some(open.asn) {
        return Err(EncodeError::invalid(
            "OPEN",
            format!(
                "AS {} needs the 4-octet AS capability carrying it",
                open.asn
            ),
        ));
    }
    Ok(BgpOpenMessage::new(
        my_as,
        open.hold_time,
        open.router_id,
        params,
    ))
}
