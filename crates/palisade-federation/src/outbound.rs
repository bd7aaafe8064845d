//! The outbound-federation port of the services, implemented with this crate's requests.

use async_trait::async_trait;
use palisade_core::Result;
use palisade_service::{outbound::OutboundFederation, rooms::RemoteEvent, trust::Actor};
use ruma::{
    CanonicalJsonObject, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, RoomVersionId,
    ServerName,
};

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
}
