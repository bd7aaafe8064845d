//! Device keys, one-time and fallback keys, cross-signing keys and signatures.

use std::collections::BTreeMap;

use palisade_core::{Error, ErrorKind, Result};
use palisade_storage::OneTimeKeyUpload;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OneTimeKeyAlgorithm, OwnedDeviceId, OwnedOneTimeKeyId,
    OwnedUserId, UserId,
    api::client::keys::{
        claim_keys, get_keys,
        upload_signatures::{self, v3::Failure},
    },
};
use serde_json::{Map, Value, json};

use super::{E2eeService, canonical, signed_by, signed_part};
use crate::{
    Session, UiaAuth, UiaPurpose,
    events::{stored_raw, to_raw},
};

/// The kinds of cross-signing key and the `usage` each must declare.
pub const CROSS_SIGNING_KINDS: [&str; 3] = ["master", "self_signing", "user_signing"];

/// The single ed25519 key of a cross-signing key object: (`ed25519:<pub>`, `<pub>`).
pub(super) fn single_key(object: &CanonicalJsonObject) -> Option<(String, String)> {
    let keys = object.get("keys")?.as_object()?;
    if keys.len() != 1 {
        return None;
    }
    let (id, key) = keys.iter().next()?;
    Some((id.clone(), key.as_str()?.to_owned()))
}

fn string_field<'a>(object: &'a CanonicalJsonObject, field: &str) -> Option<&'a str> {
    object.get(field).and_then(CanonicalJsonValue::as_str)
}

fn to_string(object: &CanonicalJsonObject) -> Result<String> {
    serde_json::to_string(object).map_err(|e| Error::internal(e.to_string()))
}

fn parse_stored(json: &str) -> Result<CanonicalJsonObject> {
    serde_json::from_str(json).map_err(|e| Error::internal(format!("stored key unreadable: {e}")))
}

/// One `failures` entry of `/keys/signatures/upload` (ruma's type has no constructor).
fn failure(errcode: &str, error: &str) -> Failure {
    serde_json::from_value(json!({ "errcode": errcode, "error": error }))
        .expect("a failure is an error code and a message")
}

impl E2eeService {
    /// `/keys/upload`: the device's identity keys (once; the same keys may be sent again),
    /// one-time keys and fallback keys. Returns the one-time key counts.
    pub async fn upload_keys(
        &self,
        session: &Session,
        device_keys: Option<&Value>,
        one_time_keys: &BTreeMap<String, Value>,
        fallback_keys: &BTreeMap<String, Value>,
    ) -> Result<BTreeMap<OneTimeKeyAlgorithm, u64>> {
        let (user, device) = (session.user_id(), session.device_id());
        if let Some(keys) = device_keys {
            let object = canonical(keys, "device_keys")?;
            if string_field(&object, "user_id") != Some(user.as_str())
                || string_field(&object, "device_id") != Some(device.as_str())
            {
                return Err(Error::invalid_param(
                    "device_keys must be for the device of the access token",
                ));
            }
            let key_id = format!("ed25519:{device}");
            let ed25519 = object
                .get("keys")
                .and_then(|k| k.as_object())
                .and_then(|k| k.get(&key_id))
                .and_then(|k| k.as_str())
                .ok_or_else(|| {
                    Error::invalid_param("device_keys lacks the device's ed25519 key")
                })?;
            if !signed_by(&object, user, &key_id, ed25519) {
                return Err(Error::invalid_param(
                    "device_keys is not signed by the device's own key",
                ));
            }
            if let Some(stored) = self.store.device_keys(user, device).await? {
                let stored = parse_stored(&stored)?;
                if stored.get("keys") != object.get("keys") {
                    return Err(Error::invalid_param(
                        "This device already has different identity keys; sign in as a new device",
                    ));
                }
                // The same keys again: keep what is stored, with the signatures the server
                // checked when they were added.
            } else {
                let object = only_self_signature(&object, user, &key_id);
                self.store.set_device_keys(user, device, to_string(&object)?).await?;
            }
            self.trust.refresh(user, None).await?;
            self.announce_key_change(user).await?;
        }
        let mut otks = Vec::with_capacity(one_time_keys.len());
        for (key_id, key) in one_time_keys {
            otks.push((key_id.clone(), to_string(&canonical(key, "one-time key")?)?));
        }
        if !otks.is_empty() {
            let outcomes = self.store.add_one_time_keys(user, device, otks).await?;
            if let Some((key_id, _)) =
                outcomes.iter().find(|(_, o)| *o == OneTimeKeyUpload::Conflict)
            {
                return Err(Error::invalid_param(format!(
                    "One-time key {key_id} already exists with other content"
                )));
            }
        }
        let mut fallbacks = Vec::with_capacity(fallback_keys.len());
        for (key_id, key) in fallback_keys {
            fallbacks.push((key_id.clone(), to_string(&canonical(key, "fallback key")?)?));
        }
        if !fallbacks.is_empty() {
            self.store.set_fallback_keys(user, device, fallbacks).await?;
        }
        Ok(by_algorithm(self.store.one_time_key_counts(user, device).await?))
    }

