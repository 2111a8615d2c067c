//! Unit tests of the cron evaluator (built only under #[cfg(test)]), including the croniter table.

use chrono_tz::America::New_York;
use chrono_tz::Tz;
use serde_json::Value;

use super::*;

fn utc(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .expect("time")
}

fn next(expr: &str, tz: &Tz, after: &str, n: usize) -> Vec<DateTime<Utc>> {
    let cron = Cron::parse(expr).unwrap_or_else(|e| panic!("{expr}: {e}"));
    cron.upcoming(tz, utc(after), n)
}

/// croniter's answers (tests/fixtures/croniter/table.json, made by generate.py beside it).
#[test]
fn agrees_with_croniter_table() {
    let table: Value =
        serde_json::from_str(include_str!("../../../tests/fixtures/croniter/table.json")).expect("table");
    let cases = table["cases"].as_array().expect("cases");
    let mut wrong = Vec::new();
    let mut same_as_croniter = 0;
    for case in cases {
        let expr = case["expr"].as_str().expect("expr");
        let tz: Tz = case["tz"].as_str().expect("tz").parse().expect("zone");
        let want: Vec<DateTime<Utc>> = case["next"]
            .as_array()
            .expect("next")
            .iter()
            .map(|t| utc(t.as_str().expect("time")))
            .collect();
        let got = next(expr, &tz, case["after"].as_str().expect("after"), want.len());
        if got != want {
            wrong.push(format!(
                "{expr:?} in {tz} after {}: got {got:?}, want {want:?}",
                case["after"]
            ));
        } else if case.get("croniter").is_none() {
            same_as_croniter += 1;
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases differ:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
    assert!(
        same_as_croniter >= 500,
        "only {same_as_croniter} cases are croniter's own answer"
    );
}

/// A restricted hour after a `*` minute or second (the expression is an interval job).
#[test]
fn star_minute_keeps_the_hour() {
    let got = next("* 10 * * *", &Tz::UTC, "2024-01-31T00:00:00Z", 3);
    let want: Vec<_> = ["2024-01-31T10:00:00Z", "2024-01-31T10:01:00Z", "2024-01-31T10:02:00Z"]
        .map(utc)
        .to_vec();
    assert_eq!(got, want);
    let got = next("* 10 * * *", &Tz::UTC, "2024-01-31T10:59:00Z", 1);
    assert_eq!(
        got,
        vec![utc("2024-02-01T10:00:00Z")],
        "after 10:59 comes the next day's 10:00"
    );
    let got = next("*/5 9-17 * * mon-fri", &Tz::UTC, "2026-11-27T17:55:00Z", 1);
    assert_eq!(
        got,
        vec![utc("2026-11-30T09:00:00Z")],
        "Friday evening to Monday morning"
    );
}

#[test]
fn seconds_field() {
    let got = next("*/20 * * * * *", &Tz::UTC, "2026-11-23T10:17:05Z", 3);
    let want: Vec<_> = ["2026-11-23T10:17:20Z", "2026-11-23T10:17:40Z", "2026-11-23T10:18:00Z"]
        .map(utc)
        .to_vec();
    assert_eq!(got, want);
}

#[test]
fn extensions() {
    let dates = |expr: &str| -> Vec<String> {
        next(expr, &Tz::UTC, "2024-01-01T00:00:00Z", 4)
            .iter()
            .map(|t| t.format("%m-%d").to_string())
            .collect()
    };
    assert_eq!(dates("0 0 L * *"), ["01-31", "02-29", "03-31", "04-30"]);
    assert_eq!(dates("0 0 * * L5"), ["01-26", "02-23", "03-29", "04-26"]);
    assert_eq!(dates("0 0 * * 5L"), dates("0 0 * * L5"), "Quartz's spelling");
    assert_eq!(dates("0 0 * * FRIL"), dates("0 0 * * L5"));
    assert_eq!(dates("0 0 * * fri#2"), ["01-12", "02-09", "03-08", "04-12"]);
    assert_eq!(dates("0 0 * * 5#5"), ["03-29", "05-31", "08-30", "11-29"]);
    // 1 June 2024 is a Saturday (so Monday the 3rd), 1 September a Sunday (Monday the 2nd).
    let w: Vec<String> = next("0 0 1W * *", &Tz::UTC, "2024-05-15T00:00:00Z", 4)
        .iter()
        .map(|t| t.format("%m-%d").to_string())
        .collect();
    assert_eq!(w, ["06-03", "07-01", "08-01", "09-02"]);
    assert_eq!(dates("0 0 31W * *"), ["01-31", "02-29", "03-29", "04-30"]);
    // Rare days are still found (croniter agrees): a fifth Friday in February.
    let rare = next("0 0 * 2 5#5", &Tz::UTC, "2026-01-01T00:00:00Z", 2);
    assert_eq!(rare, vec![utc("2036-02-29T00:00:00Z"), utc("2064-02-29T00:00:00Z")]);
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
        ("0 0 * * 7/2", "day-of-week"),
        ("5/4294967291 * * * *", "minute"),
        ("0 0 1/4294967295 * *", "day-of-month"),
        ("L * * * *", "minute"),
        ("0 L * * *", "hour"),
        ("0 0 * L *", "month"),
        ("0 0 LW * *", "day-of-month"),
        ("0 0 L-2 * *", "day-of-month"),
        ("0 0 1W,15W * *", "day-of-month"),
        ("0 0 1-5W * *", "day-of-month"),
        ("0 0 32W * *", "day-of-month"),
        ("0 0 15W * 1", "day-of-month"),
        ("0 0 * * 5#6", "day-of-week"),
        ("0 0 * * 5#0", "day-of-week"),
        ("0 0 * * 8#1", "day-of-week"),
        ("0 0 * * L", "day-of-week"),
        ("0 0 * * L8", "day-of-week"),
        ("0 0 * * L5,1", "day-of-week"),
        ("0 0 * * 1-5#2", "day-of-week"),
        ("0 0 1 * 5#2", "day-of-week"),
        ("0 0 15 * L5", "day-of-week"),
        ("0 0 * * 1#1/2", "day-of-week"),
        ("0 0 * 5#2 *", "month"),
    ] {
        let err = Cron::parse(expr).expect_err(expr);
        assert_eq!(err.field, field, "{expr}: {err}");
    }
    let err = Cron::parse("0 0 * mon-wed *").expect_err("names");
    assert!(err.message.contains("day-of-week name"), "{err}");
}

/// Liberia kept an offset of -0:44:30 until 1972: local minutes are not UTC minutes (croniter
/// agrees on these).
#[test]
fn offsets_that_are_not_whole_minutes() {
    let monrovia: Tz = "Africa/Monrovia".parse().expect("zone");
    let got = next("0 12 * * *", &monrovia, "1970-01-01T00:00:00Z", 2);
    assert_eq!(got, vec![utc("1970-01-01T12:44:30Z"), utc("1970-01-02T12:44:30Z")]);
    let got = next("*/30 * * * *", &monrovia, "1970-01-01T00:00:00Z", 3);
    let want: Vec<_> = ["1970-01-01T00:14:30Z", "1970-01-01T00:44:30Z", "1970-01-01T01:14:30Z"]
        .map(utc)
        .to_vec();
    assert_eq!(got, want);
}

/// New York: clocks jump 02:00 → 03:00 on 2026-03-08 and fall 02:00 → 01:00 on 2026-11-01.
#[test]
fn daylight_saving_time() {
    let got = next("30 2 * * *", &New_York, "2026-03-07T12:00:00Z", 3);
    let want: Vec<_> = [
        "2026-03-08T03:00:00-04:00",
        "2026-03-09T02:30:00-04:00",
        "2026-03-10T02:30:00-04:00",
    ]
    .map(utc)
    .to_vec();
    assert_eq!(got, want, "the skipped 02:30 runs once, when the clock jumps");

    let got = next("30 1 * * *", &New_York, "2026-10-31T12:00:00Z", 3);
    let want: Vec<_> = [
        "2026-11-01T01:30:00-04:00",
        "2026-11-02T01:30:00-05:00",
        "2026-11-03T01:30:00-05:00",
    ]
    .map(utc)
    .to_vec();
    assert_eq!(got, want, "the repeated 01:30 runs once, at its first occurrence");

    let got = next("*/30 * * * *", &New_York, "2026-11-01T00:45:00-04:00", 5);
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

    let got = next("*/15 2 * * *", &New_York, "2026-03-08T01:15:00-05:00", 2);
    let want: Vec<_> = ["2026-03-08T03:00:00-04:00", "2026-03-09T02:00:00-04:00"]
        .map(utc)
        .to_vec();
    assert_eq!(got, want, "the skipped hour's ticks fire once, when the clock jumps");
}
