//! Giving the heap's free memory back to the system after a burst of work.
//!
//! glibc's malloc hands memory back on its own only from the top of each
//! heap. After many sessions at once, the chunks they freed sit between
//! chunks still in use, so the freed pages stay with the process: after 8
//! FTP clients had come and gone, about 0.9 MiB of the server's 1.3 MiB of
//! heap was free and resident. `malloc_trim` returns every whole free page
//! inside the heaps (BENCHMARKS.md, "FTP against vsftpd").

/// Returns the whole free pages in malloc's heaps to the system; with a C
/// library other than glibc, does nothing. Takes a lock on each heap while
/// it walks its free chunks: call it when a service falls idle, off the
/// async runtime's threads.
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only walks malloc's own free lists, under its locks.
    unsafe {
        libc::malloc_trim(0);
    }
}
