//! Per-function snapshots: the memory of an instance right after a function's module code
//! ran (imports done, globals built, no call made yet), so that a pool miss or a fresh call
//! starts from there instead of booting the interpreter and running the module again.
//!
//! Only linear memory needs saving. The interpreter has one mutable global, its stack
//! pointer, which is back at its initial value whenever `turn` has returned; its one table
//! has a fixed size and is never written. WASI state lives on the host and is rebuilt with
//! the same preopens in the same order, so the descriptors the guest's libc remembers still
//! name the same directories.
//!
//! A snapshot is stored as the pages that differ from the *base*: the memory of a booted
//! instance (prelude loaded, no function), written once per process. Restoring maps the base
//! copy-on-write over a new instance's memory (one `mmap`, nothing copied) and writes the
//! differing pages on top, so a hello function's snapshot is a few hundred KiB rather than
//! the 40 MiB the interpreter's memory spans. Files are created in `dir` and unlinked at
//! once: they live on disk (the page cache keeps the hot ones in memory) for as long as the
//! process holds them, and nothing is left behind when it dies. They are never shared across
//! tenants: the key is the warm pool's, tenant first.
//!
//! Linux only (mmap of a file over the instance's memory); elsewhere `snapshot_off.rs` keeps
//! none and every miss boots as before.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use super::instance::Instance;
use super::pool::PoolKey;
use super::SnapshotStats;

use super::pages::PAGE;
/// Runs of at least this many pages are mapped from the snapshot's file rather than copied.
const MAP_PAGES: u32 = 16;
/// At most this many runs are mapped per instance: each splits the base mapping, and a
/// process may hold only so many mappings (`vm.max_map_count`, 65,530 by default) across all
/// its instances, pooled and ready ones included.
const MAX_MAPPED_RUNS: usize = 8;

/// The memory of a booted instance, on disk, mapped read-only for comparisons.
pub(super) struct Base {
    file: File,
    len: usize,
    map: Mapping,
}

/// A read-only shared mapping of a whole file, unmapped on drop.
struct Mapping {
    ptr: *const u8,
    len: usize,
}

// SAFETY: the mapping is read-only and lives until drop; reading it from any thread is fine.
unsafe impl Send for Mapping {}
unsafe impl Sync for Mapping {}

