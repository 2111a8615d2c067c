//! `/api/v1/subtenants` (admin only), `/api/v1/audit` (admin only) and `/api/v1/me`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{no_content, ApiJson, ApiQuery, AppState, Page};
use crate::auth::{Caller, ROLES};
use crate::engine::Quotas;
use crate::http::error::{ApiError, ApiResult};
use crate::store::{Audit, Grant, Subtenant};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/subtenants", post(create).get(list))
        .route("/subtenants/{id}", get(show).put(update).delete(remove))
        .route("/subtenants/{id}/grant-access", post(grant))
        .route("/subtenants/{id}/revoke-access", post(revoke))
        .route("/subtenants/{id}/members", get(members))
        .route("/audit", get(audit))
        .route("/me", get(me))
}

fn admin_only(caller: &Caller) -> ApiResult<()> {
    if caller.admin {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only admins manage subtenants and read the audit trail".into(),
        ))
    }
}

/// A subtenant id: a letter or digit, then letters, digits, `-` or `_`; at most 64.
fn check_id(id: &str) -> ApiResult<()> {
    let mut chars = id.chars();
    let first = chars.next().is_some_and(|c| c.is_ascii_alphanumeric());
    if !first || id.len() > 64 || !chars.all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(ApiError::invalid(
            "subtenant_id",
            "1 to 64 letters, digits, `-` or `_`, starting with a letter or digit",
        ));
    }
    Ok(())
}

/// An email as stored: trimmed, lower-case, one `@` with a dotted domain.
fn check_email(email: &str) -> ApiResult<String> {
    let e = email.trim().to_ascii_lowercase();
    let ok = match e.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !domain.contains('@')
                && e.len() <= 254
                && e.chars().all(|c| c.is_ascii_graphic())
        }
        None => false,
    };
    if !ok {
        return Err(ApiError::invalid(
            "user_email",
            format!("{email:?} is not an email address"),
        ));
    }
    Ok(e)
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SubtenantBody {
    subtenant_id: Option<String>,
    description: Option<String>,
    quotas: Option<Value>,
}

fn check_description(d: &str) -> ApiResult<()> {
    if d.len() > 4000 || d.contains('\0') {
        return Err(ApiError::invalid(
            "description",
            "at most 4000 characters, no NUL bytes",
        ));
    }
    Ok(())
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SubtenantBody>,
) -> ApiResult<Response> {
    admin_only(&caller)?;
    let id = body
        .subtenant_id
        .ok_or_else(|| ApiError::invalid("subtenant_id", "required"))?;
    check_id(&id)?;
    let description = body.description.unwrap_or_default();
    check_description(&description)?;
    let quotas = Quotas::parse(body.quotas.as_ref()).map_err(ApiError::malformed)?;
    let audit =
        |s: &Subtenant| Audit::new(&caller.email, "subtenant.create", format!("subtenant:{id}")).detail(json!(s));
    let s = state
        .store
        .create_subtenant(&id, &description, &quotas, &caller.email, audit)
        .await?;
    Ok((StatusCode::CREATED, Json(s)).into_response())
}

async fn list(State(state): State<AppState>, caller: Caller, ApiQuery(page): ApiQuery<Page>) -> ApiResult<Json<Value>> {
    admin_only(&caller)?;
    let (limit, offset) = page.clamp();
    let (subtenants, total) = state.store.list_subtenants(limit, offset).await?;
    Ok(Json(
        json!({"subtenants": subtenants, "total": total, "limit": limit, "offset": offset}),
    ))
}

async fn show(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    admin_only(&caller)?;
    let s = state.store.get_subtenant(&id).await?;
    let members = state.store.members(&id).await?;
    let mut v = json!(s);
    v["members"] = json!(members.len());
    v["effective_quotas"] = json!(state.engine.quotas_of(&id).await?);
    Ok(Json(v))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SubtenantBody>,
) -> ApiResult<Json<Value>> {
    admin_only(&caller)?;
    if body.subtenant_id.as_deref().is_some_and(|s| s != id) {
        return Err(ApiError::invalid("subtenant_id", "a subtenant cannot be renamed"));
    }
    let current = state.store.get_subtenant(&id).await?;
    let description = body.description.unwrap_or(current.description);
    check_description(&description)?;
    let quotas = match &body.quotas {
        Some(q) => Quotas::parse(Some(q)).map_err(ApiError::malformed)?,
        None => current.quotas,
    };
    let audit =
        |s: &Subtenant| Audit::new(&caller.email, "subtenant.update", format!("subtenant:{id}")).detail(json!(s));
    let s = state.store.update_subtenant(&id, &description, &quotas, audit).await?;
    state.engine.forget_quotas(&id);
    Ok(Json(json!(s)))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    force: bool,
}

