//! Hostile peers and clients (`security` topology): a raw BGP speaker (the
//! benchmark's own, `petrel_testbed::bench_daemons::speaker`, IPv4 unicast
//! only) on `router` sends petrel routes of a family that was never
//! negotiated, and a slowloris fills petrel's metrics port with requests that
//! never finish. Run as root: `cargo test -p petrel-testbed --test hostile`.

mod common;

use anyhow::{Context, ensure};
use common::petrel::*;
use common::*;
use petrel_bgp::wire::{AsSegment, AsSegmentKind, MpNextHop, Nlri, Origin, PathAttributes};
use petrel_testbed::bench_daemons::speaker::{Session, in_netns};
use petrel_testbed::{Lab, wait_for};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

const PETREL: &str = "petrel";
const HOSTILE: &str = "10.9.0.2";
const HOSTILE_AS: u32 = 65009;
const V4_ROUTE: &str = "198.18.4.0/24";
const V6_ROUTE: &str = "fd99:204::/48";
const METRICS: &str = "http://127.0.0.1:9179/metrics";

fn metrics(lab: &Lab) -> anyhow::Result<String> {
    lab.exec(PETREL, &format!("curl -fsS --max-time 5 {METRICS}"))
}

/// RFC 4760: an IPv4-only peer's MP_REACH_NLRI for IPv6 is ignored (and
/// counted); its IPv4 routes are taken and the session stays up.
#[test]
fn routes_of_an_unnegotiated_family_are_ignored() {
    let lab = deploy("security");
    lab.check(|lab| {
        write_manifest(
            lab,
            PETREL,
            "hostile.yaml",
            &bgp_peer("hostile", HOSTILE, HOSTILE_AS, ""),
        )?;
        wait_for(UP, "petrel to know the hostile peer", || {
            lab.petrel_peer(PETREL, HOSTILE).map(drop)
        })?;
        let netns = lab.netns("router")?;
        let (mut s, reader) = Session::establish(
            "hostile",
            &netns,
            HOSTILE_AS,
            HOSTILE.parse()?,
            "10.9.0.1".parse()?,
            UP,
        )?;
        s.start(reader, |_| {})?;
        let ctx = s.ctx().clone();
        let base = PathAttributes {
            origin: Some(Origin::Igp),
            as_path: vec![AsSegment {
                kind: AsSegmentKind::Sequence,
                asns: vec![HOSTILE_AS],
            }],
            ..Default::default()
        };
        // The IPv6 route first: by the time the IPv4 one is in, petrel has
        // processed it.
        let v6 = PathAttributes {
            mp_next_hop: Some(MpNextHop {
                global: "fd99::2".parse()?,
                link_local: None,
            }),
            ..base.clone()
        };
        let v4 = PathAttributes {
            next_hop: Some(HOSTILE.parse()?),
            ..base
        };
        for (attrs, prefix) in [(&v6, V6_ROUTE), (&v4, V4_ROUTE)] {
            for m in petrel_bgp::wire::encode_announce(attrs, &[Nlri::new(prefix.parse()?)], &ctx)?
            {
                s.send(&m)?;
            }
        }
        wait_for(PROPAGATE, "the IPv4 route in petrel's RIB", || {
            let routes = lab.petrel_routes(PETREL)?;
            ensure!(routes.iter().any(|r| r.prefix == V4_ROUTE), "{routes:?}");
            Ok(())
        })?;
        let routes = lab.petrel_routes(PETREL)?;
        ensure!(
            !routes.iter().any(|r| r.prefix == V6_ROUTE),
            "the unnegotiated IPv6 route was taken: {routes:?}"
        );
        let kernel = lab.kernel_routes_for(PETREL, V6_ROUTE)?;
        ensure!(kernel.is_empty(), "IPv6 route in the kernel: {kernel:?}");
        let text = metrics(lab)?;
        ensure!(
            text.lines().any(
                |l| l.starts_with("petrel_bgp_unnegotiated_family_routes_total{")
                    && l.contains(r#"afi_safi="ipv6-unicast""#)
                    && l.ends_with(" 1")
            ),
            "no unnegotiated-family count in\n{text}"
        );
        ensure!(s.error().is_none(), "session went down: {:?}", s.error());
        let peer = lab.petrel_peer(PETREL, HOSTILE)?;
        ensure!(peer.state == "Established", "{}", peer_line(&peer));
        Ok(())
    });
}

/// 200 connections to the metrics port that never finish their request:
/// the agent closes them within its header timeout, `petrel peers` and
/// scrapes keep answering.
#[test]
fn a_slowloris_on_the_metrics_port_starves_nothing() {
    let lab = deploy("security");
    lab.check(|lab| {
        wait_for(UP, "the metrics endpoint", || metrics(lab).map(drop))?;
        let netns = lab.netns(PETREL)?;
        let mut held: Vec<TcpStream> = in_netns(&netns, || {
            (0..200)
                .filter_map(|_| {
                    let mut s = TcpStream::connect("127.0.0.1:9179").ok()?;
                    // Connections over the cap may be closed already.
                    let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n");
                    Some(s)
                })
                .collect()
        })?;
        ensure!(held.len() == 200, "only {} connections opened", held.len());
        let t0 = Instant::now();
        lab.petrel(PETREL, "peers").context("petrel peers")?;
        ensure!(
            t0.elapsed() < Duration::from_secs(5),
            "petrel peers took {:?}",
            t0.elapsed()
        );
        wait_for(Duration::from_secs(10), "a scrape to answer", || {
            metrics(lab).map(drop)
        })?;
        // Every half-sent request is cut off by the 5 s header timeout.
        let deadline = Instant::now() + Duration::from_secs(15);
        for s in &mut held {
            let left = deadline.saturating_duration_since(Instant::now());
            s.set_read_timeout(Some(left.max(Duration::from_millis(10))))?;
            let mut buf = [0u8; 512];
            loop {
                match s.read(&mut buf) {
                    Ok(0) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
                    Err(e) => anyhow::bail!("a half-sent request still held after 15 s: {e}"),
                    Ok(_) => {} // a 408 or similar answer, then EOF
                }
            }
        }
        Ok(())
    });
}
