//! `palisade`: run the homeserver, or administer accounts on its data directory.

use std::{io::BufRead, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Parser, Subcommand};
use palisade::{Server, load_config, open, open_with_media};
use palisade_core::{Config, Result, SystemClock};
use palisade_service::trust::Administrator;
use ruma::OwnedUserId;

/// The allocator: glibc's keeps the memory of large freed blocks (the ~19 MiB of each
/// argon2 hash, big `/sync` bodies) and the process never shrinks; mimalloc returns it.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Inspect, approve and sign out a user's devices.
    Device {
        #[command(subcommand)]
        command: DeviceCommand,
    },
    /// List, delete and quarantine media.
    Media {
        #[command(subcommand)]
        command: MediaCommand,
    },
    /// List and resolve users' reports of abuse.
    Report {
        #[command(subcommand)]
        command: ReportCommand,
    },
    /// Show the security audit log, newest first.
    Audit {
        /// Only this account (localpart or user id).
        #[arg(long)]
        user: Option<String>,
        /// Most entries to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

#[derive(Subcommand)]
enum ReportCommand {
    /// List reports, newest first (open ones unless --all).
    List {
        /// Resolved ones too.
        #[arg(long)]
        all: bool,
        /// Most reports to show.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Mark a report resolved.
    Resolve {
        /// The report's id.
        id: u64,
    },
}

#[derive(Subcommand)]
enum MediaCommand {
    /// List the media a user uploaded, newest first.
    List {
        /// Localpart or user id.
        user: String,
    },
    /// Delete media (an `mxc://` URI): its files and thumbnails leave the disk.
    Delete {
        /// `mxc://server/media_id`.
        uri: String,
    },
    /// Delete every piece of media a user uploaded.
    DeleteUser {
        /// Localpart or user id.
        user: String,
    },
    /// Quarantine media (an `mxc://` URI): kept as evidence, served to no one.
    Quarantine {
        /// `mxc://server/media_id`.
        uri: String,
        /// Serve it again instead.
        #[arg(long)]
        release: bool,
    },
}

#[derive(Subcommand)]
enum DeviceCommand {
    /// List a user's devices with their trust state.
    List {
        /// Localpart or user id.
        user: String,
    },
    /// Approve a device, as if its owner had verified it.
    Approve {
        /// Localpart or user id.
        user: String,
        /// Device id.
        device: String,
    },
    /// Sign a device out: its access token, keys and pending messages go.
    SignOut {
        /// Localpart or user id.
        user: String,
        /// Device id.
        device: String,
    },
    /// Sign out every device of the account.
    SignOutAll {
        /// Localpart or user id.
        user: String,
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
        /// Also delete every piece of media the account uploaded.
        #[arg(long)]
        delete_media: bool,
    },
    /// Set a new password (read from standard input unless given) and end every session.
    ResetPassword {
        /// Localpart or user id.
        user: String,
        /// New password; prefer standard input.
        #[arg(long)]
        password: Option<String>,
    },
    /// Let the user replace their cross-signing keys from a new, untrusted device for a while
    /// (for someone who lost every device and the recovery key).
    AllowReset {
        /// Localpart or user id.
        user: String,
        /// How long the grant lasts.
        #[arg(long, default_value_t = 60)]
        minutes: u64,
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
    let (services, media) = open_with_media(config, Arc::new(SystemClock)).await?;
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
        UserCommand::Deactivate { user, delete_media } => {
            let user_id = existing(&user)?;
            accounts.deactivate(&user_id).await?;
            println!("deactivated {user_id}");
            if delete_media {
                let deleted = media.delete_all_of(&Administrator::console(), &user_id).await?;
                println!("deleted {deleted} media of {user_id}");
            }
        }
        UserCommand::ResetPassword { user, password } => {
            let user_id = existing(&user)?;
            let password = read_password(password)?;
            accounts.set_password(&user_id, &password).await?;
            accounts.logout_all(&user_id, None, Some(Administrator::console().name())).await?;
            println!("password reset for {user_id}; all sessions ended");
        }
        UserCommand::AllowReset { user, minutes } => {
            let user_id = existing(&user)?;
            let until = services.trust.now().saturating_add(minutes.saturating_mul(60_000));
            let console = Administrator::console();
            services.trust.allow_cross_signing_reset(&console, &user_id, until).await?;
            println!("{user_id} may replace their cross-signing keys for {minutes} minutes");
        }
        UserCommand::MakeAdmin { user, revoke } => {
            let user_id = existing(&user)?;
            accounts.set_admin(&user_id, !revoke).await?;
            println!("{user_id} is {}an administrator", if revoke { "no longer " } else { "" });
        }
    }
    finish(&services).await;
    Ok(())
}

async fn device_command(config: Config, command: DeviceCommand) -> Result<()> {
    let services = open(config, Arc::new(SystemClock)).await?;
    let user_id = |user: &str| services.accounts.local_user_id(user);
    let console = Administrator::console();
    match command {
        DeviceCommand::List { user } => {
            for (device, trusted) in services.trust.devices(&console, &user_id(&user)?).await? {
                let state = if trusted { "trusted" } else { "untrusted" };
                let name = device.display_name.unwrap_or_default();
                let approval = device.approval.unwrap_or_default();
                println!("{}\t{state}\t{approval}\t{name}", device.device_id);
            }
        }
        DeviceCommand::Approve { user, device } => {
            let user_id = user_id(&user)?;
            if !services.trust.approve(&console, &user_id, device.as_str().into()).await? {
                return Err(palisade_core::Error::not_found("No such device"));
            }
            println!("approved {device} of {user_id}");
        }
        DeviceCommand::SignOut { user, device } => {
            let user_id = user_id(&user)?;
            services.accounts.device(&user_id, device.as_str().into()).await?;
            services
                .accounts
                .delete_devices(&user_id, &[device.as_str().into()], Some(console.name()))
                .await?;
            println!("signed out {device} of {user_id}");
        }
        DeviceCommand::SignOutAll { user } => {
            let user_id = user_id(&user)?;
            services.accounts.logout_all(&user_id, None, Some(console.name())).await?;
            println!("signed out every device of {user_id}");
        }
    }
    finish(&services).await;
    Ok(())
}

/// The server and media id of an `mxc://` URI.
fn mxc(uri: &str) -> Result<(ruma::OwnedServerName, String)> {
    let invalid = || palisade_core::Error::invalid_param(format!("not an mxc:// URI: {uri}"));
    let (server, media_id) =
        uri.strip_prefix("mxc://").and_then(|rest| rest.split_once('/')).ok_or_else(invalid)?;
    Ok((server.try_into().map_err(|_| invalid())?, media_id.to_owned()))
}

async fn media_command(config: Config, command: MediaCommand) -> Result<()> {
    let (services, media) = open_with_media(config, Arc::new(SystemClock)).await?;
    let console = Administrator::console();
    match command {
        MediaCommand::List { user } => {
            let user_id = services.accounts.local_user_id(&user)?;
            for row in media.media_of(&console, &user_id).await? {
                let state = if row.quarantined { "quarantined" } else { "" };
                println!(
                    "mxc://{}/{}	{}	{}	{}	{state}",
                    row.origin,
                    row.media_id,
                    row.size,
                    row.content_type.unwrap_or_default(),
                    row.upload_name.unwrap_or_default()
                );
            }
        }
        MediaCommand::Delete { uri } => {
            let (server, media_id) = mxc(&uri)?;
            media.delete(&console, &server, &media_id).await?;
            println!("deleted {uri}");
        }
        MediaCommand::DeleteUser { user } => {
            let user_id = services.accounts.local_user_id(&user)?;
            let deleted = media.delete_all_of(&console, &user_id).await?;
            println!("deleted {deleted} media of {user_id}");
        }
        MediaCommand::Quarantine { uri, release } => {
            let (server, media_id) = mxc(&uri)?;
            media.quarantine(&console, &server, &media_id, !release).await?;
            println!("{uri} is {}", if release { "served again" } else { "quarantined" });
        }
    }
    finish(&services).await;
    Ok(())
}

async fn report_command(config: Config, command: ReportCommand) -> Result<()> {
    let services = open(config, Arc::new(SystemClock)).await?;
    let console = Administrator::console();
    match command {
        ReportCommand::List { all, limit } => {
            for row in services.reports.reports(&console, all, None, limit).await? {
                let report = &row.report;
                let subject = [
                    report.room_id.as_ref().map(ToString::to_string),
                    report.event_id.as_ref().map(ToString::to_string),
                    report.user_id.as_ref().map(ToString::to_string),
                ];
                let subject: Vec<String> = subject.into_iter().flatten().collect();
                let state = match &row.resolved {
                    Some((_, by)) => format!("resolved by {by}"),
                    None => "open".to_owned(),
                };
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{state}",
                    row.id,
                    report.received_ts,
                    report.reporter,
                    subject.join(" "),
                    report.reason.as_deref().unwrap_or_default().replace(['\n', '\t'], " "),
                );
            }
        }
        ReportCommand::Resolve { id } => {
            services.reports.resolve(&console, id).await?;
            println!("report {id} resolved");
        }
    }
    finish(&services).await;
    Ok(())
}

/// Waits for the security notices an administrative command caused to be posted.
async fn finish(services: &palisade_service::Services) {
    services.notice_queue.drain().await;
}

async fn audit_command(config: Config, user: Option<String>, limit: usize) -> Result<()> {
    let services = open(config, Arc::new(SystemClock)).await?;
    let user_id = user.map(|u| services.accounts.local_user_id(&u)).transpose()?;
    for entry in
        services.trust.audit_log(&Administrator::console(), user_id.as_deref(), limit).await?
    {
        let device = entry.device_id.map(|d| d.to_string()).unwrap_or_default();
        let actor = entry.actor.unwrap_or_default();
        println!(
            "{}\t{}\t{}\t{device}\t{actor}\t{}",
            entry.ts, entry.kind, entry.user_id, entry.detail
        );
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

/// Palisade's own notices at `info`; libraries (ruma's auth rules log every event at `info`)
/// only when something is wrong. `RUST_LOG` overrides it.
const DEFAULT_LOG_FILTER: &str = "warn,palisade=info,palisade_api=info,palisade_federation=info,\
                                  palisade_service=info,palisade_storage_sqlite=info";

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| DEFAULT_LOG_FILTER.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = async {
        let config = load_config(cli.config.as_deref())?;
        match cli.command {
            Command::Serve => Server::bind(config).await?.run(shutdown_signal()).await,
            Command::User { command } => user_command(config, command).await,
            Command::Device { command } => device_command(config, command).await,
            Command::Media { command } => media_command(config, command).await,
            Command::Report { command } => report_command(config, command).await,
            Command::Audit { user, limit } => audit_command(config, user, limit).await,
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
