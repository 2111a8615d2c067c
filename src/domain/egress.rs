//! A tenant's egress policy: which URLs its functions may reach, and the caps on requests.
//! Default deny: a tenant with no policy reaches nothing.

use std::net::IpAddr;

use reqwest::Url;
use serde::{Deserialize, Serialize};

/// One allow rule: a host pattern (`api.example.com`, `*.example.com`) for any path over
/// http or https, or a URL prefix (`https://hooks.example.com/services/`). Private,
/// loopback and link-local addresses are refused unless the rule says `allow_private`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Rule {
    Pattern(String),
    Detailed {
        url: String,
        #[serde(default)]
        allow_private: bool,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default)]
    pub allow: Vec<Rule>,
    #[serde(default = "default_requests")]
    pub max_requests_per_execution: u32,
    #[serde(default = "default_bytes")]
    pub max_response_bytes: u64,
    #[serde(default = "default_timeout")]
    pub timeout_seconds: f64,
}

fn default_requests() -> u32 {
    100
}
fn default_bytes() -> u64 {
    10 << 20
}
fn default_timeout() -> f64 {
    30.0
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            allow: Vec::new(),
            max_requests_per_execution: default_requests(),
            max_response_bytes: default_bytes(),
            timeout_seconds: default_timeout(),
        }
    }
}

/// A rule in checked form.
#[derive(Debug, Clone)]
struct Compiled {
    /// Host pattern, lower case; `*.` prefix for subdomains.
    host: String,
    /// With a URL prefix: scheme, port and path prefix.
    prefix: Option<(String, u16, String)>,
    allow_private: bool,
}

/// What a matching rule allows.
#[derive(Debug, Clone, Copy)]
pub struct Allowed {
    pub private: bool,
}

impl Policy {
    /// Check the rules and caps; the message names the bad one.
    pub fn validate(&self) -> Result<(), String> {
        if self.allow.len() > 200 {
            return Err("at most 200 allow rules".into());
        }
        for r in &self.allow {
            compile(r)?;
        }
        if self.max_requests_per_execution == 0 || self.max_requests_per_execution > 10_000 {
            return Err("max_requests_per_execution must be 1..=10000".into());
        }
        if self.max_response_bytes == 0 || self.max_response_bytes > 64 << 20 {
            return Err("max_response_bytes must be 1..=67108864".into());
        }
        if !(self.timeout_seconds >= 0.01 && self.timeout_seconds <= 300.0) {
            return Err("timeout_seconds must be in [0.01, 300]".into());
        }
        Ok(())
    }

    /// Whether any rule asks for private addresses (an operator may forbid that).
    pub fn wants_private(&self) -> bool {
        self.allow.iter().any(|r| {
            matches!(
                r,
                Rule::Detailed {
                    allow_private: true,
                    ..
                }
            )
        })
    }

    /// The first rule allowing `url`, if any.
    pub fn allows(&self, url: &Url) -> Option<Allowed> {
        let host = url.host_str()?.trim_end_matches('.').to_ascii_lowercase();
        let host = host.trim_start_matches('[').trim_end_matches(']');
        let port = url.port_or_known_default()?;
        self.allow.iter().filter_map(|r| compile(r).ok()).find_map(|c| {
            let host_ok = match c.host.strip_prefix("*.") {
                Some(base) => host.ends_with(&format!(".{base}")),
                None => c.host == host,
            };
            let rest_ok = match &c.prefix {
                None => true,
                Some((scheme, p, path)) => scheme == url.scheme() && *p == port && path_under(url.path(), path),
            };
            (host_ok && rest_ok).then_some(Allowed {
                private: c.allow_private,
            })
        })
    }
}

/// How many times a path is decoded when looking for hidden separators and dots; a path
/// still encoded deeper than that is refused.
const DECODINGS: usize = 4;

/// Whether a server that decodes `path` once or more (a proxy, then a framework) could read
/// an encoded separator, dot or path-parameter mark in it (`/services/..%2Fadmin`,
/// `%252e%252e`), or would take a segment for `.` or `..` once its path parameters are cut
/// off, as Tomcat and Jetty do (`/services/..;/admin`).
fn hides_separator(path: &str) -> bool {
    let dot_segment = |p: &str| {
        p.split('/')
            .any(|seg| matches!(seg.split(';').next(), Some(".") | Some("..")))
    };
    if dot_segment(path) {
        return true;
    }
    let mut layer = path.to_string();
    for _ in 0..DECODINGS {
        let lower = layer.to_ascii_lowercase();
        if ["%2f", "%5c", "%2e", "%3b"].iter().any(|e| lower.contains(e)) {
            return true;
        }
        let decoded = percent_encoding::percent_decode_str(&layer)
            .decode_utf8_lossy()
            .into_owned();
        if decoded == layer {
            return false;
        }
        layer = decoded;
    }
    true
}

/// `path` is `prefix` or below it, at a `/` boundary, with no encoded separator or dot that
/// a server might decode into another path.
fn path_under(path: &str, prefix: &str) -> bool {
    if hides_separator(path) {
        return false;
    }
    match prefix.ends_with('/') {
        true => path.starts_with(prefix),
        false => path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/')),
    }
}

