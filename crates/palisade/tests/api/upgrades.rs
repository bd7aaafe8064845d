//! Room upgrades through HTTP, as Element's "upgrade this room" does them: the new room
//! carries the old one's state, bans, aliases and listing; the old one is closed with a
//! tombstone; members follow.

use palisade_testkit::{TestServer, User, assert_error, urlencode};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn upgrade(server: &TestServer, user: &User, room: &str, body: Value) -> (StatusCode, Value) {
    server.post(&format!("/_matrix/client/v3/rooms/{room}/upgrade"), user.token(), body).await
}

async fn state(server: &TestServer, user: &User, room: &str, kind: &str, key: &str) -> Value {
    let path = format!("/_matrix/client/v3/rooms/{room}/state/{kind}/{}", urlencode(key));
    let (status, content) = server.get(&path, user.token()).await;
    assert_eq!(status, StatusCode::OK, "{kind}: {content}");
    content
}

#[tokio::test]
async fn an_upgraded_room_carries_on_the_old_one() {
    let server = TestServer::start().await;
    let (alice, bob, carol, eve) = (
        server.register("alice").await,
        server.register("bob").await,
        server.register("carol").await,
        server.register("eve").await,
    );
    let old = server
        .create_room(
            &alice,
            json!({
                "room_version": "10",
                "preset": "public_chat",
                "visibility": "public",
                "name": "Old times",
                "topic": "Anything goes",
                "room_alias_name": "times",
                "power_level_content_override": { "users": { alice.user_id.as_str(): 100, bob.user_id.as_str(): 50 } },
            }),
        )
        .await;
    server.join(&bob, &old).await;
    server.join(&carol, &old).await;
    let ban = format!("/_matrix/client/v3/rooms/{old}/ban");
    let (status, _) =
        server.post(&ban, alice.token(), json!({ "user_id": eve.user_id, "reason": "spam" })).await;
    assert_eq!(status, StatusCode::OK);

    // Bob may not close the room (tombstones need 100); nothing happens.
    assert_error(
        &upgrade(&server, &bob, &old, json!({ "new_version": "11" })).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );

    let (status, body) = upgrade(&server, &alice, &old, json!({ "new_version": "11" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new = body["replacement_room"].as_str().unwrap().to_owned();
    assert_ne!(new, old);

    // The new room: version, predecessor, copied state, power levels, bans, alias, listing.
    let create = state(&server, &alice, &new, "m.room.create", "").await;
    assert_eq!(create["room_version"], "11");
    assert_eq!(create["predecessor"]["room_id"], old);
    assert!(create["predecessor"]["event_id"].is_string(), "{create}");
    assert_eq!(state(&server, &alice, &new, "m.room.name", "").await["name"], "Old times");
    assert_eq!(state(&server, &alice, &new, "m.room.topic", "").await["topic"], "Anything goes");
    assert_eq!(state(&server, &alice, &new, "m.room.join_rules", "").await["join_rule"], "public");
    let levels = state(&server, &alice, &new, "m.room.power_levels", "").await;
    assert_eq!(levels["users"][bob.user_id.as_str()], 50, "{levels}");
    let banned = state(&server, &alice, &new, "m.room.member", &eve.user_id).await;
    assert_eq!(
        (banned["membership"].as_str(), banned["reason"].as_str()),
        (Some("ban"), Some("spam"))
    );
    let alias = format!("#times:{}", server.server_name());
    assert_eq!(state(&server, &alice, &new, "m.room.canonical_alias", "").await["alias"], alias);
    let (_, resolved) =
        server.get(&format!("/_matrix/client/v3/directory/room/{}", urlencode(&alias)), None).await;
    assert_eq!(resolved["room_id"], new, "the alias moved");
    let (_, listed) = server.get("/_matrix/client/v3/publicRooms", None).await;
    let listed: Vec<&str> = listed["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["room_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [new.as_str()], "the listing moved");

    // The old room: tombstone, no alias, ordinary members may no longer talk.
    let tombstone = state(&server, &bob, &old, "m.room.tombstone", "").await;
    assert_eq!(tombstone["replacement_room"], new);
    let old_levels = state(&server, &alice, &old, "m.room.power_levels", "").await;
    assert_eq!(
        (old_levels["events_default"].clone(), old_levels["invite"].clone()),
        (json!(50), json!(50))
    );
    let (status, _) = server.send_text(&carol, &old, "still here?").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(state(&server, &alice, &old, "m.room.canonical_alias", "").await, json!({}));

    // Bob follows the tombstone: he sees it in his sync and joins the new room.
    let sync = server.sync(&bob, "").await;
    let timeline = &sync["rooms"]["join"][&old]["timeline"]["events"];
    assert!(timeline.as_array().unwrap().iter().any(|e| e["type"] == "m.room.tombstone"), "{sync}");
    server.join(&bob, &new).await;
    let (status, _) = server.send_text(&bob, &new, "made it").await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn upgrades_to_version_12_privilege_the_creators() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let old =
        server.create_room(&alice, json!({ "room_version": "11", "invite": [bob.user_id] })).await;
    server.join(&bob, &old).await;
    let body = json!({ "new_version": "12", "additional_creators": [bob.user_id] });
    let (status, body) = upgrade(&server, &alice, &old, body).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new = body["replacement_room"].as_str().unwrap();
    let create = state(&server, &alice, new, "m.room.create", "").await;
    assert_eq!(create["additional_creators"], json!([bob.user_id]));
    let levels = state(&server, &alice, new, "m.room.power_levels", "").await;
    assert!(levels["users"].get(alice.user_id.as_str()).is_none(), "{levels}");
    // Back down to 11: alice keeps her power as a listed user.
    let (status, body) = upgrade(&server, &alice, new, json!({ "new_version": "11" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let newer = body["replacement_room"].as_str().unwrap();
    let levels = state(&server, &alice, newer, "m.room.power_levels", "").await;
    assert_eq!(levels["users"][alice.user_id.as_str()], 100, "{levels}");
}

#[tokio::test]
async fn bad_upgrades_get_matrix_errors_and_change_nothing() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let room = server.create_room(&alice, json!({ "room_version": "10" })).await;
    let unsupported = upgrade(&server, &alice, &room, json!({ "new_version": "99" })).await;
    assert_error(&unsupported, StatusCode::BAD_REQUEST, "M_UNSUPPORTED_ROOM_VERSION");
    let missing = upgrade(&server, &alice, &room, json!({})).await;
    assert_error(&missing, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let outsider = upgrade(&server, &bob, &room, json!({ "new_version": "11" })).await;
    assert_error(&outsider, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    let unknown = format!("!nowhere:{}", server.server_name());
    let (status, _) = upgrade(&server, &alice, &unknown, json!({ "new_version": "11" })).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let creators = json!({ "new_version": "11", "additional_creators": [bob.user_id] });
    assert_error(
        &upgrade(&server, &alice, &room, creators).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    // The room is as it was: no tombstone, alice can still talk.
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.tombstone/");
    assert_error(&server.get(&path, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_eq!(server.send_text(&alice, &room, "unchanged").await.0, StatusCode::OK);
}

#[tokio::test]
async fn a_members_tags_and_room_push_rule_follow_them_to_the_new_room() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let old =
        server.create_room(&alice, json!({ "preset": "public_chat", "room_version": "10" })).await;
    server.join(&bob, &old).await;
    let bob_id = urlencode(&bob.user_id);
    let tag = format!("/_matrix/client/v3/user/{bob_id}/rooms/{old}/tags/m.favourite");
    assert_eq!(server.put(&tag, bob.token(), json!({ "order": 0.5 })).await.0, StatusCode::OK);
    let rule = format!("/_matrix/client/v3/pushrules/global/room/{}", urlencode(&old));
    let (status, body) = server.put(&rule, bob.token(), json!({ "actions": [] })).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let (status, body) = upgrade(&server, &alice, &old, json!({ "new_version": "11" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let new = body["replacement_room"].as_str().unwrap().to_owned();
    server.join(&bob, &new).await;

    let tags = format!("/_matrix/client/v3/user/{bob_id}/rooms/{new}/tags");
    let (_, tags) = server.get(&tags, bob.token()).await;
    assert_eq!(tags["tags"]["m.favourite"]["order"], 0.5, "{tags}");
    let rule = format!("/_matrix/client/v3/pushrules/global/room/{}", urlencode(&new));
    let (status, carried) = server.get(&rule, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{carried}");
    assert_eq!(carried["actions"], json!([]));
}
