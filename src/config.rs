//! Settings, read once at start from flags and environment variables.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Args;

use crate::sandbox::Isolation;

/// A secret string that never shows up in `Debug` output or logs.
#[derive(Clone, Default)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret(s.to_string()))
    }
}

/// Everything `maestro serve` (and `bench`) needs to know.
#[derive(Debug, Clone, Args)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "MAESTRO_BIND", default_value = "127.0.0.1:8000")]
    pub bind: SocketAddr,
    /// Directory for the SQLite database, the generated JWT secret and (by default) the runtime.
    #[arg(long, env = "MAESTRO_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Where the CPython WASI runtime lives (default: DATA_DIR/runtime); fetched when missing.
    #[arg(long, env = "MAESTRO_RUNTIME_DIR")]
    pub runtime_dir: Option<PathBuf>,
    /// Where the compiled runtime is cached (default: RUNTIME_DIR/cache).
    #[arg(long, env = "MAESTRO_CACHE_DIR")]
    pub cache_dir: Option<PathBuf>,
    /// `postgres://…` or `sqlite://…` (default: SQLite in DATA_DIR/maestro.db).
    #[arg(long, env = "DATABASE_URL")]
    pub database_url: Option<Secret>,
    /// Redis (`redis://host:6379`): live events go to Redis Streams so every replica can
    /// follow every run; /health reports it.
    #[arg(long, env = "REDIS_URL")]
    pub redis_url: Option<Secret>,
    /// HS256 secret for API tokens (default: generated into DATA_DIR/jwt_secret).
    #[arg(long, env = "MAESTRO_JWT_SECRET")]
    pub jwt_secret: Option<Secret>,
    /// Verbose logging.
    #[arg(long, env = "DEBUG", default_value_t = false, action = clap::ArgAction::Set)]
    pub debug: bool,
    /// `text` or `json` log lines.
    #[arg(long, env = "LOG_FORMAT", default_value = "text")]
    pub log_format: String,
    /// Default wall-clock limit of an execution, in seconds.
    #[arg(long, env = "FUNCTION_TIMEOUT", default_value_t = 30.0)]
    pub function_timeout: f64,
    /// Default fuel (wasm instruction budget) of an execution; 0 = none, so CPU time is
    /// bounded by the timeout alone. A function's own `fuel` or a tenant quota sets one.
    #[arg(long, env = "FUNCTION_FUEL", default_value_t = 0)]
    pub function_fuel: u64,
    /// Default memory cap of one sandbox instance, in MiB.
    #[arg(long, env = "FUNCTION_MEMORY_MB", default_value_t = 256)]
    pub function_memory_mb: u64,
    /// Highest timeout a function may ask for, in seconds.
    #[arg(long, env = "MAX_FUNCTION_TIMEOUT", default_value_t = 300.0)]
    pub max_function_timeout: f64,
    /// Highest fuel a function may ask for.
    #[arg(long, env = "MAX_FUNCTION_FUEL", default_value_t = 100_000_000_000)]
    pub max_function_fuel: u64,
    /// Highest memory cap a function may ask for, in MiB (wasm32 tops out at 4096).
    #[arg(long, env = "MAX_FUNCTION_MEMORY_MB", default_value_t = 2048)]
    pub max_function_memory_mb: u64,
    /// Deepest chain of nested calls.
    #[arg(long, env = "MAX_CALL_DEPTH", default_value_t = 16)]
    pub max_call_depth: u32,
    /// Most nested calls one execution may make (each is a recorded step).
    #[arg(long, env = "MAX_CALLS_PER_EXECUTION", default_value_t = 1000)]
    pub max_calls_per_execution: u32,
    /// Largest function source, in bytes.
    #[arg(long, env = "MAX_CODE_BYTES", default_value_t = 256 * 1024)]
    pub max_code_bytes: usize,
    /// Largest request body (and so invoke input), in bytes.
    #[arg(long, env = "MAX_INPUT_BYTES", default_value_t = 1024 * 1024)]
    pub max_input_bytes: usize,
    /// stdout/stderr kept per call, in bytes each; the rest is counted and dropped.
    #[arg(long, env = "MAX_LOG_BYTES", default_value_t = 1024 * 1024)]
    pub max_log_bytes: usize,
    /// Threads running sandboxes: the most executions running at once.
    #[arg(long, env = "SANDBOX_WORKERS", default_value_t = 8)]
    pub sandbox_workers: usize,
    /// Isolation of functions that do not choose one.
    #[arg(long, env = "DEFAULT_ISOLATION", default_value = "warm", value_parser = parse_isolation)]
    pub default_isolation: Isolation,
    /// Idle warm instances kept per function version.
    #[arg(long, env = "WARM_POOL_PER_FUNCTION", default_value_t = 4)]
    pub warm_per_function: usize,
    /// Idle warm instances kept in all.
    #[arg(long, env = "WARM_POOL_TOTAL", default_value_t = 256)]
    pub warm_total: usize,
    /// Calls after which a warm instance is retired.
    #[arg(long, env = "WARM_MAX_USES", default_value_t = 1000)]
    pub warm_max_uses: u32,
    /// Memory all idle warm instances may hold together (resident, not reserved), in MiB
    /// (the least recently used go first).
    #[arg(long, env = "WARM_POOL_MAX_MB", default_value_t = 1024)]
    pub warm_pool_max_mb: u64,
    /// Seconds a warm instance may stay idle before it is dropped (0: no limit).
    #[arg(long, env = "WARM_IDLE_SECONDS", default_value_t = 300.0)]
    pub warm_idle_seconds: f64,
    /// A warm instance whose memory grew past this many MiB is dropped after its call
    /// instead of kept (wasm memory never shrinks).
    #[arg(long, env = "WARM_RETIRE_ABOVE_MB", default_value_t = 192)]
    pub warm_retire_above_mb: u64,
    /// How long a server may serve a function version from memory, in milliseconds: bounds
    /// how stale another server's change can look here (this server's own changes apply at
    /// once; 0 = always read the database).
    #[arg(long, env = "FUNCTION_CACHE_MS", default_value_t = 1000)]
    pub function_cache_ms: u64,
    /// Booted, never-used instances kept ready so fresh calls skip start-up (0 turns this off).
    #[arg(long, env = "FRESH_SPARES", default_value_t = 4)]
    pub fresh_spares: usize,
    /// Disk the per-function snapshots may take, in MiB (the least recently used go first;
    /// 0 turns snapshots off, and every pool miss runs the module code again).
    #[arg(long, env = "SNAPSHOT_DISK_MB", default_value_t = 2048)]
    pub snapshot_disk_mb: u64,
    /// Largest webhook request body, in bytes (a larger one gets 413).
    #[arg(long, env = "WEBHOOK_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub webhook_max_body_bytes: usize,
    /// Requests one webhook may run at once on this server unless the webhook sets its own
    /// `max_concurrency`; more get 429.
    #[arg(long, env = "WEBHOOK_MAX_CONCURRENCY", default_value_t = 32)]
    pub webhook_max_concurrency: u32,
    /// Executions (with their steps and logs) that ended more than this many days ago are
    /// deleted by a background task (0 keeps everything).
    #[arg(long, env = "RETENTION_DAYS", default_value_t = 0.0)]
    pub retention_days: f64,
    /// On SIGTERM or Ctrl-C: how long running executions may go on before they are recorded
    /// as interrupted and the server exits.
    #[arg(long, env = "SHUTDOWN_GRACE_SECONDS", default_value_t = 30.0)]
    pub shutdown_grace_seconds: f64,
    /// Export request, execution and step spans over OTLP/HTTP (JSON) to this collector
    /// (e.g. `http://otel-collector:4318`).
    #[arg(long, env = "OTEL_EXPORTER_OTLP_ENDPOINT")]
    pub otlp_endpoint: Option<String>,
    /// When set, `/metrics` answers only requests with `Authorization: Bearer <this>`.
    #[arg(long, env = "METRICS_TOKEN")]
    pub metrics_token: Option<Secret>,
    /// Events kept (approximately) in each execution's Redis stream.
    #[arg(long, env = "REDIS_STREAM_MAXLEN", default_value_t = 10_000)]
    pub redis_stream_maxlen: usize,
    /// Events kept (approximately) in each tenant's Redis stream.
    #[arg(long, env = "REDIS_TENANT_STREAM_MAXLEN", default_value_t = 100_000)]
    pub redis_tenant_stream_maxlen: usize,
    /// Most functions a tenant may have (admins override per subtenant).
    #[arg(long, env = "TENANT_MAX_FUNCTIONS", default_value_t = 1000)]
    pub tenant_max_functions: i64,
    /// Executions one tenant may run at once on a server (0 = half of SANDBOX_WORKERS, so
    /// one tenant's flood never takes every worker).
    #[arg(long, env = "TENANT_MAX_CONCURRENT_EXECUTIONS", default_value_t = 0)]
    pub tenant_max_concurrent_executions: u32,
    /// How long a direct call at its tenant's concurrency cap waits for a slot before the
    /// 429 (0 = refuse at once).
    #[arg(long, env = "TENANT_QUEUE_WAIT_MS", default_value_t = 2000)]
    pub tenant_queue_wait_ms: u64,
    /// Most calls of one tenant waiting for a slot on a server (0 = 16 per CPU core).
    #[arg(long, env = "TENANT_QUEUE_DEPTH", default_value_t = 0)]
    pub tenant_queue_depth: u32,
    /// Executions one tenant may start per second on a server (0 = unlimited).
    #[arg(long, env = "TENANT_INVOCATIONS_PER_SECOND", default_value_t = 0.0)]
    pub tenant_invocations_per_second: f64,
    /// External token issuer: the `iss` its tokens must carry.
    #[arg(long, env = "AUTH_ISSUER")]
    pub auth_issuer: Option<String>,
    /// External token issuer: the `aud` its tokens must carry (required with AUTH_JWKS or
    /// AUTH_PUBLIC_KEY).
    #[arg(long, env = "AUTH_AUDIENCE")]
    pub auth_audience: Option<String>,
    /// External token issuer: a PEM public key (RSA or EC) that signs its tokens.
    #[arg(long, env = "AUTH_PUBLIC_KEY")]
    pub auth_public_key: Option<PathBuf>,
    /// External token issuer: its JWKS, a file path or an http(s) URL.
    #[arg(long, env = "AUTH_JWKS")]
    pub auth_jwks: Option<String>,
    /// How long a fetched JWKS is used before it is fetched again, in seconds.
    #[arg(long, env = "AUTH_JWKS_REFRESH_SECONDS", default_value_t = 300)]
    pub auth_jwks_refresh_seconds: u64,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[arg(long, env = "AUTH_LEEWAY_SECONDS", default_value_t = 30)]
    pub auth_leeway_seconds: u64,
    /// The claim holding the user's email (falls back to `sub`).
    #[arg(long, env = "AUTH_EMAIL_CLAIM", default_value = "email")]
    pub auth_email_claim: String,
    /// The claim holding the tenant the token is bound to, if any.
    #[arg(long, env = "AUTH_TENANT_CLAIM", default_value = "tenant")]
    pub auth_tenant_claim: String,
    /// The claim holding the user's role (a string or a list).
    #[arg(long, env = "AUTH_ROLE_CLAIM", default_value = "role")]
    pub auth_role_claim: String,
    /// The role value that makes an external issuer's user a server admin (empty: none do;
    /// this server's own tokens use `role: admin`).
    #[arg(long, env = "AUTH_ADMIN_ROLE", default_value = "")]
    pub auth_admin_role: String,
    /// The console's "sign in with" button: the identity provider's authorization endpoint
    /// (OAuth 2 authorization code with PKCE; the console is a public client). Needs
    /// CONSOLE_OIDC_TOKEN_URL and CONSOLE_OIDC_CLIENT_ID too; the provider's tokens must be
    /// ones this server accepts (AUTH_JWKS or AUTH_PUBLIC_KEY, AUTH_ISSUER, AUTH_AUDIENCE).
    #[arg(long, env = "CONSOLE_OIDC_AUTHORIZE_URL")]
    pub console_oidc_authorize_url: Option<String>,
    /// The identity provider's token endpoint (the browser posts the code there, so the
    /// console's Content-Security-Policy allows its origin).
    #[arg(long, env = "CONSOLE_OIDC_TOKEN_URL")]
    pub console_oidc_token_url: Option<String>,
    /// The console's client id at the identity provider (redirect URI: `<server>/ui/oidc`).
    #[arg(long, env = "CONSOLE_OIDC_CLIENT_ID")]
    pub console_oidc_client_id: Option<String>,
    /// The scopes the console asks for.
    #[arg(long, env = "CONSOLE_OIDC_SCOPE", default_value = "openid email profile")]
    pub console_oidc_scope: String,
    /// Run the scheduler loop in this process (every replica may; ticks still fire once).
    #[arg(long, env = "SCHEDULER_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub scheduler_enabled: bool,
    /// How often the scheduler looks for due ticks and retries, in milliseconds: the most a
    /// tick fires late.
    #[arg(long, env = "SCHEDULER_POLL_MS", default_value_t = 500)]
    pub scheduler_poll_ms: u64,
    /// Default catch-up window of new schedules, in seconds: after downtime, the latest missed
    /// tick still runs if it is at most this old.
    #[arg(long, env = "SCHEDULER_CATCHUP_SECONDS", default_value_t = 300.0)]
    pub scheduler_catchup_seconds: f64,
    /// How long a server's claim on a running workflow lasts without renewal, in
    /// milliseconds. The server driving a run renews it; when that server stops, another
    /// (or the same after a restart) resumes the run once the lease has run out.
    #[arg(long, env = "WORKFLOW_LEASE_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(300..=3_600_000))]
    pub workflow_lease_ms: u64,
    /// How long a request waits for a database connection, in milliseconds, before it is
    /// answered 503 `database_unavailable` with Retry-After (the database is down or
    /// overloaded).
    #[arg(long, env = "DATABASE_TIMEOUT_MS", default_value_t = 2_000,
          value_parser = clap::value_parser!(u64).range(50..=600_000))]
    pub database_timeout_ms: u64,
    /// Queued jobs (async webhook calls, `?async=true` invokes, schedule runs) this server
    /// runs at once (0 = SANDBOX_WORKERS). A workflow run's job leaves the queue as its run
    /// starts: its nodes run on the sandbox workers.
    #[arg(long, env = "QUEUE_WORKERS", default_value_t = 0)]
    pub queue_workers: usize,
    /// How long a server's claim on a queued job lasts without renewal, in milliseconds. The
    /// server running a job renews it; when that server dies, any server takes the job back
    /// once the lease has run out (at most this plus QUEUE_POLL_MS after the death).
    #[arg(long, env = "QUEUE_LEASE_MS", default_value_t = 15_000,
          value_parser = clap::value_parser!(u64).range(300..=3_600_000))]
    pub queue_lease_ms: u64,
    /// How often an idle server looks for queued jobs, in milliseconds (jobs queued on this
    /// server start at once; this bounds the wait for jobs queued on another).
    #[arg(long, env = "QUEUE_POLL_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(10..=60_000))]
    pub queue_poll_ms: u64,
    /// Attempts a queued job gets when its server dies while it runs (`on_interrupt:
    /// retry`); `on_interrupt: fail` means one.
    #[arg(long, env = "QUEUE_MAX_ATTEMPTS", default_value_t = 3,
          value_parser = clap::value_parser!(i64).range(1..=100))]
    pub queue_max_attempts: i64,
    /// Jobs one tenant may have waiting; more get 429 with Retry-After.
    #[arg(long, env = "QUEUE_MAX_PER_TENANT", default_value_t = 50_000,
          value_parser = clap::value_parser!(i64).range(1..))]
    pub queue_max_per_tenant: i64,
    /// Let tenants' egress rules reach private and loopback addresses (`allow_private`).
    /// Off by default: a tenant member could otherwise reach services inside the network.
    /// Link-local addresses (cloud metadata) stay unreachable either way.
    #[arg(long, env = "EGRESS_ALLOW_PRIVATE", default_value_t = false, action = clap::ArgAction::Set)]
    pub egress_allow_private: bool,
    /// Key that seals tenants' secrets (any string; hashed to 256 bits). Default: generated
    /// into DATA_DIR/secrets_key. Every server of a deployment needs the same one.
    #[arg(long, env = "SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<Secret>,
    /// Allow installing, uploading and removing tenants' Python packages (pure-Python wheels).
    /// Off by default: installing runs pip on this server, which fetches from the package index.
    #[arg(long, env = "ALLOW_PACKAGE_INSTALLATION", default_value_t = false, action = clap::ArgAction::Set)]
    pub allow_package_installation: bool,
    /// Allow `POST /api/v1/run`: code sent to run on demand in a tenant's sandbox (an admin
    /// may still switch it off per subtenant with the `code_execution` quota). Operators who
    /// want stored, reviewed functions only set it to false.
    #[arg(long, env = "ALLOW_CODE_EXECUTION", default_value_t = true, action = clap::ArgAction::Set)]
    pub allow_code_execution: bool,
    /// Sessions (kept interpreters) one tenant may have open at once, across the cluster.
    #[arg(long, env = "SESSIONS_MAX_PER_TENANT", default_value_t = 20)]
    pub sessions_max_per_tenant: u32,
    /// Memory (MiB, the sum of their caps) one tenant's open sessions may hold at once.
    #[arg(long, env = "SESSIONS_MEMORY_MAX_MB", default_value_t = 4096)]
    pub sessions_memory_max_mb: u64,
    /// Idle time (seconds) after which a session ends, unless it asks for another.
    #[arg(long, env = "SESSION_IDLE_TTL_SECONDS", default_value_t = 600)]
    pub session_idle_ttl_seconds: u64,
    /// Bytes a session's working directory may hold (and a run's files). At most 11 MiB: a
    /// file leaves the sandbox in one report, in base64, which must stay under 16 MiB.
    #[arg(long, env = "SESSION_FILES_MAX_BYTES", default_value_t = 8 << 20,
          value_parser = clap::value_parser!(u64).range(1..=11 << 20))]
    pub session_files_max_bytes: u64,
    /// Largest wheel accepted, in bytes (it may unpack to five times that).
    #[arg(long, env = "PACKAGE_MAX_BYTES", default_value_t = 20 << 20)]
    pub package_max_bytes: u64,
    /// Most bytes one tenant's packages may take unpacked.
    #[arg(long, env = "TENANT_PACKAGES_MAX_BYTES", default_value_t = 200 << 20)]
    pub tenant_packages_max_bytes: u64,
    /// The host Python (with pip) that resolves and downloads packages.
    #[arg(long, env = "PACKAGE_PYTHON", default_value = "python3")]
    pub package_python: String,
    /// Time allowed to each pip download, in seconds.
    #[arg(long, env = "PACKAGE_INSTALL_TIMEOUT_SECONDS", default_value_t = 300)]
    pub package_install_timeout_seconds: u64,
}

