//! Live commands: `maestro logs EXECUTION [-f]` and `maestro tail`. Both read Server-Sent
//! Events and reconnect when the connection drops (a server restarting, a proxy's idle
//! timeout), saying so on stderr; `logs -f` then skips the lines it has already printed.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use super::inspect::{duration, get, list, s};
use super::term::{paint, paint_err, spinner, status_err, status_word};
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
    /// Reopenings in a row that brought no event: a stream that keeps closing empty is an
    /// answer, not a glitch.
    empty: u32,
    /// The wait before the next attempt; back to the start once an event arrives.
    backoff: Duration,
}

/// Reopenings in a row without an event before `Follow` gives up.
const MAX_EMPTY: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

impl<'a> Follow<'a> {
    fn new(client: &'a Client, path: String) -> Self {
        Follow {
            client,
            path,
            stream: None,
            opened: 0,
            empty: 0,
            backoff: FIRST_BACKOFF,
        }
    }

    async fn next(&mut self) -> anyhow::Result<(String, Value)> {
        loop {
            if self.stream.is_none() {
                self.open().await?;
            }
            let stream = self.stream.as_mut().expect("opened above");
            match stream.next().await {
                Ok(Some(event)) => {
                    self.empty = 0;
                    self.backoff = FIRST_BACKOFF;
                    return Ok(event);
                }
                // Ended or broken before the caller was done: open it again.
                Ok(None) => self.lost("the server closed the stream"),
                Err(e) => self.lost(&format!("{e:#}")),
            }
        }
    }

    fn lost(&mut self, why: &str) {
        self.stream = None;
        self.empty += 1;
        eprintln!("{}", paint_err("2", &format!("(connection lost: {why}; reconnecting)")));
    }

    /// Open the stream; after the first time, wait (backing off) between attempts.
    async fn open(&mut self) -> anyhow::Result<()> {
        if self.empty >= MAX_EMPTY {
            anyhow::bail!("the event stream closed {MAX_EMPTY} times in a row without an event: giving up");
        }
        let waiting = (self.opened > 0).then(|| spinner("reconnecting"));
        loop {
            if self.opened > 0 {
                tokio::time::sleep(self.backoff).await;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
            }
            match self.client.events(&self.path).await {
                Ok(resp) => {
                    self.stream = Some(EventStream::new(resp));
                    break;
                }
                Err(e) if self.opened == 0 || !retryable(&e) => return Err(e),
                Err(_) => {}
            }
        }
        if let Some(w) = waiting {
            w.finish_and_clear();
            eprintln!("{}", paint_err("2", "(reconnected)"));
        }
        self.opened += 1;
        Ok(())
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
    let mut seen = Seen::default();
    loop {
        let (event, mut data) = events.next().await?;
        if !seen.is_new(events.opened, &event, &data) {
            continue;
        }
        seen.name(&event, &mut data);
        match event.as_str() {
            "log" if !json => println!("{}", log_line(&data)),
            "execution.finished" => {
                match json {
                    true => println!("{data}"),
                    false => eprintln!(
                        "{} in {}",
                        status_err(&s(&data["status"])),
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

/// Which events are new, and whose calls they are about. A reconnected stream starts again
/// from the run's first event, from a live source or from the record (which orders steps,
/// and a step's stdout and stderr, differently); within one step's stream the lines always
/// come in order, so counting per (step, stream) finds the lines already printed, and a
/// step's start or end is new only once.
#[derive(Default)]
struct Seen {
    printed: HashMap<(String, String), usize>,
    counted: HashMap<(String, String), usize>,
    once: std::collections::HashSet<(String, String)>,
    stream: u32,
    /// Each step's function, from its start event (log events name only the step).
    functions: HashMap<String, String>,
}

impl Seen {
    /// Whether `event`, arriving on the `stream`-th opening, has not been shown yet.
    fn is_new(&mut self, stream: u32, event: &str, data: &Value) -> bool {
        if stream != self.stream {
            self.stream = stream;
            self.counted.clear();
        }
        let step = s(&data["step_id"]);
        if event != "log" {
            return event == "dropped" || self.once.insert((event.to_string(), step));
        }
        let key = (step, s(&data["stream"]));
        let n = self.counted.entry(key.clone()).or_default();
        *n += 1;
        let printed = self.printed.entry(key).or_default();
        let new = *n > *printed;
        *printed = (*printed).max(*n);
        new
    }

    /// Remember a step's function from its start; give a log event the function's name.
    fn name(&mut self, event: &str, data: &mut Value) {
        let step = s(&data["step_id"]);
        match (event, data["function"].as_str()) {
            ("log", None) => {
                if let Some(f) = self.functions.get(&step) {
                    data["function"] = Value::String(f.clone());
                }
            }
            (_, Some(f)) => {
                self.functions.insert(step, f.to_string());
            }
            _ => {}
        }
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
    let mut seen = Seen::default();
    loop {
        let (event, mut data) = events.next().await?;
        seen.name(&event, &mut data);
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
    use serde_json::json;

    use super::Seen;

    #[test]
    fn a_reconnected_stream_shows_only_what_was_not_shown() {
        let mut seen = Seen::default();
        let log = |step: &str, stream: &str| json!({"step_id": step, "stream": stream});
        let mut on = |n: u32, ev: &str, v: serde_json::Value| seen.is_new(n, ev, &v);
        // First connection: a started, out, err, out; b's line; then it drops.
        assert!(on(1, "step.started", json!({"step_id": "a"})));
        assert!(on(1, "log", log("a", "stdout")) && on(1, "log", log("a", "stderr")));
        assert!(on(1, "log", log("a", "stdout")) && on(1, "log", log("b", "stdout")));
        // Second: replayed from the record (b first, a's stdout before its stderr), then
        // one more line of a's stdout.
        assert!(!on(2, "step.started", json!({"step_id": "a"})));
        let replay: Vec<bool> = [
            ("b", "stdout"),
            ("a", "stdout"),
            ("a", "stdout"),
            ("a", "stderr"),
            ("a", "stdout"),
        ]
        .iter()
        .map(|(step, stream)| on(2, "log", log(step, stream)))
        .collect();
        assert_eq!(replay, [false, false, false, false, true]);
        assert!(on(2, "step.finished", json!({"step_id": "a"})));
    }

    #[test]
    fn log_lines_are_named_by_their_step_start() {
        let mut seen = Seen::default();
        seen.name("step.started", &mut json!({"step_id": "a", "function": "leaf"}));
        let mut line = json!({"step_id": "a", "line": "hi"});
        seen.name("log", &mut line);
        assert_eq!(line["function"], "leaf");
    }
}
