//! One test (or a few) per advertisement rule.

use super::*;

#[test]
fn configured_cidrs_are_aggregates_from_the_start() {
    let a = adv(standard());
    assert_eq!(
        a.advertised(),
        nets(&[
            "10.96.0.0/12",
            "198.18.0.0/15",
            "203.0.113.0/24",
            "2001:db8:e::/64",
            "2001:db8:1b::/64",
            "fd00:96::/108",
        ])
        .into_iter()
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect::<Vec<_>>()
    );
    let mut b = adv(AdvertisementConfig::default());
    assert!(b.advertised().is_empty());
    let d = b.set_config(cfg(&["10.96.0.1/12"], &[], &[]));
    assert_eq!(
        d.advertise,
        nets(&["10.96.0.0/12"]),
        "host bits are cleared"
    );
    assert!(d.withdraw.is_empty());
}

#[test]
fn cluster_policy_cluster_ip_is_covered_by_the_aggregate() {
    let mut a = adv(standard());
    let d = up(
        &mut a,
        &Svc::new("web").cluster(&["10.96.0.10", "fd00:96::a"]),
    );
    assert!(!d.changes_routes(), "{d:?}");
    assert_eq!(
        status_of(&a, "web", "10.96.0.10"),
        Disposition::Aggregate(net("10.96.0.0/12"))
    );
    assert_eq!(
        status_of(&a, "web", "fd00:96::a"),
        Disposition::Aggregate(net("fd00:96::/108"))
    );
    assert!(a.rejections().is_empty());
}

#[test]
fn external_local_advertises_host_routes_only_with_a_ready_local_endpoint() {
    let mut a = adv(standard());
    let svc = Svc::new("web")
        .lb()
        .local()
        .cluster(&["10.96.0.10"])
        .external(&["203.0.113.5"])
        .ingress_ip("198.18.0.7");
    let d = up(&mut a, &svc);
    assert!(!d.changes_routes());
    assert_eq!(d.newly_rejected.len(), 3, "{:?}", d.newly_rejected);
    assert!(d.newly_rejected.iter().all(|r| r.reason
        == RejectReason::NoReadyLocalEndpoint {
            family: IpFamily::V4
        }));

    // A ready endpoint on another node does not help.
    let d = up_slice(&mut a, &slice("web-1", Some("web"), "IPv4", &[REMOTE]));
    assert!(d.is_empty(), "{d:?}");

    let d = up_slice(
        &mut a,
        &slice("web-1", Some("web"), "IPv4", &[REMOTE, LOCAL]),
    );
    assert_eq!(
        d.advertise,
        nets(&["10.96.0.10/32", "198.18.0.7/32", "203.0.113.5/32"])
    );
    assert!(d.withdraw.is_empty() && d.newly_rejected.is_empty());
    assert!(a.rejections().is_empty());

    let d = up_slice(&mut a, &slice("web-1", Some("web"), "IPv4", &[REMOTE]));
    assert_eq!(
        d.withdraw,
        nets(&["10.96.0.10/32", "198.18.0.7/32", "203.0.113.5/32"])
    );
    assert_eq!(d.newly_rejected.len(), 3);
}

#[test]
fn internal_local_applies_to_cluster_ips_only() {
    let mut a = adv(standard());
    let svc = Svc::new("dns")
        .itp_local()
        .cluster(&["10.96.0.53"])
        .external(&["203.0.113.53"]);
    up(&mut a, &svc);
    let d = up_slice(&mut a, &slice("dns-1", Some("dns"), "IPv4", &[LOCAL]));
    assert_eq!(d.advertise, nets(&["10.96.0.53/32"]));
    assert_eq!(
        status_of(&a, "dns", "203.0.113.53"),
        Disposition::Aggregate(net("203.0.113.0/24"))
    );
}

#[test]
fn families_are_judged_separately() {
    let mut a = adv(standard());
    let svc = Svc::new("ds")
        .lb()
        .local()
        .cluster(&["10.96.0.20", "fd00:96::20"])
        .ingress_ip("198.18.0.20")
        .ingress_ip("2001:db8:1b::20");
    up(&mut a, &svc);
    let d = up_slice(&mut a, &slice("ds-v4", Some("ds"), "IPv4", &[LOCAL]));
    assert_eq!(d.advertise, nets(&["10.96.0.20/32", "198.18.0.20/32"]));
    assert_eq!(
        status_of(&a, "ds", "fd00:96::20"),
        Disposition::Rejected(RejectReason::NoReadyLocalEndpoint {
            family: IpFamily::V6
        })
    );
    let d = up_slice(&mut a, &slice("ds-v6", Some("ds"), "IPv6", &[LOCAL]));
    assert_eq!(
        d.advertise,
        nets(&["2001:db8:1b::20/128", "fd00:96::20/128"])
    );
    // An FQDN slice never counts.
    let d = up_slice(&mut a, &slice("ds-fqdn", Some("ds"), "FQDN", &[LOCAL]));
    assert!(d.is_empty());
    let d = a.delete_endpoint_slice("default", "ds-v4");
    assert_eq!(d.withdraw, nets(&["10.96.0.20/32", "198.18.0.20/32"]));
}

