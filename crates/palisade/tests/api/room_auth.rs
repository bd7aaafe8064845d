//! The authorization rules, seen through the Client-Server API.

use reqwest::StatusCode;
use serde_json::json;

use palisade_testkit::{TestServer, assert_error, assert_forbidden, urlencode};

#[tokio::test]
async fn non_members_cannot_read_or_send() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let mallory = server.register("mallory").await;
    let room_id = server.create_room(&alice, json!({ "name": "Private" })).await;
    server.send_text(&alice, &room_id, "secret").await;

    assert_forbidden(&server.send_text(&mallory, &room_id, "let me in").await);
    for path in ["messages?dir=b", "state", "state/m.room.name/", "members", "joined_members"] {
        assert_forbidden(
            &server
                .get(&format!("/_matrix/client/v3/rooms/{room_id}/{path}"), mallory.token())
                .await,
        );
    }
    assert_forbidden(
        &server
            .put(
                &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name/"),
                mallory.token(),
                json!({ "name": "pwned" }),
            )
            .await,
    );
    // Invite-only: joining without an invite fails, and nothing changed.
    assert_forbidden(&server.membership(&mallory, &room_id, "join", None).await);
    let (_, members) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/joined_members"), alice.token())
        .await;
    assert_eq!(members["joined"].as_object().unwrap().len(), 1);
    // Unknown rooms look the same as rooms one is not in.
    let unknown = "!doesnotexist:localhost";
    assert_forbidden(&server.send_text(&mallory, unknown, "x").await);
    assert_forbidden(
        &server.get(&format!("/_matrix/client/v3/rooms/{unknown}/state"), mallory.token()).await,
    );
    assert_error(
        &server.membership(&mallory, unknown, "join", None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn members_without_power_cannot_change_state() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id =
        server.create_room(&alice, json!({ "preset": "public_chat", "name": "Original" })).await;
    server.join(&bob, &room_id).await;
    let name_path = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name/");
    assert_forbidden(&server.put(&name_path, bob.token(), json!({ "name": "Bob's room" })).await);
    let power_path = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/");
    let (_, mut power) = server.get(&power_path, alice.token()).await;
    let mut escalated = power.clone();
    escalated["users"][&bob.user_id] = json!(100);
    assert_forbidden(&server.put(&power_path, bob.token(), escalated).await);
    assert_eq!(server.get(&name_path, bob.token()).await.1["name"], "Original");

    // Once Alice grants power, the same change goes through.
    power["users"][&bob.user_id] = json!(50);
    assert_eq!(server.put(&power_path, alice.token(), power).await.0, StatusCode::OK);
    assert_eq!(
        server.put(&name_path, bob.token(), json!({ "name": "Bob's room" })).await.0,
        StatusCode::OK
    );
    assert_eq!(server.get(&name_path, alice.token()).await.1["name"], "Bob's room");
    // Bob still cannot kick the room's creator.
    assert_forbidden(&server.membership(&bob, &room_id, "kick", Some(&alice)).await);
}

#[tokio::test]
async fn invites_kicks_and_bans() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room_id = server.create_room(&alice, json!({ "preset": "private_chat" })).await;

    // Only members with the invite level may invite (private_chat: 50).
    assert_eq!(server.membership(&alice, &room_id, "invite", Some(&bob)).await.0, StatusCode::OK);
    server.join(&bob, &room_id).await;
    assert_forbidden(&server.membership(&bob, &room_id, "invite", Some(&carol)).await);
    assert_forbidden(&server.membership(&alice, &room_id, "invite", Some(&bob)).await);

    // Kick: Bob leaves the room but may rejoin after a new invite.
    assert_eq!(server.membership(&alice, &room_id, "kick", Some(&bob)).await.0, StatusCode::OK);
    assert_forbidden(&server.send_text(&bob, &room_id, "still here?").await);
    assert_forbidden(&server.membership(&alice, &room_id, "kick", Some(&bob)).await);
    assert_eq!(server.membership(&alice, &room_id, "invite", Some(&bob)).await.0, StatusCode::OK);
    server.join(&bob, &room_id).await;

    // Ban: a banned user cannot rejoin, even when invited, until unbanned.
    assert_eq!(server.membership(&alice, &room_id, "ban", Some(&bob)).await.0, StatusCode::OK);
    assert_forbidden(&server.membership(&bob, &room_id, "join", None).await);
    assert_forbidden(&server.membership(&alice, &room_id, "invite", Some(&bob)).await);
    let (_, member) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{}", bob.user_id),
            alice.token(),
        )
        .await;
    assert_eq!(member["membership"], "ban");
    assert_eq!(member["reason"], "test");
    assert_forbidden(&server.membership(&alice, &room_id, "unban", Some(&carol)).await);
    assert_eq!(server.membership(&alice, &room_id, "unban", Some(&bob)).await.0, StatusCode::OK);
    assert_forbidden(&server.membership(&bob, &room_id, "join", None).await);
    assert_eq!(server.membership(&alice, &room_id, "invite", Some(&bob)).await.0, StatusCode::OK);
    server.join(&bob, &room_id).await;

    let (_, joined) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/joined_members"), bob.token())
        .await;
    let joined = joined["joined"].as_object().unwrap();
    assert_eq!(joined.len(), 2);
    assert_eq!(joined[&bob.user_id]["display_name"], "bob");
    let (_, members) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/members?membership=join"), bob.token())
        .await;
    assert_eq!(members["chunk"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn leaving_and_forgetting() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room_id).await;
    server.send_text(&alice, &room_id, "while bob was here").await;
    assert_error(
        &server
            .post(&format!("/_matrix/client/v3/rooms/{room_id}/forget"), bob.token(), json!({}))
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_STATE",
    );
    assert_eq!(server.membership(&bob, &room_id, "leave", None).await.0, StatusCode::OK);
    server.send_text(&alice, &room_id, "after bob left").await;

    let (_, joined) = server.get("/_matrix/client/v3/joined_rooms", bob.token()).await;
    assert_eq!(joined["joined_rooms"], json!([]));
    // History stays readable up to the leave, and no further.
    let (status, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=3"), bob.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let chunk = page["chunk"].as_array().unwrap();
    assert_eq!(chunk[0]["content"]["membership"], "leave");
    assert_eq!(chunk[1]["content"]["body"], "while bob was here");
    assert!(!page.to_string().contains("after bob left"));
    assert_forbidden(&server.send_text(&bob, &room_id, "ghost").await);
    // Leaving again repeats the leave: nothing new is written (a new leave would let bob read
    // up to it, past what alice said after he left).
    let (status, again) = server.membership(&bob, &room_id, "leave", None).await;
    assert_eq!(status, StatusCode::OK, "{again}");
    let (_, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=3"), bob.token())
        .await;
    assert_eq!(page["chunk"][0]["content"]["membership"], "leave");
    assert!(!page.to_string().contains("after bob left"), "{page}");

    let (status, _) = server
        .post(&format!("/_matrix/client/v3/rooms/{room_id}/forget"), bob.token(), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn redactions_respect_power_levels() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room_id).await;
    let (_, own) = server.send_text(&bob, &room_id, "oops").await;
    let (_, alices) = server.send_text(&alice, &room_id, "important").await;
    let (_, other) = server.send_text(&bob, &room_id, "spam").await;
    let redact = |user: &palisade_testkit::User, event: &serde_json::Value, txn: &str| {
        let path = format!(
            "/_matrix/client/v3/rooms/{room_id}/redact/{}/{txn}",
            event["event_id"].as_str().unwrap()
        );
        let token = user.token.clone();
        let server = &server;
        async move { server.put(&path, Some(&token), json!({ "reason": "cleanup" })).await }
    };

    assert_eq!(redact(&bob, &own, "r1").await.0, StatusCode::OK);
    assert_forbidden(&redact(&bob, &alices, "r2").await);
    let (status, by_alice) = redact(&alice, &other, "r3").await;
    assert_eq!(status, StatusCode::OK);
    // The same transaction id gives the same redaction.
    assert_eq!(redact(&alice, &other, "r3").await.1, by_alice);

    let event = |e: &serde_json::Value| {
        format!("/_matrix/client/v3/rooms/{room_id}/event/{}", e["event_id"].as_str().unwrap())
    };
    let (_, redacted) = server.get(&event(&own), alice.token()).await;
    assert_eq!(redacted["content"], json!({}));
    assert_eq!(redacted["unsigned"]["redacted_because"]["content"]["reason"], "cleanup");
    assert_eq!(redacted["unsigned"]["redacted_because"]["sender"], bob.user_id);
    let (_, kept) = server.get(&event(&alices), bob.token()).await;
    assert_eq!(kept["content"]["body"], "important");
    let (_, spam) = server.get(&event(&other), bob.token()).await;
    assert_eq!(spam["content"], json!({}));
}

#[tokio::test]
async fn redactions_through_send_need_power_too() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room_id).await;
    let (_, important) = server.send_text(&alice, &room_id, "important").await;
    let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.redaction/sneaky");
    let body = json!({ "redacts": important["event_id"] });
    assert_forbidden(&server.put(&path, bob.token(), body).await);
    let event = format!(
        "/_matrix/client/v3/rooms/{room_id}/event/{}",
        important["event_id"].as_str().unwrap()
    );
    assert_eq!(server.get(&event, bob.token()).await.1["content"]["body"], "important");
}

