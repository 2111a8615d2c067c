//! Classic (Vixie cron / croniter) expressions, parsed and evaluated here rather than through
//! the `cron` crate, whose grammar differs (seconds first, its own weekday numbers, AND of
//! the two day fields).
//!
//! Five fields `minute hour day-of-month month day-of-week`, or six with a leading seconds
//! field. Lists, ranges, steps (`*/15`, `0-30/15`, `5/10`), month and weekday names in any
//! case (`jan-jun`, `mon-thu`), Sunday as 0 or 7, and the `@hourly`-style macros. When both
//! day fields are restricted (neither is `*`), a day matching either one fires.
//!
//! Time zones follow ISC (Vixie) cron's rule. A fixed-time job (minute and hour fields not
//! starting with `*`) follows the wall clock: its times skipped by a spring-forward change fire
//! once, at the moment the clock jumps, and a time that occurs twice fires at its first
//! occurrence only. An interval job (minute or hour field starting with `*`) follows the
//! clock's instants: its ticks inside a skipped hour do not happen, and a repeated hour fires
//! twice.

use chrono::{DateTime, Datelike, Duration, NaiveDate, NaiveDateTime, TimeZone, Timelike, Utc};

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

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

struct Field {
    name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value of `names[0]`.
    first_name: u32,
}

