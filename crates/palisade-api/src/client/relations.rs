//! `/relations`: the events relating to an event (edits, reactions, threads, references);
//! `/threads`: a room's threads.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#get_matrixclientv1roomsroomideventidrelationseventid>

use palisade_core::Result;
use palisade_service::rooms::{Relations, RelationsQuery};
use ruma::{
    UInt,
    api::{
        Direction,
        client::{
            relations::{
                get_relating_events, get_relating_events_with_rel_type,
                get_relating_events_with_rel_type_and_event_type,
            },
            threads::get_threads::{self, v1::IncludeThreads},
        },
    },
    serde::Raw,
};

use crate::{
    AppState, Ruma,
    routes::{Routes, route},
};

/// Events per page unless the client asks otherwise (Synapse's default).
const DEFAULT_LIMIT: usize = 5;
/// Threads per page unless the client asks otherwise (Synapse's default).
const THREADS_LIMIT: usize = 5;

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, all);
    let router = route(router, of_type);
    let router = route(router, of_type_and_event_type);
    route(router, threads)
}

/// `GET /_matrix/client/v1/rooms/{roomId}/threads`
async fn threads(
    state: AppState,
    request: Ruma<get_threads::v1::Request>,
) -> Result<get_threads::v1::Response> {
    let b = &request.body;
    let participated = b.include == IncludeThreads::Participated;
    let limit =
        b.limit.map_or(THREADS_LIMIT, |l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX));
    let page = state
        .rooms
        .threads(request.session()?.into(), &b.room_id, b.from.as_deref(), participated, limit)
        .await?;
    let mut response = get_threads::v1::Response::new(page.chunk);
    response.next_batch = page.next_batch;
    Ok(response)
}

/// The query the three forms share.
fn query(
    (from, to, direction, limit, recurse): (
        &Option<String>,
        &Option<String>,
        Direction,
        Option<UInt>,
        bool,
    ),
    rel_type: Option<String>,
    event_type: Option<String>,
) -> RelationsQuery {
    let limit =
        limit.map_or(DEFAULT_LIMIT, |l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX));
    RelationsQuery {
        rel_type,
        event_type,
        from: from.clone(),
        to: to.clone(),
        direction,
        limit,
        recurse,
    }
}

/// Fills one of ruma's three response types, which have the same fields.
macro_rules! response {
    ($module:ident, $page:expr) => {{
        let page: Relations = $page;
        let chunk = page.chunk.into_iter().map(Raw::cast_unchecked).collect();
        let mut response = $module::v1::Response::new(chunk);
        response.next_batch = page.next_batch;
        response.prev_batch = page.prev_batch;
        response.recursion_depth = page.recursion_depth.map(UInt::new_saturating);
        response
    }};
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}`
async fn all(
    state: AppState,
    request: Ruma<get_relating_events::v1::Request>,
) -> Result<get_relating_events::v1::Response> {
    let b = &request.body;
    let query = query((&b.from, &b.to, b.dir, b.limit, b.recurse), None, None);
    let page =
        state.rooms.relations(request.session()?.into(), &b.room_id, &b.event_id, query).await?;
    Ok(response!(get_relating_events, page))
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}`
async fn of_type(
    state: AppState,
    request: Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type::v1::Response> {
    let b = &request.body;
    let query =
        query((&b.from, &b.to, b.dir, b.limit, b.recurse), Some(b.rel_type.to_string()), None);
    let page =
        state.rooms.relations(request.session()?.into(), &b.room_id, &b.event_id, query).await?;
    Ok(response!(get_relating_events_with_rel_type, page))
}

/// `GET /_matrix/client/v1/rooms/{roomId}/relations/{eventId}/{relType}/{eventType}`
async fn of_type_and_event_type(
    state: AppState,
    request: Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type_and_event_type::v1::Response> {
    let b = &request.body;
    let (rel_type, event_type) = (Some(b.rel_type.to_string()), Some(b.event_type.to_string()));
    let query = query((&b.from, &b.to, b.dir, b.limit, b.recurse), rel_type, event_type);
    let page =
        state.rooms.relations(request.session()?.into(), &b.room_id, &b.event_id, query).await?;
    Ok(response!(get_relating_events_with_rel_type_and_event_type, page))
}
