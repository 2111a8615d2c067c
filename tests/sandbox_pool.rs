//! The warm pool under memory hoarders, on the real binary: instances that grew are not kept
//! past their bounds, so the server's resident memory comes back once they are idle.

mod common;

use std::time::{Duration, Instant};

use common::{address, remote, serve_binary, SECRET};
use reqwest::StatusCode;
use serde_json::json;

/// Resident memory of a process, in bytes.
fn rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

const MIB: u64 = 1 << 20;

/// `maestro_sandbox_pool_evictions_total{reason="…"}` in a /metrics text.
fn evictions(metrics: &str, reason: &str) -> f64 {
    let series = format!("maestro_sandbox_pool_evictions_total{{reason=\"{reason}\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{series}in /metrics"))
}

/// Eight functions that each fill 200 MiB and return: RSS rises by well over a GiB while the
/// pool keeps them, and falls back to within 300 MiB of where it started once they have been
/// idle for the pool's idle time. `maestro_sandbox_pool_bytes` shows what the pool holds.
async fn hoarders(retire_above_mb: &str, expect_kept: bool) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut child, lines) = serve_binary(
        dir.path().to_str().unwrap(),
        &[
            "--jwt-secret",
            SECRET,
            "--function-memory-mb",
            "512",
            "--warm-idle-seconds",
            "15",
            "--warm-retire-above-mb",
            retire_above_mb,
            "--warm-pool-max-mb",
            "4096",
            "--tenant-max-concurrent-executions",
            "8",
        ],
    );
    let base = address(&lines);
    let keys = maestro::auth::Keys::new(SECRET);
    let token = keys
        .mint("hoard", "dev@example.com", false, Duration::from_secs(600))
        .unwrap();
    let app = remote(&base, &token);
    let pid = child.id();

    app.create("warmup", "def warmup(input):\n    return 1\n").await;
    app.invoke("warmup", json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let start = rss(pid);

    for i in 0..8 {
        let name = format!("hoard_{i}");
        let code = format!("def {name}(input):\n    data = b'x' * (200 << 20)\n    return len(data)\n");
        app.create(&name, &code).await;
        let (s, v) = app.invoke(&name, json!({})).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        assert_eq!(v["output"], 200 << 20, "{v}");
    }
    let metrics = app
        .client
        .get(format!("{base}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pooled: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("maestro_sandbox_pool_bytes "))
        .and_then(|v| v.trim().parse().ok())
        .expect("maestro_sandbox_pool_bytes in /metrics");
    if expect_kept {
        assert!(pooled > (8 * 200 * MIB) as f64, "the pool holds the hoarders: {pooled}");
        let high = rss(pid);
        assert!(
            high > start + 1200 * MIB,
            "RSS {} MiB -> {} MiB",
            start / MIB,
            high / MIB
        );
    } else {
        assert!(pooled < (200 * MIB) as f64, "grown instances are not kept: {pooled}");
        assert!(
            evictions(&metrics, "grown") >= 8.0,
            "each hoarder counted as grown: {metrics}"
        );
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut now = rss(pid);
    while now > start + 300 * MIB && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(250)).await;
        now = rss(pid);
    }
    assert!(
        now <= start + 300 * MIB,
        "RSS stayed at {} MiB (started at {} MiB)",
        now / MIB,
        start / MIB
    );
    if expect_kept {
        // What came back was let go for being idle, and /metrics says so.
        let metrics = app
            .client
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            evictions(&metrics, "idle") >= 8.0,
            "the hoarders retired as idle: {metrics}"
        );
    }
    child.kill().ok();
    child.wait().ok();
}

/// Both ways, one after the other (each holds over 1.6 GiB at its peak): kept by the pool
/// (the retire threshold above them) and freed by the idle timeout; and with the default
/// threshold, not kept at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hoarders_leave_no_memory_behind() {
    hoarders("1024", true).await;
    hoarders("192", false).await;
}
