//! The console's sign-in through an identity provider (OAuth 2 authorization code with
//! PKCE, the page being a public client), as configured: checked at start, so a set-up that
//! could never work stops the server instead of failing at a user's first click.

use crate::config::Settings;

/// What the sign-in page needs (`/ui/config.json`), and the origin its CSP must allow.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Oidc {
    authorize_url: String,
    token_url: String,
    client_id: String,
    scope: String,
    /// The `aud` a token must carry for this server (`AUTH_AUDIENCE`): the page picks the
    /// provider's token that has it.
    audience: Option<String>,
    #[serde(skip)]
    pub token_origin: String,
}

/// The configured sign-in: none, or all three of its settings with http(s) URLs and an
/// external issuer whose tokens this server checks.
pub fn oidc(s: &Settings) -> anyhow::Result<Option<Oidc>> {
    let named = [
        ("CONSOLE_OIDC_AUTHORIZE_URL", &s.console_oidc_authorize_url),
        ("CONSOLE_OIDC_TOKEN_URL", &s.console_oidc_token_url),
        ("CONSOLE_OIDC_CLIENT_ID", &s.console_oidc_client_id),
    ];
    let missing: Vec<&str> = named.iter().filter(|(_, v)| v.is_none()).map(|(n, _)| *n).collect();
    let (Some(authorize_url), Some(token_url), Some(client_id)) = (
        &s.console_oidc_authorize_url,
        &s.console_oidc_token_url,
        &s.console_oidc_client_id,
    ) else {
        if missing.len() < named.len() {
            anyhow::bail!(
                "console sign-in through an identity provider also needs {}",
                missing.join(" and ")
            );
        }
        return Ok(None);
    };
    if s.auth_jwks.is_none() && s.auth_public_key.is_none() {
        anyhow::bail!(
            "console sign-in through an identity provider needs AUTH_JWKS or AUTH_PUBLIC_KEY: without them this server \
             accepts none of the provider's tokens"
        );
    }
    origin("CONSOLE_OIDC_AUTHORIZE_URL", authorize_url)?;
    Ok(Some(Oidc {
        authorize_url: authorize_url.clone(),
        token_url: token_url.clone(),
        client_id: client_id.clone(),
        scope: s.console_oidc_scope.clone(),
        audience: s.auth_audience.clone(),
        token_origin: origin("CONSOLE_OIDC_TOKEN_URL", token_url)?,
    }))
}

/// The origin (`scheme://host[:port]`) of an http(s) URL with a host and no user info: what
/// a CSP source names.
fn origin(name: &str, url: &str) -> anyhow::Result<String> {
    let bad = |why: &str| anyhow::anyhow!("{name} {why}: {url}");
    let u = reqwest::Url::parse(url).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(bad("is not an http(s) URL"));
    }
    if !u.username().is_empty() || u.password().is_some() {
        return Err(bad("must not carry a user name or password"));
    }
    if u.host_str().is_none_or(str::is_empty) {
        return Err(bad("has no host"));
    }
    let origin = u.origin().ascii_serialization();
    // A host may hold characters a policy reads as syntax (`;`, `'`, `,`): none get through.
    if !origin
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || ".-:/[]".contains(c))
    {
        return Err(bad("has characters a Content-Security-Policy cannot name"));
    }
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(args: &[&str]) -> Settings {
        Settings::from_args(args.iter().map(|s| s.to_string())).unwrap()
    }

    const FULL: [&str; 8] = [
        "--console-oidc-authorize-url",
        "https://idp.example/authorize",
        "--console-oidc-token-url",
        "HTTPS://IdP.example:8443/oauth/token?x=1",
        "--console-oidc-client-id",
        "console",
        "--auth-jwks",
        "/etc/jwks.json",
    ];

    #[test]
    fn a_full_set_up_is_taken_with_the_token_urls_origin() {
        let o = oidc(&settings(&FULL)).unwrap().expect("configured");
        assert_eq!(o.token_origin, "https://idp.example:8443");
        assert!(oidc(&settings(&[])).unwrap().is_none());
    }

    #[test]
    fn a_half_set_up_names_what_is_missing() {
        let e = oidc(&settings(&FULL[..2])).unwrap_err().to_string();
        assert!(e.contains("CONSOLE_OIDC_TOKEN_URL and CONSOLE_OIDC_CLIENT_ID"), "{e}");
        assert!(!e.contains("AUTHORIZE_URL"), "{e}");
        let e = oidc(&settings(&FULL[..6])).unwrap_err().to_string();
        assert!(e.contains("AUTH_JWKS"), "without an issuer: {e}");
    }

    #[test]
    fn urls_a_policy_cannot_name_are_refused() {
        for bad in [
            "ftp://idp.example/token",
            "https://user:pw@idp.example/token",
            "https://:8443/token",
            "https://idp.example; script-src *",
            "https://idp.example;x/token",
            "https://idp'x/token",
            "not a url",
        ] {
            let mut args = FULL;
            args[3] = bad;
            assert!(oidc(&settings(&args)).is_err(), "{bad} was taken");
        }
    }
}
