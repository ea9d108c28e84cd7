//! The threads actions run on. A run holds one of the CPU slots (one per core) while it
//! computes and gives it back while it waits on the network ([`off_cpu`]), so an action
//! waiting on a slow host never holds up the actions of other logins. Threads are started
//! once and kept (Tokio's blocking pool would spread runs over many threads whose caches and
//! allocator arenas have gone cold, which costs more than a small action itself, see
//! docs/benchmarks.md); the pool grows, up to a cap, only when every thread is waiting.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Condvar, LazyLock, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// Runs waiting on the network at once, beyond the CPU slots; past that, new runs queue.
const MAX_WAITING: usize = 64;

/// A counting semaphore of CPU slots.
struct Slots {
    free: Mutex<usize>,
    freed: Condvar,
}

impl Slots {
    fn acquire(&self) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        while *free == 0 {
            free = self.freed.wait(free).unwrap_or_else(|p| p.into_inner());
        }
        *free -= 1;
    }
    fn release(&self) {
        *self.free.lock().unwrap_or_else(|p| p.into_inner()) += 1;
        self.freed.notify_one();
    }
}

struct Pool {
    tx: Mutex<Sender<Job>>,
    rx: Arc<Mutex<Receiver<Job>>>,
    slots: Slots,
    /// Threads started, and how many of them wait for a job.
    threads: AtomicUsize,
    idle: AtomicUsize,
    /// Jobs sent and not yet taken by a thread.
    queued: AtomicUsize,
    cap: usize,
}

thread_local! {
    /// Whether this thread holds a CPU slot (only action threads do, while they run a job).
    static HOLDS_SLOT: Cell<bool> = const { Cell::new(false) };
}

static POOL: LazyLock<Pool> = LazyLock::new(|| {
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let (tx, rx) = channel::<Job>();
    Pool {
        tx: Mutex::new(tx),
        rx: Arc::new(Mutex::new(rx)),
        slots: Slots { free: Mutex::new(cores), freed: Condvar::new() },
        threads: AtomicUsize::new(0),
        idle: AtomicUsize::new(0),
        queued: AtomicUsize::new(0),
        cap: cores + MAX_WAITING,
    }
});

fn worker() {
    let pool = &*POOL;
    loop {
        pool.idle.fetch_add(1, Ordering::SeqCst);
        // The lock is held only to take one job, not while it runs.
        let job = match pool.rx.lock() {
            Ok(r) => r.recv(),
            Err(_) => return,
        };
        pool.idle.fetch_sub(1, Ordering::SeqCst);
        let Ok(job) = job else { return };
        pool.queued.fetch_sub(1, Ordering::SeqCst);
        pool.slots.acquire();
        HOLDS_SLOT.with(|h| h.set(true));
        job();
        HOLDS_SLOT.with(|h| h.set(false));
        pool.slots.release();
    }
}

/// Start a thread when every started one is busy and the cap allows.
fn grow(pool: &Pool) {
    loop {
        let threads = pool.threads.load(Ordering::SeqCst);
        if threads >= pool.cap || pool.queued.load(Ordering::SeqCst) <= pool.idle.load(Ordering::SeqCst) {
            return;
        }
        if pool.threads.compare_exchange(threads, threads + 1, Ordering::SeqCst, Ordering::SeqCst).is_err() {
            continue;
        }
        let spawned = std::thread::Builder::new().name(format!("gatehouse-action-{threads}")).spawn(worker);
        if let Err(e) = spawned {
            pool.threads.fetch_sub(1, Ordering::SeqCst);
            tracing::error!(error = %e, "cannot start an action thread");
            return;
        }
    }
}

/// Run `f` on an action thread, holding a CPU slot, and wait for it without blocking the
/// async runtime.
pub async fn run<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> Result<R, String> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    let pool = &*POOL;
    pool.queued.fetch_add(1, Ordering::SeqCst);
    let sent = pool.tx.lock().map_err(|_| "the action threads are gone".to_owned())?.send(job);
    if let Err(e) = sent {
        pool.queued.fetch_sub(1, Ordering::SeqCst);
        return Err(e.to_string());
    }
    grow(pool);
    rx.await.map_err(|_| "the action thread dropped the run".to_owned())
}

/// Call `wait` (a network request) with this thread's CPU slot given back meanwhile, so
/// other runs compute while this one waits. Outside an action thread it just calls `wait`.
pub fn off_cpu<R>(wait: impl FnOnce() -> R) -> R {
    if !HOLDS_SLOT.with(Cell::get) {
        return wait();
    }
    let pool = &*POOL;
    pool.slots.release();
    HOLDS_SLOT.with(|h| h.set(false));
    // This thread now waits: another may be needed for the queued runs.
    grow(pool);
    let out = wait();
    pool.slots.acquire();
    HOLDS_SLOT.with(|h| h.set(true));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn runs_waiting_off_cpu_do_not_hold_up_others() {
        let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        // More waiting runs than CPU slots, each waiting 500 ms.
        let entered = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let waiting: Vec<_> = (0..cores * 4)
            .map(|_| {
                let (entered, finished) = (entered.clone(), finished.clone());
                tokio::spawn(run(move || {
                    off_cpu(|| {
                        entered.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(1500));
                    });
                    finished.fetch_add(1, Ordering::SeqCst);
                }))
            })
            .collect();
        // Every waiting run is in its wait before the control run is sent.
        while entered.load(Ordering::SeqCst) < cores * 4 {
            tokio::task::yield_now().await;
        }
        run(|| ()).await.unwrap();
        // Causal, not a stopwatch: the control ran while every other run still waited.
        assert_eq!(finished.load(Ordering::SeqCst), 0, "the computing run waited for a waiting one");
        for w in waiting {
            w.await.unwrap().unwrap();
        }
    }
}
