//! Pages of this server's public room directory, in the shape the client and the
//! federation directory responses share.

use palisade_core::{Error, Result};
use palisade_service::rooms::PublicRoom;
use ruma::{
    UInt,
    api::client::directory::{get_public_rooms, get_public_rooms_filtered},
    directory::PublicRoomsChunk,
};

use crate::AppState;

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
        .directory
        .public_rooms()
        .await?
        .into_iter()
        .filter(|room| search.as_deref().is_none_or(|term| room.search_text.contains(term)))
        .collect();
    let total = rooms.len();
    let limit =
        limit.map_or(usize::MAX, |l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX)).max(1);
    let chunk =
        rooms.into_iter().skip(offset).take(limit).map(|room| room.chunk).collect::<Vec<_>>();
    let next = offset.saturating_add(chunk.len());
    Ok(Page {
        next_batch: (next < total).then(|| format!("o{next}")),
        prev_batch: (offset > 0).then(|| format!("o{}", offset.saturating_sub(limit))),
        chunk,
        total,
    })
}
