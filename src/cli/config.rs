//! `sockit config`: show the embedded default, check a file.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use sockit::config::{DEFAULT_TOML, FileConfig, Overrides};

/// Show the default configuration or check a configuration file.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit config default > sockit.toml\n  sockit config check sockit.toml"
)]
pub struct ConfigArgs {
    #[command(subcommand)]
    action: ConfigAction,
}

#[derive(Debug, Subcommand)]
enum ConfigAction {
    /// Print the embedded default configuration (every key, with comments).
    #[command(after_help = "Example:\n  sockit config default > sockit.toml")]
    Default,
    /// Parse and check a configuration file; prints `ok` when it is valid.
    #[command(after_help = "Example:\n  sockit config check sockit.toml")]
    Check {
        /// The file to check.
        file: PathBuf,
    },
}

pub fn run(args: ConfigArgs) -> anyhow::Result<ExitCode> {
    match args.action {
        ConfigAction::Default => write!(std::io::stdout(), "{DEFAULT_TOML}")?,
        ConfigAction::Check { file } => {
            let parsed = FileConfig::load(Some(&file))?;
            parsed.resolve(&Overrides::default(), &file.display().to_string())?;
            writeln!(std::io::stdout(), "ok")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
