//! One BFD session in Asynchronous mode: the state machine of RFC 5880 §6.2
//! and §6.8.6, timer negotiation and manipulation (§6.8.2, §6.8.3), the Poll
//! Sequence (§6.5), the Detection Time (§6.8.4), transmission (§6.8.7),
//! administrative control (§6.8.16), with the GTSM rules of RFC 5881 §5 and
//! RFC 5883 §5.
//!
//! The session is sans-IO: no sockets, no clock, no global randomness. The
//! driver calls [`Session::receive`], [`Session::on_tx_timer`],
//! [`Session::on_detect_timer`], [`Session::admin_down`],
//! [`Session::admin_up`] and [`Session::reconfigure`] with the current
//! instant, and executes the returned [`Action`]s in order. Timer expiries
//! that arrive early or after the timer was disarmed are answered with the
//! timer's real state (re-arm or disarm), so a race between the driver's
//! timer and a new deadline is harmless.
//!
//! Implementation choices, all within RFC 5880:
//! - Echo is not implemented: Required Min Echo RX is always 0 (§6.8.13).
//! - Demand mode is never requested (D is always 0). A remote that sets D
//!   while both sides are Up is obeyed: periodic transmission stops until a
//!   Poll Sequence or a state change (§6.8.6, §6.8.7), and any change of our
//!   packet's contents starts a Poll Sequence (§6.6).
//! - The C bit is clear: this BFD shares fate with the agent.
//! - Timer changes: a larger Desired Min TX takes effect when the Poll
//!   Sequence ends with a Final, a smaller Required Min RX enters the
//!   Detection Time only then; every other change is immediate (§6.8.3). A
//!   change that must wait for a Final, made while a Poll Sequence is
//!   outstanding or before a packet without Final followed its end, waits
//!   for that (§6.8.3 choice 3), so a Final is never ambiguous; a change
//!   that applies at once restarts the Poll Sequence. Outside Up, or before the remote
//!   discriminator is known, changes apply at once; no Poll Sequence is
//!   started without a remote discriminator (as BIRD) nor in AdminDown.
//! - A packet is sent at once whenever its contents change (state,
//!   timers, Detect Mult; §6.8.7 SHOULD) and the periodic schedule restarts
//!   from it. A Poll is answered by one immediate Final (§6.8.7), in every
//!   state: §6.8.6 discards a packet received in AdminDown before its Final
//!   step, but §6.8.7 demands the Final "without respect to the session
//!   state"; FRR answers, and BIRD polls a peer that went AdminDown.
//! - bfd.LocalDiag is cleared when the session moves to Init or Up (as BIRD
//!   and holo do), so it always explains the current state.
//! - After a Detection Time without a valid packet the remote variables are
//!   reset (bfd.RemoteDiscr to 0 per §6.8.1, bfd.RemoteMinRxInterval to 1
//!   per §6.8.18), in every state; only in Init and Up does the state go to
//!   Down. Packets received in AdminDown count for this (they are valid).
//! - AdminDown keeps sending Control packets at the slow rate indefinitely
//!   (§6.8.16 MAY), so the peer keeps showing the administrative diagnostic.

use crate::action::{Action, RxDrop, RxMeta, StateChange};
use crate::config::{ConfigError, SessionConfig, WireTimers};
use crate::packet::{ControlPacket, Diagnostic, State};
use crate::status::{SessionCounters, SessionStatus};
use crate::timers::{RandomSource, SLOW_TX_US, SplitMix64, detection_time, jittered, micros};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// What we know about the remote system (RFC 5880 §6.8.1 bfd.Remote*).
#[derive(Debug, Clone, Copy)]
struct Remote {
    discriminator: u32,
    state: State,
    diagnostic: Diagnostic,
    min_rx_us: u32,
    /// 0 until a packet arrived.
    desired_min_tx_us: u32,
    /// 0 until a packet arrived.
    detect_mult: u8,
    demand: bool,
    control_plane_independent: bool,
}

impl Remote {
    const INITIAL: Remote = Remote {
        discriminator: 0,
        state: State::Down,
        diagnostic: Diagnostic::NONE,
        min_rx_us: 1,
        desired_min_tx_us: 0,
        detect_mult: 0,
        demand: false,
        control_plane_independent: false,
    };
}

/// The timer values an outstanding Poll Sequence announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Polled {
    tx_us: u32,
    rx_us: u32,
}

