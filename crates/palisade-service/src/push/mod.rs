//! Push notifications: the pushers clients set, the notifications each event gives its local
//! recipients (their push rules evaluated once per event, in the background, following the
//! event stream), `/notifications`, and delivery to push gateways.
//!
//! Nothing here holds up an event's persistence: recording follows the stream from a stored
//! position, and each pusher is sent what was recorded after its own stored position, so both
//! resume where they were after a restart.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#push-notifications>

mod gateway;
mod rules;

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, Mutex, OnceLock},
    time::Duration,
};

use palisade_core::{Clock, Error, ErrorKind, Result};
use palisade_storage::{NewNotification, NotificationRow, PushStore, PusherRow};
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedRoomId, OwnedUserId, UInt, UserId,
    api::client::push::{
        Pusher, PusherIds, PusherKind,
        get_notifications::{self, v3::Notification},
        set_pusher::v3::PusherAction,
    },
    push::Action,
};
use serde_json::Value;
use tokio::{sync::Notify, task::JoinSet};

pub use gateway::PushGateway;
pub use rules::{PushRuleEvaluator, RoomContext};

use crate::{
    DeviceTrustService, Session,
    receipts::ReceiptService,
    rooms::RoomService,
    trust::{Actor, Need},
};

/// Events evaluated per round.
const BATCH: usize = 200;
/// Notifications sent per round to one pusher.
const SEND_BATCH: usize = 20;
/// Retry delays for a failing gateway: doubling from the first, up to the last.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const LONGEST_RETRY: Duration = Duration::from_secs(600);
/// A notification not delivered within a day is no longer worth a phone's attention.
const MAX_AGE_MS: u64 = 24 * 60 * 60 * 1000;
/// How long notifications are kept for `/notifications`.
const KEPT_MS: u64 = 30 * 24 * 60 * 60 * 1000;
/// How often notifications older than that are forgotten.
const PRUNE_EVERY_MS: u64 = 60 * 60 * 1000;
/// The only path a push gateway URL may have (spec).
const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";
/// Longest `app_id` and `pushkey` (spec).
const MAX_APP_ID: usize = 64;
const MAX_PUSHKEY: usize = 512;

/// A pusher's identity.
type PusherKey = (OwnedUserId, String, String);

/// Pushers, notifications and their delivery.
pub struct PushService {
    store: Arc<dyn PushStore>,
    rooms: Arc<RoomService>,
    receipts: Arc<ReceiptService>,
    rules: Arc<PushRuleEvaluator>,
    trust: Arc<DeviceTrustService>,
    /// Where pushes go, connected by the server before `start`.
    gateway: OnceLock<Arc<dyn PushGateway>>,
    /// Whether full-format pushes carry message content (`[push] include_content`).
    include_content: bool,
    clock: Arc<dyn Clock>,
    /// A wake-up per running pusher worker.
    workers: Mutex<HashMap<PusherKey, Arc<Notify>>>,
    tasks: Mutex<JoinSet<()>>,
}

impl PushService {
    /// The service.
    pub fn new(
        store: Arc<dyn PushStore>,
        rooms: Arc<RoomService>,
        receipts: Arc<ReceiptService>,
        rules: Arc<PushRuleEvaluator>,
        trust: Arc<DeviceTrustService>,
        include_content: bool,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let (workers, tasks) = (Mutex::new(HashMap::new()), Mutex::new(JoinSet::new()));
        let gateway = OnceLock::new();
        Self {
            store,
            rooms,
            receipts,
            rules,
            trust,
            gateway,
            include_content,
            clock,
            workers,
            tasks,
        }
    }

    /// Connects where pushes go (once; later calls change nothing).
    pub fn connect(&self, gateway: Arc<dyn PushGateway>) {
        let _ = self.gateway.set(gateway);
    }

    /// Starts recording notifications and delivering them (what a previous run left too).
    pub async fn start(self: &Arc<Self>) -> Result<()> {
        for pusher in self.store.all_pushers().await? {
            self.wake((pusher.user_id, pusher.app_id, pusher.pushkey));
        }
        let this = self.clone();
        self.tasks.lock().expect("push tasks poisoned").spawn(async move {
            loop {
                // A storage error stops a round, not the recording.
                if let Err(error) = this.record().await {
                    tracing::error!(%error, "recording notifications failed");
                }
                tokio::time::sleep(FIRST_RETRY).await;
            }
        });
        Ok(())
    }

    /// Stops recording and delivering (what is recorded stays for the next start).
    pub fn stop(&self) {
        self.tasks.lock().expect("push tasks poisoned").abort_all();
        self.workers.lock().expect("push workers poisoned").clear();
    }

