//! The session state machine proper (RFC 4271 §8.2.2 with the choices
//! documented in the parent module; RFC 6608, RFC 9687, RFC 4486).

use super::notify::{
    self, CEASE_COLLISION, CEASE_CONNECTION_REJECTED, FSM_ERROR, FSM_UNEXPECTED_IN_ESTABLISHED,
    FSM_UNEXPECTED_IN_OPENCONFIRM, FSM_UNEXPECTED_IN_OPENSENT, HOLD_TIMER_EXPIRED,
    SEND_HOLD_TIMER_EXPIRED,
};
use super::rng::{self, Rng};
use super::{Action, ConnId, DownReason, Event, Negotiated, SessionConfig, State, Timer, open};
use crate::wire::{Message, Notification, Open};
use std::time::Duration;

/// Hold time while waiting for the peer's OPEN (RFC 4271 §8.2.2: "4 minutes").
pub(crate) const OPEN_HOLD: Duration = Duration::from_secs(240);
/// Lower bound of the Established time after which the backoff is forgotten.
pub(crate) const MIN_STABLE: Duration = Duration::from_secs(60);
/// RFC 9687 default lower bound of the send hold time.
pub(crate) const MIN_SEND_HOLD: Duration = Duration::from_secs(480);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started, or stopped by [`Event::Stop`].
    Stopped,
    /// Idle after a failure, IdleHold running.
    Backoff,
    /// Connect / Active, or at least one connection up.
    Running,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum ConnState {
    OpenSent,
    OpenConfirm,
    Established,
}

#[derive(Debug, Clone)]
struct Conn {
    state: ConnState,
    /// Set when the peer's OPEN on this connection was accepted.
    negotiated: Option<Negotiated>,
}

/// Actions of one `handle` call: protocol actions first, then notices for
/// the speaker (after the state change).
#[derive(Default)]
struct Out {
    actions: Vec<Action>,
    notices: Vec<Action>,
}

impl Out {
    fn push(&mut self, a: Action) {
        self.actions.push(a);
    }
    fn send(&mut self, id: ConnId, m: Message) {
        self.actions.push(Action::Send(id, m));
    }
}

/// A BGP session's finite state machine. See the module docs for the driver contract.
#[derive(Debug, Clone)]
pub struct Fsm {
    cfg: SessionConfig,
    local_open: Open,
    rng: Rng,
    phase: Phase,
    outbound: Option<Conn>,
    inbound: Option<Conn>,
    /// An outbound attempt is pending (Connect emitted, no result yet).
    connecting: bool,
    armed: [bool; Timer::ALL.len()],
    failures: u32,
    negotiated: Option<Negotiated>,
    last_down: Option<DownReason>,
}

impl Fsm {
    /// A stopped session (Idle); send [`Event::Start`] to run it.
    pub fn new(config: SessionConfig) -> Self {
        if let Err(e) = config.validate() {
            tracing::warn!(error = %e, "invalid BGP session configuration, clamping");
        }
        Fsm {
            local_open: open::local_open(&config),
            rng: Rng::new(config.seed),
            cfg: config,
            phase: Phase::Stopped,
            outbound: None,
            inbound: None,
            connecting: false,
            armed: [false; Timer::ALL.len()],
            failures: 0,
            negotiated: None,
            last_down: None,
        }
    }

    /// The current state; with two connections, the most advanced one.
    pub fn state(&self) -> State {
        let conn_state = [&self.outbound, &self.inbound]
            .into_iter()
            .flatten()
            .map(|c| c.state)
            .max();
        match conn_state {
            Some(ConnState::Established) => State::Established,
            Some(ConnState::OpenConfirm) => State::OpenConfirm,
            Some(ConnState::OpenSent) => State::OpenSent,
            None if self.phase == Phase::Running && self.connecting => State::Connect,
            None if self.phase == Phase::Running => State::Active,
            None => State::Idle,
        }
    }

    /// The OPEN we send.
    pub fn local_open(&self) -> Open {
        self.local_open.clone()
    }

    /// The configuration in use.
    pub fn config(&self) -> &SessionConfig {
        &self.cfg
    }

    /// What was negotiated, while Established.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// Why the session last left OpenSent or a later state for Idle.
    pub fn last_down(&self) -> Option<&DownReason> {
        self.last_down.as_ref()
    }

    /// Consecutive failures counted for the IdleHold backoff.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Whether the FSM has a TCP connection in slot `id`.
    pub fn has_conn(&self, id: ConnId) -> bool {
        self.conn(id).is_some()
    }

