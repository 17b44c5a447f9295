//! Parsers for the daemons' status output: BIRD's `birdc` text, FRR's
//! `vtysh ... json` and GoBGP's `gobgp -j`. Tested against output captured
//! from BIRD 2.0.12, FRR 8.4 and GoBGP 3.10.

use crate::status::{DaemonRoute, Session};
use anyhow::Context;
use serde_json::Value;

/// BGP protocols from `birdc show protocols all`.
pub fn bird_sessions(text: &str) -> Vec<Session> {
    let mut out: Vec<Session> = Vec::new();
    let mut in_bgp = false;
    for line in text.lines() {
        let starts_indented = line.starts_with(' ') || line.starts_with('\t');
        if !starts_indented {
            let cols: Vec<&str> = line.split_whitespace().collect();
            in_bgp = cols.len() >= 4 && cols[1] == "BGP";
            if in_bgp {
                // Info column (after Name Proto Table State Since).
                let info = cols.get(5..).map(|c| c.join(" ")).unwrap_or_default();
                out.push(Session {
                    name: cols[0].to_string(),
                    address: String::new(),
                    state: if cols[3] == "down" && info.is_empty() {
                        "Down".into()
                    } else {
                        info
                    },
                    last_error: None,
                });
            }
            continue;
        }
        let Some(s) = out.last_mut().filter(|_| in_bgp) else {
            continue;
        };
        let t = line.trim();
        if let Some(v) = t.strip_prefix("BGP state:") {
            s.state = v.trim().to_string();
        } else if let Some(v) = t.strip_prefix("Neighbor address:") {
            s.address = v.trim().to_string();
        } else if let Some(v) = t.strip_prefix("Last error:") {
            s.last_error = Some(v.trim().to_string());
        }
    }
    out
}

/// Routes from `birdc show route all [table X]`.
pub fn bird_routes(text: &str) -> Vec<DaemonRoute> {
    let mut out: Vec<DaemonRoute> = Vec::new();
    let mut prefix = String::new();
    for line in text.lines() {
        if line.starts_with('\t') {
            let Some(r) = out.last_mut() else { continue };
            let t = line.trim();
            if let Some(v) = t.strip_prefix("BGP.as_path:") {
                r.as_path = v
                    .split_whitespace()
                    .filter_map(|a| a.parse().ok())
                    .collect();
            } else if let Some(v) = t.strip_prefix("BGP.next_hop:") {
                r.next_hop = v.split_whitespace().next().unwrap_or_default().to_string();
            } else if let Some(v) = t.strip_prefix("BGP.community:") {
                r.communities = bird_tuples(v);
            } else if let Some(v) = t.strip_prefix("BGP.large_community:") {
                r.large_communities = bird_tuples(v);
            } else if let Some(v) = t.strip_prefix("via ")
                && r.next_hop.is_empty()
            {
                r.next_hop = v.split_whitespace().next().unwrap_or_default().to_string();
            }
            continue;
        }
        let Some(open) = line.find(" [") else {
            continue;
        };
        if !line.starts_with(' ') {
            match line.split_whitespace().next() {
                Some(p) if p.contains('/') => prefix = p.to_string(),
                _ => continue,
            }
        }
        if prefix.is_empty() {
            continue;
        }
        let rest = &line[open + 2..];
        let from = rest.split_whitespace().next().unwrap_or_default();
        let after = rest.split_once(']').map(|(_, a)| a).unwrap_or_default();
        out.push(DaemonRoute {
            prefix: prefix.clone(),
            best: after.trim_start().starts_with('*'),
            from: from.to_string(),
            ..DaemonRoute::default()
        });
    }
    out
}

/// `(65002,100) (65002,101)` → `["65002:100", "65002:101"]`; also large
/// communities `(65002, 1, 2)`.
fn bird_tuples(v: &str) -> Vec<String> {
    v.split('(')
        .filter_map(|t| t.split_once(')').map(|(inner, _)| inner))
        .map(|inner| {
            inner
                .split(',')
                .map(str::trim)
                .collect::<Vec<_>>()
                .join(":")
        })
        .collect()
}

