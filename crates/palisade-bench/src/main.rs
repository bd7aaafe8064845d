//! `palisade-bench`: measures a homeserver through the Client-Server API, the same way for
//! Palisade and Synapse, on loopback. Each scenario prints a table row and one JSON line.
//!
//! The tool registers its own users (open registration with `m.login.dummy`), every loop is
//! bounded, and the whole run has a time limit.

mod client;
mod scenarios;
mod stats;

use std::time::Duration;

use clap::Parser;

/// Measure a Matrix homeserver.
#[derive(Parser, Debug, Clone)]
#[command(version, about)]
pub struct Args {
    /// Base URL of the homeserver's Client-Server API.
    #[arg(long, default_value = "http://127.0.0.1:8008")]
    pub base_url: String,
    /// Name printed with the results (`palisade`, `synapse`).
    #[arg(long, default_value = "server")]
    pub name: String,
    /// Scenarios to run, comma separated: ceiling, send, delivery, initial-sync, big-room,
    /// media, sliding-sync.
    #[arg(long, default_value = "ceiling,send,delivery,initial-sync,big-room")]
    pub scenarios: String,
    /// Process id of the server, for memory readings from /proc.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Data directory or database file of the server, for its size on disk.
    #[arg(long)]
    pub data: Option<std::path::PathBuf>,
    /// Concurrent senders in the throughput scenarios.
    #[arg(long, default_value_t = 10)]
    pub senders: usize,
    /// Messages sent one after another for latency.
    #[arg(long, default_value_t = 200)]
    pub sequential: usize,
    /// Seconds each throughput measurement runs.
    #[arg(long, default_value_t = 5)]
    pub seconds: u64,
    /// Long-polling syncs held open during the delivery scenario.
    #[arg(long, default_value_t = 200)]
    pub pollers: usize,
    /// Rooms of the initial-sync user.
    #[arg(long, default_value_t = 100)]
    pub rooms: usize,
    /// Users joining the big room.
    #[arg(long, default_value_t = 500)]
    pub members: usize,
    /// Size of the file the media scenario uploads and downloads, in MiB.
    #[arg(long, default_value_t = 1024)]
    pub media_mib: u64,
    /// Limit for the whole run, in seconds.
    #[arg(long, default_value_t = 900)]
    pub time_limit: u64,
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let limit = Duration::from_secs(args.time_limit);
    match tokio::time::timeout(limit, scenarios::run(&args)).await {
        Ok(Ok(())) => {}
        Ok(Err(error)) => {
            eprintln!("benchmark failed: {error}");
            std::process::exit(1);
        }
        Err(_) => {
            eprintln!("benchmark stopped at its time limit of {}s", args.time_limit);
            std::process::exit(2);
        }
    }
}
