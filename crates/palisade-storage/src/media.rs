//! What the content repository knows of each piece of media; the bytes are in a blob store.

use async_trait::async_trait;
use palisade_core::Result;
use ruma::{OwnedServerName, OwnedUserId, ServerName, UserId};

/// A media id of a server, with what is known of its content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaRow {
    /// The server whose `mxc://` URI names it (this server for uploads).
    pub origin: OwnedServerName,
    /// The media id.
    pub media_id: String,
    /// Who uploaded it (or reserved the id), for media of this server.
    pub uploader: Option<OwnedUserId>,
    /// The content type the uploader gave.
    pub content_type: Option<String>,
    /// The file name the uploader gave.
    pub upload_name: Option<String>,
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the content (lower-case hex), which names it in the blob store; `None` for
    /// an id reserved for an upload that has not come yet.
    pub sha256: Option<String>,
    /// Creation time, milliseconds since the epoch.
    pub created_ts: u64,
    /// Until when a reserved id waits for its upload.
    pub expires_ts: Option<u64>,
    /// Quarantined by an administrator: kept, no longer served.
    pub quarantined: bool,
}

/// A thumbnail made of a piece of media.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThumbnailRow {
    /// The media's server.
    pub origin: OwnedServerName,
    /// The media id.
    pub media_id: String,
    /// Width asked for (one of the sizes thumbnails are made in).
    pub width: u32,
    /// Height asked for.
    pub height: u32,
    /// `crop` or `scale`.
    pub method: String,
    /// The thumbnail's type (`image/png` or `image/jpeg`).
    pub content_type: String,
    /// SHA-256 of the thumbnail, its name in the blob store.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
}

/// The content repository's records.
#[async_trait]
pub trait MediaStore: Send + Sync {
    /// Records a new media id; `false` without change if the id exists.
    async fn insert_media(&self, row: MediaRow) -> Result<bool>;
    /// Gives a reserved id its content; `false` without change unless the id was reserved,
    /// still empty, and reserved by `uploader`.
    #[expect(clippy::too_many_arguments, reason = "the fields an upload fills in")]
    async fn fill_media(
        &self,
        origin: &ServerName,
        media_id: &str,
        uploader: &UserId,
        content_type: Option<&str>,
        upload_name: Option<&str>,
        size: u64,
        sha256: &str,
    ) -> Result<bool>;
    /// One media id.
    async fn media(&self, origin: &ServerName, media_id: &str) -> Result<Option<MediaRow>>;
    /// Bytes of the media a user uploaded.
    async fn uploaded_bytes(&self, uploader: &UserId) -> Result<u64>;
    /// Ids a user reserved that are still waiting for their upload at `now`.
    async fn pending_reservations(&self, uploader: &UserId, now: u64) -> Result<u64>;
    /// A thumbnail made before.
    async fn thumbnail(
        &self,
        origin: &ServerName,
        media_id: &str,
        width: u32,
        height: u32,
        method: &str,
    ) -> Result<Option<ThumbnailRow>>;
    /// Records a thumbnail (a concurrent request may have recorded the same one first).
    async fn insert_thumbnail(&self, row: ThumbnailRow) -> Result<()>;
    /// Whether any record (media or thumbnail) names content of this hash.
    async fn content_referenced(&self, sha256: &str) -> Result<bool>;
    /// The media a user uploaded, newest first.
    async fn media_of_uploader(&self, uploader: &UserId) -> Result<Vec<MediaRow>>;
    /// Quarantines (or releases) a media id; `false` if it is unknown.
    async fn set_quarantined(
        &self,
        origin: &ServerName,
        media_id: &str,
        quarantined: bool,
    ) -> Result<bool>;
    /// Deletes a media id's record and its thumbnails' in one transaction. Returns `None` if
    /// the id is unknown, else the content hashes no record refers to any more (their blobs
    /// can go).
    async fn delete_media(
        &self,
        origin: &ServerName,
        media_id: &str,
    ) -> Result<Option<Vec<String>>>;
}
