//! Events and state served to other servers in a room with this one (`/event`, `/state`,
//! `/state_ids`, `/event_auth`, `/get_missing_events`).
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#retrieving-events>

use palisade_core::{Error, Result};
use ruma::{EventId, OwnedEventId, RoomId, ServerName};
use serde_json::value::RawValue;

use crate::{
    Federation,
    pdu::{to_raw, to_raws},
};

/// Most events one `/get_missing_events` answer carries.
const MAX_MISSING_EVENTS: usize = 100;

impl Federation {
    /// Refuses servers with nobody in the room (they may not read it) and servers the room's
    /// ACL denies.
    pub(crate) async fn ensure_in_room(&self, origin: &ServerName, room_id: &RoomId) -> Result<()> {
        self.ensure_acl(origin, room_id).await?;
        if self.services.rooms.server_in_room(room_id, origin).await? {
            Ok(())
        } else {
            Err(Error::forbidden("The requesting server is not in the room"))
        }
    }

    /// Refuses servers the room's server ACL denies.
    pub(crate) async fn ensure_acl(&self, origin: &ServerName, room_id: &RoomId) -> Result<()> {
        if self.services.remote_rooms.server_allowed(room_id, origin).await? {
            Ok(())
        } else {
            Err(Error::forbidden("The room's server ACL denies the requesting server"))
        }
    }

    /// One event, for a server in its room.
    pub async fn event_for(
        &self,
        origin: &ServerName,
        event_id: &EventId,
    ) -> Result<Box<RawValue>> {
        let (room_id, object) = self
            .services
            .remote_rooms
            .event_for_server(event_id, origin)
            .await?
            .ok_or_else(|| Error::not_found("Unknown event"))?;
        self.ensure_in_room(origin, &room_id).await?;
        to_raw(&object)
    }

    /// The ids of the state before an event and of its auth chain.
    pub async fn state_ids_for(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(Vec<OwnedEventId>, Vec<OwnedEventId>)> {
        self.ensure_in_room(origin, room_id).await?;
        self.services.remote_rooms.state_ids_before(room_id, event_id).await
    }

    /// The state before an event and its auth chain, as PDUs.
    pub async fn state_for(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<(Vec<Box<RawValue>>, Vec<Box<RawValue>>)> {
        self.ensure_in_room(origin, room_id).await?;
        let (state, chain) =
            self.services.remote_rooms.state_and_auth_chain(room_id, Some(event_id)).await?;
        Ok((to_raws(&state)?, to_raws(&chain)?))
    }

    /// The auth chain of an event.
    pub async fn event_auth_for(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
    ) -> Result<Vec<Box<RawValue>>> {
        self.ensure_in_room(origin, room_id).await?;
        to_raws(&self.services.remote_rooms.auth_chain_of(room_id, event_id).await?)
    }

    /// History before `from` (inclusive), newest first (`/backfill`).
    pub async fn backfill_for(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        from: &[OwnedEventId],
        limit: usize,
    ) -> Result<Vec<Box<RawValue>>> {
        self.ensure_in_room(origin, room_id).await?;
        let limit = limit.min(MAX_MISSING_EVENTS);
        to_raws(&self.services.remote_rooms.backfill(room_id, from, limit, origin).await?)
    }

    /// Events between `earliest` and `latest`.
    pub async fn missing_events_for(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        earliest: &[OwnedEventId],
        latest: &[OwnedEventId],
        limit: usize,
        min_depth: u64,
    ) -> Result<Vec<Box<RawValue>>> {
        self.ensure_in_room(origin, room_id).await?;
        let limit = limit.min(MAX_MISSING_EVENTS);
        let events = self
            .services
            .remote_rooms
            .missing_events(room_id, earliest, latest, limit, min_depth, origin)
            .await?;
        to_raws(&events)
    }
}
