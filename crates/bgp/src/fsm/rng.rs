//! Deterministic jitter (RFC 4271 §10) and exponential backoff for the FSM.
//!
//! The PRNG is SplitMix64: tiny, seedable, and good enough for spreading
//! timers; it is not used for anything security relevant.

use std::time::Duration;

/// Seedable PRNG owned by one FSM.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// `d` multiplied by a uniform factor in [0.75, 1.0] (parts per million).
    pub(crate) fn jitter(&mut self, d: Duration) -> Duration {
        let ppm = 750_000 + u128::from(self.next_u64() % 250_001);
        let nanos = d.as_nanos() * ppm / 1_000_000;
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Backoff before restarting after `failures` consecutive failures:
/// `base × 2^(failures-1)`, capped at `max` (no jitter; 0 failures = 0).
pub(crate) fn backoff(base: Duration, max: Duration, failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let shift = (failures - 1).min(31);
    base.checked_mul(1u32 << shift).map_or(max, |d| d.min(max))
}