/// Sessions from FRR `show bgp neighbors json`.
pub fn frr_sessions(json: &str) -> anyhow::Result<Vec<Session>> {
    let v: Value = serde_json::from_str(json).context("parsing FRR neighbors JSON")?;
    let Some(map) = v.as_object() else {
        return Ok(Vec::new());
    };
    Ok(map
        .iter()
        .filter(|(_, n)| n.get("bgpState").is_some())
        .map(|(addr, n)| {
            let s = |k: &str| n.get(k).and_then(Value::as_str).map(str::to_string);
            let errors: Vec<String> = [
                s("lastResetDueTo"),
                s("lastNotificationReason"),
                s("lastErrorCodeSubcode").map(|c| format!("code/subcode {c}")),
            ]
            .into_iter()
            .flatten()
            .collect();
            Session {
                name: addr.clone(),
                address: addr.clone(),
                state: s("bgpState").unwrap_or_default(),
                last_error: (!errors.is_empty()).then(|| errors.join("; ")),
            }
        })
        .collect())
}

/// Prefixes in FRR `show bgp <afi> unicast json`.
pub fn frr_table_prefixes(json: &str) -> anyhow::Result<Vec<String>> {
    let v: Value = serde_json::from_str(json).context("parsing FRR table JSON")?;
    Ok(v.get("routes")
        .and_then(Value::as_object)
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default())
}

