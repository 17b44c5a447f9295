//! Random event sequences (including ones that break the driver contract):
//! the FSM never panics and its output stays consistent with its state.

use super::*;
use crate::wire::{RouteRefresh, Update};
use proptest::prelude::*;
use std::collections::HashSet;

fn conn() -> impl Strategy<Value = ConnId> {
    prop_oneof![Just(ConnId::Outbound), Just(ConnId::Inbound)]
}

fn timer() -> impl Strategy<Value = Timer> {
    proptest::sample::select(Timer::ALL.to_vec())
}

fn message() -> impl Strategy<Value = Message> {
    let mut bad_as = peer_open();
    bad_as.asn = 1;
    bad_as.caps.four_octet_as = Some(1);
    let mut hold_zero = peer_open();
    hold_zero.hold_time = 0;
    let mut same_id = peer_open();
    same_id.router_id = LOCAL_ID;
    proptest::sample::select(vec![
        Message::Open(peer_open()),
        Message::Open(bad_as),
        Message::Open(hold_zero),
        Message::Open(same_id),
        Message::Keepalive,
        Message::Keepalive,
        Message::Keepalive,
        Message::Update(Update::default()),
        Message::Notification(notif(6, 2)),
        Message::RouteRefresh(RouteRefresh {
            family: Family::Ipv6Unicast,
            subtype: 0,
        }),
        Message::EndOfRib(Family::Ipv4Unicast),
    ])
}

fn event() -> impl Strategy<Value = Event> {
    prop_oneof![
        1 => Just(Event::Start),
        1 => Just(Event::Stop(cease(2, Some("bye")))),
        4 => timer().prop_map(Event::TimerExpired),
        4 => conn().prop_map(Event::TcpConnected),
        2 => Just(Event::TcpConnectFailed),
        2 => conn().prop_map(Event::TcpClosed),
        8 => (conn(), message()).prop_map(|(c, m)| Event::Received(c, m)),
        1 => conn().prop_map(|c| Event::DecodeError(c, notif(1, 2))),
        2 => Just(Event::SendProgress),
    ]
}

fn config() -> impl Strategy<Value = SessionConfig> {
    (
        any::<bool>(),
        proptest::sample::select(vec![0u16, 3, 90]),
        any::<u64>(),
    )
        .prop_map(|(passive, hold_time, seed)| SessionConfig {
            passive,
            hold_time,
            seed,
            ..cfg()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_event_sequences_keep_invariants(c in config(), events in prop::collection::vec(event(), 1..80)) {
        let passive = c.passive;
        let mut f = Fsm::new(c);
        let mut armed: HashSet<Timer> = HashSet::new();
        // Driver model: an outbound attempt is pending.
        let mut attempt = false;
        for e in events {
            match &e {
                Event::TimerExpired(t) => {
                    armed.remove(t);
                }
                Event::TcpConnected(ConnId::Outbound) | Event::TcpConnectFailed => attempt = false,
                _ => {}
            }
            let before = f.state();
            let actions = f.handle(e.clone());
            let after = f.state();
            let change = state_change(&actions);
            prop_assert_eq!(change, (before != after).then_some((before, after)), "{:?}", e);
            let went_down = before >= State::OpenSent && after == State::Idle;
            prop_assert_eq!(down(&actions).is_some(), went_down, "{:?} {:?}", e, actions);
            let est = established_action(&actions);
            prop_assert_eq!(est.is_some(), before != State::Established && after == State::Established);
            if let Some(n) = est {
                prop_assert!(f.has_conn(n.conn));
                prop_assert_eq!(f.negotiated(), Some(&n));
            }
            if after == State::Idle {
                prop_assert!(!f.has_conn(ConnId::Outbound) && !f.has_conn(ConnId::Inbound));
            }
            if passive {
                prop_assert_eq!(connects(&actions), 0);
            }
            for a in &actions {
                match a {
                    Action::StartTimer(t, _) => {
                        armed.insert(*t);
                    }
                    Action::StopTimer(t) => prop_assert!(armed.remove(t), "stopped unarmed {:?}", t),
                    Action::Deliver(_) => prop_assert_eq!(after, State::Established),
                    Action::Connect => {
                        prop_assert!(!attempt, "Connect while an attempt is pending: {:?}", actions);
                        attempt = true;
                    }
                    Action::Close(ConnId::Outbound) => attempt = false,
                    _ => {}
                }
            }
            // Idle after a failure always has a way out.
            if after == State::Idle && f.is_started() {
                prop_assert!(armed.contains(&Timer::IdleHold));
            }
            // Waiting for a connection in active mode always has a retry pending.
            if matches!(after, State::Connect | State::Active) && !passive {
                prop_assert!(armed.contains(&Timer::ConnectRetry), "{:?} {:?}", e, actions);
            }
        }
    }
}