/// A BFD session. `R` supplies the transmit jitter.
#[derive(Debug, Clone)]
pub struct Session<R = SplitMix64> {
    config: SessionConfig,
    timers: WireTimers,
    local_discriminator: u32,
    state: State,
    local_diagnostic: Diagnostic,
    remote: Remote,
    /// Desired Min TX / Required Min RX in the packets we send.
    advertised: Polled,
    /// Desired Min TX our transmit interval is computed from.
    tx_effective_us: u32,
    /// Required Min RX our Detection Time is computed from.
    rx_effective_us: u32,
    poll: Option<Polled>,
    /// A timer change waits for the end of the current Poll Sequence.
    poll_queued: bool,
    /// A Poll Sequence ended; no packet without Final received since.
    awaiting_non_final: bool,
    last_tx: Option<Instant>,
    tx_deadline: Option<Instant>,
    /// The transmit interval `tx_deadline` was computed from.
    scheduled_interval_us: u32,
    detect_deadline: Option<Instant>,
    last_rx: Option<Instant>,
    last_source: Option<SocketAddr>,
    last_state_change: Instant,
    last_down_diagnostic: Option<Diagnostic>,
    has_been_up: bool,
    counters: SessionCounters,
    rng: R,
}

impl<R: RandomSource> Session<R> {
    /// Create a session in Down state with local discriminator
    /// `local_discriminator` (nonzero, unique on this system: see
    /// [`crate::SessionTable`]). An active session sends its first packet
    /// at once.
    pub fn new(
        local_discriminator: u32,
        config: SessionConfig,
        now: Instant,
        rng: R,
    ) -> Result<(Self, Vec<Action>), ConfigError> {
        let timers = config.wire_timers()?;
        if local_discriminator == 0 {
            return Err(ConfigError::ZeroDiscriminator);
        }
        let advertised = Polled {
            tx_us: timers.desired_min_tx_us.max(SLOW_TX_US),
            rx_us: timers.required_min_rx_us,
        };
        let mut session = Session {
            config,
            timers,
            local_discriminator,
            state: State::Down,
            local_diagnostic: Diagnostic::NONE,
            remote: Remote::INITIAL,
            advertised,
            tx_effective_us: advertised.tx_us,
            rx_effective_us: advertised.rx_us,
            poll: None,
            poll_queued: false,
            awaiting_non_final: false,
            last_tx: None,
            tx_deadline: None,
            scheduled_interval_us: 0,
            detect_deadline: None,
            last_rx: None,
            last_source: None,
            last_state_change: now,
            last_down_diagnostic: None,
            has_been_up: false,
            counters: SessionCounters::default(),
            rng,
        };
        let mut out = Vec::new();
        session.finish(now, true, false, &mut out);
        Ok((session, out))
    }

    /// Process a decoded Control packet that was demultiplexed to this
    /// session (RFC 5880 §6.8.6 from "If the Your Discriminator field is
    /// nonzero" on). `Err` means the packet was dropped and changed nothing.
    pub fn receive(
        &mut self,
        now: Instant,
        packet: &ControlPacket,
        meta: RxMeta,
    ) -> Result<Vec<Action>, RxDrop> {
        if !self.config.hop.accepts_ttl(meta.ttl) {
            self.counters.dropped_ttl += 1;
            return Err(RxDrop::Ttl {
                ttl: meta.ttl,
                hop: self.config.hop,
            });
        }
        if packet.your_discriminator != 0 && packet.your_discriminator != self.local_discriminator {
            self.counters.dropped_discriminator += 1;
            return Err(RxDrop::DiscriminatorMismatch {
                received: packet.your_discriminator,
                local: self.local_discriminator,
            });
        }
        if packet.auth.is_some() {
            self.counters.dropped_auth += 1;
            return Err(RxDrop::AuthNotConfigured);
        }
        self.counters.packets_received += 1;
        self.last_rx = Some(now);
        self.last_source = Some(meta.source);
        self.remote = Remote {
            discriminator: packet.my_discriminator,
            state: packet.state,
            diagnostic: packet.diagnostic,
            min_rx_us: packet.required_min_rx_us,
            desired_min_tx_us: packet.desired_min_tx_us,
            detect_mult: packet.detect_mult,
            demand: packet.demand,
            control_plane_independent: packet.control_plane_independent,
        };
        if packet.final_ {
            if let Some(polled) = self.poll.take() {
                self.tx_effective_us = polled.tx_us;
                self.rx_effective_us = polled.rx_us;
                self.awaiting_non_final = true;
            }
        } else {
            self.awaiting_non_final = false;
        }
        let mut out = Vec::new();
        if self.state == State::AdminDown {
            // Discarded after the timer updates (§6.8.6): no transition. A
            // Poll is still answered (§6.8.7: "without respect to the session
            // state"), as FRR does, so the peer's Poll Sequence ends.
            if packet.poll {
                self.send(false, true, &mut out);
            }
            self.finish(now, false, packet.poll, &mut out);
            return Ok(out);
        }
        let next = match (self.state, packet.state) {
            (State::Init | State::Up, State::AdminDown) => {
                Some((State::Down, Diagnostic::NEIGHBOR_SIGNALED_SESSION_DOWN))
            }
            (State::Down, State::Down) => Some((State::Init, Diagnostic::NONE)),
            (State::Down, State::Init) | (State::Init, State::Init | State::Up) => {
                Some((State::Up, Diagnostic::NONE))
            }
            (State::Up, State::Down) => {
                Some((State::Down, Diagnostic::NEIGHBOR_SIGNALED_SESSION_DOWN))
            }
            _ => None,
        };
        let mut changed = false;
        if let Some((to, diagnostic)) = next {
            self.set_state(now, to, diagnostic, &mut out);
            changed = true;
        }
        if self.poll_queued && self.poll.is_none() && !self.awaiting_non_final {
            self.poll_queued = false;
            changed |= self.retarget();
        }
        let final_sent = packet.poll;
        if final_sent {
            self.send(false, true, &mut out);
        }
        self.finish(now, changed, final_sent, &mut out);
        Ok(out)
    }

