//! Users, devices and access tokens.

use async_trait::async_trait;
use palisade_core::Result;
use ruma::{DeviceId, OwnedDeviceId, OwnedUserId, UserId};

/// A stored account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRow {
    /// The full user id.
    pub user_id: OwnedUserId,
    /// PHC-format argon2 hash; `None` for accounts that cannot log in with a password.
    pub password_hash: Option<String>,
    /// Whether the user administers the server.
    pub admin: bool,
    /// Whether the account is deactivated (it can no longer log in; its id stays reserved).
    pub deactivated: bool,
    /// Whether the account is a guest's (limited to the endpoints guests may use).
    pub guest: bool,
    /// Creation time, milliseconds since the epoch.
    pub created_ts: u64,
    /// Profile display name.
    pub displayname: Option<String>,
    /// Profile avatar.
    pub avatar_url: Option<String>,
    /// Whether an administrator locked the account.
    pub locked: bool,
    /// Whether an administrator suspended the account.
    pub suspended: bool,
    /// Profile fields beyond the display name and avatar (`m.tz`, custom ones), as a JSON
    /// object.
    pub profile_fields: Option<String>,
}

/// A stored device (a session of a user, with its access token).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRow {
    /// Owner.
    pub user_id: OwnedUserId,
    /// Device id, unique per user.
    pub device_id: OwnedDeviceId,
    /// Name chosen by the user.
    pub display_name: Option<String>,
    /// Last time the device was seen, milliseconds since the epoch.
    pub last_seen_ts: Option<u64>,
    /// Address the device was last seen from.
    pub last_seen_ip: Option<String>,
    /// When the device signed in, milliseconds since the epoch.
    pub created_ts: u64,
    /// Why the device is trusted without a cross-signing signature: `first` (the account's
    /// first device, before it had a cross-signing identity) or `admin` (approved).
    pub approval: Option<String>,
    /// The trust state last computed for the device.
    pub trusted: bool,
    /// The client's `User-Agent` at sign-in.
    pub user_agent: Option<String>,
}

/// A device to create together with its first access token.
#[derive(Debug, Clone)]
pub struct NewDevice {
    /// Owner.
    pub user_id: OwnedUserId,
    /// Device id.
    pub device_id: OwnedDeviceId,
    /// Initial display name.
    pub display_name: Option<String>,
    /// SHA-256 of the access token; the token itself is never stored.
    pub token_hash: [u8; 32],
    /// Creation time, milliseconds since the epoch.
    pub now: u64,
    /// Client address.
    pub ip: Option<String>,
    /// The client's `User-Agent`.
    pub user_agent: Option<String>,
    /// Approve the device as `first` if the account has no other device and no cross-signing
    /// master key (checked in the same transaction as the insert).
    pub approve_if_first: bool,
    /// When the access token expires (milliseconds since the epoch); never when `None`.
    pub expires_ts: Option<u64>,
    /// SHA-256 of a refresh token issued with the access token.
    pub refresh_hash: Option<[u8; 32]>,
}

/// The tokens a refresh issues, hashed.
#[derive(Debug, Clone, Copy)]
pub struct RefreshedTokens {
    /// SHA-256 of the new access token.
    pub access_hash: [u8; 32],
    /// SHA-256 of the new refresh token.
    pub refresh_hash: [u8; 32],
    /// When the new access token expires.
    pub expires_ts: u64,
    /// Now, milliseconds since the epoch.
    pub now: u64,
}

/// The owner of an access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenOwner {
    /// The user.
    pub user_id: OwnedUserId,
    /// The device the token belongs to.
    pub device_id: OwnedDeviceId,
    /// Whether the user is a guest.
    pub guest: bool,
    /// Whether an administrator locked the account (no request is served).
    pub locked: bool,
    /// Whether an administrator suspended the account (it may read but not write).
    pub suspended: bool,
    /// When the token expires (milliseconds since the epoch); never when `None`.
    pub expires_ts: Option<u64>,
    /// Whether the token came from a refresh whose old refresh token is still usable (until
    /// this token is first used).
    pub refreshed: bool,
}

