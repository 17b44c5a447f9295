//! Convergence and End-of-RIB holds (see `lifecycle.rs`), driven through
//! the speaker's event handlers with a fake session driver.

use super::*;
use petrel_bgp::fsm::{ConnId, Negotiated};
use petrel_bgp::wire::{Capabilities, GracefulRestartCap, Open};
use petrel_datastore::resolved::PeerConfig;
use std::time::{Duration, Instant};

const BLOCK: &str = "10.244.3.0/26";

fn origin() -> PeerOrigin {
    PeerOrigin::BgpPeer("tor".into())
}

fn node(with_peer: bool, originate: &[&str]) -> NodeConfig {
    let mut peers = BTreeMap::new();
    if with_peer {
        peers.insert(
            origin(),
            PeerConfig {
                // The driver never connects: the test plays the session.
                passive: true,
                ..crate::fixtures::peer("192.0.2.1")
            },
        );
    }
    NodeConfig {
        // No node address: no listener is bound.
        originate: originate
            .iter()
            .map(|p| (p.parse().unwrap(), vec![]))
            .collect(),
        peers,
        ..crate::fixtures::node()
    }
}

fn negotiated(graceful_restart: bool) -> Box<Negotiated> {
    let open = |asn, id: &str| Open {
        asn,
        hold_time: 90,
        router_id: id.parse().unwrap(),
        caps: Capabilities::default(),
    };
    Box::new(Negotiated {
        local_open: open(64512, "10.0.0.1"),
        remote_open: open(65000, "192.0.2.1"),
        hold_time: 90,
        keepalive: 30,
        families: vec![Family::Ipv4Unicast],
        four_octet_as: true,
        route_refresh: true,
        enhanced_route_refresh: false,
        extended_message: false,
        peer_graceful_restart: graceful_restart.then(|| GracefulRestartCap {
            restart_state: false,
            notification: false,
            restart_time: 120,
            families: vec![(Family::Ipv4Unicast, true)],
        }),
        conn: ConnId::Outbound,
    })
}

/// A speaker configured with `node`, whose one peer's session driver is
/// replaced by the returned receiver.
async fn speaker(
    options: SpeakerOptions,
    node: NodeConfig,
) -> (
    Speaker,
    Option<mpsc::UnboundedReceiver<SessionCmd>>,
    mpsc::UnboundedReceiver<FibMsg>,
) {
    let (tx, _rx) = mpsc::channel(16);
    let (fib, fib_rx) = mpsc::unbounded_channel();
    let (events, _) = tokio::sync::broadcast::channel(16);
    let mut s = Speaker::new(tx, Some(fib), events, &options, Default::default());
    s.apply_config(node).await;
    let cmds = s.peers.get_mut(&origin()).map(|e| {
        e.task.abort();
        let (cmd, rx) = mpsc::unbounded_channel();
        e.cmd = cmd;
        rx
    });
    (s, cmds, fib_rx)
}

fn establish(s: &mut Speaker, graceful_restart: bool) {
    let id = s.peers[&origin()].id;
    s.session_event(
        id,
        SessionEvent::Established {
            negotiated: negotiated(graceful_restart),
            local: "192.0.2.2:40000".parse().unwrap(),
            remote: "192.0.2.1:179".parse().unwrap(),
        },
    );
}

fn receive(s: &mut Speaker, msg: Message) {
    let id = s.peers[&origin()].id;
    s.session_event(id, SessionEvent::Received(msg));
}

/// What the driver was asked to send: "announce PREFIX…" or "eor".
fn sent(rx: &mut mpsc::UnboundedReceiver<SessionCmd>) -> Vec<String> {
    let mut out = Vec::new();
    while let Ok(cmd) = rx.try_recv() {
        match cmd {
            SessionCmd::Announce(_, nlri) => {
                for n in nlri {
                    out.push(format!("announce {}", n.prefix));
                }
            }
            SessionCmd::Send(Message::EndOfRib(_)) => out.push("eor".into()),
            _ => {}
        }
    }
    out
}

