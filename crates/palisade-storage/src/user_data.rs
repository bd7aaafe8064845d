//! Per-user data: sync filters and account data (global and per room, tags included).

use async_trait::async_trait;
use palisade_core::Result;
use ruma::{OwnedRoomId, RoomId, UserId};

/// One account data entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountDataRow {
    /// The room, for room account data.
    pub room_id: Option<OwnedRoomId>,
    /// Event type.
    pub kind: String,
    /// Content as JSON.
    pub content: String,
    /// Position in the account data stream.
    pub stream_pos: u64,
}

/// Filters and account data.
#[async_trait]
pub trait UserDataStore: Send + Sync {
    /// Stores a filter and returns its id (per user).
    async fn create_filter(&self, user_id: &UserId, json: String) -> Result<u64>;
    /// A stored filter.
    async fn filter(&self, user_id: &UserId, filter_id: u64) -> Result<Option<String>>;
    /// Sets an account data entry; returns its stream position.
    async fn set_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
        content: String,
    ) -> Result<u64>;
    /// One account data entry's content.
    async fn account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
    ) -> Result<Option<String>>;
    /// Entries changed after `since` (all entries for 0), oldest first.
    async fn account_data_since(&self, user_id: &UserId, since: u64)
    -> Result<Vec<AccountDataRow>>;
    /// The latest account data stream position.
    async fn max_account_data_pos(&self) -> Result<u64>;
}
