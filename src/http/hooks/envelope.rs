//! A webhook request as a function's input: `{"body", "headers", "query", "method", "path"}`.

use axum::http::{header, HeaderMap, Method};
use base64::Engine as _;
use serde_json::{json, Map, Value};

use crate::http::error::ApiError;

/// Names and values of `a=1&b=2&b=3` as a dict: one value is a string, a repeated name a list.
pub fn pairs_to_dict<'a>(pairs: impl Iterator<Item = (std::borrow::Cow<'a, str>, std::borrow::Cow<'a, str>)>) -> Value {
    let mut out = Map::new();
    for (k, v) in pairs {
        let v = Value::String(v.into_owned());
        match out.get_mut(k.as_ref()) {
            None => {
                out.insert(k.into_owned(), v);
            }
            Some(Value::Array(list)) => list.push(v),
            Some(first) => *first = json!([first.take(), v]),
        }
    }
    Value::Object(out)
}

/// The query string as a dict, without Maestro's own `async` parameter.
pub fn query_dict(query: Option<&str>) -> Value {
    let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes()).filter(|(k, _)| k != "async");
    pairs_to_dict(pairs)
}

/// Header names (lower-case, as HTTP/2 sends them) to values; repeated headers are joined
/// with `, ` as RFC 9110 allows.
pub fn header_dict(headers: &HeaderMap) -> Value {
    let mut out = Map::new();
    for name in headers.keys() {
        let values: Vec<String> = headers
            .get_all(name)
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .collect();
        out.insert(name.as_str().to_string(), Value::String(values.join(", ")));
    }
    Value::Object(out)
}

/// The body as the function sees it: parsed JSON for a JSON content type (malformed JSON is a
/// 400: the sender said JSON and did not send it), a dict for a URL-encoded form (unless it
/// is a JSON object or array, which is what `curl -d` sends under that label), text
/// otherwise, `null` when empty. Bytes that are not UTF-8 arrive base64-encoded, flagged by
/// `body_encoding: "base64"` in the envelope.
pub fn body_value(headers: &HeaderMap, bytes: &[u8]) -> Result<(Value, Option<&'static str>), ApiError> {
    if bytes.is_empty() {
        return Ok((Value::Null, None));
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let essence = content_type.split(';').next().unwrap_or("").trim();
    if essence == "application/json" || essence.ends_with("+json") {
        return serde_json::from_slice(bytes)
            .map(|v| (v, None))
            .map_err(|e| ApiError::BadRequest(format!("the body is not valid JSON (Content-Type: {essence}): {e}")));
    }
    if essence == "application/x-www-form-urlencoded" {
        // `curl -d '{"a": 1}'` labels JSON as a form: a JSON object or array is read as JSON.
        if matches!(bytes.trim_ascii_start().first(), Some(b'{' | b'[')) {
            if let Ok(v) = serde_json::from_slice(bytes) {
                return Ok((v, None));
            }
        }
        return Ok((pairs_to_dict(form_urlencoded::parse(bytes)), None));
    }
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok((Value::String(text.to_string()), None)),
        Err(_) => Ok((
            Value::String(base64::engine::general_purpose::STANDARD.encode(bytes)),
            Some("base64"),
        )),
    }
}

/// The whole request as one input.
pub fn envelope(method: &Method, path: &str, query: Value, headers: Value, body: (Value, Option<&str>)) -> Value {
    let mut input = json!({
        "body": body.0,
        "headers": headers,
        "query": query,
        "method": method.as_str(),
        "path": path,
    });
    if let Some(encoding) = body.1 {
        input["body_encoding"] = json!(encoding);
    }
    input
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_and_form_dicts() {
        assert_eq!(
            query_dict(Some("a=1&b=x%20y&b=3&async=true")),
            json!({"a": "1", "b": ["x y", "3"]})
        );
        assert_eq!(query_dict(None), json!({}));
    }

    #[test]
    fn bodies_by_content_type() -> Result<(), ApiError> {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            "application/json; charset=utf-8".parse().map_err(anyhow::Error::from)?,
        );
        assert_eq!(body_value(&h, br#"{"a":1}"#)?.0, json!({"a": 1}));
        assert!(body_value(&h, b"{nope").is_err());
        h.insert(
            header::CONTENT_TYPE,
            "application/x-www-form-urlencoded"
                .parse()
                .map_err(anyhow::Error::from)?,
        );
        assert_eq!(body_value(&h, b"x=1&y=2")?.0, json!({"x": "1", "y": "2"}));
        assert_eq!(body_value(&h, br#"{"name": "Claude"}"#)?.0, json!({"name": "Claude"}));
        assert_eq!(body_value(&h, b"{x=1")?.0, json!({"{x": "1"}));
        h.remove(header::CONTENT_TYPE);
        assert_eq!(body_value(&h, b"plain")?.0, json!("plain"));
        assert_eq!(body_value(&h, &[0xff, 0x00])?, (json!("/wA="), Some("base64")));
        assert_eq!(body_value(&h, b"")?.0, Value::Null);
        Ok(())
    }
}
