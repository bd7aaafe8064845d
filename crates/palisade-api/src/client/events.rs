//! Events: send, state, redact, `/messages`, `/event`, `/context`, `/members`,
//! `/joined_members`.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#events>

use std::time::Duration;

use axum::{
    Json,
    extract::{Path, Query, State},
    http::Method,
    routing::{get, post},
};
use bytes::Bytes;
use palisade_core::{Error, ErrorKind, Result};
use palisade_service::{
    EventTemplate,
    rooms::{EventFilter, EventsPage, Walk, content_from_json, parse_stream_token},
};
use ruma::{
    OwnedEventId, OwnedRoomId,
    api::client::{
        context::get_context,
        membership::{get_member_events, joined_members},
        message::{get_message_events, send_message_event},
        peeking::get_current_state,
        redact::redact_event,
        room::{get_event_by_timestamp, get_room_event},
        state::{get_state_event_for_key, get_state_events, send_state_event},
    },
    events::AnyTimelineEvent,
    serde::Raw,
};

use crate::{
    AppState, Ruma,
    error::ApiError,
    extract::{Authenticated, RumaResponse},
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, send_message);
    let router = ["r0", "v3"].into_iter().fold(router, |router, version| {
        let path = format!("/_matrix/client/{version}/rooms/{{room_id}}/send/{{event_type}}");
        router.add(Method::POST, &path, post(send_message_without_txn))
    });
    let router = route(router, send_state);
    let router = route(router, get_state);
    let router = route(router, get_state_event);
    let router = route(router, redact);
    let router = route(router, messages);
    let router = route(router, event);
    let router = route(router, context);
    let router = route(router, members);
    let router = route(router, initial_sync);
    let router = ["r0", "v3"].into_iter().fold(router, |router, version| {
        let path = format!("/_matrix/client/{version}/events");
        router.add(Method::GET, &path, get(events_after))
    });
    let router = ["r0", "v3"].into_iter().fold(router, |router, version| {
        let path = format!("/_matrix/client/{version}/events/{{event_id}}");
        router.add(Method::GET, &path, get(event_by_id))
    });
    let router = route(router, event_near);
    // The stable path of spec v1.19 and the one clients used before it (MSC2666); ruma has a
    // type for the latter only.
    let router = ["v1/mutual_rooms", "unstable/uk.half-shot.msc2666/user/mutual_rooms"]
        .into_iter()
        .fold(router, |router, path| {
            router.add(Method::GET, &format!("/_matrix/client/{path}"), get(mutual_rooms))
        });
    route(router, joined)
}

#[derive(serde::Deserialize)]
struct MutualRoomsQuery {
    user_id: Option<String>,
    from: Option<String>,
}

/// The rooms two users share, in one batch (so there is never a `next_batch`).
#[derive(serde::Serialize)]
struct MutualRooms {
    joined: Vec<OwnedRoomId>,
    count: usize,
}

/// `GET /_matrix/client/v1/mutual_rooms?user_id=`
async fn mutual_rooms(
    State(state): State<AppState>,
    Authenticated(session): Authenticated,
    uri: http::Uri,
) -> std::result::Result<Json<MutualRooms>, ApiError> {
    let Query(query) = Query::<MutualRoomsQuery>::try_from_uri(&uri)
        .map_err(|e| Error::invalid_param(format!("Invalid request: {e}")))?;
    let user_id =
        query.user_id.ok_or_else(|| Error::new(ErrorKind::MissingParam, "Missing user_id"))?;
    let user_id = ruma::OwnedUserId::try_from(user_id)
        .map_err(|_| Error::invalid_param("The user ID provided was invalid"))?;
    if query.from.is_some() {
        // No token was ever handed out: every answer is one batch.
        return Err(Error::invalid_param("Unknown from token").into());
    }
    let joined = state.rooms.mutual_rooms((&session).into(), &user_id).await?;
    Ok(Json(MutualRooms { count: joined.len(), joined }))
}

/// `GET /_matrix/client/v1/rooms/{roomId}/timestamp_to_event?ts=&dir=`
async fn event_near(
    state: AppState,
    request: Ruma<get_event_by_timestamp::v1::Request>,
) -> Result<get_event_by_timestamp::v1::Response> {
    let body = &request.body;
    let ts = u64::from(body.ts.0);
    let (event_id, ts) =
        state.rooms.event_near(request.session()?.into(), &body.room_id, ts, body.dir).await?;
    let ts = ruma::MilliSecondsSinceUnixEpoch(ruma::UInt::new_saturating(ts));
    Ok(get_event_by_timestamp::v1::Response::new(event_id, ts))
}

