//! NOTIFICATION contents, RFC 9003 shutdown communication, display text.

use super::super::notify::{cease, encode_shutdown_communication};
use super::*;

const OUT: ConnId = ConnId::Outbound;

#[test]
fn shutdown_communication_encoded() {
    let mut f = established(cfg());
    let a = f.handle(Event::Stop(cease(2, Some("maintenance ✓"))));
    let n = notification_sent(&a, OUT).unwrap();
    assert_eq!((n.code, n.subcode), (6, 2));
    let text = "maintenance ✓".as_bytes();
    assert_eq!(n.data[0] as usize, text.len());
    assert_eq!(&n.data[1..], text);
    assert_eq!(shutdown_communication(&n).as_deref(), Some("maintenance ✓"));
}

#[test]
fn admin_reset_carries_communication_too() {
    let mut f = open_sent(cfg());
    let a = f.handle(Event::Stop(cease(4, Some("reset"))));
    assert_eq!(
        notification_sent(&a, OUT).unwrap().data,
        b"\x05reset".to_vec()
    );
}

#[test]
fn long_communication_is_truncated_at_char_boundary() {
    // 200 two-octet characters = 400 octets; 127 fit in 255 octets (254 used).
    let text = "é".repeat(200);
    let data = encode_shutdown_communication(&text);
    assert_eq!(data[0], 254);
    assert_eq!(data.len(), 255);
    assert!(std::str::from_utf8(&data[1..]).is_ok());
    let ascii = "x".repeat(300);
    let data = encode_shutdown_communication(&ascii);
    assert_eq!((data[0], data.len()), (255, 256));
    assert_eq!(encode_shutdown_communication(""), vec![0]);
}

#[test]
fn communication_only_for_shutdown_and_reset() {
    assert!(cease(3, Some("x")).data.is_empty());
    assert!(cease(7, Some("x")).data.is_empty());
    assert!(cease(2, None).data.is_empty());
    assert_eq!(cease(2, Some("x")).data, vec![1, b'x']);
}

#[test]
fn malformed_shutdown_communication_is_ignored() {
    let cases: Vec<(u8, Vec<u8>)> = vec![
        (2, vec![]),              // no length octet
        (2, vec![0]),             // empty
        (2, vec![5, b'a', b'b']), // length beyond data
        (2, vec![2, 0xff, 0xfe]), // not UTF-8
        (3, vec![1, b'a']),       // not a shutdown subcode
    ];
    for (subcode, data) in cases {
        let n = Notification {
            code: 6,
            subcode,
            data: data.clone(),
        };
        assert_eq!(shutdown_communication(&n), None, "{data:?}");
    }
    // Trailing octets after the communication are ignored (RFC 9003 §2).
    let n = Notification {
        code: 6,
        subcode: 4,
        data: vec![2, b'o', b'k', 9, 9],
    };
    assert_eq!(shutdown_communication(&n).as_deref(), Some("ok"));
    let not_cease = Notification {
        code: 2,
        subcode: 2,
        data: vec![1, b'a'],
    };
    assert_eq!(shutdown_communication(&not_cease), None);
}

#[test]
fn received_notification_is_reported_with_text() {
    let mut f = established(cfg());
    let n = Notification {
        code: 6,
        subcode: 2,
        data: b"\x0bgoing\ndown!".to_vec(),
    };
    let a = f.handle(Event::Received(OUT, Message::Notification(n.clone())));
    assert!(
        notification_sent(&a, OUT).is_none(),
        "no NOTIFICATION in reply"
    );
    assert!(closed(&a, OUT));
    let reason = down(&a).unwrap();
    assert_eq!(reason, DownReason::NotificationReceived(n));
    assert_eq!(
        reason.to_string(),
        r#"received NOTIFICATION Cease/Administrative Shutdown: "going\ndown!""#
    );
    assert_eq!(f.last_down(), Some(&reason));
}

