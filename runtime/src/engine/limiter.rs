//! Rate limiting as pure logic: a GCRA limiter (the token bucket's exact, state-light twin) and
//! the rule that a flood gets one notice per window, not a flood of notices.
//!
//! Time is passed in, so the logic is tested without waiting; the tenant actor owns one limiter
//! per tenant and one per channel connection.

use std::time::{Duration, Instant};

/// A limit: `burst` messages at once, refilled at `per_minute`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    pub per_minute: u32,
    pub burst: u32,
}

/// The decision for one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Allow,
    /// Over the limit: retry after this long. `notify` is true for the first rejection of a
    /// window, so the sender is told once how long to wait.
    Reject {
        retry_after: Duration,
        notify: bool,
    },
}

/// Generic cell rate algorithm: one timestamp of state.
#[derive(Debug, Clone)]
pub struct Gcra {
    limit: Limit,
    /// Time between two messages at the sustained rate.
    interval: Duration,
    /// How far ahead of now the theoretical arrival time may run (burst − 1 intervals).
    tolerance: Duration,
    /// The theoretical arrival time of the next conforming message.
    tat: Option<Instant>,
    /// Until when the last notice covers, so further rejections stay quiet.
    noticed_until: Option<Instant>,
}

impl Gcra {
    pub fn new(limit: Limit) -> Self {
        let per_minute = limit.per_minute.max(1);
        let interval = Duration::from_secs(60) / per_minute;
        Self {
            limit,
            interval,
            tolerance: interval * limit.burst.max(1).saturating_sub(1),
            tat: None,
            noticed_until: None,
        }
    }

    /// The limit this limiter enforces.
    pub fn limit(&self) -> Limit {
        self.limit
    }

    /// Decides for a message arriving at `now`, and counts it if allowed.
    pub fn check(&mut self, now: Instant) -> Decision {
        let tat = self.tat.map_or(now, |t| t.max(now));
        let allow_at = tat.checked_sub(self.tolerance).unwrap_or(now);
        if now >= allow_at {
            self.tat = Some(tat + self.interval);
            return Decision::Allow;
        }
        let retry_after = allow_at - now;
        let notify = self.noticed_until.is_none_or(|until| now >= until);
        if notify {
            self.noticed_until = Some(allow_at);
        }
        Decision::Reject {
            retry_after,
            notify,
        }
    }
}

/// The sentence a rejected sender gets, once per window.
pub fn notice(retry_after: Duration) -> String {
    let secs = retry_after.as_secs().max(1);
    let wait = if secs < 60 {
        format!("{secs} second{}", if secs == 1 { "" } else { "s" })
    } else {
        let minutes = secs.div_ceil(60);
        format!("{minutes} minute{}", if minutes == 1 { "" } else { "s" })
    };
    format!(
        "You're sending messages faster than I can answer. Please wait {wait} and send your message again."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_allowed_then_the_sustained_rate_applies() {
        let mut g = Gcra::new(Limit {
            per_minute: 60,
            burst: 3,
        });
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(g.check(t0), Decision::Allow);
        }
        match g.check(t0) {
            Decision::Reject {
                retry_after,
                notify,
            } => {
                assert_eq!(retry_after, Duration::from_secs(1));
                assert!(notify);
            }
            Decision::Allow => panic!("the fourth message of a burst of three must wait"),
        }
        // One second later, one more message fits.
        assert_eq!(g.check(t0 + Duration::from_secs(1)), Decision::Allow);
    }

    #[test]
    fn a_flood_gets_one_notice_per_window() {
        let mut g = Gcra::new(Limit {
            per_minute: 6,
            burst: 1,
        });
        let t0 = Instant::now();
        assert_eq!(g.check(t0), Decision::Allow);
        let notices = (1..=50)
            .map(|i| g.check(t0 + Duration::from_millis(i * 100)))
            .filter(|d| matches!(d, Decision::Reject { notify: true, .. }))
            .count();
        assert_eq!(notices, 1, "fifty rejections within the window, one notice");
        // After the window, the next message is allowed again; a new flood gets a new notice.
        let later = t0 + Duration::from_secs(10);
        assert_eq!(g.check(later), Decision::Allow);
        assert!(matches!(
            g.check(later),
            Decision::Reject { notify: true, .. }
        ));
    }

    #[test]
    fn the_notice_says_how_long_to_wait() {
        assert!(notice(Duration::from_secs(1)).contains("1 second "));
        assert!(notice(Duration::from_secs(42)).contains("42 seconds"));
        assert!(notice(Duration::from_secs(61)).contains("2 minutes"));
    }
}
