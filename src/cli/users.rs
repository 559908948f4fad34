//! `rill users`: manage the broker's users file (SCRAM-SHA-256 credentials and topic
//! permissions). Passwords come from a prompt on a terminal, or from the first line of stdin
//! (scripts, CI); they are never taken as arguments, which other users could see in `ps`.

use std::io::{BufRead, IsTerminal};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use rill::broker::auth::scram::{
    ScramCredential, DEFAULT_ITERATIONS, MAX_ITERATIONS, MIN_ITERATIONS,
};
use rill::broker::auth::users::{PermissionLists, Users, UsersFile};

#[derive(Debug, Subcommand)]
#[command(after_help = "Examples:\n  \
    rill users add agent --file users.toml --write logs --write metrics     # password from the prompt or stdin\n  \
    echo \"$PW\" | rill users add dash --file users.toml --read 'logs' --read 'metrics'\n  \
    rill users add admin --file users.toml --admin '*'\n  \
    rill users list --file users.toml\n  \
    rill broker --users-file users.toml        # or [broker.sasl] users_file in the config")]
pub enum UsersCommand {
    /// Add a user with a password (prompted, or the first line of stdin) and permissions
    Add {
        /// User name: letters, digits and . _ @ -
        name: String,
        #[command(flatten)]
        file: FileArg,
        /// Topics (names or globs) the user may consume and commit offsets for
        #[arg(long, value_name = "TOPIC")]
        read: Vec<String>,
        /// Topics the user may produce to (and auto-create)
        #[arg(long, value_name = "TOPIC")]
        write: Vec<String>,
        /// Topics the user may do anything with, including create and delete ('*' = all)
        #[arg(long, value_name = "TOPIC")]
        admin: Vec<String>,
        /// PBKDF2 iterations of the SCRAM credential
        #[arg(long, default_value_t = DEFAULT_ITERATIONS, value_parser = clap::value_parser!(u32).range(i64::from(MIN_ITERATIONS)..=i64::from(MAX_ITERATIONS)))]
        iterations: u32,
    },
    /// Set a new password for a user (prompted, or the first line of stdin); permissions stay
    Passwd {
        /// An existing user
        name: String,
        #[command(flatten)]
        file: FileArg,
        /// PBKDF2 iterations of the SCRAM credential
        #[arg(long, default_value_t = DEFAULT_ITERATIONS, value_parser = clap::value_parser!(u32).range(i64::from(MIN_ITERATIONS)..=i64::from(MAX_ITERATIONS)))]
        iterations: u32,
    },
    /// Remove a user (connections it has open keep their session until they reconnect)
    Remove {
        /// An existing user
        name: String,
        #[command(flatten)]
        file: FileArg,
    },
    /// List users and their permissions (never secrets)
    List {
        #[command(flatten)]
        file: FileArg,
        /// One JSON object per user
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
pub struct FileArg {
    /// The users file (created by the first `add`)
    #[arg(long, short = 'f', env = "RILL_USERS_FILE", value_name = "FILE")]
    file: PathBuf,
}

pub fn run(command: UsersCommand) -> anyhow::Result<()> {
    match command {
        UsersCommand::Add {
            name,
            file,
            read,
            write,
            admin,
            iterations,
        } => {
            let mut users = UsersFile::open(&file.file)?;
            // Check the name before asking for a password.
            if users.contains(&name) {
                anyhow::bail!(
                    "user `{name}` already exists in {}: use `rill users passwd {name}` to change its password",
                    file.file.display()
                );
            }
            let password = read_password(&name)?;
            let credential = derive(&password, iterations)?;
            let permissions = PermissionLists { read, write, admin };
            users.add(&name, &credential, &permissions)?;
            users.save()?;
            eprintln!("added user `{name}` to {}", file.file.display());
            if permissions.read.is_empty()
                && permissions.write.is_empty()
                && permissions.admin.is_empty()
            {
                eprintln!(
                    "note: `{name}` has no permissions yet; it can connect but sees no topic \
                     (add --read/--write/--admin, or edit the file)"
                );
            }
            Ok(())
        }
        UsersCommand::Passwd {
            name,
            file,
            iterations,
        } => {
            let mut users = UsersFile::open(&file.file)?;
            if !users.contains(&name) {
                anyhow::bail!("no user `{name}` in {}", file.file.display());
            }
            let password = read_password(&name)?;
            users.set_credential(&name, &derive(&password, iterations)?)?;
            users.save()?;
            eprintln!(
                "changed the password of `{name}` in {}",
                file.file.display()
            );
            Ok(())
        }
        UsersCommand::Remove { name, file } => {
            let mut users = UsersFile::open(&file.file)?;
            users.remove(&name)?;
            users.save()?;
            eprintln!("removed user `{name}` from {}", file.file.display());
            Ok(())
        }
        UsersCommand::List { file, json } => list(&file.file, json),
    }
}

fn derive(password: &str, iterations: u32) -> anyhow::Result<ScramCredential> {
    ScramCredential::new(password, iterations)
        .map_err(|_| anyhow::anyhow!("no randomness available from the operating system"))
}

/// From a prompt (twice) on a terminal, else the first line of stdin.
fn read_password(name: &str) -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password(format!("password for {name}: "))
            .context("cannot read the password")?;
        let again = rpassword::prompt_password("again: ").context("cannot read the password")?;
        if first != again {
            anyhow::bail!("the passwords differ; nothing changed");
        }
        first
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the password from stdin")?;
        line.trim_end_matches(['\n', '\r']).to_string()
    };
    if password.is_empty() {
        anyhow::bail!("empty password: type one at the prompt, or pipe it on stdin (echo \"$PW\" | rill users add ...)");
    }
    Ok(password)
}

fn list(path: &Path, json: bool) -> anyhow::Result<()> {
    let users = Users::load(path)?;
    let patterns = |list: &[glob::Pattern]| -> Vec<String> {
        list.iter().map(|p| p.as_str().to_string()).collect()
    };
    if json {
        for user in users.iter() {
            let line = serde_json::json!({
                "name": user.name,
                "read": patterns(&user.permissions.read),
                "write": patterns(&user.permissions.write),
                "admin": patterns(&user.permissions.admin),
                "mechanisms": ["SCRAM-SHA-256", "PLAIN"],
                "iterations": user.credential.iterations,
            });
            println!("{line}");
        }
        return Ok(());
    }
    if users.is_empty() {
        eprintln!(
            "no users in {} (add one with `rill users add NAME --file {}`)",
            path.display(),
            path.display()
        );
        return Ok(());
    }
    let show = |list: &[glob::Pattern]| {
        if list.is_empty() {
            "-".to_string()
        } else {
            patterns(list).join(",")
        }
    };
    let rows: Vec<[String; 4]> = users
        .iter()
        .map(|u| {
            [
                u.name.clone(),
                show(&u.permissions.read),
                show(&u.permissions.write),
                show(&u.permissions.admin),
            ]
        })
        .collect();
    let header = ["USER", "READ", "WRITE", "ADMIN"].map(String::from);
    let mut widths = [0usize; 4];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        println!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {}",
            row[0],
            row[1],
            row[2],
            row[3],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2]
        );
    }
    Ok(())
}
