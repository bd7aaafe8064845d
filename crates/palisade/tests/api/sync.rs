//! `/sync`: initial and incremental, long-polling, sections, filters, ephemeral events,
//! account data and unread counts.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};

use palisade_testkit::{TestServer, assert_error, assert_forbidden, urlencode};

fn messages(room: &Value) -> Vec<String> {
    section(room, "timeline")
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

/// Events of a section (`state`, `timeline`); an empty section may be left out.
fn section<'a>(room: &'a Value, name: &str) -> &'a [Value] {
    room[name]["events"].as_array().map_or(&[], Vec::as_slice)
}

fn has_state(room: &Value, kind: &str, key: &str) -> bool {
    section(room, "state").iter().any(|e| e["type"] == kind && e["state_key"] == key)
}

/// `limited`, which is left out when false.
fn limited(room: &Value) -> bool {
    room["timeline"]["limited"].as_bool().unwrap_or(false)
}

fn in_timeline(room: &Value, kind: &str) -> bool {
    section(room, "timeline").iter().any(|e| e["type"] == kind)
}

#[tokio::test]
async fn initial_then_incremental_sync() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room_id = server.create_room(&alice, json!({ "name": "Sync" })).await;
    server.send_text(&alice, &room_id, "one").await;

    let initial = server.sync(&alice, "").await;
    let room = &initial["rooms"]["join"][&room_id];
    assert_eq!(messages(room), ["one"]);
    // The room's eight events fit in the default limit of ten: all in the timeline.
    assert!(in_timeline(room, "m.room.create") && in_timeline(room, "m.room.name"), "{room}");
    assert!(section(room, "state").is_empty());
    assert!(!limited(room));
    assert_eq!(room["summary"]["m.joined_member_count"], 1);
    assert!(
        initial["account_data"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.push_rules")
    );
    let since = initial["next_batch"].as_str().unwrap().to_owned();

    // Nothing new: the room is left out.
    let empty = server.sync(&alice, &format!("since={since}&timeout=0")).await;
    assert!(empty["rooms"]["join"].get(&room_id).is_none(), "{empty}");

    server.send_text(&alice, &room_id, "two").await;
    let next = server.sync(&alice, &format!("since={since}")).await;
    let room = &next["rooms"]["join"][&room_id];
    assert_eq!(messages(room), ["two"]);
    assert!(room["timeline"]["events"][0]["unsigned"]["transaction_id"].is_string());
    assert!(section(room, "state").is_empty());

    // The timeline's prev_batch continues backwards through /messages.
    let prev = room["timeline"]["prev_batch"].as_str().unwrap();
    let (_, page) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=1&from={prev}"),
            alice.token(),
        )
        .await;
    assert_eq!(page["chunk"][0]["content"]["body"], "one");

    assert_error(
        &server.get("/_matrix/client/v3/sync?since=bogus", alice.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.get("/_matrix/client/v3/sync", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
}

#[tokio::test]
async fn incremental_sync_reads_only_the_rooms_that_changed() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let busy = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    let quiet = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &quiet).await;
    let (_, sent) = server.send_text(&alice, &quiet, "old news").await;
    let old = sent["event_id"].as_str().unwrap().to_owned();
    let since = server.sync(&alice, "").await["next_batch"].as_str().unwrap().to_owned();

    server.send_text(&alice, &busy, "fresh").await;
    let next = server.sync(&alice, &format!("since={since}")).await;
    assert_eq!(messages(&next["rooms"]["join"][&busy]), ["fresh"]);
    assert!(next["rooms"]["join"].get(&quiet).is_none(), "{next}");

    // A receipt alone brings the quiet room back, without a timeline.
    let since = next["next_batch"].as_str().unwrap().to_owned();
    let receipt = format!("/_matrix/client/v3/rooms/{quiet}/receipt/m.read/{old}");
    assert_eq!(server.post(&receipt, bob.token(), json!({})).await.0, StatusCode::OK);
    let next = server.sync(&alice, &format!("since={since}")).await;
    let room = &next["rooms"]["join"][&quiet];
    assert!(section(room, "timeline").is_empty(), "{room}");
    assert_eq!(room["ephemeral"]["events"][0]["type"], "m.receipt", "{room}");
    assert!(next["rooms"]["join"].get(&busy).is_none(), "{next}");

    // So does a tag, which is room account data.
    let since = next["next_batch"].as_str().unwrap().to_owned();
    let tag = format!("/_matrix/client/v3/user/{}/rooms/{quiet}/tags/u.work", alice.user_id);
    assert_eq!(server.put(&tag, alice.token(), json!({})).await.0, StatusCode::OK);
    let next = server.sync(&alice, &format!("since={since}")).await;
    let room = &next["rooms"]["join"][&quiet];
    assert_eq!(room["account_data"]["events"][0]["type"], "m.tag", "{next}");
}

