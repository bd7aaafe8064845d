//! `PushStore` on SQLite.

use async_trait::async_trait;
use palisade_core::Result;
use palisade_storage::{NewNotification, NotificationRow, PushStore, PusherRow};
use ruma::{OwnedRoomId, UserId};
use rusqlite::{Row, params};

use crate::{Database, parse_id, sql};

const PUSHER_COLUMNS: &str = "user_id, app_id, pushkey, device_id, pusher, created_ts, sent_up_to";
const NOTIFICATION_COLUMNS: &str =
    "id, user_id, room_id, event_id, stream_pos, actions, highlight, ts";

fn pusher_row(row: &Row<'_>) -> rusqlite::Result<PusherRow> {
    Ok(PusherRow {
        user_id: parse_id(row, 0)?,
        app_id: row.get(1)?,
        pushkey: row.get(2)?,
        device_id: row.get::<_, Option<String>>(3)?.map(Into::into),
        pusher: row.get(4)?,
        created_ts: row.get(5)?,
        sent_up_to: row.get(6)?,
    })
}

fn notification_row(row: &Row<'_>) -> rusqlite::Result<NotificationRow> {
    Ok(NotificationRow {
        id: row.get(0)?,
        notification: NewNotification {
            user_id: parse_id(row, 1)?,
            room_id: parse_id(row, 2)?,
            event_id: parse_id(row, 3)?,
            stream_pos: row.get(4)?,
            actions: row.get(5)?,
            highlight: row.get(6)?,
            ts: row.get(7)?,
        },
    })
}

#[async_trait]
impl PushStore for Database {
    async fn set_pusher(&self, pusher: PusherRow, append: bool) -> Result<()> {
        self.write(move |conn| {
            if !append {
                conn.execute(
                    "DELETE FROM pushers WHERE app_id = ?1 AND pushkey = ?2 AND user_id != ?3",
                    params![pusher.app_id, pusher.pushkey, pusher.user_id.as_str()],
                )
                .map_err(sql)?;
            }
            conn.execute(
                &format!(
                    "INSERT INTO pushers ({PUSHER_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6,
                       (SELECT coalesce(max(id), 0) FROM notifications))
                     ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET
                       device_id = excluded.device_id, pusher = excluded.pusher"
                ),
                params![
                    pusher.user_id.as_str(),
                    pusher.app_id,
                    pusher.pushkey,
                    pusher.device_id.as_ref().map(|d| d.as_str()),
                    pusher.pusher,
                    pusher.created_ts,
                ],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn delete_pusher(&self, user_id: &UserId, app_id: &str, pushkey: &str) -> Result<bool> {
        let (user_id, app_id, pushkey) =
            (user_id.to_string(), app_id.to_owned(), pushkey.to_owned());
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM pushers WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3",
                params![user_id, app_id, pushkey],
            )
            .map(|deleted| deleted > 0)
            .map_err(sql)
        })
        .await
    }

    async fn pushers_of(&self, user_id: &UserId) -> Result<Vec<PusherRow>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {PUSHER_COLUMNS} FROM pushers WHERE user_id = ?1 ORDER BY created_ts"
            ))?
            .query_map([user_id.as_str()], pusher_row)?
            .collect()
        })
    }

    async fn all_pushers(&self) -> Result<Vec<PusherRow>> {
        self.read(|conn| {
            conn.prepare_cached(&format!("SELECT {PUSHER_COLUMNS} FROM pushers"))?
                .query_map([], pusher_row)?
                .collect()
        })
    }

    async fn pusher_sent(
        &self,
        user_id: &UserId,
        app_id: &str,
        pushkey: &str,
        id: u64,
    ) -> Result<()> {
        let (user_id, app_id, pushkey) =
            (user_id.to_string(), app_id.to_owned(), pushkey.to_owned());
        self.write(move |conn| {
            conn.execute(
                "UPDATE pushers SET sent_up_to = max(sent_up_to, ?4)
                 WHERE user_id = ?1 AND app_id = ?2 AND pushkey = ?3",
                params![user_id, app_id, pushkey, id],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn notified_up_to(&self) -> Result<u64> {
        self.read(|conn| {
            conn.query_row("SELECT stream_pos FROM push_position WHERE id = 1", [], |row| {
                row.get(0)
            })
        })
    }

    async fn record_notifications(&self, rows: Vec<NewNotification>, up_to: u64) -> Result<()> {
        self.write(move |conn| {
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO notifications (user_id, room_id, event_id, stream_pos, actions,
                       highlight, ts) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(sql)?;
            for row in &rows {
                insert
                    .execute(params![
                        row.user_id.as_str(),
                        row.room_id.as_str(),
                        row.event_id.as_str(),
                        row.stream_pos,
                        row.actions,
                        row.highlight,
                        row.ts,
                    ])
                    .map_err(sql)?;
            }
            conn.execute(
                "UPDATE push_position SET stream_pos = max(stream_pos, ?1) WHERE id = 1",
                [up_to],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn notifications(
        &self,
        user_id: &UserId,
        before: Option<u64>,
        limit: usize,
        only_highlight: bool,
    ) -> Result<Vec<NotificationRow>> {
        let before = before.unwrap_or(u64::MAX >> 1);
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications
                 WHERE user_id = ?1 AND id < ?2 AND (highlight OR NOT ?3)
                 ORDER BY id DESC LIMIT ?4"
            ))?
            .query_map(params![user_id.as_str(), before, only_highlight, limit], notification_row)?
            .collect()
        })
    }

    async fn notifications_after(
        &self,
        user_id: &UserId,
        after: u64,
        limit: usize,
    ) -> Result<Vec<NotificationRow>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {NOTIFICATION_COLUMNS} FROM notifications
                 WHERE user_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3"
            ))?
            .query_map(params![user_id.as_str(), after, limit], notification_row)?
            .collect()
        })
    }

    async fn notified_rooms(&self, user_id: &UserId) -> Result<Vec<(OwnedRoomId, u64)>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT room_id, max(stream_pos) FROM notifications WHERE user_id = ?1
                 GROUP BY room_id",
            )?
            .query_map([user_id.as_str()], |row| Ok((parse_id(row, 0)?, row.get(1)?)))?
            .collect()
        })
    }

    async fn prune_notifications(&self, before_ts: u64) -> Result<()> {
        self.write(move |conn| {
            conn.execute("DELETE FROM notifications WHERE ts < ?1", [before_ts])
                .map(drop)
                .map_err(sql)
        })
        .await
    }
}