    /// The transmit timer fired.
    pub fn on_tx_timer(&mut self, now: Instant) -> Vec<Action> {
        match self.tx_deadline {
            None => vec![Action::DisarmTxTimer],
            Some(deadline) if now < deadline => vec![Action::ArmTxTimer(deadline)],
            Some(_) => {
                let mut out = Vec::new();
                if self.periodic_allowed() {
                    self.send_periodic(now, &mut out);
                } else {
                    self.tx_deadline = None;
                    out.push(Action::DisarmTxTimer);
                }
                out
            }
        }
    }

    /// The detection timer fired (RFC 5880 §6.8.4).
    pub fn on_detect_timer(&mut self, now: Instant) -> Vec<Action> {
        match self.detect_deadline {
            None => vec![Action::DisarmDetectTimer],
            Some(deadline) if now < deadline => vec![Action::ArmDetectTimer(deadline)],
            Some(_) => {
                self.detect_deadline = None;
                let mut out = Vec::new();
                // Our packets change at least in Your Discriminator: say so
                // at once (§6.8.7 SHOULD), as BIRD does.
                let changed = self.remote.discriminator != 0;
                if matches!(self.state, State::Init | State::Up) {
                    self.set_state(
                        now,
                        State::Down,
                        Diagnostic::CONTROL_DETECTION_TIME_EXPIRED,
                        &mut out,
                    );
                }
                self.forget_remote();
                self.finish(now, changed, false, &mut out);
                out
            }
        }
    }

