//! `E2eeStore` on SQLite.

use std::collections::BTreeMap;

use async_trait::async_trait;
use palisade_core::Result;
use palisade_storage::{
    BackupKeyRow, BackupVersionRow, ClaimedKey, E2eeStore, NewToDevice, OneTimeKeyUpload,
    ToDeviceRow,
};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use rusqlite::{Connection, OptionalExtension, params};

use crate::{Database, parse_id, sql};

fn record_change(conn: &Connection, user: &str) -> Result<()> {
    conn.prepare_cached("INSERT INTO device_list_changes (user_id) VALUES (?1)")
        .and_then(|mut s| s.execute([user]))
        .map(drop)
        .map_err(sql)
}

/// Releases the to-device messages held for `device` of `user`, as recipient or as sender:
/// they get new stream positions (after any token their recipient has) and become deliverable,
/// except that a message a sender's trust held may still wait for an untrusted recipient.
/// Returns the recipients to wake.
pub(crate) fn release_to_device(
    conn: &Connection,
    user: &str,
    device: &str,
) -> Result<Vec<OwnedUserId>> {
    let condition = "(held = 1 AND user_id = ?1 AND device_id = ?2)
                     OR (held = 2 AND sender = ?1 AND sender_device = ?2)";
    let recipients = conn
        .prepare(&format!("SELECT DISTINCT user_id FROM to_device WHERE {condition}"))
        .and_then(|mut s| {
            s.query_map(params![user, device], |row| parse_id(row, 0))?
                .collect::<rusqlite::Result<Vec<_>>>()
        })
        .map_err(sql)?;
    conn.execute(
        &format!(
            "INSERT INTO to_device (user_id, device_id, sender, sender_device, type, content, held)
             SELECT t.user_id, t.device_id, t.sender, t.sender_device, t.type, t.content,
               CASE WHEN t.held = 2 AND t.exempt = 0
                 AND coalesce((SELECT d.trusted FROM devices d
                      WHERE d.user_id = t.user_id AND d.device_id = t.device_id), 0) = 0
               THEN 1 ELSE 0 END
             FROM to_device t WHERE {condition} ORDER BY t.stream_pos"
        ),
        params![user, device],
    )
    .map_err(sql)?;
    conn.execute(&format!("DELETE FROM to_device WHERE {condition}"), params![user, device])
        .map_err(sql)?;
    Ok(recipients)
}

/// Marks a backup version's keys as changed.
fn bump_etag(conn: &Connection, user: &str, version: u64) -> Result<()> {
    conn.execute(
        "UPDATE backup_versions SET etag = etag + 1 WHERE user_id = ?1 AND version = ?2",
        params![user, version],
    )
    .map(drop)
    .map_err(sql)
}

/// The algorithm part of a `<algorithm>:<id>` key id.
fn algorithm_of(key_id: &str) -> &str {
    key_id.split_once(':').map_or(key_id, |(algorithm, _)| algorithm)
}

