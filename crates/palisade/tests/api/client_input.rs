//! What clients send that Synapse accepts (empty bodies, bursts of room creation) or bounds
//! (oversized search terms), and the defaults clients expect (push rules).

use palisade_testkit::{TestServer, assert_error};
use reqwest::{Method, StatusCode};
use serde_json::json;

const C: &str = "/_matrix/client/v3";

#[tokio::test]
async fn an_empty_body_reads_as_an_empty_object() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let empty = |path: String, token| {
        let server = &server;
        async move { server.call_raw(Method::POST, &path, token, "").await }
    };

    // Every field of these is optional.
    let (status, created) = empty(format!("{C}/createRoom"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let room = created["room_id"].as_str().unwrap().to_owned();
    let invite = json!({ "user_id": bob.user_id });
    server.post(&format!("{C}/rooms/{room}/invite"), alice.token(), invite).await;
    for path in [format!("{C}/join/{room}"), format!("{C}/rooms/{room}/read_markers")] {
        let answer = empty(path.clone(), bob.token()).await;
        assert_eq!(answer.0, StatusCode::OK, "{path}: {}", answer.1);
    }
    for path in [format!("{C}/rooms/{room}/leave"), format!("{C}/rooms/{room}/forget")] {
        let answer = empty(path.clone(), bob.token()).await;
        assert_eq!(answer.0, StatusCode::OK, "{path}: {}", answer.1);
    }
    let invite = json!({ "user_id": bob.user_id });
    server.post(&format!("{C}/rooms/{room}/invite"), alice.token(), invite).await;
    let answer = empty(format!("{C}/rooms/{room}/join"), bob.token()).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
    let answer = empty(format!("{C}/logout"), bob.token()).await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);

    // A required field is still required, and says which.
    let answer = empty(format!("{C}/rooms/{room}/invite"), alice.token()).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let answer = empty(format!("{C}/login"), None).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "M_MISSING_PARAM");
    // Where the body is the content itself, an empty one is no content.
    for path in [
        format!("{C}/rooms/{room}/send/m.room.message/empty1"),
        format!("{C}/rooms/{room}/state/m.room.power_levels/"),
        format!("{C}/user/{}/account_data/org.example.empty", alice.user_id),
    ] {
        let answer = server.call_raw(Method::PUT, &path, alice.token(), "").await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "M_NOT_JSON");
    }
    // Neither changed anything: alice and bob are the members, nobody else is invited.
    let members = format!("{C}/rooms/{room}/members");
    let (_, members) = server.get(&members, alice.token()).await;
    assert_eq!(members["chunk"].as_array().unwrap().len(), 2, "{members}");
}

#[tokio::test]
async fn rooms_created_at_once_never_collide() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let path = format!("{C}/createRoom");
    let creations = (0..200).map(|_| server.post(&path, alice.token(), json!({})));
    let answers = futures_util::future::join_all(creations).await;
    let mut rooms: Vec<String> = answers
        .iter()
        .map(|(status, body)| {
            assert_eq!(*status, StatusCode::OK, "{body}");
            body["room_id"].as_str().unwrap().to_owned()
        })
        .collect();
    rooms.sort();
    rooms.dedup();
    assert_eq!(rooms.len(), 200);
    let (_, joined) = server.get(&format!("{C}/joined_rooms"), alice.token()).await;
    assert_eq!(joined["joined_rooms"].as_array().unwrap().len(), 200);
}

#[tokio::test]
async fn an_oversized_search_term_is_refused() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let term = "a".repeat(100_000);
    let answer = server
        .post(&format!("{C}/user_directory/search"), alice.token(), json!({ "search_term": term }))
        .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let answer = server
        .post(&format!("{C}/user_directory/search"), alice.token(), json!({ "search_term": "ali" }))
        .await;
    assert_eq!(answer.0, StatusCode::OK, "{}", answer.1);
}

#[tokio::test]
async fn default_push_rules_include_the_legacy_mention_rules() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (status, rules) = server.get(&format!("{C}/pushrules/"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{rules}");
    let ids: Vec<&str> = rules["global"]["override"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["rule_id"].as_str().unwrap())
        .collect();
    let at =
        |id: &str| ids.iter().position(|r| *r == id).unwrap_or_else(|| panic!("{id}: {ids:?}"));
    assert!(at(".m.rule.is_user_mention") < at(".m.rule.contains_display_name"));
    assert!(at(".m.rule.contains_display_name") < at(".m.rule.is_room_mention"));
    assert!(at(".m.rule.is_room_mention") < at(".m.rule.roomnotif"));
    assert!(at(".m.rule.roomnotif") < at(".m.rule.tombstone"));
}

/// Requests the spec allows (or Synapse accepts) that a strict parser would refuse, and the
/// answers Synapse gives where paths or rooms are unknown.
#[tokio::test]
async fn lenient_forms_and_synapse_answers() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room_id = server.create_room(&alice, json!({})).await;
    server.send_text(&alice, &room_id, "first").await;

    // Typing without the `timeout` the spec leaves optional.
    let typing = format!("{C}/rooms/{room_id}/typing/{}", alice.user_id);
    let (status, body) = server.put(&typing, alice.token(), json!({ "typing": true })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sync = server.sync(&alice, "").await;
    let ephemeral = &sync["rooms"]["join"][&room_id]["ephemeral"]["events"];
    assert_eq!(ephemeral[0]["content"]["user_ids"], json!([alice.user_id]), "{sync}");

    // `/messages` without `dir` pages forwards, from the start of the room.
    let (status, page) = server.get(&format!("{C}/rooms/{room_id}/messages"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["chunk"][0]["type"], "m.room.create", "{page}");

    // An event of a room the user is not in is "not found", as for any event they may not read.
    let bob = server.register("bob").await;
    let (_, sent) = server.send_text(&alice, &room_id, "private").await;
    let event = format!("{C}/rooms/{room_id}/event/{}", sent["event_id"].as_str().unwrap());
    assert_error(&server.get(&event, bob.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let unknown = format!("{C}/rooms/!nowhere:localhost/event/$nothing");
    assert_error(&server.get(&unknown, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // Push rule paths with an unknown scope, or a kind without its trailing slash.
    for path in ["/pushrules/device/room/x", "/pushrules/global/room", "/pushrules/global"] {
        assert_error(
            &server.get(&format!("{C}{path}"), alice.token()).await,
            StatusCode::BAD_REQUEST,
            "M_UNRECOGNIZED",
        );
    }
    assert_error(
        &server.get(&format!("{C}/pushrules/global/room"), None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
}
