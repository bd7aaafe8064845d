//! What `/sync` keeps across a restart: the sliding sync connections.

use async_trait::async_trait;
use palisade_core::Result;

/// Sliding sync connections, saved at shutdown and taken back at start-up.
#[async_trait]
pub trait SyncStore: Send + Sync {
    /// Replaces the saved connections (JSON the sync service reads back).
    async fn save_sliding_connections(&self, json: String) -> Result<()>;
    /// The saved connections, removed as they are read (saved state is used once: after a
    /// crash, clients start over rather than continue from a stale save).
    async fn take_sliding_connections(&self) -> Result<Option<String>>;
}
