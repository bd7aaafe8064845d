//! `FederationStore` on SQLite.

use async_trait::async_trait;
use palisade_core::Result;
use palisade_storage::{FederationStore, OutboxRow, QueuedUpTo, ServerKeyRow};
use ruma::{OwnedEventId, OwnedServerName, ServerName};
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

    async fn outbox_position(&self) -> Result<u64> {
        self.read(|conn| {
            conn.query_row("SELECT stream_pos FROM federation_position WHERE id = 1", [], |row| {
                row.get(0)
            })
        })
    }

    async fn device_list_position(&self) -> Result<u64> {
        self.read(|conn| {
            conn.query_row(
                "SELECT device_list_pos FROM federation_position WHERE id = 1",
                [],
                |row| row.get(0),
            )
        })
    }

    async fn enqueue(
        &self,
        items: Vec<(OwnedServerName, Option<OwnedEventId>, Option<String>)>,
        up_to: QueuedUpTo,
    ) -> Result<()> {
        self.write(move |conn| {
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO federation_outbox (destination, pdu, edu) VALUES (?1, ?2, ?3)",
                )
                .map_err(sql)?;
            for (destination, pdu, edu) in &items {
                insert
                    .execute(params![destination.as_str(), pdu.as_ref().map(|p| p.as_str()), edu])
                    .map_err(sql)?;
            }
            let (column, position) = match up_to {
                QueuedUpTo::Events(position) => ("stream_pos", position),
                QueuedUpTo::DeviceLists(position) => ("device_list_pos", position),
                QueuedUpTo::Nothing => return Ok(()),
            };
            conn.execute(
                &format!(
                    "UPDATE federation_position SET {column} = max({column}, ?1) WHERE id = 1"
                ),
                [position],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn outbox(&self, destination: &ServerName, limit: usize) -> Result<Vec<OutboxRow>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, destination, pdu, edu FROM federation_outbox WHERE destination = ?1
                 ORDER BY id LIMIT ?2",
            )?
            .query_map(params![destination.as_str(), limit as i64], |row| {
                Ok(OutboxRow {
                    id: row.get(0)?,
                    destination: parse_id(row, 1)?,
                    pdu: row
                        .get::<_, Option<String>>(2)?
                        .map(|id| {
                            OwnedEventId::try_from(id).map_err(|_| {
                                rusqlite::Error::FromSqlConversionFailure(
                                    2,
                                    rusqlite::types::Type::Text,
                                    "malformed event id in database".into(),
                                )
                            })
                        })
                        .transpose()?,
                    edu: row.get(3)?,
                })
            })?
            .collect()
        })
    }

    async fn outbox_sent(&self, ids: Vec<u64>) -> Result<()> {
        self.write(move |conn| {
            let mut delete =
                conn.prepare_cached("DELETE FROM federation_outbox WHERE id = ?1").map_err(sql)?;
            for id in &ids {
                delete.execute([id]).map_err(sql)?;
            }
            Ok(())
        })
        .await
    }

    async fn outbox_destinations(&self) -> Result<Vec<OwnedServerName>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT DISTINCT destination FROM federation_outbox")?
                .query_map([], |row| parse_id(row, 0))?
                .collect()
        })
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