impl Mapping {
    fn bytes(&self) -> &[u8] {
        // SAFETY: `ptr..ptr+len` is mapped readable for as long as `self` lives.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly what `map_file` mapped, once.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// One function's snapshot: the pages that differ from the base, back to back in `file`.
pub(super) struct Snapshot {
    file: File,
    /// The linear memory's size when it was taken.
    size: usize,
    /// Runs of differing pages: (first page, pages).
    runs: Vec<(u32, u32)>,
    /// Bytes on disk.
    bytes: u64,
    /// The pages the last call on an instance started from it wrote: what a ready instance
    /// copies ahead of its call (see `ready.rs`).
    written: Mutex<Vec<u32>>,
}

/// Snapshots by key, least recently used evicted past the byte budget.
pub(super) struct Snapshots {
    dir: PathBuf,
    budget: u64,
    base: Option<Base>,
    index: Mutex<Index>,
}

#[derive(Default)]
struct Index {
    map: HashMap<PoolKey, (Arc<Snapshot>, u64)>,
    bytes: u64,
    clock: u64,
    built: u64,
    restored: u64,
    evicted: u64,
}

impl Snapshots {
    /// No snapshots (budget 0, or not Linux).
    pub fn off() -> Self {
        Snapshots {
            dir: PathBuf::new(),
            budget: 0,
            base: None,
            index: Mutex::default(),
        }
    }

    /// Snapshots kept under `dir` within `budget` bytes, diffed against `booted`'s memory.
    pub fn new(dir: &Path, budget: u64, booted: &Instance) -> anyhow::Result<Self> {
        if budget == 0 || !super::pages::usable() {
            return Ok(Self::off());
        }
        std::fs::create_dir_all(dir)?;
        let memory = booted.memory_data();
        let file = unlinked_file(dir)?;
        write_pages(&file, memory, |page| page.iter().any(|b| *b != 0))?;
        file.set_len(memory.len() as u64)?;
        let map = map_file(&file, memory.len())?;
        Ok(Snapshots {
            dir: dir.to_path_buf(),
            budget,
            base: Some(Base {
                file,
                len: memory.len(),
                map,
            }),
            index: Mutex::default(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn enabled(&self) -> bool {
        self.base.is_some()
    }

    /// The snapshot of `key`, if one is kept (marked as just used).
    pub fn get(&self, key: &PoolKey) -> Option<Arc<Snapshot>> {
        let mut index = self.lock();
        index.clock += 1;
        let now = index.clock;
        let entry = index.map.get_mut(key)?;
        entry.1 = now;
        Some(entry.0.clone())
    }

    /// Whether `key` has a snapshot (without marking it used).
    pub fn contains(&self, key: &PoolKey) -> bool {
        self.lock().map.contains_key(key)
    }

    /// Save `inst`'s memory as `key`'s snapshot (the caller has just run the function's module
    /// code in it, and nothing else). Failures only cost the next miss a boot.
    pub fn capture(&self, key: PoolKey, inst: &Instance) {
        let Some(base) = &self.base else { return };
        let started = std::time::Instant::now();
        match self.diff(base, inst.memory_data()) {
            Ok(snap) => {
                tracing::debug!(
                    bytes = snap.bytes,
                    runs = snap.runs.len(),
                    memory = snap.size,
                    us = started.elapsed().as_micros() as u64,
                    "function snapshot saved"
                );
                self.keep(key, snap)
            }
            Err(e) => tracing::warn!(error = %e, "could not save a function snapshot"),
        }
    }

    fn diff(&self, base: &Base, memory: &[u8]) -> anyhow::Result<Snapshot> {
        let base = base.map.bytes();
        let zero = [0u8; PAGE];
        let differs = |i: usize, page: &[u8]| page != base.get(i * PAGE..(i + 1) * PAGE).unwrap_or(&zero[..page.len()]);
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for (i, page) in memory.chunks(PAGE).enumerate() {
            if differs(i, page) {
                match runs.last_mut() {
                    Some((first, n)) if (*first + *n) as usize == i => *n += 1,
                    _ => runs.push((i as u32, 1)),
                }
            }
        }
        let file = unlinked_file(&self.dir)?;
        let mut at = 0u64;
        for &(first, n) in &runs {
            let (from, to) = (first as usize * PAGE, ((first + n) as usize * PAGE).min(memory.len()));
            write_all_at(&file, &memory[from..to], at)?;
            at += (to - from) as u64;
        }
        Ok(Snapshot {
            file,
            size: memory.len(),
            runs,
            bytes: at,
            written: Mutex::default(),
        })
    }

    fn keep(&self, key: PoolKey, snap: Snapshot) {
        if snap.bytes > self.budget {
            return;
        }
        let mut index = self.lock();
        index.clock += 1;
        let now = index.clock;
        index.bytes += snap.bytes;
        index.built += 1;
        if let Some((old, _)) = index.map.insert(key, (Arc::new(snap), now)) {
            index.bytes -= old.bytes;
        }
        while index.bytes > self.budget {
            let Some(oldest) = index
                .map
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((old, _)) = index.map.remove(&oldest) {
                index.bytes -= old.bytes;
                index.evicted += 1;
            }
        }
    }

    /// Start `inst` (brand new, never run) from `snap`: the base mapped over its memory
    /// copy-on-write, then the snapshot's own pages written on top.
    pub fn restore(&self, snap: &Snapshot, inst: &mut Instance) -> anyhow::Result<()> {
        let base = self.base.as_ref().ok_or_else(|| anyhow::anyhow!("snapshots are off"))?;
        let (ptr, len) = inst.grow_memory_to(snap.size)?;
        anyhow::ensure!(len == snap.size, "memory is {len} bytes, the snapshot {}", snap.size);
        let restored = self.restore_at(base, snap, ptr, len);
        if restored.is_err() {
            // A failed MAP_FIXED may have unmapped the range already, leaving a hole in the
            // store's reservation that another mapping could take (and wasmtime would later
            // unmap). Fill it with inaccessible memory; the caller drops the instance.
            seal(ptr, len);
        }
        restored
    }

    fn restore_at(&self, base: &Base, snap: &Snapshot, ptr: *mut u8, len: usize) -> anyhow::Result<()> {
        map_fixed(ptr, base.len.min(len), &base.file, 0)?;
        // Long runs (a module's imports) are mapped from the snapshot's file like the base, so
        // only the pages a call touches are ever read or copied; short ones are copied, which
        // costs less than a mapping each (and a process may only hold so many mappings).
        let mut long: Vec<usize> = (0..snap.runs.len()).filter(|i| snap.runs[*i].1 >= MAP_PAGES).collect();
        long.sort_by_key(|i| std::cmp::Reverse(snap.runs[*i].1));
        long.truncate(MAX_MAPPED_RUNS);
        let mut at = 0u64;
        for (i, &(first, n)) in snap.runs.iter().enumerate() {
            let (from, to) = (first as usize * PAGE, ((first + n) as usize * PAGE).min(len));
            if long.contains(&i) {
                map_fixed(ptr.wrapping_add(from), to - from, &snap.file, at)?;
            } else {
                // SAFETY: as above; `from..to` lies within the instance's memory (`to` is
                // capped at its length), and nothing else reads or writes it meanwhile.
                let dest = unsafe { std::slice::from_raw_parts_mut(ptr.wrapping_add(from), to - from) };
                read_exact_at(&snap.file, dest, at)?;
            }
            at += (to - from) as u64;
        }
        self.lock().restored += 1;
        Ok(())
    }

    /// Remember which pages of `used` (started from `snap`, its call over) were written, from
    /// `/proc/self/pagemap`.
    pub fn learn(&self, snap: &Snapshot, used: &Instance) {
        match super::pages::written(used.memory_data(), MAX_TOUCHED) {
            Ok(pages) => *snap.written.lock().unwrap_or_else(|e| e.into_inner()) = pages,
            Err(e) => tracing::debug!(error = %e, "could not read which pages a call touched"),
        }
    }

    /// Copy ahead, on `inst` (just restored from `snap`, run nothing), the pages the last call
    /// wrote: each write would otherwise fault and copy during the call. Pages it only read
    /// are left to fault in on use: mapping a page-cache page is cheap and comes sixteen at a
    /// time, and touching them all here took longer than a call. Answers how many it copied.
    pub fn prefault(&self, snap: &Snapshot, inst: &mut Instance) -> usize {
        let written = snap.written.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let memory = inst.memory_data_mut();
        let mut copied = 0;
        for page in written {
            if let Some(byte) = memory.get_mut(page as usize * PAGE) {
                // The same byte stored back breaks copy-on-write; `black_box` keeps the
                // compiler from dropping the store.
                *byte = std::hint::black_box(*byte);
                copied += 1;
            }
        }
        copied
    }

    /// Drop every snapshot whose key matches (its function or tenant changed).
    pub fn forget(&self, matches: impl Fn(&PoolKey) -> bool) {
        let mut index = self.lock();
        let gone: Vec<PoolKey> = index.map.keys().filter(|k| matches(k)).cloned().collect();
        for key in gone {
            if let Some((old, _)) = index.map.remove(&key) {
                index.bytes -= old.bytes;
            }
        }
    }

    pub fn stats(&self) -> SnapshotStats {
        let index = self.lock();
        SnapshotStats {
            kept: index.map.len(),
            bytes: index.bytes,
            built: index.built,
            restored: index.restored,
            evicted: index.evicted,
        }
    }
}

/// The most pages a ready instance faults in ahead (16 MiB): a call that touched more is not
/// the common case worth preparing for.
const MAX_TOUCHED: usize = 4096;

/// A new file in `dir`, unlinked at once: its blocks are freed when the last handle closes.
fn unlinked_file(dir: &Path) -> std::io::Result<File> {
    let path = dir.join(format!(".snap-{}-{:x}", std::process::id(), rand::random::<u64>()));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(&path)?;
    std::fs::remove_file(&path)?;
    Ok(file)
}

/// Write the pages of `memory` that `keep` selects at their own offsets (the rest stay holes).
fn write_pages(file: &File, memory: &[u8], keep: impl Fn(&[u8]) -> bool) -> std::io::Result<()> {
    for (i, page) in memory.chunks(PAGE).enumerate() {
        if keep(page) {
            write_all_at(file, page, (i * PAGE) as u64)?;
        }
    }
    Ok(())
}

fn write_all_at(file: &File, bytes: &[u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::write_all_at(file, bytes, at)
}

fn read_exact_at(file: &File, bytes: &mut [u8], at: u64) -> std::io::Result<()> {
    std::os::unix::fs::FileExt::read_exact_at(file, bytes, at)
}

/// Replace `len` bytes of an instance's linear memory at `at` (page aligned) with a private
/// copy-on-write mapping of `file` from `offset`.
fn map_fixed(at: *mut u8, len: usize, file: &File, offset: u64) -> std::io::Result<()> {
    let offset = libc::off_t::try_from(offset).map_err(|_| std::io::Error::other("offset too large"))?;
    // SAFETY: the callers pass a page-aligned range inside one instance's linear memory
    // (read-write, owned by its store, which runs no code while it is restored). MAP_FIXED
    // replaces those pages only; wasmtime unmaps the whole reservation, these mappings
    // included, when the store drops.
    let got = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_FIXED,
            std::os::fd::AsRawFd::as_raw_fd(file),
            offset,
        )
    };
    if got != at as *mut libc::c_void {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Make `len` bytes at `at` (an instance's memory, about to be dropped) inaccessible anonymous
/// memory; if even that fails the address space is not what wasmtime believes it is, and
/// the process stops rather than run on.
fn seal(at: *mut u8, len: usize) {
    // SAFETY: as in `map_fixed`: the range is the instance's own memory, which nothing uses.
    let got = unsafe {
        libc::mmap(
            at as *mut libc::c_void,
            len,
            libc::PROT_NONE,
            libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    if got != at as *mut libc::c_void {
        tracing::error!(error = %std::io::Error::last_os_error(), "could not seal a failed snapshot restore");
        std::process::abort();
    }
}

fn map_file(file: &File, len: usize) -> std::io::Result<Mapping> {
    // SAFETY: a fresh read-only shared mapping of `len` bytes of a file we own; unmapped by
    // `Mapping`'s drop.
    let ptr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED,
            std::os::fd::AsRawFd::as_raw_fd(file),
            0,
        )
    };
    if ptr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    Ok(Mapping {
        ptr: ptr as *const u8,
        len,
    })
}
