//! `sockit user`: manage the users of FTP and the HTTP console.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{ArgGroup, Args, Subcommand};
use sockit::users::{NewUser, Permissions, Secret, User, UserChanges, UserStore};
use sockit::{config, size};

/// Manage the users of FTP and the HTTP console (users.toml in the data dir).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  sockit user add alice --quota 2G\n  printf 'pw\\n' | sockit user add bob --read-only --password-stdin\n  sockit user set bob --quota 1G --read-write\n  sockit user list\n  sockit user passwd alice\n  sockit user del bob"
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
    #[command(
        after_help = "Example:\n  sockit user add alice --home /srv/ftp/alice --quota 500M --max-files 100000"
    )]
    Add {
        /// 1 to 32 letters, digits, '.', '_' or '-'.
        name: String,
        /// Home directory (absolute) [default: <data dir>/homes/NAME].
        #[arg(long, value_name = "DIR")]
        home: Option<PathBuf>,
        /// Disk quota: bytes, or a number with K, M, G or T (powers of 1024).
        #[arg(long, value_name = "SIZE", value_parser = size::parse)]
        quota: Option<u64>,
        /// Files and directories the user may have in their home, at any depth.
        #[arg(long, value_name = "N")]
        max_files: Option<u64>,
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
    /// Change a user's home, limits, permissions or admin flag. FTP sessions
    /// see the change at their next login, the console at its next request.
    #[command(
        after_help = "Examples:\n  sockit user set alice --quota 5G\n  sockit user set bob --no-quota --read-write\n  sockit user set carol --home /srv/ftp/carol --max-files 10000 --admin",
        group(ArgGroup::new("changes").required(true).multiple(true))
    )]
    Set {
        /// The user to change.
        name: String,
        /// New home directory (absolute; created if missing; files in the old one stay).
        #[arg(long, value_name = "DIR", group = "changes")]
        home: Option<PathBuf>,
        /// New disk quota: bytes, or a number with K, M, G or T (powers of 1024).
        #[arg(long, value_name = "SIZE", value_parser = size::parse, group = "changes")]
        quota: Option<u64>,
        /// Remove the disk quota.
        #[arg(long, conflicts_with = "quota", group = "changes")]
        no_quota: bool,
        /// New limit on files and directories in the home, at any depth.
        #[arg(long, value_name = "N", group = "changes")]
        max_files: Option<u64>,
        /// Remove the limit on files and directories.
        #[arg(long, conflicts_with = "max_files", group = "changes")]
        no_max_files: bool,
        /// May only list and download.
        #[arg(long, group = "changes")]
        read_only: bool,
        /// May upload, delete, make directories and rename.
        #[arg(long, conflicts_with = "read_only", group = "changes")]
        read_write: bool,
        /// May see the console's dashboard.
        #[arg(long, group = "changes")]
        admin: bool,
        /// May not see the console's dashboard.
        #[arg(long, conflicts_with = "admin", group = "changes")]
        no_admin: bool,
    },
    /// List users with their home, limits and permissions.
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
            max_files,
            read_only,
            admin,
            password_stdin,
        } => {
            let home = home.map(absolute_home).transpose()?;
            let password = read_password(password_stdin, &format!("Password for {name}: "))?;
            let user = store.add(NewUser {
                name,
                password,
                home,
                quota,
                max_files,
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
        UserAction::Set {
            name,
            home,
            quota,
            no_quota,
            max_files,
            no_max_files,
            read_only,
            read_write,
            admin,
            no_admin,
        } => {
            let home = home.map(absolute_home).transpose()?;
            let changes = UserChanges {
                home,
                quota: if no_quota {
                    Some(None)
                } else {
                    quota.map(Some)
                },
                max_files: if no_max_files {
                    Some(None)
                } else {
                    max_files.map(Some)
                },
                permissions: (read_only || read_write).then_some(if read_only {
                    Permissions::READ_ONLY
                } else {
                    Permissions::FULL
                }),
                admin: (admin || no_admin).then_some(admin),
            };
            let user = store.change(&name, changes)?;
            let mut out = std::io::stdout().lock();
            writeln!(out, "{HEADER}")?;
            writeln!(out, "{}", row(&user))?;
        }
        UserAction::List => {
            let mut out = std::io::stdout().lock();
            writeln!(out, "{HEADER}")?;
            for user in store.list()? {
                writeln!(out, "{}", row(&user))?;
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

/// `--home` as an absolute path (a relative one is taken from the current
/// directory).
fn absolute_home(home: PathBuf) -> anyhow::Result<PathBuf> {
    std::path::absolute(home).context("cannot resolve --home")
}

/// The column heads of [`row`].
const HEADER: &str = "name             quota      files    access     admin  home";

/// One user as `sockit user list` shows them.
fn row(user: &User) -> String {
    let quota = user.quota.map_or_else(|| "none".to_owned(), size::format);
    let files = user
        .max_files
        .map_or_else(|| "none".to_owned(), |n| n.to_string());
    let access = if user.permissions == Permissions::READ_ONLY {
        "read-only"
    } else if user.permissions == Permissions::FULL {
        "full"
    } else {
        "custom"
    };
    let admin = if user.admin { "yes" } else { "no" };
    format!(
        "{:<16} {quota:<10} {files:<8} {access:<10} {admin:<6} {}",
        user.name,
        user.home.display()
    )
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
