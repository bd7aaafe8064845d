//! Keys: this server's signing key, and other servers' keys as a notary.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#retrieving-server-keys>

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
    routes::{Routes, route},
};

pub(super) fn server_key_routes(router: Routes) -> Routes {
    route(router, server_keys)
}

pub(super) fn notary_routes(router: Routes) -> Routes {
    let router = route(router, notary_query);
    route(router, notary_batch)
}

/// `GET /_matrix/key/v2/server`
async fn server_keys(
    state: AppState,
    _: Ruma<get_server_keys::v2::Request>,
) -> Result<get_server_keys::v2::Response> {
    let document = state
        .signing_key
        .server_key_document(state.config.server_name.as_str(), state.clock.now_millis())?;
    Ok(get_server_keys::v2::Response::new(document))
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
