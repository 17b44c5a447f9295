//! More netns integration tests: restart without flap, recursive next hops, link events, scale.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::itests::{config, lab, net, paths, via};
use super::{RTPROT_PETREL, RouteTarget};

fn pair(gw: &str, dev: &str) -> (String, String) {
    (gw.to_string(), dev.to_string())
}

#[test]
fn restart_leaves_unchanged_routes_untouched() {
    let Some(lab) = lab() else { return };
    let first = lab.start(config());
    lab.apply(
        first.handle(),
        vec![
            (net("10.244.70.0/26"), via(&["10.0.0.2", "10.0.1.2"])),
            (net("10.244.71.0/26"), via(&["10.0.0.2"])),
            (net("fd10:70::/64"), via(&["fd00::2"])),
            (net("10.244.72.0/26"), Some(RouteTarget::Blackhole)),
        ],
    );
    drop(first); // every handle gone: the task stops and leaves the routes in place
    assert_eq!(lab.count_ours(), 4, "routes survive the agent stopping");

    // Watch every route change while the second instance starts and re-learns its routes.
    let mut monitor = Command::new("ip")
        .args(["-n", lab.ns.name(), "monitor", "route"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("ip monitor");
    let mut stdout = monitor.stdout.take().expect("monitor stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    std::thread::sleep(Duration::from_millis(300));
    let second = lab.start(config());
    assert_eq!(lab.status(second.handle()).stale, 4);
    lab.apply(
        second.handle(),
        vec![
            // Same next hops in another order: unchanged.
            (net("10.244.70.0/26"), via(&["10.0.1.2", "10.0.0.2"])),
            // Changed: must show up in the monitor (proves the monitor sees our changes).
            (net("10.244.71.0/26"), via(&["10.0.1.2"])),
            (net("fd10:70::/64"), via(&["fd00::2"])),
            (net("10.244.72.0/26"), Some(RouteTarget::Blackhole)),
        ],
    );
    lab.rt.block_on(second.handle().converged()).unwrap();
    let status = lab.rt.block_on(second.handle().flush()).unwrap();
    assert_eq!((status.installed, status.stale), (4, 0), "{status:?}");
    std::thread::sleep(Duration::from_millis(300));
    monitor.kill().expect("stop ip monitor");
    let _ = monitor.wait();
    let events = reader.join().expect("monitor reader");
    assert!(
        events.contains("10.244.71.0/26"),
        "changed route not seen: {events}"
    );
    for unchanged in ["10.244.70.0/26", "fd10:70::/64", "10.244.72.0/26"] {
        assert!(
            !events.contains(unchanged),
            "{unchanged} was touched on restart: {events}"
        );
    }
}

#[test]
fn recursive_next_hop_follows_the_route_towards_it() {
    let Some(lab) = lab() else { return };
    lab.ns
        .ip(&[
            "route",
            "add",
            "192.168.100.0/24",
            "via",
            "10.0.1.2",
            "proto",
            "static",
        ])
        .unwrap();
    lab.ns
        .ip(&[
            "-6",
            "route",
            "add",
            "fd99::/64",
            "via",
            "fd00:1::2",
            "proto",
            "static",
        ])
        .unwrap();
    let dp = lab.start(config());
    let status = lab.apply(
        dp.handle(),
        vec![
            (net("10.244.60.0/26"), via(&["192.168.100.7"])),
            (net("fd10:60::/64"), via(&["fd99::7"])),
            (net("10.244.61.0/26"), via(&["10.77.0.1"])),
        ],
    );
    assert_eq!(status.installed, 2, "{status:?}");
    assert_eq!(
        status.unresolved,
        vec![(net("10.244.61.0/26"), "10.77.0.1".parse().unwrap())]
    );
    assert!(
        lab.ours("10.244.61.0/26").is_none(),
        "unresolvable next hop not installed"
    );
    assert_eq!(
        paths(&lab.ours("10.244.60.0/26").unwrap()),
        vec![pair("10.0.1.2", "v1")]
    );
    assert_eq!(
        paths(&lab.ours("fd10:60::/64").unwrap()),
        vec![pair("fd00:1::2", "v1")]
    );

    // The underlying route moves: ours follows.
    lab.ns
        .ip(&[
            "route",
            "replace",
            "192.168.100.0/24",
            "via",
            "10.0.0.2",
            "proto",
            "static",
        ])
        .unwrap();
    lab.wait_for(
        "route to follow its recursive next hop",
        Duration::from_secs(2),
        || {
            lab.ours("10.244.60.0/26")
                .is_some_and(|r| paths(&r) == vec![pair("10.0.0.2", "v0")])
        },
    );
    // The underlying route goes: ours is withdrawn and reported.
    lab.ns
        .ip(&["route", "del", "192.168.100.0/24", "proto", "static"])
        .unwrap();
    lab.wait_for(
        "route to go with its next hop",
        Duration::from_secs(2),
        || lab.ours("10.244.60.0/26").is_none(),
    );
    let status = lab.status(dp.handle());
    assert!(
        status
            .unresolved
            .contains(&(net("10.244.60.0/26"), "192.168.100.7".parse().unwrap()))
    );
    // A covering default route makes it resolvable again (resolve_via_default is on).
    lab.ns
        .ip(&["route", "add", "default", "via", "10.0.1.2"])
        .unwrap();
    lab.wait_for(
        "route back via the default gateway",
        Duration::from_secs(2),
        || {
            lab.ours("10.244.60.0/26")
                .is_some_and(|r| paths(&r) == vec![pair("10.0.1.2", "v1")])
        },
    );
    assert!(
        lab.ours("10.244.61.0/26").is_some(),
        "10.77.0.1 resolves via default too"
    );
}

#[test]
fn link_down_withdraws_and_link_up_restores() {
    let Some(lab) = lab() else { return };
    let dp = lab.start(config());
    lab.apply(
        dp.handle(),
        vec![
            (net("10.244.80.0/26"), via(&["10.0.1.2"])),
            (net("10.244.81.0/26"), via(&["10.0.0.2"])),
        ],
    );
    lab.ns.ip(&["link", "set", "v1", "down"]).unwrap();
    lab.wait_for(
        "kernel to flush the route on v1",
        Duration::from_secs(2),
        || lab.ours("10.244.80.0/26").is_none(),
    );
    std::thread::sleep(Duration::from_millis(100));
    let status = lab.status(dp.handle());
    assert_eq!(status.installed, 1, "{status:?}");
    assert_eq!(
        status.unresolved,
        vec![(net("10.244.80.0/26"), "10.0.1.2".parse().unwrap())]
    );
    lab.ns.ip(&["link", "set", "v1", "up"]).unwrap();
    lab.wait_for(
        "route back when the link returns",
        Duration::from_secs(2),
        || lab.ours("10.244.80.0/26").is_some(),
    );
    assert!(lab.ours("10.244.81.0/26").is_some());
}

#[test]
fn installs_100k_routes_and_shutdown_removes_them_all() {
    let Some(lab) = lab() else { return };
    let dp = lab.start(config());
    const N: u32 = 100_000;
    let changes: Vec<_> = (0..N)
        .map(|i| {
            let a = [10, 100 + (i >> 16) as u8, (i >> 8) as u8, i as u8];
            let hop = if i % 2 == 0 { "10.0.0.2" } else { "10.0.1.2" };
            (ipnet::IpNet::new(a.into(), 32).unwrap(), via(&[hop]))
        })
        .collect();
    let start = Instant::now();
    let status = lab.apply(dp.handle(), changes);
    let took = start.elapsed();
    eprintln!(
        "100k routes installed in {took:?} ({:.0} routes/s)",
        f64::from(N) / took.as_secs_f64()
    );
    assert_eq!(status.installed, N as usize, "{:?}", status.errors.first());
    let out = lab
        .ns
        .ip(&["-4", "route", "show", "proto", &RTPROT_PETREL.to_string()])
        .unwrap();
    assert_eq!(out.lines().count(), N as usize);
    assert!(
        out.contains("10.101.134.159 via 10.0.1.2 dev v1"),
        "spot check"
    );
    lab.rt.block_on(dp.handle().shutdown()).unwrap();
    assert_eq!(lab.count_ours(), 0, "shutdown withdraws every route");
}

#[test]
fn wide_ecmp_batches_are_split_by_size_and_all_installed() {
    let Some(lab) = lab() else { return };
    let dp = lab.start(config());
    let hops: Vec<String> = (2..34).map(|i| format!("10.0.0.{i}")).collect();
    let hops: Vec<&str> = hops.iter().map(String::as_str).collect();
    // 600 routes x 32 next hops is ~330 KiB of requests: several datagrams per batch.
    let changes: Vec<_> = (0..600u32)
        .map(|i| {
            (
                net(&format!("10.246.{}.{}/32", i / 256, i % 256)),
                via(&hops),
            )
        })
        .collect();
    let status = lab.apply(dp.handle(), changes);
    assert_eq!(status.installed, 600, "{:?}", status.errors.first());
    let routes = lab.routes(false, &format!("proto {RTPROT_PETREL}"));
    assert_eq!(routes.len(), 600);
    assert!(routes.iter().all(|r| paths(r).len() == 32));
}

#[test]
fn full_resync_rewrites_nothing_that_is_already_right() {
    let Some(lab) = lab() else { return };
    let dp = lab.start(config());
    let before = lab.apply(
        dp.handle(),
        vec![
            (net("10.244.90.0/26"), via(&["10.0.0.2", "10.0.1.2"])),
            (net("fd10:90::/64"), via(&["fd00::2", "fd00:1::2"])),
            (net("10.244.91.0/26"), Some(RouteTarget::Blackhole)),
        ],
    );
    assert_eq!(before.resyncs, 1);
    let after = lab.rt.block_on(async {
        dp.handle().resync().await.unwrap();
        dp.handle().flush().await.unwrap()
    });
    assert_eq!(after.resyncs, 2, "{after:?}");
    assert_eq!(after.installed, 3);
    assert_eq!(
        after.operations, before.operations,
        "a resync must not rewrite correct routes"
    );
}
