//! `/api/v1/functions`: create, list, get, update, delete, versions, rollback, invoke.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{no_content, parse_json, ApiJson, ApiQuery, AppState, Page};
use crate::auth::Caller;
use crate::domain::{compile_schema, FunctionName, FunctionSettings};
use crate::engine::Trigger;
use crate::http::error::{ApiError, ApiResult};
use crate::sandbox::Isolation;
use crate::store::{Audit, Function, VersionContent, VersionSource};

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
    input_schema: Option<Value>,
    output_schema: Option<Value>,
    #[schema(value_type = Option<String>)]
    isolation: Option<Isolation>,
    timeout_seconds: Option<f64>,
    fuel: Option<u64>,
    memory_mb: Option<u64>,
}

/// A function as the API shows it: its current version's content plus identity and times.
#[derive(Serialize)]
struct FunctionView {
    id: String,
    name: String,
    version: i64,
    latest_version: i64,
    #[serde(flatten)]
    content: VersionContent,
    #[serde(serialize_with = "super::iso_ms")]
    created_at: i64,
    #[serde(serialize_with = "super::iso_ms")]
    updated_at: i64,
}

impl From<Function> for FunctionView {
    fn from(f: Function) -> Self {
        FunctionView {
            id: f.id,
            name: f.name,
            version: f.current.version,
            latest_version: f.latest_version,
            content: f.current.content,
            created_at: f.created_at,
            updated_at: f.updated_at,
        }
    }
}

fn missing(field: &str) -> ApiError {
    ApiError::validation(
        format!("missing field `{field}`"),
        json!([{"field": field, "message": "required"}]),
    )
}

/// Check limits, schemas and code; build the version to store. `base` is the current version
/// on update.
async fn build_version(
    state: &AppState,
    caller: &Caller,
    name: &FunctionName,
    body: FunctionBody,
    base: Option<&Function>,
) -> ApiResult<VersionContent> {
    let cfg = &state.settings;
    let cur = base.map(|f| &f.current.content);
    let code = body
        .code
        .or_else(|| cur.map(|c| c.code.clone()))
        .ok_or_else(|| missing("code"))?;
    if code.len() > cfg.max_code_bytes {
        return Err(ApiError::TooLarge(format!(
            "code is {} bytes; the limit is {}",
            code.len(),
            cfg.max_code_bytes
        )));
    }
    let keep = |new: Option<Value>, old: Option<&Option<Value>>| match new {
        Some(Value::Null) => None,
        Some(v) => Some(v),
        None => old.cloned().flatten(),
    };
    let input_schema = keep(body.input_schema, cur.map(|c| &c.input_schema));
    let output_schema = keep(body.output_schema, cur.map(|c| &c.output_schema));
    for (field, schema) in [("input_schema", &input_schema), ("output_schema", &output_schema)] {
        if let Some(s) = schema {
            compile_schema(field, s)?;
        }
    }
    let old = cur.map(|c| c.settings.clone()).unwrap_or_default();
    let settings = FunctionSettings {
        isolation: body.isolation.or(old.isolation),
        timeout_seconds: body.timeout_seconds.or(old.timeout_seconds),
        fuel: body.fuel.or(old.fuel),
        memory_mb: body.memory_mb.or(old.memory_mb),
    };
    check_settings(state, &settings)?;
    if body.description.as_deref().is_some_and(|d| d.contains('\0')) {
        let detail = json!([{"field": "description", "message": "contains a NUL byte"}]);
        return Err(ApiError::validation("description contains a NUL byte", detail));
    }
    if cur.is_none_or(|c| c.code != code) {
        state.engine.check_code(name.as_str(), &code).await?;
    }
    Ok(VersionContent {
        description: body
            .description
            .or_else(|| cur.map(|c| c.description.clone()))
            .unwrap_or_default(),
        code_sha256: hex::encode(Sha256::digest(code.as_bytes())),
        code,
        input_schema,
        output_schema,
        settings,
        note: None,
        created_by: caller.email.clone(),
    })
}

