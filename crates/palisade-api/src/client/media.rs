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
    extract::{FromRequestParts, Path, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use futures_util::TryStreamExt;
use palisade_core::{Error, ErrorKind, Result};
use palisade_media::{Download, Reader, Upload};
use palisade_service::{RateLimitedAction, Session};
use ruma::OwnedServerName;
use serde_json::{Value, json};

use crate::{
    AppState,
    error::ApiError,
    extract::{Authenticated, ClientIp},
    routes::Routes,
};

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
        let router = router.add(
            Method::GET,
            &format!("/_matrix/media/{version}/preview_url"),
            get(preview_url),
        );
        let path = format!("/_matrix/media/{version}/thumbnail/{{server_name}}/{{media_id}}");
        let router = router.add(Method::GET, &path, get(thumbnail::<false>));
        let path = format!("/_matrix/media/{version}/download/{{server_name}}/{{media_id}}");
        let router = router.add(Method::GET, &path, get(download::<false>));
        router.add(Method::GET, &format!("{path}/{{file_name}}"), get(download::<false>))
    });
    let router = router.add(Method::POST, "/_matrix/media/v1/create", post(create));
    let router = router.add(
        Method::PUT,
        "/_matrix/media/v3/upload/{server_name}/{media_id}",
        put(upload_to),
    );
    let router = router.add(Method::GET, "/_matrix/client/v1/media/config", get(config));
    let router = router.add(Method::GET, "/_matrix/client/v1/media/preview_url", get(preview_url));
    let router = router.add(
        Method::GET,
        "/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}",
        get(thumbnail::<true>),
    );
    let path = "/_matrix/client/v1/media/download/{server_name}/{media_id}";
    let router = router.add(Method::GET, path, get(download::<true>));
    router.add(Method::GET, &format!("{path}/{{file_name}}"), get(download::<true>))
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

/// The upload rate limit, per client address.
fn limit_uploads(state: &AppState, ClientIp(ip): ClientIp) -> Result<()> {
    match ip {
        Some(ip) => state.rate_limiter.check(RateLimitedAction::MediaUpload, ip),
        None => Ok(()),
    }
}

/// `POST /_matrix/media/v3/upload`
async fn upload(
    State(state): State<AppState>,
    Authenticated(session): Authenticated,
    ip: ClientIp,
    headers: HeaderMap,
    uri: http::Uri,
    body: Body,
) -> std::result::Result<Json<Value>, ApiError> {
    limit_uploads(&state, ip)?;
    let upload = upload_of(&headers, &uri, body)?;
    let content_uri = state.media.upload((&session).into(), upload).await?;
    Ok(Json(json!({ "content_uri": content_uri })))
}

