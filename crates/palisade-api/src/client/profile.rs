//! Profiles: `/profile/{userId}`, its `displayname` and `avatar_url` fields, and any other
//! field (`/profile/{userId}/{keyName}`, spec v1.16: `m.tz` and custom ones).
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#profiles>

use palisade_core::{Error, Result};
use palisade_service::accounts::Profile;
use ruma::{
    UserId,
    api::client::profile::{
        delete_profile_field, get_avatar_url, get_display_name, get_profile, get_profile_field,
        set_avatar_url, set_display_name, set_profile_field,
    },
};
use serde_json::json;

use axum::{
    Json,
    extract::{Path, State},
    http::Method,
    routing,
};

use crate::{
    AppState, Ruma,
    error::ApiError,
    extract::Authenticated,
    json::ensure_own,
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, profile);
    let router = route(router, displayname);
    let router = route(router, avatar_url);
    let router = route(router, set_displayname);
    let router = route(router, set_avatar_url);
    let router = route(router, field);
    let router = route(router, set_field);
    let router = route(router, delete_field);
    // The display name's and avatar's paths have routes of their own, which `DELETE` must
    // reach too (ruma's type for it names the field in the path).
    ["r0", "v3"].into_iter().fold(router, |router, version| {
        ["displayname", "avatar_url"].into_iter().fold(router, |router, field| {
            let path = format!("/_matrix/client/{version}/profile/{{user_id}}/{field}");
            router.add(
                Method::DELETE,
                &path,
                routing::delete(move |state, session, path| {
                    delete_named(state, session, path, field)
                }),
            )
        })
    })
}

/// `DELETE /_matrix/client/v3/profile/{userId}/displayname` (or `avatar_url`)
async fn delete_named(
    State(state): State<AppState>,
    Authenticated(session): Authenticated,
    Path(user_id): Path<String>,
    field: &'static str,
) -> std::result::Result<Json<serde_json::Value>, ApiError> {
    let user_id = ruma::OwnedUserId::try_from(user_id)
        .map_err(|_| Error::invalid_param("Invalid user id"))?;
    state.membership.delete_profile_field((&session).into(), &user_id, field).await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v3/profile/{userId}/{keyName}`
async fn field(
    state: AppState,
    request: Ruma<get_profile_field::v3::Request>,
) -> Result<get_profile_field::v3::Response> {
    let name = request.body.field.as_str().to_owned();
    let user = profile_of(&state, &request.body.user_id).await?;
    let value = user.field(&name).ok_or_else(|| Error::not_found("No such profile field"))?;
    Ok(get_profile_field::v3::Response::new(value))
}

/// `PUT /_matrix/client/v3/profile/{userId}/{keyName}`
async fn set_field(
    state: AppState,
    request: Ruma<set_profile_field::v3::Request>,
) -> Result<set_profile_field::v3::Response> {
    let body = &request.body;
    let (name, value) = (body.value.field_name(), body.value.value());
    let actor = request.session()?.into();
    state.membership.set_profile_field(actor, &body.user_id, name.as_str(), &value).await?;
    Ok(set_profile_field::v3::Response::new())
}

/// `DELETE /_matrix/client/v3/profile/{userId}/{keyName}`
async fn delete_field(
    state: AppState,
    request: Ruma<delete_profile_field::v3::Request>,
) -> Result<delete_profile_field::v3::Response> {
    let body = &request.body;
    let actor = request.session()?.into();
    state.membership.delete_profile_field(actor, &body.user_id, body.field.as_str()).await?;
    Ok(delete_profile_field::v3::Response::new())
}

async fn profile_of(state: &AppState, user_id: &UserId) -> Result<Profile> {
    state.accounts.profile(user_id).await
}

/// `GET /_matrix/client/v3/profile/{userId}`
async fn profile(
    state: AppState,
    request: Ruma<get_profile::v3::Request>,
) -> Result<get_profile::v3::Response> {
    let user = profile_of(&state, &request.body.user_id).await?;
    let mut response = get_profile::v3::Response::new();
    if let Some(name) = user.displayname {
        response.set("displayname".to_owned(), json!(name));
    }
    if let Some(url) = user.avatar_url {
        response.set("avatar_url".to_owned(), json!(url));
    }
    for (name, value) in user.fields {
        response.set(name, value);
    }
    Ok(response)
}

/// `GET /_matrix/client/v3/profile/{userId}/displayname`
async fn displayname(
    state: AppState,
    request: Ruma<get_display_name::v3::Request>,
) -> Result<get_display_name::v3::Response> {
    let user = profile_of(&state, &request.body.user_id).await?;
    let mut response = get_display_name::v3::Response::default();
    response.displayname = user.displayname;
    Ok(response)
}

/// `GET /_matrix/client/v3/profile/{userId}/avatar_url`
async fn avatar_url(
    state: AppState,
    request: Ruma<get_avatar_url::v3::Request>,
) -> Result<get_avatar_url::v3::Response> {
    let user = profile_of(&state, &request.body.user_id).await?;
    let mut response = get_avatar_url::v3::Response::default();
    response.avatar_url = user.avatar_url.map(Into::into);
    Ok(response)
}

/// `PUT /_matrix/client/v3/profile/{userId}/displayname`
async fn set_displayname(
    state: AppState,
    request: Ruma<set_display_name::v3::Request>,
) -> Result<set_display_name::v3::Response> {
    let session = request.session()?;
    ensure_own(session.user_id(), &request.body.user_id)?;
    state.membership.set_displayname(session.into(), request.body.displayname.as_deref()).await?;
    Ok(set_display_name::v3::Response::new())
}

/// `PUT /_matrix/client/v3/profile/{userId}/avatar_url`
async fn set_avatar_url(
    state: AppState,
    request: Ruma<set_avatar_url::v3::Request>,
) -> Result<set_avatar_url::v3::Response> {
    let session = request.session()?;
    ensure_own(session.user_id(), &request.body.user_id)?;
    let url = request.body.avatar_url.as_ref().map(|u| u.as_str());
    state.membership.set_avatar_url(session.into(), url).await?;
    Ok(set_avatar_url::v3::Response::new())
}
