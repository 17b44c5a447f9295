//! Service advertisement benchmarks (criterion), issue 7 part 3. Run with:
//!
//! ```text
//! cargo bench --bench services
//! ```
//!
//! The cluster: 5,000 Services with 10 endpoints each (50,000 endpoints, one
//! EndpointSlice per Service) spread over 100 nodes; this node is `node-0`.
//! Even Services are NodePort with `externalTrafficPolicy: Local` (their
//! cluster IP is advertised as a /32 from nodes with a local endpoint), odd
//! ones are LoadBalancer with `externalTrafficPolicy: Cluster` (covered by
//! the aggregates).
//!
//! Measured: (a) one EndpointSlice update that moves an endpoint onto or off
//! this node, (b) one unrelated EndpointSlice update, (c) the initial sync of
//! everything, (d) a re-sync of everything with one slice changed (a file
//! datastore reload). Before the timed groups it moves one endpoint of every
//! Service onto this node and back, and prints the largest delta seen.

use criterion::{BatchSize, Criterion, criterion_group};
use k8s_openapi::api::core::v1::{
    LoadBalancerIngress, LoadBalancerStatus, Service, ServiceSpec, ServiceStatus,
};
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointConditions, EndpointSlice};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use petrel_services::{AdvertisementConfig, SERVICE_NAME_LABEL, ServiceAdvertiser};
use std::collections::BTreeMap;
use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

const SERVICES: u32 = 5_000;
const ENDPOINTS: u32 = 10;
const NODES: u32 = 100;
const ME: &str = "node-0";

fn config() -> AdvertisementConfig {
    AdvertisementConfig {
        cluster_ips: vec!["10.96.0.0/12".parse().expect("cidr")],
        load_balancer_ips: vec!["198.18.0.0/15".parse().expect("cidr")],
        ..AdvertisementConfig::default()
    }
}

fn ip(base: u32, i: u32) -> String {
    Ipv4Addr::from(base + i).to_string()
}

fn service(i: u32) -> Service {
    let local = i.is_multiple_of(2);
    Service {
        metadata: ObjectMeta {
            namespace: Some(format!("ns{}", i % 50)),
            name: Some(format!("svc{i}")),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(if local { "NodePort" } else { "LoadBalancer" }.into()),
            cluster_ip: Some(ip(0x0a60_0000, i + 1)),
            cluster_ips: Some(vec![ip(0x0a60_0000, i + 1)]),
            external_traffic_policy: Some(if local { "Local" } else { "Cluster" }.into()),
            ..Default::default()
        }),
        status: (!local).then(|| ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some(ip(0xc612_0000, i + 1)),
                    ..Default::default()
                }]),
            }),
            ..Default::default()
        }),
    }
}

