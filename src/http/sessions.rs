//! `/api/v1/sessions`: interpreters kept between cells (a notebook kernel's state), their
//! cells and the files of their working directories.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::run::StreamQuery;
use super::{iso, parse_json, views, ApiQuery, AppState};
use crate::auth::Caller;
use crate::domain::{FunctionSettings, Isolation};
use crate::http::error::{ApiError, ApiResult};
use crate::service::sessions::SessionRequest;
use crate::store::SessionRow;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sessions", post(open).get(list))
        .route("/sessions/{id}", get(show).delete(remove))
        .route("/sessions/{id}/run", post(run))
        .route("/sessions/{id}/files", get(files))
        .route(
            "/sessions/{id}/files/{*path}",
            get(read_file).put(write_file).delete(delete_file),
        )
}

/// Body of `POST /sessions` (every field optional).
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct OpenBody {
    /// Each cell's deadline (default: the server's function timeout).
    timeout_seconds: Option<f64>,
    /// The interpreter's memory cap; variables and files live in it.
    memory_mb: Option<u64>,
    /// Each cell's fuel.
    fuel: Option<u64>,
    /// Seconds without a cell after which the session ends (default SESSION_IDLE_TTL_SECONDS).
    idle_ttl_seconds: Option<u64>,
}

/// Body of `POST /sessions/{id}/run`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CellBody {
    /// Python run as the session's next cell, in the globals the cells before left.
    code: String,
}

fn view(r: SessionRow) -> views::Session {
    views::Session {
        error: r.error.as_deref().and_then(|e| serde_json::from_str(e).ok()),
        id: r.id,
        status: r.status,
        end_reason: r.end_reason,
        server: r.node_id,
        execution_count: r.execution_count,
        timeout_seconds: r.timeout_seconds,
        fuel: r.fuel,
        memory_mb: r.memory_mb,
        idle_ttl_seconds: r.idle_ttl_seconds,
        created_at: iso(r.created_at),
        last_used_at: iso(r.last_used_at),
        expires_at: iso(r.expires_at),
        ended_at: r.ended_at.map(iso),
    }
}

async fn open(State(state): State<AppState>, caller: Caller, body: axum::body::Body) -> ApiResult<Response> {
    let sessions = &state.services.sessions;
    sessions.check_allowed(&caller).await?;
    let bytes = super::read_input(body, 64 * 1024).await?;
    let body: OpenBody = if bytes.iter().all(u8::is_ascii_whitespace) {
        OpenBody::default()
    } else {
        parse_json(&bytes)?
    };
    let req = SessionRequest {
        limits: FunctionSettings {
            isolation: None::<Isolation>,
            timeout_seconds: body.timeout_seconds,
            fuel: body.fuel,
            memory_mb: body.memory_mb,
            on_interrupt: None,
        },
        idle_ttl_seconds: body.idle_ttl_seconds,
    };
    let row = sessions.open(&caller, req).await?;
    Ok((StatusCode::CREATED, Json(view(row))).into_response())
}

