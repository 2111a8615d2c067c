//! Tracking writes off the call path: one task applies them in order, batching whatever has
//! queued up into a single transaction. A call enqueues its start and end without waiting;
//! an invoke waits once, for a flush, before it answers, so a client that reads the
//! execution right after sees it finished. If the process dies mid-run, what was committed
//! is true (a `running` row the sweeper later marks `interrupted`).

use tokio::sync::{mpsc, oneshot};

use crate::store::{Store, Write};

enum Msg {
    Write(Write),
    Flush(oneshot::Sender<bool>),
}

#[derive(Clone)]
pub struct Recorder {
    tx: mpsc::UnboundedSender<Msg>,
}

/// Most writes committed in one transaction.
const BATCH: usize = 256;

impl Recorder {
    pub fn spawn(store: Store) -> Recorder {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(store, rx));
        Recorder { tx }
    }

    pub fn send(&self, w: Write) {
        if self.tx.send(Msg::Write(w)).is_err() {
            tracing::error!("the recorder has stopped; a tracking write was lost");
        }
    }

    /// Wait until every write sent before this call is committed. `false` if any failed.
    pub async fn flush(&self) -> bool {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Msg::Flush(done)).is_err() {
            return false;
        }
        wait.await.unwrap_or(false)
    }
}

async fn run(store: Store, mut rx: mpsc::UnboundedReceiver<Msg>) {
    let mut writes = Vec::with_capacity(BATCH);
    let mut flushes = Vec::new();
    let mut ok = true;
    while let Some(first) = rx.recv().await {
        let mut next = Some(first);
        while let Some(msg) = next.take() {
            match msg {
                Msg::Write(w) => writes.push(w),
                Msg::Flush(f) => flushes.push(f),
            }
            if writes.len() < BATCH {
                next = rx.try_recv().ok();
            }
        }
        if !writes.is_empty() {
            ok = commit(&store, &writes).await && ok;
            writes.clear();
        }
        for f in flushes.drain(..) {
            let _ = f.send(ok);
        }
        ok = true;
    }
}

/// Commit a batch; if the batch fails, try each write on its own so one bad row cannot
/// take the others with it.
async fn commit(store: &Store, writes: &[Write]) -> bool {
    if store.apply_writes(writes).await.is_ok() {
        return true;
    }
    let mut all = true;
    for w in writes {
        if let Err(e) = store.apply_writes(std::slice::from_ref(w)).await {
            tracing::error!(error = %e, write = ?w, "could not record a tracking write");
            all = false;
        }
    }
    all
}
