//! `FederationStore` on SQLite.

use async_trait::async_trait;
use palisade_core::Result;
use palisade_storage::{FederationStore, ServerKeyRow};
use ruma::ServerName;
use rusqlite::params;

use crate::{Database, parse_id, sql};

#[async_trait]
impl FederationStore for Database {
    async fn store_server_keys(&self, keys: Vec<ServerKeyRow>) -> Result<()> {
        self.write(move |conn| {
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO server_keys (server_name, key_id, public_key, valid_until_ts, document)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (server_name, key_id) DO UPDATE SET
                       valid_until_ts = excluded.valid_until_ts, document = excluded.document
                     WHERE excluded.valid_until_ts > server_keys.valid_until_ts",
                )
                .map_err(sql)?;
            for key in &keys {
                insert
                    .execute(params![
                        key.server_name.as_str(),
                        key.key_id,
                        key.public_key,
                        key.valid_until_ts,
                        key.document
                    ])
                    .map_err(sql)?;
            }
            Ok(())
        })
        .await
    }

    async fn server_keys(&self, server: &ServerName) -> Result<Vec<ServerKeyRow>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT server_name, key_id, public_key, valid_until_ts, document FROM server_keys
                 WHERE server_name = ?1",
            )?
            .query_map([server.as_str()], |row| {
                Ok(ServerKeyRow {
                    server_name: parse_id(row, 0)?,
                    key_id: row.get(1)?,
                    public_key: row.get(2)?,
                    valid_until_ts: row.get(3)?,
                    document: row.get(4)?,
                })
            })?
            .collect()
        })
    }
}
