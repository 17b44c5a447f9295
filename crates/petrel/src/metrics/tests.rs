//! Unit tests of the metrics text, of health/readiness and of the HTTP routes.

use super::*;
use axum::body::Body;
use axum::http::Request;
use petrel_bgp::fsm::State;
use petrel_speaker::PeerStatus;
use std::time::UNIX_EPOCH;
use tower::ServiceExt;

fn peer(name: &str, address: &str, state: State) -> PeerStatus {
    PeerStatus {
        name: name.into(),
        address: address.parse().unwrap(),
        state,
        ..Default::default()
    }
}

fn established() -> PeerStatus {
    PeerStatus {
        uptime: Some(std::time::Duration::from_millis(42_500)),
        prefixes_received: 4,
        prefixes_accepted: 3,
        prefixes_advertised: 2,
        messages_received: 17,
        messages_sent: 19,
        connection_attempts: 5,
        established_transitions: 2,
        ..peer("bgppeer/bird1", "10.0.0.2", State::Established)
    }
}

fn status() -> DataplaneStatus {
    DataplaneStatus {
        desired: 6,
        installed: 4,
        stale: 1,
        unresolved: vec![("10.9.0.0/24".parse().unwrap(), "10.0.0.9".parse().unwrap())],
        conflicts: vec!["10.8.0.0/24".parse().unwrap()],
        errors: vec![
            ("10.7.0.0/24".parse().unwrap(), "EINVAL".into()),
            ("10.7.1.0/24".parse().unwrap(), "EINVAL".into()),
        ],
        converged: true,
        last_resync: Some(UNIX_EPOCH + Duration::from_secs(1_700_000_000)),
        resyncs: 3,
        operations: 123,
        reconcile_latency: {
            let mut h = petrel_dataplane::LatencyHistogram::default();
            h.observe(Duration::from_micros(300));
            h.observe(Duration::from_millis(3));
            h.observe(Duration::from_secs(5));
            h
        },
    }
}

fn snapshot() -> Snapshot {
    Snapshot {
        peers: Some(vec![
            established(),
            // The speaker empties a peer's Adj-RIB-In when its session goes
            // down (unless the peer restarts gracefully: then its routes stay
            // as stale ones); the metric reports the speaker's counts as is.
            PeerStatus {
                prefixes_received: 0,
                stale_routes: 5,
                graceful_restart: Some(petrel_speaker::RestartPhase::Restarting),
                ..peer("node-mesh/node2", "fd00::2", State::Active)
            },
        ]),
        dataplane: DataplaneState::Status(status()),
        config_loaded: true,
        invalid_objects: Default::default(),
        watcher_running: true,
        ipam: IpamState::Disabled,
        services: None,
        rejected_connections: 7,
        bfd: vec![],
    }
}

/// The sample lines (no comments) of a rendering.
fn samples(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.starts_with('#')).collect()
}

fn has(text: &str, line: &str) -> bool {
    samples(text).contains(&line)
}

