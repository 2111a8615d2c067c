//! `/api/v1/packages`: the runtime's built-in packages and the tenant's own (install with
//! pip, upload a wheel, uninstall, follow an install).

use std::time::Duration;

use axum::extract::{Multipart, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{ApiJson, ApiQuery, AppState};
use crate::auth::Caller;
use crate::domain::JobStatus;
use crate::http::error::{ApiError, ApiResult};
use crate::packages::wheel::canonical_name;
use crate::store::{Audit, InstalledPackage, PackageJob};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/packages", get(list).post(install))
        .route("/packages/installs", get(list_jobs))
        .route("/packages/installs/{id}", get(show_job))
        .route("/packages/{name}", get(show).delete(uninstall))
}

/// The upload route, under its own body limit (a wheel is larger than any JSON body).
pub fn upload_routes(limit: usize) -> Router<AppState> {
    Router::new()
        .route("/packages/upload", post(upload))
        .layer(axum::extract::DefaultBodyLimit::max(limit))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct ListQuery {
    /// `true`: only built-ins; `false`: only the tenant's.
    builtin: Option<bool>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<Value>> {
    let p = &state.packages;
    let mut out: Vec<Value> = Vec::new();
    if q.builtin != Some(false) {
        out.extend(p.builtin().values().map(|b| {
            let mut v = json!(b);
            v["builtin"] = json!(true);
            v
        }));
    }
    let installed = state.store.list_packages(&caller.tenant).await?;
    let used: i64 = installed.iter().map(|p| p.size_bytes).sum();
    if q.builtin != Some(true) {
        out.extend(installed.iter().map(installed_view));
    }
    let policy = p.policy();
    Ok(Json(json!({
        "packages": out,
        "installation_allowed": policy.allowed,
        "tenant_bytes_used": used,
        "tenant_bytes_limit": policy.tenant_max_bytes,
        "package_bytes_limit": policy.limits.max_bytes,
    })))
}

fn installed_view(p: &crate::store::InstalledPackage) -> Value {
    let mut v = json!(p);
    v["builtin"] = json!(false);
    v
}

async fn show(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Json<Value>> {
    let name = canonical_name(&name);
    if let Some(b) = state.packages.builtin().get(&name) {
        let mut v = json!(b);
        v["builtin"] = json!(true);
        return Ok(Json(v));
    }
    let installed = state.store.list_packages(&caller.tenant).await?;
    let p = installed
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("package {name} is neither built in nor installed")))?;
    let mut v = installed_view(p);
    let needed_by: Vec<&str> = installed
        .iter()
        .filter(|o| o.requires.contains(&name))
        .map(|o| o.name.as_str())
        .collect();
    v["needed_by"] = json!(needed_by);
    Ok(Json(v))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct InstallBody {
    name: String,
    /// A version (`1.2.3`) or a specifier (`>=1.2,<2`).
    version: Option<String>,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct InstallQuery {
    /// Seconds to wait for the install before answering 202 (default 60, at most 300).
    wait: Option<f64>,
}

/// Start an install; answer with its result if it ends within `wait`, else 202 and where to
/// poll.
async fn install(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<InstallQuery>,
    ApiJson(body): ApiJson<InstallBody>,
) -> ApiResult<Response> {
    let wait = q.wait.unwrap_or(60.0);
    if !(0.0..=300.0).contains(&wait) {
        return Err(ApiError::invalid("wait", "seconds between 0 and 300"));
    }
    // Parsed here too, so a bad name or version answers with the field at fault.
    state.packages.check_allowed()?;
    crate::packages::requirement(&body.name, body.version.as_deref()).map_err(ApiError::malformed)?;
    let audit = Audit::new(
        &caller.email,
        "package.install",
        format!("package:{}", canonical_name(&body.name)),
    );
    let started = state
        .packages
        .install(
            &caller.tenant,
            &caller.email,
            &body.name,
            body.version.as_deref(),
            audit,
        )
        .await?;
    let job_id = started.job_id.clone();
    let status_url = format!("/api/v1/packages/installs/{job_id}");
    match tokio::time::timeout(Duration::from_secs_f64(wait), started.done).await {
        Ok(Ok(Ok(mut result))) => {
            result["job_id"] = json!(job_id);
            let code = match result["already_installed"] == json!(true) {
                true => StatusCode::OK,
                false => StatusCode::CREATED,
            };
            Ok((code, Json(result)).into_response())
        }
        Ok(Ok(Err(failure))) => Err(failure.into()),
        Ok(Err(_)) => Err(ApiError::Internal(anyhow::anyhow!(
            "the install task ended without a result"
        ))),
        Err(_) => Ok((
            StatusCode::ACCEPTED,
            [(header::LOCATION, status_url.clone())],
            Json(json!({"job_id": job_id, "status": "running", "status_url": status_url})),
        )
            .into_response()),
    }
}

/// A job still `running` long after any install could have ended belonged to a server that
/// stopped; show it as failed rather than forever running.
fn job_view(state: &AppState, mut job: PackageJob) -> PackageJob {
    let limit = state.packages.stale_after().as_millis() as i64;
    if job.status == JobStatus::Running && crate::store::now_ms() - job.created_at > limit {
        job.status = JobStatus::Failed;
        job.error = Some(json!({"code": "interrupted", "message": "the server running this install stopped"}));
    }
    job
}

async fn show_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<PackageJob>> {
    let job = state.store.get_package_job(&caller.tenant, &id).await?;
    Ok(Json(job_view(&state, job)))
}

async fn list_jobs(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let jobs: Vec<PackageJob> = state
        .store
        .list_package_jobs(&caller.tenant, 100)
        .await?
        .into_iter()
        .map(|j| job_view(&state, j))
        .collect();
    Ok(Json(json!({ "installs": jobs })))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    replace: Option<bool>,
}

/// `multipart/form-data` with the wheel in a part named `file` (its file name matters: the
/// tags in it are checked).
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<UploadQuery>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    state.packages.check_allowed()?;
    let mut form = form.map_err(|e| {
        ApiError::BadRequest(format!(
            "send the wheel as multipart/form-data with a part named `file`: {}",
            e.body_text()
        ))
    })?;
    let bad = |e: axum::extract::multipart::MultipartError| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(format!(
            "the wheel is larger than the limit of {} bytes",
            state.packages.policy().limits.max_bytes
        )),
        _ => ApiError::BadRequest(format!("could not read the multipart body: {}", e.body_text())),
    };
    let mut file = None;
    while let Some(field) = form.next_field().await.map_err(bad)? {
        if field.name() == Some("file") {
            let name = field.file_name().unwrap_or_default().to_string();
            let bytes = field.bytes().await.map_err(bad)?;
            file = Some((name, bytes.to_vec()));
        }
    }
    let Some((filename, bytes)) = file else {
        return Err(ApiError::invalid(
            "file",
            "send the wheel as a multipart part named `file` with its file name",
        ));
    };
    let out = state
        .packages
        .upload(
            &caller.tenant,
            &caller.email,
            &filename,
            bytes,
            q.replace.unwrap_or(false),
            Audit::new(&caller.email, "package.upload", format!("package:{filename}")),
        )
        .await?;
    Ok((StatusCode::CREATED, Json(out)).into_response())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UninstallQuery {
    force: Option<bool>,
}

async fn uninstall(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<UninstallQuery>,
) -> ApiResult<Json<Value>> {
    let force = q.force.unwrap_or(false);
    let audit = |p: &InstalledPackage| {
        Audit::new(&caller.email, "package.uninstall", format!("package:{}", p.name))
            .detail(json!({"version": p.version, "force": force}))
    };
    let removed = state.packages.uninstall(&caller.tenant, &name, force, audit).await?;
    Ok(Json(json!({ "removed": removed })))
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    use super::views;
    let tag = "packages";
    doc.op("get", "/api/v1/packages", tag, "Built-in and installed packages")
        .query::<ListQuery>()
        .reply::<views::PackageList>(200, "the packages")
        .add();
    doc.op(
        "post",
        "/api/v1/packages",
        tag,
        "Install a pure-Python package and its dependencies with pip",
    )
    .query::<InstallQuery>()
    .body::<InstallBody>()
    .reply::<views::Installed>(201, "installed")
    .reply::<views::Installed>(200, "already installed")
    .reply::<views::InstallStarted>(202, "still running after `wait`")
    .add();
    doc.op(
        "post",
        "/api/v1/packages/upload",
        tag,
        "Upload a pure-Python wheel (multipart part `file`)",
    )
    .query::<UploadQuery>()
    .body_as::<views::Upload>("multipart/form-data")
    .reply::<views::Installed>(201, "stored")
    .add();
    doc.op("get", "/api/v1/packages/installs", tag, "Recent installs")
        .reply::<views::PackageJobs>(200, "the last 100")
        .add();
    doc.op(
        "get",
        "/api/v1/packages/installs/{id}",
        tag,
        "One install and its status",
    )
    .reply::<views::PackageJob>(200, "the install")
    .add();
    doc.op(
        "get",
        "/api/v1/packages/{name}",
        tag,
        "One package (built in or installed)",
    )
    .reply::<views::Package>(200, "the package")
    .add();
    doc.op(
        "delete",
        "/api/v1/packages/{name}",
        tag,
        "Uninstall (409 while another package needs it, unless ?force=true)",
    )
    .query::<UninstallQuery>()
    .reply::<views::Removed>(200, "what was removed")
    .add();
}
