//! The crate's floors hold: every `crate::` path in `src/` names a top-level module on a
//! lower floor than the module it is written in, so there is no upward edge and no cycle;
//! and the HTTP error type is named nowhere outside the HTTP layer.
//!
//! Floors, from the bottom (README, "Architecture"):
//!
//! 0. `sandbox`, `logs`, `secrets`, `client`: leaves
//! 1. `domain` (pure types; re-exports the sandbox's `Isolation` and `ErrorRecord`), `config`,
//!    `examples` (loads through `client`)
//! 2. `store`, `project` (a project folder, read with the domain's parsers; the server
//!    through `client`)
//! 3. `egress`, `packages`, `auth`
//! 4. `engine`
//! 5. `scheduler`
//! 6. `service`
//! 7. `http`
//! 8. `app`, `bench`, `cli`, and the binary

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const FLOORS: &[(&str, u32)] = &[
    ("sandbox", 0),
    ("logs", 0),
    ("secrets", 0),
    ("client", 0),
    ("examples", 1),
    ("domain", 1),
    ("config", 1),
    ("store", 2),
    ("project", 2),
    ("egress", 3),
    ("packages", 3),
    ("auth", 3),
    ("engine", 4),
    ("scheduler", 5),
    ("service", 6),
    ("http", 7),
    ("app", 8),
    ("bench", 8),
    ("cli", 8),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to (`src/store/functions.rs` -> `store`); None for
/// `lib.rs` and `main.rs`, which sit above everything.
fn module_of(file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src()).unwrap();
    let first = rel.components().next()?.as_os_str().to_string_lossy().to_string();
    let name = first.trim_end_matches(".rs").to_string();
    (!matches!(name.as_str(), "lib" | "main")).then_some(name)
}

/// Every top-level module a text names as `crate::<module>` (also inside `crate::{a, b}`),
/// comments included: a doc link upward is a smell too.
fn named_modules(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        if i > 0 && text[..i].ends_with(|c: char| c.is_alphanumeric() || c == '_') {
            continue; // `maestro_crate::` or similar
        }
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for item in group[..end].split(',') {
                let name: String = item
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    out.insert(name);
                }
            }
        } else {
            let name: String = rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
            out.insert(name);
        }
    }
    out
}

fn edges() -> BTreeMap<(String, String), Vec<String>> {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    let mut edges: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for f in files {
        let Some(from) = module_of(&f) else { continue };
        let text = std::fs::read_to_string(&f).unwrap();
        for to in named_modules(&text) {
            if to != from {
                let rel = f.strip_prefix(src()).unwrap().display().to_string();
                edges.entry((from.clone(), to)).or_default().push(rel);
            }
        }
    }
    edges
}

#[test]
fn every_module_has_a_floor() {
    let floors: BTreeMap<_, _> = FLOORS.iter().copied().collect();
    let mut files = vec![];
    rust_files(&src(), &mut files);
    let unplaced: BTreeSet<String> = files
        .iter()
        .filter_map(|f| module_of(f))
        .filter(|m| !floors.contains_key(m.as_str()))
        .collect();
    assert!(
        unplaced.is_empty(),
        "modules with no floor in tests/layers.rs: {unplaced:?}"
    );
}

#[test]
fn no_module_imports_upward_or_sideways() {
    let floors: BTreeMap<_, _> = FLOORS.iter().copied().collect();
    let mut bad = vec![];
    for ((from, to), files) in edges() {
        let (Some(f), Some(t)) = (floors.get(from.as_str()), floors.get(to.as_str())) else {
            bad.push(format!("{from} -> {to}: unknown module (in {files:?})"));
            continue;
        };
        if t >= f {
            bad.push(format!("{from} (floor {f}) -> {to} (floor {t}) in {files:?}"));
        }
    }
    assert!(
        bad.is_empty(),
        "imports that go up a floor or across one:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_http_error_stays_in_the_http_layer() {
    let mut files = vec![];
    rust_files(&src(), &mut files);
    let outside: Vec<String> = files
        .iter()
        .filter(|f| !matches!(module_of(f).as_deref(), Some("http") | Some("app") | None))
        .filter(|f| {
            let text = std::fs::read_to_string(f).unwrap();
            text.contains("ApiError") || text.contains("ApiResult") || text.contains("http::error")
        })
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        outside.is_empty(),
        "the HTTP error type is named outside the HTTP layer in {outside:?}"
    );
}