#[tokio::test]
async fn never_joined_users_read_no_history() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room_id = server.create_room(&alice, json!({ "preset": "private_chat" })).await;
    server.send_text(&alice, &room_id, "private history").await;
    // Bob rejects an invite; Carol is banned before she ever joined.
    assert_eq!(server.membership(&alice, &room_id, "invite", Some(&bob)).await.0, StatusCode::OK);
    let bob_since = server.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();
    assert_eq!(server.membership(&bob, &room_id, "leave", None).await.0, StatusCode::OK);
    assert_eq!(server.membership(&alice, &room_id, "ban", Some(&carol)).await.0, StatusCode::OK);
    for user in [&bob, &carol] {
        assert_forbidden(
            &server
                .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b"), user.token())
                .await,
        );
        assert_forbidden(
            &server.get(&format!("/_matrix/client/v3/rooms/{room_id}/state"), user.token()).await,
        );
    }
    let left = server.sync(&bob, &format!("since={bob_since}")).await;
    assert!(!left.to_string().contains("private history"), "{left}");
    let timeline =
        left["rooms"]["leave"][&room_id]["timeline"]["events"].as_array().unwrap().clone();
    assert_eq!(timeline.len(), 1);
    assert_eq!(timeline[0]["content"]["membership"], "leave");
}

