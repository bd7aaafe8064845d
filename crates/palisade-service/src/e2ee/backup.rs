//! Server-side key backup: versions and the encrypted room keys in them.

use std::collections::BTreeMap;

use palisade_core::{Error, ErrorKind, Result};
use palisade_storage::BackupKeyRow;
use ruma::{
    OwnedRoomId, UserId,
    api::client::backup::{BackupAlgorithm, RoomKeyBackup},
    serde::Raw,
};
use serde_json::{Value, json, value::RawValue};

use super::E2eeService;
use crate::{
    Session,
    events::{stored_json, stored_raw, to_raw},
    trust::Need,
};

/// A backup version as the API returns it.
#[derive(Debug, Clone)]
pub struct BackupVersion {
    /// Version id.
    pub version: String,
    /// Algorithm.
    pub algorithm: String,
    /// Algorithm-specific data, as the client sent it.
    pub auth_data: Box<RawValue>,
    /// Number of stored keys.
    pub count: u64,
    /// Changes whenever keys change.
    pub etag: String,
}

impl BackupVersion {
    /// The algorithm and its auth data, as clients are shown them.
    pub fn algorithm_data(&self) -> Result<Raw<BackupAlgorithm>> {
        to_raw(&json!({ "algorithm": self.algorithm, "auth_data": self.auth_data }))
    }
}

/// Auth data must be a JSON object.
fn check_auth_data(auth_data: &RawValue) -> Result<String> {
    if !auth_data.get().trim_start().starts_with('{') {
        return Err(Error::bad_json("auth_data must be an object"));
    }
    Ok(auth_data.get().to_owned())
}

fn parse_version(version: &str) -> Result<u64> {
    version.parse().map_err(|_| Error::not_found("Unknown backup version"))
}

/// Whether `new` should replace `old` (spec: key backup, storing keys): a verified key beats
/// an unverified one, then the lower first message index, then the lower forwarded count.
fn replaces(old: &Value, new: &Value) -> bool {
    let rank = |v: &Value| {
        (
            !v["is_verified"].as_bool().unwrap_or(false),
            v["first_message_index"].as_u64().unwrap_or(u64::MAX),
            v["forwarded_count"].as_u64().unwrap_or(u64::MAX),
        )
    };
    rank(new) < rank(old)
}

