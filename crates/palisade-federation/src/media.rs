//! Media of other servers, fetched for local users through the authenticated federation
//! media endpoint (spec v1.11).
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#get_matrixfederationv1mediadownloadmediaid>

use palisade_core::{Error, ErrorKind, Result};
use palisade_service::outbound::RemoteMedia;
use ruma::{
    ServerName,
    api::federation::authenticated_media::{FileOrLocation, get_content},
};

use crate::Federation;

/// Room for the multipart framing and metadata around the file.
const FRAMING_BYTES: u64 = 64 * 1024;

impl Federation {
    /// Fetches `mxc://<server>/<media_id>` from its server, refusing more than `limit` bytes.
    pub async fn fetch_media(
        &self,
        server: &ServerName,
        media_id: &str,
        limit: u64,
    ) -> Result<RemoteMedia> {
        let request = get_content::v1::Request::new(media_id.to_owned());
        let most = usize::try_from(limit.saturating_add(FRAMING_BYTES)).unwrap_or(usize::MAX);
        let response = self.client.send_limited(server, request, most).await?;
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
}
