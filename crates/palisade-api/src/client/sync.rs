//! `/sync` and the filters it uses.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#syncing> and
//! <https://spec.matrix.org/v1.19/client-server-api/#filtering>

use std::time::Duration;

use palisade_core::Result;
use palisade_service::sync::{SyncFilter, SyncRequest};
use ruma::api::client::{
    filter::{FilterDefinition, LazyLoadOptions, create_filter, get_filter},
    sync::sync_events::{self, v3::Filter},
};

use crate::{
    AppState, Ruma,
    client::events::event_filter,
    json::ensure_own,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, sync);
    let router = route(router, create);
    route(router, get)
}

fn to_sync_filter(definition: &FilterDefinition) -> SyncFilter {
    let room = &definition.room;
    let timeline_limit = room.timeline.limit.map_or(SyncFilter::default().timeline_limit, |l| {
        usize::try_from(u64::from(l)).unwrap_or(usize::MAX)
    });
    SyncFilter {
        timeline: event_filter(&room.timeline),
        timeline_limit,
        lazy_load_members: matches!(room.state.lazy_load_options, LazyLoadOptions::Enabled { .. }),
        include_leave: room.include_leave,
        rooms: room.rooms.clone(),
        not_rooms: room.not_rooms.clone(),
    }
}

/// `GET /_matrix/client/v3/sync`
async fn sync(
    state: AppState,
    request: Ruma<sync_events::v3::Request>,
) -> Result<sync_events::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    let filter = match &body.filter {
        Some(Filter::FilterDefinition(definition)) => to_sync_filter(definition),
        Some(Filter::FilterId(id)) => {
            to_sync_filter(&state.account_data.filter(session.user_id(), id).await?)
        }
        _ => SyncFilter::default(),
    };
    let sync = SyncRequest {
        since: body.since.clone(),
        full_state: body.full_state,
        timeout: body.timeout.unwrap_or(Duration::ZERO),
        filter,
    };
    state.sync.sync(session, &sync).await
}

/// `POST /_matrix/client/v3/user/{userId}/filter`
async fn create(
    state: AppState,
    request: Ruma<create_filter::v3::Request>,
) -> Result<create_filter::v3::Response> {
    let session = request.session()?;
    ensure_own(session.user_id(), &request.body.user_id)?;
    let id = state.account_data.create_filter(session.user_id(), &request.body.filter).await?;
    Ok(create_filter::v3::Response::new(id))
}

/// `GET /_matrix/client/v3/user/{userId}/filter/{filterId}`
async fn get(
    state: AppState,
    request: Ruma<get_filter::v3::Request>,
) -> Result<get_filter::v3::Response> {
    let session = request.session()?;
    ensure_own(session.user_id(), &request.body.user_id)?;
    let definition = state.account_data.filter(session.user_id(), &request.body.filter_id).await?;
    Ok(get_filter::v3::Response::new(definition))
}
