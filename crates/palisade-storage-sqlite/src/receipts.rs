//! `ReceiptStore` on SQLite.

use async_trait::async_trait;
use palisade_core::Result;
use palisade_storage::{NewReceipt, ReceiptRow, ReceiptStore};
use ruma::{OwnedRoomId, RoomId, UserId};
use rusqlite::{Row, params};

use crate::{Database, parse_id, sql};

const COLUMNS: &str =
    "user_id, receipt_type, thread_id, event_id, event_stream_pos, ts, stream_pos";

fn receipt_row(row: &Row<'_>) -> rusqlite::Result<ReceiptRow> {
    let thread: String = row.get(2)?;
    Ok(ReceiptRow {
        user_id: parse_id(row, 0)?,
        receipt_type: row.get(1)?,
        thread_id: (!thread.is_empty()).then_some(thread),
        event_id: parse_id(row, 3)?,
        event_stream_pos: row.get(4)?,
        ts: row.get(5)?,
        stream_pos: row.get(6)?,
    })
}

#[async_trait]
impl ReceiptStore for Database {
    async fn set_receipt(&self, receipt: NewReceipt<'_>) -> Result<Option<u64>> {
        let room = receipt.room_id.to_string();
        let user = receipt.user_id.to_string();
        let kind = receipt.receipt_type.to_owned();
        let thread = receipt.thread_id.unwrap_or_default().to_owned();
        let (event_id, event_pos, ts) =
            (receipt.event_id.to_string(), receipt.event_stream_pos, receipt.ts);
        self.write(move |conn| {
            // Receipts only move forward: an older event leaves the stored receipt alone.
            let changed = conn
                .execute(
                    "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id,
                       event_stream_pos, ts, stream_pos)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7,
                       (SELECT coalesce(max(stream_pos), 0) + 1 FROM receipts))
                     ON CONFLICT (room_id, user_id, receipt_type, thread_id) DO UPDATE SET
                       event_id = excluded.event_id, event_stream_pos = excluded.event_stream_pos,
                       ts = excluded.ts, stream_pos = excluded.stream_pos
                     WHERE excluded.event_stream_pos > receipts.event_stream_pos",
                    params![room, user, kind, thread, event_id, event_pos, ts],
                )
                .map_err(sql)?;
            if changed == 0 {
                return Ok(None);
            }
            conn.query_row("SELECT max(stream_pos) FROM receipts", [], |r| r.get(0))
                .map(Some)
                .map_err(sql)
        })
        .await
    }

    async fn receipts_since(&self, room_id: &RoomId, since: u64) -> Result<Vec<ReceiptRow>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM receipts WHERE room_id = ?1 AND stream_pos > ?2 ORDER BY stream_pos"
            ))?
            .query_map(params![room_id.as_str(), since], receipt_row)?
            .collect()
        })
    }

    async fn rooms_with_receipts_between(
        &self,
        after: u64,
        up_to: u64,
    ) -> Result<Vec<OwnedRoomId>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT DISTINCT room_id FROM receipts WHERE stream_pos > ?1 AND stream_pos <= ?2",
            )?
            .query_map(params![after, up_to], |row| parse_id(row, 0))?
            .collect()
        })
    }

    async fn receipts_of(&self, room_id: &RoomId, user_id: &UserId) -> Result<Vec<ReceiptRow>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {COLUMNS} FROM receipts WHERE room_id = ?1 AND user_id = ?2"
            ))?
            .query_map(params![room_id.as_str(), user_id.as_str()], receipt_row)?
            .collect()
        })
    }

    async fn max_receipt_pos(&self) -> Result<u64> {
        self.read(|conn| {
            conn.prepare_cached("SELECT coalesce(max(stream_pos), 0) FROM receipts")?
                .query_row([], |r| r.get(0))
        })
    }
}