/// Link-local addresses (169.254/16, which holds cloud metadata services, and fe80::/10)
/// are never reachable, whatever the rules say.
pub fn is_link_local(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.is_link_local(),
            None => (v6.segments()[0] & 0xffc0) == 0xfe80,
        },
    }
}

fn compile(rule: &Rule) -> Result<Compiled, String> {
    let (text, allow_private) = match rule {
        Rule::Pattern(p) => (p.as_str(), false),
        Rule::Detailed { url, allow_private } => (url.as_str(), *allow_private),
    };
    if text.contains("://") {
        let u = Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
        if !matches!(u.scheme(), "http" | "https") {
            return Err(format!("{text:?}: only http and https"));
        }
        let host = u.host_str().ok_or_else(|| format!("{text:?} has no host"))?;
        let port = u.port_or_known_default().unwrap_or(0);
        Ok(Compiled {
            host: host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase(),
            prefix: Some((u.scheme().to_string(), port, u.path().to_string())),
            allow_private,
        })
    } else {
        let h = text.to_ascii_lowercase();
        let bare = h.strip_prefix("*.").unwrap_or(&h);
        let ok = !bare.is_empty()
            && bare.len() <= 253
            && (bare.parse::<IpAddr>().is_ok()
                || bare
                    .split('.')
                    .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')));
        if !ok {
            return Err(format!(
                "{text:?} is neither a host name (api.example.com, *.example.com) nor a URL prefix"
            ));
        }
        Ok(Compiled {
            host: h,
            prefix: None,
            allow_private,
        })
    }
}

/// Whether an address is on the public internet. Everything else (loopback, private,
/// link-local such as 169.254.169.254, carrier NAT, multicast, reserved, documentation,
/// and IPv6 forms that embed such an IPv4) needs a rule with `allow_private`.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (o[1] & 0xc0) == 64)
                || (o[0] == 192 && o[1] == 0 && o[2] == 0)
                || (o[0] == 198 && (o[1] & 0xfe) == 18)
                || o[0] >= 240)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public(IpAddr::V4(v4));
            }
            let s = v6.segments();
            let embedded =
                |hi: u16, lo: u16| std::net::Ipv4Addr::new((hi >> 8) as u8, hi as u8, (lo >> 8) as u8, lo as u8);
            if s[0] == 0x64 && s[1] == 0xff9b {
                return is_public(IpAddr::V4(embedded(s[6], s[7])));
            }
            if s[0] == 0x2002 {
                return is_public(IpAddr::V4(embedded(s[1], s[2])));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00
                || (s[0] & 0xffc0) == 0xfe80
                || (s[0] == 0x2001 && s[1] == 0x0db8)
                || s[..6].iter().all(|x| *x == 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(rules: serde_json::Value) -> Policy {
        serde_json::from_value(serde_json::json!({ "allow": rules })).unwrap()
    }

    #[test]
    fn rules_match_hosts_and_prefixes() {
        let p = policy(serde_json::json!([
            "api.example.com",
            "*.slack.com",
            "https://hooks.example.com/services/"
        ]));
        assert!(p.validate().is_ok());
        let ok = |u: &str| p.allows(&Url::parse(u).unwrap()).is_some();
        assert!(ok("https://api.example.com/v1/x?q=1"));
        assert!(ok("http://API.example.com:8080/"));
        assert!(!ok("https://api.example.com.evil.com/"));
        assert!(ok("https://a.b.slack.com/x"));
        assert!(!ok("https://slack.com/x"));
        assert!(ok("https://hooks.example.com/services/T1/B2"));
        assert!(!ok("https://hooks.example.com/other"));
        assert!(!ok("https://hooks.example.com/services/..%2Fadmin"));
        assert!(!ok("https://hooks.example.com/services/%252e%252e/admin"));
        assert!(!ok("https://hooks.example.com/services/..%252Fadmin"));
        assert!(!ok("https://hooks.example.com/services/%25252E%25252E/admin"));
        assert!(!ok("https://hooks.example.com/services/x%255cadmin"));
        assert!(!ok("https://hooks.example.com/services/..;/admin"));
        assert!(!ok("https://hooks.example.com/services/.;x/admin"));
        assert!(!ok("https://hooks.example.com/services/..%3b/admin"));
        assert!(ok("https://hooks.example.com/services/a;v=1/b"));
        assert!(ok("https://hooks.example.com/services/100%25"));
        assert!(ok("https://hooks.example.com/services/a%2541"));
        let q = policy(serde_json::json!(["https://x.com/api"]));
        assert!(q.allows(&Url::parse("https://x.com/api/v1").unwrap()).is_some());
        assert!(q.allows(&Url::parse("https://x.com/api-admin").unwrap()).is_none());
        assert!(!ok("http://hooks.example.com/services/x"));
        assert!(!ok("https://other.com/"));
        assert!(policy(serde_json::json!(["bad host!"])).validate().is_err());
        assert!(policy(serde_json::json!(["ftp://x.com/"])).validate().is_err());
    }

    #[test]
    fn private_addresses_are_not_public() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
    }
}
