//! Simplified sliding sync (MSC4186) through HTTP: lists sorted by activity with only the
//! requested window sent, positions, long-polling, subscriptions, invites and extensions.

use palisade_testkit::{TestServer, User, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SLIDING: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

/// A request for the first `window` rooms of the room list, with one event each.
fn room_list(window: u64) -> Value {
    json!({
        "conn_id": "room-list",
        "lists": {
            "all_rooms": {
                "ranges": [[0, window - 1]],
                "timeline_limit": 1,
                "required_state": [["m.room.name", ""], ["m.room.member", "$ME"]],
            }
        },
        "extensions": { "e2ee": { "enabled": true }, "to_device": { "enabled": true } },
    })
}

/// A sliding sync request from `pos`, waiting up to `wait_ms` for news.
async fn sliding(
    server: &TestServer,
    user: &User,
    pos: Option<&str>,
    wait_ms: u64,
    body: &Value,
) -> Value {
    let query = pos.map(|p| format!("?pos={p}&timeout={wait_ms}")).unwrap_or_default();
    let (status, response) =
        server.post(&format!("{SLIDING}{query}"), user.token(), body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{response}");
    response
}

fn rooms(response: &Value) -> Vec<String> {
    response["rooms"].as_object().map(|r| r.keys().cloned().collect()).unwrap_or_default()
}

#[tokio::test]
async fn the_room_list_window_follows_activity() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let mut created = Vec::new();
    for name in ["first", "second", "third"] {
        let room = server.create_room(&alice, json!({ "name": name })).await;
        server.send_text(&alice, &room, &format!("in {name}")).await;
        created.push(room);
    }
    let (status, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(versions["unstable_features"]["org.matrix.simplified_msc3575"], true);

    // The two most recently active rooms, in full; the count covers all three.
    let first = sliding(&server, &alice, None, 0, &room_list(2)).await;
    assert_eq!(first["lists"]["all_rooms"]["count"], 3);
    let mut sent = rooms(&first);
    sent.sort();
    let mut expected = vec![created[1].clone(), created[2].clone()];
    expected.sort();
    assert_eq!(sent, expected);
    let third = &first["rooms"][&created[2]];
    assert_eq!(third["initial"], true);
    assert_eq!(third["name"], "third");
    let timeline = third["timeline"].as_array().unwrap();
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0]["content"]["body"], "in third");
    assert_eq!(third["limited"], true);
    assert!(third["prev_batch"].is_string());
    assert_eq!(third["joined_count"], 1);
    assert!(
        third["bump_stamp"].as_u64().unwrap()
            > first["rooms"][&created[1]]["bump_stamp"].as_u64().unwrap()
    );
    let state: Vec<&str> = third["required_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(state.len(), 2, "{state:?}");
    assert!(state.contains(&"m.room.name") && state.contains(&"m.room.member"));
    assert!(first["extensions"]["to_device"]["next_batch"].is_string());
    let pos = first["pos"].as_str().unwrap().to_owned();

    // A message in the oldest room moves it into the window: sent in full (it never was);
    // the request waits for it.
    let waiting = {
        let (server, alice, pos) = (&server, &alice, pos.clone());
        async move { sliding(server, alice, Some(&pos), 10_000, &room_list(2)).await }
    };
    let sender = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        server.send_text(&alice, &created[0], "back on top").await;
    };
    let (next, ()) = tokio::join!(waiting, sender);
    assert_eq!(rooms(&next), [created[0].clone()], "{next}");
    let moved = &next["rooms"][&created[0]];
    assert_eq!(moved["initial"], true);
    assert_eq!(moved["timeline"][0]["content"]["body"], "back on top");
    let pos = next["pos"].as_str().unwrap().to_owned();

    // A room already sent gets only what is new.
    server.send_text(&alice, &created[2], "more").await;
    let update = sliding(&server, &alice, Some(&pos), 0, &room_list(2)).await;
    assert_eq!(rooms(&update), [created[2].clone()]);
    let room = &update["rooms"][&created[2]];
    assert!(room.get("initial").is_none(), "{room}");
    assert_eq!(room["timeline"].as_array().unwrap().len(), 1);
    assert_eq!(room["timeline"][0]["content"]["body"], "more");
    assert_eq!(room["num_live"], 1);
    assert!(room["required_state"].as_array().is_none_or(|s| s.is_empty()), "{room}");
    let pos = update["pos"].as_str().unwrap().to_owned();

    // The previous position still answers (a lost response is retried), an unknown one does
    // not.
    let retried = sliding(&server, &alice, Some(&pos), 0, &room_list(2)).await;
    assert!(retried["pos"].is_string());
    let (status, body) =
        server.post(&format!("{SLIDING}?pos=999999"), alice.token(), room_list(2)).await;
    assert_error(&(status, body), StatusCode::BAD_REQUEST, "M_UNKNOWN_POS");
    let (status, _) = server.post(SLIDING, None, room_list(2)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // An invite appears in the list with its invite state; a subscription brings a room
    // outside the window.
    let invited =
        server.create_room(&bob, json!({ "name": "from bob", "invite": [alice.user_id] })).await;
    let fresh = sliding(&server, &alice, None, 0, &room_list(1)).await;
    assert_eq!(fresh["lists"]["all_rooms"]["count"], 4);
    assert_eq!(rooms(&fresh), std::slice::from_ref(&invited), "the invite is the latest activity");
    let invite = &fresh["rooms"][&invited];
    let stripped: Vec<&str> = invite["invite_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(stripped.contains(&"m.room.name") && stripped.contains(&"m.room.member"));
    let mut subscribed = room_list(1);
    subscribed["room_subscriptions"] =
        json!({ created[1].clone(): { "timeline_limit": 2, "required_state": [["*", "*"]] } });
    let pos = fresh["pos"].as_str().unwrap().to_owned();
    let with_subscription = sliding(&server, &alice, Some(&pos), 0, &subscribed).await;
    let room = &with_subscription["rooms"][&created[1]];
    assert_eq!(room["initial"], true, "{with_subscription}");
    assert_eq!(room["timeline"].as_array().unwrap().len(), 2);
    assert!(room["required_state"].as_array().unwrap().len() >= 5, "all state");

    // `$LAZY`: the members of the timeline's senders come with it, also in an update.
    let lazy_room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    let mut lazy = room_list(1);
    lazy["lists"]["all_rooms"]["required_state"] = json!([["m.room.member", "$LAZY"]]);
    let start = sliding(&server, &alice, None, 0, &lazy).await;
    server.join(&bob, &lazy_room).await;
    server.send_text(&bob, &lazy_room, "hi alice").await;
    let pos = start["pos"].as_str().unwrap().to_owned();
    let update = sliding(&server, &alice, Some(&pos), 0, &lazy).await;
    let pos = update["pos"].as_str().unwrap().to_owned();
    server.send_text(&bob, &lazy_room, "again").await;
    let update = sliding(&server, &alice, Some(&pos), 0, &lazy).await;
    let room = &update["rooms"][&lazy_room];
    assert_eq!(room["timeline"][0]["content"]["body"], "again", "{update}");
    let members: Vec<&str> = room["required_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert_eq!(members, [bob.user_id.as_str()]);

    // Filters: invites only.
    let mut invites_only = room_list(10);
    invites_only["lists"]["all_rooms"]["filters"] = json!({ "is_invite": true });
    let only = sliding(&server, &alice, None, 0, &invites_only).await;
    assert_eq!(only["lists"]["all_rooms"]["count"], 1);
    assert_eq!(rooms(&only), [invited]);
}

#[tokio::test]
async fn connections_continue_after_a_restart() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice, json!({ "name": "kept" })).await;
    let first = sliding(&server, &alice, None, 0, &room_list(5)).await;
    let pos = first["pos"].as_str().unwrap().to_owned();

    let config = server.config.clone();
    let dir = server.stop().await;
    let server = TestServer::start_on(config).await;
    server.send_text(&alice, &room, "after the restart").await;
    // The position from before the restart goes on: only the new message, not the room anew.
    let update = sliding(&server, &alice, Some(&pos), 0, &room_list(5)).await;
    let sent = &update["rooms"][&room];
    assert!(sent.get("initial").is_none(), "{update}");
    assert_eq!(sent["timeline"][0]["content"]["body"], "after the restart");
    let next = update["pos"].as_str().unwrap();
    assert_ne!(next, pos, "positions after the restart do not reuse earlier ones");
    drop((server, dir));
}

#[tokio::test]
async fn typing_wakes_a_connection_and_is_delivered() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    let mut request = room_list(5);
    request["extensions"] = json!({ "typing": { "enabled": true } });
    let first = sliding(&server, &alice, None, 0, &request).await;
    let pos = first["pos"].as_str().unwrap().to_owned();

    let waiting = {
        let (server, alice, request) = (&server, &alice, request.clone());
        async move { sliding(server, alice, Some(&pos), 10_000, &request).await }
    };
    let typing = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        let path = format!(
            "/_matrix/client/v3/rooms/{room}/typing/{}",
            palisade_testkit::urlencode(&bob.user_id)
        );
        let (status, body) =
            server.put(&path, bob.token(), json!({ "typing": true, "timeout": 10000 })).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    };
    let started = std::time::Instant::now();
    let (update, ()) = tokio::join!(waiting, typing);
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "woken, not timed out");
    assert_eq!(
        update["extensions"]["typing"]["rooms"][&room]["content"]["user_ids"],
        json!([bob.user_id]),
        "{update}"
    );
}

#[tokio::test]
async fn a_list_without_timelines_still_tells_of_changes() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice, json!({ "name": "before" })).await;
    let mut request = room_list(5);
    request["lists"]["all_rooms"]["timeline_limit"] = json!(0);
    let first = sliding(&server, &alice, None, 0, &request).await;
    assert_eq!(first["rooms"][&room]["name"], "before");
    let pos = first["pos"].as_str().unwrap().to_owned();

    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/");
    assert_eq!(
        server.put(&path, alice.token(), json!({ "name": "after" })).await.0,
        StatusCode::OK
    );
    let update = sliding(&server, &alice, Some(&pos), 0, &request).await;
    let sent = &update["rooms"][&room];
    assert_eq!(sent["name"], "after", "{update}");
    assert!(sent["timeline"].as_array().is_none_or(|t| t.is_empty()), "{sent}");
    let state: Vec<&str> = sent["required_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(state, ["m.room.name"]);
}
