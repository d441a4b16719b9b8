//! Sliding-window rate limiting and window counting, in microseconds of a monotonic clock passed in
//! by the caller (never read here), so both are pure and testable without waiting.
//!
//! The window convention, shared by the limiter and the counter: a call at `t` is in every window
//! `(s - 1 s, s]` with `t <= s < t + 1 s`. Calls exactly one second apart are never in the same window.

use std::collections::VecDeque;

/// One second in the microseconds the limiter counts in.
pub const WINDOW_MICROS: u64 = 1_000_000;

/// Admits at most `limit` calls in any sliding 1-second window. Rejected calls are not recorded,
/// so a client hammering a throttled account does not extend its own throttling.
#[derive(Debug, Clone)]
pub struct SlidingWindowLimiter {
    limit: u32,
    admitted: VecDeque<u64>,
}

impl SlidingWindowLimiter {
    pub fn new(limit: u32) -> Self {
        Self {
            limit,
            admitted: VecDeque::with_capacity(limit.min(1024) as usize),
        }
    }

    pub fn limit(&self) -> u32 {
        self.limit
    }

    /// Changes the limit at run time; calls already admitted stay in the window.
    pub fn set_limit(&mut self, limit: u32) {
        self.limit = limit;
    }

    /// Admits (and records) a call at `now_micros` if the window ending at `now_micros` has room.
    /// A clock that went backwards is treated as "no time passed".
    pub fn try_acquire(&mut self, now_micros: u64) -> bool {
        let now = self
            .admitted
            .back()
            .map_or(now_micros, |&last| now_micros.max(last));
        self.expire(now);
        if self.admitted.len() < self.limit as usize {
            self.admitted.push_back(now);
            true
        } else {
            false
        }
    }

    /// Microseconds until a call would be admitted (0 when one would be now).
    pub fn wait_micros(&mut self, now_micros: u64) -> u64 {
        self.expire(now_micros);
        if self.admitted.len() < self.limit as usize {
            return 0;
        }
        if self.limit == 0 {
            return WINDOW_MICROS;
        }
        // The call that must leave the window before one more fits.
        let index = self.admitted.len() - self.limit as usize;
        self.admitted
            .get(index)
            .map_or(0, |&t| (t + WINDOW_MICROS).saturating_sub(now_micros))
    }

    fn expire(&mut self, now: u64) {
        while let Some(&front) = self.admitted.front() {
            if now.saturating_sub(front) >= WINDOW_MICROS {
                self.admitted.pop_front();
            } else {
                break;
            }
        }
    }
}

/// Tracks the largest number of events seen in any sliding 1-second window, incrementally.
#[derive(Debug, Clone, Default)]
pub struct WindowMax {
    recent: VecDeque<u64>,
    max: u64,
}

impl WindowMax {
    pub fn record(&mut self, now_micros: u64) {
        let now = self
            .recent
            .back()
            .map_or(now_micros, |&last| now_micros.max(last));
        while let Some(&front) = self.recent.front() {
            if now.saturating_sub(front) >= WINDOW_MICROS {
                self.recent.pop_front();
            } else {
                break;
            }
        }
        self.recent.push_back(now);
        self.max = self.max.max(self.recent.len() as u64);
    }

    /// The most events seen in any sliding 1-second window since creation.
    pub fn max(&self) -> u64 {
        self.max
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000;

    #[test]
    fn limiter_admits_limit_calls_then_rejects_within_one_second() {
        let mut limiter = SlidingWindowLimiter::new(10);
        for i in 0..10 {
            assert!(limiter.try_acquire(i * MS), "call {i}");
        }
        assert!(!limiter.try_acquire(10 * MS));
        assert!(!limiter.try_acquire(999 * MS));
    }

    #[test]
    fn limiter_frees_a_slot_exactly_one_second_after_the_oldest_call() {
        let mut limiter = SlidingWindowLimiter::new(2);
        assert!(limiter.try_acquire(0));
        assert!(limiter.try_acquire(500 * MS));
        assert!(!limiter.try_acquire(WINDOW_MICROS - 1));
        assert!(limiter.try_acquire(WINDOW_MICROS));
        assert!(!limiter.try_acquire(WINDOW_MICROS + 400 * MS));
        assert!(limiter.try_acquire(WINDOW_MICROS + 500 * MS));
    }

    #[test]
    fn limiter_rejected_calls_do_not_consume_budget() {
        let mut limiter = SlidingWindowLimiter::new(1);
        assert!(limiter.try_acquire(0));
        for t in 1..100 {
            assert!(!limiter.try_acquire(t * 9 * MS));
        }
        assert!(limiter.try_acquire(WINDOW_MICROS));
    }

    #[test]
    fn limiter_enforces_any_window_not_fixed_buckets() {
        // 10 calls at the end of one second and 10 at the start of the next would pass a per-second
        // bucket counter; a sliding window must admit none of the second burst.
        let mut limiter = SlidingWindowLimiter::new(10);
        for i in 0..10 {
            assert!(limiter.try_acquire(900 * MS + i * MS));
        }
        for i in 0..10 {
            assert!(!limiter.try_acquire(WINDOW_MICROS + 100 * MS + i * MS));
        }
    }

    #[test]
    fn limiter_with_zero_limit_rejects_everything() {
        let mut limiter = SlidingWindowLimiter::new(0);
        assert!(!limiter.try_acquire(0));
        assert_eq!(limiter.wait_micros(0), WINDOW_MICROS);
    }

    #[test]
    fn limiter_raised_limit_admits_more_at_once() {
        let mut limiter = SlidingWindowLimiter::new(1);
        assert!(limiter.try_acquire(0));
        assert!(!limiter.try_acquire(1));
        limiter.set_limit(3);
        assert!(limiter.try_acquire(2));
        assert!(limiter.try_acquire(3));
        assert!(!limiter.try_acquire(4));
    }

    #[test]
    fn limiter_wait_names_when_the_oldest_call_leaves() {
        let mut limiter = SlidingWindowLimiter::new(2);
        assert_eq!(limiter.wait_micros(0), 0);
        limiter.try_acquire(100 * MS);
        limiter.try_acquire(300 * MS);
        assert_eq!(limiter.wait_micros(400 * MS), 700 * MS);
    }

    #[test]
    fn limiter_clock_going_backwards_does_not_panic_or_admit_extra() {
        let mut limiter = SlidingWindowLimiter::new(1);
        assert!(limiter.try_acquire(5 * WINDOW_MICROS));
        assert!(!limiter.try_acquire(0));
    }

    #[test]
    fn window_max_counts_the_densest_second() {
        let mut max = WindowMax::default();
        for t in [0, 100, 200, 1_100, 1_150, 1_190, 1_199] {
            max.record(t * MS);
        }
        // (199 ms, 1199 ms] holds 200 and the four calls after 1 s.
        assert_eq!(max.max(), 5);
    }
}
