//! `AuditStore` on SQLite.

use async_trait::async_trait;
use palisade_core::Result;
use palisade_storage::{AuditEntry, AuditStore};
use ruma::{OwnedDeviceId, UserId};
use rusqlite::params;

use crate::{Database, parse_id, sql};

#[async_trait]
impl AuditStore for Database {
    async fn append_audit(&self, entry: AuditEntry) -> Result<()> {
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO audit_log (ts, kind, user_id, device_id, actor, detail)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    entry.ts,
                    entry.kind,
                    entry.user_id.as_str(),
                    entry.device_id.as_ref().map(|d| d.as_str()),
                    entry.actor,
                    entry.detail
                ],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn audit_entries(&self, user: Option<&UserId>, limit: usize) -> Result<Vec<AuditEntry>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT id, ts, kind, user_id, device_id, actor, detail FROM audit_log
                 WHERE ?1 IS NULL OR user_id = ?1 ORDER BY id DESC LIMIT ?2",
            )?
            .query_map(params![user.map(|u| u.as_str()), limit as i64], |row| {
                Ok(AuditEntry {
                    id: row.get(0)?,
                    ts: row.get(1)?,
                    kind: row.get(2)?,
                    user_id: parse_id(row, 3)?,
                    device_id: row.get::<_, Option<String>>(4)?.map(OwnedDeviceId::from),
                    actor: row.get(5)?,
                    detail: row.get(6)?,
                })
            })?
            .collect()
        })
    }
}