#[test]
fn readiness_conditions() {
    let svc = Svc::new("r")
        .local()
        .typ("NodePort")
        .cluster(&["10.96.0.30"]);
    let cases: [(Ep, bool); 6] = [
        ((Some(ME), Some(true)), true),
        ((Some(ME), None), true), // nil ready means ready
        ((Some(ME), Some(false)), false),
        ((Some(OTHER), Some(true)), false),
        ((None, Some(true)), false),
        ((Some("node-a2"), Some(true)), false),
    ];
    for (ep, advertised) in cases {
        let mut a = adv(standard());
        up(&mut a, &svc);
        up_slice(&mut a, &slice("r-1", Some("r"), "IPv4", &[ep]));
        assert_eq!(
            a.is_advertised(&net("10.96.0.30/32")),
            advertised,
            "endpoint {ep:?}"
        );
    }
}

#[test]
fn terminating_endpoint_is_not_ready() {
    let mut a = adv(standard());
    up(&mut a, &Svc::new("t").lb().local().cluster(&["10.96.0.31"]));
    up_slice(&mut a, &slice("t-1", Some("t"), "IPv4", &[LOCAL]));
    assert!(a.is_advertised(&net("10.96.0.31/32")));
    let mut s = slice("t-1", Some("t"), "IPv4", &[LOCAL]);
    s.endpoints[0].conditions = Some(EndpointConditions {
        ready: Some(false),
        serving: Some(true),
        terminating: Some(true),
    });
    let d = up_slice(&mut a, &s);
    assert_eq!(d.withdraw, nets(&["10.96.0.31/32"]));
}

#[test]
fn cluster_policy_single_address_cidr_is_a_host_route_from_every_node() {
    let mut a = adv(cfg(
        &["10.96.0.0/12"],
        &["203.0.113.0/24", "192.0.2.10/32"],
        &["2001:db8:1b::7/128"],
    ));
    // Single-address CIDRs are not aggregates.
    assert_eq!(a.advertised(), nets(&["10.96.0.0/12", "203.0.113.0/24"]));
    let d = up(
        &mut a,
        &Svc::new("one")
            .lb()
            .cluster(&["10.96.0.40"])
            .external(&["192.0.2.10", "203.0.113.40"])
            .ingress_ip("2001:db8:1b::7"),
    );
    assert_eq!(d.advertise, nets(&["192.0.2.10/32", "2001:db8:1b::7/128"]));
    assert_eq!(
        status_of(&a, "one", "203.0.113.40"),
        Disposition::Aggregate(net("203.0.113.0/24"))
    );
    let d = a.delete_service("default", "one");
    assert_eq!(d.withdraw, nets(&["192.0.2.10/32", "2001:db8:1b::7/128"]));
}

#[test]
fn local_policy_single_address_cidr_needs_a_local_endpoint() {
    let mut a = adv(cfg(&[], &[], &["198.18.0.9/32"]));
    let d = up(
        &mut a,
        &Svc::new("l")
            .lb()
            .local()
            .cluster(&["10.96.0.9"])
            .ingress_ip("198.18.0.9"),
    );
    assert!(!d.changes_routes());
    let d = up_slice(&mut a, &slice("l-1", Some("l"), "IPv4", &[LOCAL]));
    assert_eq!(d.advertise, nets(&["198.18.0.9/32"]));
    assert_eq!(
        status_of(&a, "l", "10.96.0.9"),
        Disposition::Rejected(RejectReason::NotEnabled)
    );
}