#[test]
fn per_peer_series_carry_peer_and_address_labels() {
    let text = render(&snapshot());
    let l = r#"{peer="bgppeer/bird1",address="10.0.0.2"}"#;
    for line in [
        format!("petrel_bgp_session_established{l} 1"),
        format!("petrel_bgp_session_uptime_seconds{l} 42"),
        format!("petrel_bgp_prefixes_received{l} 4"),
        format!("petrel_bgp_prefixes_accepted{l} 3"),
        format!("petrel_bgp_prefixes_advertised{l} 2"),
        format!("petrel_bgp_stale_routes{l} 0"),
        r#"petrel_bgp_stale_routes{peer="node-mesh/node2",address="fd00::2"} 5"#.into(),
        format!("petrel_bgp_messages_received_total{l} 17"),
        format!("petrel_bgp_messages_sent_total{l} 19"),
        format!("petrel_bgp_connection_attempts_total{l} 5"),
        format!("petrel_bgp_established_transitions_total{l} 2"),
        r#"petrel_bgp_session_established{peer="node-mesh/node2",address="fd00::2"} 0"#.into(),
        r#"petrel_bgp_prefixes_received{peer="node-mesh/node2",address="fd00::2"} 0"#.into(),
    ] {
        assert!(has(&text, &line), "missing {line:?} in\n{text}");
    }
    assert!(has(&text, "petrel_bgp_peers 2"), "{text}");
    assert!(
        has(&text, "petrel_bgp_rejected_connections_total 7"),
        "{text}"
    );
    assert!(has(&text, "petrel_bgp_speaker_up 1"), "{text}");
    assert!(has(&text, "petrel_config_loaded 1"), "{text}");
    let version = format!(
        "petrel_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    assert!(has(&text, &version), "{text}");
}

#[test]
fn routes_of_unnegotiated_families_are_counted_per_family() {
    let mut snap = snapshot();
    if let Some(peers) = snap.peers.as_mut() {
        peers[0].unnegotiated_routes = vec![(petrel_bgp::wire::Family::Ipv6Unicast, 3)];
    }
    let text = render(&snap);
    let line = r#"petrel_bgp_unnegotiated_family_routes_total{peer="bgppeer/bird1",address="10.0.0.2",afi_safi="ipv6-unicast"} 3"#;
    assert!(has(&text, line), "missing {line:?} in\n{text}");
    let series = samples(&text)
        .into_iter()
        .filter(|l| l.starts_with("petrel_bgp_unnegotiated_family_routes_total"))
        .count();
    assert_eq!(series, 1, "{text}");
}

#[test]
fn session_state_has_one_series_per_state_and_only_the_current_is_one() {
    let text = render(&snapshot());
    let states: Vec<&str> = samples(&text)
        .into_iter()
        .filter(|l| l.starts_with("petrel_bgp_session_state{"))
        .collect();
    assert_eq!(states.len(), 2 * SESSION_STATES.len(), "{text}");
    let ones: Vec<&str> = states
        .iter()
        .copied()
        .filter(|l| l.ends_with(" 1"))
        .collect();
    assert_eq!(
        ones,
        [
            r#"petrel_bgp_session_state{peer="bgppeer/bird1",address="10.0.0.2",state="Established"} 1"#,
            r#"petrel_bgp_session_state{peer="node-mesh/node2",address="fd00::2",state="Active"} 1"#,
        ]
    );
}

#[test]
fn metadata_follows_prometheus_conventions() {
    let text = render(&snapshot());
    for line in [
        "# TYPE petrel_bgp_messages_received_total counter",
        "# TYPE petrel_bgp_prefixes_received gauge",
        "# TYPE petrel_dataplane_route_operations_total counter",
        "# TYPE petrel_dataplane_routes_installed gauge",
        "# TYPE petrel_bgp_session_state gauge",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in\n{text}"
        );
    }
    // Every sample is `name{labels} value` or `name value` with a petrel_ name
    // and a numeric value, and every name has a TYPE line.
    for line in samples(&text) {
        let (series, value) = line.rsplit_once(' ').unwrap();
        assert!(value.parse::<f64>().is_ok(), "{line}");
        let name = series.split('{').next().unwrap();
        assert!(name.starts_with("petrel_"), "{line}");
        // A histogram's samples carry suffixes; its TYPE line has the base name.
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .filter(|b| text.lines().any(|l| l == format!("# TYPE {b} histogram")))
            .unwrap_or(name);
        let typed = format!("# TYPE {base} ");
        assert!(text.lines().any(|l| l.starts_with(&typed)), "{line}");
    }
}

