//! `palisade`: run the homeserver, or administer accounts on its data directory.

use std::{io::BufRead, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use palisade::{Server, load_config, open};
use palisade_core::{Config, Result, SystemClock};
use ruma::OwnedUserId;

/// A sovereign Matrix homeserver.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML); defaults apply without one.
    #[arg(long, global = true, env = "PALISADE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve,
    /// Manage accounts in the data directory (works while the server runs).
    User {
        #[command(subcommand)]
        command: UserCommand,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Create an account. The password is read from standard input unless given.
    Create {
        /// Localpart (or full user id) of the new account.
        user: String,
        /// Password; prefer standard input, which stays out of the process list.
        #[arg(long)]
        password: Option<String>,
        /// Make the account a server administrator.
        #[arg(long)]
        admin: bool,
    },
    /// List accounts.
    List,
    /// Deactivate an account: it can no longer log in and every session ends.
    Deactivate {
        /// Localpart or user id.
        user: String,
    },
    /// Set a new password (read from standard input unless given) and end every session.
    ResetPassword {
        /// Localpart or user id.
        user: String,
        /// New password; prefer standard input.
        #[arg(long)]
        password: Option<String>,
    },
    /// Grant (or with --revoke, remove) server administration rights.
    MakeAdmin {
        /// Localpart or user id.
        user: String,
        /// Remove the rights instead.
        #[arg(long)]
        revoke: bool,
    },
}

fn read_password(given: Option<String>) -> Result<String> {
    if let Some(password) = given {
        return Ok(password);
    }
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| palisade_core::Error::invalid_param(format!("reading password: {e}")))?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn user_command(config: Config, command: UserCommand) -> Result<()> {
    let services = open(config, Arc::new(SystemClock)).await?;
    let accounts = &services.accounts;
    let existing = |user: &str| -> Result<OwnedUserId> { accounts.local_user_id(user) };
    match command {
        UserCommand::Create { user, password, admin } => {
            let localpart =
                user.strip_prefix('@').and_then(|u| u.split(':').next()).unwrap_or(&user);
            let user_id = accounts.check_available(localpart).await?;
            let password = read_password(password)?;
            accounts.create_user(&user_id, Some(&password), admin).await?;
            println!("created {user_id}");
        }
        UserCommand::List => {
            for user in accounts.users().await? {
                let mut flags = Vec::new();
                if user.admin {
                    flags.push("admin");
                }
                if user.deactivated {
                    flags.push("deactivated");
                }
                println!("{}\t{}", user.user_id, flags.join(","));
            }
        }
        UserCommand::Deactivate { user } => {
            let user_id = existing(&user)?;
            accounts.deactivate(&user_id).await?;
            println!("deactivated {user_id}");
        }
        UserCommand::ResetPassword { user, password } => {
            let user_id = existing(&user)?;
            let password = read_password(password)?;
            accounts.set_password(&user_id, &password).await?;
            accounts.logout_all(&user_id, None).await?;
            println!("password reset for {user_id}; all sessions ended");
        }
        UserCommand::MakeAdmin { user, revoke } => {
            let user_id = existing(&user)?;
            accounts.set_admin(&user_id, !revoke).await?;
            println!("{user_id} is {}an administrator", if revoke { "no longer " } else { "" });
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down");
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = async {
        let config = load_config(cli.config.as_deref())?;
        match cli.command {
            Command::Serve => Server::bind(config).await?.run(shutdown_signal()).await,
            Command::User { command } => user_command(config, command).await,
        }
    }
    .await;
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", e.message);
            ExitCode::FAILURE
        }
    }
}
