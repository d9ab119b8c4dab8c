//! Giving the heap's free memory back to the system after a burst of work,
//! and the malloc settings that keep less of it in the first place.
//!
//! glibc's malloc hands memory back on its own only from the top of each
//! heap. After many sessions at once, the chunks they freed sit between
//! chunks still in use, so the freed pages stay with the process: after 8
//! FTP clients had come and gone, about 0.9 MiB of the server's 1.3 MiB of
//! heap was free and resident. `malloc_trim` returns every whole free page
//! inside the heaps (BENCHMARKS.md, "FTP against vsftpd").

#[cfg(target_env = "gnu")]
use std::ffi::{OsStr, OsString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// The environment variable glibc reads its tunables from, once, as a
/// program starts.
#[cfg(target_env = "gnu")]
const GLIBC_TUNABLES: &str = "GLIBC_TUNABLES";

/// What a server asks of glibc's malloc that only [`GLIBC_TUNABLES`] can
/// set: each thread caches freed chunks of up to 64 bytes only, not of up
/// to 1 KiB.
///
/// A thread keeps up to 7 freed chunks of each size it caches for its own
/// next allocations, and only its exit empties that cache. The runtime's
/// worker threads live as long as the server: after a burst of FTP clients
/// they held such chunks on pages all over the heap, and while cached, the
/// chunks had kept their free neighbours from merging. With caching up to
/// 64 bytes the idle server kept 0.3 MiB less heap after the burst, about
/// what it had as started, and served FTP as fast and HTTP about half a
/// per cent slower in alternating runs (BENCHMARKS.md, "FTP against
/// vsftpd" and "HTTP console").
#[cfg(target_env = "gnu")]
const MALLOC_TUNABLES: &str = "glibc.malloc.tcache_max=64";

/// How long a thread of the async runtime's blocking pool waits for more
/// work before it exits; [`release_free_heap_later`] waits for those
/// threads to be gone. Tokio's default is 10 s: the 20-odd threads a burst
/// of FTP clients leaves (uploads are written with `block_in_place`, each
/// of which starts a thread to take over the runtime's worker) then held
/// their stacks and cached chunks for 10 s, and a server that fell idle
/// kept about 2 MiB more for that long. Starting a thread again costs tens
/// of microseconds.
pub const BLOCKING_THREAD_KEEP_ALIVE: Duration = Duration::from_secs(2);

/// For a long-running server: runs this program again in place, same
/// process and arguments, with [`MALLOC_TUNABLES`] added to
/// `GLIBC_TUNABLES`, unless that already sets the thread cache (a user's
/// own setting wins; the program run again finds ours). Returns when it
/// does not run the program again: set already, a set-user-ID start (glibc
/// then drops these tunables, and running again would loop), another C
/// library, or the exec failed (the server then runs with glibc's defaults).
///
/// Call it before starting any thread: the exec ends them all.
pub fn tune_malloc() {
    #[cfg(target_env = "gnu")]
    {
        use std::os::unix::process::CommandExt;

        let current = std::env::var_os(GLIBC_TUNABLES);
        // SAFETY: getauxval reads the auxiliary vector the kernel passed in.
        let secure = unsafe { libc::getauxval(libc::AT_SECURE) } != 0;
        if secure || current.as_deref().is_some_and(sets_thread_cache) {
            return;
        }
        let mut args = std::env::args_os();
        let Some(program_name) = args.next() else {
            return;
        };
        // Returns only if the exec failed.
        let _ = std::process::Command::new("/proc/self/exe")
            .arg0(program_name)
            .args(args)
            .env(GLIBC_TUNABLES, with_malloc_tunables(current.as_deref()))
            .exec();
    }
}

/// Whether a `GLIBC_TUNABLES` value sets anything of malloc's thread cache.
#[cfg(target_env = "gnu")]
fn sets_thread_cache(tunables: &OsStr) -> bool {
    tunables
        .to_string_lossy()
        .split(':')
        .any(|tunable| tunable.starts_with("glibc.malloc.tcache"))
}

/// `tunables` (a `GLIBC_TUNABLES` value, if any) with [`MALLOC_TUNABLES`] added.
#[cfg(target_env = "gnu")]
fn with_malloc_tunables(tunables: Option<&OsStr>) -> OsString {
    match tunables {
        Some(tunables) if !tunables.is_empty() => {
            let mut joined = tunables.to_owned();
            joined.push(":");
            joined.push(MALLOC_TUNABLES);
            joined
        }
        _ => MALLOC_TUNABLES.into(),
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

#[cfg(all(test, target_env = "gnu"))]
mod tests {
    use super::*;

    #[test]
    fn the_malloc_tunables_join_those_already_set() {
        assert_eq!(with_malloc_tunables(None), MALLOC_TUNABLES);
        assert_eq!(with_malloc_tunables(Some(OsStr::new(""))), MALLOC_TUNABLES);
        assert_eq!(
            with_malloc_tunables(Some(OsStr::new("glibc.malloc.arena_max=2"))),
            "glibc.malloc.arena_max=2:glibc.malloc.tcache_max=64"
        );
    }

    #[test]
    fn a_thread_cache_setting_of_the_users_own_is_left_alone() {
        assert!(sets_thread_cache(OsStr::new(MALLOC_TUNABLES)));
        assert!(sets_thread_cache(OsStr::new(
            "glibc.malloc.arena_max=2:glibc.malloc.tcache_count=0"
        )));
        assert!(!sets_thread_cache(OsStr::new("glibc.malloc.arena_max=2")));
        assert!(!sets_thread_cache(OsStr::new("")));
    }
}
