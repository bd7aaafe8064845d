//! This server's media, served to other servers (spec v1.11): a `multipart/mixed` answer whose
//! first part is the metadata (an empty object) and whose second is the file, streamed.
//!
//! Spec: <https://spec.matrix.org/v1.19/server-server-api/#content-repository>

use axum::{
    body::Body,
    extract::State,
    http::{HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use bytes::Bytes;
use futures_util::{StreamExt, stream};
use palisade_media::{Download, Reader};
use rand::{Rng, distributions::Alphanumeric};
use ruma::api::federation::authenticated_media::{get_content, get_content_thumbnail};

use crate::{AppState, Ruma, error::ApiError, routes::Routes};

pub(super) fn routes(router: Routes) -> Routes {
    let router =
        router.add(Method::GET, "/_matrix/federation/v1/media/download/{media_id}", get(download));
    router.add(Method::GET, "/_matrix/federation/v1/media/thumbnail/{media_id}", get(thumbnail))
}

/// `GET /_matrix/federation/v1/media/download/{mediaId}`
async fn download(
    State(state): State<AppState>,
    request: Ruma<get_content::v1::Request>,
) -> std::result::Result<Response, ApiError> {
    request.origin()?;
    let own = &state.config.server_name;
    let (media_id, wait) = (&request.body.media_id, request.body.timeout_ms);
    Ok(multipart(state.media.download(Reader::Server, own, media_id, None, None, wait).await?))
}

/// `GET /_matrix/federation/v1/media/thumbnail/{mediaId}`
async fn thumbnail(
    State(state): State<AppState>,
    request: Ruma<get_content_thumbnail::v1::Request>,
) -> std::result::Result<Response, ApiError> {
    request.origin()?;
    let body = &request.body;
    let dimension = |value: ruma::UInt| u32::try_from(u64::from(value)).unwrap_or(u32::MAX);
    let size = (dimension(body.width), dimension(body.height));
    let method = palisade_media::Method::parse(body.method.as_ref().map(|m| m.as_str()));
    let own = &state.config.server_name;
    let (media_id, wait) = (&body.media_id, body.timeout_ms);
    let thumbnail = state.media.thumbnail(Reader::Server, own, media_id, size, method, wait);
    Ok(multipart(thumbnail.await?))
}

/// The file as the second part of a `multipart/mixed` body after empty metadata.
fn multipart(download: Download) -> Response {
    let boundary: String =
        rand::thread_rng().sample_iter(Alphanumeric).take(32).map(char::from).collect();
    // The served type and disposition are printable ASCII without line breaks (`serve.rs`).
    let head = format!(
        "--{boundary}\r\nContent-Type: application/json\r\n\r\n{{}}\r\n--{boundary}\r\n\
         Content-Type: {}\r\nContent-Disposition: {}\r\n\r\n",
        download.content_type, download.disposition
    );
    let tail = format!("\r\n--{boundary}--\r\n");
    let length = head.len() as u64 + download.size + tail.len() as u64;
    let body = stream::once(async move { Ok(Bytes::from(head)) })
        .chain(download.body)
        .chain(stream::once(async move { Ok(Bytes::from(tail)) }));
    let mut response = (StatusCode::OK, Body::from_stream(body)).into_response();
    let headers = response.headers_mut();
    let content_type = format!("multipart/mixed; boundary={boundary}");
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type).expect("an alphanumeric boundary is a valid header"),
    );
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    response
}
