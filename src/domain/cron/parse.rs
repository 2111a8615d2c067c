//! Reading the fields of an expression: plain items (numbers, names, ranges, steps, `*`) into
//! one bit per allowed value, plus croniter's extensions in the two day fields.

use super::{CronError, DayField, Nth, WeekdayField};

const MONTHS: [&str; 12] = [
    "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
];
const DAYS: [&str; 7] = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"];

/// One field's name, range and value names.
pub(super) struct Spec {
    pub name: &'static str,
    min: u32,
    max: u32,
    names: &'static [&'static str],
    /// The value of `names[0]`.
    first_name: u32,
}

pub(super) const SECOND: Spec = Spec {
    name: "second",
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
pub(super) const MINUTE: Spec = Spec {
    name: "minute",
    min: 0,
    max: 59,
    names: &[],
    first_name: 0,
};
pub(super) const HOUR: Spec = Spec {
    name: "hour",
    min: 0,
    max: 23,
    names: &[],
    first_name: 0,
};
pub(super) const DOM: Spec = Spec {
    name: "day-of-month",
    min: 1,
    max: 31,
    names: &[],
    first_name: 0,
};
pub(super) const MONTH: Spec = Spec {
    name: "month",
    min: 1,
    max: 12,
    names: &MONTHS,
    first_name: 1,
};
pub(super) const DOW: Spec = Spec {
    name: "day-of-week",
    min: 0,
    max: 7,
    names: &DAYS,
    first_name: 0,
};

pub(super) fn has(bits: u64, v: u32) -> bool {
    bits & (1 << v) != 0
}

fn error(f: &Spec, message: String) -> CronError {
    CronError { field: f.name, message }
}

/// One value: a number or (for month and weekday) a name.
fn value(token: &str, f: &Spec) -> Result<u32, String> {
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
    } else if f.name == DOM.name && lower.contains('l') {
        " (`L` stands alone or ends a range: `L`, `28-L`)"
    } else {
        ""
    };
    Err(format!("{token:?} is not a valid {} value{hint}", f.name))
}

/// A weekday as a number 0-6 (7 is Sunday too).
fn weekday(token: &str) -> Result<u32, CronError> {
    value(token, &DOW).map(|v| v % 7).map_err(|m| error(&DOW, m))
}

/// One plain item (`*`, `5`, `1-5`, `*/15`, `0-30/15`, `5/10`, names) as bits.
fn item_bits(part: &str, f: &Spec) -> Result<u64, CronError> {
    let err = |message: String| error(f, message);
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
    let top = if f.name == DOW.name { 6 } else { f.max };
    let (lo, hi) = if range == "*" || (range == "?" && (f.name == DOM.name || f.name == DOW.name)) {
        (f.min, top)
    } else if let Some((a, b)) = range.split_once('-') {
        let lo = value(a, f).map_err(err)?;
        let mut hi = if f.name == DOM.name && b.eq_ignore_ascii_case("l") {
            f.max // `28-L`: to the month's last day (days past it never come)
        } else {
            value(b, f).map_err(err)?
        };
        if f.name == DOW.name && hi == 0 && lo > 0 {
            hi = 7; // `fri-sun`
        }
        if lo > hi {
            return Err(err(format!("range {range:?} runs backwards")));
        }
        (lo, hi)
    } else {
        let v = value(range, f).map_err(err)?;
        (v, if step.is_some() { top } else { v })
    };
    let mut bits = 0u64;
    let mut v = lo;
    while v <= hi {
        bits |= 1 << v;
        v += step.unwrap_or(1);
    }
    Ok(bits)
}

/// The comma-separated items of a field, each handed to `item` (which may consume it).
fn items<'a>(text: &'a str, f: &Spec) -> Result<Vec<&'a str>, CronError> {
    let parts: Vec<&str> = text.split(',').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(error(f, format!("empty item in {text:?}")));
    }
    Ok(parts)
}

/// A field of plain items only (seconds, minutes, hours, months).
pub(super) fn plain(text: &str, f: &Spec) -> Result<u64, CronError> {
    let mut bits = 0;
    for part in items(text, f)? {
        bits |= item_bits(part, f)?;
    }
    if bits == 0 {
        return Err(error(f, format!("{text:?} selects no value")));
    }
    Ok(bits)
}

/// Day-of-month: plain items, `L` (the month's last day, also as a range end: `28-L`), or
/// one `nW` (the weekday nearest day n, within the month).
pub(super) fn days(text: &str) -> Result<DayField, CronError> {
    let lower = text.to_ascii_lowercase();
    if let Some(day) = lower.strip_suffix('w') {
        if day == "l" {
            return Err(error(
                &DOM,
                "`LW` is not supported; use `L` or a day such as `28W`".into(),
            ));
        }
        if day.contains([',', '-', '/', '*']) {
            return Err(error(
                &DOM,
                format!("{text:?}: W takes one day (`15W`), not a list, range or step"),
            ));
        }
        let n = value(day, &DOM).map_err(|m| error(&DOM, m))?;
        return Ok(DayField {
            nearest: Some(n),
            ..DayField::default()
        });
    }
    let mut field = DayField::default();
    for part in items(&lower, &DOM)? {
        if part == "l" {
            field.last = true;
        } else {
            field.bits |= item_bits(part, &DOM)?;
        }
    }
    if field.bits == 0 && !field.last {
        return Err(error(&DOM, format!("{text:?} selects no value")));
    }
    Ok(field)
}

/// Day-of-week: plain items, or nth-weekday items: `5#2` (the second Friday), `L5` or `5L`
/// (the last Friday). One field holds one kind or the other, as in croniter.
pub(super) fn weekdays(text: &str) -> Result<WeekdayField, CronError> {
    let lower = text.to_ascii_lowercase();
    let mut field = WeekdayField::default();
    for part in items(&lower, &DOW)? {
        if let Some((day, k)) = part.split_once('#') {
            let k = k
                .parse::<u32>()
                .ok()
                .filter(|k| (1..=5).contains(k))
                .ok_or_else(|| error(&DOW, format!("{part:?}: the number after # must be 1 to 5")))?;
            field.nth.push((weekday(day)?, Nth::Index(k)));
        } else if part == "l" {
            return Err(error(
                &DOW,
                "`L` needs a weekday: `L5` or `5L` is the month's last Friday".into(),
            ));
        } else if let Some(day) = part.strip_prefix('l').or_else(|| part.strip_suffix('l')) {
            field.nth.push((weekday(day)?, Nth::Last));
        } else {
            let mut bits = item_bits(part, &DOW)?;
            if has(bits, 7) {
                bits = (bits & !(1 << 7)) | 1; // 7 is Sunday too
            }
            field.bits |= bits;
        }
    }
    if field.nth.is_empty() && field.bits == 0 {
        return Err(error(&DOW, format!("{text:?} selects no value")));
    }
    if !field.nth.is_empty() && field.bits != 0 {
        return Err(error(
            &DOW,
            format!("{text:?} mixes `#`/`L` weekdays with plain ones; use one kind in a field"),
        ));
    }
    Ok(field)
}