#[test]
fn dataplane_counts_and_counters() {
    let text = render(&snapshot());
    for line in [
        "petrel_dataplane_up 1",
        "petrel_dataplane_routes_desired 6",
        "petrel_dataplane_routes_installed 4",
        "petrel_dataplane_routes_stale 1",
        "petrel_dataplane_routes_unresolved 1",
        "petrel_dataplane_routes_conflicts 1",
        "petrel_dataplane_routes_errors 2",
        "petrel_dataplane_converged 1",
        "petrel_dataplane_route_operations_total 123",
        "petrel_dataplane_resyncs_total 3",
        "petrel_dataplane_last_resync_timestamp_seconds 1700000000.0",
        "petrel_dataplane_reconcile_duration_seconds_bucket{le=\"0.0005\"} 1",
        "petrel_dataplane_reconcile_duration_seconds_bucket{le=\"0.0025\"} 1",
        "petrel_dataplane_reconcile_duration_seconds_bucket{le=\"0.005\"} 2",
        "petrel_dataplane_reconcile_duration_seconds_bucket{le=\"2.5\"} 2",
        "petrel_dataplane_reconcile_duration_seconds_bucket{le=\"+Inf\"} 3",
        "petrel_dataplane_reconcile_duration_seconds_count 3",
        "petrel_dataplane_reconcile_duration_seconds_sum 5.0033",
    ] {
        assert!(has(&text, line), "missing {line:?} in\n{text}");
    }
}

#[test]
fn stopped_tasks_are_reported_as_down_without_stale_values() {
    let snap = Snapshot {
        peers: None,
        dataplane: DataplaneState::Unavailable("the dataplane task has stopped".into()),
        config_loaded: true,
        invalid_objects: Default::default(),
        watcher_running: true,
        ipam: IpamState::Disabled,
        services: None,
        rejected_connections: 0,
        bfd: vec![],
    };
    let text = render(&snap);
    assert!(has(&text, "petrel_bgp_speaker_up 0"), "{text}");
    assert!(has(&text, "petrel_bgp_peers 0"), "{text}");
    assert!(has(&text, "petrel_dataplane_up 0"), "{text}");
    assert!(!text.contains("petrel_dataplane_routes_"), "{text}");
    assert!(!text.contains("petrel_bgp_session_state{"), "{text}");

    let disabled = Snapshot {
        dataplane: DataplaneState::Disabled,
        ..snapshot()
    };
    assert!(!render(&disabled).contains("petrel_dataplane"));
}

#[test]
fn label_values_are_escaped() {
    let snap = Snapshot {
        peers: Some(vec![peer("bgppeer/a\"b\\c", "10.0.0.1", State::Idle)]),
        ..snapshot()
    };
    let text = render(&snap);
    assert!(
        has(
            &text,
            r#"petrel_bgp_session_established{peer="bgppeer/a\"b\\c",address="10.0.0.1"} 0"#
        ),
        "{text}"
    );
}

#[test]
fn health_names_every_stopped_task() {
    assert_eq!(snapshot().health(), Ok(()));
    let snap = Snapshot {
        peers: None,
        dataplane: DataplaneState::Unavailable("no answer within 3s".into()),
        config_loaded: true,
        invalid_objects: Default::default(),
        watcher_running: false,
        ipam: IpamState::Disabled,
        services: None,
        rejected_connections: 0,
        bfd: vec![],
    };
    assert_eq!(
        snap.health(),
        Err(vec![
            "BGP speaker: stopped or not answering".to_string(),
            "dataplane: no answer within 3s".to_string(),
            "datastore watcher: stopped".to_string(),
        ])
    );
}

#[test]
fn readiness_needs_config_and_convergence() {
    assert_eq!(snapshot().readiness(), Ok(()));
    let mut unconverged = status();
    unconverged.converged = false;
    let snap = Snapshot {
        config_loaded: false,
        invalid_objects: Default::default(),
        dataplane: DataplaneState::Status(unconverged),
        ..snapshot()
    };
    let reasons = snap.readiness().unwrap_err();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].contains("no configuration"), "{reasons:?}");
    assert!(reasons[1].contains("not converged"), "{reasons:?}");
    // Unhealthy is never ready.
    let dead = Snapshot {
        peers: None,
        ..snapshot()
    };
    assert!(dead.health().is_err());
    assert!(dead.readiness().is_err());
    // Without a dataplane, configuration is enough.
    let no_dataplane = Snapshot {
        dataplane: DataplaneState::Disabled,
        ..snapshot()
    };
    assert_eq!(no_dataplane.readiness(), Ok(()));
}