async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> ApiResult<Response> {
    admin_only(&caller)?;
    let audit =
        Audit::new(&caller.email, "subtenant.delete", format!("subtenant:{id}")).detail(json!({"force": q.force}));
    state.store.delete_subtenant(&id, q.force, audit).await?;
    state.engine.forget_quotas(&id);
    Ok(no_content())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    user_email: String,
    role: Option<String>,
}

async fn grant(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<GrantBody>,
) -> ApiResult<Response> {
    admin_only(&caller)?;
    let email = check_email(&body.user_email)?;
    let role = body.role.unwrap_or_else(|| "member".into());
    if !ROLES.contains(&role.as_str()) {
        return Err(ApiError::invalid(
            "role",
            format!("must be one of {}", ROLES.join(", ")),
        ));
    }
    let audit = |g: &Grant| Audit::new(&caller.email, "grant.create", format!("grant:{email}")).detail(json!(g));
    let g = state.store.grant(&id, &email, &role, &caller.email, audit).await?;
    Ok((StatusCode::OK, Json(g)).into_response())
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    user_email: String,
}

async fn revoke(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<RevokeBody>,
) -> ApiResult<Response> {
    admin_only(&caller)?;
    let email = check_email(&body.user_email)?;
    let audit = Audit::new(&caller.email, "grant.delete", format!("grant:{email}"));
    state.store.revoke(&id, &email, audit).await?;
    Ok(no_content())
}

async fn members(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    admin_only(&caller)?;
    let members = state.store.members(&id).await?;
    Ok(Json(json!({"subtenant_id": id, "members": members})))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct AuditQuery {
    tenant: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn audit(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AuditQuery>,
) -> ApiResult<Json<Value>> {
    admin_only(&caller)?;
    let (limit, offset) = Page::of(q.limit, q.offset);
    let (entries, total) = state.store.list_audit(q.tenant.as_deref(), limit, offset).await?;
    Ok(Json(
        json!({"entries": entries, "total": total, "limit": limit, "offset": offset}),
    ))
}

/// Who the token says the caller is, where this request acts, and every grant they hold.
async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Value>> {
    let grants = state.store.grants_of(&caller.email).await?;
    Ok(Json(json!({
        "email": caller.email,
        "admin": caller.admin,
        "tenant": caller.tenant,
        "role": caller.role,
        "grants": grants,
        "quotas": state.engine.quotas_of(&caller.tenant).await?,
    })))
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    use super::views;
    let tag = "tenancy";
    doc.op("post", "/api/v1/subtenants", tag, "Create a subtenant (admin)")
        .body::<SubtenantBody>()
        .reply::<views::Subtenant>(201, "created")
        .add();
    doc.op("get", "/api/v1/subtenants", tag, "List subtenants (admin)")
        .query::<Page>()
        .reply::<views::SubtenantPage>(200, "a page")
        .add();
    doc.op("get", "/api/v1/subtenants/{id}", tag, "Show a subtenant (admin)")
        .reply::<views::Subtenant>(200, "the subtenant, its member count and quotas in force")
        .add();
    doc.op(
        "put",
        "/api/v1/subtenants/{id}",
        tag,
        "Update description and quotas (admin)",
    )
    .body::<SubtenantBody>()
    .reply::<views::Subtenant>(200, "the subtenant")
    .add();
    doc.op(
        "delete",
        "/api/v1/subtenants/{id}",
        tag,
        "Delete (admin; ?force=true removes what it owns)",
    )
    .query::<DeleteQuery>()
    .empty(204, "deleted")
    .add();
    doc.op(
        "post",
        "/api/v1/subtenants/{id}/grant-access",
        tag,
        "Grant a user access (admin)",
    )
    .body::<GrantBody>()
    .reply::<views::Grant>(200, "the grant")
    .add();
    doc.op(
        "post",
        "/api/v1/subtenants/{id}/revoke-access",
        tag,
        "Revoke a user's access (admin)",
    )
    .body::<RevokeBody>()
    .empty(204, "revoked")
    .add();
    doc.op("get", "/api/v1/subtenants/{id}/members", tag, "Members (admin)")
        .reply::<views::Members>(200, "the grants")
        .add();
    doc.op("get", "/api/v1/audit", tag, "Audit trail (admin)")
        .query::<AuditQuery>()
        .reply::<views::AuditPage>(200, "a page, newest first")
        .add();
    doc.op("get", "/api/v1/me", tag, "Who I am and where I act")
        .reply::<views::Me>(200, "the caller")
        .add();
}
