//! `/api/v1/subtenants` (admin only), `/api/v1/audit` (admin only) and `/api/v1/me`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{iso, no_content, views, ApiJson, ApiQuery, AppState, Page};
use crate::auth::Caller;
use crate::http::error::ApiResult;
use crate::service::tenancy::Draft;
use crate::store::{Grant, Subtenant};

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

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SubtenantBody {
    subtenant_id: Option<String>,
    description: Option<String>,
    quotas: Option<Value>,
}

impl From<SubtenantBody> for Draft {
    fn from(b: SubtenantBody) -> Draft {
        Draft {
            subtenant_id: b.subtenant_id,
            description: b.description,
            quotas: b.quotas,
        }
    }
}

fn view(s: Subtenant) -> views::Subtenant {
    views::Subtenant {
        subtenant_id: s.subtenant_id,
        description: s.description,
        quotas: s.quotas,
        created_by: s.created_by,
        created_at: iso(s.created_at),
        updated_at: iso(s.updated_at),
        members: None,
        effective_quotas: None,
    }
}

impl From<Grant> for views::Grant {
    fn from(g: Grant) -> Self {
        views::Grant {
            subtenant_id: g.subtenant_id,
            user_email: g.user_email,
            role: g.role.to_string(),
            granted_by: g.granted_by,
            created_at: iso(g.created_at),
        }
    }
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<SubtenantBody>,
) -> ApiResult<(StatusCode, Json<views::Subtenant>)> {
    let s = state.services.tenancy.create(&caller, body.into()).await?;
    Ok((StatusCode::CREATED, Json(view(s))))
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(page): ApiQuery<Page>,
) -> ApiResult<Json<views::SubtenantPage>> {
    let (limit, offset) = page.clamp();
    let (subtenants, total) = state.services.tenancy.list(&caller, limit, offset).await?;
    Ok(Json(views::SubtenantPage {
        subtenants: subtenants.into_iter().map(view).collect(),
        total,
        limit,
        offset,
    }))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<views::Subtenant>> {
    let d = state.services.tenancy.get(&caller, &id).await?;
    Ok(Json(views::Subtenant {
        members: Some(d.members as i64),
        effective_quotas: Some(json!(d.effective_quotas)),
        ..view(d.subtenant)
    }))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<SubtenantBody>,
) -> ApiResult<Json<views::Subtenant>> {
    Ok(Json(view(
        state.services.tenancy.update(&caller, &id, body.into()).await?,
    )))
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
    state.services.tenancy.delete(&caller, &id, q.force).await?;
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
) -> ApiResult<Json<views::Grant>> {
    let g = state
        .services
        .tenancy
        .grant(&caller, &id, &body.user_email, body.role.as_deref())
        .await?;
    Ok(Json(g.into()))
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
    state.services.tenancy.revoke(&caller, &id, &body.user_email).await?;
    Ok(no_content())
}

async fn members(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<views::Members>> {
    let members = state.services.tenancy.members(&caller, &id).await?;
    Ok(Json(views::Members {
        subtenant_id: id,
        members: members.into_iter().map(Into::into).collect(),
    }))
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
) -> ApiResult<Json<views::AuditPage>> {
    let (limit, offset) = Page::of(q.limit, q.offset);
    let (entries, total) = state
        .services
        .tenancy
        .audit(&caller, q.tenant.as_deref(), limit, offset)
        .await?;
    let entries = entries
        .into_iter()
        .map(|e| views::AuditEntry {
            id: e.id,
            tenant: e.tenant,
            actor: e.actor,
            action: e.action,
            target: e.target,
            detail: e.detail,
            at: iso(e.at),
        })
        .collect();
    Ok(Json(views::AuditPage {
        entries,
        total,
        limit,
        offset,
    }))
}

/// Who the token says the caller is, where this request acts, and every grant they hold.
async fn me(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<views::Me>> {
    let (grants, quotas) = state.services.tenancy.me(&caller).await?;
    Ok(Json(views::Me {
        email: caller.email,
        admin: caller.admin,
        tenant: caller.tenant.to_string(),
        role: caller.role.to_string(),
        grants: grants.into_iter().map(Into::into).collect(),
        quotas: json!(quotas),
    }))
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
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
