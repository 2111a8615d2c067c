//! The shapes of the API's answers, as OpenAPI schemas derived from these types.
//!
//! Each type names the fields a response carries and their types; `/openapi.json` is built
//! from them, and the test suite checks every response it receives against them (so a field
//! that changes here or in a handler without the other fails a test). Handlers build these
//! from store rows (no store row is a response body), so the document is the answer's type.
//! Times are RFC 3339.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// `{"error": {...}}`: every 4xx and 5xx answer.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Error {
    pub error: ErrorDetail,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorDetail {
    /// Machine-readable: `validation_failed`, `not_found`, `too_many_requests`, …
    pub code: String,
    pub message: String,
    /// Per-field problems (`[{field, message}]`), or an execution's error record.
    pub details: Option<Value>,
    /// Set when an execution ran and failed.
    pub execution_id: Option<String>,
}

/// `{"functions": [...], "total", "limit", "offset"}`.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionPage {
    pub functions: Vec<Function>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// A version's content: code, schemas, limits.
#[derive(ToSchema, Serialize)]
pub struct VersionContent {
    pub description: String,
    pub code: String,
    pub code_sha256: String,
    pub input_schema: Option<Value>,
    pub output_schema: Option<Value>,
    pub settings: Settings,
    /// Set on a rollback: which version it copies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    pub created_by: String,
}

/// A function: its current version's content, identity and times.
#[derive(ToSchema, Serialize)]
pub struct Function {
    pub id: String,
    pub name: String,
    pub version: i64,
    pub latest_version: i64,
    #[serde(flatten)]
    pub content: VersionContent,
    pub created_at: String,
    pub updated_at: String,
}

/// Per-function limits; unset fields take the server's defaults.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// `warm` (reuse an instance) or `fresh`.
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub isolation: Option<crate::domain::Isolation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fuel: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
    /// `retry` or `fail`: what a queued run does when its server dies.
    #[schema(value_type = Option<String>)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_interrupt: Option<crate::domain::OnInterrupt>,
}

/// One version of a function.
#[derive(ToSchema, Serialize)]
pub struct FunctionVersion {
    pub version: i64,
    #[serde(flatten)]
    pub content: VersionContent,
    pub created_at: String,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FunctionVersions {
    pub name: String,
    pub current_version: i64,
    pub versions: Vec<FunctionVersion>,
}

/// What a finished run answers (`POST /functions/{name}/invoke`, a sync webhook's owner).
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InvokeResult {
    pub execution_id: String,
    /// `succeeded`, `failed` or `cancelled`.
    pub status: String,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub duration_ms: f64,
    pub fuel_used: u64,
}

/// What code sent to run answers (`POST /run`), as notebook kernels report a cell.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunAnswer {
    pub execution_id: String,
    /// `succeeded`, `failed` or `cancelled`.
    pub status: String,
    pub stdout: String,
    pub stderr: String,
    /// What the code displayed (`maestro.display`, figures), then the value of its last
    /// expression: each a bundle of representations (`text`, and where the object has them
    /// `json`, `html`, `markdown`, `svg`, `png` and `jpeg` as base64, `latex`).
    pub results: Vec<Value>,
    pub error: Option<RunError>,
    pub duration_ms: f64,
    pub fuel_used: u64,
    /// The files the code left under `out/` (path -> base64), when asked (`return_files`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub files: Option<serde_json::Map<String, Value>>,
    /// A session's cell: its number in the session, counting from 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub execution_count: Option<i64>,
}

/// A session: an interpreter kept between cells (`/sessions`).
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Session {
    pub id: String,
    /// `active` or `ended`.
    pub status: String,
    /// Why it ended: `deleted`, `expired`, `crashed` (a cell's timeout, fuel or memory
    /// stopped the interpreter; see `error`), `server_stopped`.
    pub end_reason: Option<String>,
    pub error: Option<Value>,
    /// The server that holds the interpreter: every request about the session must reach
    /// it (another one answers 409 `session_elsewhere` naming it).
    pub server: String,
    /// Cells run so far.
    pub execution_count: i64,
    /// Each cell's timeout (null: the server's default), and fuel.
    pub timeout_seconds: Option<f64>,
    pub fuel: Option<i64>,
    /// The interpreter's memory cap.
    pub memory_mb: i64,
    pub idle_ttl_seconds: i64,
    pub created_at: String,
    pub last_used_at: String,
    /// When it ends unless a cell runs first.
    pub expires_at: String,
    pub ended_at: Option<String>,
}

