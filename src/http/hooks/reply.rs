//! A function's return value as the webhook's HTTP answer.
//!
//! A plain value is sent as JSON with status 200. A function shapes the answer itself by
//! returning `{"__http_response__": {"status_code": 201, "headers": {...}, "body": ...}}`
//! (what `maestro.http_response(body, status_code, headers)` builds): a string body is sent
//! as text, `null` as nothing, anything else as JSON.

use axum::body::Body;
use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::{Map, Value};

/// The key that marks a shaped response.
pub const MARKER: &str = "__http_response__";

/// Headers a function may not set: the connection and framing belong to the server, and the
/// rest would let tenant code act on the API's own origin (cookies, CORS, HSTS, request ids).
const RESERVED: [&str; 14] = [
    "connection",
    "content-encoding",
    "content-length",
    "keep-alive",
    "proxy-authenticate",
    "proxy-connection",
    "set-cookie",
    "strict-transport-security",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "x-content-type-options",
    "x-request-id",
];

fn reserved(name: &str) -> bool {
    RESERVED.contains(&name) || name.starts_with("access-control-") || name.starts_with("x-maestro-")
}

/// The answer for a successful run; `Err` says why a shaped response is unusable.
pub fn response(output: &Value) -> Result<Response, String> {
    match output.as_object().and_then(|o| o.get(MARKER).filter(|_| o.len() == 1)) {
        Some(Value::Object(spec)) => shaped(spec),
        Some(_) => Err(format!("`{MARKER}` must be an object")),
        None => Ok(build(StatusCode::OK, &[], Some(output), false)),
    }
}

fn shaped(spec: &Map<String, Value>) -> Result<Response, String> {
    if let Some(k) = spec
        .keys()
        .find(|k| !["status_code", "headers", "body"].contains(&k.as_str()))
    {
        return Err(format!("unknown key `{k}` (use status_code, headers, body)"));
    }
    let status = match spec.get("status_code") {
        None | Some(Value::Null) => StatusCode::OK,
        Some(v) => v
            .as_u64()
            .filter(|c| (200..=599).contains(c))
            .and_then(|c| StatusCode::from_u16(c as u16).ok())
            .ok_or_else(|| format!("status_code must be an integer from 200 to 599, not {v}"))?,
    };
    let mut headers = vec![];
    match spec.get("headers") {
        None | Some(Value::Null) => {}
        Some(Value::Object(h)) => {
            for (k, v) in h {
                let name = HeaderName::from_bytes(k.as_bytes()).map_err(|_| format!("invalid header name {k:?}"))?;
                if reserved(name.as_str()) {
                    return Err(format!("the header {k:?} is set by the server"));
                }
                let text = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(n) => n.to_string(),
                    Value::Bool(b) => b.to_string(),
                    _ => return Err(format!("header {k:?} must be a string or a number")),
                };
                let value = HeaderValue::from_str(&text).map_err(|_| format!("invalid value for header {k:?}"))?;
                headers.push((name, value));
            }
        }
        Some(_) => return Err("headers must be an object of names to values".into()),
    }
    Ok(build(status, &headers, spec.get("body"), true))
}

/// A shaped body sends a string as text and `null` as nothing; a plain return value is
/// always JSON.
fn build(status: StatusCode, headers: &[(HeaderName, HeaderValue)], body: Option<&Value>, shaped: bool) -> Response {
    let (content_type, bytes) = match body {
        None | Some(Value::Null) if shaped => (None, Vec::new()),
        Some(Value::String(s)) if shaped => (Some("text/plain; charset=utf-8"), s.clone().into_bytes()),
        None => (Some("application/json"), b"null".to_vec()),
        Some(v) => (Some("application/json"), v.to_string().into_bytes()),
    };
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(ct) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    }
    for (name, value) in headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    // Tenant content on the API's origin: never sniffed into something else, and when the
    // function chose the type, sandboxed (no scripts, no same-origin access).
    let h = response.headers_mut();
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if shaped {
        h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static("sandbox"));
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_and_shaped() -> Result<(), String> {
        let r = response(&json!({"ok": true}))?;
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()[header::CONTENT_TYPE], "application/json");
        let r = response(
            &json!({MARKER: {"status_code": 201, "headers": {"X-A": "1", "Content-Type": "text/csv"}, "body": "a,b"}}),
        )?;
        assert_eq!(r.status(), StatusCode::CREATED);
        assert_eq!(r.headers()["x-a"], "1");
        assert_eq!(r.headers()[header::CONTENT_TYPE], "text/csv");
        // A marker next to other keys is just data.
        assert_eq!(response(&json!({MARKER: 1, "other": 2}))?.status(), StatusCode::OK);
        for bad in [
            json!({MARKER: {"status_code": 99}}),
            json!({MARKER: {"status_code": "200"}}),
            json!({MARKER: {"headers": {"Content-Length": "1"}}}),
            json!({MARKER: {"headers": {"Set-Cookie": "session=x"}}}),
            json!({MARKER: {"headers": {"Access-Control-Allow-Origin": "*"}}}),
            json!({MARKER: {"headers": {"X-Maestro-Execution-Id": "forged"}}}),
            json!({MARKER: {"headers": {"X": "a\nb"}}}),
            json!({MARKER: {"headers": ["x"]}}),
            json!({MARKER: {"statuscode": 200}}),
            json!({MARKER: "nope"}),
        ] {
            assert!(response(&bad).is_err(), "{bad}");
        }
        Ok(())
    }
}