#[tokio::test]
async fn limited_timelines_carry_the_state_in_between() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room_id = server.create_room(&alice, json!({})).await;
    let since = server.sync(&alice, "").await["next_batch"].as_str().unwrap().to_owned();
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.topic/"),
            alice.token(),
            json!({ "topic": "hidden by the cut" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    for i in 0..5 {
        server.send_text(&alice, &room_id, &format!("m{i}")).await;
    }
    let filter = urlencode(&json!({ "room": { "timeline": { "limit": 2 } } }).to_string());
    let next = server.sync(&alice, &format!("since={since}&filter={filter}")).await;
    let room = &next["rooms"]["join"][&room_id];
    assert_eq!(messages(room), ["m3", "m4"]);
    assert!(limited(room));
    assert!(has_state(room, "m.room.topic", ""), "the topic changed inside the gap: {room}");
    assert!(!has_state(room, "m.room.create", ""), "unchanged state is not resent: {room}");

    let full = server.sync(&alice, &format!("since={since}&filter={filter}&full_state=true")).await;
    assert!(has_state(&full["rooms"]["join"][&room_id], "m.room.create", ""));
}

#[tokio::test]
async fn long_poll_wakes_on_a_new_event() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room_id).await;
    let since = server.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();

    let started = Instant::now();
    let query = format!("since={since}&timeout=30000");
    let (poll, _) = tokio::join!(server.sync(&bob, &query), async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        server.send_text(&alice, &room_id, "wake up").await
    });
    assert!(started.elapsed() < Duration::from_secs(20), "the sync waited for its timeout");
    assert_eq!(messages(&poll["rooms"]["join"][&room_id]), ["wake up"]);

    // A change in someone else's room does not answer Bob's sync early.
    let carol = server.register("carol").await;
    let other = server.create_room(&carol, json!({})).await;
    let since = poll["next_batch"].as_str().unwrap().to_owned();
    let query = format!("since={since}&timeout=1500");
    let (quiet, _) = tokio::join!(server.sync(&bob, &query), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.send_text(&carol, &other, "not for bob").await
    });
    assert!(quiet["rooms"]["join"].as_object().is_none_or(|j| j.is_empty()), "{quiet}");
}

#[tokio::test]
async fn invites_joins_and_leaves_move_between_sections() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id =
        server.create_room(&alice, json!({ "name": "Sections", "invite": [bob.user_id] })).await;

    let first = server.sync(&bob, "").await;
    let invite = &first["rooms"]["invite"][&room_id]["invite_state"]["events"];
    let kinds: Vec<_> =
        invite.as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"m.room.name") && kinds.contains(&"m.room.member"), "{invite}");
    assert!(first["rooms"]["join"].get(&room_id).is_none());

    server.join(&bob, &room_id).await;
    let since = first["next_batch"].as_str().unwrap();
    let joined = server.sync(&bob, &format!("since={since}")).await;
    let room = &joined["rooms"]["join"][&room_id];
    assert!(has_state(room, "m.room.create", "") || in_timeline(room, "m.room.create"), "{room}");
    assert!(joined["rooms"]["invite"].get(&room_id).is_none());
    assert_eq!(room["summary"]["m.joined_member_count"], 2);
    // A named room needs no heroes (clients show the name); an unnamed one lists them.
    assert!(room["summary"].get("m.heroes").is_none(), "{}", room["summary"]);
    let unnamed = server.create_room(&alice, json!({ "invite": [bob.user_id] })).await;
    server.join(&bob, &unnamed).await;
    let synced = server.sync(&bob, "").await;
    let heroes = &synced["rooms"]["join"][&unnamed]["summary"]["m.heroes"];
    assert_eq!(heroes, &json!([alice.user_id]), "{synced}");

    assert_eq!(server.membership(&alice, &room_id, "kick", Some(&bob)).await.0, StatusCode::OK);
    let since = joined["next_batch"].as_str().unwrap();
    let left = server.sync(&bob, &format!("since={since}")).await;
    let room = &left["rooms"]["leave"][&room_id];
    let last = section(room, "timeline").last().unwrap().clone();
    assert_eq!(last["content"]["membership"], "leave");
    assert!(left["rooms"]["join"].get(&room_id).is_none());
}

