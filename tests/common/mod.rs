//! Shared test helpers: start the real server (real sandbox, real database) on a free port,
//! mint tokens, make JSON calls.
#![allow(dead_code)]

pub mod contract;

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

pub use maestro::store::Backend;

/// Where the runtime and its compiled module are cached (shared by all tests and `.ci/run`).
pub fn runtime_dir() -> String {
    std::env::var("MAESTRO_RUNTIME_DIR").unwrap_or_else(|_| {
        format!(
            "{}/.cache/maestro/runtime",
            std::env::var("HOME").unwrap_or_else(|_| "/tmp".into())
        )
    })
}

pub fn postgres_url() -> String {
    std::env::var("MAESTRO_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A database of its own on the test PostgreSQL (named `<prefix>_<random>`), for tests whose
/// servers must not claim other tests' queued jobs; answers its URL.
pub async fn fresh_postgres(prefix: &str) -> String {
    let admin = postgres_url();
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    sqlx::any::install_default_drivers();
    let pool = sqlx::AnyPool::connect(&admin).await.expect("the test PostgreSQL");
    sqlx::query(&format!("create database {name}"))
        .execute(&pool)
        .await
        .expect("create database");
    pool.close().await;
    let (base, _) = admin.rsplit_once('/').expect("a database URL");
    format!("{base}/{name}")
}

/// Drop a database made by `fresh_postgres` (its servers stopped or killed).
pub async fn drop_postgres(url: &str) {
    let (_, name) = url.rsplit_once('/').expect("a database URL");
    let pool = sqlx::AnyPool::connect(&postgres_url())
        .await
        .expect("the test PostgreSQL");
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&pool)
        .await
        .expect("drop database");
    pool.close().await;
}

pub const SECRET: &str = "test-secret-for-maestro-tests";

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    /// A token for this app's own tenant (unique per test, so tests never see each other).
    pub token: String,
    pub tenant: String,
    pub keys: maestro::auth::Keys,
    running: Option<maestro::app::Running>,
    _dir: tempfile::TempDir,
}

/// A client that opens a new connection per request: tests send malformed and oversized
/// requests on purpose, after which the server may close a connection the client would
/// otherwise reuse (a spurious `IncompleteMessage` in the next test step).
pub fn test_client() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .expect("an HTTP client")
}

/// Status and JSON body (Null when empty or not JSON) of a response, after checking both
/// against `/openapi.json`.
pub async fn checked(method: &Method, path: &str, resp: reqwest::Response) -> (StatusCode, Value) {
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    let parsed: Option<Value> = serde_json::from_str(&text).ok();
    let body = parsed.clone().unwrap_or(Value::Null);
    contract::check(method, path, status, &body, parsed.is_some());
    (status, body)
}

/// Start a server on `backend`, with extra `--flag value` settings.
pub async fn start_with(backend: Backend, extra: &[&str]) -> TestApp {
    start_in(backend, tempfile::tempdir().expect("tempdir"), extra).await
}

/// Start a server whose data directory is given as a path relative to the working
/// directory (as `./data`, the default, is).
pub async fn start_relative(backend: Backend, extra: &[&str]) -> TestApp {
    let dir = tempfile::Builder::new()
        .prefix(".test-data-")
        .tempdir_in(".")
        .expect("tempdir");
    start_in(backend, dir, extra).await
}

/// Start a second server on `app`'s database (its own data directory and caches), as
/// another replica or the same server restarted would be.
pub async fn start_on(app: &TestApp, extra: &[&str]) -> TestApp {
    let db = app.state().settings.database_url();
    start_db(db, tempfile::tempdir().expect("tempdir"), extra).await
}

async fn start_in(backend: Backend, dir: tempfile::TempDir, extra: &[&str]) -> TestApp {
    let cwd = std::env::current_dir().expect("cwd");
    let data_dir = dir.path().strip_prefix(&cwd).unwrap_or(dir.path()).to_path_buf();
    let db = match backend {
        Backend::Sqlite => format!("sqlite://{}/maestro.db?mode=rwc", data_dir.display()),
        Backend::Postgres => postgres_url(),
    };
    start_db(db, dir, extra).await
}

