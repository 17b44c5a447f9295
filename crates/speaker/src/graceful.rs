//! Graceful restart, receiving speaker ("helper") side: RFC 4724 §4.2, with
//! the NOTIFICATION extension of RFC 8538.
//!
//! When a peer that announced the Graceful Restart capability for some
//! families loses its session in a way that may be a restart, its routes of
//! those families are kept (marked stale) instead of withdrawn, so that
//! forwarding towards it goes on while it restarts:
//!
//! * without the N-bit negotiated (RFC 4724), only a transport failure (the
//!   connection closed or reset with no NOTIFICATION) counts as a restart;
//! * with the N-bit negotiated in both directions (RFC 8538), so do the hold
//!   timers expiring and a received NOTIFICATION other than Cease/Hard Reset.
//!   A NOTIFICATION that petrel sends is treated as a Hard Reset: it sends one
//!   only when the peer misbehaved or was reconfigured, and then the peer's
//!   routes must go.
//!
//! The stale routes go when the peer does not come back within the Restart
//! Time it announced; when it comes back without the capability, or without
//! the family, or with the family's Forwarding State bit clear (its
//! forwarding did not survive); when it sends End-of-RIB for the family
//! (the routes it did not send again are gone); when [`STALE_TIME`] passes
//! after it came back without End-of-RIB; and at once when the session fails
//! again before End-of-RIB (a consecutive restart).
//!
//! Pure: the speaker feeds it the session's events and the time, and applies
//! the answers to its RIB.

use ipnet::IpNet;
use petrel_bgp::fsm::{DownReason, Negotiated};
use petrel_bgp::wire::{Family, GracefulRestartCap, Notification, notification as n};
use std::collections::{BTreeSet, HashSet};
use std::time::{Duration, Instant};

/// How long stale routes are kept after the peer came back, waiting for its
/// End-of-RIB (FRR's `stalepath-time` default).
pub const STALE_TIME: Duration = Duration::from_secs(360);

/// Where a helper is in the peer's restart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The session is down; waiting for the peer to come back.
    Restarting,
    /// The session is back; waiting for the peer's End-of-RIB.
    AwaitingEor,
}

/// The helper state of one peer: its stale routes and until when they stay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Helper {
    pub phase: Phase,
    /// Families whose routes are kept.
    pub families: BTreeSet<Family>,
    /// The stale routes (prefix, path id) not sent again yet.
    pub stale: HashSet<(IpNet, u32)>,
    pub deadline: Instant,
}

/// The families of a peer's routes to keep when its session went down for
/// `reason`, and for how long; `None` to withdraw them now.
///
/// `local` and `peer` are the Graceful Restart capabilities sent and
/// received on the session that went down; `negotiated` its families.
pub fn retain_on_down(
    reason: &DownReason,
    local: Option<&GracefulRestartCap>,
    peer: Option<&GracefulRestartCap>,
    negotiated: &[Family],
) -> Option<(BTreeSet<Family>, Duration)> {
    let (local, peer) = (local?, peer?);
    if peer.restart_time == 0 {
        return None;
    }
    let n_bit = local.notification && peer.notification;
    let restart = match reason {
        DownReason::ConnectionClosed => true,
        DownReason::HoldTimerExpired | DownReason::SendHoldTimerExpired => n_bit,
        DownReason::NotificationReceived(notif) => {
            n_bit && !(notif.code == n::CEASE && notif.subcode == n::CEASE_HARD_RESET)
        }
        DownReason::NotificationSent(_) | DownReason::Stopped => false,
    };
    if !restart {
        return None;
    }
    let families: BTreeSet<Family> = peer
        .families
        .iter()
        .map(|(f, _)| *f)
        .filter(|f| negotiated.contains(f))
        .collect();
    if families.is_empty() {
        return None;
    }
    Some((families, Duration::from_secs(u64::from(peer.restart_time))))
}

/// When the peer comes back: the families whose stale routes stay until its
/// End-of-RIB, given the capability in its new OPEN (RFC 4724 §4.2: without
/// the capability, or without a family or its Forwarding State bit, those
/// routes go at once).
pub fn keep_on_reestablish(
    retained: &BTreeSet<Family>,
    peer: Option<&GracefulRestartCap>,
) -> BTreeSet<Family> {
    let Some(peer) = peer else {
        return BTreeSet::new();
    };
    retained
        .iter()
        .copied()
        .filter(|f| peer.families.iter().any(|(g, fwd)| g == f && *fwd))
        .collect()
}

