//! `/sync` and the filters it uses.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#syncing> and
//! <https://spec.matrix.org/v1.19/client-server-api/#filtering>

use std::time::Duration;

use axum::{Json, extract::State, http::Method, routing};
use palisade_core::{Error, Result};
use palisade_service::sync::{InitialSync, SyncRequest, SyncResponse};
use ruma::api::client::{
    filter::{create_filter, get_filter},
    sync::sync_events,
};

use crate::{
    AppState, Ruma,
    error::ApiError,
    extract::Authenticated,
    json::ensure_own,
    routes::{Routes, route, route_json},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route_json(router, sync);
    let router = ["r0", "v3"].into_iter().fold(router, |router, version| {
        let path = format!("/_matrix/client/{version}/initialSync");
        router.add(Method::GET, &path, routing::get(initial_sync))
    });
    let router = route(router, sliding);
    let router = route(router, create);
    route(router, get)
}

/// The query of the deprecated global `/initialSync`.
#[derive(serde::Deserialize)]
struct InitialSyncQuery {
    /// Latest messages per room; Synapse's default is 10.
    #[serde(default = "default_initial_messages")]
    limit: usize,
}

fn default_initial_messages() -> usize {
    10
}

/// `GET /_matrix/client/v3/initialSync` (deprecated; older bots and bridges start with it).
/// Ruma has no type for it.
async fn initial_sync(
    State(state): State<AppState>,
    Authenticated(session): Authenticated,
    uri: http::Uri,
) -> std::result::Result<Json<InitialSync>, ApiError> {
    let axum::extract::Query(query) = axum::extract::Query::<InitialSyncQuery>::try_from_uri(&uri)
        .map_err(|e| Error::invalid_param(format!("Invalid request: {e}")))?;
    Ok(Json(state.sync.initial_sync((&session).into(), query.limit.min(100)).await?))
}

/// `GET /_matrix/client/v3/sync`
async fn sync(state: AppState, request: Ruma<sync_events::v3::Request>) -> Result<SyncResponse> {
    let body = &request.body;
    let sync = SyncRequest {
        since: body.since.clone(),
        full_state: body.full_state,
        timeout: body.timeout.unwrap_or(Duration::ZERO),
        filter: body.filter.clone(),
        set_presence: Some(body.set_presence.to_string()),
    };
    state.sync.sync(request.session()?, &sync).await
}

/// `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync`: simplified sliding
/// sync (MSC4186), what Element X syncs with.
async fn sliding(
    state: AppState,
    request: Ruma<sync_events::v5::Request>,
) -> Result<sync_events::v5::Response> {
    state.sync.sliding_sync(request.session()?, &request.body).await
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
