//! The content repository: files, images and voice messages people share, and avatars.
//!
//! Media is named `mxc://<server>/<media id>`. The records (who uploaded what, its type and
//! name) are in the database (`MediaStore`); the bytes are in a blob store (`BlobStore`),
//! named by their SHA-256, so identical uploads are stored once. Uploads and downloads
//! stream: memory does not grow with the file. What a browser may do with served content
//! (inline or attachment) is decided here; the HTTP layer adds the headers.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#content-repository>

mod files;
mod preview;
mod serve;
mod thumbnail;

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use palisade_core::{Clock, Config, Error, ErrorKind, Result};
use palisade_service::{
    DeviceTrustService,
    outbound::OutboundSlot,
    trust::{Actor, Administrator, Need},
};
use palisade_storage::{MediaRow, MediaStore, ThumbnailRow};
use rand::{Rng, distributions::Alphanumeric};
use ruma::{OwnedMxcUri, OwnedUserId, ServerName, UserId};
use tokio::sync::{RwLock, Semaphore};

pub use files::{BlobStore, ByteStream, FileStore, Stored};
pub use thumbnail::Method;

/// How long a media id reserved for an asynchronous upload waits for it (Synapse: a day).
const RESERVATION_MS: u64 = 24 * 60 * 60 * 1000;
/// Most reserved ids a user may hold waiting at once (Synapse's default).
const MAX_PENDING_RESERVATIONS: u64 = 5;

/// An upload as the client sends it.
pub struct Upload {
    /// The `Content-Type` the client gave.
    pub content_type: Option<String>,
    /// The `filename` the client gave.
    pub file_name: Option<String>,
    /// The `Content-Length`, when the client announced one.
    pub length: Option<u64>,
    /// The bytes.
    pub body: ByteStream,
}

/// A media id reserved for an upload to come (`/media/v1/create`).
#[derive(Debug, Clone)]
pub struct Reservation {
    /// The id, as an `mxc://` URI.
    pub content_uri: OwnedMxcUri,
    /// When the reservation lapses unless the upload came, milliseconds since the epoch.
    pub unused_expires_at: u64,
}

/// Media on its way to a client, with how it must be served.
pub struct Download {
    /// The `Content-Type` to send.
    pub content_type: String,
    /// The `Content-Disposition` to send.
    pub disposition: String,
    /// The size of the whole content.
    pub size: u64,
    /// The byte range sent (inclusive), when the request asked for one.
    pub range: Option<(u64, u64)>,
    /// The bytes sent.
    pub body: ByteStream,
}

/// Who asks for media.
#[derive(Debug, Clone, Copy)]
pub enum Reader<'a> {
    /// A signed-in user (the authenticated `/_matrix/client/v1/media` endpoints): any media,
    /// other servers' fetched and kept here.
    User(Actor<'a>),
    /// Another server (`/_matrix/federation/v1/media`): this server's own media only.
    Server,
    /// Anyone (the legacy `/_matrix/media/v3` endpoints): only where the configuration still
    /// allows unauthenticated media.
    Anyone,
}

/// Uploads and downloads.
pub struct MediaService {
    config: Arc<Config>,
    store: Arc<dyn MediaStore>,
    files: Arc<dyn BlobStore>,
    trust: Arc<DeviceTrustService>,
    clock: Arc<dyn Clock>,
    /// Other servers, for their media.
    outbound: OutboundSlot,
    /// One thumbnail decoded per core at a time: each may take up to 256 MiB.
    thumbnailing: Arc<Semaphore>,
    /// Other servers' files being fetched (each held in memory until stored).
    fetching: Semaphore,
    /// Link previews, when the configuration turns them on.
    previews: Option<preview::Previewer>,
    /// Recording content (read) against deleting it (write): identical files are stored once,
    /// so a deletion must not remove a file a new record has just come to name.
    blobs: RwLock<()>,
}

