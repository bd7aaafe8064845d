//! Federation between two Palisade servers on loopback, over TLS with self-signed certificates,
//! and what a server does with requests that are not signed by who they claim.

use palisade_testkit::{TestServer, User, assert_error, assert_forbidden, urlencode};
use reqwest::{Method, StatusCode};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, RoomVersionId,
    api::federation::authentication::{ServerSignaturesInput, XMatrix},
    signatures::Ed25519KeyPair,
};
use serde_json::{Value, json};

/// A client for raw federation requests (the servers' certificates are self-signed).
fn federation_http() -> reqwest::Client {
    reqwest::Client::builder().tls_danger_accept_invalid_certs(true).build().unwrap()
}

/// Sends a federation request to `server`, signed as `origin` with `key` (or unsigned).
async fn federation_call(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
    signer: Option<(&str, &Ed25519KeyPair)>,
) -> (StatusCode, Value) {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    federation_raw(server, method, path, &bytes, signer).await
}

/// A federation request with a raw (possibly malformed) body, signed when `signer` is given
/// and the body is JSON a signature can cover.
async fn federation_raw(
    server: &TestServer,
    method: Method,
    path: &str,
    body: &[u8],
    signer: Option<(&str, &Ed25519KeyPair)>,
) -> (StatusCode, Value) {
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.federation_base()))
        .header("content-type", "application/json")
        .body(body.to_vec())
        .unwrap();
    if let Some((origin, key)) = signer {
        let input = ServerSignaturesInput::new(
            origin.try_into().unwrap(),
            server.server_name().try_into().unwrap(),
            key,
        );
        if let Ok(header) = XMatrix::try_from_http_request(&request, input) {
            request.headers_mut().insert(http::header::AUTHORIZATION, (&header).into());
        }
    }
    let response =
        federation_http().execute(reqwest::Request::try_from(request).unwrap()).await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A key pair no server has published.
fn stranger_key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "stranger".to_owned()).unwrap()
}

