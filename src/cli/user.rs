//! `sockit user`: manage the users of FTP and the HTTP console.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use sockit::users::{NewUser, Permissions, Secret, UserStore};
use sockit::{config, size};

/// Manage the users of FTP and the HTTP console (users.toml in the data dir).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit user add alice --quota 2G\n  printf 'pw\\n' | sockit user add bob --read-only --password-stdin\n  sockit user list\n  sockit user passwd alice\n  sockit user del bob"
)]
pub struct UserArgs {
    /// The data dir holding users.toml [default: $XDG_DATA_HOME/sockit or ~/.local/share/sockit].
    #[arg(long, value_name = "DIR", global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    action: UserAction,
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Add a user; the password is asked on the terminal, or read from stdin.
    #[command(after_help = "Example:\n  sockit user add alice --home /srv/ftp/alice --quota 500M")]
    Add {
        /// 1 to 32 letters, digits, '.', '_' or '-'.
        name: String,
        /// Home directory (absolute) [default: <data dir>/homes/NAME].
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// Disk quota: bytes, or a number with K, M, G or T (powers of 1024).
        #[arg(long, value_name = "SIZE", value_parser = size::parse)]
        quota: Option<u64>,
        /// May only list and download.
        #[arg(long)]
        read_only: bool,
        /// May see the console's dashboard.
        #[arg(long)]
        admin: bool,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List users with their home, quota and permissions.
    #[command(after_help = "Example:\n  sockit user list")]
    List,
    /// Delete a user (their files stay).
    #[command(after_help = "Example:\n  sockit user del bob")]
    Del { name: String },
    /// Set a new password.
    #[command(after_help = "Example:\n  sockit user passwd alice")]
    Passwd {
        name: String,
        /// Read the password from the first line of stdin.
        #[arg(long)]
        password_stdin: bool,
    },
}

pub fn run(args: UserArgs) -> anyhow::Result<ExitCode> {
    let data_dir = args.data_dir.unwrap_or_else(config::default_data_dir);
    let store = UserStore::open(&data_dir)?;
    match args.action {
        UserAction::Add {
            name,
            home,
            quota,
            read_only,
            admin,
            password_stdin,
        } => {
            let home = match home {
                Some(home) => Some(std::path::absolute(&home).context("cannot resolve --home")?),
                None => None,
            };
            let password = read_password(password_stdin, &format!("Password for {name}: "))?;
            let user = store.add(NewUser {
                name,
                password,
                home,
                quota,
                permissions: if read_only {
                    Permissions::READ_ONLY
                } else {
                    Permissions::FULL
                },
                admin,
            })?;
            writeln!(
                std::io::stdout(),
                "added {} (home {})",
                user.name,
                user.home.display()
            )?;
        }
        UserAction::List => {
            writeln!(
                std::io::stdout(),
                "{:<16} {:<10} {:<10} {:<6} home",
                "name",
                "quota",
                "access",
                "admin"
            )?;
            for user in store.list()? {
                let quota = user.quota.map_or_else(|| "none".to_owned(), size::format);
                let access = if user.permissions == Permissions::READ_ONLY {
                    "read-only"
                } else if user.permissions == Permissions::FULL {
                    "full"
                } else {
                    "custom"
                };
                let admin = if user.admin { "yes" } else { "no" };
                writeln!(
                    std::io::stdout(),
                    "{:<16} {quota:<10} {access:<10} {admin:<6} {}",
                    user.name,
                    user.home.display()
                )?;
            }
        }
        UserAction::Del { name } => {
            store.remove(&name)?;
            writeln!(std::io::stdout(), "deleted {name} (their files stay)")?;
        }
        UserAction::Passwd {
            name,
            password_stdin,
        } => {
            store.find(&name)?;
            let password = read_password(password_stdin, &format!("New password for {name}: "))?;
            store.set_password(&name, &password)?;
            writeln!(std::io::stdout(), "password changed for {name}")?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Reads a password: from stdin's first line, or asked twice on the terminal.
fn read_password(from_stdin: bool, prompt: &str) -> anyhow::Result<Secret> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        return Ok(Secret::new(line.trim_end_matches(['\r', '\n'])));
    }
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to ask the password on; pass --password-stdin");
    }
    let first = rpassword::prompt_password(prompt).context("cannot read the password")?;
    let again = rpassword::prompt_password("Again: ").context("cannot read the password")?;
    if first != again {
        bail!("the two passwords differ");
    }
    Ok(Secret::new(first))
}
