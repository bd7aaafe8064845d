//! End-to-end encryption across servers: device keys and one-time keys of other servers'
//! users (asked of their server on each query, so never stale), this server's users' keys for
//! other servers, to-device messages both ways, and device-list change announcements.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#end-to-end-encryption>

use std::collections::BTreeMap;

use palisade_core::{Error, Result};
use palisade_service::e2ee::{Recipient, split_by_server};
use ruma::{
    OwnedDeviceId, OwnedUserId, ServerName, UInt, UserId,
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

impl Federation {
    /// Another server's users' keys, asked of that server (`/user/keys/query`).
    pub(crate) async fn remote_keys(
        &self,
        server: &ServerName,
        users: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<get_keys::v1::Response> {
        self.client.send(server, get_keys::v1::Request::new(users)).await
    }

    /// One-time keys claimed from another server's users' devices (`/user/keys/claim`).
    pub(crate) async fn remote_claim(
        &self,
        server: &ServerName,
        users: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> Result<claim_keys::v1::Response> {
        let claims = users
            .into_iter()
            .map(|(user, devices)| {
                let devices = devices
                    .into_iter()
                    .map(|(device, algorithm)| (device, algorithm.as_str().into()))
                    .collect();
                (user, devices)
            })
            .collect();
        let request = claim_keys::v1::Request::new(claims);
        self.client.send(server, request).await
    }

    /// `/user/keys/query` from another server: this server's users only.
    pub async fn local_keys(
        &self,
        wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<get_keys::v1::Response> {
        let (local, _) = split_by_server(&self.services.config.server_name, wanted);
        let found = self.services.e2ee.query_local_keys(None, &local).await?;
        let mut response = get_keys::v1::Response::new(found.device_keys);
        response.master_keys = found.master_keys;
        response.self_signing_keys = found.self_signing_keys;
        Ok(response)
    }

    /// `/user/keys/claim` from another server: this server's users only.
    pub async fn local_claim(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> Result<claim_keys::v1::Response> {
        let (local, _) = split_by_server(&self.services.config.server_name, wanted);
        let claimed = self.services.e2ee.claim_local_keys(&local).await?;
        Ok(claim_keys::v1::Response::new(claimed.one_time_keys))
    }

    /// `/user/devices/{userId}` from another server: a local user's devices as other users
    /// see them.
    pub async fn local_devices(&self, user: &UserId) -> Result<get_devices::v1::Response> {
        if user.server_name() != self.services.config.server_name {
            return Err(Error::not_found("Not a user of this server"));
        }
        let wanted = BTreeMap::from([(user.to_owned(), Vec::new())]);
        let mut found = self.services.e2ee.query_local_keys(None, &wanted).await?;
        let position = self.services.e2ee.device_list_position().await?;
        let mut response = get_devices::v1::Response::new(
            user.to_owned(),
            UInt::try_from(position).unwrap_or_default(),
        );
        /// What a device's keys say of it beyond the keys (as the key query adds it).
        #[derive(serde::Deserialize)]
        struct Unsigned {
            device_display_name: Option<String>,
        }
        for (device_id, keys) in found.device_keys.remove(user).unwrap_or_default() {
            let unsigned = keys.get_field::<Unsigned>("unsigned").ok().flatten();
            let mut device = get_devices::v1::UserDevice::new(device_id, keys);
            device.device_display_name = unsigned.and_then(|u| u.device_display_name);
            response.devices.push(device);
        }
        response.master_key = found.master_keys.remove(user);
        response.self_signing_key = found.self_signing_keys.remove(user);
        Ok(response)
    }

    /// Queues a local user's to-device messages for `server`'s users as one
    /// `m.direct_to_device` EDU (nothing when this server does not federate).
    pub(crate) async fn relay_to_device(
        &self,
        server: &ServerName,
        sender: &UserId,
        kind: &str,
        message_id: &str,
        messages: Map<String, Value>,
    ) -> Result<()> {
        if self.services.config.listen.federation.is_none() {
            return Ok(());
        }
        let edu = json!({
            "edu_type": "m.direct_to_device",
            "content": { "sender": sender, "type": kind, "message_id": message_id, "messages": messages },
        });
        self.sender.queue_edu(vec![server.to_owned()], edu.to_string()).await
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
