//! The outbound queue: every event a local user sends is queued, in the same order, for each
//! server in its room, and sent in transactions with retries. The queue lives in storage, so
//! what a client was told is sent survives the peer being down and this server restarting.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#transactions>

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use palisade_core::{Error, ErrorKind, Result};
use palisade_service::{E2eeService, RemoteRoomService, Services, rooms::RoomService};
use palisade_storage::{FederationStore, OutboxRow, QueuedUpTo};
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedServerName, OwnedTransactionId, ServerName,
    api::federation::transactions::send_transaction_message, serde::Raw,
};
use tokio::{sync::Notify, task::JoinSet};

use crate::{FederationClient, pdu::to_raw};

/// Events read from the stream per round.
const STREAM_BATCH: usize = 200;
/// Most PDUs and EDUs in one transaction (spec).
const TXN_PDUS: usize = 50;
const TXN_EDUS: usize = 100;
/// Retry delays: doubling from the first, up to the last.
const FIRST_RETRY: Duration = Duration::from_millis(500);
const LONGEST_RETRY: Duration = Duration::from_secs(600);

/// The oldest queued items that fit one transaction (at most 50 PDUs and 100 EDUs).
fn batch_of(rows: &[OutboxRow]) -> &[OutboxRow] {
    let (mut pdus, mut edus) = (0, 0);
    let end = rows
        .iter()
        .position(|row| {
            pdus += usize::from(row.pdu.is_some());
            edus += usize::from(row.edu.is_some());
            pdus > TXN_PDUS || edus > TXN_EDUS
        })
        .unwrap_or(rows.len());
    &rows[..end]
}

/// A destination's worker: woken when items are queued, and when the peer shows it is up.
#[derive(Default)]
struct Destination {
    queued: Notify,
    up: Notify,
}

/// Queues local events for other servers and sends them.
pub struct Sender {
    origin: OwnedServerName,
    rooms: Arc<RoomService>,
    remote_rooms: Arc<RemoteRoomService>,
    e2ee: Arc<E2eeService>,
    store: Arc<dyn FederationStore>,
    client: Arc<FederationClient>,
    destinations: Mutex<HashMap<OwnedServerName, Arc<Destination>>>,
    tasks: Mutex<JoinSet<()>>,
}

impl Sender {
    /// A sender for events of `rooms`, queueing in `store`, sending with `client`.
    pub fn new(
        origin: OwnedServerName,
        services: &Services,
        store: Arc<dyn FederationStore>,
        client: Arc<FederationClient>,
    ) -> Self {
        Self {
            origin,
            rooms: services.rooms.clone(),
            remote_rooms: services.remote_rooms.clone(),
            e2ee: services.e2ee.clone(),
            store,
            client,
            destinations: Mutex::new(HashMap::new()),
            tasks: Mutex::new(JoinSet::new()),
        }
    }