#[tokio::test]
async fn member_lists_read_odd_profiles_leniently() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room_id).await;
    // A member event is the sender's to shape: a display name that is not a string is allowed
    // by the auth rules and must not break the member lists.
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{}", bob.user_id),
            bob.token(),
            json!({ "membership": "join", "displayname": 42, "avatar_url": ["not", "a", "uri"] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let (status, joined) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/joined_members"), alice.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{joined}");
    let joined = joined["joined"].as_object().unwrap();
    assert_eq!(joined[&alice.user_id]["display_name"], "alice");
    assert!(joined[&bob.user_id].get("display_name").is_none(), "{joined:?}");

    server.membership(&bob, &room_id, "leave", None).await;
    let members = |query: &'static str| {
        let path = format!("/_matrix/client/v3/rooms/{room_id}/members?{query}");
        let server = &server;
        let alice = &alice;
        async move {
            let (status, body) = server.get(&path, alice.token()).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["chunk"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["state_key"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(members("membership=join").await, [alice.user_id.as_str()]);
    assert_eq!(members("not_membership=join").await, [bob.user_id.as_str()]);
    assert_eq!(members("membership=leave&not_membership=join").await, [bob.user_id.as_str()]);
}

#[tokio::test]
async fn repeating_state_writes_no_new_event() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    let name = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name/");
    let (_, first) = server.put(&name, alice.token(), json!({ "name": "Same" })).await;
    let (_, second) = server.put(&name, alice.token(), json!({ "name": "Same" })).await;
    assert_eq!(first["event_id"], second["event_id"]);
    let (_, changed) = server.put(&name, alice.token(), json!({ "name": "Other" })).await;
    assert_ne!(first["event_id"], changed["event_id"]);
    // A redacted name is no longer the room's name: sending it again writes it again.
    let redact = format!(
        "/_matrix/client/v3/rooms/{room_id}/redact/{}/r1",
        urlencode(changed["event_id"].as_str().unwrap())
    );
    assert_eq!(server.put(&redact, alice.token(), json!({})).await.0, StatusCode::OK);
    let (_, again) = server.put(&name, alice.token(), json!({ "name": "Other" })).await;
    assert_ne!(changed["event_id"], again["event_id"]);

    server.join(&bob, &room_id).await;
    let join = format!("/_matrix/client/v3/rooms/{room_id}/join");
    let (status, _) = server.post(&join, bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (_, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=5"), alice.token())
        .await;
    let joins = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["state_key"] == bob.user_id.as_str() && e["type"] == "m.room.member")
        .count();
    assert_eq!(joins, 1, "{page}");
}