impl E2eeService {
    /// The user behind `session`, if its device may change the key backup: an untrusted
    /// device could otherwise delete it or fill it with keys that win over the real ones.
    async fn writer<'a>(&self, session: &'a Session) -> Result<&'a UserId> {
        self.trust.require(session.into(), Need::Approval, "change_key_backup").await?;
        Ok(session.user_id())
    }

    /// Creates a new backup version, which becomes the current one.
    pub async fn create_backup(
        &self,
        session: &Session,
        algorithm: &str,
        auth_data: &RawValue,
    ) -> Result<String> {
        let user = self.writer(session).await?;
        let auth_data = check_auth_data(auth_data)?;
        Ok(self.store.create_backup(user, algorithm, auth_data).await?.to_string())
    }

    /// A backup version (the current one for `None`), or `M_NOT_FOUND`.
    pub async fn backup(&self, user: &UserId, version: Option<&str>) -> Result<BackupVersion> {
        let version = version.map(parse_version).transpose()?;
        let row = self
            .store
            .backup(user, version)
            .await?
            .ok_or_else(|| Error::not_found("No backup found"))?;
        Ok(BackupVersion {
            version: row.version.to_string(),
            algorithm: row.algorithm,
            auth_data: stored_json(row.auth_data)?,
            count: row.count,
            etag: row.etag.to_string(),
        })
    }

    /// Replaces a version's auth data; the algorithm cannot change.
    pub async fn update_backup(
        &self,
        session: &Session,
        version: &str,
        algorithm: &str,
        auth_data: &RawValue,
    ) -> Result<()> {
        let user = self.writer(session).await?;
        let current = self.backup(user, Some(version)).await?;
        if current.algorithm != algorithm {
            return Err(Error::invalid_param("The algorithm of a backup version cannot change"));
        }
        let auth_data = check_auth_data(auth_data)?;
        self.store.update_backup(user, parse_version(version)?, auth_data).await?;
        Ok(())
    }

    /// Deletes a version and its keys.
    pub async fn delete_backup(&self, session: &Session, version: &str) -> Result<()> {
        let user = self.writer(session).await?;
        if !self.store.delete_backup(user, parse_version(version)?).await? {
            return Err(Error::not_found("Unknown backup version"));
        }
        Ok(())
    }

    /// Stores keys into the current version: `rooms` maps room → session → key data. Returns
    /// the version's new etag and count.
    pub async fn put_backup_keys(
        &self,
        session: &Session,
        version: &str,
        rooms: &BTreeMap<String, BTreeMap<String, Value>>,
    ) -> Result<(String, u64)> {
        let user = self.writer(session).await?;
        let current = self.backup(user, None).await?;
        if current.version != version {
            return Err(Error::new(
                ErrorKind::WrongRoomKeysVersion { current_version: current.version },
                "Wrong backup version",
            ));
        }
        let version = parse_version(version)?;
        let mut rows = Vec::new();
        for (room_id, sessions) in rooms {
            for (session_id, data) in sessions {
                if !data.is_object() {
                    return Err(Error::bad_json("Key backup data must be an object"));
                }
                let existing =
                    self.store.backup_keys(user, version, Some(room_id), Some(session_id)).await?;
                let wins = match existing.first() {
                    Some(old) => {
                        replaces(&serde_json::from_str(&old.json).unwrap_or_default(), data)
                    }
                    None => true,
                };
                if wins {
                    rows.push(BackupKeyRow {
                        room_id: room_id.clone(),
                        session_id: session_id.clone(),
                        json: data.to_string(),
                    });
                }
            }
        }
        self.store.put_backup_keys(user, version, rows).await?;
        let after = self.backup(user, Some(&version.to_string())).await?;
        Ok((after.etag, after.count))
    }

    /// Keys of a version by room and session, optionally of one room or session. An
    /// untrusted device may not read them.
    pub async fn backup_keys(
        &self,
        session: &Session,
        version: &str,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<BTreeMap<OwnedRoomId, RoomKeyBackup>> {
        let user = session.user_id();
        self.trust.require(session.into(), Need::Approval, "read_key_backup").await?;
        self.backup(user, Some(version)).await?;
        let rows =
            self.store.backup_keys(user, parse_version(version)?, room_id, session_id).await?;
        let mut rooms: BTreeMap<OwnedRoomId, RoomKeyBackup> = BTreeMap::new();
        for row in rows {
            let room = OwnedRoomId::try_from(row.room_id)
                .map_err(|e| Error::internal(format!("stored backup room: {e}")))?;
            let sessions = &mut rooms
                .entry(room)
                .or_insert_with(|| RoomKeyBackup::new(BTreeMap::new()))
                .sessions;
            sessions.insert(row.session_id, stored_raw(row.json)?);
        }
        Ok(rooms)
    }

    /// Deletes keys of a version; returns the new etag and count.
    pub async fn delete_backup_keys(
        &self,
        session: &Session,
        version: &str,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<(String, u64)> {
        let user = self.writer(session).await?;
        self.backup(user, Some(version)).await?;
        self.store.delete_backup_keys(user, parse_version(version)?, room_id, session_id).await?;
        let after = self.backup(user, Some(version)).await?;
        Ok((after.etag, after.count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn better_keys_replace_worse_ones() {
        let key = |verified, index, forwarded| json!({ "is_verified": verified, "first_message_index": index, "forwarded_count": forwarded });
        assert!(replaces(&key(false, 0, 0), &key(true, 5, 5)));
        assert!(!replaces(&key(true, 5, 5), &key(false, 0, 0)));
        assert!(replaces(&key(true, 5, 0), &key(true, 1, 0)));
        assert!(!replaces(&key(true, 1, 0), &key(true, 5, 0)));
        assert!(replaces(&key(false, 1, 3), &key(false, 1, 1)));
        assert!(!replaces(&key(false, 1, 1), &key(false, 1, 1)));
    }
}
