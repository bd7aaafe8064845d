//! `GET /_matrix/key/v2/server`: this server's signing key.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#get_matrixkeyv2server>

use axum::Router;
use palisade_core::{Error, Result};
use ruma::{api::federation::discovery::get_server_keys, serde::Raw};

use crate::{AppState, Ruma, router::route};

pub(super) fn routes(router: Router<AppState>) -> Router<AppState> {
    route(router, server_keys)
}

async fn server_keys(
    state: AppState,
    _: Ruma<get_server_keys::v2::Request>,
) -> Result<get_server_keys::v2::Response> {
    let document = state
        .signing_key
        .server_key_document(state.config.server_name.as_str(), state.clock.now_millis())?;
    let raw =
        serde_json::value::to_raw_value(&document).map_err(|e| Error::internal(e.to_string()))?;
    Ok(get_server_keys::v2::Response::new(Raw::from_json(raw)))
}
