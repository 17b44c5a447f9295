//! Property: after any sequence of events, the incremental state equals a
//! from-scratch recomputation (endpoint counts recomputed independently of
//! the engine's parser), and the deltas replayed from the start reproduce
//! the advertised set.

use super::super::evaluate::{Cidrs, Counts, evaluate};
use super::super::parse::parse_service;
use super::*;
use proptest::prelude::*;
use std::collections::BTreeSet;

const SERVICES: [&str; 3] = ["s0", "s1", "s2"];
const SLICES: [&str; 4] = ["e0", "e1", "e2", "e3"];

#[derive(Debug, Clone)]
struct SliceSpec {
    service: Option<usize>,
    family: &'static str,
    eps: Vec<(Option<&'static str>, Option<bool>)>,
}

impl SliceSpec {
    fn build(&self, name: &str) -> EndpointSlice {
        slice(
            name,
            self.service.map(|i| SERVICES[i]),
            self.family,
            &self.eps,
        )
    }
}

#[derive(Debug, Clone)]
enum Event {
    UpsertService(usize, Svc),
    DeleteService(usize),
    UpsertSlice(usize, SliceSpec),
    DeleteSlice(usize),
    Config(usize),
    Sync,
}

fn configs() -> Vec<AdvertisementConfig> {
    let mut no_agg = standard();
    no_agg.load_balancer_aggregation = false;
    let mut excluded = standard();
    excluded.node_excluded = true;
    vec![
        standard(),
        cfg(
            &["10.96.0.0/24", "10.96.0.2/32"],
            &["203.0.113.9/32", "2001:db8:e::/64"],
            &["198.18.0.1/32"],
        ),
        no_agg,
        excluded,
        AdvertisementConfig::default(),
    ]
}

fn subset(pool: &'static [&'static str]) -> impl Strategy<Value = Vec<&'static str>> {
    proptest::sample::subsequence(pool.to_vec(), 0..=pool.len())
}

fn svc_strategy(name: &'static str) -> impl Strategy<Value = Svc> {
    (
        prop::sample::select(vec![
            "ClusterIP",
            "NodePort",
            "LoadBalancer",
            "ExternalName",
        ]),
        subset(&[
            "10.96.0.1",
            "10.96.0.2",
            "fd00:96::1",
            "172.16.0.1",
            "None",
            "bogus",
        ]),
        subset(&["203.0.113.1", "203.0.113.9", "2001:db8:e::1", "192.0.2.1"]),
        subset(&["198.18.0.1", "203.0.113.1", "2001:db8:1b::1", "100.64.0.1"]),
        prop::sample::select(vec![None, Some("Cluster"), Some("Local")]),
        any::<bool>(),
    )
        .prop_map(move |(t, cluster, external, ingress, etp, itp)| {
            let mut s = Svc::new(name).typ(t).cluster(&cluster).external(&external);
            for ip in ingress {
                s = s.ingress_ip(ip);
            }
            s.etp = etp.map(str::to_string);
            if itp {
                s = s.itp_local();
            }
            s
        })
}

fn slice_strategy() -> impl Strategy<Value = SliceSpec> {
    (
        prop::option::weighted(0.9, 0..SERVICES.len()),
        prop::sample::select(vec!["IPv4", "IPv6", "FQDN"]),
        prop::collection::vec(
            (
                prop::sample::select(vec![Some(ME), Some(OTHER), None]),
                prop::sample::select(vec![None, Some(true), Some(false)]),
            ),
            0..4,
        ),
    )
        .prop_map(|(service, family, eps)| SliceSpec {
            service,
            family,
            eps,
        })
}

fn event_strategy() -> impl Strategy<Value = Event> {
    prop_oneof![
        4 => (0..SERVICES.len()).prop_flat_map(|i| svc_strategy(SERVICES[i]).prop_map(move |s| Event::UpsertService(i, s))),
        1 => (0..SERVICES.len()).prop_map(Event::DeleteService),
        5 => (0..SLICES.len(), slice_strategy()).prop_map(|(i, s)| Event::UpsertSlice(i, s)),
        1 => (0..SLICES.len()).prop_map(Event::DeleteSlice),
        1 => (0..5usize).prop_map(Event::Config),
        1 => Just(Event::Sync),
    ]
}

