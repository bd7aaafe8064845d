//! Joining, knocking and leaving across servers: as the joining server (`make_join`, then
//! `send_join` with the returned state verified; `make_knock`, `send_knock`), and as the
//! resident server answering them.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#joining-rooms>,
//! <https://spec.matrix.org/v1.19/server-server-api/#knocking-upon-a-room>

use palisade_core::{Error, ErrorKind, Result, SUPPORTED_ROOM_VERSIONS};
use palisade_service::{
    rooms::{JoinedRoom, Received, RemoteEvent, RemoteRoomService, pdu::referenced_events},
    trust::Actor,
};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedRoomId, OwnedServerName, RoomId,
    RoomVersionId, ServerName, UInt, UserId,
    api::federation::{
        backfill::get_backfill,
        membership::{
            RawStrippedState, create_invite, create_join_event, create_knock_event,
            create_leave_event, prepare_join_event, prepare_knock_event, prepare_leave_event,
        },
    },
    events::AnyStrippedStateEvent,
    serde::Raw,
};
use serde_json::value::RawValue;

use crate::{
    Federation,
    pdu::{self, parse_pdu, to_raw, to_raws},
};

/// How many events before the join a joining server fetches, so the user sees what led up to it.
const JOIN_HISTORY: u32 = 50;

/// What a resident server answers a membership event sent through it with.
pub enum MembershipAnswer {
    /// A join: the room's state and auth chain.
    Joined(JoinedState),
    /// A knock: the state that shows the room (`knock_room_state`).
    Knocked(Vec<Box<RawValue>>),
    /// A leave: nothing.
    Left,
}

/// The state and auth chain a resident server answers `send_join` with.
pub struct JoinedState {
    /// The room state before the join.
    pub state: Vec<Box<RawValue>>,
    /// The auth chain of that state.
    pub auth_chain: Vec<Box<RawValue>>,
    /// The servers in the room.
    pub servers_in_room: Vec<String>,
    /// The join as accepted (signed by this server too when it authorised a restricted join).
    pub event: Box<RawValue>,
}

impl Federation {
    /// `make_join` and `send_join` through one resident server.
    pub(crate) async fn join_through(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        server: &ServerName,
    ) -> Result<()> {
        let user = actor.user();
        let mut request = prepare_join_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        request.ver = SUPPORTED_ROOM_VERSIONS.to_vec();
        let template = self.client.send(server, request).await?;
        let version = supported(template.room_version.unwrap_or(RoomVersionId::V1))?;
        let mut object = parse_pdu(&template.event)?;
        check_template(&object, room_id, user, "join")?;
        self.fill_member_content(&mut object, user, None).await?;
        let join = self.services.remote_rooms.complete_template(actor, object, &version).await?;
        let request = create_join_event::v2::Request::new(
            room_id.to_owned(),
            join.event_id().to_owned(),
            to_raw(join.object())?,
        );
        let answer = self.client.send(server, request).await?.room_state;
        // A restricted join comes back signed by the server that authorised it too; the join
        // stored and passed on must carry that signature.
        let join = match &answer.event {
            Some(signed) => {
                let signed = self.verify_pdu(parse_pdu(signed)?, &version).await?;
                if signed.event_id() != join.event_id() {
                    return Err(Error::new(
                        ErrorKind::RemoteUnavailable,
                        "The resident server answered with another join",
                    ));
                }
                signed
            }
            _ => join,
        };
        // Every state event must verify: a room missing, say, its encryption event would look
        // unencrypted to local clients.
        let state = self.verify_every(&answer.state, &version).await?;
        let auth_chain = self.verify_all(&answer.auth_chain, &version).await;
        // Recent history, so the joined user can read what led up to the join.
        let prev_events = referenced_events(join.object(), "prev_events");
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
        self.services.remote_rooms.import_join(room_id, &version, joined).await
    }

