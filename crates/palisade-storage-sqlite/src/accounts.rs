//! `AccountStore` on SQLite.

use async_trait::async_trait;
use palisade_core::Result;
use palisade_storage::{AccountStore, DeviceRow, NewDevice, RefreshedTokens, TokenOwner, UserRow};
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};
use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::{Database, parse_id, sql};

const USER_COLUMNS: &str = "user_id, password_hash, admin, deactivated, created_ts, displayname, \
                            avatar_url, guest, locked, suspended, profile_fields";

fn user_row(row: &Row<'_>) -> rusqlite::Result<UserRow> {
    Ok(UserRow {
        user_id: parse_id(row, 0)?,
        password_hash: row.get(1)?,
        admin: row.get(2)?,
        deactivated: row.get(3)?,
        created_ts: row.get(4)?,
        displayname: row.get(5)?,
        avatar_url: row.get(6)?,
        guest: row.get(7)?,
        locked: row.get(8)?,
        suspended: row.get(9)?,
        profile_fields: row.get(10)?,
    })
}

const DEVICE_COLUMNS: &str = "user_id, device_id, display_name, last_seen_ts, last_seen_ip, \
                              created_ts, approval, trusted, user_agent";

fn device_row(row: &Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        user_id: parse_id(row, 0)?,
        device_id: parse_id::<String>(row, 1)?.into(),
        display_name: row.get(2)?,
        last_seen_ts: row.get(3)?,
        last_seen_ip: row.get(4)?,
        created_ts: row.get(5)?,
        approval: row.get(6)?,
        trusted: row.get(7)?,
        user_agent: row.get(8)?,
    })
}

/// Deletes the listed devices' tokens and the devices; returns the revoked token hashes.
fn delete_devices_where(
    conn: &Connection,
    user_id: &str,
    device_ids: &[String],
) -> Result<Vec<[u8; 32]>> {
    let mut revoked = Vec::new();
    let mut tokens = conn
        .prepare_cached(
            "DELETE FROM access_tokens WHERE user_id = ?1 AND device_id = ?2 RETURNING token_hash",
        )
        .map_err(sql)?;
    let mut devices = conn
        .prepare_cached("DELETE FROM devices WHERE user_id = ?1 AND device_id = ?2")
        .map_err(sql)?;
    for device_id in device_ids {
        let hashes = tokens
            .query_map(params![user_id, device_id], |row| row.get::<_, [u8; 32]>(0))
            .map_err(sql)?;
        for hash in hashes {
            revoked.push(hash.map_err(sql)?);
        }
        devices.execute(params![user_id, device_id]).map_err(sql)?;
        // A deleted device's keys and undelivered messages go with it, and so do the messages
        // it sent that were held until it would be trusted.
        // Its pushers go too: a signed-out phone must not be woken for messages.
        let tables = [
            "device_keys",
            "one_time_keys",
            "fallback_keys",
            "to_device",
            "pushers",
            "refresh_tokens",
        ];
        for table in tables {
            conn.prepare_cached(&format!(
                "DELETE FROM {table} WHERE user_id = ?1 AND device_id = ?2"
            ))
            .and_then(|mut s| s.execute(params![user_id, device_id]))
            .map_err(sql)?;
        }
        conn.prepare_cached(
            "DELETE FROM to_device WHERE sender = ?1 AND sender_device = ?2 AND held = 2",
        )
        .and_then(|mut s| s.execute(params![user_id, device_id]))
        .map_err(sql)?;
    }
    if !device_ids.is_empty() {
        conn.prepare_cached("INSERT INTO device_list_changes (user_id) VALUES (?1)")
            .and_then(|mut s| s.execute([user_id]))
            .map_err(sql)?;
    }
    Ok(revoked)
}

fn device_ids_of(conn: &Connection, user_id: &str, keep: Option<&str>) -> Result<Vec<String>> {
    let mut stmt = conn
        .prepare_cached("SELECT device_id FROM devices WHERE user_id = ?1 AND device_id IS NOT ?2")
        .map_err(sql)?;
    let ids = stmt
        .query_map(params![user_id, keep], |row| row.get(0))
        .map_err(sql)?
        .collect::<rusqlite::Result<Vec<String>>>()
        .map_err(sql)?;
    Ok(ids)
}

