//! A step's printed output as live `log` events: lines are published as the guest sends
//! them (`out` frames, which every call's prelude sends for its first lines), so that
//! `GET /executions/{id}/logs?follow=true` and `maestro logs -f` show a line while the call
//! still runs. The step's record keeps the whole captured output, as before; events stop at
//! [`MAX_LOG_LINES`] lines a stream, with one line saying how many more the record holds.

use serde_json::json;

use crate::logs::{cut_line, Bus, MAX_LOG_LINES};

const STREAMS: [&str; 2] = ["stdout", "stderr"];

/// One stream's live state.
#[derive(Default)]
struct Stream {
    /// Text after the last newline, waiting for the rest of its line.
    pending: String,
    /// Lines published.
    lines: usize,
    /// Lines past the cap, not published.
    more: usize,
    /// Whether the guest sent this stream live at all (if not, the captured text is
    /// published when the step ends, as for a guest that replaced its streams).
    seen: bool,
}

/// The live output of one step, both streams.
#[derive(Default)]
pub struct LiveLog {
    streams: [Stream; 2],
}

/// Where a step's events go.
pub struct Target<'a> {
    pub events: &'a Bus,
    pub tenant: &'a str,
    pub execution_id: &'a str,
    pub step_id: &'a str,
}

impl Target<'_> {
    fn publish(&self, stream: &str, line: &str) {
        let fields = json!({"step_id": self.step_id, "stream": stream, "line": cut_line(line)});
        self.events.publish(self.tenant, self.execution_id, "log", fields);
    }
}

impl LiveLog {
    /// A chunk the guest printed on `stream` (already masked): its complete lines go out now.
    pub fn chunk(&mut self, stream: &str, text: &str, to: &Target<'_>) {
        let Some(i) = STREAMS.iter().position(|s| *s == stream) else {
            return;
        };
        let s = &mut self.streams[i];
        s.seen = true;
        s.pending.push_str(text);
        while let Some(end) = s.pending.find('\n') {
            let line: String = s.pending.drain(..=end).collect();
            emit(s, stream, line.trim_end_matches('\n'), to);
        }
        // A line that never ends is not kept whole: past the longest a line may be, it goes.
        if s.pending.len() > crate::logs::MAX_LOG_LINE_BYTES {
            let line = std::mem::take(&mut s.pending);
            emit(s, stream, &line, to);
        }
    }

    /// The step ended: the rest of each live stream (its last line, the count of lines past
    /// the cap), or, for a stream the guest never sent live, its captured text.
    pub fn end(&mut self, captured: [&str; 2], to: &Target<'_>) {
        for (i, s) in self.streams.iter_mut().enumerate() {
            let stream = STREAMS[i];
            if !s.seen {
                for line in crate::logs::log_lines(captured[i]) {
                    to.publish(stream, &line);
                }
                continue;
            }
            let rest = std::mem::take(&mut s.pending);
            if !rest.is_empty() {
                emit(s, stream, &rest, to);
            }
            // The guest stops sending after its first frames: the record tells how many
            // lines there were in all.
            let more = captured[i].lines().count().saturating_sub(s.lines).max(s.more);
            if more > 0 {
                let note = format!("[maestro: {more} more lines not streamed; the execution's logs hold them]");
                to.publish(stream, &note);
            }
        }
    }
}

fn emit(s: &mut Stream, stream: &str, line: &str, to: &Target<'_>) {
    if s.lines < MAX_LOG_LINES {
        s.lines += 1;
        to.publish(stream, line);
    } else {
        s.more += 1;
    }
}
