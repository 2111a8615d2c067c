//! Tracking writes off the call path: one task applies them in order, batching whatever has
//! queued into one transaction.
//!
//! A call's start is held for a short window (`WINDOW`): if the call ends within it, the start
//! and the end become a single insert of the finished row, halving the database work of the
//! common short call. Starts still running after the window are written as `running`, so a
//! long call is visible while it runs. An invoke waits once, for a flush (which writes
//! everything held), before it answers: a client reading the execution right after sees it
//! finished, from any server. If the process dies, what was committed is true; a call that
//! started less than `WINDOW` before the crash may be missing, never wrong. While the database
//! is unavailable, writes wait in memory (up to `MAX_PARKED`) and are committed, in order,
//! when it is back.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, StoreError, Write};

/// How long a start may wait to be merged with its end.
const WINDOW: Duration = Duration::from_millis(50);
/// Most writes committed in one transaction.
const BATCH: usize = 256;
/// Most bytes of writes kept in memory while the database is unavailable (the oldest go
/// beyond it).
const MAX_PARKED_BYTES: usize = 256 << 20;
/// How often parked writes are tried again.
const RETRY: Duration = Duration::from_millis(500);

enum Msg {
    Write(Box<Write>),
    /// Commit everything sent so far; answer whether all writes of this execution succeeded.
    Flush(String, oneshot::Sender<bool>),
}

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Msg>,
}

impl Recorder {
    pub fn spawn(store: Store) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        Recorder { tx }
    }

    pub fn send(&self, w: Write) {
        if self.tx.send(Msg::Write(Box::new(w))).is_err() {
            tracing::error!("the recorder has stopped; a tracking write was lost");
        }
    }

    /// Wait until every write sent before this call is committed. `false` if any write of
    /// `execution_id` failed (other executions' failures are theirs to report).
    pub async fn flush(&self, execution_id: &str) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(execution_id.to_string(), done)).is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }
}

/// Writes on their way to the database: starts held for merging, and the next batch.
#[derive(Default)]
struct Queue {
    held: Vec<(Instant, Write)>,
    batch: Vec<Write>,
    /// Writes that could not be committed because the database was unavailable, in order:
    /// committed (before anything newer) once it is back.
    parked: std::collections::VecDeque<Write>,
    /// Executions with a parked write: a flush answers false for them (not committed yet).
    parked_ids: HashSet<String>,
}

impl Queue {
    /// Move a held execution start into the batch (a step row needs its execution row first).
    fn release_execution(&mut self, execution_id: &str) {
        let pos = self
            .held
            .iter()
            .position(|(_, w)| matches!(w, Write::StartExecution { root, .. } if root.execution_id == execution_id));
        if let Some(pos) = pos {
            let (_, w) = self.held.remove(pos);
            self.batch.push(w);
        }
    }

    fn take_held(&mut self, id: &str) -> Option<Write> {
        let pos = self.held.iter().position(|(_, w)| match w {
            Write::StartExecution { root, .. } => root.execution_id == id,
            Write::StartStep { step, .. } => step.id == id,
            _ => false,
        })?;
        Some(self.held.remove(pos).1)
    }

    fn push(&mut self, w: Write) {
        match w {
            Write::StartExecution { .. } => self.held.push((Instant::now(), w)),
            Write::StartStep { .. } => self.held.push((Instant::now(), w)),
            Write::RunQueued { .. } => self.batch.push(w),
            Write::FinishExecution { ref id, ref finish, .. } => match self.take_held(id) {
                Some(mut start @ Write::StartExecution { .. }) => {
                    if let Write::StartExecution { finish: merged, .. } = &mut start {
                        *merged = Some(finish.clone());
                    }
                    self.batch.push(start);
                }
                _ => self.batch.push(w),
            },
            Write::FinishStep { ref id, ref finish, .. } => match self.take_held(id) {
                Some(Write::StartStep { tenant, step, .. }) => {
                    self.release_execution(&step.execution_id);
                    let finish = Some(finish.clone());
                    self.batch.push(Write::StartStep { tenant, step, finish });
                }
                _ => self.batch.push(w),
            },
        }
    }