#[test]
fn addresses_outside_the_cidrs_are_never_advertised() {
    let mut a = adv(standard());
    let d = up(
        &mut a,
        &Svc::new("out")
            .lb()
            .local()
            .cluster(&["172.16.0.1"])
            .external(&["192.0.2.1"])
            .ingress_ip("100.64.0.1"),
    );
    up_slice(&mut a, &slice("out-1", Some("out"), "IPv4", &[LOCAL]));
    assert_eq!(a.advertised(), adv(standard()).advertised());
    let reasons: Vec<_> = d.newly_rejected.iter().map(|r| r.reason.clone()).collect();
    assert_eq!(reasons, vec![RejectReason::OutsideCidrs; 3]);
    let text = d.newly_rejected[0].to_string();
    assert_eq!(
        text,
        "service default/out: cluster IP \"172.16.0.1\" not advertised: not inside any serviceClusterIPs CIDR"
    );
    // A kind with no CIDRs at all is "not enabled".
    let mut b = adv(cfg(&["10.96.0.0/12"], &[], &[]));
    up(
        &mut b,
        &Svc::new("x")
            .external(&["192.0.2.1"])
            .cluster(&["10.96.0.1"]),
    );
    assert_eq!(
        status_of(&b, "x", "192.0.2.1"),
        Disposition::Rejected(RejectReason::NotEnabled)
    );
    assert!(RejectReason::NotEnabled.is_routine());
    assert!(!RejectReason::OutsideCidrs.is_routine());
}

#[test]
fn services_kube_proxy_does_not_serve_advertise_nothing() {
    let cases = [
        (
            Svc::new("h")
                .local()
                .cluster(&["None"])
                .external(&["203.0.113.1"]),
            RejectReason::Headless,
        ),
        (
            Svc::new("e").typ("ExternalName").external(&["203.0.113.2"]),
            RejectReason::ExternalName,
        ),
        (
            Svc::new("n").external(&["203.0.113.3"]),
            RejectReason::NoClusterIp,
        ),
        (
            Svc::new("u").typ("Weird").cluster(&["10.96.0.4"]),
            RejectReason::UnsupportedType("Weird".into()),
        ),
    ];
    for (svc, reason) in cases {
        let mut a = adv(standard());
        let name = svc.name.clone().unwrap();
        up_slice(&mut a, &slice("s", Some(&name), "IPv4", &[LOCAL]));
        let d = up(&mut a, &svc);
        assert!(!d.changes_routes(), "{name}: {d:?}");
        assert_eq!(d.newly_rejected.len(), 1, "{name}");
        assert_eq!(d.newly_rejected[0].reason, reason, "{name}");
    }
    // A headless Service with no other address lists nothing.
    let mut a = adv(standard());
    let d = up(&mut a, &Svc::new("h2").cluster(&["None"]));
    assert!(d.is_empty());
}

#[test]
fn odd_load_balancer_ingresses_and_objects() {
    let mut a = adv(standard());
    let mut svc = Svc::new("odd")
        .lb()
        .cluster(&["10.96.0.50"])
        .ingress_ip("not-an-ip");
    svc.ingress.push(LoadBalancerIngress {
        hostname: Some("lb.example.com".into()),
        ..Default::default()
    });
    svc.ingress.push(LoadBalancerIngress {
        ip: Some("198.18.0.50".into()),
        ip_mode: Some("Proxy".into()),
        ..Default::default()
    });
    svc.ingress.push(LoadBalancerIngress::default()); // empty: ignored
    up(&mut a, &svc);
    assert_eq!(
        status_of(&a, "odd", "not-an-ip"),
        Disposition::Rejected(RejectReason::InvalidAddress)
    );
    assert_eq!(
        status_of(&a, "odd", "lb.example.com"),
        Disposition::Rejected(RejectReason::HostnameOnly)
    );
    assert_eq!(
        status_of(&a, "odd", "198.18.0.50"),
        Disposition::Rejected(RejectReason::ProxyIpMode)
    );
    assert_eq!(a.service_status("default", "odd").unwrap().len(), 4);

    // Ingress on a ClusterIP Service (stale status after a type change).
    up(
        &mut a,
        &Svc::new("stale")
            .cluster(&["10.96.0.51"])
            .ingress_ip("198.18.0.51"),
    );
    assert_eq!(
        status_of(&a, "stale", "198.18.0.51"),
        Disposition::Rejected(RejectReason::NotLoadBalancerType)
    );

    // No spec, no status, no namespace: tracked, nothing advertised.
    let bare = Service {
        metadata: ObjectMeta {
            name: Some("bare".into()),
            ..Default::default()
        },
        ..Default::default()
    };
    let d = a.upsert_service(&bare).expect("named");
    assert!(d.is_empty());
    assert_eq!(a.service_status(DEFAULT_NAMESPACE, "bare"), Some(&[][..]));

    // Invalid cluster IP strings do not panic either.
    up(
        &mut a,
        &Svc::new("bad").local().cluster(&["10.96.0.999", ""]),
    );
    assert_eq!(a.service_status("default", "bad").unwrap().len(), 1);
}

