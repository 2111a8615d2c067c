//! The README's "Running code for an agent" section runs as written: each `bash` block with
//! `$API` and `$TOKEN` set (curl and jq, as a reader would), and the tool-calling step in
//! Python with `requests` (the interpreter scripts/test prepares, `MAESTRO_OPENAPI_PYTHON`;
//! without it the Python part says so and is skipped, unless `MAESTRO_REQUIRE_CLIENT_GEN=1`).

mod common;

use tokio::process::Command;

use common::{start, Backend};
use serde_json::Value;

/// The README's text from `## Running code for an agent` to the next `## ` heading.
fn section() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("\n## Running code for an agent").expect("the section");
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    rest[..end].to_string()
}

/// The fenced blocks of `text` in language `lang`, in order.
fn blocks(text: &str, lang: &str) -> Vec<String> {
    let fence = format!("```{lang}\n");
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(&fence) {
        let body = &rest[i + fence.len()..];
        let end = body.find("```").expect("a closed block");
        out.push(body[..end].to_string());
        rest = &body[end..];
    }
    out
}

/// The JSON values a block printed one after another (curl prints no newline after each).
fn values(out: &str) -> Vec<Value> {
    serde_json::Deserializer::from_str(out)
        .into_iter::<Value>()
        .map_while(Result::ok)
        .collect()
}

#[tokio::test]
async fn running_code_for_an_agent_runs_as_written() {
    let app = start(Backend::Sqlite).await;
    let api = format!("{}/api/v1", app.base);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sales.csv"), "price,qty\n3,1\n5,2\n8,1\n").unwrap();
    let text = section();
    let bash = blocks(&text, "bash");
    assert_eq!(bash.len(), 4, "the section's bash blocks: {bash:#?}");
    let mut outs = Vec::new();
    for block in &bash {
        let out = Command::new("bash")
            .args(["-euo", "pipefail", "-c", block])
            .current_dir(dir.path())
            .env("API", &api)
            .env("TOKEN", &app.token)
            .output()
            .await
            .expect("bash");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success(),
            "{block}\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        outs.push(stdout);
    }

    // The one-shot run: stdout, and the DataFrame's description as html and text.
    let v = values(&outs[0]);
    assert_eq!(v.len(), 1, "{}", outs[0]);
    assert_eq!(
        (v[0]["status"].as_str(), v[0]["stdout"].as_str()),
        (Some("succeeded"), Some("rows: 2\n"))
    );
    let result = &v[0]["results"][0];
    assert!(result["html"].as_str().unwrap().contains("<table"), "{result}");
    assert!(result["text"].as_str().unwrap().contains("count"), "{result}");

    // Files of a run: the summary comes back under out/.
    let v = values(&outs[1]);
    let summary = v[0]["files"]["out/summary.csv"]
        .as_str()
        .expect("out/summary.csv returned");
    use base64::Engine as _;
    let summary = base64::engine::general_purpose::STANDARD.decode(summary).unwrap();
    assert!(String::from_utf8(summary).unwrap().contains("count,2.0"), "{}", outs[1]);

    // The session: 42 after x = 41, the uploaded CSV read by pandas, a PNG chart downloaded.
    let v = values(&outs[2]);
    let counts: Vec<i64> = v.iter().filter_map(|a| a["execution_count"].as_i64()).collect();
    assert_eq!(counts, [1, 2, 3], "{}", outs[2]);
    assert_eq!(v[1]["results"][0]["json"], 42, "{}", outs[2]);
    let results = v[3]["results"].as_array().unwrap();
    assert!(results.iter().any(|r| r["json"] == 3), "{}", outs[2]);
    let png = std::fs::read(dir.path().join("chart.png")).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "chart.png is not a PNG");
    let (_, list) = app.get("/api/v1/sessions").await;
    assert_eq!(list["sessions"][0]["end_reason"], "deleted", "{list}");

    // Streaming: three stdout events as the loop prints, then the end.
    let events: Vec<&str> = outs[3].lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(events.first(), Some(&"start"), "{}", outs[3]);
    assert_eq!(events.last(), Some(&"end"), "{}", outs[3]);
    assert_eq!(events.iter().filter(|e| **e == "stdout").count(), 3, "{}", outs[3]);

    // The tool-calling step, in Python with requests.
    let python = blocks(&text, "python");
    assert_eq!(python.len(), 1, "{python:#?}");
    let Ok(interpreter) = std::env::var("MAESTRO_OPENAPI_PYTHON") else {
        assert!(
            std::env::var("MAESTRO_REQUIRE_CLIENT_GEN").is_err(),
            "MAESTRO_OPENAPI_PYTHON is not set (scripts/test sets it)"
        );
        eprintln!("skipped the Python example: MAESTRO_OPENAPI_PYTHON is not set (scripts/test sets it)");
        app.stop().await;
        return;
    };
    let out = Command::new(interpreter)
        .args(["-c", &python[0]])
        .env("MAESTRO_URL", &app.base)
        .env("MAESTRO_TOKEN", &app.token)
        .output()
        .await
        .expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout), "14\n");
    app.stop().await;
}