/// Users, devices and access tokens.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Creates a user; returns `false` without change if the id is taken (even if deactivated).
    async fn create_user(&self, user: UserRow) -> Result<bool>;
    /// One user.
    async fn user(&self, user_id: &UserId) -> Result<Option<UserRow>>;
    /// Sets (or, with `None`, removes) a profile field beyond the display name and avatar;
    /// `value` is JSON.
    async fn set_profile_field(
        &self,
        user_id: &UserId,
        field: &str,
        value: Option<String>,
    ) -> Result<()>;
    /// Locks or unlocks (`locked`), suspends or reinstates (`suspended`) an account; `false`
    /// if there is no such user.
    async fn set_restrictions(
        &self,
        user_id: &UserId,
        locked: Option<bool>,
        suspended: Option<bool>,
    ) -> Result<bool>;
    /// All users, ordered by id.
    async fn users(&self) -> Result<Vec<UserRow>>;
    /// Active users whose id or display name contains `term` (case-insensitive), by id.
    async fn search_users(&self, term: &str, limit: usize) -> Result<Vec<UserRow>>;
    /// Replaces the password hash; returns `false` if the user does not exist.
    async fn set_password_hash(&self, user_id: &UserId, hash: &str) -> Result<bool>;
    /// Makes a guest account a full one with a password; `false` unless it was a guest.
    async fn upgrade_guest(&self, user_id: &UserId, password_hash: Option<&str>) -> Result<bool>;
    /// Grants or revokes admin; returns `false` if the user does not exist.
    async fn set_admin(&self, user_id: &UserId, admin: bool) -> Result<bool>;
    /// Marks the user deactivated, clears the password and profile, and removes every device
    /// and token, in one transaction. Returns `false` if the user does not exist.
    async fn deactivate_user(&self, user_id: &UserId) -> Result<bool>;
    /// Sets the display name (`None` clears it).
    async fn set_displayname(&self, user_id: &UserId, name: Option<&str>) -> Result<()>;
    /// Sets the avatar URL (`None` clears it).
    async fn set_avatar_url(&self, user_id: &UserId, url: Option<&str>) -> Result<()>;

    /// Creates a device and its access token. A device with the same id is replaced, and its
    /// old tokens revoked, as when a client logs in again with a known `device_id`.
    async fn create_device(&self, device: NewDevice) -> Result<()>;
    /// Who owns the token with this hash.
    async fn token_owner(&self, token_hash: &[u8; 32]) -> Result<Option<TokenOwner>>;
    /// Uses a refresh token: its access token and any pair issued from it before (unused)
    /// go, the refresh token it replaced goes, and the new pair is stored; `None` for an
    /// unknown refresh token. Returns the device's owner and id.
    async fn refresh_session(
        &self,
        refresh_hash: &[u8; 32],
        new: RefreshedTokens,
    ) -> Result<Option<(OwnedUserId, OwnedDeviceId)>>;
    /// The first use of a refreshed access token: the refresh token it was made from goes.
    async fn claim_refreshed_token(&self, token_hash: &[u8; 32]) -> Result<()>;
    /// The user's devices, ordered by id.
    async fn devices(&self, user_id: &UserId) -> Result<Vec<DeviceRow>>;
    /// One device.
    async fn device(&self, user_id: &UserId, device_id: &DeviceId) -> Result<Option<DeviceRow>>;
    /// Renames a device; returns `false` if it does not exist.
    async fn set_device_display_name(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        name: Option<&str>,
    ) -> Result<bool>;
    /// Sets or clears a device's approval; returns `false` if the device does not exist.
    async fn set_device_approval(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        approval: Option<&str>,
    ) -> Result<bool>;
    /// Stores the computed trust state. `None` if it did not change; otherwise the users whose
    /// held to-device messages a newly trusted device released (in the same transaction, so
    /// no message queued meanwhile stays held).
    async fn set_device_trusted(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        trusted: bool,
    ) -> Result<Option<Vec<OwnedUserId>>>;
    /// Devices never trusted that signed in before `ts`.
    async fn untrusted_devices_created_before(
        &self,
        ts: u64,
    ) -> Result<Vec<(OwnedUserId, OwnedDeviceId)>>;
    /// Records when and where a device was last seen.
    async fn touch_device(
        &self,
        user_id: &UserId,
        device_id: &DeviceId,
        ts: u64,
        ip: Option<&str>,
    ) -> Result<()>;
    /// Deletes devices and their tokens; returns the token hashes revoked (for cache eviction).
    async fn delete_devices(
        &self,
        user_id: &UserId,
        device_ids: &[OwnedDeviceId],
    ) -> Result<Vec<[u8; 32]>>;
    /// Deletes every device of the user except `keep`; returns the token hashes revoked.
    async fn delete_all_devices(
        &self,
        user_id: &UserId,
        keep: Option<&DeviceId>,
    ) -> Result<Vec<[u8; 32]>>;
}
