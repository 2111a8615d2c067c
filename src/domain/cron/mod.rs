//! Classic (Vixie cron / croniter) expressions, parsed and evaluated here rather than through
//! the `cron` crate, whose grammar differs (seconds first, its own weekday numbers, AND of
//! the two day fields). croniter is the reference: `tests/fixtures/croniter/` holds a table
//! of its answers, which the tests replay.
//!
//! Five fields `minute hour day-of-month month day-of-week`, or six with a leading seconds
//! field. Lists, ranges, steps (`*/15`, `0-30/15`, `5/10`), month and weekday names in any
//! case (`jan-jun`, `mon-thu`), Sunday as 0 or 7, and the `@hourly`-style macros. When both
//! day fields are restricted (neither is `*`), a day matching either one fires. croniter's
//! extensions: `L` (last day of the month) and `nW` (nearest weekday) in day-of-month, `L5`
//! or `5L` (last Friday) and `5#2` (second Friday) in day-of-week.
//!
//! Time zones: every instant whose local time matches fires, and a matching local time that
//! a spring-forward change skips fires once, at the moment the clock jumps (croniter's rule).
//! One exception, ISC (Vixie) cron's: a fixed-time job (seconds, minute and hour fields not
//! starting with `*`) fires at the first occurrence of a repeated local time only, so a daily
//! 01:30 job does not run twice on the night the clocks go back. An interval job (`*/15 * * *
//! *`) follows the instants and fires in both passes of the repeated hour.

mod parse;
#[cfg(test)]
mod tests;

use chrono::{DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};

use parse::has;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CronError {
    pub field: &'static str,
    pub message: String,
}

impl std::fmt::Display for CronError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Which occurrence of a weekday in its month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Nth {
    /// The first to fifth (`5#1` … `5#5`).
    Index(u32),
    /// The last (`L5`, `5L`).
    Last,
}

/// Day-of-month: plain days, the last day (`L`), or the weekday nearest a day (`15W`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct DayField {
    bits: u64,
    last: bool,
    nearest: Option<u32>,
}

/// Day-of-week: plain weekdays (0 = Sunday) or nth weekdays of the month.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct WeekdayField {
    bits: u64,
    nth: Vec<(u32, Nth)>,
}

/// A parsed expression: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: DayField,
    months: u64,
    weekdays: WeekdayField,
    days_star: bool,
    weekdays_star: bool,
    /// An interval job (its seconds, minute or hour field starts with `*`): it fires in both
    /// passes of a repeated hour, where a fixed-time job fires in the first only.
    interval: bool,
    with_seconds: bool,
}

/// How far ahead the next fire time is looked for: a 29 February on a given weekday (`0 0 *
/// 2 5#5`, a fifth Friday in February) comes every 28 years, up to 40 across 2100, which is
/// not a leap year (2072 → 2112).
const HORIZON_YEARS: i32 = 41;
/// The longest step the search takes before it looks at the zone's offset again; time zone
/// changes are further apart than this.
const MAX_STEP: Duration = Duration::days(7);

fn month_len(year: i32, month: u32) -> u32 {
    let (y, m) = if month == 12 { (year + 1, 1) } else { (year, month + 1) };
    NaiveDate::from_ymd_opt(y, m, 1)
        .and_then(|d| d.pred_opt())
        .map_or(28, |d| d.day())
}

/// The weekday nearest day `n` of the month (clamped to its last day), never leaving it.
fn nearest_weekday(year: i32, month: u32, n: u32) -> u32 {
    let last = month_len(year, month);
    let d = n.min(last);
    let Some(date) = NaiveDate::from_ymd_opt(year, month, d) else {
        return d;
    };
    match date.weekday().num_days_from_sunday() {
        6 if d == 1 => 3,
        6 => d - 1,
        0 if d == last => d - 2,
        0 => d + 1,
        _ => d,
    }
}

impl DayField {
    fn matches(&self, d: NaiveDate) -> bool {
        has(self.bits, d.day())
            || (self.last && d.day() == month_len(d.year(), d.month()))
            || self
                .nearest
                .is_some_and(|n| d.day() == nearest_weekday(d.year(), d.month(), n))
    }
}

impl WeekdayField {
    fn matches(&self, d: NaiveDate) -> bool {
        let wd = d.weekday().num_days_from_sunday();
        has(self.bits, wd)
            || self.nth.iter().any(|(w, nth)| {
                *w == wd
                    && match nth {
                        Nth::Index(k) => (d.day() - 1) / 7 + 1 == *k,
                        Nth::Last => d.day() + 7 > month_len(d.year(), d.month()),
                    }
            })
    }
}

