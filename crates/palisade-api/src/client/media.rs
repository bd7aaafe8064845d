//! The content repository over HTTP: uploads (direct and asynchronous), authenticated
//! downloads, the legacy unauthenticated downloads and the upload limit.
//!
//! Ruma's types hold whole files in memory; these handlers stream the body instead.
//!
//! Spec: <https://spec.matrix.org/v1.19/client-server-api/#content-repository>

use std::io;

use axum::{
    Json,
    body::Body,
    extract::{Path, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use futures_util::TryStreamExt;
use palisade_core::{Error, Result};
use palisade_media::{Download, Upload};
use ruma::OwnedServerName;
use serde_json::{Value, json};

use crate::{AppState, error::ApiError, extract::Authenticated, routes::Routes};

/// What every media response carries (as Synapse): content opened directly in a browser
/// runs nothing and loads nothing.
const CONTENT_SECURITY_POLICY: &str = "sandbox; default-src 'none'; script-src 'none'; \
     plugin-types application/pdf; style-src 'unsafe-inline'; media-src 'self'; object-src 'self';";

pub(super) fn routes(router: Routes) -> Routes {
    let legacy = ["r0", "v3"];
    let router = legacy.iter().fold(router, |router, version| {
        let router =
            router.add(Method::POST, &format!("/_matrix/media/{version}/upload"), post(upload));
        let router =
            router.add(Method::GET, &format!("/_matrix/media/{version}/config"), get(config));
        let path = format!("/_matrix/media/{version}/download/{{server_name}}/{{media_id}}");
        let router = router.add(Method::GET, &path, get(download_unauthenticated));
        router.add(Method::GET, &format!("{path}/{{file_name}}"), get(download_unauthenticated))
    });
    let router = router.add(Method::POST, "/_matrix/media/v1/create", post(create));
    let router = router.add(
        Method::PUT,
        "/_matrix/media/v3/upload/{server_name}/{media_id}",
        put(upload_to),
    );
    let router = router.add(Method::GET, "/_matrix/client/v1/media/config", get(config));
    let path = "/_matrix/client/v1/media/download/{server_name}/{media_id}";
    let router = router.add(Method::GET, path, get(download));
    router.add(Method::GET, &format!("{path}/{{file_name}}"), get(download))
}

/// The upload a request carries: its type and length headers, the `filename` query
/// parameter, and the body as a stream.
fn upload_of(headers: &HeaderMap, uri: &http::Uri, body: Body) -> Result<Upload> {
    #[derive(serde::Deserialize)]
    struct Query {
        filename: Option<String>,
    }
    let axum::extract::Query(query) = axum::extract::Query::<Query>::try_from_uri(uri)
        .map_err(|e| Error::invalid_param(format!("Invalid request: {e}")))?;
    let text = |name: header::HeaderName| {
        headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
    };
    let length = match text(header::CONTENT_LENGTH) {
        Some(length) => Some(
            length.parse().map_err(|_| Error::invalid_param("Invalid Content-Length header"))?,
        ),
        None => None,
    };
    Ok(Upload {
        content_type: text(header::CONTENT_TYPE),
        file_name: query.filename,
        length,
        body: Box::pin(body.into_data_stream().map_err(io::Error::other)),
    })
}

/// `POST /_matrix/media/v3/upload`
async fn upload(
    State(state): State<AppState>,
    Authenticated(session): Authenticated,
    headers: HeaderMap,
    uri: http::Uri,
    body: Body,
) -> std::result::Result<Json<Value>, ApiError> {
    let upload = upload_of(&headers, &uri, body)?;
    let content_uri = state.media.upload((&session).into(), upload).await?;
    Ok(Json(json!({ "content_uri": content_uri })))
}

/// `POST /_matrix/media/v1/create`: a media id for an upload to come.
async fn create(
    State(state): State<AppState>,
    Authenticated(session): Authenticated,
) -> std::result::Result<Json<Value>, ApiError> {
    let reservation = state.media.create((&session).into()).await?;
    Ok(Json(json!({
        "content_uri": reservation.content_uri,
        "unused_expires_at": reservation.unused_expires_at,
    })))
}

/// `PUT /_matrix/media/v3/upload/{serverName}/{mediaId}`: the upload of a reserved id.
async fn upload_to(
    State(state): State<AppState>,
    Authenticated(session): Authenticated,
    Path((server_name, media_id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: http::Uri,
    body: Body,
) -> std::result::Result<Json<Value>, ApiError> {
    let server = server_name_of(&server_name)?;
    let upload = upload_of(&headers, &uri, body)?;
    state.media.upload_to((&session).into(), &server, &media_id, upload).await?;
    Ok(Json(json!({})))
}

/// `GET /_matrix/client/v1/media/config` (and the legacy `/_matrix/media/v3/config`)
async fn config(
    State(state): State<AppState>,
    _: Authenticated<true>,
) -> std::result::Result<Json<Value>, ApiError> {
    Ok(Json(json!({ "m.upload.size": state.media.max_upload_bytes() })))
}

fn server_name_of(name: &str) -> Result<OwnedServerName> {
    OwnedServerName::try_from(name).map_err(|_| Error::invalid_param("Invalid server name"))
}

fn range_of(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::RANGE).and_then(|v| v.to_str().ok())
}

/// The path parameters of a download: the media, and a file name that overrides the
/// uploaded one.
#[derive(serde::Deserialize)]
struct MediaPath {
    server_name: String,
    media_id: String,
    file_name: Option<String>,
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`
async fn download(
    State(state): State<AppState>,
    Authenticated(session): Authenticated<true>,
    Path(path): Path<MediaPath>,
    headers: HeaderMap,
) -> std::result::Result<Response, ApiError> {
    let server = server_name_of(&path.server_name)?;
    let (name, range) = (path.file_name.as_deref(), range_of(&headers));
    let download =
        state.media.download((&session).into(), &server, &path.media_id, name, range).await?;
    Ok(media_response(download))
}

/// `GET /_matrix/media/v3/download/{serverName}/{mediaId}[/{fileName}]` (legacy,
/// unauthenticated)
async fn download_unauthenticated(
    State(state): State<AppState>,
    Path(path): Path<MediaPath>,
    headers: HeaderMap,
) -> std::result::Result<Response, ApiError> {
    let server = server_name_of(&path.server_name)?;
    let (name, range) = (path.file_name.as_deref(), range_of(&headers));
    let download =
        state.media.download_unauthenticated(&server, &path.media_id, name, range).await?;
    Ok(media_response(download))
}

/// Media as an HTTP response: the whole content or the range asked for, with the headers
/// that keep browsers from running it.
fn media_response(download: Download) -> Response {
    let Download { content_type, disposition, size, range, body } = download;
    let (status, length) = match range {
        Some((first, last)) => (StatusCode::PARTIAL_CONTENT, last - first + 1),
        None => (StatusCode::OK, size),
    };
    let mut response = (status, Body::from_stream(body)).into_response();
    let headers = response.headers_mut();
    let value = |text: &str| {
        HeaderValue::from_str(text).unwrap_or_else(|_| HeaderValue::from_static("attachment"))
    };
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&content_type)
            .unwrap_or_else(|_| HeaderValue::from_static("application/octet-stream")),
    );
    headers.insert(header::CONTENT_DISPOSITION, value(&disposition));
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Some((first, last)) = range {
        headers.insert(header::CONTENT_RANGE, value(&format!("bytes {first}-{last}/{size}")));
    }
    headers
        .insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(
        header::HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    );
    response
}