#[tokio::test]
async fn filters_are_stored_per_user() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let path = format!("/_matrix/client/v3/user/{}/filter", alice.user_id);
    let filter =
        json!({ "room": { "timeline": { "limit": 1 }, "state": { "lazy_load_members": true } } });
    let (status, created) = server.post(&path, alice.token(), filter).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let id = created["filter_id"].as_str().unwrap();
    let (status, stored) = server.get(&format!("{path}/{id}"), alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stored["room"]["timeline"]["limit"], 1);
    assert_forbidden(&server.get(&format!("{path}/{id}"), bob.token()).await);
    assert_forbidden(&server.post(&path, bob.token(), json!({})).await);
    assert_error(
        &server.get(&format!("{path}/999"), alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .post(&path, alice.token(), json!({ "room": { "timeline": { "limit": "ten" } } }))
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );

    let room_id = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room_id).await;
    server.send_text(&alice, &room_id, "by alice").await;
    let synced = server.sync(&alice, &format!("filter={id}")).await;
    let room = &synced["rooms"]["join"][&room_id];
    assert_eq!(messages(room), ["by alice"]);
    assert!(limited(room));
    // Lazy loading: members of the timeline senders and the syncing user only, not Bob.
    let members: Vec<_> = section(room, "state")
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        members,
        vec![alice.user_id.clone()],
        "only the sender, who is also the syncing user"
    );
    assert_error(
        &server.get("/_matrix/client/v3/sync?filter=12345", bob.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn typing_and_receipts_reach_other_members() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room_id).await;
    let (_, sent) = server.send_text(&alice, &room_id, "read me").await;
    let event_id = sent["event_id"].as_str().unwrap();
    let since = server.sync(&alice, "").await["next_batch"].as_str().unwrap().to_owned();

    let typing = format!("/_matrix/client/v3/rooms/{room_id}/typing/{}", bob.user_id);
    assert_eq!(
        server.put(&typing, bob.token(), json!({ "typing": true, "timeout": 30000 })).await.0,
        StatusCode::OK
    );
    assert_forbidden(
        &server.put(&typing, alice.token(), json!({ "typing": true, "timeout": 1000 })).await,
    );
    let receipt = format!("/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{event_id}");
    assert_eq!(server.post(&receipt, bob.token(), json!({})).await.0, StatusCode::OK);
    let private = format!("/_matrix/client/v3/rooms/{room_id}/receipt/m.read.private/{event_id}");
    assert_eq!(server.post(&private, bob.token(), json!({})).await.0, StatusCode::OK);

    let next = server.sync(&alice, &format!("since={since}")).await;
    let ephemeral =
        next["rooms"]["join"][&room_id]["ephemeral"]["events"].as_array().unwrap().clone();
    let typing_event = ephemeral.iter().find(|e| e["type"] == "m.typing").unwrap();
    assert_eq!(typing_event["content"]["user_ids"], json!([bob.user_id]));
    let receipts = ephemeral.iter().find(|e| e["type"] == "m.receipt").unwrap();
    assert!(receipts["content"][event_id]["m.read"][&bob.user_id]["ts"].is_u64(), "{receipts}");
    assert!(
        receipts["content"][event_id].get("m.read.private").is_none(),
        "private receipts stay private"
    );

    let bobs = server.sync(&bob, "").await;
    let ephemeral =
        bobs["rooms"]["join"][&room_id]["ephemeral"]["events"].as_array().unwrap().clone();
    let receipts = ephemeral.iter().find(|e| e["type"] == "m.receipt").unwrap();
    assert!(receipts["content"][event_id]["m.read.private"][&bob.user_id].is_object());

    assert_eq!(
        server.put(&typing, bob.token(), json!({ "typing": false })).await.0,
        StatusCode::OK
    );
    let since = next["next_batch"].as_str().unwrap();
    let stopped = server.sync(&alice, &format!("since={since}")).await;
    let ephemeral = &stopped["rooms"]["join"][&room_id]["ephemeral"]["events"];
    assert_eq!(ephemeral[0]["content"]["user_ids"], json!([]));

    let outsider = server.register("outsider").await;
    assert_forbidden(&server.post(&receipt, outsider.token(), json!({})).await);
    let unknown = format!("/_matrix/client/v3/rooms/{room_id}/receipt/m.read/$nope");
    assert_error(
        &server.post(&unknown, bob.token(), json!({})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn unread_counts_follow_push_rules_and_receipts() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room_id).await;
    server.send_text(&alice, &room_id, "hello").await;
    let mention = json!({ "msgtype": "m.text", "body": "bob: are you there?", "m.mentions": { "user_ids": [bob.user_id] } });
    let (_, last) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room_id}/send/m.room.message/mention"),
            alice.token(),
            mention,
        )
        .await;

    let synced = server.sync(&bob, "").await;
    let counts = &synced["rooms"]["join"][&room_id]["unread_notifications"];
    assert_eq!(counts["notification_count"], 2, "{counts}");
    assert_eq!(counts["highlight_count"], 1, "the message mentioning Bob highlights: {counts}");

    let markers = json!({ "m.fully_read": last["event_id"], "m.read": last["event_id"] });
    let (status, _) = server
        .post(&format!("/_matrix/client/v3/rooms/{room_id}/read_markers"), bob.token(), markers)
        .await;
    assert_eq!(status, StatusCode::OK);
    let since = synced["next_batch"].as_str().unwrap();
    let after = server.sync(&bob, &format!("since={since}")).await;
    let room = &after["rooms"]["join"][&room_id];
    assert_eq!(room["unread_notifications"]["notification_count"], 0);
    let data = room["account_data"]["events"].as_array().unwrap();
    assert!(
        data.iter()
            .any(|e| e["type"] == "m.fully_read" && e["content"]["event_id"] == last["event_id"])
    );
}

