//! Server notices: security alerts posted by a system account into each user's
//! server-notices room (`m.server_notice`), as the spec's Server Notices module describes.
//!
//! The device trust service emits [`SecurityNotice`]s into a queue; a task here turns them
//! into messages. The queue keeps the dependency one-way: trust knows nothing of rooms.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use palisade_core::{Error, ErrorKind, Result};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId, events::tag::TagInfo};
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::{
    AccountDataService, AccountService, EventTemplate, RoomService,
    events::to_json,
    rooms::{CreateRoom, MembershipService, Preset},
    trust::Actor,
};

/// A security event the account's owner must hear about.
#[derive(Debug, Clone)]
pub struct SecurityNotice {
    /// `device_added`, `device_trusted` or `cross_signing_changed`.
    pub kind: String,
    /// The account.
    pub user_id: OwnedUserId,
    /// The device concerned.
    pub device_id: Option<String>,
    /// Details: address, user agent, display name.
    pub detail: Value,
    /// When, milliseconds since the epoch.
    pub ts: u64,
}

/// The sending side, held by the device trust service.
#[derive(Clone)]
pub struct NoticeQueue {
    sender: mpsc::UnboundedSender<SecurityNotice>,
    pending: Arc<AtomicUsize>,
}

/// The receiving side, handed to [`ServerNoticeService::start`].
pub struct NoticeReceiver {
    receiver: mpsc::UnboundedReceiver<SecurityNotice>,
    pending: Arc<AtomicUsize>,
}

impl NoticeQueue {
    /// A new queue; notices wait in it until a [`ServerNoticeService`] starts on the receiver.
    pub fn new() -> (Self, NoticeReceiver) {
        let (sender, receiver) = mpsc::unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        (Self { sender, pending: pending.clone() }, NoticeReceiver { receiver, pending })
    }

    /// Queues a notice.
    pub fn push(&self, notice: SecurityNotice) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if self.sender.send(notice).is_err() {
            self.pending.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Waits (up to a few seconds) until every queued notice has been posted; for short-lived
    /// processes such as the administration commands.
    pub async fn drain(&self) {
        for _ in 0..500 {
            if self.pending.load(Ordering::Acquire) == 0 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Posts server notices.
pub struct ServerNoticeService {
    notices_user: OwnedUserId,
    rooms: Arc<RoomService>,
    membership: Arc<MembershipService>,
    accounts: Arc<AccountService>,
    account_data: Arc<AccountDataService>,
}

/// What the notices account keeps per user: the user's notices room.
#[derive(serde::Serialize, serde::Deserialize)]
struct NoticesRoom {
    room_id: OwnedRoomId,
}

/// Where the notices account remembers each user's notices room (its own account data).
fn room_key(user: &UserId) -> String {
    format!("org.palisade.server_notice_room.{user}")
}

/// The text of a notice.
fn describe(notice: &SecurityNotice) -> String {
    let device = notice.device_id.as_deref().unwrap_or("unknown");
    let name = notice.detail["display_name"].as_str().unwrap_or("no name");
    let ip = notice.detail["ip"].as_str().unwrap_or("unknown address");
    let agent = notice.detail["user_agent"].as_str().unwrap_or("unknown client");
    let when = notice.ts / 1000;
    match notice.kind.as_str() {
        "device_added" => format!(
            "A new device signed in to your account: \"{name}\" ({device}) from {ip}, using \
             {agent}, at {when} (seconds since 1970, UTC). It cannot read your encrypted messages \
             until you verify it from one of your trusted devices. If this was not you, do not \
             verify it: sign it out in Settings → Sessions, change your password, and tell your \
             administrator."
        ),
        "device_trusted" => format!(
            "Device {device} is now trusted and can read new encrypted messages. If you did not \
             approve it, sign it out in Settings → Sessions and tell your administrator."
        ),
        _ => "Your account's cross-signing identity changed. If you did not do this, tell your \
              administrator at once."
            .to_owned(),
    }
}

impl ServerNoticeService {
    /// The service posting as `notices_user`.
    pub fn new(
        notices_user: OwnedUserId,
        rooms: Arc<RoomService>,
        membership: Arc<MembershipService>,
        accounts: Arc<AccountService>,
        account_data: Arc<AccountDataService>,
    ) -> Self {
        Self { notices_user, rooms, membership, accounts, account_data }
    }

    /// Starts the task that posts what is pushed into the queue.
    pub fn start(self: Arc<Self>, receiver: NoticeReceiver) {
        let NoticeReceiver { mut receiver, pending } = receiver;
        tokio::spawn(async move {
            while let Some(notice) = receiver.recv().await {
                if let Err(error) = self.send(&notice.user_id, &describe(&notice)).await {
                    tracing::error!(%error, user = %notice.user_id, "server notice not delivered");
                }
                pending.fetch_sub(1, Ordering::AcqRel);
            }
        });
    }

    /// Posts `body` to the user's server-notices room, creating the room (and the notices
    /// account) on first use.
    pub async fn send(&self, user: &UserId, body: &str) -> Result<()> {
        if user == self.notices_user {
            return Ok(());
        }
        let room_id = self.room_for(user).await?;
        let content = json!({ "msgtype": "m.server_notice", "body": body, "server_notice_type": "m.palisade.security" });
        let template = EventTemplate::message("m.room.message", crate::rooms::content(content)?);
        self.rooms.send(Actor::server(&self.notices_user), &room_id, template, None).await?;
        Ok(())
    }

    async fn room_for(&self, user: &UserId) -> Result<OwnedRoomId> {
        if self.accounts.user(&self.notices_user).await?.is_none() {
            match self.accounts.create_user(&self.notices_user, None, false).await {
                Err(e) if e.kind != ErrorKind::UserInUse => return Err(e),
                _ => {}
            }
        }
        let key = room_key(user);
        if let Ok(stored) =
            self.account_data.get(Actor::server(&self.notices_user), None, &key).await
            && let Ok(NoticesRoom { room_id }) = serde_json::from_str(stored.get())
        {
            self.ensure_joined(user, &room_id).await?;
            return Ok(room_id);
        }
        let request = CreateRoom {
            preset: Some(Preset::PrivateChat),
            name: Some("Server notices".to_owned()),
            invite: vec![user.to_owned()],
            // The server writes these messages; encrypting them would need a device.
            encrypted: Some(false),
            ..CreateRoom::default()
        };
        let room_id =
            self.membership.create_room(Actor::server(&self.notices_user), request).await?;
        self.membership.join(Actor::server(user), &room_id, None).await?;
        self.account_data
            .set_tag(Actor::server(user), &room_id, "m.server_notice", &TagInfo::new())
            .await?;
        self.account_data
            .set(
                Actor::server(&self.notices_user),
                None,
                &key,
                &to_json(&NoticesRoom { room_id: room_id.clone() })?,
            )
            .await?;
        Ok(room_id)
    }

    /// Brings the user back into their notices room if they left it.
    async fn ensure_joined(&self, user: &UserId, room_id: &RoomId) -> Result<()> {
        let user = Actor::server(user);
        if self.rooms.read_bound(user, room_id).await.ok() == Some(None) {
            return Ok(());
        }
        let notices = Actor::server(&self.notices_user);
        match self.membership.invite(notices, room_id, user.user(), None).await {
            Err(e) if e.kind != ErrorKind::Forbidden => return Err(e),
            _ => {}
        }
        self.membership.join(user, room_id, None).await.map_err(|e| Error::internal(e.to_string()))
    }
}
