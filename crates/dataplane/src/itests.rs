//! Integration tests of the netlink task in throwaway network namespaces (need root; they print
//! a notice and pass vacuously otherwise). Each test builds its own namespace with a veth pair:
//! `v0` 10.0.0.1/24 + fd00::1/64 and `v1` 10.0.1.1/24 + fd00:1::1/64, so next hops 10.0.0.2,
//! 10.0.1.2, fd00::2 and fd00:1::2 are on connected subnets.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use ipnet::IpNet;
use serde_json::Value;

use super::netns::{Netns, NetnsDataplane};
use super::{DataplaneConfig, DataplaneHandle, DataplaneStatus, RTPROT_PETREL, RouteTarget};

pub(super) struct Lab {
    pub ns: Netns,
    pub rt: tokio::runtime::Runtime,
}

pub(super) fn lab() -> Option<Lab> {
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("skipping: network-namespace tests need root");
        return None;
    }
    let ns = Netns::create("petrel-dp").expect("create netns");
    for cmd in [
        "link add v0 type veth peer name v1",
        "link set v0 up",
        "link set v1 up",
        "addr add 10.0.0.1/24 dev v0",
        "addr add 10.0.1.1/24 dev v1",
        "addr add fd00::1/64 dev v0 nodad",
        "addr add fd00:1::1/64 dev v1 nodad",
    ] {
        ns.ip(&cmd.split(' ').collect::<Vec<_>>()).expect(cmd);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    Some(Lab { ns, rt })
}

pub(super) fn config() -> DataplaneConfig {
    DataplaneConfig {
        rt_protos_dir: None,
        ..DataplaneConfig::default()
    }
}

impl Lab {
    pub fn start(&self, config: DataplaneConfig) -> NetnsDataplane {
        self.ns.start_dataplane(config).expect("start dataplane")
    }

    pub fn apply(
        &self,
        h: &DataplaneHandle,
        changes: Vec<(IpNet, Option<RouteTarget>)>,
    ) -> DataplaneStatus {
        self.rt.block_on(async {
            h.apply(changes).await.expect("apply");
            h.flush().await.expect("flush")
        })
    }

    pub fn status(&self, h: &DataplaneHandle) -> DataplaneStatus {
        self.rt.block_on(h.status()).expect("status")
    }

    /// `ip -j route show` for one family and the given selector words.
    pub fn routes(&self, v6: bool, selector: &str) -> Vec<Value> {
        let mut args = vec![if v6 { "-6" } else { "-4" }, "-j", "route", "show"];
        args.extend(selector.split_whitespace());
        let out = self.ns.ip(&args).expect("ip route show");
        serde_json::from_str::<Vec<Value>>(&out).unwrap_or_default()
    }

    /// Our route for `prefix`, as iproute2 prints it.
    pub fn ours(&self, prefix: &str) -> Option<Value> {
        let v6 = prefix.contains(':');
        let selector = format!("proto {RTPROT_PETREL} exact {prefix}");
        self.routes(v6, &selector).into_iter().find(|r| {
            r["dst"] == prefix
                || (prefix.ends_with("/32") && r["dst"] == prefix.trim_end_matches("/32"))
        })
    }

    pub fn count_ours(&self) -> usize {
        let selector = format!("proto {RTPROT_PETREL}");
        self.routes(false, &selector).len() + self.routes(true, &selector).len()
    }

