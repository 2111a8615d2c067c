//! Snapshots map a file over an instance's memory, which is written for Linux only: elsewhere
//! none are kept and every pool miss runs the module code again (see `snapshot.rs`).

use std::path::Path;

use super::instance::Instance;
use super::pool::PoolKey;
use super::SnapshotStats;

pub(super) struct Snapshot;

pub(super) struct Snapshots;

impl Snapshots {
    pub fn off() -> Self {
        Snapshots
    }

    pub fn new(_: &Path, _: u64, _: &Instance) -> anyhow::Result<Self> {
        Ok(Snapshots)
    }

    pub fn enabled(&self) -> bool {
        false
    }

    pub fn get(&self, _: &PoolKey) -> Option<std::sync::Arc<Snapshot>> {
        None
    }

    pub fn contains(&self, _: &PoolKey) -> bool {
        false
    }

    pub fn capture(&self, _: PoolKey, _: &Instance) {}

    pub fn restore(&self, _: &Snapshot, _: &mut Instance) -> anyhow::Result<()> {
        anyhow::bail!("snapshots need Linux")
    }

    pub fn learn(&self, _: &Snapshot, _: &Instance) {}

    pub fn prefault(&self, _: &Snapshot, _: &mut Instance) -> usize {
        0
    }

    pub fn forget(&self, _: impl Fn(&PoolKey) -> bool) {}

    pub fn stats(&self) -> SnapshotStats {
        SnapshotStats::default()
    }
}