/// The slice of Service `i`; endpoint `e` sits on node (i + 10 e) mod 100,
/// or on `node_override` for endpoint 0 when given.
fn slice(i: u32, node_override: Option<&str>, ready0: bool) -> EndpointSlice {
    EndpointSlice {
        address_type: "IPv4".into(),
        metadata: ObjectMeta {
            namespace: Some(format!("ns{}", i % 50)),
            name: Some(format!("svc{i}-abcde")),
            labels: Some(BTreeMap::from([(
                SERVICE_NAME_LABEL.to_string(),
                format!("svc{i}"),
            )])),
            ..Default::default()
        },
        endpoints: (0..ENDPOINTS)
            .map(|e| Endpoint {
                addresses: vec![ip(0x0a00_0000, i * ENDPOINTS + e)],
                node_name: Some(match (e, node_override) {
                    (0, Some(n)) => n.to_string(),
                    _ => format!("node-{}", (i + 10 * e) % NODES),
                }),
                conditions: Some(EndpointConditions {
                    ready: Some(e != 0 || ready0),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                ..Default::default()
            })
            .collect(),
        ports: None,
    }
}

fn cluster() -> (Vec<Service>, Vec<EndpointSlice>) {
    (
        (0..SERVICES).map(service).collect(),
        (0..SERVICES).map(|i| slice(i, None, true)).collect(),
    )
}

fn synced() -> ServiceAdvertiser {
    let (svcs, slices) = cluster();
    let mut a = ServiceAdvertiser::new(ME, config());
    a.sync(&svcs, &slices);
    a
}

/// Moves endpoint 0 of every Service onto this node and back; prints the
/// largest delta and the time per update.
fn delta_report() {
    let mut a = synced();
    let before = a.advertised().len();
    let mut max_delta = 0;
    let mut changed = 0;
    let start = Instant::now();
    for i in 0..SERVICES {
        let own_node = format!("node-{}", i % NODES);
        let on = a
            .upsert_endpoint_slice(&slice(i, Some(ME), true))
            .expect("named");
        let off = a
            .upsert_endpoint_slice(&slice(i, Some(&own_node), true))
            .expect("named");
        for d in [on, off] {
            let n = d.advertise.len() + d.withdraw.len();
            max_delta = max_delta.max(n);
            changed += usize::from(n > 0);
        }
    }
    let per = start.elapsed() / (2 * SERVICES);
    assert_eq!(a.advertised().len(), before, "moves undone");
    println!(
        "services: {SERVICES} Services, {} endpoints, {NODES} nodes; {before} prefixes advertised by {ME}",
        SERVICES * ENDPOINTS
    );
    println!(
        "services: moving one endpoint onto/off {ME} for every Service: largest delta {max_delta} prefix(es), {changed} non-empty deltas of {}, {per:?} per update including building the object",
        2 * SERVICES
    );
    assert!(
        max_delta <= 1,
        "a single-slice change must yield at most 1 prefix"
    );
}

fn bench_services(c: &mut Criterion) {
    let mut g = c.benchmark_group("services");
    g.sample_size(20);
    g.warm_up_time(std::time::Duration::from_secs(1));
    g.measurement_time(std::time::Duration::from_secs(3));

    // (a) Service 2 (Local; endpoints on nodes 2, 12, ..., 92): endpoint 0
    // alternates between node-2 and this node, so every update flips the
    // advertisement of its /32.
    {
        let mut a = synced();
        let on = slice(2, Some(ME), true);
        let off = slice(2, None, true);
        let mut flip = false;
        g.bench_function(
            "a_slice_update_moving_endpoint_onto_or_off_this_node",
            |b| {
                b.iter(|| {
                    flip = !flip;
                    let d = a
                        .upsert_endpoint_slice(if flip { &on } else { &off })
                        .expect("named");
                    debug_assert_eq!(d.advertise.len() + d.withdraw.len(), 1);
                    black_box(d)
                })
            },
        );
    }

    // (b) Service 4: endpoint 0 on node-4 toggles ready/not ready.
    {
        let mut a = synced();
        let ready = slice(4, None, true);
        let unready = slice(4, None, false);
        let mut flip = false;
        g.bench_function("b_unrelated_slice_update", |b| {
            b.iter(|| {
                flip = !flip;
                let d = a
                    .upsert_endpoint_slice(if flip { &unready } else { &ready })
                    .expect("named");
                debug_assert!(d.is_empty());
                black_box(d)
            })
        });
    }

    let (svcs, slices) = cluster();
    // (c) Initial sync of everything into an empty engine.
    g.bench_function("c_initial_sync_5k_services_50k_endpoints", |b| {
        b.iter_batched(
            || ServiceAdvertiser::new(ME, config()),
            |mut a| {
                let d = a.sync(&svcs, &slices);
                black_box((a, d))
            },
            BatchSize::LargeInput,
        )
    });

    // (d) Re-sync of everything where one slice moved an endpoint here.
    {
        let mut a = synced();
        let mut moved = slices.clone();
        moved[2] = slice(2, Some(ME), true);
        let mut flip = false;
        g.bench_function("d_resync_all_one_slice_changed", |b| {
            b.iter(|| {
                flip = !flip;
                let d = a.sync(&svcs, if flip { &moved } else { &slices });
                debug_assert_eq!(d.advertise.len() + d.withdraw.len(), 1);
                black_box(d)
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_services);

fn main() {
    delta_report();
    benches();
    Criterion::default().configure_from_args().final_summary();
}