fn converged(rx: &mut mpsc::UnboundedReceiver<FibMsg>) -> bool {
    std::iter::from_fn(|| rx.try_recv().ok()).any(|m| m == FibMsg::Converged)
}

fn holds(max: Duration) -> SpeakerOptions {
    SpeakerOptions {
        end_of_rib_holds: vec![(END_OF_RIB_HOLD_IPAM.into(), max)],
        ..Default::default()
    }
}

#[tokio::test]
async fn end_of_rib_waits_for_the_block_ipam_is_slow_to_report() {
    let (mut s, cmds, _fib) = speaker(holds(Duration::from_secs(120)), node(true, &[])).await;
    let mut cmds = cmds.unwrap();
    establish(&mut s, true);
    assert_eq!(sent(&mut cmds), Vec::<String>::new(), "End-of-RIB held");
    // IPAM's first view arrives: the block is originated, then the hold goes.
    s.apply_config(node(true, &[BLOCK])).await;
    s.release_end_of_rib(END_OF_RIB_HOLD_IPAM);
    assert_eq!(
        sent(&mut cmds),
        vec![format!("announce {BLOCK}"), "eor".into()]
    );
    // Once per session.
    s.release_end_of_rib(END_OF_RIB_HOLD_IPAM);
    assert_eq!(sent(&mut cmds), Vec::<String>::new());
    // A new session gets it at once: no hold is left.
    let id = s.peers[&origin()].id;
    s.session_event(
        id,
        SessionEvent::Down {
            reason: petrel_bgp::fsm::DownReason::Stopped,
            was_established: true,
        },
    );
    establish(&mut s, true);
    assert_eq!(
        sent(&mut cmds),
        vec![format!("announce {BLOCK}"), "eor".into()]
    );
}

#[tokio::test]
async fn an_end_of_rib_hold_ends_at_its_maximum() {
    let (mut s, cmds, _fib) = speaker(holds(Duration::from_secs(10)), node(true, &[])).await;
    let mut cmds = cmds.unwrap();
    establish(&mut s, true);
    s.lifecycle_tick(Instant::now() + Duration::from_secs(5));
    assert_eq!(sent(&mut cmds), Vec::<String>::new());
    s.lifecycle_tick(Instant::now() + Duration::from_secs(11));
    assert_eq!(sent(&mut cmds), vec!["eor".to_string()]);
}

#[tokio::test]
async fn without_holds_end_of_rib_follows_the_initial_update() {
    let (mut s, cmds, _fib) = speaker(SpeakerOptions::default(), node(true, &[BLOCK])).await;
    let mut cmds = cmds.unwrap();
    establish(&mut s, false);
    assert_eq!(
        sent(&mut cmds),
        vec![format!("announce {BLOCK}"), "eor".into()]
    );
}

#[tokio::test]
async fn a_peer_without_graceful_restart_converges_when_quiet() {
    let (mut s, _cmds, mut fib) = speaker(SpeakerOptions::default(), node(true, &[])).await;
    establish(&mut s, false);
    let up = Instant::now();
    s.check_converged(up + Duration::from_secs(1));
    assert!(!converged(&mut fib), "not quiet for long enough");
    // An UPDATE restarts the quiet period.
    s.peers.get_mut(&origin()).unwrap().last_update = Some(up + Duration::from_secs(2));
    s.check_converged(up + Duration::from_secs(4));
    assert!(!converged(&mut fib), "an UPDATE 2 s ago");
    s.check_converged(up + Duration::from_secs(2) + QUIET_PERIOD);
    assert!(converged(&mut fib), "quiet for {QUIET_PERIOD:?}");
}

#[tokio::test]
async fn a_graceful_restart_peer_converges_on_end_of_rib() {
    let (mut s, _cmds, mut fib) = speaker(SpeakerOptions::default(), node(true, &[])).await;
    establish(&mut s, true);
    s.check_converged(Instant::now() + Duration::from_secs(30));
    assert!(
        !converged(&mut fib),
        "quiet is not enough with graceful restart"
    );
    receive(&mut s, Message::EndOfRib(Family::Ipv4Unicast));
    s.check_converged(Instant::now());
    assert!(converged(&mut fib));
}

