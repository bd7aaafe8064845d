//! The content repository through HTTP: uploads and downloads byte for byte, the headers that
//! keep browsers from running what is served, ranges, limits, quotas and asynchronous upload.

use palisade_testkit::{TestServer, User, assert_error};
use reqwest::{StatusCode, header};
use serde_json::{Value, json};

const UPLOAD: &str = "/_matrix/media/v3/upload";

/// Uploads `bytes` as `user`; returns the status and the JSON answer.
async fn upload(
    server: &TestServer,
    user: &User,
    bytes: Vec<u8>,
    content_type: &str,
    file_name: Option<&str>,
) -> (StatusCode, Value) {
    let query = file_name.map(|name| format!("?filename={}", palisade_testkit::urlencode(name)));
    let url = format!("{}{UPLOAD}{}", server.base, query.unwrap_or_default());
    let response = server
        .http
        .post(url)
        .bearer_auth(&user.token)
        .header(header::CONTENT_TYPE, content_type)
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Uploads `chunks` chunks of 100 bytes as a stream without a `Content-Length`.
async fn upload_chunked(server: &TestServer, user: &User, chunks: usize) -> StatusCode {
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..chunks).map(|_| Ok(vec![1u8; 100])).collect();
    let response = server
        .http
        .post(format!("{}{UPLOAD}", server.base))
        .bearer_auth(&user.token)
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(chunks)))
        .send()
        .await
        .unwrap();
    response.status()
}

/// The authenticated download path of an `mxc://` URI.
fn download_path(content_uri: &Value) -> String {
    let uri = content_uri.as_str().unwrap();
    format!("/_matrix/client/v1/media/download/{}", uri.strip_prefix("mxc://").unwrap())
}

async fn download(
    server: &TestServer,
    path: &str,
    token: Option<&str>,
    range: Option<&str>,
) -> reqwest::Response {
    let mut request = server.http.get(format!("{}{path}", server.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(range) = range {
        request = request.header(header::RANGE, range);
    }
    request.send().await.unwrap()
}

fn header_of(response: &reqwest::Response, name: header::HeaderName) -> &str {
    response.headers().get(name).map(|v| v.to_str().unwrap()).unwrap_or_default()
}

/// Files under the media directory (the content store, not its temporary files).
fn stored_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() && path.file_name().is_some_and(|n| n != "tmp") {
                pending.push(path);
            } else if path.is_file() {
                files.push(path);
            }
        }
    }
    files
}

