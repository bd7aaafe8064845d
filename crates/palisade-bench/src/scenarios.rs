//! The scenarios. Each sets up what it needs with fresh users and rooms, measures, and reports.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::Method;
use serde_json::{Value, json};

use crate::{
    Args,
    client::{Result, Server, User},
    stats::{Samples, report, round},
};

/// Events this run created, for the database size per event.
static EVENTS: AtomicU64 = AtomicU64::new(0);
/// Events a `createRoom` with the public preset creates (create, member, power levels, join
/// rules, history visibility, plus a name).
const EVENTS_PER_ROOM: u64 = 6;

/// Runs the scenarios named in `args`.
pub async fn run(args: &Args) -> Result<()> {
    let server = Server::new(&args.base_url);
    server.ok(Method::GET, "/_matrix/client/versions", None, None).await?;
    footprint(args, "start");
    for scenario in args.scenarios.split(',').map(str::trim) {
        match scenario {
            "ceiling" => ceiling(&server, args).await?,
            "send" => send(&server, args).await?,
            "delivery" => delivery(&server, args).await?,
            "initial-sync" => initial_sync(&server, args).await?,
            "big-room" => big_room(&server, args).await?,
            "media" => media(&server, args).await?,
            "sliding-sync" => sliding_sync(&server, args).await?,
            other => return Err(format!("unknown scenario {other}")),
        }
        footprint(args, scenario);
    }
    Ok(())
}

/// Resident memory of the server process in KiB, when known.
fn rss_kb(pid: Option<u32>) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid?)).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
}

/// Samples the server's resident memory every 50 ms until `done`; returns the peak in MiB.
fn watch_rss(
    pid: Option<u32>,
    done: Arc<std::sync::atomic::AtomicBool>,
) -> tokio::task::JoinHandle<f64> {
    tokio::spawn(async move {
        let mut peak = 0;
        while !done.load(Ordering::Relaxed) {
            peak = peak.max(rss_kb(pid).unwrap_or(0));
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        round(peak as f64 / 1024.0)
    })
}

/// Uploads a file of `--media-mib` MiB (streamed, never held whole by the client), then
/// downloads it: throughput each way and the server's peak resident memory meanwhile.
async fn media(server: &Server, args: &Args) -> Result<()> {
    const CHUNK: usize = 1 << 20;
    let user = server.register("media").await?;
    let chunks = args.media_mib;
    let chunk: bytes::Bytes = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect::<Vec<_>>().into();
    let body = futures_util::stream::iter(
        (0..chunks).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
    );
    let size = chunks * CHUNK as u64;
    let before = rss_kb(args.pid).map(|kb| round(kb as f64 / 1024.0));
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_rss(args.pid, done.clone());
    let started = Instant::now();
    let response = server
        .http
        .post(format!("{}/_matrix/media/v3/upload?filename=bench.bin", server.base))
        .bearer_auth(&user.token)
        .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
        .header(reqwest::header::CONTENT_LENGTH, size)
        .body(reqwest::Body::wrap_stream(body))
        .send()
        .await
        .map_err(|e| format!("upload: {e}"))?;
    let upload_s = started.elapsed().as_secs_f64();
    let status = response.status();
    let answer: Value = response.json().await.map_err(|e| format!("upload answer: {e}"))?;
    done.store(true, Ordering::Relaxed);
    let upload_peak = watcher.await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("upload: {status} {answer}"));
    }
    let uri = answer["content_uri"].as_str().ok_or("no content_uri")?.to_owned();

    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watcher = watch_rss(args.pid, done.clone());
    let started = Instant::now();
    let path = uri.trim_start_matches("mxc://");
    let mut response = server
        .http
        .get(format!("{}/_matrix/client/v1/media/download/{path}", server.base))
        .bearer_auth(&user.token)
        .send()
        .await
        .map_err(|e| format!("download: {e}"))?;
    let mut received = 0u64;
    while let Some(part) = response.chunk().await.map_err(|e| format!("download: {e}"))? {
        received += part.len() as u64;
    }
    let download_s = started.elapsed().as_secs_f64();
    done.store(true, Ordering::Relaxed);
    let download_peak = watcher.await.map_err(|e| e.to_string())?;
    if received != size {
        return Err(format!("download: {received} of {size} bytes"));
    }
    let mib = size as f64 / 1_048_576.0;
    report(
        &args.name,
        &format!("media {} MiB upload, download", chunks),
        json!({
            "upload_mib_per_s": round(mib / upload_s),
            "download_mib_per_s": round(mib / download_s),
            "rss_mb_before": before,
            "rss_mb_peak_upload": upload_peak,
            "rss_mb_peak_download": download_peak,
        }),
    );
    Ok(())
}

