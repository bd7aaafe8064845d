//! Read receipts and read markers.

use std::sync::Arc;

use palisade_core::{Clock, Error, Result};
use palisade_storage::{EventRow, NewReceipt, ReceiptRow, ReceiptStore};
use ruma::{EventId, OwnedRoomId, RoomId, UserId};
use serde_json::json;

use crate::{
    AccountDataService, events::to_json, notify::Notifier, rooms::RoomService, trust::Actor,
};

/// Receipt types a client may send.
pub const READ: &str = "m.read";
/// A receipt only the user sees.
pub const READ_PRIVATE: &str = "m.read.private";
/// The read marker, stored as room account data.
pub const FULLY_READ: &str = "m.fully_read";

/// Read receipts and read markers.
pub struct ReceiptService {
    store: Arc<dyn ReceiptStore>,
    rooms: Arc<RoomService>,
    account_data: Arc<AccountDataService>,
    notifier: Arc<Notifier>,
    clock: Arc<dyn Clock>,
}

/// How far a user has read a room (see [`ReceiptService::read_positions`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ReadPositions {
    /// Unthreaded receipts: read up to here in every thread.
    pub unthreaded: u64,
    /// Threaded receipts, by thread (`main` or a root's id).
    pub threads: std::collections::BTreeMap<String, u64>,
}

impl ReadPositions {
    /// The latest event read in any thread.
    pub fn latest(&self) -> u64 {
        self.threads.values().copied().fold(self.unthreaded, u64::max)
    }

    /// Where `thread` (`None`: the main timeline) is read up to.
    pub fn of(&self, thread: Option<&str>) -> u64 {
        let threaded = self.threads.get(thread.unwrap_or("main")).copied().unwrap_or(0);
        self.unthreaded.max(threaded)
    }
}

impl ReceiptService {
    /// The service.
    pub fn new(
        store: Arc<dyn ReceiptStore>,
        rooms: Arc<RoomService>,
        account_data: Arc<AccountDataService>,
        notifier: Arc<Notifier>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { store, rooms, account_data, notifier, clock }
    }

    /// The latest receipt stream position.
    pub(crate) async fn position(&self) -> Result<u64> {
        self.store.max_receipt_pos().await
    }

    /// Rooms with receipts at `after < position <= up_to`.
    pub(crate) async fn rooms_with_receipts_between(
        &self,
        after: u64,
        up_to: u64,
    ) -> Result<Vec<OwnedRoomId>> {
        self.store.rooms_with_receipts_between(after, up_to).await
    }

    /// A room's receipts at `after < position <= up_to` that `viewer` may see (private ones
    /// only their own).
    pub(crate) async fn receipts_between(
        &self,
        room_id: &RoomId,
        viewer: &UserId,
        after: u64,
        up_to: u64,
    ) -> Result<Vec<ReceiptRow>> {
        let receipts = self.store.receipts_since(room_id, after).await?;
        Ok(receipts
            .into_iter()
            .filter(|r| {
                r.stream_pos <= up_to && (r.receipt_type != READ_PRIVATE || r.user_id == viewer)
            })
            .collect())
    }

    /// How far `user` has read a room: the stream position of the latest event of their
    /// unthreaded receipts, and of their receipts per thread (`main` for the main timeline, a
    /// thread's root otherwise); 0 where there is none.
    pub(crate) async fn read_positions(
        &self,
        room_id: &RoomId,
        user: &UserId,
    ) -> Result<ReadPositions> {
        let mut read = ReadPositions::default();
        for receipt in self.store.receipts_of(room_id, user).await? {
            let position = match receipt.thread_id {
                None => &mut read.unthreaded,
                Some(thread) => read.threads.entry(thread).or_default(),
            };
            *position = (*position).max(receipt.event_stream_pos);
        }
        Ok(read)
    }

    /// Records that a local user has read up to `event_id` (a public receipt is news for the
    /// room's other servers too).
    pub async fn receipt(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        receipt_type: &str,
        event_id: &EventId,
        thread_id: Option<&str>,
    ) -> Result<()> {
        let user = actor.user();
        if self.rooms.read_bound(actor, room_id).await?.is_some() {
            return Err(Error::forbidden("You are not in this room"));
        }
        if receipt_type == FULLY_READ {
            if thread_id.is_some() {
                return Err(Error::invalid_param("The read marker cannot be threaded"));
            }
            self.event_of(room_id, event_id).await?;
            let marker = to_json(&json!({ "event_id": event_id }))?;
            return self.account_data.set(actor, Some(room_id), FULLY_READ, &marker).await;
        }
        self.record(user, room_id, receipt_type, event_id, thread_id).await?;
        if let (READ, Some(port)) = (receipt_type, self.rooms.outbound().connected()) {
            port.send_receipt(room_id, user, event_id, thread_id).await?;
        }
        Ok(())
    }

    /// A public read receipt another server sent for its user, who must be joined to the room.
    pub async fn remote_receipt(
        &self,
        user: &UserId,
        room_id: &RoomId,
        event_id: &EventId,
        thread_id: Option<&str>,
    ) -> Result<()> {
        if self.rooms.bound_of(user, room_id).await?.is_some() {
            return Err(Error::forbidden("The user is not in this room"));
        }
        self.record(user, room_id, READ, event_id, thread_id).await
    }

    /// The event a receipt points at, which must be in the room.
    async fn event_of(&self, room_id: &RoomId, event_id: &EventId) -> Result<EventRow> {
        self.rooms
            .stored_event(event_id)
            .await?
            .filter(|row| row.room_id == room_id)
            .ok_or_else(|| Error::not_found("Event not found"))
    }

    /// Stores a (public or private) read receipt and wakes who should hear of it.
    async fn record(
        &self,
        user: &UserId,
        room_id: &RoomId,
        receipt_type: &str,
        event_id: &EventId,
        thread_id: Option<&str>,
    ) -> Result<()> {
        if !matches!(receipt_type, READ | READ_PRIVATE) {
            return Err(Error::invalid_param(format!("Unknown receipt type {receipt_type}")));
        }
        let event = self.event_of(room_id, event_id).await?;
        let stored = self
            .store
            .set_receipt(NewReceipt {
                room_id,
                user_id: user,
                receipt_type,
                thread_id,
                event_id: event_id.to_owned(),
                event_stream_pos: event.stream_pos,
                ts: self.clock.now_millis(),
            })
            .await?;
        if stored.is_some() {
            if receipt_type == READ {
                self.rooms.notify_room(room_id).await?;
            } else {
                self.notifier.notify_user(user);
            }
        }
        Ok(())
    }
}
