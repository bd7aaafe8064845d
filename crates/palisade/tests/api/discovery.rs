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

#[tokio::test]
async fn support_contacts_are_announced_when_configured() {
    let server = TestServer::start().await;
    let (status, _) = server.get("/.well-known/matrix/support", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing configured");

    let server = TestServer::start_with(|config| {
        config.support = toml::from_str(
            r#"page = "https://help.example.org"
               [[contacts]]
               role = "m.role.admin"
               matrix_id = "@admin:localhost"
               email_address = "admin@example.org"
               [[contacts]]
               role = "m.role.security"
               email_address = "security@example.org""#,
        )
        .unwrap();
    })
    .await;
    let (status, support) = server.get("/.well-known/matrix/support", None).await;
    assert_eq!(status, StatusCode::OK, "{support}");
    assert_eq!(support["support_page"], "https://help.example.org");
    assert_eq!(support["contacts"][0]["role"], "m.role.admin");
    assert_eq!(support["contacts"][0]["matrix_id"], "@admin:localhost");
    assert_eq!(support["contacts"][0]["email_address"], "admin@example.org");
    assert_eq!(support["contacts"][1]["role"], "m.role.security");
}

#[tokio::test]
async fn third_party_lookups_find_no_bridges() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (status, protocols) =
        server.get("/_matrix/client/v3/thirdparty/protocols", alice.token()).await;
    assert_eq!((status, protocols), (StatusCode::OK, json!({})));
    assert_error(
        &server.get("/_matrix/client/v3/thirdparty/protocol/irc", alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    for path in [
        "/_matrix/client/v3/thirdparty/location/irc?channel=x",
        "/_matrix/client/v3/thirdparty/user/irc?nick=x",
        "/_matrix/client/v3/thirdparty/location?alias=%23x:localhost",
        "/_matrix/client/v3/thirdparty/user?userid=@x:localhost",
    ] {
        let (status, found) = server.get(path, alice.token()).await;
        assert_eq!((status, found), (StatusCode::OK, json!([])), "{path}");
    }
    let (status, _) = server.get("/_matrix/client/v3/thirdparty/protocols", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}
