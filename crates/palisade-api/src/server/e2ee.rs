//! Keys of this server's users for other servers: device keys, one-time keys, device lists.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#end-to-end-encryption>

use palisade_core::Result;
use ruma::api::federation::{
    device::get_devices,
    keys::{claim_keys, get_keys},
};

use crate::{
    AppState, Ruma,
    json::one_time_key_claims,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, query);
    let router = route(router, claim);
    route(router, devices)
}

/// `POST /_matrix/federation/v1/user/keys/query`
async fn query(
    state: AppState,
    request: Ruma<get_keys::v1::Request>,
) -> Result<get_keys::v1::Response> {
    request.origin()?;
    state.federation.local_keys(&request.body.device_keys).await
}

/// `POST /_matrix/federation/v1/user/keys/claim`
async fn claim(
    state: AppState,
    request: Ruma<claim_keys::v1::Request>,
) -> Result<claim_keys::v1::Response> {
    request.origin()?;
    state.federation.local_claim(&one_time_key_claims(&request.body.one_time_keys)).await
}

/// `GET /_matrix/federation/v1/user/devices/{userId}`
async fn devices(
    state: AppState,
    request: Ruma<get_devices::v1::Request>,
) -> Result<get_devices::v1::Response> {
    request.origin()?;
    state.federation.local_devices(&request.body.user_id).await
}