#[async_trait]
impl AccountStore for Database {
    async fn create_user(&self, user: UserRow) -> Result<bool> {
        self.write(move |conn| {
            let inserted = conn
                .execute(
                    &format!(
                        "INSERT INTO users ({USER_COLUMNS})
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                         ON CONFLICT (user_id) DO NOTHING"
                    ),
                    params![
                        user.user_id.as_str(),
                        user.password_hash,
                        user.admin,
                        user.deactivated,
                        user.created_ts,
                        user.displayname,
                        user.avatar_url,
                        user.guest,
                        user.locked,
                        user.suspended,
                        user.profile_fields
                    ],
                )
                .map_err(sql)?;
            Ok(inserted == 1)
        })
        .await
    }

    async fn upgrade_guest(&self, user_id: &UserId, password_hash: Option<&str>) -> Result<bool> {
        let (user_id, hash) = (user_id.to_string(), password_hash.map(str::to_owned));
        self.write(move |conn| {
            let upgraded = conn
                .execute(
                    "UPDATE users SET guest = 0, password_hash = ?2 WHERE user_id = ?1 AND guest = 1",
                    params![user_id, hash],
                )
                .map_err(sql)?;
            Ok(upgraded == 1)
        })
        .await
    }

    async fn user(&self, user_id: &UserId) -> Result<Option<UserRow>> {
        self.read(|conn| {
            conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users WHERE user_id = ?1"))?
                .query_row([user_id.as_str()], user_row)
                .optional()
        })
    }

    async fn users(&self) -> Result<Vec<UserRow>> {
        self.read(|conn| {
            conn.prepare_cached(&format!("SELECT {USER_COLUMNS} FROM users ORDER BY user_id"))?
                .query_map([], user_row)?
                .collect()
        })
    }

