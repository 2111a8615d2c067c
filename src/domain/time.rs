//! Times: the store keeps unix milliseconds; everything shown is RFC 3339 (UTC, milliseconds).

use serde::Serializer;

/// Serialize unix milliseconds as RFC 3339 (for `#[serde(serialize_with)]`).
pub fn iso_ms<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&iso(*ms))
}

/// `iso_ms` for an optional time.
pub fn iso_ms_opt<S: Serializer>(ms: &Option<i64>, s: S) -> Result<S::Ok, S::Error> {
    match ms {
        Some(ms) => s.serialize_str(&iso(*ms)),
        None => s.serialize_none(),
    }
}

/// Milliseconds since the epoch as RFC 3339 (UTC, milliseconds).
pub fn iso(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}
