//! Which pages of an instance's linear memory are in this process's page tables, from
//! `/proc/self/pagemap` (Linux): what an idle instance really costs (the pages it wrote,
//! which are its own; pages read from the interpreter's image or a snapshot are shared by
//! every instance and cost the machine once), and which pages a call touched (for ready
//! instances, see `ready.rs`).

use std::fs::File;

/// The page size snapshots and these counts are written for; `usable` says whether the host
/// has it.
pub(super) const PAGE: usize = 4096;

const PRESENT: u64 = 1 << 63;
/// Set for a page mapped from a file (or shared memory); clear for a private page.
const FILE_OR_SHARED: u64 = 1 << 61;

/// Whether the host's pages are [`PAGE`] bytes.
pub(super) fn usable() -> bool {
    // SAFETY: sysconf reads a constant of the system.
    (unsafe { libc::sysconf(libc::_SC_PAGESIZE) }) == PAGE as libc::c_long
}

/// One pagemap entry per page of `memory` (page aligned).
fn entries(memory: &[u8]) -> std::io::Result<Vec<u64>> {
    if !usable() || !(memory.as_ptr() as usize).is_multiple_of(PAGE) {
        return Err(std::io::Error::other("memory is not in whole pages of 4 KiB"));
    }
    let first = memory.as_ptr() as usize / PAGE;
    let mut raw = vec![0u8; memory.len() / PAGE * 8];
    let pagemap = File::open("/proc/self/pagemap")?;
    std::os::unix::fs::FileExt::read_exact_at(&pagemap, &mut raw, (first * 8) as u64)?;
    Ok(raw
        .chunks_exact(8)
        .map(|e| u64::from_le_bytes(e.try_into().unwrap_or_default()))
        .collect())
}

/// Bytes of `memory` held in pages of its own (written since it was mapped).
pub(super) fn private_bytes(memory: &[u8]) -> Option<u64> {
    let entries = entries(memory).ok()?;
    let own = entries
        .iter()
        .filter(|e| **e & PRESENT != 0 && **e & FILE_OR_SHARED == 0);
    Some(own.count() as u64 * PAGE as u64)
}

/// The first `max` pages of `memory` held privately (written since they were mapped).
pub(super) fn written(memory: &[u8], max: usize) -> std::io::Result<Vec<u32>> {
    Ok(entries(memory)?
        .into_iter()
        .enumerate()
        .filter(|(_, e)| e & PRESENT != 0 && e & FILE_OR_SHARED == 0)
        .map(|(i, _)| i as u32)
        .take(max)
        .collect())
}
