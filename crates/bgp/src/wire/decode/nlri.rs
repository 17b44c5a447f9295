//! NLRI prefix encoding (RFC 4271 §4.3, RFC 4760 §5, RFC 7911 §3).

use crate::wire::types::{Family, Nlri};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use std::net::{Ipv4Addr, Ipv6Addr};

/// Parses a sequence of `[path id] length prefix` entries for one family.
/// Host bits past the prefix length are cleared. Returns a description of
/// the first syntax error.
pub(crate) fn parse_prefixes(
    mut buf: &[u8],
    fam: Family,
    add_path: bool,
) -> Result<Vec<Nlri>, String> {
    let max_bits: u8 = match fam {
        Family::Ipv4Unicast => 32,
        Family::Ipv6Unicast => 128,
    };
    let mut out = Vec::new();
    while !buf.is_empty() {
        let path_id = if add_path {
            let Some((id, rest)) = buf.split_first_chunk::<4>() else {
                return Err(format!(
                    "truncated path identifier ({} bytes left)",
                    buf.len()
                ));
            };
            buf = rest;
            Some(u32::from_be_bytes(*id))
        } else {
            None
        };
        let Some((&bits, rest)) = buf.split_first() else {
            return Err("path identifier without a prefix".into());
        };
        if bits > max_bits {
            return Err(format!("prefix length {bits} exceeds {max_bits}"));
        }
        let nbytes = usize::from(bits).div_ceil(8);
        let Some(bytes) = rest.get(..nbytes) else {
            return Err(format!(
                "prefix of length {bits} needs {nbytes} bytes, {} left",
                rest.len()
            ));
        };
        buf = &rest[nbytes..];
        let prefix = match fam {
            Family::Ipv4Unicast => {
                let mut a = [0u8; 4];
                a[..nbytes].copy_from_slice(bytes);
                Ipv4Net::new(Ipv4Addr::from(a), bits).map(|n| IpNet::V4(n.trunc()))
            }
            Family::Ipv6Unicast => {
                let mut a = [0u8; 16];
                a[..nbytes].copy_from_slice(bytes);
                Ipv6Net::new(Ipv6Addr::from(a), bits).map(|n| IpNet::V6(n.trunc()))
            }
        }
        .map_err(|e| e.to_string())?;
        out.push(Nlri { prefix, path_id });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_truncates() {
        let got = parse_prefixes(
            &[0, 8, 10, 25, 192, 168, 1, 0xff],
            Family::Ipv4Unicast,
            false,
        )
        .unwrap();
        let want: Vec<Nlri> = ["0.0.0.0/0", "10.0.0.0/8", "192.168.1.128/25"]
            .iter()
            .map(|s| Nlri::new(s.parse().unwrap()))
            .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn rejects_bad_syntax() {
        assert!(parse_prefixes(&[33, 1, 2, 3, 4, 5], Family::Ipv4Unicast, false).is_err());
        assert!(parse_prefixes(&[24, 10, 0], Family::Ipv4Unicast, false).is_err());
        assert!(parse_prefixes(&[0, 0, 1], Family::Ipv4Unicast, true).is_err());
        assert!(parse_prefixes(&[129], Family::Ipv6Unicast, false).is_err());
        let v = parse_prefixes(&[0, 0, 0, 7, 0], Family::Ipv6Unicast, true).unwrap();
        assert_eq!(
            v,
            vec![Nlri {
                prefix: "::/0".parse().unwrap(),
                path_id: Some(7)
            }]
        );
    }
}
