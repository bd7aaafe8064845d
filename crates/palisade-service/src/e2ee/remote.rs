//! Keys and to-device messages of other servers' users: asked of (or relayed to) their own
//! servers through the outbound port on each request, so never stale. A server may speak
//! only for its own users: anything else in its answer is dropped.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#end-to-end-encryption>

use std::collections::BTreeMap;

use palisade_core::{Error, Result};
use ruma::{
    OwnedDeviceId, OwnedServerName, OwnedUserId, ServerName, UserId,
    api::client::keys::{claim_keys, get_keys},
};
use serde_json::{Map, Value, json};

use super::{E2eeService, Recipient};
use crate::Session;

/// A user map split into this server's users and, per server, the others.
pub type Split<T> = (BTreeMap<OwnedUserId, T>, BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>>);

/// Splits `wanted` into `origin`'s users and, per server, the others.
pub fn split_by_server<T: Clone>(
    origin: &ServerName,
    wanted: &BTreeMap<OwnedUserId, T>,
) -> Split<T> {
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

/// The entries of a server's answer about its own users (it may speak for no one else).
fn own_users<T>(
    server: &ServerName,
    answer: BTreeMap<OwnedUserId, T>,
) -> impl Iterator<Item = (OwnedUserId, T)> {
    answer.into_iter().filter(move |(user, _)| user.server_name() == server)
}

/// A failure entry for a server that did not answer.
fn unreachable(error: &Error) -> Value {
    json!({ "status": 503, "message": error.message })
}

impl E2eeService {
    /// `/keys/query`: this server's users from storage, every other user asked of their own
    /// server.
    pub async fn query_keys(
        &self,
        requester: &UserId,
        wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<get_keys::v3::Response> {
        let (local, remote) = split_by_server(self.accounts.server_name(), wanted);
        let mut found = self.query_local_keys(Some(requester), &local).await?;
        for (server, users) in remote {
            let answer = async { self.outbound.get()?.query_keys(&server, users).await }.await;
            match answer {
                Ok(answer) => {
                    found.device_keys.extend(own_users(&server, answer.device_keys));
                    found.master_keys.extend(own_users(&server, answer.master_keys));
                    found.self_signing_keys.extend(own_users(&server, answer.self_signing_keys));
                }
                Err(error) => {
                    found.failures.insert(server.to_string(), unreachable(&error));
                }
            }
        }
        Ok(found)
    }

    /// `/keys/claim`: one-time keys of this server's users from storage, the others claimed
    /// from their servers.
    pub async fn claim_keys(
        &self,
        wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> Result<claim_keys::v3::Response> {
        let (local, remote) = split_by_server(self.accounts.server_name(), wanted);
        let mut claimed = self.claim_local_keys(&local).await?;
        for (server, users) in remote {
            let answer = async { self.outbound.get()?.claim_keys(&server, users).await }.await;
            match answer {
                Ok(answer) => {
                    claimed.one_time_keys.extend(own_users(&server, answer.one_time_keys));
                }
                Err(error) => {
                    claimed.failures.insert(server.to_string(), unreachable(&error));
                }
            }
        }
        Ok(claimed)
    }

    /// `/sendToDevice`: queued for local devices, and relayed to other servers' users, one
    /// `m.direct_to_device` EDU per server. A device its owner has not approved reaches no one
    /// elsewhere (as it reaches no one here until approved).
    pub async fn send_to_device(
        &self,
        session: &Session,
        kind: &str,
        txn_id: &str,
        messages: &BTreeMap<OwnedUserId, BTreeMap<Recipient, Value>>,
    ) -> Result<()> {
        self.send_to_local_devices(session, kind, txn_id, messages).await?;
        let (_, remote) = split_by_server(self.accounts.server_name(), messages);
        let Some(port) = self.outbound.connected().filter(|_| !remote.is_empty()) else {
            return Ok(());
        };
        let (sender, device) = (session.user_id(), session.device_id());
        if !self.trust.is_trusted(sender, device).await? {
            tracing::info!(%sender, "not relaying to-device messages of an unapproved device");
            return Ok(());
        }
        let message_id = format!("{device}/{txn_id}");
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
            port.send_to_device(&server, sender, kind, &message_id, per_user).await?;
        }
        Ok(())
    }
}