    /// Administratively disable the session (RFC 5880 §6.8.16) with the
    /// given diagnostic: [`Diagnostic::ADMINISTRATIVELY_DOWN`], or
    /// [`Diagnostic::PATH_DOWN`] when told the path failed. No-op in AdminDown.
    pub fn admin_down(&mut self, now: Instant, diagnostic: Diagnostic) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state != State::AdminDown {
            self.set_state(now, State::AdminDown, diagnostic, &mut out);
            self.finish(now, true, false, &mut out);
        }
        out
    }

    /// Administratively enable the session: AdminDown → Down (§6.8.16).
    /// No-op in any other state.
    pub fn admin_up(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        if self.state == State::AdminDown {
            self.set_state(now, State::Down, self.local_diagnostic, &mut out);
            self.finish(now, true, false, &mut out);
        }
        out
    }

    /// Apply new parameters without resetting the session: timer changes go
    /// through a Poll Sequence (§6.8.3), Detect Mult applies at once
    /// (§6.8.12), the role and the multihop minimum TTL apply at once.
    /// Switching between single hop and multihop is refused.
    pub fn reconfigure(
        &mut self,
        now: Instant,
        config: SessionConfig,
    ) -> Result<Vec<Action>, ConfigError> {
        let timers = config.wire_timers()?;
        if config.hop.is_multihop() != self.config.hop.is_multihop() {
            return Err(ConfigError::HopChange);
        }
        let mut changed = config.detect_mult != self.config.detect_mult;
        self.config = config;
        self.timers = timers;
        changed |= self.retarget();
        let mut out = Vec::new();
        self.finish(now, changed, false, &mut out);
        Ok(out)
    }

    /// bfd.SessionState.
    pub fn state(&self) -> State {
        self.state
    }

    /// bfd.LocalDiscr.
    pub fn local_discriminator(&self) -> u32 {
        self.local_discriminator
    }

    /// The configuration in force.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The session's counters.
    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }

    /// A snapshot for display and metrics.
    pub fn status(&self) -> SessionStatus {
        let remote_known = self.remote.detect_mult != 0;
        SessionStatus {
            state: self.state,
            remote_state: self.remote.state,
            local_discriminator: self.local_discriminator,
            remote_discriminator: self.remote.discriminator,
            local_diagnostic: self.local_diagnostic,
            remote_diagnostic: self.remote.diagnostic,
            last_state_change: self.last_state_change,
            last_down_diagnostic: self.last_down_diagnostic,
            has_been_up: self.has_been_up,
            hop: self.config.hop,
            passive: self.config.passive,
            desired_min_tx: self.config.desired_min_tx,
            required_min_rx: self.config.required_min_rx,
            detect_mult: self.config.detect_mult,
            advertised_min_tx: micros(self.advertised.tx_us),
            remote_desired_min_tx: remote_known.then(|| micros(self.remote.desired_min_tx_us)),
            remote_required_min_rx: micros(self.remote.min_rx_us),
            remote_detect_mult: remote_known.then_some(self.remote.detect_mult),
            tx_interval: self
                .periodic_allowed()
                .then(|| micros(self.tx_interval_us())),
            rx_interval: remote_known
                .then(|| micros(self.rx_effective_us.max(self.remote.desired_min_tx_us))),
            detection_time: self.detection_time(),
            poll_in_progress: self.poll.is_some(),
            remote_control_plane_independent: self.remote.control_plane_independent,
            remote_demand: self.remote.demand,
            last_source: self.last_source,
            last_received: self.last_rx,
            counters: self.counters,
        }
    }

    /// The Detection Time in force (§6.8.4), once the remote is known.
    pub fn detection_time(&self) -> Option<Duration> {
        (self.remote.detect_mult != 0).then(|| {
            detection_time(
                self.remote.detect_mult,
                self.rx_effective_us,
                self.remote.desired_min_tx_us,
            )
        })
    }

    fn set_state(
        &mut self,
        now: Instant,
        to: State,
        diagnostic: Diagnostic,
        out: &mut Vec<Action>,
    ) {
        let change = StateChange {
            from: self.state,
            to,
            diagnostic,
            remote_state: self.remote.state,
            remote_control_plane_independent: self.remote.control_plane_independent,
            at: now,
        };
        self.state = to;
        self.local_diagnostic = diagnostic;
        self.last_state_change = now;
        self.counters.state_changes += 1;
        match to {
            State::Up => {
                self.has_been_up = true;
                self.counters.up_transitions += 1;
            }
            State::Down | State::AdminDown => self.last_down_diagnostic = Some(diagnostic),
            State::Init => {}
        }
        if change.is_failure() {
            self.counters.failures += 1;
        }
        out.push(Action::StateChanged(change));
        self.retarget();
    }

    /// Bring the advertised timers to what the state and configuration ask
    /// for (§6.8.3). Returns whether the advertised values changed.
    fn retarget(&mut self) -> bool {
        let target = Polled {
            tx_us: if self.state == State::Up {
                self.timers.desired_min_tx_us
            } else {
                self.timers.desired_min_tx_us.max(SLOW_TX_US)
            },
            rx_us: self.timers.required_min_rx_us,
        };
        if target == self.advertised {
            self.poll_queued = false;
            return false;
        }
        let can_poll = self.remote.discriminator != 0 && self.state != State::AdminDown;
        if self.state != State::Up || !can_poll {
            self.advertised = target;
            self.tx_effective_us = target.tx_us;
            self.rx_effective_us = target.rx_us;
            self.poll = can_poll.then_some(target);
            self.poll_queued = false;
            self.awaiting_non_final = false;
            return true;
        }
        // Up: a faster TX and a slower RX are safe at once; a slower TX and a
        // faster RX wait for the Final. While an earlier Poll Sequence may
        // still produce a Final, a new one may start only if no value it
        // defers differs from what that earlier sequence announced: then any
        // Final acknowledges what we wait for.
        let defers_tx =
            target.tx_us > self.tx_effective_us && target.tx_us != self.advertised.tx_us;
        let defers_rx =
            target.rx_us < self.rx_effective_us && target.rx_us != self.advertised.rx_us;
        if (self.poll.is_some() || self.awaiting_non_final) && (defers_tx || defers_rx) {
            self.poll_queued = true;
            return false;
        }
        self.tx_effective_us = self.tx_effective_us.min(target.tx_us);
        self.rx_effective_us = self.rx_effective_us.max(target.rx_us);
        self.advertised = target;
        self.poll = Some(target);
        true
    }

    /// After a Detection Time without packets (§6.8.1, §6.8.18).
    fn forget_remote(&mut self) {
        self.remote = Remote {
            diagnostic: self.remote.diagnostic,
            ..Remote::INITIAL
        };
        self.poll = None;
        self.poll_queued = false;
        self.awaiting_non_final = false;
        self.retarget();
        self.tx_effective_us = self.advertised.tx_us;
        self.rx_effective_us = self.advertised.rx_us;
    }

    fn remote_demand_active(&self) -> bool {
        self.remote.demand && self.state == State::Up && self.remote.state == State::Up
    }

    /// §6.8.7: may periodic packets be sent now?
    fn periodic_allowed(&self) -> bool {
        !(self.config.passive && self.remote.discriminator == 0)
            && self.remote.min_rx_us != 0
            && (self.poll.is_some() || !self.remote_demand_active())
    }

    fn tx_interval_us(&self) -> u32 {
        self.tx_effective_us.max(self.remote.min_rx_us)
    }

    fn send(&mut self, poll: bool, final_: bool, out: &mut Vec<Action>) {
        self.counters.packets_sent += 1;
        out.push(Action::Send(ControlPacket {
            diagnostic: self.local_diagnostic,
            state: self.state,
            poll,
            final_,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.config.detect_mult,
            my_discriminator: self.local_discriminator,
            your_discriminator: self.remote.discriminator,
            desired_min_tx_us: self.advertised.tx_us,
            required_min_rx_us: self.advertised.rx_us,
            required_min_echo_rx_us: 0,
            auth: None,
        }));
    }

    fn send_periodic(&mut self, now: Instant, out: &mut Vec<Action>) {
        self.send(self.poll.is_some(), false, out);
        self.last_tx = Some(now);
        let interval = self.tx_interval_us();
        let wait = jittered(interval, self.config.detect_mult, self.rng.next_u32());
        self.arm_tx(now.checked_add(wait), interval, out);
    }

    fn arm_tx(&mut self, at: Option<Instant>, interval_us: u32, out: &mut Vec<Action>) {
        self.scheduled_interval_us = interval_us;
        if at != self.tx_deadline {
            self.tx_deadline = at;
            out.push(at.map_or(Action::DisarmTxTimer, Action::ArmTxTimer));
        }
    }

    /// The common tail of every input: announce changed contents, keep the
    /// transmit schedule in line with the negotiated interval (§6.8.3: a
    /// shorter interval is honoured at once, measured from the last packet)
    /// and the detection timer with the Detection Time.
    fn finish(&mut self, now: Instant, changed: bool, final_sent: bool, out: &mut Vec<Action>) {
        if changed && self.poll.is_none() && self.remote_demand_active() {
            // §6.6: with Demand mode active, changes travel in a Poll Sequence.
            self.poll = Some(self.advertised);
        }
        if !self.periodic_allowed() {
            if self.tx_deadline.is_some() {
                self.arm_tx(None, 0, out);
            }
        } else if changed && !final_sent {
            self.send_periodic(now, out);
        } else {
            let interval = self.tx_interval_us();
            if self.tx_deadline.is_none() || interval != self.scheduled_interval_us {
                let at = match self.last_tx {
                    None => Some(now),
                    Some(last) => {
                        let wait = jittered(interval, self.config.detect_mult, self.rng.next_u32());
                        last.checked_add(wait).map(|at| at.max(now))
                    }
                };
                self.arm_tx(at, interval, out);
            }
        }
        let deadline = self
            .last_rx
            .zip(self.detection_time())
            .and_then(|(last, time)| last.checked_add(time));
        if deadline != self.detect_deadline {
            self.detect_deadline = deadline;
            out.push(deadline.map_or(Action::DisarmDetectTimer, Action::ArmDetectTimer));
        }
    }
}
