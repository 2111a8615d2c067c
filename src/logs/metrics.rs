//! Prometheus metrics, kept in memory and written out in the text format at `/metrics`.
//!
//! Labels are bounded: each metric keeps at most `MAX_SERIES` label sets and folds the rest
//! into one series labelled `_other`, and no label ever holds an execution id.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

/// Most label sets one metric keeps.
const MAX_SERIES: usize = 500;

/// Bucket bounds, in seconds, of every latency histogram.
const BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0, 60.0,
];

type Labels = Vec<(&'static str, String)>;

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

#[derive(Default)]
struct Family {
    help: &'static str,
    kind: &'static str,
    counters: BTreeMap<Labels, f64>,
    histograms: BTreeMap<Labels, Histogram>,
}

#[derive(Default)]
pub struct Metrics {
    families: Mutex<BTreeMap<&'static str, Family>>,
}

/// Keep a metric's label sets bounded: a new set past the limit becomes `_other`.
fn bounded<T>(series: &BTreeMap<Labels, T>, labels: Labels) -> Labels {
    if series.len() < MAX_SERIES || series.contains_key(&labels) {
        return labels;
    }
    labels.into_iter().map(|(k, _)| (k, "_other".to_string())).collect()
}

impl Metrics {
    fn with<R>(
        &self,
        name: &'static str,
        help: &'static str,
        kind: &'static str,
        f: impl FnOnce(&mut Family) -> R,
    ) -> R {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let family = families.entry(name).or_insert_with(|| Family {
            help,
            kind,
            ..Default::default()
        });
        f(family)
    }

    /// Add `by` to a counter.
    pub fn add(&self, name: &'static str, help: &'static str, labels: Labels, by: f64) {
        self.with(name, help, "counter", |f| {
            let labels = bounded(&f.counters, labels);
            *f.counters.entry(labels).or_default() += by;
        });
    }

    /// Set a gauge.
    pub fn set(&self, name: &'static str, help: &'static str, labels: Labels, value: f64) {
        self.with(name, help, "gauge", |f| {
            let labels = bounded(&f.counters, labels);
            f.counters.insert(labels, value);
        });
    }

    /// Set a counter kept elsewhere (it only grows there) to its current value.
    pub fn set_counter(&self, name: &'static str, help: &'static str, labels: Labels, value: f64) {
        self.with(name, help, "counter", |f| {
            let labels = bounded(&f.counters, labels);
            f.counters.insert(labels, value);
        });
    }

    /// Forget every series of a gauge (before it is set again from a fresh reading).
    pub fn clear(&self, name: &'static str) {
        let mut families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = families.get_mut(name) {
            f.counters.clear();
        }
    }

    /// Record one observation (seconds) in a histogram.
    pub fn observe(&self, name: &'static str, help: &'static str, labels: Labels, seconds: f64) {
        self.with(name, help, "histogram", |f| {
            let labels = bounded(&f.histograms, labels);
            let h = f.histograms.entry(labels).or_default();
            for (i, bound) in BUCKETS.iter().enumerate() {
                if seconds <= *bound {
                    h.counts[i] += 1;
                }
            }
            h.count += 1;
            h.sum += seconds;
        });
    }

    /// Everything, in the Prometheus text exposition format.
    pub fn render(&self) -> String {
        let families = self.families.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = String::new();
        for (name, f) in families.iter() {
            let _ = writeln!(out, "# HELP {name} {}", f.help);
            let _ = writeln!(out, "# TYPE {name} {}", f.kind);
            for (labels, v) in &f.counters {
                let _ = writeln!(out, "{name}{} {v}", label_text(labels, None));
            }
            for (labels, h) in &f.histograms {
                for (i, bound) in BUCKETS.iter().enumerate() {
                    let le = Some(("le", bound.to_string()));
                    let _ = writeln!(out, "{name}_bucket{} {}", label_text(labels, le), h.counts[i]);
                }
                let inf = Some(("le", "+Inf".to_string()));
                let _ = writeln!(out, "{name}_bucket{} {}", label_text(labels, inf), h.count);
                let _ = writeln!(out, "{name}_sum{} {}", label_text(labels, None), h.sum);
                let _ = writeln!(out, "{name}_count{} {}", label_text(labels, None), h.count);
            }
        }
        out
    }
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

fn label_text(labels: &Labels, extra: Option<(&'static str, String)>) -> String {
    let all: Vec<String> = labels
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
        .chain(extra.map(|(k, v)| format!("{k}=\"{v}\"")))
        .collect();
    if all.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", all.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_and_bounds_labels() {
        let m = Metrics::default();
        m.add("x_total", "xs", vec![("status", "ok".into())], 2.0);
        m.observe("lat_seconds", "latency", vec![], 0.003);
        for i in 0..(MAX_SERIES + 5) {
            m.add("many_total", "many", vec![("function", format!("f{i}"))], 1.0);
        }
        let text = m.render();
        assert!(text.contains("x_total{status=\"ok\"} 2"), "{text}");
        assert!(text.contains("lat_seconds_bucket{le=\"0.005\"} 1"));
        assert!(text.contains("lat_seconds_bucket{le=\"0.001\"} 0"));
        assert!(text.contains("lat_seconds_count 1"));
        assert!(text.contains("many_total{function=\"_other\"} 5"));
        assert_eq!(text.matches("many_total{").count(), MAX_SERIES + 1);
    }
}
