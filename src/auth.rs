//! API tokens: HS256 JWTs with `sub`, `email`, `tenant`, optional `role: "admin"` and `exp`.
//! Only HS256 is accepted (so `alg: none` and algorithm swaps fail), `exp` is required.

use std::path::Path;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

#[derive(Debug, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    #[serde(default)]
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    pub exp: i64,
    #[serde(default)]
    pub iat: i64,
}

/// Verifies and mints tokens.
pub struct Keys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Keys {
    pub fn new(secret: &str) -> Keys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.leeway = 30;
        Keys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn mint(&self, tenant: &str, email: &str, admin: bool, ttl: Duration) -> anyhow::Result<String> {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: email.to_string(),
            email: email.to_string(),
            tenant: Some(tenant.to_string()),
            role: admin.then(|| "admin".to_string()),
            exp: now + ttl.as_secs() as i64,
            iat: now,
        };
        Ok(encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }

    pub fn verify(&self, token: &str) -> Result<Claims, ApiError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| ApiError::Unauthorized(format!("invalid token: {e}")))
    }
}

/// The secret from config, or one generated into the data directory on first start.
/// Returns the secret and whether it was just generated.
pub fn load_or_create_secret(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<(String, bool)> {
    if let Some(s) = configured.filter(|s| !s.is_empty()) {
        return Ok((s.to_string(), false));
    }
    let path = data_dir.join("jwt_secret");
    if let Ok(s) = std::fs::read_to_string(&path) {
        if !s.trim().is_empty() {
            return Ok((s.trim().to_string(), false));
        }
    }
    std::fs::create_dir_all(data_dir)?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    crate::sandbox::runtime::write_atomic(&path, secret.as_bytes())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok((secret, true))
}

/// Parse a TTL like `90s`, `30m`, `1h`, `7d` (a bare number is seconds).
pub fn parse_ttl(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("bad duration {s:?}: use e.g. 90s, 30m, 1h, 7d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        "d" => n * 86_400,
        _ => return Err(format!("bad duration unit in {s:?}: use s, m, h or d")),
    };
    Ok(Duration::from_secs(secs))
}

/// Who is calling, and in which tenant they act.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: String,
    pub email: String,
    pub admin: bool,
}

fn valid_tenant(t: &str) -> bool {
    !t.is_empty() && t.len() <= 128 && t.chars().all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

impl<S> FromRequestParts<S> for Caller
where
    S: Send + Sync,
    std::sync::Arc<Keys>: axum::extract::FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let keys: std::sync::Arc<Keys> = axum::extract::FromRef::from_ref(state);
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::Unauthorized("missing Authorization: Bearer <token> header".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into()))?;
        let claims = keys.verify(token.trim())?;
        let tenant = claims.tenant.filter(|t| !t.is_empty()).ok_or_else(|| {
            ApiError::Forbidden("the token has no `tenant` claim, so it cannot act in any tenant".into())
        })?;
        if !valid_tenant(&tenant) {
            return Err(ApiError::Forbidden(
                "the token's `tenant` claim is not a valid tenant id".into(),
            ));
        }
        let email = if claims.email.is_empty() {
            claims.sub
        } else {
            claims.email
        };
        Ok(Caller {
            tenant,
            email,
            admin: claims.role.as_deref() == Some("admin"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttls() -> Result<(), String> {
        assert_eq!(parse_ttl("90")?, Duration::from_secs(90));
        assert_eq!(parse_ttl("30m")?, Duration::from_secs(1800));
        assert_eq!(parse_ttl("1h")?, Duration::from_secs(3600));
        assert_eq!(parse_ttl("7d")?, Duration::from_secs(604_800));
        assert!(parse_ttl("1y").is_err());
        assert!(parse_ttl("h").is_err());
        Ok(())
    }

    #[test]
    fn tokens_round_trip_and_reject_other_secrets() -> anyhow::Result<()> {
        let keys = Keys::new("s1");
        let t = keys.mint("acme", "a@acme.io", true, Duration::from_secs(60))?;
        let c = keys.verify(&t)?;
        assert_eq!(c.tenant.as_deref(), Some("acme"));
        assert_eq!(c.role.as_deref(), Some("admin"));
        assert!(Keys::new("s2").verify(&t).is_err());
        Ok(())
    }
}
