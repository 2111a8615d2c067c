//! Outbound HTTP for functions. The sandbox has no sockets: a function's request leaves
//! through `host.call` and is made here, under its tenant's [`Policy`]:
//!
//! - the URL must match an allow rule (default deny), checked again on every redirect
//!   (followed here, at most 5);
//! - the address actually connected to must be public unless the matching rule allows
//!   private ones. The check happens in the DNS resolver the connection uses, so a name that
//!   resolves to 127.0.0.1 (or changes its answer between check and connect: DNS rebinding)
//!   is refused; IP literals are checked before sending;
//! - time, response size and the number of requests per execution are capped.

pub use crate::domain::egress as policy;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::{Method, Url};

pub use crate::domain::egress::Policy;

use crate::store::{Store, StoreError};

/// A request as the guest asks for it.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub timeout: Option<f64>,
}

#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The final URL, after redirects.
    pub url: String,
}

/// Why a request was not made or did not complete; `kind` reaches the guest.
#[derive(Debug)]
pub struct Refused {
    pub kind: &'static str,
    pub message: String,
}

fn refused(kind: &'static str, message: impl Into<String>) -> Refused {
    Refused {
        kind,
        message: message.into(),
    }
}

/// Resolves names keeping only the addresses the predicate accepts: public ones for the
/// shared client, anything but link-local for the `allow_private` one.
struct Filtered(fn(std::net::IpAddr) -> bool);

