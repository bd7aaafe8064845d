//! `UserDataStore` on SQLite.

use async_trait::async_trait;
use palisade_core::Result;
use palisade_storage::{AccountDataRow, UserDataStore};
use ruma::{RoomId, UserId};
use rusqlite::{OptionalExtension, params};

use crate::{Database, sql};

/// The room column's value for global account data.
fn room_key(room_id: Option<&RoomId>) -> String {
    room_id.map(|r| r.to_string()).unwrap_or_default()
}

#[async_trait]
impl UserDataStore for Database {
    async fn create_filter(&self, user_id: &UserId, json: String) -> Result<u64> {
        let user_id = user_id.to_string();
        self.write(move |conn| {
            conn.query_row(
                "INSERT INTO filters (user_id, filter_id, json)
                 SELECT ?1, coalesce(max(filter_id) + 1, 0), ?2 FROM filters WHERE user_id = ?1
                 RETURNING filter_id",
                params![user_id, json],
                |row| row.get(0),
            )
            .map_err(sql)
        })
        .await
    }

    async fn filter(&self, user_id: &UserId, filter_id: u64) -> Result<Option<String>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT json FROM filters WHERE user_id = ?1 AND filter_id = ?2")?
                .query_row(params![user_id.as_str(), filter_id], |row| row.get(0))
                .optional()
        })
    }

    async fn set_account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
        content: String,
    ) -> Result<u64> {
        let (user_id, room, kind) = (user_id.to_string(), room_key(room_id), kind.to_owned());
        self.write(move |conn| {
            conn.query_row(
                "INSERT INTO account_data (user_id, room_id, type, content, stream_pos)
                 VALUES (?1, ?2, ?3, ?4, (SELECT coalesce(max(stream_pos), 0) + 1 FROM account_data))
                 ON CONFLICT (user_id, room_id, type) DO UPDATE SET content = excluded.content,
                   stream_pos = excluded.stream_pos
                 RETURNING stream_pos",
                params![user_id, room, kind, content],
                |row| row.get(0),
            )
            .map_err(sql)
        })
        .await
    }

    async fn account_data(
        &self,
        user_id: &UserId,
        room_id: Option<&RoomId>,
        kind: &str,
    ) -> Result<Option<String>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT content FROM account_data WHERE user_id = ?1 AND room_id = ?2 AND type = ?3",
            )?
            .query_row(params![user_id.as_str(), room_key(room_id), kind], |row| row.get(0))
            .optional()
        })
    }

    async fn account_data_since(
        &self,
        user_id: &UserId,
        since: u64,
    ) -> Result<Vec<AccountDataRow>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT room_id, type, content, stream_pos FROM account_data
                 WHERE user_id = ?1 AND stream_pos > ?2 ORDER BY stream_pos",
            )?
            .query_map(params![user_id.as_str(), since], |row| {
                let room: String = row.get(0)?;
                Ok(AccountDataRow {
                    room_id: if room.is_empty() { None } else { Some(crate::parse_id(row, 0)?) },
                    kind: row.get(1)?,
                    content: row.get(2)?,
                    stream_pos: row.get(3)?,
                })
            })?
            .collect()
        })
    }

    async fn max_account_data_pos(&self) -> Result<u64> {
        self.read(|conn| {
            conn.prepare_cached("SELECT coalesce(max(stream_pos), 0) FROM account_data")?
                .query_row([], |r| r.get(0))
        })
    }
}
