//! Third-party network lookups (`/thirdparty/…`): the protocols bridges offer. Bridges
//! register them as application services, which this server does not run yet, so it offers no
//! protocols and finds no users or locations, as Synapse does without bridges.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#third-party-networks>

use palisade_core::{Error, Result};
use ruma::api::client::thirdparty::{
    get_location_for_protocol, get_location_for_room_alias, get_protocol, get_protocols,
    get_user_for_protocol, get_user_for_user_id,
};

use crate::{
    AppState, Ruma,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, protocols);
    let router = route(router, protocol);
    let router = route(router, locations_of_protocol);
    let router = route(router, users_of_protocol);
    let router = route(router, locations_of_alias);
    route(router, users_of_user_id)
}

/// `GET /_matrix/client/v3/thirdparty/protocols`
async fn protocols(
    _: AppState,
    request: Ruma<get_protocols::v3::Request>,
) -> Result<get_protocols::v3::Response> {
    request.session()?;
    Ok(get_protocols::v3::Response::new(Default::default()))
}

/// `GET /_matrix/client/v3/thirdparty/protocol/{protocol}`
async fn protocol(
    _: AppState,
    request: Ruma<get_protocol::v3::Request>,
) -> Result<get_protocol::v3::Response> {
    request.session()?;
    Err(Error::not_found("No protocol"))
}

/// `GET /_matrix/client/v3/thirdparty/location/{protocol}`
async fn locations_of_protocol(
    _: AppState,
    request: Ruma<get_location_for_protocol::v3::Request>,
) -> Result<get_location_for_protocol::v3::Response> {
    request.session()?;
    Ok(get_location_for_protocol::v3::Response::new(Vec::new()))
}

/// `GET /_matrix/client/v3/thirdparty/user/{protocol}`
async fn users_of_protocol(
    _: AppState,
    request: Ruma<get_user_for_protocol::v3::Request>,
) -> Result<get_user_for_protocol::v3::Response> {
    request.session()?;
    Ok(get_user_for_protocol::v3::Response::new(Vec::new()))
}

/// `GET /_matrix/client/v3/thirdparty/location?alias=`
async fn locations_of_alias(
    _: AppState,
    request: Ruma<get_location_for_room_alias::v3::Request>,
) -> Result<get_location_for_room_alias::v3::Response> {
    request.session()?;
    Ok(get_location_for_room_alias::v3::Response::new(Vec::new()))
}

/// `GET /_matrix/client/v3/thirdparty/user?userid=`
async fn users_of_user_id(
    _: AppState,
    request: Ruma<get_user_for_user_id::v3::Request>,
) -> Result<get_user_for_user_id::v3::Response> {
    request.session()?;
    Ok(get_user_for_user_id::v3::Response::new(Vec::new()))
}