impl Resolve for Filtered {
    fn resolve(&self, name: Name) -> Resolving {
        let keep = self.0;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let kept: Vec<SocketAddr> = addrs.into_iter().filter(|a| keep(a.ip())).collect();
            if kept.is_empty() {
                let e: Box<dyn std::error::Error + Send + Sync> =
                    format!("{host} resolves only to non-public addresses; an allow rule with allow_private is needed")
                        .into();
                return Err(e);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

struct Cached {
    policy: Arc<Policy>,
    at: Instant,
}

pub struct Egress {
    store: Store,
    /// Connects to public addresses only.
    public: reqwest::Client,
    /// For rules with `allow_private`.
    private: reqwest::Client,
    ttl: Duration,
    policies: Mutex<HashMap<String, Cached>>,
}

const MAX_REDIRECTS: usize = 5;

impl Egress {
    pub fn new(store: Store, ttl: Duration) -> anyhow::Result<Arc<Egress>> {
        let build = |b: reqwest::ClientBuilder| {
            // No proxy from the environment: a proxy would resolve names itself, out of
            // reach of the address check.
            b.no_proxy()
                .redirect(reqwest::redirect::Policy::none())
                .user_agent(concat!("maestro/", env!("CARGO_PKG_VERSION")))
                .pool_max_idle_per_host(8)
                .build()
        };
        Ok(Arc::new(Egress {
            store,
            public: build(reqwest::Client::builder().dns_resolver(Arc::new(Filtered(policy::is_public))))?,
            private: build(
                reqwest::Client::builder().dns_resolver(Arc::new(Filtered(|ip| !policy::is_link_local(ip)))),
            )?,
            ttl,
            policies: Mutex::new(HashMap::new()),
        }))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.policies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The tenant's policy (the default-deny one when it has none), cached briefly.
    pub async fn policy(&self, tenant: &str) -> Result<Arc<Policy>, StoreError> {
        if let Some(c) = self.lock().get(tenant) {
            if c.at.elapsed() < self.ttl {
                return Ok(c.policy.clone());
            }
        }
        let policy = Arc::new(self.store.tenant(tenant).egress_policy().await?.unwrap_or_default());
        self.lock().insert(
            tenant.to_string(),
            Cached {
                policy: policy.clone(),
                at: Instant::now(),
            },
        );
        Ok(policy)
    }

    /// Forget a tenant's cached policy (after this server changed it).
    pub fn changed(&self, tenant: &str) {
        self.lock().remove(tenant);
    }

    /// Make the request, following redirects, within the policy and `deadline`.
    pub async fn send(&self, policy: &Policy, req: Request, deadline: Instant) -> Result<Response, Refused> {
        let mut method = Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|_| refused("invalid_request", format!("{:?} is not an HTTP method", req.method)))?;
        let mut url = Url::parse(&req.url).map_err(|e| refused("invalid_request", format!("bad URL: {e}")))?;
        let wanted = Duration::from_secs_f64(
            req.timeout
                .unwrap_or(policy.timeout_seconds)
                .clamp(0.001, policy.timeout_seconds),
        );
        let until = (Instant::now() + wanted).min(deadline);
        let mut body = req.body;
        let mut headers = req.headers;
        for _ in 0..=MAX_REDIRECTS {
            let client = self.check(policy, &url)?;
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(refused("timeout", "no time left for the request"));
            }
            let mut rb = client.request(method.clone(), url.clone()).timeout(left);
            for (k, v) in &headers {
                if k.eq_ignore_ascii_case("host") || k.eq_ignore_ascii_case("content-length") {
                    continue;
                }
                rb = rb.header(k.as_str(), v.as_str());
            }
            if let Some(b) = &body {
                rb = rb.body(b.clone());
            }
            let mut resp = rb.send().await.map_err(|e| failure(&e))?;
            let status = resp.status();
            if status.is_redirection() {
                if let Some(loc) = resp
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                {
                    let next = url
                        .join(loc)
                        .map_err(|e| refused("request_failed", format!("bad redirect location: {e}")))?;
                    if next.origin() != url.origin() {
                        // Credentials are for the origin they were sent to.
                        headers.retain(|(k, _)| !is_credential(k));
                    }
                    url = next;
                    if status == 303 || ((status == 301 || status == 302) && method == Method::POST) {
                        method = Method::GET;
                        body = None;
                    }
                    continue;
                }
            }
            let headers = resp
                .headers()
                .iter()
                .map(|(k, v)| {
                    (
                        k.as_str().to_string(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect();
            let mut data = Vec::new();
            while let Some(chunk) = tokio::time::timeout(until.saturating_duration_since(Instant::now()), resp.chunk())
                .await
                .map_err(|_| refused("timeout", "the response did not arrive in time"))?
                .map_err(|e| failure(&e))?
            {
                if data.len() as u64 + chunk.len() as u64 > policy.max_response_bytes {
                    return Err(refused(
                        "response_too_large",
                        format!("the response is larger than {} bytes", policy.max_response_bytes),
                    ));
                }
                data.extend_from_slice(&chunk);
            }
            return Ok(Response {
                status: status.as_u16(),
                headers,
                body: data,
                url: url.to_string(),
            });
        }
        Err(refused(
            "request_failed",
            format!("more than {MAX_REDIRECTS} redirects"),
        ))
    }

    /// The client allowed for `url`, or why none is.
    fn check(&self, policy: &Policy, url: &Url) -> Result<&reqwest::Client, Refused> {
        if !matches!(url.scheme(), "http" | "https") {
            return Err(refused(
                "egress_denied",
                format!("{}: only http and https", url.scheme()),
            ));
        }
        let host = url.host_str().unwrap_or("");
        let Some(allowed) = policy.allows(url) else {
            return Err(refused(
                "egress_denied",
                format!("{host} is not in the tenant's egress allow-list"),
            ));
        };
        if let Some(ip) = literal_ip(url) {
            if policy::is_link_local(ip) {
                return Err(refused("egress_denied", format!("{ip} is link-local: never reachable")));
            }
            if !allowed.private && !policy::is_public(ip) {
                return Err(refused(
                    "egress_denied",
                    format!("{ip} is not a public address; an allow rule with allow_private is needed"),
                ));
            }
        }
        Ok(if allowed.private { &self.private } else { &self.public })
    }
}

fn literal_ip(url: &Url) -> Option<std::net::IpAddr> {
    url.host_str()?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn is_credential(header: &str) -> bool {
    ["authorization", "cookie", "proxy-authorization"]
        .iter()
        .any(|h| header.eq_ignore_ascii_case(h))
}

/// What went wrong, from the error's causes only: its own text names the URL, which may
/// carry credentials or a secret path.
fn failure(e: &reqwest::Error) -> Refused {
    use std::error::Error as _;
    let mut msg = String::from(if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "could not connect"
    } else {
        "the request failed"
    });
    let mut src = e.source();
    while let Some(s) = src {
        msg = format!("{msg}: {s}");
        src = s.source();
    }
    if msg.contains("non-public addresses") {
        return refused("egress_denied", msg);
    }
    if e.is_timeout() {
        return refused("timeout", msg);
    }
    refused("request_failed", msg)
}
