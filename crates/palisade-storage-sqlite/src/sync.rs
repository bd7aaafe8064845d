//! `SyncStore` on SQLite.

use async_trait::async_trait;
use palisade_core::Result;
use palisade_storage::SyncStore;
use rusqlite::OptionalExtension;

use crate::{Database, sql};

#[async_trait]
impl SyncStore for Database {
    async fn save_sliding_connections(&self, json: String) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO sliding_sync_saved (id, connections) VALUES (1, ?1)
                 ON CONFLICT (id) DO UPDATE SET connections = excluded.connections",
                [json],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn take_sliding_connections(&self) -> Result<Option<String>> {
        self.write(|conn| {
            conn.query_row(
                "DELETE FROM sliding_sync_saved WHERE id = 1 RETURNING connections",
                [],
                |row| row.get(0),
            )
            .optional()
            .map_err(sql)
        })
        .await
    }
}