#[test]
fn nameless_objects_are_typed_errors() {
    let mut a = adv(standard());
    let mut s = Svc::new("x");
    s.name = None;
    assert_eq!(
        a.upsert_service(&s.build()),
        Err(ServiceError::MissingName {
            kind: "Service",
            namespace: "default".into()
        })
    );
    let mut sl = slice("x", Some("x"), "IPv4", &[LOCAL]);
    sl.metadata.name = Some(String::new());
    assert!(a.upsert_endpoint_slice(&sl).is_err());
    let d = a.sync(&[s.build()], &[sl]);
    assert_eq!(d.invalid.len(), 2);
    assert!(d.invalid[0].to_string().contains("no metadata.name"));
}

#[test]
fn load_balancer_aggregation_disabled() {
    let mut config = standard();
    config.load_balancer_aggregation = false;
    let mut a = adv(config);
    assert!(!a.is_advertised(&net("198.18.0.0/15")));
    assert!(a.is_advertised(&net("203.0.113.0/24")));
    up(
        &mut a,
        &Svc::new("c")
            .lb()
            .cluster(&["10.96.0.60"])
            .external(&["203.0.113.60"])
            .ingress_ip("198.18.0.60"),
    );
    assert_eq!(
        status_of(&a, "c", "198.18.0.60"),
        Disposition::Rejected(RejectReason::NoReadyEndpoint {
            family: IpFamily::V4
        })
    );
    // A ready endpoint anywhere (another node) suffices under Cluster policy.
    let d = up_slice(&mut a, &slice("c-1", Some("c"), "IPv4", &[REMOTE]));
    assert_eq!(d.advertise, nets(&["198.18.0.60/32"]));
    assert_eq!(
        status_of(&a, "c", "203.0.113.60"),
        Disposition::Aggregate(net("203.0.113.0/24"))
    );
    let d = up_slice(
        &mut a,
        &slice("c-1", Some("c"), "IPv4", &[(Some(OTHER), Some(false))]),
    );
    assert_eq!(d.withdraw, nets(&["198.18.0.60/32"]));
    // From the BGPConfiguration spec.
    let spec = petrel_crd::BgpConfigurationSpec {
        service_load_balancer_aggregation: Some(petrel_crd::LoadBalancerAggregation::Disabled),
        service_cluster_ips: vec![petrel_crd::CidrBlock {
            cidr: net("10.96.0.0/12"),
        }],
        ..Default::default()
    };
    let c = AdvertisementConfig::from_spec(&spec);
    assert!(!c.load_balancer_aggregation);
    assert_eq!(c.cluster_ips, nets(&["10.96.0.0/12"]));
    assert!(AdvertisementConfig::from_spec(&Default::default()).load_balancer_aggregation);
}

#[test]
fn excluded_node_advertises_nothing() {
    let mut config = standard();
    config.node_excluded = true;
    let mut a = adv(config);
    assert!(a.advertised().is_empty());
    up(&mut a, &Svc::new("x").lb().local().cluster(&["10.96.0.70"]));
    up_slice(&mut a, &slice("x-1", Some("x"), "IPv4", &[LOCAL]));
    assert!(a.advertised().is_empty());
    assert_eq!(
        status_of(&a, "x", "10.96.0.70"),
        Disposition::Rejected(RejectReason::NodeExcluded)
    );
    let d = a.set_config(standard());
    assert!(d.advertise.contains(&net("10.96.0.70/32")));
    assert!(d.advertise.contains(&net("10.96.0.0/12")));
}

#[test]
fn slices_link_by_label_within_the_namespace() {
    let mut a = adv(standard());
    up(
        &mut a,
        &Svc::new("web")
            .ns("prod")
            .local()
            .typ("NodePort")
            .cluster(&["10.96.0.80"]),
    );
    // Same service name, other namespace: no effect.
    let d = up_slice(
        &mut a,
        &slice_in("dev", "web-1", Some("web"), "IPv4", &[LOCAL]),
    );
    assert!(d.is_empty());
    // No label: no effect.
    let d = up_slice(&mut a, &slice_in("prod", "orphan", None, "IPv4", &[LOCAL]));
    assert!(d.is_empty());
    let d = up_slice(
        &mut a,
        &slice_in("prod", "web-1", Some("web"), "IPv4", &[LOCAL]),
    );
    assert_eq!(d.advertise, nets(&["10.96.0.80/32"]));
}
