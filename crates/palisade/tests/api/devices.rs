//! Device management.

use reqwest::{Method, StatusCode};
use serde_json::json;

use palisade_testkit::{PASSWORD, TestServer, assert_error};

#[tokio::test]
async fn list_rename_and_get_devices() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let laptop = server.login("alice", Some("Laptop")).await;
    let (status, body) = server.get("/_matrix/client/v3/devices", laptop.token()).await;
    assert_eq!(status, StatusCode::OK);
    let devices = body["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2);
    let mine = devices.iter().find(|d| d["device_id"] == laptop.device_id).unwrap();
    assert_eq!(mine["display_name"], "Laptop");
    assert!(mine["last_seen_ts"].as_u64().unwrap() > 0);

    let path = format!("/_matrix/client/v3/devices/{}", laptop.device_id);
    let (status, _) =
        server.put(&path, laptop.token(), json!({ "display_name": "Work laptop" })).await;
    assert_eq!(status, StatusCode::OK);
    let (status, device) = server.get(&path, laptop.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(device["display_name"], "Work laptop");

    assert_error(
        &server.get("/_matrix/client/v3/devices/NOPE", laptop.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .put("/_matrix/client/v3/devices/NOPE", laptop.token(), json!({ "display_name": "x" }))
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn users_cannot_see_or_touch_each_others_devices() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let path = format!("/_matrix/client/v3/devices/{}", alice.device_id);
    assert_error(&server.get(&path, bob.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let (_, list) = server.get("/_matrix/client/v3/devices", bob.token()).await;
    assert_eq!(list["devices"].as_array().unwrap().len(), 1);
    let (status, _) = server.put(&path, bob.token(), json!({ "display_name": "pwned" })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Bob deleting "Alice's" device id only ever looks among his own devices.
    let auth = json!({ "devices": [alice.device_id], "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "bob" }, "password": PASSWORD } });
    assert_eq!(
        server.post("/_matrix/client/v3/delete_devices", bob.token(), auth).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.get("/_matrix/client/v3/account/whoami", alice.token()).await.0,
        StatusCode::OK
    );
}

#[tokio::test]
async fn deleting_devices_requires_the_password_and_revokes_tokens() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let phone = server.login("alice", Some("Phone")).await;
    let path = format!("/_matrix/client/v3/devices/{}", phone.device_id);

    let (status, challenge) =
        server.call(Method::DELETE, &path, alice.token(), Some(json!({}))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge["flows"], json!([{ "stages": ["m.login.password"] }]));

    let wrong = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "wrong wrong wrong", "session": challenge["session"] } });
    let (status, body) = server.call(Method::DELETE, &path, alice.token(), Some(wrong)).await;
    assert_eq!((status, body["errcode"].clone()), (StatusCode::UNAUTHORIZED, json!("M_FORBIDDEN")));
    assert_eq!(
        server.get("/_matrix/client/v3/account/whoami", phone.token()).await.0,
        StatusCode::OK
    );

    let right = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD, "session": challenge["session"] } });
    let (status, body) = server.call(Method::DELETE, &path, alice.token(), Some(right)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", phone.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_error(&server.get(&path, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let tablet = server.login("alice", Some("Tablet")).await;
    let bulk = json!({ "devices": [tablet.device_id, "UNKNOWN"], "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD } });
    assert_eq!(
        server.post("/_matrix/client/v3/delete_devices", alice.token(), bulk).await.0,
        StatusCode::OK
    );
    let (_, list) = server.get("/_matrix/client/v3/devices", alice.token()).await;
    assert_eq!(list["devices"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn whois_shows_devices_to_their_owner_and_administrators() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let admin = server.register_admin("admin").await;
    let path =
        format!("/_matrix/client/v3/admin/whois/{}", palisade_testkit::urlencode(&alice.user_id));
    server.get("/_matrix/client/v3/account/whoami", alice.token()).await;

    let (status, own) = server.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{own}");
    assert_eq!(own["user_id"], alice.user_id);
    let device = &own["devices"][&alice.device_id]["sessions"][0]["connections"][0];
    assert_eq!(device["ip"], "127.0.0.1", "{own}");
    assert!(device["last_seen"].as_u64().is_some(), "{own}");
    let (status, seen) = server.get(&path, admin.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(seen["devices"], own["devices"]);
    let (status, _) = server.get(&path, bob.token()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}
