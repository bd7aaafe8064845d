//! End-to-end encryption material the server stores and relays without reading: device keys,
//! one-time and fallback keys, cross-signing keys, to-device messages and key backups.

use std::collections::BTreeMap;

use async_trait::async_trait;
use palisade_core::Result;
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};

/// A claimed one-time (or fallback) key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedKey {
    /// `<algorithm>:<key id>`.
    pub key_id: String,
    /// The signed key object.
    pub json: String,
}

/// The outcome of storing a one-time key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OneTimeKeyUpload {
    /// Stored (or already stored, identical).
    Stored,
    /// A different key is already stored under this id.
    Conflict,
}

/// A to-device message waiting for its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToDeviceRow {
    /// Position in the to-device stream.
    pub stream_pos: u64,
    /// Sender.
    pub sender: OwnedUserId,
    /// Event type.
    pub kind: String,
    /// Content as JSON.
    pub content: String,
}

/// One message of a `/sendToDevice` call, resolved to a device.
#[derive(Debug, Clone)]
pub struct NewToDevice {
    /// Recipient.
    pub user_id: OwnedUserId,
    /// Recipient device.
    pub device_id: OwnedDeviceId,
    /// Content as JSON.
    pub content: String,
    /// Delivered whatever the devices' trust (verification between an account's own
    /// devices, or device trust switched off). Otherwise the message is held, inside the
    /// queueing transaction, until both its sending and receiving devices are trusted.
    pub exempt: bool,
}

/// A key backup version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupVersionRow {
    /// The version (decimal string in the API).
    pub version: u64,
    /// Backup algorithm.
    pub algorithm: String,
    /// Algorithm-specific data, JSON.
    pub auth_data: String,
    /// Changes with every key write.
    pub etag: u64,
    /// Number of keys stored.
    pub count: u64,
}

/// A backed-up room key session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackupKeyRow {
    /// Room.
    pub room_id: String,
    /// Megolm session id.
    pub session_id: String,
    /// The `KeyBackupData` object, JSON.
    pub json: String,
}

/// End-to-end encryption material.
#[async_trait]
pub trait E2eeStore: Send + Sync {
    /// A device's identity keys (signed `DeviceKeys` JSON).
    async fn device_keys(&self, user: &UserId, device: &DeviceId) -> Result<Option<String>>;
    /// All device keys of a user, by device.
    async fn user_device_keys(&self, user: &UserId) -> Result<BTreeMap<OwnedDeviceId, String>>;
    /// Stores a device's keys; records a device list change when they are new or changed.
    async fn set_device_keys(&self, user: &UserId, device: &DeviceId, json: String) -> Result<()>;
    /// Stores one-time keys of a device.
    async fn add_one_time_keys(
        &self,
        user: &UserId,
        device: &DeviceId,
        keys: Vec<(String, String)>,
    ) -> Result<Vec<(String, OneTimeKeyUpload)>>;
    /// Replaces the fallback key of each algorithm given.
    async fn set_fallback_keys(
        &self,
        user: &UserId,
        device: &DeviceId,
        keys: Vec<(String, String)>,
    ) -> Result<()>;
    /// Unclaimed one-time keys per algorithm.
    async fn one_time_key_counts(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<BTreeMap<String, u64>>;
    /// Algorithms with an unused fallback key.
    async fn unused_fallback_algorithms(
        &self,
        user: &UserId,
        device: &DeviceId,
    ) -> Result<Vec<String>>;
    /// Takes one one-time key of `algorithm` (each handed out once), else the fallback key.
    async fn claim_key(
        &self,
        user: &UserId,
        device: &DeviceId,
        algorithm: &str,
    ) -> Result<Option<ClaimedKey>>;

    /// A cross-signing key (`master`, `self_signing`, `user_signing`).
    async fn cross_signing_key(&self, user: &UserId, kind: &str) -> Result<Option<String>>;
    /// Stores cross-signing keys together; records a device list change.
    async fn set_cross_signing_keys(
        &self,
        user: &UserId,
        keys: Vec<(String, String)>,
    ) -> Result<()>;
    /// Replaces a stored key object (device or cross-signing) after signatures were added;
    /// records a device list change. `kind` is `device:<id>` or a cross-signing kind.
    async fn replace_signed_key(&self, user: &UserId, kind: &str, json: String) -> Result<()>;

    /// Users whose device lists changed after `since`, with the latest position.
    async fn device_list_changes(&self, since: u64) -> Result<Vec<OwnedUserId>>;
    /// The latest device list position.
    async fn max_device_list_pos(&self) -> Result<u64>;
    /// Device-list changes after `since`, in order: `(position, user)`.
    async fn device_list_changes_after(
        &self,
        since: u64,
        limit: usize,
    ) -> Result<Vec<(u64, OwnedUserId)>>;
    /// Records a device list change (a device added or removed).
    async fn device_list_changed(&self, user: &UserId) -> Result<()>;

    /// Queues to-device messages once per sender device and transaction id; `false` if this
    /// transaction was already delivered.
    async fn queue_to_device(
        &self,
        sender: &UserId,
        sender_device: &DeviceId,
        txn_id: &str,
        kind: &str,
        messages: Vec<NewToDevice>,
    ) -> Result<bool>;
    /// Grants `user` a cross-signing reset until `expires_ts`.
    async fn grant_cross_signing_reset(&self, user: &UserId, expires_ts: u64) -> Result<()>;
    /// The expiry of `user`'s cross-signing reset grant, if any.
    async fn cross_signing_reset_grant(&self, user: &UserId) -> Result<Option<u64>>;
    /// Removes a used grant.
    async fn clear_cross_signing_reset(&self, user: &UserId) -> Result<()>;
    /// Deliverable messages for a device after `since`, oldest first.
    async fn to_device_since(
        &self,
        user: &UserId,
        device: &DeviceId,
        since: u64,
        limit: usize,
    ) -> Result<Vec<ToDeviceRow>>;
    /// Deletes a device's delivered messages up to `up_to` (acknowledged by a later sync).
    async fn ack_to_device(&self, user: &UserId, device: &DeviceId, up_to: u64) -> Result<()>;
    /// The latest to-device position.
    async fn max_to_device_pos(&self) -> Result<u64>;

    /// Creates a backup version; returns it.
    async fn create_backup(&self, user: &UserId, algorithm: &str, auth_data: String)
    -> Result<u64>;
    /// A backup version (the latest non-deleted one for `None`).
    async fn backup(&self, user: &UserId, version: Option<u64>)
    -> Result<Option<BackupVersionRow>>;
    /// Replaces a version's auth data; `false` if it does not exist.
    async fn update_backup(&self, user: &UserId, version: u64, auth_data: String) -> Result<bool>;
    /// Deletes a version and its keys; `false` if it does not exist.
    async fn delete_backup(&self, user: &UserId, version: u64) -> Result<bool>;
    /// Stores keys in a version, replacing stored ones of the same session (the service has
    /// already decided which keys win); bumps the version's etag.
    async fn put_backup_keys(
        &self,
        user: &UserId,
        version: u64,
        keys: Vec<BackupKeyRow>,
    ) -> Result<()>;
    /// Keys of a version, optionally of one room or one session.
    async fn backup_keys(
        &self,
        user: &UserId,
        version: u64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Vec<BackupKeyRow>>;
    /// Deletes keys of a version, optionally of one room or one session.
    async fn delete_backup_keys(
        &self,
        user: &UserId,
        version: u64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<()>;
}