    /// `/keys/query` for local users: device keys (with display names), master and
    /// self-signing keys, and the requester's own user-signing key. Another server asking
    /// has no requester.
    pub async fn query_local_keys(
        &self,
        requester: Option<&UserId>,
        wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<get_keys::v3::Response> {
        let mut found = get_keys::v3::Response::new();
        // Other servers' users are asked of their servers (palisade-federation), not here.
        for (user, devices) in wanted.iter().filter(|(user, _)| self.accounts.is_local(user)) {
            let names: BTreeMap<_, _> = self
                .accounts
                .devices(user)
                .await?
                .into_iter()
                .map(|d| (d.device_id, d.display_name))
                .collect();
            let mut keys = BTreeMap::new();
            for (device, json) in self.store.user_device_keys(user).await? {
                if !devices.is_empty() && !devices.contains(&device) {
                    continue;
                }
                // Other users never learn of an untrusted device, so they never encrypt for it.
                if Some(&**user) != requester && !self.trust.is_trusted(user, &device).await? {
                    continue;
                }
                let raw = match names.get(&device) {
                    Some(Some(name)) => {
                        let mut object: Map<String, Value> = serde_json::from_str(&json)
                            .map_err(|e| Error::internal(e.to_string()))?;
                        object.insert("unsigned".into(), json!({ "device_display_name": name }));
                        to_raw(&object)?
                    }
                    _ => stored_raw(json)?,
                };
                keys.insert(device, raw);
            }
            found.device_keys.insert(user.clone(), keys);
            let cross_signing = [
                ("master", &mut found.master_keys),
                ("self_signing", &mut found.self_signing_keys),
            ];
            for (kind, target) in cross_signing {
                if let Some(json) = self.store.cross_signing_key(user, kind).await? {
                    target.insert(user.clone(), stored_raw(json)?);
                }
            }
            if Some(&**user) == requester
                && let Some(json) = self.store.cross_signing_key(user, "user_signing").await?
            {
                found.user_signing_keys.insert(user.clone(), stored_raw(json)?);
            }
        }
        Ok(found)
    }

    /// `/keys/claim`: one one-time key per device (each handed out once), else its fallback key.
    pub async fn claim_local_keys(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> Result<claim_keys::v3::Response> {
        let mut claimed = BTreeMap::new();
        for (user, devices) in wanted.iter().filter(|(user, _)| self.accounts.is_local(user)) {
            let mut user_keys = BTreeMap::new();
            for (device, algorithm) in devices {
                if let Some(key) = self.store.claim_key(user, device, algorithm).await? {
                    let id = OwnedOneTimeKeyId::try_from(key.key_id.as_str())
                        .map_err(|e| Error::internal(format!("stored key id: {e}")))?;
                    user_keys.insert(device.clone(), BTreeMap::from([(id, stored_raw(key.json)?)]));
                }
            }
            if !user_keys.is_empty() {
                claimed.insert(user.clone(), user_keys);
            }
        }
        Ok(claim_keys::v3::Response::new(claimed))
    }

    /// `/keys/device_signing/upload`: the user's cross-signing keys. Replacing existing keys
    /// needs the password; the subkeys must be signed by the master key.
    pub async fn upload_cross_signing_keys(
        &self,
        session: &Session,
        keys: [Option<&Value>; 3],
        auth: Option<UiaAuth>,
    ) -> Result<()> {
        let user = session.user_id();
        let mut objects = Vec::new();
        for (kind, key) in CROSS_SIGNING_KINDS.iter().zip(keys) {
            let Some(key) = key else { continue };
            let object = canonical(key, kind)?;
            if string_field(&object, "user_id") != Some(user.as_str()) {
                return Err(Error::invalid_param(format!(
                    "{kind} key must belong to the uploading user"
                )));
            }
            let usage_ok = object
                .get("usage")
                .and_then(|u| u.as_array())
                .is_some_and(|u| u.iter().any(|v| v.as_str() == Some(kind)));
            if !usage_ok || single_key(&object).is_none() {
                return Err(Error::invalid_param(format!(
                    "{kind} key needs usage `{kind}` and exactly one key"
                )));
            }
            objects.push((*kind, object));
        }
        if objects.is_empty() {
            return Ok(());
        }
        let mut replaces = false;
        for (kind, object) in &objects {
            if let Some(stored) = self.store.cross_signing_key(user, kind).await? {
                replaces |= single_key(&parse_stored(&stored)?) != single_key(object);
            }
        }
        if replaces {
            self.authorize_reset(session, auth).await?;
        } else if !self.trust.is_trusted(user, session.device_id()).await? {
            // Even a first identity: an untrusted device that installed one could sign itself.
            self.authorize_reset(session, auth).await?;
        }
        let master = match objects.iter().find(|(k, _)| *k == "master") {
            Some((_, object)) => object.clone(),
            None => parse_stored(
                &self
                    .store
                    .cross_signing_key(user, "master")
                    .await?
                    .ok_or_else(|| Error::invalid_param("Upload a master key first"))?,
            )?,
        };
        let (master_id, master_key) =
            single_key(&master).ok_or_else(|| Error::internal("stored master key malformed"))?;
        for (kind, object) in &objects {
            if *kind != "master" && !signed_by(object, user, &master_id, &master_key) {
                return Err(Error::new(
                    ErrorKind::InvalidSignature,
                    format!("{kind} key is not signed by the master key"),
                ));
            }
        }
        let stored = objects
            .iter()
            .map(|(k, o)| Ok(((*k).to_owned(), to_string(o)?)))
            .collect::<Result<Vec<_>>>()?;
        self.store.set_cross_signing_keys(user, stored).await?;
        let kinds: Vec<&str> = objects.iter().map(|(k, _)| *k).collect();
        self.trust
            .record(
                "cross_signing_changed",
                user,
                Some(session.device_id()),
                None,
                json!({ "keys": kinds }),
            )
            .await?;
        self.trust.refresh(user, None).await?;
        self.announce_key_change(user).await
    }

    /// `/keys/signatures/upload`: adds the requester's valid signatures to stored keys; every
    /// other signature is reported in `failures` and not stored.
    pub async fn upload_signatures(
        &self,
        requester: &UserId,
        signed: &BTreeMap<OwnedUserId, upload_signatures::v3::SignedKeys>,
    ) -> Result<upload_signatures::v3::Response> {
        let mut response = upload_signatures::v3::Response::new();
        for (user, keys) in signed {
            let mut user_failures = BTreeMap::new();
            for (key_id, object) in keys.iter() {
                let uploaded = serde_json::from_str::<Value>(object.get()).unwrap_or_default();
                if let Err(reason) = self.add_signature(requester, user, key_id, &uploaded).await? {
                    user_failures.insert(key_id.to_owned(), reason);
                }
            }
            if !user_failures.is_empty() {
                response.failures.insert(user.clone(), user_failures);
            }
        }
        Ok(response)
    }

    /// Checks and stores one signed object; `Ok(Err(failure))` for a refused signature.
    async fn add_signature(
        &self,
        requester: &UserId,
        target: &UserId,
        key_id: &str,
        uploaded: &Value,
    ) -> Result<std::result::Result<(), Failure>> {
        let Ok(uploaded) = canonical(uploaded, "signed key") else {
            return Ok(Err(failure("M_BAD_JSON", "Not a key object")));
        };
        // Which stored object is being signed: a device of the target, or one of its
        // cross-signing keys, named by its public key.
        let mut found = None;
        if let Some(json) = self.store.device_keys(target, key_id.into()).await? {
            found = Some((format!("device:{key_id}"), parse_stored(&json)?));
        } else {
            for kind in CROSS_SIGNING_KINDS {
                if let Some(json) = self.store.cross_signing_key(target, kind).await? {
                    let object = parse_stored(&json)?;
                    if single_key(&object).is_some_and(|(_, key)| key == key_id) {
                        found = Some((kind.to_owned(), object));
                    }
                }
            }
        }
        let Some((kind, mut stored)) = found else {
            return Ok(Err(failure("M_NOT_FOUND", "No such key")));
        };
        if signed_part(&stored) != signed_part(&uploaded) {
            return Ok(Err(failure(
                "M_INVALID_PARAM",
                "The signed object differs from the stored key",
            )));
        }
        // The key allowed to sign it: own devices by the self-signing key, the own master key
        // by a device key, another user's master key by the user-signing key.
        let signer_key = match (requester == target, kind.as_str()) {
            (true, k) if k.starts_with("device:") => self.key_of(requester, "self_signing").await?,
            (true, "master") => None,
            (false, "master") => self.key_of(requester, "user_signing").await?,
            _ => return Ok(Err(failure("M_FORBIDDEN", "You may not sign this key"))),
        };
        let signatures = uploaded
            .get("signatures")
            .and_then(|s| s.as_object())
            .and_then(|s| s.get(requester.as_str()))
            .and_then(|s| s.as_object())
            .cloned()
            .unwrap_or_default();
        let mut added = false;
        for (signature_id, signature) in signatures {
            let public_key = match &signer_key {
                Some((id, key)) if *id == signature_id => Some(key.clone()),
                None => {
                    let device = signature_id.strip_prefix("ed25519:").unwrap_or_default();
                    self.device_ed25519(requester, device).await?
                }
                _ => None,
            };
            let Some(public_key) = public_key else { continue };
            if !signed_by(&uploaded, requester, &signature_id, &public_key) {
                return Ok(Err(failure("M_INVALID_SIGNATURE", "Invalid signature")));
            }
            let entry = stored
                .entry("signatures".to_owned())
                .or_insert_with(|| CanonicalJsonValue::Object(Default::default()));
            if let CanonicalJsonValue::Object(by_user) = entry {
                let user_sigs = by_user
                    .entry(requester.to_string())
                    .or_insert_with(|| CanonicalJsonValue::Object(Default::default()));
                if let CanonicalJsonValue::Object(user_sigs) = user_sigs {
                    user_sigs.insert(signature_id.clone(), signature.clone());
                    added = true;
                }
            }
        }
        if !added {
            return Ok(Err(failure("M_INVALID_SIGNATURE", "No signature by an allowed key")));
        }
        self.store.replace_signed_key(target, &kind, to_string(&stored)?).await?;
        self.trust.refresh(target, Some(requester.as_str())).await?;
        self.announce_key_change(target).await?;
        Ok(Ok(()))
    }

    /// Replacing existing cross-signing keys: from a trusted device with the password; from
    /// an untrusted one only while an administrator's reset grant lasts (the grant is used up).
    async fn authorize_reset(&self, session: &Session, auth: Option<UiaAuth>) -> Result<()> {
        let user = session.user_id();
        if !self.trust.is_trusted(user, session.device_id()).await? {
            let now = self.accounts.now();
            let granted =
                self.store.cross_signing_reset_grant(user).await?.is_some_and(|until| until > now);
            if !granted {
                self.trust
                    .record(
                        "cross_signing_reset_refused",
                        user,
                        Some(session.device_id()),
                        None,
                        json!({}),
                    )
                    .await?;
                return Err(Error::forbidden(
                    "This device is not trusted: approve it from a trusted device, or ask an \
                     administrator to allow a cross-signing reset",
                ));
            }
            self.accounts
                .authenticate_interactively(UiaPurpose::ReplaceCrossSigning, Some(user), auth)
                .await?;
            self.store.clear_cross_signing_reset(user).await?;
            return Ok(());
        }
        self.accounts
            .authenticate_interactively(UiaPurpose::ReplaceCrossSigning, Some(user), auth)
            .await
    }

    async fn key_of(&self, user: &UserId, kind: &str) -> Result<Option<(String, String)>> {
        Ok(match self.store.cross_signing_key(user, kind).await? {
            Some(json) => single_key(&parse_stored(&json)?),
            None => None,
        })
    }

    async fn device_ed25519(&self, user: &UserId, device: &str) -> Result<Option<String>> {
        let Some(json) = self.store.device_keys(user, device.into()).await? else {
            return Ok(None);
        };
        let object = parse_stored(&json)?;
        Ok(object
            .get("keys")
            .and_then(|k| k.as_object())
            .and_then(|k| k.get(&format!("ed25519:{device}")))
            .and_then(|k| k.as_str())
            .map(str::to_owned))
    }

    /// One-time key counts and unused fallback key types of a device, for `/sync`.
    pub async fn key_counts(
        &self,
        session: &Session,
    ) -> Result<(BTreeMap<OneTimeKeyAlgorithm, u64>, Vec<OneTimeKeyAlgorithm>)> {
        let (user, device) = (session.user_id(), session.device_id());
        let counts = by_algorithm(self.store.one_time_key_counts(user, device).await?);
        let fallback = self.store.unused_fallback_algorithms(user, device).await?;
        Ok((counts, fallback.iter().map(|a| a.as_str().into()).collect()))
    }
}

/// Stored one-time key counts (by algorithm name), with `signed_curve25519` always counted,
/// zero included, as Synapse does: clients upload keys when they read 0 and do nothing when
/// the entry is missing.
fn by_algorithm(counts: BTreeMap<String, u64>) -> BTreeMap<OneTimeKeyAlgorithm, u64> {
    [(OneTimeKeyAlgorithm::SignedCurve25519, 0)]
        .into_iter()
        .chain(counts.into_iter().map(|(algorithm, count)| (algorithm.as_str().into(), count)))
        .collect()
}

/// Device keys as stored: without `unsigned` (the display name is added when queried) and with
/// only the device's own signature. Cross-signing signatures enter only through
/// `/keys/signatures/upload`, where the server checks them.
fn only_self_signature(
    object: &CanonicalJsonObject,
    user: &UserId,
    key_id: &str,
) -> CanonicalJsonObject {
    let mut object = object.clone();
    object.remove("unsigned");
    let own = object
        .get("signatures")
        .and_then(|s| s.as_object())
        .and_then(|s| s.get(user.as_str()))
        .and_then(|s| s.as_object())
        .and_then(|s| s.get(key_id))
        .cloned();
    let mut by_user = CanonicalJsonObject::new();
    if let Some(signature) = own {
        by_user.insert(key_id.to_owned(), signature);
    }
    let mut signatures = CanonicalJsonObject::new();
    signatures.insert(user.to_string(), CanonicalJsonValue::Object(by_user));
    object.insert("signatures".to_owned(), CanonicalJsonValue::Object(signatures));
    object
}
