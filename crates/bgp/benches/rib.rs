//! RIB and wire benchmarks (criterion). Run with:
//!
//! ```text
//! cargo bench --bench rib
//! ```
//!
//! Before the timed groups it prints a memory report for the 1,000,000-prefix
//! ingest: bytes allocated and still live per route, and allocations per
//! route, counted by an instrumented global allocator.

use criterion::{BatchSize, Criterion, criterion_group};
use ipnet::{IpNet, Ipv4Net};
use petrel_bgp::rib::{PathSource, Rib};
use petrel_bgp::wire::{self, AsSegment, AsSegmentKind, Nlri, Origin, PathAttributes, WireContext};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};
use std::alloc::System;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const ONE_MILLION: u32 = 1_000_000;

/// `n` distinct IPv4 /24 prefixes starting at 1.0.0.0.
fn prefixes(n: u32) -> Vec<IpNet> {
    (0..n)
        .map(|i| {
            IpNet::V4(Ipv4Net::new(Ipv4Addr::from(0x0100_0000 + (i << 8)), 24).expect("valid /24"))
        })
        .collect()
}

/// A realistic attribute mix: 1,000 distinct AS paths shared by all routes.
fn attr_sets(peer_as: u32) -> Vec<Arc<PathAttributes>> {
    (0..1000u32)
        .map(|i| {
            Arc::new(PathAttributes {
                origin: Some(Origin::Igp),
                as_path: vec![AsSegment {
                    kind: AsSegmentKind::Sequence,
                    asns: vec![peer_as, 174 + i % 50, 3356, 64_512 + i],
                }],
                next_hop: Some(Ipv4Addr::new(10, 0, 0, 1)),
                communities: vec![(peer_as << 16) | (i % 10)],
                ..Default::default()
            })
        })
        .collect()
}

fn source(peer: u32) -> Arc<PathSource> {
    Arc::new(PathSource {
        peer,
        name: Arc::from(format!("peer{peer}")),
        address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, peer as u8)),
        router_id: Ipv4Addr::new(10, 0, 0, peer as u8),
        ebgp: true,
        local: false,
        cluster_node: false,
    })
}

/// Prefixes per UPDATE: consecutive routes share one attribute set, as the
/// NLRI of one UPDATE do (full Internet tables average a few per UPDATE).
const NLRI_PER_UPDATE: usize = 4;

fn ingest(rib: &mut Rib, peer: u32, prefixes: &[IpNet], attrs: &[Arc<PathAttributes>]) {
    let src = source(peer);
    let hop = Some(IpAddr::V4(Ipv4Addr::new(10, 0, 0, peer as u8)));
    for (i, p) in prefixes.iter().enumerate() {
        let a = &attrs[(i / NLRI_PER_UPDATE) % attrs.len()];
        rib.insert(&src, *p, 0, a.clone(), hop);
    }
    black_box(rib.take_changes());
}

fn memory_report() {
    let pfx = prefixes(ONE_MILLION);
    let attrs = attr_sets(65001);
    let region = Region::new(GLOBAL);
    let mut rib = Rib::new(8);
    ingest(&mut rib, 1, &pfx, &attrs);
    let stats = region.change();
    let live = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64;
    println!(
        "memory: 1M IPv4 routes from one peer: {:.1} live bytes/route, {:.2} allocations/route, {} attribute sets stored",
        live as f64 / f64::from(ONE_MILLION),
        stats.allocations as f64 / f64::from(ONE_MILLION),
        rib.attribute_sets()
    );
    assert_eq!(rib.len(), ONE_MILLION as usize);
}

fn bench_ingest(c: &mut Criterion) {
    let pfx = prefixes(ONE_MILLION);
    let attrs = attr_sets(65001);
    let mut g = c.benchmark_group("rib");
    g.sample_size(10);
    g.bench_function("ingest_1M_ipv4_one_peer", |b| {
        b.iter_batched(
            || Rib::new(8),
            |mut rib| ingest(&mut rib, 1, &pfx, &attrs),
            BatchSize::PerIteration,
        )
    });
    // Best path over 4 paths: three peers' paths are present; the timed part
    // adds the fourth peer's 250,000 paths, each triggering a selection over
    // four candidates.
    let pfx250 = prefixes(250_000);
    let mut base = Rib::new(1);
    for peer in 1..=3 {
        ingest(&mut base, peer, &pfx250, &attr_sets(65000 + peer));
    }
    let fourth = attr_sets(65004);
    g.bench_function("best_path_4_paths_250k_prefixes", |b| {
        b.iter_batched(
            || clone_rib(&pfx250),
            |mut rib| ingest(&mut rib, 4, &pfx250, &fourth),
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

/// Rebuilding the three-peer RIB is cheaper to reason about than cloning it.
fn clone_rib(pfx: &[IpNet]) -> Rib {
    let mut rib = Rib::new(1);
    for peer in 1..=3 {
        ingest(&mut rib, peer, pfx, &attr_sets(65000 + peer));
    }
    rib
}

fn bench_wire(c: &mut Criterion) {
    let attrs = attr_sets(65001)[0].as_ref().clone();
    let nlri: Vec<Nlri> = prefixes(10_000).into_iter().map(Nlri::new).collect();
    let ctx = WireContext {
        four_octet_as: true,
        ..WireContext::default()
    };
    let encoded = wire::encode_announce(&attrs, &nlri, &ctx).expect("encodes");
    let mut g = c.benchmark_group("wire");
    g.throughput(criterion::Throughput::Elements(nlri.len() as u64));
    g.bench_function("encode_update_10k_nlri", |b| {
        b.iter(|| black_box(wire::encode_announce(&attrs, &nlri, &ctx).expect("encodes")))
    });
    g.bench_function("decode_update_10k_nlri", |b| {
        b.iter(|| {
            for m in &encoded {
                black_box(wire::decode(m, &ctx).expect("decodes"));
            }
        })
    });
    g.finish();
}

criterion_group!(benches, bench_ingest, bench_wire);

fn main() {
    memory_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