/// The query of the deprecated `/events`.
#[derive(serde::Deserialize)]
struct EventsQuery {
    room_id: Option<OwnedRoomId>,
    from: Option<String>,
    /// Milliseconds; Synapse's default is not to wait.
    #[serde(default)]
    timeout: u64,
}

/// `GET /_matrix/client/v3/events` (deprecated): the events after a token, of one room
/// (`room_id`, which peeking clients poll, guests too) or of every room the user is in
/// (older bots). Ruma's type requires the room, so the query is read here.
async fn events_after(
    State(state): State<AppState>,
    Authenticated(session): Authenticated<true>,
    uri: http::Uri,
) -> std::result::Result<Json<EventsPage>, ApiError> {
    let Query(query) = Query::<EventsQuery>::try_from_uri(&uri)
        .map_err(|e| Error::invalid_param(format!("Invalid request: {e}")))?;
    let timeout = Duration::from_millis(query.timeout);
    let (room_id, from) = (query.room_id.as_deref(), query.from.as_deref());
    Ok(Json(state.rooms.events_after_token((&session).into(), room_id, from, timeout).await?))
}

/// `GET /_matrix/client/v3/events/{eventId}` (deprecated: an event by id alone)
async fn event_by_id(
    State(state): State<AppState>,
    Authenticated(session): Authenticated,
    Path(event_id): Path<String>,
) -> std::result::Result<Json<Raw<AnyTimelineEvent>>, ApiError> {
    let event_id =
        OwnedEventId::try_from(event_id).map_err(|_| Error::invalid_param("Invalid event id"))?;
    Ok(Json(state.rooms.event_by_id((&session).into(), &event_id).await?))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/initialSync` (deprecated; Element peeks with it)
async fn initial_sync(
    state: AppState,
    request: Ruma<get_current_state::v3::Request>,
) -> Result<get_current_state::v3::Response> {
    /// Messages a room's initial sync shows.
    const MESSAGES: usize = 20;
    state.rooms.initial_sync(request.session()?.into(), &request.body.room_id, MESSAGES).await
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/send/{eventType}/{txnId}`
async fn send_message(
    state: AppState,
    request: Ruma<send_message_event::v3::Request>,
) -> Result<send_message_event::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let content = content_from_json(body.body.json().get())?;
    let template = EventTemplate::message(body.event_type.to_string(), content);
    let event_id = state
        .rooms
        .send(session.into(), &body.room_id, template, Some(body.txn_id.as_str()))
        .await?;
    Ok(send_message_event::v3::Response::new(event_id))
}

