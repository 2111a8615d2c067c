//! `/api/v1/functions`: create, list, get, update, delete, versions, rollback, invoke.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{iso, no_content, parse_json, views, ApiJson, ApiQuery, AppState, Page};
use crate::auth::Caller;
use crate::domain::{Isolation, OnInterrupt};
use crate::engine::Trigger;
use crate::http::error::{ApiError, ApiResult};
use crate::service::functions::Draft;
use crate::store;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/functions", post(create).get(list))
        .route("/functions/{name}", get(show).put(update).delete(remove))
        .route("/functions/{name}/versions", get(versions))
        .route("/functions/{name}/rollback/{version}", post(rollback))
        .route("/functions/{name}/invoke", post(invoke))
}

/// Body of `POST /functions` and `PUT /functions/{name}` (on PUT every field is optional and
/// unset fields keep their current value).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct FunctionBody {
    name: Option<String>,
    description: Option<String>,
    code: Option<String>,
    /// `null` on PUT removes the schema.
    #[serde(default, deserialize_with = "null_kept")]
    input_schema: Option<Value>,
    #[serde(default, deserialize_with = "null_kept")]
    output_schema: Option<Value>,
    /// `null` on PUT (also for the limits below) goes back to the server's default.
    #[schema(value_type = Option<String>)]
    #[serde(default, deserialize_with = "super::nullable")]
    isolation: Option<Option<Isolation>>,
    #[schema(value_type = Option<f64>)]
    #[serde(default, deserialize_with = "super::nullable")]
    timeout_seconds: Option<Option<f64>>,
    #[schema(value_type = Option<u64>)]
    #[serde(default, deserialize_with = "super::nullable")]
    fuel: Option<Option<u64>>,
    #[schema(value_type = Option<u64>)]
    #[serde(default, deserialize_with = "super::nullable")]
    memory_mb: Option<Option<u64>>,
    /// For queued runs (`?async=true`, async webhooks): `retry` (default) or `fail` when the
    /// server running one dies.
    #[schema(value_type = Option<String>)]
    #[serde(default, deserialize_with = "super::nullable")]
    on_interrupt: Option<Option<OnInterrupt>>,
}

/// A JSON value where `null` is kept as `Some(Value::Null)` (remove), not read as absent.
fn null_kept<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Value>, D::Error> {
    Value::deserialize(d).map(Some)
}

impl From<FunctionBody> for Draft {
    fn from(b: FunctionBody) -> Draft {
        Draft {
            name: b.name,
            description: b.description,
            code: b.code,
            input_schema: b.input_schema,
            output_schema: b.output_schema,
            isolation: b.isolation,
            timeout_seconds: b.timeout_seconds,
            fuel: b.fuel,
            memory_mb: b.memory_mb,
            on_interrupt: b.on_interrupt,
        }
    }
}

impl From<store::VersionContent> for views::VersionContent {
    fn from(c: store::VersionContent) -> Self {
        let s = c.settings;
        views::VersionContent {
            description: c.description,
            code: c.code,
            code_sha256: c.code_sha256,
            input_schema: c.input_schema,
            output_schema: c.output_schema,
            settings: views::Settings {
                isolation: s.isolation,
                timeout_seconds: s.timeout_seconds,
                fuel: s.fuel,
                memory_mb: s.memory_mb,
                on_interrupt: s.on_interrupt,
            },
            note: c.note,
            created_by: c.created_by,
        }
    }
}

impl From<store::Function> for views::Function {
    fn from(f: store::Function) -> Self {
        views::Function {
            id: f.id,
            name: f.name,
            version: f.current.version,
            latest_version: f.latest_version,
            content: f.current.content.into(),
            created_at: iso(f.created_at),
            updated_at: iso(f.updated_at),
        }
    }
}

