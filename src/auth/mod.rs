//! Who is calling and in which tenant they act.
//!
//! Tokens are JWTs: HS256 with the server's shared secret (what `maestro token` mints), or
//! RS256/ES256-family from an external issuer (`external`). The algorithm decides which key
//! checks a token and each key checks one family only, so `alg: none`, an HS256 token signed
//! with a public key, or an RS256 token against the shared secret all fail. `exp` is required.
//!
//! The tenant is the token's tenant claim; otherwise the `X-Subtenant` header, allowed when
//! the user has a grant there; otherwise the user's only grant. Admins may act anywhere.

pub mod external;

use std::path::Path;
use std::time::Duration;

use axum::http::request::Parts;
use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::domain::{Role, TenantId};
use crate::store::StoreError;

/// Why a caller is not let in.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// No token, or one that does not verify.
    #[error("{0}")]
    Unauthorized(String),
    /// A valid token that may not act here.
    #[error("{0}")]
    Forbidden(String),
    /// A header that cannot be read.
    #[error("{0}")]
    Malformed(String),
    #[error("{0}")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

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
        validation.validate_nbf = true;
        // A shared-secret issuer (e.g. Census) may set an audience meant for us.
        validation.validate_aud = false;
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

    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|d| d.claims)
            .map_err(|e| AuthError::Unauthorized(format!("invalid token: {e}")))
    }
}