    /// `make_knock` and `send_knock` through a server in the room, then records the knock with
    /// the room state the server showed.
    pub(crate) async fn knock_through(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        server: &ServerName,
        reason: Option<&str>,
    ) -> Result<()> {
        let user = actor.user();
        let mut request =
            prepare_knock_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        request.ver = SUPPORTED_ROOM_VERSIONS.to_vec();
        let template = self.client.send(server, request).await?;
        let version = supported(template.room_version)?;
        let mut object = parse_pdu(&template.event)?;
        check_template(&object, room_id, user, "knock")?;
        self.fill_member_content(&mut object, user, reason).await?;
        let knock = self.services.remote_rooms.complete_template(actor, object, &version).await?;
        let request = create_knock_event::v1::Request::new(
            room_id.to_owned(),
            knock.event_id().to_owned(),
            to_raw(knock.object())?,
        );
        let answer = self.client.send(server, request).await?;
        let shown = answer
            .knock_room_state
            .iter()
            .filter_map(|state| stripped_of(state, room_id))
            .collect();
        self.services
            .remote_rooms
            .record_outside_membership(room_id, &version, knock, Some(shown))
            .await
    }

    /// A local user's member event content from a resident server's template: their profile,
    /// as other members see it in local joins, and the reason they gave.
    async fn fill_member_content(
        &self,
        object: &mut CanonicalJsonObject,
        user: &UserId,
        reason: Option<&str>,
    ) -> Result<()> {
        let profile = self.local_profile(user).await?;
        if let Some(CanonicalJsonValue::Object(content)) = object.get_mut("content") {
            let fields = [
                ("displayname", profile.displayname),
                ("avatar_url", profile.avatar_url),
                ("reason", reason.map(ToOwned::to_owned)),
            ];
            for (field, value) in fields {
                if let Some(value) = value {
                    content.insert(field.to_owned(), CanonicalJsonValue::String(value));
                }
            }
        }
        Ok(())
    }

    /// `make_leave` and `send_leave` through a server in the room, then records the leave.
    pub(crate) async fn leave_through(
        &self,
        actor: Actor<'_>,
        room_id: &RoomId,
        server: &ServerName,
    ) -> Result<()> {
        let user = actor.user();
        let request = prepare_leave_event::v1::Request::new(room_id.to_owned(), user.to_owned());
        let template = self.client.send(server, request).await?;
        let version = template.room_version.unwrap_or(RoomVersionId::V1);
        let object = parse_pdu(&template.event)?;
        check_template(&object, room_id, user, "leave")?;
        let leave = self.services.remote_rooms.complete_template(actor, object, &version).await?;
        let request = create_leave_event::v2::Request::new(
            room_id.to_owned(),
            leave.event_id().to_owned(),
            to_raw(leave.object())?,
        );
        self.client.send(server, request).await?;
        self.services.remote_rooms.record_outside_membership(room_id, &version, leave, None).await
    }

    /// Has the invitee's server countersign an invite built here (`/invite` v2); returns it
    /// verified, or an error when the server refused it or answered with another event.
    pub(crate) async fn countersign_invite(
        &self,
        invite: &RemoteEvent,
        version: &RoomVersionId,
        shown: &[CanonicalJsonObject],
    ) -> Result<RemoteEvent> {
        let target = user_of(invite)?;
        let room_id = pdu::room_id_of(invite.object())?;
        let shown = shown
            .iter()
            .map(|object| to_raw(object).map(RawStrippedState::Pdu))
            .collect::<Result<Vec<_>>>()?;
        let request = create_invite::v2::Request::new(
            room_id,
            invite.event_id().to_owned(),
            version.clone(),
            to_raw(invite.object())?,
            shown,
        );
        let answer = self.client.send(target.server_name(), request).await?;
        let signed = self.verify_pdu(parse_pdu(&answer.event)?, version).await?;
        let countersigned = matches!(
            signed.object().get("signatures"),
            Some(CanonicalJsonValue::Object(s)) if s.contains_key(target.server_name().as_str())
        );
        if signed.event_id() != invite.event_id() || !countersigned {
            return Err(Error::new(
                ErrorKind::RemoteUnavailable,
                "The invitee's server answered with another event",
            ));
        }
        Ok(signed)
    }

