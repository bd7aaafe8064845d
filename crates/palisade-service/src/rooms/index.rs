//! What the other services read of rooms: memberships, stored events and state snapshots. The
//! room store is `RoomService`'s alone; sync, receipts, typing and end-to-end encryption ask
//! these questions instead of reading it.

use std::collections::HashSet;

use palisade_core::{ErrorKind, Result};
use palisade_storage::{EventRow, MembershipRow, StateMap};
use ruma::{EventId, OwnedEventId, OwnedRoomId, RoomId, UserId};

use super::RoomService;

impl RoomService {
    /// A user's memberships (of any server; not forgotten ones), with their stream positions.
    pub(crate) async fn memberships_of(&self, user: &UserId) -> Result<Vec<MembershipRow>> {
        self.store.rooms_of_user(user).await
    }

    /// Every membership in a room.
    pub(crate) async fn membership_rows(&self, room_id: &RoomId) -> Result<Vec<MembershipRow>> {
        self.store.members(room_id).await
    }

    /// How many users are joined to a room.
    pub(crate) async fn joined_count(&self, room_id: &RoomId) -> Result<u64> {
        self.store.joined_count(room_id).await
    }

    /// Memberships that changed after stream position `since` in the rooms `user` is joined to.
    pub(crate) async fn members_changed_in_joined_rooms(
        &self,
        user: &UserId,
        since: u64,
    ) -> Result<Vec<MembershipRow>> {
        self.store.members_changed_in_joined_rooms(user, since).await
    }

    /// A stored event, timeline or outlier.
    pub(crate) async fn stored_event(&self, event_id: &EventId) -> Result<Option<EventRow>> {
        self.store.event(event_id).await
    }

    /// The state after an event.
    pub(crate) async fn state_after(&self, event_id: &EventId) -> Result<Option<StateMap>> {
        self.store.state_after(event_id).await
    }

    /// A room's state at stream position `pos`.
    pub(crate) async fn state_at_pos(
        &self,
        room_id: &RoomId,
        pos: u64,
    ) -> Result<Option<StateMap>> {
        self.store.state_at_pos(room_id, pos).await
    }

    /// Rooms with timeline events between two stream positions; `None` when more than `limit`
    /// events lie between them.
    pub(crate) async fn rooms_with_events_between(
        &self,
        after: u64,
        up_to: u64,
        limit: usize,
    ) -> Result<Option<HashSet<OwnedRoomId>>> {
        self.store.rooms_with_events_between(after, up_to, limit).await
    }

    /// One entry of a state snapshot.
    pub(crate) async fn state_entry(
        &self,
        group: u64,
        kind: &str,
        state_key: &str,
    ) -> Result<Option<OwnedEventId>> {
        self.store.state_entry(group, kind, state_key).await
    }

    /// The stream position of a room's latest event of one of `types`.
    pub(crate) async fn latest_of_types(
        &self,
        room_id: &RoomId,
        types: &[&str],
    ) -> Result<Option<u64>> {
        self.store.latest_of_types(room_id, types).await
    }

    /// Whether a user is of this server.
    pub(crate) fn is_local(&self, user: &UserId) -> bool {
        user.server_name() == self.config.server_name
    }

    /// Whether clients can name the room from its state: a non-empty name or canonical alias
    /// (then sync sends no heroes, as Synapse does).
    pub(crate) async fn is_named(&self, room_id: &RoomId) -> Result<bool> {
        for (kind, field) in [("m.room.name", "name"), ("m.room.canonical_alias", "alias")] {
            if self.current_state_text(room_id, kind, field).await?.is_some_and(|v| !v.is_empty()) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// A text field of the content of the room's current state event of `kind` (empty state
    /// key); `None` when the room, the event or the field is missing.
    pub(crate) async fn current_state_text(
        &self,
        room_id: &RoomId,
        kind: &str,
        field: &str,
    ) -> Result<Option<String>> {
        let id = match self.current_state_id(room_id, kind, "").await {
            Ok(id) => id,
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        match id {
            Some(id) => Ok(self.event_content(&id).await?[field].as_str().map(str::to_owned)),
            None => Ok(None),
        }
    }

    /// Wakes the syncs of everyone in a room (an ephemeral change: typing, a receipt, keys).
    pub(crate) async fn notify_room(&self, room_id: &RoomId) -> Result<()> {
        self.notifier.notify_room(room_id, None, self.store.members(room_id)).await
    }
}
