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
    sockit::memory::tune_malloc();
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
