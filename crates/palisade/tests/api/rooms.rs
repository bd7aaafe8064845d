//! Creating rooms, their initial state, and the PDUs behind them.

use reqwest::StatusCode;
use serde_json::{Value, json};

use palisade_testkit::{TestServer, assert_error, assert_forbidden, urlencode};

fn state_of<'a>(state: &'a [Value], kind: &str, key: &str) -> &'a Value {
    state
        .iter()
        .find(|e| e["type"] == kind && e["state_key"] == key)
        .unwrap_or_else(|| panic!("no {kind}/{key} in state"))
}

#[tokio::test]
async fn create_room_sends_the_initial_state() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id = server
        .create_room(
            &alice,
            json!({
                "name": "Planning",
                "topic": "Q3",
                "preset": "private_chat",
                "invite": [bob.user_id],
                "is_direct": true,
                "initial_state": [{ "type": "m.room.encryption", "state_key": "", "content": { "algorithm": "m.megolm.v1.aes-sha2" } }],
            }),
        )
        .await;
    // Version 12 room ids are the create event's reference hash: no server name.
    assert!(room_id.starts_with('!') && !room_id.contains(':'), "{room_id}");

    let (status, state) =
        server.get(&format!("/_matrix/client/v3/rooms/{room_id}/state"), alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{state}");
    let state = state.as_array().unwrap();
    let create = state_of(state, "m.room.create", "");
    assert_eq!(create["content"]["room_version"], "12");
    assert_eq!(create["event_id"].as_str().unwrap()[1..], room_id[1..]);
    assert_eq!(state_of(state, "m.room.member", &alice.user_id)["content"]["membership"], "join");
    let invite = state_of(state, "m.room.member", &bob.user_id);
    assert_eq!(invite["content"]["membership"], "invite");
    assert_eq!(invite["content"]["is_direct"], true);
    let power = &state_of(state, "m.room.power_levels", "")["content"];
    // In v12 the creator's power comes from the create event; listing them is forbidden.
    assert!(power["users"].get(&alice.user_id).is_none(), "{power}");
    assert_eq!(state_of(state, "m.room.join_rules", "")["content"]["join_rule"], "invite");
    assert_eq!(
        state_of(state, "m.room.history_visibility", "")["content"]["history_visibility"],
        "shared"
    );
    assert_eq!(state_of(state, "m.room.name", "")["content"]["name"], "Planning");
    assert_eq!(state_of(state, "m.room.topic", "")["content"]["topic"], "Q3");
    assert_eq!(
        state_of(state, "m.room.encryption", "")["content"]["algorithm"],
        "m.megolm.v1.aes-sha2"
    );

    let (status, name) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name/"), alice.token())
        .await;
    assert_eq!((status, name), (StatusCode::OK, json!({ "name": "Planning" })));
    let (_, full) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name?format=event"),
            alice.token(),
        )
        .await;
    assert_eq!(full["sender"], alice.user_id);
    assert_error(
        &server
            .get(&format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.avatar/"), alice.token())
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let (_, joined) = server.get("/_matrix/client/v3/joined_rooms", alice.token()).await;
    assert_eq!(joined["joined_rooms"], json!([room_id]));
}

#[tokio::test]
async fn older_room_versions_and_unsupported_ones() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    for version in ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11"] {
        let room_id = server
            .create_room(&alice, json!({ "room_version": version, "preset": "public_chat" }))
            .await;
        assert!(room_id.ends_with(":localhost"), "{room_id}");
        let (_, create) = server
            .get(&format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.create/"), alice.token())
            .await;
        assert_eq!(create["room_version"], version);
        // Up to v10 the create event carries `creator`; v11 dropped it.
        assert_eq!(create.get("creator").is_some(), version != "11", "{create}");
        let (_, power) = server
            .get(
                &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/"),
                alice.token(),
            )
            .await;
        assert_eq!(power["users"][&alice.user_id], 100);
        // What every room is used for: members join, talk, name the room, redact, read back.
        server.join(&bob, &room_id).await;
        let (status, sent) = server.send_text(&bob, &room_id, "hello").await;
        assert_eq!(status, StatusCode::OK, "{sent}");
        let event_id = sent["event_id"].as_str().unwrap();
        // Versions 1 and 2 name events `$opaque:server`; from 3 they are reference hashes
        // (standard base64 in 3, URL-safe later).
        match version {
            "1" | "2" => assert!(event_id.ends_with(":localhost"), "{event_id}"),
            _ => assert_eq!(event_id.len(), 44, "{event_id}"),
        }
        let name = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name/");
        let (status, body) = server.put(&name, alice.token(), json!({ "name": "Old" })).await;
        assert_eq!(status, StatusCode::OK, "v{version}: {body}");
        let redact =
            format!("/_matrix/client/v3/rooms/{room_id}/redact/{}/r{version}", urlencode(event_id));
        let (status, body) = server.put(&redact, alice.token(), json!({ "reason": "tidy" })).await;
        assert_eq!(status, StatusCode::OK, "v{version}: {body}");
        let (status, event) = server
            .get(
                &format!("/_matrix/client/v3/rooms/{room_id}/event/{}", urlencode(event_id)),
                bob.token(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "v{version}: {event}");
        assert_eq!(event["content"], json!({}), "v{version}: redacted: {event}");
        assert_eq!(event["unsigned"]["redacted_because"]["content"]["reason"], "tidy");
        // Bob may not redact alice's events (the room's `redact` level, read as the version
        // reads power levels).
        let (_, own) = server.send_text(&alice, &room_id, "mine").await;
        let redact = format!(
            "/_matrix/client/v3/rooms/{room_id}/redact/{}/b{version}",
            urlencode(own["event_id"].as_str().unwrap())
        );
        assert_forbidden(&server.put(&redact, bob.token(), json!({})).await);
        let sync = server.sync(&bob, "").await;
        let timeline = &sync["rooms"]["join"][&room_id]["timeline"]["events"];
        assert!(timeline.as_array().unwrap().iter().any(|e| e["content"]["name"] == "Old"));
    }
    // Before v10, power levels may be strings of digits; they count as their numbers.
    let room_id =
        server.create_room(&alice, json!({ "room_version": "9", "preset": "public_chat" })).await;
    server.join(&bob, &room_id).await;
    let levels = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.power_levels/");
    let content = json!({ "users": { &alice.user_id: "100" }, "redact": "0" });
    let (status, body) = server.put(&levels, alice.token(), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, own) = server.send_text(&alice, &room_id, "anyone may tidy this").await;
    let redact = format!(
        "/_matrix/client/v3/rooms/{room_id}/redact/{}/by-bob",
        urlencode(own["event_id"].as_str().unwrap())
    );
    let (status, body) = server.put(&redact, bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for version in ["13", "0", "nonsense"] {
        assert_error(
            &server
                .post(
                    "/_matrix/client/v3/createRoom",
                    alice.token(),
                    json!({ "room_version": version }),
                )
                .await,
            StatusCode::BAD_REQUEST,
            "M_UNSUPPORTED_ROOM_VERSION",
        );
    }
    assert_error(
        &server.post("/_matrix/client/v3/createRoom", None, json!({})).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &server
            .post("/_matrix/client/v3/createRoom", alice.token(), json!({ "preset": "everyone" }))
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
}

#[tokio::test]
async fn power_level_override_and_public_preset() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id = server
        .create_room(
            &alice,
            json!({ "preset": "public_chat", "power_level_content_override": { "events_default": 50 } }),
        )
        .await;
    server.join(&bob, &room_id).await;
    // Bob has 0 and messages now need 50.
    assert_forbidden(&server.send_text(&bob, &room_id, "hi").await);
    assert_eq!(server.send_text(&alice, &room_id, "hi").await.0, StatusCode::OK);
}

#[tokio::test]
async fn events_are_signed_pdus_with_reference_hash_ids() {
    use ruma::{
        CanonicalJsonObject, RoomVersionId,
        serde::Base64,
        signatures::{Verified, verify_event},
    };

    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room_id = server.create_room(&alice, json!({ "name": "Signed" })).await;
    let (_, sent) = server.send_text(&alice, &room_id, "hello").await;
    let event_id = sent["event_id"].as_str().unwrap().to_owned();
    let (_, keys) = server.get("/_matrix/key/v2/server", None).await;
    let config = server.config.clone();
    drop(server.stop().await.map(|dir| dir.keep()));

    let db = rusqlite::Connection::open(config.database_path()).unwrap();
    let json: String = db
        .query_row("SELECT json FROM events WHERE event_id = ?1", [&event_id], |r| r.get(0))
        .unwrap();
    let pdu: CanonicalJsonObject = serde_json::from_str(&json).unwrap();
    for field in ["auth_events", "prev_events", "depth", "hashes", "signatures", "origin_server_ts"]
    {
        assert!(pdu.contains_key(field), "PDU lacks {field}: {json}");
    }
    let rules = RoomVersionId::V12.rules().unwrap();
    let reference = ruma::signatures::reference_hash(&pdu, &rules).unwrap();
    assert_eq!(event_id, format!("${reference}"));

    let (key_id, key) = keys["verify_keys"].as_object().unwrap().iter().next().unwrap();
    let public_key = Base64::parse(key["key"].as_str().unwrap()).unwrap();
    let keys = [("localhost".to_owned(), [(key_id.clone(), public_key)].into_iter().collect())]
        .into_iter()
        .collect();
    assert_eq!(verify_event(&keys, &pdu, &rules).unwrap(), Verified::All);
    std::fs::remove_dir_all(&config.data_dir).unwrap();
}

#[tokio::test]
async fn rooms_survive_a_restart() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room_id = server.create_room(&alice, json!({ "name": "Durable" })).await;
    server.send_text(&alice, &room_id, "before").await;
    let config = server.config.clone();
    let dir = server.stop().await;
    let server = TestServer::start_on(config).await;
    assert_eq!(server.send_text(&alice, &room_id, "after").await.0, StatusCode::OK);
    let (_, page) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=2"), alice.token())
        .await;
    let bodies: Vec<_> =
        page["chunk"].as_array().unwrap().iter().map(|e| e["content"]["body"].clone()).collect();
    assert_eq!(bodies, [json!("after"), json!("before")]);
    let (_, name) = server
        .get(&format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.name/"), alice.token())
        .await;
    assert_eq!(name["name"], "Durable");
    drop(dir);
}

#[tokio::test]
async fn aliases_and_the_public_directory() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room_id = server
        .create_room(&alice, json!({ "room_alias_name": "town-square", "visibility": "public", "preset": "public_chat", "name": "Town Square", "topic": "Everyone welcome" }))
        .await;
    let private = server.create_room(&alice, json!({ "name": "Secret" })).await;

    let (status, alias) =
        server.get("/_matrix/client/v3/directory/room/%23town-square:localhost", None).await;
    assert_eq!(status, StatusCode::OK, "{alias}");
    assert_eq!(alias["room_id"], room_id);
    assert_eq!(alias["servers"], json!(["localhost"]));
    let (_, canonical) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.canonical_alias/"),
            alice.token(),
        )
        .await;
    assert_eq!(canonical["alias"], "#town-square:localhost");
    assert_error(
        &server
            .post(
                "/_matrix/client/v3/createRoom",
                alice.token(),
                json!({ "room_alias_name": "town-square" }),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_ROOM_IN_USE",
    );

    server.join(&bob, "%23town-square:localhost").await;
    assert_error(
        &server
            .put(
                "/_matrix/client/v3/directory/room/%23town-square:localhost",
                bob.token(),
                json!({ "room_id": room_id }),
            )
            .await,
        StatusCode::CONFLICT,
        "M_UNKNOWN",
    );
    let (status, _) = server
        .put(
            "/_matrix/client/v3/directory/room/%23bobs:localhost",
            bob.token(),
            json!({ "room_id": room_id }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_forbidden(
        &server
            .put(
                "/_matrix/client/v3/directory/room/%23sneaky:localhost",
                bob.token(),
                json!({ "room_id": private }),
            )
            .await,
    );
    assert_error(
        &server
            .put(
                "/_matrix/client/v3/directory/room/%23x:elsewhere.org",
                bob.token(),
                json!({ "room_id": room_id }),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let (_, aliases) =
        server.get(&format!("/_matrix/client/v3/rooms/{room_id}/aliases"), bob.token()).await;
    assert_eq!(aliases["aliases"], json!(["#bobs:localhost", "#town-square:localhost"]));
    // Bob (power 0) may not delete Alice's alias; Alice may delete Bob's.
    let delete =
        |alias: &'static str, user| server.call(reqwest::Method::DELETE, alias, user, None);
    assert_eq!(
        delete("/_matrix/client/v3/directory/room/%23town-square:localhost", bob.token()).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        delete("/_matrix/client/v3/directory/room/%23bobs:localhost", alice.token()).await.0,
        StatusCode::OK
    );
    assert_error(
        &server.get("/_matrix/client/v3/directory/room/%23bobs:localhost", None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    let (status, list) = server.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let chunk = list["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 1, "{list}");
    assert_eq!(chunk[0]["room_id"], room_id);
    assert_eq!(chunk[0]["name"], "Town Square");
    assert_eq!(chunk[0]["num_joined_members"], 2);
    assert_eq!(chunk[0]["canonical_alias"], "#town-square:localhost");
    let (_, found) = server
        .post(
            "/_matrix/client/v3/publicRooms",
            alice.token(),
            json!({ "filter": { "generic_search_term": "welcome" } }),
        )
        .await;
    assert_eq!(found["chunk"].as_array().unwrap().len(), 1);
    let (_, none) = server
        .post(
            "/_matrix/client/v3/publicRooms",
            alice.token(),
            json!({ "filter": { "generic_search_term": "secret" } }),
        )
        .await;
    assert_eq!(none["chunk"].as_array().unwrap().len(), 0);
    // A topic of the wrong type (the auth rules do not look at content) does not break the
    // directory: the room is listed without one.
    let topic = format!("/_matrix/client/v3/rooms/{room_id}/state/m.room.topic/");
    assert_eq!(server.put(&topic, alice.token(), json!({ "topic": 42 })).await.0, StatusCode::OK);
    let (status, list) = server.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["chunk"][0]["name"], "Town Square");
    assert!(list["chunk"][0].get("topic").is_none(), "{list}");

    let visibility = format!("/_matrix/client/v3/directory/list/room/{private}");
    assert_eq!(server.get(&visibility, None).await.1["visibility"], "private");
    assert_eq!(
        server.put(&visibility, bob.token(), json!({ "visibility": "public" })).await.0,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        server.put(&visibility, alice.token(), json!({ "visibility": "public" })).await.0,
        StatusCode::OK
    );
    assert_eq!(server.get(&visibility, None).await.1["visibility"], "public");
    let (_, list) = server.get("/_matrix/client/v3/publicRooms?limit=1", None).await;
    assert_eq!(list["chunk"].as_array().unwrap().len(), 1);
    assert_eq!(list["total_room_count_estimate"], 2);
    let next = list["next_batch"].as_str().unwrap();
    let (_, rest) =
        server.get(&format!("/_matrix/client/v3/publicRooms?limit=1&since={next}"), None).await;
    assert_eq!(rest["chunk"].as_array().unwrap().len(), 1);
    assert!(rest.get("next_batch").is_none());
}

#[tokio::test]
async fn private_rooms_are_encrypted_by_default() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let encryption =
        |room: &str| format!("/_matrix/client/v3/rooms/{room}/state/m.room.encryption/");
    for preset in ["private_chat", "trusted_private_chat"] {
        let room = server.create_room(&alice, json!({ "preset": preset })).await;
        let (status, content) = server.get(&encryption(&room), alice.token()).await;
        assert_eq!(status, StatusCode::OK, "{preset}: {content}");
        assert_eq!(content["algorithm"], "m.megolm.v1.aes-sha2");
    }
    let dm = server.create_room(&alice, json!({ "is_direct": true })).await;
    assert_eq!(server.get(&encryption(&dm), alice.token()).await.0, StatusCode::OK);
    let public = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    assert_eq!(server.get(&encryption(&public), alice.token()).await.0, StatusCode::NOT_FOUND);

    let server = TestServer::start_with(|c| {
        c.encryption_by_default = palisade_core::config::EncryptionDefault::Off;
    })
    .await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice, json!({ "preset": "private_chat" })).await;
    assert_eq!(server.get(&encryption(&room), alice.token()).await.0, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn mutual_rooms_lists_the_rooms_two_users_share() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let shared = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &shared).await;
    server.create_room(&alice, json!({})).await;
    let invited = server.create_room(&alice, json!({ "invite": [bob.user_id] })).await;

    let path = format!("/_matrix/client/v1/mutual_rooms?user_id={}", urlencode(&bob.user_id));
    let (status, body) = server.get(&path, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body, json!({ "joined": [shared], "count": 1 }), "not {invited}");
    let unstable =
        path.replace("v1/mutual_rooms", "unstable/uk.half-shot.msc2666/user/mutual_rooms");
    assert_eq!(server.get(&unstable, alice.token()).await.1["joined"], json!([shared]));

    let stranger =
        format!("/_matrix/client/v1/mutual_rooms?user_id={}", urlencode("@nobody:localhost"));
    assert_eq!(server.get(&stranger, alice.token()).await.1, json!({ "joined": [], "count": 0 }));
    let own = format!("/_matrix/client/v1/mutual_rooms?user_id={}", urlencode(&alice.user_id));
    assert_error(
        &server.get(&own, alice.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let invalid = "/_matrix/client/v1/mutual_rooms?user_id=bob";
    assert_error(
        &server.get(invalid, alice.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.get("/_matrix/client/v1/mutual_rooms", alice.token()).await,
        StatusCode::BAD_REQUEST,
        "M_MISSING_PARAM",
    );
    assert_eq!(server.get(&path, None).await.0, StatusCode::UNAUTHORIZED);
    let (_, versions) = server.get("/_matrix/client/versions", None).await;
    assert_eq!(versions["unstable_features"]["uk.half-shot.msc2666.query_mutual_rooms"], true);
}

#[tokio::test]
async fn room_summaries_preview_rooms_their_viewer_may_see() {
    let server = TestServer::start().await;
    let (alice, bob, carol) = (
        server.register("alice").await,
        server.register("bob").await,
        server.register("carol").await,
    );
    let public = server
        .create_room(&alice, json!({ "preset": "public_chat", "name": "Lobby", "topic": "Say hi", "room_alias_name": "lobby" }))
        .await;
    let summary = |room: &str| format!("/_matrix/client/v1/room_summary/{}", urlencode(room));

    let (status, body) = server.get(&summary(&public), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["room_id"], public);
    assert_eq!(body["name"], "Lobby");
    assert_eq!(body["topic"], "Say hi");
    // `public` is the default join rule, which ruma leaves out.
    assert!(body.get("join_rule").is_none_or(|rule| rule == "public"), "{body}");
    assert_eq!(body["num_joined_members"], 1);
    assert_eq!(body["room_version"], "12");
    assert!(body.get("membership").is_none(), "anonymous: {body}");
    let (status, by_alias) = server.get(&summary("#lobby:localhost"), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{by_alias}");
    assert_eq!(by_alias["room_id"], public);
    let (_, mine) = server.get(&summary(&public), alice.token()).await;
    assert_eq!(mine["membership"], "join");

    // A private room: its invitee sees it, nobody else learns it exists.
    let private =
        server.create_room(&alice, json!({ "name": "Secret", "invite": [bob.user_id] })).await;
    let (status, invited) = server.get(&summary(&private), bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{invited}");
    assert_eq!(
        (invited["membership"].as_str(), invited["join_rule"].as_str()),
        (Some("invite"), Some("invite"))
    );
    assert_error(
        &server.get(&summary(&private), carol.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(&server.get(&summary(&private), None).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
    assert_error(
        &server.get(&summary("!nowhere:localhost"), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.get(&summary("#nothing:localhost"), None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}
