//! Randomized delays, so that many clients (or many nodes of one client) do not act in lockstep.
//! Owns nothing but the randomness; callers decide the delays.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

/// A random u64 (not cryptographic).
fn random() -> u64 {
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x9e37_79b9_7f4a_7c15);
    h.finish()
}

/// `d` scaled by a random factor in `[1 - spread, 1 + spread]` (spread clamped to 0..=1).
pub(crate) fn jitter(d: Duration, spread: f64) -> Duration {
    let spread = spread.clamp(0.0, 1.0);
    let unit = (random() >> 11) as f64 / (1u64 << 53) as f64; // [0, 1)
    let factor = 1.0 - spread + 2.0 * spread * unit;
    Duration::try_from_secs_f64(d.as_secs_f64() * factor).unwrap_or(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_within_the_spread_and_varies() {
        let base = Duration::from_secs(60);
        let samples: Vec<Duration> = (0..200).map(|_| jitter(base, 0.1)).collect();
        assert!(samples
            .iter()
            .all(|d| *d >= Duration::from_secs(54) && *d <= Duration::from_secs(66)));
        assert!(samples.iter().any(|d| *d != samples[0]));
        assert_eq!(jitter(base, 0.0), base);
        let _ = jitter(Duration::MAX, 0.1); // total: no overflow panic
    }
}
