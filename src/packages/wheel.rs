//! Checking and unpacking wheels. Every wheel (downloaded by pip or uploaded) goes through
//! [`inspect`] before it is stored, and is unpacked only by [`extract`], so a wheel that is
//! native, malformed, oversized or escapes its directory never reaches a sandbox.

use std::io::{Cursor, Read, Write};
use std::path::{Component, Path, PathBuf};

use sha2::{Digest, Sha256};

/// Why a wheel was refused; `code` becomes the API error code.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal {
        code,
        message: message.into(),
    }
}

/// Size limits applied while checking.
#[derive(Debug, Clone, Copy)]
pub struct WheelLimits {
    /// The wheel file itself.
    pub max_bytes: u64,
    /// Everything it unpacks to.
    pub max_unpacked: u64,
    pub max_files: usize,
}

/// What a checked wheel is.
#[derive(Debug, Clone)]
pub struct Wheel {
    /// Canonical name (PEP 503: lower case, runs of `-_.` as one `-`).
    pub name: String,
    pub version: String,
    pub filename: String,
    pub sha256: String,
    pub size: u64,
    pub unpacked: u64,
    /// Canonical names of its unconditional dependencies (Requires-Dist without an extra).
    pub requires: Vec<String>,
}

pub use crate::domain::canonical_name;

/// A distribution name as PEP 508 allows it: letters, digits and `-_.` inside.
pub fn valid_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 100
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'))
}

/// Check the file name's tags: `name-version(-build)?-python-abi-platform.whl`, pure Python.
fn check_tags(filename: &str) -> Result<(String, String), Refusal> {
    let stem = filename
        .strip_suffix(".whl")
        .ok_or_else(|| refuse("invalid_wheel", format!("{filename} is not a wheel (.whl) file name")))?;
    let parts: Vec<&str> = stem.split('-').collect();
    if !(parts.len() == 5 || parts.len() == 6) || !valid_name(parts[0]) {
        return Err(refuse(
            "invalid_wheel",
            format!("{filename} is not a wheel name (name-version-python-abi-platform.whl)"),
        ));
    }
    let n = parts.len();
    let (py, abi, plat) = (parts[n - 3], parts[n - 2], parts[n - 1]);
    if abi != "none" || plat.split('.').any(|p| p != "any") {
        return Err(refuse(
            "not_pure",
            format!(
                "{filename} is a compiled wheel (abi {abi}, platform {plat}): it holds native code for one \
                 operating system and CPU, and the sandbox runs CPython 3.15 on WebAssembly, which can \
                 load pure-Python code only"
            ),
        ));
    }
    let py3 = py.split('.').any(|t| {
        let digits = t.strip_prefix("py").or_else(|| t.strip_prefix("cp")).unwrap_or("");
        digits == "3" || (digits.starts_with('3') && digits[1..].parse::<u32>().is_ok_and(|m| m <= 15))
    });
    if !py3 {
        return Err(refuse(
            "not_pure",
            format!("{filename} is built for Python {py}, not for Python 3.15"),
        ));
    }
    let version = parts[1];
    let version_ok = version.len() <= 64
        && version.starts_with(|c: char| c.is_ascii_alphanumeric())
        && version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '+' | '!' | '_'));
    if !version_ok {
        return Err(refuse(
            "invalid_wheel",
            format!("{filename}: {version:?} is not a version"),
        ));
    }
    Ok((canonical_name(parts[0]), version.to_string()))
}

/// A path inside the wheel that stays inside the directory it is unpacked to.
fn safe_path(name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('\\') || name.contains('\0') || name.starts_with('/') {
        return None;
    }
    let p = Path::new(name);
    p.components()
        .all(|c| matches!(c, Component::Normal(_)))
        .then(|| p.to_path_buf())
}

const NATIVE: [&str; 5] = [".so", ".pyd", ".dylib", ".dll", ".wasm"];

/// Where an entry goes when unpacked (None: skipped), per the wheel spec: the archive root
/// is the package root; `<dist>.data/purelib|platlib/` also go there; other `.data` parts
/// (scripts, headers, data files) have no place in a sandbox and are left out.
fn destination(name: &str, data_dir: &str) -> Option<String> {
    match name.strip_prefix(data_dir) {
        None => Some(name.to_string()),
        Some(rest) => ["purelib/", "platlib/"]
            .iter()
            .find_map(|p| rest.strip_prefix(p))
            .filter(|r| !r.is_empty())
            .map(str::to_string),
    }
}