    async fn search_users(&self, term: &str, limit: usize) -> Result<Vec<UserRow>> {
        let pattern = format!(
            "%{}%",
            term.to_lowercase().replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
        );
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {USER_COLUMNS} FROM users WHERE deactivated = 0
                 AND (lower(user_id) LIKE ?1 ESCAPE '\\' OR lower(displayname) LIKE ?1 ESCAPE '\\')
                 ORDER BY user_id LIMIT ?2"
            ))?
            .query_map(params![pattern, limit as i64], user_row)?
            .collect()
        })
    }

    async fn set_password_hash(&self, user_id: &UserId, hash: &str) -> Result<bool> {
        let (user_id, hash) = (user_id.to_string(), hash.to_owned());
        self.write(move |conn| {
            conn.execute(
                "UPDATE users SET password_hash = ?2 WHERE user_id = ?1",
                params![user_id, hash],
            )
            .map(|n| n == 1)
            .map_err(sql)
        })
        .await
    }

    async fn set_admin(&self, user_id: &UserId, admin: bool) -> Result<bool> {
        let user_id = user_id.to_string();
        self.write(move |conn| {
            conn.execute("UPDATE users SET admin = ?2 WHERE user_id = ?1", params![user_id, admin])
                .map(|n| n == 1)
                .map_err(sql)
        })
        .await
    }

    async fn set_profile_field(
        &self,
        user_id: &UserId,
        field: &str,
        value: Option<String>,
    ) -> Result<()> {
        // The service allows only letters, digits, `.`, `_` and `-` in field names, so the
        // name quoted is a JSON path.
        let (user_id, path) = (user_id.to_string(), format!("$.\"{field}\""));
        self.write(move |conn| {
            match value {
                Some(value) => conn.execute(
                    "UPDATE users SET profile_fields =
                       json_set(coalesce(profile_fields, '{}'), ?2, json(?3)) WHERE user_id = ?1",
                    params![user_id, path, value],
                ),
                None => conn.execute(
                    "UPDATE users SET profile_fields =
                       json_remove(coalesce(profile_fields, '{}'), ?2) WHERE user_id = ?1",
                    params![user_id, path],
                ),
            }
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn set_restrictions(
        &self,
        user_id: &UserId,
        locked: Option<bool>,
        suspended: Option<bool>,
    ) -> Result<bool> {
        let user_id = user_id.to_string();
        self.write(move |conn| {
            conn.execute(
                "UPDATE users SET locked = coalesce(?2, locked), suspended = coalesce(?3, suspended)
                 WHERE user_id = ?1",
                params![user_id, locked, suspended],
            )
            .map(|changed| changed > 0)
            .map_err(sql)
        })
        .await
    }

    async fn deactivate_user(&self, user_id: &UserId) -> Result<bool> {
        let user_id = user_id.to_string();
        self.write(move |conn| {
            let updated = conn
                .execute(
                    "UPDATE users SET deactivated = 1, password_hash = NULL, displayname = NULL,
                     avatar_url = NULL WHERE user_id = ?1",
                    [&user_id],
                )
                .map_err(sql)?;
            if updated == 0 {
                return Ok(false);
            }
            let devices = device_ids_of(conn, &user_id, None)?;
            delete_devices_where(conn, &user_id, &devices)?;
            conn.execute("DELETE FROM pushers WHERE user_id = ?1", [&user_id]).map_err(sql)?;
            Ok(true)
        })
        .await
    }

    async fn set_displayname(&self, user_id: &UserId, name: Option<&str>) -> Result<()> {
        let (user_id, name) = (user_id.to_string(), name.map(str::to_owned));
        self.write(move |conn| {
            conn.execute(
                "UPDATE users SET displayname = ?2 WHERE user_id = ?1",
                params![user_id, name],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn set_avatar_url(&self, user_id: &UserId, url: Option<&str>) -> Result<()> {
        let (user_id, url) = (user_id.to_string(), url.map(str::to_owned));
        self.write(move |conn| {
            conn.execute(
                "UPDATE users SET avatar_url = ?2 WHERE user_id = ?1",
                params![user_id, url],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn create_device(&self, device: NewDevice) -> Result<()> {
        self.write(move |conn| {
            let user_id = device.user_id.as_str();
            let device_id = device.device_id.as_str();
            // Signing in again with a known device id makes a new device: the old one's tokens,
            // keys, messages and approval go, so nothing it was trusted with carries over.
            delete_devices_where(conn, user_id, &[device_id.to_owned()])?;
            // `first` only for an account that never had a device and has no cross-signing
            // identity, decided inside this transaction.
            conn.execute(
                "INSERT INTO devices (user_id, device_id, display_name, created_ts, last_seen_ts,
                 last_seen_ip, user_agent, approval)
                 VALUES (?1, ?2, ?3, ?4, ?4, ?5, ?6, CASE WHEN ?7
                   AND NOT EXISTS (SELECT 1 FROM devices WHERE user_id = ?1 AND device_id != ?2)
                   AND NOT EXISTS (SELECT 1 FROM cross_signing_keys
                                   WHERE user_id = ?1 AND kind = 'master')
                   AND (SELECT had_device FROM users WHERE user_id = ?1) = 0
                   THEN 'first' END)
                 ON CONFLICT (user_id, device_id) DO UPDATE SET
                   display_name = coalesce(excluded.display_name, display_name),
                   last_seen_ts = excluded.last_seen_ts, last_seen_ip = excluded.last_seen_ip,
                   user_agent = excluded.user_agent",
                params![
                    user_id,
                    device_id,
                    device.display_name,
                    device.now,
                    device.ip,
                    device.user_agent,
                    device.approve_if_first
                ],
            )
            .map_err(sql)?;
            conn.execute(
                "UPDATE devices SET trusted = (approval IS NOT NULL) WHERE user_id = ?1 AND device_id = ?2",
                params![user_id, device_id],
            )
            .map_err(sql)?;
            conn.execute("UPDATE users SET had_device = 1 WHERE user_id = ?1", [user_id])
                .map_err(sql)?;
            conn.execute(
                "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![device.token_hash, user_id, device_id, device.now, device.expires_ts],
            )
            .map_err(sql)?;
            if let Some(refresh) = device.refresh_hash {
                conn.execute(
                    "INSERT INTO refresh_tokens (token_hash, user_id, device_id, access_hash,
                     created_ts) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![refresh, user_id, device_id, device.token_hash, device.now],
                )
                .map_err(sql)?;
            }
            Ok(())
        })
        .await
    }

    async fn token_owner(&self, token_hash: &[u8; 32]) -> Result<Option<TokenOwner>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT t.user_id, t.device_id, u.guest, u.locked, u.suspended, t.expires_ts,
                 t.refreshed_from IS NOT NULL FROM access_tokens t
                 JOIN users u ON u.user_id = t.user_id WHERE t.token_hash = ?1",
            )?
            .query_row([token_hash], |row| {
                Ok(TokenOwner {
                    user_id: parse_id(row, 0)?,
                    device_id: parse_id::<String>(row, 1)?.into(),
                    guest: row.get(2)?,
                    locked: row.get(3)?,
                    suspended: row.get(4)?,
                    expires_ts: row.get(5)?,
                    refreshed: row.get(6)?,
                })
            })
            .optional()
        })
    }

    async fn refresh_session(
        &self,
        refresh_hash: &[u8; 32],
        new: RefreshedTokens,
    ) -> Result<Option<(OwnedUserId, OwnedDeviceId)>> {
        let old = *refresh_hash;
        self.write(move |conn| {
            let found = conn
                .query_row(
                    "SELECT user_id, device_id, access_hash, replaced_by FROM refresh_tokens
                     WHERE token_hash = ?1",
                    [old],
                    |row| {
                        Ok((
                            parse_id::<OwnedUserId>(row, 0)?,
                            parse_id::<String>(row, 1)?,
                            row.get::<_, [u8; 32]>(2)?,
                            row.get::<_, Option<[u8; 32]>>(3)?,
                        ))
                    },
                )
                .optional()
                .map_err(sql)?;
            let Some((user_id, device_id, access_hash, replaced_by)) = found else {
                return Ok(None);
            };
            // A pair issued from this token before and never used (its answer was lost): gone.
            if let Some(unused) = replaced_by {
                conn.execute(
                    "DELETE FROM access_tokens WHERE token_hash =
                     (SELECT access_hash FROM refresh_tokens WHERE token_hash = ?1)",
                    [unused],
                )
                .map_err(sql)?;
                conn.execute("DELETE FROM refresh_tokens WHERE token_hash = ?1", [unused])
                    .map_err(sql)?;
            }
            conn.execute("DELETE FROM refresh_tokens WHERE replaced_by = ?1", [old])
                .map_err(sql)?;
            conn.execute("DELETE FROM access_tokens WHERE token_hash = ?1", [access_hash])
                .map_err(sql)?;
            conn.execute(
                "INSERT INTO access_tokens (token_hash, user_id, device_id, created_ts, expires_ts,
                 refreshed_from) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![new.access_hash, user_id.as_str(), device_id, new.now, new.expires_ts, old],
            )
            .map_err(sql)?;
            conn.execute(
                "INSERT INTO refresh_tokens (token_hash, user_id, device_id, access_hash,
                 created_ts) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![new.refresh_hash, user_id.as_str(), device_id, new.access_hash, new.now],
            )
            .map_err(sql)?;
            conn.execute(
                "UPDATE refresh_tokens SET replaced_by = ?2 WHERE token_hash = ?1",
                params![old, new.refresh_hash],
            )
            .map_err(sql)?;
            Ok(Some((user_id, device_id.into())))
        })
        .await
    }

    async fn claim_refreshed_token(&self, token_hash: &[u8; 32]) -> Result<()> {
        let token = *token_hash;
        self.write(move |conn| {
            conn.execute(
                "DELETE FROM refresh_tokens WHERE token_hash =
                 (SELECT refreshed_from FROM access_tokens WHERE token_hash = ?1)",
                [token],
            )
            .map_err(sql)?;
            conn.execute(
                "UPDATE access_tokens SET refreshed_from = NULL WHERE token_hash = ?1",
                [token],
            )
            .map_err(sql)?;
            Ok(())
        })
        .await
    }

    async fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceRow>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ?1 ORDER BY device_id"
            ))?
            .query_map([user_id.as_str()], device_row)?
            .collect()
        })
    }

    async fn device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Option<DeviceRow>> {
        self.read(|conn| {
            conn.prepare_cached(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ?1 AND device_id = ?2"
            ))?
            .query_row([user_id.as_str(), device_id.as_str()], device_row)
            .optional()
        })
    }

    async fn set_device_display_name(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<&str>,
    ) -> Result<bool> {
        let (user_id, device_id, name) =
            (user_id.to_string(), device_id.to_string(), name.map(str::to_owned));
        self.write(move |conn| {
            conn.execute(
                "UPDATE devices SET display_name = ?3 WHERE user_id = ?1 AND device_id = ?2",
                params![user_id, device_id, name],
            )
            .map(|n| n == 1)
            .map_err(sql)
        })
        .await
    }

    async fn set_device_approval(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        approval: Option<&str>,
    ) -> Result<bool> {
        let (user_id, device_id, approval) =
            (user_id.to_string(), device_id.to_string(), approval.map(str::to_owned));
        self.write(move |conn| {
            conn.execute(
                "UPDATE devices SET approval = ?3 WHERE user_id = ?1 AND device_id = ?2",
                params![user_id, device_id, approval],
            )
            .map(|n| n == 1)
            .map_err(sql)
        })
        .await
    }

    async fn set_device_trusted(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        trusted: bool,
    ) -> Result<Option<Vec<ruma::OwnedUserId>>> {
        let (user_id, device_id) = (user_id.to_string(), device_id.to_string());
        self.write(move |conn| {
            let changed = conn
                .execute(
                    "UPDATE devices SET trusted = ?3 WHERE user_id = ?1 AND device_id = ?2 AND trusted != ?3",
                    params![user_id, device_id, trusted],
                )
                .map_err(sql)?;
            match (changed, trusted) {
                (0, _) => Ok(None),
                (_, true) => crate::e2ee::release_to_device(conn, &user_id, &device_id).map(Some),
                (_, false) => Ok(Some(Vec::new())),
            }
        })
        .await
    }

    async fn untrusted_devices_created_before(
        &self,
        ts: u64,
    ) -> Result<Vec<(ruma::OwnedUserId, OwnedDeviceId)>> {
        self.read(|conn| {
            conn.prepare_cached(
                "SELECT user_id, device_id FROM devices WHERE trusted = 0 AND created_ts < ?1",
            )?
            .query_map([ts], |row| Ok((parse_id(row, 0)?, parse_id::<String>(row, 1)?.into())))?
            .collect()
        })
    }

    async fn touch_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        ts: u64,
        ip: Option<&str>,
    ) -> Result<()> {
        let (user_id, device_id, ip) =
            (user_id.to_string(), device_id.to_string(), ip.map(str::to_owned));
        self.write(move |conn| {
            conn.execute(
                "UPDATE devices SET last_seen_ts = ?3, last_seen_ip = ?4
                 WHERE user_id = ?1 AND device_id = ?2",
                params![user_id, device_id, ts, ip],
            )
            .map(drop)
            .map_err(sql)
        })
        .await
    }

    async fn delete_devices(
        &self,
        user_id: &UserId,
        device_ids: &[OwnedDeviceId],
    ) -> Result<Vec<[u8; 32]>> {
        let user_id = user_id.to_string();
        let device_ids: Vec<String> = device_ids.iter().map(|d| d.to_string()).collect();
        self.write(move |conn| delete_devices_where(conn, &user_id, &device_ids)).await
    }

    async fn delete_all_devices(
        &self,
        user_id: &UserId,
        keep: Option<&DeviceId>,
    ) -> Result<Vec<[u8; 32]>> {
        let (user_id, keep) = (user_id.to_string(), keep.map(|d| d.to_string()));
        self.write(move |conn| {
            let devices = device_ids_of(conn, &user_id, keep.as_deref())?;
            delete_devices_where(conn, &user_id, &devices)
        })
        .await
    }
}
