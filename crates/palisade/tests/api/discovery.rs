//! Discovery, routing fallbacks, CORS and transport-level bad input.

use reqwest::{Method, StatusCode};
use serde_json::json;

use palisade_testkit::{TestServer, assert_error};

#[tokio::test]
async fn versions_and_capabilities() {
    let server = TestServer::start().await;
    let (status, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(versions["versions"].as_array().unwrap().contains(&json!("v1.1")));

    assert_error(
        &server.get("/_matrix/client/v3/capabilities", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    let alice = server.register("alice").await;
    let (status, caps) = server.get("/_matrix/client/v3/capabilities", alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{caps}");
    let versions = &caps["capabilities"]["m.room_versions"];
    assert_eq!(versions["default"], "12");
    for version in 1..=12 {
        assert_eq!(versions["available"][version.to_string()], "stable", "{versions}");
    }
    assert!(versions["available"].get("13").is_none(), "{versions}");
}

#[tokio::test]
async fn well_known() {
    let server = TestServer::start().await;
    assert_error(
        &server.get("/.well-known/matrix/client", None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let (status, body) = server.get("/.well-known/matrix/server", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["m.server"], "localhost");

    let server = TestServer::start_with(|c| {
        c.public_baseurl = Some("https://matrix.example.org/".into());
        c.federation.delegate_to = Some("matrix.example.org:443".try_into().unwrap());
    })
    .await;
    let (_, body) = server.get("/.well-known/matrix/server", None).await;
    assert_eq!(body["m.server"], "matrix.example.org:443");
    let (status, body) = server.get("/.well-known/matrix/client", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["m.homeserver"]["base_url"], "https://matrix.example.org/");
}

#[tokio::test]
async fn unknown_endpoints_and_methods() {
    let server = TestServer::start().await;
    assert_error(
        &server.get("/_matrix/client/v3/no/such/thing", None).await,
        StatusCode::NOT_FOUND,
        "M_UNRECOGNIZED",
    );
    assert_error(
        &server.call(Method::DELETE, "/_matrix/client/versions", None, None).await,
        StatusCode::METHOD_NOT_ALLOWED,
        "M_UNRECOGNIZED",
    );
}

#[tokio::test]
async fn cors_preflight_allows_browser_clients() {
    let server = TestServer::start().await;
    let response = server
        .http
        .request(Method::OPTIONS, format!("{}/_matrix/client/v3/login", server.base))
        .header("Origin", "https://app.element.io")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization,content-type")
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let headers = response.headers();
    assert_eq!(headers["access-control-allow-origin"], "*");
    assert!(headers["access-control-allow-methods"].to_str().unwrap().contains("POST"));
    assert!(headers["access-control-allow-headers"].to_str().unwrap().contains("authorization"));

    let response = server
        .http
        .get(format!("{}/_matrix/client/versions", server.base))
        .header("Origin", "https://app.element.io")
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["access-control-allow-origin"], "*");
}

#[tokio::test]
async fn malformed_and_oversized_bodies() {
    let server = TestServer::start().await;
    let login = "/_matrix/client/v3/login";
    assert_error(
        &server.call_raw(Method::POST, login, None, "{not json").await,
        StatusCode::BAD_REQUEST,
        "M_NOT_JSON",
    );
    assert_error(
        &server.post(login, None, json!({ "type": "m.login.password", "password": 12 })).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    let huge = format!(
        "{{\"type\":\"m.login.password\",\"password\":\"{}\"}}",
        "x".repeat(2 * 1024 * 1024)
    );
    assert_error(
        &server.call_raw(Method::POST, login, None, &huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
}
