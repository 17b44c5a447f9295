//! The task's state machine fed with hand-made netlink notifications (no kernel needed).

use super::*;
use crate::codec::{NLM_F_CREATE, RTM_DELLINK, RTM_DELROUTE, RTM_NEWLINK, RTM_NEWROUTE};
use crate::model::KernelNextHop;

const OURS: u8 = 200;
const ECHO_PORT: u32 = 4242;

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}
fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn state() -> State {
    let config = DataplaneConfig {
        rt_protos_dir: None,
        ..DataplaneConfig::default()
    };
    let mut state = State::new(&config);
    let mut snap = Snapshot::new(254, OURS);
    // Connected subnets: 10.0.0.0/24 on 2, 10.0.1.0/24 on 3.
    snap.add(&payload(&foreign_op("10.0.0.0/24", None, 2), 2));
    snap.add(&payload(&foreign_op("10.0.1.0/24", None, 3), 2));
    state.load(snap, SystemTime::UNIX_EPOCH, true);
    assert!(state.take_ops().is_empty());
    state
}

/// A unicast route op; `gw == None` builds a device route (gateway-less hop).
fn foreign_op(prefix: &str, gw: Option<&str>, oif: u32) -> RouteOp {
    let hop = KernelNextHop::new(gw.map(ip).unwrap_or(ip("0.0.0.0")), oif);
    RouteOp::Replace {
        prefix: net(prefix),
        route: KernelRoute::unicast(vec![hop]),
    }
}

fn payload(op: &RouteOp, protocol: u8) -> Vec<u8> {
    let (_, _, mut msg) = codec::op_message(op, 254, protocol);
    // Device routes carry no gateway attribute.
    msg.attributes.retain(|a| {
        !matches!(a, rtnetlink::packet_route::route::RouteAttribute::Gateway(
            rtnetlink::packet_route::route::RouteAddress::Inet(g)) if g.is_unspecified())
    });
    let mut buf = Vec::new();
    codec::encode(&mut buf, 0, 0, 0, &msg);
    buf[codec::NLMSG_HDRLEN..].to_vec()
}

fn notification(kind: u16, flags: u16, pid: u32, op: &RouteOp, protocol: u8) -> Vec<u8> {
    let (_, _, msg) = codec::op_message(op, 254, protocol);
    let mut buf = Vec::new();
    codec::encode(&mut buf, kind, flags, 1, &msg);
    buf[12..16].copy_from_slice(&pid.to_ne_bytes());
    buf
}

fn link(kind: u16, index: i32, up: bool) -> Vec<u8> {
    let mut body = vec![0u8; 16];
    body[4..8].copy_from_slice(&index.to_ne_bytes());
    body[8..12].copy_from_slice(&u32::from(up).to_ne_bytes());
    let mut buf = ((16 + body.len()) as u32).to_ne_bytes().to_vec();
    buf.extend_from_slice(&kind.to_ne_bytes());
    buf.extend_from_slice(&[0; 10]);
    buf.extend_from_slice(&body);
    buf
}

fn install(state: &mut State, prefix: &str, hops: &[&str]) -> RouteOp {
    state.apply(vec![(
        net(prefix),
        Some(RouteTarget::Via(hops.iter().map(|h| ip(h)).collect())),
    )]);
    let ops = state.take_ops();
    assert_eq!(ops.len(), 1, "{ops:?}");
    state.op_done(&ops[0], Ok(()));
    ops[0].clone()
}

#[test]
fn echoes_of_our_requests_are_ignored_but_external_deletes_repaired() {
    let mut s = state();
    let op = install(&mut s, "10.244.1.0/26", &["10.0.0.2"]);
    s.monitor(
        &notification(RTM_NEWROUTE, NLM_F_CREATE, ECHO_PORT, &op, OURS),
        ECHO_PORT,
    );
    assert!(!s.has_work(), "echo must not cause work");
    s.monitor(&notification(RTM_DELROUTE, 0, 0, &op, OURS), ECHO_PORT);
    assert_eq!(s.take_ops(), vec![op.clone()], "deleted route is put back");
    s.op_done(&op, Ok(()));
    assert_eq!(s.status().installed, 1);
}

#[test]
fn external_change_of_our_route_is_reverted() {
    let mut s = state();
    let op = install(&mut s, "10.244.1.0/26", &["10.0.0.2"]);
    let hijack = foreign_op("10.244.1.0/26", Some("10.0.1.2"), 3);
    s.monitor(
        &notification(RTM_NEWROUTE, NLM_F_REPLACE, 77, &hijack, OURS),
        ECHO_PORT,
    );
    assert_eq!(s.take_ops(), vec![op]);
}

#[test]
fn our_protocol_at_another_metric_is_left_alone() {
    let mut s = state();
    let op = foreign_op("10.244.2.0/26", Some("10.0.0.2"), 2);
    let (kind, flags, mut msg) = codec::op_message(&op, 254, OURS);
    msg.attributes
        .push(rtnetlink::packet_route::route::RouteAttribute::Priority(50));
    let mut buf = Vec::new();
    codec::encode(&mut buf, kind, flags, 1, &msg);
    s.monitor(&buf, ECHO_PORT);
    assert!(!s.has_work());
    assert_eq!(s.status().installed, 0);
}

