//! Keys: this server's signing key, and other servers' keys as a notary.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#retrieving-server-keys>

use axum::{
    extract::{Path, State},
    http::Method,
    routing::get,
};
use palisade_core::{Error, Result};
use ruma::{
    ServerName,
    api::federation::discovery::{
        ServerSigningKeys, get_remote_server_keys, get_remote_server_keys_batch, get_server_keys,
    },
    serde::Raw,
};

use crate::{
    AppState, Ruma,
    error::ApiError,
    extract::RumaResponse,
    routes::{Routes, route},
};

/// What the deprecated forms answer: a ruma response, or a Matrix error.
type Answer<T> = std::result::Result<RumaResponse<T>, ApiError>;

pub(super) fn server_key_routes(router: Routes) -> Routes {
    route(router, server_keys).add(
        Method::GET,
        "/_matrix/key/v2/server/{key_id}",
        get(async |State(state): State<AppState>| answer(own_keys(&state))),
    )
}

pub(super) fn notary_routes(router: Routes) -> Routes {
    let router = route(router, notary_query);
    route(router, notary_batch).add(
        Method::GET,
        "/_matrix/key/v2/query/{server_name}/{key_id}",
        get(notary_query_by_key_id),
    )
}

fn answer<T>(result: Result<T>) -> Answer<T> {
    result.map(RumaResponse).map_err(ApiError)
}

/// `GET /_matrix/key/v2/server`, and the deprecated `/_matrix/key/v2/server/{keyId}` that
/// older servers and tools still ask (the key id is ignored: every key is in the answer).
fn own_keys(state: &AppState) -> Result<get_server_keys::v2::Response> {
    let document = state
        .signing_key
        .server_key_document(state.config.server_name.as_str(), state.clock.now_millis())?;
    Ok(get_server_keys::v2::Response::new(document))
}

/// `GET /_matrix/key/v2/server`
async fn server_keys(
    state: AppState,
    _: Ruma<get_server_keys::v2::Request>,
) -> Result<get_server_keys::v2::Response> {
    own_keys(&state)
}

/// The deprecated `GET /_matrix/key/v2/query/{serverName}/{keyId}`: the key id is ignored, as
/// the spec's history describes.
async fn notary_query_by_key_id(
    State(state): State<AppState>,
    Path((server_name, _key_id)): Path<(String, String)>,
) -> Answer<get_remote_server_keys::v2::Response> {
    let server = ServerName::parse(&server_name)
        .map_err(|_| ApiError(Error::invalid_param("Invalid server name")))?;
    answer(notarised(&state, &server).await.map(get_remote_server_keys::v2::Response::new))
}

async fn notarised(state: &AppState, server: &ServerName) -> Result<Vec<Raw<ServerSigningKeys>>> {
    state.federation.keys.notarised_documents(server).await
}

/// `GET /_matrix/key/v2/query/{serverName}`
async fn notary_query(
    state: AppState,
    request: Ruma<get_remote_server_keys::v2::Request>,
) -> Result<get_remote_server_keys::v2::Response> {
    let keys = notarised(&state, &request.body.server_name).await?;
    Ok(get_remote_server_keys::v2::Response::new(keys))
}

/// Most servers one batch query may ask about.
const MAX_BATCH_SERVERS: usize = 100;

/// `POST /_matrix/key/v2/query`
async fn notary_batch(
    state: AppState,
    request: Ruma<get_remote_server_keys_batch::v2::Request>,
) -> Result<get_remote_server_keys_batch::v2::Response> {
    if request.body.server_keys.len() > MAX_BATCH_SERVERS {
        return Err(Error::invalid_param("Too many servers in one query"));
    }
    let mut keys = Vec::new();
    for server in request.body.server_keys.keys() {
        keys.extend(notarised(&state, server).await?);
    }
    Ok(get_remote_server_keys_batch::v2::Response::new(keys))
}