fn macro_expansion(s: &str) -> Option<&'static str> {
    Some(match s.to_ascii_lowercase().as_str() {
        "@yearly" | "@annually" => "0 0 1 1 *",
        "@monthly" => "0 0 1 * *",
        "@weekly" => "0 0 * * 0",
        "@daily" | "@midnight" => "0 0 * * *",
        "@hourly" => "0 * * * *",
        _ => return None,
    })
}

impl Cron {
    pub fn parse(expr: &str) -> Result<Cron, CronError> {
        let expr = expr.trim();
        let expanded = if expr.starts_with('@') {
            macro_expansion(expr).ok_or_else(|| CronError {
                field: "expression",
                message: format!("unknown macro {expr:?} (use @yearly, @monthly, @weekly, @daily or @hourly)"),
            })?
        } else {
            expr
        };
        let parts: Vec<&str> = expanded.split_whitespace().collect();
        let (sec, rest) = match parts.len() {
            5 => ("0", &parts[..]),
            6 => (parts[0], &parts[1..]),
            n => {
                return Err(CronError {
                    field: "expression",
                    message: format!(
                    "expected 5 fields (minute hour day-of-month month day-of-week), or 6 with seconds first; got {n}"
                ),
                })
            }
        };
        let cron = Cron {
            seconds: parse::plain(sec, &parse::SECOND)?,
            minutes: parse::plain(rest[0], &parse::MINUTE)?,
            hours: parse::plain(rest[1], &parse::HOUR)?,
            days: parse::days(rest[2])?,
            months: parse::plain(rest[3], &parse::MONTH)?,
            weekdays: parse::weekdays(rest[4])?,
            days_star: matches!(rest[2], "*" | "?"),
            weekdays_star: matches!(rest[4], "*" | "?"),
            interval: sec.starts_with('*') || rest[0].starts_with('*') || rest[1].starts_with('*'),
            with_seconds: parts.len() == 6,
        };
        cron.check_day_fields()?;
        Ok(cron)
    }

    /// Refuse day fields that never fire (`0 0 30 2 *`) or whose meaning the references
    /// disagree on: croniter gives no consistent answer for an nth weekday beside a restricted
    /// day-of-month, or for `nW` beside a restricted day-of-week (Quartz refuses both).
    fn check_day_fields(&self) -> Result<(), CronError> {
        if !self.weekdays.nth.is_empty() && !self.days_star {
            return Err(CronError {
                field: "day-of-week",
                message: "a `#` or `L` weekday cannot be combined with a restricted day-of-month; \
                          set day-of-month to `*`"
                    .into(),
            });
        }
        if self.days.nearest.is_some() && !self.weekdays_star {
            return Err(CronError {
                field: "day-of-month",
                message: "`W` cannot be combined with a restricted day-of-week; set day-of-week to `*`".into(),
            });
        }
        let plain_days_only = !self.days.last && self.days.nearest.is_none();
        if self.days_star || !self.weekdays_star || !plain_days_only {
            return Ok(()); // some listed weekday, last day or nearest weekday always comes
        }
        let possible =
            (1..=12).any(|m| has(self.months, m) && (1..=month_len(2024, m)).any(|d| has(self.days.bits, d)));
        if possible {
            return Ok(());
        }
        Err(CronError {
            field: "day-of-month",
            message: "no listed day exists in any listed month, so this never fires".into(),
        })
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = self.days.matches(d);
        let dow = self.weekdays.matches(d);
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
    }

    /// Whether a local time (at this expression's resolution) is one of its times.
    fn matches(&self, t: NaiveDateTime) -> bool {
        has(self.months, t.month())
            && self.day_matches(t.date())
            && has(self.hours, t.hour())
            && has(self.minutes, t.minute())
            && has(self.seconds, t.second())
            && t.nanosecond() == 0
    }

    fn unit(&self) -> Duration {
        if self.with_seconds {
            Duration::seconds(1)
        } else {
            Duration::minutes(1)
        }
    }

    /// `t` cut down to the resolution of this expression.
    fn floor(&self, t: NaiveDateTime) -> NaiveDateTime {
        let t = t.with_nanosecond(0).unwrap_or(t);
        if self.with_seconds {
            t
        } else {
            t.with_second(0).unwrap_or(t)
        }
    }

