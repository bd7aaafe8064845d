//! End-to-end encryption across servers: device keys and one-time keys of other servers'
//! users (asked of their server on each query, so never stale), this server's users' keys for
//! other servers, to-device messages both ways, and device-list change announcements.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#end-to-end-encryption>

use std::collections::BTreeMap;

use palisade_core::{Error, Result, config::TrustMode};
use palisade_service::e2ee::Recipient;
use ruma::{
    OwnedDeviceId, OwnedServerName, OwnedUserId, ServerName, UInt, UserId,
    api::federation::{
        device::get_devices,
        keys::{claim_keys, get_keys},
        transactions::edu::{
            DeviceListUpdateContent, DirectDeviceContent, SigningKeyUpdateContent,
        },
    },
};
use serde_json::{Map, Value, json};

use crate::Federation;

/// A user map split into this server's users and, per server, the others.
type Split<T> = (BTreeMap<OwnedUserId, T>, BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>>);

fn split_by_server<T: Clone>(origin: &ServerName, wanted: &BTreeMap<OwnedUserId, T>) -> Split<T> {
    let (mut local, mut remote) = (BTreeMap::new(), BTreeMap::<_, BTreeMap<_, _>>::new());
    for (user, value) in wanted {
        if user.server_name() == origin {
            local.insert(user.clone(), value.clone());
        } else {
            remote
                .entry(user.server_name().to_owned())
                .or_default()
                .insert(user.clone(), value.clone());
        }
    }
    (local, remote)
}

fn to_value<T: serde::Serialize>(value: &T) -> Result<Value> {
    serde_json::to_value(value).map_err(|e| Error::internal(e.to_string()))
}

fn typed<T: serde::de::DeserializeOwned>(value: Value) -> Result<T> {
    serde_json::from_value(value).map_err(|e| Error::internal(format!("key answer: {e}")))
}

/// A failure entry for a server that did not answer.
fn unreachable(error: &Error) -> Value {
    json!({ "status": 503, "message": error.message })
}