    /// Starts queueing new events and sending what is queued (including what a previous run
    /// left).
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        for destination in self.store.outbox_destinations().await? {
            self.wake(&destination);
        }
        let mut tasks = self.tasks.lock().expect("sender poisoned");
        // A storage error stops a round, not the queue: it starts again a moment later.
        let this = self.clone();
        tasks.spawn(async move {
            loop {
                if let Err(error) = this.clone().queue_events().await {
                    tracing::error!(%error, "queueing events for other servers failed");
                }
                tokio::time::sleep(FIRST_RETRY).await;
            }
        });
        let this = self.clone();
        tasks.spawn(async move {
            loop {
                if let Err(error) = this.clone().queue_device_lists().await {
                    tracing::error!(%error, "queueing device list changes failed");
                }
                tokio::time::sleep(FIRST_RETRY).await;
            }
        });
        Ok(())
    }

    /// Stops every task (queued items stay queued for the next start).
    pub fn stop(&self) {
        self.tasks.lock().expect("sender poisoned").abort_all();
    }

    /// Queues one stored PDU for `destinations` (an event of another server this one relays).
    pub async fn queue_pdu(
        self: &Arc<Self>,
        destinations: Vec<OwnedServerName>,
        event_id: ruma::OwnedEventId,
    ) -> Result<()> {
        let items =
            destinations.iter().map(|d| (d.clone(), Some(event_id.clone()), None)).collect();
        self.store.enqueue(items, QueuedUpTo::Nothing).await?;
        for destination in &destinations {
            self.wake(destination);
        }
        Ok(())
    }

    /// Queues one EDU (JSON) for `destinations`.
    pub async fn queue_edu(
        self: &Arc<Self>,
        destinations: Vec<OwnedServerName>,
        edu: String,
    ) -> Result<()> {
        let items = destinations.into_iter().map(|d| (d, None, Some(edu.clone()))).collect();
        self.enqueue(items, QueuedUpTo::Nothing).await
    }

    /// A peer showed it is up (it sent a request): retry it now.
    pub fn peer_is_up(&self, server: &ServerName) {
        if let Some(destination) = self.destinations.lock().expect("sender poisoned").get(server) {
            destination.up.notify_one();
        }
    }

    /// Follows the event stream, queueing each local event for the servers in its room.
    async fn queue_events(self: Arc<Self>) -> Result<()> {
        let mut commits = self.rooms.subscribe_commits();
        loop {
            let position = self.store.outbox_position().await?;
            let events = self.rooms.events_after(position, STREAM_BATCH).await?;
            let Some(last) = events.last().map(|e| e.stream_pos) else {
                if commits.changed().await.is_err() {
                    return Ok(());
                }
                continue;
            };
            // The servers each room's events go to: those with a member, less the ones the
            // room's ACL denies (read once per room per round).
            let mut recipients: HashMap<ruma::OwnedRoomId, Vec<OwnedServerName>> = HashMap::new();
            let mut items = Vec::new();
            for event in &events {
                if event.sender.server_name() != self.origin {
                    continue;
                }
                if !recipients.contains_key(&event.room_id) {
                    let acl = self.remote_rooms.server_acl(&event.room_id).await?;
                    let servers = self.rooms.servers_in_room(&event.room_id).await?;
                    let allowed = servers
                        .into_iter()
                        .filter(|s| *s != self.origin)
                        .filter(|s| acl.as_ref().is_none_or(|acl| acl.is_allowed(s)))
                        .collect();
                    recipients.insert(event.room_id.clone(), allowed);
                }
                let mut servers = recipients[&event.room_id].clone();
                // A membership change also reaches the server of the user it is about.
                if event.kind == "m.room.member"
                    && let Some(target) = event.state_key.as_deref()
                    && let Ok(target) = <&ruma::UserId>::try_from(target)
                    && target.server_name() != self.origin
                    && !servers.iter().any(|s| s == target.server_name())
                {
                    servers.push(target.server_name().to_owned());
                }
                items.extend(servers.into_iter().map(|s| (s, Some(event.event_id.clone()), None)));
            }
            self.enqueue(items, QueuedUpTo::Events(last)).await?;
        }
    }

    /// Follows the device-list stream, announcing each local user's device changes
    /// (`m.device_list_update`) to the servers sharing a room with them. The stream has no
    /// wake-up of its own: it is read after each commit and at least every half second.
    async fn queue_device_lists(self: Arc<Self>) -> Result<()> {
        let mut commits = self.rooms.subscribe_commits();
        loop {
            let position = self.store.device_list_position().await?;
            let changes = self.e2ee.device_list_changes_after(position, STREAM_BATCH).await?;
            let Some(last) = changes.last().map(|(pos, _)| *pos) else {
                let _ = tokio::time::timeout(Duration::from_millis(500), commits.changed()).await;
                continue;
            };
            let mut items = Vec::new();
            for (pos, user) in &changes {
                if user.server_name() != self.origin {
                    continue;
                }
                let servers: Vec<OwnedServerName> = self
                    .remote_rooms
                    .servers_sharing_rooms_with(user)
                    .await?
                    .into_iter()
                    .filter(|s| *s != self.origin)
                    .collect();
                if servers.is_empty() {
                    continue;
                }
                for edu in self.e2ee.device_list_updates(user, *pos).await? {
                    for server in &servers {
                        items.push((server.clone(), None, Some(edu.clone())));
                    }
                }
            }
            self.enqueue(items, QueuedUpTo::DeviceLists(last)).await?;
        }
    }

    /// Queues items in storage, then wakes the workers of their destinations.
    async fn enqueue(
        self: &Arc<Self>,
        items: Vec<(OwnedServerName, Option<ruma::OwnedEventId>, Option<String>)>,
        up_to: QueuedUpTo,
    ) -> Result<()> {
        let mut destinations: Vec<OwnedServerName> =
            items.iter().map(|(s, _, _)| s.clone()).collect();
        destinations.sort();
        destinations.dedup();
        self.store.enqueue(items, up_to).await?;
        for destination in &destinations {
            self.wake(destination);
        }
        Ok(())
    }

    /// Wakes (starting if needed) the worker of a destination.
    fn wake(self: &Arc<Self>, server: &ServerName) {
        let mut destinations = self.destinations.lock().expect("sender poisoned");
        let destination = match destinations.get(server) {
            Some(destination) => destination.clone(),
            None => {
                let destination = Arc::new(Destination::default());
                destinations.insert(server.to_owned(), destination.clone());
                let (this, server, worker) = (self.clone(), server.to_owned(), destination.clone());
                self.tasks
                    .lock()
                    .expect("sender poisoned")
                    .spawn(async move { this.deliver(server, worker).await });
                destination
            }
        };
        destination.queued.notify_one();
    }

    /// Sends a destination's queue in order, retrying with growing delays.
    async fn deliver(self: Arc<Self>, server: OwnedServerName, destination: Arc<Destination>) {
        let mut delay = FIRST_RETRY;
        loop {
            let rows = match self.store.outbox(&server, TXN_PDUS + TXN_EDUS).await {
                Ok(rows) => rows,
                Err(error) => {
                    tracing::error!(%error, "reading the federation queue failed");
                    tokio::time::sleep(LONGEST_RETRY).await;
                    continue;
                }
            };
            if rows.is_empty() {
                destination.queued.notified().await;
                continue;
            }
            let batch = batch_of(&rows);
            let ids: Vec<u64> = batch.iter().map(|row| row.id).collect();
            match self.send(&server, batch).await {
                Ok(()) => {
                    delay = FIRST_RETRY;
                    if let Err(error) = self.store.outbox_sent(ids).await {
                        tracing::error!(%error, "clearing the federation queue failed");
                    }
                }
                // The peer (or this server's policy) refused the transaction itself: sending
                // it again would be refused again, and would hold up everything behind it.
                Err(error) if error.kind != ErrorKind::RemoteUnavailable => {
                    tracing::warn!(%server, %error, "dropping a federation transaction refused for good");
                    if let Err(error) = self.store.outbox_sent(ids).await {
                        tracing::error!(%error, "clearing the federation queue failed");
                    }
                }
                Err(error) => {
                    tracing::info!(%server, %error, retry_in = ?delay, "federation transaction failed");
                    tokio::select! {
                        () = tokio::time::sleep(delay) => {}
                        () = destination.up.notified() => {}
                    }
                    delay = (delay * 2).min(LONGEST_RETRY);
                }
            }
        }
    }

    /// Sends the items of one transaction.
    async fn send(&self, server: &ServerName, rows: &[OutboxRow]) -> Result<()> {
        let (mut pdus, mut edus) = (Vec::new(), Vec::new());
        for row in rows {
            if let Some(event_id) = &row.pdu
                && let Some(object) = self.rooms.pdu_object(event_id).await?
            {
                pdus.push(to_raw(&object)?);
            }
            if let Some(edu) = &row.edu {
                let raw = serde_json::value::RawValue::from_string(edu.clone())
                    .map_err(|e| Error::internal(format!("queued EDU: {e}")))?;
                edus.push(Raw::from_json(raw));
            }
        }
        let (first, last) =
            (rows.first().map_or(0, |row| row.id), rows.last().map_or(0, |row| row.id));
        let txn_id = OwnedTransactionId::from(format!("{first}-{last}"));
        let mut request = send_transaction_message::v1::Request::new(
            txn_id,
            self.origin.clone(),
            MilliSecondsSinceUnixEpoch::now(),
        );
        request.pdus = pdus;
        request.edus = edus;
        let response = self.client.send(server, request).await?;
        for (event_id, result) in response.pdus {
            if let Err(error) = result {
                tracing::info!(%server, %event_id, %error, "peer refused a PDU");
            }
        }
        Ok(())
    }
}
