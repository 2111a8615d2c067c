//! The caller of a request: who they are and in which tenant they act, from the bearer token.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;

use super::error::ApiError;
use crate::auth::{bearer, Auth, Caller, SUBTENANT_HEADER};

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    Arc<Auth>: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth: Arc<Auth> = axum::extract::FromRef::from_ref(state);
        let token = bearer(parts)?
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer <token> header".into()))?;
        let id = auth.identify(token).await?;
        let requested = match parts.headers.get(SUBTENANT_HEADER) {
            Some(v) => Some(
                v.to_str()
                    .map_err(|_| ApiError::BadRequest(format!("the {SUBTENANT_HEADER} header is not text")))?,
            ),
            None => None,
        };
        let (tenant, role) = auth.resolve(&id, requested).await?;
        let reading = matches!(parts.method, axum::http::Method::GET | axum::http::Method::HEAD);
        if !role.writes() && !reading {
            return Err(ApiError::Forbidden(format!(
                "{} may only read in subtenant {tenant} (role viewer)",
                id.email
            )));
        }
        Ok(Caller {
            tenant,
            email: id.email,
            admin: id.admin,
            role,
        })
    }
}
