//! Room aliases, the public room directory and space trees.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#room-aliases>,
//! <https://spec.matrix.org/v1.19/client-server-api/#listing-rooms> and
//! <https://spec.matrix.org/v1.19/client-server-api/#spaces>

use palisade_core::Result;
use palisade_service::{rooms::HierarchyQuery, trust::Actor};
use ruma::{
    UInt,
    api::client::{
        alias::{create_alias, delete_alias, get_alias},
        directory::{
            get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
        },
        room::{Visibility, aliases},
        space::get_hierarchy,
        user_directory::search_users,
    },
};

use crate::{
    AppState, Ruma,
    public_rooms::{DirectoryResponse, Page, page},
    routes::{Routes, route},
};

pub(super) fn routes(router: Routes) -> Routes {
    let router = route(router, create);
    let router = route(router, get);
    let router = route(router, delete);
    let router = route(router, room_aliases);
    let router = route(router, visibility);
    let router = route(router, set_visibility);
    let router = route(router, public_rooms);
    let router = route(router, public_rooms_filtered);
    let router = route(router, room_summary);
    let router = route(router, hierarchy);
    route(router, search_users)
}

/// `GET /_matrix/client/v1/rooms/{roomId}/hierarchy`
async fn hierarchy(
    state: AppState,
    request: Ruma<get_hierarchy::v1::Request>,
) -> Result<get_hierarchy::v1::Response> {
    let body = &request.body;
    let count = |n: Option<UInt>| n.map(|n| usize::try_from(u64::from(n)).unwrap_or(usize::MAX));
    let query = HierarchyQuery {
        from: body.from.clone(),
        limit: count(body.limit),
        max_depth: count(body.max_depth),
        suggested_only: body.suggested_only,
    };
    let page = state.directory.hierarchy(request.session()?.into(), &body.room_id, query).await?;
    let mut response = get_hierarchy::v1::Response::new();
    response.rooms = page.rooms;
    response.next_batch = page.next_batch;
    Ok(response)
}

/// `GET /_matrix/client/v1/room_summary/{roomIdOrAlias}`: a room's preview, for signed-in
/// users and anonymous visitors alike.
async fn room_summary(
    state: AppState,
    request: Ruma<ruma::api::client::room::get_summary::v1::Request>,
) -> Result<ruma::api::client::room::get_summary::v1::Response> {
    let viewer = request.session.as_ref().map(|session| session.user_id());
    state.directory.room_summary(viewer, &request.body.room_id_or_alias).await
}

/// `POST /_matrix/client/v3/user_directory/search`: local users by id or display name.
async fn search_users(
    state: AppState,
    request: Ruma<search_users::v3::Request>,
) -> Result<search_users::v3::Response> {
    request.session()?;
    let body = &request.body;
    let limit = usize::try_from(u64::from(body.limit)).unwrap_or(usize::MAX);
    let (found, limited) = state.accounts.search(&body.search_term, limit).await?;
    let results = found
        .into_iter()
        .map(|user| {
            let mut result = search_users::v3::User::new(user.user_id);
            result.display_name = user.displayname;
            result.avatar_url = user.avatar_url.map(Into::into);
            result
        })
        .collect();
    Ok(search_users::v3::Response::new(results, limited))
}

/// `PUT /_matrix/client/v3/directory/room/{roomAlias}`
async fn create(
    state: AppState,
    request: Ruma<create_alias::v3::Request>,
) -> Result<create_alias::v3::Response> {
    let body = &request.body;
    state
        .directory
        .create_alias(request.session()?.into(), &body.room_alias, &body.room_id)
        .await?;
    Ok(create_alias::v3::Response::new())
}

/// `GET /_matrix/client/v3/directory/room/{roomAlias}`
async fn get(
    state: AppState,
    request: Ruma<get_alias::v3::Request>,
) -> Result<get_alias::v3::Response> {
    let (room_id, servers) = state
        .directory
        .resolve_alias(&request.body.room_alias, request.session.as_ref().map(Actor::from))
        .await?;
    Ok(get_alias::v3::Response::new(room_id, servers))
}

/// `DELETE /_matrix/client/v3/directory/room/{roomAlias}`
async fn delete(
    state: AppState,
    request: Ruma<delete_alias::v3::Request>,
) -> Result<delete_alias::v3::Response> {
    state.directory.delete_alias(request.session()?.into(), &request.body.room_alias).await?;
    Ok(delete_alias::v3::Response::new())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/aliases`
async fn room_aliases(
    state: AppState,
    request: Ruma<aliases::v3::Request>,
) -> Result<aliases::v3::Response> {
    let aliases = state.directory.aliases(request.session()?.into(), &request.body.room_id).await?;
    Ok(aliases::v3::Response::new(aliases))
}

/// `GET /_matrix/client/v3/directory/list/room/{roomId}`
async fn visibility(
    state: AppState,
    request: Ruma<get_room_visibility::v3::Request>,
) -> Result<get_room_visibility::v3::Response> {
    let public = state.directory.is_public(&request.body.room_id).await?;
    Ok(get_room_visibility::v3::Response::new(if public {
        Visibility::Public
    } else {
        Visibility::Private
    }))
}

/// `PUT /_matrix/client/v3/directory/list/room/{roomId}`
async fn set_visibility(
    state: AppState,
    request: Ruma<set_room_visibility::v3::Request>,
) -> Result<set_room_visibility::v3::Response> {
    let body = &request.body;
    let public = body.visibility == Visibility::Public;
    state.directory.set_public(request.session()?.into(), &body.room_id, public).await?;
    Ok(set_room_visibility::v3::Response::new())
}

/// A page of this server's public rooms, or of another server's when `server` names one
/// (for signed-in users only: anonymous callers do not get this server to query others).
async fn page_of<T>(
    state: &AppState,
    request: &Ruma<T>,
    server: Option<&ruma::ServerName>,
    since: Option<&str>,
    limit: Option<UInt>,
    search: Option<&str>,
) -> Result<Page> {
    let Some(server) = server.filter(|s| *s != state.config.server_name) else {
        return page(state, since, limit, search).await;
    };
    request.session()?;
    let remote = state.directory.remote_public_rooms(server, since, limit, search).await?;
    let total = remote.total_room_count_estimate.map_or(remote.chunk.len() as u64, u64::from);
    Ok(Page {
        chunk: remote.chunk,
        next_batch: remote.next_batch,
        prev_batch: remote.prev_batch,
        total: usize::try_from(total).unwrap_or(usize::MAX),
    })
}

/// `GET /_matrix/client/v3/publicRooms`
async fn public_rooms(
    state: AppState,
    request: Ruma<get_public_rooms::v3::Request>,
) -> Result<get_public_rooms::v3::Response> {
    let body = &request.body;
    let server = body.server.as_deref();
    let page = page_of(&state, &request, server, body.since.as_deref(), body.limit, None).await?;
    Ok(get_public_rooms::v3::Response::new(Vec::new()).with_page(page))
}

/// `POST /_matrix/client/v3/publicRooms`
async fn public_rooms_filtered(
    state: AppState,
    request: Ruma<get_public_rooms_filtered::v3::Request>,
) -> Result<get_public_rooms_filtered::v3::Response> {
    let body = &request.body;
    let search = body.filter.generic_search_term.as_deref();
    let server = body.server.as_deref();
    let page = page_of(&state, &request, server, body.since.as_deref(), body.limit, search).await?;
    Ok(get_public_rooms_filtered::v3::Response::new().with_page(page))
}