fn check_settings(state: &AppState, s: &FunctionSettings) -> ApiResult<()> {
    let cfg = &state.settings;
    let mut problems = vec![];
    if let Some(t) = s.timeout_seconds {
        if !(t > 0.0 && t <= cfg.max_function_timeout) {
            problems.push(json!({"field": "timeout_seconds", "message": format!("must be > 0 and <= {}", cfg.max_function_timeout)}));
        }
    }
    if let Some(f) = s.fuel {
        if f == 0 || f > cfg.max_function_fuel {
            problems
                .push(json!({"field": "fuel", "message": format!("must be between 1 and {}", cfg.max_function_fuel)}));
        }
    }
    if let Some(m) = s.memory_mb {
        let floor = state.engine.sandbox().initial_memory().div_ceil(1 << 20) + 16;
        if m < floor || m > cfg.max_function_memory_mb {
            problems.push(json!({"field": "memory_mb", "message": format!("must be between {floor} and {}", cfg.max_function_memory_mb)}));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(ApiError::validation("invalid function settings", json!(problems)))
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<FunctionBody>,
) -> ApiResult<Response> {
    let name = FunctionName::parse(body.name.as_deref().ok_or_else(|| missing("name"))?)?;
    if state.store.function_exists(&caller.tenant, name.as_str()).await? {
        return Err(ApiError::Conflict(format!("a function named {name} already exists")));
    }
    let quotas = state.engine.quotas_of(&caller.tenant).await?;
    if state.store.count_functions(&caller.tenant).await? >= quotas.max_functions {
        return Err(ApiError::Forbidden(format!(
            "tenant {} already has its maximum of {} functions",
            caller.tenant, quotas.max_functions
        )));
    }
    let version = build_version(&state, &caller, &name, body, None).await?;
    let sha = version.code_sha256.clone();
    let audit = |v| {
        Audit::new(&caller.email, "function.create", format!("function:{name}"))
            .detail(json!({"version": v, "code_sha256": sha}))
    };
    let f = state
        .store
        .create_function(&caller.tenant, name.as_str(), &version, audit)
        .await?;
    Ok((StatusCode::CREATED, Json(FunctionView::from(f))).into_response())
}

async fn list(State(state): State<AppState>, caller: Caller, ApiQuery(page): ApiQuery<Page>) -> ApiResult<Json<Value>> {
    let (limit, offset) = page.clamp();
    let (functions, total) = state.store.list_functions(&caller.tenant, limit, offset).await?;
    let functions: Vec<FunctionView> = functions.into_iter().map(Into::into).collect();
    Ok(Json(
        json!({"functions": functions, "total": total, "limit": limit, "offset": offset}),
    ))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<FunctionView>> {
    Ok(Json(state.store.get_function(&caller.tenant, &name).await?.into()))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<FunctionBody>,
) -> ApiResult<Json<FunctionView>> {
    let current = state.store.get_function(&caller.tenant, &name).await?;
    if body.name.as_deref().is_some_and(|n| n != name) {
        return Err(ApiError::validation(
            "a function cannot be renamed",
            json!([{"field": "name", "message": "must match the path"}]),
        ));
    }
    let fname = FunctionName::parse(&name)?;
    let version = build_version(&state, &caller, &fname, body, Some(&current)).await?;
    let sha = version.code_sha256.clone();
    let audit = |v| {
        Audit::new(&caller.email, "function.update", format!("function:{name}"))
            .detail(json!({"version": v, "code_sha256": sha}))
    };
    let f = state
        .store
        .add_version(&caller.tenant, &name, VersionSource::New(&version), audit)
        .await?;
    state.engine.sandbox().recycle_function(&caller.tenant, &name);
    Ok(Json(f.into()))
}

async fn remove(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Response> {
    let audit = Audit::new(&caller.email, "function.delete", format!("function:{name}"));
    state.store.delete_function(&caller.tenant, &name, audit).await?;
    state.engine.sandbox().recycle_function(&caller.tenant, &name);
    Ok(no_content())
}

async fn versions(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let versions = state.store.list_versions(&caller.tenant, &name).await?;
    let f = state.store.get_function(&caller.tenant, &name).await?;
    Ok(Json(
        json!({"name": name, "current_version": f.current.version, "versions": versions}),
    ))
}

async fn rollback(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, version)): Path<(String, String)>,
) -> ApiResult<Json<FunctionView>> {
    let version: i64 = version
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("version must be a number, not {version:?}")))?;
    let source = VersionSource::Rollback {
        version,
        by: &caller.email,
    };
    let audit = |new| {
        Audit::new(&caller.email, "function.rollback", format!("function:{name}"))
            .detail(json!({"to_version": version, "new_version": new}))
    };
    let f = state.store.add_version(&caller.tenant, &name, source, audit).await?;
    state.engine.sandbox().recycle_function(&caller.tenant, &name);
    Ok(Json(f.into()))
}

/// `POST /functions/{name}/invoke`: the body is the input (an empty body means `{}`).
async fn invoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: axum::body::Body,
) -> ApiResult<Response> {
    let body = super::read_input(body, state.settings.max_input_bytes).await?;
    let input: Value = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        parse_json(&body)?
    };
    let result = state
        .engine
        .invoke(&caller.tenant, &name, input, Trigger::Manual)
        .await?;
    Ok(Json(result).into_response())
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    use super::views;
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
    .any_body()
    .reply::<views::InvokeResult>(200, "the run ended (see `status`)")
    .add();
}