    /// An invite from another server for a local user (`/invite` v2): checked, countersigned,
    /// and recorded so the user sees it; the countersigned event is the answer.
    pub async fn receive_invite(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        version: &RoomVersionId,
        event: &RawValue,
        invite_room_state: &[RawStrippedState],
    ) -> Result<Box<RawValue>> {
        if !SUPPORTED_ROOM_VERSIONS.contains(version) {
            return Err(Error::new(
                ErrorKind::IncompatibleRoomVersion,
                format!("This server does not support room version {version}"),
            ));
        }
        let rooms = &self.services.rooms;
        let remote_rooms = &self.services.remote_rooms;
        if let Some(known) = rooms.room_version(room_id).await?
            && known != *version
        {
            return Err(Error::bad_json("The room is of another version"));
        }
        let mut sent = parse_pdu(event)?;
        sent.remove("unsigned");
        let event = self.verify_pdu(sent.clone(), version).await?;
        // A content hash mismatch would leave only the redacted event, under another hash.
        if *event.object() != sent {
            return Err(Error::bad_json("The invite's content hash does not match"));
        }
        let target = user_of(&event)?;
        let text = |key: &str| match event.object().get(key) {
            Some(CanonicalJsonValue::String(value)) => Some(value.as_str()),
            _ => None,
        };
        let sender = text("sender")
            .and_then(|s| ruma::OwnedUserId::try_from(s).ok())
            .ok_or_else(|| Error::bad_json("The invite has no valid sender"))?;
        let is_invite = text("type") == Some("m.room.member")
            && matches!(
                event.object().get("content"),
                Some(CanonicalJsonValue::Object(c))
                    if matches!(c.get("membership"), Some(CanonicalJsonValue::String(m)) if m == "invite")
            );
        if event.event_id() != event_id
            || pdu::room_id_of(event.object())? != room_id
            || !is_invite
            || sender.server_name() != origin
        {
            return Err(Error::bad_json("Not an invite from the sending server for this room"));
        }
        if self.local_profile(&target).await.is_err() {
            return Err(Error::not_found("Unknown user"));
        }
        let countersigned = remote_rooms.countersign(&event, version)?;
        let resident = rooms.room_version(room_id).await?.is_some()
            && rooms.server_in_room(room_id, &self.services.config.server_name).await?;
        if resident {
            self.ensure_acl(origin, room_id).await?;
            // This server is in the room: the invite is an event like any other, checked
            // against the room's state once the gap before it is filled; an invite the rules
            // refuse (of a joined user, say) is refused, never recorded on its own.
            let received = self.receive_pdu(origin, room_id, version, countersigned.clone()).await;
            let lacking = || Error::forbidden("The invite refers to events this server lacks");
            match received.map_err(|e| match e.kind {
                // Filling the gap before it failed: what the peer says of it is no answer.
                ErrorKind::RemoteRefused(_) | ErrorKind::RemoteUnavailable => lacking(),
                _ => e,
            })? {
                Received::Accepted | Received::Known => {}
                Received::SoftFailed => {
                    return Err(Error::forbidden("The invite is not allowed by the room's state"));
                }
                Received::Missing(_) => return Err(lacking()),
            }
        } else {
            let shown =
                invite_room_state.iter().filter_map(|state| stripped_of(state, room_id)).collect();
            remote_rooms
                .record_outside_membership(room_id, version, countersigned.clone(), Some(shown))
                .await?;
        }
        to_raw(countersigned.object())
    }