#[test]
fn foreign_replace_of_our_route_becomes_a_conflict_not_a_fight() {
    let mut s = state();
    install(&mut s, "10.244.3.0/26", &["10.0.0.2"]);
    let stat = foreign_op("10.244.3.0/26", Some("10.0.1.2"), 3);
    s.monitor(
        &notification(RTM_NEWROUTE, NLM_F_REPLACE, 0, &stat, 4),
        ECHO_PORT,
    );
    assert!(s.take_ops().is_empty(), "never overwrite the static route");
    let status = s.status();
    assert_eq!(status.conflicts, vec![net("10.244.3.0/26")]);
    assert_eq!(status.installed, 0);
    // The static route goes away: ours is installed again.
    s.monitor(&notification(RTM_DELROUTE, 0, 0, &stat, 4), ECHO_PORT);
    assert_eq!(s.take_ops().len(), 1);
}

#[test]
fn underlying_route_changes_re_resolve_next_hops() {
    let mut s = state();
    let via_r = |gw: &str, oif| foreign_op("192.168.0.0/16", Some(gw), oif);
    s.monitor(
        &notification(RTM_NEWROUTE, NLM_F_CREATE, 0, &via_r("10.0.1.1", 3), 4),
        ECHO_PORT,
    );
    let op = install(&mut s, "10.244.4.0/26", &["192.168.3.3"]);
    assert_eq!(op, foreign_op("10.244.4.0/26", Some("10.0.1.1"), 3));
    s.monitor(
        &notification(RTM_NEWROUTE, NLM_F_REPLACE, 0, &via_r("10.0.0.1", 2), 4),
        ECHO_PORT,
    );
    assert_eq!(
        s.take_ops(),
        vec![foreign_op("10.244.4.0/26", Some("10.0.0.1"), 2)]
    );
}

#[test]
fn link_down_forgets_routes_through_it() {
    let mut s = state();
    install(&mut s, "10.244.5.0/26", &["10.0.1.2"]);
    s.monitor(&link(RTM_NEWLINK, 3, true), ECHO_PORT);
    assert!(!s.has_work(), "an up link changes nothing");
    s.monitor(&link(RTM_DELLINK, 3, false), ECHO_PORT);
    assert_eq!(s.status().installed, 0);
    // The connected route went with it: the next hop no longer resolves, nothing to install.
    assert!(s.take_ops().is_empty());
    assert_eq!(s.status().unresolved.len(), 1);
}

#[test]
fn failures_are_recorded_and_retried() {
    let mut s = state();
    s.apply(vec![(net("10.244.6.0/26"), Some(RouteTarget::Blackhole))]);
    let ops = s.take_ops();
    s.op_done(&ops[0], Err((libc::EINVAL, Some("bad".into()))));
    let status = s.status();
    assert_eq!(status.errors.len(), 1);
    assert!(status.errors[0].1.contains("bad"), "{:?}", status.errors);
    assert!(!s.has_work(), "failures wait for the retry timer");
    s.retry_failures();
    let ops = s.take_ops();
    s.op_done(&ops[0], Ok(()));
    assert!(s.status().errors.is_empty());
}

#[test]
fn set_routes_keeps_unclaimed_stale_routes_until_the_sweep() {
    let config = DataplaneConfig::default();
    let mut s = State::new(&config);
    let mut snap = Snapshot::new(254, OURS);
    snap.add(&payload(&foreign_op("10.0.0.0/24", None, 2), 2));
    snap.add(&payload(
        &foreign_op("10.244.7.0/26", Some("10.0.0.2"), 2),
        OURS,
    ));
    snap.add(&payload(
        &foreign_op("10.244.8.0/26", Some("10.0.0.2"), 2),
        OURS,
    ));
    s.load(snap, SystemTime::UNIX_EPOCH, true);
    assert_eq!(s.status().stale, 2);
    let same = RouteTarget::Via(vec![ip("10.0.0.2")]);
    s.set_routes(BTreeMap::from([(net("10.244.7.0/26"), same)]));
    assert!(
        s.take_ops().is_empty(),
        "identical adopted route is not rewritten"
    );
    assert_eq!((s.status().stale, s.status().installed), (1, 1));
    s.sweep();
    assert_eq!(
        s.take_ops(),
        vec![RouteOp::Delete {
            prefix: net("10.244.8.0/26")
        }]
    );
}

#[test]
fn overrun_requests_a_resync_and_a_load_clears_it() {
    let mut s = state();
    s.request_resync();
    assert!(s.has_work() && s.resync_needed());
    s.load(Snapshot::new(254, OURS), SystemTime::UNIX_EPOCH, false);
    assert!(!s.resync_needed());
    assert_eq!(s.status().resyncs, 2);
}
