//! Transmit jitter (RFC 5880 §6.8.7), the Detection Time (§6.8.4) and the
//! injectable randomness behind them.
//!
//! Every periodic transmission interval is reduced by a random 0–25 %
//! (75–100 % of the negotiated interval), or by 10–25 % (75–90 %) when the
//! local Detect Mult is 1, so the remote's Detection Time cannot pass before
//! the next packet arrives. The random numbers come from a [`RandomSource`]
//! owned by the session, so a test can pin them; the default is
//! [`SplitMix64`], seeded by the driver. It spreads timers and picks
//! discriminators (§6.8.1 "SHOULD be set to a random value"); it is not a
//! cryptographic generator, and nothing in BFD without authentication needs
//! one.

use std::time::Duration;

/// A source of uniformly distributed random numbers.
pub trait RandomSource {
    /// The next uniformly distributed 32-bit value.
    fn next_u32(&mut self) -> u32;

    /// A new, independent source derived from this one (one per session).
    fn fork(&mut self) -> Self
    where
        Self: Sized;
}

/// SplitMix64: tiny, seedable, statistically good enough for jitter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator with the given seed (the driver seeds it from the OS).
    pub const fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    /// The next 64-bit value.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl RandomSource for SplitMix64 {
    fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    fn fork(&mut self) -> Self {
        SplitMix64::new(self.next_u64())
    }
}

/// One second, in microseconds: the floor of bfd.DesiredMinTxInterval while
/// the session is not Up (RFC 5880 §6.8.3).
pub const SLOW_TX_US: u32 = 1_000_000;

/// The interval to wait before the next periodic packet: `interval_us`
/// scaled to 75–100 % (75–90 % when `detect_mult` is 1) by `random`, where
/// 0 gives the lower bound and `u32::MAX` the upper one (RFC 5880 §6.8.7).
pub fn jittered(interval_us: u32, detect_mult: u8, random: u32) -> Duration {
    let interval = u64::from(interval_us);
    let low = interval * 75 / 100;
    let high = if detect_mult == 1 {
        interval * 90 / 100
    } else {
        interval
    };
    let span = high - low;
    // random / u32::MAX of the span, rounded down: both ends reachable.
    let extra = span * u64::from(random) / u64::from(u32::MAX);
    Duration::from_micros(low + extra)
}

/// The Detection Time in Asynchronous mode (RFC 5880 §6.8.4): the remote
/// Detect Mult times the greater of our Required Min RX Interval and the
/// remote's Desired Min TX Interval.
pub fn detection_time(
    remote_detect_mult: u8,
    required_min_rx_us: u32,
    remote_desired_min_tx_us: u32,
) -> Duration {
    let agreed = u64::from(required_min_rx_us.max(remote_desired_min_tx_us));
    Duration::from_micros(agreed * u64::from(remote_detect_mult))
}

/// Microseconds as a duration.
pub(crate) fn micros(us: u32) -> Duration {
    Duration::from_micros(u64::from(us))
}
