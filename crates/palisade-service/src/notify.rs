//! Wakes long-polling `/sync` requests: per user, only when something for that user changed.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use palisade_core::Result;
use palisade_storage::MembershipRow;
use ruma::{OwnedRoomId, OwnedUserId, RoomId, UserId};
use tokio::sync::watch;

/// Who to wake when a room changes, and the per-user wake-up channels.
#[derive(Default)]
pub struct Notifier {
    users: Mutex<HashMap<OwnedUserId, watch::Sender<()>>>,
    /// Users with a membership that makes them see the room (join, invite, knock); loaded on
    /// first use and kept current by membership changes.
    rooms: Mutex<HashMap<OwnedRoomId, HashSet<OwnedUserId>>>,
}

/// Memberships whose holders hear about a room's events.
fn listens(membership: &str) -> bool {
    matches!(membership, "join" | "invite" | "knock")
}

impl Notifier {
    /// A receiver that changes whenever something for `user` does.
    pub fn subscribe(&self, user: &UserId) -> watch::Receiver<()> {
        let mut users = self.users.lock().expect("notifier poisoned");
        users.retain(|_, sender| sender.receiver_count() > 0);
        users.entry(user.to_owned()).or_insert_with(|| watch::channel(()).0).subscribe()
    }

    /// Wakes one user's syncs.
    pub fn notify_user(&self, user: &UserId) {
        if let Some(sender) = self.users.lock().expect("notifier poisoned").get(user) {
            sender.send_replace(());
        }
    }

    /// Wakes everyone in a room; `change` is a membership change the room just saw, whose
    /// target is woken too (so a leaving user hears of their leave). `members` reads the
    /// room's memberships (only awaited the first time the room is notified).
    pub async fn notify_room(
        &self,
        room_id: &RoomId,
        change: Option<(&UserId, &str)>,
        members: impl Future<Output = Result<Vec<MembershipRow>>>,
    ) -> Result<()> {
        let loaded = self.rooms.lock().expect("notifier poisoned").contains_key(room_id);
        if !loaded {
            let members: HashSet<OwnedUserId> = members
                .await?
                .into_iter()
                .filter(|m| listens(&m.membership))
                .map(|m| m.user_id)
                .collect();
            self.rooms
                .lock()
                .expect("notifier poisoned")
                .entry(room_id.to_owned())
                .or_insert(members);
        }
        let mut rooms = self.rooms.lock().expect("notifier poisoned");
        let members = rooms.entry(room_id.to_owned()).or_default();
        let users = self.users.lock().expect("notifier poisoned");
        // Walk the smaller side: a big room with few syncing members, or the reverse.
        if users.len() < members.len() {
            for (user, sender) in users.iter() {
                if members.contains(user) {
                    sender.send_replace(());
                }
            }
        } else {
            for user in members.iter() {
                if let Some(sender) = users.get(user) {
                    sender.send_replace(());
                }
            }
        }
        if let Some((user, membership)) = change {
            if let Some(sender) = users.get(user) {
                sender.send_replace(());
            }
            if listens(membership) {
                members.insert(user.to_owned());
            } else {
                members.remove(user);
            }
        }
        Ok(())
    }
}
