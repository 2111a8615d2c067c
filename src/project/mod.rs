//! A project folder, the source of truth `maestro plan`, `deploy` and `pull` work from:
//!
//! ```text
//! maestro.toml                   webhooks, schedules, workflows, egress, packages, secret names,
//!                                and functions' settings
//! functions/NAME.py              defines `def NAME(input)`; every .py here is a function
//! functions/NAME.schema.json     optional: {"input": <JSON Schema>, "output": <JSON Schema>}
//! ```
//!
//! The folder is read into resources in the API's own field names, checked with the same
//! parsers the server uses (cron, workflow definitions, JSON Schema) so that most mistakes
//! stop a deploy before anything changes, then compared with what a server holds.

mod kinds;
mod plan;
mod read;
mod remote;
mod write;

use serde_json::{Map, Value};

pub use kinds::{same, Kind};
pub use plan::{plan, Action, Change, Plan};
pub use read::load;
pub use remote::{apply, fetch, Applied, Progress};
pub use write::{init, write};

/// The manifest's file name.
pub const MANIFEST: &str = "maestro.toml";

/// One resource as the folder declares it or a server holds it.
#[derive(Clone, Debug)]
pub struct Resource {
    pub kind: Kind,
    /// Its name (a webhook: its path; the egress policy: `policy`).
    pub key: String,
    /// The compared fields; one left out is not compared (the server's value stands).
    pub fields: Map<String, Value>,
    /// On a server: the id the API addresses it by, where that is not its key (a package
    /// pip installed as a dependency: the package that needs it).
    pub id: Option<String>,
    /// In a folder: the file it comes from, for messages and diffs.
    pub source: String,
}

/// Everything a folder declares, or a server holds, in deploy order.
#[derive(Clone, Debug, Default)]
pub struct Project {
    pub resources: Vec<Resource>,
    /// Secret names the functions read (values are never in a folder).
    pub secrets: Vec<String>,
}

impl Project {
    pub fn find(&self, kind: Kind, key: &str) -> Option<&Resource> {
        self.resources.iter().find(|r| r.kind == kind && r.key == key)
    }

    /// Whether the folder manages `kind` at all: the egress policy and packages only when it
    /// declares them (a folder of functions alone must not uninstall the packages they use).
    pub fn manages(&self, kind: Kind) -> bool {
        !matches!(kind, Kind::Egress | Kind::Package) || self.resources.iter().any(|r| r.kind == kind)
    }
}

/// Mistakes found in a folder, each naming its file.
#[derive(Debug)]
pub struct Problems(pub Vec<String>);

impl std::fmt::Display for Problems {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "the project folder has {} problem(s); nothing was changed:",
            self.0.len()
        )?;
        for p in &self.0 {
            writeln!(f, "  {p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Problems {}
