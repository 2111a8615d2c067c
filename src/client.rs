//! The API as the `maestro` CLI's commands call it: a base URL and a token, JSON in and out,
//! and the server's own error message when it refuses.

use std::time::{Duration, Instant};

use anyhow::Context;
use reqwest::{Method, StatusCode};
use serde_json::Value;

/// `s` as one path segment of a URL (names, ids; unreserved characters kept as they are).
pub fn seg(s: &str) -> String {
    const SEGMENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'_')
        .remove(b'.')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(s, SEGMENT).to_string()
}

/// The server refused a call: its status and what it said, with the next step a person
/// can take where the status tells it.
#[derive(Debug)]
pub struct Refused {
    pub status: StatusCode,
    pub text: String,
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hint = match self.status {
            StatusCode::UNAUTHORIZED => {
                "\nthe token is missing, expired or signed for another server: `maestro login URL` saves a new one \
                 (a --token, MAESTRO_TOKEN or --profile given here goes before the saved one)"
            }
            StatusCode::FORBIDDEN => "\nthe token's role or tenant may not do this",
            StatusCode::SERVICE_UNAVAILABLE => "\nthe server or a service it needs is down: try again shortly",
            _ => "",
        };
        write!(f, "{}{hint}", self.text)
    }
}

impl std::error::Error for Refused {}