/// The expected advertised set and rejections, computed from scratch.
fn oracle(
    config: &AdvertisementConfig,
    services: &[Option<Svc>],
    slices: &[Option<SliceSpec>],
) -> (BTreeSet<IpNet>, Vec<Rejection>) {
    let cidrs = Cidrs::new(config);
    let mut set: BTreeSet<IpNet> = cidrs.aggregates().into_iter().collect();
    let mut rejections = Vec::new();
    for (i, svc) in services.iter().enumerate() {
        let Some(svc) = svc else { continue };
        let mut counts = Counts::default();
        for sl in slices.iter().flatten().filter(|s| s.service == Some(i)) {
            let f = match sl.family {
                "IPv4" => 0,
                "IPv6" => 1,
                _ => continue,
            };
            for (node, ready) in &sl.eps {
                if *ready != Some(false) {
                    counts.ready[f] += 1;
                    if *node == Some(ME) {
                        counts.local_ready[f] += 1;
                    }
                }
            }
        }
        let eval = evaluate(&parse_service(&svc.build()), &cidrs, &counts);
        set.extend(eval.claims.iter().copied());
        for st in eval.statuses {
            if let Disposition::Rejected(reason) = st.disposition {
                rejections.push(Rejection {
                    service: ObjectKey::new("default", SERVICES[i]),
                    kind: st.kind,
                    address: st.address,
                    reason,
                });
            }
        }
    }
    rejections.sort();
    (set, rejections)
}

fn check_delta(applied: &mut BTreeSet<IpNet>, d: &Delta) -> Result<(), TestCaseError> {
    let mut all: Vec<&IpNet> = d.advertise.iter().chain(&d.withdraw).collect();
    let n = all.len();
    all.sort();
    all.dedup();
    prop_assert_eq!(all.len(), n, "duplicate or overlapping prefixes in {:?}", d);
    for p in &d.advertise {
        prop_assert!(applied.insert(*p), "advertised twice: {}", p);
    }
    for p in &d.withdraw {
        prop_assert!(applied.remove(p), "withdrew unadvertised {}", p);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn incremental_equals_from_scratch(events in prop::collection::vec(event_strategy(), 1..40)) {
        let configs = configs();
        let mut config = configs[0].clone();
        let mut a = adv(config.clone());
        let mut applied: BTreeSet<IpNet> = a.advertised().into_iter().collect();
        let mut services: Vec<Option<Svc>> = vec![None; SERVICES.len()];
        let mut slices: Vec<Option<SliceSpec>> = vec![None; SLICES.len()];
        // Rejections reported so far (the current set must be covered).
        let mut reported: BTreeSet<Rejection> = BTreeSet::new();
        for ev in events {
            let d = match ev {
                Event::UpsertService(i, s) => {
                    services[i] = Some(s.clone());
                    up(&mut a, &s)
                }
                Event::DeleteService(i) => {
                    services[i] = None;
                    a.delete_service("default", SERVICES[i])
                }
                Event::UpsertSlice(i, s) => {
                    slices[i] = Some(s.clone());
                    up_slice(&mut a, &s.build(SLICES[i]))
                }
                Event::DeleteSlice(i) => {
                    slices[i] = None;
                    a.delete_endpoint_slice("default", SLICES[i])
                }
                Event::Config(i) => {
                    config = configs[i].clone();
                    a.set_config(config.clone())
                }
                Event::Sync => {
                    let svcs: Vec<Service> = services.iter().flatten().map(Svc::build).collect();
                    let sls: Vec<EndpointSlice> = slices
                        .iter()
                        .enumerate()
                        .filter_map(|(i, s)| s.as_ref().map(|s| s.build(SLICES[i])))
                        .collect();
                    let d = a.sync(&svcs, &sls);
                    prop_assert!(d.is_empty(), "sync of the current state changed something: {:?}", d);
                    d
                }
            };
            check_delta(&mut applied, &d)?;
            reported.extend(d.newly_rejected.iter().cloned());
            let (expected, rejections) = oracle(&config, &services, &slices);
            let actual: BTreeSet<IpNet> = a.advertised().into_iter().collect();
            prop_assert_eq!(&actual, &expected);
            prop_assert_eq!(&applied, &expected);
            prop_assert_eq!(&a.rejections(), &rejections);
            for r in &rejections {
                prop_assert!(reported.contains(r), "rejection never reported: {}", r);
            }
        }
        // From scratch through sync on a fresh engine gives the same state.
        let mut fresh = adv(config.clone());
        let svcs: Vec<Service> = services.iter().flatten().map(Svc::build).collect();
        let sls: Vec<EndpointSlice> = slices
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| s.build(SLICES[i])))
            .collect();
        fresh.sync(&svcs, &sls);
        prop_assert_eq!(fresh.advertised(), a.advertised());
        prop_assert_eq!(fresh.rejections(), a.rejections());
    }
}
