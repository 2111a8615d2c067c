//! Project folders with the real `maestro` binary against a real server: init, plan (with
//! a code diff), deploy in order, invoke and logs, idempotence, settings going back to
//! defaults, prune, pull then plan showing no change, and a bad schema stopping the deploy
//! before any change.

mod common;

use std::path::Path;

use common::{start, Backend, TestApp};
use serde_json::{json, Value};

/// Run `maestro ARGS` in `dir` against `app`; answers (success, stdout, stderr).
async fn maestro(app: &TestApp, dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_maestro"))
        .args(args)
        .current_dir(dir)
        .env("MAESTRO_URL", &app.base)
        .env("MAESTRO_TOKEN", &app.token)
        .env("NO_COLOR", "1")
        .output()
        .await
        .expect("maestro runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `maestro ARGS`, which must succeed; answers its stdout.
async fn ok(app: &TestApp, dir: &Path, args: &[&str]) -> String {
    let (success, out, err) = maestro(app, dir, args).await;
    assert!(success, "maestro {args:?} failed:\n{out}\n{err}");
    out
}

fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.contains(from), "{} has no {from:?}", path.display());
    std::fs::write(path, text.replace(from, to)).unwrap();
}

async fn versions(app: &TestApp, name: &str) -> usize {
    let (_, v) = app.get(&format!("/api/v1/functions/{name}/versions")).await;
    v["versions"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn a_folder_deploys_with_a_plan() {
    let app = start(Backend::Sqlite).await;
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let proj = root.join("proj");

    // init writes a working example; the first plan creates it, in order.
    let out = ok(&app, root, &["init", "proj"]).await;
    assert!(out.contains("functions/hello.py"), "{out}");
    let out = ok(&app, root, &["plan", "proj"]).await;
    assert!(out.contains("+ function hello: create"), "{out}");
    assert!(out.contains("+ schedule morning-hello: create"), "{out}");
    assert!(out.contains("Plan: 2 to create, 0 to update, 0 to delete"), "{out}");
    let out = ok(&app, &proj, &["deploy"]).await;
    let (f, s) = (
        out.find("created function hello"),
        out.find("created schedule morning-hello"),
    );
    assert!(
        f.is_some() && f < s,
        "functions go before the schedules that call them: {out}"
    );
    let (_, fun) = app.get("/api/v1/functions/hello").await;
    assert_eq!(fun["settings"]["timeout_seconds"], 5.0, "{fun}");
    assert_eq!(fun["input_schema"]["properties"]["name"]["type"], "string", "{fun}");
    let (_, sched) = app.get("/api/v1/schedules").await;
    assert_eq!(sched["schedules"][0]["timezone"], "Europe/Paris", "{sched}");
    assert_eq!(sched["schedules"][0]["input_data"], json!({"name": "team"}), "{sched}");

    // Deploying again changes nothing and says so.
    let out = ok(&app, &proj, &["plan"]).await;
    assert!(out.contains("No changes"), "{out}");
    let out = ok(&app, &proj, &["deploy"]).await;
    assert!(out.contains("No changes"), "{out}");
    assert_eq!(versions(&app, "hello").await, 1);

    // An edit shows as that function's diff, and only that.
    edit(
        &proj.join("functions/hello.py"),
        "f\"Hello, {name}!\"",
        "f\"Hi, {name}!\"",
    );
    let out = ok(&app, &proj, &["plan"]).await;
    assert!(out.contains("~ function hello: update"), "{out}");
    assert!(out.contains("-    return {\"message\": f\"Hello, {name}!\"}"), "{out}");
    assert!(out.contains("+    return {\"message\": f\"Hi, {name}!\"}"), "{out}");
    assert!(out.contains("+++ functions/hello.py"), "{out}");
    assert!(!out.contains("schedule"), "{out}");
    let out = ok(&app, &proj, &["deploy"]).await;
    assert!(out.contains("updated function hello"), "{out}");
    let out = ok(
        &app,
        &proj,
        &["invoke", "hello", "--input", r#"{"name": "Ada"}"#, "--json"],
    )
    .await;
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["output"]["message"], "Hi, Ada!", "{v}");
    let id = v["execution_id"].as_str().unwrap();
    let out = ok(&app, &proj, &["logs", id]).await;
    assert_eq!(out, "[hello] greeting Ada\n");

    // A setting left out of the folder goes back to the server's default.
    edit(&proj.join("maestro.toml"), "timeout_seconds = 5\n", "");
    let out = ok(&app, &proj, &["plan"]).await;
    assert!(out.contains("timeout_seconds: 5.0 → (default)"), "{out}");
    ok(&app, &proj, &["deploy"]).await;
    let (_, fun) = app.get("/api/v1/functions/hello").await;
    assert!(fun["settings"].get("timeout_seconds").is_none(), "{fun}");
    assert_eq!(versions(&app, "hello").await, 3);

    // A schedule removed from the folder is kept unless --prune says otherwise.
    let manifest = std::fs::read_to_string(proj.join("maestro.toml")).unwrap();
    let start_at = manifest.find("# Runs `hello` every day").unwrap();
    let end_at = manifest.find("# A webhook").unwrap();
    let pruned = format!("{}{}", &manifest[..start_at], &manifest[end_at..]);
    std::fs::write(proj.join("maestro.toml"), pruned).unwrap();
    let out = ok(&app, &proj, &["plan"]).await;
    assert!(
        out.contains("? schedule morning-hello: on the server, not in the folder (kept)"),
        "{out}"
    );
    let out = ok(&app, &proj, &["deploy"]).await;
    assert!(out.contains("No changes"), "{out}");
    let out = ok(&app, &proj, &["plan", "--prune"]).await;
    assert!(out.contains("- schedule morning-hello: delete"), "{out}");
    let out = ok(&app, &proj, &["deploy", "--prune"]).await;
    assert!(out.contains("deleted schedule morning-hello"), "{out}");
    let (_, sched) = app.get("/api/v1/schedules").await;
    assert_eq!(sched["total"], 0, "{sched}");

    // A bad schema stops the deploy before anything changes, naming the file and the problem.
    let hook = format!("{}-orders", app.tenant);
    let more = format!(
        "\n[functions.double]\ndescription = \"Doubles\"\nmemory_mb = 64\n\n\
         [webhooks.\"/{hook}\"]\nfunction = \"double\"\nasync = true\nmethod = \"post\"\n\n\
         [workflows.pipeline]\nnodes = [\"hello\", {{ function = \"double\", retries = 2 }}]\nedges = [[\"hello\", \"double\"]]\n\n\
         [egress]\nallow = [\"api.example.com\"]\n"
    );
    std::fs::write(
        proj.join("maestro.toml"),
        std::fs::read_to_string(proj.join("maestro.toml")).unwrap() + &more,
    )
    .unwrap();
    std::fs::write(
        proj.join("functions/double.py"),
        "def double(input):\n    return {\"n\": input[\"n\"] * 2}\n",
    )
    .unwrap();
    std::fs::write(
        proj.join("functions/double.schema.json"),
        r#"{"input": {"type": "nope"}}"#,
    )
    .unwrap();
    let (success, out, err) = maestro(&app, &proj, &["deploy"]).await;
    assert!(!success, "{out}");
    assert!(err.contains("functions/double.schema.json"), "{err}");
    assert!(err.contains("input_schema"), "{err}");
    assert!(err.contains("nothing was changed"), "{err}");
    let (s, _) = app.get("/api/v1/functions/double").await;
    assert_eq!(s, reqwest::StatusCode::NOT_FOUND);
    std::fs::write(
        proj.join("functions/double.schema.json"),
        r#"{"input": {"type": "object", "required": ["n"]}}"#,
    )
    .unwrap();
    let out = ok(&app, &proj, &["deploy"]).await;
    assert!(out.contains("Deployed: 3 to create, 1 to update"), "{out}");
    let (f, w, h) = (
        out.find("created function double"),
        out.find("created workflow pipeline"),
        out.find(&format!("created webhook {hook}")),
    );
    assert!(f.is_some() && f < w && w < h, "{out}");
    assert!(out.contains("signing secret, shown once: "), "{out}");
    let (_, wf) = app.get("/api/v1/workflows/pipeline").await;
    assert_eq!(wf["nodes"][1]["retries"], 2, "{wf}");
    // As the server stores them (path without its slash, method in capitals): no change left.
    let out = ok(&app, &proj, &["plan", "--prune"]).await;
    assert!(out.contains("No changes"), "{out}");

    // Pull into an empty folder: plan there finds nothing to do (and --json says 0).
    let out = ok(&app, root, &["pull", "copy"]).await;
    assert!(out.contains("functions/double.schema.json"), "{out}");
    let out = ok(&app, &root.join("copy"), &["plan", "--verbose"]).await;
    assert!(out.contains("No changes"), "{out}");
    assert!(out.contains("workflow pipeline: no change"), "{out}");
    let out = ok(&app, &root.join("copy"), &["plan", "--json"]).await;
    let plan: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(plan["changes"], 0, "{plan}");
    // And pulling over a project is refused.
    let (success, _, err) = maestro(&app, root, &["pull", "copy"]).await;
    assert!(!success && err.contains("already has a maestro.toml"), "{err}");
    app.stop().await;
}

/// The seed's examples are project folders: each deploys, then plans as unchanged, and
/// its functions and webhook answer as the README says.
#[tokio::test]
async fn the_examples_deploy() {
    let app = start(Backend::Sqlite).await;
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for example in [
        "examples/basics",
        "examples/document_processing",
        "examples/invoice_processing",
    ] {
        let out = ok(&app, root, &["deploy", example]).await;
        assert!(out.contains("Deployed: "), "{out}");
        let out = ok(&app, root, &["plan", example]).await;
        assert!(out.contains("No changes"), "{example}: {out}");
    }
    let (_, v) = app
        .post("/api/v1/functions/hello_world/invoke", json!({"name": "Claude"}))
        .await;
    assert_eq!(v["output"], "Hello, Claude!", "{v}");
    let resp = app
        .client
        .post(format!("{}/api/v1/h/process-invoice", app.base))
        .header("X-Customer-ID", "CUST001")
        .json(&json!({"url": "https://example.com/invoice.txt", "priority": "high"}))
        .send()
        .await
        .unwrap();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["success"], true, "{v}");
    assert_eq!(v["invoice"]["status"], "processed", "{v}");
    app.stop().await;
}
