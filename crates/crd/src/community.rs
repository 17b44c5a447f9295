//! BGP communities as configuration writes them: Calico's `aa:nn`
//! (standard, RFC 1997) and `aa:nn:mm` (large, RFC 8092) notation.

/// A standard (RFC 1997) or large (RFC 8092) community.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Community {
    Standard(u32),
    Large([u32; 3]),
}

/// Why a community string did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid community {input:?}: {reason}")]
pub struct CommunityParseError {
    pub input: String,
    pub reason: &'static str,
}

/// Parses Calico's community notation: `aa:nn` (standard, two 16-bit numbers)
/// or `aa:nn:mm` (large, three 32-bit numbers).
impl std::str::FromStr for Community {
    type Err = CommunityParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| CommunityParseError {
            input: s.to_string(),
            reason,
        };
        let parts: Vec<&str> = s.split(':').collect();
        let all_digits = parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !all_digits || !(parts.len() == 2 || parts.len() == 3) {
            return Err(err(
                "expected aa:nn (standard) or aa:nn:mm (large), decimal numbers",
            ));
        }
        if parts.len() == 2 {
            let hi: u16 = parts[0]
                .parse()
                .map_err(|_| err("standard community parts must be 0..=65535"))?;
            let lo: u16 = parts[1]
                .parse()
                .map_err(|_| err("standard community parts must be 0..=65535"))?;
            Ok(Community::Standard((u32::from(hi) << 16) | u32::from(lo)))
        } else {
            let mut v = [0u32; 3];
            for (slot, p) in v.iter_mut().zip(&parts) {
                *slot = p
                    .parse()
                    .map_err(|_| err("large community parts must be 0..=4294967295"))?;
            }
            Ok(Community::Large(v))
        }
    }
}

impl std::fmt::Display for Community {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Community::Standard(v) => write!(f, "{}:{}", v >> 16, v & 0xffff),
            Community::Large([a, b, c]) => write!(f, "{a}:{b}:{c}"),
        }
    }
}
