//! OPEN decoding: RFC 4271 §4.2/§6.2, capabilities (RFC 5492), RFC 9072
//! extended optional parameters, 4-octet AS (RFC 6793), RFC 7607 (AS 0).
//!
//! Capabilities are parsed here rather than by netgauze because netgauze
//! rejects a whole capability (e.g. ADD-PATH) when one of its families is
//! unknown; petrel must keep the families it knows and never fail an OPEN
//! over an unknown capability or AFI/SAFI.

use crate::wire::error::DecodeError;
use crate::wire::notification as n;
use crate::wire::types::{AddPathMode, Capabilities, Family, GracefulRestartCap, Open};
use std::net::Ipv4Addr;

/// RFC 6793 AS_TRANS.
pub(crate) const AS_TRANS: u16 = 23456;

fn malformed(reason: impl Into<String>) -> DecodeError {
    DecodeError::open(n::UNSPECIFIC, Vec::new(), reason)
}

pub(super) fn decode_open(body: &[u8], declared: u16) -> Result<Open, DecodeError> {
    if body.len() < 10 {
        return Err(DecodeError::bad_length(
            declared,
            "OPEN shorter than 29 bytes",
        ));
    }
    let version = body[0];
    if version != 4 {
        // Data: the largest version we support, 2 octets (RFC 4271 §6.2).
        return Err(DecodeError::open(
            n::OPEN_UNSUPPORTED_VERSION,
            vec![0, 4],
            format!("BGP version {version}"),
        ));
    }
    let my_as = u16::from_be_bytes([body[1], body[2]]);
    let hold_time = u16::from_be_bytes([body[3], body[4]]);
    let router_id = Ipv4Addr::new(body[5], body[6], body[7], body[8]);
    let opt_len = usize::from(body[9]);
    let mut rest = &body[10..];

    // RFC 9072: non-extended length 255 with type 255 introduces 2-octet lengths.
    let extended = opt_len == 255 && rest.first() == Some(&255);
    if extended {
        let Some(&[_, h, l]) = rest.first_chunk::<3>() else {
            return Err(malformed("truncated extended optional parameters length"));
        };
        rest = &rest[3..];
        if usize::from(u16::from_be_bytes([h, l])) != rest.len() {
            return Err(malformed("extended optional parameters length mismatch"));
        }
    } else if opt_len != rest.len() {
        return Err(malformed(format!(
            "optional parameters length {opt_len} but {} bytes follow",
            rest.len()
        )));
    }

    let mut caps = Capabilities::default();
    while !rest.is_empty() {
        let hdr = if extended { 3 } else { 2 };
        if rest.len() < hdr {
            return Err(malformed("truncated optional parameter header"));
        }
        let ptype = rest[0];
        let plen = if extended {
            usize::from(u16::from_be_bytes([rest[1], rest[2]]))
        } else {
            usize::from(rest[1])
        };
        let Some(value) = rest.get(hdr..hdr + plen) else {
            return Err(malformed("optional parameter overruns the OPEN"));
        };
        rest = &rest[hdr + plen..];
        if ptype != 2 {
            return Err(DecodeError::open(
                n::OPEN_UNSUPPORTED_OPTIONAL_PARAMETER,
                Vec::new(),
                format!("optional parameter type {ptype}"),
            ));
        }
        parse_capabilities(value, &mut caps)?;
    }

    // RFC 4271 §6.2: hold time 1 or 2 MUST be rejected.
    if hold_time == 1 || hold_time == 2 {
        return Err(DecodeError::open(
            n::OPEN_UNACCEPTABLE_HOLD_TIME,
            Vec::new(),
            format!("hold time {hold_time}"),
        ));
    }
    // RFC 6286 §2.2: the BGP Identifier is a non-zero 32-bit number.
    if router_id.is_unspecified() {
        return Err(DecodeError::open(
            n::OPEN_BAD_BGP_IDENTIFIER,
            Vec::new(),
            "BGP identifier 0",
        ));
    }
    let asn = match caps.four_octet_as {
        Some(asn4) => {
            // RFC 6793 §4.1 / RFC 7607: the My AS field must be AS_TRANS or the same AS.
            if my_as != AS_TRANS && u32::from(my_as) != asn4 {
                return Err(DecodeError::open(
                    n::OPEN_BAD_PEER_AS,
                    Vec::new(),
                    format!("My AS {my_as} contradicts 4-octet AS {asn4}"),
                ));
            }
            asn4
        }
        None => u32::from(my_as),
    };
    if asn == 0 {
        return Err(DecodeError::open(
            n::OPEN_BAD_PEER_AS,
            Vec::new(),
            "AS 0 (RFC 7607)",
        ));
    }
    Ok(Open {
        asn,
        hold_time,
        router_id,
        caps,
    })
}