    pub fn wait_for(
        &self,
        what: &str,
        within: Duration,
        mut cond: impl FnMut() -> bool,
    ) -> Duration {
        let start = Instant::now();
        loop {
            if cond() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() < within,
                "timed out after {within:?} waiting for {what}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

pub(super) fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

pub(super) fn via(hops: &[&str]) -> Option<RouteTarget> {
    Some(RouteTarget::Via(
        hops.iter().map(|h| h.parse::<IpAddr>().unwrap()).collect(),
    ))
}

/// `(gateway, dev)` pairs of an iproute2 JSON route, single path or multipath.
pub(super) fn paths(route: &Value) -> Vec<(String, String)> {
    let one = |v: &Value| {
        (
            v["gateway"].as_str().unwrap_or_default().to_string(),
            v["dev"].as_str().unwrap_or_default().to_string(),
        )
    };
    let mut out: Vec<_> = match route["nexthops"].as_array() {
        Some(hops) => hops.iter().map(one).collect(),
        None => vec![one(route)],
    };
    out.sort();
    out
}

fn pair(gw: &str, dev: &str) -> (String, String) {
    (gw.to_string(), dev.to_string())
}

#[test]
fn installs_unicast_ecmp_and_blackhole_in_both_families() {
    let Some(lab) = lab() else { return };
    let dp = lab.start(config());
    let status = lab.apply(
        dp.handle(),
        vec![
            (net("10.244.1.0/26"), via(&["10.0.0.2"])),
            (net("10.244.2.0/26"), via(&["10.0.1.2", "10.0.0.2"])),
            (net("10.244.0.0/16"), Some(RouteTarget::Blackhole)),
            (net("fd10:1::/64"), via(&["fd00::2"])),
            (net("fd10:2::/64"), via(&["fd00::2", "fd00:1::2"])),
            (net("fd10::/48"), Some(RouteTarget::Blackhole)),
        ],
    );
    assert_eq!(status.installed, 6, "{status:?}");
    assert!(status.errors.is_empty(), "{status:?}");
    let r = lab.ours("10.244.1.0/26").expect("v4 unicast");
    assert_eq!(paths(&r), vec![pair("10.0.0.2", "v0")]);
    let r = lab.ours("10.244.2.0/26").expect("v4 ecmp");
    assert_eq!(
        paths(&r),
        vec![pair("10.0.0.2", "v0"), pair("10.0.1.2", "v1")]
    );
    assert_eq!(
        lab.routes(false, "proto 200 exact 10.244.2.0/26").len(),
        1,
        "one route, two nexthops"
    );
    let r = lab.ours("10.244.0.0/16").expect("v4 blackhole");
    assert_eq!(r["type"], "blackhole");
    let r = lab.ours("fd10:1::/64").expect("v6 unicast");
    assert_eq!(paths(&r), vec![pair("fd00::2", "v0")]);
    let r = lab.ours("fd10:2::/64").expect("v6 ecmp");
    assert_eq!(
        paths(&r),
        vec![pair("fd00:1::2", "v1"), pair("fd00::2", "v0")]
    );
    let r = lab.ours("fd10::/48").expect("v6 blackhole");
    assert_eq!(r["type"], "blackhole");
    assert_eq!(lab.count_ours(), 6);

    // Withdrawal removes exactly the withdrawn route.
    let status = lab.apply(dp.handle(), vec![(net("10.244.1.0/26"), None)]);
    assert_eq!(status.installed, 5);
    assert!(lab.ours("10.244.1.0/26").is_none());
    assert_eq!(lab.count_ours(), 5);
}

#[test]
fn external_delete_and_change_of_our_route_are_repaired_within_2s() {
    let Some(lab) = lab() else { return };
    let dp = lab.start(config());
    lab.apply(
        dp.handle(),
        vec![
            (net("10.244.1.0/26"), via(&["10.0.0.2"])),
            (net("fd10:1::/64"), via(&["fd00::2", "fd00:1::2"])),
        ],
    );
    lab.ns
        .ip(&["route", "del", "10.244.1.0/26", "proto", "200"])
        .unwrap();
    let took = lab.wait_for(
        "deleted v4 route to come back",
        Duration::from_secs(2),
        || lab.ours("10.244.1.0/26").is_some(),
    );
    eprintln!("v4 route restored after {took:?}");
    lab.ns
        .ip(&["-6", "route", "del", "fd10:1::/64", "proto", "200"])
        .unwrap();
    lab.wait_for(
        "deleted v6 route to come back",
        Duration::from_secs(2),
        || {
            lab.ours("fd10:1::/64")
                .is_some_and(|r| paths(&r).len() == 2)
        },
    );
    // A change of ours behind petrel's back is reverted.
    lab.ns
        .ip(&[
            "route",
            "replace",
            "10.244.1.0/26",
            "via",
            "10.0.1.2",
            "proto",
            "200",
        ])
        .unwrap();
    lab.wait_for(
        "changed route to be reverted",
        Duration::from_secs(2),
        || {
            lab.ours("10.244.1.0/26")
                .is_some_and(|r| paths(&r) == vec![pair("10.0.0.2", "v0")])
        },
    );
    // One ECMP leg removed by hand.
    lab.ns
        .ip(&[
            "-6",
            "route",
            "del",
            "fd10:1::/64",
            "via",
            "fd00::2",
            "proto",
            "200",
        ])
        .unwrap();
    lab.wait_for("ECMP leg to come back", Duration::from_secs(2), || {
        lab.ours("fd10:1::/64")
            .is_some_and(|r| paths(&r).len() == 2)
    });
    let status = lab.status(dp.handle());
    assert_eq!(status.installed, 2, "{status:?}");
}

#[test]
fn flush_of_our_protocol_is_repaired_within_2s() {
    let Some(lab) = lab() else { return };
    let dp = lab.start(config());
    let mut changes: Vec<_> = (0..200u32)
        .map(|i| {
            (
                net(&format!("10.245.{}.{}/30", i / 64, (i % 64) * 4)),
                via(&["10.0.0.2"]),
            )
        })
        .collect();
    changes.extend((0..50u32).map(|i| (net(&format!("fd20:{i:x}::/64")), via(&["fd00:1::2"]))));
    lab.apply(dp.handle(), changes);
    assert_eq!(lab.count_ours(), 250);
    lab.ns.ip(&["route", "flush", "proto", "200"]).unwrap();
    lab.ns
        .ip(&["-6", "route", "flush", "proto", "200"])
        .unwrap();
    let took = lab.wait_for(
        "flushed routes to come back",
        Duration::from_secs(2),
        || lab.count_ours() == 250,
    );
    eprintln!("250 flushed routes restored after {took:?}");
}

#[test]
fn route_of_another_protocol_on_the_same_prefix_is_untouched() {
    let Some(lab) = lab() else { return };
    lab.ns
        .ip(&[
            "route",
            "add",
            "10.244.9.0/26",
            "via",
            "10.0.1.2",
            "proto",
            "static",
        ])
        .unwrap();
    lab.ns
        .ip(&[
            "route",
            "add",
            "10.244.10.0/26",
            "via",
            "10.0.1.2",
            "proto",
            "static",
            "metric",
            "50",
        ])
        .unwrap();
    let dp = lab.start(config());
    let status = lab.apply(
        dp.handle(),
        vec![
            (net("10.244.9.0/26"), via(&["10.0.0.2"])),
            (net("10.244.10.0/26"), via(&["10.0.0.2"])),
        ],
    );
    assert_eq!(status.conflicts, vec![net("10.244.9.0/26")], "{status:?}");
    let statics = |prefix: &str| lab.routes(false, &format!("proto static exact {prefix}"));
    assert_eq!(
        paths(&statics("10.244.9.0/26")[0]),
        vec![pair("10.0.1.2", "v1")]
    );
    assert!(
        lab.ours("10.244.9.0/26").is_none(),
        "never installed over the static route"
    );
    // Different metric: both coexist.
    assert!(lab.ours("10.244.10.0/26").is_some());
    assert_eq!(statics("10.244.10.0/26").len(), 1);
    // Withdrawing ours leaves the static routes alone.
    lab.apply(
        dp.handle(),
        vec![(net("10.244.10.0/26"), None), (net("10.244.9.0/26"), None)],
    );
    assert_eq!(statics("10.244.10.0/26").len(), 1);
    assert_eq!(statics("10.244.9.0/26").len(), 1);
    assert!(lab.ours("10.244.10.0/26").is_none());
    // Once the conflicting route goes, ours is installed.
    lab.apply(
        dp.handle(),
        vec![(net("10.244.9.0/26"), via(&["10.0.0.2"]))],
    );
    lab.ns
        .ip(&["route", "del", "10.244.9.0/26", "proto", "static"])
        .unwrap();
    lab.wait_for(
        "our route after the conflict cleared",
        Duration::from_secs(2),
        || lab.ours("10.244.9.0/26").is_some(),
    );
    assert!(lab.status(dp.handle()).conflicts.is_empty());
}

#[test]
fn adopts_routes_at_start_and_sweeps_after_converged() {
    let Some(lab) = lab() else { return };
    for prefix in ["10.244.50.0/26", "10.244.51.0/26"] {
        lab.ns
            .ip(&["route", "add", prefix, "via", "10.0.0.2", "proto", "200"])
            .unwrap();
    }
    lab.ns
        .ip(&[
            "route",
            "add",
            "10.244.52.0/26",
            "via",
            "10.0.0.2",
            "proto",
            "static",
        ])
        .unwrap();
    let dp = lab.start(DataplaneConfig {
        stale_timeout: Duration::from_secs(3600),
        ..config()
    });
    let status = lab.status(dp.handle());
    assert_eq!((status.stale, status.installed), (2, 0), "{status:?}");
    let status = lab.apply(
        dp.handle(),
        vec![(net("10.244.50.0/26"), via(&["10.0.0.2"]))],
    );
    assert_eq!((status.stale, status.installed), (1, 1), "{status:?}");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        lab.ours("10.244.51.0/26").is_some(),
        "stale route kept until converged"
    );
    lab.rt.block_on(dp.handle().converged()).unwrap();
    let status = lab.rt.block_on(dp.handle().flush()).unwrap();
    assert_eq!((status.stale, status.installed), (0, 1), "{status:?}");
    assert!(status.converged);
    assert!(lab.ours("10.244.51.0/26").is_none(), "swept");
    assert!(lab.ours("10.244.50.0/26").is_some(), "claimed route kept");
    assert_eq!(
        lab.routes(false, "proto static exact 10.244.52.0/26").len(),
        1
    );
}

#[test]
fn stale_timeout_sweeps_without_convergence() {
    let Some(lab) = lab() else { return };
    lab.ns
        .ip(&[
            "route",
            "add",
            "10.244.53.0/26",
            "via",
            "10.0.0.2",
            "proto",
            "200",
        ])
        .unwrap();
    let dp = lab.start(DataplaneConfig {
        stale_timeout: Duration::from_millis(600),
        ..config()
    });
    assert_eq!(lab.status(dp.handle()).stale, 1);
    assert!(lab.ours("10.244.53.0/26").is_some());
    lab.wait_for("stale timer sweep", Duration::from_secs(3), || {
        lab.ours("10.244.53.0/26").is_none()
    });
    let status = lab.status(dp.handle());
    assert_eq!((status.stale, status.converged), (0, true));
}
