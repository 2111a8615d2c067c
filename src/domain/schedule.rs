//! What user schedules and workflows' own schedules share: the overlap policy and the retry
//! policy with its defaults, so both kinds start from the same values.

use super::status::text_enum;

text_enum!(
    /// What a tick does while the previous run of the same schedule is still going.
    Overlap {
        /// The tick is recorded as skipped.
        Skip = "skip",
        /// The tick runs beside it.
        Allow = "allow",
    }
);

/// A schedule's retries: how many, after how long, growing by what factor, up to what wait.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: i64,
    pub delay_seconds: f64,
    pub backoff_factor: f64,
    pub max_delay_seconds: f64,
}

impl Default for RetryPolicy {
    /// No retries; if some are asked for, 60 s, doubling, at most an hour apart.
    fn default() -> Self {
        RetryPolicy {
            max_retries: 0,
            delay_seconds: 60.0,
            backoff_factor: 2.0,
            max_delay_seconds: 3600.0,
        }
    }
}

impl RetryPolicy {
    /// Seconds to wait before attempt `n + 1` after attempt `n` failed.
    pub fn delay(&self, n: i64) -> f64 {
        let raw = self.delay_seconds * self.backoff_factor.powi((n - 1).clamp(0, 60) as i32);
        raw.min(self.max_delay_seconds)
    }
}

/// The zone a schedule runs in when none is given.
pub const DEFAULT_TIMEZONE: &str = "UTC";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_grow_and_are_capped() {
        let p = RetryPolicy {
            max_retries: 5,
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay(1), 60.0);
        assert_eq!(p.delay(2), 120.0);
        assert_eq!(p.delay(10), 3600.0);
        assert_eq!("allow".parse::<Overlap>(), Ok(Overlap::Allow));
        assert!("sometimes".parse::<Overlap>().is_err());
    }
}
