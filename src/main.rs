//! The `sockit` binary: parse the command line, set up logging, run, and turn
//! the result into one line and an exit code (0 success, 1 runtime error,
//! 2 usage error).
//!
//! No async runtime is started here: the fork echo model must fork before any
//! runtime thread exists, so each subcommand builds the runtime it needs.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    // Allocations of 1 MiB and more get their own mapping, returned to the
    // system when freed. Without a fixed threshold glibc raises it after the
    // first such free, and then keeps the memory of every password check in
    // each thread's heap for good. And one heap, not glibc's eight per core:
    // threads come and go (Tokio's blocking pool, `block_in_place`), each
    // heap keeps what it once held, and a second one held 0.15-0.2 MiB more
    // after a burst of FTP clients (BENCHMARKS.md); each thread's cache of
    // small chunks spares most allocations the shared heap's lock.
    // SAFETY: mallopt only changes the allocator's tuning; called before any
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
    let args = cli::Cli::parse();
    cli::init_logging(args.verbose, args.quiet);
    match cli::run(args) {
        Ok(code) => code,
        Err(err) if cli::is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("sockit: {}", cli::one_line(&err));
            ExitCode::FAILURE
        }
    }
}
