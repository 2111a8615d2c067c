//! Threads that run sandboxes, off the async runtime.
//!
//! A nested call runs the callee's store on the caller's thread (inside `host.call`), and
//! each level may use up to `WASM_STACK` of native stack, so these threads get a stack sized
//! for the deepest allowed chain. The number of threads bounds the executions running at
//! once; more wait in the queue.

use std::panic::{catch_unwind, AssertUnwindSafe};

use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send>;

pub struct Workers {
    tx: crossbeam_channel::Sender<Job>,
}

impl Workers {
    pub fn new(count: usize, stack_bytes: usize) -> std::io::Result<Workers> {
        let (tx, rx) = crossbeam_channel::unbounded::<Job>();
        for i in 0..count.max(1) {
            let rx = rx.clone();
            std::thread::Builder::new()
                .name(format!("maestro-sandbox-{i}"))
                .stack_size(stack_bytes)
                .spawn(move || {
                    for job in rx.iter() {
                        // A panic in one job must not take the worker down with it.
                        if catch_unwind(AssertUnwindSafe(job)).is_err() {
                            tracing::error!("a sandbox job panicked");
                        }
                    }
                })?;
        }
        Ok(Workers { tx })
    }

    /// Run `f` on a worker thread and wait for its result. `None` if the job panicked.
    pub async fn run<R: Send + 'static>(&self, f: impl FnOnce() -> R + Send + 'static) -> Option<R> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        self.tx.send(job).ok()?;
        result.await.ok()
    }
}