    /// `GET /pushers`: the user's pushers.
    pub async fn pushers(&self, user: &UserId) -> Result<Vec<Pusher>> {
        let rows = self.store.pushers_of(user).await?;
        rows.iter()
            .map(|row| {
                serde_json::from_str(&row.pusher)
                    .map_err(|e| Error::internal(format!("stored pusher: {e}")))
            })
            .collect()
    }

    /// `POST /pushers/set`: adds, updates or (`kind: null`) removes a pusher.
    pub async fn set(self: &Arc<Self>, session: &Session, action: PusherAction) -> Result<()> {
        match action {
            PusherAction::Post(post) => self.set_pusher(session, post.pusher, post.append).await,
            PusherAction::Delete(ids) => {
                self.store.delete_pusher(session.user_id(), &ids.app_id, &ids.pushkey).await?;
                Ok(())
            }
            _ => Err(Error::invalid_param("Unknown pusher action")),
        }
    }

    /// Adds or updates a pusher for the session's device: only an approved device may (a
    /// pusher tells a third party of every message).
    async fn set_pusher(
        self: &Arc<Self>,
        session: &Session,
        pusher: Pusher,
        append: bool,
    ) -> Result<()> {
        self.trust.require(Actor::from(session), Need::Approval, "set_pusher").await?;
        let PusherIds { app_id, pushkey, .. } = &pusher.ids;
        if app_id.is_empty() || app_id.len() > MAX_APP_ID {
            return Err(Error::invalid_param("app_id must be 1 to 64 characters"));
        }
        if pushkey.is_empty() || pushkey.len() > MAX_PUSHKEY {
            return Err(Error::invalid_param("pushkey must be 1 to 512 bytes"));
        }
        match &pusher.kind {
            PusherKind::Http(http) => {
                let url = url::Url::parse(&http.url).map_err(|_| {
                    Error::new(ErrorKind::MissingParam, "Config Error: 'url' must be a URL")
                })?;
                if !matches!(url.scheme(), "http" | "https") || url.path() != NOTIFY_PATH {
                    return Err(Error::new(
                        ErrorKind::MissingParam,
                        format!("Config Error: 'url' must have a path of '{NOTIFY_PATH}'"),
                    ));
                }
            }
            // Email pushers need a mail server this server does not have.
            _ => return Err(Error::invalid_param("Only http pushers are supported")),
        }
        let row = PusherRow {
            user_id: session.user_id().to_owned(),
            app_id: app_id.clone(),
            pushkey: pushkey.clone(),
            device_id: Some(session.device_id().to_owned()),
            pusher: serde_json::to_string(&pusher).map_err(|e| Error::internal(e.to_string()))?,
            created_ts: self.clock.now_millis(),
            sent_up_to: 0,
        };
        let key = (row.user_id.clone(), row.app_id.clone(), row.pushkey.clone());
        self.store.set_pusher(row, append).await?;
        tracing::info!(user = %key.0, app_id = %key.1, "pusher set");
        self.wake(key);
        Ok(())
    }

    /// `GET /notifications`: a page of the user's notifications, newest first.
    pub async fn notifications(
        &self,
        session: &Session,
        from: Option<&str>,
        limit: usize,
        only_highlight: bool,
    ) -> Result<get_notifications::v3::Response> {
        self.trust.require(Actor::from(session), Need::RoomAccess, "notifications").await?;
        let user = session.user_id();
        let before = match from {
            Some(token) => {
                Some(token.parse::<u64>().map_err(|_| Error::invalid_param("Invalid from token"))?)
            }
            None => None,
        };
        let limit = limit.clamp(1, 100);
        let rows = self.store.notifications(user, before, limit, only_highlight).await?;
        let mut read_up_to: HashMap<OwnedRoomId, u64> = HashMap::new();
        let mut notifications = Vec::with_capacity(rows.len());
        for row in &rows {
            let n = &row.notification;
            let Some(event) = self.rooms.stored_event(&n.event_id).await? else { continue };
            // What the user may no longer see (they left, history closed) is not shown.
            let Ok(bound) = self.rooms.bound_of(user, &n.room_id).await else { continue };
            let mut viewer = self.rooms.visibility(user, &n.room_id).await?;
            let own_membership =
                event.kind == "m.room.member" && event.state_key.as_deref() == Some(user.as_str());
            if bound.is_some_and(|bound| event.stream_pos > bound)
                || (!own_membership && !self.rooms.can_see(&mut viewer, &event).await?)
            {
                continue;
            }
            let formatted = self
                .rooms
                .format_events(&n.room_id, &[event], Some((user, session.device_id())))
                .await?;
            let Some(event) = formatted.into_iter().next() else { continue };
            let read = match read_up_to.get(&n.room_id) {
                Some(pos) => *pos,
                None => {
                    let pos = self.receipts.read_positions(&n.room_id, user).await?.latest();
                    *read_up_to.entry(n.room_id.clone()).or_insert(pos)
                }
            };
            let actions: Vec<Action> = serde_json::from_str(&n.actions).unwrap_or_default();
            let ts = MilliSecondsSinceUnixEpoch(UInt::new_saturating(n.ts));
            let read = n.stream_pos <= read;
            let event = event.cast();
            notifications.push(Notification::new(actions, event, read, n.room_id.clone(), ts));
        }
        let mut response = get_notifications::v3::Response::new(notifications);
        response.next_token =
            if rows.len() == limit { rows.last().map(|r| r.id.to_string()) } else { None };
        Ok(response)
    }

