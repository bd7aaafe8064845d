//! Pushers and the notification list: `/pushers`, `/pushers/set`, `/notifications`.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#push-notifications>

use palisade_core::Result;
use ruma::api::client::push::{get_notifications, get_pushers, set_pusher};

use crate::{
    AppState, Ruma,
    routes::{Routes, route},
};

/// Notifications per page unless the client asks for fewer or more.
const DEFAULT_LIMIT: usize = 50;

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, pushers);
    let router = route(router, set);
    route(router, notifications)
}

/// `GET /_matrix/client/v3/pushers`
async fn pushers(
    state: AppState,
    request: Ruma<get_pushers::v3::Request>,
) -> Result<get_pushers::v3::Response> {
    let pushers = state.push.pushers(request.session()?.user_id()).await?;
    Ok(get_pushers::v3::Response::new(pushers))
}

/// `POST /_matrix/client/v3/pushers/set`: adds, updates or (`kind: null`) removes a pusher.
async fn set(
    state: AppState,
    request: Ruma<set_pusher::v3::Request>,
) -> Result<set_pusher::v3::Response> {
    state.push.set(request.session()?, request.body.action.clone()).await?;
    Ok(set_pusher::v3::Response::new())
}

/// `GET /_matrix/client/v3/notifications`
async fn notifications(
    state: AppState,
    request: Ruma<get_notifications::v3::Request>,
) -> Result<get_notifications::v3::Response> {
    let body = &request.body;
    let limit =
        body.limit.map_or(DEFAULT_LIMIT, |l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX));
    let only_highlight = body.only.as_deref() == Some("highlight");
    state.push.notifications(request.session()?, body.from.as_deref(), limit, only_highlight).await
}
