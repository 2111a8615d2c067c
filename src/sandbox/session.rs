//! Interpreters kept for sessions: one instance per session, never pooled or shared. Its
//! `__main__` keeps the cells' globals, and its memory holds the session's working directory
//! (runtime/guest/files.py). A cell that traps (timeout, fuel, memory, crash, cancel) may
//! have left the interpreter half-way through anything, so the instance is dropped and the
//! session cannot run again.

use serde_json::{json, Value};

use super::instance::Instance;
use super::{finish, Budget, CallSpec, ErrorKind, ErrorRecord, Host, NoHost, Outcome, PackageMount, Sandbox};

/// A session's interpreter (gone once a cell crashed it, or the session ended).
pub struct Kept {
    inst: Option<Instance>,
    memory_bytes: usize,
    files_cap: usize,
    /// Why the interpreter is gone, once it is.
    pub lost: Option<ErrorRecord>,
}

impl Kept {
    pub fn alive(&self) -> bool {
        self.inst.is_some()
    }

    /// Memory the interpreter holds now.
    pub fn memory_used(&self) -> u64 {
        self.inst.as_ref().map_or(0, |i| i.memory_size())
    }
}

/// What the host asks of a session's working directory.
#[derive(Debug, Clone)]
pub enum FileOp {
    List,
    Get(String),
    Put(String, Vec<u8>),
    Delete(String),
}

/// A file operation's answer, as the host accepts it.
#[derive(Debug, Clone, PartialEq)]
pub enum FileAnswer {
    /// Every file: path and size.
    List(Vec<(String, u64)>),
    /// A file's bytes.
    Data(Vec<u8>),
    /// The size of the file just written.
    Size(u64),
    Done,
}

/// Most files a listing may name.
const MAX_LISTED: usize = 100_000;
/// Longest path a listing may name.
const MAX_LISTED_PATH: usize = 4096;

impl FileAnswer {
    /// What the guest answered to `op`, checked: anything else is a crash of the interpreter
    /// (the prelude never sends it, so the guest's code replaced it).
    fn parse(op: &FileOp, v: Value, cap: usize) -> Result<FileAnswer, ErrorRecord> {
        let answer = match op {
            FileOp::List => v.as_array().filter(|a| a.len() <= MAX_LISTED).and_then(|a| {
                a.iter()
                    .map(|f| {
                        let path = f["path"]
                            .as_str()
                            .filter(|p| !p.is_empty() && p.len() <= MAX_LISTED_PATH)?;
                        let size = f["size"].as_u64().filter(|n| *n <= cap as u64)?;
                        Some((path.to_string(), size))
                    })
                    .collect::<Option<Vec<_>>>()
                    .map(FileAnswer::List)
            }),
            FileOp::Get(_) => v["data"]
                .as_str()
                .and_then(|d| base64::Engine::decode(&base64::engine::general_purpose::STANDARD, d).ok())
                .filter(|d| d.len() <= cap)
                .map(FileAnswer::Data),
            FileOp::Put(..) => v["size"].as_u64().filter(|n| *n <= cap as u64).map(FileAnswer::Size),
            FileOp::Delete(_) => v.is_null().then_some(FileAnswer::Done),
        };
        answer.ok_or_else(|| {
            ErrorRecord::new(
                ErrorKind::Crash,
                "the interpreter answered a file request with something the prelude never sends",
            )
        })
    }
}

/// Whether a failed cell leaves the interpreter fit to run the next one: only errors the
/// guest raised and reported itself do.
fn survivable(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::PythonException | ErrorKind::SyntaxError | ErrorKind::InvalidOutput | ErrorKind::NotFound
    )
}

impl Sandbox {
    /// A new interpreter for a session, capped at `memory_bytes`, with a working directory
    /// of at most `files_cap` bytes.
    pub fn keep(
        &self,
        memory_bytes: usize,
        files_cap: usize,
        packages: Option<&PackageMount>,
    ) -> Result<Kept, ErrorRecord> {
        let inst = self.instance_for(memory_bytes, packages)?;
        Ok(Kept {
            inst: Some(inst),
            memory_bytes,
            files_cap,
            lost: None,
        })
    }

    /// Run a cell (`spec.code`) in the session's interpreter. A crash ends the interpreter.
    pub fn run_cell(&self, kept: &mut Kept, spec: &CallSpec<'_>, host: Box<dyn Host>) -> Outcome {
        let Some(mut inst) = kept.inst.take() else {
            let lost = kept
                .lost
                .clone()
                .unwrap_or_else(|| ErrorRecord::new(ErrorKind::Crash, "the session has ended"));
            return super::failed(lost);
        };
        let session = json!({"files_cap": kept.files_cap});
        let outcome = self.run_on(&mut inst, spec, Some(&session), host);
        match &outcome.result {
            Err(e) if !survivable(e.kind) => {
                kept.lost = Some(e.clone());
                self.spares.retire(inst);
            }
            _ => kept.inst = Some(inst),
        }
        outcome
    }

    /// Move files in or out of the session's working directory, within `budget` (the
    /// session's own deadline and fuel: the guest's code answers, and it may have replaced
    /// the prelude's). What it answers is checked here; a malformed answer ends the
    /// interpreter like a crash.
    pub fn session_files(&self, kept: &mut Kept, op: FileOp, budget: Budget) -> Result<FileAnswer, ErrorRecord> {
        let Some(inst) = kept.inst.as_mut() else {
            return Err(kept
                .lost
                .clone()
                .unwrap_or_else(|| ErrorRecord::new(ErrorKind::Crash, "the session has ended")));
        };
        let b64 = |d: &[u8]| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, d);
        let begin = match &op {
            FileOp::List => json!({"files": "list"}),
            FileOp::Get(p) => json!({"files": "get", "path": p}),
            FileOp::Put(p, data) => json!({"files": "put", "path": p, "data": b64(data)}),
            FileOp::Delete(p) => json!({"files": "delete", "path": p}),
        };
        // The working directory must exist before the first cell: enable it in the same turn.
        let source = format!(
            "{}_mx_files_enable({})\n_mx_files_op()\n",
            if inst.prelude_loaded { "" } else { super::BOOT },
            kept.files_cap
        );
        let end = inst.turn(&source, begin.to_string().into_bytes(), budget, Box::new(NoHost));
        inst.prelude_loaded = true;
        let outcome = finish(end, inst, kept.memory_bytes, 64 << 10);
        let answer = outcome.result.and_then(|v| FileAnswer::parse(&op, v, kept.files_cap));
        if let Err(e) = &answer {
            if !survivable(e.kind) {
                kept.lost = Some(e.clone());
                if let Some(inst) = kept.inst.take() {
                    self.spares.retire(inst);
                }
            }
        }
        answer
    }

    /// End a session: its interpreter is dropped (off the request path).
    pub fn release(&self, kept: &mut Kept) {
        if let Some(inst) = kept.inst.take() {
            self.spares.retire(inst);
        }
    }
}