fn parse_capabilities(mut buf: &[u8], caps: &mut Capabilities) -> Result<(), DecodeError> {
    while !buf.is_empty() {
        let [code, len, ..] = *buf else {
            return Err(malformed("truncated capability header"));
        };
        let Some(value) = buf.get(2..2 + usize::from(len)) else {
            return Err(malformed(format!(
                "capability {code} overruns its parameter"
            )));
        };
        buf = &buf[2 + usize::from(len)..];
        if !parse_capability(code, value, caps)? {
            caps.unknown.push((code, value.to_vec()));
        }
    }
    Ok(())
}

fn afi_safi(b: &[u8]) -> (u16, u8) {
    (u16::from_be_bytes([b[0], b[1]]), b[2])
}

/// Applies one capability. Returns `false` when nothing of it could be
/// applied (unknown code, malformed value, only unknown families), so the
/// caller keeps the raw capability in `unknown`. Families petrel does not
/// route are dropped from capabilities it otherwise understands.
fn parse_capability(code: u8, v: &[u8], caps: &mut Capabilities) -> Result<bool, DecodeError> {
    match code {
        1 => {
            if v.len() != 4 {
                return Ok(false);
            }
            let Some(fam) = Family::from_afi_safi(u16::from_be_bytes([v[0], v[1]]), v[3]) else {
                return Ok(false);
            };
            if !caps.multiprotocol.contains(&fam) {
                caps.multiprotocol.push(fam);
            }
            Ok(true)
        }
        2 => {
            caps.route_refresh = true;
            Ok(true)
        }
        70 => {
            caps.enhanced_route_refresh = true;
            Ok(true)
        }
        6 => {
            caps.extended_message = true;
            Ok(true)
        }
        65 => {
            let Ok(b) = <[u8; 4]>::try_from(v) else {
                return Err(malformed(format!(
                    "4-octet AS capability of length {}",
                    v.len()
                )));
            };
            caps.four_octet_as = Some(u32::from_be_bytes(b));
            Ok(true)
        }
        69 => {
            if !v.len().is_multiple_of(4) {
                return Ok(false);
            }
            let mut any = false;
            for t in v.chunks_exact(4) {
                let (afi, safi) = afi_safi(t);
                let mode = match t[3] {
                    1 => AddPathMode::Receive,
                    2 => AddPathMode::Send,
                    3 => AddPathMode::Both,
                    _ => continue,
                };
                if let Some(fam) = Family::from_afi_safi(afi, safi) {
                    caps.add_path.retain(|(f, _)| *f != fam);
                    caps.add_path.push((fam, mode));
                    any = true;
                }
            }
            Ok(any)
        }
        64 => {
            if v.len() < 2 || !(v.len() - 2).is_multiple_of(4) {
                return Ok(false);
            }
            let flags = u16::from_be_bytes([v[0], v[1]]);
            let mut gr = GracefulRestartCap {
                restart_state: flags & 0x8000 != 0,
                notification: flags & 0x4000 != 0,
                restart_time: flags & 0x0fff,
                families: Vec::new(),
            };
            for t in v[2..].chunks_exact(4) {
                let (afi, safi) = afi_safi(t);
                if let Some(fam) = Family::from_afi_safi(afi, safi)
                    && !gr.families.iter().any(|(f, _)| *f == fam)
                {
                    gr.families.push((fam, t[3] & 0x80 != 0));
                }
            }
            caps.graceful_restart = Some(gr);
            Ok(true)
        }
        5 => {
            if !v.len().is_multiple_of(6) {
                return Ok(false);
            }
            let mut any = false;
            for t in v.chunks_exact(6) {
                let afi = u16::from_be_bytes([t[0], t[1]]);
                let safi = u16::from_be_bytes([t[2], t[3]]);
                let nh_afi = u16::from_be_bytes([t[4], t[5]]);
                let fam = u8::try_from(safi)
                    .ok()
                    .and_then(|s| Family::from_afi_safi(afi, s));
                if let Some(fam) = fam {
                    if !caps.extended_next_hop.contains(&(fam, nh_afi)) {
                        caps.extended_next_hop.push((fam, nh_afi));
                    }
                    any = true;
                }
            }
            Ok(any)
        }
        _ => Ok(false),
    }
}