#[tokio::test]
async fn the_stale_timeout_bounds_the_wait() {
    let options = SpeakerOptions {
        stale_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let (mut s, _cmds, mut fib) = speaker(options, node(true, &[])).await;
    // The session never comes up.
    s.check_converged(Instant::now() + Duration::from_secs(59));
    assert!(!converged(&mut fib));
    s.check_converged(Instant::now() + Duration::from_secs(61));
    assert!(converged(&mut fib), "ready at the stale timeout");
}

#[tokio::test]
async fn a_node_without_peers_converges_at_once() {
    let (mut s, _cmds, mut fib) = speaker(SpeakerOptions::default(), node(false, &[])).await;
    s.check_converged(Instant::now());
    assert!(converged(&mut fib));
}

/// A node listening on 127.0.0.1:`port` only.
fn loopback_listener(port: u16) -> NodeConfig {
    let mut n = node(false, &[]);
    n.ipv4_address = Some("127.0.0.1/8".parse().unwrap());
    n.listen_port = port;
    n
}

#[tokio::test]
async fn a_listener_that_cannot_bind_is_retried() {
    // Another socket holds the port for now.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = blocker.local_addr().unwrap();
    let (mut s, _cmds, _fib) =
        speaker(SpeakerOptions::default(), loopback_listener(addr.port())).await;
    assert_eq!(s.listeners.addresses(), vec![]);
    drop(blocker);
    let now = Instant::now();
    // Backoff: 1 s after the first failure.
    s.listeners.retry(now).await;
    assert_eq!(s.listeners.addresses(), vec![]);
    s.listeners.retry(now + Duration::from_secs(1)).await;
    assert_eq!(s.listeners.addresses(), vec![addr]);
    // A configuration change that keeps it does not touch it.
    s.apply_config(loopback_listener(addr.port())).await;
    assert_eq!(s.listeners.addresses(), vec![addr]);
}

#[tokio::test]
async fn a_moved_listener_is_closed_before_the_new_one_binds() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let (mut s, _cmds, _fib) = speaker(SpeakerOptions::default(), loopback_listener(port)).await;
    let first = s.listeners.addresses();
    assert_eq!(first.len(), 1);
    // Move to another port and back: the old socket is gone each time, so
    // the port is free again at once.
    s.apply_config(loopback_listener(0)).await;
    assert_eq!(s.listeners.addresses().len(), 1);
    assert_ne!(s.listeners.addresses(), first);
    assert!(
        std::net::TcpListener::bind(first[0]).is_ok(),
        "old listener closed"
    );
    s.apply_config(loopback_listener(port)).await;
    assert_eq!(s.listeners.addresses(), first);
}

