//! Retry delays: exponential with jitter, capped.

use std::time::Duration;

use rand::RngExt;

/// Longest wait between retries of a failing reconcile.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Jitter applied to every backoff, as a fraction of it (±).
pub const JITTER: f64 = 0.2;

/// `base · 2^(failures-1)`, capped at `cap`, scaled by `1 + jitter` where `jitter` is in `[-JITTER, JITTER]`.
/// Pure: the caller supplies the jitter (see [`random_jitter`]).
pub fn delay(base: Duration, failures: u32, cap: Duration, jitter: f64) -> Duration {
    let exp = failures.saturating_sub(1).min(30);
    let raw = base.saturating_mul(1u32 << exp).min(cap);
    let factor = 1.0 + jitter.clamp(-JITTER, JITTER);
    raw.mul_f64(factor).min(cap)
}

/// A uniformly random jitter in `[-JITTER, JITTER]`.
pub fn random_jitter() -> f64 {
    rand::rng().random_range(-JITTER..=JITTER)
}

/// [`delay`] with a random jitter.
pub fn jittered(base: Duration, failures: u32, cap: Duration) -> Duration {
    delay(base, failures, cap, random_jitter())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_doubles_per_failure_and_stops_at_cap() {
        let s = Duration::from_secs;
        let cases = [(0, s(1)), (1, s(1)), (2, s(2)), (3, s(4)), (9, s(256)), (10, s(300)), (200, s(300))];
        for (failures, want) in cases {
            assert_eq!(delay(s(1), failures, MAX_BACKOFF, 0.0), want, "{failures}");
        }
    }

    #[test]
    fn delay_applies_bounded_jitter_when_given() {
        let s = Duration::from_secs;
        assert_eq!(delay(s(10), 1, MAX_BACKOFF, 0.2), s(12));
        assert_eq!(delay(s(10), 1, MAX_BACKOFF, -0.9), s(8));
        assert_eq!(delay(s(10), 20, MAX_BACKOFF, 0.2), MAX_BACKOFF, "never above the cap");
        for _ in 0..100 {
            let d = jittered(s(10), 1, MAX_BACKOFF);
            assert!(d >= s(8) && d <= s(12), "{d:?}");
        }
    }
}