impl Federation {
    /// `/keys/query` for a local user: this server's users from storage, every other user
    /// asked of their own server (which may only speak for its own users).
    pub async fn query_keys(
        &self,
        requester: &UserId,
        wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<Value> {
        let (local, remote) = split_by_server(&self.services.config.server_name, wanted);
        let mut found = self.services.e2ee.query_keys(Some(requester), &local).await?;
        for (server, users) in remote {
            match self.client.send(&server, get_keys::v1::Request::new(users)).await {
                Ok(answer) => {
                    let own = |user: &OwnedUserId| user.server_name() == server;
                    for (user, devices) in answer.device_keys.iter().filter(|(u, _)| own(u)) {
                        found["device_keys"][user.as_str()] = to_value(devices)?;
                    }
                    for (user, key) in answer.master_keys.iter().filter(|(u, _)| own(u)) {
                        found["master_keys"][user.as_str()] = to_value(key)?;
                    }
                    for (user, key) in answer.self_signing_keys.iter().filter(|(u, _)| own(u)) {
                        found["self_signing_keys"][user.as_str()] = to_value(key)?;
                    }
                }
                Err(error) => found["failures"][server.as_str()] = unreachable(&error),
            }
        }
        Ok(found)
    }

    /// `/keys/claim` for a local user: one-time keys of this server's users from storage, the
    /// others claimed from their servers.
    pub async fn claim_keys(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> Result<Value> {
        let (local, remote) = split_by_server(&self.services.config.server_name, wanted);
        let mut claimed = self.services.e2ee.claim_keys(&local).await?;
        for (server, users) in remote {
            let request = claim_keys::v1::Request::new(typed(to_value(&users)?)?);
            match self.client.send(&server, request).await {
                Ok(answer) => {
                    for (user, keys) in answer.one_time_keys {
                        if user.server_name() == server {
                            claimed["one_time_keys"][user.as_str()] = to_value(&keys)?;
                        }
                    }
                }
                Err(error) => claimed["failures"][server.as_str()] = unreachable(&error),
            }
        }
        Ok(claimed)
    }

    /// `/user/keys/query` from another server: this server's users only.
    pub async fn local_keys(
        &self,
        wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<get_keys::v1::Response> {
        let (local, _) = split_by_server(&self.services.config.server_name, wanted);
        let mut found = self.services.e2ee.query_keys(None, &local).await?;
        let mut response = get_keys::v1::Response::new(typed(found["device_keys"].take())?);
        response.master_keys = typed(found["master_keys"].take())?;
        response.self_signing_keys = typed(found["self_signing_keys"].take())?;
        Ok(response)
    }

    /// `/user/keys/claim` from another server: this server's users only.
    pub async fn local_claim(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> Result<claim_keys::v1::Response> {
        let (local, _) = split_by_server(&self.services.config.server_name, wanted);
        let mut claimed = self.services.e2ee.claim_keys(&local).await?;
        Ok(claim_keys::v1::Response::new(typed(claimed["one_time_keys"].take())?))
    }

    /// `/user/devices/{userId}` from another server: a local user's devices as other users
    /// see them.
    pub async fn local_devices(&self, user: &UserId) -> Result<get_devices::v1::Response> {
        if user.server_name() != self.services.config.server_name {
            return Err(Error::not_found("Not a user of this server"));
        }
        let wanted = BTreeMap::from([(user.to_owned(), Vec::new())]);
        let mut found = self.services.e2ee.query_keys(None, &wanted).await?;
        let position = self.services.e2ee.device_list_position().await?;
        let mut response = get_devices::v1::Response::new(
            user.to_owned(),
            UInt::try_from(position).unwrap_or_default(),
        );
        if let Some(devices) = found["device_keys"][user.as_str()].as_object() {
            for (device_id, keys) in devices {
                let mut device = get_devices::v1::UserDevice::new(
                    device_id.as_str().into(),
                    typed(keys.clone())?,
                );
                device.device_display_name =
                    keys["unsigned"]["device_display_name"].as_str().map(str::to_owned);
                response.devices.push(device);
            }
        }
        response.master_key = typed(found["master_keys"][user.as_str()].take())?;
        response.self_signing_key = typed(found["self_signing_keys"][user.as_str()].take())?;
        Ok(response)
    }

    /// Relays a local device's to-device messages to other servers' users, one
    /// `m.direct_to_device` EDU per server. A device its owner has not approved reaches no
    /// one elsewhere (as it reaches no one here until approved).
    pub async fn send_to_device(
        &self,
        sender: &UserId,
        sender_device: &ruma::DeviceId,
        kind: &str,
        txn_id: &str,
        messages: &BTreeMap<OwnedUserId, BTreeMap<Recipient, Value>>,
    ) -> Result<()> {
        let (_, remote) = split_by_server(&self.services.config.server_name, messages);
        if remote.is_empty() || self.services.config.listen.federation.is_none() {
            return Ok(());
        }
        let trust = &self.services.trust;
        if trust.mode() != TrustMode::Off && !trust.is_trusted(sender, sender_device).await? {
            tracing::info!(%sender, "not relaying to-device messages of an unapproved device");
            return Ok(());
        }
        for (server, users) in remote {
            let mut per_user = Map::new();
            for (user, devices) in users {
                let devices: Map<String, Value> = devices
                    .into_iter()
                    .map(|(recipient, content)| {
                        let device = match recipient {
                            Recipient::Device(id) => id,
                            Recipient::AllDevices => "*".to_owned(),
                        };
                        (device, content)
                    })
                    .collect();
                per_user.insert(user.to_string(), Value::Object(devices));
            }
            let edu = json!({
                "edu_type": "m.direct_to_device",
                "content": {
                    "sender": sender,
                    "type": kind,
                    "message_id": format!("{sender_device}/{txn_id}"),
                    "messages": per_user,
                },
            });
            self.sender.queue_edu(vec![server], edu.to_string()).await?;
        }
        Ok(())
    }

    /// An `m.direct_to_device` EDU: messages from another server's user to local devices.
    pub(crate) async fn remote_to_device(
        &self,
        origin: &ServerName,
        content: DirectDeviceContent,
    ) -> Result<()> {
        if content.sender.server_name() != origin {
            return Err(Error::forbidden("to-device messages from another server's user"));
        }
        let mut messages = BTreeMap::new();
        for (user, devices) in content.messages {
            let mut targets = BTreeMap::new();
            for (device, raw) in devices {
                let recipient = Recipient::from(&device);
                let content: Value = serde_json::from_str(raw.json().get())
                    .map_err(|e| Error::bad_json(e.to_string()))?;
                targets.insert(recipient, content);
            }
            messages.insert(user, targets);
        }
        self.services
            .e2ee
            .receive_to_device(
                &content.sender,
                &content.ev_type.to_string(),
                content.message_id.as_str(),
                &messages,
            )
            .await
    }

    /// `m.device_list_update`: another server's user changed devices.
    pub(crate) async fn remote_device_list_update(
        &self,
        origin: &ServerName,
        content: DeviceListUpdateContent,
    ) -> Result<()> {
        self.remote_keys_changed(origin, &content.user_id).await
    }

    /// `m.signing_key_update`: another server's user changed cross-signing keys.
    pub(crate) async fn remote_signing_key_update(
        &self,
        origin: &ServerName,
        content: SigningKeyUpdateContent,
    ) -> Result<()> {
        self.remote_keys_changed(origin, &content.user_id).await
    }

    async fn remote_keys_changed(&self, origin: &ServerName, user: &UserId) -> Result<()> {
        if user.server_name() != origin {
            return Err(Error::forbidden("a key change of another server's user"));
        }
        self.services.e2ee.remote_device_list_changed(user).await
    }
}