/// `POST /_matrix/client/v3/rooms/{roomId}/send/{eventType}`: a send without a transaction id,
/// which older clients and bots still use and Synapse serves (a retry sends the event again).
async fn send_message_without_txn(
    State(state): State<AppState>,
    Authenticated(session): Authenticated,
    Path((room_id, event_type)): Path<(String, String)>,
    body: Bytes,
) -> std::result::Result<RumaResponse<send_message_event::v3::Response>, ApiError> {
    let room_id =
        OwnedRoomId::try_from(room_id).map_err(|_| Error::invalid_param("Invalid room id"))?;
    let json = std::str::from_utf8(&body)
        .ok()
        .filter(|json| serde_json::from_str::<serde::de::IgnoredAny>(json).is_ok())
        .ok_or_else(|| Error::new(ErrorKind::NotJson, "Content not JSON"))?;
    let template = EventTemplate::message(event_type, content_from_json(json)?);
    let event_id = state.rooms.send((&session).into(), &room_id, template, None).await?;
    Ok(RumaResponse(send_message_event::v3::Response::new(event_id)))
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
async fn send_state(
    state: AppState,
    request: Ruma<send_state_event::v3::Request>,
) -> Result<send_state_event::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let content = content_from_json(body.body.json().get())?;
    let template =
        EventTemplate::state(body.event_type.to_string(), body.state_key.clone(), content);
    let event_id = state.rooms.send(session.into(), &body.room_id, template, None).await?;
    Ok(send_state_event::v3::Response::new(event_id))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state`
async fn get_state(
    state: AppState,
    request: Ruma<get_state_events::v3::Request>,
) -> Result<get_state_events::v3::Response> {
    let events = state.rooms.state(request.session()?.into(), &request.body.room_id).await?;
    Ok(get_state_events::v3::Response::new(events))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/state/{eventType}/{stateKey}`
async fn get_state_event(
    state: AppState,
    request: Ruma<get_state_event_for_key::v3::Request>,
) -> Result<get_state_event_for_key::v3::Response> {
    let body = &request.body;
    let event = state
        .rooms
        .state_event(
            request.session()?.into(),
            &body.room_id,
            &body.event_type.to_string(),
            &body.state_key,
        )
        .await?;
    let json = match body.format {
        get_state_event_for_key::v3::StateEventFormat::Event => event.into_json(),
        _ => event
            .get_field::<Box<serde_json::value::RawValue>>("content")
            .ok()
            .flatten()
            .ok_or_else(|| Error::internal("state event without content"))?,
    };
    Ok(get_state_event_for_key::v3::Response::new(json))
}

/// `PUT /_matrix/client/v3/rooms/{roomId}/redact/{eventId}/{txnId}`
async fn redact(
    state: AppState,
    request: Ruma<redact_event::v3::Request>,
) -> Result<redact_event::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let event_id = state
        .rooms
        .redact(
            session.into(),
            &body.room_id,
            &body.event_id,
            body.reason.as_deref(),
            body.txn_id.as_str(),
        )
        .await?;
    Ok(redact_event::v3::Response::new(event_id))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/messages`
async fn messages(
    state: AppState,
    request: Ruma<get_message_events::v3::Request>,
) -> Result<get_message_events::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let from = body.from.as_deref().map(parse_stream_token).transpose()?;
    let to = body.to.as_deref().map(parse_stream_token).transpose()?;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX);
    let walk = Walk { from, to, direction: body.dir, limit };
    let page = state
        .rooms
        .messages(session.into(), &body.room_id, walk, &EventFilter::from(&body.filter))
        .await?;
    let mut response = get_message_events::v3::Response::new();
    response.start = page.start;
    response.end = page.end;
    response.chunk = page.chunk;
    response.state = page.state;
    Ok(response)
}

/// `GET /_matrix/client/v3/rooms/{roomId}/event/{eventId}`
async fn event(
    state: AppState,
    request: Ruma<get_room_event::v3::Request>,
) -> Result<get_room_event::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let event = state.rooms.event(session.into(), &body.room_id, &body.event_id).await?;
    Ok(get_room_event::v3::Response::new(event))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/context/{eventId}`
async fn context(
    state: AppState,
    request: Ruma<get_context::v3::Request>,
) -> Result<get_context::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX).min(100);
    let context = state
        .rooms
        .context(
            session.into(),
            &body.room_id,
            &body.event_id,
            limit,
            &EventFilter::from(&body.filter),
        )
        .await?;
    let mut response = get_context::v3::Response::new();
    response.start = Some(context.before.end.unwrap_or(context.before.start));
    response.end = Some(context.after.end.unwrap_or(context.after.start));
    response.events_before = context.before.chunk;
    response.event = Some(context.event);
    response.events_after = context.after.chunk;
    response.state = context.state;
    Ok(response)
}

/// `GET /_matrix/client/v3/rooms/{roomId}/members`
async fn members(
    state: AppState,
    request: Ruma<get_member_events::v3::Request>,
) -> Result<get_member_events::v3::Response> {
    let body = &request.body;
    let membership = body.membership.as_ref().map(|m| m.to_string());
    let not_membership = body.not_membership.as_ref().map(|m| m.to_string());
    let events = state
        .rooms
        .members(
            request.session()?.into(),
            &body.room_id,
            membership.as_deref(),
            not_membership.as_deref(),
        )
        .await?;
    Ok(get_member_events::v3::Response::new(events))
}

/// `GET /_matrix/client/v3/rooms/{roomId}/joined_members`
async fn joined(
    state: AppState,
    request: Ruma<joined_members::v3::Request>,
) -> Result<joined_members::v3::Response> {
    let members =
        state.rooms.joined_members(request.session()?.into(), &request.body.room_id).await?;
    Ok(joined_members::v3::Response::new(members))
}
