//! Every state × relevant event, table driven: resulting state, the
//! NOTIFICATION sent (connection, code, subcode) and whether Down is emitted.

use super::*;
use crate::wire::{RouteRefresh, Update};

fn in_state(s: State) -> Fsm {
    match s {
        State::Idle => Fsm::new(cfg()),
        State::Connect => started(cfg()),
        State::Active => {
            let mut f = started(cfg());
            f.handle(Event::TcpConnectFailed);
            f
        }
        State::OpenSent => open_sent(cfg()),
        State::OpenConfirm => open_confirm(cfg()),
        State::Established => established(cfg()),
    }
}

const OUT: ConnId = ConnId::Outbound;
const IN: ConnId = ConnId::Inbound;

fn recv(m: Message) -> Event {
    Event::Received(OUT, m)
}

fn timer(t: Timer) -> Event {
    Event::TimerExpired(t)
}

fn stop() -> Event {
    Event::Stop(cease(2, None))
}

fn update() -> Message {
    Message::Update(Update::default())
}

fn rr() -> Message {
    Message::RouteRefresh(RouteRefresh {
        family: Family::Ipv4Unicast,
        subtype: 0,
    })
}

struct Row {
    from: State,
    event: Event,
    to: State,
    notification: Option<(ConnId, u8, u8)>,
    down: bool,
}

fn row(
    from: State,
    event: Event,
    to: State,
    notification: Option<(ConnId, u8, u8)>,
    down: bool,
) -> Row {
    Row {
        from,
        event,
        to,
        notification,
        down,
    }
}

fn rows() -> Vec<Row> {
    use State::*;
    vec![
        // Idle (stopped): only Start matters; inbound TCP is rejected.
        row(Idle, Event::Start, Connect, None, false),
        row(Idle, Event::TcpConnected(IN), Idle, Some((IN, 6, 5)), false),
        row(Idle, recv(Message::Keepalive), Idle, None, false),
        row(Idle, timer(Timer::Hold), Idle, None, false),
        row(Idle, timer(Timer::ConnectRetry), Idle, None, false),
        row(Idle, Event::TcpConnectFailed, Idle, None, false),
        row(Idle, Event::TcpClosed(OUT), Idle, None, false),
        row(Idle, stop(), Idle, None, false),
        row(Idle, Event::SendProgress, Idle, None, false),
        // Connect
        row(Connect, Event::Start, Connect, None, false),
        row(Connect, Event::TcpConnectFailed, Active, None, false),
        row(Connect, Event::TcpConnected(OUT), OpenSent, None, false),
        row(Connect, Event::TcpConnected(IN), OpenSent, None, false),
        row(Connect, timer(Timer::ConnectRetry), Connect, None, false),
        row(Connect, stop(), Idle, None, false),
        row(Connect, recv(Message::Keepalive), Connect, None, false),
        // Active
        row(Active, timer(Timer::ConnectRetry), Connect, None, false),
        row(Active, Event::TcpConnected(IN), OpenSent, None, false),
        row(Active, Event::TcpConnected(OUT), Active, None, false),
        row(Active, stop(), Idle, None, false),
        row(Active, timer(Timer::Hold), Active, None, false),
        // OpenSent
        row(
            OpenSent,
            recv(Message::Open(peer_open())),
            OpenConfirm,
            None,
            false,
        ),
        row(
            OpenSent,
            recv(Message::Keepalive),
            Idle,
            Some((OUT, 5, 1)),
            true,
        ),
        row(OpenSent, recv(update()), Idle, Some((OUT, 5, 1)), true),
        row(OpenSent, recv(rr()), Idle, Some((OUT, 5, 1)), true),
        row(
            OpenSent,
            recv(Message::EndOfRib(Family::Ipv4Unicast)),
            Idle,
            Some((OUT, 5, 1)),
            true,
        ),
        row(
            OpenSent,
            recv(Message::Notification(notif(6, 2))),
            Idle,
            None,
            true,
        ),
        row(OpenSent, timer(Timer::Hold), Idle, Some((OUT, 4, 0)), true),
        row(OpenSent, Event::TcpClosed(OUT), Idle, None, true),
        row(
            OpenSent,
            Event::DecodeError(OUT, notif(2, 4)),
            Idle,
            Some((OUT, 2, 4)),
            true,
        ),
        row(OpenSent, stop(), Idle, Some((OUT, 6, 2)), true),
        row(OpenSent, timer(Timer::Keepalive), OpenSent, None, false),
        row(OpenSent, Event::TcpConnected(IN), OpenSent, None, false),
        row(OpenSent, Event::TcpClosed(IN), OpenSent, None, false),
        // OpenConfirm
        row(
            OpenConfirm,
            recv(Message::Keepalive),
            Established,
            None,
            false,
        ),
        row(
            OpenConfirm,
            recv(Message::Open(peer_open())),
            Idle,
            Some((OUT, 5, 2)),
            true,
        ),
        row(OpenConfirm, recv(update()), Idle, Some((OUT, 5, 2)), true),
        row(OpenConfirm, recv(rr()), Idle, Some((OUT, 5, 2)), true),
        row(
            OpenConfirm,
            recv(Message::EndOfRib(Family::Ipv6Unicast)),
            Idle,
            Some((OUT, 5, 2)),
            true,
        ),
        row(
            OpenConfirm,
            recv(Message::Notification(notif(6, 4))),
            Idle,
            None,
            true,
        ),
        row(
            OpenConfirm,
            timer(Timer::Hold),
            Idle,
            Some((OUT, 4, 0)),
            true,
        ),
        row(
            OpenConfirm,
            timer(Timer::Keepalive),
            OpenConfirm,
            None,
            false,
        ),
        row(OpenConfirm, Event::TcpClosed(OUT), Idle, None, true),
        row(
            OpenConfirm,
            Event::DecodeError(OUT, notif(1, 2)),
            Idle,
            Some((OUT, 1, 2)),
            true,
        ),
        row(OpenConfirm, stop(), Idle, Some((OUT, 6, 2)), true),
        row(
            OpenConfirm,
            Event::TcpConnected(IN),
            OpenConfirm,
            None,
            false,
        ),
        // Established
        row(
            Established,
            recv(Message::Keepalive),
            Established,
            None,
            false,
        ),
        row(Established, recv(update()), Established, None, false),
        row(Established, recv(rr()), Established, None, false),
        row(
            Established,
            recv(Message::EndOfRib(Family::Ipv4Unicast)),
            Established,
            None,
            false,
        ),
        row(
            Established,
            recv(Message::Open(peer_open())),
            Idle,
            Some((OUT, 5, 3)),
            true,
        ),
        row(
            Established,
            recv(Message::Notification(notif(6, 3))),
            Idle,
            None,
            true,
        ),
        row(
            Established,
            timer(Timer::Hold),
            Idle,
            Some((OUT, 4, 0)),
            true,
        ),
        row(
            Established,
            timer(Timer::SendHold),
            Idle,
            Some((OUT, 8, 0)),
            true,
        ),
        row(
            Established,
            timer(Timer::Keepalive),
            Established,
            None,
            false,
        ),
        row(
            Established,
            timer(Timer::StableReset),
            Established,
            None,
            false,
        ),
        row(Established, Event::TcpClosed(OUT), Idle, None, true),
        row(
            Established,
            Event::DecodeError(OUT, notif(3, 1)),
            Idle,
            Some((OUT, 3, 1)),
            true,
        ),
        row(Established, stop(), Idle, Some((OUT, 6, 2)), true),
        row(
            Established,
            Event::TcpConnected(IN),
            Established,
            Some((IN, 6, 7)),
            false,
        ),
        row(Established, Event::SendProgress, Established, None, false),
        row(Established, Event::Start, Established, None, false),
        row(
            Established,
            Event::TcpConnectFailed,
            Established,
            None,
            false,
        ),
    ]
}

