//! Read receipts and read markers.

use std::sync::Arc;

use palisade_core::{Clock, Error, Result};
use palisade_storage::{NewReceipt, ReceiptStore, RoomStore};
use ruma::{EventId, RoomId};
use serde_json::json;

use crate::{AccountDataService, notify::Notifier, rooms::RoomService, trust::Actor};

/// Receipt types a client may send.
pub const READ: &str = "m.read";
/// A receipt only the user sees.
pub const READ_PRIVATE: &str = "m.read.private";
/// The read marker, stored as room account data.
pub const FULLY_READ: &str = "m.fully_read";

/// Read receipts and read markers.
pub struct ReceiptService {
    store: Arc<dyn ReceiptStore>,
    events: Arc<dyn RoomStore>,
    rooms: Arc<RoomService>,
    account_data: Arc<AccountDataService>,
    notifier: Arc<Notifier>,
    clock: Arc<dyn Clock>,
}

impl ReceiptService {
    /// The service.
    pub fn new(
        store: Arc<dyn ReceiptStore>,
        events: Arc<dyn RoomStore>,
        rooms: Arc<RoomService>,
        account_data: Arc<AccountDataService>,
        notifier: Arc<Notifier>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self { store, events, rooms, account_data, notifier, clock }
    }

    /// The store, for sync.
    pub(crate) fn store(&self) -> &Arc<dyn ReceiptStore> {
        &self.store
    }

    /// Records that `user` has read up to `event_id`.
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
        let event = self
            .events
            .event(event_id)
            .await?
            .filter(|row| row.room_id == room_id)
            .ok_or_else(|| Error::not_found("Event not found"))?;
        match receipt_type {
            FULLY_READ => {
                if thread_id.is_some() {
                    return Err(Error::invalid_param("The read marker cannot be threaded"));
                }
                self.account_data
                    .set(actor, Some(room_id), FULLY_READ, &json!({ "event_id": event_id }))
                    .await
            }
            READ | READ_PRIVATE => {
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
                        self.notifier.notify_room(room_id, None).await?;
                    } else {
                        self.notifier.notify_user(user);
                    }
                }
                // A local user's public receipt is news for the room's other servers.
                let public_and_local = receipt_type == READ && !actor.is_remote();
                if let (true, Some(port)) = (public_and_local, self.rooms.outbound().connected()) {
                    port.send_receipt(room_id, user, event_id, thread_id).await?;
                }
                Ok(())
            }
            other => Err(Error::invalid_param(format!("Unknown receipt type {other}"))),
        }
    }
}