    /// `make_join`/`make_knock`/`make_leave` as the resident server: a template for a user of
    /// `origin`; a join or knock only in a room version the user's server supports.
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
        let remote_rooms = &self.services.remote_rooms;
        let version =
            rooms.room_version(room_id).await?.ok_or_else(|| Error::not_found("Unknown room"))?;
        self.ensure_acl(origin, room_id).await?;
        if matches!(membership, "join" | "knock") && !versions.contains(&version) {
            return Err(Error::new(
                ErrorKind::IncompatibleRoomVersion,
                format!(
                    "The room is of version {version}, which the user's server does not support"
                ),
            ));
        }
        if !rooms.server_in_room(room_id, &self.services.config.server_name).await? {
            return Err(Error::not_found("This server is not in the room"));
        }
        let (version, template) =
            remote_rooms.membership_template(room_id, user, membership).await?;
        Ok((version, to_raw(&template)?))
    }

    /// `send_join`/`send_knock`/`send_leave` as the resident server: checks the event and runs
    /// it through the pipeline; answers a join with the room's state before it, a knock with
    /// the state that shows the room.
    pub async fn send_membership(
        &self,
        origin: &ServerName,
        room_id: &RoomId,
        event_id: &EventId,
        pdu: &RawValue,
        membership: &str,
    ) -> Result<MembershipAnswer> {
        let rooms = &self.services.rooms;
        let remote_rooms = &self.services.remote_rooms;
        let version =
            rooms.room_version(room_id).await?.ok_or_else(|| Error::not_found("Unknown room"))?;
        self.ensure_acl(origin, room_id).await?;
        let object = parse_pdu(pdu)?;
        let object = match membership {
            "join" => remote_rooms.authorise_join(room_id, object, &version).await?,
            _ => object,
        };
        let event = self.verify_pdu(object, &version).await?;
        if event.event_id() != event_id {
            return Err(Error::bad_json("The event id does not match the event"));
        }
        if !RemoteRoomService::is_membership_of(&event, origin, membership) {
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
                    == Some(event.event_id().to_owned()) => {}
            Received::Known | Received::SoftFailed => {
                return Err(Error::forbidden("The event is not allowed by the current state"));
            }
            Received::Missing(_) => {
                return Err(Error::forbidden("The event refers to events this server lacks"));
            }
        }
        match membership {
            "join" => {
                let (state, auth_chain) =
                    remote_rooms.state_and_auth_chain(room_id, Some(event_id)).await?;
                let servers = rooms.servers_in_room(room_id).await?;
                Ok(MembershipAnswer::Joined(JoinedState {
                    state: to_raws(&state)?,
                    auth_chain: to_raws(&auth_chain)?,
                    servers_in_room: servers.iter().map(ToString::to_string).collect(),
                    event: to_raw(event.object())?,
                }))
            }
            "knock" => Ok(MembershipAnswer::Knocked(to_raws(
                &remote_rooms.knock_room_state(room_id).await?,
            )?)),
            _ => Ok(MembershipAnswer::Left),
        }
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
        self.sender.queue_pdu(others, event.event_id().to_owned()).await
    }
}

/// An event of an invite's room state, in the stripped form clients are shown; malformed
/// entries, and full events of another room, are left out.
fn stripped_of(state: &RawStrippedState, room_id: &RoomId) -> Option<Raw<AnyStrippedStateEvent>> {
    /// What tells a full event's room: its id, absent only from a v12 create event.
    #[derive(serde::Deserialize)]
    struct Placed<'a> {
        #[serde(borrow, rename = "type")]
        kind: std::borrow::Cow<'a, str>,
        room_id: Option<OwnedRoomId>,
    }
    let (json, full) = match state {
        RawStrippedState::Pdu(pdu) => (&**pdu, true),
        #[allow(deprecated)]
        RawStrippedState::Stripped(raw) => (raw.json(), false),
        _ => return None,
    };
    let same_room = !full
        || serde_json::from_str::<Placed<'_>>(json.get()).is_ok_and(|placed| {
            match placed.room_id {
                Some(id) => id == room_id,
                None => placed.kind == "m.room.create",
            }
        });
    if same_room { palisade_service::rooms::pdu::stripped(json) } else { None }
}

/// `version` if this server supports it.
fn supported(version: RoomVersionId) -> Result<RoomVersionId> {
    if SUPPORTED_ROOM_VERSIONS.contains(&version) {
        Ok(version)
    } else {
        Err(Error::new(
            ErrorKind::UnsupportedRoomVersion,
            format!("This server does not support room version {version}"),
        ))
    }
}

/// The user a membership event is about (its state key).
fn user_of(event: &RemoteEvent) -> Result<ruma::OwnedUserId> {
    match event.object().get("state_key") {
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