/// `POST /_matrix/media/v1/create`: a media id for an upload to come.
async fn create(
    State(state): State<AppState>,
    Authenticated(session): Authenticated,
    ip: ClientIp,
) -> std::result::Result<Json<Value>, ApiError> {
    limit_uploads(&state, ip)?;
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
    ip: ClientIp,
    Path((server_name, media_id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: http::Uri,
    body: Body,
) -> std::result::Result<Json<Value>, ApiError> {
    limit_uploads(&state, ip)?;
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

/// `GET /_matrix/client/v1/media/preview_url?url=…`: a link's Open Graph tags.
async fn preview_url(
    State(state): State<AppState>,
    Authenticated(session): Authenticated,
    uri: http::Uri,
) -> std::result::Result<Json<Value>, ApiError> {
    #[derive(serde::Deserialize)]
    struct Query {
        url: Option<String>,
    }
    let axum::extract::Query(query) = axum::extract::Query::<Query>::try_from_uri(&uri)
        .map_err(|e| Error::invalid_param(format!("Invalid request: {e}")))?;
    let url = query.url.as_deref();
    Ok(Json(Value::Object(state.media.preview_url((&session).into(), url).await?)))
}

fn server_name_of(name: &str) -> Result<OwnedServerName> {
    OwnedServerName::try_from(name).map_err(|_| Error::invalid_param("Invalid server name"))
}

/// The path parameters of a download: the media, and a file name that overrides the
/// uploaded one.
#[derive(serde::Deserialize)]
struct MediaPath {
    server_name: String,
    media_id: String,
    file_name: Option<String>,
}

/// The query of a thumbnail request.
#[derive(serde::Deserialize)]
struct ThumbnailQuery {
    width: Option<u32>,
    height: Option<u32>,
    method: Option<String>,
}

/// How long a download waits for a reserved id's upload (`timeout_ms`; the spec's default).
#[derive(serde::Deserialize)]
struct WaitQuery {
    #[serde(default = "default_wait_ms")]
    timeout_ms: u64,
}

fn default_wait_ms() -> u64 {
    20_000
}

/// What a download or thumbnail request names: the media's server, the file name, the
/// `Range` header, and for a thumbnail its size and method.
struct Wanted {
    server: OwnedServerName,
    media_id: String,
    file_name: Option<String>,
    range: Option<String>,
    thumbnail: Result<((u32, u32), palisade_media::Method)>,
    wait: std::time::Duration,
}

fn wanted(path: MediaPath, headers: &HeaderMap, uri: &http::Uri) -> Result<Wanted> {
    let server = OwnedServerName::try_from(path.server_name)
        .map_err(|_| Error::invalid_param("Invalid server name"))?;
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let thumbnail = axum::extract::Query::<ThumbnailQuery>::try_from_uri(uri)
        .map_err(|e| Error::invalid_param(format!("Invalid request: {e}")))
        .and_then(|axum::extract::Query(query)| {
            let missing = || Error::new(ErrorKind::MissingParam, "Missing width or height");
            let size = (query.width.ok_or_else(missing)?, query.height.ok_or_else(missing)?);
            Ok((size, palisade_media::Method::parse(query.method.as_deref())))
        });
    let wait = axum::extract::Query::<WaitQuery>::try_from_uri(uri)
        .map(|axum::extract::Query(query)| query.timeout_ms)
        .unwrap_or_else(|_| default_wait_ms());
    let wait = std::time::Duration::from_millis(wait);
    let (media_id, file_name) = (path.media_id, path.file_name);
    Ok(Wanted { server, media_id, file_name, range, thumbnail, wait })
}

/// Who reads media: a signed-in user (guests included) on the authenticated endpoints
/// (`AUTHENTICATED`), nobody in particular on the legacy ones.
struct ReaderSession<const AUTHENTICATED: bool>(Option<Session>);

impl<const AUTHENTICATED: bool> ReaderSession<AUTHENTICATED> {
    /// Who reads, as the media service sees it.
    fn reader(&self) -> Reader<'_> {
        self.0.as_ref().map_or(Reader::Anyone, |session| Reader::User(session.into()))
    }
}

impl<const AUTHENTICATED: bool> FromRequestParts<AppState> for ReaderSession<AUTHENTICATED> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &AppState,
    ) -> std::result::Result<Self, ApiError> {
        if !AUTHENTICATED {
            return Ok(Self(None));
        }
        let Authenticated(session) =
            Authenticated::<true>::from_request_parts(parts, state).await?;
        Ok(Self(Some(session)))
    }
}

/// `GET /_matrix/client/v1/media/download/{serverName}/{mediaId}[/{fileName}]`, and the
/// legacy `/_matrix/media/v3/download/…`
async fn download<const AUTHENTICATED: bool>(
    State(state): State<AppState>,
    session: ReaderSession<AUTHENTICATED>,
    Path(path): Path<MediaPath>,
    headers: HeaderMap,
    uri: http::Uri,
) -> std::result::Result<Response, ApiError> {
    let w = wanted(path, &headers, &uri)?;
    let (name, range, reader) = (w.file_name.as_deref(), w.range.as_deref(), session.reader());
    let download = state.media.download(reader, &w.server, &w.media_id, name, range, w.wait);
    Ok(media_response(download.await?))
}

/// `GET /_matrix/client/v1/media/thumbnail/{serverName}/{mediaId}`, and the legacy
/// `/_matrix/media/v3/thumbnail/…`
async fn thumbnail<const AUTHENTICATED: bool>(
    State(state): State<AppState>,
    session: ReaderSession<AUTHENTICATED>,
    Path(path): Path<MediaPath>,
    headers: HeaderMap,
    uri: http::Uri,
) -> std::result::Result<Response, ApiError> {
    let w = wanted(path, &headers, &uri)?;
    let ((size, method), reader) = (w.thumbnail?, session.reader());
    let thumbnail = state.media.thumbnail(reader, &w.server, &w.media_id, size, method, w.wait);
    Ok(media_response(thumbnail.await?))
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