/// `GET /sessions`.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionList {
    pub sessions: Vec<Session>,
}

/// A file of a session's working directory.
#[derive(ToSchema, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionFile {
    pub path: String,
    pub size: u64,
}

/// `GET /sessions/{id}/files`.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SessionFiles {
    pub files: Vec<SessionFile>,
}

/// Why a run failed.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RunError {
    /// The exception's type (`ValueError`), or `kind` when the run was stopped otherwise.
    pub name: String,
    /// Its message.
    pub value: String,
    /// Python's traceback (user frames only); empty when there is none.
    pub traceback: String,
    /// `python_exception`, `timeout`, `out_of_fuel`, `memory_limit`, `cancelled`, ...
    pub kind: String,
}

/// The 202 of a run started in the background: where to follow it.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Accepted {
    pub execution_id: String,
    /// `queued` (committed to the queue: any server runs it) or `running` (a workflow run
    /// started at once for a caller who chose to wait, still going when the wait ran out).
    pub status: String,
    pub status_url: String,
}

/// What every call records: an execution's root call and each nested one.
#[derive(ToSchema, Serialize)]
pub struct Call {
    pub function_name: String,
    pub function_version: Option<i64>,
    /// `queued`, `running`, `succeeded`, `failed` or `cancelled`.
    pub status: String,
    pub input: Value,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub stdout: String,
    pub stderr: String,
    pub fuel_used: i64,
    pub duration_ms: Option<f64>,
    /// Outbound requests, secret reads and structured log lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<Value>,
    pub started_at: String,
    pub finished_at: Option<String>,
}