async fn start_db(db: String, dir: tempfile::TempDir, extra: &[&str]) -> TestApp {
    let cwd = std::env::current_dir().expect("cwd");
    let data_dir = dir.path().strip_prefix(&cwd).unwrap_or(dir.path()).to_path_buf();
    let mut args: Vec<String> = vec![
        "--bind",
        "127.0.0.1:0",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--runtime-dir",
        &runtime_dir(),
        "--database-url",
        &db,
        "--jwt-secret",
        SECRET,
        "--sandbox-workers",
        "4",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    // The PostgreSQL test database is shared: only tests about the scheduler run its loop
    // (they ask for it by setting its poll interval or switching it explicitly).
    // A test that stops its server with work still running need not wait long for it.
    if !extra.contains(&"--shutdown-grace-seconds") {
        args.extend(["--shutdown-grace-seconds".to_string(), "1".to_string()]);
    }
    if !extra.iter().any(|a| a.starts_with("--scheduler-")) {
        args.extend(["--scheduler-enabled".to_string(), "false".to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let settings = maestro::config::Settings::from_args(args).expect("settings");
    let running = maestro::app::spawn(settings).await.expect("server starts");
    let tenant = format!("t-{}", uuid::Uuid::new_v4().simple());
    let keys = maestro::auth::Keys::new(SECRET);
    let token = keys
        .mint(&tenant, "dev@example.com", false, Duration::from_secs(3600))
        .unwrap();
    TestApp {
        base: format!("http://{}", running.addr),
        client: test_client(),
        token,
        tenant,
        keys,
        running: Some(running),
        _dir: dir,
    }
}

pub async fn start(backend: Backend) -> TestApp {
    start_with(backend, &[]).await
}

impl TestApp {
    /// A token for another tenant, unique to this test (`<tenant>-<suffix>`).
    pub fn token_for(&self, suffix: &str) -> String {
        let tenant = format!("{}-{suffix}", self.tenant);
        self.keys
            .mint(&tenant, "other@example.com", false, Duration::from_secs(3600))
            .unwrap()
    }

    /// A call with this app's token; returns status and JSON body (Null when empty).
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call_as(&self.token, method, path, body).await
    }

    pub async fn call_as(&self, token: &str, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{}", self.base, path))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        checked(&method, path, resp).await
    }

    pub async fn raw(&self, method: Method, path: &str, token: Option<&str>, body: &str) -> (StatusCode, Value) {
        let mut req = self
            .client
            .request(method.clone(), format!("{}{}", self.base, path))
            .body(body.to_string());
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        let resp = req.send().await.expect("request");
        checked(&method, path, resp).await
    }

    /// An unauthenticated GET's body as text.
    pub async fn get_text(&self, path: &str) -> String {
        let resp = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request");
        resp.text().await.unwrap_or_default()
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, Some(body)).await
    }

    /// Create a function from code; panics unless it is created.
    pub async fn create(&self, name: &str, code: &str) -> Value {
        self.create_with(serde_json::json!({"name": name, "code": code})).await
    }

    pub async fn create_with(&self, body: Value) -> Value {
        let (status, v) = self.post("/api/v1/functions", body).await;
        assert_eq!(status, StatusCode::CREATED, "create failed: {v}");
        v
    }

    pub async fn invoke(&self, name: &str, input: Value) -> (StatusCode, Value) {
        self.post(&format!("/api/v1/functions/{name}/invoke"), input).await
    }

    /// Create functions from (name, body) pairs: each body is the indented code of
    /// `def <name>(input):`, with `maestro` and `time` imported.
    pub async fn define(&self, list: &[(&str, &str)]) {
        for (name, body) in list {
            self.create(name, &format!("import maestro, time\ndef {name}(input):\n{body}\n"))
                .await;
        }
    }

    /// The server's state, for driving the scheduler with a chosen clock.
    pub fn state(&self) -> &maestro::http::AppState {
        &self.running.as_ref().expect("running").state
    }

    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }
}

/// A client for a server started elsewhere (a `serve_binary` child), acting with `token`.
pub fn remote(base: &str, token: &str) -> TestApp {
    TestApp {
        base: base.to_string(),
        client: test_client(),
        token: token.to_string(),
        tenant: String::new(),
        keys: maestro::auth::Keys::new(SECRET),
        running: None,
        _dir: tempfile::tempdir().expect("tempdir"),
    }
}

/// Start the real `maestro serve` binary with its data in `data` (SQLite unless `extra` gives
/// `--database-url`); returns the child and its stdout lines up to the address line.
pub fn serve_binary(data: &str, extra: &[&str]) -> (std::process::Child, Vec<String>) {
    use std::io::{BufRead, BufReader};
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_maestro"))
        .args(["serve", "--data-dir", data, "--runtime-dir", &runtime_dir()])
        // Any free port, unless the test needs a known one (a server coming back on it).
        .args(if extra.contains(&"--bind") {
            &[][..]
        } else {
            &["--bind", "127.0.0.1:0"][..]
        })
        .args(extra)
        .env_remove("DATABASE_URL")
        .env_remove("MAESTRO_JWT_SECRET")
        .stdout(std::process::Stdio::piped())
        .stderr(
            // MAESTRO_TEST_SERVER_LOG=<file>: keep the servers' logs there, to see why a test failed.
            std::env::var("MAESTRO_TEST_SERVER_LOG")
                .ok()
                .and_then(|f| std::fs::OpenOptions::new().create(true).append(true).open(f).ok())
                .map_or_else(std::process::Stdio::null, Into::into),
        )
        .spawn()
        .expect("maestro serve starts");
    let mut lines = vec![];
    for line in BufReader::new(child.stdout.take().expect("stdout"))
        .lines()
        .map_while(Result::ok)
    {
        let done = line.starts_with("maestro listening on ");
        lines.push(line);
        if done {
            break;
        }
    }
    (child, lines)
}

/// The base URL a `serve_binary` child printed.
pub fn address(lines: &[String]) -> String {
    lines
        .iter()
        .find_map(|l| l.strip_prefix("maestro listening on "))
        .expect("address line")
        .to_string()
}

/// Run an async test body against both SQLite and PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::common::Backend::Postgres).await
                }
            )*
        }
    };
}

