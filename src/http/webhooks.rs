//! `/api/v1/webhooks`: create, list, show, update, delete, rotate the signing secret.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{no_content, ApiJson, ApiQuery, AppState};
use crate::auth::Caller;
use crate::domain::{webhook_method, webhook_path, Target};
use crate::http::error::{ApiError, ApiResult};
use crate::store::{Audit, Webhook, WebhookFields};

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
    #[serde(default, deserialize_with = "present")]
    max_concurrency: Option<Option<i64>>,
    /// The HMAC signing key; generated when not given on create.
    secret: Option<String>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<i64>>, D::Error> {
    Option::<i64>::deserialize(d).map(Some)
}

/// A webhook as the API shows it; `secret` only right after it was set.
fn view(state: &AppState, w: &Webhook, with_secret: bool) -> Value {
    let mut v = json!(w);
    v["url"] = json!(format!("/api/v1/h/{}", w.fields.path));
    v["effective_max_concurrency"] = json!(limit_of(state, w));
    if with_secret {
        v["secret"] = json!(w.secret);
    }
    v
}

/// Concurrent requests this webhook may run at once.
pub fn limit_of(state: &AppState, w: &Webhook) -> u32 {
    w.fields
        .max_concurrency
        .map_or(state.settings.webhook_max_concurrency, |n| n as u32)
}

fn invalid(field: &str, message: impl Into<String>) -> ApiError {
    let message = message.into();
    ApiError::validation(
        format!("invalid `{field}`: {message}"),
        json!([{"field": field, "message": message}]),
    )
}

/// Merge `body` over `base` (or the defaults) and check every field.
fn fields_from(body: &WebhookBody, base: Option<&WebhookFields>) -> ApiResult<WebhookFields> {
    let path = match (&body.path, base) {
        (Some(p), _) => webhook_path(p).map_err(|m| invalid("path", m))?,
        (None, Some(b)) => b.path.clone(),
        (None, None) => return Err(invalid("path", "required")),
    };
    let target = Target::from_body(
        body.function_name.as_deref(),
        body.workflow_name.as_deref(),
        base.map(|b| &b.target),
    )
    .map_err(|(field, m)| invalid(field, m))?;
    let http_method = match (&body.http_method, base) {
        (Some(m), _) => webhook_method(m).map_err(|m| invalid("http_method", m))?,
        (None, Some(b)) => b.http_method.clone(),
        (None, None) => "POST".to_string(),
    };
    let input_mode = body
        .input_mode
        .clone()
        .or_else(|| base.map(|b| b.input_mode.clone()))
        .unwrap_or_else(|| "request".into());
    if input_mode != "request" && input_mode != "body" {
        return Err(invalid("input_mode", "must be `request` (the whole request) or `body`"));
    }
    let description = body
        .description
        .clone()
        .or_else(|| base.map(|b| b.description.clone()))
        .unwrap_or_default();
    if description.len() > 4000 || description.contains('\0') {
        return Err(invalid("description", "at most 4000 characters, no NUL bytes"));
    }
    let max_concurrency = match body.max_concurrency {
        Some(n) => n,
        None => base.and_then(|b| b.max_concurrency),
    };
    if max_concurrency.is_some_and(|n| !(1..=10_000).contains(&n)) {
        return Err(invalid("max_concurrency", "must be between 1 and 10000"));
    }
    let flag = |v: Option<bool>, old: Option<bool>, default: bool| v.or(old).unwrap_or(default);
    Ok(WebhookFields {
        path,
        target,
        http_method,
        requires_auth: flag(body.requires_auth, base.map(|b| b.requires_auth), false),
        require_timestamp: flag(body.require_timestamp, base.map(|b| b.require_timestamp), false),
        description,
        enabled: flag(body.enabled, base.map(|b| b.enabled), true),
        async_mode: flag(body.async_mode, base.map(|b| b.async_mode), false),
        input_mode,
        max_concurrency,
    })
}

/// A caller-chosen secret must be long enough to resist guessing.
fn check_secret(secret: &str) -> ApiResult<()> {
    if secret.len() < 16 || secret.len() > 256 || !secret.chars().all(|c| c.is_ascii_graphic()) {
        return Err(invalid("secret", "16 to 256 printable ASCII characters"));
    }
    Ok(())
}

fn new_secret() -> String {
    format!("whsec_{}", hex::encode(rand::random::<[u8; 24]>()))
}

async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<WebhookBody>,
) -> ApiResult<Response> {
    let fields = fields_from(&body, None)?;
    let secret = match &body.secret {
        Some(s) => {
            check_secret(s)?;
            s.clone()
        }
        None => new_secret(),
    };
    let audit = |w: &Webhook| Audit::new(&caller.email, "webhook.create", format!("webhook:{}", w.id)).detail(json!(w));
    let w = state
        .store
        .create_webhook(&caller.tenant, &fields, &secret, &caller.email, audit)
        .await?;
    Ok((StatusCode::CREATED, Json(view(&state, &w, true))).into_response())
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
) -> ApiResult<Json<Value>> {
    let (limit, offset) = super::Page::of(q.limit, q.offset);
    let (hooks, total) = state
        .store
        .list_webhooks(&caller.tenant, q.function.as_deref(), limit, offset)
        .await?;
    let webhooks: Vec<Value> = hooks.iter().map(|w| view(&state, w, false)).collect();
    Ok(Json(
        json!({"webhooks": webhooks, "total": total, "limit": limit, "offset": offset}),
    ))
}

async fn show(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    let w = state.store.get_webhook(&caller.tenant, &id).await?;
    Ok(Json(view(&state, &w, false)))
}

async fn update(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<WebhookBody>,
) -> ApiResult<Json<Value>> {
    if body.secret.is_some() {
        return Err(invalid(
            "secret",
            "change it with POST /api/v1/webhooks/{id}/rotate-secret",
        ));
    }
    let current = state.store.get_webhook(&caller.tenant, &id).await?;
    let fields = fields_from(&body, Some(&current.fields))?;
    let audit = |w: &Webhook| Audit::new(&caller.email, "webhook.update", format!("webhook:{id}")).detail(json!(w));
    let w = state.store.update_webhook(&caller.tenant, &id, &fields, audit).await?;
    Ok(Json(view(&state, &w, false)))
}

async fn remove(State(state): State<AppState>, caller: Caller, Path(id): Path<String>) -> ApiResult<Response> {
    let audit = Audit::new(&caller.email, "webhook.delete", format!("webhook:{id}"));
    state.store.delete_webhook(&caller.tenant, &id, audit).await?;
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
) -> ApiResult<Json<Value>> {
    let body: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        super::parse_json(&body)?
    };
    let secret = match body.secret {
        Some(s) => {
            check_secret(&s)?;
            s
        }
        None => new_secret(),
    };
    let audit = Audit::new(&caller.email, "webhook.rotate_secret", format!("webhook:{id}"));
    let w = state
        .store
        .set_webhook_secret(&caller.tenant, &id, &secret, audit)
        .await?;
    Ok(Json(view(&state, &w, true)))
}

/// This resource's operations in `/openapi.json`.
pub(super) fn document(doc: &mut super::openapi::Doc) {
    use super::views;
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