#[test]
fn every_state_handles_every_relevant_event() {
    for (i, r) in rows().into_iter().enumerate() {
        let mut f = in_state(r.from);
        let label = format!("row {i}: {} + {:?}", r.from, r.event);
        let actions = f.handle(r.event.clone());
        assert_eq!(f.state(), r.to, "{label}: state");
        let expected_change = (r.from != r.to).then_some((r.from, r.to));
        assert_eq!(
            state_change(&actions),
            expected_change,
            "{label}: StateChange"
        );
        let notification = [OUT, IN]
            .into_iter()
            .find_map(|id| code_sent(&actions, id).map(|(c, s)| (id, c, s)));
        assert_eq!(notification, r.notification, "{label}: NOTIFICATION");
        assert_eq!(
            down(&actions).is_some(),
            r.down,
            "{label}: Down in {actions:?}"
        );
        if let Some((id, _, _)) = r.notification {
            assert!(closed(&actions, id), "{label}: NOTIFICATION without Close");
        }
        if r.to == State::Idle && r.down {
            assert!(
                timer_started(&actions, Timer::IdleHold).is_some() || r.event == stop(),
                "{label}: IdleHold"
            );
        }
    }
}

#[test]
fn down_follows_its_state_change() {
    let mut f = established(cfg());
    let actions = f.handle(Event::TcpClosed(OUT));
    let change = actions
        .iter()
        .position(|a| matches!(a, Action::StateChange { .. }));
    let down_at = actions.iter().position(|a| matches!(a, Action::Down(_)));
    assert_eq!(down_at, change.map(|c| c + 1), "{actions:?}");
    assert_eq!(
        state_change(&actions),
        Some((State::Established, State::Idle))
    );
}

#[test]
fn ignored_events_produce_no_actions() {
    let cases: Vec<(State, Event)> = vec![
        (State::Idle, recv(Message::Keepalive)),
        (State::Idle, timer(Timer::Hold)),
        (State::Idle, Event::SendProgress),
        (State::Idle, stop()),
        (State::Connect, recv(update())),
        (State::Connect, Event::TcpClosed(IN)),
        (State::Active, Event::TcpConnectFailed),
        (State::OpenSent, timer(Timer::SendHold)),
        (State::OpenSent, Event::SendProgress),
        (State::Established, Event::Start),
        (State::Established, Event::TcpConnectFailed),
    ];
    for (s, e) in cases {
        let mut f = in_state(s);
        let actions = f.handle(e.clone());
        assert!(actions.is_empty(), "{s} + {e:?} gave {actions:?}");
        assert_eq!(f.state(), s);
    }
}