    /// Release held starts older than the window (all of them when `all`), oldest first.
    fn release(&mut self, all: bool) {
        let now = Instant::now();
        while let Some((at, _)) = self.held.first() {
            if !all && now.duration_since(*at) < WINDOW {
                break;
            }
            let (_, w) = self.held.remove(0);
            self.batch.push(w);
        }
    }

    fn next_due(&self) -> Option<tokio::time::Instant> {
        let held = self
            .held
            .first()
            .map(|(at, _)| tokio::time::Instant::from_std(*at + WINDOW));
        let retry = (!self.parked.is_empty()).then(|| tokio::time::Instant::now() + RETRY);
        held.into_iter().chain(retry).min()
    }
}

async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut q = Queue::default();
    let mut flushes = Vec::new();
    // Executions with a write that could not be recorded, until a flush reports it.
    let mut failed: HashSet<String> = HashSet::new();
    loop {
        let msg = match q.next_due() {
            Some(due) => match tokio::time::timeout_at(due, rx.recv()).await {
                Ok(msg) => msg,
                Err(_) => {
                    q.release(false);
                    commit(&store, &mut q, &mut failed).await;
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(first) = msg else {
            q.release(true);
            commit(&store, &mut q, &mut failed).await;
            return;
        };
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Write(w) => q.push(*w),
                Msg::Flush(id, f) => {
                    q.release(true);
                    flushes.push((id, f));
                }
            }
            if q.batch.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        q.release(false);
        commit(&store, &mut q, &mut failed).await;
        for (id, f) in flushes.drain(..) {
            let _ = f.send(!failed.remove(&id) && !q.parked_ids.contains(&id));
        }
        if failed.len() > 10_000 {
            failed.clear(); // never reported (their invokes were abandoned): do not grow forever
        }
    }
}

/// Commit a batch (emptying it), after any writes parked earlier. If the database is
/// unavailable, what is left is parked (at most `MAX_PARKED_BYTES`) and tried again later;
/// flushes meanwhile answer false for the executions concerned, since nothing of theirs is
/// committed yet. If a chunk fails otherwise, each write is tried on its own so one bad row
/// cannot take the others with it, and the executions whose writes failed are noted.
async fn commit(store: &Store, q: &mut Queue, failed: &mut HashSet<String>) {
    if q.batch.is_empty() && q.parked.is_empty() {
        return;
    }
    let mut writes: Vec<Write> = q.parked.drain(..).collect();
    for w in &writes {
        q.parked_ids.remove(w.execution_id());
    }
    writes.append(&mut q.batch);
    let mut left: std::collections::VecDeque<Write> = Default::default();
    let mut done = 0;
    while done < writes.len() {
        let end = (done + BATCH).min(writes.len());
        match store.apply_writes(&writes[done..end]).await {
            Ok(()) => {}
            Err(StoreError::Unavailable(e)) => {
                tracing::warn!(error = %e, parked = writes.len() - done, "database unavailable; keeping tracking writes in memory");
                left.extend(writes.drain(done..));
                break;
            }
            Err(_) => {
                for (i, w) in writes[done..end].iter().enumerate() {
                    match store.apply_writes(std::slice::from_ref(w)).await {
                        Ok(()) => {}
                        Err(StoreError::Unavailable(_)) => {
                            left.extend(writes.drain(done + i..));
                            break;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, execution = w.execution_id(), "could not record a tracking write");
                            failed.insert(w.execution_id().to_string());
                        }
                    }
                }
                if !left.is_empty() {
                    break;
                }
            }
        }
        done = end;
    }
    let mut bytes: usize = left.iter().map(Write::size).sum();
    while bytes > MAX_PARKED_BYTES {
        let Some(w) = left.pop_front() else { break };
        bytes -= w.size();
        tracing::error!(
            execution = w.execution_id(),
            "the database stayed unavailable: dropped a tracking write"
        );
        failed.insert(w.execution_id().to_string());
    }
    for w in &left {
        q.parked_ids.insert(w.execution_id().to_string());
    }
    q.parked = left;
}
