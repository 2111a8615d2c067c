//! Live events of executions: an in-process bus (history per execution, a feed per tenant)
//! and, when `REDIS_URL` is set, Redis Streams so any replica can follow any run.
//!
//! Events are JSON objects with a `type` (`execution.started`, `step.started`,
//! `step.finished`, `log`, `execution.finished`), the `execution_id`, a per-execution `seq`,
//! the time `at`, and fields of their kind (function, depth, status, duration, fuel, stream,
//! line, error). Publishing never blocks a run and never fails it.

pub mod metrics;
pub mod otlp;
pub mod redis_streams;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::sync::broadcast;

pub use redis_streams::RedisEvents;

/// Most events kept per execution for late followers on this node.
const HISTORY_CAP: usize = 10_000;
/// How long a finished execution's history stays in memory, and how many are kept at most.
const HISTORY_TTL: Duration = Duration::from_secs(300);
const FINISHED_KEPT: usize = 2_000;
/// Buffer of each tenant's live feed (a subscriber further behind is told it lost events).
const FEED_BUFFER: usize = 1024;

/// Most `log` events one step's stream sends; its record keeps the whole (capped) output.
pub const MAX_LOG_LINES: usize = 1000;
/// Longest line a `log` event carries; the record keeps the whole line.
pub const MAX_LOG_LINE_BYTES: usize = 16 << 10;

/// The lines of a step's output as events carry them: the first [`MAX_LOG_LINES`], each cut
/// to [`MAX_LOG_LINE_BYTES`], then one line saying how many more the record holds. A guest
/// printing a million empty lines costs the host a thousand events, not a million, and one
/// printing a megabyte on one line costs 16 KiB of event.
pub fn log_lines(text: &str) -> impl Iterator<Item = std::borrow::Cow<'_, str>> {
    let mut lines = text.lines();
    let shown: Vec<_> = lines.by_ref().take(MAX_LOG_LINES).map(cut_line).collect();
    let more = lines.count();
    let note = (more > 0).then(|| {
        std::borrow::Cow::Owned(format!(
            "[maestro: {more} more lines not streamed; the execution's logs hold them]"
        ))
    });
    shown.into_iter().chain(note)
}

/// A line cut to [`MAX_LOG_LINE_BYTES`], saying how much was cut.
pub fn cut_line(line: &str) -> std::borrow::Cow<'_, str> {
    if line.len() <= MAX_LOG_LINE_BYTES {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut end = MAX_LOG_LINE_BYTES;
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    std::borrow::Cow::Owned(format!("{} [maestro: {} more bytes]", &line[..end], line.len() - end))
}

/// One event, with where it belongs.
#[derive(Debug, Clone)]
pub struct Event {
    pub tenant: String,
    pub execution_id: String,
    pub body: Value,
}

impl Event {
    pub fn kind(&self) -> &str {
        self.body["type"].as_str().unwrap_or("")
    }

    pub fn seq(&self) -> u64 {
        self.body["seq"].as_u64().unwrap_or(0)
    }

    pub fn is_last(&self) -> bool {
        self.kind() == "execution.finished"
    }
}

#[derive(Default)]
struct History {
    events: Vec<Arc<Event>>,
    next_seq: u64,
}

#[derive(Default)]
struct Histories {
    by_id: HashMap<String, History>,
    /// Finished executions, oldest first: dropped after `HISTORY_TTL` or beyond `FINISHED_KEPT`.
    finished: VecDeque<(String, Instant)>,
}

/// The bus also carries the metrics registry: both observe every run.
pub struct Bus {
    feeds: Mutex<HashMap<String, broadcast::Sender<Arc<Event>>>>,
    histories: Mutex<Histories>,
    redis: Option<RedisEvents>,
    pub metrics: metrics::Metrics,
}

impl Bus {
    pub fn new(redis: Option<RedisEvents>) -> Bus {
        Bus {
            feeds: Mutex::new(HashMap::new()),
            histories: Mutex::new(Histories::default()),
            redis,
            metrics: metrics::Metrics::default(),
        }
    }

    pub fn redis(&self) -> Option<&RedisEvents> {
        self.redis.as_ref()
    }

    /// Number and send an event: to the execution's history, the tenant's feed and Redis.
    pub fn publish(&self, tenant: &str, execution_id: &str, kind: &str, mut fields: Value) {
        let event = {
            let mut histories = self.histories.lock().unwrap_or_else(|e| e.into_inner());
            let histories = &mut *histories;
            while let Some((id, at)) = histories.finished.front() {
                if histories.finished.len() <= FINISHED_KEPT && at.elapsed() < HISTORY_TTL {
                    break;
                }
                histories.by_id.remove(id);
                histories.finished.pop_front();
            }
            let h = histories.by_id.entry(execution_id.to_string()).or_default();
            h.next_seq += 1;
            fields["type"] = json!(kind);
            fields["execution_id"] = json!(execution_id);
            fields["seq"] = json!(h.next_seq);
            fields["at"] = json!(chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
            let event = Arc::new(Event {
                tenant: tenant.to_string(),
                execution_id: execution_id.to_string(),
                body: fields,
            });
            if h.events.len() < HISTORY_CAP || event.is_last() {
                h.events.push(event.clone());
            }
            if event.is_last() {
                histories.finished.push_back((execution_id.to_string(), Instant::now()));
            }
            event
        };
        if let Some(feed) = self.feeds.lock().unwrap_or_else(|e| e.into_inner()).get(tenant) {
            let _ = feed.send(event.clone());
        }
        if let Some(r) = &self.redis {
            r.send(event);
        }
    }

    /// The tenant's live feed on this node.
    pub fn subscribe(&self, tenant: &str) -> broadcast::Receiver<Arc<Event>> {
        let mut feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        feeds.retain(|_, f| f.receiver_count() > 0);
        feeds
            .entry(tenant.to_string())
            .or_insert_with(|| broadcast::channel(FEED_BUFFER).0)
            .subscribe()
    }

    /// Live subscribers of a tenant's feed on this node (a client that went away is gone).
    pub fn subscribers(&self, tenant: &str) -> usize {
        let feeds = self.feeds.lock().unwrap_or_else(|e| e.into_inner());
        feeds.get(tenant).map_or(0, |f| f.receiver_count())
    }

    /// What this node has seen of an execution so far (None: nothing, e.g. another node ran it).
    pub fn history(&self, execution_id: &str) -> Option<Vec<Arc<Event>>> {
        let histories = self.histories.lock().unwrap_or_else(|e| e.into_inner());
        histories.by_id.get(execution_id).map(|h| h.events.clone())
    }
}
