//! `/api/v1/webhooks`: create, list, show, update, delete, rotate the signing secret.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;

use super::{iso, no_content, views, ApiJson, ApiQuery, AppState};
use crate::auth::Caller;
use crate::http::error::ApiResult;
use crate::service::webhooks::Draft;
use crate::store::Webhook;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhooks", post(create).get(list))
        .route("/webhooks/{id}", get(show).put(update).delete(remove))
        .route("/webhooks/{id}/rotate-secret", post(rotate_secret))
}

/// Body of `POST /webhooks` and `PUT /webhooks/{id}` (on PUT every field is optional and
/// unset fields keep their value).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct WebhookBody {
    path: Option<String>,
    function_name: Option<String>,
    workflow_name: Option<String>,
    http_method: Option<String>,
    requires_auth: Option<bool>,
    require_timestamp: Option<bool>,
    description: Option<String>,
    enabled: Option<bool>,
    #[serde(rename = "async")]
    async_mode: Option<bool>,
    input_mode: Option<String>,
    /// A number, or `null` to fall back to the server default.
    #[serde(default, deserialize_with = "super::nullable")]
    max_concurrency: Option<Option<i64>>,
    /// The HMAC signing key; generated when not given on create.
    secret: Option<String>,
}

impl From<WebhookBody> for Draft {
    fn from(b: WebhookBody) -> Draft {
        Draft {
            path: b.path,
            function_name: b.function_name,
            workflow_name: b.workflow_name,
            http_method: b.http_method,
            requires_auth: b.requires_auth,
            require_timestamp: b.require_timestamp,
            description: b.description,
            enabled: b.enabled,
            async_mode: b.async_mode,
            input_mode: b.input_mode,
            max_concurrency: b.max_concurrency,
            secret: b.secret,
        }
    }
}

/// A webhook as the API shows it; `secret` only right after it was set.
fn view(state: &AppState, w: Webhook, with_secret: bool) -> views::Webhook {
    let limit = limit_of(state, &w);
    let f = w.fields;
    let (function_name, workflow_name) = f.target.into_names();
    views::Webhook {
        id: w.id,
        url: format!("/api/v1/h/{}", f.path),
        path: f.path,
        function_name,
        workflow_name,
        http_method: f.http_method,
        requires_auth: f.requires_auth,
        require_timestamp: f.require_timestamp,
        description: f.description,
        enabled: f.enabled,
        async_mode: f.async_mode,
        input_mode: f.input_mode,
        max_concurrency: f.max_concurrency,
        effective_max_concurrency: limit,
        secret: with_secret.then_some(w.secret),
        created_by: w.created_by,
        created_at: iso(w.created_at),
        updated_at: iso(w.updated_at),
    }
}

/// Concurrent requests this webhook may run at once.
pub fn limit_of(state: &AppState, w: &Webhook) -> u32 {
    w.fields
        .max_concurrency
        .map_or(state.settings.webhook_max_concurrency, |n| n as u32)
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<WebhookBody>,
) -> ApiResult<(StatusCode, Json<views::Webhook>)> {
    let w = state.services.webhooks.create(&caller, body.into()).await?;
    Ok((StatusCode::CREATED, Json(view(&state, w, true))))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    function: Option<String>,
    limit: Option<i64>,
    offset: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult<Json<views::WebhookPage>> {
    let (limit, offset) = super::Page::of(q.limit, q.offset);
    let (hooks, total) = state
        .services
        .webhooks
        .list(&caller, q.function.as_deref(), limit, offset)
        .await?;
    Ok(Json(views::WebhookPage {
        webhooks: hooks.into_iter().map(|w| view(&state, w, false)).collect(),
        total,
        limit,
        offset,
    }))
}

async fn show(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult<Json<views::Webhook>> {
    let w = state.services.webhooks.get(&caller, &id).await?;
    Ok(Json(view(&state, w, false)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<WebhookBody>,
) -> ApiResult<Json<views::Webhook>> {
    let w = state.services.webhooks.update(&caller, &id, body.into()).await?;
    Ok(Json(view(&state, w, false)))
}

async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    state.services.webhooks.delete(&caller, &id).await?;
    Ok(no_content())
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RotateBody {
    secret: Option<String>,
}

/// `POST /webhooks/{id}/rotate-secret`: a new signing secret (given, or generated), shown once.
async fn rotate_secret(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<views::Webhook>> {
    let body: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        super::parse_json(&body)?
    };
    let w = state.services.webhooks.rotate_secret(&caller, &id, body.secret).await?;
    Ok(Json(view(&state, w, true)))
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    let tag = "webhooks";
    doc.op("post", "/api/v1/webhooks", tag, "Create a webhook")
        .body::<WebhookBody>()
        .reply::<views::Webhook>(201, "created, with its secret")
        .add();
    doc.op("get", "/api/v1/webhooks", tag, "List webhooks")
        .query::<ListQuery>()
        .reply::<views::WebhookPage>(200, "a page")
        .add();
    doc.op("get", "/api/v1/webhooks/{id}", tag, "Show a webhook")
        .reply::<views::Webhook>(200, "the webhook")
        .add();
    doc.op("put", "/api/v1/webhooks/{id}", tag, "Update a webhook")
        .body::<WebhookBody>()
        .reply::<views::Webhook>(200, "the webhook")
        .add();
    doc.op("delete", "/api/v1/webhooks/{id}", tag, "Delete a webhook")
        .empty(204, "deleted")
        .add();
    doc.op("post", "/api/v1/webhooks/{id}/rotate-secret", tag, "New signing secret")
        .body::<RotateBody>()
        .reply::<views::Webhook>(200, "the webhook with its new secret")
        .add();
}
