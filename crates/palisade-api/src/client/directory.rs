//! Room aliases and the public room directory.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#room-aliases> and
//! <https://spec.matrix.org/v1.19/client-server-api/#listing-rooms>

use palisade_core::{Error, Result};
use palisade_service::rooms::PublicRoom;
use ruma::{
    UInt,
    api::client::{
        alias::{create_alias, delete_alias, get_alias},
        directory::{
            get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
        },
        room::{Visibility, aliases},
        user_directory::search_users,
    },
    directory::PublicRoomsChunk,
};

use crate::{
    AppState, Ruma,
    router::{Routes, route},
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
    route(router, search_users)
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
    state.rooms.create_alias(request.session()?.into(), &body.room_alias, &body.room_id).await?;
    Ok(create_alias::v3::Response::new())
}

/// `GET /_matrix/client/v3/directory/room/{roomAlias}`
async fn get(
    state: AppState,
    request: Ruma<get_alias::v3::Request>,
) -> Result<get_alias::v3::Response> {
    let (room_id, servers) = state.federation.alias(&request.body.room_alias).await?;
    Ok(get_alias::v3::Response::new(room_id, servers))
}

/// `DELETE /_matrix/client/v3/directory/room/{roomAlias}`
async fn delete(
    state: AppState,
    request: Ruma<delete_alias::v3::Request>,
) -> Result<delete_alias::v3::Response> {
    state.rooms.delete_alias(request.session()?.into(), &request.body.room_alias).await?;
    Ok(delete_alias::v3::Response::new())
}

/// `GET /_matrix/client/v3/rooms/{roomId}/aliases`
async fn room_aliases(
    state: AppState,
    request: Ruma<aliases::v3::Request>,
) -> Result<aliases::v3::Response> {
    let aliases = state.rooms.aliases(request.session()?.into(), &request.body.room_id).await?;
    Ok(aliases::v3::Response::new(aliases))
}

/// `GET /_matrix/client/v3/directory/list/room/{roomId}`
async fn visibility(
    state: AppState,
    request: Ruma<get_room_visibility::v3::Request>,
) -> Result<get_room_visibility::v3::Response> {
    let public = state.rooms.is_public(&request.body.room_id).await?;
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
    state.rooms.set_public(request.session()?.into(), &body.room_id, public).await?;
    Ok(set_room_visibility::v3::Response::new())
}

/// One page of the directory: offset tokens, optional search term.
pub(crate) struct Page {
    pub(crate) chunk: Vec<PublicRoomsChunk>,
    pub(crate) next_batch: Option<String>,
    pub(crate) prev_batch: Option<String>,
    pub(crate) total: usize,
}

/// The directory responses, client and federation alike, carry a page in the same fields.
pub(crate) trait DirectoryResponse {
    /// The response with the page's rooms and tokens.
    fn with_page(self, page: Page) -> Self;
}

macro_rules! directory_response {
    ($($response:ty),*) => {$(
        impl DirectoryResponse for $response {
            fn with_page(mut self, page: Page) -> Self {
                self.chunk = page.chunk;
                self.next_batch = page.next_batch;
                self.prev_batch = page.prev_batch;
                self.total_room_count_estimate = UInt::new(page.total as u64);
                self
            }
        }
    )*};
}

directory_response!(
    get_public_rooms::v3::Response,
    get_public_rooms_filtered::v3::Response,
    ruma::api::federation::directory::get_public_rooms::v1::Response,
    ruma::api::federation::directory::get_public_rooms_filtered::v1::Response
);

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
    let remote = state.federation.public_rooms(server, since, limit, search).await?;
    let total = remote.total_room_count_estimate.map_or(remote.chunk.len() as u64, u64::from);
    Ok(Page {
        chunk: remote.chunk,
        next_batch: remote.next_batch,
        prev_batch: remote.prev_batch,
        total: usize::try_from(total).unwrap_or(usize::MAX),
    })
}

/// A page of this server's public rooms.
pub(crate) async fn page(
    state: &AppState,
    since: Option<&str>,
    limit: Option<UInt>,
    search: Option<&str>,
) -> Result<Page> {
    let offset = match since {
        Some(token) => token
            .strip_prefix('o')
            .and_then(|n| n.parse::<usize>().ok())
            .ok_or_else(|| Error::invalid_param("Invalid pagination token"))?,
        None => 0,
    };
    let search = search.map(str::to_lowercase);
    let rooms: Vec<PublicRoom> = state
        .rooms
        .public_rooms()
        .await?
        .into_iter()
        .filter(|room| search.as_deref().is_none_or(|term| room.search_text.contains(term)))
        .collect();
    let total = rooms.len();
    let limit =
        limit.map_or(usize::MAX, |l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX)).max(1);
    let chunk = rooms
        .into_iter()
        .skip(offset)
        .take(limit)
        .map(|room| serde_json::from_value(room.chunk).map_err(|e| Error::internal(e.to_string())))
        .collect::<Result<Vec<_>>>()?;
    let next = offset.saturating_add(chunk.len());
    Ok(Page {
        next_batch: (next < total).then(|| format!("o{next}")),
        prev_batch: (offset > 0).then(|| format!("o{}", offset.saturating_sub(limit))),
        chunk,
        total,
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
