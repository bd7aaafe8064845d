//! `/sync` and the filters it uses.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#syncing> and
//! <https://spec.matrix.org/v1.19/client-server-api/#filtering>

use std::time::Duration;

use palisade_core::Result;
use palisade_service::sync::{SyncRequest, SyncResponse};
use ruma::api::client::{
    filter::{create_filter, get_filter},
    sync::sync_events,
};

use crate::{
    AppState, Ruma,
    json::ensure_own,
    routes::{Routes, route, route_json},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route_json(router, sync);
    let router = route(router, create);
    route(router, get)
}

/// `GET /_matrix/client/v3/sync`
async fn sync(state: AppState, request: Ruma<sync_events::v3::Request>) -> Result<SyncResponse> {
    let body = &request.body;
    let sync = SyncRequest {
        since: body.since.clone(),
        full_state: body.full_state,
        timeout: body.timeout.unwrap_or(Duration::ZERO),
        filter: body.filter.clone(),
    };
    state.sync.sync(request.session()?, &sync).await
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