    /// Follows the event stream, recording what each event gives its local recipients.
    async fn record(self: &Arc<Self>) -> Result<()> {
        let mut commits = self.rooms.subscribe_commits();
        let mut pruned_at = 0;
        loop {
            let now = self.clock.now_millis();
            if now.saturating_sub(pruned_at) > PRUNE_EVERY_MS {
                self.store.prune_notifications(now.saturating_sub(KEPT_MS)).await?;
                pruned_at = now;
            }
            let position = self.store.notified_up_to().await?;
            let events = self.rooms.events_after(position, BATCH).await?;
            let Some(last) = events.last().map(|e| e.stream_pos) else {
                if commits.changed().await.is_err() {
                    return Ok(());
                }
                continue;
            };
            let mut by_room: HashMap<OwnedRoomId, Vec<palisade_storage::EventRow>> = HashMap::new();
            for event in events.into_iter().filter(|e| !e.outlier) {
                by_room.entry(event.room_id.clone()).or_default().push(event);
            }
            let mut recorded = Vec::new();
            for (room_id, rows) in by_room {
                let members = self.rooms.membership_rows(&room_id).await?;
                let joined: HashSet<OwnedUserId> = members
                    .into_iter()
                    .filter(|m| m.membership == "join" && self.rooms.is_local(&m.user_id))
                    .map(|m| m.user_id)
                    .collect();
                // An invite notifies the invited user, who is not in the room yet, of the
                // invite alone.
                let mut recipients = joined.clone();
                for row in rows.iter().filter(|r| r.kind == "m.room.member") {
                    if let Some(Ok(target)) = row.state_key.as_deref().map(UserId::parse)
                        && self.rooms.is_local(&target)
                    {
                        recipients.insert(target);
                    }
                }
                let events = self.rooms.format_events(&room_id, &rows, None).await?;
                let room = self.rules.room(&room_id).await?;
                for user in recipients {
                    let actions = self.rules.actions(&user, &room, &events).await?;
                    // Only events the user may see at the event (a member who joined later,
                    // under joined-only history, is not told of earlier ones).
                    let mut viewer = self.rooms.visibility(&user, &room_id).await?;
                    for (row, actions) in rows.iter().zip(actions) {
                        let own_membership = row.kind == "m.room.member"
                            && row.state_key.as_deref() == Some(user.as_str());
                        if row.sender == user
                            || (!joined.contains(&user) && !own_membership)
                            || !actions.iter().any(Action::should_notify)
                            || (!own_membership && !self.rooms.can_see(&mut viewer, row).await?)
                        {
                            continue;
                        }
                        recorded.push(NewNotification {
                            user_id: user.clone(),
                            room_id: room_id.clone(),
                            event_id: row.event_id.clone(),
                            stream_pos: row.stream_pos,
                            highlight: actions.iter().any(Action::is_highlight),
                            actions: serde_json::to_string(&actions)
                                .map_err(|e| Error::internal(e.to_string()))?,
                            ts: now,
                        });
                    }
                }
            }
            let notified: HashSet<OwnedUserId> =
                recorded.iter().map(|n| n.user_id.clone()).collect();
            self.store.record_notifications(recorded, last).await?;
            self.wake_users(&notified);
        }
    }

    /// Wakes the pushers of `users`.
    fn wake_users(self: &Arc<Self>, users: &HashSet<OwnedUserId>) {
        if users.is_empty() {
            return;
        }
        let keys: Vec<PusherKey> = {
            let workers = self.workers.lock().expect("push workers poisoned");
            workers.keys().filter(|(user, _, _)| users.contains(user)).cloned().collect()
        };
        for key in keys {
            self.wake(key);
        }
    }

