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
    // small chunks (for a server, chunks of up to 64 bytes only: see
    // `memory::tune_malloc`) spares most allocations the heap's lock. No fast
    // bins: they keep freed small chunks apart from their free neighbours
    // until something merges them, and after a burst the idle server kept
    // 0.15-0.2 MiB more heap with them (no change in FTP or HTTP speed).
    // SAFETY: mallopt only changes the allocator's tuning; called before any
    // thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
        libc::mallopt(libc::M_ARENA_MAX, 1);
        libc::mallopt(libc::M_MXFAST, 0);
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

// `pow` and `log`, the only functions of the C math library the program
// calls (Tokio's scheduler statistics raise to a power, the bench's plots
// take logarithms), come from the `libm` crate, Rust's port of musl's.
// Defined here, they leave nothing for libm.so to provide, so the linker
// (`--as-needed`) drops it and no process maps it: about 0.2 MiB less for
// an idle server (BENCHMARKS.md, "FTP against vsftpd"). rustc exports
// them from the executable, whose definitions come first in the dynamic
// linker's lookup: a shared library that calls `pow` or `log` gets these.

/// C's `pow(3)`.
#[unsafe(no_mangle)]
pub extern "C" fn pow(base: f64, exponent: f64) -> f64 {
    libm::pow(base, exponent)
}

/// C's `log(3)`: the natural logarithm.
#[unsafe(no_mangle)]
pub extern "C" fn log(x: f64) -> f64 {
    libm::log(x)
}

#[cfg(test)]
mod tests {
    use super::{log, pow};

    #[test]
    fn the_math_functions_give_the_values_c_gives() {
        assert_eq!(pow(2.0, 10.0), 1024.0);
        assert_eq!(pow(10.0, -2.0), 0.01);
        assert_eq!(pow(9.0, 0.5), 3.0);
        assert!(pow(-1.0, 0.5).is_nan());
        assert_eq!(log(1.0), 0.0);
        assert!((log(std::f64::consts::E) - 1.0).abs() < 1e-15);
        assert_eq!(log(0.0), f64::NEG_INFINITY);
        assert!(log(-1.0).is_nan());
    }
}