#[test]
fn down_reason_display() {
    let cases = [
        (
            DownReason::NotificationReceived(notif(2, 2)),
            "received NOTIFICATION OPEN Message Error/Bad Peer AS",
        ),
        (
            DownReason::NotificationSent(notif(5, 3)),
            "sent NOTIFICATION Finite State Machine Error/Receive Unexpected Message in Established State",
        ),
        (
            DownReason::NotificationSent(notif(4, 0)),
            "sent NOTIFICATION Hold Timer Expired",
        ),
        (
            DownReason::NotificationReceived(notif(8, 0)),
            "received NOTIFICATION Send Hold Timer Expired",
        ),
        (
            DownReason::NotificationReceived(notif(6, 42)),
            "received NOTIFICATION Cease/subcode 42",
        ),
        (
            DownReason::NotificationReceived(notif(99, 1)),
            "received NOTIFICATION Unknown Error/subcode 1",
        ),
        (DownReason::HoldTimerExpired, "hold timer expired"),
        (
            DownReason::SendHoldTimerExpired,
            "send hold timer expired (peer is not reading)",
        ),
        (DownReason::ConnectionClosed, "connection closed"),
        (DownReason::Stopped, "administratively stopped"),
    ];
    for (reason, text) in cases {
        assert_eq!(reason.to_string(), text);
    }
}

#[test]
fn notification_names_cover_emitted_codes() {
    let emitted = [
        (2, 2),
        (2, 3),
        (2, 6),
        (2, 7),
        (4, 0),
        (5, 1),
        (5, 2),
        (5, 3),
        (6, 2),
        (6, 4),
        (6, 5),
        (6, 7),
        (8, 0),
    ];
    for (code, sub) in emitted {
        let (c, s) = notification_name(code, sub);
        assert_ne!(c, "Unknown Error");
        assert!(sub == 0 || s.is_some(), "{code}/{sub}");
    }
}

#[test]
fn state_and_timer_display() {
    let states = [
        (State::Idle, "Idle"),
        (State::Connect, "Connect"),
        (State::Active, "Active"),
        (State::OpenSent, "OpenSent"),
        (State::OpenConfirm, "OpenConfirm"),
        (State::Established, "Established"),
    ];
    for (s, text) in states {
        assert_eq!(s.to_string(), text);
    }
    assert_eq!(Timer::SendHold.to_string(), "send-hold");
    assert_eq!(ConnId::Inbound.to_string(), "inbound");
    assert_eq!(ConnId::Inbound.other(), ConnId::Outbound);
}

#[test]
fn fsm_errors_use_rfc_6608_subcodes() {
    let mut f = open_sent(cfg());
    let a = f.handle(Event::Received(OUT, Message::Keepalive));
    assert_eq!(down(&a), Some(DownReason::NotificationSent(notif(5, 1))));
    let mut f = open_confirm(cfg());
    let a = f.handle(Event::Received(OUT, Message::Open(peer_open())));
    assert_eq!(down(&a), Some(DownReason::NotificationSent(notif(5, 2))));
    let mut f = established(cfg());
    let a = f.handle(Event::Received(OUT, Message::Open(peer_open())));
    assert_eq!(down(&a), Some(DownReason::NotificationSent(notif(5, 3))));
}

#[test]
fn hard_reset_shows_the_notification_it_wraps() {
    // RFC 8538 §3: data = ErrCode, Subcode, Data of the original NOTIFICATION
    // (FRR sends this for `neighbor shutdown` with graceful restart).
    let text = b"bye";
    let mut data = vec![6, 2, text.len() as u8];
    data.extend_from_slice(text);
    let n = Notification {
        code: 6,
        subcode: 9,
        data,
    };
    let s = super::super::describe_notification(&n);
    assert!(s.starts_with("Cease/Hard Reset"), "{s}");
    assert!(
        s.contains("(Cease/Administrative Shutdown: \"bye\")"),
        "{s}"
    );
}

#[test]
fn stop_sends_the_given_notification_unchanged() {
    // Cease/Maximum Number of Prefixes Reached carries AFI, SAFI and the
    // limit (RFC 4486 §4); the FSM must not rebuild it from the subcode.
    let n = Notification::max_prefixes(Family::Ipv6Unicast, 100);
    let mut f = established(cfg());
    let a = f.handle(Event::Stop(n.clone()));
    assert_eq!(notification_sent(&a, OUT), Some(n));
    assert_eq!(
        notification_sent(&a, OUT).unwrap().data,
        vec![0, 2, 1, 0, 0, 0, 100]
    );
}
