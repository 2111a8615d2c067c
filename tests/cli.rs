//! The `maestro` command line as a newcomer meets it: each subcommand's own flags, the token
//! hint every start prints, `maestro token` finding the same secret as `maestro serve`, and
//! `maestro healthcheck` following MAESTRO_BIND.

mod common;

use std::process::Command;

use common::{address, serve_binary};
use reqwest::StatusCode;

fn maestro(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_maestro"))
        .args(args)
        .env_remove("MAESTRO_JWT_SECRET")
        .env_remove("MAESTRO_HEALTH_URL")
        .env_remove("MAESTRO_BIND")
        .output()
        .expect("maestro runs")
}

fn text(out: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn subcommands_have_their_own_flags() {
    let help = text(&maestro(&["token", "--help"]));
    for flag in ["--tenant", "--email", "--admin", "--ttl", "--data-dir", "--jwt-secret"] {
        assert!(help.contains(flag), "token --help lacks {flag}:\n{help}");
    }
    for serve_only in ["--sandbox-workers", "--bind", "--database-url", "--redis-url"] {
        assert!(!help.contains(serve_only), "token --help shows {serve_only}:\n{help}");
    }
    let help = text(&maestro(&["prepare", "--help"]));
    assert!(
        help.contains("--runtime-dir") && !help.contains("--sandbox-workers"),
        "{help}"
    );
    let help = text(&maestro(&["serve", "--help"]));
    assert!(!help.contains("later release"), "stale help text:\n{help}");
    assert!(
        help.contains("--auth-audience") && !help.contains("unchecked when unset"),
        "{help}"
    );
}

#[tokio::test]
async fn every_start_says_how_to_mint_a_token_and_token_uses_the_same_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().to_str().unwrap().to_string();

    // Before any server ran, there is no secret: `maestro token` says so rather than making one.
    let out = maestro(&["token", "--data-dir", &data, "--tenant", "acme", "--email", "a@acme.io"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("no token secret"), "{}", text(&out));

    let hint = format!("Mint API tokens: maestro token --data-dir {data} --tenant");
    let (mut first, lines) = serve_binary(&data, &[]);
    assert!(lines.iter().any(|l| l.starts_with(&hint)), "{lines:?}");
    assert!(lines.iter().any(|l| l.starts_with("Admin token")), "{lines:?}");
    first.kill().ok();
    first.wait().ok();

    let (mut second, lines) = serve_binary(&data, &[]);
    assert!(lines.iter().any(|l| l.starts_with(&hint)), "every start: {lines:?}");
    assert!(!lines.iter().any(|l| l.contains("Admin token")), "{lines:?}");
    let base = address(&lines);

    let out = maestro(&["token", "--data-dir", &data, "--tenant", "acme", "--email", "a@acme.io"]);
    assert!(out.status.success(), "{}", text(&out));
    let token = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let resp = reqwest::Client::new()
        .get(format!("{base}/api/v1/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("me");
    assert_eq!(resp.status(), StatusCode::OK);
    let me: serde_json::Value = resp.json().await.expect("json");
    assert_eq!(me["tenant"], "acme", "{me}");

    // healthcheck finds the server from MAESTRO_BIND alone.
    let bind = base.trim_start_matches("http://");
    let ok = Command::new(env!("CARGO_BIN_EXE_maestro"))
        .arg("healthcheck")
        .env_remove("MAESTRO_HEALTH_URL")
        .env("MAESTRO_BIND", bind)
        .status()
        .expect("healthcheck");
    assert!(ok.success());
    let wrong = Command::new(env!("CARGO_BIN_EXE_maestro"))
        .arg("healthcheck")
        .env_remove("MAESTRO_HEALTH_URL")
        .env("MAESTRO_BIND", "127.0.0.1:1")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("healthcheck");
    assert!(!wrong.status.success());
    assert!(text(&wrong).contains("127.0.0.1:1/health"), "{}", text(&wrong));
    second.kill().ok();
    second.wait().ok();
}