#[tokio::test]
async fn uploads_come_back_byte_for_byte_and_are_served_safely() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;

    // A picture: shown inline, with its name, to any signed-in user.
    let picture: Vec<u8> = (0..5000u32).map(|i| (i * 7 % 251) as u8).collect();
    let (status, body) =
        upload(&server, &alice, picture.clone(), "image/png", Some("cat.png")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let server_name = server.config.server_name.as_str();
    assert!(body["content_uri"].as_str().unwrap().starts_with(&format!("mxc://{server_name}/")));
    let path = download_path(&body["content_uri"]);
    let response = download(&server, &path, bob.token(), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(&response, header::CONTENT_TYPE), "image/png");
    assert_eq!(header_of(&response, header::CONTENT_DISPOSITION), "inline; filename=cat.png");
    assert_eq!(header_of(&response, header::X_CONTENT_TYPE_OPTIONS), "nosniff");
    assert!(header_of(&response, header::CONTENT_SECURITY_POLICY).starts_with("sandbox;"));
    assert_eq!(response.bytes().await.unwrap().to_vec(), picture);

    // A larger file, several chunks on the way in and out.
    let large: Vec<u8> =
        (0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8).collect();
    let (status, body) = upload(&server, &alice, large.clone(), "application/zip", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let response = download(&server, &download_path(&body["content_uri"]), bob.token(), None).await;
    assert_eq!(header_of(&response, header::CONTENT_DISPOSITION), "attachment");
    assert_eq!(response.bytes().await.unwrap().len(), large.len());
    let again = download(&server, &download_path(&body["content_uri"]), bob.token(), None).await;
    assert!(again.bytes().await.unwrap().to_vec() == large, "the large file changed");

    // HTML never runs in the server's origin: an attachment, sandboxed; a hostile file name
    // is defused.
    let page = b"<script>alert(document.cookie)</script>".to_vec();
    let name = "\"evil\";\r\nSet-Cookie: x=1 ünïcode.html";
    let (_, body) = upload(&server, &alice, page, "text/html", Some(name)).await;
    let response = download(&server, &download_path(&body["content_uri"]), bob.token(), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    let disposition = header_of(&response, header::CONTENT_DISPOSITION);
    assert!(disposition.starts_with("attachment; filename*=utf-8''"), "{disposition}");
    assert!(!disposition.contains('"') && !disposition.contains('\r'), "{disposition}");
    assert!(header_of(&response, header::CONTENT_SECURITY_POLICY).contains("script-src 'none'"));
    assert!(response.headers().get(header::SET_COOKIE).is_none());

    // A name in the path overrides the uploaded one.
    let (_, body) = upload(&server, &alice, b"notes".to_vec(), "text/plain", Some("a.txt")).await;
    let named = format!("{}/b.txt", download_path(&body["content_uri"]));
    let response = download(&server, &named, bob.token(), None).await;
    assert_eq!(header_of(&response, header::CONTENT_DISPOSITION), "inline; filename=b.txt");

    // Identical uploads are stored once.
    let before = stored_files(&server.config.media_path()).len();
    let (status, _) = upload(&server, &bob, b"notes".to_vec(), "text/plain", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored_files(&server.config.media_path()).len(), before);

    // Authentication is required; the legacy unauthenticated path serves nothing; unknown
    // media is not found.
    let response = download(&server, &path, None, None).await;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let legacy = path.replace("/_matrix/client/v1/media/", "/_matrix/media/v3/");
    let response = download(&server, &legacy, None, None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_error(
        &server
            .get(&format!("/_matrix/client/v1/media/download/{server_name}/nothing"), bob.token())
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let response =
        server.http.post(format!("{}{UPLOAD}", server.base)).body("x").send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn ranges_serve_parts_of_a_file() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let video: Vec<u8> = (0..1000u32).map(|i| (i % 256) as u8).collect();
    let (_, body) = upload(&server, &alice, video.clone(), "video/mp4", None).await;
    let path = download_path(&body["content_uri"]);

    let response = download(&server, &path, alice.token(), Some("bytes=100-199")).await;
    assert_eq!(response.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(header_of(&response, header::CONTENT_RANGE), "bytes 100-199/1000");
    assert_eq!(response.bytes().await.unwrap().to_vec(), video[100..200]);
    let response = download(&server, &path, alice.token(), Some("bytes=-10")).await;
    assert_eq!(response.bytes().await.unwrap().to_vec(), video[990..]);
    let response = download(&server, &path, alice.token(), Some("bytes=900-")).await;
    assert_eq!(header_of(&response, header::CONTENT_RANGE), "bytes 900-999/1000");
    assert_eq!(response.bytes().await.unwrap().len(), 100);
    let response = download(&server, &path, alice.token(), Some("bytes=1000-")).await;
    assert_eq!(response.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    assert_eq!(header_of(&response, header::CONTENT_RANGE), "bytes */1000");
    // A form this server does not serve gets the whole file.
    let response = download(&server, &path, alice.token(), Some("bytes=0-1,5-6")).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().len(), 1000);
}

#[tokio::test]
async fn size_limits_and_quotas_are_enforced() {
    let server = TestServer::start_with(|config| {
        config.media.max_upload_bytes = 1000;
        config.media.per_user_quota_bytes = Some(1500);
    })
    .await;
    let alice = server.register("alice").await;
    let (status, limits) = server.get("/_matrix/client/v1/media/config", alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(limits["m.upload.size"], 1000);

    // Announced too large: refused before the body is read.
    assert_error(
        &upload(&server, &alice, vec![0; 1001], "application/octet-stream", None).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    // Streamed without a length: refused once it passes the limit.
    assert_eq!(upload_chunked(&server, &alice, 20).await, StatusCode::PAYLOAD_TOO_LARGE);

    // The quota counts what the user has uploaded.
    let (status, _) = upload(&server, &alice, vec![2; 800], "application/octet-stream", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &upload(&server, &alice, vec![3; 800], "application/octet-stream", None).await,
        StatusCode::FORBIDDEN,
        "M_RESOURCE_LIMIT_EXCEEDED",
    );
    // Streamed without a length, the upload stops where the quota does and leaves nothing.
    let files_before = stored_files(&server.config.media_path()).len();
    assert_eq!(upload_chunked(&server, &alice, 8).await, StatusCode::FORBIDDEN);
    assert_eq!(stored_files(&server.config.media_path()).len(), files_before);
    let bob = server.register("bob").await;
    let (status, _) = upload(&server, &bob, vec![3; 800], "application/octet-stream", None).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn asynchronous_upload_fills_a_reserved_id_once() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (status, created) = server.post("/_matrix/media/v1/create", alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    assert!(created["unused_expires_at"].as_u64().is_some(), "{created}");
    let path = download_path(&created["content_uri"]);
    assert_error(
        &server.get(&format!("{path}?timeout_ms=100"), alice.token()).await,
        StatusCode::GATEWAY_TIMEOUT,
        "M_NOT_YET_UPLOADED",
    );
    let target = format!(
        "/_matrix/media/v3/upload/{}",
        created["content_uri"].as_str().unwrap().strip_prefix("mxc://").unwrap()
    );
    let put = |user: &User, bytes: &'static [u8]| {
        server
            .http
            .put(format!("{}{target}", server.base))
            .bearer_auth(user.token.clone())
            .header(header::CONTENT_TYPE, "text/plain")
            .body(bytes)
            .send()
    };
    let response = put(&bob, b"not bob's").await.unwrap();
    assert_eq!(response.status(), StatusCode::FORBIDDEN);
    // A download asked for before the upload is answered when the upload comes.
    let patient = format!("{path}?timeout_ms=10000");
    let waiting = download(&server, &patient, bob.token(), None);
    let uploading = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        put(&alice, b"later").await.unwrap()
    };
    let (waited, response) = tokio::join!(waiting, uploading);
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(waited.status(), StatusCode::OK);
    assert_eq!(waited.bytes().await.unwrap().as_ref(), b"later");
    let response = put(&alice, b"again").await.unwrap();
    assert_eq!(response.status(), StatusCode::CONFLICT);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["errcode"], "M_CANNOT_OVERWRITE_MEDIA");
    let response = download(&server, &path, bob.token(), None).await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"later");
}

/// A picture of `width` × `height` in `format`.
fn picture(format: image::ImageFormat, width: u32, height: u32) -> Vec<u8> {
    let pixels = image::RgbaImage::from_fn(width, height, |x, y| {
        image::Rgba([(x % 256) as u8, (y % 256) as u8, 128, 255])
    });
    let picture = match format {
        image::ImageFormat::Jpeg => {
            image::DynamicImage::ImageRgb8(image::DynamicImage::ImageRgba8(pixels).to_rgb8())
        }
        _ => image::DynamicImage::ImageRgba8(pixels),
    };
    let mut bytes = std::io::Cursor::new(Vec::new());
    picture.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

/// A PNG that announces 100,000 × 100,000 pixels (40 GB decoded) in a few dozen bytes.
fn decompression_bomb() -> Vec<u8> {
    fn chunk(kind: &[u8], data: &[u8]) -> Vec<u8> {
        let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
        chunk.extend_from_slice(kind);
        chunk.extend_from_slice(data);
        let mut crc = crc32fast::Hasher::new();
        crc.update(kind);
        crc.update(data);
        chunk.extend_from_slice(&crc.finalize().to_be_bytes());
        chunk
    }
    let mut header = 100_000u32.to_be_bytes().to_vec();
    header.extend_from_slice(&100_000u32.to_be_bytes());
    header.extend_from_slice(&[8, 6, 0, 0, 0]);
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend(chunk(b"IHDR", &header));
    png.extend(chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]));
    png.extend(chunk(b"IEND", &[]));
    png
}

#[tokio::test]
async fn thumbnails_are_made_of_each_image_format() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let formats = [
        (image::ImageFormat::Png, "image/png", "image/png"),
        (image::ImageFormat::Jpeg, "image/jpeg", "image/jpeg"),
        (image::ImageFormat::Gif, "image/gif", "image/png"),
        (image::ImageFormat::WebP, "image/webp", "image/png"),
    ];
    for (format, uploaded, served) in formats {
        let (status, body) =
            upload(&server, &alice, picture(format, 640, 400), uploaded, None).await;
        assert_eq!(status, StatusCode::OK, "{uploaded}: {body}");
        let path = download_path(&body["content_uri"]).replace("/download/", "/thumbnail/");
        for (query, expected) in
            [("width=32&height=32&method=crop", (32, 32)), ("width=300&height=200", (320, 200))]
        {
            // Made on the first request, served from storage on the second.
            for _ in 0..2 {
                let response =
                    download(&server, &format!("{path}?{query}"), alice.token(), None).await;
                assert_eq!(response.status(), StatusCode::OK, "{uploaded} {query}");
                assert_eq!(header_of(&response, header::CONTENT_TYPE), served, "{uploaded}");
                assert!(
                    header_of(&response, header::CONTENT_SECURITY_POLICY).starts_with("sandbox")
                );
                let bytes = response.bytes().await.unwrap();
                let thumbnail = image::load_from_memory(&bytes).unwrap();
                assert_eq!((thumbnail.width(), thumbnail.height()), expected, "{uploaded} {query}");
            }
        }
    }

    // A long, thin image is cut to shape before it is scaled (never blown up whole).
    let (_, thin) =
        upload(&server, &alice, picture(image::ImageFormat::Png, 20_000, 1), "image/png", None)
            .await;
    let path = download_path(&thin["content_uri"]).replace("/download/", "/thumbnail/");
    let response =
        download(&server, &format!("{path}?width=96&height=96&method=crop"), alice.token(), None)
            .await;
    assert_eq!(response.status(), StatusCode::OK);
    let thumbnail = image::load_from_memory(&response.bytes().await.unwrap()).unwrap();
    assert_eq!((thumbnail.width(), thumbnail.height()), (96, 96));

    // Only images have thumbnails; a decompression bomb is refused without being decoded.
    let (_, text) = upload(&server, &alice, b"words".to_vec(), "text/plain", None).await;
    let path = download_path(&text["content_uri"]).replace("/download/", "/thumbnail/");
    let (status, _) = server.get(&format!("{path}?width=32&height=32"), alice.token()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, bomb) = upload(&server, &alice, decompression_bomb(), "image/png", None).await;
    assert_eq!(status, StatusCode::OK, "{bomb}");
    let path = download_path(&bomb["content_uri"]).replace("/download/", "/thumbnail/");
    let (status, answer) = server.get(&format!("{path}?width=32&height=32"), alice.token()).await;
    assert!(status.is_client_error(), "{status} {answer}");
    // The server is still there, and the picture thumbnails still work.
    let (status, _) = server.get("/_matrix/client/v1/media/config", alice.token()).await;
    assert_eq!(status, StatusCode::OK);

    assert_error(
        &server.get(&format!("{path}?width=32"), alice.token()).await,
        StatusCode::BAD_REQUEST,
        "M_MISSING_PARAM",
    );
    let (status, _) = server.get(&format!("{path}?width=32&height=32"), None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn media_of_another_server_is_fetched_over_federation_and_kept() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let photo = picture(image::ImageFormat::Png, 200, 100);
    let (status, body) = upload(&a, &alice, photo.clone(), "image/png", Some("photo.png")).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let path = download_path(&body["content_uri"]);

    // Bob's server fetches it from alice's over federation.
    let response = download(&b, &path, bob.token(), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(&response, header::CONTENT_TYPE), "image/png");
    assert_eq!(header_of(&response, header::CONTENT_DISPOSITION), "inline; filename=photo.png");
    assert_eq!(response.bytes().await.unwrap().to_vec(), photo);
    let thumbnail = path.replace("/download/", "/thumbnail/");
    let response =
        download(&b, &format!("{thumbnail}?width=32&height=32&method=crop"), bob.token(), None)
            .await;
    assert_eq!(response.status(), StatusCode::OK);
    let unknown = path.rsplit_once('/').unwrap().0.to_owned() + "/nothing";
    let (status, _) = b.get(&unknown, bob.token()).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Kept: served while alice's server is down.
    let dir = a.stop().await;
    let response = download(&b, &path, bob.token(), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.bytes().await.unwrap().to_vec(), photo);
    drop(dir);

    // Other servers must sign their requests.
    let media_id = path.rsplit('/').next().unwrap();
    let response = reqwest::Client::builder()
        .tls_danger_accept_invalid_certs(true)
        .build()
        .unwrap()
        .get(format!("{}/_matrix/federation/v1/media/download/{media_id}", b.federation_base()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
}

/// A server from before authenticated media (spec v1.11), federating on loopback TLS: it does
/// not know the federation media endpoint and serves `mxc://<it>/old` (a PNG) and
/// `mxc://<it>/huge` (2 KiB) through the legacy one, to servers asking for its own media only.
async fn older_server() -> String {
    use axum::{
        extract::{Path, RawQuery},
        response::IntoResponse,
        routing::get,
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let name = listener.local_addr().unwrap().to_string();
    let mut config = palisade_testkit::test_config(std::path::Path::new("."));
    config.server_name = name.as_str().try_into().unwrap();
    let tls = palisade::tls::server_config(&config).unwrap();
    let legacy =
        get(|Path((_, id)): Path<(String, String)>, RawQuery(query): RawQuery| async move {
            let own_only = query.unwrap_or_default().split('&').any(|p| p == "allow_remote=false");
            match id.as_str() {
                "old" if own_only => (
                    [
                        (header::CONTENT_TYPE, "image/png"),
                        (header::CONTENT_DISPOSITION, "inline; filename=\"old.png\""),
                    ],
                    b"\x89PNG old bytes".to_vec(),
                )
                    .into_response(),
                "huge" => vec![7u8; 2048].into_response(),
                _ => (StatusCode::NOT_FOUND, r#"{"errcode":"M_NOT_FOUND","error":"nothing"}"#)
                    .into_response(),
            }
        });
    let unrecognized = get(|| async {
        (StatusCode::NOT_FOUND, r#"{"errcode":"M_UNRECOGNIZED","error":"Unrecognized request"}"#)
    });
    let router = axum::Router::new()
        .route("/_matrix/media/v3/download/{server}/{id}", legacy)
        .route("/_matrix/federation/v1/media/download/{id}", unrecognized);
    let listener = palisade::tls::TlsListener::new(listener, tls).unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    name
}

#[tokio::test]
async fn media_of_an_older_server_is_fetched_through_the_legacy_endpoint() {
    let old = older_server().await;
    let server =
        TestServer::start_federated_with(|config| config.media.max_upload_bytes = 1024).await;
    let bob = server.register("bob").await;

    let path = format!("/_matrix/client/v1/media/download/{old}/old");
    let response = download(&server, &path, bob.token(), None).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(header_of(&response, header::CONTENT_TYPE), "image/png");
    assert_eq!(header_of(&response, header::CONTENT_DISPOSITION), "inline; filename=old.png");
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"\x89PNG old bytes");

    // What the older server does not have, or sends beyond the size limit, is not served.
    let missing = download(
        &server,
        &format!("/_matrix/client/v1/media/download/{old}/gone"),
        bob.token(),
        None,
    )
    .await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
    let huge = download(
        &server,
        &format!("/_matrix/client/v1/media/download/{old}/huge"),
        bob.token(),
        None,
    )
    .await;
    assert!(!huge.status().is_success(), "{}", huge.status());
    let dir = server.config.media_path();
    assert_eq!(stored_files(&dir).len(), 1, "only the fetched file is kept");
}

#[tokio::test]
async fn administrators_list_quarantine_and_delete_media() {
    let server = TestServer::start().await;
    let ada = server.register("ada").await;
    let ada_id: ruma::OwnedUserId = ada.user_id.as_str().try_into().unwrap();
    server.services.accounts.set_admin(&ada_id, true).await.unwrap();
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (_, own) = upload(&server, &alice, b"alice's own file".to_vec(), "text/plain", None).await;
    let (_, shared) = upload(&server, &alice, b"shared content".to_vec(), "text/plain", None).await;
    let (_, copy) = upload(&server, &bob, b"shared content".to_vec(), "text/plain", None).await;
    let admin_path = |uri: &Value| {
        format!("/_palisade/admin/v1/media/{}", uri.as_str().unwrap().trim_start_matches("mxc://"))
    };
    let files = || stored_files(&server.config.media_path()).len();

    let listing = format!("/_palisade/admin/v1/users/{}/media", alice.user_id);
    let (status, listed) = server.get(&listing, ada.token()).await;
    assert_eq!(status, StatusCode::OK, "{listed}");
    assert_eq!(listed["media"].as_array().unwrap().len(), 2, "{listed}");
    assert_eq!(server.get(&listing, alice.token()).await.0, StatusCode::FORBIDDEN);

    // Quarantined: kept on disk, served to no one, until released.
    let quarantine = format!("{}/quarantine", admin_path(&own["content_uri"]));
    let before = files();
    assert_eq!(server.post(&quarantine, ada.token(), json!({})).await.0, StatusCode::OK);
    let own_path = download_path(&own["content_uri"]);
    assert_eq!(
        download(&server, &own_path, bob.token(), None).await.status(),
        StatusCode::NOT_FOUND
    );
    assert_eq!(files(), before);
    let (status, _) = server.call(reqwest::Method::DELETE, &quarantine, ada.token(), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(download(&server, &own_path, bob.token(), None).await.status(), StatusCode::OK);

    // Deleting alice's copy of shared content keeps the file bob's copy names.
    let (status, _) = server
        .call(reqwest::Method::DELETE, &admin_path(&shared["content_uri"]), ada.token(), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let shared_path = download_path(&shared["content_uri"]);
    assert_eq!(
        download(&server, &shared_path, bob.token(), None).await.status(),
        StatusCode::NOT_FOUND
    );
    let response = download(&server, &download_path(&copy["content_uri"]), bob.token(), None).await;
    assert_eq!(response.bytes().await.unwrap().as_ref(), b"shared content");
    assert_eq!(files(), before);

    // Deleting everything alice uploaded takes her own file off the disk.
    let (status, deleted) = server.call(reqwest::Method::DELETE, &listing, ada.token(), None).await;
    assert_eq!((status, deleted["deleted"].clone()), (StatusCode::OK, json!(1)), "{deleted}");
    assert_eq!(files(), before - 1);
    let (status, _) = server
        .call(reqwest::Method::DELETE, &admin_path(&own["content_uri"]), ada.token(), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Every step is in the audit log, under alice.
    let audit = format!(
        "/_palisade/admin/v1/audit?user_id={}",
        palisade_testkit::urlencode(&alice.user_id)
    );
    let (_, log) = server.get(&audit, ada.token()).await;
    let kinds: Vec<&str> =
        log["entries"].as_array().unwrap().iter().filter_map(|e| e["kind"].as_str()).collect();
    for kind in ["media_quarantined", "media_released", "media_deleted"] {
        assert!(kinds.contains(&kind), "{kind} missing: {kinds:?}");
    }
}

#[tokio::test]
async fn uploads_are_rate_limited() {
    let server = TestServer::start_with(|config| {
        config.rate_limits.media_upload =
            palisade_core::config::RateLimit { per_second: 0.001, burst: 2 };
    })
    .await;
    let alice = server.register("alice").await;
    for _ in 0..2 {
        let (status, body) = upload(&server, &alice, b"x".to_vec(), "text/plain", None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_error(
        &upload(&server, &alice, b"x".to_vec(), "text/plain", None).await,
        StatusCode::TOO_MANY_REQUESTS,
        "M_LIMIT_EXCEEDED",
    );
    assert_error(
        &server.post("/_matrix/media/v1/create", alice.token(), json!({})).await,
        StatusCode::TOO_MANY_REQUESTS,
        "M_LIMIT_EXCEEDED",
    );
}

/// A web server on loopback for link previews: `/page` (Open Graph tags), `/hop` (a redirect
/// to the cloud metadata address) and `/loop` (a redirect to itself). Returns its port.
async fn web_site() -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut request = vec![0; 4096];
            let read = socket.read(&mut request).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&request[..read]).to_string();
            let path = request.split_whitespace().nth(1).unwrap_or("/").to_owned();
            let response = match path.as_str() {
                "/page" => {
                    let page = r#"<html><head><title>Fallback title</title>
                        <meta property="og:title" content="Palisade &amp; friends">
                        <meta property="og:description" content="A sovereign homeserver">
                        <meta property="og:image" content="http://169.254.169.254/x.png">
                        <meta name="description" content="ignored"></head><body>hi</body></html>"#;
                    format!("HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}", page.len())
                }
                "/hop" => "HTTP/1.1 302 Found\r\nLocation: http://169.254.169.254/latest/meta-data/\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
                _ => "HTTP/1.1 302 Found\r\nLocation: /loop\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
            };
            let _ = socket.write_all(response.as_bytes()).await;
        }
    });
    port
}

/// Asks `server` for a preview of `url` as `user`.
async fn preview(server: &TestServer, user: &User, url: String) -> (StatusCode, Value) {
    let path =
        format!("/_matrix/client/v1/media/preview_url?url={}", palisade_testkit::urlencode(&url));
    server.get(&path, user.token()).await
}

#[tokio::test]
async fn link_previews_read_open_graph_and_never_reach_private_addresses() {
    let port = web_site().await;
    // Off by default.
    let off = TestServer::start().await;
    let alice = off.register("alice").await;
    let (status, _) = preview(&off, &alice, format!("http://127.0.0.1:{port}/page")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // On, with this test's site allowed although it is on loopback.
    let on = TestServer::start_with(|config| {
        config.media.url_previews = true;
        config.media.url_preview_allowed_ips = vec!["127.0.0.1".parse().unwrap()];
    })
    .await;
    let bob = on.register("bob").await;
    let (status, tags) = preview(&on, &bob, format!("http://127.0.0.1:{port}/page")).await;
    assert_eq!(status, StatusCode::OK, "{tags}");
    assert_eq!(tags["og:title"], "Palisade & friends");
    assert_eq!(tags["og:description"], "A sovereign homeserver");
    assert!(tags.get("og:image").is_none(), "{tags}");
    // A redirect to the metadata address is refused; so are loops and other schemes.
    let (status, answer) = preview(&on, &bob, format!("http://127.0.0.1:{port}/hop")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
    let (status, _) = preview(&on, &bob, format!("http://127.0.0.1:{port}/loop")).await;
    assert!(status.is_server_error() || status.is_client_error(), "{status}");
    let (status, _) = preview(&on, &bob, "file:///etc/passwd".to_owned()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    // Without the allowance, loopback is refused whether named by address or by name.
    let strict = TestServer::start_with(|config| config.media.url_previews = true).await;
    let carol = strict.register("carol").await;
    let (status, _) = preview(&strict, &carol, format!("http://127.0.0.1:{port}/page")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, answer) = preview(&strict, &carol, format!("http://localhost:{port}/page")).await;
    assert!(!status.is_success(), "{answer}");
    let (status, _) =
        preview(&strict, &carol, format!("http://[::ffff:127.0.0.1]:{port}/page")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
