//! Media of other servers, fetched for local users through the authenticated federation
//! media endpoint (spec v1.11), or the legacy unauthenticated one for servers older than it.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#get_matrixfederationv1mediadownloadmediaid>
//! and <https://spec.matrix.org/v1.19/client-server-api/#get_matrixmediav3downloadservernamemediaid>

use std::str::FromStr;

use palisade_core::{Error, ErrorKind, RemoteRefusal, Result};
use palisade_service::outbound::RemoteMedia;
use ruma::{
    ServerName,
    api::federation::authenticated_media::{FileOrLocation, get_content},
    http_headers::ContentDisposition,
};

use crate::Federation;

/// Room for the multipart framing and metadata around the file.
const FRAMING_BYTES: u64 = 64 * 1024;
/// How long the legacy endpoint may wait for a file still being uploaded there, as Synapse asks.
const LEGACY_TIMEOUT_MS: u32 = 20_000;

impl Federation {
    /// Fetches `mxc://<server>/<media_id>` from its server, refusing more than `limit` bytes
    /// (a larger file is an unusable answer).
    pub async fn fetch_media(
        &self,
        server: &ServerName,
        media_id: &str,
        limit: u64,
    ) -> Result<RemoteMedia> {
        let request = get_content::v1::Request::new(media_id.to_owned());
        let most = usize::try_from(limit.saturating_add(FRAMING_BYTES)).unwrap_or(usize::MAX);
        let response = match self.client.send_limited(server, request, most).await {
            Ok(response) => response,
            // A server from before spec v1.11 does not know the endpoint (the spec's sign).
            Err(error) if error.kind == ErrorKind::RemoteRefused(RemoteRefusal::Unrecognized) => {
                return self.fetch_legacy_media(server, media_id, limit).await;
            }
            Err(error) => return Err(error),
        };
        let content = match response.content {
            FileOrLocation::File(content) => content,
            _ => {
                return Err(Error::new(
                    ErrorKind::RemoteUnavailable,
                    format!("{server} redirects media elsewhere, which is not followed"),
                ));
            }
        };
        if content.file.len() as u64 > limit {
            return Err(Error::new(ErrorKind::TooLarge, "Remote media is larger than allowed"));
        }
        let file_name = content.content_disposition.and_then(|d| d.filename);
        Ok(RemoteMedia { content_type: content.content_type, file_name, bytes: content.file })
    }

    /// Fetches media through `GET /_matrix/media/v3/download`, asking the server for its own
    /// media only (`allow_remote=false`), as the spec asks of servers doing so.
    async fn fetch_legacy_media(
        &self,
        server: &ServerName,
        media_id: &str,
        limit: u64,
    ) -> Result<RemoteMedia> {
        if media_id.is_empty()
            || !media_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
        {
            return Err(Error::new(ErrorKind::NotFound, "Not a media id"));
        }
        tracing::debug!(%server, %media_id, "fetching media through the legacy endpoint");
        let path = format!(
            "/_matrix/media/v3/download/{server}/{media_id}?allow_remote=false&timeout_ms={LEGACY_TIMEOUT_MS}"
        );
        let most = usize::try_from(limit).unwrap_or(usize::MAX);
        let response = self.client.get_unsigned(server, &path, most).await?;
        let header = |name: http::header::HeaderName| {
            response.headers().get(name).and_then(|value| value.to_str().ok())
        };
        let content_type = header(http::header::CONTENT_TYPE).map(str::to_owned);
        let file_name = header(http::header::CONTENT_DISPOSITION)
            .and_then(|value| ContentDisposition::from_str(value).ok())
            .and_then(|disposition| disposition.filename);
        Ok(RemoteMedia { content_type, file_name, bytes: response.into_body() })
    }
}
