//! Typing notifications: in memory only, as in every homeserver; they expire on their own.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use palisade_core::{Clock, Error, Result};
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};

use crate::{RoomService, trust::Actor};

/// Longest a typing notification lasts without renewal.
const MAX_TIMEOUT_MS: u64 = 120_000;

#[derive(Default)]
struct RoomTyping {
    /// User to expiry time.
    users: HashMap<OwnedUserId, u64>,
    /// Typing stream position of the last change.
    changed_at: u64,
}

/// Who is typing where.
pub struct TypingService {
    clock: Arc<dyn Clock>,
    room_service: Arc<RoomService>,
    rooms: Mutex<HashMap<OwnedRoomId, RoomTyping>>,
    position: AtomicU64,
}

impl TypingService {
    /// An empty service.
    pub fn new(clock: Arc<dyn Clock>, rooms: Arc<RoomService>) -> Self {
        Self {
            clock,
            room_service: rooms,
            rooms: Mutex::new(HashMap::new()),
            position: AtomicU64::new(0),
        }
    }

    /// A local user starts (`Some(timeout)`) or stops typing in a room they are joined to;
    /// the room's other servers are told.
    pub async fn user_typing(
        self: &Arc<Self>,
        actor: Actor<'_>,
        room_id: &RoomId,
        user: &UserId,
        timeout_ms: Option<u64>,
    ) -> Result<()> {
        if user != actor.user() {
            return Err(Error::forbidden("Cannot set another user's typing state"));
        }
        if self.room_service.read_bound(actor, room_id).await?.is_some() {
            return Err(Error::forbidden("You are not in this room"));
        }
        self.set_typing(room_id, user, timeout_ms).await;
        if let Some(port) = self.room_service.outbound().connected() {
            port.send_typing(room_id, user, timeout_ms.is_some()).await?;
        }
        Ok(())
    }

    /// The typing stream position.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Acquire)
    }

    /// Starts or stops `user` typing in a room; the caller checked the user may (another
    /// server's user: that server is in the room).
    pub async fn set_typing(
        self: &Arc<Self>,
        room_id: &RoomId,
        user: &UserId,
        timeout_ms: Option<u64>,
    ) {
        let now = self.clock.now_millis();
        let changed = {
            let mut rooms = self.rooms.lock().expect("typing poisoned");
            let room = rooms.entry(room_id.to_owned()).or_default();
            match timeout_ms {
                Some(timeout) => {
                    let timeout = timeout.min(MAX_TIMEOUT_MS);
                    let was_typing = room.users.insert(user.to_owned(), now + timeout).is_some();
                    let this = Arc::clone(self);
                    let (room_id, user) = (room_id.to_owned(), user.to_owned());
                    tokio::spawn(async move {
                        tokio::time::sleep(Duration::from_millis(timeout)).await;
                        this.expire(&room_id, &user).await;
                    });
                    !was_typing
                }
                None => room.users.remove(user).is_some(),
            }
        };
        if changed {
            self.bump(room_id).await;
        }
    }

    async fn expire(&self, room_id: &RoomId, user: &UserId) {
        let now = self.clock.now_millis();
        let expired = {
            let mut rooms = self.rooms.lock().expect("typing poisoned");
            let Some(room) = rooms.get_mut(room_id) else { return };
            match room.users.get(user) {
                Some(expiry) if *expiry <= now => room.users.remove(user).is_some(),
                _ => false,
            }
        };
        if expired {
            self.bump(room_id).await;
        }
    }

    async fn bump(&self, room_id: &RoomId) {
        let position = self.position.fetch_add(1, Ordering::AcqRel) + 1;
        if let Some(room) = self.rooms.lock().expect("typing poisoned").get_mut(room_id) {
            room.changed_at = position;
        }
        if let Err(error) = self.room_service.notify_room(room_id).await {
            tracing::warn!(%error, "typing notification not delivered");
        }
    }

    /// The users typing in a room, if that changed after `since` (always for `None`).
    pub fn typing_since(&self, room_id: &RoomId, since: Option<u64>) -> Option<Vec<OwnedUserId>> {
        let now = self.clock.now_millis();
        let rooms = self.rooms.lock().expect("typing poisoned");
        let room = rooms.get(room_id);
        let changed = room.map_or(0, |r| r.changed_at);
        if since.is_some_and(|since| changed <= since) {
            return None;
        }
        let mut users: Vec<_> = room
            .map(|r| {
                r.users
                    .iter()
                    .filter(|(_, expiry)| **expiry > now)
                    .map(|(u, _)| u.clone())
                    .collect()
            })
            .unwrap_or_default();
        users.sort();
        Some(users)
    }
}