/// A wheel built in memory: `files` are (path, content) pairs; METADATA/WHEEL are added.
pub fn wheel(dist: &str, version: &str, requires: &[&str], files: &[(&str, &str)]) -> Vec<u8> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
        let info = format!("{}-{version}.dist-info", dist.replace('-', "_"));
        let mut metadata = format!("Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n");
        for r in requires {
            metadata.push_str(&format!("Requires-Dist: {r}\n"));
        }
        let all = files.iter().map(|(p, c)| (p.to_string(), c.to_string())).chain([
            (format!("{info}/METADATA"), metadata),
            (
                format!("{info}/WHEEL"),
                "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n".to_string(),
            ),
            (format!("{info}/RECORD"), String::new()),
        ]);
        for (path, content) in all {
            z.start_file(path, opts).unwrap();
            std::io::Write::write_all(&mut z, content.as_bytes()).unwrap();
        }
        z.finish().unwrap();
    }
    buf.into_inner()
}

/// POST a wheel as multipart/form-data, the way `curl -F file=@x.whl` sends it.
pub async fn upload(app: &TestApp, filename: &str, bytes: &[u8], query: &str) -> (StatusCode, Value) {
    let boundary = "maestro-test-boundary-7MA4YWxkTrZu0gW";
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{filename}\"\r\n\
         Content-Type: application/octet-stream\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(bytes);
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    let resp = app
        .client
        .post(format!("{}/api/v1/packages/upload{query}", app.base))
        .bearer_auth(&app.token)
        .header("content-type", format!("multipart/form-data; boundary={boundary}"))
        .body(body)
        .send()
        .await
        .expect("upload");
    let status = resp.status();
    (
        status,
        serde_json::from_str(&resp.text().await.unwrap_or_default()).unwrap_or(Value::Null),
    )
}

/// A server process: a `maestro serve` child on `db` with short queue leases. Killed when
/// dropped, so a failing test leaves no server behind.
pub struct Replica {
    pub child: std::process::Child,
    pub base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Queue leases and polls of replicas: short, so tests see a dead server's jobs come back soon.
pub const LEASE_MS: i64 = 2_000;
pub const POLL_MS: i64 = 100;

pub fn replica_with(db: &str, extra: &[&str]) -> Replica {
    let dir = tempfile::tempdir().unwrap();
    let (lease, poll) = (LEASE_MS.to_string(), POLL_MS.to_string());
    let mut args = vec![
        "--database-url",
        db,
        "--jwt-secret",
        SECRET,
        "--sandbox-workers",
        "2",
        "--queue-lease-ms",
        &lease,
        "--queue-poll-ms",
        &poll,
        "--scheduler-enabled",
        "false",
    ];
    args.extend_from_slice(extra);
    let (child, lines) = serve_binary(dir.path().to_str().unwrap(), &args);
    Replica {
        child,
        base: address(&lines),
        _dir: dir,
    }
}

/// A token of a new tenant (`t-<uuid>`) signed with the test secret, and the tenant.
pub fn fresh_tenant(admin: bool) -> (String, String) {
    let tenant = format!("t-{}", uuid::Uuid::new_v4().simple());
    let token = maestro::auth::Keys::new(SECRET)
        .mint(&tenant, "dev@example.com", admin, Duration::from_secs(3600))
        .expect("mint");
    (tenant, token)
}

/// Poll an execution until it has ended (neither queued nor running); fail after `limit`.
pub async fn ended_within(app: &TestApp, id: &str, limit: Duration) -> Value {
    let t = std::time::Instant::now();
    loop {
        let (s, e) = app.get(&format!("/api/v1/executions/{id}")).await;
        assert_eq!(s, StatusCode::OK, "{e}");
        if !["queued", "running"].contains(&e["status"].as_str().unwrap_or("")) {
            return e;
        }
        assert!(t.elapsed() < limit, "execution {id} did not end within {limit:?}: {e}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
