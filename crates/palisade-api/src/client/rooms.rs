//! Rooms and membership: `createRoom`, `joined_rooms`, join, knock, invite, leave, forget,
//! kick, ban, unban, upgrade.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#rooms>

use palisade_core::{Error, Result};
use palisade_service::{
    EventTemplate,
    rooms::{self, CreateRoom, Preset},
    trust::Actor,
};
use ruma::api::client::{
    knock::knock_room,
    membership::{
        ban_user, forget_room, invite_user, join_room_by_id, join_room_by_id_or_alias,
        joined_rooms, kick_user, leave_room, unban_user,
    },
    room::{Visibility, create_room, upgrade_room},
};
use serde_json::Value;

use crate::{
    AppState, Ruma,
    json::object,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, create);
    let router = route(router, joined);
    let router = route(router, join_by_id);
    let router = route(router, join_by_id_or_alias);
    let router = route(router, knock);
    let router = route(router, upgrade);
    let router = route(router, invite);
    let router = route(router, leave);
    let router = route(router, forget);
    let router = route(router, kick);
    let router = route(router, ban);
    route(router, unban)
}

/// `POST /_matrix/client/v3/createRoom`
async fn create(
    state: AppState,
    request: Ruma<create_room::v3::Request>,
) -> Result<create_room::v3::Response> {
    let session = request.session()?;
    let actor = Actor::from(session);
    let body = &request.body;
    let preset = body.preset.as_ref().map(|preset| match preset {
        create_room::v3::RoomPreset::PublicChat => Ok(Preset::PublicChat),
        create_room::v3::RoomPreset::TrustedPrivateChat => Ok(Preset::TrustedPrivateChat),
        create_room::v3::RoomPreset::PrivateChat => Ok(Preset::PrivateChat),
        _ => Err(Error::bad_json("Unknown preset")),
    });
    let mut initial_state = Vec::with_capacity(body.initial_state.len());
    for raw in &body.initial_state {
        let mut event = object(raw.json().get(), "initial_state event")?;
        let kind = event
            .get("type")
            .and_then(Value::as_str)
            .ok_or_else(|| Error::bad_json("initial_state event needs a type"))?
            .to_owned();
        let state_key =
            event.get("state_key").and_then(Value::as_str).unwrap_or_default().to_owned();
        let content = match event.remove("content") {
            Some(Value::Object(content)) => rooms::content(content)?,
            Some(_) => return Err(Error::bad_json("initial_state content must be an object")),
            None => Default::default(),
        };
        initial_state.push(EventTemplate::state(kind, state_key, content));
    }
    let creation_content = match &body.creation_content {
        Some(raw) => Some(object(raw.json().get(), "creation_content")?),
        None => None,
    };
    let power_level_override = match &body.power_level_content_override {
        Some(raw) => Some(object(raw.json().get(), "power_level_content_override")?),
        None => None,
    };
    let room_id = state
        .membership
        .create_room(
            actor,
            CreateRoom {
                version: body.room_version.clone(),
                preset: preset.transpose()?,
                public: body.visibility == Visibility::Public,
                name: body.name.clone(),
                topic: body.topic.clone(),
                alias_localpart: body.room_alias_name.clone(),
                invite: body.invite.clone(),
                is_direct: body.is_direct,
                creation_content,
                initial_state,
                power_level_override,
                encrypted: None,
            },
        )
        .await?;
    Ok(create_room::v3::Response::new(room_id))
}

