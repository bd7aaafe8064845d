//! `/search`: full-text search of the rooms a user is in.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#post_matrixclientv3search>

use palisade_core::{Error, Result};
use palisade_service::rooms::{
    ContextRequest, EventFilter, SearchKey, SearchRequest, SearchResults,
};
use ruma::api::client::search::search_events::v3::{self, GroupingKey, OrderBy, SearchKeys};

use crate::{
    AppState, Ruma,
    routes::{Routes, route_json},
};

pub(super) fn routes(router: Routes) -> Routes {
    route_json(router, search)
}

/// `POST /_matrix/client/v3/search`
async fn search(state: AppState, request: Ruma<v3::Request>) -> Result<SearchResults> {
    let body = &request.body;
    // Synapse refuses a search without the room events category, the only one there is.
    let criteria = body
        .search_categories
        .room_events
        .as_ref()
        .ok_or_else(|| Error::bad_json("Invalid search query: no room_events"))?;
    let keys = criteria
        .keys
        .iter()
        .flatten()
        .map(|key| match key {
            SearchKeys::ContentBody => Ok(SearchKey::Body),
            SearchKeys::ContentName => Ok(SearchKey::Name),
            SearchKeys::ContentTopic => Ok(SearchKey::Topic),
            other => Err(Error::invalid_param(format!("Unknown search key {}", other.as_str()))),
        })
        .collect::<Result<_>>()?;
    let context = &criteria.event_context;
    let to_usize = |n: ruma::UInt| usize::try_from(u64::from(n)).unwrap_or(usize::MAX);
    let (before, after) = (to_usize(context.before_limit), to_usize(context.after_limit));
    let group_by = |wanted: GroupingKey| {
        criteria.groupings.group_by.iter().any(|g| g.key.as_ref() == Some(&wanted))
    };
    let filter = &criteria.filter;
    let search =
        SearchRequest {
            term: criteria.search_term.clone(),
            keys,
            filter: EventFilter::from(filter),
            rooms: filter.rooms.clone(),
            not_rooms: filter.not_rooms.clone(),
            limit: filter.limit.map(to_usize),
            recent: criteria.order_by == Some(OrderBy::Recent),
            // The extractor marks a request without `event_context` with limits of 0.
            context: (before > 0 || after > 0 || context.include_profile).then_some(
                ContextRequest { before, after, include_profile: context.include_profile },
            ),
            include_state: criteria.include_state.unwrap_or(false),
            group_by_room: group_by(GroupingKey::RoomId),
            group_by_sender: group_by(GroupingKey::Sender),
            next_batch: body.next_batch.clone(),
        };
    state.rooms.search(request.session()?.into(), search).await
}