    /// Whether the session has been started and not stopped since.
    pub fn is_started(&self) -> bool {
        self.phase != Phase::Stopped
    }

    /// Applies a new configuration if that needs no session reset and returns
    /// true. Returns false, keeping the old configuration, when a field that
    /// goes into our OPEN changed (AS numbers, router id, hold time,
    /// families, capabilities) or `passive` changed: the driver then sends
    /// `Stop { subcode: 6, .. }` (Other Configuration Change), calls
    /// `update_config` again (always accepted while stopped) and sends
    /// `Start`. Timer settings apply from the next time a timer is armed.
    pub fn update_config(&mut self, c: SessionConfig) -> bool {
        if self.phase != Phase::Stopped && self.cfg.needs_reset(&c) {
            return false;
        }
        self.local_open = open::local_open(&c);
        if let Some(n) = self.negotiated.as_mut() {
            n.keepalive = open::keepalive_interval(&c, n.hold_time);
        }
        self.cfg = c;
        true
    }

    /// Feeds one event; returns the actions to execute, in order.
    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let before = self.state();
        let mut out = Out::default();
        match event {
            Event::Start => self.on_start(&mut out),
            Event::Stop(n) => self.on_stop(&mut out, n),
            Event::TimerExpired(t) => self.on_timer(&mut out, t),
            Event::TcpConnected(ConnId::Outbound) => self.on_outbound_connected(&mut out),
            Event::TcpConnected(ConnId::Inbound) => self.on_inbound_connected(&mut out),
            Event::TcpConnectFailed => self.on_connect_failed(&mut out),
            Event::TcpClosed(id) => {
                if self.has_conn(id) {
                    self.conn_failed(&mut out, id, None, DownReason::ConnectionClosed);
                }
            }
            Event::Received(id, msg) => self.on_message(&mut out, id, msg),
            Event::DecodeError(id, n) => {
                if self.has_conn(id) {
                    let reason = DownReason::NotificationSent(n.clone());
                    self.conn_failed(&mut out, id, Some(n), reason);
                }
            }
            Event::SendProgress => {
                if self.armed[Timer::SendHold.index()] {
                    let d = self.send_hold();
                    self.start(&mut out, Timer::SendHold, d);
                }
            }
        }
        let after = self.state();
        let mut actions = out.actions;
        if before != after {
            tracing::debug!(old_state = %before, new_state = %after, "BGP FSM transition");
            actions.push(Action::StateChange {
                from: before,
                to: after,
            });
        }
        actions.extend(out.notices);
        actions
    }

    // ===== connections =====

    fn conn(&self, id: ConnId) -> Option<&Conn> {
        match id {
            ConnId::Outbound => self.outbound.as_ref(),
            ConnId::Inbound => self.inbound.as_ref(),
        }
    }

    fn slot(&mut self, id: ConnId) -> &mut Option<Conn> {
        match id {
            ConnId::Outbound => &mut self.outbound,
            ConnId::Inbound => &mut self.inbound,
        }
    }

    fn conn_count(&self) -> usize {
        usize::from(self.outbound.is_some()) + usize::from(self.inbound.is_some())
    }

    /// The connection that received a valid OPEN (OpenConfirm or Established); at most one.
    fn primary(&self) -> Option<ConnId> {
        [ConnId::Outbound, ConnId::Inbound].into_iter().find(|id| {
            self.conn(*id)
                .is_some_and(|c| c.state != ConnState::OpenSent)
        })
    }

    fn open_conn(&mut self, out: &mut Out, id: ConnId) {
        *self.slot(id) = Some(Conn {
            state: ConnState::OpenSent,
            negotiated: None,
        });
        out.send(id, Message::Open(self.local_open.clone()));
        self.stop(out, Timer::ConnectRetry);
        if self.primary().is_none() {
            self.start(out, Timer::Hold, OPEN_HOLD);
        }
    }

    /// Sends `notification` (if any) on `id`, closes it and forgets it,
    /// fixing up the timers the connection owned.
    fn drop_conn(&mut self, out: &mut Out, id: ConnId, notification: Option<Notification>) {
        let Some(conn) = self.slot(id).take() else {
            return;
        };
        if let Some(n) = notification {
            out.send(id, Message::Notification(n));
        }
        out.push(Action::Close(id));
        let was_primary = conn.state != ConnState::OpenSent;
        if self.conn_count() == 0 {
            for t in [
                Timer::Hold,
                Timer::Keepalive,
                Timer::SendHold,
                Timer::StableReset,
            ] {
                self.stop(out, t);
            }
        } else if was_primary {
            for t in [Timer::Keepalive, Timer::SendHold, Timer::StableReset] {
                self.stop(out, t);
            }
            // The remaining connection waits for its OPEN.
            self.start(out, Timer::Hold, OPEN_HOLD);
        }
        if conn.state == ConnState::Established {
            self.negotiated = None;
        }
    }

    /// Connection `id` failed. If the other connection survives the session
    /// carries on with it; otherwise the session goes Idle with backoff.
    fn conn_failed(
        &mut self,
        out: &mut Out,
        id: ConnId,
        send: Option<Notification>,
        reason: DownReason,
    ) {
        self.drop_conn(out, id, send);
        if self.conn_count() > 0 {
            tracing::debug!(conn = %id, %reason, "BGP connection dropped, the other connection remains");
            return;
        }
        self.session_failed(out, reason);
    }

    fn session_failed(&mut self, out: &mut Out, reason: DownReason) {
        if self.connecting {
            self.connecting = false;
            out.push(Action::Close(ConnId::Outbound));
        }
        for t in Timer::ALL {
            self.stop(out, t);
        }
        self.negotiated = None;
        self.failures = self.failures.saturating_add(1);
        self.phase = Phase::Backoff;
        let delay = rng::backoff(self.cfg.idle_hold, self.cfg.max_idle_hold, self.failures);
        let delay = self.rng.jitter(delay);
        self.start(out, Timer::IdleHold, delay);
        self.last_down = Some(reason.clone());
        out.notices.push(Action::Down(reason));
    }

    // ===== timers =====

    fn start(&mut self, out: &mut Out, t: Timer, d: Duration) {
        self.armed[t.index()] = true;
        out.push(Action::StartTimer(t, d));
    }

    fn stop(&mut self, out: &mut Out, t: Timer) {
        if std::mem::take(&mut self.armed[t.index()]) {
            out.push(Action::StopTimer(t));
        }
    }

    fn hold_duration(hold: u16) -> Duration {
        Duration::from_secs(u64::from(hold))
    }

    fn send_hold(&self) -> Duration {
        let hold = self.negotiated.as_ref().map_or(0, |n| n.hold_time);
        self.cfg
            .send_hold_time
            .unwrap_or_else(|| MIN_SEND_HOLD.max(2 * Self::hold_duration(hold)))
    }

    fn stable_period(&self) -> Duration {
        self.cfg.max_idle_hold.max(MIN_STABLE)
    }

    fn arm_keepalive(&mut self, out: &mut Out, keepalive: u16) {
        if keepalive > 0 {
            let d = self.rng.jitter(Self::hold_duration(keepalive));
            self.start(out, Timer::Keepalive, d);
        }
    }

    fn on_timer(&mut self, out: &mut Out, t: Timer) {
        if !std::mem::take(&mut self.armed[t.index()]) {
            tracing::debug!(timer = %t, "ignoring expiry of a timer that is not armed");
            return;
        }
        match t {
            Timer::ConnectRetry => {
                if self.phase == Phase::Running && self.conn_count() == 0 && !self.cfg.passive {
                    if self.connecting {
                        out.push(Action::Close(ConnId::Outbound));
                    }
                    self.connect(out);
                }
            }
            Timer::IdleHold => {
                if self.phase == Phase::Backoff {
                    self.phase = Phase::Running;
                    self.begin(out);
                }
            }
            Timer::Hold => self.on_hold_expired(out),
            Timer::Keepalive => {
                if let Some(id) = self.primary() {
                    out.send(id, Message::Keepalive);
                    let k = self
                        .conn(id)
                        .and_then(|c| c.negotiated.as_ref())
                        .map_or(0, |n| open::keepalive_interval(&self.cfg, n.hold_time));
                    self.arm_keepalive(out, k);
                }
            }
            Timer::SendHold => {
                if let Some(id) = self.primary() {
                    let n = notify::notification(SEND_HOLD_TIMER_EXPIRED, 0, Vec::new());
                    self.conn_failed(out, id, Some(n), DownReason::SendHoldTimerExpired);
                }
            }
            Timer::StableReset => {
                if self.state() == State::Established {
                    self.failures = 0;
                }
            }
        }
    }

    fn on_hold_expired(&mut self, out: &mut Out) {
        let n = notify::notification(HOLD_TIMER_EXPIRED, 0, Vec::new());
        if let Some(id) = self.primary() {
            self.conn_failed(out, id, Some(n), DownReason::HoldTimerExpired);
            return;
        }
        // Every connection is still waiting for the peer's OPEN.
        for id in [ConnId::Outbound, ConnId::Inbound] {
            if self.has_conn(id) {
                self.conn_failed(out, id, Some(n.clone()), DownReason::HoldTimerExpired);
            }
        }
    }

    // ===== start / stop / TCP =====

    /// Enter Connect (emit Connect) or, when passive, stay Active.
    fn begin(&mut self, out: &mut Out) {
        if !self.cfg.passive {
            self.connect(out);
        }
    }

    fn connect(&mut self, out: &mut Out) {
        self.connecting = true;
        out.push(Action::Connect);
        let d = self.rng.jitter(self.cfg.connect_retry);
        self.start(out, Timer::ConnectRetry, d);
    }

    fn on_start(&mut self, out: &mut Out) {
        if self.phase != Phase::Stopped {
            return;
        }
        self.phase = Phase::Running;
        self.failures = 0;
        self.begin(out);
    }

    fn on_stop(&mut self, out: &mut Out, n: Notification) {
        if self.phase == Phase::Stopped {
            return;
        }
        let had_conn = self.conn_count() > 0;
        for id in [ConnId::Outbound, ConnId::Inbound] {
            self.drop_conn(out, id, Some(n.clone()));
        }
        if std::mem::take(&mut self.connecting) {
            out.push(Action::Close(ConnId::Outbound));
        }
        for t in Timer::ALL {
            self.stop(out, t);
        }
        self.phase = Phase::Stopped;
        self.failures = 0;
        self.negotiated = None;
        if had_conn {
            self.last_down = Some(DownReason::Stopped);
            out.notices.push(Action::Down(DownReason::Stopped));
        }
    }

    fn on_outbound_connected(&mut self, out: &mut Out) {
        if self.outbound.is_some() {
            tracing::warn!("TcpConnected(Outbound) while an outbound connection exists; ignored");
            return;
        }
        if !std::mem::take(&mut self.connecting) {
            // A late success for an attempt we abandoned.
            out.push(Action::Close(ConnId::Outbound));
            return;
        }
        self.open_conn(out, ConnId::Outbound);
    }

    fn on_inbound_connected(&mut self, out: &mut Out) {
        if self.inbound.is_some() {
            tracing::warn!("TcpConnected(Inbound) while an inbound connection exists; ignored");
            return;
        }
        let reject = match self.phase {
            Phase::Stopped => Some(CEASE_CONNECTION_REJECTED),
            _ if self.state() == State::Established => Some(CEASE_COLLISION),
            _ => None,
        };
        if let Some(subcode) = reject {
            out.send(
                ConnId::Inbound,
                Message::Notification(notify::cease(subcode, None)),
            );
            out.push(Action::Close(ConnId::Inbound));
            return;
        }
        if self.phase == Phase::Backoff {
            self.stop(out, Timer::IdleHold);
            self.phase = Phase::Running;
        }
        self.open_conn(out, ConnId::Inbound);
    }

    fn on_connect_failed(&mut self, out: &mut Out) {
        if !std::mem::take(&mut self.connecting) {
            return;
        }
        if self.phase == Phase::Running && self.conn_count() == 0 {
            // Connect -> Active; retry when ConnectRetry fires.
            let d = self.rng.jitter(self.cfg.connect_retry);
            self.start(out, Timer::ConnectRetry, d);
        }
    }

    // ===== messages =====

    fn on_message(&mut self, out: &mut Out, id: ConnId, msg: Message) {
        let Some(conn) = self.conn(id) else {
            tracing::debug!(conn = %id, "ignoring message for a closed connection");
            return;
        };
        match (conn.state, msg) {
            (_, Message::Notification(n)) => {
                if let Some(text) = notify::shutdown_communication(&n) {
                    tracing::debug!(conn = %id, communication = ?text, "peer sent a shutdown communication");
                }
                self.conn_failed(out, id, None, DownReason::NotificationReceived(n));
            }
            (ConnState::OpenSent, Message::Open(o)) => self.on_open(out, id, o),
            (ConnState::OpenSent, _) => self.fsm_error(out, id, FSM_UNEXPECTED_IN_OPENSENT),
            (ConnState::OpenConfirm, Message::Keepalive) => self.establish(out, id),
            (ConnState::OpenConfirm, _) => self.fsm_error(out, id, FSM_UNEXPECTED_IN_OPENCONFIRM),
            (ConnState::Established, Message::Open(_)) => {
                self.fsm_error(out, id, FSM_UNEXPECTED_IN_ESTABLISHED)
            }
            (ConnState::Established, msg) => {
                let hold = conn.negotiated.as_ref().map_or(0, |n| n.hold_time);
                if hold > 0 {
                    self.start(out, Timer::Hold, Self::hold_duration(hold));
                }
                if self.deliverable(&msg) {
                    out.notices.push(Action::Deliver(msg));
                }
            }
        }
    }

    /// Whether an Established-state message goes to the RIB.
    fn deliverable(&self, msg: &Message) -> bool {
        match msg {
            Message::Keepalive => false,
            Message::RouteRefresh(rr) => {
                let ok = self
                    .negotiated
                    .as_ref()
                    .is_some_and(|n| n.families.contains(&rr.family));
                if !ok {
                    tracing::debug!(
                        family = rr.family.name(),
                        "ignoring ROUTE-REFRESH for a family not negotiated"
                    );
                }
                ok
            }
            _ => true,
        }
    }

    fn fsm_error(&mut self, out: &mut Out, id: ConnId, subcode: u8) {
        let n = notify::notification(FSM_ERROR, subcode, Vec::new());
        self.conn_failed(out, id, Some(n.clone()), DownReason::NotificationSent(n));
    }

    fn on_open(&mut self, out: &mut Out, id: ConnId, remote: Open) {
        if let Err(n) = open::check_open(&self.cfg, &self.local_open, &remote) {
            self.conn_failed(out, id, Some(n.clone()), DownReason::NotificationSent(n));
            return;
        }
        // Collision detection (RFC 4271 §6.8, RFC 6286 §2.3).
        let other = id.other();
        if let Some(oc) = self.conn(other) {
            let keep = if oc.state == ConnState::Established {
                other
            } else if self.locally_dominant(&remote) {
                ConnId::Outbound
            } else {
                ConnId::Inbound
            };
            let loser = if keep == id { other } else { id };
            tracing::debug!(kept = %keep, closed = %loser, "BGP connection collision");
            let n = notify::cease(CEASE_COLLISION, None);
            self.conn_failed(out, loser, Some(n.clone()), DownReason::NotificationSent(n));
            if loser == id {
                return;
            }
        }
        if id == ConnId::Inbound && std::mem::take(&mut self.connecting) {
            out.push(Action::Close(ConnId::Outbound));
        }
        let neg = open::negotiate(&self.cfg, &self.local_open, &remote, id);
        let (hold, keepalive) = (neg.hold_time, neg.keepalive);
        if let Some(c) = self.slot(id).as_mut() {
            c.state = ConnState::OpenConfirm;
            c.negotiated = Some(neg);
        }
        out.send(id, Message::Keepalive);
        let d = if hold > 0 {
            Self::hold_duration(hold)
        } else {
            OPEN_HOLD
        };
        self.start(out, Timer::Hold, d);
        self.arm_keepalive(out, keepalive);
    }

    /// Whether we are the dominant speaker: higher BGP identifier, or equal
    /// identifiers and higher AS (RFC 6286 §2.3).
    fn locally_dominant(&self, remote: &Open) -> bool {
        let (ours, theirs) = (u32::from(self.cfg.router_id), u32::from(remote.router_id));
        ours > theirs || (ours == theirs && self.cfg.local_as > open::remote_as(remote))
    }

    fn establish(&mut self, out: &mut Out, id: ConnId) {
        let Some(neg) = self.slot(id).as_mut().and_then(|c| {
            c.state = ConnState::Established;
            c.negotiated.clone()
        }) else {
            return;
        };
        // A connection still in OpenSent collides with an Established one.
        // (A pending outbound attempt was already abandoned when this
        // connection, necessarily inbound then, received the peer's OPEN.)
        self.drop_conn(out, id.other(), Some(notify::cease(CEASE_COLLISION, None)));
        self.negotiated = Some(neg.clone());
        if neg.hold_time > 0 {
            self.start(out, Timer::Hold, Self::hold_duration(neg.hold_time));
            let d = self.send_hold();
            self.start(out, Timer::SendHold, d);
        } else {
            self.stop(out, Timer::Hold);
        }
        let d = self.stable_period();
        self.start(out, Timer::StableReset, d);
        out.notices.push(Action::Established(neg));
    }
}
