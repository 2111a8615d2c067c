//! `/api/v1/packages`: the runtime's built-in packages and the tenant's own (install with
//! pip, upload a wheel, uninstall, follow an install).

use std::time::Duration;

use axum::extract::{Multipart, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{iso, views, ApiJson, ApiQuery, AppState};
use crate::auth::Caller;
use crate::http::error::{ApiError, ApiResult};
use crate::packages::Builtin;
use crate::service::packages::Found;
use crate::store::{InstalledPackage, PackageJob};

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

fn builtin_view(b: Builtin) -> views::Package {
    views::Package {
        name: b.name,
        version: b.version,
        builtin: Some(true),
        summary: b.summary,
        ..Default::default()
    }
}

fn installed_view(p: InstalledPackage) -> views::Package {
    views::Package {
        name: p.name,
        version: p.version,
        builtin: Some(false),
        filename: Some(p.filename),
        sha256: Some(p.sha256),
        size_bytes: Some(p.size_bytes),
        unpacked_bytes: Some(p.unpacked_bytes),
        requires: Some(p.requires),
        source: Some(p.source),
        dependency_of: Some(p.dependency_of),
        installed_by: Some(p.installed_by),
        installed_at: Some(iso(p.installed_at)),
        ..Default::default()
    }
}

fn job_view(j: PackageJob) -> views::PackageJob {
    views::PackageJob {
        id: j.id,
        requirement: j.requirement,
        status: j.status.as_str().to_string(),
        error: j.error,
        result: j.result,
        created_by: j.created_by,
        created_at: iso(j.created_at),
        finished_at: j.finished_at.map(iso),
    }
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<views::PackageList>> {
    let service = &state.services.packages;
    let mut packages = Vec::new();
    if q.builtin != Some(false) {
        packages.extend(service.manager().builtin().values().cloned().map(builtin_view));
    }
    let installed = service.installed(&caller).await?;
    let tenant_bytes_used = installed.iter().map(|p| p.size_bytes).sum();
    if q.builtin != Some(true) {
        packages.extend(installed.into_iter().map(installed_view));
    }
    let policy = service.manager().policy();
    Ok(Json(views::PackageList {
        packages,
        installation_allowed: policy.allowed,
        tenant_bytes_used,
        tenant_bytes_limit: policy.tenant_max_bytes,
        package_bytes_limit: policy.limits.max_bytes,
    }))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<views::Package>> {
    Ok(Json(match state.services.packages.find(&caller, &name).await? {
        Found::Builtin(b) => builtin_view(b),
        Found::Installed { package, needed_by } => views::Package {
            needed_by: Some(needed_by),
            ..installed_view(package)
        },
    }))
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
/// poll. The result is the install job's stored result (`views::Installed`).
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
    let started = state
        .services
        .packages
        .install(&caller, &body.name, body.version.as_deref())
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
        Err(_) => {
            let started = views::InstallStarted {
                job_id,
                status: "running".into(),
                status_url: status_url.clone(),
            };
            Ok((StatusCode::ACCEPTED, [(header::LOCATION, status_url)], Json(started)).into_response())
        }
    }
}

async fn show_job(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<views::PackageJob>> {
    Ok(Json(job_view(state.services.packages.job(&caller, &id).await?)))
}

async fn list_jobs(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<views::PackageJobs>> {
    let jobs = state.services.packages.jobs(&caller, 100).await?;
    Ok(Json(views::PackageJobs {
        installs: jobs.into_iter().map(job_view).collect(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct UploadQuery {
    replace: Option<bool>,
}

/// `multipart/form-data` with the wheel in a part named `file` (its file name matters: the
/// tags in it are checked). The answer is what the upload stored (`views::Installed`).
async fn upload(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<UploadQuery>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> ApiResult<Response> {
    let manager = state.services.packages.manager();
    manager.check_allowed()?;
    let mut form = form.map_err(|e| {
        ApiError::BadRequest(format!(
            "send the wheel as multipart/form-data with a part named `file`: {}",
            e.body_text()
        ))
    })?;
    let bad = |e: axum::extract::multipart::MultipartError| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::TooLarge(format!(
            "the wheel is larger than the limit of {} bytes",
            manager.policy().limits.max_bytes
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
        .services
        .packages
        .upload(&caller, &filename, bytes, q.replace.unwrap_or(false))
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
) -> ApiResult<Json<views::Removed>> {
    let force = q.force.unwrap_or(false);
    let removed = state.services.packages.uninstall(&caller, &name, force).await?;
    Ok(Json(views::Removed {
        // As it was removed: no `builtin` flag (listings carry it).
        removed: views::Package {
            builtin: None,
            ..installed_view(removed)
        },
    }))
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
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