#[test]
fn listen_flag_parses_addresses_and_off() {
    assert_eq!("off".parse(), Ok(MetricsListen::Off));
    assert_eq!(
        DEFAULT_LISTEN.parse(),
        Ok(MetricsListen::Addr("127.0.0.1:9179".parse().unwrap()))
    );
    assert_eq!(
        "[::]:9179".parse::<MetricsListen>().unwrap().to_string(),
        "[::]:9179"
    );
    assert!("9179".parse::<MetricsListen>().is_err());
    assert!("localhost:9179".parse::<MetricsListen>().is_err());
}

async fn get(app: &Router, path: &str) -> (StatusCode, String, String) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20)
        .await
        .unwrap();
    (
        status,
        content_type,
        String::from_utf8(body.to_vec()).unwrap(),
    )
}

#[tokio::test]
async fn routes_answer_from_live_handles() {
    let (config_tx, config_rx) = watch::channel(None);
    let shutdown = CancellationToken::new();
    let (speaker, task) = petrel_speaker::Speaker::spawn(
        config_rx.clone(),
        None,
        shutdown.clone(),
        Default::default(),
    );
    let app = router(Sources {
        speaker,
        dataplane: None,
        config: config_rx,
    });

    let (code, content_type, body) = get(&app, "/metrics").await;
    assert_eq!(code, StatusCode::OK);
    assert_eq!(content_type, CONTENT_TYPE);
    assert!(has(&body, "petrel_bgp_speaker_up 1"), "{body}");
    assert!(has(&body, "petrel_config_loaded 0"), "{body}");

    assert_eq!(get(&app, "/healthz").await.0, StatusCode::OK);
    let (code, _, body) = get(&app, "/readyz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("no configuration"), "{body}");
    assert_eq!(get(&app, "/nope").await.0, StatusCode::NOT_FOUND);

    // The watcher going away also stops the speaker: both are named.
    drop(config_tx);
    task.await.unwrap();
    let (code, _, body) = get(&app, "/healthz").await;
    assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
    assert!(body.contains("BGP speaker"), "{body}");
    assert!(body.contains("datastore watcher"), "{body}");
    let (_, _, body) = get(&app, "/metrics").await;
    assert!(has(&body, "petrel_bgp_speaker_up 0"), "{body}");
}

fn ipam_status() -> petrel_ipam::backend::IpamStatusInfo {
    use petrel_ipam::backend::{BlockClaimState, BlockInfo, IpamStatusInfo, PoolInfo};
    let block = |cidr: &str, owner: &str, state| BlockInfo {
        cidr: cidr.parse().unwrap(),
        pool: "pods-v4".into(),
        owner_node: owner.into(),
        state,
        used: 2,
        free: 5,
        export: true,
        gateway: None,
    };
    IpamStatusInfo {
        node: "node1".into(),
        ready: true,
        pools: vec![PoolInfo {
            name: "pods-v4".into(),
            cidr: "10.244.0.0/16".parse().unwrap(),
            block_size: 29,
            disabled: false,
            export: true,
            selected: true,
            blocks_total: 8192,
            blocks_claimed: 3,
            addresses_used: 2,
            addresses_free: 5,
        }],
        blocks: vec![
            block("10.244.0.0/29", "node1", BlockClaimState::Confirmed),
            block("10.244.0.8/29", "node1", BlockClaimState::Pending),
            block("10.244.0.16/29", "node2", BlockClaimState::Confirmed),
        ],
        allocations: vec![],
        ..Default::default()
    }
}

#[test]
fn ipam_series_per_pool_and_state() {
    let snap = Snapshot {
        ipam: IpamState::Status(ipam_status()),
        ..snapshot()
    };
    let text = render(&snap);
    for line in [
        "petrel_ipam_up 1",
        "petrel_ipam_ready 1",
        "petrel_ipam_pool_blocks{pool=\"pods-v4\",cidr=\"10.244.0.0/16\"} 8192",
        "petrel_ipam_pool_blocks_claimed{pool=\"pods-v4\",cidr=\"10.244.0.0/16\"} 3",
        "petrel_ipam_pool_addresses_used{pool=\"pods-v4\",cidr=\"10.244.0.0/16\"} 2",
        "petrel_ipam_pool_addresses_free{pool=\"pods-v4\",cidr=\"10.244.0.0/16\"} 5",
        // Only this node's blocks; every state has a series.
        "petrel_ipam_node_blocks{pool=\"pods-v4\",state=\"confirmed\"} 1",
        "petrel_ipam_node_blocks{pool=\"pods-v4\",state=\"pending\"} 1",
        "petrel_ipam_node_blocks{pool=\"pods-v4\",state=\"releasing\"} 0",
        "petrel_ipam_allocations 0",
    ] {
        assert!(has(&text, line), "no {line:?} in\n{text}");
    }
    // Without IPAM: no series at all; unavailable: only `up 0`.
    assert!(!render(&snapshot()).contains("petrel_ipam"));
    let down = render(&Snapshot {
        ipam: IpamState::Unavailable("starting".into()),
        ..snapshot()
    });
    assert!(has(&down, "petrel_ipam_up 0"), "{down}");
    assert!(!down.contains("petrel_ipam_ready"), "{down}");
}

#[test]
fn services_series_count_prefixes_and_reasons() {
    use petrel_services::{AddressKind, IpFamily, ObjectKey, RejectReason, Rejection};
    let rej = |addr: &str, reason| Rejection {
        service: ObjectKey::new("default", "web"),
        kind: AddressKind::ExternalIp,
        address: addr.into(),
        reason,
    };
    let view = petrel_services::ServicesView {
        advertised: vec!["10.96.0.0/12".parse().unwrap()],
        rejections: vec![
            rej("198.51.100.1", RejectReason::OutsideCidrs),
            rej("198.51.100.2", RejectReason::OutsideCidrs),
            rej(
                "198.51.100.3",
                RejectReason::NoReadyLocalEndpoint {
                    family: IpFamily::V4,
                },
            ),
        ],
    };
    let text = render(&Snapshot {
        services: Some(ServicesCounts::of(&view)),
        rejected_connections: 0,
        bfd: vec![],
        ..snapshot()
    });
    for line in [
        "petrel_services_advertised_prefixes 1",
        "petrel_services_rejected_addresses{reason=\"outside-cidrs\"} 2",
        "petrel_services_rejected_addresses{reason=\"no-ready-local-endpoint\"} 1",
    ] {
        assert!(has(&text, line), "no {line:?} in\n{text}");
    }
    assert!(!render(&snapshot()).contains("petrel_services"));
}

/// Issue 12: invalid objects are counted per kind, each object once.
#[test]
fn invalid_objects_are_counted_per_kind() {
    use petrel_datastore::resolved::ConfigProblem;
    let problem = |kind: &str, name: &str, reason: &str| ConfigProblem {
        kind: kind.into(),
        name: name.into(),
        reason: reason.into(),
    };
    let mut snap = snapshot();
    snap.invalid_objects = super::invalid_objects_by_kind(&[
        problem("BGPPeer", "p", "spec.password: no key"),
        problem("BGPPeer", "p", "spec.filters: not found"),
        problem("IPPool", "aaa-overlap", "overlaps"),
    ]);
    let text = render(&snap);
    for line in [
        r#"petrel_config_invalid_objects{kind="BGPPeer"} 1"#,
        r#"petrel_config_invalid_objects{kind="IPPool"} 1"#,
        r#"petrel_config_invalid_objects{kind="BGPFilter"} 0"#,
        r#"petrel_config_invalid_objects{kind="BGPConfiguration"} 0"#,
    ] {
        assert!(has(&text, line), "missing {line:?} in\n{text}");
    }
}
