//! Schedules over HTTP against the real server and sandbox: the API and its refusals,
//! preview, firing, retries with backoff, misfires, overlap, and two replicas firing each
//! tick once. Where a test needs a chosen clock it drives the scheduler's poll itself
//! (`poll_once(now)`) on a server whose own loop is off.

mod common;

use std::time::Duration;

use common::{start_with, Backend, TestApp};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

const SQUARE: &str = "def square(input):\n    return input['n'] * input['n']\n";
const SQUARE_SCHEMA: &str = r#"{"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}"#;

async fn with_square(app: &TestApp) {
    let schema: Value = serde_json::from_str(SQUARE_SCHEMA).unwrap();
    app.create_with(json!({"name": "square", "code": SQUARE, "input_schema": schema}))
        .await;
}

async fn schedule(app: &TestApp, body: Value) -> Value {
    let (s, v) = app.post("/api/v1/schedules", body).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    v
}

/// Executions a schedule started, oldest first.
async fn executions_of(app: &TestApp, id: &str) -> Vec<Value> {
    let (s, v) = app
        .get(&format!("/api/v1/executions?trigger_id={id}&limit=500&total=true"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut list = v["executions"].as_array().cloned().unwrap_or_default();
    list.reverse();
    list
}

async fn runs_of(app: &TestApp, id: &str) -> Vec<Value> {
    let (s, v) = app
        .get(&format!("/api/v1/schedules/{id}/runs?limit=500&total=true"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    let mut list = v["runs"].as_array().cloned().unwrap_or_default();
    list.reverse();
    list
}

/// Create, show, update, pause, resume, delete; every bad input is a 400 naming its field and
/// stores nothing.
async fn api_and_refusals(b: Backend) {
    let app = start_with(b, &["--scheduler-enabled", "false"]).await;
    with_square(&app).await;
    let s = schedule(
        &app,
        json!({"name": "nightly", "function_name": "square", "cron_expression": "30 2 * * *",
               "timezone": "Europe/Paris", "input_data": {"n": 3}, "max_retries": 2}),
    )
    .await;
    let id = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["enabled"], true);
    assert_eq!(s["overlap_policy"], "skip");
    assert_eq!(s["retry_delay_seconds"], 60.0);

    // A manual run is a queued job; a server whose scheduler is off still settles its run.
    let (status, v) = app.post(&format!("/api/v1/schedules/{id}/run"), json!({})).await;
    assert_eq!((status, &v["status"]), (StatusCode::ACCEPTED, &json!("queued")), "{v}");
    let t = std::time::Instant::now();
    loop {
        let runs = runs_of(&app, &id).await;
        if runs[0]["status"] == "succeeded" {
            assert_eq!(runs[0]["execution_id"], v["execution_id"], "{runs:?}");
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the run was not settled: {runs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, e) = app
        .get(&format!("/api/v1/executions/{}", v["execution_id"].as_str().unwrap()))
        .await;
    assert_eq!((&e["trigger"], &e["output"]), (&json!("schedule"), &json!(9)), "{e}");
    assert!(s["next_run_at"].is_string(), "{s}");
    let upcoming = s["upcoming"].as_array().unwrap();
    assert_eq!(upcoming.len(), 3);
    assert!(
        upcoming[0].as_str().unwrap().contains("T02:30:00+0"),
        "in the schedule's zone: {s}"
    );

    let cases = [
        (json!({"cron_expression": "0 0 30 2 *"}), "day-of-month"),
        (json!({"cron_expression": "x 0 * 2 *"}), "minute"),
        (json!({"cron_expression": "0 0 * -1 *"}), "month"),
        (json!({"cron_expression": "0 0 * mon-wed *"}), "month"),
        (json!({"cron_expression": "0 0 * * feb"}), "day-of-week"),
        (json!({"cron_expression": "0 0 * jun-jan *"}), "month"),
        (json!({"cron_expression": "60 * * * *"}), "minute"),
        (json!({"timezone": "Mars/Olympus"}), "timezone"),
        (json!({"function_name": "missing"}), "function_name"),
        (json!({"input_data": {"n": "three"}}), "input_data"),
        (json!({"input_data": {}}), "input_data"),
        (json!({"max_retries": -1}), "max_retries"),
        (json!({"max_retries": 1000}), "max_retries"),
        (json!({"retry_delay_seconds": -5}), "retry_delay_seconds"),
        (json!({"backoff_factor": 0.5}), "backoff_factor"),
        (
            json!({"retry_delay_seconds": 100, "max_retry_delay_seconds": 10}),
            "max_retry_delay_seconds",
        ),
        (json!({"overlap_policy": "sometimes"}), "overlap_policy"),
        (json!({"catchup_window_seconds": -1}), "catchup_window_seconds"),
        (json!({"name": ""}), "name"),
    ];
    for (change, field) in cases {
        let mut body = json!({"name": "x", "function_name": "square", "cron_expression": "* * * * *",
                              "input_data": {"n": 1}});
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (s, v) = app.post("/api/v1/schedules", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {v}");
        let msg = v["error"]["message"].as_str().unwrap_or("");
        assert!(msg.contains(field), "{body} -> {v}");
    }
    let dup =
        json!({"name": "nightly", "function_name": "square", "cron_expression": "@daily", "input_data": {"n": 1}});
    assert_eq!(app.post("/api/v1/schedules", dup).await.0, StatusCode::CONFLICT);
    let (_, list) = app.get("/api/v1/schedules").await;
    assert_eq!(list["total"], 1, "nothing stored by refusals: {list}");

    // Updates: a new timetable moves the next tick; pause clears it; resume sets it again.
    let path = format!("/api/v1/schedules/{id}");
    let (s, v) = app
        .call(Method::PUT, &path, Some(json!({"cron_expression": "0 12 * * mon-fri"})))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert!(v["upcoming"][0].as_str().unwrap().contains("T12:00:00"), "{v}");
    assert_eq!(v["max_retries"], 2, "unset fields keep their value");
    let (s, _) = app
        .call(Method::PUT, &path, Some(json!({"cron_expression": "0 0 31 2 *"})))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    let (_, v) = app.post(&format!("{path}/pause"), json!({})).await;
    assert_eq!(
        (v["enabled"].clone(), v["next_run_at"].clone()),
        (json!(false), Value::Null)
    );
    let (_, v) = app.post(&format!("{path}/resume"), json!({})).await;
    assert_eq!(v["enabled"], true);
    assert!(v["next_run_at"].is_string());

    // Tenants are apart; a scheduled function is not deleted from under its schedule.
    let other = app.token_for("other");
    assert_eq!(
        app.call_as(&other, Method::GET, &path, None).await.0,
        StatusCode::NOT_FOUND
    );
    let (s, v) = app.call(Method::DELETE, "/api/v1/functions/square", None).await;
    assert_eq!(s, StatusCode::CONFLICT, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("schedule nightly"));
    assert_eq!(app.call(Method::DELETE, &path, None).await.0, StatusCode::NO_CONTENT);
    assert_eq!(app.get(&path).await.0, StatusCode::NOT_FOUND);
    app.stop().await;
}

/// Next fire times without creating anything, through a DST change.
async fn preview(b: Backend) {
    let app = start_with(b, &["--scheduler-enabled", "false"]).await;
    let body = json!({"cron_expression": "30 2 * * *", "timezone": "America/New_York",
                      "after": "2026-03-07T12:00:00Z", "count": 3});
    let (s, v) = app.post("/api/v1/schedules/preview", body).await;
    assert_eq!(s, StatusCode::OK, "{v}");
    assert_eq!(
        v["next"],
        json!([
            "2026-03-08T03:00:00-04:00",
            "2026-03-09T02:30:00-04:00",
            "2026-03-10T02:30:00-04:00"
        ])
    );
    let body = json!({"cron_expression": "40,0-30/15 * * * *", "after": "2026-11-23T10:17:00Z", "count": 4});
    let (_, v) = app.post("/api/v1/schedules/preview", body).await;
    assert_eq!(
        v["next"],
        json!([
            "2026-11-23T10:30:00+00:00",
            "2026-11-23T10:40:00+00:00",
            "2026-11-23T11:00:00+00:00",
            "2026-11-23T11:15:00+00:00"
        ])
    );
    for bad in [
        json!({"cron_expression": "0 0 30 2 *"}),
        json!({"cron_expression": "* * * * *", "timezone": "Nowhere"}),
        json!({"cron_expression": "* * * * *", "count": 0}),
        json!({"cron_expression": "* * * * *", "after": "yesterday"}),
    ] {
        let (s, v) = app.post("/api/v1/schedules/preview", bad.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{bad} -> {v}");
    }
    // The extensions' refusals name the field too.
    for (expr, field) in [
        ("0 0 LW * *", "day-of-month"),
        ("0 0 * * 5#6", "day-of-week"),
        ("0 0 1 * L5", "day-of-week"),
    ] {
        let (s, v) = app
            .post("/api/v1/schedules/preview", json!({"cron_expression": expr}))
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{expr} -> {v}");
        assert!(
            v["error"]["message"].as_str().is_some_and(|m| m.contains(field)),
            "{expr} -> {v}"
        );
    }
    assert_eq!(app.get("/api/v1/schedules").await.1["total"], 0);
    app.stop().await;
}

/// `POST /schedules/preview` gives croniter's answers for every case of the table in
/// tests/fixtures/croniter (made by generate.py there), the extensions and both DST changes
/// included; the cases marked as Maestro's one deliberate difference are checked against
/// the documented rule instead.
#[tokio::test]
async fn preview_agrees_with_croniter() {
    let app = start_with(Backend::Sqlite, &["--scheduler-enabled", "false"]).await;
    let table: Value = serde_json::from_str(include_str!("fixtures/croniter/table.json")).expect("the croniter table");
    let cases = table["cases"].as_array().expect("cases");
    let instant = |v: &Value| {
        chrono::DateTime::parse_from_rfc3339(v.as_str().expect("a time"))
            .expect("rfc3339")
            .with_timezone(&chrono::Utc)
    };
    let (mut agree, mut wrong) = (0, Vec::new());
    for case in cases {
        let want: Vec<_> = case["next"].as_array().expect("next").iter().map(instant).collect();
        let body = json!({"cron_expression": case["expr"], "timezone": case["tz"], "after": case["after"],
                          "count": want.len()});
        let (s, v) = app.post("/api/v1/schedules/preview", body).await;
        assert_eq!(s, StatusCode::OK, "{case}: {v}");
        let got: Vec<_> = v["next"].as_array().expect("next").iter().map(instant).collect();
        if got != want {
            wrong.push(format!("{case}\n  got {:?}", v["next"]));
        } else if case.get("croniter").is_none() {
            agree += 1;
        }
    }
    assert!(wrong.is_empty(), "{} cases differ:\n{}", wrong.len(), wrong.join("\n"));
    assert!(agree >= 500, "{agree} cases are croniter's own answer");
    app.stop().await;
}

/// The loop fires a seconds-level schedule as `schedule` executions; pausing stops it.
async fn fires_on_time(b: Backend) {
    let app = start_with(b, &["--scheduler-poll-ms", "100"]).await;
    with_square(&app).await;
    let s = schedule(
        &app,
        json!({"name": "every-second", "function_name": "square", "cron_expression": "* * * * * *", "input_data": {"n": 7}}),
    )
    .await;
    let id = s["id"].as_str().unwrap();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    app.post(&format!("/api/v1/schedules/{id}/pause"), json!({})).await;
    let fired = executions_of(&app, id).await;
    assert!((2..=4).contains(&fired.len()), "about one a second: {}", fired.len());
    for e in &fired {
        assert_eq!(
            (e["trigger"].as_str(), e["attempt"].as_i64()),
            (Some("schedule"), Some(1)),
            "{e}"
        );
        if e["status"] == "succeeded" {
            assert_eq!(e["output"], 49, "{e}");
        }
    }
    let runs = runs_of(&app, id).await;
    let mut ticks: Vec<&str> = runs.iter().map(|r| r["fire_at"].as_str().unwrap()).collect();
    ticks.dedup();
    assert_eq!(ticks.len(), runs.len(), "one run per tick");
    let (_, shown) = app.get(&format!("/api/v1/schedules/{id}")).await;
    assert_eq!(shown["last_status"], "succeeded", "{shown}");
    let (_, status) = app.get("/scheduler/status").await;
    assert_eq!(status["running"], true, "{status}");
    assert!(status["node_id"].is_string());
    // (On the shared PostgreSQL database other test servers may have fired some ticks.)
    assert!(status["node"]["ticks_fired"].is_u64(), "{status}");

    tokio::time::sleep(Duration::from_millis(800)).await;
    let before = executions_of(&app, id).await.len();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        executions_of(&app, id).await.len(),
        before,
        "paused schedules do not fire"
    );
    delete_all(&app).await;
    app.stop().await;
}

const FAIL: &str = "def always_fails(input):\n    raise RuntimeError('down for maintenance')\n";

/// A failing run is retried with exponential backoff; each attempt is its own execution
/// linked to the first; the retries are rows a poll picks up.
async fn retries_with_backoff(b: Backend) {
    let app = start_with(b, &["--scheduler-poll-ms", "50"]).await;
    app.create("always_fails", FAIL).await;
    let s = schedule(
        &app,
        json!({"name": "flaky", "function_name": "always_fails", "cron_expression": "0 0 1 1 *",
               "max_retries": 2, "retry_delay_seconds": 0.4, "backoff_factor": 2, "max_retry_delay_seconds": 10}),
    )
    .await;
    let id = s["id"].as_str().unwrap();
    let (status, v) = app.post(&format!("/api/v1/schedules/{id}/run"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    let first = v["execution_id"].as_str().unwrap().to_string();
    let (status, e) = app.get(&format!("/api/v1/executions/{first}")).await;
    assert_eq!(status, StatusCode::OK, "the 202's execution is readable at once: {e}");
    for _ in 0..160 {
        // The run row is settled just after its execution: wait for both.
        let fired = executions_of(&app, id).await;
        let runs = runs_of(&app, id).await;
        if fired.len() == 3
            && fired.iter().all(|e| e["status"] != "running")
            && runs.len() == 3
            && runs.iter().all(|r| r["status"] != "running")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await; // no fourth attempt comes

    let fired = executions_of(&app, id).await;
    assert_eq!(fired.len(), 3, "one try and two retries: {fired:?}");
    let started: Vec<chrono::DateTime<chrono::Utc>> = fired
        .iter()
        .map(|e| e["started_at"].as_str().unwrap().parse().unwrap())
        .collect();
    for (i, e) in fired.iter().enumerate() {
        assert_eq!(e["status"], "failed");
        assert_eq!(e["attempt"], i as i64 + 1);
        if i > 0 {
            assert_eq!(e["retry_of"], json!(first), "linked to the first attempt");
        }
    }
    let gap1 = (started[1] - started[0]).num_milliseconds();
    let gap2 = (started[2] - started[1]).num_milliseconds();
    assert!(
        gap1 >= 400 && gap2 >= 800,
        "backoff 0.4 s then 0.8 s: {gap1} ms, {gap2} ms"
    );
    let runs = runs_of(&app, id).await;
    let attempts: Vec<(i64, &str)> = runs
        .iter()
        .map(|r| (r["attempt"].as_i64().unwrap(), r["status"].as_str().unwrap()))
        .collect();
    assert_eq!(attempts, vec![(1, "failed"), (2, "failed"), (3, "failed")]);
    assert_eq!(runs[0]["reason"], "manual");
    let (_, shown) = app.get(&format!("/api/v1/schedules/{id}")).await;
    assert_eq!(shown["last_status"], "failed");
    delete_all(&app).await;
    app.stop().await;
}

/// A run held back by the tenant's concurrency quota waits in the queue and then runs, as attempt 1.
async fn quota_holds_runs_back(b: Backend) {
    let app = start_with(
        b,
        &["--scheduler-poll-ms", "50", "--tenant-max-concurrent-executions", "1"],
    )
    .await;
    app.create_with(json!({"name": "hog", "timeout_seconds": 10,
        "code": "import time\n\ndef hog(input):\n    time.sleep(1)\n    return 'done'\n"}))
        .await;
    with_square(&app).await;
    let s = schedule(
        &app,
        json!({"name": "later", "function_name": "square", "cron_expression": "0 0 1 1 *", "input_data": {"n": 4}}),
    )
    .await;
    let id = s["id"].as_str().unwrap().to_string();
    let url = format!("{}/api/v1/functions/hog/invoke", app.base);
    let hog = tokio::spawn(app.client.post(url).bearer_auth(&app.token).json(&json!({})).send());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, v) = app.post(&format!("/api/v1/schedules/{id}/run"), json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{v}");
    assert_eq!(v["status"], "queued", "a job of the queue: {v}");
    let queued = v["execution_id"].as_str().unwrap().to_string();
    let runs = runs_of(&app, &id).await;
    assert_eq!(runs[0]["execution_id"], json!(queued), "linked at once: {runs:?}");
    assert_eq!(runs[0]["status"], "running", "{runs:?}");
    hog.await.unwrap().unwrap();
    let mut fired = vec![];
    for _ in 0..100 {
        fired = executions_of(&app, &id).await;
        if fired.first().is_some_and(|e| e["status"] == "succeeded") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(fired.len(), 1, "{fired:?}");
    assert_eq!(
        (fired[0]["output"].clone(), fired[0]["attempt"].clone()),
        (json!(16), json!(1))
    );
    // Held back by the quota: it started only once the hog was done. (On PostgreSQL the test
    // servers of this binary share one database, so another one may run the job: sync calls
    // count against the quota of their own server only.)
    if b == Backend::Sqlite {
        let (_, hogs) = app.get("/api/v1/executions?function=hog&total=true").await;
        let at = |v: &Value| chrono::DateTime::parse_from_rfc3339(v.as_str().unwrap()).unwrap();
        // (Claimed a moment before the hog let go of the slot, a job shows its claim time.)
        let slack = chrono::Duration::milliseconds(200);
        assert!(
            at(&fired[0]["started_at"]) >= at(&hogs["executions"][0]["finished_at"]) - slack,
            "{fired:?} {hogs}"
        );
    }
    let t = std::time::Instant::now();
    while runs_of(&app, &id).await[0]["status"] != "succeeded" {
        assert!(
            t.elapsed() < Duration::from_secs(5),
            "the run is settled from its execution"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    delete_all(&app).await;
    app.stop().await;
}

/// Remove this test's schedules, so no other server on the shared database fires them.
async fn delete_all(app: &TestApp) {
    let (_, list) = app.get("/api/v1/schedules?limit=500").await;
    for s in list["schedules"].as_array().into_iter().flatten() {
        app.call(
            Method::DELETE,
            &format!("/api/v1/schedules/{}", s["id"].as_str().unwrap()),
            None,
        )
        .await;
    }
}

/// Unix ms of an RFC 3339 time.
fn ms(t: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp_millis()
}

/// After downtime the latest missed tick runs once within the catch-up window, older ones
/// are recorded as misfires; a tick while the previous run still runs is skipped (or, with
/// `overlap_policy: allow`, runs alongside).
async fn misfires_and_overlap(b: Backend) {
    // Polls at made-up future times also start retries left pending by earlier steps: room
    // for them, so the tenant's concurrency quota (tested elsewhere) never decides a round.
    let app = start_with(
        b,
        &[
            "--scheduler-enabled",
            "false",
            "--tenant-max-concurrent-executions",
            "8",
        ],
    )
    .await;
    with_square(&app).await;
    let scheduler = app.state().scheduler.clone();
    let store = app.state().store.clone();
    let s = schedule(
        &app,
        json!({"name": "hourly", "function_name": "square", "cron_expression": "0 * * * *", "input_data": {"n": 2},
               "catchup_window_seconds": 300}),
    )
    .await;
    let id = s["id"].as_str().unwrap().to_string();
    let next = ms(s["next_run_at"].as_str().unwrap());
    // Pretend the server was down for five hours: the stored tick is five hours old.
    let past = next - 5 * 3_600_000;
    assert!(store.claim_tick(&id, next, Some(past)).await.unwrap());
    scheduler.poll_once(next - 3_600_000 + 60_000).await.unwrap();
    let mut runs = runs_of(&app, &id).await;
    for _ in 0..100 {
        if runs.len() == 1 && runs[0]["status"] != "running" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        runs = runs_of(&app, &id).await;
    }
    assert_eq!(runs.len(), 1, "one run for all the missed ticks: {runs:?}");
    assert_eq!(runs[0]["status"], "succeeded");
    assert_eq!(runs[0]["missed"], 4, "and the misses counted");
    assert_eq!(
        ms(runs[0]["fire_at"].as_str().unwrap()),
        next - 3_600_000,
        "the latest missed tick"
    );
    assert_eq!(executions_of(&app, &id).await.len(), 1);

    // Beyond the window nothing runs, and the skipped tick is on record.
    let (_, s) = app.get(&format!("/api/v1/schedules/{id}")).await;
    let now_next = ms(s["next_run_at"].as_str().unwrap());
    assert!(store
        .claim_tick(&id, now_next, Some(now_next - 3 * 3_600_000))
        .await
        .unwrap());
    scheduler.poll_once(now_next + 1_000_000).await.unwrap();
    let runs = runs_of(&app, &id).await;
    assert_eq!(runs.len(), 2);
    assert_eq!(
        (runs[1]["status"].as_str(), runs[1]["reason"].as_str()),
        (Some("skipped"), Some("misfire"))
    );
    assert_eq!(executions_of(&app, &id).await.len(), 1, "no run for a misfire");

    // Overlap: a slow function, polled at two consecutive ticks.
    app.create_with(json!({"name": "slow", "timeout_seconds": 10,
        "code": "import time\n\ndef slow(input):\n    time.sleep(1.5)\n    return 'ok'\n"}))
        .await;
    for (policy, expect_runs) in [("skip", 1), ("allow", 2)] {
        // Start from an idle tenant: a slow run left from the last round (a slow start on a
        // loaded machine) would count against the tenant's concurrency here.
        for _ in 0..100 {
            let (_, running) = app.get("/api/v1/executions?status=running&total=true").await;
            if running["total"] == 0 && app.state().engine.running(&app.tenant) == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let s = schedule(
            &app,
            json!({"name": format!("slow-{policy}"), "function_name": "slow", "cron_expression": "* * * * *",
                   "overlap_policy": policy}),
        )
        .await;
        let id = s["id"].as_str().unwrap().to_string();
        let tick = ms(s["next_run_at"].as_str().unwrap());
        scheduler.poll_once(tick).await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        scheduler.poll_once(tick + 60_000).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2500)).await;
        let runs = runs_of(&app, &id).await;
        assert_eq!(runs.len(), 2, "{policy}: {runs:?}");
        assert_eq!(executions_of(&app, &id).await.len(), expect_runs, "{policy}: {runs:?}");
        if policy == "skip" {
            assert_eq!(
                (runs[1]["status"].as_str(), runs[1]["reason"].as_str()),
                (Some("skipped"), Some("overlap"))
            );
        }
    }
    delete_all(&app).await;
    app.stop().await;
}

both_backends!(
    api_and_refusals,
    preview,
    fires_on_time,
    retries_with_backoff,
    quota_holds_runs_back
);

/// This test moves the clock, and a poll at a made-up time acts on every tenant's schedules:
/// on the PostgreSQL database the other tests share it would fire their ticks and retries
/// early. It runs on its own SQLite database (the claim and misfire SQL is the same).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn misfires_and_overlap_sqlite() {
    misfires_and_overlap(Backend::Sqlite).await
}

/// Two real `maestro serve` processes on one PostgreSQL database fire each tick once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_fire_each_tick_once() {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let db = common::postgres_url();
    let flags = [
        "--database-url",
        &db,
        "--jwt-secret",
        common::SECRET,
        "--scheduler-poll-ms",
        "20",
    ];
    let mut children = vec![];
    let mut bases = vec![];
    for d in &dirs {
        let (child, lines) = common::serve_binary(d.path().to_str().unwrap(), &flags);
        children.push(child);
        bases.push(common::address(&lines));
    }
    let tenant = format!("t-{}", uuid::Uuid::new_v4().simple());
    let keys = maestro::auth::Keys::new(common::SECRET);
    let token = keys
        .mint(&tenant, "ops@example.com", false, Duration::from_secs(600))
        .unwrap();
    let client = reqwest::Client::new();
    let call = |base: &str, method: Method, path: &str, body: Option<Value>| {
        let mut req = client.request(method, format!("{base}{path}")).bearer_auth(&token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req.send().await.expect("request");
            (resp.status(), resp.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s, _) = call(
        &bases[0],
        Method::POST,
        "/api/v1/functions",
        Some(json!({"name": "tick", "code": "def tick(input):\n    return 1\n"})),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED);
    let (s, v) = call(
        &bases[1],
        Method::POST,
        "/api/v1/schedules",
        Some(
            json!({"name": "every-second", "function_name": "tick", "cron_expression": "* * * * * *",
                    "overlap_policy": "allow"}),
        ),
    )
    .await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(4500)).await;
    call(
        &bases[0],
        Method::POST,
        &format!("/api/v1/schedules/{id}/pause"),
        Some(json!({})),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;

    let (_, runs) = call(
        &bases[1],
        Method::GET,
        &format!("/api/v1/schedules/{id}/runs?limit=500&total=true"),
        None,
    )
    .await;
    let runs = runs["runs"].as_array().unwrap();
    let (_, execs) = call(
        &bases[0],
        Method::GET,
        &format!("/api/v1/executions?trigger_id={id}&limit=500&total=true"),
        None,
    )
    .await;
    let mut ticks: Vec<&str> = runs.iter().map(|r| r["fire_at"].as_str().unwrap()).collect();
    ticks.sort();
    let all = ticks.len();
    ticks.dedup();
    assert_eq!(ticks.len(), all, "no tick recorded twice: {runs:?}");
    assert!((3..=6).contains(&all), "about one tick a second: {all}");
    let ran = runs.iter().filter(|r| r["status"] != "skipped").count();
    assert_eq!(execs["total"], json!(ran), "one execution per tick run: {runs:?}");
    for base in &bases {
        let (_, st) = call(base, Method::GET, "/scheduler/status", None).await;
        assert_eq!(st["running"], true, "{st}");
    }
    call(&bases[0], Method::DELETE, &format!("/api/v1/schedules/{id}"), None).await;
    for mut c in children {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A retry waiting in the database is run by the next server after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_str().unwrap();
    let flags = ["--jwt-secret", common::SECRET, "--scheduler-poll-ms", "50"];
    let keys = maestro::auth::Keys::new(common::SECRET);
    let token = keys
        .mint("restart", "ops@example.com", false, Duration::from_secs(600))
        .unwrap();
    let client = reqwest::Client::new();
    let call = |base: String, method: Method, path: String, body: Option<Value>| {
        let mut req = client.request(method, format!("{base}{path}")).bearer_auth(&token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        async move {
            let resp = req.send().await.expect("request");
            resp.json::<Value>().await.unwrap_or(Value::Null)
        }
    };

    let (mut first, lines) = common::serve_binary(data, &flags);
    let base = common::address(&lines);
    call(
        base.clone(),
        Method::POST,
        "/api/v1/functions".into(),
        Some(json!({"name": "always_fails", "code": FAIL})),
    )
    .await;
    let s = call(
        base.clone(),
        Method::POST,
        "/api/v1/schedules".into(),
        Some(json!({"name": "flaky",
        "function_name": "always_fails", "cron_expression": "0 0 1 1 *", "max_retries": 1, "retry_delay_seconds": 2})),
    )
    .await;
    let id = s["id"].as_str().expect("schedule id").to_string();
    call(
        base.clone(),
        Method::POST,
        format!("/api/v1/schedules/{id}/run"),
        Some(json!({})),
    )
    .await;
    for _ in 0..100 {
        let runs = call(
            base.clone(),
            Method::GET,
            format!("/api/v1/schedules/{id}/runs?total=true"),
            None,
        )
        .await;
        if runs["runs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["status"] == "pending")
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let runs = call(
        base.clone(),
        Method::GET,
        format!("/api/v1/schedules/{id}/runs?total=true"),
        None,
    )
    .await;
    let pending: Vec<&Value> = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["status"] == "pending")
        .collect();
    assert_eq!(pending.len(), 1, "the retry waits in the database: {runs}");
    let _ = first.kill();
    let _ = first.wait();

    let (mut second, lines) = common::serve_binary(data, &flags);
    let base = common::address(&lines);
    for _ in 0..100 {
        let execs = call(
            base.clone(),
            Method::GET,
            format!("/api/v1/executions?trigger_id={id}&total=true"),
            None,
        )
        .await;
        let list = execs["executions"].as_array().unwrap();
        if list.len() == 2 && list.iter().all(|e| e["status"] != "running") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let execs = call(
        base.clone(),
        Method::GET,
        format!("/api/v1/executions?trigger_id={id}&total=true"),
        None,
    )
    .await;
    let attempts: Vec<i64> = execs["executions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["attempt"].as_i64())
        .collect();
    assert_eq!(attempts, vec![2, 1], "the second server ran the retry: {execs}");
    let _ = second.kill();
    let _ = second.wait();
}