/// The Graceful Restart capabilities sent and received on a session.
pub fn caps(
    negotiated: Option<&Negotiated>,
) -> (Option<&GracefulRestartCap>, Option<&GracefulRestartCap>) {
    (
        negotiated.and_then(|n| n.local_open.caps.graceful_restart.as_ref()),
        negotiated.and_then(|n| n.peer_graceful_restart.as_ref()),
    )
}

/// RFC 8538 §5: with the N-bit negotiated both ways, a peer keeps our routes
/// through any NOTIFICATION but a Hard Reset. So the NOTIFICATIONs after
/// which it must not (Maximum Number of Prefixes Reached, Peer
/// De-configured, BFD Down: the forwarding path failed, RFC 5882 §4.3) go
/// out as Cease/Hard Reset carrying the original code,
/// subcode and data (§3). Others, and every NOTIFICATION without the N-bit,
/// go out as they are: Administrative Shutdown of a stopping agent stays
/// graceful, so peers keep forwarding to this node while it restarts.
pub fn hard_reset_if_needed(
    notification: Notification,
    local: Option<&GracefulRestartCap>,
    peer: Option<&GracefulRestartCap>,
) -> Notification {
    let n_bit = local.is_some_and(|c| c.notification) && peer.is_some_and(|c| c.notification);
    let hard = notification.code == n::CEASE
        && matches!(
            notification.subcode,
            n::CEASE_MAX_PREFIXES | n::CEASE_PEER_DECONFIGURED | n::CEASE_BFD_DOWN
        );
    if !(n_bit && hard) {
        return notification;
    }
    let mut data = vec![notification.code, notification.subcode];
    data.extend_from_slice(&notification.data);
    Notification {
        code: n::CEASE,
        subcode: n::CEASE_HARD_RESET,
        data,
    }
}

impl Helper {
    /// Starts helping: `stale` are the routes of the families kept.
    pub fn start(
        families: BTreeSet<Family>,
        stale: HashSet<(IpNet, u32)>,
        restart_time: Duration,
        now: Instant,
    ) -> Helper {
        Helper {
            phase: Phase::Restarting,
            families,
            stale,
            deadline: now + restart_time,
        }
    }

    /// The peer is back: keeps only the families in `keep`, waits for their
    /// End-of-RIB up to [`STALE_TIME`]. Returns the routes to withdraw now.
    pub fn reestablished(&mut self, keep: &BTreeSet<Family>, now: Instant) -> Vec<(IpNet, u32)> {
        self.phase = Phase::AwaitingEor;
        self.deadline = now + STALE_TIME;
        self.families.retain(|f| keep.contains(f));
        self.take_stale(|f| !keep.contains(&f))
    }

    /// The peer sent (or withdrew) this route again: it is fresh.
    pub fn refreshed(&mut self, key: &(IpNet, u32)) {
        self.stale.remove(key);
    }

    /// End-of-RIB for `family`: its routes not sent again are gone.
    pub fn end_of_rib(&mut self, family: Family) -> Vec<(IpNet, u32)> {
        if self.phase != Phase::AwaitingEor {
            return Vec::new();
        }
        self.families.remove(&family);
        self.take_stale(|f| f == family)
    }

    /// Whether the helper is done (nothing stale, nothing awaited).
    pub fn is_done(&self) -> bool {
        self.families.is_empty() || (self.phase == Phase::AwaitingEor && self.stale.is_empty())
    }

    /// Whether the deadline (restart time, or stale time) has passed.
    pub fn expired(&self, now: Instant) -> bool {
        now >= self.deadline
    }

    /// Every stale route (the deadline passed, or a consecutive restart).
    pub fn take_all(&mut self) -> Vec<(IpNet, u32)> {
        self.families.clear();
        self.stale.drain().collect()
    }