/// Memory of the server process and size of its data on disk, when known.
fn footprint(args: &Args, after: &str) {
    let rss_kb = rss_kb(args.pid);
    let disk = args.data.as_deref().map(disk_bytes);
    let events = EVENTS.load(Ordering::Relaxed);
    let per_100k = match (disk, events) {
        (Some(bytes), events) if events > 0 => {
            Some(round(bytes as f64 / events as f64 * 100_000.0 / 1_048_576.0))
        }
        _ => None,
    };
    report(
        &args.name,
        &format!("footprint after {after}"),
        json!({ "rss_mb": rss_kb.map(|kb| round(kb as f64 / 1024.0)), "disk_mb": disk.map(|b| round(b as f64 / 1_048_576.0)), "events_created": events, "disk_mb_per_100k_events": per_100k }),
    );
}

fn disk_bytes(path: &std::path::Path) -> u64 {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_file() => meta.len(),
        Ok(_) => std::fs::read_dir(path)
            .map(|entries| entries.flatten().map(|e| disk_bytes(&e.path())).sum())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// Runs `task` on `workers` tasks for `seconds`; returns completed operations per second.
async fn throughput<F, Fut>(workers: usize, seconds: u64, task: F) -> Result<f64>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<()>> + Send,
{
    let task = Arc::new(task);
    let done = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let handles: Vec<_> = (0..workers)
        .map(|worker| {
            let (task, done) = (task.clone(), done.clone());
            tokio::spawn(async move {
                while Instant::now() < deadline {
                    task(worker).await?;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok::<(), String>(())
            })
        })
        .collect();
    for handle in handles {
        handle.await.map_err(|e| e.to_string())??;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64())
}

/// The ceiling: a route that touches no storage, under the same load generator.
async fn ceiling(server: &Server, args: &Args) -> Result<()> {
    let s = server.clone();
    let rate = throughput(args.senders, args.seconds, move |_| {
        let s = s.clone();
        async move { s.ok(Method::GET, "/_matrix/client/versions", None, None).await.map(drop) }
    })
    .await?;
    report(
        &args.name,
        "ceiling GET /versions",
        json!({ "requests_per_s": round(rate), "connections": args.senders }),
    );
    Ok(())
}

async fn public_room(server: &Server, owner: &User) -> Result<String> {
    let room =
        server.create_room(owner, json!({ "preset": "public_chat", "name": "bench" })).await?;
    EVENTS.fetch_add(EVENTS_PER_ROOM, Ordering::Relaxed);
    Ok(room)
}

async fn users(server: &Server, prefix: &str, count: usize) -> Result<Vec<User>> {
    let mut users = Vec::with_capacity(count);
    for _ in 0..count {
        users.push(server.register(prefix).await?);
    }
    Ok(users)
}

/// Send latency one after another, and throughput of concurrent senders into one room and
/// into a room each.
async fn send(server: &Server, args: &Args) -> Result<()> {
    let owner = server.register("sender").await?;
    let room = public_room(server, &owner).await?;
    let mut latencies = Vec::with_capacity(args.sequential);
    for i in 0..args.sequential {
        let started = Instant::now();
        server.send(&owner, &room, &format!("sequential {i}")).await?;
        latencies.push(started.elapsed());
    }
    EVENTS.fetch_add(args.sequential as u64, Ordering::Relaxed);
    let samples = Samples::new(&latencies);
    report(
        &args.name,
        "send sequential",
        json!({ "p50_ms": round(samples.percentile(50.0)), "p99_ms": round(samples.percentile(99.0)), "messages": args.sequential }),
    );

    let senders = Arc::new(users(server, "sender", args.senders).await?);
    for sender in senders.iter() {
        server.join(sender, &room).await?;
    }
    EVENTS.fetch_add(args.senders as u64, Ordering::Relaxed);
    let (s, who, target) = (server.clone(), senders.clone(), room.clone());
    let one_room = throughput(args.senders, args.seconds, move |worker| {
        let (s, who, target) = (s.clone(), who.clone(), target.clone());
        async move { s.send(&who[worker], &target, "concurrent").await.map(drop) }
    })
    .await?;
    EVENTS.fetch_add((one_room * args.seconds as f64) as u64, Ordering::Relaxed);
    report(
        &args.name,
        "send concurrent, one room",
        json!({ "events_per_s": round(one_room), "senders": args.senders }),
    );

    let mut rooms = Vec::with_capacity(args.senders);
    for sender in senders.iter() {
        rooms.push(public_room(server, sender).await?);
    }
    let (s, who, rooms) = (server.clone(), senders.clone(), Arc::new(rooms));
    let many = throughput(args.senders, args.seconds, move |worker| {
        let (s, who, rooms) = (s.clone(), who.clone(), rooms.clone());
        async move { s.send(&who[worker], &rooms[worker], "concurrent").await.map(drop) }
    })
    .await?;
    EVENTS.fetch_add((many * args.seconds as f64) as u64, Ordering::Relaxed);
    report(
        &args.name,
        "send concurrent, room each",
        json!({ "events_per_s": round(many), "senders": args.senders }),
    );
    Ok(())
}

/// Whether a sync response carries `event_id` in `room`'s timeline.
fn carries(sync: &Value, room: &str, event_id: &str) -> bool {
    sync["rooms"]["join"][room]["timeline"]["events"]
        .as_array()
        .is_some_and(|events| events.iter().any(|e| e["event_id"] == event_id))
}

/// Time from a send returning to the event reaching another user's long-poll: first with many
/// long-polls open elsewhere (what idle connections cost), then with all of them in the room
/// (every message wakes every one of them).
async fn delivery(server: &Server, args: &Args) -> Result<()> {
    let sender = server.register("deliver").await?;
    let observer = server.register("observer").await?;
    let room = public_room(server, &sender).await?;
    server.join(&observer, &room).await?;
    let lobby = public_room(server, &sender).await?;
    let pollers = users(server, "poller", args.pollers).await?;
    for poller in &pollers {
        server.join(poller, &lobby).await?;
    }
    let open = args.pollers + 1;
    let polling = LongPolls::start(server, &pollers).await?;
    let idle = deliveries(server, args, &sender, &observer, &room).await?;
    report(&args.name, "delivery, idle long-polls", idle.fields(open));
    polling.stop().await;
    for poller in &pollers {
        server.join(poller, &room).await?;
    }
    EVENTS.fetch_add(2 * args.pollers as u64, Ordering::Relaxed);
    let polling = LongPolls::start(server, &pollers).await?;
    let fan_out = deliveries(server, args, &sender, &observer, &room).await?;
    report(&args.name, "delivery, fan-out", fan_out.fields(open));
    polling.stop().await;
    Ok(())
}

/// Long-polling `/sync` loops, one per user.
struct LongPolls(Vec<tokio::task::JoinHandle<()>>);

/// Longest a long-poll of the background users waits, in milliseconds.
const POLL_TIMEOUT_MS: u64 = 5000;
/// Longest the background users' initial syncs may take, in tenths of a second.
const START_LIMIT_TENTHS: u32 = 6000;

impl LongPolls {
    /// Starts the loops and returns once every one has done its initial sync.
    async fn start(server: &Server, users: &[User]) -> Result<Self> {
        let ready = Arc::new(AtomicU64::new(0));
        let handles = users
            .iter()
            .cloned()
            .map(|user| {
                let (s, ready) = (server.clone(), ready.clone());
                tokio::spawn(async move {
                    let Ok((first, _)) = s.sync(&user, "timeout=0").await else { return };
                    ready.fetch_add(1, Ordering::Relaxed);
                    let mut since = first["next_batch"].as_str().unwrap_or_default().to_owned();
                    let timeout = format!("&timeout={POLL_TIMEOUT_MS}");
                    while let Ok((next, _)) =
                        s.sync(&user, &format!("since={since}{timeout}")).await
                    {
                        since = next["next_batch"].as_str().unwrap_or_default().to_owned();
                    }
                })
            })
            .collect();
        let polls = Self(handles);
        // Synapse answers a thousand initial syncs in minutes, not seconds.
        for _ in 0..START_LIMIT_TENTHS {
            if ready.load(Ordering::Relaxed) as usize == users.len() {
                // Let the last ones reach their long-poll.
                tokio::time::sleep(Duration::from_millis(200)).await;
                return Ok(polls);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        polls.stop().await;
        Err("the long-polls did not start within ten minutes".into())
    }

    /// Stops the loops and waits until the server has let their last requests time out.
    async fn stop(self) {
        for handle in &self.0 {
            handle.abort();
        }
        tokio::time::sleep(Duration::from_millis(POLL_TIMEOUT_MS + 500)).await;
    }
}

/// What [`deliveries`] measured.
struct Deliveries {
    delays: Samples,
    server_cpu_ms: Option<f64>,
}

impl Deliveries {
    fn fields(&self, open: usize) -> Value {
        json!({ "p50_ms": round(self.delays.percentile(50.0)), "p99_ms": round(self.delays.percentile(99.0)), "open_long_polls": open, "server_cpu_ms_per_message": self.server_cpu_ms.map(round) })
    }
}

/// Sends messages one at a time and times each until the observer's long-poll returns it;
/// with the server's CPU time per message, when its pid is known.
async fn deliveries(
    server: &Server,
    args: &Args,
    sender: &User,
    observer: &User,
    room: &str,
) -> Result<Deliveries> {
    let (first, _) = server.sync(observer, "timeout=0").await?;
    let mut since = first["next_batch"].as_str().unwrap_or_default().to_owned();
    let rounds = 50;
    let mut delays = Vec::with_capacity(rounds);
    let cpu_before = args.pid.and_then(cpu_seconds);
    for i in 0..rounds {
        let (s, o, query) =
            (server.clone(), observer.clone(), format!("since={since}&timeout=10000"));
        let poll = tokio::spawn(async move { s.sync(&o, &query).await });
        // Let the long-poll reach the server before sending.
        tokio::time::sleep(Duration::from_millis(30)).await;
        let event_id = server.send(sender, room, &format!("delivery {i}")).await?;
        let sent = Instant::now();
        let (mut sync, _) = poll.await.map_err(|e| e.to_string())??;
        while !carries(&sync, room, &event_id) {
            let query =
                format!("since={}&timeout=10000", sync["next_batch"].as_str().unwrap_or_default());
            sync = server.sync(observer, &query).await?.0;
        }
        delays.push(sent.elapsed());
        since = sync["next_batch"].as_str().unwrap_or_default().to_owned();
    }
    // The other long-polls may still be answering the last message.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_after = args.pid.and_then(cpu_seconds);
    EVENTS.fetch_add(rounds as u64, Ordering::Relaxed);
    let server_cpu_ms = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => Some((after - before) * 1000.0 / rounds as f64),
        _ => None,
    };
    Ok(Deliveries { delays: Samples::new(&delays), server_cpu_ms })
}

/// CPU time (user and system) a process has used, in seconds.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces; utime and
    // stime are the 14th and 15th fields, in USER_HZ (100 per second on Linux).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(ticks as f64 / 100.0)
}

/// The initial sync of a user in many rooms with some history.
async fn initial_sync(server: &Server, args: &Args) -> Result<()> {
    let user = server.register("initial").await?;
    for i in 0..args.rooms {
        let room = public_room(server, &user).await?;
        server.send(&user, &room, &format!("history {i} a")).await?;
        server.send(&user, &room, &format!("history {i} b")).await?;
    }
    EVENTS.fetch_add(args.rooms as u64 * 2, Ordering::Relaxed);
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..3 {
        let started = Instant::now();
        let (sync, size) = server.sync(&user, "").await?;
        times.push(started.elapsed());
        bytes = size;
        let joined = sync["rooms"]["join"].as_object().map_or(0, |j| j.len());
        if joined < args.rooms {
            return Err(format!("initial sync listed {joined} of {} rooms", args.rooms));
        }
    }
    let samples = Samples::new(&times);
    report(
        &args.name,
        "initial sync",
        json!({ "median_ms": round(samples.percentile(50.0)), "bytes": bytes, "rooms": args.rooms }),
    );
    Ok(())
}

/// What Element X's room list asks first: the 20 most recently active rooms, one event each,
/// with the state it names rooms by.
fn room_list_request() -> Value {
    json!({
        "conn_id": "room-list",
        "lists": { "all_rooms": {
            "ranges": [[0, 19]],
            "timeline_limit": 1,
            "required_state": [
                ["m.room.name", ""], ["m.room.encryption", ""], ["m.room.member", "$LAZY"],
                ["m.room.member", "$ME"], ["m.room.topic", ""], ["m.room.avatar", ""],
                ["m.room.canonical_alias", ""], ["m.room.power_levels", ""],
                ["m.room.join_rules", ""], ["m.room.create", ""], ["m.room.history_visibility", ""],
            ],
        }},
        "extensions": { "account_data": { "enabled": true }, "receipts": { "enabled": true }, "typing": { "enabled": true } },
    })
}

/// Whether a sliding sync response carries `event_id` in `room`'s timeline.
fn slides(response: &Value, room: &str, event_id: &str) -> bool {
    response["rooms"][room]["timeline"]
        .as_array()
        .is_some_and(|events| events.iter().any(|e| e["event_id"] == event_id))
}

/// Simplified sliding sync (Element X): the first room-list response of a user in
/// `--rooms` rooms, then delivery of a message to `--pollers` long-polling connections.
async fn sliding_sync(server: &Server, args: &Args) -> Result<()> {
    let user = server.register("slider").await?;
    let mut last = String::new();
    for i in 0..args.rooms {
        last = public_room(server, &user).await?;
        server.send(&user, &last, &format!("history {i}")).await?;
    }
    EVENTS.fetch_add(args.rooms as u64, Ordering::Relaxed);
    let request = room_list_request();
    let (mut times, mut bytes) = (Vec::new(), 0);
    for _ in 0..3 {
        let started = Instant::now();
        let (response, size) = server.sliding_sync(&user, None, 0, &request).await?;
        times.push(started.elapsed());
        bytes = size;
        let sent = response["rooms"].as_object().map_or(0, |r| r.len());
        if sent != 20.min(args.rooms) || response["rooms"].get(&last).is_none() {
            return Err(format!("the room list sent {sent} rooms, or not the latest"));
        }
    }
    let samples = Samples::new(&times);
    report(
        &args.name,
        "sliding sync, first room list",
        json!({ "median_ms": round(samples.percentile(50.0)), "bytes": bytes, "rooms": args.rooms }),
    );

    // Every poller holds a room-list connection on a room the observer's messages go to.
    let sender = server.register("slidesend").await?;
    let observer = server.register("slideobs").await?;
    let room = public_room(server, &sender).await?;
    server.join(&observer, &room).await?;
    let pollers = users(server, "slidepoll", args.pollers).await?;
    for poller in &pollers {
        server.join(poller, &room).await?;
    }
    EVENTS.fetch_add(2 + 2 * args.pollers as u64, Ordering::Relaxed);
    let loops: Vec<_> = pollers
        .into_iter()
        .map(|poller| {
            let (s, request) = (server.clone(), request.clone());
            tokio::spawn(async move {
                let Ok((first, _)) = s.sliding_sync(&poller, None, 0, &request).await else {
                    return;
                };
                let mut pos = first["pos"].as_str().unwrap_or_default().to_owned();
                while let Ok((next, _)) =
                    s.sliding_sync(&poller, Some(&pos), POLL_TIMEOUT_MS, &request).await
                {
                    pos = next["pos"].as_str().unwrap_or_default().to_owned();
                }
            })
        })
        .collect();
    // Let the connections reach their long-poll.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (first, _) = server.sliding_sync(&observer, None, 0, &request).await?;
    let mut pos = first["pos"].as_str().unwrap_or_default().to_owned();
    let rounds = 50;
    let mut delays = Vec::with_capacity(rounds);
    let cpu_before = args.pid.and_then(cpu_seconds);
    for i in 0..rounds {
        let (s, o, p, r) = (server.clone(), observer.clone(), pos.clone(), request.clone());
        let poll = tokio::spawn(async move { s.sliding_sync(&o, Some(&p), 10_000, &r).await });
        tokio::time::sleep(Duration::from_millis(30)).await;
        let event_id = server.send(&sender, &room, &format!("slide {i}")).await?;
        let sent = Instant::now();
        let (mut response, _) = poll.await.map_err(|e| e.to_string())??;
        while !slides(&response, &room, &event_id) {
            let p = response["pos"].as_str().unwrap_or_default().to_owned();
            response = server.sliding_sync(&observer, Some(&p), 10_000, &request).await?.0;
        }
        delays.push(sent.elapsed());
        pos = response["pos"].as_str().unwrap_or_default().to_owned();
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let cpu_after = args.pid.and_then(cpu_seconds);
    for handle in &loops {
        handle.abort();
    }
    EVENTS.fetch_add(rounds as u64, Ordering::Relaxed);
    let server_cpu_ms = match (cpu_before, cpu_after) {
        (Some(before), Some(after)) => Some((after - before) * 1000.0 / rounds as f64),
        _ => None,
    };
    let deliveries = Deliveries { delays: Samples::new(&delays), server_cpu_ms };
    report(&args.name, "sliding sync, fan-out", deliveries.fields(args.pollers + 1));
    tokio::time::sleep(Duration::from_millis(POLL_TIMEOUT_MS + 500)).await;
    Ok(())
}

/// Joins into one room as it grows, `/members`, and a lazy-loading sync of the room.
async fn big_room(server: &Server, args: &Args) -> Result<()> {
    let owner = server.register("bigowner").await?;
    let room = public_room(server, &owner).await?;
    let members = users(server, "member", args.members).await?;
    let mut joins = Vec::with_capacity(args.members);
    for member in &members {
        let started = Instant::now();
        server.join(member, &room).await?;
        joins.push(started.elapsed());
    }
    EVENTS.fetch_add(args.members as u64, Ordering::Relaxed);
    let tenth = (args.members / 10).max(1);
    let first = Samples::new(&joins[..tenth]);
    let last = Samples::new(&joins[joins.len() - tenth..]);
    report(
        &args.name,
        "big room joins",
        json!({ "members": args.members, "first_tenth_p50_ms": round(first.percentile(50.0)), "last_tenth_p50_ms": round(last.percentile(50.0)) }),
    );
    let started = Instant::now();
    let (status, listed, bytes) = server
        .call(
            Method::GET,
            &format!("/_matrix/client/v3/rooms/{room}/members"),
            Some(&owner.token),
            None,
        )
        .await?;
    let members_ms = started.elapsed().as_secs_f64() * 1000.0;
    if !status.is_success() || listed["chunk"].as_array().map_or(0, Vec::len) < args.members {
        return Err(format!("/members: {status}"));
    }
    let newcomer = &members[members.len() - 1];
    let filter = json!({ "room": { "rooms": [room], "state": { "lazy_load_members": true }, "timeline": { "limit": 10 } } }).to_string();
    let started = Instant::now();
    let (_, lazy_bytes) = server.sync(newcomer, &format!("filter={}", urlencode(&filter))).await?;
    let lazy_ms = started.elapsed().as_secs_f64() * 1000.0;
    report(
        &args.name,
        "big room reads",
        json!({ "members_ms": round(members_ms), "members_bytes": bytes, "lazy_sync_ms": round(lazy_ms), "lazy_sync_bytes": lazy_bytes }),
    );
    Ok(())
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}
