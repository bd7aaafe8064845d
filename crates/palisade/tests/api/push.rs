//! Push notifications through HTTP: pushers set and removed, what reaches a push gateway (a
//! stand-in that checks every request against the spec's schema), and `/notifications`.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::Duration,
};

use palisade_testkit::{TestServer, User, assert_error, urlencode};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// The push gateway stand-in (`push_gateway.py`), stopped when dropped.
struct PushGateway {
    child: Child,
    base: String,
    http: reqwest::Client,
}

impl PushGateway {
    fn start() -> Self {
        Self::start_on(0)
    }

    /// A gateway on `port` (0: any free one).
    fn start_on(port: u16) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/push_gateway.py");
        let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/api/spec/push_notifier.yaml");
        let mut child = Command::new(crate::synapse::python())
            .args([script, schema, &port.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("starting the push gateway");
        let mut port = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut port).unwrap();
        let base = format!("http://127.0.0.1:{}", port.trim());
        Self { child, base, http: reqwest::Client::new() }
    }

    /// The URL pushers name.
    fn url(&self) -> String {
        format!("{}/_matrix/push/v1/notify", self.base)
    }

    /// The notifications received so far; fails the test on any request off the schema.
    async fn received(&self) -> Vec<Value> {
        let seen: Value = self.http.get(&self.base).send().await.unwrap().json().await.unwrap();
        assert_eq!(seen["errors"], json!([]), "requests off the Push Gateway API schema");
        seen["received"].as_array().unwrap().iter().map(|r| r["notification"].clone()).collect()
    }

