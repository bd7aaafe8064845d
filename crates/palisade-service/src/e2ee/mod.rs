//! End-to-end encryption support: the server stores and relays keys and encrypted messages it
//! cannot read, and checks every signature it is asked to store.
//!
//! - `keys.rs`: device keys, one-time and fallback keys, cross-signing keys and signatures.
//! - `to_device.rs`: to-device messages (delivered at least once, deleted once acknowledged).
//! - `backup.rs`: server-side key backup.
//! - `device_lists.rs`: who must refetch whose keys, for `/sync` and `/keys/changes`.

mod backup;
mod device_lists;
mod keys;
mod remote;
mod to_device;

use std::sync::Arc;

use palisade_core::{Error, Result};
use palisade_storage::E2eeStore;
use ruma::{CanonicalJsonObject, UserId};
use serde_json::Value;

use crate::{
    AccountService, DeviceTrustService, RoomService, notify::Notifier, outbound::OutboundSlot,
};

pub use backup::BackupVersion;
pub use device_lists::DeviceListChanges;
pub use remote::{Split, split_by_server};
pub use to_device::Recipient;

/// End-to-end encryption support.
pub struct E2eeService {
    store: Arc<dyn E2eeStore>,
    rooms: Arc<RoomService>,
    accounts: Arc<AccountService>,
    notifier: Arc<Notifier>,
    trust: Arc<DeviceTrustService>,
    outbound: OutboundSlot,
}

impl E2eeService {
    /// The service.
    pub fn new(
        store: Arc<dyn E2eeStore>,
        rooms: Arc<RoomService>,
        accounts: Arc<AccountService>,
        notifier: Arc<Notifier>,
        trust: Arc<DeviceTrustService>,
        outbound: OutboundSlot,
    ) -> Self {
        Self { store, rooms, accounts, notifier, trust, outbound }
    }

    /// The trust policy these operations apply, for sync.
    pub(crate) fn trust(&self) -> &Arc<DeviceTrustService> {
        &self.trust
    }

    /// The latest to-device stream position.
    pub(crate) async fn to_device_position(&self) -> Result<u64> {
        self.store.max_to_device_pos().await
    }

    /// Another server says one of its users' devices or cross-signing keys changed: local
    /// users sharing a room with them refetch their keys.
    pub async fn remote_device_list_changed(&self, user: &UserId) -> Result<()> {
        self.store.device_list_changed(user).await?;
        self.announce_key_change(user).await
    }

    /// Wakes everyone who shares a room with `user` (and `user`): their device lists changed.
    async fn announce_key_change(&self, user: &UserId) -> Result<()> {
        self.notifier.notify_user(user);
        for membership in self.rooms.memberships_of(user).await? {
            if membership.membership == "join" {
                self.rooms.notify_room(&membership.room_id).await?;
            }
        }
        Ok(())
    }
}

/// Parses a client's key object into canonical JSON, or `M_BAD_JSON`.
fn canonical(value: &Value, what: &str) -> Result<CanonicalJsonObject> {
    let map = value
        .as_object()
        .cloned()
        .ok_or_else(|| Error::bad_json(format!("{what} must be an object")))?;
    ruma::canonical_json::try_from_json_map(map)
        .map_err(|e| Error::bad_json(format!("{what}: {e}")))
}

/// Whether `object` carries a valid ed25519 signature by `signer` with `key_id`
/// (`ed25519:<id>`) for the unpadded-base64 `public_key`.
fn signed_by(
    object: &CanonicalJsonObject,
    signer: &UserId,
    key_id: &str,
    public_key: &str,
) -> bool {
    use base64::{Engine, engine::general_purpose::STANDARD_NO_PAD};
    let signature = object
        .get("signatures")
        .and_then(|s| s.as_object())
        .and_then(|s| s.get(signer.as_str()))
        .and_then(|s| s.as_object())
        .and_then(|s| s.get(key_id))
        .and_then(|s| s.as_str())
        .and_then(|s| STANDARD_NO_PAD.decode(s.trim_end_matches('=')).ok());
    let public_key = STANDARD_NO_PAD.decode(public_key.trim_end_matches('=')).ok();
    let (Some(signature), Some(public_key)) = (signature, public_key) else {
        return false;
    };
    let Ok(canonical) = ruma::signatures::to_canonical_json_string_for_signing(object) else {
        return false;
    };
    ruma::signatures::verify_canonical_json_bytes(
        &ruma::SigningKeyAlgorithm::Ed25519,
        &public_key,
        &signature,
        canonical.as_bytes(),
    )
    .is_ok()
}

/// Whether a stored key object (JSON) carries a valid signature of `user` by the stored
/// cross-signing key `signer` (JSON).
pub(crate) fn signed_by_cross_signing_key(object: &str, user: &UserId, signer: &str) -> bool {
    let (Ok(object), Ok(signer)) = (
        serde_json::from_str::<CanonicalJsonObject>(object),
        serde_json::from_str::<CanonicalJsonObject>(signer),
    ) else {
        return false;
    };
    match keys::single_key(&signer) {
        Some((key_id, public)) => signed_by(&object, user, &key_id, &public),
        None => false,
    }
}

/// The object without `signatures` and `unsigned`: what a signature covers.
fn signed_part(object: &CanonicalJsonObject) -> CanonicalJsonObject {
    let mut object = object.clone();
    object.remove("signatures");
    object.remove("unsigned");
    object
}
