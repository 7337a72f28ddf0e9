//! Exponential back-off between restarts of a failing program (a supervised service, a
//! scheduled unit).

use std::time::Duration;

/// First delay after a crash.
const INITIAL: Duration = Duration::from_millis(100);
/// Longest delay between attempts.
const MAX: Duration = Duration::from_secs(30);
/// A run at least this long counts as healthy and resets the delay (and a count of restarts
/// in a row).
pub const STABLE_AFTER: Duration = Duration::from_secs(10);

/// Delays that double from 100 ms up to 30 s.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: INITIAL }
    }
}

impl Backoff {
    /// The delay before the next attempt; each call doubles the one after.
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX);
        delay
    }

    /// Starts over from the initial delay.
    pub fn reset(&mut self) {
        self.next = INITIAL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets() {
        let mut backoff = Backoff::default();
        let delays: Vec<u64> = (0..11)
            .map(|_| u64::try_from(backoff.next_delay().as_millis()).unwrap())
            .collect();
        assert_eq!(
            delays,
            [100, 200, 400, 800, 1600, 3200, 6400, 12800, 25600, 30000, 30000]
        );
        backoff.reset();
        assert_eq!(backoff.next_delay(), INITIAL);
    }
}
