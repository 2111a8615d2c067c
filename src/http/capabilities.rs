//! `/api/v1/secrets` (values go in, never come out) and `/api/v1/egress` (the tenant's
//! outbound HTTP policy).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{no_content, ApiJson, AppState};
use crate::auth::Caller;
use crate::domain::egress::Policy;
use crate::http::error::{ApiError, ApiResult};
use crate::store::{Audit, SecretInfo};

/// Largest secret value.
const MAX_SECRET_BYTES: usize = 64 * 1024;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/secrets", get(list_secrets))
        .route(
            "/secrets/{name}",
            get(show_secret).put(put_secret).delete(delete_secret),
        )
        .route("/egress", get(show_egress).put(put_egress))
}

fn check_name(name: &str) -> ApiResult<()> {
    if crate::secrets::valid_name(name) {
        return Ok(());
    }
    Err(ApiError::invalid(
        "name",
        "a secret name is 1-128 letters, digits and `_`, not starting with a digit",
    ))
}

async fn list_secrets(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<serde_json::Value>> {
    let secrets = state.store.list_secrets(&caller.tenant).await?;
    Ok(Json(json!({ "secrets": secrets })))
}

async fn show_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult<Json<SecretInfo>> {
    check_name(&name)?;
    Ok(Json(state.store.secret_info(&caller.tenant, &name).await?))
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
) -> ApiResult<Response> {
    check_name(&name)?;
    if body.value.len() > MAX_SECRET_BYTES {
        return Err(ApiError::invalid("value", format!("at most {MAX_SECRET_BYTES} bytes")));
    }
    let (nonce, sealed) = state.vault.seal(&caller.tenant, &name, &body.value)?;
    let audit = Audit::new(&caller.email, "secret.put", format!("secret:{name}"));
    let created = state
        .store
        .put_secret(&caller.tenant, &name, &nonce, &sealed, &caller.email, audit)
        .await?;
    let info = state.store.secret_info(&caller.tenant, &name).await?;
    let status = if created { StatusCode::CREATED } else { StatusCode::OK };
    Ok((status, Json(info)).into_response())
}

async fn delete_secret(State(state): State<AppState>, caller: Caller, Path(name): Path<String>) -> ApiResult<Response> {
    check_name(&name)?;
    let audit = Audit::new(&caller.email, "secret.delete", format!("secret:{name}"));
    state.store.delete_secret(&caller.tenant, &name, audit).await?;
    Ok(no_content())
}

async fn show_egress(State(state): State<AppState>, caller: Caller) -> ApiResult<Json<Policy>> {
    Ok(Json(
        state.store.egress_policy(&caller.tenant).await?.unwrap_or_default(),
    ))
}

async fn put_egress(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(policy): ApiJson<Policy>,
) -> ApiResult<Json<Policy>> {
    policy.validate().map_err(|m| ApiError::invalid("allow", m))?;
    if policy.wants_private() && !state.settings.egress_allow_private {
        return Err(ApiError::Forbidden(
            "rules with allow_private are turned off on this server (EGRESS_ALLOW_PRIVATE=false)".into(),
        ));
    }
    state
        .store
        .set_egress_policy(
            &caller.tenant,
            &policy,
            &caller.email,
            Audit::new(&caller.email, "egress.update", "egress").detail(json!(policy)),
        )
        .await?;
    state.egress.changed(&caller.tenant);
    Ok(Json(policy))
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    use super::views;
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