/// Check a wheel completely: name and tags, every entry's path and CRC, sizes, no native
/// code, no links, a dist-info with WHEEL (Root-Is-Purelib) and METADATA matching the name.
pub fn inspect(filename: &str, bytes: &[u8], limits: WheelLimits) -> Result<Wheel, Refusal> {
    let size = bytes.len() as u64;
    if size > limits.max_bytes {
        return Err(refuse(
            "package_too_large",
            format!("{filename} is {size} bytes; the limit is {} bytes", limits.max_bytes),
        ));
    }
    let (name, version) = check_tags(filename)?;
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes))
        .map_err(|e| refuse("invalid_wheel", format!("{filename} is not a valid wheel (zip): {e}")))?;
    if zip.len() > limits.max_files {
        return Err(refuse(
            "package_too_large",
            format!("{filename} has {} files; the limit is {}", zip.len(), limits.max_files),
        ));
    }
    let mut unpacked = 0u64;
    let mut dist_info: Option<String> = None;
    // Every file's path and every directory it implies: a path that is both cannot unpack.
    let mut files = std::collections::HashSet::new();
    let mut dirs = std::collections::HashSet::new();
    let (mut wheel_meta, mut metadata) = (None, None);
    for i in 0..zip.len() {
        let mut entry = zip
            .by_index(i)
            .map_err(|e| refuse("invalid_wheel", format!("{filename}: entry {i} unreadable: {e}")))?;
        let entry_name = entry.name().to_string();
        if safe_path(&entry_name).is_none() {
            return Err(refuse(
                "invalid_wheel",
                format!("{filename}: the entry {entry_name:?} would be written outside the package directory"),
            ));
        }
        if entry.unix_mode().is_some_and(|m| m & 0o170000 == 0o120000) {
            return Err(refuse(
                "invalid_wheel",
                format!("{filename}: the entry {entry_name:?} is a symbolic link"),
            ));
        }
        if !entry.is_dir() {
            let path = entry_name.trim_end_matches('/').to_string();
            let mut parent = Path::new(&path).parent();
            let mut clash = false;
            while let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) {
                let dir = p.to_string_lossy().into_owned();
                clash |= files.contains(&dir);
                dirs.insert(dir);
                parent = p.parent();
            }
            if clash || !files.insert(path.clone()) || dirs.contains(&path) {
                return Err(refuse(
                    "invalid_wheel",
                    format!("{filename}: {path:?} appears twice, or as both a file and a directory"),
                ));
            }
        }
        let lower = entry_name.to_ascii_lowercase();
        if NATIVE
            .iter()
            .any(|ext| lower.ends_with(ext) || lower.contains(&format!("{ext}.")))
        {
            return Err(refuse(
                "not_pure",
                format!("{filename} contains the native library {entry_name:?}, which cannot run in the WebAssembly sandbox"),
            ));
        }
        // Read everything: the CRC is checked at the end of each entry, and the declared size
        // is not trusted (a zip bomb lies about it). Only the two metadata files are kept.
        let mut parts = entry_name.splitn(2, '/');
        let (top, rest) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let ours = top.ends_with(".dist-info") && canonical_name(top.split('-').next().unwrap_or("")) == name;
        let keep = ours && matches!(rest, "WHEEL" | "METADATA");
        let mut buf = Vec::new();
        let room = limits.max_unpacked.saturating_sub(unpacked);
        let mut limited = (&mut entry).take(room + 1);
        let n = match keep {
            true => limited.read_to_end(&mut buf).map(|n| n as u64),
            false => std::io::copy(&mut limited, &mut std::io::sink()),
        }
        .map_err(|e| refuse("invalid_wheel", format!("{filename}: {entry_name:?} is corrupt: {e}")))?;
        unpacked += n;
        if unpacked > limits.max_unpacked {
            return Err(refuse(
                "package_too_large",
                format!("{filename} unpacks to more than {} bytes", limits.max_unpacked),
            ));
        }
        if ours {
            dist_info = Some(top.to_string());
            match rest {
                "WHEEL" => wheel_meta = Some(String::from_utf8_lossy(&buf).into_owned()),
                "METADATA" => metadata = Some(String::from_utf8_lossy(&buf).into_owned()),
                _ => {}
            }
        }
    }
    let Some(dist_info) = dist_info else {
        return Err(refuse(
            "invalid_wheel",
            format!("{filename} has no {name}-{version}.dist-info directory"),
        ));
    };
    let wheel_meta =
        wheel_meta.ok_or_else(|| refuse("invalid_wheel", format!("{filename}: {dist_info}/WHEEL is missing")))?;
    let metadata =
        metadata.ok_or_else(|| refuse("invalid_wheel", format!("{filename}: {dist_info}/METADATA is missing")))?;
    if !header(&wheel_meta, "Root-Is-Purelib").any(|v| v.eq_ignore_ascii_case("true")) {
        return Err(refuse(
            "not_pure",
            format!("{filename} says Root-Is-Purelib: false (a platform wheel), so it is not pure Python"),
        ));
    }
    let meta_version = header(&metadata, "Version").next().unwrap_or("");
    if !meta_version.replace('-', "_").eq_ignore_ascii_case(&version) {
        return Err(refuse(
            "invalid_wheel",
            format!("{filename}: METADATA says version {meta_version:?}, the file name says {version}"),
        ));
    }
    let meta_name = header(&metadata, "Name").next().map(canonical_name);
    if meta_name.as_deref() != Some(name.as_str()) {
        return Err(refuse(
            "invalid_wheel",
            format!("{filename}: METADATA names {meta_name:?}, the file name says {name}"),
        ));
    }
    let requires = header(&metadata, "Requires-Dist")
        .filter(|r| !for_extra(r))
        .filter_map(|r| {
            let end = r.find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')));
            let n = &r[..end.unwrap_or(r.len())];
            valid_name(n).then(|| canonical_name(n))
        })
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    Ok(Wheel {
        name,
        version,
        filename: filename.to_string(),
        sha256: hex::encode(Sha256::digest(bytes)),
        size,
        unpacked,
        requires,
    })
}

