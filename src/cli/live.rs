//! Live commands: `maestro logs EXECUTION [-f]` and `maestro tail`. Both read Server-Sent
//! Events and reconnect when the connection drops (a server restarting, a proxy's idle
//! timeout), saying so on stderr; `logs -f` then skips the lines it has already printed.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::inspect::{duration, get, list, s};
use super::term::{paint, spinner, status_word};
use crate::client::{seg, Client, EventStream, Refused};

/// The longest wait between two attempts to reconnect.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// An SSE stream that reconnects: `next` hands out events, and `Ok(None)` never (the caller
/// decides when it has seen enough). A refusal that will not change by retrying (401, 404)
/// ends it with that error.
struct Follow<'a> {
    client: &'a Client,
    path: String,
    stream: Option<EventStream>,
    /// How many times the stream has been (re)opened.
    opened: u32,
}

impl<'a> Follow<'a> {
    fn new(client: &'a Client, path: String) -> Self {
        Follow {
            client,
            path,
            stream: None,
            opened: 0,
        }
    }

    async fn next(&mut self) -> anyhow::Result<(String, Value)> {
        let mut backoff = Duration::from_millis(250);
        loop {
            if self.stream.is_none() {
                let waiting = (self.opened > 0).then(|| spinner("reconnecting"));
                loop {
                    match self.client.events(&self.path).await {
                        Ok(resp) => {
                            self.stream = Some(EventStream::new(resp));
                            break;
                        }
                        Err(e) if self.opened == 0 || !retryable(&e) => return Err(e),
                        Err(_) => {
                            tokio::time::sleep(backoff).await;
                            backoff = (backoff * 2).min(MAX_BACKOFF);
                        }
                    }
                }
                if let Some(w) = waiting {
                    w.finish_and_clear();
                    eprintln!("{}", paint("2", "(reconnected)"));
                }
                self.opened += 1;
            }
            let stream = self.stream.as_mut().expect("opened above");
            match stream.next().await {
                Ok(Some(event)) => return Ok(event),
                // Ended or broken before the caller was done: open it again.
                Ok(None) | Err(_) => {
                    self.stream = None;
                    eprintln!("{}", paint("2", "(connection lost: reconnecting)"));
                }
            }
        }
    }
}

/// Whether retrying may help: the server unreachable, or a 5xx while it comes back.
fn retryable(e: &anyhow::Error) -> bool {
    match e.downcast_ref::<Refused>() {
        Some(r) => r.status.is_server_error(),
        None => true,
    }
}

/// `maestro logs EXECUTION [-f]`: what each call printed; with `follow`, as it prints.
/// `json`: the stored logs as one document, or each followed event as one JSON line.
pub async fn logs(client: &Client, id: &str, follow: bool, json: bool) -> anyhow::Result<()> {
    if !follow {
        let v = get(client, &format!("/executions/{}/logs", seg(id))).await?;
        if json {
            println!("{v:#}");
            return Ok(());
        }
        for l in list(&v, "logs") {
            for line in s(&l["text"]).lines() {
                println!("[{}] {line}", s(&l["function_name"]));
            }
        }
        return Ok(());
    }
    let mut events = Follow::new(client, format!("/executions/{}/logs?follow=true", seg(id)));
    let mut lines = Lines::default();
    loop {
        let (event, data) = events.next().await?;
        match event.as_str() {
            "log" => {
                if !lines.is_new(events.opened, &s(&data["step_id"])) {
                    continue;
                }
                match json {
                    true => println!("{data}"),
                    false => println!("{}", log_line(&data)),
                }
            }
            "execution.finished" => {
                match json {
                    true => println!("{data}"),
                    false => eprintln!(
                        "{} in {}",
                        status_word(&s(&data["status"])),
                        duration(&data["duration_ms"])
                    ),
                }
                return Ok(());
            }
            "dropped" if !json => eprintln!("({} events dropped: the terminal read too slowly)", s(&data["count"])),
            _ if json => println!("{data}"),
            _ => {}
        }
    }
}

/// Which log lines are new. A reconnected stream starts again from the run's first event,
/// from a live source or from the record (which orders steps differently); within one step
/// the lines always come in order, so counting per step finds the ones already printed.
#[derive(Default)]
struct Lines {
    printed: HashMap<String, usize>,
    seen: HashMap<String, usize>,
    stream: u32,
}

impl Lines {
    /// Whether a line of `step`, arriving on the `stream`-th opening, is new.
    fn is_new(&mut self, stream: u32, step: &str) -> bool {
        if stream != self.stream {
            self.stream = stream;
            self.seen.clear();
        }
        let n = self.seen.entry(step.to_string()).or_default();
        *n += 1;
        let printed = self.printed.entry(step.to_string()).or_default();
        let new = *n > *printed;
        *printed = (*printed).max(*n);
        new
    }
}

fn log_line(data: &Value) -> String {
    let who = data["function"].as_str().unwrap_or("");
    let line = s(&data["line"]);
    match (who, data["stream"].as_str()) {
        ("", _) => line,
        (w, Some("stderr")) => format!("[{w}] {} {line}", paint("31", "(stderr)")),
        (w, _) => format!("[{w}] {line}"),
    }
}

/// `maestro tail [--function F]`: the tenant's live events, one line each (one JSON object
/// each with `json`), until Ctrl-C.
pub async fn tail(client: &Client, function: Option<&str>, json: bool) -> anyhow::Result<()> {
    let mut events = Follow::new(client, "/events".into());
    loop {
        let (event, data) = events.next().await?;
        if function.is_some_and(|f| data["function"].as_str() != Some(f)) {
            continue;
        }
        if json {
            println!("{data}");
            continue;
        }
        let exec = s(&data["execution_id"]);
        let line = match event.as_str() {
            "log" => log_line(&data),
            "execution.finished" | "step.finished" => format!(
                "{event} {} {} {}",
                s(&data["function"]),
                status_word(&s(&data["status"])),
                duration(&data["duration_ms"])
            ),
            _ => format!("{event} {}", s(&data["function"])),
        };
        println!("{exec}  {line}");
    }
}

#[cfg(test)]
mod tests {
    use super::Lines;

    #[test]
    fn a_reconnected_stream_prints_only_the_lines_not_yet_printed() {
        let mut lines = Lines::default();
        // First connection: a, a, b, then it drops.
        assert!(lines.is_new(1, "a") && lines.is_new(1, "a") && lines.is_new(1, "b"));
        // Second: replayed from the start (b's line first this time), then one more of a.
        let replay: Vec<bool> = ["b", "a", "a", "a"].iter().map(|s| lines.is_new(2, s)).collect();
        assert_eq!(replay, [false, false, false, true]);
        // Third: everything again, nothing new.
        assert!(!["a", "a", "a", "b"].iter().any(|s| lines.is_new(3, s)));
    }
}