/// What to try when the server cannot be reached at all.
fn unreachable(base: &str) -> String {
    format!(
        "cannot reach {base}: is a Maestro server running there? (`maestro serve` starts one; \
         `maestro login URL` or MAESTRO_URL points the CLI at another)"
    )
}

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    pub fn new(base: &str, token: &str) -> Client {
        Client {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
        }
    }

    /// Call `/api/v1{path}`; answers the status and the JSON body (null when not JSON).
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<(StatusCode, Value)> {
        let mut req = self
            .http
            .request(method, format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.with_context(|| unreachable(&self.base))?;
        let status = resp.status();
        let text = resp.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
    }

    /// Fail with the server's message unless `status` is one of `ok`.
    pub async fn call_ok(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        ok: &[StatusCode],
    ) -> anyhow::Result<Value> {
        let (status, v) = self.call(method.clone(), path, body).await?;
        if !ok.contains(&status) {
            let message = v["error"]["message"]
                .as_str()
                .map_or_else(|| v.to_string(), str::to_string);
            let text = format!("{method} {path}: {status}: {message}");
            return Err(Refused { status, text }.into());
        }
        Ok(v)
    }

    /// Cancel execution `id`; with `wait`, until it has ended (up to `wait`). Answers the
    /// execution as last seen.
    pub async fn cancel_execution(&self, id: &str, wait: Option<Duration>) -> anyhow::Result<Value> {
        let path = format!("/executions/{id}");
        let ok = [StatusCode::OK, StatusCode::ACCEPTED];
        let answer = self.call_ok(Method::POST, &format!("{path}/cancel"), None, &ok).await?;
        let Some(wait) = wait else {
            return Ok(answer);
        };
        let until = Instant::now() + wait;
        loop {
            let e = self.call_ok(Method::GET, &path, None, &[StatusCode::OK]).await?;
            let status = e["status"].as_str().unwrap_or("");
            if !matches!(status, "queued" | "running") || Instant::now() >= until {
                return Ok(e);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Run `code` once (`POST /run`); answers the server's answer.
    pub async fn run_code(&self, code: &str, input: Option<Value>, timeout: Option<f64>) -> anyhow::Result<Value> {
        let mut body = serde_json::json!({ "code": code });
        if let Some(i) = input {
            body["input"] = i;
        }
        if let Some(t) = timeout {
            body["timeout_seconds"] = t.into();
        }
        self.call_ok(Method::POST, "/run", Some(&body), &[StatusCode::OK]).await
    }

    /// Run `code` as the next cell of session `id`.
    pub async fn run_cell(&self, id: &str, code: &str) -> anyhow::Result<Value> {
        let body = serde_json::json!({ "code": code });
        let path = format!("/sessions/{id}/run");
        self.call_ok(Method::POST, &path, Some(&body), &[StatusCode::OK]).await
    }
}

/// A run's answer for a terminal: what it printed, then each result as text (an image by its
/// size), on stdout; its stderr and error (with the traceback) on stderr.
pub fn render_run(answer: &Value) -> (String, String) {
    let text = |k: &str| answer[k].as_str().unwrap_or("").to_string();
    let mut out = text("stdout");
    for r in answer["results"].as_array().into_iter().flatten() {
        let line = match (r["text"].as_str(), r["png"].as_str()) {
            (_, Some(png)) => format!("[image/png, {} bytes]", png.len() / 4 * 3),
            (Some(t), None) => t.to_string(),
            (None, None) => r.to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    let mut err = text("stderr");
    if let Some(e) = answer["error"].as_object() {
        let traceback = e.get("traceback").and_then(Value::as_str).unwrap_or("");
        if traceback.is_empty() {
            let name = e.get("name").and_then(Value::as_str).unwrap_or("error");
            let value = e.get("value").and_then(Value::as_str).unwrap_or("");
            err.push_str(&format!("{name}: {value}\n"));
        } else {
            err.push_str(traceback);
        }
    }
    (out, err)
}

impl Client {
    /// The base URL, as given.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// Open the Server-Sent Events stream at `/api/v1{path}`; fails with the server's
    /// message unless it answers 200.
    pub async fn events(&self, path: &str) -> anyhow::Result<reqwest::Response> {
        let resp = self
            .http
            .get(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.token)
            .header("accept", "text/event-stream")
            .send()
            .await
            .with_context(|| unreachable(&self.base))?;
        if resp.status() != StatusCode::OK {
            let status = resp.status();
            let v: Value = serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null);
            let text = format!("GET {path}: {status}: {}", v["error"]["message"].as_str().unwrap_or(""));
            return Err(Refused { status, text }.into());
        }
        Ok(resp)
    }
}

/// Server-Sent Events read off a response as they arrive: `(event, data)` pairs.
pub struct EventStream {
    resp: reqwest::Response,
    /// Bytes received and not yet read as events: a chunk may end inside a character or
    /// between the `\r\n`s of an event's end.
    buf: Vec<u8>,
}

impl EventStream {
    pub fn new(resp: reqwest::Response) -> Self {
        EventStream { resp, buf: Vec::new() }
    }

    /// The next event, or None when the stream ended.
    pub async fn next(&mut self) -> anyhow::Result<Option<(String, Value)>> {
        loop {
            if let Some(end) = event_end(&self.buf) {
                let raw: Vec<u8> = self.buf.drain(..end).collect();
                let block = String::from_utf8_lossy(&raw).replace("\r\n", "\n");
                let (mut event, mut data) = (String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(e) = line.strip_prefix("event:") {
                        event = e.trim().to_string();
                    } else if let Some(d) = line.strip_prefix("data:") {
                        data.push_str(d.strip_prefix(' ').unwrap_or(d));
                    }
                }
                if data.is_empty() {
                    continue; // a keep-alive comment
                }
                return Ok(Some((
                    event,
                    serde_json::from_str(&data).unwrap_or(Value::String(data)),
                )));
            }
            match self.resp.chunk().await? {
                Some(bytes) => self.buf.extend_from_slice(&bytes),
                None => return Ok(None),
            }
        }
    }
}

/// Where the first complete event of `buf` ends (after its blank line: `\n\n` or `\r\n\r\n`).
fn event_end(buf: &[u8]) -> Option<usize> {
    (0..buf.len()).find_map(|i| {
        let rest = &buf[i..];
        if rest.starts_with(b"\n\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\r\n\r\n") {
            Some(i + 4)
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::event_end;

    #[test]
    fn an_event_ends_at_its_blank_line_whatever_the_line_ends() {
        assert_eq!(event_end(b"event: a\ndata: 1\n\nevent: b"), Some(18));
        assert_eq!(event_end(b"data: 1\r\n\r\n"), Some(11));
        // Cut between the two line ends, or inside a character: not an event yet.
        assert_eq!(event_end(b"data: 1\r\n\r"), None);
        assert_eq!(event_end("data: caf\u{e9}".as_bytes()), None);
    }
}
