//! Services: one per resource. Each owns its resource's rules: what a change must satisfy,
//! the one store write that makes it (the audit row goes in the same transaction), and what
//! must be forgotten afterwards (warm instances, cached policies). Handlers parse the
//! request, call a service with the caller, and turn the answer into a view; the scheduler
//! and the CLI could call the same services.
//!
//! Floor: above the engine and the scheduler (a schedule's "run now" goes through the
//! scheduler), below `http`.

pub mod capabilities;
mod error;
pub mod executions;
pub mod functions;
pub mod packages;
pub mod runs;
pub mod schedules;
pub mod sessions;
pub mod tenancy;
pub mod webhooks;
pub mod workflows;

use std::sync::Arc;

use crate::config::Settings;
use crate::engine::Engine;
use crate::scheduler::Scheduler;
use crate::store::Store;

pub use error::{Error, Result};

/// Every service, built once at start and shared by the handlers.
#[derive(Clone)]
pub struct Services {
    pub functions: functions::Functions,
    pub webhooks: webhooks::Webhooks,
    pub schedules: schedules::Schedules,
    pub workflows: workflows::Workflows,
    pub tenancy: tenancy::Tenancy,
    pub capabilities: capabilities::Capabilities,
    pub packages: packages::Packages,
    pub executions: executions::Executions,
    pub runs: runs::Runs,
    pub sessions: sessions::Sessions,
}

/// What the services are built from.
pub struct Deps {
    pub store: Store,
    pub engine: Engine,
    pub settings: Arc<Settings>,
    pub scheduler: Arc<Scheduler>,
    pub vault: Arc<crate::secrets::Vault>,
    pub egress: Arc<crate::egress::Egress>,
    pub packages: Arc<crate::packages::Packages>,
}

impl Services {
    pub fn new(d: Deps) -> Services {
        Services {
            functions: functions::Functions::new(d.store.clone(), d.engine.clone(), d.settings.clone()),
            webhooks: webhooks::Webhooks::new(d.store.clone()),
            executions: executions::Executions::new(d.store.clone(), d.engine.clone()),
            runs: runs::Runs::new(d.engine.clone(), d.settings.clone()),
            sessions: sessions::Sessions::new(d.engine.clone(), d.settings.clone()),
            tenancy: tenancy::Tenancy::new(d.store.clone(), d.engine.clone()),
            packages: packages::Packages::new(d.store.clone(), d.packages),
            capabilities: capabilities::Capabilities::new(d.store.clone(), d.vault, d.egress, d.settings.clone()),
            workflows: workflows::Workflows::new(d.store.clone(), d.engine.clone(), d.settings.clone()),
            schedules: schedules::Schedules::new(
                d.store.clone(),
                d.engine.clone(),
                d.scheduler.clone(),
                d.settings.clone(),
            ),
        }
    }
}
