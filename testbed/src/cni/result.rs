//! What CNI plugins print: results (spec 0.3.0 and later, as 1.0 and 1.1
//! keep them) and error results, parsed for tests.

use anyhow::{Context, bail};
use serde_json::Value;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address with its prefix length, as CNI results write it (`10.1.0.5/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpPrefix {
    pub addr: IpAddr,
    pub len: u8,
}

impl FromStr for IpPrefix {
    type Err = anyhow::Error;
    fn from_str(s: &str) -> anyhow::Result<IpPrefix> {
        let (a, l) = s
            .split_once('/')
            .with_context(|| format!("{s:?}: expected address/length"))?;
        let addr: IpAddr = a.parse().with_context(|| format!("{s:?}: bad address"))?;
        let len: u8 = l.parse().with_context(|| format!("{s:?}: bad length"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        if len > max {
            bail!("{s:?}: length {len} exceeds {max}");
        }
        Ok(IpPrefix { addr, len })
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

impl IpPrefix {
    /// Whether `addr` lies inside this prefix.
    pub fn contains(&self, addr: IpAddr) -> bool {
        match (self.addr, addr) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

/// Length of the longest prefix holding both addresses (0 across families).
pub fn common_prefix_len(a: IpAddr, b: IpAddr) -> u8 {
    match (a, b) {
        (IpAddr::V4(a), IpAddr::V4(b)) => (u32::from(a) ^ u32::from(b)).leading_zeros() as u8,
        (IpAddr::V6(a), IpAddr::V6(b)) => (u128::from(a) ^ u128::from(b)).leading_zeros() as u8,
        _ => 0,
    }
}

/// One `ips[]` entry of a CNI result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniIp {
    pub address: IpPrefix,
    pub gateway: Option<IpAddr>,
    /// Index into the result's `interfaces`.
    pub interface: Option<usize>,
}

/// One `interfaces[]` entry of a CNI result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniInterface {
    pub name: String,
    pub mac: Option<String>,
    /// The namespace path for interfaces inside the pod, `None` on the host.
    pub sandbox: Option<String>,
}

/// A parsed CNI result (spec 0.3.0 and later), with the raw JSON kept for
/// `prevResult`.
#[derive(Debug, Clone)]
pub struct CniResult {
    pub cni_version: String,
    pub interfaces: Vec<CniInterface>,
    pub ips: Vec<CniIp>,
    /// `routes[]` as (destination, gateway).
    pub routes: Vec<(IpPrefix, Option<IpAddr>)>,
    pub raw: Value,
}

impl CniResult {
    /// Parses a result as printed by a plugin on ADD.
    pub fn parse(raw: Value) -> anyhow::Result<CniResult> {
        let str_of = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_string);
        let cni_version = str_of(&raw, "cniVersion").context("result has no cniVersion")?;
        let list = |key: &str| -> Vec<Value> {
            raw.get(key)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
        };
        let mut interfaces = Vec::new();
        for i in list("interfaces") {
            interfaces.push(CniInterface {
                name: str_of(&i, "name").context("interface without name")?,
                mac: str_of(&i, "mac"),
                sandbox: str_of(&i, "sandbox").filter(|s| !s.is_empty()),
            });
        }
        let mut ips = Vec::new();
        for ip in list("ips") {
            let address = str_of(&ip, "address").context("ips[] entry without address")?;
            ips.push(CniIp {
                address: address.parse()?,
                gateway: match str_of(&ip, "gateway") {
                    Some(g) => Some(g.parse().with_context(|| format!("gateway {g:?}"))?),
                    None => None,
                },
                interface: ip
                    .get("interface")
                    .and_then(Value::as_u64)
                    .map(|i| i as usize),
            });
        }
        let mut routes = Vec::new();
        for r in list("routes") {
            let dst: IpPrefix = str_of(&r, "dst").context("route without dst")?.parse()?;
            let gw = match str_of(&r, "gw") {
                Some(g) => Some(g.parse().with_context(|| format!("route gw {g:?}"))?),
                None => None,
            };
            routes.push((dst, gw));
        }
        Ok(CniResult {
            cni_version,
            interfaces,
            ips,
            routes,
            raw,
        })
    }

    /// The first IPv4 address.
    pub fn ipv4(&self) -> Option<Ipv4Addr> {
        self.ips.iter().find_map(|ip| match ip.address.addr {
            IpAddr::V4(a) => Some(a),
            IpAddr::V6(_) => None,
        })
    }

    /// The first IPv6 address.
    pub fn ipv6(&self) -> Option<Ipv6Addr> {
        self.ips.iter().find_map(|ip| match ip.address.addr {
            IpAddr::V6(a) => Some(a),
            IpAddr::V4(_) => None,
        })
    }
}

/// A plugin that failed: what ran, the CNI error it printed (code, msg,
/// details) and its stderr.
#[derive(Debug, Clone)]
pub struct CniError {
    pub plugin: String,
    pub command: String,
    pub code: Option<u32>,
    pub msg: String,
    pub details: String,
    pub stderr: String,
    pub exit: String,
}

impl fmt::Display for CniError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CNI {} of plugin {} failed ({})",
            self.command, self.plugin, self.exit
        )?;
        if let Some(code) = self.code {
            write!(f, ": code {code}")?;
        }
        if !self.msg.is_empty() {
            write!(f, ": {}", self.msg)?;
        }
        if !self.details.is_empty() {
            write!(f, " ({})", self.details)?;
        }
        if !self.stderr.trim().is_empty() {
            write!(f, "; stderr: {}", self.stderr.trim())?;
        }
        Ok(())
    }
}

impl std::error::Error for CniError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_ptp_result_and_prefixes() {
        let raw: Value = serde_json::from_str(
            r#"{"cniVersion":"1.0.0",
            "interfaces":[{"name":"veth1","mac":"aa:bb:cc:dd:ee:ff"},
                          {"name":"eth0","mac":"11:22:33:44:55:66","sandbox":"/var/run/netns/p"}],
            "ips":[{"address":"10.244.0.5/32","gateway":"10.244.0.1","interface":1},
                   {"address":"fd00:244::5/128","gateway":"fd00:244::1","interface":1}],
            "routes":[{"dst":"0.0.0.0/0","gw":"10.244.0.1"},{"dst":"::/0"}],
            "dns":{}}"#,
        )
        .unwrap();
        let r = CniResult::parse(raw).unwrap();
        assert_eq!(r.cni_version, "1.0.0");
        assert_eq!(r.ipv4(), Some("10.244.0.5".parse().unwrap()));
        assert_eq!(r.ipv6(), Some("fd00:244::5".parse().unwrap()));
        assert_eq!(r.ips[0].gateway, Some("10.244.0.1".parse().unwrap()));
        assert_eq!(r.ips[1].address.len, 128);
        assert_eq!(r.interfaces[1].sandbox.as_deref(), Some("/var/run/netns/p"));
        assert_eq!(r.interfaces[0].sandbox, None);
        assert_eq!(r.routes[1], ("::/0".parse().unwrap(), None));
        assert!(CniResult::parse(json!({"ips": []})).is_err());
        assert!(CniResult::parse(json!({"cniVersion":"1.0.0","ips":[{"address":"x"}]})).is_err());
    }

    #[test]
    fn prefix_parsing_and_containment() {
        let p: IpPrefix = "10.244.1.64/26".parse().unwrap();
        assert!(p.contains("10.244.1.127".parse().unwrap()));
        assert!(!p.contains("10.244.1.128".parse().unwrap()));
        assert!(!p.contains("fd00::1".parse().unwrap()));
        let p6: IpPrefix = "fd00:244::40/122".parse().unwrap();
        assert!(p6.contains("fd00:244::7f".parse().unwrap()));
        assert!(!p6.contains("fd00:244::80".parse().unwrap()));
        let all: IpPrefix = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<IpPrefix>().is_err());
        assert!("10.0.0.0".parse::<IpPrefix>().is_err());
        assert_eq!(p.to_string(), "10.244.1.64/26");
    }

    #[test]
    fn error_display_carries_code_msg_and_stderr() {
        let e = CniError {
            plugin: "petrel-ipam".into(),
            command: "ADD".into(),
            code: Some(11),
            msg: "pool exhausted".into(),
            details: "pool p".into(),
            stderr: "boom\n".into(),
            exit: "exit status: 1".into(),
        };
        assert_eq!(
            e.to_string(),
            "CNI ADD of plugin petrel-ipam failed (exit status: 1): code 11: pool exhausted \
             (pool p); stderr: boom"
        );
    }
}