    /// Waits for a notification about `event_id` sent to `pushkey`.
    async fn push_of(&self, event_id: &str, pushkey: &str) -> Value {
        for _ in 0..300 {
            let found = self
                .received()
                .await
                .into_iter()
                .find(|n| n["event_id"] == event_id && n["devices"][0]["pushkey"] == pushkey);
            if let Some(found) = found {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no push of {event_id} to {pushkey}");
    }

    /// The events pushed to `pushkey`, in order.
    async fn pushed_to(&self, pushkey: &str) -> Vec<String> {
        let received = self.received().await.into_iter();
        let to_key = received.filter(|n| n["devices"][0]["pushkey"] == pushkey);
        to_key.map(|n| n["event_id"].as_str().unwrap().to_owned()).collect()
    }
}

impl Drop for PushGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A pusher for `pushkey` at `url`, with `format` if given.
fn pusher(pushkey: &str, url: &str, format: Option<&str>) -> Value {
    let mut data = json!({ "url": url });
    if let Some(format) = format {
        data["format"] = json!(format);
    }
    json!({
        "kind": "http",
        "app_id": "im.vector.app.android",
        "app_display_name": "Element",
        "device_display_name": "Phone",
        "pushkey": pushkey,
        "lang": "en",
        "data": data,
    })
}

async fn set_pusher(server: &TestServer, user: &User, body: Value) -> (StatusCode, Value) {
    server.post("/_matrix/client/v3/pushers/set", user.token(), body).await
}

async fn pushkeys(server: &TestServer, user: &User) -> Vec<String> {
    let (status, body) = server.get("/_matrix/client/v3/pushers", user.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pushers = body["pushers"].as_array().unwrap();
    pushers.iter().map(|p| p["pushkey"].as_str().unwrap().to_owned()).collect()
}

async fn send(server: &TestServer, user: &User, room: &str, content: Value) -> String {
    let kind =
        if content.get("algorithm").is_some() { "m.room.encrypted" } else { "m.room.message" };
    let path = format!("/_matrix/client/v3/rooms/{room}/send/{kind}/{}", rand::random::<u64>());
    let (status, body) = server.put(&path, user.token(), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    body["event_id"].as_str().unwrap().to_owned()
}

async fn push_server() -> TestServer {
    TestServer::start_with(|config| {
        config.push.gateway_allowed_ips = vec!["127.0.0.1".parse().unwrap()];
    })
    .await
}

#[tokio::test]
async fn pushers_are_validated_listed_and_removed() {
    let server = push_server().await;
    let bob = server.register("bob").await;
    let gateway = "https://push.example.org/_matrix/push/v1/notify";

    let wrong_path = pusher("k", "https://push.example.org/push", None);
    assert_error(
        &set_pusher(&server, &bob, wrong_path).await,
        StatusCode::BAD_REQUEST,
        "M_MISSING_PARAM",
    );
    let mut email = pusher("k", gateway, None);
    email["kind"] = json!("email");
    assert_eq!(set_pusher(&server, &bob, email).await.0, StatusCode::BAD_REQUEST);
    let mut missing = pusher("k", gateway, None);
    missing.as_object_mut().unwrap().remove("app_id");
    assert_eq!(set_pusher(&server, &bob, missing).await.0, StatusCode::BAD_REQUEST);
    let long_key = pusher(&"k".repeat(513), gateway, None);
    assert_error(
        &set_pusher(&server, &bob, long_key).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let (status, _) =
        server.post("/_matrix/client/v3/pushers/set", None, pusher("k", gateway, None)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(pushkeys(&server, &bob).await.is_empty());

    // Set, updated in place, and listed as set.
    assert_eq!(set_pusher(&server, &bob, pusher("one", gateway, None)).await.0, StatusCode::OK);
    let updated = pusher("one", gateway, Some("event_id_only"));
    assert_eq!(set_pusher(&server, &bob, updated).await.0, StatusCode::OK);
    let (_, body) = server.get("/_matrix/client/v3/pushers", bob.token()).await;
    assert_eq!(body["pushers"].as_array().unwrap().len(), 1, "{body}");
    assert_eq!(body["pushers"][0]["data"]["format"], "event_id_only");
    assert_eq!(body["pushers"][0]["app_display_name"], "Element");

    // Another user taking the same pushkey (a phone changing hands) takes it over, unless
    // appending.
    let carol = server.register("carol").await;
    assert_eq!(set_pusher(&server, &carol, pusher("one", gateway, None)).await.0, StatusCode::OK);
    assert!(pushkeys(&server, &bob).await.is_empty());
    let mut appended = pusher("one", gateway, None);
    appended["append"] = json!(true);
    assert_eq!(set_pusher(&server, &bob, appended).await.0, StatusCode::OK);
    assert_eq!(pushkeys(&server, &carol).await, ["one"]);

    // Removed with `kind: null`.
    let removal = json!({ "kind": null, "app_id": "im.vector.app.android", "pushkey": "one" });
    assert_eq!(set_pusher(&server, &bob, removal).await.0, StatusCode::OK);
    assert!(pushkeys(&server, &bob).await.is_empty());

    // Only an approved device may set one (a pusher tells a third party of every message).
    let phone = server.login("bob", Some("phone")).await;
    let refused = set_pusher(&server, &phone, pusher("two", gateway, None)).await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN, "{}", refused.1);
    assert!(pushkeys(&server, &bob).await.is_empty());

    // A device signed out, or an account deactivated, loses its pushers.
    assert_eq!(set_pusher(&server, &bob, pusher("two", gateway, None)).await.0, StatusCode::OK);
    assert_eq!(pushkeys(&server, &phone).await, ["two"]);
    let (status, _) = server.post("/_matrix/client/v3/logout", bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert!(pushkeys(&server, &phone).await.is_empty());
    assert_eq!(set_pusher(&server, &carol, pusher("three", gateway, None)).await.0, StatusCode::OK);
    let deactivate = json!({ "auth": { "type": "m.login.password", "user": "carol", "password": palisade_testkit::PASSWORD } });
    let (status, body) =
        server.post("/_matrix/client/v3/account/deactivate", carol.token(), deactivate).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let relogin = server.register("carol2").await;
    assert!(pushkeys(&server, &relogin).await.is_empty());
}

#[tokio::test]
async fn messages_mentions_and_invites_reach_the_push_gateway() {
    let gateway = PushGateway::start();
    let server = push_server().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    assert_eq!(
        set_pusher(&server, &bob, pusher("bob-phone", &gateway.url(), None)).await.0,
        StatusCode::OK
    );

    // A message: the full format, without content (not configured to send it).
    let hello = send(&server, &alice, &room, json!({ "msgtype": "m.text", "body": "hello" })).await;
    let push = gateway.push_of(&hello, "bob-phone").await;
    assert_eq!(push["room_id"], room);
    assert_eq!(push["type"], "m.room.message");
    assert_eq!(push["sender"], alice.user_id);
    assert_eq!(push["counts"]["unread"], 1);
    // Two members: the one-to-one rule rings.
    assert_eq!(push["prio"], "high");
    assert_eq!(push["devices"][0]["tweaks"]["sound"], "default");
    assert!(push.get("content").is_none(), "{push}");
    assert_eq!(push["devices"][0]["app_id"], "im.vector.app.android");
    assert!(push["devices"][0]["data"].get("url").is_none());

    // A mention highlights.
    let mention =
        json!({ "msgtype": "m.text", "body": "bob?", "m.mentions": { "user_ids": [bob.user_id] } });
    let mention = send(&server, &alice, &room, mention).await;
    let push = gateway.push_of(&mention, "bob-phone").await;
    assert_eq!(push["prio"], "high");
    assert_eq!(push["devices"][0]["tweaks"]["highlight"], true);

    // An invite to another room.
    let other = server.create_room(&alice, json!({})).await;
    let (status, body) = server
        .post(
            &format!("/_matrix/client/v3/rooms/{other}/invite"),
            alice.token(),
            json!({ "user_id": bob.user_id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, state) = server
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{other}/state/m.room.member/{}",
                urlencode(&bob.user_id)
            ),
            alice.token(),
        )
        .await;
    assert_eq!(state["membership"], "invite");
    let invites = loop_until_invite(&gateway, &other).await;
    assert_eq!(invites["type"], "m.room.member");
    assert_eq!(invites["user_is_target"], true);

    // A muted room pushes nothing; the next message elsewhere shows nothing was skipped.
    let path = format!("/_matrix/client/v3/pushrules/global/room/{}", urlencode(&room));
    let (status, body) = server.put(&path, bob.token(), json!({ "actions": [] })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let muted = send(&server, &alice, &room, json!({ "msgtype": "m.text", "body": "shh" })).await;
    server.join(&bob, &other).await;
    let after = send(&server, &alice, &other, json!({ "msgtype": "m.text", "body": "here" })).await;
    gateway.push_of(&after, "bob-phone").await;
    assert!(!gateway.pushed_to("bob-phone").await.contains(&muted), "a muted room was pushed");

    // Bob's own messages are not pushed to him.
    let own = send(&server, &bob, &other, json!({ "msgtype": "m.text", "body": "mine" })).await;
    let last = send(&server, &alice, &other, json!({ "msgtype": "m.text", "body": "last" })).await;
    gateway.push_of(&last, "bob-phone").await;
    assert!(!gateway.pushed_to("bob-phone").await.contains(&own));

    // `/notifications` lists them newest first; `only=highlight` the mention.
    let (status, page) = server.get("/_matrix/client/v3/notifications", bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{page}");
    let ids: Vec<&str> = page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["event"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.first(), Some(&last.as_str()));
    assert!(ids.contains(&hello.as_str()) && ids.contains(&mention.as_str()));
    assert!(!ids.contains(&muted.as_str()) && !ids.contains(&own.as_str()));
    assert_eq!(page["notifications"][0]["read"], false);
    assert_eq!(page["notifications"][0]["room_id"], other);
    let (_, highlights) =
        server.get("/_matrix/client/v3/notifications?only=highlight", bob.token()).await;
    let highlights = highlights["notifications"].as_array().unwrap().clone();
    assert_eq!(highlights.len(), 1);
    assert_eq!(highlights[0]["event"]["event_id"], mention);
    let (_, first) = server.get("/_matrix/client/v3/notifications?limit=1", bob.token()).await;
    let token = first["next_token"].as_str().expect("a next page");
    let (_, second) = server
        .get(&format!("/_matrix/client/v3/notifications?limit=1&from={token}"), bob.token())
        .await;
    assert_ne!(
        second["notifications"][0]["event"]["event_id"],
        first["notifications"][0]["event"]["event_id"]
    );
    let (status, _) =
        server.get("/_matrix/client/v3/notifications?from=nonsense", bob.token()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

/// Waits for the push of an invite to `room`.
async fn loop_until_invite(gateway: &PushGateway, room: &str) -> Value {
    for _ in 0..300 {
        let found = gateway.received().await.into_iter().find(|n| n["room_id"] == room);
        if let Some(found) = found {
            return found;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no push of the invite");
}

#[tokio::test]
async fn encrypted_rooms_push_ids_only_and_gateways_prune_and_retry() {
    let gateway = PushGateway::start();
    let server = push_server().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let encryption = json!({ "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "m.megolm.v1.aes-sha2" } });
    let room = server
        .create_room(&alice, json!({ "preset": "public_chat", "initial_state": [encryption] }))
        .await;
    server.join(&bob, &room).await;
    assert_eq!(
        set_pusher(&server, &bob, pusher("flaky-phone", &gateway.url(), None)).await.0,
        StatusCode::OK
    );
    let carol = server.register("carol").await;
    server.join(&carol, &room).await;
    assert_eq!(
        set_pusher(&server, &carol, pusher("reject-me", &gateway.url(), None)).await.0,
        StatusCode::OK
    );

    let ciphertext = json!({
        "algorithm": "m.megolm.v1.aes-sha2",
        "ciphertext": "AwgAEnACgAkLmt6qF84IK++J7UDH2Za1YVchHyprqTqsg",
        "device_id": "ALICEDEVICE",
        "sender_key": "IlRMeOPX2e0MurIyfWEucYBRVOEEUMrOHqn/8mLqMjA",
        "session_id": "X3lUlvLELLYxeTx4yOVu6UDpasGEVO0Jbu+QFnm0cKQ",
    });
    let secret = send(&server, &alice, &room, ciphertext).await;
    // The gateway failed the first attempt: the retry brings it, ids and counts only.
    let push = gateway.push_of(&secret, "flaky-phone").await;
    assert!(push.get("type").is_none() && push.get("sender").is_none(), "{push}");
    assert_eq!(push["counts"]["unread"], 1);
    assert_eq!(push["prio"], "high");

    // The gateway rejected carol's pushkey: her pusher is gone.
    gateway.push_of(&secret, "reject-me").await;
    for _ in 0..100 {
        if pushkeys(&server, &carol).await.is_empty() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("a rejected pusher was kept");
}

#[tokio::test]
async fn notifications_wait_for_a_gateway_that_is_down_across_a_restart() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/_matrix/push/v1/notify");
    let server = push_server().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    assert_eq!(set_pusher(&server, &bob, pusher("bob-phone", &url, None)).await.0, StatusCode::OK);
    let message = send(&server, &alice, &room, json!({ "msgtype": "m.text", "body": "hi" })).await;
    // Recorded (the gateway is down, so not delivered), then the server restarts.
    for _ in 0..100 {
        let (_, page) = server.get("/_matrix/client/v3/notifications", bob.token()).await;
        if page["notifications"][0]["event"]["event_id"] == message {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let config = server.config.clone();
    let dir = server.stop().await;
    let server = TestServer::start_on(config).await;
    let gateway = PushGateway::start_on(port);
    gateway.push_of(&message, "bob-phone").await;
    assert_eq!(gateway.pushed_to("bob-phone").await, [message], "sent once");
    drop((server, dir));
}

#[tokio::test]
async fn a_room_mention_by_someone_allowed_to_highlights_everyone() {
    let server = push_server().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    // Bob may not notify the room (power level 0 < 50); alice, its creator, may.
    let everyone =
        json!({ "msgtype": "m.text", "body": "@room look", "m.mentions": { "room": true } });
    let from_bob = send(&server, &bob, &room, everyone.clone()).await;
    let from_alice = send(&server, &alice, &room, everyone).await;
    let mut highlighted = Vec::new();
    for _ in 0..100 {
        let (_, page) =
            server.get("/_matrix/client/v3/notifications?only=highlight", bob.token()).await;
        highlighted = page["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["event"]["event_id"].as_str().unwrap().to_owned())
            .collect();
        if !highlighted.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(highlighted, [from_alice]);
    let (_, page) =
        server.get("/_matrix/client/v3/notifications?only=highlight", alice.token()).await;
    let alice_sees: Vec<&str> = page["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["event"]["event_id"].as_str().unwrap())
        .collect();
    assert!(!alice_sees.contains(&from_bob.as_str()), "bob may not notify the room");
}
