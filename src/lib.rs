//! Maestro: run untrusted Python functions in a WebAssembly sandbox and wire them together.

/// Build state, serve, background tasks, graceful shutdown.
pub mod app;
/// JWT verification, the caller extractor, token minting.
pub mod auth;
/// Benchmarks behind `maestro bench`.
pub mod bench;
/// The commands of the CLI that act on a server as its client (project folders).
pub mod cli;
/// The API as the CLI calls it.
pub mod client;
/// Typed settings from flags and environment.
pub mod config;
/// Pure types: names, statuses, timings, workflow definitions, egress policies, errors.
pub mod domain;
/// Outbound HTTP for functions, under each tenant's egress policy.
pub mod egress;
/// Executions and call trees on top of the sandbox.
pub mod engine;
/// The shipped example bundles and their loader.
pub mod examples;
/// The HTTP surface.
pub mod http;
/// Live events: the in-process bus and Redis Streams.
pub mod logs;
/// Built-in and per-tenant Python packages.
pub mod packages;
/// A project folder (`maestro.toml`, `functions/*.py`): read, compared with a server, written.
pub mod project;
/// CPython on WASI, on wasmtime.
pub mod sandbox;
/// Cron schedules and the loop that fires them.
pub mod scheduler;
/// Tenants' secrets, sealed with the server's key.
pub mod secrets;
/// One service per resource: rules, the write and its audit row, what to forget after.
pub mod service;
/// PostgreSQL / SQLite storage.
pub mod store;