/// Paths in FRR `show bgp <afi> unicast <prefix> json`.
pub fn frr_prefix_routes(json: &str) -> anyhow::Result<Vec<DaemonRoute>> {
    let v: Value = serde_json::from_str(json).context("parsing FRR prefix JSON")?;
    let prefix = v
        .get("prefix")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let paths = v
        .get("paths")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    Ok(paths
        .iter()
        .map(|p| {
            let strs = |key: &str| -> Vec<String> {
                p.get(key)
                    .and_then(|c| c.get("list"))
                    .and_then(Value::as_array)
                    .map(|l| {
                        l.iter()
                            .filter_map(|x| x.as_str().map(str::to_string))
                            .collect()
                    })
                    .or_else(|| {
                        p.get(key)
                            .and_then(|c| c.get("string"))
                            .and_then(Value::as_str)
                            .map(|s| s.split_whitespace().map(str::to_string).collect())
                    })
                    .unwrap_or_default()
            };
            let as_path = p
                .get("aspath")
                .and_then(|a| a.get("string"))
                .and_then(Value::as_str)
                .map(|s| {
                    s.split_whitespace()
                        .filter_map(|a| a.parse().ok())
                        .collect()
                })
                .unwrap_or_default();
            let next_hop = p
                .get("nexthops")
                .and_then(Value::as_array)
                .and_then(|n| n.first())
                .and_then(|n| n.get("ip"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            let from = p
                .get("peer")
                .and_then(|x| x.get("peerId"))
                .and_then(Value::as_str)
                .filter(|s| *s != "(unspec)")
                .unwrap_or_default()
                .to_string();
            DaemonRoute {
                prefix: prefix.clone(),
                next_hop,
                as_path,
                communities: strs("community"),
                large_communities: strs("largeCommunity"),
                best: p
                    .get("bestpath")
                    .and_then(|b| b.get("overall"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false),
                from,
            }
        })
        .collect())
}

/// GoBGP session state numbers (`session_state` in the API).
fn gobgp_state(v: &Value) -> String {
    match v {
        Value::Number(n) => match n.as_u64() {
            Some(1) => "Idle",
            Some(2) => "Connect",
            Some(3) => "Active",
            Some(4) => "OpenSent",
            Some(5) => "OpenConfirm",
            Some(6) => "Established",
            _ => "Unknown",
        }
        .to_string(),
        Value::String(s) => {
            let s = s.to_ascii_lowercase();
            match s.trim_start_matches("session_state_") {
                "established" => "Established".into(),
                "idle" => "Idle".into(),
                "active" => "Active".into(),
                "connect" => "Connect".into(),
                "opensent" => "OpenSent".into(),
                "openconfirm" => "OpenConfirm".into(),
                other => other.to_string(),
            }
        }
        _ => "Unknown".into(),
    }
}

/// Sessions from `gobgp -j neighbor`.
pub fn gobgp_sessions(json: &str) -> anyhow::Result<Vec<Session>> {
    let v: Value = serde_json::from_str(json).context("parsing GoBGP neighbor JSON")?;
    let peers = v.as_array().cloned().unwrap_or_default();
    Ok(peers
        .iter()
        .map(|p| {
            let addr = p
                .pointer("/conf/neighbor_address")
                .or_else(|| p.pointer("/state/neighbor_address"))
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            Session {
                name: addr.clone(),
                address: addr,
                state: gobgp_state(p.pointer("/state/session_state").unwrap_or(&Value::Null)),
                last_error: None,
            }
        })
        .collect())
}

/// The `Reason` of the last `Peer Down` line for `addr` in gobgpd's plain
/// log, e.g. `notification-received code 6(cease) subcode 3(peer deconfigured)`.
pub fn gobgp_last_down_reason(log: &str, addr: &str) -> Option<String> {
    let keys = [format!("Key={addr} "), format!("Key=\"{addr}\" ")];
    log.lines()
        .rev()
        .filter(|l| l.contains("msg=\"Peer Down\""))
        .find(|l| keys.iter().any(|k| l.contains(k.as_str())))
        .and_then(|l| l.split_once("Reason=\""))
        .and_then(|(_, r)| r.split_once('"'))
        .map(|(reason, _)| reason.to_string())
}

/// Routes from `gobgp -j global rib -a <afi>`.
pub fn gobgp_routes(json: &str) -> anyhow::Result<Vec<DaemonRoute>> {
    let v: Value = serde_json::from_str(json).context("parsing GoBGP rib JSON")?;
    let mut out = Vec::new();
    let Some(map) = v.as_object() else {
        return Ok(out);
    };
    for (prefix, paths) in map {
        for p in paths.as_array().into_iter().flatten() {
            let mut r = DaemonRoute {
                prefix: prefix.clone(),
                best: p.get("best").and_then(Value::as_bool).unwrap_or(false),
                from: p
                    .get("neighbor-ip")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                ..DaemonRoute::default()
            };
            for a in p
                .get("attrs")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                match a.get("type").and_then(Value::as_u64) {
                    Some(2) => {
                        r.as_path = a
                            .get("as_paths")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .flat_map(|seg| {
                                seg.get("asns")
                                    .and_then(Value::as_array)
                                    .cloned()
                                    .unwrap_or_default()
                            })
                            .filter_map(|n| n.as_u64().and_then(|n| u32::try_from(n).ok()))
                            .collect()
                    }
                    Some(3) | Some(14) => {
                        if let Some(nh) = a.get("nexthop").and_then(Value::as_str) {
                            r.next_hop = nh.to_string();
                        }
                    }
                    Some(8) => {
                        r.communities = a
                            .get("communities")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .filter_map(Value::as_u64)
                            .map(|c| format!("{}:{}", c >> 16, c & 0xffff))
                            .collect()
                    }
                    Some(32) => {
                        r.large_communities = a
                            .get("value")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                            .map(|l| {
                                let f = |k: &str| l.get(k).and_then(Value::as_u64).unwrap_or(0);
                                format!("{}:{}:{}", f("ASN"), f("LocalData1"), f("LocalData2"))
                            })
                            .collect()
                    }
                    _ => {}
                }
            }
            out.push(r);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BIRD_PROTOCOLS: &str = "BIRD 2.0.12 ready.
Name       Proto      Table      State  Since         Info
device1    Device     ---        up     07:20:51.812  
frr6       BGP        ---        up     07:21:48.945  Established   
  BGP state:          Established
    Neighbor address: fd00:12::2
    Neighbor AS:      65020
  Channel ipv6
    State:          UP
gobgp4     BGP        ---        start  07:21:52.865  Active        Socket: Connection refused
  BGP state:          Active
    Neighbor address: 10.10.31.1
    Last error:       Socket: Connection refused
";

    #[test]
    fn bird_protocols_become_sessions() {
        let s = bird_sessions(BIRD_PROTOCOLS);
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].name, "frr6");
        assert_eq!(s[0].address, "fd00:12::2");
        assert!(s[0].is_established());
        assert_eq!(s[1].state, "Active");
        assert_eq!(
            s[1].last_error.as_deref(),
            Some("Socket: Connection refused")
        );
    }

    const BIRD_ROUTES: &str = "BIRD 2.0.12 ready.
Table master6:
2001:db8:30::/48     unicast [gobgp6 07:21:53.723] * (100) [AS65030?]
\tvia fd00:31::1 on eth2
\tType: BGP univ
\tBGP.origin: Incomplete
\tBGP.as_path: 65030
\tBGP.next_hop: fd00:31::1 fe80::1
\tBGP.local_pref: 100
\tBGP.community: (65030,30) (65030,31)
                     unicast [frr6 07:21:50.146] (100) [AS65030?]
\tvia fd00:12::2 on eth1
\tType: BGP univ
\tBGP.as_path: 65020 65030
\tBGP.next_hop: fd00:12::2
\tBGP.large_community: (65020, 1, 20)
2001:db8:10::/48     blackhole [static6 07:21:48.853] * (200)
\tType: static univ
";

    #[test]
    fn bird_routes_parse_all_paths() {
        let r = bird_routes(BIRD_ROUTES);
        assert_eq!(r.len(), 3);
        assert_eq!(r[0].prefix, "2001:db8:30::/48");
        assert!(r[0].best);
        assert_eq!(r[0].from, "gobgp6");
        assert_eq!(r[0].next_hop, "fd00:31::1");
        assert_eq!(r[0].communities, vec!["65030:30", "65030:31"]);
        assert_eq!(r[1].prefix, "2001:db8:30::/48");
        assert!(!r[1].best);
        assert_eq!(r[1].as_path, vec![65020, 65030]);
        assert_eq!(r[1].large_communities, vec!["65020:1:20"]);
        assert_eq!(r[2].from, "static6");
        assert!(r[2].as_path.is_empty());
    }

    #[test]
    fn frr_json_parses() {
        let s = frr_sessions(
            r#"{"10.0.0.1":{"bgpState":"Active","lastResetDueTo":"Notification received (Cease/Administrative Shutdown)"}}"#,
        )
        .unwrap();
        assert_eq!(s[0].state, "Active");
        assert!(
            s[0].last_error
                .as_deref()
                .unwrap()
                .contains("Administrative")
        );
        let p = frr_table_prefixes(r#"{"routes":{"192.0.2.1/32":[],"192.0.2.2/32":[]}}"#).unwrap();
        assert_eq!(p.len(), 2);
        let r = frr_prefix_routes(
            r#"{"prefix":"192.0.2.30/32","paths":[{"aspath":{"string":"65030 65031"},
            "bestpath":{"overall":true},"community":{"string":"65030:30","list":["65030:30"]},
            "largeCommunity":{"string":"65030:1:2","list":["65030:1:2"]},
            "nexthops":[{"ip":"10.10.23.2"}],"peer":{"peerId":"10.10.23.2"}}]}"#,
        )
        .unwrap();
        assert_eq!(r[0].as_path, vec![65030, 65031]);
        assert!(r[0].best);
        assert_eq!(r[0].communities, vec!["65030:30"]);
        assert_eq!(r[0].large_communities, vec!["65030:1:2"]);
        assert_eq!(r[0].next_hop, "10.10.23.2");
        assert_eq!(r[0].from, "10.10.23.2");
    }

    #[test]
    fn gobgp_json_parses() {
        let s = gobgp_sessions(
            r#"[{"conf":{"neighbor_address":"10.10.23.1"},"state":{"session_state":6}},
               {"conf":{"neighbor_address":"fd00::1"},"state":{"session_state":3}}]"#,
        )
        .unwrap();
        assert!(s[0].is_established());
        assert_eq!(s[1].state, "Active");
        let r = gobgp_routes(
            r#"{"2001:db8:10::/48":[{"best":true,"neighbor-ip":"fd00:31::2","attrs":[
            {"type":2,"as_paths":[{"segment_type":2,"num":1,"asns":[65010]}]},
            {"type":8,"communities":[4260495370]},
            {"type":32,"value":[{"ASN":65010,"LocalData1":1,"LocalData2":10}]},
            {"type":14,"nexthop":"fd00:31::2","afi":2,"safi":1}]}]}"#,
        )
        .unwrap();
        assert_eq!(r[0].as_path, vec![65010]);
        assert_eq!(r[0].communities, vec!["65010:10"]);
        assert_eq!(r[0].large_communities, vec!["65010:1:10"]);
        assert_eq!(r[0].next_hop, "fd00:31::2");
        assert!(r[0].best);
    }

    #[test]
    fn gobgp_down_reason_comes_from_the_log() {
        let log = r#"time="x" level=info msg="Peer Down" Key=10.10.23.1 Reason="notification-sent code 6(cease) subcode 2(administrative shutdown)" State=BGP_FSM_ESTABLISHED Topic=Peer
time="y" level=info msg="Peer Down" Key="fd00:23::1" Reason="notification-received code 6(cease) subcode 3(peer deconfigured)" State=BGP_FSM_ESTABLISHED Topic=Peer
time="z" level=info msg="Peer Down" Key=10.10.23.11 Reason="hold timer expired" Topic=Peer"#;
        assert_eq!(
            gobgp_last_down_reason(log, "10.10.23.1").as_deref(),
            Some("notification-sent code 6(cease) subcode 2(administrative shutdown)")
        );
        assert!(
            gobgp_last_down_reason(log, "fd00:23::1")
                .unwrap()
                .contains("peer deconfigured")
        );
        assert_eq!(gobgp_last_down_reason(log, "10.10.23.2"), None);
    }
}