/// Longest a download waits for a reserved id's upload.
const MAX_UPLOAD_WAIT: Duration = Duration::from_secs(120);
/// How often a waiting download looks for the upload.
const UPLOAD_POLL: Duration = Duration::from_millis(250);

/// Other servers' files fetched at once.
const MAX_REMOTE_FETCHES: usize = 4;

/// Longest a thumbnail may take to make.
const THUMBNAIL_TIME: Duration = Duration::from_secs(30);

fn new_media_id() -> String {
    rand::thread_rng().sample_iter(Alphanumeric).take(24).map(char::from).collect()
}

fn over_quota() -> Error {
    Error::new(ErrorKind::ResourceLimitExceeded, "This upload would exceed your storage quota")
}

fn not_found() -> Error {
    Error::not_found("Media not found")
}

impl MediaService {
    /// The service over the media records and a blob store.
    pub fn new(
        config: Arc<Config>,
        store: Arc<dyn MediaStore>,
        files: Arc<dyn BlobStore>,
        trust: Arc<DeviceTrustService>,
        clock: Arc<dyn Clock>,
        outbound: OutboundSlot,
    ) -> Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let thumbnailing = Arc::new(Semaphore::new(cores));
        let previews = config
            .media
            .url_previews
            .then(|| preview::Previewer::new(config.media.url_preview_allowed_ips.clone()))
            .transpose()?;
        let (blobs, fetching) = (RwLock::new(()), Semaphore::new(MAX_REMOTE_FETCHES));
        Ok(Self {
            config,
            store,
            files,
            trust,
            clock,
            outbound,
            thumbnailing,
            fetching,
            previews,
            blobs,
        })
    }

    /// The Open Graph tags of the page at `url`, for a link preview.
    pub async fn preview_url(
        &self,
        actor: Actor<'_>,
        url: Option<&str>,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        self.trust.require(actor, Need::RoomAccess, "preview_url").await?;
        let Some(previews) = &self.previews else {
            return Err(Error::new(ErrorKind::Unrecognized, "URL previews are disabled"));
        };
        let url = url.ok_or_else(|| Error::new(ErrorKind::MissingParam, "Missing url"))?;
        previews.preview(url, self.clock.now_millis()).await
    }

    /// The largest upload accepted, in bytes.
    pub fn max_upload_bytes(&self) -> u64 {
        self.config.media.max_upload_bytes
    }

    fn uri(&self, media_id: &str) -> OwnedMxcUri {
        OwnedMxcUri::from(format!("mxc://{}/{media_id}", self.config.server_name))
    }

    /// Stores an upload under a new media id.
    pub async fn upload(&self, actor: Actor<'_>, upload: Upload) -> Result<OwnedMxcUri> {
        self.trust.require(actor, Need::RoomAccess, "media_upload").await?;
        actor.may_write()?;
        let (content_type, file_name) = (upload.content_type.clone(), upload.file_name.clone());
        let stored = self.receive(actor, upload).await?;
        let row = MediaRow {
            origin: self.config.server_name.clone(),
            media_id: String::new(),
            uploader: Some(actor.user().to_owned()),
            content_type,
            upload_name: file_name,
            size: stored.size,
            sha256: Some(stored.sha256.clone()),
            created_ts: self.clock.now_millis(),
            expires_ts: None,
            quarantined: false,
        };
        let media_id = self.recorded(&stored.sha256, self.insert_with_new_id(row)).await?;
        tracing::info!(user = %actor.user(), %media_id, size = stored.size, "media uploaded");
        Ok(self.uri(&media_id))
    }

    /// Runs `record`, which records stored content, unless the content was deleted since it
    /// was stored (a deletion of identical content raced the upload: the client may retry).
    async fn recorded<T>(
        &self,
        sha256: &str,
        record: impl std::future::Future<Output = Result<T>>,
    ) -> Result<T> {
        let recording = self.blobs.read().await;
        if !self.files.exists(sha256).await? {
            return Err(Error::new(
                ErrorKind::RemoteUnavailable,
                "Identical media was being deleted: upload it again",
            ));
        }
        let recorded = record.await;
        drop(recording);
        if recorded.is_err() {
            self.discard(sha256).await?;
        }
        recorded
    }

    /// Removes stored content no record names (what an upload stored before it failed).
    async fn discard(&self, sha256: &str) -> Result<()> {
        let _deleting = self.blobs.write().await;
        if !self.store.content_referenced(sha256).await? {
            self.files.delete(sha256).await?;
        }
        Ok(())
    }

    /// Records media under a new random id; returns the id.
    async fn insert_with_new_id(&self, mut row: MediaRow) -> Result<String> {
        loop {
            row.media_id = new_media_id();
            if self.store.insert_media(row.clone()).await? {
                return Ok(row.media_id);
            }
        }
    }

    /// Reserves a media id for an upload to come (asynchronous upload, spec v1.7).
    pub async fn create(&self, actor: Actor<'_>) -> Result<Reservation> {
        self.trust.require(actor, Need::RoomAccess, "media_create").await?;
        let now = self.clock.now_millis();
        if self.store.pending_reservations(actor.user(), now).await? >= MAX_PENDING_RESERVATIONS {
            return Err(Error::new(
                ErrorKind::LimitExceeded { retry_after_ms: RESERVATION_MS },
                "Too many media ids are waiting for their upload",
            ));
        }
        let unused_expires_at = now + RESERVATION_MS;
        let row = MediaRow {
            origin: self.config.server_name.clone(),
            media_id: String::new(),
            uploader: Some(actor.user().to_owned()),
            content_type: None,
            upload_name: None,
            size: 0,
            sha256: None,
            created_ts: now,
            expires_ts: Some(unused_expires_at),
            quarantined: false,
        };
        let media_id = self.insert_with_new_id(row).await?;
        Ok(Reservation { content_uri: self.uri(&media_id), unused_expires_at })
    }

    /// Uploads the content of a reserved media id.
    pub async fn upload_to(
        &self,
        actor: Actor<'_>,
        server: &ServerName,
        media_id: &str,
        upload: Upload,
    ) -> Result<()> {
        self.trust.require(actor, Need::RoomAccess, "media_upload").await?;
        let row = match self.store.media(server, media_id).await? {
            Some(row) if server == self.config.server_name => row,
            _ => return Err(not_found()),
        };
        if row.uploader.as_deref() != Some(actor.user()) {
            return Err(Error::forbidden("This media id was reserved by another user"));
        }
        if row.sha256.is_some() {
            return Err(Error::new(ErrorKind::CannotOverwriteMedia, "Media already uploaded"));
        }
        if row.expires_ts.is_some_and(|expires| expires <= self.clock.now_millis()) {
            return Err(not_found());
        }
        let (content_type, file_name) = (upload.content_type.clone(), upload.file_name.clone());
        let stored = self.receive(actor, upload).await?;
        let fill = self.store.fill_media(
            server,
            media_id,
            actor.user(),
            content_type.as_deref(),
            file_name.as_deref(),
            stored.size,
            &stored.sha256,
        );
        let filled = self.recorded(&stored.sha256, fill).await?;
        if !filled {
            // Another upload to the same id won the race.
            self.discard(&stored.sha256).await?;
            return Err(Error::new(ErrorKind::CannotOverwriteMedia, "Media already uploaded"));
        }
        Ok(())
    }

    /// Checks an upload against the limits and writes its bytes.
    async fn receive(&self, actor: Actor<'_>, upload: Upload) -> Result<Stored> {
        let max = self.max_upload_bytes();
        if upload.length.is_some_and(|length| length > max) {
            return Err(Error::new(
                ErrorKind::TooLarge,
                format!("Upload is larger than the limit of {max} bytes"),
            ));
        }
        let room = self.quota_room(actor).await?;
        if upload.length.unwrap_or(0) > room {
            return Err(over_quota());
        }
        // The stream stops at whichever comes first, the size limit or the quota.
        match self.files.put(upload.body, max.min(room)).await {
            Err(e) if e.kind == ErrorKind::TooLarge && room < max => Err(over_quota()),
            stored => stored,
        }
    }

    /// How many more bytes the user may upload (`u64::MAX` without a quota).
    async fn quota_room(&self, actor: Actor<'_>) -> Result<u64> {
        let Some(quota) = self.config.media.per_user_quota_bytes else { return Ok(u64::MAX) };
        let used = self.store.uploaded_bytes(actor.user()).await?;
        Ok(quota.saturating_sub(used))
    }

    /// The record of media `reader` may be served: this server's own, or another server's
    /// (fetched from it once, then kept) for a signed-in user.
    async fn readable(
        &self,
        reader: Reader<'_>,
        server: &ServerName,
        media_id: &str,
        wait: Duration,
    ) -> Result<MediaRow> {
        match reader {
            Reader::User(actor) => {
                self.trust.require(actor, Need::RoomAccess, "media_read").await?;
            }
            Reader::Anyone if !self.config.media.allow_legacy_unauthenticated => {
                return Err(not_found());
            }
            Reader::Anyone | Reader::Server => {}
        }
        let own = server == self.config.server_name;
        match self.store.media(server, media_id).await? {
            Some(row) => Ok(row),
            None if !own && matches!(reader, Reader::User(_)) => {
                self.fetch_remote(server, media_id).await
            }
            None => Err(not_found()),
        }
        .and_then(|row| match reader {
            Reader::Server if !own => Err(not_found()),
            // Quarantined media is kept as evidence and served to no one.
            _ if row.quarantined => Err(not_found()),
            _ => Ok(row),
        })
        .map(|row| self.uploaded(row, wait))?
        .await
    }

    /// A reserved id's record once its upload came, waiting up to `wait` for it (a client
    /// that sent the event before the file, as Element X's send queue does, is answered as
    /// soon as the file arrives).
    async fn uploaded(&self, mut row: MediaRow, wait: Duration) -> Result<MediaRow> {
        let deadline = tokio::time::Instant::now() + wait.min(MAX_UPLOAD_WAIT);
        while row.sha256.is_none() {
            if row.expires_ts.is_some_and(|expires| expires <= self.clock.now_millis()) {
                return Err(not_found());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(Error::new(ErrorKind::NotYetUploaded, "Media not yet uploaded"));
            }
            tokio::time::sleep(UPLOAD_POLL).await;
            row = self.store.media(&row.origin, &row.media_id).await?.ok_or_else(not_found)?;
        }
        Ok(row)
    }

    /// Fetches another server's media and keeps it.
    async fn fetch_remote(&self, server: &ServerName, media_id: &str) -> Result<MediaRow> {
        let max = self.max_upload_bytes();
        // A fetched file is held in memory until stored: only a few at a time.
        let _turn = self.fetching.acquire().await.map_err(|e| Error::internal(e.to_string()))?;
        let remote = self.outbound.get()?.fetch_media(server, media_id, max).await?;
        let body = futures_util::stream::once(async move { Ok(Bytes::from(remote.bytes)) });
        let stored = self.files.put(body.boxed(), max).await?;
        let row = MediaRow {
            origin: server.to_owned(),
            media_id: media_id.to_owned(),
            uploader: None,
            content_type: remote.content_type,
            upload_name: remote.file_name,
            size: stored.size,
            sha256: Some(stored.sha256.clone()),
            created_ts: self.clock.now_millis(),
            expires_ts: None,
            quarantined: false,
        };
        // A concurrent request may have kept the same media first: either record will do.
        self.recorded(&stored.sha256, self.store.insert_media(row.clone())).await?;
        tracing::info!(%server, %media_id, size = row.size, "remote media fetched");
        Ok(row)
    }

    /// Media for `reader`. `file_name` overrides the uploaded name; `range` is the `Range`
    /// header; `wait` is how long to wait for a reserved id's upload.
    pub async fn download(
        &self,
        reader: Reader<'_>,
        server: &ServerName,
        media_id: &str,
        file_name: Option<&str>,
        range: Option<&str>,
        wait: Duration,
    ) -> Result<Download> {
        let row = self.readable(reader, server, media_id, wait).await?;
        self.serve(row, file_name, range).await
    }

    /// A thumbnail for `reader`, made on the first request in the configured size nearest
    /// to `width` × `height`.
    pub async fn thumbnail(
        &self,
        reader: Reader<'_>,
        server: &ServerName,
        media_id: &str,
        (width, height): (u32, u32),
        method: Method,
        wait: Duration,
    ) -> Result<Download> {
        if width == 0 || height == 0 {
            return Err(Error::invalid_param("Width and height must be positive"));
        }
        let row = self.readable(reader, server, media_id, wait).await?;
        self.serve_thumbnail(row, (width, height), method).await
    }

    async fn serve_thumbnail(
        &self,
        row: MediaRow,
        (width, height): (u32, u32),
        method: Method,
    ) -> Result<Download> {
        let (width, height, method) = thumbnail::select(width, height, method);
        let Some(sha256) = &row.sha256 else {
            return Err(Error::new(ErrorKind::NotYetUploaded, "Media not yet uploaded"));
        };
        let (server, media_id) = (&row.origin, &row.media_id);
        let made = self.store.thumbnail(server, media_id, width, height, method.as_str()).await?;
        let thumbnail = match made {
            Some(thumbnail) => thumbnail,
            None => self.make_thumbnail(&row, sha256, (width, height), method).await?,
        };
        let body =
            self.files.read(&thumbnail.sha256, 0, thumbnail.size).await?.ok_or_else(|| {
                Error::internal(format!("thumbnail of {media_id}: content is missing"))
            })?;
        Ok(Download {
            content_type: thumbnail.content_type,
            disposition: "inline".to_owned(),
            size: thumbnail.size,
            range: None,
            body,
        })
    }

    /// Makes, stores and records a thumbnail of a piece of media.
    async fn make_thumbnail(
        &self,
        row: &MediaRow,
        sha256: &str,
        (width, height): (u32, u32),
        method: Method,
    ) -> Result<ThumbnailRow> {
        if !thumbnail::thumbnailable(row.content_type.as_deref())
            || row.size > thumbnail::MAX_SOURCE_BYTES
        {
            return Err(Error::not_found("No thumbnail can be made of this media"));
        }
        // The turn goes with the decode: one abandoned at its time limit still holds it.
        let turn = self
            .thumbnailing
            .clone()
            .acquire_owned()
            .await
            .map_err(|e| Error::internal(e.to_string()))?;
        let body = self.files.read(sha256, 0, row.size).await?.ok_or_else(|| {
            Error::internal(format!("media {}: content is missing", row.media_id))
        })?;
        let source: Vec<u8> = body
            .try_fold(Vec::new(), |mut all, chunk| async move {
                all.extend_from_slice(&chunk);
                Ok(all)
            })
            .await
            .map_err(|e| Error::internal(format!("reading media {}: {e}", row.media_id)))?;
        let making = tokio::task::spawn_blocking(move || {
            let made = thumbnail::make(&source, width, height, method);
            drop(turn);
            made
        });
        let (bytes, content_type) = tokio::time::timeout(THUMBNAIL_TIME, making)
            .await
            .map_err(|_| Error::bad_json("Making the thumbnail took too long"))?
            .map_err(|e| Error::internal(format!("thumbnailing: {e}")))??;
        let body = futures_util::stream::once(async { Ok(Bytes::from(bytes)) }).boxed();
        let stored = self.files.put(body, u64::MAX).await?;
        let thumbnail = ThumbnailRow {
            origin: row.origin.clone(),
            media_id: row.media_id.clone(),
            width,
            height,
            method: method.as_str().to_owned(),
            content_type: content_type.to_owned(),
            sha256: stored.sha256,
            size: stored.size,
        };
        // The media may have been deleted while its thumbnail was made: nothing is recorded
        // for it then (and the thumbnail's content goes).
        let record = async {
            match self.store.media(&row.origin, &row.media_id).await? {
                Some(_) => self.store.insert_thumbnail(thumbnail.clone()).await,
                None => Err(not_found()),
            }
        };
        self.recorded(&thumbnail.sha256, record).await?;
        Ok(thumbnail)
    }

    async fn serve(
        &self,
        row: MediaRow,
        file_name: Option<&str>,
        range: Option<&str>,
    ) -> Result<Download> {
        let media_id = &row.media_id;
        let Some(sha256) = &row.sha256 else {
            return Err(Error::new(ErrorKind::NotYetUploaded, "Media not yet uploaded"));
        };
        let range = serve::requested_range(range, row.size)?;
        let (start, len) = match range {
            Some((first, last)) => (first, last - first + 1),
            None => (0, row.size),
        };
        let body = self.files.read(sha256, start, len).await?.ok_or_else(|| {
            Error::internal(format!("media {media_id}: content {sha256} is missing"))
        })?;
        let (content_type, inline) = serve::served_type(row.content_type.as_deref());
        let disposition = serve::disposition(inline, file_name.or(row.upload_name.as_deref()));
        Ok(Download { content_type, disposition, size: row.size, range, body })
    }

    /// The media a user uploaded, newest first (for administrators).
    pub async fn media_of(&self, _: &Administrator, user: &UserId) -> Result<Vec<MediaRow>> {
        self.store.media_of_uploader(user).await
    }

    /// Quarantines media (or releases it): kept as evidence, served to no one.
    pub async fn quarantine(
        &self,
        admin: &Administrator,
        server: &ServerName,
        media_id: &str,
        quarantined: bool,
    ) -> Result<()> {
        let row = self.store.media(server, media_id).await?.ok_or_else(not_found)?;
        self.store.set_quarantined(server, media_id, quarantined).await?;
        let kind = if quarantined { "media_quarantined" } else { "media_released" };
        self.audit(admin, kind, &row).await
    }

    /// Deletes media: its record, its thumbnails, and the files no other record names.
    pub async fn delete(
        &self,
        admin: &Administrator,
        server: &ServerName,
        media_id: &str,
    ) -> Result<()> {
        let row = self.store.media(server, media_id).await?.ok_or_else(not_found)?;
        {
            let _deleting = self.blobs.write().await;
            let unreferenced =
                self.store.delete_media(server, media_id).await?.ok_or_else(not_found)?;
            for sha256 in unreferenced {
                self.files.delete(&sha256).await?;
            }
        }
        self.audit(admin, "media_deleted", &row).await
    }

    /// Deletes every piece of media a user uploaded; returns how many.
    pub async fn delete_all_of(&self, admin: &Administrator, user: &UserId) -> Result<usize> {
        let media = self.store.media_of_uploader(user).await?;
        for row in &media {
            self.delete(admin, &row.origin, &row.media_id).await?;
        }
        Ok(media.len())
    }

    /// Records an administrator's action on media in the security audit log, under the
    /// account that uploaded it (the server's own account for media of other servers).
    async fn audit(&self, admin: &Administrator, kind: &str, row: &MediaRow) -> Result<()> {
        let system = format!("@{}:{}", self.config.server_notices_user, self.config.server_name);
        let owner = match &row.uploader {
            Some(uploader) => uploader.clone(),
            None => OwnedUserId::try_from(system)
                .map_err(|e| Error::internal(format!("server account id: {e}")))?,
        };
        let detail = serde_json::json!({
            "media": format!("mxc://{}/{}", row.origin, row.media_id),
            "size": row.size,
            "content_type": row.content_type,
        });
        self.trust.record(kind, &owner, None, Some(admin.name()), detail).await
    }
}