    /// Wakes (starting if needed) the worker of a pusher.
    fn wake(self: &Arc<Self>, key: PusherKey) {
        let mut workers = self.workers.lock().expect("push workers poisoned");
        let notify = match workers.get(&key) {
            Some(notify) => notify.clone(),
            None => {
                let notify = Arc::new(Notify::new());
                workers.insert(key.clone(), notify.clone());
                let (this, wake) = (self.clone(), notify.clone());
                self.tasks
                    .lock()
                    .expect("push tasks poisoned")
                    .spawn(async move { this.deliver(key, wake).await });
                notify
            }
        };
        notify.notify_one();
    }

    /// Sends a pusher its notifications in order, retrying a failing gateway with growing
    /// delays, until the pusher is removed.
    async fn deliver(self: Arc<Self>, key: PusherKey, wake: Arc<Notify>) {
        let mut delay = FIRST_RETRY;
        loop {
            match self.deliver_some(&key).await {
                Ok(Delivery::Idle) => {
                    delay = FIRST_RETRY;
                    wake.notified().await;
                }
                Ok(Delivery::More) => delay = FIRST_RETRY,
                Ok(Delivery::Gone) => {
                    self.workers.lock().expect("push workers poisoned").remove(&key);
                    // Set again meanwhile (its wake-up may have reached this worker): a new
                    // worker takes over.
                    let (user, app_id, pushkey) = &key;
                    let again = self.store.pushers_of(user).await.is_ok_and(|pushers| {
                        pushers.iter().any(|p| &p.app_id == app_id && &p.pushkey == pushkey)
                    });
                    if again {
                        self.wake(key);
                    }
                    return;
                }
                Err(error) => {
                    tracing::info!(app_id = %key.1, %error, retry_in = ?delay, "push failed");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(LONGEST_RETRY);
                }
            }
        }
    }

    /// Sends a pusher its next notifications.
    async fn deliver_some(&self, (user, app_id, pushkey): &PusherKey) -> Result<Delivery> {
        let pushers = self.store.pushers_of(user).await?;
        let Some(pusher) =
            pushers.into_iter().find(|p| &p.app_id == app_id && &p.pushkey == pushkey)
        else {
            return Ok(Delivery::Gone);
        };
        let rows = self.store.notifications_after(user, pusher.sent_up_to, SEND_BATCH).await?;
        if rows.is_empty() {
            return Ok(Delivery::Idle);
        }
        let now = self.clock.now_millis();
        for row in &rows {
            if now.saturating_sub(row.notification.ts) <= MAX_AGE_MS {
                let unread = self.unread_rooms(user).await?;
                if !self.send(&pusher, row, unread).await? {
                    tracing::info!(%user, %app_id, "push gateway rejected the pushkey: pusher removed");
                    self.store.delete_pusher(user, app_id, pushkey).await?;
                    return Ok(Delivery::Gone);
                }
            }
            self.store.pusher_sent(user, app_id, pushkey, row.id).await?;
        }
        Ok(Delivery::More)
    }

    /// Posts one notification to a pusher's gateway; `false` when it rejected the pushkey.
    async fn send(&self, pusher: &PusherRow, row: &NotificationRow, unread: u64) -> Result<bool> {
        let config: Pusher = serde_json::from_str(&pusher.pusher)
            .map_err(|e| Error::internal(format!("stored pusher: {e}")))?;
        let Some(event) = self.rooms.stored_event(&row.notification.event_id).await? else {
            return Ok(true);
        };
        let PusherKind::Http(http) = &config.kind else { return Ok(true) };
        let gateway = self.gateway.get().ok_or_else(|| Error::internal("no push gateway"))?;
        let event: Value = serde_json::from_str(&event.json).unwrap_or_default();
        let body = gateway::payload(
            pusher,
            &config,
            &row.notification,
            &event,
            unread,
            self.include_content,
        );
        let rejected = gateway.notify(&http.url, &body).await?;
        Ok(!rejected.contains(&pusher.pushkey))
    }

    /// The badge: how many rooms have notifications the user has not read.
    async fn unread_rooms(&self, user: &UserId) -> Result<u64> {
        let mut unread = 0;
        for (room_id, latest) in self.store.notified_rooms(user).await? {
            if latest > self.receipts.read_positions(&room_id, user).await?.latest() {
                unread += 1;
            }
        }
        Ok(unread)
    }
}

/// What one round of delivery to a pusher found.
enum Delivery {
    /// Nothing left to send.
    Idle,
    /// Sent a batch; there may be more.
    More,
    /// The pusher is gone.
    Gone,
}
