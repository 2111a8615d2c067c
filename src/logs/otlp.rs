//! OpenTelemetry export of Maestro's spans (`request`, `execution`, `step`) over OTLP/HTTP
//! with JSON encoding, when `OTEL_EXPORTER_OTLP_ENDPOINT` is set. A `tracing` layer records
//! each span's timing and fields; a task posts them in batches to `<endpoint>/v1/traces`.
//! Export never blocks or fails a request: spans that cannot be queued are dropped.

use std::collections::HashMap;
use std::fmt::Debug;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id};
use tracing::Subscriber;
use tracing_subscriber::layer::Context;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::Layer;

/// Spans worth exporting (everything else is library noise).
const EXPORTED: [&str; 3] = ["request", "execution", "step"];
const QUEUE: usize = 4096;
const BATCH: usize = 512;

/// A finished span on its way out.
#[derive(Debug)]
struct Finished {
    name: &'static str,
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    start_ns: u128,
    end_ns: u128,
    attributes: HashMap<&'static str, String>,
}

/// What a live span carries in its extensions.
struct Open {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    parent: Option<[u8; 8]>,
    start_ns: u128,
    attributes: HashMap<&'static str, String>,
}

struct Fields<'a>(&'a mut HashMap<&'static str, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn Debug) {
        self.0.insert(field.name(), format!("{value:?}"));
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name(), value.to_string());
    }
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

pub struct OtlpLayer {
    tx: mpsc::Sender<Finished>,
}

impl OtlpLayer {
    /// A layer exporting to `endpoint` (e.g. `http://collector:4318`); needs a Tokio runtime.
    pub fn new(endpoint: &str) -> OtlpLayer {
        let (tx, rx) = mpsc::channel(QUEUE);
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        tokio::spawn(export(url, rx));
        OtlpLayer { tx }
    }
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for OtlpLayer {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        if !EXPORTED.contains(&span.name()) {
            return;
        }
        // The nearest exported ancestor is the parent; its trace is ours.
        let parent = span
            .scope()
            .skip(1)
            .find_map(|s| s.extensions().get::<Open>().map(|o| (o.trace_id, o.span_id)));
        let mut attributes = HashMap::new();
        attrs.record(&mut Fields(&mut attributes));
        let open = Open {
            trace_id: parent.map(|p| p.0).unwrap_or_else(rand::random),
            span_id: rand::random(),
            parent: parent.map(|p| p.1),
            start_ns: now_ns(),
            attributes,
        };
        span.extensions_mut().insert(open);
    }

    fn on_close(&self, id: Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(&id) else { return };
        let Some(open) = span.extensions_mut().remove::<Open>() else {
            return;
        };
        let _ = self.tx.try_send(Finished {
            name: span.name(),
            trace_id: open.trace_id,
            span_id: open.span_id,
            parent: open.parent,
            start_ns: open.start_ns,
            end_ns: now_ns(),
            attributes: open.attributes,
        });
    }
}

/// One span in OTLP's JSON encoding.
fn encode(f: &Finished) -> Value {
    let mut attributes: Vec<Value> = f
        .attributes
        .iter()
        .map(|(k, v)| json!({"key": k, "value": {"stringValue": v}}))
        .collect();
    attributes.sort_by_key(|a| a["key"].as_str().unwrap_or("").to_string());
    let mut span = json!({
        "traceId": hex::encode(f.trace_id),
        "spanId": hex::encode(f.span_id),
        "name": f.name,
        "kind": if f.name == "request" { 2 } else { 1 },
        "startTimeUnixNano": f.start_ns.to_string(),
        "endTimeUnixNano": f.end_ns.to_string(),
        "attributes": attributes,
    });
    if let Some(p) = f.parent {
        span["parentSpanId"] = json!(hex::encode(p));
    }
    span
}

async fn export(url: String, mut rx: mpsc::Receiver<Finished>) {
    let client = match reqwest::Client::builder().timeout(Duration::from_secs(5)).build() {
        Ok(c) => c,
        Err(_) => return,
    };
    let mut warned = false;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        let deadline = tokio::time::Instant::now() + Duration::from_millis(500);
        while batch.len() < BATCH {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Some(f)) => batch.push(f),
                _ => break,
            }
        }
        let body = json!({"resourceSpans": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "maestro"}}]},
            "scopeSpans": [{"scope": {"name": "maestro"}, "spans": batch.iter().map(encode).collect::<Vec<_>>()}]
        }]});
        let sent = client
            .post(&url)
            .json(&body)
            .send()
            .await
            .and_then(|r| r.error_for_status());
        match sent {
            Ok(_) => warned = false,
            Err(e) if !warned => {
                warned = true;
                tracing::warn!(%url, error = %e, "OTLP export failed; spans are dropped until it recovers");
            }
            Err(_) => {}
        }
    }
}
