//! Cron schedules: classic cron expressions in IANA time zones, fired exactly once across
//! replicas, with retries and misfire/overlap policies.

pub mod cron;
