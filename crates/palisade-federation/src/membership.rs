//! Joining and leaving across servers: as the joining server (`make_join`, then `send_join`
//! with the returned state verified), and as the resident server answering both.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#joining-rooms>

use palisade_core::{Error, ErrorKind, Result, SUPPORTED_ROOM_VERSIONS};
use palisade_service::rooms::{JoinedRoom, Received, RemoteEvent, RoomService};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedRoomId, OwnedServerName, RoomId,
    RoomOrAliasId, RoomVersionId, ServerName, UInt, UserId,
    api::federation::{
        backfill::get_backfill,
        membership::{
            create_join_event, create_leave_event, prepare_join_event, prepare_leave_event,
        },
        query::get_room_information,
    },
};
use serde_json::value::RawValue;

use crate::{
    Federation,
    pdu::{parse_pdu, to_raw, to_raws},
};

/// How many events before the join a joining server fetches, so the user sees what led up to it.
const JOIN_HISTORY: u32 = 50;

/// The `prev_events` of a PDU.
fn prev_events_of(object: &CanonicalJsonObject) -> Vec<ruma::OwnedEventId> {
    match object.get("prev_events") {
        Some(CanonicalJsonValue::Array(ids)) => ids
            .iter()
            .filter_map(|id| match id {
                CanonicalJsonValue::String(id) => ruma::OwnedEventId::try_from(id.as_str()).ok(),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The state and auth chain a resident server answers `send_join` with.
pub struct JoinedState {
    /// The room state before the join.
    pub state: Vec<Box<RawValue>>,
    /// The auth chain of that state.
    pub auth_chain: Vec<Box<RawValue>>,
    /// The servers in the room.
    pub servers_in_room: Vec<String>,
}

impl Federation {
    /// Joins a room for a local user: through this server's own pipeline when it is in the
    /// room, else through a server that is (`via`, the alias's server, the room's servers).
    pub async fn join(
        &self,
        user: &UserId,
        room: &RoomOrAliasId,
        via: &[OwnedServerName],
        reason: Option<&str>,
    ) -> Result<OwnedRoomId> {
        let mut candidates = via.to_vec();
        let room_id = match <&RoomId>::try_from(room) {
            Ok(room_id) => room_id.to_owned(),
            Err(alias) if alias.server_name() == self.services.config.server_name => {
                self.services.rooms.resolve(room).await?
            }
            Err(alias) => {
                let request = get_room_information::v1::Request::new(alias.to_owned());
                let answer = self.client.send(alias.server_name(), request).await?;
                candidates.extend(answer.servers);
                candidates.push(alias.server_name().to_owned());
                answer.room_id
            }
        };
        let rooms = &self.services.rooms;
        let origin = &self.services.config.server_name;
        if rooms.room_version(&room_id).await?.is_some()
            && rooms.server_in_room(&room_id, origin).await?
        {
            rooms.join(user, &room_id, reason).await?;
            return Ok(room_id);
        }
        if let Some(server) = room_id.server_name() {
            candidates.push(server.to_owned());
        }
        if rooms.room_version(&room_id).await?.is_some() {
            candidates.extend(rooms.servers_in_room(&room_id).await?);
        }
        candidates.retain(|server| server != origin);
        let mut seen = std::collections::HashSet::new();
        candidates.retain(|server| seen.insert(server.clone()));
        if candidates.is_empty() {
            return Err(Error::not_found("No known servers for this room"));
        }
        let mut last = Error::not_found("No known servers for this room");
        for server in &candidates {
            match self.join_through(server, user, &room_id).await {
                Ok(()) => return Ok(room_id),
                Err(error) => {
                    tracing::info!(%server, %room_id, %error, "remote join failed");
                    last = error;
                }
            }
        }
        Err(last)
    }

    /// `make_join` and `send_join` through one resident server.
    async fn join_through(
        &self,
        server: &ServerName,
        user: &UserId,
        room_id: &RoomId,
    ) -> Result<()> {
        let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        request.ver = SUPPORTED_ROOM_VERSIONS.to_vec();
        let template = self.client.send(server, request).await?;
        let version = template.room_version.unwrap_or(RoomVersionId::V1);
        if !SUPPORTED_ROOM_VERSIONS.contains(&version) {
            return Err(Error::new(
                ErrorKind::UnsupportedRoomVersion,
                format!("This server does not support room version {version}"),
            ));
        }
        let mut object = parse_pdu(&template.event)?;
        check_template(&object, room_id, user, "join")?;
        // Other members see the joining user's profile in the member event, as for local joins.
        let profile = self.local_profile(user).await?;
        if let Some(CanonicalJsonValue::Object(content)) = object.get_mut("content") {
            let fields = [("displayname", profile.displayname), ("avatar_url", profile.avatar_url)];
            for (field, value) in fields {
                if let Some(value) = value {
                    content.insert(field.to_owned(), CanonicalJsonValue::String(value));
                }
            }
        }
        let join = self.services.rooms.complete_template(object, &version)?;
        let request = create_join_event::v2::Request::new(
            room_id.to_owned(),
            join.event_id.clone(),
            to_raw(&join.object)?,
        );
        let answer = self.client.send(server, request).await?.room_state;
        let state = self.verify_all(&answer.state, &version).await;
        let auth_chain = self.verify_all(&answer.auth_chain, &version).await;
        // Recent history, so the joined user can read what led up to the join.
        let prev_events = prev_events_of(&join.object);
        let request = get_backfill::v1::Request::new(
            room_id.to_owned(),
            prev_events,
            UInt::from(JOIN_HISTORY),
        );
        let history = match self.client.send(server, request).await {
            Ok(answer) => self.verify_all(&answer.pdus, &version).await,
            Err(error) => {
                tracing::info!(%server, %room_id, %error, "no history for a joined room");
                Vec::new()
            }
        };
        let joined = JoinedRoom { state, auth_chain, history, join };
        self.services.rooms.import_join(room_id, &version, joined).await
    }

    /// Leaves a room for a local user through a server still in it, when this server has no
    /// one else in the room to send the leave through.
    pub async fn leave_remote(
        &self,
        user: &UserId,
        room_id: &RoomId,
        server: &ServerName,
    ) -> Result<()> {
        let request = prepare_leave_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        let template = self.client.send(server, request).await?;
        let version = template.room_version.unwrap_or(RoomVersionId::V1);
        let object = parse_pdu(&template.event)?;
        check_template(&object, room_id, user, "leave")?;
        let leave = self.services.rooms.complete_template(object, &version)?;
        let request = create_leave_event::v2::Request::new(
            room_id.to_owned(),
            leave.event_id.clone(),
            to_raw(&leave.object)?,
        );
        self.client.send(server, request).await?;
        Ok(())
    }

    /// `make_join`/`make_leave` as the resident server: a template for a user of `origin`.
    pub async fn make_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        user: &UserId,
        membership: &str,
        versions: &[RoomVersionId],
    ) -> Result<(RoomVersionId, Box<RawValue>)> {
        if user.server_name() != origin {
            return Err(Error::forbidden("The user does not belong to the requesting server"));
        }
        let rooms = &self.services.rooms;
        let version =
            rooms.room_version(room_id).await?.ok_or_else(|| Error::not_found("Unknown room"))?;
        if membership == "join" && !versions.contains(&version) {
            return Err(Error::new(
                ErrorKind::IncompatibleRoomVersion,
                format!(
                    "The room is of version {version}, which the joining server does not support"
                ),
            ));
        }
        if !rooms.server_in_room(room_id, &self.services.config.server_name).await? {
            return Err(Error::not_found("This server is not in the room"));
        }
        let (version, template) = rooms.membership_template(room_id, user, membership).await?;
        Ok((version, to_raw(&template)?))
    }

    /// `send_join`/`send_leave` as the resident server: checks the event and runs it through
    /// the pipeline; for a join, answers with the room's state before it.
    pub async fn send_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &RawValue,
        membership: &str,
    ) -> Result<Option<JoinedState>> {
        let rooms = &self.services.rooms;
        let version =
            rooms.room_version(room_id).await?.ok_or_else(|| Error::not_found("Unknown room"))?;
        let event = self.verify_pdu(parse_pdu(pdu)?, &version).await?;
        if event.event_id != event_id {
            return Err(Error::bad_json("The event id does not match the event"));
        }
        if !RoomService::is_membership_of(&event, origin, membership) {
            return Err(Error::bad_json(format!(
                "Not a {membership} of a user of the sending server"
            )));
        }
        let sender = user_of(&event)?;
        match self.receive_pdu(origin, room_id, &version, event.clone()).await? {
            Received::Accepted => self.relay(origin, room_id, &event).await?,
            // A retry of a join that went through gets the same answer; a replayed old
            // membership event (not the user's current one) gets nothing.
            Received::Known
                if rooms.current_state_id(room_id, "m.room.member", sender.as_str()).await?
                    == Some(event.event_id.clone()) => {}
            Received::Known | Received::SoftFailed => {
                return Err(Error::forbidden("The event is not allowed by the current state"));
            }
            Received::Missing(_) => {
                return Err(Error::forbidden("The event refers to events this server lacks"));
            }
        }
        if membership != "join" {
            return Ok(None);
        }
        let (state, auth_chain) = rooms.state_and_auth_chain(room_id, Some(event_id)).await?;
        let servers = rooms.servers_in_room(room_id).await?;
        Ok(Some(JoinedState {
            state: to_raws(&state)?,
            auth_chain: to_raws(&auth_chain)?,
            servers_in_room: servers.iter().map(ToString::to_string).collect(),
        }))
    }

    /// Passes an event another server joined or left through on to the room's other servers,
    /// which did not see it (its sender reaches only this server).
    async fn relay(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event: &RemoteEvent,
    ) -> Result<()> {
        let own = &self.services.config.server_name;
        let others: Vec<OwnedServerName> = self
            .services
            .rooms
            .servers_in_room(room_id)
            .await?
            .into_iter()
            .filter(|server| server != own && server != origin)
            .collect();
        self.sender.queue_pdu(others, event.event_id.clone()).await
    }
}

/// The user a membership event is about (its state key).
fn user_of(event: &RemoteEvent) -> Result<ruma::OwnedUserId> {
    match event.object.get("state_key") {
        Some(CanonicalJsonValue::String(key)) => {
            key.as_str().try_into().map_err(|_| Error::bad_json("Invalid state key"))
        }
        _ => Err(Error::bad_json("A membership event needs a state key")),
    }
}

/// Checks that a resident server's template is the membership event asked for.
fn check_template(
    object: &CanonicalJsonObject,
    room_id: &RoomId,
    user: &UserId,
    membership: &str,
) -> Result<()> {
    let text = |key: &str| match object.get(key) {
        Some(CanonicalJsonValue::String(s)) => Some(s.as_str()),
        _ => None,
    };
    let content_membership = match object.get("content") {
        Some(CanonicalJsonValue::Object(content)) => match content.get("membership") {
            Some(CanonicalJsonValue::String(m)) => Some(m.as_str()),
            _ => None,
        },
        _ => None,
    };
    let ok = text("type") == Some("m.room.member")
        && text("room_id") == Some(room_id.as_str())
        && text("sender") == Some(user.as_str())
        && text("state_key") == Some(user.as_str())
        && content_membership == Some(membership);
    if ok {
        Ok(())
    } else {
        Err(Error::new(ErrorKind::RemoteUnavailable, "The resident server sent a bad template"))
    }
}
