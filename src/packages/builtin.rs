//! The packages built into the runtime: read once from the `.dist-info/METADATA` files inside
//! `python315.zip`, so the list is always the runtime's own, never a list we keep by hand.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::Path;

use serde::Serialize;

use super::wheel::canonical_name;

#[derive(Debug, Clone, Serialize)]
pub struct Builtin {
    pub name: String,
    pub version: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub summary: Option<String>,
}

/// Canonical name → package, for every distribution the runtime's stdlib zip carries.
pub fn read(zip_path: &Path) -> anyhow::Result<BTreeMap<String, Builtin>> {
    let file = std::fs::File::open(zip_path)?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(file))?;
    let metas: Vec<String> = zip
        .file_names()
        .filter(|n| n.matches('/').count() == 1 && n.ends_with(".dist-info/METADATA"))
        .map(str::to_string)
        .collect();
    let mut out = BTreeMap::new();
    for name in metas {
        let mut text = String::new();
        zip.by_name(&name)?.take(1 << 20).read_to_string(&mut text)?;
        let field = |key: &str| {
            text.lines()
                .take_while(|l| !l.is_empty())
                .find_map(|l| l.strip_prefix(key).and_then(|v| v.strip_prefix(':')))
                .map(|v| v.trim().to_string())
        };
        if let (Some(n), Some(version)) = (field("Name"), field("Version")) {
            let summary = field("Summary").filter(|s| !s.is_empty());
            out.insert(
                canonical_name(&n),
                Builtin {
                    name: canonical_name(&n),
                    version,
                    summary,
                },
            );
        }
    }
    Ok(out)
}
