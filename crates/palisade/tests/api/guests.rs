//! Guest accounts: off by default; when allowed, guests read world-readable rooms, join only
//! rooms that let guests in, and reach only the endpoints the spec lists for them.

use palisade_testkit::{PASSWORD, TestServer, User, assert_error, message_texts};
use reqwest::StatusCode;
use serde_json::{Value, json};

const GUEST_REGISTER: &str = "/_matrix/client/v3/register?kind=guest";

async fn register_guest(server: &TestServer) -> User {
    let (status, body) = server.post(GUEST_REGISTER, None, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let text = |key: &str| body[key].as_str().unwrap().to_owned();
    User { user_id: text("user_id"), device_id: text("device_id"), token: text("access_token") }
}

#[tokio::test]
async fn guests_are_refused_unless_the_server_allows_them() {
    let server = TestServer::start().await;
    assert_error(
        &server.post(GUEST_REGISTER, None, json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

#[tokio::test]
async fn guests_read_public_history_and_join_only_rooms_open_to_guests() {
    let server = TestServer::start_with(|config| config.allow_guest_access = true).await;
    let alice = server.register("alice").await;
    let guest = register_guest(&server).await;
    let other = register_guest(&server).await;
    assert_ne!(guest.user_id, other.user_id);
    let (status, whoami) = server.get("/_matrix/client/v3/account/whoami", guest.token()).await;
    assert_eq!(status, StatusCode::OK, "{whoami}");
    assert_eq!(whoami["is_guest"], true);
    let (_, whoami) = server.get("/_matrix/client/v3/account/whoami", alice.token()).await;
    assert_ne!(whoami["is_guest"], true, "{whoami}");

    // A public room whose history anyone may read: the guest reads it without joining.
    let body = json!({
        "preset": "public_chat",
        "initial_state": [{
            "type": "m.room.history_visibility",
            "state_key": "",
            "content": { "history_visibility": "world_readable" },
        }],
    });
    let room_id = server.create_room(&alice, body).await;
    server.send_text(&alice, &room_id, "welcome, readers").await;
    let messages = format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b");
    let (status, page) = server.get(&messages, guest.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(message_texts(&page), ["welcome, readers"]);

    // Joining needs `m.room.guest_access: can_join`.
    let join = format!("/_matrix/client/v3/join/{room_id}");
    assert_error(
        &server.post(&join, guest.token(), json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let guest_access = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.guest_access/");
    let (status, body) =
        server.put(&guest_access, alice.token(), json!({ "guest_access": "can_join" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.post(&join, guest.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = server.send_text(&guest, &room_id, "a guest says hello").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(server.texts(&alice, &room_id).await.contains(&"a guest says hello".to_owned()));
    let sync = server.sync(&guest, "").await;
    assert!(sync["rooms"]["join"].get(&room_id).is_some(), "{sync}");

    // What guests may not do, whatever the room allows.
    let forbidden: [(reqwest::Method, String, Value); 4] = [
        (reqwest::Method::POST, "/_matrix/client/v3/createRoom".to_owned(), json!({})),
        (
            reqwest::Method::PUT,
            format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.topic/"),
            json!({ "topic": "guests' room" }),
        ),
        (
            reqwest::Method::POST,
            format!("/_matrix/client/v3/rooms/{room_id}/invite"),
            json!({ "user_id": other.user_id }),
        ),
        (reqwest::Method::POST, "/_matrix/client/v3/logout/all".to_owned(), json!({})),
    ];
    for (method, path, body) in forbidden {
        assert_error(
            &server.call(method, &path, guest.token(), Some(body)).await,
            StatusCode::FORBIDDEN,
            "M_GUEST_ACCESS_FORBIDDEN",
        );
    }
    // Nothing the guest was refused happened.
    let topic = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.topic/");
    assert_error(&server.get(&topic, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // Closing the room to guests makes the guests in it leave.
    let (status, body) =
        server.put(&guest_access, alice.token(), json!({ "guest_access": "forbidden" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let member =
        format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{}", guest.user_id);
    assert_eq!(server.get(&member, alice.token()).await.1["membership"], "leave");
    let (status, _) = server.send_text(&guest, &room_id, "still here?").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_error(
        &server.post(&join, guest.token(), json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
}

/// A guest registers a full account under its own id (with its guest token, as Synapse
/// upgrades guests); nobody else's token or name will do.
#[tokio::test]
async fn a_guest_becomes_a_full_account_under_its_id() {
    let server = TestServer::start_with(|config| config.allow_guest_access = true).await;
    let guest = register_guest(&server).await;
    let other = register_guest(&server).await;
    let alice = server.register("alice").await;
    let localpart =
        |user: &User| user.user_id.trim_start_matches('@').split(':').next().unwrap().to_owned();
    const REGISTER: &str = "/_matrix/client/v3/register";

    // Someone else's name, or a token that is not a guest's, is refused.
    for (name, token) in [(localpart(&other), &guest.token), (localpart(&guest), &alice.token)] {
        let body = json!({ "username": name, "password": PASSWORD, "guest_access_token": token, "auth": { "type": "m.login.dummy" } });
        assert_error(
            &server.post(REGISTER, None, body).await,
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
        );
    }

    let body = json!({ "username": localpart(&guest), "password": PASSWORD, "guest_access_token": guest.token });
    let (status, challenge) = server.post(REGISTER, None, body.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    let mut body = body;
    body["auth"] = json!({ "type": "m.login.dummy", "session": challenge["session"] });
    let (status, upgraded) = server.post(REGISTER, None, body).await;
    assert_eq!(status, StatusCode::OK, "{upgraded}");
    assert_eq!(upgraded["user_id"], guest.user_id);
    let token = upgraded["access_token"].as_str();
    let (_, whoami) = server.get("/_matrix/client/v3/account/whoami", token).await;
    assert_eq!(whoami["user_id"], guest.user_id);
    assert_ne!(whoami["is_guest"], true, "{whoami}");
    let (status, room) = server.post("/_matrix/client/v3/createRoom", token, json!({})).await;
    assert_eq!(status, StatusCode::OK, "a full account creates rooms: {room}");
    server.login(&localpart(&guest), None).await;
}
