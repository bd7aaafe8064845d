//! Joining, knocking and leaving through this server (`make_join`, `send_join`,
//! `make_knock`, `send_knock`, `make_leave`, `send_leave`).
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#joining-rooms>

use palisade_core::{Error, Result};
use palisade_federation::membership::MembershipAnswer;
use ruma::api::federation::membership::{
    create_invite, create_join_event, create_knock_event, create_leave_event, prepare_join_event,
    prepare_knock_event, prepare_leave_event,
};

use crate::{
    AppState, Ruma,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, make_join);
    let router = route(router, send_join);
    let router = route(router, make_knock);
    let router = route(router, send_knock);
    let router = route(router, make_leave);
    let router = route(router, invite);
    route(router, send_leave)
}

/// `PUT /_matrix/federation/v2/invite/{roomId}/{eventId}`
async fn invite(
    state: AppState,
    request: Ruma<create_invite::v2::Request>,
) -> Result<create_invite::v2::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let event = state
        .federation
        .receive_invite(
            origin,
            &body.room_id,
            &body.event_id,
            &body.room_version,
            &body.event,
            &body.invite_room_state,
        )
        .await?;
    Ok(create_invite::v2::Response::new(event))
}

/// `GET /_matrix/federation/v1/make_join/{roomId}/{userId}`
async fn make_join(
    state: AppState,
    request: Ruma<prepare_join_event::v1::Request>,
) -> Result<prepare_join_event::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let (version, event) = state
        .federation
        .make_membership(origin, &body.room_id, &body.user_id, "join", &body.ver)
        .await?;
    let mut response = prepare_join_event::v1::Response::new(event);
    response.room_version = Some(version);
    Ok(response)
}

/// `PUT /_matrix/federation/v2/send_join/{roomId}/{eventId}`
async fn send_join(
    state: AppState,
    request: Ruma<create_join_event::v2::Request>,
) -> Result<create_join_event::v2::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let MembershipAnswer::Joined(joined) = state
        .federation
        .send_membership(origin, &body.room_id, &body.event_id, &body.pdu, "join")
        .await?
    else {
        return Err(Error::internal("a join answers with the room state"));
    };
    let mut room_state = create_join_event::v2::RoomState::new();
    room_state.state = joined.state;
    room_state.auth_chain = joined.auth_chain;
    room_state.servers_in_room = Some(joined.servers_in_room);
    room_state.event = Some(joined.event);
    Ok(create_join_event::v2::Response::new(room_state))
}

/// `GET /_matrix/federation/v1/make_knock/{roomId}/{userId}`
async fn make_knock(
    state: AppState,
    request: Ruma<prepare_knock_event::v1::Request>,
) -> Result<prepare_knock_event::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let (version, event) = state
        .federation
        .make_membership(origin, &body.room_id, &body.user_id, "knock", &body.ver)
        .await?;
    Ok(prepare_knock_event::v1::Response::new(version, event))
}

/// `PUT /_matrix/federation/v1/send_knock/{roomId}/{eventId}`
async fn send_knock(
    state: AppState,
    request: Ruma<create_knock_event::v1::Request>,
) -> Result<create_knock_event::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let MembershipAnswer::Knocked(shown) = state
        .federation
        .send_membership(origin, &body.room_id, &body.event_id, &body.pdu, "knock")
        .await?
    else {
        return Err(Error::internal("a knock answers with the room's state"));
    };
    let shown = shown.into_iter().map(ruma::api::federation::membership::RawStrippedState::Pdu);
    Ok(create_knock_event::v1::Response::new(shown.collect()))
}

/// `GET /_matrix/federation/v1/make_leave/{roomId}/{userId}`
async fn make_leave(
    state: AppState,
    request: Ruma<prepare_leave_event::v1::Request>,
) -> Result<prepare_leave_event::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    let (version, event) = state
        .federation
        .make_membership(origin, &body.room_id, &body.user_id, "leave", &[])
        .await?;
    Ok(prepare_leave_event::v1::Response::new(Some(version), event))
}

/// `PUT /_matrix/federation/v2/send_leave/{roomId}/{eventId}`
async fn send_leave(
    state: AppState,
    request: Ruma<create_leave_event::v2::Request>,
) -> Result<create_leave_event::v2::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    state
        .federation
        .send_membership(origin, &body.room_id, &body.event_id, &body.pdu, "leave")
        .await?;
    Ok(create_leave_event::v2::Response::new())
}