#[tokio::test]
async fn the_handle_reports_the_listeners() {
    let (config, rx) = watch::channel(Some(loopback_listener(0)));
    let shutdown = CancellationToken::new();
    let (handle, task) = Speaker::spawn(rx, None, shutdown.clone(), SpeakerOptions::default());
    let addrs = handle.listeners().await;
    assert!(
        addrs.len() == 1 && addrs[0].ip() == IpAddr::from([127, 0, 0, 1]) && addrs[0].port() != 0,
        "{addrs:?}"
    );
    // bindMode NodeIP without a node address: no listener at all.
    let mut none = loopback_listener(0);
    none.ipv4_address = None;
    config.send(Some(none)).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !handle.listeners().await.is_empty() {
        assert!(Instant::now() < deadline, "listener not closed");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    shutdown.cancel();
    task.await.unwrap();
}

/// Issue 18: the announcements the driver was asked to send, with whether
/// each carries GRACEFUL_SHUTDOWN.
fn announced_gshut(rx: &mut mpsc::UnboundedReceiver<SessionCmd>) -> Vec<(String, bool)> {
    let mut out = Vec::new();
    while let Ok(cmd) = rx.try_recv() {
        if let SessionCmd::Announce(attrs, nlri) = cmd {
            let gshut = attrs.communities.contains(&GRACEFUL_SHUTDOWN);
            out.extend(nlri.iter().map(|n| (n.prefix.to_string(), gshut)));
        }
    }
    out
}

#[tokio::test]
async fn a_cordoned_node_drains_and_uncordoning_restores() {
    let (mut s, cmds, _fib) = speaker(SpeakerOptions::default(), node(true, &[BLOCK])).await;
    let mut cmds = cmds.unwrap();
    establish(&mut s, true);
    assert_eq!(announced_gshut(&mut cmds), vec![(BLOCK.to_string(), false)]);
    let mut cordoned = node(true, &[BLOCK]);
    cordoned.graceful_shutdown = Some("node cordoned (spec.unschedulable)".into());
    s.apply_config(cordoned.clone()).await;
    assert_eq!(announced_gshut(&mut cmds), vec![(BLOCK.to_string(), true)]);
    assert_eq!(
        s.drain.borrow().as_deref(),
        Some("node cordoned (spec.unschedulable)")
    );
    // The same configuration again sends nothing.
    s.apply_config(cordoned).await;
    assert_eq!(announced_gshut(&mut cmds), vec![]);
    s.apply_config(node(true, &[BLOCK])).await;
    assert_eq!(announced_gshut(&mut cmds), vec![(BLOCK.to_string(), false)]);
    assert_eq!(*s.drain.borrow(), None);
}

#[tokio::test]
async fn a_stopping_agent_drains_until_it_stops() {
    let (mut s, cmds, _fib) = speaker(SpeakerOptions::default(), node(true, &[BLOCK])).await;
    let mut cmds = cmds.unwrap();
    establish(&mut s, true);
    let _ = announced_gshut(&mut cmds);
    s.handle(SpeakerMsg::Drain).await;
    assert_eq!(announced_gshut(&mut cmds), vec![(BLOCK.to_string(), true)]);
    assert_eq!(s.drain.borrow().as_deref(), Some(DRAIN_ON_STOP));
    // A configuration change does not end it.
    s.apply_config(node(true, &[BLOCK])).await;
    assert_eq!(announced_gshut(&mut cmds), vec![]);
    assert!(s.drain.borrow().is_some());
}

const LEARNED: [&str; 2] = ["198.51.100.0/24", "203.0.113.0/24"];

fn update(prefix: &str) -> Message {
    Message::Update(petrel_bgp::wire::Update {
        withdrawn: vec![],
        attrs: Some(Arc::new(petrel_bgp::wire::PathAttributes {
            origin: Some(petrel_bgp::wire::Origin::Igp),
            as_path: vec![petrel_bgp::wire::AsSegment {
                kind: petrel_bgp::wire::AsSegmentKind::Sequence,
                asns: vec![65000],
            }],
            next_hop: Some("192.0.2.1".parse().unwrap()),
            ..Default::default()
        })),
        announced: vec![Nlri::new(prefix.parse().unwrap())],
    })
}

/// Prefixes the dataplane was sent, and whether `Converged` came (last).
fn fib_prefixes(rx: &mut mpsc::UnboundedReceiver<FibMsg>) -> (Vec<String>, bool) {
    let mut prefixes = Vec::new();
    let mut converged = false;
    while let Ok(m) = rx.try_recv() {
        match m {
            FibMsg::Changes(c) => {
                assert!(!converged, "routes after Converged");
                prefixes.extend(c.iter().map(|(p, _)| p.to_string()));
            }
            FibMsg::Converged => converged = true,
        }
    }
    prefixes.sort();
    (prefixes, converged)
}

fn restarting() -> SpeakerOptions {
    SpeakerOptions {
        restarting: Some(Duration::from_secs(120)),
        ..Default::default()
    }
}

#[tokio::test]
async fn a_restarting_node_defers_selection_until_every_end_of_rib() {
    let (mut s, cmds, mut fib) = speaker(restarting(), node(true, &[BLOCK])).await;
    let mut cmds = cmds.unwrap();
    establish(&mut s, true);
    // The peer sends its routes slowly: nothing reaches the kernel or the
    // peer, End-of-RIB included, before its End-of-RIB.
    receive(&mut s, update(LEARNED[0]));
    s.check_converged(Instant::now());
    assert_eq!(sent(&mut cmds), Vec::<String>::new());
    assert_eq!(fib_prefixes(&mut fib), (vec![], false));
    receive(&mut s, update(LEARNED[1]));
    s.check_converged(Instant::now() + Duration::from_secs(10));
    assert_eq!(sent(&mut cmds), Vec::<String>::new());
    assert_eq!(fib_prefixes(&mut fib), (vec![], false));
    receive(&mut s, Message::EndOfRib(Family::Ipv4Unicast));
    s.check_converged(Instant::now());
    // The whole table at once, then End-of-RIB; the kernel gets every
    // route before the sweep of adopted ones.
    assert_eq!(
        sent(&mut cmds),
        vec![format!("announce {BLOCK}"), "eor".into()]
    );
    let mut want = vec![BLOCK.to_string(), LEARNED[0].into(), LEARNED[1].into()];
    want.sort();
    assert_eq!(fib_prefixes(&mut fib), (want, true));
    // Later changes flow as usual.
    receive(&mut s, update("192.0.2.128/25"));
    s.flush();
    assert_eq!(
        fib_prefixes(&mut fib),
        (vec!["192.0.2.128/25".into()], false)
    );
}

#[tokio::test]
async fn selection_deferral_is_bounded() {
    let options = SpeakerOptions {
        selection_deferral: Duration::from_secs(30),
        ..restarting()
    };
    let (mut s, cmds, mut fib) = speaker(options, node(true, &[BLOCK])).await;
    let mut cmds = cmds.unwrap();
    establish(&mut s, true);
    receive(&mut s, update(LEARNED[0]));
    s.check_converged(Instant::now() + Duration::from_secs(29));
    assert_eq!(sent(&mut cmds), Vec::<String>::new());
    s.check_converged(Instant::now() + Duration::from_secs(31));
    assert_eq!(
        sent(&mut cmds),
        vec![format!("announce {BLOCK}"), "eor".into()]
    );
    let mut want = vec![BLOCK.to_string(), LEARNED[0].into()];
    want.sort();
    // Not converged: the stale timeout (120 s) still holds the sweep.
    assert_eq!(fib_prefixes(&mut fib), (want, false));
}

#[tokio::test]
async fn a_peer_that_restarts_too_is_not_waited_for() {
    let (mut s, cmds, _fib) = speaker(restarting(), node(true, &[BLOCK])).await;
    let mut cmds = cmds.unwrap();
    let id = s.peers[&origin()].id;
    let mut neg = negotiated(true);
    if let Some(gr) = neg.peer_graceful_restart.as_mut() {
        gr.restart_state = true;
    }
    s.session_event(
        id,
        SessionEvent::Established {
            negotiated: neg,
            local: "192.0.2.2:40000".parse().unwrap(),
            remote: "192.0.2.1:179".parse().unwrap(),
        },
    );
    s.check_converged(Instant::now());
    // RFC 4724 §4.2: it waits for our End-of-RIB before sending its own.
    assert_eq!(
        sent(&mut cmds),
        vec![format!("announce {BLOCK}"), "eor".into()]
    );
}

#[tokio::test]
async fn a_fresh_start_does_not_defer() {
    let (mut s, cmds, mut fib) = speaker(SpeakerOptions::default(), node(true, &[BLOCK])).await;
    let mut cmds = cmds.unwrap();
    establish(&mut s, true);
    receive(&mut s, update(LEARNED[0]));
    s.flush();
    assert_eq!(
        sent(&mut cmds),
        vec![format!("announce {BLOCK}"), "eor".into()]
    );
    assert!(fib_prefixes(&mut fib).0.contains(&LEARNED[0].to_string()));
}
