//! Reporting abuse: `/rooms/{roomId}/report/{eventId}`, `/rooms/{roomId}/report` and
//! `/users/{userId}/report`.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#reporting-content>

use palisade_core::Result;
use ruma::api::client::{
    reporting::report_user,
    room::{report_content, report_room},
};

use crate::{
    AppState, Ruma,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, event);
    let router = route(router, room);
    route(router, user)
}

/// `POST /_matrix/client/v3/rooms/{roomId}/report/{eventId}`
async fn event(
    state: AppState,
    request: Ruma<report_content::v3::Request>,
) -> Result<report_content::v3::Response> {
    let body = &request.body;
    let actor = request.session()?.into();
    state
        .reports
        .report_event(actor, &body.room_id, &body.event_id, body.reason.as_deref())
        .await?;
    Ok(report_content::v3::Response::new())
}

/// `POST /_matrix/client/v3/rooms/{roomId}/report`
async fn room(
    state: AppState,
    request: Ruma<report_room::v3::Request>,
) -> Result<report_room::v3::Response> {
    let body = &request.body;
    state.reports.report_room(request.session()?.into(), &body.room_id, &body.reason).await?;
    Ok(report_room::v3::Response::new())
}

/// `POST /_matrix/client/v3/users/{userId}/report`
async fn user(
    state: AppState,
    request: Ruma<report_user::v3::Request>,
) -> Result<report_user::v3::Response> {
    let body = &request.body;
    state.reports.report_user(request.session()?.into(), &body.user_id, &body.reason).await?;
    Ok(report_user::v3::Response::new())
}
