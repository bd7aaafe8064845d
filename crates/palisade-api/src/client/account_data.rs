//! Account data, room tags and push rules.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#client-config>,
//! <https://spec.matrix.org/v1.19/client-server-api/#room-tagging> and
//! <https://spec.matrix.org/v1.19/client-server-api/#push-rules>

use palisade_core::Result;
use ruma::api::client::{
    config::{
        get_global_account_data, get_room_account_data, set_global_account_data,
        set_room_account_data,
    },
    tag::{create_tag, delete_tag, get_tags},
};
use ruma::serde::Raw;

use crate::{
    AppState, Ruma,
    json::ensure_own,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, set_global);
    let router = route(router, get_global);
    let router = route(router, set_room);
    let router = route(router, get_room);
    let router = route(router, tags);
    let router = route(router, put_tag);
    route(router, remove_tag)
}

/// `PUT /_matrix/client/v3/user/{userId}/account_data/{type}`
async fn set_global(
    state: AppState,
    request: Ruma<set_global_account_data::v3::Request>,
) -> Result<set_global_account_data::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    ensure_own(session.user_id(), &body.user_id)?;
    let content = body.data.json();
    state.account_data.set(session.into(), None, &body.event_type.to_string(), content).await?;
    Ok(set_global_account_data::v3::Response::new())
}

/// `GET /_matrix/client/v3/user/{userId}/account_data/{type}`
async fn get_global(
    state: AppState,
    request: Ruma<get_global_account_data::v3::Request>,
) -> Result<get_global_account_data::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    ensure_own(session.user_id(), &body.user_id)?;
    let content =
        state.account_data.get(session.into(), None, &body.event_type.to_string()).await?;
    Ok(get_global_account_data::v3::Response::new(Raw::from_json(content)))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
async fn set_room(
    state: AppState,
    request: Ruma<set_room_account_data::v3::Request>,
) -> Result<set_room_account_data::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    ensure_own(session.user_id(), &body.user_id)?;
    let content = body.data.json();
    state
        .account_data
        .set(session.into(), Some(&body.room_id), &body.event_type.to_string(), content)
        .await?;
    Ok(set_room_account_data::v3::Response::new())
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/account_data/{type}`
async fn get_room(
    state: AppState,
    request: Ruma<get_room_account_data::v3::Request>,
) -> Result<get_room_account_data::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    ensure_own(session.user_id(), &body.user_id)?;
    let content = state
        .account_data
        .get(session.into(), Some(&body.room_id), &body.event_type.to_string())
        .await?;
    Ok(get_room_account_data::v3::Response::new(Raw::from_json(content)))
}

/// `GET /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags`
async fn tags(
    state: AppState,
    request: Ruma<get_tags::v3::Request>,
) -> Result<get_tags::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    ensure_own(session.user_id(), &body.user_id)?;
    let tags = state.account_data.tags(session.into(), &body.room_id).await?;
    Ok(get_tags::v3::Response::new(tags))
}

/// `PUT /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
async fn put_tag(
    state: AppState,
    request: Ruma<create_tag::v3::Request>,
) -> Result<create_tag::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    ensure_own(session.user_id(), &body.user_id)?;
    state.account_data.set_tag(session.into(), &body.room_id, &body.tag, &body.tag_info).await?;
    Ok(create_tag::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/user/{userId}/rooms/{roomId}/tags/{tag}`
async fn remove_tag(
    state: AppState,
    request: Ruma<delete_tag::v3::Request>,
) -> Result<delete_tag::v3::Response> {
    let session = request.session()?;
    let body = &request.body;
    ensure_own(session.user_id(), &body.user_id)?;
    state.account_data.delete_tag(session.into(), &body.room_id, &body.tag).await?;
    Ok(delete_tag::v3::Response::new())
}