fn parse_isolation(s: &str) -> Result<Isolation, String> {
    match s {
        "warm" => Ok(Isolation::Warm),
        "fresh" => Ok(Isolation::Fresh),
        other => Err(format!("isolation must be `warm` or `fresh`, not {other:?}")),
    }
}

impl Settings {
    /// The same settings with every directory made absolute, once at start: paths are handed
    /// to child processes (pip) that run in other working directories.
    pub fn with_absolute_paths(mut self) -> std::io::Result<Settings> {
        self.data_dir = std::path::absolute(&self.data_dir)?;
        for dir in [&mut self.runtime_dir, &mut self.cache_dir].into_iter().flatten() {
            *dir = std::path::absolute(&*dir)?;
        }
        Ok(self)
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.runtime_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("runtime"))
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.cache_dir
            .clone()
            .unwrap_or_else(|| self.runtime_dir().join("cache"))
    }

    /// TENANT_QUEUE_DEPTH, or 16 waiting calls per core: a line that the machine's workers
    /// clear within the wait when calls are short.
    pub fn queue_depth_per_tenant(&self) -> u32 {
        match self.tenant_queue_depth {
            0 => 16 * std::thread::available_parallelism().map_or(2, |n| n.get() as u32),
            n => n,
        }
    }

    pub fn database_url(&self) -> String {
        match &self.database_url {
            Some(s) => s.0.clone(),
            None => format!("sqlite://{}?mode=rwc", self.data_dir.join("maestro.db").display()),
        }
    }

    pub fn sandbox(&self) -> crate::sandbox::SandboxConfig {
        crate::sandbox::SandboxConfig {
            runtime_dir: self.runtime_dir(),
            cache_dir: self.cache_dir(),
            warm: crate::sandbox::PoolLimits {
                per_key: self.warm_per_function,
                total: self.warm_total,
                max_bytes: self.warm_pool_max_mb << 20,
                idle: match self.warm_idle_seconds {
                    s if s.is_finite() && s > 0.0 => std::time::Duration::from_secs_f64(s.min(1e9)),
                    _ => std::time::Duration::MAX, // 0: never expire
                },
                retire_above: self.warm_retire_above_mb << 20,
            },
            warm_max_uses: self.warm_max_uses,
            capture_bytes: self.max_log_bytes,
            spares: self.fresh_spares,
            max_input_bytes: self.max_input_bytes,
            snapshot_bytes: self.snapshot_disk_mb << 20,
        }
    }
}

/// An address clients can reach a server listening on `bind` at: a wildcard address
/// (`0.0.0.0`, `::`) becomes the loopback address of its family.
pub fn reachable(bind: SocketAddr) -> SocketAddr {
    let ip = match bind.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => std::net::Ipv4Addr::LOCALHOST.into(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => std::net::Ipv6Addr::LOCALHOST.into(),
        ip => ip,
    };
    SocketAddr::new(ip, bind.port())
}

#[derive(clap::Parser)]
struct SettingsOnly {
    #[command(flatten)]
    settings: Settings,
}

impl Settings {
    /// Settings from flags like `["--bind", "127.0.0.1:0"]` (plus the environment), for
    /// tests and benchmarks.
    pub fn from_args<I: IntoIterator<Item = String>>(args: I) -> anyhow::Result<Settings> {
        use clap::Parser;
        let argv = std::iter::once("maestro".to_string()).chain(args);
        Ok(SettingsOnly::try_parse_from(argv)?.settings)
    }
}
