//! Pushers and the notifications push rules gave each user.

use async_trait::async_trait;
use palisade_core::Result;
use ruma::{OwnedDeviceId, OwnedEventId, OwnedRoomId, OwnedUserId, UserId};

/// Where to push a user's notifications: one app on one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PusherRow {
    /// Whose notifications.
    pub user_id: OwnedUserId,
    /// The app (`im.vector.app.ios.prod`).
    pub app_id: String,
    /// The app's handle for the device at its push service.
    pub pushkey: String,
    /// The device whose access token set it: signing that device out removes it.
    pub device_id: Option<OwnedDeviceId>,
    /// The pusher as `GET /pushers` shows it (JSON).
    pub pusher: String,
    /// When it was set, milliseconds since the epoch.
    pub created_ts: u64,
    /// The last notification (id) delivered to it, or there when it was set.
    pub sent_up_to: u64,
}

/// A notification to record: an event the user's push rules say to notify of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewNotification {
    /// For whom.
    pub user_id: OwnedUserId,
    /// Where.
    pub room_id: OwnedRoomId,
    /// The event.
    pub event_id: OwnedEventId,
    /// Its stream position.
    pub stream_pos: u64,
    /// The actions the rules gave (JSON array).
    pub actions: String,
    /// Whether the actions highlight.
    pub highlight: bool,
    /// When it was recorded, milliseconds since the epoch.
    pub ts: u64,
}

/// A recorded notification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationRow {
    /// Its id, increasing in the order recorded.
    pub id: u64,
    /// What was recorded.
    pub notification: NewNotification,
}

/// Pushers and notifications.
#[async_trait]
pub trait PushStore: Send + Sync {
    /// Adds or updates (keyed by user, app and pushkey) a pusher. A new one starts after the
    /// notifications recorded so far; an updated one keeps its place. Unless `append`, other
    /// users' pushers with the same app and pushkey go.
    async fn set_pusher(&self, pusher: PusherRow, append: bool) -> Result<()>;
    /// Removes a pusher; whether there was one.
    async fn delete_pusher(&self, user_id: &UserId, app_id: &str, pushkey: &str) -> Result<bool>;
    /// A user's pushers.
    async fn pushers_of(&self, user_id: &UserId) -> Result<Vec<PusherRow>>;
    /// Every pusher.
    async fn all_pushers(&self) -> Result<Vec<PusherRow>>;
    /// Notes that a pusher has been sent the notifications up to `id`.
    async fn pusher_sent(
        &self,
        user_id: &UserId,
        app_id: &str,
        pushkey: &str,
        id: u64,
    ) -> Result<()>;
    /// The event stream position notifications have been recorded up to.
    async fn notified_up_to(&self) -> Result<u64>;
    /// Records notifications and, in the same transaction, that events up to `up_to` have
    /// been evaluated.
    async fn record_notifications(&self, rows: Vec<NewNotification>, up_to: u64) -> Result<()>;
    /// A user's notifications, newest first, with ids below `before`, at most `limit`.
    async fn notifications(
        &self,
        user_id: &UserId,
        before: Option<u64>,
        limit: usize,
        only_highlight: bool,
    ) -> Result<Vec<NotificationRow>>;
    /// A user's notifications with ids above `after`, oldest first, at most `limit`.
    async fn notifications_after(
        &self,
        user_id: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<NotificationRow>>;
    /// The rooms a user has notifications in, each with its latest notified stream position.
    async fn notified_rooms(&self, user_id: &UserId) -> Result<Vec<(OwnedRoomId, u64)>>;
    /// Forgets notifications recorded before `ts`.
    async fn prune_notifications(&self, before_ts: u64) -> Result<()>;
}
