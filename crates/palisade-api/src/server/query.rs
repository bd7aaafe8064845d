//! Queries from other servers: version, profiles, directories and space trees.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#query-types>

use palisade_core::Result;
use ruma::api::federation::{
    directory::{get_public_rooms, get_public_rooms_filtered},
    discovery::get_server_version,
    openid::get_openid_userinfo,
    query::{get_profile_information, get_room_information},
    space::get_hierarchy,
};
use serde_json::Value;

use crate::{
    AppState, Ruma,
    public_rooms::{DirectoryResponse, page},
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, version);
    let router = route(router, directory);
    let router = route(router, openid_userinfo);
    let router = route(router, public_rooms);
    let router = route(router, public_rooms_filtered);
    let router = route(router, hierarchy);
    route(router, profile)
}

/// `GET /_matrix/federation/v1/hierarchy/{roomId}`
async fn hierarchy(
    state: AppState,
    request: Ruma<get_hierarchy::v1::Request>,
) -> Result<get_hierarchy::v1::Response> {
    let origin = request.origin()?;
    let body = &request.body;
    state.federation.hierarchy_for(origin, &body.room_id, body.suggested_only).await
}

/// `GET /_matrix/federation/v1/publicRooms`
async fn public_rooms(
    state: AppState,
    request: Ruma<get_public_rooms::v1::Request>,
) -> Result<get_public_rooms::v1::Response> {
    request.origin()?;
    let body = &request.body;
    let page = page(&state, body.since.as_deref(), body.limit, None).await?;
    Ok(get_public_rooms::v1::Response::new().with_page(page))
}

/// `POST /_matrix/federation/v1/publicRooms`
async fn public_rooms_filtered(
    state: AppState,
    request: Ruma<get_public_rooms_filtered::v1::Request>,
) -> Result<get_public_rooms_filtered::v1::Response> {
    request.origin()?;
    let body = &request.body;
    let search = body.filter.generic_search_term.as_deref();
    let page = page(&state, body.since.as_deref(), body.limit, search).await?;
    Ok(get_public_rooms_filtered::v1::Response::new().with_page(page))
}

/// `GET /_matrix/federation/v1/openid/userinfo`: who an OpenID token was issued to (asked by
/// third parties, so unsigned).
async fn openid_userinfo(
    state: AppState,
    request: Ruma<get_openid_userinfo::v1::Request>,
) -> Result<get_openid_userinfo::v1::Response> {
    let user = state.accounts.openid_user(&request.body.access_token)?;
    Ok(get_openid_userinfo::v1::Response::new(user))
}

/// `GET /_matrix/federation/v1/query/directory`
async fn directory(
    state: AppState,
    request: Ruma<get_room_information::v1::Request>,
) -> Result<get_room_information::v1::Response> {
    request.origin()?;
    let (room_id, servers) = state.federation.local_alias(&request.body.room_alias).await?;
    Ok(get_room_information::v1::Response::new(room_id, servers))
}

/// `GET /_matrix/federation/v1/version`
async fn version(
    _: AppState,
    _: Ruma<get_server_version::v1::Request>,
) -> Result<get_server_version::v1::Response> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("Palisade".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut response = get_server_version::v1::Response::new();
    response.server = Some(server);
    Ok(response)
}

/// `GET /_matrix/federation/v1/query/profile`
async fn profile(
    state: AppState,
    request: Ruma<get_profile_information::v1::Request>,
) -> Result<get_profile_information::v1::Response> {
    let profile = state.federation.local_profile(&request.body.user_id).await?;
    let wanted = request.body.field.as_ref().map(|f| f.as_str().to_owned());
    let named = [("displayname", profile.displayname), ("avatar_url", profile.avatar_url)];
    let named = named
        .into_iter()
        .filter_map(|(name, value)| Some((name.to_owned(), Value::String(value?))));
    Ok(named
        .chain(profile.fields)
        .filter(|(name, _)| wanted.as_deref().is_none_or(|w| w == name))
        .collect())
}
