//! Sending, idempotency, `/messages` pagination, `/context`, `/event` and bad event input.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use palisade_testkit::{TestServer, assert_error, assert_forbidden, urlencode};

fn bodies(page: &Value, key: &str) -> Vec<String> {
    page[key]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn sends_are_idempotent_per_device_and_transaction() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let laptop = server.login("alice", None).await;
    let room_id = server.create_room(&alice, json!({})).await;
    let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/txn1");
    let body = json!({ "msgtype": "m.text", "body": "once" });
    let (status, first) = server.put(&path, alice.token(), body.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let (_, again) = server.put(&path, alice.token(), body.clone()).await;
    assert_eq!(first, again);
    let (_, other_device) = server.put(&path, laptop.token(), body).await;
    assert_ne!(first, other_device);

    let (_, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=5"), alice.token())
        .await;
    assert_eq!(bodies(&page, "chunk"), ["once", "once"]);
    // Only the sending device sees its transaction id.
    let (_, event) = server
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{room_id}/event/{}",
                first["event_id"].as_str().unwrap()
            ),
            alice.token(),
        )
        .await;
    assert_eq!(event["unsigned"]["transaction_id"], "txn1");
    let (_, event) = server
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{room_id}/event/{}",
                first["event_id"].as_str().unwrap()
            ),
            laptop.token(),
        )
        .await;
    assert!(event["unsigned"].get("transaction_id").is_none());

    // Without a transaction id (POST, as older clients and bots send), each request is a new
    // event.
    for version in ["r0", "v3"] {
        let path = format!("/_matrix/client/{version}/rooms/{room_id}/send/m.room.message");
        let body = json!({ "msgtype": "m.text", "body": format!("no txn {version}") });
        let (status, sent) = server.post(&path, alice.token(), body).await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        assert!(sent["event_id"].is_string(), "{sent}");
    }
    let (_, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=2"), alice.token())
        .await;
    assert_eq!(bodies(&page, "chunk"), ["no txn v3", "no txn r0"]);
    let path = format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message");
    assert_error(
        &server.call_raw(Method::POST, &path, alice.token(), "{oops").await,
        StatusCode::BAD_REQUEST,
        "M_NOT_JSON",
    );
    assert_error(
        &server.post(&path, alice.token(), json!([1])).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &server.post(&path, None, json!({})).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    let stranger = server.register("stranger").await;
    assert_forbidden(&server.post(&path, stranger.token(), json!({ "body": "hi" })).await);
}

#[tokio::test]
async fn paginate_backwards_and_forwards() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room_id = server.create_room(&alice, json!({ "name": "History" })).await;
    for i in 0..25 {
        server.send_text(&alice, &room_id, &format!("m{i}")).await;
    }
    let base = format!("/_matrix/client/v3/rooms/{room_id}/messages");
    let (status, page1) = server.get(&format!("{base}?dir=b&limit=10"), alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        bodies(&page1, "chunk"),
        (15..25).rev().map(|i| format!("m{i}")).collect::<Vec<_>>()
    );
    let end1 = page1["end"].as_str().unwrap();
    let (_, page2) = server.get(&format!("{base}?dir=b&limit=10&from={end1}"), alice.token()).await;
    assert_eq!(bodies(&page2, "chunk"), (5..15).rev().map(|i| format!("m{i}")).collect::<Vec<_>>());
    let (_, page3) = server
        .get(
            &format!("{base}?dir=b&limit=100&from={}", page2["end"].as_str().unwrap()),
            alice.token(),
        )
        .await;
    assert_eq!(bodies(&page3, "chunk"), (0..5).rev().map(|i| format!("m{i}")).collect::<Vec<_>>());
    assert_eq!(page3["chunk"].as_array().unwrap().last().unwrap()["type"], "m.room.create");
    assert!(page3.get("end").is_none(), "the start of the room ends pagination: {page3}");

    // Forward from the second page's end back up to the first page's end.
    let (_, forward) = server
        .get(
            &format!("{base}?dir=f&limit=100&from={}&to={end1}", page2["end"].as_str().unwrap()),
            alice.token(),
        )
        .await;
    assert_eq!(bodies(&forward, "chunk"), (5..15).map(|i| format!("m{i}")).collect::<Vec<_>>());

    let filter = json!({ "types": ["m.room.name"] }).to_string();
    let (_, names) = server
        .get(&format!("{base}?dir=b&limit=5&filter={}", urlencode(&filter)), alice.token())
        .await;
    let chunk = names["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 1);
    assert_eq!(chunk[0]["type"], "m.room.name");
    let lazy = json!({ "lazy_load_members": true, "types": ["m.room.message"] }).to_string();
    let (_, lazy) = server
        .get(&format!("{base}?dir=b&limit=2&filter={}", urlencode(&lazy)), alice.token())
        .await;
    assert_eq!(lazy["state"].as_array().unwrap().len(), 1);
    assert_eq!(lazy["state"][0]["state_key"], alice.user_id);

    assert_error(
        &server.get(&format!("{base}?dir=b&from=garbage"), alice.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.get(&format!("{base}?dir=sideways"), alice.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn context_surrounds_an_event() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room_id = server.create_room(&alice, json!({})).await;
    let mut ids = Vec::new();
    for i in 0..7 {
        let (_, sent) = server.send_text(&alice, &room_id, &format!("c{i}")).await;
        ids.push(sent["event_id"].as_str().unwrap().to_owned());
    }
    let (status, context) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room_id}/context/{}?limit=4", ids[3]),
            alice.token(),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{context}");
    assert_eq!(context["event"]["content"]["body"], "c3");
    assert_eq!(bodies(&context, "events_before"), ["c2", "c1"]);
    assert_eq!(bodies(&context, "events_after"), ["c4", "c5"]);
    assert!(context["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"));
    let (_, more) = server
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{room_id}/messages?dir=f&from={}",
                context["end"].as_str().unwrap()
            ),
            alice.token(),
        )
        .await;
    assert_eq!(bodies(&more, "chunk"), ["c6"]);
    assert_error(
        &server
            .get(&format!("/_matrix/client/v3/rooms/{room_id}/context/$nope"), alice.token())
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn bad_event_input_changes_nothing() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room_id = server.create_room(&alice, json!({})).await;
    let send = |txn: &str| format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/{txn}");

    let huge = json!({ "msgtype": "m.text", "body": "x".repeat(70_000) });
    assert_error(
        &server.put(&send("big"), alice.token(), huge).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    // Under the limit before signing, over it once hashed and signed: the limit is on the
    // event as stored and sent, which other servers check.
    let signed_too_large = json!({ "msgtype": "m.text", "body": "x".repeat(65_036) });
    assert_error(
        &server.put(&send("signed"), alice.token(), signed_too_large).await,
        StatusCode::PAYLOAD_TOO_LARGE,
        "M_TOO_LARGE",
    );
    assert_error(
        &server.put(&send("arr"), alice.token(), json!([1, 2])).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &server.put(&send("float"), alice.token(), json!({ "body": 1.5 })).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    assert_error(
        &server.call_raw(Method::PUT, &send("nj"), alice.token(), "{oops").await,
        StatusCode::BAD_REQUEST,
        "M_NOT_JSON",
    );
    assert_error(
        &server
            .put(
                "/_matrix/client/v3/rooms/not-a-room/send/m.room.message/t",
                alice.token(),
                json!({}),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_forbidden(
        &server
            .put(
                &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.member/not-a-user"),
                alice.token(),
                json!({ "membership": "join" }),
            )
            .await,
    );
    let (_, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=1"), alice.token())
        .await;
    assert_ne!(page["chunk"][0]["type"], "m.room.message", "no message was stored: {page}");
}

/// Bodies of the messages a user can page back to.
async fn readable(
    server: &TestServer,
    user: &palisade_testkit::User,
    room_id: &str,
) -> Vec<String> {
    let (status, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=f&limit=100"), user.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    bodies(&page, "chunk")
}

#[tokio::test]
async fn history_visibility_decides_what_newcomers_read() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    for (visibility, expected) in [
        ("joined", vec!["after join"]),
        ("invited", vec!["while invited", "after join"]),
        ("shared", vec!["before invite", "while invited", "after join"]),
    ] {
        let state = json!([{ "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": visibility } }]);
        let room_id = server
            .create_room(&alice, json!({ "preset": "private_chat", "initial_state": state }))
            .await;
        let (_, before) = server.send_text(&alice, &room_id, "before invite").await;
        assert_eq!(
            server.membership(&alice, &room_id, "invite", Some(&bob)).await.0,
            StatusCode::OK
        );
        server.send_text(&alice, &room_id, "while invited").await;
        server.join(&bob, &room_id).await;
        server.send_text(&alice, &room_id, "after join").await;

        assert_eq!(readable(&server, &bob, &room_id).await, expected, "{visibility}");
        if visibility == "joined" {
            // Paging back one event at a time: `end` while there is more to see, the join
            // as the first event bob may see of his time in the room; before it only the
            // room's set-up, from before its history was closed (shared then), and no `end`
            // once that is exhausted.
            let path = format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=1");
            let (_, first) = server.get(&path, bob.token()).await;
            assert_eq!(bodies(&first, "chunk"), ["after join"]);
            let end = first["end"].as_str().expect("more history");
            let (_, second) = server.get(&format!("{path}&from={end}"), bob.token()).await;
            let join = &second["chunk"][0];
            assert_eq!(
                (join["type"].as_str(), join["state_key"].as_str()),
                (Some("m.room.member"), Some(bob.user_id.as_str())),
                "{second}"
            );
            assert_eq!(join["content"]["membership"], "join");
            let mut from = second["end"].as_str().expect("the page was full").to_owned();
            let mut earlier = Vec::new();
            for _ in 0..20 {
                let (_, page) = server.get(&format!("{path}&from={from}"), bob.token()).await;
                earlier.extend(page["chunk"].as_array().unwrap().iter().cloned());
                match page["end"].as_str() {
                    Some(end) => from = end.to_owned(),
                    None => break,
                }
            }
            let kinds: Vec<&str> = earlier.iter().map(|e| e["type"].as_str().unwrap()).collect();
            assert!(!kinds.contains(&"m.room.message"), "{kinds:?}");
            assert!(
                earlier.iter().all(|e| e["state_key"] != bob.user_id.as_str()),
                "his invite is hidden: {earlier:?}"
            );
            assert!(kinds.contains(&"m.room.create"), "{kinds:?}");
        }
        assert_eq!(
            readable(&server, &alice, &room_id).await.len(),
            3,
            "the creator was there throughout"
        );
        let event = format!(
            "/_matrix/client/v3/rooms/{room_id}/event/{}",
            before["event_id"].as_str().unwrap()
        );
        let status = server.get(&event, bob.token()).await.0;
        assert_eq!(status == StatusCode::OK, visibility == "shared", "{visibility}: {status}");
        let synced = server.sync(&bob, "").await;
        let timeline = synced["rooms"]["join"][&room_id]["timeline"]["events"].to_string();
        assert_eq!(
            timeline.contains("before invite"),
            visibility == "shared",
            "{visibility}: {timeline}"
        );
    }
}

#[tokio::test]
async fn room_initial_sync_shows_state_and_latest_messages() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let state = json!([{ "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "world_readable" } }]);
    let room_id = server
        .create_room(
            &alice,
            json!({ "name": "Help desk", "visibility": "public", "initial_state": state }),
        )
        .await;
    for i in 0..25 {
        server.send_text(&alice, &room_id, &format!("message {i}")).await;
    }
    let path = format!("/_matrix/client/v3/rooms/{room_id}/initialSync");
    let (status, sync) = server.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    assert_eq!(sync["room_id"], room_id);
    assert_eq!(sync["membership"], "join");
    assert_eq!(sync["visibility"], "public");
    assert!(sync["state"].as_array().unwrap().iter().any(|e| e["content"]["name"] == "Help desk"));
    // The latest twenty, oldest first, with a token to page further back.
    let texts = bodies(&sync["messages"], "chunk");
    assert_eq!(texts.len(), 20, "{texts:?}");
    assert_eq!(texts.last().unwrap(), "message 24");
    let back = format!(
        "/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=5&from={}",
        sync["messages"]["start"].as_str().unwrap()
    );
    let (_, page) = server.get(&back, alice.token()).await;
    assert_eq!(bodies(&page, "chunk")[0], "message 4");

    // Anyone may peek into a world-readable room; not into a private one.
    let (status, peek) = server.get(&path, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{peek}");
    assert!(peek.get("membership").is_none(), "{peek}");
    assert_eq!(bodies(&peek["messages"], "chunk").last().unwrap(), "message 24");
    let private = server.create_room(&alice, json!({})).await;
    let path = format!("/_matrix/client/r0/rooms/{private}/initialSync");
    assert_forbidden(&server.get(&path, bob.token()).await);
    assert_error(&server.get(&path, None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");

    // A peeking client polls /events from the initial sync's end: nothing new at once, then
    // the next message as soon as it is sent.
    let end = peek["messages"]["end"].as_str().unwrap().to_owned();
    let events = format!("/_matrix/client/v3/events?room_id={}&from={end}", urlencode(&room_id));
    let (status, nothing) = server.get(&format!("{events}&timeout=0"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{nothing}");
    assert_eq!(
        (nothing["chunk"].clone(), nothing["end"].as_str()),
        (json!([]), Some(end.as_str()))
    );
    let wait = format!("{events}&timeout=10000");
    let (waited, _) = tokio::join!(server.get(&wait, bob.token()), async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        server.send_text(&alice, &room_id, "while bob waits").await
    });
    assert_eq!(bodies(&waited.1, "chunk"), ["while bob waits"], "{}", waited.1);

    // An event by id alone, as far as the user may see it.
    let id = sync["messages"]["chunk"][0]["event_id"].as_str().unwrap();
    let (status, event) =
        server.get(&format!("/_matrix/client/v3/events/{}", urlencode(id)), bob.token()).await;
    assert_eq!((status, event["event_id"].as_str()), (StatusCode::OK, Some(id)), "{event}");
    let (_, secret) = server.send_text(&alice, &private, "secret").await;
    let secret =
        format!("/_matrix/client/r0/events/{}", urlencode(secret["event_id"].as_str().unwrap()));
    assert_forbidden(&server.get(&secret, bob.token()).await);
    assert_error(
        &server.get("/_matrix/client/v3/events/%24nope", bob.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

/// A redacted state event's content must not show through the `prev_content` of the event
/// that replaced it.
#[tokio::test]
async fn a_redacted_state_event_stays_redacted_in_prev_content() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room_id = server.create_room(&alice, json!({})).await;
    let name = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name/");
    let (_, secret) = server.put(&name, alice.token(), json!({ "name": "secret" })).await;
    let (_, public) = server.put(&name, alice.token(), json!({ "name": "public" })).await;
    let messages = format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=5");
    let prev_content = |page: &Value| {
        let events = page["chunk"].as_array().unwrap();
        let replacing = events.iter().find(|e| e["event_id"] == public["event_id"]).unwrap();
        replacing["unsigned"]["prev_content"].clone()
    };
    assert_eq!(
        prev_content(&server.get(&messages, alice.token()).await.1),
        json!({ "name": "secret" })
    );
    let redact = format!(
        "/_matrix/client/v3/rooms/{room_id}/redact/{}/tidy",
        urlencode(secret["event_id"].as_str().unwrap())
    );
    let (status, body) = server.put(&redact, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(prev_content(&server.get(&messages, alice.token()).await.1), json!({}));
    let sync = server.sync(&alice, "").await;
    let timeline = sync["rooms"]["join"][&room_id]["timeline"]["events"].as_array().unwrap();
    let replacing = timeline.iter().find(|e| e["event_id"] == public["event_id"]).unwrap();
    assert_eq!(replacing["unsigned"]["prev_content"], json!({}), "{replacing}");
}

/// The deprecated global `/initialSync` and `/events` without a room, which older bots start
/// and poll with: every room of the user, and the events of all of them after a token.
#[tokio::test]
async fn global_initial_sync_and_events_of_every_room() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let shared = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &shared).await;
    for i in 0..3 {
        server.send_text(&alice, &shared, &format!("shared {i}")).await;
    }
    let private = server.create_room(&alice, json!({})).await;
    let invited = server.create_room(&alice, json!({ "invite": [bob.user_id] })).await;
    let data = format!("/_matrix/client/v3/user/{}/account_data/org.example.note", bob.user_id);
    server.put(&data, bob.token(), json!({ "note": "kept" })).await;

    let (status, sync) = server.get("/_matrix/client/v3/initialSync?limit=2", bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{sync}");
    let rooms = sync["rooms"].as_array().unwrap();
    let room = |id: &str| rooms.iter().find(|r| r["room_id"] == id).cloned();
    let joined = room(&shared).expect("the shared room");
    assert_eq!(joined["membership"], "join");
    assert_eq!(bodies(&joined["messages"], "chunk"), ["shared 1", "shared 2"]);
    assert!(joined["state"].as_array().unwrap().iter().any(|e| e["type"] == "m.room.create"));
    let invite = room(&invited).expect("the invite");
    assert_eq!(invite["membership"], "invite");
    assert_eq!(invite["invite"]["content"]["membership"], "invite", "{invite}");
    assert!(room(&private).is_none(), "{sync}");
    assert!(
        sync["account_data"].as_array().unwrap().iter().any(|e| e["content"]["note"] == "kept"),
        "{sync}"
    );

    // From the initial sync's token, the events of bob's rooms only.
    let end = sync["end"].as_str().unwrap().to_owned();
    let events = format!("/_matrix/client/v3/events?from={end}&timeout=0");
    let (status, quiet) = server.get(&events, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{quiet}");
    assert_eq!(quiet["chunk"], json!([]));
    server.send_text(&alice, &private, "not for bob").await;
    server.send_text(&alice, &shared, "after the initial sync").await;
    let (status, news) = server.get(&events, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{news}");
    assert_eq!(bodies(&news, "chunk"), ["after the initial sync"]);
    assert_eq!(news["chunk"][0]["room_id"], shared);

    assert_error(
        &server.get("/_matrix/client/v3/initialSync", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &server.get("/_matrix/client/v3/events?from=nonsense", bob.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn jump_to_date_finds_the_nearest_event() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let room_id = server.create_room(&alice, json!({ "preset": "private_chat" })).await;
    let mut sent = Vec::new();
    for text in ["first", "second", "third"] {
        let (_, body) = server.send_text(&alice, &room_id, text).await;
        let event_id = body["event_id"].as_str().unwrap().to_owned();
        let (_, event) = server
            .get(&format!("/_matrix/client/v3/rooms/{room_id}/event/{event_id}"), alice.token())
            .await;
        sent.push((event_id, event["origin_server_ts"].as_u64().unwrap()));
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let jump = |ts: u64, dir: &str| {
        format!("/_matrix/client/v1/rooms/{room_id}/timestamp_to_event?ts={ts}&dir={dir}")
    };
    let (status, found) = server.get(&jump(sent[1].1, "f"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(found["event_id"], sent[1].0);
    assert_eq!(found["origin_server_ts"], sent[1].1);
    let (_, after) = server.get(&jump(sent[1].1 + 1, "f"), alice.token()).await;
    assert_eq!(after["event_id"], sent[2].0);
    let (_, before) = server.get(&jump(sent[2].1 - 1, "b"), alice.token()).await;
    assert_eq!(before["event_id"], sent[1].0);
    assert_error(
        &server.get(&jump(sent[2].1 + 60_000, "f"), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_eq!(server.get(&jump(1, "sideways"), alice.token()).await.0, StatusCode::BAD_REQUEST);
    assert_forbidden(&server.get(&jump(sent[0].1, "f"), bob.token()).await);
}
