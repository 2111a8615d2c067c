//! Cron schedules: classic cron expressions in IANA time zones, fired exactly once across
//! replicas, with retries and misfire/overlap policies.

mod runner;

pub use runner::{retry_delay, NodeStats, Scheduler};

pub use crate::domain::Timing;