#[tokio::test]
async fn users_see_profiles_on_other_servers() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let path = format!("/_matrix/client/v3/profile/{}/displayname", urlencode(&bob.user_id));
    b.put(&path, Some(&bob.token), json!({ "displayname": "Bob of B" })).await;

    let profile = format!("/_matrix/client/v3/profile/{}", urlencode(&bob.user_id));
    let (status, body) = a.get(&profile, Some(&alice.token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["displayname"], "Bob of B");

    // An unknown user on B is B's 404, passed on.
    let nobody = format!(
        "/_matrix/client/v3/profile/{}",
        urlencode(&format!("@nobody:{}", b.server_name()))
    );
    assert_error(&a.get(&nobody, Some(&alice.token)).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn requests_not_signed_by_their_origin_are_refused() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let bob = b.register("bob").await;
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", urlencode(&bob.user_id));

    let unsigned = federation_call(&b, Method::GET, &path, None, None).await;
    assert_error(&unsigned, StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");

    // Claims to be A, signed with a key A never published.
    let forged = stranger_key();
    let claimed =
        federation_call(&b, Method::GET, &path, None, Some((a.server_name(), &forged))).await;
    assert_error(&claimed, StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");

    // A well-formed header for a server that does not exist cannot be verified either.
    let ghost = federation_call(&b, Method::GET, &path, None, Some(("127.0.0.1:1", &forged))).await;
    assert_error(&ghost, StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");

    // The federation listener serves only the Server-Server API.
    let client_api = federation_call(&b, Method::GET, "/_matrix/client/versions", None, None).await;
    assert_error(&client_api, StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn key_server_and_notary_serve_signed_keys() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let (status, own) =
        federation_call(&a, Method::GET, "/_matrix/key/v2/server", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(own["server_name"], a.server_name());
    assert!(own["valid_until_ts"].as_u64().unwrap() > 0);

    // B, asked as a notary about A, fetches A's keys and countersigns A's document.
    let path = format!("/_matrix/key/v2/query/{}", a.server_name());
    let (status, body) = federation_call(&b, Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let document = &body["server_keys"][0];
    assert_eq!(document["verify_keys"], own["verify_keys"]);
    let signers = document["signatures"].as_object().unwrap();
    assert!(signers.contains_key(a.server_name()) && signers.contains_key(b.server_name()));

    // The deprecated forms with a key id, which older servers and tools still use, answer the
    // same (the key id is ignored).
    let key_id = own["verify_keys"].as_object().unwrap().keys().next().unwrap().clone();
    let path = format!("/_matrix/key/v2/server/{}", urlencode(&key_id));
    let (status, by_id) = federation_call(&a, Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::OK, "{by_id}");
    assert_eq!(by_id["verify_keys"], own["verify_keys"]);
    let path = format!("/_matrix/key/v2/query/{}/{}", a.server_name(), urlencode(&key_id));
    let (status, body) = federation_call(&b, Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["server_keys"][0]["verify_keys"], own["verify_keys"]);
    let path = format!("/_matrix/key/v2/query/not%20a%20server/{}", urlencode(&key_id));
    let (status, body) = federation_call(&b, Method::GET, &path, None, None).await;
    assert_eq!(
        (status, body["errcode"].as_str()),
        (StatusCode::BAD_REQUEST, Some("M_INVALID_PARAM"))
    );

    let batch = json!({ "server_keys": { a.server_name(): {}, b.server_name(): {} } });
    let (status, body) =
        federation_call(&b, Method::POST, "/_matrix/key/v2/query", Some(batch), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["server_keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_server_without_federation_neither_listens_nor_sends() {
    let local = TestServer::start().await;
    let remote = TestServer::start_federated().await;
    let alice = local.register("alice").await;
    let bob = remote.register("bob").await;
    let profile = format!("/_matrix/client/v3/profile/{}", urlencode(&bob.user_id));
    assert_forbidden(&local.get(&profile, Some(&alice.token)).await);
}

/// Waits (up to 15 s) until `user` sees `text` in the room.
async fn wait_for_text(server: &TestServer, user: &User, room_id: &str, text: &str) {
    for _ in 0..150 {
        if server.texts(user, room_id).await.iter().any(|t| t == text) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("{} never saw {text:?}; it has {:?}", user.user_id, server.texts(user, room_id).await);
}

/// Joins `user` on `server` to a room on `via`.
async fn join_via(server: &TestServer, user: &User, room_id: &str, via: &TestServer) {
    let path = format!(
        "/_matrix/client/v3/join/{}?via={}",
        urlencode(room_id),
        urlencode(via.server_name())
    );
    let (status, body) = server.post(&path, user.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

#[tokio::test]
async fn users_on_two_servers_share_a_room() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room_id = a
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "name": "Across", "visibility": "public" }),
        )
        .await;
    a.send_text(&alice, &room_id, "before bob").await;
    a.send_text(&alice, &room_id, "still before bob").await;

    join_via(&b, &bob, &room_id, &a).await;
    // Bob can read what was said before he joined (history fetched with the join), in order.
    assert_eq!(b.texts(&bob, &room_id).await, ["before bob", "still before bob"]);
    // B has the room's state: its name and both members.
    let (status, name) =
        b.get(&format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{name}");
    assert_eq!(name["name"], "Across");
    let (_, members) =
        b.get(&format!("/_matrix/client/v3/rooms/{room_id}/joined_members"), bob.token()).await;
    let joined = members["joined"].as_object().unwrap();
    assert!(joined.contains_key(&alice.user_id) && joined.contains_key(&bob.user_id), "{members}");
    // A saw bob join.
    let (_, members) =
        a.get(&format!("/_matrix/client/v3/rooms/{room_id}/joined_members"), alice.token()).await;
    assert!(members["joined"].as_object().unwrap().contains_key(&bob.user_id), "{members}");
    // B's users find the room in A's public directory.
    let directory = format!("/_matrix/client/v3/publicRooms?server={}", urlencode(a.server_name()));
    let (status, body) = b.get(&directory, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["chunk"].as_array().unwrap().iter().any(|r| r["room_id"] == room_id.as_str()),
        "{body}"
    );
    // A second user of B joins by the room's alias on A (resolved over federation).
    let alias = format!("#across:{}", a.server_name());
    let directory = format!("/_matrix/client/v3/directory/room/{}", urlencode(&alias));
    let (status, body) = a.put(&directory, alice.token(), json!({ "room_id": room_id })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let dave = b.register("dave").await;
    // B's clients resolve the alias too, through A.
    let (status, body) = b.get(&directory, dave.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], room_id.as_str(), "{body}");
    assert!(body["servers"].as_array().unwrap().contains(&json!(a.server_name())), "{body}");
    // Anonymous callers do not get B to ask other servers.
    assert_error(&b.get(&directory, None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    let unknown = format!("/_matrix/client/v3/directory/room/%23nothing:{}", a.server_name());
    assert_error(&b.get(&unknown, dave.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    let join = format!("/_matrix/client/v3/join/{}", urlencode(&alias));
    let (status, body) = b.post(&join, dave.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], room_id.as_str());

    let (status, _) = b.send_text(&bob, &room_id, "hello from B").await;
    assert_eq!(status, StatusCode::OK);
    wait_for_text(&a, &alice, &room_id, "hello from B").await;
    a.send_text(&alice, &room_id, "hello from A").await;
    wait_for_text(&b, &bob, &room_id, "hello from A").await;

    // Both at once: the two servers' events fork the room, and both end with all of them.
    let (x, y) = tokio::join!(
        a.send_text(&alice, &room_id, "fork A"),
        b.send_text(&bob, &room_id, "fork B")
    );
    assert_eq!((x.0, y.0), (StatusCode::OK, StatusCode::OK));
    wait_for_text(&a, &alice, &room_id, "fork B").await;
    wait_for_text(&b, &bob, &room_id, "fork A").await;
    a.send_text(&alice, &room_id, "after the fork").await;
    wait_for_text(&b, &bob, &room_id, "after the fork").await;

    // Bob's sync on B shows the room with alice's messages.
    let sync = b.sync(&bob, "").await;
    let timeline = &sync["rooms"]["join"][&room_id]["timeline"]["events"];
    assert!(
        timeline.as_array().unwrap().iter().any(|e| e["content"]["body"] == "after the fork"),
        "{sync}"
    );
}

#[tokio::test]
async fn rooms_of_older_versions_federate() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    for version in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"] {
        let room_id = a
            .create_room(&alice, json!({ "room_version": version, "preset": "public_chat" }))
            .await;
        a.send_text(&alice, &room_id, &format!("v{version} before bob")).await;
        join_via(&b, &bob, &room_id, &a).await;
        assert_eq!(b.texts(&bob, &room_id).await, [format!("v{version} before bob")]);
        let (status, body) = b.send_text(&bob, &room_id, &format!("v{version} from B")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        wait_for_text(&a, &alice, &room_id, &format!("v{version} from B")).await;
        a.send_text(&alice, &room_id, &format!("v{version} from A")).await;
        wait_for_text(&b, &bob, &room_id, &format!("v{version} from A")).await;
    }
}

/// Both servers change the same state at once, in rooms of each state resolution algorithm
/// (v1 for room version 1, v2 after, v2.1 in 12): once the fork is merged, both servers hold
/// the same state.
#[tokio::test]
async fn concurrent_state_changes_converge_under_every_resolution_algorithm() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    for version in ["1", "2", "12"] {
        let room_id = a
            .create_room(&alice, json!({ "room_version": version, "preset": "public_chat" }))
            .await;
        join_via(&b, &bob, &room_id, &a).await;
        let levels = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/");
        let (_, mut power) = a.get(&levels, alice.token()).await;
        power["users"][&bob.user_id] = json!(100);
        let (status, body) = a.put(&levels, alice.token(), power.clone()).await;
        assert_eq!(status, StatusCode::OK, "v{version}: {body}");
        a.send_text(&alice, &room_id, &format!("v{version}: bob is an admin")).await;
        wait_for_text(&b, &bob, &room_id, &format!("v{version}: bob is an admin")).await;

        let topic = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.topic/");
        let (mut from_a, mut from_b) = (power.clone(), power);
        from_a["ban"] = json!(60);
        from_b["kick"] = json!(60);
        let (topic_a, topic_b, levels_a, levels_b) = tokio::join!(
            a.put(&topic, alice.token(), json!({ "topic": "A" })),
            b.put(&topic, bob.token(), json!({ "topic": "B" })),
            a.put(&levels, alice.token(), from_a),
            b.put(&levels, bob.token(), from_b),
        );
        for (status, body) in [topic_a, topic_b, levels_a, levels_b] {
            assert_eq!(status, StatusCode::OK, "v{version}: {body}");
        }
        let (after_a, after_b) = (format!("v{version}: A merged"), format!("v{version}: B merged"));
        a.send_text(&alice, &room_id, &after_a).await;
        b.send_text(&bob, &room_id, &after_b).await;
        wait_for_text(&a, &alice, &room_id, &after_b).await;
        wait_for_text(&b, &bob, &room_id, &after_a).await;
        for path in [&topic, &levels] {
            let (on_a, on_b) = (a.get(path, alice.token()).await, b.get(path, bob.token()).await);
            assert_eq!(on_a, on_b, "v{version}: {path}");
        }
    }
}

#[tokio::test]
async fn what_is_queued_for_a_down_server_arrives_after_restarts() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room_id = a.create_room(&alice, json!({ "preset": "public_chat" })).await;
    join_via(&b, &bob, &room_id, &a).await;
    a.send_text(&alice, &room_id, "while B is up").await;
    wait_for_text(&b, &bob, &room_id, "while B is up").await;

    // B goes down; alice's messages are acknowledged and queued.
    let b_config = b.config.clone();
    let b_dir = b.stop().await;
    for text in ["queued 1", "queued 2", "queued 3"] {
        let (status, _) = a.send_text(&alice, &room_id, text).await;
        assert_eq!(status, StatusCode::OK);
    }
    // A restarts too, with the queue in its database; then B comes back.
    let a_config = a.config.clone();
    let a_dir = a.stop().await;
    let a = TestServer::start_on(a_config).await;
    let b = TestServer::start_on(b_config).await;
    wait_for_text(&b, &bob, &room_id, "queued 3").await;
    let seen = b.texts(&bob, &room_id).await;
    let order: Vec<&str> =
        seen.iter().map(String::as_str).filter(|t| t.starts_with("queued")).collect();
    assert_eq!(order, ["queued 1", "queued 2", "queued 3"]);

    // And the conversation goes on both ways.
    b.send_text(&bob, &room_id, "back").await;
    wait_for_text(&a, &alice, &room_id, "back").await;
    drop((a_dir, b_dir));
}

/// A hostile peer: a real server (so its keys can be fetched) whose key the test signs with.
struct Peer {
    server: TestServer,
}

impl Peer {
    fn name(&self) -> &str {
        self.server.server_name()
    }

    fn key(&self) -> &Ed25519KeyPair {
        self.server.services.signing_key.pair()
    }

    /// Hashes and signs a v12 PDU as this server with `key`; returns its event id.
    fn sign(&self, object: &mut CanonicalJsonObject, key: &Ed25519KeyPair) -> String {
        self.sign_in(object, key, &RoomVersionId::V12)
    }

    /// Hashes and signs a PDU of a room version (3 or later) as this server with `key`;
    /// returns its event id.
    fn sign_in(
        &self,
        object: &mut CanonicalJsonObject,
        key: &Ed25519KeyPair,
        version: &RoomVersionId,
    ) -> String {
        let rules = version.rules().unwrap();
        ruma::signatures::hash_and_sign_event(self.name(), key, object, &rules.redaction).unwrap();
        format!("${}", ruma::signatures::reference_hash(object, &rules).unwrap())
    }

    /// Sends PDUs to `to` in one transaction; returns the per-PDU results.
    async fn send(&self, to: &TestServer, pdus: &[CanonicalJsonObject]) -> Value {
        static TXN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let txn = TXN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let body = json!({ "origin": self.name(), "origin_server_ts": 1, "pdus": pdus });
        let path = format!("/_matrix/federation/v1/send/evil{txn}");
        let (status, answer) =
            federation_call(to, Method::PUT, &path, Some(body), Some((self.name(), self.key())))
                .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer["pdus"].clone()
    }
}

/// Alice's public room on `a`, which mallory of the peer `peer` joined.
struct PeerInRoom {
    alice: User,
    mallory: User,
    room_id: String,
}

async fn peer_in_room(a: &TestServer, peer: &Peer) -> PeerInRoom {
    let alice = a.register("alice").await;
    let mallory = peer.server.register("mallory").await;
    let room_id = a.create_room(&alice, json!({ "preset": "public_chat" })).await;
    join_via(&peer.server, &mallory, &room_id, a).await;
    PeerInRoom { alice, mallory, room_id }
}

/// The room's state as `user` sees it: `(type, state_key)` to event id.
async fn state_ids(
    server: &TestServer,
    user: &User,
    room_id: &str,
) -> Vec<(String, String, String)> {
    let (_, state) =
        server.get(&format!("/_matrix/client/v3/rooms/{room_id}/state"), user.token()).await;
    let mut ids: Vec<(String, String, String)> = state
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap().to_owned();
            (text("type"), text("state_key"), text("event_id"))
        })
        .collect();
    ids.sort();
    ids
}

/// The id of the state event `(kind, state_key)` in the room, as `user` sees it.
async fn state_id(
    server: &TestServer,
    user: &User,
    room_id: &str,
    kind: &str,
    key: &str,
) -> String {
    let (_, state) =
        server.get(&format!("/_matrix/client/v3/rooms/{room_id}/state"), user.token()).await;
    state
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == kind && e["state_key"] == key)
        .unwrap_or_else(|| panic!("no {kind}/{key} in {state}"))["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn forged_and_unauthorised_events_from_a_peer_are_rejected() {
    let a = TestServer::start_federated().await;
    let evil = Peer { server: TestServer::start_federated().await };
    let outsider = Peer { server: TestServer::start_federated().await };
    let PeerInRoom { alice, mallory, room_id } = peer_in_room(&a, &evil).await;

    let power_levels = state_id(&a, &alice, &room_id, "m.room.power_levels", "").await;
    let mallory_member = state_id(&a, &alice, &room_id, "m.room.member", &mallory.user_id).await;
    let alice_member = state_id(&a, &alice, &room_id, "m.room.member", &alice.user_id).await;
    let parsed: ruma::OwnedRoomId = room_id.as_str().try_into().unwrap();
    let prevs = a.services.remote_rooms.extremities(&parsed).await.unwrap();
    let event =
        |sender: &str, kind: &str, state_key: Option<&str>, content: Value, auth: &[&str]| {
            let mut event = json!({
                "auth_events": auth, "content": content, "depth": 1000,
                "origin_server_ts": 1_700_000_000_000u64, "prev_events": prevs,
                "room_id": room_id, "sender": sender, "type": kind,
            });
            if let Some(key) = state_key {
                event["state_key"] = json!(key);
            }
            serde_json::from_value::<CanonicalJsonObject>(event).unwrap()
        };
    let text = |sender: &str, body: &str, member: &str| {
        event(
            sender,
            "m.room.message",
            None,
            json!({ "msgtype": "m.text", "body": body }),
            &[&power_levels, member],
        )
    };
    let state_before = state_ids(&a, &alice, &room_id).await;

    // The control: a well-formed, properly signed message from a member is accepted.
    let mut legit = text(&mallory.user_id, "legit", &mallory_member);
    let legit_id = evil.sign(&mut legit, evil.key());
    // Signed with a key the server never published, under its key id.
    let key_version =
        evil.server.services.signing_key.key_id().trim_start_matches("ed25519:").to_owned();
    let impostor = Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), key_version).unwrap();
    let mut bad_signature = text(&mallory.user_id, "bad signature", &mallory_member);
    let bad_signature_id = evil.sign(&mut bad_signature, &impostor);
    // Content changed after signing: the hash no longer matches.
    let mut tampered = text(&mallory.user_id, "original", &mallory_member);
    let tampered_id = evil.sign(&mut tampered, evil.key());
    let content: CanonicalJsonObject =
        serde_json::from_value(json!({ "msgtype": "m.text", "body": "tampered" })).unwrap();
    tampered.insert("content".into(), CanonicalJsonValue::Object(content));
    // Mallory makes himself an administrator: his power level does not allow it.
    let levels = json!({ "users": { &alice.user_id: 100, &mallory.user_id: 100 } });
    let mut takeover = event(
        &mallory.user_id,
        "m.room.power_levels",
        Some(""),
        levels,
        &[&power_levels, &mallory_member],
    );
    let takeover_id = evil.sign(&mut takeover, evil.key());
    // A message in alice's name, signed by mallory's server.
    let mut forged = text(&alice.user_id, "forged alice", &alice_member);
    let forged_id = evil.sign(&mut forged, evil.key());

    let results = evil.send(&a, &[legit, bad_signature, tampered, takeover, forged]).await;
    assert_eq!(results[&legit_id], json!({}), "{results}");
    for id in [&bad_signature_id, &takeover_id, &forged_id] {
        assert!(results[id]["error"].is_string(), "{id} accepted: {results}");
    }
    wait_for_text(&a, &alice, &room_id, "legit").await;
    let seen = a.texts(&alice, &room_id).await;
    for text in ["bad signature", "tampered", "original", "forged alice"] {
        assert!(!seen.iter().any(|t| t == text), "{text:?} shown: {seen:?}");
    }
    // The tampered event is kept only in its redacted form (spec: a hash mismatch redacts).
    let (status, kept) = a
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/event/{tampered_id}"), alice.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    assert_eq!(kept["content"], json!({}), "{kept}");

    // A server with nobody in the room cannot send into it.
    let dave = outsider.server.register("dave").await;
    let mut intrusion = text(&dave.user_id, "intrusion", &mallory_member);
    let intrusion_id = outsider.sign(&mut intrusion, outsider.key());
    let results = outsider.send(&a, &[intrusion]).await;
    assert!(results[&intrusion_id]["error"].is_string(), "{results}");

    // None of it changed the room's state.
    assert_eq!(state_before, state_ids(&a, &alice, &room_id).await);
    assert!(!a.texts(&alice, &room_id).await.iter().any(|t| t == "intrusion"));

    // Malformed PDUs are skipped, not fatal; an oversized transaction is refused whole.
    let results = evil.send(&a, &[]).await;
    assert_eq!(results, json!({}));
    let body = json!({ "origin": evil.name(), "origin_server_ts": 1, "pdus": ["not a pdu", {}, { "room_id": 5 }] });
    let (status, answer) = federation_call(
        &a,
        Method::PUT,
        "/_matrix/federation/v1/send/junk",
        Some(body),
        Some((evil.name(), evil.key())),
    )
    .await;
    assert_eq!((status, answer["pdus"].clone()), (StatusCode::OK, json!({})), "{answer}");
    let too_many: Vec<Value> = (0..51).map(|_| json!({})).collect();
    let body = json!({ "origin": evil.name(), "origin_server_ts": 1, "pdus": too_many });
    let answer = federation_call(
        &a,
        Method::PUT,
        "/_matrix/federation/v1/send/big",
        Some(body),
        Some((evil.name(), evil.key())),
    )
    .await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    // A transaction claiming another origin than the signing server is refused.
    let body = json!({ "origin": a.server_name(), "origin_server_ts": 1, "pdus": [] });
    let answer = federation_call(
        &a,
        Method::PUT,
        "/_matrix/federation/v1/send/spoof",
        Some(body),
        Some((evil.name(), evil.key())),
    )
    .await;
    assert_forbidden(&answer);

    // An "invite" that is not a member event is not countersigned.
    let mut fake_invite = event(
        &mallory.user_id,
        "m.room.message",
        Some(&alice.user_id),
        json!({ "membership": "invite", "body": "sign me" }),
        &[&power_levels, &mallory_member],
    );
    let fake_id = evil.sign(&mut fake_invite, evil.key());
    let path =
        format!("/_matrix/federation/v2/invite/{}/{}", urlencode(&room_id), urlencode(&fake_id));
    let body = json!({ "room_version": "12", "event": fake_invite, "invite_room_state": [] });
    let answer =
        federation_call(&a, Method::PUT, &path, Some(body), Some((evil.name(), evil.key()))).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    // Nor is one claiming the room is of another version.
    let body = json!({ "room_version": "11", "event": {}, "invite_room_state": [] });
    let answer =
        federation_call(&a, Method::PUT, &path, Some(body), Some((evil.name(), evil.key()))).await;
    assert_eq!(answer.0, StatusCode::BAD_REQUEST, "{}", answer.1);

    // Banned, mallory's server replays his old join to get the room's state: refused.
    let ban = format!("/_matrix/client/v3/rooms/{room_id}/ban");
    let (status, body) = a.post(&ban, alice.token(), json!({ "user_id": mallory.user_id })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let old_join = a
        .services
        .rooms
        .pdu_object(&ruma::OwnedEventId::try_from(mallory_member.as_str()).unwrap())
        .await
        .unwrap()
        .unwrap();
    let path = format!(
        "/_matrix/federation/v2/send_join/{}/{}",
        urlencode(&room_id),
        urlencode(&mallory_member)
    );
    let replay = federation_call(
        &a,
        Method::PUT,
        &path,
        Some(serde_json::to_value(&old_join).unwrap()),
        Some((evil.name(), evil.key())),
    )
    .await;
    assert_forbidden(&replay);
    assert!(replay.1.get("state").is_none());
}

#[tokio::test]
async fn typing_and_receipts_cross_servers() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room_id = a.create_room(&alice, json!({ "preset": "public_chat" })).await;
    join_via(&b, &bob, &room_id, &a).await;
    let (_, sent) = a.send_text(&alice, &room_id, "read me").await;
    let event_id = sent["event_id"].as_str().unwrap().to_owned();
    wait_for_text(&b, &bob, &room_id, "read me").await;

    let typing = format!("/_matrix/client/v3/rooms/{room_id}/typing/{}", urlencode(&bob.user_id));
    let (status, body) =
        b.put(&typing, bob.token(), json!({ "typing": true, "timeout": 20000 })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let receipt =
        format!("/_matrix/client/v3/rooms/{room_id}/receipt/m.read/{}", urlencode(&event_id));
    let (status, body) = b.post(&receipt, bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // Alice's sync on A shows bob typing and bob's receipt on her message.
    let (mut saw_typing, mut saw_receipt) = (false, false);
    for _ in 0..100 {
        let sync = a.sync(&alice, "timeout=0").await;
        for event in
            sync["rooms"]["join"][&room_id]["ephemeral"]["events"].as_array().into_iter().flatten()
        {
            if event["type"] == "m.typing"
                && event["content"]["user_ids"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|u| u == &json!(bob.user_id))
            {
                saw_typing = true;
            }
            if event["type"] == "m.receipt"
                && event["content"][&event_id]["m.read"].get(&bob.user_id).is_some()
            {
                saw_receipt = true;
            }
        }
        if saw_typing && saw_receipt {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(saw_typing && saw_receipt, "typing {saw_typing}, receipt {saw_receipt}");
}

#[tokio::test]
async fn invites_cross_servers_and_can_be_accepted_or_rejected() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let carol = b.register("carol").await;
    let room_id = a
        .create_room(
            &alice,
            json!({ "preset": "private_chat", "name": "Private", "invite": [bob.user_id] }),
        )
        .await;

    // Carol, not invited, is refused by A; B tells her so as A's answer, not as its own.
    let join = format!(
        "/_matrix/client/v3/join/{}?via={}",
        urlencode(&room_id),
        urlencode(a.server_name())
    );
    let refused = b.post(&join, carol.token(), json!({})).await;
    assert_forbidden(&refused);
    let error = refused.1["error"].as_str().unwrap();
    assert!(error.starts_with(a.server_name()), "{error}");

    // Bob's server shows him the invite, with the room's name.
    let mut invite = Value::Null;
    for _ in 0..50 {
        let sync = b.sync(&bob, "timeout=0").await;
        invite = sync["rooms"]["invite"][&room_id].clone();
        if !invite.is_null() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let shown = invite["invite_state"]["events"].as_array().unwrap_or_else(|| panic!("no invite"));
    assert!(
        shown.iter().any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Private"),
        "{invite}"
    );
    assert!(
        shown.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == bob.user_id.as_str()
            && e["content"]["membership"] == "invite"),
        "{invite}"
    );

    // He accepts (the join goes through alice's server) and they talk.
    let (status, body) =
        b.post(&format!("/_matrix/client/v3/rooms/{room_id}/join"), bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    b.send_text(&bob, &room_id, "thanks for the invite").await;
    wait_for_text(&a, &alice, &room_id, "thanks for the invite").await;

    // Carol is invited and declines: alice sees her leave.
    let path = format!("/_matrix/client/v3/rooms/{room_id}/invite");
    let (status, body) = a.post(&path, alice.token(), json!({ "user_id": carol.user_id })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = b
        .post(&format!("/_matrix/client/v3/rooms/{room_id}/leave"), carol.token(), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let member = format!(
        "/_matrix/client/v3/rooms/{room_id}/state/m.room.member/{}",
        urlencode(&carol.user_id)
    );
    let mut membership = Value::Null;
    for _ in 0..100 {
        membership = a.get(&member, alice.token()).await.1["membership"].clone();
        if membership == "leave" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(membership, "leave");

    // An invite for a user the other server does not have is refused.
    let nobody = format!("@nobody:{}", b.server_name());
    let (status, _) = a.post(&path, alice.token(), json!({ "user_id": nobody })).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Erin is invited, then alice's server goes away: she can still decline (locally).
    let erin = b.register("erin").await;
    let (status, body) = a.post(&path, alice.token(), json!({ "user_id": erin.user_id })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    drop(a.stop().await);
    let leave = format!("/_matrix/client/v3/rooms/{room_id}/leave");
    let (status, body) = b.post(&leave, erin.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sync = b.sync(&erin, "").await;
    assert!(sync["rooms"]["invite"].get(&room_id).is_none(), "{sync}");
}

#[tokio::test]
async fn a_server_the_room_acl_denies_is_shut_out() {
    let a = TestServer::start_federated().await;
    let evil = Peer { server: TestServer::start_federated_as("localhost", |_| {}).await };
    let PeerInRoom { alice, mallory, room_id } = peer_in_room(&a, &evil).await;
    let (_, sent) = a.send_text(&alice, &room_id, "before the acl").await;
    let event_id = sent["event_id"].as_str().unwrap().to_owned();
    let read = format!("/_matrix/federation/v1/event/{}", urlencode(&event_id));
    let (status, _) =
        federation_call(&a, Method::GET, &read, None, Some((evil.name(), evil.key()))).await;
    assert_eq!(status, StatusCode::OK, "a member server may read the room");

    let acl = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.server_acl/");
    let content = json!({ "allow": ["*"], "deny": ["localhost"], "allow_ip_literals": true });
    let (status, body) = a.put(&acl, alice.token(), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_forbidden(
        &federation_call(&a, Method::GET, &read, None, Some((evil.name(), evil.key()))).await,
    );
    let power_levels = state_id(&a, &alice, &room_id, "m.room.power_levels", "").await;
    let member = state_id(&a, &alice, &room_id, "m.room.member", &mallory.user_id).await;
    let parsed: ruma::OwnedRoomId = room_id.as_str().try_into().unwrap();
    let prevs = a.services.remote_rooms.extremities(&parsed).await.unwrap();
    let mut message: CanonicalJsonObject = serde_json::from_value(json!({
        "auth_events": [power_levels, member], "content": { "msgtype": "m.text", "body": "denied" },
        "depth": 1000, "origin_server_ts": 1_700_000_000_000u64, "prev_events": prevs,
        "room_id": room_id, "sender": mallory.user_id, "type": "m.room.message",
    }))
    .unwrap();
    let id = evil.sign(&mut message, evil.key());
    let results = evil.send(&a, &[message]).await;
    assert!(results[&id]["error"].is_string(), "{results}");
    assert!(!a.texts(&alice, &room_id).await.iter().any(|t| t == "denied"));
}

#[tokio::test]
async fn openid_tokens_prove_who_a_user_is_to_third_parties() {
    let a = TestServer::start_federated().await;
    let alice = a.register("alice").await;
    let bob = a.register("bob").await;
    let path =
        format!("/_matrix/client/v3/user/{}/openid/request_token", urlencode(&alice.user_id));
    let (status, token) = a.post(&path, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{token}");
    assert_eq!(token["matrix_server_name"], a.server_name());
    assert_eq!(token["token_type"], "Bearer");
    assert_forbidden(&a.post(&path, bob.token(), json!({})).await);

    let userinfo = |token: &str| {
        format!("/_matrix/federation/v1/openid/userinfo?access_token={}", urlencode(token))
    };
    let (status, info) = federation_call(
        &a,
        Method::GET,
        &userinfo(token["access_token"].as_str().unwrap()),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{info}");
    assert_eq!(info["sub"], alice.user_id.as_str());
    let forged = federation_call(&a, Method::GET, &userinfo("pal_not-a-token"), None, None).await;
    assert_error(&forged, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    // An access token is not an OpenID token.
    let access = federation_call(&a, Method::GET, &userinfo(&alice.token), None, None).await;
    assert_error(&access, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
}

#[tokio::test]
async fn history_hidden_from_newcomers_is_hidden_from_their_server() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let visibility = json!({ "type": "m.room.history_visibility", "state_key": "", "content": { "history_visibility": "joined" } });
    let room_id = a
        .create_room(&alice, json!({ "preset": "public_chat", "initial_state": [visibility] }))
        .await;
    a.send_text(&alice, &room_id, "said before bob's server was there").await;
    join_via(&b, &bob, &room_id, &a).await;
    a.send_text(&alice, &room_id, "said after").await;
    wait_for_text(&b, &bob, &room_id, "said after").await;
    assert_eq!(b.texts(&bob, &room_id).await, ["said after"]);
    // B received the earlier message only redacted: its content never left A.
    let on_disk = |server: &TestServer, needle: &[u8]| {
        std::fs::read_dir(&server.config.data_dir).unwrap().any(|entry| {
            let path = entry.unwrap().path();
            path.is_file()
                && std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle)
        })
    };
    assert!(on_disk(&a, b"said before bob's server was there"));
    assert!(!on_disk(&b, b"said before bob's server was there"));
    assert!(on_disk(&b, b"said after"));
}

#[tokio::test]
async fn either_server_hosts_the_room_and_presence_travels() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    // This time the room is bob's, on B, and alice on A joins it.
    let room_id = b.create_room(&bob, json!({ "preset": "public_chat" })).await;
    b.send_text(&bob, &room_id, "welcome to B").await;
    join_via(&a, &alice, &room_id, &b).await;
    assert_eq!(a.texts(&alice, &room_id).await, ["welcome to B"]);
    a.send_text(&alice, &room_id, "hello B").await;
    wait_for_text(&b, &bob, &room_id, "hello B").await;

    // Sharing a room, alice's server hears bob's presence.
    let status = format!("/_matrix/client/v3/presence/{}/status", urlencode(&bob.user_id));
    let (code, body) =
        b.put(&status, bob.token(), json!({ "presence": "online", "status_msg": "at work" })).await;
    assert_eq!(code, StatusCode::OK, "{body}");
    let mut seen = Value::Null;
    for _ in 0..50 {
        seen = a.get(&status, alice.token()).await.1;
        if seen["presence"] == "online" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(seen["presence"], "online", "{seen}");
    assert_eq!(seen["status_msg"], "at work");
}

#[tokio::test]
async fn a_peer_cannot_turn_a_joined_user_into_an_invitee() {
    let a = TestServer::start_federated().await;
    let evil = Peer { server: TestServer::start_federated().await };
    let PeerInRoom { alice, mallory, room_id } = peer_in_room(&a, &evil).await;
    let power_levels = state_id(&a, &alice, &room_id, "m.room.power_levels", "").await;
    let mallory_member = state_id(&a, &alice, &room_id, "m.room.member", &mallory.user_id).await;
    let state_before = state_ids(&a, &alice, &room_id).await;

    // An invite of joined alice, after an event only the inviting server claims to have.
    for prev_events in [json!(["$unknownprevevent"]), json!(a_extremities(&a, &room_id).await)] {
        let mut invite: CanonicalJsonObject = serde_json::from_value(json!({
            "auth_events": [power_levels, mallory_member], "depth": 1000,
            "content": { "membership": "invite" }, "origin_server_ts": 1_700_000_000_000u64,
            "prev_events": prev_events, "room_id": room_id, "sender": mallory.user_id,
            "state_key": alice.user_id, "type": "m.room.member",
        }))
        .unwrap();
        let invite_id = evil.sign(&mut invite, evil.key());
        let path = format!(
            "/_matrix/federation/v2/invite/{}/{}",
            urlencode(&room_id),
            urlencode(&invite_id)
        );
        let stripped = json!({ "type": "m.room.name", "state_key": "", "sender": mallory.user_id, "content": { "name": "Attacker's room" } });
        let body =
            json!({ "room_version": "12", "event": invite, "invite_room_state": [stripped] });
        let answer =
            federation_call(&a, Method::PUT, &path, Some(body), Some((evil.name(), evil.key())))
                .await;
        assert_forbidden(&answer);
    }

    // Alice is still joined and reads the room as before.
    let (_, joined) = a.get("/_matrix/client/v3/joined_rooms", alice.token()).await;
    assert_eq!(joined["joined_rooms"], json!([room_id]), "{joined}");
    let messages = format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b");
    assert_eq!(a.get(&messages, alice.token()).await.0, StatusCode::OK);
    let members = format!("/_matrix/client/v3/rooms/{room_id}/joined_members");
    assert_eq!(a.get(&members, alice.token()).await.0, StatusCode::OK);
    let sync = a.sync(&alice, "").await;
    assert!(sync["rooms"]["invite"].get(&room_id).is_none(), "{sync}");
    assert!(sync["rooms"]["join"].get(&room_id).is_some(), "{sync}");
    assert_eq!(state_before, state_ids(&a, &alice, &room_id).await);
}

/// Concurrent power levels from two equally powerful users resolve to the later one, as
/// Synapse resolves them: the event being received takes part in resolving the current state
/// (it is not stored yet), and a member event that is state on both sides (the peer user's
/// join, which authorises only its own side's event) stays out of the auth difference, where
/// it would reorder the power events (state resolution v2, auth chains as Synapse has them).
#[tokio::test]
async fn concurrent_power_levels_resolve_as_synapse_resolves_them() {
    let a = TestServer::start_federated().await;
    let peer = Peer { server: TestServer::start_federated().await };
    let alice = a.register("alice").await;
    let mallory = peer.server.register("mallory").await;
    let body = json!({ "preset": "public_chat", "room_version": "11" });
    let room_id = a.create_room(&alice, body).await;
    join_via(&peer.server, &mallory, &room_id, &a).await;
    let levels = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/");
    let (_, mut power) = a.get(&levels, alice.token()).await;
    power["users"][&mallory.user_id] = json!(100);
    let (_, promoted) = a.put(&levels, alice.token(), power.clone()).await;
    let fork_point = a_extremities(&a, &room_id).await;

    // Alice raises `ban` here; mallory's server, not having seen it, raises `kick` earlier.
    let mut from_alice = power.clone();
    from_alice["ban"] = json!(60);
    let (status, by_alice) = a.put(&levels, alice.token(), from_alice).await;
    assert_eq!(status, StatusCode::OK, "{by_alice}");
    let create = state_id(&a, &alice, &room_id, "m.room.create", "").await;
    let member = state_id(&a, &alice, &room_id, "m.room.member", &mallory.user_id).await;
    let mut from_mallory = power;
    from_mallory["kick"] = json!(60);
    let mut by_mallory: CanonicalJsonObject = serde_json::from_value(json!({
        "auth_events": [create, promoted["event_id"], member], "content": from_mallory,
        "depth": 1000, "origin_server_ts": 1_000u64, "prev_events": fork_point,
        "room_id": room_id, "sender": mallory.user_id, "state_key": "",
        "type": "m.room.power_levels",
    }))
    .unwrap();
    let mallory_id = peer.sign_in(&mut by_mallory, peer.key(), &RoomVersionId::V11);
    let results = peer.send(&a, &[by_mallory]).await;
    assert_eq!(results[&mallory_id], json!({}), "{results}");
    let event = format!("/_matrix/client/v3/rooms/{room_id}/event/{}", urlencode(&mallory_id));
    let (status, _) = a.get(&event, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "mallory's change is part of the room");
    // Equal power, so the later event is applied last and stands.
    let current = state_id(&a, &alice, &room_id, "m.room.power_levels", "").await;
    assert_eq!(current, by_alice["event_id"].as_str().unwrap());
}

/// The room's forward extremities on `server`.
async fn a_extremities(server: &TestServer, room_id: &str) -> Vec<String> {
    let parsed: ruma::OwnedRoomId = room_id.try_into().unwrap();
    let ids = server.services.remote_rooms.extremities(&parsed).await.unwrap();
    ids.iter().map(ToString::to_string).collect()
}

#[tokio::test]
async fn a_peer_that_rotates_its_key_is_heard_at_once() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let room_id = a.create_room(&alice, json!({ "preset": "public_chat" })).await;
    join_via(&b, &bob, &room_id, &a).await;
    b.send_text(&bob, &room_id, "with the first key").await;
    wait_for_text(&a, &alice, &room_id, "with the first key").await;

    // B comes back with a new signing key, seconds after A last fetched B's keys.
    let old_key = b.services.signing_key.key_id();
    let b_config = b.config.clone();
    let b_dir = b.stop().await;
    let (_, serialized) = palisade_service::SigningKey::generate().unwrap();
    std::fs::write(b_config.signing_key_path(), serialized).unwrap();
    let b = TestServer::start_on(b_config).await;
    assert_ne!(b.services.signing_key.key_id(), old_key);

    // A fetches the key it has not seen and takes B's requests and events again.
    let (status, _) = b.send_text(&bob, &room_id, "with the new key").await;
    assert_eq!(status, StatusCode::OK);
    wait_for_text(&a, &alice, &room_id, "with the new key").await;
    let seen = a.texts(&alice, &room_id).await;
    assert!(seen.iter().any(|t| t == "with the first key"), "{seen:?}");
    // A request signed with a key B never published is still refused.
    let answer = federation_call(
        &a,
        Method::GET,
        "/_matrix/federation/v1/query/profile?user_id=%40alice%3Aexample.org",
        None,
        Some((b.server_name(), &stranger_key())),
    )
    .await;
    assert_eq!(answer.0, StatusCode::UNAUTHORIZED, "{}", answer.1);
    drop(b_dir);
}

/// Replaces the signatures `signer` made on a stored event of `server` (stopped) with ones
/// that do not verify.
fn forge_signatures(config: &palisade_core::Config, event_id: &str, signer: &str) {
    let db = rusqlite::Connection::open(config.database_path()).unwrap();
    let json: String = db
        .query_row("SELECT json FROM events WHERE event_id = ?1", [event_id], |r| r.get(0))
        .unwrap();
    let mut pdu: Value = serde_json::from_str(&json).unwrap();
    for signature in pdu["signatures"][signer].as_object_mut().unwrap().values_mut() {
        *signature = json!("A".repeat(86));
    }
    let forged = serde_json::to_string(&pdu).unwrap();
    db.execute("UPDATE events SET json = ?1 WHERE event_id = ?2", [&forged, event_id]).unwrap();
}

#[tokio::test]
async fn a_joining_server_checks_everything_the_resident_server_sends() {
    let a = TestServer::start_federated().await;
    let evil = TestServer::start_federated().await;
    let alice = a.register("alice").await;
    let mallory = evil.register("mallory").await;
    let room_id = evil.create_room(&mallory, json!({ "preset": "public_chat" })).await;
    evil.send_text(&mallory, &room_id, "genuine history").await;
    let (_, forged_text) = evil.send_text(&mallory, &room_id, "forged history").await;

    // The resident server's copies of a history event and of a state event stop verifying.
    let config = evil.config.clone();
    let dir = evil.stop().await;
    forge_signatures(
        &config,
        forged_text["event_id"].as_str().unwrap(),
        config.server_name.as_str(),
    );
    let evil = TestServer::start_on(config.clone()).await;

    // The history event is left out; the room itself still checks out.
    join_via(&a, &alice, &room_id, &evil).await;
    let seen = a.texts(&alice, &room_id).await;
    assert!(seen.iter().any(|t| t == "genuine history"), "{seen:?}");
    assert!(!seen.iter().any(|t| t == "forged history"), "{seen:?}");

    // A room whose state does not verify is not joined at all.
    let other = evil.create_room(&mallory, json!({ "preset": "public_chat" })).await;
    let (_, name) = evil
        .put(
            &format!("/_matrix/client/v3/rooms/{other}/state/m.room.name/"),
            mallory.token(),
            json!({ "name": "Forged" }),
        )
        .await;
    let config = evil.config.clone();
    drop(evil.stop().await);
    forge_signatures(&config, name["event_id"].as_str().unwrap(), config.server_name.as_str());
    let evil = TestServer::start_on(config).await;
    let path = format!(
        "/_matrix/client/v3/join/{}?via={}",
        urlencode(&other),
        urlencode(evil.server_name())
    );
    let (status, body) = a.post(&path, alice.token(), json!({})).await;
    assert!(!status.is_success(), "{body}");
    let (_, joined) = a.get("/_matrix/client/v3/joined_rooms", alice.token()).await;
    assert_eq!(joined["joined_rooms"], json!([room_id]), "{joined}");
    drop(dir);
}

#[tokio::test]
async fn no_federation_endpoint_answers_malformed_input_with_a_server_error() {
    let a = TestServer::start_federated().await;
    let peer = Peer { server: TestServer::start_federated().await };
    let PeerInRoom { mallory, room_id, .. } = peer_in_room(&a, &peer).await;
    let event_id = a_extremities(&a, &room_id).await.remove(0);
    let bodies = [
        "[]",
        "\"text\"",
        "{",
        r#"{"pdus": 5, "edus": {}, "origin": 7, "event": [], "room_version": {}}"#,
        r#"{"event": {"type": "m.room.member", "content": null}, "room_version": "12"}"#,
        r#"{"server_keys": {"x": 1}, "device_keys": {"@a:b": 1}, "one_time_keys": []}"#,
    ];
    let (mut failures, mut statuses) = (Vec::new(), Vec::new());
    for endpoint in palisade_api::federation_endpoints() {
        let path = endpoint
            .path
            .replace("{room_id}", &urlencode(&room_id))
            .replace("{event_id}", &urlencode(&event_id))
            .replace("{user_id}", &urlencode(&mallory.user_id))
            .replace("{server_name}", &urlencode(peer.name()))
            .replace("{room_alias}", &urlencode(&format!("#nothing:{}", a.server_name())))
            .replace("{txn_id}", "walk")
            .replace("{key_id}", "ed25519:walk");
        let method = Method::from_bytes(endpoint.method.as_bytes()).unwrap();
        let malformed: &[&str] =
            if matches!(method, Method::PUT | Method::POST) { &bodies } else { &[""] };
        for body in malformed {
            let signer = Some((peer.name(), peer.key()));
            let answer = federation_raw(&a, method.clone(), &path, body.as_bytes(), signer).await;
            if answer.0.is_server_error() {
                failures.push(format!("{method} {path} with {body}: {} {}", answer.0, answer.1));
            }
            statuses.push(answer.0);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // The walk got past authentication: most answers are the parser's or the handler's.
    let unauthorized = statuses.iter().filter(|s| **s == StatusCode::UNAUTHORIZED).count();
    let bad_request = statuses.iter().filter(|s| **s == StatusCode::BAD_REQUEST).count();
    assert!(unauthorized < statuses.len() / 2 && bad_request > 10, "{statuses:?}");
}

#[tokio::test]
async fn requests_from_a_server_known_only_through_a_notary_are_accepted() {
    let notary = TestServer::start_federated().await;
    let origin = Peer { server: TestServer::start_federated().await };
    let trusted = notary.server_name().try_into().unwrap();
    let a = TestServer::start_federated_with(|config| {
        config.federation.trusted_key_servers = vec![trusted];
    })
    .await;
    let bob = a.register("bob").await;
    let sender = format!("@olga:{}", origin.name());

    // The notary learns the origin's keys; then the origin goes offline, so A can learn them
    // only through the notary.
    let path = format!("/_matrix/key/v2/query/{}", origin.name());
    let (status, body) = federation_call(&notary, Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let name = origin.name().to_owned();
    let signing_key = origin.server.services.signing_key.clone();
    let key = signing_key.pair();
    let mut invite: CanonicalJsonObject = serde_json::from_value(json!({
        "auth_events": ["$aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"], "depth": 3,
        "content": { "membership": "invite" }, "origin_server_ts": 1_700_000_000_000u64,
        "prev_events": ["$bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"],
        "room_id": "!cccccccccccccccccccccccccccccccccccccccccccc", "sender": sender,
        "state_key": bob.user_id, "type": "m.room.member",
    }))
    .unwrap();
    let invite_id = origin.sign(&mut invite, key);
    let room_id = "!cccccccccccccccccccccccccccccccccccccccccccc";
    drop(origin.server.stop().await);

    let profile =
        format!("/_matrix/federation/v1/query/profile?user_id={}", urlencode(&bob.user_id));
    let (status, body) = federation_call(&a, Method::GET, &profile, None, Some((&name, key))).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["displayname"], "bob");

    let path =
        format!("/_matrix/federation/v2/invite/{}/{}", urlencode(room_id), urlencode(&invite_id));
    let body = json!({ "room_version": "12", "event": invite, "invite_room_state": [] });
    let (status, answer) =
        federation_call(&a, Method::PUT, &path, Some(body), Some((&name, key))).await;
    assert_eq!(status, StatusCode::OK, "{answer}");
    let signatures = answer["event"]["signatures"].as_object().unwrap();
    assert!(signatures.contains_key(a.server_name()), "countersigned: {answer}");
    let sync = a.sync(&bob, "").await;
    assert!(sync["rooms"]["invite"].get(room_id).is_some(), "{sync}");
}