/// The checker itself: an upward edge and a grouped import are seen.
#[test]
fn the_checker_sees_edges() {
    let named = named_modules("use crate::{store, engine::Engine};\nlet x = crate::http::iso(1); // my_crate::y");
    assert_eq!(
        named,
        ["engine", "http", "store"]
            .iter()
            .map(|s| s.to_string())
            .collect::<BTreeSet<_>>()
    );
}

/// The `fn` signatures inside `impl <ty> {` blocks of a text (top-level blocks only): each
/// as (name, parameter list).
fn methods_of(text: &str, ty: &str) -> Vec<(String, String)> {
    let mut out = vec![];
    let head = format!("impl {ty} {{\n");
    let mut rest = text;
    while let Some(i) = rest.find(&head) {
        let block = &rest[i + head.len()..];
        let end = block.find("\n}\n").unwrap_or(block.len());
        let body = &block[..end];
        for (j, _) in body.match_indices("fn ") {
            let sig = &body[j + 3..];
            let (Some(open), Some(close)) = (sig.find('('), sig.find(')')) else {
                continue;
            };
            if open < close && !sig[..open].contains(char::is_whitespace) {
                let name = sig[..open].split('<').next().unwrap().to_string();
                out.push((
                    name,
                    sig[open + 1..close].split_whitespace().collect::<Vec<_>>().join(" "),
                ));
            }
        }
        rest = &block[end..];
    }
    out
}

/// A tenant's rows are reached through `store.tenant(id)` only: no method of `Store` itself
/// takes a tenant (the cross-tenant duties take none, or an optional filter for admins).
#[test]
fn tenant_queries_go_through_the_tenant_handle() {
    let mut files = vec![];
    rust_files(&src().join("store"), &mut files);
    let mut wrong = vec![];
    let mut scoped = 0;
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for (name, params) in methods_of(&text, "Store") {
            if params
                .split(", ")
                .any(|p| p == "tenant: &str" || p == "tenant: &TenantId")
            {
                wrong.push(format!("{}: Store::{name}({params})", f.display()));
            }
        }
        scoped += methods_of(&text, "Tenant<'_>").len();
    }
    assert!(wrong.is_empty(), "tenant-scoped queries on Store itself: {wrong:#?}");
    assert!(
        scoped > 40,
        "the tenant handle has only {scoped} methods: did the checker break?"
    );
}

/// Handlers go through the services; only the system faces (health, live events, the
/// webhook receiver finding a hook by its path) reach the store themselves.
#[test]
fn handlers_call_services_not_the_store() {
    let mut files = vec![];
    rust_files(&src().join("http"), &mut files);
    let allowed = ["health.rs", "events.rs", "hooks/mod.rs", "mod.rs"];
    let offenders: Vec<String> = files
        .iter()
        .filter(|f| !allowed.iter().any(|a| f.ends_with(a)))
        .filter(|f| std::fs::read_to_string(f).unwrap().contains("state.store"))
        .map(|f| f.display().to_string())
        .collect();
    assert!(
        offenders.is_empty(),
        "handlers reach the store directly in {offenders:?}"
    );
}

/// The method finder sees signatures over several lines and both kinds of block.
#[test]
fn the_method_finder_works() {
    let text = "impl Store {\n    pub async fn a(&self, tenant: &str) {}\n    fn b(\n        &self,\n        x: i64,\n    ) {}\n}\n\nimpl Tenant<'_> {\n    pub fn c(&self) {}\n}\n";
    let names = |ty| methods_of(text, ty).into_iter().map(|(n, _)| n).collect::<Vec<_>>();
    assert_eq!(names("Store"), ["a", "b"]);
    assert_eq!(names("Tenant<'_>"), ["c"]);
    assert_eq!(methods_of(text, "Store")[0].1, "&self, tenant: &str");
}
