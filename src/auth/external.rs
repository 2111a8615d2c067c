//! Tokens from an external identity provider (the seed's Census service, or any OIDC
//! issuer): RS256/ES256-family signatures checked against a configured PEM public key or a
//! JWKS document (a file or a URL, cached and refreshed), with `iss`, `aud`, `exp` and `nbf`.

use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Header, Validation};
use tokio::sync::RwLock;

use super::AuthError;
use crate::config::Settings;

/// A key lookup that missed may refresh the JWKS at most this often (a new key rotated in).
const MISS_REFRESH: Duration = Duration::from_secs(10);

pub struct Issuer {
    keys: KeySource,
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
}

enum KeySource {
    Pem {
        rsa: Option<DecodingKey>,
        ec: Option<DecodingKey>,
    },
    Jwks(Jwks),
}

struct Jwks {
    source: String,
    refresh: Duration,
    /// The set and when it was fetched.
    state: RwLock<(JwkSet, Instant)>,
    /// One fetch at a time: concurrent requests with unknown key ids wait for it.
    reloading: tokio::sync::Mutex<()>,
}

fn unauthorized(m: impl Into<String>) -> AuthError {
    AuthError::Unauthorized(m.into())
}

/// Which family an algorithm's key belongs to.
fn family(alg: Algorithm) -> Option<&'static str> {
    match alg {
        Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512 => Some("RSA"),
        Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512 => Some("RSA"),
        Algorithm::ES256 | Algorithm::ES384 => Some("EC"),
        _ => None,
    }
}

async fn fetch(source: &str) -> anyhow::Result<JwkSet> {
    let text = if source.starts_with("http://") || source.starts_with("https://") {
        let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        let resp = client.get(source).send().await?.error_for_status()?;
        resp.text().await?
    } else {
        tokio::fs::read_to_string(source).await?
    };
    Ok(serde_json::from_str(&text)?)
}

impl Issuer {
    /// The configured issuer, if any; fails at start when its key cannot be read.
    pub async fn open(cfg: &Settings) -> anyhow::Result<Option<Issuer>> {
        let keys = match (&cfg.auth_public_key, &cfg.auth_jwks) {
            (Some(_), Some(_)) => anyhow::bail!("set AUTH_PUBLIC_KEY or AUTH_JWKS, not both"),
            (Some(path), None) => {
                let pem = std::fs::read(path)
                    .map_err(|e| anyhow::anyhow!("reading AUTH_PUBLIC_KEY {}: {e}", path.display()))?;
                let rsa = DecodingKey::from_rsa_pem(&pem).ok();
                let ec = DecodingKey::from_ec_pem(&pem).ok();
                if rsa.is_none() && ec.is_none() {
                    anyhow::bail!(
                        "AUTH_PUBLIC_KEY {} is not an RSA or EC public key in PEM",
                        path.display()
                    );
                }
                KeySource::Pem { rsa, ec }
            }
            (None, Some(source)) => {
                let set = fetch(source)
                    .await
                    .map_err(|e| anyhow::anyhow!("loading AUTH_JWKS {source}: {e}"))?;
                KeySource::Jwks(Jwks {
                    source: source.clone(),
                    refresh: Duration::from_secs(cfg.auth_jwks_refresh_seconds.max(1)),
                    state: RwLock::new((set, Instant::now())),
                    reloading: tokio::sync::Mutex::new(()),
                })
            }
            (None, None) => return Ok(None),
        };
        if cfg.auth_issuer.is_none() || cfg.auth_audience.is_none() {
            anyhow::bail!(
                "an external issuer needs AUTH_ISSUER and AUTH_AUDIENCE: without them any token it signs \
                 for any application would be accepted"
            );
        }
        Ok(Some(Issuer {
            keys,
            issuer: cfg.auth_issuer.clone(),
            audience: cfg.auth_audience.clone(),
            leeway: cfg.auth_leeway_seconds,
        }))
    }

    /// The checks a token of this issuer must pass.
    pub fn validation(&self, alg: Algorithm) -> Validation {
        let mut v = Validation::new(alg);
        v.leeway = self.leeway;
        v.validate_nbf = true;
        let mut required = vec!["exp"];
        if self.issuer.is_some() {
            required.push("iss");
        }
        if self.audience.is_some() {
            required.push("aud");
        }
        v.set_required_spec_claims(&required);
        if let Some(iss) = &self.issuer {
            v.set_issuer(&[iss]);
        }
        match &self.audience {
            Some(aud) => v.set_audience(&[aud]),
            None => v.validate_aud = false,
        }
        v
    }

    /// The key that must have signed a token with this header.
    pub async fn key_for(&self, header: &Header) -> Result<DecodingKey, AuthError> {
        let fam = family(header.alg)
            .ok_or_else(|| unauthorized(format!("tokens signed with {:?} are not accepted", header.alg)))?;
        match &self.keys {
            KeySource::Pem { rsa, ec } => {
                let key = if fam == "RSA" { rsa } else { ec };
                key.clone()
                    .ok_or_else(|| unauthorized(format!("the configured public key is not an {fam} key")))
            }
            KeySource::Jwks(jwks) => jwks.key_for(header, fam).await,
        }
    }
}

impl Jwks {
    async fn key_for(&self, header: &Header, fam: &str) -> Result<DecodingKey, AuthError> {
        if self.state.read().await.1.elapsed() > self.refresh {
            self.reload_if_older(self.refresh).await;
        }
        if let Some(key) = self.find(header, fam).await? {
            return Ok(key);
        }
        // An unknown key id may be a key rotated in since the last fetch (at most one fetch
        // per MISS_REFRESH, however many requests ask).
        if self.reload_if_older(MISS_REFRESH).await {
            if let Some(key) = self.find(header, fam).await? {
                return Ok(key);
            }
        }
        Err(unauthorized("no key in the issuer's JWKS matches the token"))
    }

    async fn find(&self, header: &Header, fam: &str) -> Result<Option<DecodingKey>, AuthError> {
        let state = self.state.read().await;
        let matches_family = |params: &AlgorithmParameters| {
            matches!(
                (params, fam),
                (AlgorithmParameters::RSA(_), "RSA") | (AlgorithmParameters::EllipticCurve(_), "EC")
            )
        };
        let jwk = match &header.kid {
            Some(kid) => state.0.find(kid).filter(|k| matches_family(&k.algorithm)),
            None => state.0.keys.iter().find(|k| matches_family(&k.algorithm)),
        };
        jwk.map(|k| DecodingKey::from_jwk(k).map_err(|e| unauthorized(format!("unusable JWKS key: {e}"))))
            .transpose()
    }

    /// Fetch again if the set is older than `age` once the reload lock is held (so concurrent
    /// callers fetch once). Whether it fetched.
    async fn reload_if_older(&self, age: Duration) -> bool {
        let _one = self.reloading.lock().await;
        if self.state.read().await.1.elapsed() <= age {
            return false;
        }
        self.reload().await;
        true
    }

    /// Fetch the set again; on failure keep the old one (and try again next time).
    async fn reload(&self) {
        match fetch(&self.source).await {
            Ok(set) => *self.state.write().await = (set, Instant::now()),
            Err(e) => {
                tracing::warn!(source = %self.source, error = %e, "could not refresh the JWKS; keeping the old keys");
                self.state.write().await.1 = Instant::now();
            }
        }
    }
}
