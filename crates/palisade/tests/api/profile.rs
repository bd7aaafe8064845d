//! Profiles.

use reqwest::StatusCode;
use serde_json::json;

use palisade_testkit::{TestServer, assert_error};

#[tokio::test]
async fn set_and_read_profiles() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (status, profile) = server.get("/_matrix/client/v3/profile/@alice:localhost", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(profile["displayname"], "alice");

    let name = "/_matrix/client/v3/profile/@alice:localhost/displayname";
    let avatar = "/_matrix/client/v3/profile/@alice:localhost/avatar_url";
    assert_eq!(
        server.put(name, alice.token(), json!({ "displayname": "Alice A." })).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.put(avatar, alice.token(), json!({ "avatar_url": "mxc://localhost/abc" })).await.0,
        StatusCode::OK
    );
    let (_, body) = server.get(name, bob.token()).await;
    assert_eq!(body["displayname"], "Alice A.");
    let (_, body) = server.get(avatar, None).await;
    assert_eq!(body["avatar_url"], "mxc://localhost/abc");
    let (_, profile) = server.get("/_matrix/client/v3/profile/@alice:localhost", None).await;
    assert_eq!(profile, json!({ "displayname": "Alice A.", "avatar_url": "mxc://localhost/abc" }));

    assert_error(
        &server.put(name, bob.token(), json!({ "displayname": "Mallory" })).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    assert_error(
        &server.put(name, None, json!({ "displayname": "Mallory" })).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    let (_, body) = server.get(name, None).await;
    assert_eq!(body["displayname"], "Alice A.");
    assert_error(
        &server.get("/_matrix/client/v3/profile/@nobody:localhost", None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.get("/_matrix/client/v3/profile/not-a-user-id", None).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
}
