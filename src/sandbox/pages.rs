//! Which pages of an instance's linear memory are in this process's page tables, from
//! `/proc/self/pagemap` (Linux): what an idle instance really costs (the pages it wrote,
//! which are its own; pages read from the interpreter's image or a snapshot are shared by
//! every instance and cost the machine once), and which pages a call wrote (for ready
//! instances, see `ready.rs`).

use std::fs::File;

/// The page size snapshots are written for; `usable` says whether the host has it.
pub(super) const PAGE: usize = 4096;

const PRESENT: u64 = 1 << 63;
/// Set for a page mapped from a file (or shared memory); clear for a private page.
const FILE_OR_SHARED: u64 = 1 << 61;
/// Set for a page mapped only here: not the kernel's shared zero page, which reading
/// never-written memory maps and which costs nothing.
const EXCLUSIVE: u64 = 1 << 56;

/// The host's page size.
fn host_page() -> usize {
    // SAFETY: sysconf reads a constant of the system.
    usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(0)
}

/// Whether the host's pages are [`PAGE`] bytes (what snapshots are written for).
pub(super) fn usable() -> bool {
    host_page() == PAGE
}

/// One pagemap entry per host page of `memory` (page aligned), and that page size.
fn entries(memory: &[u8]) -> std::io::Result<(Vec<u64>, usize)> {
    let page = host_page();
    if page == 0 || !(memory.as_ptr() as usize).is_multiple_of(page) {
        return Err(std::io::Error::other("memory is not page aligned"));
    }
    let first = memory.as_ptr() as usize / page;
    let mut raw = vec![0u8; memory.len() / page * 8];
    let pagemap = File::open("/proc/self/pagemap")?;
    std::os::unix::fs::FileExt::read_exact_at(&pagemap, &mut raw, (first * 8) as u64)?;
    let entries = raw
        .chunks_exact(8)
        .map(|e| u64::from_le_bytes(e.try_into().unwrap_or_default()))
        .collect();
    Ok((entries, page))
}

/// A page written here since it was mapped: present, private, not the shared zero page.
fn own(entry: u64) -> bool {
    entry & PRESENT != 0 && entry & FILE_OR_SHARED == 0 && entry & EXCLUSIVE != 0
}

/// Bytes of `memory` held in pages of its own (written since it was mapped).
pub(super) fn private_bytes(memory: &[u8]) -> Option<u64> {
    let (entries, page) = entries(memory).ok()?;
    Some(entries.iter().filter(|e| own(**e)).count() as u64 * page as u64)
}

/// The first `max` pages (of [`PAGE`] bytes) of `memory` written since they were mapped.
pub(super) fn written(memory: &[u8], max: usize) -> std::io::Result<Vec<u32>> {
    let (entries, page) = entries(memory)?;
    if page != PAGE {
        return Err(std::io::Error::other("pages are not 4 KiB"));
    }
    Ok(entries
        .into_iter()
        .enumerate()
        .filter(|(_, e)| own(*e))
        .map(|(i, _)| i as u32)
        .take(max)
        .collect())
}
