//! A schedule's timetable: a cron expression in an IANA zone, parsed once.

use chrono::{DateTime, Utc};

use super::cron;

/// A schedule's timetable: its expression in its zone.
pub struct Timing {
    cron: cron::Cron,
    tz: chrono_tz::Tz,
}

/// Why an expression or zone was refused: the field and what is wrong.
#[derive(Debug)]
pub struct TimingError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for TimingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl Timing {
    pub fn parse(expr: &str, timezone: &str) -> Result<Timing, TimingError> {
        let cron = cron::Cron::parse(expr).map_err(|e| TimingError {
            field: "cron_expression",
            message: e.to_string(),
        })?;
        let tz = timezone.parse::<chrono_tz::Tz>().map_err(|_| TimingError {
            field: "timezone",
            message: format!("unknown time zone {timezone:?} (use an IANA name such as Europe/Paris or UTC)"),
        })?;
        Ok(Timing { cron, tz })
    }

    pub fn tz(&self) -> chrono_tz::Tz {
        self.tz
    }

    /// The next fire time after `after`.
    pub fn next(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron.next_after(&self.tz, after)
    }

    /// The next fire time after `after_ms`, in unix milliseconds.
    pub fn next_ms(&self, after_ms: i64) -> Option<i64> {
        let after = DateTime::from_timestamp_millis(after_ms)?;
        self.next(after).map(|t| t.timestamp_millis())
    }

    pub fn upcoming(&self, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        self.cron.upcoming(&self.tz, after, count)
    }
}
