//! The outbound-federation port of the services, implemented with this crate's requests.

use std::collections::BTreeMap;

use async_trait::async_trait;
use palisade_core::Result;
use palisade_service::{
    accounts::Profile,
    outbound::{OutboundFederation, RemoteMedia},
    rooms::RemoteEvent,
    trust::Actor,
};
use ruma::{
    CanonicalJsonObject, EventId, OwnedDeviceId, OwnedRoomId, OwnedServerName, OwnedUserId,
    RoomAliasId, RoomId, RoomVersionId, ServerName, UInt, UserId,
    api::federation::{
        directory::get_public_rooms_filtered,
        keys::{claim_keys, get_keys},
    },
};
use serde_json::{Map, Value};

use crate::Federation;

#[async_trait]
impl OutboundFederation for Federation {
    async fn join_through(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        server: &ServerName,
    ) -> Result<()> {
        Federation::join_through(self, actor, room_id, server).await
    }

    async fn knock_through(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        server: &ServerName,
        reason: Option<&str>,
    ) -> Result<()> {
        Federation::knock_through(self, actor, room_id, server, reason).await
    }

    async fn leave_through(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        server: &ServerName,
    ) -> Result<()> {
        Federation::leave_through(self, actor, room_id, server).await
    }

    async fn countersign_invite(
        &self,
        invite: &RemoteEvent,
        version: &RoomVersionId,
        shown: &[CanonicalJsonObject],
    ) -> Result<RemoteEvent> {
        Federation::countersign_invite(self, invite, version, shown).await
    }

    async fn resolve_alias(
        &self,
        alias: &RoomAliasId,
    ) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
        self.remote_alias(alias).await
    }

    async fn query_profile(&self, user: &UserId) -> Result<Profile> {
        self.remote_profile(user).await
    }

    async fn public_rooms(
        &self,
        server: &ServerName,
        since: Option<&str>,
        limit: Option<UInt>,
        search: Option<&str>,
    ) -> Result<get_public_rooms_filtered::v1::Response> {
        Federation::public_rooms(self, server, since, limit, search).await
    }

    async fn space_hierarchy(
        &self,
        server: &ServerName,
        room_id: &RoomId,
        suggested_only: bool,
    ) -> Result<ruma::api::federation::space::get_hierarchy::v1::Response> {
        Federation::space_hierarchy(self, server, room_id, suggested_only).await
    }

    async fn send_typing(&self, room_id: &RoomId, user: &UserId, typing: bool) -> Result<()> {
        Federation::send_typing(self, room_id, user, typing).await
    }

    async fn send_receipt(
        &self,
        room_id: &RoomId,
        user: &UserId,
        event_id: &EventId,
        thread: Option<&str>,
    ) -> Result<()> {
        Federation::send_receipt(self, room_id, user, event_id, thread).await
    }

    async fn query_keys(
        &self,
        server: &ServerName,
        users: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    ) -> Result<get_keys::v1::Response> {
        self.remote_keys(server, users).await
    }

    async fn claim_keys(
        &self,
        server: &ServerName,
        users: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    ) -> Result<claim_keys::v1::Response> {
        self.remote_claim(server, users).await
    }

    async fn send_to_device(
        &self,
        server: &ServerName,
        sender: &UserId,
        kind: &str,
        message_id: &str,
        messages: Map<String, Value>,
    ) -> Result<()> {
        self.relay_to_device(server, sender, kind, message_id, messages).await
    }

    async fn send_presence(
        &self,
        user: &UserId,
        presence: &str,
        status_msg: Option<&str>,
    ) -> Result<()> {
        Federation::send_presence(self, user, presence, status_msg).await
    }

    async fn fetch_media(
        &self,
        server: &ServerName,
        media_id: &str,
        limit: u64,
    ) -> Result<RemoteMedia> {
        Federation::fetch_media(self, server, media_id, limit).await
    }
}