#[async_trait]
impl E2eeStore for Database {
    async fn device_keys(&self, user: &UserId, device: &DeviceId) -> Result<Option<String>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT json FROM device_keys WHERE user_id = ?1 AND device_id = ?2",
            )?
            .query_row([user.as_str(), device.as_str()], |row| row.get(0))
            .optional()
        })
    }

    async fn user_device_keys(&self, user: &UserId) -> Result<BTreeMap<OwnedDeviceId, String>> {
        self.read(|conn| {
            conn.prepare_cached("SELECT device_id, json FROM device_keys WHERE user_id = ?1")?
                .query_map([user.as_str()], |row| {
                    Ok((OwnedDeviceId::from(row.get::<_, String>(0)?), row.get(1)?))
                })?
                .collect()
        })
    }

    async fn set_device_keys(&self, user: &UserId, device: &DeviceId, json: String) -> Result<()> {
        let (user, device) = (user.to_string(), device.to_string());
        self.write(move |conn| {
            let changed = conn
                .execute(
                    "INSERT INTO device_keys (user_id, device_id, json) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, device_id) DO UPDATE SET json = excluded.json
                     WHERE json != excluded.json",
                    params![user, device, json],
                )
                .map_err(sql)?;
            if changed > 0 {
                record_change(conn, &user)?;
            }
            Ok(())
        })
        .await
    }

    async fn add_one_time_keys(
        &self,
        user: &UserId,
        device: &DeviceId,
        keys: Vec<(String, String)>,
    ) -> Result<Vec<(String, OneTimeKeyUpload)>> {
        let (user, device) = (user.to_string(), device.to_string());
        self.write(move |conn| {
            let mut outcomes = Vec::with_capacity(keys.len());
            for (key_id, json) in keys {
                let existing: Option<String> = conn
                    .prepare_cached(
                        "SELECT json FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2
                         AND algorithm = ?3 AND key_id = ?4",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![user, device, algorithm_of(&key_id), key_id], |r| {
                            r.get(0)
                        })
                        .optional()
                    })
                    .map_err(sql)?;
                let outcome = match existing {
                    Some(stored) if stored == json => OneTimeKeyUpload::Stored,
                    Some(_) => OneTimeKeyUpload::Conflict,
                    None => {
                        conn.prepare_cached(
                            "INSERT INTO one_time_keys (user_id, device_id, algorithm, key_id, json)
                             VALUES (?1, ?2, ?3, ?4, ?5)",
                        )
                        .and_then(|mut s| {
                            s.execute(params![user, device, algorithm_of(&key_id), key_id, json])
                        })
                        .map_err(sql)?;
                        OneTimeKeyUpload::Stored
                    }
                };
                outcomes.push((key_id, outcome));
            }
            Ok(outcomes)
        })
        .await
    }

    async fn set_fallback_keys(
        &self,
        user: &UserId,
        device: &DeviceId,
        keys: Vec<(String, String)>,
    ) -> Result<()> {
        let (user, device) = (user.to_string(), device.to_string());
        self.write(move |conn| {
            for (key_id, json) in keys {
                conn.prepare_cached(
                    "INSERT INTO fallback_keys (user_id, device_id, algorithm, key_id, json, used)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0)
                     ON CONFLICT (user_id, device_id, algorithm) DO UPDATE SET
                       key_id = excluded.key_id, json = excluded.json, used = 0
                     WHERE key_id != excluded.key_id OR json != excluded.json",
                )
                .and_then(|mut s| {
                    s.execute(params![user, device, algorithm_of(&key_id), key_id, json])
                })
                .map_err(sql)?;
            }
            Ok(())
        })
        .await
    }

    async fn one_time_key_counts(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<BTreeMap<String, u64>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT algorithm, count(*) FROM one_time_keys WHERE user_id = ?1 AND device_id = ?2
                 GROUP BY algorithm",
            )?
            .query_map([user.as_str(), device.as_str()], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect()
        })
    }

    async fn unused_fallback_algorithms(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Vec<String>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT algorithm FROM fallback_keys WHERE user_id = ?1 AND device_id = ?2 AND used = 0
                 ORDER BY algorithm",
            )?
            .query_map([user.as_str(), device.as_str()], |row| row.get(0))?
            .collect()
        })
    }

    async fn claim_key(
        &self,
        user: &UserId,
        device: &DeviceId,
        algorithm: &str,
    ) -> Result<Option<ClaimedKey>> {
        let (user, device, algorithm) =
            (user.to_string(), device.to_string(), algorithm.to_owned());
        // In the writer's transaction: two claims can never take the same key.
        self.write(move |conn| {
            let key = conn
                .prepare_cached(
                    "DELETE FROM one_time_keys WHERE rowid = (SELECT rowid FROM one_time_keys
                       WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3 LIMIT 1)
                     RETURNING key_id, json",
                )
                .and_then(|mut s| {
                    s.query_row(params![user, device, algorithm], |r| {
                        Ok(ClaimedKey { key_id: r.get(0)?, json: r.get(1)? })
                    })
                    .optional()
                })
                .map_err(sql)?;
            if key.is_some() {
                return Ok(key);
            }
            conn.prepare_cached(
                "UPDATE fallback_keys SET used = 1 WHERE user_id = ?1 AND device_id = ?2 AND algorithm = ?3
                 RETURNING key_id, json",
            )
            .and_then(|mut s| {
                s.query_row(params![user, device, algorithm], |r| {
                    Ok(ClaimedKey { key_id: r.get(0)?, json: r.get(1)? })
                })
                .optional()
            })
            .map_err(sql)
        })
        .await
    }

    async fn cross_signing_key(&self, user: &UserId, kind: &str) -> Result<Option<String>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT json FROM cross_signing_keys WHERE user_id = ?1 AND kind = ?2",
            )?
            .query_row([user.as_str(), kind], |row| row.get(0))
            .optional()
        })
    }

    async fn set_cross_signing_keys(
        &self,
        user: &UserId,
        keys: Vec<(String, String)>,
    ) -> Result<()> {
        let user = user.to_string();
        self.write(move |conn| {
            for (kind, json) in keys {
                conn.prepare_cached(
                    "INSERT INTO cross_signing_keys (user_id, kind, json) VALUES (?1, ?2, ?3)
                     ON CONFLICT (user_id, kind) DO UPDATE SET json = excluded.json",
                )
                .and_then(|mut s| s.execute(params![user, kind, json]))
                .map_err(sql)?;
            }
            record_change(conn, &user)
        })
        .await
    }

    async fn replace_signed_key(&self, user: &UserId, kind: &str, json: String) -> Result<()> {
        let (user, kind) = (user.to_string(), kind.to_owned());
        self.write(move |conn| {
            match kind.strip_prefix("device:") {
                Some(device) => conn.execute(
                    "UPDATE device_keys SET json = ?3 WHERE user_id = ?1 AND device_id = ?2",
                    params![user, device, json],
                ),
                None => conn.execute(
                    "UPDATE cross_signing_keys SET json = ?3 WHERE user_id = ?1 AND kind = ?2",
                    params![user, kind, json],
                ),
            }
            .map_err(sql)?;
            record_change(conn, &user)
        })
        .await
    }

    async fn device_list_changes(&self, since: u64) -> Result<Vec<OwnedUserId>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT DISTINCT user_id FROM device_list_changes WHERE stream_pos > ?1 ORDER BY user_id",
            )?
            .query_map([since], |row| parse_id(row, 0))?
            .collect()
        })
    }

    async fn max_device_list_pos(&self) -> Result<u64> {
        self.read(|conn| {
            conn.prepare_cached("SELECT coalesce(max(stream_pos), 0) FROM device_list_changes")?
                .query_row([], |r| r.get(0))
        })
    }

    async fn device_list_changes_after(
        &self,
        since: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OwnedUserId)>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT stream_pos, user_id FROM device_list_changes WHERE stream_pos > ?1
                 ORDER BY stream_pos LIMIT ?2",
            )?
            .query_map(params![since, limit as i64], |row| Ok((row.get(0)?, parse_id(row, 1)?)))?
            .collect()
        })
    }

    async fn device_list_changed(&self, user: &UserId) -> Result<()> {
        let user = user.to_string();
        self.write(move |conn| record_change(conn, &user)).await
    }

    async fn queue_to_device(
        &self,
        sender: &UserId,
        sender_device: &DeviceId,
        txn_id: &str,
        kind: &str,
        messages: Vec<NewToDevice>,
    ) -> Result<bool> {
        let (sender, sender_device, txn_id, kind) =
            (sender.to_string(), sender_device.to_string(), txn_id.to_owned(), kind.to_owned());
        self.write(move |conn| {
            let fresh = conn
                .execute(
                    "INSERT INTO to_device_txns (sender, sender_device, txn_id) VALUES (?1, ?2, ?3)
                     ON CONFLICT DO NOTHING",
                    params![sender, sender_device, txn_id],
                )
                .map_err(sql)?;
            if fresh == 0 {
                return Ok(false);
            }
            // The hold is decided here, in the writer, from the devices' stored trust: a trust
            // change and this insert are serialized, so nothing is held after its release.
            let mut insert = conn
                .prepare_cached(
                    "INSERT INTO to_device (user_id, device_id, sender, sender_device, type, content,
                     exempt, held) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, CASE
                       WHEN ?7 THEN 0
                       WHEN EXISTS (SELECT 1 FROM users WHERE user_id = ?3)
                            AND coalesce((SELECT trusted FROM devices WHERE user_id = ?3
                                          AND device_id = ?4), 0) = 0 THEN 2
                       WHEN coalesce((SELECT trusted FROM devices WHERE user_id = ?1
                                      AND device_id = ?2), 0) = 0 THEN 1
                       ELSE 0 END)",
                )
                .map_err(sql)?;
            for message in messages {
                insert
                    .execute(params![
                        message.user_id.as_str(),
                        message.device_id.as_str(),
                        sender,
                        sender_device,
                        kind,
                        message.content,
                        message.exempt
                    ])
                    .map_err(sql)?;
            }
            Ok(true)
        })
        .await
    }

    async fn to_device_since(
        &self,
        user: &UserId,
        device: &DeviceId,
        since: u64,
        limit: usize,
    ) -> Result<Vec<ToDeviceRow>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT stream_pos, sender, type, content FROM to_device
                 WHERE user_id = ?1 AND device_id = ?2 AND stream_pos > ?3 AND held = 0
                 ORDER BY stream_pos LIMIT ?4",
            )?
            .query_map(params![user.as_str(), device.as_str(), since, limit as i64], |row| {
                Ok(ToDeviceRow {
                    stream_pos: row.get(0)?,
                    sender: parse_id(row, 1)?,
                    kind: row.get(2)?,
                    content: row.get(3)?,
                })
            })?
            .collect()
        })
    }

    async fn ack_to_device(&self, user: &UserId, device: &DeviceId, up_to: u64) -> Result<()> {
        let (user, device) = (user.to_string(), device.to_string());
        // Most syncs have nothing to acknowledge: look before queueing a write.
        let pending: Option<i64> = self.read(|conn| {
            conn.prepare_cached(
                "SELECT 1 FROM to_device WHERE user_id = ?1 AND device_id = ?2 AND stream_pos <= ?3
                 AND held = 0 LIMIT 1",
            )?
            .query_row(params![user, device, up_to], |row| row.get(0))
            .optional()
        })?;
        if pending.is_none() {
            return Ok(());
        }
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM to_device WHERE user_id = ?1 AND device_id = ?2 AND stream_pos <= ?3
                 AND held = 0",
                params![user, device, up_to],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn grant_cross_signing_reset(&self, user: &UserId, expires_ts: u64) -> Result<()> {
        let user = user.to_string();
        self.write(move |conn| {
            conn.execute(
                "INSERT INTO cross_signing_reset_grants (user_id, expires_ts) VALUES (?1, ?2)
                 ON CONFLICT (user_id) DO UPDATE SET expires_ts = excluded.expires_ts",
                params![user, expires_ts],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn cross_signing_reset_grant(&self, user: &UserId) -> Result<Option<u64>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT expires_ts FROM cross_signing_reset_grants WHERE user_id = ?1",
            )?
            .query_row([user.as_str()], |row| row.get(0))
            .optional()
        })
    }

    async fn clear_cross_signing_reset(&self, user: &UserId) -> Result<()> {
        let user = user.to_string();
        self.write(move |conn| {
            conn.execute("DELETE FROM cross_signing_reset_grants WHERE user_id = ?1", [user])
                .map(drop)
                .map_err(sql)
        })
        .await
    }

    async fn max_to_device_pos(&self) -> Result<u64> {
        self.read(|conn| {
            // The sequence, not max(): acknowledged rows are deleted but positions must not repeat.
            conn.prepare_cached(
                "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'to_device'), 0)",
            )?
            .query_row([], |r| r.get(0))
        })
    }

    async fn create_backup(
        &self,
        user: &UserId,
        algorithm: &str,
        auth_data: String,
    ) -> Result<u64> {
        let (user, algorithm) = (user.to_string(), algorithm.to_owned());
        self.write(move |conn| {
            conn.query_row(
                "INSERT INTO backup_versions (user_id, version, algorithm, auth_data)
                 SELECT ?1, coalesce(max(version), 0) + 1, ?2, ?3 FROM backup_versions WHERE user_id = ?1
                 RETURNING version",
                params![user, algorithm, auth_data],
                |row| row.get(0),
            )
            .map_err(sql)
        })
        .await
    }

    async fn backup(
        &self,
        user: &UserId,
        version: Option<u64>,
    ) -> Result<Option<BackupVersionRow>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT v.version, v.algorithm, v.auth_data, v.etag,
                   (SELECT count(*) FROM backup_keys k WHERE k.user_id = v.user_id AND k.version = v.version)
                 FROM backup_versions v
                 WHERE v.user_id = ?1 AND v.deleted = 0 AND (?2 IS NULL OR v.version = ?2)
                 ORDER BY v.version DESC LIMIT 1",
            )?
            .query_row(params![user.as_str(), version], |row| {
                Ok(BackupVersionRow {
                    version: row.get(0)?,
                    algorithm: row.get(1)?,
                    auth_data: row.get(2)?,
                    etag: row.get(3)?,
                    count: row.get(4)?,
                })
            })
            .optional()
        })
    }

    async fn update_backup(&self, user: &UserId, version: u64, auth_data: String) -> Result<bool> {
        let user = user.to_string();
        self.write(move |conn| {
            conn.execute(
                "UPDATE backup_versions SET auth_data = ?3 WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
                params![user, version, auth_data],
            )
            .map(|n| n == 1)
            .map_err(sql)
        })
        .await
    }

    async fn delete_backup(&self, user: &UserId, version: u64) -> Result<bool> {
        let user = user.to_string();
        self.write(move |conn| {
            let deleted = conn
                .execute(
                    "UPDATE backup_versions SET deleted = 1 WHERE user_id = ?1 AND version = ?2 AND deleted = 0",
                    params![user, version],
                )
                .map_err(sql)?;
            conn.execute("DELETE FROM backup_keys WHERE user_id = ?1 AND version = ?2", params![user, version])
                .map_err(sql)?;
            Ok(deleted == 1)
        })
        .await
    }

    async fn put_backup_keys(
        &self,
        user: &UserId,
        version: u64,
        keys: Vec<BackupKeyRow>,
    ) -> Result<()> {
        let user = user.to_string();
        self.write(move |conn| {
            for key in keys {
                conn.prepare_cached(
                    "INSERT INTO backup_keys (user_id, version, room_id, session_id, json)
                     VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET json = excluded.json",
                )
                .and_then(|mut s| s.execute(params![user, version, key.room_id, key.session_id, key.json]))
                .map_err(sql)?;
            }
            bump_etag(conn, &user, version)
        })
        .await
    }

    async fn backup_keys(
        &self,
        user: &UserId,
        version: u64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Vec<BackupKeyRow>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT room_id, session_id, json FROM backup_keys WHERE user_id = ?1 AND version = ?2
                 AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)
                 ORDER BY room_id, session_id",
            )?
            .query_map(params![user.as_str(), version, room_id, session_id], |row| {
                Ok(BackupKeyRow { room_id: row.get(0)?, session_id: row.get(1)?, json: row.get(2)? })
            })?
            .collect()
        })
    }

    async fn delete_backup_keys(
        &self,
        user: &UserId,
        version: u64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<()> {
        let (user, room_id, session_id) =
            (user.to_string(), room_id.map(str::to_owned), session_id.map(str::to_owned));
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM backup_keys WHERE user_id = ?1 AND version = ?2
                 AND (?3 IS NULL OR room_id = ?3) AND (?4 IS NULL OR session_id = ?4)",
                params![user, version, room_id, session_id],
            )
            .map_err(sql)?;
            bump_etag(conn, &user, version)
        })
        .await
    }
}