#[tokio::test]
async fn account_data_tags_and_push_rules() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id = server.create_room(&alice, json!({})).await;
    let global =
        format!("/_matrix/client/v3/user/{}/account_data/org.example.settings", alice.user_id);
    assert_error(&server.get(&global, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_eq!(
        server.put(&global, alice.token(), json!({ "theme": "dark" })).await.0,
        StatusCode::OK
    );
    assert_eq!(server.get(&global, alice.token()).await.1, json!({ "theme": "dark" }));
    assert_forbidden(&server.get(&global, bob.token()).await);
    assert_forbidden(&server.put(&global, bob.token(), json!({})).await);
    assert_error(
        &server.put(&global, alice.token(), json!(["not", "an", "object"])).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );

    let room_data = format!(
        "/_matrix/client/v3/user/{}/rooms/{room_id}/account_data/org.example.draft",
        alice.user_id
    );
    assert_eq!(
        server.put(&room_data, alice.token(), json!({ "text": "unsent" })).await.0,
        StatusCode::OK
    );
    assert_eq!(server.get(&room_data, alice.token()).await.1["text"], "unsent");

    let tags = format!("/_matrix/client/v3/user/{}/rooms/{room_id}/tags", alice.user_id);
    assert_eq!(
        server.put(&format!("{tags}/m.favourite"), alice.token(), json!({ "order": 0.5 })).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.put(&format!("{tags}/u.work"), alice.token(), json!({})).await.0,
        StatusCode::OK
    );
    let (_, listed) = server.get(&tags, alice.token()).await;
    assert_eq!(listed["tags"]["m.favourite"]["order"], 0.5);
    assert!(listed["tags"]["u.work"].is_object());
    assert_eq!(
        server
            .call(reqwest::Method::DELETE, &format!("{tags}/u.work"), alice.token(), None)
            .await
            .0,
        StatusCode::OK
    );
    let (_, listed) = server.get(&tags, alice.token()).await;
    assert!(listed["tags"].get("u.work").is_none());

    let synced = server.sync(&alice, "").await;
    let global_events = synced["account_data"]["events"].as_array().unwrap();
    assert!(global_events.iter().any(|e| e["type"] == "org.example.settings"));
    let room_events =
        synced["rooms"]["join"][&room_id]["account_data"]["events"].as_array().unwrap();
    assert!(
        room_events
            .iter()
            .any(|e| e["type"] == "m.tag" && e["content"]["tags"]["m.favourite"].is_object())
    );
    assert!(room_events.iter().any(|e| e["type"] == "org.example.draft"));

    let (status, rules) = server.get("/_matrix/client/v3/pushrules/", alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    let overrides = rules["global"]["override"].as_array().unwrap();
    assert!(overrides.iter().any(|r| r["rule_id"] == ".m.rule.master"));
    assert!(
        rules["global"]["underride"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["rule_id"] == ".m.rule.room_one_to_one")
    );
}

#[tokio::test]
async fn push_rules_can_mute_a_room_and_reach_every_client() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room_id).await;
    let since = server.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();

    // Element mutes a room with an override rule on the room id that does nothing.
    let rule = format!("/_matrix/client/v3/pushrules/global/override/{room_id}");
    let mute = json!({ "actions": [], "conditions": [{ "kind": "event_match", "key": "room_id", "pattern": room_id }] });
    let (status, body) = server.put(&rule, bob.token(), mute).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, fetched) = server.get(&rule, bob.token()).await;
    assert_eq!(fetched["rule_id"], room_id);
    assert_eq!(fetched["enabled"], true);
    let synced = server.sync(&bob, &format!("since={since}")).await;
    let rules = synced["account_data"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.push_rules")
        .cloned();
    assert!(rules.is_some_and(|r| {
        r["content"]["global"]["override"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["rule_id"] == room_id)
    }));

    server.send_text(&alice, &room_id, "you will not be notified").await;
    let counts =
        server.sync(&bob, "").await["rooms"]["join"][&room_id]["unread_notifications"].clone();
    assert_eq!(counts["notification_count"], 0, "{counts}");

    // Default rules can be switched off but not deleted; unknown rules are not found.
    let master = "/_matrix/client/v3/pushrules/global/override/.m.rule.master";
    assert_eq!(
        server.put(&format!("{master}/enabled"), bob.token(), json!({ "enabled": true })).await.0,
        StatusCode::OK
    );
    assert_eq!(server.get(&format!("{master}/enabled"), bob.token()).await.1["enabled"], true);
    assert_error(
        &server.call(reqwest::Method::DELETE, master, bob.token(), None).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.get("/_matrix/client/v3/pushrules/global/override/nope", bob.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    // The listings clients read: all, the global scope, one kind (paths with their trailing
    // slashes); an unknown kind is unrecognised.
    let (_, global) = server.get("/_matrix/client/v3/pushrules/global/", bob.token()).await;
    assert!(global["override"].as_array().unwrap().iter().any(|r| r["rule_id"] == room_id));
    for version in ["v3", "r0"] {
        let path = format!("/_matrix/client/{version}/pushrules/global/override/");
        let (status, overrides) = server.get(&path, bob.token()).await;
        assert_eq!(status, StatusCode::OK, "{overrides}");
        let ids: Vec<&str> =
            overrides.as_array().unwrap().iter().map(|r| r["rule_id"].as_str().unwrap()).collect();
        assert_eq!(ids[0], ".m.rule.master", "{ids:?}");
        assert!(ids.contains(&room_id.as_str()), "{ids:?}");
    }
    let (status, content) =
        server.get("/_matrix/client/v3/pushrules/global/content/", bob.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert!(content.as_array().unwrap().iter().all(|r| r["pattern"].is_string()), "{content}");
    assert_error(
        &server.get("/_matrix/client/v3/pushrules/global/weird/", bob.token()).await,
        StatusCode::BAD_REQUEST,
        "M_UNRECOGNIZED",
    );
    assert_error(
        &server.get("/_matrix/client/v3/pushrules/global/weird/x", bob.token()).await,
        StatusCode::BAD_REQUEST,
        "M_UNRECOGNIZED",
    );
    assert_error(
        &server.get("/_matrix/client/v3/pushrules/global/override/", None).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    let enabled = format!("/_matrix/client/v3/pushrules/global/override/{room_id}/enabled");
    assert_eq!(server.get(&enabled, bob.token()).await.1["enabled"], true);
    let actions = format!("/_matrix/client/v3/pushrules/global/override/{room_id}/actions");
    assert_eq!(server.get(&actions, bob.token()).await.1["actions"], json!([]));
    assert_error(
        &server
            .put(
                "/_matrix/client/v3/pushrules/global/override/.m.custom",
                bob.token(),
                json!({ "actions": [], "conditions": [] }),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_eq!(
        server.call(reqwest::Method::DELETE, &rule, bob.token(), None).await.0,
        StatusCode::OK
    );
    assert_error(&server.get(&rule, bob.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn odd_tag_content_does_not_break_tagging() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice, json!({})).await;
    let base = format!("/_matrix/client/v3/user/{}/rooms/{room}", alice.user_id);
    assert_eq!(
        server
            .put(&format!("{base}/account_data/m.tag"), alice.token(), json!({ "tags": 1 }))
            .await
            .0,
        StatusCode::OK
    );
    assert_eq!(
        server.put(&format!("{base}/tags/u.work"), alice.token(), json!({})).await.0,
        StatusCode::OK
    );
    assert!(
        server.get(&format!("{base}/tags"), alice.token()).await.1["tags"]["u.work"].is_object()
    );
}

#[tokio::test]
async fn sync_sends_every_section_as_synapse_does() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room_id = server.create_room(&alice, json!({ "name": "Shapes" })).await;
    let since = server.sync(&alice, "").await["next_batch"].as_str().unwrap().to_owned();
    server.send_text(&alice, &room_id, "one more").await;
    let synced = server.sync(&alice, &format!("since={since}")).await;
    // Empty sections are there, empty, not left out: clients written against Synapse read
    // them without checking.
    for section in ["join", "invite", "leave", "knock"] {
        assert!(synced["rooms"][section].is_object(), "{section}: {synced}");
    }
    for section in ["presence", "account_data", "to_device"] {
        assert!(synced[section]["events"].is_array(), "{section}: {synced}");
    }
    assert!(
        synced["device_lists"]["changed"].is_array() && synced["device_lists"]["left"].is_array()
    );
    assert_eq!(synced["device_one_time_keys_count"]["signed_curve25519"], 0, "{synced}");
    assert!(synced["device_unused_fallback_key_types"].is_array());
    let room = &synced["rooms"]["join"][&room_id];
    assert_eq!(room["timeline"]["limited"], false, "{room}");
    assert_eq!(room["timeline"]["events"].as_array().unwrap().len(), 1, "{room}");
    for section in ["state", "ephemeral", "account_data"] {
        assert_eq!(room[section]["events"], json!([]), "{section}: {room}");
    }
    assert!(room["summary"].is_object(), "{room}");
    assert_eq!(room["unread_notifications"]["notification_count"], 0, "{room}");
}

#[tokio::test]
async fn threads_are_counted_apart_and_read_apart() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    let send = |content: Value| {
        let path = format!(
            "/_matrix/client/v3/rooms/{room}/send/m.room.message/{}",
            rand::random::<u64>()
        );
        let server = &server;
        let bob = &bob;
        async move {
            let (status, body) = server.put(&path, bob.token(), content).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["event_id"].as_str().unwrap().to_owned()
        }
    };
    let root = send(json!({ "msgtype": "m.text", "body": "root" })).await;
    let in_thread = json!({
        "msgtype": "m.text", "body": "reply",
        "m.relates_to": { "rel_type": "m.thread", "event_id": root, "is_falling_back": true, "m.in_reply_to": { "event_id": root } },
    });
    send(in_thread.clone()).await;
    let last_reply = send(in_thread).await;
    let main = send(json!({ "msgtype": "m.text", "body": "main" })).await;

    let threaded =
        json!({ "room": { "timeline": { "unread_thread_notifications": true } } }).to_string();
    let counts = |query: String| {
        let server = &server;
        let alice = &alice;
        let room = room.clone();
        async move {
            let sync = server.sync(alice, &query).await;
            let joined = sync["rooms"]["join"][&room].clone();
            (
                joined["unread_notifications"]["notification_count"].clone(),
                joined["unread_thread_notifications"].clone(),
            )
        }
    };
    let by_thread = format!("filter={}", urlencode(&threaded));
    let (room_count, threads) = counts(by_thread.clone()).await;
    assert_eq!(room_count, 2, "the root and the main message");
    assert_eq!(threads[&root]["notification_count"], 2, "{threads}");
    let (all, threads) = counts(String::new()).await;
    assert_eq!(all, 4, "without the filter, everything together");
    assert!(threads.is_null(), "{threads}");

    // Reading the thread clears the thread only; reading the main timeline clears the rest.
    let receipt = |event: &str, thread: &str| {
        let path = format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{}", urlencode(event));
        let body = json!({ "thread_id": thread });
        let server = &server;
        let alice = &alice;
        async move {
            let (status, body) = server.post(&path, alice.token(), body).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
    };
    receipt(&last_reply, &root).await;
    let (room_count, threads) = counts(by_thread.clone()).await;
    assert_eq!(room_count, 2);
    assert!(threads.is_null(), "{threads}");
    receipt(&main, "main").await;
    let (room_count, _) = counts(by_thread).await;
    assert_eq!(room_count, 0);
    assert_eq!(counts(String::new()).await.0, 0);
}
