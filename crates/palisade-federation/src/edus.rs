//! Ephemeral data between servers: typing notifications and read receipts, both ways.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#typing-notifications> and
//! <https://spec.matrix.org/v1.19/server-server-api/#receipts>

use std::collections::BTreeMap;

use palisade_core::{Error, Result};
use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, RoomId, ServerName, UserId,
    api::federation::transactions::edu::{
        Edu, PresenceContent, PresenceUpdate, ReceiptContent, ReceiptData, ReceiptMap,
        TypingContent,
    },
    events::receipt::Receipt,
    serde::Raw,
};

use crate::Federation;

/// How long a typing notification from another server lasts unless renewed (as Synapse).
const REMOTE_TYPING_MS: u64 = 30_000;

impl Federation {
    /// Applies the EDUs of a transaction from `origin`; one that is malformed or not the
    /// sender's to make is dropped, and never fails the transaction.
    pub(crate) async fn receive_edus(&self, origin: &ServerName, edus: &[Raw<Edu>]) {
        for raw in edus {
            let result = match raw.deserialize() {
                Ok(Edu::Typing(typing)) => self.remote_typing(origin, typing).await,
                Ok(Edu::Receipt(receipts)) => self.remote_receipts(origin, receipts).await,
                Ok(Edu::Presence(presence)) => self.remote_presence(origin, presence).await,
                Ok(Edu::DirectToDevice(content)) => self.remote_to_device(origin, content).await,
                Ok(Edu::DeviceListUpdate(content)) => {
                    self.remote_device_list_update(origin, content).await
                }
                Ok(Edu::SigningKeyUpdate(content)) => {
                    self.remote_signing_key_update(origin, content).await
                }
                Ok(_) => Ok(()),
                Err(e) => Err(Error::bad_json(format!("malformed EDU: {e}"))),
            };
            if let Err(error) = result {
                tracing::info!(%origin, %error, "dropped an EDU");
            }
        }
    }

    /// Whether `user`, of server `origin`, is joined to the room.
    async fn speaks_for(
        &self,
        origin: &ServerName,
        user: &UserId,
        room_id: &RoomId,
    ) -> Result<bool> {
        Ok(user.server_name() == origin
            && self.services.remote_rooms.is_joined(room_id, user).await?
            && self.services.remote_rooms.server_allowed(room_id, origin).await?)
    }

    async fn remote_typing(&self, origin: &ServerName, typing: TypingContent) -> Result<()> {
        if !self.speaks_for(origin, &typing.user_id, &typing.room_id).await? {
            return Err(Error::forbidden("typing for a user the server cannot speak for"));
        }
        let timeout = typing.typing.then_some(REMOTE_TYPING_MS);
        self.services.typing.set_typing(&typing.room_id, &typing.user_id, timeout).await;
        Ok(())
    }

    async fn remote_receipts(&self, origin: &ServerName, content: ReceiptContent) -> Result<()> {
        for (room_id, receipts) in content.receipts {
            for (user, data) in receipts.read {
                if !self.speaks_for(origin, &user, &room_id).await? {
                    continue;
                }
                let thread = data.data.thread.as_str();
                for event_id in &data.event_ids {
                    if let Err(error) = self
                        .services
                        .receipts
                        .remote_receipt(&user, &room_id, event_id, thread)
                        .await
                    {
                        tracing::debug!(%origin, %error, "dropped a remote receipt");
                    }
                }
            }
        }
        Ok(())
    }

    /// Presence of another server's users, as it reports it: only for its own users, and
    /// only those in a room with this server (so a peer cannot fill memory with strangers).
    async fn remote_presence(&self, origin: &ServerName, content: PresenceContent) -> Result<()> {
        for update in content.push.into_iter().filter(|u| u.user_id.server_name() == origin) {
            if !self.services.rooms.in_any_room(&update.user_id).await? {
                continue;
            }
            let state = update.presence.to_string();
            self.services.presence.set(&update.user_id, &state, update.status_msg).await;
        }
        Ok(())
    }

    /// Tells the other servers in a room that a local user started or stopped typing.
    pub(crate) async fn send_typing(
        &self,
        room_id: &RoomId,
        user: &UserId,
        typing: bool,
    ) -> Result<()> {
        let edu = Edu::Typing(TypingContent::new(room_id.to_owned(), user.to_owned(), typing));
        self.queue_edu(room_id, &edu).await
    }

    /// Tells the other servers in a room about a local user's public read receipt.
    pub(crate) async fn send_receipt(
        &self,
        room_id: &RoomId,
        user: &UserId,
        event_id: &EventId,
        thread: Option<&str>,
    ) -> Result<()> {
        let mut receipt = Receipt::new(MilliSecondsSinceUnixEpoch::now());
        if let Some(thread) = thread {
            receipt.thread = ruma::events::receipt::ReceiptThread::try_from(Some(thread))
                .map_err(|e| Error::invalid_param(e.to_string()))?;
        }
        let data = ReceiptData::new(receipt, vec![event_id.to_owned()]);
        let map = ReceiptMap::new(BTreeMap::from([(user.to_owned(), data)]));
        let edu = Edu::Receipt(ReceiptContent::new(BTreeMap::from([(room_id.to_owned(), map)])));
        self.queue_edu(room_id, &edu).await
    }

    /// Queues an EDU for every other server in the room.
    async fn queue_edu(&self, room_id: &RoomId, edu: &Edu) -> Result<()> {
        let servers = self.services.rooms.servers_in_room(room_id).await?;
        self.queue_edu_to(servers, edu).await
    }

    /// Queues an EDU for `servers`, other than this one.
    async fn queue_edu_to(&self, mut servers: Vec<ruma::OwnedServerName>, edu: &Edu) -> Result<()> {
        if self.services.config.listen.federation.is_none() {
            return Ok(());
        }
        servers.retain(|server| *server != self.services.config.server_name);
        if servers.is_empty() {
            return Ok(());
        }
        let json = serde_json::to_string(edu).map_err(|e| Error::internal(e.to_string()))?;
        self.sender.queue_edu(servers, json).await
    }

    /// Tells the servers sharing a room with a local user what the user says about their
    /// presence.
    pub(crate) async fn send_presence(
        &self,
        user: &UserId,
        presence: &str,
        status_msg: Option<&str>,
    ) -> Result<()> {
        let mut update = PresenceUpdate::new(user.to_owned(), presence.into(), ruma::UInt::MIN);
        update.status_msg = status_msg.map(str::to_owned);
        update.currently_active = presence == "online";
        let servers = self.services.remote_rooms.servers_sharing_rooms_with(user).await?;
        self.queue_edu_to(servers, &Edu::Presence(PresenceContent::new(vec![update]))).await
    }
}
