//! Relations through HTTP: reactions, edits and thread replies listed by `/relations`, with
//! filters, pagination, direction and recursion.

use palisade_testkit::{TestServer, User, assert_error, urlencode};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn send(server: &TestServer, user: &User, room: &str, kind: &str, content: Value) -> String {
    let path = format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{}", rand::random::<u64>());
    let (status, body) = server.put(&path, user.token(), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

fn ids(page: &Value) -> Vec<String> {
    page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap().to_owned())
        .collect()
}

/// A public room of alice's that bob joined, and alice's first message in it.
async fn room_with_root(server: &TestServer, alice: &User, bob: &User) -> (String, String) {
    let room = server.create_room(alice, json!({ "preset": "public_chat" })).await;
    server.join(bob, &room).await;
    let text = json!({ "msgtype": "m.text", "body": "root" });
    let root = send(server, alice, &room, "m.room.message", text).await;
    (room, root)
}

#[tokio::test]
async fn relations_list_reactions_edits_and_thread_replies() {
    let server = TestServer::start().await;
    let (alice, bob, carol) = (
        server.register("alice").await,
        server.register("bob").await,
        server.register("carol").await,
    );
    let (room, root) = room_with_root(&server, &alice, &bob).await;
    let relates = |rel: &str| json!({ "rel_type": rel, "event_id": root });
    let reaction = send(
        &server,
        &bob,
        &room,
        "m.reaction",
        json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": root, "key": "👍" } }),
    )
    .await;
    let edit = send(&server, &alice, &room, "m.room.message", json!({
        "msgtype": "m.text", "body": "* root!", "m.new_content": { "msgtype": "m.text", "body": "root!" }, "m.relates_to": relates("m.replace"),
    })).await;
    let reply = send(
        &server,
        &bob,
        &room,
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "in thread", "m.relates_to": relates("m.thread") }),
    )
    .await;
    // A reply (`m.in_reply_to`) is not a relation; a reaction to the thread reply is one of its.
    send(&server, &alice, &room, "m.room.message", json!({ "msgtype": "m.text", "body": "quote", "m.relates_to": { "m.in_reply_to": { "event_id": root } } })).await;
    let nested = send(
        &server,
        &alice,
        &room,
        "m.reaction",
        json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": reply, "key": "❤️" } }),
    )
    .await;

    let base = format!("/_matrix/client/v1/rooms/{room}/relations/{}", urlencode(&root));
    let (status, page) = server.get(&base, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(ids(&page), [reply.clone(), edit.clone(), reaction.clone()], "newest first");
    assert!(page.get("next_batch").is_none(), "{page}");

    let (_, reactions) = server.get(&format!("{base}/m.annotation"), alice.token()).await;
    assert_eq!(ids(&reactions), std::slice::from_ref(&reaction));
    let (_, thread) = server.get(&format!("{base}/m.thread/m.room.message"), alice.token()).await;
    assert_eq!(ids(&thread), std::slice::from_ref(&reply));
    let (_, none) = server.get(&format!("{base}/m.thread/m.reaction"), alice.token()).await;
    assert_eq!(ids(&none), Vec::<String>::new());

    // Pages of one, both ways.
    let (_, first) = server.get(&format!("{base}?limit=1"), alice.token()).await;
    assert_eq!(ids(&first), std::slice::from_ref(&reply));
    let next = first["next_batch"].as_str().expect("more");
    let (_, second) = server.get(&format!("{base}?limit=1&from={next}"), alice.token()).await;
    assert_eq!(ids(&second), std::slice::from_ref(&edit));
    let (_, forward) = server.get(&format!("{base}?dir=f"), alice.token()).await;
    assert_eq!(ids(&forward), [reaction.clone(), edit.clone(), reply.clone()]);

    // Recursing brings the reaction to the thread reply.
    let (_, deep) = server.get(&format!("{base}?recurse=true"), alice.token()).await;
    assert_eq!(ids(&deep), [nested, reply, edit, reaction], "{deep}");
    assert_eq!(deep["recursion_depth"], 2);

    // Unknown events are not found; strangers to the room are refused.
    let unknown = format!("/_matrix/client/v1/rooms/{room}/relations/{}", urlencode("$nothing"));
    assert_error(&server.get(&unknown, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let private = server.create_room(&alice, json!({})).await;
    let secret = send(
        &server,
        &alice,
        &private,
        "m.room.message",
        json!({ "msgtype": "m.text", "body": "s" }),
    )
    .await;
    let path = format!("/_matrix/client/v1/rooms/{private}/relations/{}", urlencode(&secret));
    assert_eq!(server.get(&path, carol.token()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        server.get(&format!("{base}?from=garbage"), alice.token()).await.0,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn threads_are_listed_by_latest_activity_with_their_summary() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    let text = |body: &str| json!({ "msgtype": "m.text", "body": body });
    let in_thread = |body: &str, root: &str| json!({ "msgtype": "m.text", "body": body, "m.relates_to": { "rel_type": "m.thread", "event_id": root } });
    let first = send(&server, &alice, &room, "m.room.message", text("first topic")).await;
    let second = send(&server, &bob, &room, "m.room.message", text("second topic")).await;
    send(&server, &alice, &room, "m.room.message", text("no thread")).await;
    send(&server, &bob, &room, "m.room.message", in_thread("re first", &first)).await;
    send(&server, &bob, &room, "m.room.message", in_thread("re second", &second)).await;
    let latest =
        send(&server, &bob, &room, "m.room.message", in_thread("again first", &first)).await;

    let path = format!("/_matrix/client/v1/rooms/{room}/threads");
    let (status, page) = server.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(ids(&page), [first.clone(), second.clone()], "latest activity first");
    let summary = &page["chunk"][0]["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(summary["count"], 2, "{page}");
    assert_eq!(summary["latest_event"]["event_id"], latest);
    assert_eq!(summary["current_user_participated"], true, "alice started it");
    assert_eq!(
        page["chunk"][1]["unsigned"]["m.relations"]["m.thread"]["current_user_participated"],
        false
    );

    // Only the threads alice took part in; pages of one.
    let (_, mine) = server.get(&format!("{path}?include=participated"), alice.token()).await;
    assert_eq!(ids(&mine), std::slice::from_ref(&first));
    let (_, one) = server.get(&format!("{path}?limit=1"), alice.token()).await;
    assert_eq!(ids(&one), std::slice::from_ref(&first));
    let next = one["next_batch"].as_str().expect("more");
    let (_, two) = server.get(&format!("{path}?limit=1&from={next}"), alice.token()).await;
    assert_eq!(ids(&two), [second]);
    assert!(two.get("next_batch").is_none(), "{two}");
    let carol = server.register("carol").await;
    let private = server.create_room(&alice, json!({})).await;
    let hidden = format!("/_matrix/client/v1/rooms/{private}/threads");
    assert_eq!(server.get(&hidden, carol.token()).await.0, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn edits_threads_and_references_are_bundled_wherever_the_event_is_served() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let (room, root) = room_with_root(&server, &alice, &bob).await;
    let edit = |body: &str| json!({ "msgtype": "m.text", "body": format!("* {body}"), "m.new_content": { "msgtype": "m.text", "body": body }, "m.relates_to": { "rel_type": "m.replace", "event_id": root } });
    send(&server, &alice, &room, "m.room.message", edit("first edit")).await;
    let latest_edit = send(&server, &alice, &room, "m.room.message", edit("second edit")).await;
    // Bob may not edit alice's message: his "edit" is not bundled.
    send(&server, &bob, &room, "m.room.message", edit("bob's edit")).await;
    let reply = send(&server, &bob, &room, "m.room.message", json!({ "msgtype": "m.text", "body": "in thread", "m.relates_to": { "rel_type": "m.thread", "event_id": root } })).await;
    let reference = send(
        &server,
        &bob,
        &room,
        "m.key.verification.done",
        json!({ "m.relates_to": { "rel_type": "m.reference", "event_id": root } }),
    )
    .await;

    let check = |event: &Value, place: &str| {
        let relations = &event["unsigned"]["m.relations"];
        assert_eq!(relations["m.replace"]["event_id"], latest_edit, "{place}: {event}");
        assert_eq!(
            relations["m.replace"]["content"]["m.new_content"]["body"], "second edit",
            "{place}"
        );
        assert_eq!(relations["m.thread"]["count"], 1, "{place}");
        assert_eq!(relations["m.thread"]["latest_event"]["event_id"], reply, "{place}");
        assert_eq!(relations["m.thread"]["current_user_participated"], true, "{place}");
        assert_eq!(
            relations["m.reference"]["chunk"],
            json!([{ "event_id": reference }]),
            "{place}"
        );
    };
    let (_, event) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", urlencode(&root)), alice.token())
        .await;
    check(&event, "/event");
    let (_, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=50"), alice.token())
        .await;
    let served =
        page["chunk"].as_array().unwrap().iter().find(|e| e["event_id"] == root).unwrap().clone();
    check(&served, "/messages");
    let (_, context) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/context/{}", urlencode(&root)),
            alice.token(),
        )
        .await;
    check(&context["event"], "/context");
    let synced = server
        .sync(&alice, "filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A50%7D%7D%7D")
        .await;
    let timeline = synced["rooms"]["join"][&room]["timeline"]["events"].as_array().unwrap().clone();
    check(timeline.iter().find(|e| e["event_id"] == root).unwrap(), "/sync");
    // Bob replied in the thread: he took part too.
    let (_, seen) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/event/{}", urlencode(&root)), bob.token())
        .await;
    assert_eq!(seen["unsigned"]["m.relations"]["m.thread"]["current_user_participated"], true);
}

#[tokio::test]
async fn the_same_reaction_twice_is_refused_until_the_first_is_redacted() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let (room, root) = room_with_root(&server, &alice, &bob).await;
    let react = |key: &str| json!({ "m.relates_to": { "rel_type": "m.annotation", "event_id": root, "key": key } });
    let thumbs = send(&server, &bob, &room, "m.reaction", react("👍")).await;
    let path = format!("/_matrix/client/v3/rooms/{room}/send/m.reaction/again");
    assert_error(
        &server.put(&path, bob.token(), react("👍")).await,
        StatusCode::BAD_REQUEST,
        "M_DUPLICATE_ANNOTATION",
    );
    send(&server, &bob, &room, "m.reaction", react("🎉")).await;
    send(&server, &alice, &room, "m.reaction", react("👍")).await;

    let redact = format!("/_matrix/client/v3/rooms/{room}/redact/{}/undo", urlencode(&thumbs));
    let (status, body) = server.put(&redact, bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    send(&server, &bob, &room, "m.reaction", react("👍")).await;
}

#[tokio::test]
async fn bundles_show_only_what_the_viewer_may_read() {
    let server = TestServer::start().await;
    let (alice, bob, eve) = (
        server.register("alice").await,
        server.register("bob").await,
        server.register("eve").await,
    );
    let (room, root) = room_with_root(&server, &alice, &bob).await;
    let thread = |body: &str| json!({ "msgtype": "m.text", "body": body, "m.relates_to": { "rel_type": "m.thread", "event_id": root } });
    let before = send(&server, &alice, &room, "m.room.message", thread("while bob was here")).await;
    assert_eq!(server.membership(&bob, &room, "leave", None).await.0, StatusCode::OK);
    send(&server, &alice, &room, "m.room.message", thread("after bob left")).await;
    let path = format!("/_matrix/client/v3/rooms/{room}/event/{}", urlencode(&root));
    let (status, seen) = server.get(&path, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{seen}");
    let summary = &seen["unsigned"]["m.relations"]["m.thread"];
    assert_eq!(summary["latest_event"]["event_id"], before, "{seen}");
    assert_eq!(summary["count"], 1);

    // A relation sent from another room is not bundled with this room's event.
    let elsewhere = server.create_room(&eve, json!({})).await;
    send(
        &server,
        &eve,
        &elsewhere,
        "m.key.verification.done",
        json!({ "m.relates_to": { "rel_type": "m.reference", "event_id": root } }),
    )
    .await;
    let (_, event) = server.get(&path, alice.token()).await;
    assert!(event["unsigned"]["m.relations"].get("m.reference").is_none(), "{event}");
}
