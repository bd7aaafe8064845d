//! Presence: `/presence/{userId}/status`.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#presence>

use std::time::Duration;

use palisade_core::Result;
use ruma::{
    api::client::presence::{get_presence, set_presence},
    presence::PresenceState,
};

use crate::{
    AppState, Ruma,
    json::ensure_own,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, set);
    route(router, get)
}

/// `PUT /_matrix/client/v3/presence/{userId}/status`
async fn set(
    state: AppState,
    request: Ruma<set_presence::v3::Request>,
) -> Result<set_presence::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    ensure_own(session.user_id(), &body.user_id)?;
    let (presence, status) = (body.presence.as_str(), body.status_msg.clone());
    state.presence.set_own(session.into(), presence, status).await?;
    Ok(set_presence::v3::Response::new())
}

/// `GET /_matrix/client/v3/presence/{userId}/status`
async fn get(
    state: AppState,
    request: Ruma<get_presence::v3::Request>,
) -> Result<get_presence::v3::Response> {
    request.session()?;
    let Some(presence) = state.presence.get(&request.body.user_id).await? else {
        return Ok(get_presence::v3::Response::new(PresenceState::Offline));
    };
    let mut response =
        get_presence::v3::Response::new(PresenceState::from(presence.state.as_str()));
    response.status_msg = presence.status_msg;
    response.last_active_ago = Some(Duration::from_millis(presence.last_active_ago));
    response.currently_active = Some(presence.currently_active);
    Ok(response)
}