const SECOND: Field = Field {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
const MINUTE: Field = Field {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
const HOUR: Field = Field {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    first_name: 0,
};
const DOM: Field = Field {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    first_name: 0,
};
const MONTH: Field = Field {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
    first_name: 1,
};
const DOW: Field = Field {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &DAYS,
    first_name: 0,
};

/// A parsed expression: one bit per allowed value of each field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cron {
    seconds: u64,
    minutes: u64,
    hours: u64,
    days: u64,
    months: u64,
    weekdays: u64,
    days_star: bool,
    weekdays_star: bool,
    /// An interval job (its seconds, minute or hour field starts with `*`): it follows the
    /// clock's instants through DST changes rather than the wall clock.
    interval: bool,
    with_seconds: bool,
}

fn has(bits: u64, v: u32) -> bool {
    bits & (1 << v) != 0
}

fn days_in_month(month: u32) -> u32 {
    match month {
        2 => 29,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
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

/// One value: a number or (for month and weekday) a name.
fn value(token: &str, f: &Field) -> Result<u32, String> {
    if let Ok(n) = token.parse::<u32>() {
        if n < f.min || n > f.max {
            return Err(format!("{n} is out of range {}-{}", f.min, f.max));
        }
        return Ok(n);
    }
    let lower = token.to_ascii_lowercase();
    if let Some(i) = f.names.iter().position(|n| *n == lower) {
        return Ok(f.first_name + i as u32);
    }
    let hint = if MONTHS.contains(&lower.as_str()) {
        " (a month name)"
    } else if DAYS.contains(&lower.as_str()) {
        " (a day-of-week name)"
    } else {
        ""
    };
    Err(format!("{token:?} is not a valid {} value{hint}", f.name))
}

fn parse_field(text: &str, f: &Field) -> Result<u64, CronError> {
    let err = |message: String| CronError { field: f.name, message };
    let mut bits = 0u64;
    for part in text.split(',') {
        if part.is_empty() {
            return Err(err(format!("empty item in {text:?}")));
        }
        let (range, step) = match part.split_once('/') {
            Some((r, s)) => {
                let step: u32 = s
                    .parse()
                    .ok()
                    .filter(|n| *n >= 1 && *n <= f.max)
                    .ok_or_else(|| err(format!("step {s:?} must be a whole number from 1 to {}", f.max)))?;
                (r, Some(step))
            }
            None => (part, None),
        };
        let (lo, hi) = if range == "*" || (range == "?" && (f.name == DOM.name || f.name == DOW.name)) {
            (f.min, if f.name == DOW.name { 6 } else { f.max })
        } else if let Some((a, b)) = range.split_once('-') {
            let lo = value(a, f).map_err(err)?;
            let mut hi = value(b, f).map_err(err)?;
            if f.name == DOW.name && hi == 0 && lo > 0 {
                hi = 7; // `fri-sun`
            }
            if lo > hi {
                return Err(err(format!("range {range:?} runs backwards")));
            }
            (lo, hi)
        } else {
            let v = value(range, f).map_err(err)?;
            let top = if f.name == DOW.name { 6 } else { f.max };
            (v, if step.is_some() { top } else { v })
        };
        let mut v = lo;
        while v <= hi {
            bits |= 1 << v;
            v += step.unwrap_or(1);
        }
    }
    if f.name == DOW.name && has(bits, 7) {
        bits = (bits & !(1 << 7)) | 1; // 7 is Sunday too
    }
    if bits == 0 {
        return Err(err(format!("{text:?} selects no value")));
    }
    Ok(bits)
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
            seconds: parse_field(sec, &SECOND)?,
            minutes: parse_field(rest[0], &MINUTE)?,
            hours: parse_field(rest[1], &HOUR)?,
            days: parse_field(rest[2], &DOM)?,
            months: parse_field(rest[3], &MONTH)?,
            weekdays: parse_field(rest[4], &DOW)?,
            days_star: matches!(rest[2], "*" | "?"),
            weekdays_star: matches!(rest[4], "*" | "?"),
            interval: sec.starts_with('*') || rest[0].starts_with('*') || rest[1].starts_with('*'),
            with_seconds: parts.len() == 6,
        };
        cron.check_possible()?;
        Ok(cron)
    }

    /// Refuse day-of-month/month combinations that never occur (`0 0 30 2 *`).
    fn check_possible(&self) -> Result<(), CronError> {
        if self.days_star || !self.weekdays_star {
            return Ok(()); // with a weekday restriction, some weekday always comes
        }
        let possible = (1..=12).any(|m| has(self.months, m) && (1..=days_in_month(m)).any(|d| has(self.days, d)));
        if possible {
            return Ok(());
        }
        Err(CronError {
            field: "day-of-month",
            message: "no listed day exists in any listed month, so this never fires".into(),
        })
    }

    fn day_matches(&self, d: NaiveDate) -> bool {
        let dom = has(self.days, d.day());
        let dow = has(self.weekdays, d.weekday().num_days_from_sunday());
        if self.days_star || self.weekdays_star {
            dom && dow
        } else {
            dom || dow
        }
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
        // A 29 February schedule may wait 8 years (2096 → 2104).
        let horizon = t.year() + 9;
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
    pub fn next_after<Z: TimeZone>(&self, tz: &Z, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        if self.interval {
            return self.next_instant(tz, after);
        }
        let mut local = after.with_timezone(tz).naive_local();
        loop {
            local = self.next_local(local)?;
            let at = resolve(tz, local)?;
            if at > after {
                return Some(at);
            }
        }
    }

    /// `*`-hour expressions: walk the instants and test each one's local time.
    fn next_instant<Z: TimeZone>(&self, tz: &Z, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let mut at = DateTime::<Utc>::from_naive_utc_and_offset(self.floor(after.naive_utc()), Utc) + self.unit();
        let horizon = at.year() + 9;
        while at.year() <= horizon {
            let local = at.with_timezone(tz).naive_local();
            let date = local.date();
            let next_day = |d: NaiveDate| resolve(tz, d.and_hms_opt(0, 0, 0)?);
            if !has(self.months, local.month()) || !self.day_matches(date) {
                at = next_day(date.succ_opt()?)?.max(at + self.unit());
            } else if !has(self.minutes, local.minute()) {
                at += Duration::minutes(1) - Duration::seconds(local.second() as i64);
            } else if !has(self.seconds, local.second()) {
                at += Duration::seconds(1);
            } else {
                return Some(at);
            }
        }
        None
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

/// A local time as an instant: its first occurrence if it occurs twice, and the moment the
/// clock jumps if it falls in a skipped interval.
fn resolve<Z: TimeZone>(tz: &Z, local: NaiveDateTime) -> Option<DateTime<Utc>> {
    if let Some(t) = tz.from_local_datetime(&local).earliest() {
        return Some(t.with_timezone(&Utc));
    }
    let mut m = local.with_second(0)?;
    for _ in 0..(26 * 60) {
        m += Duration::minutes(1);
        if let Some(t) = tz.from_local_datetime(&m).earliest() {
            return Some(t.with_timezone(&Utc));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono_tz::America::New_York;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s)
            .map(|d| d.with_timezone(&Utc))
            .expect("time")
    }

    /// Next fire times from 2026-11-23T10:17:00Z, as croniter 6 computes them.
    #[test]
    fn agrees_with_croniter() {
        let table: &[(&str, [&str; 4])] = &[
            (
                "*/15 * * * *",
                [
                    "2026-11-23T10:30:00Z",
                    "2026-11-23T10:45:00Z",
                    "2026-11-23T11:00:00Z",
                    "2026-11-23T11:15:00Z",
                ],
            ),
            (
                "0-30/15 * * * *",
                [
                    "2026-11-23T10:30:00Z",
                    "2026-11-23T11:00:00Z",
                    "2026-11-23T11:15:00Z",
                    "2026-11-23T11:30:00Z",
                ],
            ),
            (
                "40,0-30/15 * * * *",
                [
                    "2026-11-23T10:30:00Z",
                    "2026-11-23T10:40:00Z",
                    "2026-11-23T11:00:00Z",
                    "2026-11-23T11:15:00Z",
                ],
            ),
            (
                "0 9 * * mon-fri",
                [
                    "2026-11-24T09:00:00Z",
                    "2026-11-25T09:00:00Z",
                    "2026-11-26T09:00:00Z",
                    "2026-11-27T09:00:00Z",
                ],
            ),
            (
                "0 0 1 jan-jun *",
                [
                    "2027-01-01T00:00:00Z",
                    "2027-02-01T00:00:00Z",
                    "2027-03-01T00:00:00Z",
                    "2027-04-01T00:00:00Z",
                ],
            ),
            (
                "30 2 * * SUN",
                [
                    "2026-11-29T02:30:00Z",
                    "2026-12-06T02:30:00Z",
                    "2026-12-13T02:30:00Z",
                    "2026-12-20T02:30:00Z",
                ],
            ),
            (
                "0 0 * * 7",
                [
                    "2026-11-29T00:00:00Z",
                    "2026-12-06T00:00:00Z",
                    "2026-12-13T00:00:00Z",
                    "2026-12-20T00:00:00Z",
                ],
            ),
            (
                "0 0 13 * fri",
                [
                    "2026-11-27T00:00:00Z",
                    "2026-12-04T00:00:00Z",
                    "2026-12-11T00:00:00Z",
                    "2026-12-13T00:00:00Z",
                ],
            ),
            (
                "0 12 1,15 * 1",
                [
                    "2026-11-23T12:00:00Z",
                    "2026-11-30T12:00:00Z",
                    "2026-12-01T12:00:00Z",
                    "2026-12-07T12:00:00Z",
                ],
            ),
            (
                "23 0-20/2 * * *",
                [
                    "2026-11-23T10:23:00Z",
                    "2026-11-23T12:23:00Z",
                    "2026-11-23T14:23:00Z",
                    "2026-11-23T16:23:00Z",
                ],
            ),
            (
                "0 0 29 2 *",
                [
                    "2028-02-29T00:00:00Z",
                    "2032-02-29T00:00:00Z",
                    "2036-02-29T00:00:00Z",
                    "2040-02-29T00:00:00Z",
                ],
            ),
            (
                "0 0 31 * *",
                [
                    "2026-12-31T00:00:00Z",
                    "2027-01-31T00:00:00Z",
                    "2027-03-31T00:00:00Z",
                    "2027-05-31T00:00:00Z",
                ],
            ),
            (
                "*/7 * * * *",
                [
                    "2026-11-23T10:21:00Z",
                    "2026-11-23T10:28:00Z",
                    "2026-11-23T10:35:00Z",
                    "2026-11-23T10:42:00Z",
                ],
            ),
            (
                "0 0 * * 5-7",
                [
                    "2026-11-27T00:00:00Z",
                    "2026-11-28T00:00:00Z",
                    "2026-11-29T00:00:00Z",
                    "2026-12-04T00:00:00Z",
                ],
            ),
            (
                "0 0,12 1 */2 *",
                [
                    "2027-01-01T00:00:00Z",
                    "2027-01-01T12:00:00Z",
                    "2027-03-01T00:00:00Z",
                    "2027-03-01T12:00:00Z",
                ],
            ),
            (
                "@hourly",
                [
                    "2026-11-23T11:00:00Z",
                    "2026-11-23T12:00:00Z",
                    "2026-11-23T13:00:00Z",
                    "2026-11-23T14:00:00Z",
                ],
            ),
            (
                "@weekly",
                [
                    "2026-11-29T00:00:00Z",
                    "2026-12-06T00:00:00Z",
                    "2026-12-13T00:00:00Z",
                    "2026-12-20T00:00:00Z",
                ],
            ),
            (
                "0 0 1-7 * mon",
                [
                    "2026-11-30T00:00:00Z",
                    "2026-12-01T00:00:00Z",
                    "2026-12-02T00:00:00Z",
                    "2026-12-03T00:00:00Z",
                ],
            ),
            (
                "*/10 9-17 * * mon-fri",
                [
                    "2026-11-23T10:20:00Z",
                    "2026-11-23T10:30:00Z",
                    "2026-11-23T10:40:00Z",
                    "2026-11-23T10:50:00Z",
                ],
            ),
            (
                "0 0 * JUN-AUG *",
                [
                    "2027-06-01T00:00:00Z",
                    "2027-06-02T00:00:00Z",
                    "2027-06-03T00:00:00Z",
                    "2027-06-04T00:00:00Z",
                ],
            ),
            (
                "59 23 31 12 *",
                [
                    "2026-12-31T23:59:00Z",
                    "2027-12-31T23:59:00Z",
                    "2028-12-31T23:59:00Z",
                    "2029-12-31T23:59:00Z",
                ],
            ),
            (
                "0 0 * * fri-sun",
                [
                    "2026-11-27T00:00:00Z",
                    "2026-11-28T00:00:00Z",
                    "2026-11-29T00:00:00Z",
                    "2026-12-04T00:00:00Z",
                ],
            ),
        ];
        for (expr, want) in table {
            let cron = Cron::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
            let got: Vec<String> = cron
                .upcoming(&Utc, utc("2026-11-23T10:17:00Z"), 4)
                .iter()
                .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
                .collect();
            assert_eq!(got, want.to_vec(), "{expr}");
        }
    }

    #[test]
    fn seconds_field() {
        let cron = Cron::parse("*/20 * * * * *").expect("parse");
        let got = cron.upcoming(&Utc, utc("2026-11-23T10:17:05Z"), 3);
        let want: Vec<_> = ["2026-11-23T10:17:20Z", "2026-11-23T10:17:40Z", "2026-11-23T10:18:00Z"]
            .map(utc)
            .to_vec();
        assert_eq!(got, want);
    }

    #[test]
    fn refuses_bad_expressions_naming_the_field() {
        for (expr, field) in [
            ("0 0 30 2 *", "day-of-month"),
            ("x 0 * 2 *", "minute"),
            ("0 0 * -1 *", "month"),
            ("0 0 * mon-wed *", "month"),
            ("0 0 * * feb", "day-of-week"),
            ("0 0 * jun-jan *", "month"),
            ("60 * * * *", "minute"),
            ("* 24 * * *", "hour"),
            ("0 0 0 * *", "day-of-month"),
            ("*/0 * * * *", "minute"),
            ("0 0 * * 8", "day-of-week"),
            ("1,,2 * * * *", "minute"),
            ("* * * *", "expression"),
            ("* * * * * * *", "expression"),
            ("@reboot", "expression"),
            ("0 0 L * *", "day-of-month"),
            ("0 0 * * 7/2", "day-of-week"),
            ("5/4294967291 * * * *", "minute"),
            ("0 0 1/4294967295 * *", "day-of-month"),
        ] {
            let err = Cron::parse(expr).expect_err(expr);
            assert_eq!(err.field, field, "{expr}: {err}");
        }
        let err = Cron::parse("0 0 * mon-wed *").expect_err("names");
        assert!(err.message.contains("day-of-week name"), "{err}");
    }

    /// New York: clocks jump 02:00 → 03:00 on 2026-03-08 and fall 02:00 → 01:00 on 2026-11-01.
    #[test]
    fn daylight_saving_time() {
        let daily = Cron::parse("30 2 * * *").expect("parse");
        let got = daily.upcoming(&New_York, utc("2026-03-07T12:00:00Z"), 3);
        let want: Vec<_> = [
            "2026-03-08T02:30:00-05:00",
            "2026-03-09T02:30:00-04:00",
            "2026-03-10T02:30:00-04:00",
        ]
        .map(utc)
        .to_vec();
        assert_eq!(got[1..], want[1..], "regular days");
        assert_eq!(
            got[0],
            utc("2026-03-08T03:00:00-04:00"),
            "the skipped 02:30 runs once, when the clock jumps"
        );

        let early = Cron::parse("30 1 * * *").expect("parse");
        let got = early.upcoming(&New_York, utc("2026-10-31T12:00:00Z"), 3);
        let want: Vec<_> = [
            "2026-11-01T01:30:00-04:00",
            "2026-11-02T01:30:00-05:00",
            "2026-11-03T01:30:00-05:00",
        ]
        .map(utc)
        .to_vec();
        assert_eq!(got, want, "the repeated 01:30 runs once, at its first occurrence");

        let every = Cron::parse("*/30 * * * *").expect("parse");
        let got = every.upcoming(&New_York, utc("2026-11-01T00:45:00-04:00"), 5);
        let want: Vec<_> = [
            "2026-11-01T01:00:00-04:00",
            "2026-11-01T01:30:00-04:00",
            "2026-11-01T01:00:00-05:00",
            "2026-11-01T01:30:00-05:00",
            "2026-11-01T02:00:00-05:00",
        ]
        .map(utc)
        .to_vec();
        assert_eq!(got, want, "interval jobs follow the instants through the repeated hour");
        let got = every.upcoming(&New_York, utc("2026-03-08T01:15:00-05:00"), 3);
        let want: Vec<_> = [
            "2026-03-08T01:30:00-05:00",
            "2026-03-08T03:00:00-04:00",
            "2026-03-08T03:30:00-04:00",
        ]
        .map(utc)
        .to_vec();
        assert_eq!(got, want, "and skip the hour that does not exist");
    }
}