/// An execution: how it was started, and its root call.
#[derive(ToSchema, Serialize)]
pub struct Execution {
    pub id: String,
    /// `manual`, `webhook`, `schedule` or `workflow`.
    pub trigger: String,
    pub trigger_id: Option<String>,
    /// For scheduled runs: the attempt (1 = the tick itself).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attempt: Option<i64>,
    /// For a retry: the first attempt's execution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    #[serde(flatten)]
    pub call: Call,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ExecutionPage {
    pub executions: Vec<Execution>,
    /// Every match, only when asked for with `total=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    pub limit: i64,
    pub offset: i64,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// A call inside an execution: its place in the call tree, and what it recorded.
#[derive(ToSchema, Serialize)]
pub struct Step {
    pub id: String,
    pub execution_id: String,
    pub parent_id: Option<String>,
    pub seq: i64,
    pub depth: i64,
    #[serde(flatten)]
    pub call: Call,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Steps {
    pub execution_id: String,
    pub steps: Vec<Step>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogEntry {
    pub step_id: String,
    pub seq: i64,
    pub depth: i64,
    pub function_name: String,
    /// `stdout` or `stderr`.
    pub stream: String,
    pub text: String,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Logs {
    pub execution_id: String,
    pub logs: Vec<LogEntry>,
}

/// A webhook; `secret` only right after it was set.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Webhook {
    pub id: String,
    pub path: String,
    /// Where it answers: `/api/v1/h/{path}`.
    pub url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_name: Option<String>,
    pub http_method: String,
    pub requires_auth: bool,
    pub require_timestamp: bool,
    pub description: String,
    pub enabled: bool,
    #[schema(rename = "async")]
    #[serde(rename = "async")]
    pub async_mode: bool,
    /// `request` (the whole request as input) or `body`.
    pub input_mode: String,
    pub max_concurrency: Option<i64>,
    pub effective_max_concurrency: u32,
    /// Only in the answer that set it (create, rotate-secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookPage {
    pub webhooks: Vec<Webhook>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// A schedule, with its next few fire times in its own zone.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    pub id: String,
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub function_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workflow_name: Option<String>,
    pub cron_expression: String,
    pub timezone: String,
    pub input_data: Value,
    pub enabled: bool,
    pub max_retries: i64,
    pub retry_delay_seconds: f64,
    pub backoff_factor: f64,
    pub max_retry_delay_seconds: f64,
    /// `skip` or `allow`.
    pub overlap_policy: String,
    pub catchup_window_seconds: f64,
    pub next_run_at: Option<String>,
    pub last_run_at: Option<String>,
    pub last_status: Option<String>,
    pub last_execution_id: Option<String>,
    /// The next three fire times in the schedule's zone, while it is enabled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upcoming: Option<Vec<String>>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulePage {
    pub schedules: Vec<Schedule>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// One run of a schedule (a tick, a retry, a manual run, or a skipped tick).
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRun {
    pub id: String,
    pub schedule_id: String,
    pub fire_at: String,
    pub attempt: i64,
    /// `pending`, `running`, `succeeded`, `failed`, `skipped` or `cancelled`.
    pub status: String,
    pub reason: Option<String>,
    pub due_at: String,
    pub execution_id: Option<String>,
    pub retry_of: Option<String>,
    pub missed: i64,
    pub created_at: String,
    pub finished_at: Option<String>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScheduleRuns {
    pub schedule_id: String,
    pub runs: Vec<ScheduleRun>,
    /// Every run, only when asked for with `total=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// The answer to `POST /schedules/{id}/run`.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ManualRun {
    pub run_id: String,
    pub execution_id: Option<String>,
    /// `queued` (a job of the queue: any server runs it) or `failed` (it could not be
    /// queued; see `message`).
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_url: Option<String>,
    /// When it could not start now: why, and where to look.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulePreview {
    pub cron_expression: String,
    pub timezone: String,
    /// The time the fire times follow.
    pub after: String,
    pub next: Vec<String>,
}

/// This server's scheduler: whether it runs, what it did, what is due next.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerStatus {
    pub running: bool,
    pub node_id: String,
    pub poll_interval_ms: u64,
    pub active_schedules: i64,
    pub next_due: Vec<Value>,
    /// Counters of this server: ticks fired and skipped, retries started, last poll.
    pub node: Value,
    /// This server's queue since it started: jobs claimed and finished, jobs of dead servers
    /// taken back (`lease_expiries`) and re-run (`reruns`), jobs given back (`deferred`).
    pub queue: Value,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Subtenant {
    pub subtenant_id: String,
    pub description: String,
    /// Overrides of the server's default quotas.
    pub quotas: Value,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
    /// On `GET /subtenants/{id}`: how many users have a grant.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<i64>,
    /// On `GET /subtenants/{id}`: the quotas in force.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub effective_quotas: Option<Value>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SubtenantPage {
    pub subtenants: Vec<Subtenant>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub subtenant_id: String,
    pub user_email: String,
    /// `member` or `viewer`.
    pub role: String,
    pub granted_by: String,
    pub created_at: String,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Members {
    pub subtenant_id: String,
    pub members: Vec<Grant>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub id: String,
    pub tenant: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    pub detail: Option<Value>,
    pub at: String,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuditPage {
    pub entries: Vec<AuditEntry>,
    pub total: i64,
    pub limit: i64,
    pub offset: i64,
}

/// Who the caller is and where they act.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Me {
    pub email: String,
    pub admin: bool,
    pub tenant: String,
    pub role: String,
    pub grants: Vec<Grant>,
    pub quotas: Value,
}

/// A package: built in, or installed for the tenant.
#[derive(ToSchema, Serialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Package {
    pub name: String,
    pub version: String,
    /// In listings: whether it is built into the runtime.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub builtin: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filename: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unpacked_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requires: Option<Vec<String>>,
    /// `pip` or `upload`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    /// Installed packages: `null`, or the package it came with.
    #[schema(value_type = Option<String>)]
    pub dependency_of: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub installed_at: Option<String>,
    /// Built-ins: the distribution's one-line summary, when it has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
    /// On `GET /packages/{name}`: installed packages that require it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub needed_by: Option<Vec<String>>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackageList {
    pub packages: Vec<Package>,
    pub installation_allowed: bool,
    pub tenant_bytes_used: i64,
    pub tenant_bytes_limit: i64,
    pub package_bytes_limit: u64,
}

/// What an install or upload stored.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Installed {
    pub installed: Vec<Package>,
    pub already_installed: Option<bool>,
    pub job_id: Option<String>,
    /// Uploads: requirements neither built in nor installed.
    pub missing_dependencies: Option<Vec<String>>,
}

/// The 202 of an install still running.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InstallStarted {
    pub job_id: String,
    pub status: String,
    pub status_url: String,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackageJob {
    pub id: String,
    pub requirement: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub error: Option<Value>,
    pub result: Option<Value>,
    pub created_by: String,
    pub created_at: String,
    pub finished_at: Option<String>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PackageJobs {
    pub installs: Vec<PackageJob>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Removed {
    pub removed: Package,
}

/// A secret's metadata (never its value).
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Secret {
    pub name: String,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Secrets {
    pub secrets: Vec<Secret>,
}

/// A workflow: its definition as stored, plus what runs with no parents.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Workflow {
    pub id: String,
    pub name: String,
    pub version: i64,
    pub nodes: Vec<Value>,
    pub edges: Vec<Vec<String>>,
    pub config: Value,
    pub concurrency: u32,
    pub description: String,
    /// The workflow's own timetable and the schedule row that carries it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schedule: Option<Value>,
    pub isolated: Vec<String>,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Workflows {
    pub workflows: Vec<Workflow>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowVersions {
    pub versions: Vec<Value>,
}

/// A workflow run as its DAG: each node's status, attempts and timings.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRun {
    pub execution_id: String,
    pub workflow: String,
    pub version: i64,
    /// `manual`, `webhook`, `schedule` or `workflow`.
    pub trigger: String,
    /// `running`, `succeeded` or `failed`.
    pub status: String,
    pub nodes: std::collections::BTreeMap<String, NodeRun>,
    pub edges: Vec<Vec<String>>,
    /// How often the run was taken up again after its server stopped.
    pub resumes: i64,
    pub started_at: String,
    pub finished_at: Option<String>,
}

/// One node of a workflow run.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NodeRun {
    /// `pending`, `running`, `succeeded`, `failed`, `skipped` or `cancelled`.
    pub status: String,
    pub attempts: i64,
    pub interrupted: i64,
    pub output: Option<Value>,
    pub error: Option<Value>,
    pub duration_ms: Option<f64>,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    /// The executions' step ids, one per attempt.
    pub steps: Vec<String>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowRuns {
    pub runs: Vec<Execution>,
    /// Every match, only when asked for with `total=true`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub total: Option<i64>,
    /// Pass as `cursor` for the next page; null on the last.
    pub next_cursor: Option<String>,
}

/// The servers sharing this database, as their heartbeats show them.
#[derive(ToSchema, Serialize)]
pub struct Cluster {
    /// This server's id.
    pub node_id: String,
    /// Servers heard from within three lease periods (`QUEUE_LEASE_MS`).
    pub nodes: Vec<ClusterNode>,
}

#[derive(ToSchema, Serialize)]
pub struct ClusterNode {
    /// `<hostname>-<random>`, as in the logs and in job leases.
    pub id: String,
    pub started_at: String,
    pub last_heartbeat_at: String,
    /// Queued jobs it runs now.
    pub jobs_held: i64,
    /// Their executions, at most 50.
    pub executions: Vec<String>,
}

#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Health {
    /// `ok` or `degraded`.
    pub status: String,
    pub database: Value,
    pub runtime: Value,
    pub redis: Option<Value>,
}

/// A wheel upload: `multipart/form-data` with the file in a part named `file`.
#[derive(ToSchema, Serialize)]
pub struct Upload {
    #[schema(format = Binary, value_type = String)]
    pub file: Vec<u8>,
}

/// Who may be called from functions: hosts or URL prefixes, and per-execution limits.
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct EgressPolicy {
    /// `api.example.com`, `*.example.com`, `https://host/path/`, or `{"url", "allow_private"}`.
    pub allow: Vec<Value>,
    pub max_requests_per_execution: Option<u32>,
    pub max_response_bytes: Option<u64>,
    pub timeout_seconds: Option<f64>,
}

/// A workflow definition: nodes (function names, or `{function, retries, …}`) and edges
/// (`[parent, child]` or `{parents, children}`).
#[derive(ToSchema, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowBody {
    /// On create: the workflow's name.
    pub name: Option<String>,
    pub nodes: Vec<Value>,
    pub edges: Option<Vec<Value>>,
    pub config: Option<Value>,
    pub concurrency: Option<u32>,
    pub description: Option<String>,
    /// `{cron_expression, timezone, enabled}`: the workflow runs by itself.
    pub schedule: Option<Value>,
}