async fn list(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<views::SessionList>> {
    let rows = state.services.sessions.list(&caller).await?;
    Ok(Json(views::SessionList {
        sessions: rows.into_iter().map(view).collect(),
    }))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<views::Session>> {
    Ok(Json(view(state.services.sessions.get(&caller, &id).await?)))
}

async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<StatusCode> {
    state.services.sessions.delete(&caller, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn run(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(query): ApiQuery<StreamQuery>,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let sessions = &state.services.sessions;
    sessions.check_allowed(&caller).await?;
    let limit = 6 * state.settings.max_code_bytes + 4096;
    let body: CellBody = parse_json(&super::read_input(body, limit).await?)?;
    let (tx, rx) = super::run::output(query.stream);
    // The cell goes on (and is recorded) if the client hangs up: the worker owns it.
    let (started, count) = sessions.run(&caller, &id, body.code, tx).await?;
    let start = serde_json::json!({"execution_id": started.execution_id, "execution_count": count});
    Ok(super::run::reply(rx, start, async move {
        let (result, (stdout, stderr)) = started.wait_printed().await?;
        let mut answer = super::run::answer(result, stdout, stderr);
        answer.execution_count = Some(count);
        Ok(answer)
    })
    .await)
}

async fn files(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<views::SessionFiles>> {
    let files = state.services.sessions.files(&caller, &id).await?;
    let files = files
        .into_iter()
        .map(|(path, size)| views::SessionFile { path, size })
        .collect();
    Ok(Json(views::SessionFiles { files }))
}

async fn read_file(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, path)): Path<(String, String)>,
) -> ApiResult<Response> {
    let data = state.services.sessions.read_file(&caller, &id, &path).await?;
    Ok(([(header::CONTENT_TYPE, "application/octet-stream")], data).into_response())
}

async fn write_file(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, path)): Path<(String, String)>,
    body: axum::body::Body,
) -> ApiResult<Json<views::SessionFile>> {
    let sessions = &state.services.sessions;
    sessions.check_allowed(&caller).await?;
    let cap = state.settings.session_files_max_bytes as usize;
    let data = super::read_input(body, cap).await.map_err(|e| match e {
        ApiError::TooLarge(_) => ApiError::TooLarge(format!(
            "the file is larger than a working directory may hold ({cap} bytes, SESSION_FILES_MAX_BYTES)"
        )),
        other => other,
    })?;
    let size = sessions.write_file(&caller, &id, &path, data.to_vec()).await?;
    let path = crate::service::sessions::check_path(&path)?;
    Ok(Json(views::SessionFile { path, size }))
}

async fn delete_file(
    State(state): State<AppState>,
    caller: Caller,
    Path((id, path)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    state.services.sessions.delete_file(&caller, &id, &path).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// What a file route's `{path}` holds.
const FILE_PATH: &str = "a path in the working directory, relative, `/`-separated (`data/sales.csv`)";

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    let tag = "run";
    doc.op(
        "post",
        "/api/v1/sessions",
        tag,
        "Open a session: an interpreter kept between cells",
    )
    .body::<OpenBody>()
    .reply::<views::Session>(201, "the session (`server` holds it)")
    .add();
    doc.op(
        "get",
        "/api/v1/sessions",
        tag,
        "List the tenant's sessions (open, and ended in the last day)",
    )
    .reply::<views::SessionList>(200, "newest first")
    .add();
    doc.op("get", "/api/v1/sessions/{id}", tag, "Show a session")
        .reply::<views::Session>(200, "the session")
        .add();
    doc.op(
        "delete",
        "/api/v1/sessions/{id}",
        tag,
        "End a session (its interpreter and files go)",
    )
    .empty(204, "ended (also when it had ended already)")
    .add();
    doc.op(
        "post",
        "/api/v1/sessions/{id}/run",
        tag,
        "Run a cell in the session's interpreter",
    )
    .query::<StreamQuery>()
    .body::<CellBody>()
    .reply::<views::RunAnswer>(200, "the cell ended (see `status`); 410 once the session has ended")
    .media(
        200,
        "text/event-stream",
        "with `?stream=true`: the cell's events as it runs",
    )
    .add();
    doc.op(
        "get",
        "/api/v1/sessions/{id}/files",
        tag,
        "List the files of the session's working directory",
    )
    .reply::<views::SessionFiles>(200, "every file with its size")
    .add();
    doc.op(
        "get",
        "/api/v1/sessions/{id}/files/{path}",
        tag,
        "Download a file of the session",
    )
    .path_param("path", FILE_PATH)
    .media(200, "application/octet-stream", "the file's bytes")
    .add();
    doc.op(
        "put",
        "/api/v1/sessions/{id}/files/{path}",
        tag,
        "Upload a file into the session (the body is its bytes)",
    )
    .path_param("path", FILE_PATH)
    .bytes_body()
    .reply::<views::SessionFile>(200, "written")
    .add();
    doc.op(
        "delete",
        "/api/v1/sessions/{id}/files/{path}",
        tag,
        "Delete a file of the session",
    )
    .path_param("path", FILE_PATH)
    .empty(204, "deleted")
    .add();
}