/// `GET /_matrix/client/v3/joined_rooms`
async fn joined(
    state: AppState,
    request: Ruma<joined_rooms::v3::Request>,
) -> Result<joined_rooms::v3::Response> {
    let rooms = state.rooms.joined_rooms(request.session()?.into()).await?;
    Ok(joined_rooms::v3::Response::new(rooms))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/join`
async fn join_by_id(
    state: AppState,
    request: Ruma<join_room_by_id::v3::Request>,
) -> Result<join_room_by_id::v3::Response> {
    let actor = request.session()?.into();
    let body = &request.body;
    let room_id = state
        .membership
        .join_room(actor, (&*body.room_id).into(), &[], body.reason.as_deref())
        .await?;
    Ok(join_room_by_id::v3::Response::new(room_id))
}

/// `POST /_matrix/client/v3/join/{roomIdOrAlias}`
async fn join_by_id_or_alias(
    state: AppState,
    request: Ruma<join_room_by_id_or_alias::v3::Request>,
) -> Result<join_room_by_id_or_alias::v3::Response> {
    let actor = request.session()?.into();
    let body = &request.body;
    let room_id = state
        .membership
        .join_room(actor, &body.room_id_or_alias, &body.via, body.reason.as_deref())
        .await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id))
}

/// `POST /_matrix/client/v3/knock/{roomIdOrAlias}`
async fn knock(
    state: AppState,
    request: Ruma<knock_room::v3::Request>,
) -> Result<knock_room::v3::Response> {
    let actor = request.session()?.into();
    let body = &request.body;
    let room_id = state
        .membership
        .knock_room(actor, &body.room_id_or_alias, &body.via, body.reason.as_deref())
        .await?;
    Ok(knock_room::v3::Response::new(room_id))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/upgrade`
async fn upgrade(
    state: AppState,
    request: Ruma<upgrade_room::v3::Request>,
) -> Result<upgrade_room::v3::Response> {
    let actor = request.session()?.into();
    let body = &request.body;
    let room = state
        .membership
        .upgrade_room(actor, &body.room_id, &body.new_version, &body.additional_creators)
        .await?;
    Ok(upgrade_room::v3::Response::new(room))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/invite`
async fn invite(
    state: AppState,
    request: Ruma<invite_user::v3::Request>,
) -> Result<invite_user::v3::Response> {
    let actor = request.session()?.into();
    let body = &request.body;
    let invite_user::v3::InvitationRecipient::UserId(recipient) = &body.recipient else {
        return Err(Error::forbidden("Third-party invites are not supported"));
    };
    state
        .membership
        .invite_user(actor, &body.room_id, &recipient.user_id, recipient.reason.as_deref(), false)
        .await?;
    Ok(invite_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/leave`
async fn leave(
    state: AppState,
    request: Ruma<leave_room::v3::Request>,
) -> Result<leave_room::v3::Response> {
    let actor = request.session()?.into();
    state
        .membership
        .leave_room(actor, &request.body.room_id, request.body.reason.as_deref())
        .await?;
    Ok(leave_room::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/forget`
async fn forget(
    state: AppState,
    request: Ruma<forget_room::v3::Request>,
) -> Result<forget_room::v3::Response> {
    state.membership.forget(request.session()?.into(), &request.body.room_id).await?;
    Ok(forget_room::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/kick`
async fn kick(
    state: AppState,
    request: Ruma<kick_user::v3::Request>,
) -> Result<kick_user::v3::Response> {
    let actor = request.session()?.into();
    let body = &request.body;
    state.membership.kick(actor, &body.room_id, &body.user_id, body.reason.as_deref()).await?;
    Ok(kick_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/ban`
async fn ban(
    state: AppState,
    request: Ruma<ban_user::v3::Request>,
) -> Result<ban_user::v3::Response> {
    let actor = request.session()?.into();
    let body = &request.body;
    state.membership.ban(actor, &body.room_id, &body.user_id, body.reason.as_deref()).await?;
    Ok(ban_user::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/unban`
async fn unban(
    state: AppState,
    request: Ruma<unban_user::v3::Request>,
) -> Result<unban_user::v3::Response> {
    let actor = request.session()?.into();
    let body = &request.body;
    state.membership.unban(actor, &body.room_id, &body.user_id, body.reason.as_deref()).await?;
    Ok(unban_user::v3::Response::new())
}
