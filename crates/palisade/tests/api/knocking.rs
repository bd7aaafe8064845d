//! Knocking through HTTP: asking to be let in to a room whose join rule is `knock`, the knock
//! shown in `/sync`, approved (an invite), denied (a kick) or withdrawn (a leave); on one
//! server and across two.

use palisade_testkit::{TestServer, User, assert_error, urlencode};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// A room of `owner`'s whose join rule is `knock`, with a name knockers are shown.
async fn knock_room(server: &TestServer, owner: &User) -> String {
    server
        .create_room(
            owner,
            json!({
                "name": "Knock first",
                "initial_state": [{
                    "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" },
                }],
            }),
        )
        .await
}

async fn knock(server: &TestServer, user: &User, room: &str, query: &str) -> (StatusCode, Value) {
    let path = format!("/_matrix/client/v3/knock/{}{query}", urlencode(room));
    server.post(&path, user.token(), json!({ "reason": "let me in" })).await
}

/// The membership of `user` in `room` as `viewer` sees it (waiting up to 10 s for `wanted`).
async fn membership_seen(
    server: &TestServer,
    viewer: &User,
    room: &str,
    user: &User,
    wanted: &str,
) -> Value {
    let path =
        format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", urlencode(&user.user_id));
    let mut content = Value::Null;
    for _ in 0..100 {
        content = server.get(&path, viewer.token()).await.1;
        if content["membership"] == wanted {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    content
}

/// The room's entry in `user`'s sync under `section` (waiting up to 10 s for it).
async fn synced(server: &TestServer, user: &User, section: &str, room: &str) -> Value {
    for _ in 0..100 {
        let sync = server.sync(user, "timeout=0").await;
        let entry = &sync["rooms"][section][room];
        if !entry.is_null() {
            return entry.clone();
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{} never had {room} under {section}", user.user_id);
}

#[tokio::test]
async fn knocks_are_shown_then_approved_denied_or_withdrawn() {
    let server = TestServer::start().await;
    let (alice, bob, carol, dave) = (
        server.register("alice").await,
        server.register("bob").await,
        server.register("carol").await,
        server.register("dave").await,
    );
    let room = knock_room(&server, &alice).await;

    let (status, body) = knock(&server, &bob, &room, "").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], room);
    // Bob is shown the room as his knock left it; alice sees the knock with its reason.
    let knocked = synced(&server, &bob, "knock", &room).await;
    let shown = knocked["knock_state"]["events"].as_array().unwrap();
    assert!(
        shown.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock first")
    );
    assert!(shown.iter().any(|e| e["type"] == "m.room.member"
        && e["state_key"] == bob.user_id.as_str()
        && e["content"]["membership"] == "knock"));
    let seen = membership_seen(&server, &alice, &room, &bob, "knock").await;
    assert_eq!(seen["reason"], "let me in", "{seen}");
    // A knock is not a way in: bob cannot read the room yet.
    let messages = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b");
    assert_eq!(server.get(&messages, bob.token()).await.0, StatusCode::FORBIDDEN);

    // Approved: alice invites bob, who joins.
    let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
    let (status, body) =
        server.post(&invite, alice.token(), json!({ "user_id": bob.user_id })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    synced(&server, &bob, "invite", &room).await;
    server.join(&bob, &room).await;

    // Denied: alice kicks carol's knock away; carol learns she is out.
    assert_eq!(knock(&server, &carol, &room, "").await.0, StatusCode::OK);
    let kick = format!("/_matrix/client/v3/rooms/{room}/kick");
    let (status, body) = server
        .post(&kick, alice.token(), json!({ "user_id": carol.user_id, "reason": "no" }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sync = server.sync(&carol, "").await;
    assert!(sync["rooms"]["knock"].get(&room).is_none(), "{sync}");

    // Withdrawn: dave knocks, then leaves.
    assert_eq!(knock(&server, &dave, &room, "").await.0, StatusCode::OK);
    let leave = format!("/_matrix/client/v3/rooms/{room}/leave");
    assert_eq!(server.post(&leave, dave.token(), json!({})).await.0, StatusCode::OK);
    assert_eq!(
        membership_seen(&server, &alice, &room, &dave, "leave").await["membership"],
        "leave"
    );
    // Banned users cannot knock; dave may knock again.
    let ban = format!("/_matrix/client/v3/rooms/{room}/ban");
    let (status, _) = server.post(&ban, alice.token(), json!({ "user_id": carol.user_id })).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(&knock(&server, &carol, &room, "").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_eq!(knock(&server, &dave, &room, "").await.0, StatusCode::OK);
}

#[tokio::test]
async fn knocks_the_room_does_not_take_are_refused() {
    let server = TestServer::start_with(|c| c.allow_guest_access = true).await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let public = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    assert_error(&knock(&server, &bob, &public, "").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Knocking came with room version 7.
    let old = server
        .create_room(
            &alice,
            json!({ "room_version": "6", "initial_state": [{
                "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "knock" },
            }] }),
        )
        .await;
    assert_error(&knock(&server, &bob, &old, "").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // A member does not knock.
    let room = knock_room(&server, &alice).await;
    assert_error(&knock(&server, &alice, &room, "").await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Unknown rooms and aliases, malformed ids, no token, a guest.
    let unknown = format!("!nowhere:{}", server.server_name());
    assert_error(&knock(&server, &bob, &unknown, "").await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let alias = format!("#nowhere:{}", server.server_name());
    assert_error(&knock(&server, &bob, &alias, "").await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let bad = server.post("/_matrix/client/v3/knock/not-a-room", bob.token(), json!({})).await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST, "{}", bad.1);
    let path = format!("/_matrix/client/v3/knock/{}", urlencode(&room));
    assert_error(
        &server.post(&path, None, json!({})).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    let (status, guest) =
        server.post("/_matrix/client/v3/register?kind=guest", None, json!({})).await;
    assert_eq!(status, StatusCode::OK, "{guest}");
    let token = guest["access_token"].as_str();
    assert_error(
        &server.post(&path, token, json!({})).await,
        StatusCode::FORBIDDEN,
        "M_GUEST_ACCESS_FORBIDDEN",
    );
    // Nothing of it changed the room: bob is no member.
    let members = format!("/_matrix/client/v3/rooms/{room}/joined_members");
    let joined = server.get(&members, alice.token()).await.1;
    assert!(joined["joined"].get(bob.user_id.as_str()).is_none(), "{joined}");
    let member =
        format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", urlencode(&bob.user_id));
    assert_error(&server.get(&member, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn knocks_cross_servers() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let (bob, carol) = (b.register("bob").await, b.register("carol").await);
    let room = knock_room(&a, &alice).await;
    let via = format!("?via={}", urlencode(a.server_name()));

    // Bob knocks through alice's server; his server shows him the room as it was answered.
    let (status, body) = knock(&b, &bob, &room, &via).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let knocked = synced(&b, &bob, "knock", &room).await;
    let shown = knocked["knock_state"]["events"].as_array().unwrap();
    assert!(shown.iter().any(|e| e["type"] == "m.room.create"), "{knocked}");
    assert!(
        shown.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Knock first")
    );
    let seen = membership_seen(&a, &alice, &room, &bob, "knock").await;
    assert_eq!(seen["membership"], "knock", "{seen}");
    assert_eq!(seen["reason"], "let me in", "{seen}");

    // Alice lets him in: the invite reaches his server and he joins.
    let invite = format!("/_matrix/client/v3/rooms/{room}/invite");
    let (status, body) = a.post(&invite, alice.token(), json!({ "user_id": bob.user_id })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    synced(&b, &bob, "invite", &room).await;
    let join = format!("/_matrix/client/v3/rooms/{room}/join");
    let (status, body) = b.post(&join, bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(membership_seen(&a, &alice, &room, &bob, "join").await["membership"], "join");

    // Carol knocks and withdraws: now that B is in the room, her leave is an event of it.
    assert_eq!(knock(&b, &carol, &room, &via).await.0, StatusCode::OK);
    assert_eq!(membership_seen(&a, &alice, &room, &carol, "knock").await["membership"], "knock");
    let leave = format!("/_matrix/client/v3/rooms/{room}/leave");
    assert_eq!(b.post(&leave, carol.token(), json!({})).await.0, StatusCode::OK);
    assert_eq!(membership_seen(&a, &alice, &room, &carol, "leave").await["membership"], "leave");

    // A room that takes no knocks is refused by its server, and B records nothing.
    let public = a.create_room(&alice, json!({ "preset": "public_chat" })).await;
    let erin = b.register("erin").await;
    let refused = knock(&b, &erin, &public, &via).await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN, "{}", refused.1);
    assert!(b.sync(&erin, "").await["rooms"]["knock"].get(&public).is_none());
}

#[tokio::test]
async fn a_knock_withdrawn_outside_the_room_goes_through_its_server() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room = knock_room(&a, &alice).await;
    let via = format!("?via={}", urlencode(a.server_name()));
    assert_eq!(knock(&b, &bob, &room, &via).await.0, StatusCode::OK);
    let leave = format!("/_matrix/client/v3/rooms/{room}/leave");
    let (status, body) = b.post(&leave, bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(membership_seen(&a, &alice, &room, &bob, "leave").await["membership"], "leave");
    let sync = b.sync(&bob, "").await;
    assert!(sync["rooms"]["knock"].get(&room).is_none(), "{sync}");
}