    /// The first matching local time strictly after `after` (None past the search horizon).
    fn next_local(&self, after: NaiveDateTime) -> Option<NaiveDateTime> {
        let mut t = self.floor(after) + self.unit();
        let horizon = t.year() + HORIZON_YEARS;
        while t.year() <= horizon {
            let date = t.date();
            if !has(self.months, t.month()) {
                let (y, m) = if t.month() == 12 {
                    (t.year() + 1, 1)
                } else {
                    (t.year(), t.month() + 1)
                };
                t = NaiveDate::from_ymd_opt(y, m, 1)?.and_hms_opt(0, 0, 0)?;
            } else if !self.day_matches(date) {
                t = date.succ_opt()?.and_hms_opt(0, 0, 0)?;
            } else if !has(self.hours, t.hour()) {
                t = date.and_hms_opt(t.hour(), 0, 0)? + Duration::hours(1);
            } else if !has(self.minutes, t.minute()) {
                t = date.and_hms_opt(t.hour(), t.minute(), 0)? + Duration::minutes(1);
            } else if !has(self.seconds, t.second()) {
                t += Duration::seconds(1);
            } else {
                return Some(t);
            }
        }
        None
    }

    /// The next fire time strictly after `after`, in zone `tz`.
    ///
    /// Walks the instants, jumping straight to the next matching local time while the zone's
    /// offset stays the same, and stopping at each offset change so that skipped and repeated
    /// local times are handled where they happen.
    pub fn next_after<Z: TimeZone>(&self, tz: &Z, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let unit = self.unit();
        // Rounded in local time: some offsets are not whole minutes (local mean time, Liberia
        // until 1972), and the walk steps through local minutes.
        let offset = offset_at(tz, after);
        let local = after.naive_utc() + offset;
        let mut at = (self.floor(local) + unit - offset)
            .and_utc()
            .max(after + Duration::nanoseconds(1));
        let horizon = after.year() + HORIZON_YEARS;
        while at.year() <= horizon {
            let local = at.with_timezone(tz).naive_local();
            if self.jumped_over_match(tz, at, local) {
                return Some(at);
            }
            if self.matches(local) {
                if self.interval || !repeats_earlier(tz, at, local) {
                    return Some(at);
                }
                at += unit;
                continue;
            }
            let offset = local - at.naive_utc();
            let mut target = (self.next_local(local)? - offset).and_utc().min(at + MAX_STEP);
            if offset_at(tz, target) != offset {
                target = first_offset_change(tz, at, target, offset);
            }
            at = target.max(at + unit);
        }
        None
    }

    /// Whether the clock jumped forward just before `at` (local time `local`) over a local time
    /// this expression matches: that time fires once, at the moment of the jump.
    fn jumped_over_match<Z: TimeZone>(&self, tz: &Z, at: DateTime<Utc>, local: NaiveDateTime) -> bool {
        let before = (at - self.unit()).with_timezone(tz).naive_local();
        local - before > self.unit() && self.next_local(before).is_some_and(|n| n < local)
    }

    /// The next `count` fire times after `after`.
    pub fn upcoming<Z: TimeZone>(&self, tz: &Z, after: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        let mut out = Vec::with_capacity(count);
        let mut t = after;
        while out.len() < count {
            match self.next_after(tz, t) {
                Some(n) => {
                    out.push(n);
                    t = n;
                }
                None => break,
            }
        }
        out
    }
}

/// The zone's offset at `t` (local minus UTC).
fn offset_at<Z: TimeZone>(tz: &Z, t: DateTime<Utc>) -> Duration {
    t.with_timezone(tz).naive_local() - t.naive_utc()
}

/// The first instant in `(from, to]` whose offset is not `offset`, given that `to`'s is not
/// (searched in whole seconds: zones change offset on a whole second).
fn first_offset_change<Z: TimeZone>(tz: &Z, from: DateTime<Utc>, to: DateTime<Utc>, offset: Duration) -> DateTime<Utc> {
    let (mut lo, mut hi) = (from.timestamp(), to.timestamp());
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        match DateTime::from_timestamp(mid, 0) {
            Some(t) if offset_at(tz, t) == offset => lo = mid,
            _ => hi = mid,
        }
    }
    DateTime::from_timestamp(hi, 0).unwrap_or(to)
}

/// Whether `at` is the second occurrence of its local time (the clocks went back over it).
fn repeats_earlier<Z: TimeZone>(tz: &Z, at: DateTime<Utc>, local: NaiveDateTime) -> bool {
    matches!(tz.from_local_datetime(&local), LocalResult::Ambiguous(first, _) if first.with_timezone(&Utc) != at)
}
