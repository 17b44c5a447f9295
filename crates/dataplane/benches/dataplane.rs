//! Route-programming throughput: petrel's dataplane versus `ip -batch`, each installing the same
//! IPv4 routes into a fresh network namespace. Needs root.
//!
//! ```text
//! cargo bench --bench dataplane                      # 100k and 500k routes, 3 runs each
//! cargo bench --bench dataplane -- 200000 --runs 5   # custom sizes and run count
//! ```
//!
//! Each run creates a namespace with a veth pair (`v0` 10.0.0.1/24), installs N /32 routes via
//! 10.0.0.2, checks that the kernel holds exactly N routes of protocol 200, and deletes the
//! namespace. Only the installation is timed: for petrel from `apply()` until `flush()` returns,
//! for iproute2 the whole `ip -batch` process reading a prepared script from stdin.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnet::IpNet;
use petrel_dataplane::netns::Netns;
use petrel_dataplane::{DataplaneConfig, RTPROT_PETREL, RouteTarget};

fn prefixes(n: u32) -> impl Iterator<Item = Ipv4Addr> {
    (0..n).map(|i| Ipv4Addr::new(10, 100 + (i >> 16) as u8, (i >> 8) as u8, i as u8))
}

fn lab() -> Netns {
    let ns = Netns::create("petrel-bench").expect("create netns (are you root?)");
    for cmd in [
        "link add v0 type veth peer name v1",
        "link set v0 up",
        "link set v1 up",
        "addr add 10.0.0.1/24 dev v0",
    ] {
        ns.ip(&cmd.split(' ').collect::<Vec<_>>()).expect(cmd);
    }
    ns
}

fn count_ours(ns: &Netns) -> usize {
    let out = ns
        .ip(&["-4", "route", "show", "proto", &RTPROT_PETREL.to_string()])
        .expect("ip route show");
    out.lines().count()
}

fn run_petrel(n: u32) -> Duration {
    let ns = lab();
    let config = DataplaneConfig {
        rt_protos_dir: None,
        ..DataplaneConfig::default()
    };
    let dp = ns.start_dataplane(config).expect("start dataplane");
    let gateway = RouteTarget::Via(vec![IpAddr::from([10, 0, 0, 2])]);
    let changes: Vec<_> = prefixes(n)
        .map(|a| {
            (
                IpNet::new(a.into(), 32).expect("prefix"),
                Some(gateway.clone()),
            )
        })
        .collect();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let start = Instant::now();
    let status = rt.block_on(async {
        dp.handle().apply(changes).await.expect("apply");
        dp.handle().flush().await.expect("flush")
    });
    let took = start.elapsed();
    assert_eq!(status.installed, n as usize, "petrel installed {status:?}");
    assert!(status.errors.is_empty());
    if status.resyncs > 1 {
        eprintln!(
            "note: {} full resyncs during the run (monitor overrun?)",
            status.resyncs - 1
        );
    }
    assert_eq!(count_ours(&ns), n as usize);
    drop(dp);
    took
}

fn run_ip_batch(n: u32) -> Duration {
    let ns = lab();
    let mut script = String::with_capacity(n as usize * 48);
    for a in prefixes(n) {
        script.push_str(&format!(
            "route add {a}/32 via 10.0.0.2 dev v0 proto {RTPROT_PETREL}\n"
        ));
    }
    let start = Instant::now();
    ns.ip_batch(&script).expect("ip -batch");
    let took = start.elapsed();
    assert_eq!(count_ours(&ns), n as usize);
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let mut sizes = Vec::new();
    let mut runs = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--runs" => runs = args.next().and_then(|r| r.parse().ok()).expect("--runs N"),
            "--bench" => {}
            other => match other.parse() {
                Ok(n) => sizes.push(n),
                Err(_) => eprintln!("ignoring argument {other:?}"),
            },
        }
    }
    if sizes.is_empty() {
        sizes = vec![100_000, 500_000];
    }
    println!(
        "{:>8}  {:>14}  {:>14}  {:>6}",
        "routes", "petrel rt/s", "ip -batch rt/s", "ratio"
    );
    for n in sizes {
        let mut petrel = Vec::new();
        let mut ip = Vec::new();
        for _ in 0..runs {
            petrel.push(run_petrel(n));
            ip.push(run_ip_batch(n));
        }
        let rate = |d: Duration| f64::from(n) / d.as_secs_f64();
        let (p, i) = (rate(median(petrel.clone())), rate(median(ip.clone())));
        println!("{n:>8}  {p:>14.0}  {i:>14.0}  {:>5.2}x", p / i);
        println!("          petrel runs: {petrel:?}\n          ip runs:     {ip:?}");
    }
}
