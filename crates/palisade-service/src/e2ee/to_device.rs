//! To-device messages: queued per device, delivered by `/sync` at least once, deleted when the
//! device syncs with a later token, dropped with the device.

use std::collections::BTreeMap;

use palisade_core::config::TrustMode;
use palisade_core::{Error, Result};
use palisade_storage::NewToDevice;
use ruma::{
    OwnedUserId, UserId, events::AnyToDeviceEvent, serde::Raw, to_device::DeviceIdOrAllDevices,
};
use serde_json::Value;

use super::E2eeService;
use crate::{Session, events::event_of};

/// Most to-device messages in one sync response.
const MAX_PER_SYNC: usize = 100;

/// A message's recipients on one user: one device, or all of them (`*`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Recipient {
    /// One device.
    Device(String),
    /// Every device of the user.
    AllDevices,
}

impl From<&DeviceIdOrAllDevices> for Recipient {
    fn from(device: &DeviceIdOrAllDevices) -> Self {
        match device {
            DeviceIdOrAllDevices::DeviceId(id) => Recipient::Device(id.to_string()),
            DeviceIdOrAllDevices::AllDevices => Recipient::AllDevices,
        }
    }
}

impl E2eeService {
    /// Queues a local device's to-device messages for local devices, once per transaction
    /// id (other servers' users are reached through federation).
    pub(super) async fn send_to_local_devices(
        &self,
        session: &Session,
        kind: &str,
        txn_id: &str,
        messages: &BTreeMap<OwnedUserId, BTreeMap<Recipient, Value>>,
    ) -> Result<()> {
        // Verification is how a device becomes trusted, so it passes between an account's own
        // devices; anything else (room keys, secrets) waits for both ends to be trusted.
        let verification = kind.starts_with("m.key.verification.");
        let own = |user: &UserId| verification && user == session.user_id();
        self.queue(session.user_id(), session.device_id(), txn_id, kind, messages, own).await
    }

    /// To-device messages another server relays from its user `sender` to local users
    /// (`m.direct_to_device`), once per message id.
    pub async fn receive_to_device(
        &self,
        sender: &UserId,
        kind: &str,
        message_id: &str,
        messages: &BTreeMap<OwnedUserId, BTreeMap<Recipient, Value>>,
    ) -> Result<()> {
        // Another server's user has no device here: the message id stands for the device.
        let device = <&ruma::DeviceId>::from("federation");
        self.queue(sender, device, message_id, kind, messages, |_| false).await
    }

    /// Queues messages for the local recipients' devices, once per (sender, device,
    /// transaction); `exempt` says which recipients get them whatever the devices' trust.
    async fn queue(
        &self,
        sender: &UserId,
        sender_device: &ruma::DeviceId,
        txn_id: &str,
        kind: &str,
        messages: &BTreeMap<OwnedUserId, BTreeMap<Recipient, Value>>,
        exempt: impl Fn(&UserId) -> bool,
    ) -> Result<()> {
        let mut queued = Vec::new();
        let mut recipients = Vec::new();
        let trust_off = self.trust.mode() == TrustMode::Off;
        for (user, devices) in messages {
            if user.server_name() != self.accounts.server_name() {
                continue;
            }
            let known: Vec<_> =
                self.accounts.devices(user).await?.into_iter().map(|d| d.device_id).collect();
            for (recipient, content) in devices {
                if !content.is_object() {
                    return Err(Error::bad_json("To-device content must be an object"));
                }
                let targets = known.iter().filter(|d| match recipient {
                    Recipient::AllDevices => true,
                    Recipient::Device(id) => d.as_str() == id,
                });
                for device_id in targets {
                    queued.push(NewToDevice {
                        user_id: user.clone(),
                        device_id: device_id.clone(),
                        content: content.to_string(),
                        exempt: trust_off || exempt(user),
                    });
                }
            }
            recipients.push(user.clone());
        }
        if self.store.queue_to_device(sender, sender_device, txn_id, kind, queued).await? {
            for user in recipients {
                self.notifier.notify_user(&user);
            }
        }
        Ok(())
    }

    /// The to-device events for a syncing device after its token's position (acknowledging,
    /// and so deleting, everything up to that position), with the position to put in the next
    /// token.
    pub async fn to_device_for_sync(
        &self,
        session: &Session,
        since: Option<u64>,
        now: u64,
    ) -> Result<(Vec<Raw<AnyToDeviceEvent>>, u64)> {
        let (user, device) = (session.user_id(), session.device_id());
        let since = since.unwrap_or(0);
        if since > 0 {
            self.store.ack_to_device(user, device, since).await?;
        }
        // Nothing was queued for anyone since the token: nothing to read.
        let rows = if since >= now {
            Vec::new()
        } else {
            self.store.to_device_since(user, device, since, MAX_PER_SYNC).await?
        };
        let next = match rows.last() {
            Some(last) if rows.len() == MAX_PER_SYNC => last.stream_pos,
            Some(last) => last.stream_pos.max(now),
            None => now.max(since),
        };
        let events = rows
            .iter()
            .map(|row| event_of(&row.kind, Some(&row.sender), &row.content))
            .collect::<Result<_>>()?;
        Ok((events, next))
    }
}