impl From<store::FunctionVersion> for views::FunctionVersion {
    fn from(v: store::FunctionVersion) -> Self {
        views::FunctionVersion {
            version: v.version,
            content: v.content.into(),
            created_at: iso(v.created_at),
        }
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<FunctionBody>,
) -> ApiResult<(StatusCode, Json<views::Function>)> {
    let f = state.services.functions.create(&caller, body.into()).await?;
    Ok((StatusCode::CREATED, Json(f.into())))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<views::FunctionPage>> {
    let (limit, offset) = page.clamp();
    let (functions, total) = state.services.functions.list(&caller, limit, offset).await?;
    Ok(Json(views::FunctionPage {
        functions: functions.into_iter().map(Into::into).collect(),
        total,
        limit,
        offset,
    }))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<views::Function>> {
    Ok(Json(state.services.functions.get(&caller, &name).await?.into()))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<FunctionBody>,
) -> ApiResult<Json<views::Function>> {
    Ok(Json(
        state
            .services
            .functions
            .update(&caller, &name, body.into())
            .await?
            .into(),
    ))
}

async fn remove(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Response> {
    state.services.functions.delete(&caller, &name).await?;
    Ok(no_content())
}

async fn versions(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<views::FunctionVersions>> {
    let (current_version, versions) = state.services.functions.versions(&caller, &name).await?;
    Ok(Json(views::FunctionVersions {
        name,
        current_version,
        versions: versions.into_iter().map(Into::into).collect(),
    }))
}

async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<views::Function>> {
    let version: i64 = version
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("version must be a number, not {version:?}")))?;
    Ok(Json(
        state.services.functions.rollback(&caller, &name, version).await?.into(),
    ))
}

/// `?async=` and `?on_interrupt=` of `POST /functions/{name}/invoke`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct InvokeQuery {
    /// `true`: queue the run and answer 202 at once (`status: queued`, `Location` of the
    /// execution); any server runs it, and it survives this server dying.
    #[serde(default, rename = "async")]
    run_async: bool,
    /// For an async run: `retry` or `fail` when the server running it dies (default: the
    /// function's `on_interrupt`, else `retry`).
    #[param(value_type = Option<String>)]
    on_interrupt: Option<OnInterrupt>,
}

/// `POST /functions/{name}/invoke`: the body is the input (an empty body means `{}`).
async fn invoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(query): ApiQuery<InvokeQuery>,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let body = super::read_input(body, state.settings.max_input_bytes).await?;
    let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json(&body)?
    };
    if query.run_async {
        let id = state
            .engine
            .enqueue(&caller.tenant, &name, input, &Trigger::Manual, query.on_interrupt)
            .await?;
        return Ok(super::accepted(&id, "queued"));
    }
    let result = state
        .engine
        .invoke(&caller.tenant, &name, input, Trigger::Manual)
        .await?;
    Ok(Json(result).into_response())
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    let tag = "functions";
    doc.op("post", "/api/v1/functions", tag, "Create a function")
        .body::<FunctionBody>()
        .reply::<views::Function>(201, "created")
        .add();
    doc.op("get", "/api/v1/functions", tag, "List functions")
        .query::<Page>()
        .reply::<views::FunctionPage>(200, "a page")
        .add();
    doc.op("get", "/api/v1/functions/{name}", tag, "Show a function")
        .reply::<views::Function>(200, "the function")
        .add();
    doc.op(
        "put",
        "/api/v1/functions/{name}",
        tag,
        "Update a function (appends a version)",
    )
    .body::<FunctionBody>()
    .reply::<views::Function>(200, "the new current version")
    .add();
    doc.op("delete", "/api/v1/functions/{name}", tag, "Delete a function")
        .empty(204, "deleted")
        .add();
    doc.op("get", "/api/v1/functions/{name}/versions", tag, "Version history")
        .reply::<views::FunctionVersions>(200, "every version")
        .add();
    doc.op(
        "post",
        "/api/v1/functions/{name}/rollback/{version}",
        tag,
        "Make an old version current",
    )
    .reply::<views::Function>(200, "the new current version (a copy of the old one)")
    .add();
    doc.op(
        "post",
        "/api/v1/functions/{name}/invoke",
        tag,
        "Run a function (the body is its input)",
    )
    .query::<InvokeQuery>()
    .any_body()
    .reply::<views::InvokeResult>(200, "the run ended (see `status`)")
    .reply::<views::Accepted>(202, "`?async=true`: the run is queued")
    .add();
}