    fn take_stale(&mut self, pick: impl Fn(Family) -> bool) -> Vec<(IpNet, u32)> {
        let out: Vec<(IpNet, u32)> = self
            .stale
            .iter()
            .filter(|(p, _)| pick(Family::of(p)))
            .copied()
            .collect();
        for k in &out {
            self.stale.remove(k);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: Family = Family::Ipv4Unicast;
    const V6: Family = Family::Ipv6Unicast;

    fn cap(n_bit: bool, time: u16, families: &[(Family, bool)]) -> GracefulRestartCap {
        GracefulRestartCap {
            restart_state: false,
            notification: n_bit,
            restart_time: time,
            families: families.to_vec(),
        }
    }

    fn notif(code: u8, subcode: u8) -> Notification {
        Notification {
            code,
            subcode,
            data: vec![],
        }
    }

    fn fams(f: &[Family]) -> BTreeSet<Family> {
        f.iter().copied().collect()
    }

    #[test]
    fn a_transport_failure_keeps_the_announced_families() {
        let local = cap(false, 120, &[(V4, false), (V6, false)]);
        let peer = cap(false, 90, &[(V4, true)]);
        let r = retain_on_down(
            &DownReason::ConnectionClosed,
            Some(&local),
            Some(&peer),
            &[V4, V6],
        );
        assert_eq!(r, Some((fams(&[V4]), Duration::from_secs(90))));
    }

    #[test]
    fn nothing_is_kept_without_both_capabilities_or_families() {
        let with = cap(true, 120, &[(V4, true)]);
        let down = DownReason::ConnectionClosed;
        assert_eq!(retain_on_down(&down, None, Some(&with), &[V4]), None);
        assert_eq!(retain_on_down(&down, Some(&with), None, &[V4]), None);
        // A helper-only peer (BIRD "aware", FRR's default) lists no family.
        let helper_only = cap(true, 120, &[]);
        assert_eq!(
            retain_on_down(&down, Some(&with), Some(&helper_only), &[V4]),
            None
        );
        // A family that was not negotiated on the session.
        let v6_only = cap(true, 120, &[(V6, true)]);
        assert_eq!(
            retain_on_down(&down, Some(&with), Some(&v6_only), &[V4]),
            None
        );
        // Restart Time 0.
        let zero = cap(true, 0, &[(V4, true)]);
        assert_eq!(retain_on_down(&down, Some(&with), Some(&zero), &[V4]), None);
    }

    #[test]
    fn notifications_and_hold_timers_need_the_n_bit_both_ways() {
        let n = cap(true, 120, &[(V4, true)]);
        let plain = cap(false, 120, &[(V4, true)]);
        let cases = [
            DownReason::HoldTimerExpired,
            DownReason::SendHoldTimerExpired,
            DownReason::NotificationReceived(notif(n::CEASE, n::CEASE_ADMIN_SHUTDOWN)),
            DownReason::NotificationReceived(notif(3, 1)),
        ];
        for reason in &cases {
            assert!(
                retain_on_down(reason, Some(&n), Some(&n), &[V4]).is_some(),
                "{reason} with the N-bit"
            );
            for (l, p) in [(&n, &plain), (&plain, &n), (&plain, &plain)] {
                assert!(
                    retain_on_down(reason, Some(l), Some(p), &[V4]).is_none(),
                    "{reason} without the N-bit both ways"
                );
            }
        }
    }

    #[test]
    fn a_hard_reset_what_petrel_sends_and_a_local_stop_withdraw() {
        let n = cap(true, 120, &[(V4, true)]);
        for reason in [
            DownReason::NotificationReceived(notif(n::CEASE, n::CEASE_HARD_RESET)),
            DownReason::NotificationSent(notif(n::CEASE, n::CEASE_MAX_PREFIXES)),
            DownReason::NotificationSent(notif(n::CEASE, n::CEASE_ADMIN_SHUTDOWN)),
            DownReason::Stopped,
        ] {
            assert_eq!(
                retain_on_down(&reason, Some(&n), Some(&n), &[V4]),
                None,
                "{reason}"
            );
        }
    }

    #[test]
    fn coming_back_keeps_only_families_with_forwarding_state() {
        let retained = fams(&[V4, V6]);
        assert_eq!(
            keep_on_reestablish(
                &retained,
                Some(&cap(false, 120, &[(V4, true), (V6, false)]))
            ),
            fams(&[V4])
        );
        assert_eq!(
            keep_on_reestablish(&retained, Some(&cap(false, 120, &[(V6, true)]))),
            fams(&[V6])
        );
        assert!(keep_on_reestablish(&retained, None).is_empty());
    }

    fn key(p: &str) -> (IpNet, u32) {
        (p.parse().unwrap(), 0)
    }

    fn sorted(mut v: Vec<(IpNet, u32)>) -> Vec<(IpNet, u32)> {
        v.sort();
        v
    }

    #[test]
    fn the_whole_restart() {
        let t0 = Instant::now();
        let stale: HashSet<_> = [key("10.1.0.0/26"), key("10.1.0.64/26"), key("fd00::/122")]
            .into_iter()
            .collect();
        let mut h = Helper::start(fams(&[V4, V6]), stale, Duration::from_secs(120), t0);
        assert!(!h.expired(t0 + Duration::from_secs(119)));
        assert!(h.expired(t0 + Duration::from_secs(120)));
        // End-of-RIB before the session is back means nothing.
        assert!(h.end_of_rib(V4).is_empty());
        // Back with IPv4 forwarding state only: IPv6's stale routes go now.
        let t1 = t0 + Duration::from_secs(10);
        let gone = h.reestablished(&fams(&[V4]), t1);
        assert_eq!(gone, vec![key("fd00::/122")]);
        assert_eq!(h.deadline, t1 + STALE_TIME);
        // One route is sent again; End-of-RIB sweeps the other.
        h.refreshed(&key("10.1.0.0/26"));
        assert!(!h.is_done());
        assert_eq!(h.end_of_rib(V4), vec![key("10.1.0.64/26")]);
        assert!(h.is_done());
    }

    #[test]
    fn the_deadline_or_a_consecutive_restart_takes_everything() {
        let t0 = Instant::now();
        let stale: HashSet<_> = [key("10.1.0.0/26"), key("fd00::/122")]
            .into_iter()
            .collect();
        let mut h = Helper::start(fams(&[V4, V6]), stale, Duration::from_secs(5), t0);
        assert_eq!(
            sorted(h.take_all()),
            vec![key("10.1.0.0/26"), key("fd00::/122")]
        );
        assert!(h.is_done());
    }

    #[test]
    fn a_helper_with_nothing_stale_is_done_once_back() {
        let t0 = Instant::now();
        let mut h = Helper::start(fams(&[V4]), HashSet::new(), Duration::from_secs(5), t0);
        assert!(!h.is_done(), "still restarting: the peer may come back");
        assert!(h.reestablished(&fams(&[V4]), t0).is_empty());
        assert!(h.is_done());
    }

    #[test]
    fn deconfiguring_and_prefix_limits_are_hard_resets_with_the_n_bit() {
        let n = cap(true, 120, &[(V4, true)]);
        let plain = cap(false, 120, &[(V4, true)]);
        let deconf = notif(n::CEASE, n::CEASE_PEER_DECONFIGURED);
        let hard = hard_reset_if_needed(deconf.clone(), Some(&n), Some(&n));
        assert_eq!(
            (hard.code, hard.subcode, hard.data.clone()),
            (
                n::CEASE,
                n::CEASE_HARD_RESET,
                vec![n::CEASE, n::CEASE_PEER_DECONFIGURED]
            )
        );
        let max = Notification {
            data: vec![0, 1, 1, 0, 0, 0, 10],
            ..notif(n::CEASE, n::CEASE_MAX_PREFIXES)
        };
        let hard = hard_reset_if_needed(max.clone(), Some(&n), Some(&n));
        assert_eq!(hard.subcode, n::CEASE_HARD_RESET);
        assert_eq!(&hard.data[..2], &[n::CEASE, n::CEASE_MAX_PREFIXES]);
        assert_eq!(&hard.data[2..], &max.data[..]);
        // BFD Down (RFC 9384): the path failed, the peer must not keep our routes.
        let bfd = notif(n::CEASE, n::CEASE_BFD_DOWN);
        let hard = hard_reset_if_needed(bfd.clone(), Some(&n), Some(&n));
        assert_eq!(
            (hard.subcode, hard.data),
            (n::CEASE_HARD_RESET, vec![n::CEASE, n::CEASE_BFD_DOWN])
        );
        assert_eq!(
            hard_reset_if_needed(bfd.clone(), Some(&plain), Some(&n)),
            bfd
        );
        // Without the N-bit both ways, or for a graceful subcode: as is.
        for (l, p) in [
            (Some(&plain), Some(&n)),
            (Some(&n), Some(&plain)),
            (None, Some(&n)),
        ] {
            assert_eq!(hard_reset_if_needed(deconf.clone(), l, p), deconf);
        }
        let shutdown = notif(n::CEASE, n::CEASE_ADMIN_SHUTDOWN);
        assert_eq!(
            hard_reset_if_needed(shutdown.clone(), Some(&n), Some(&n)),
            shutdown
        );
        let change = notif(n::CEASE, n::CEASE_OTHER_CONFIG_CHANGE);
        assert_eq!(
            hard_reset_if_needed(change.clone(), Some(&n), Some(&n)),
            change
        );
    }
}