/// The secret from config, or one generated into the data directory on first start.
/// Returns the secret and whether it was just generated.
pub fn load_or_create_secret(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<(String, bool)> {
    load_or_create_key(configured, data_dir, "jwt_secret")
}

/// `configured` if set, else the key kept in `path`, if there is one.
fn existing_key(configured: Option<&str>, path: &Path) -> Option<String> {
    if let Some(s) = configured.filter(|s| !s.is_empty()) {
        return Some(s.to_string());
    }
    let s = std::fs::read_to_string(path).ok()?;
    Some(s.trim().to_string()).filter(|s| !s.is_empty())
}

/// The server's token secret for `maestro token`: `configured`, else the one `maestro serve`
/// generated into `data_dir`. Never generates one (a token signed with a secret the server
/// does not use would be refused).
pub fn load_secret(configured: Option<&str>, data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("jwt_secret");
    match existing_key(configured, &path) {
        Some(s) => Ok(s),
        None => anyhow::bail!(
            "no token secret in {}: give the server's MAESTRO_JWT_SECRET (or --jwt-secret), or the \
             --data-dir of a server that generated one (`maestro serve` does on its first start)",
            path.display()
        ),
    }
}

/// `configured` if set, else the key kept in `data_dir/file`, generated (32 random bytes,
/// hex, mode 0600) the first time; the flag says it was just generated.
pub fn load_or_create_key(configured: Option<&str>, data_dir: &Path, file: &str) -> anyhow::Result<(String, bool)> {
    let path = data_dir.join(file);
    if let Some(s) = existing_key(configured, &path) {
        return Ok((s, false));
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

/// Claim names, for issuers that do not say `email`, `tenant` and `role`.
#[derive(Debug, Clone)]
pub struct ClaimNames {
    pub email: String,
    pub tenant: String,
    pub role: String,
    pub admin_role: String,
}

/// What a verified token says.
#[derive(Debug, Clone)]
pub struct Identity {
    pub email: String,
    pub tenant: Option<String>,
    pub admin: bool,
}

/// Verifies tokens and works out the tenant a request acts in.
pub struct Auth {
    keys: Keys,
    external: Option<external::Issuer>,
    /// The external issuer's claim names.
    claims: ClaimNames,
    /// The names in tokens this server mints (`maestro token`).
    own_claims: ClaimNames,
    store: crate::store::Store,
}

/// Who is calling, and in which tenant they act.
#[derive(Debug, Clone)]
pub struct Caller {
    pub tenant: TenantId,
    pub email: String,
    pub admin: bool,
    /// `admin` (a server admin), `owner` (the token's own tenant), or the grant's role.
    pub role: Role,
}

pub const SUBTENANT_HEADER: &str = "x-subtenant";

fn claim_str(claims: &serde_json::Value, name: &str) -> Option<String> {
    claims
        .get(name)
        .and_then(|v| v.as_str())
        .map(str::to_string)
        .filter(|s| !s.is_empty())
}

impl Auth {
    pub fn new(keys: Keys, external: Option<external::Issuer>, claims: ClaimNames, store: crate::store::Store) -> Auth {
        let own_claims = ClaimNames {
            email: "email".into(),
            tenant: "tenant".into(),
            role: "role".into(),
            admin_role: "admin".into(),
        };
        Auth {
            keys,
            external,
            claims,
            own_claims,
            store,
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Check a token's signature and times; read who it names.
    pub async fn identify(&self, token: &str) -> Result<Identity, AuthError> {
        let bad = |e: jsonwebtoken::errors::Error| AuthError::Unauthorized(format!("invalid token: {e}"));
        let header = jsonwebtoken::decode_header(token).map_err(bad)?;
        // Our own tokens use fixed claim names; the configured names are the issuer's.
        let (claims, names): (serde_json::Value, &ClaimNames) = if header.alg == Algorithm::HS256 {
            let claims = decode(token, &self.keys.decoding, &self.keys.validation)
                .map_err(bad)?
                .claims;
            (claims, &self.own_claims)
        } else {
            let issuer = self.external.as_ref().ok_or_else(|| {
                AuthError::Unauthorized(format!(
                    "{:?} tokens are not accepted: no external issuer is configured (AUTH_PUBLIC_KEY or AUTH_JWKS)",
                    header.alg
                ))
            })?;
            let key = issuer.key_for(&header).await?;
            let claims: serde_json::Value = decode(token, &key, &issuer.validation(header.alg)).map_err(bad)?.claims;
            if claims.get("email_verified") == Some(&serde_json::Value::Bool(false)) {
                return Err(AuthError::Unauthorized("the token's email is not verified".into()));
            }
            (claims, &self.claims)
        };
        let email = claim_str(&claims, &names.email)
            .or_else(|| claim_str(&claims, "sub"))
            .ok_or_else(|| AuthError::Unauthorized(format!("the token has no `{}` or `sub` claim", names.email)))?
            .to_ascii_lowercase();
        let admin = !names.admin_role.is_empty()
            && match claims.get(&names.role) {
                Some(serde_json::Value::String(r)) => *r == names.admin_role,
                Some(serde_json::Value::Array(rs)) => rs.iter().any(|r| r.as_str() == Some(&names.admin_role)),
                _ => false,
            };
        let tenant = match names.tenant.as_str() {
            "" => None,
            claim => claim_str(&claims, claim),
        };
        Ok(Identity { email, tenant, admin })
    }

    /// The tenant this request acts in, and the caller's role there.
    pub async fn resolve(&self, id: &Identity, requested: Option<&str>) -> Result<(TenantId, Role), AuthError> {
        let forbidden = |m: String| Err(AuthError::Forbidden(m));
        let own = if id.admin { Role::Admin } else { Role::Owner };
        if let Some(t) = requested {
            let tenant = TenantId::parse(t)
                .map_err(|_| AuthError::Malformed(format!("{SUBTENANT_HEADER} {t:?} is not a valid subtenant id")))?;
            if id.tenant.as_deref() == Some(t) {
                return Ok((tenant, own));
            }
            if id.admin {
                // Admins reach existing subtenants only: a typo must not start a phantom tenant.
                if !self.store.subtenant_exists(t).await? {
                    return Err(AuthError::NotFound(format!("subtenant {t} not found")));
                }
                return Ok((tenant, Role::Admin));
            }
            return match self.store.grant_of(t, &id.email).await? {
                Some(g) => Ok((tenant, g.role)),
                None => forbidden(format!(
                    "{} has no access to subtenant {t}; an admin can grant it",
                    id.email
                )),
            };
        }
        if let Some(t) = &id.tenant {
            return match TenantId::parse(t) {
                Ok(tenant) => Ok((tenant, own)),
                Err(_) => forbidden("the token's tenant claim is not a valid tenant id".into()),
            };
        }
        let grants = self.store.grants_of(&id.email).await?;
        match grants.as_slice() {
            [one] => {
                let tenant =
                    TenantId::parse(&one.subtenant_id).map_err(|e| AuthError::Store(StoreError::Corrupt(e.summary)))?;
                Ok((tenant, one.role))
            }
            [] => forbidden(format!(
                "the token has no tenant claim and {} has no grant in any subtenant; an admin can grant access",
                id.email
            )),
            many => forbidden(format!(
                "{} has access to several subtenants ({}); choose one with the {SUBTENANT_HEADER} header",
                id.email,
                many.iter()
                    .map(|g| g.subtenant_id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )),
        }
    }
}

/// The Bearer token of a request, if it has one.
pub fn bearer(parts: &Parts) -> Result<Option<&str>, AuthError> {
    let Some(header) = parts.headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    let header = header
        .to_str()
        .map_err(|_| AuthError::Unauthorized("the Authorization header must be `Bearer <token>`".into()))?;
    let token = header
        .strip_prefix("Bearer ")
        .or_else(|| header.strip_prefix("bearer "))
        .ok_or_else(|| AuthError::Unauthorized("the Authorization header must be `Bearer <token>`".into()))?;
    Ok(Some(token.trim()))
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