/// A requirement that only applies with an extra (`...; extra == "test"`). Other markers
/// are not evaluated here: such a dependency counts as a dependency.
fn for_extra(requirement: &str) -> bool {
    requirement.split_once(';').is_some_and(|(_, marker)| {
        let m: String = marker.chars().filter(|c| !c.is_whitespace()).collect();
        m.contains("extra==") || m.contains("==extra")
    })
}

/// The values of an RFC 822 style header in a METADATA or WHEEL file.
fn header<'a>(text: &'a str, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
    text.lines().take_while(|l| !l.is_empty()).filter_map(move |l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
    })
}

/// Unpack a wheel that passed [`inspect`] into `dest` (which must exist). Returns the files
/// left out because another wheel of the set already put a directory or file where they go
/// (the first wheel wins); any other I/O error (a full disk) fails the unpacking.
pub fn extract(bytes: &[u8], dest: &Path) -> std::io::Result<Vec<String>> {
    let err = |e: zip::result::ZipError| std::io::Error::other(e.to_string());
    let mut zip = zip::ZipArchive::new(Cursor::new(bytes)).map_err(err)?;
    let data_dir = zip
        .file_names()
        .find_map(|n| {
            n.split('/')
                .next()
                .filter(|t| t.ends_with(".data"))
                .map(|t| format!("{t}/"))
        })
        .unwrap_or_else(|| "\0".to_string());
    let mut clashes = Vec::new();
    for i in 0..zip.len() {
        let mut entry = zip.by_index(i).map_err(err)?;
        if entry.is_dir() {
            continue;
        }
        let Some(target) = destination(entry.name(), &data_dir) else {
            continue;
        };
        let rel = safe_path(&target).ok_or_else(|| std::io::Error::other(format!("unsafe path {target:?}")))?;
        let path = dest.join(rel);
        let written = (|| {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let mut out = std::fs::File::create(&path)?;
            std::io::copy(&mut entry, &mut out)?;
            out.flush()
        })();
        match written {
            Ok(()) => {}
            Err(e) if is_clash(&e) => clashes.push(target),
            Err(e) => return Err(e),
        }
    }
    Ok(clashes)
}

fn is_clash(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), AlreadyExists | NotADirectory | IsADirectory)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_canonical_and_checked() {
        assert_eq!(canonical_name("Python_Slugify"), "python-slugify");
        assert_eq!(canonical_name("zope.interface"), "zope-interface");
        assert!(valid_name("python-dateutil"));
        for bad in ["", "-x", "x;rm", "../x", "a b", "x/y", "x$"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn tags_must_be_pure_python_3() {
        assert!(check_tags("six-1.17.0-py2.py3-none-any.whl").is_ok());
        assert!(check_tags("x-1-py315-none-any.whl").is_ok());
        assert_eq!(
            check_tags("ujson-6.1-cp311-cp311-manylinux_2_28_x86_64.whl")
                .unwrap_err()
                .code,
            "not_pure"
        );
        assert_eq!(check_tags("x-1-py2-none-any.whl").unwrap_err().code, "not_pure");
        assert_eq!(check_tags("x-1.tar.gz").unwrap_err().code, "invalid_wheel");
    }

    #[test]
    fn extras_are_told_apart() {
        assert!(for_extra("pytest; extra == 'test'"));
        assert!(!for_extra("extras-helper>=1"));
        assert!(!for_extra("tomli; python_version < '3.11'"));
    }

    #[test]
    fn paths_stay_inside() {
        assert!(safe_path("pkg/mod.py").is_some());
        for bad in ["../x", "a/../../x", "/etc/passwd", "a\\..\\x", "./a", ""] {
            assert!(safe_path(bad).is_none(), "{bad}");
        }
    }
}
