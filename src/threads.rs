//! The worker-thread count of the CPU kernels.

use crate::error::{Error, Result};

/// Sets the number of rayon worker threads used by every CPU kernel. Results
/// are bit-identical for a given seed and thread count. Must be called before
/// the first parallel kernel runs; calling it again with the count already in
/// force is fine, with another count it is an error.
pub fn set_threads(n: usize) -> Result<()> {
    if n == 0 {
        return Err(Error::invalid(
            "set_threads",
            "thread count must be at least 1",
        ));
    }
    match rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .build_global()
    {
        Ok(()) => Ok(()),
        Err(_) if rayon::current_num_threads() == n => Ok(()),
        Err(e) => Err(Error::invalid(
            "set_threads",
            format!(
                "cannot change to {n} threads, {} already running: {e}",
                rayon::current_num_threads()
            ),
        )),
    }
}

/// Builds the worker pool of every CPU kernel with the calling thread as one
/// of its `n` workers (`None`: one per core, or `RAYON_NUM_THREADS`), so
/// that work started on this thread runs here, with no hand-over to another
/// thread and back: with one worker nothing ever changes thread, and a
/// batch-1 line, whose kernels take microseconds, saves the 7-17 µs of
/// waking a worker and being woken by it.
///
/// Only for a thread that lives as long as the process and starts all the
/// crate's work itself, such as a program's main thread (the `retort`
/// binary's): work sent from another thread waits for a free worker, and
/// with one worker that is this thread, whenever it next waits on the pool.
/// Must come before anything else uses the pool; afterwards it is an error.
pub fn set_threads_with_caller(n: Option<usize>) -> Result<()> {
    if n == Some(0) {
        return Err(Error::invalid(
            "set_threads_with_caller",
            "thread count must be at least 1",
        ));
    }
    rayon::ThreadPoolBuilder::new()
        .num_threads(n.unwrap_or(0))
        .use_current_thread()
        .build_global()
        .map_err(|e| Error::invalid("set_threads_with_caller", e.to_string()))
}

/// Runs `f` on a worker thread of the pool (at once when already on one).
/// The parallel kernels `f` calls then start from inside the pool, instead
/// of each handing its work over from an outside thread and waiting for it:
/// for a single line, where some kernels take microseconds, those hand-overs
/// cost about a tenth of the line.
pub fn on_pool<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    if rayon::current_thread_index().is_some() {
        return f();
    }
    rayon::join(f, || ()).0
}

#[cfg(test)]
mod tests {
    use super::on_pool;

    #[test]
    fn on_pool_runs_on_a_worker_and_nests_inline() {
        assert!(rayon::current_thread_index().is_none());
        let (outer, inner_same_thread) = on_pool(|| {
            let me = rayon::current_thread_index();
            let inner = on_pool(rayon::current_thread_index);
            (me, inner == me)
        });
        assert!(outer.is_some(), "not run on a pool thread");
        assert!(inner_same_thread, "a nested call should run where it is");
        assert_eq!(on_pool(|| 6 * 7), 42);
    }
}
