//! Read receipts.

use async_trait::async_trait;
use palisade_core::Result;
use ruma::{OwnedEventId, OwnedRoomId, OwnedUserId, RoomId, UserId};

/// A user's receipt in a room.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRow {
    /// Who.
    pub user_id: OwnedUserId,
    /// `m.read` or `m.read.private`.
    pub receipt_type: String,
    /// Thread id, `None` for an unthreaded receipt.
    pub thread_id: Option<String>,
    /// The event read up to.
    pub event_id: OwnedEventId,
    /// Stream position of that event (for unread counts).
    pub event_stream_pos: u64,
    /// When, milliseconds since the epoch.
    pub ts: u64,
    /// Position in the receipt stream.
    pub stream_pos: u64,
}

/// A receipt to store.
#[derive(Debug, Clone)]
pub struct NewReceipt<'a> {
    /// Room.
    pub room_id: &'a RoomId,
    /// Who.
    pub user_id: &'a UserId,
    /// Receipt type.
    pub receipt_type: &'a str,
    /// Thread id, `None` for unthreaded.
    pub thread_id: Option<&'a str>,
    /// The event.
    pub event_id: OwnedEventId,
    /// Its stream position.
    pub event_stream_pos: u64,
    /// When.
    pub ts: u64,
}

/// Read receipts.
#[async_trait]
pub trait ReceiptStore: Send + Sync {
    /// Stores a receipt, replacing the user's previous one of the same type and thread unless
    /// it points at a later event. Returns the new stream position, or `None` if unchanged.
    async fn set_receipt(&self, receipt: NewReceipt<'_>) -> Result<Option<u64>>;
    /// Receipts of a room changed after `since` (all of them for 0).
    async fn receipts_since(&self, room_id: &RoomId, since: u64) -> Result<Vec<ReceiptRow>>;
    /// Rooms with receipts changed at `after < stream_pos <= up_to`.
    async fn rooms_with_receipts_between(&self, after: u64, up_to: u64)
    -> Result<Vec<OwnedRoomId>>;
    /// A user's receipts in a room.
    async fn receipts_of(&self, room_id: &RoomId, user_id: &UserId) -> Result<Vec<ReceiptRow>>;
    /// The latest receipt stream position.
    async fn max_receipt_pos(&self) -> Result<u64>;
}
