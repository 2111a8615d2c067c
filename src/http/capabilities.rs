//! `/api/v1/secrets` (values go in, never come out) and `/api/v1/egress` (the tenant's
//! outbound HTTP policy).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;

use super::{iso, no_content, views, ApiJson, AppState};
use crate::auth::Caller;
use crate::domain::egress::Policy;
use crate::http::error::ApiResult;
use crate::store::SecretInfo;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/secrets", get(list_secrets))
        .route(
            "/secrets/{name}",
            get(show_secret).put(put_secret).delete(delete_secret),
        )
        .route("/egress", get(show_egress).put(put_egress))
}

impl From<SecretInfo> for views::Secret {
    fn from(s: SecretInfo) -> Self {
        views::Secret {
            name: s.name,
            created_by: s.created_by,
            created_at: iso(s.created_at),
            updated_at: iso(s.updated_at),
        }
    }
}

async fn list_secrets(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<views::Secrets>> {
    let secrets = state.services.capabilities.secrets(&caller).await?;
    Ok(Json(views::Secrets {
        secrets: secrets.into_iter().map(Into::into).collect(),
    }))
}

async fn show_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<views::Secret>> {
    Ok(Json(state.services.capabilities.secret(&caller, &name).await?.into()))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SecretBody {
    value: String,
}

async fn put_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    ApiJson(body): ApiJson<SecretBody>,
) -> ApiResult<(StatusCode, Json<views::Secret>)> {
    let (info, created) = state
        .services
        .capabilities
        .put_secret(&caller, &name, &body.value)
        .await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(info.into())))
}

async fn delete_secret(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Response> {
    state.services.capabilities.delete_secret(&caller, &name).await?;
    Ok(no_content())
}

/// The policy is a domain type whose JSON is its wire format both ways (body and answer).
async fn show_egress(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Policy>> {
    Ok(Json(state.services.capabilities.egress(&caller).await?))
}

async fn put_egress(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(policy): ApiJson<Policy>,
) -> ApiResult<Json<Policy>> {
    Ok(Json(state.services.capabilities.set_egress(&caller, policy).await?))
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    let tag = "capabilities";
    doc.op(
        "get",
        "/api/v1/secrets",
        tag,
        "The tenant's secrets (names and dates, never values)",
    )
    .reply::<views::Secrets>(200, "the secrets")
    .add();
    doc.op("get", "/api/v1/secrets/{name}", tag, "One secret's name and dates")
        .reply::<views::Secret>(200, "the secret")
        .add();
    doc.op(
        "put",
        "/api/v1/secrets/{name}",
        tag,
        "Set a secret; the value is never returned",
    )
    .body::<SecretBody>()
    .reply::<views::Secret>(201, "created")
    .reply::<views::Secret>(200, "replaced")
    .add();
    doc.op("delete", "/api/v1/secrets/{name}", tag, "Delete a secret")
        .empty(204, "deleted")
        .add();
    doc.op(
        "get",
        "/api/v1/egress",
        tag,
        "The tenant's egress policy (default: deny all)",
    )
    .reply::<views::EgressPolicy>(200, "the policy")
    .add();
    doc.op("put", "/api/v1/egress", tag, "Replace the tenant's egress policy")
        .body::<views::EgressPolicy>()
        .reply::<views::EgressPolicy>(200, "the policy")
        .add();
}
