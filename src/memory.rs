//! Giving the heap's free memory back to the system after a burst of work,
//! and the malloc settings that keep less of it in the first place.
//!
//! glibc's malloc hands memory back on its own only from the top of each
//! heap. After many sessions at once, the chunks they freed sit between
//! chunks still in use, so the freed pages stay with the process: after 8
//! FTP clients had come and gone, about 0.9 MiB of the server's 1.3 MiB of
//! heap was free and resident. `malloc_trim` returns every whole free page
//! inside the heaps (BENCHMARKS.md, "FTP against vsftpd").

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// How long a thread of the async runtime's blocking pool waits for more
/// work before it exits; [`release_free_heap_later`] waits for those
/// threads to be gone. Tokio's default is 10 s: the 20-odd threads a burst
/// of FTP clients leaves (uploads are written with `block_in_place`, each
/// of which starts a thread to take over the runtime's worker) then held
/// their stacks and cached chunks for 10 s, and a server that fell idle
/// kept about 2 MiB more for that long. Starting a thread again costs tens
/// of microseconds.
pub const BLOCKING_THREAD_KEEP_ALIVE: Duration = Duration::from_secs(2);

/// Allocations of 1 MiB and more get a mapping of their own, given back to
/// the system when freed. glibc's threshold moves up after the first such
/// free, and then the 7 MiB of every password check (argon2id, see
/// `users.rs`) stays in the heap of the thread that ran it for good: with
/// the fixed threshold, a server's memory after a burst of logins falls back
/// to what it was before.
///
/// Call it before starting any thread.
pub fn tune_malloc() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes the allocator's tuning; no other thread
    // exists yet to allocate meanwhile.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Counts the calls of [`release_free_heap_later`]; only the latest call's
/// trim runs.
static LATEST_BURST: AtomicU64 = AtomicU64::new(0);

/// Returns the whole free pages in malloc's heaps to the system; with a C
/// library other than glibc, does nothing. Takes a lock on each heap while
/// it walks its free chunks: call it when a service falls idle, off the
/// async runtime's threads.
fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks malloc's own free lists, under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Once a burst of work is over: returns the heap's free pages after the
/// blocking threads that served the burst have exited, unless another burst
/// has ended meanwhile (then its own call does it, later).
///
/// Trimming right away misses most of it: each exiting thread hands the
/// chunks it keeps cached back to the heap only as it exits, up to
/// [`BLOCKING_THREAD_KEEP_ALIVE`] later. Measured after 8 FTP clients had
/// come and gone, a trim then still freed 0.12-0.17 MiB that the trim at
/// the last session's end had not. Does nothing outside a Tokio runtime.
pub fn release_free_heap_later() {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let burst = LATEST_BURST.fetch_add(1, Ordering::Relaxed) + 1;
    runtime.spawn(async move {
        tokio::time::sleep(BLOCKING_THREAD_KEEP_ALIVE + Duration::from_secs(1)).await;
        if LATEST_BURST.load(Ordering::Relaxed) == burst {
            let _ = tokio::task::spawn_blocking(release_free_heap).await;
        }
    });
}
