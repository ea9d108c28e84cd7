//! The threads actions run on: one per core, started once and fed over a channel. Tokio's
//! blocking pool would spread runs over many threads whose caches and allocator arenas have
//! gone cold, which costs more than a small action itself (measured in docs/benchmarks.md).

use std::sync::mpsc::{Sender, channel};
use std::sync::{LazyLock, Mutex};

type Job = Box<dyn FnOnce() + Send>;

static POOL: LazyLock<Mutex<Sender<Job>>> = LazyLock::new(|| {
    let (tx, rx) = channel::<Job>();
    let rx = std::sync::Arc::new(Mutex::new(rx));
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    for i in 0..threads {
        let rx = rx.clone();
        let spawned = std::thread::Builder::new().name(format!("gatehouse-action-{i}")).spawn(move || {
            loop {
                // The lock is held only to take one job, not while it runs.
                let job = match rx.lock() {
                    Ok(r) => r.recv(),
                    Err(_) => return,
                };
                match job {
                    Ok(job) => job(),
                    Err(_) => return,
                }
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start an action thread");
        }
    }
    Mutex::new(tx)
});

/// Run `f` on an action thread and wait for it without blocking the async runtime.
pub async fn run<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    POOL.lock().map_err(|_| "the action threads are gone".to_owned())?.send(job).map_err(|e| e.to_string())?;
    rx.await.map_err(|_| "the action thread dropped the run".to_owned())
}
