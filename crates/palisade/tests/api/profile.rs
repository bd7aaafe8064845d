//! Profiles and presence.

use reqwest::StatusCode;
use serde_json::{Value, json};

use palisade_testkit::{TestServer, assert_error, assert_forbidden, urlencode};

#[tokio::test]
async fn set_and_read_profiles() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (status, profile) = server.get("/_matrix/client/v3/profile/@alice:localhost", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(profile["displayname"], "alice");

    let name = "/_matrix/client/v3/profile/@alice:localhost/displayname";
    let avatar = "/_matrix/client/v3/profile/@alice:localhost/avatar_url";
    assert_eq!(
        server.put(name, alice.token(), json!({ "displayname": "Alice A." })).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.put(avatar, alice.token(), json!({ "avatar_url": "mxc://localhost/abc" })).await.0,
        StatusCode::OK
    );
    let (_, body) = server.get(name, bob.token()).await;
    assert_eq!(body["displayname"], "Alice A.");
    let (_, body) = server.get(avatar, None).await;
    assert_eq!(body["avatar_url"], "mxc://localhost/abc");
    let (_, profile) = server.get("/_matrix/client/v3/profile/@alice:localhost", None).await;
    assert_eq!(profile, json!({ "displayname": "Alice A.", "avatar_url": "mxc://localhost/abc" }));

    assert_forbidden(&server.put(name, bob.token(), json!({ "displayname": "Mallory" })).await);
    assert_error(
        &server.put(name, None, json!({ "displayname": "Mallory" })).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
    let (_, body) = server.get(name, None).await;
    assert_eq!(body["displayname"], "Alice A.");
    assert_error(
        &server.get("/_matrix/client/v3/profile/@nobody:localhost", None).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server.get("/_matrix/client/v3/profile/not-a-user-id", None).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn a_new_display_name_reaches_the_users_rooms() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice, json!({})).await;
    let name = "/_matrix/client/v3/profile/@alice:localhost/displayname";
    assert_eq!(
        server.put(name, alice.token(), json!({ "displayname": "Alice Liddell" })).await.0,
        StatusCode::OK
    );
    let member = format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/@alice:localhost");
    let (_, content) = server.get(&member, alice.token()).await;
    assert_eq!(content["displayname"], "Alice Liddell");
    assert_eq!(content["membership"], "join");
}

#[tokio::test]
async fn the_user_directory_finds_local_users() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    server.register("carol").await;
    let name = "/_matrix/client/v3/profile/@bob:localhost/displayname";
    assert_eq!(
        server.put(name, bob.token(), json!({ "displayname": "Robert Tables" })).await.0,
        StatusCode::OK
    );
    let search = |term: &str, limit: u64| json!({ "search_term": term, "limit": limit });
    let path = "/_matrix/client/v3/user_directory/search";
    let (status, found) = server.post(path, alice.token(), search("tables", 10)).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    assert_eq!(
        found["results"],
        json!([{ "user_id": "@bob:localhost", "display_name": "Robert Tables" }])
    );
    assert_eq!(found["limited"], false);
    let (_, limited) = server.post(path, alice.token(), search("localhost", 2)).await;
    assert_eq!(limited["results"].as_array().unwrap().len(), 2);
    assert_eq!(limited["limited"], true);
    // LIKE wildcards are searched for literally.
    let (_, none) = server.post(path, alice.token(), search("%", 10)).await;
    assert_eq!(none["results"], json!([]));
    assert_error(
        &server.post(path, None, search("bob", 10)).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
}

#[tokio::test]
async fn presence_is_set_by_its_owner() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let path = "/_matrix/client/v3/presence/@alice:localhost/status";
    let (status, before) = server.get(path, bob.token()).await;
    assert_eq!((status, before["presence"].clone()), (StatusCode::OK, json!("offline")));
    let set = json!({ "presence": "online", "status_msg": "in a meeting" });
    assert_eq!(server.put(path, alice.token(), set.clone()).await.0, StatusCode::OK);
    assert_forbidden(&server.put(path, bob.token(), set).await);
    let (_, now) = server.get(path, bob.token()).await;
    assert_eq!(now["presence"], "online");
    assert_eq!(now["status_msg"], "in a meeting");
    assert_error(
        &server.get("/_matrix/client/v3/presence/@nobody:localhost/status", bob.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn a_profile_change_keeps_unread_counts_and_sync_position() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    server.send_text(&alice, &room, "one").await;
    server.send_text(&alice, &room, "two").await;
    let since = server.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();
    let name = "/_matrix/client/v3/profile/@bob:localhost/displayname";
    assert_eq!(
        server.put(name, bob.token(), json!({ "displayname": "Robert" })).await.0,
        StatusCode::OK
    );
    let next = server.sync(&bob, &format!("since={since}")).await;
    let joined = &next["rooms"]["join"][&room];
    assert_eq!(joined["unread_notifications"]["notification_count"], 2, "{joined}");
    let state = joined["state"]["events"].as_array().map_or(0, Vec::len);
    assert_eq!(state, 0, "not treated as a fresh join: {joined}");
}

#[tokio::test]
async fn extended_profile_fields_are_kept_listed_and_removed() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let field =
        |name: &str| format!("/_matrix/client/v3/profile/{}/{name}", urlencode(&alice.user_id));

    let (status, body) =
        server.put(&field("m.tz"), alice.token(), json!({ "m.tz": "Europe/Paris" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let pronouns = json!({ "org.example.pronouns": { "en": "she/her" } });
    assert_eq!(
        server.put(&field("org.example.pronouns"), alice.token(), pronouns).await.0,
        StatusCode::OK
    );
    assert_eq!(
        server.get(&field("m.tz"), bob.token()).await,
        (StatusCode::OK, json!({ "m.tz": "Europe/Paris" }))
    );
    let (_, profile) = server
        .get(&format!("/_matrix/client/v3/profile/{}", urlencode(&alice.user_id)), bob.token())
        .await;
    assert_eq!(profile["m.tz"], "Europe/Paris");
    assert_eq!(profile["org.example.pronouns"]["en"], "she/her");
    assert_eq!(profile["displayname"], "alice");

    // Removed, then not found.
    let deleted = server.call(reqwest::Method::DELETE, &field("m.tz"), alice.token(), None).await;
    assert_eq!(deleted.0, StatusCode::OK, "{}", deleted.1);
    assert_error(
        &server.get(&field("m.tz"), bob.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    // The display name and avatar have routes of their own; deleting goes through them too.
    let cleared =
        server.call(reqwest::Method::DELETE, &field("displayname"), alice.token(), None).await;
    assert_eq!(cleared.0, StatusCode::OK, "{}", cleared.1);
    let (_, name) = server.get(&field("displayname"), bob.token()).await;
    assert!(name.get("displayname").is_none(), "{name}");

    // Only one's own; names and sizes within the spec's bounds.
    assert_error(
        &server.put(&field("m.tz"), bob.token(), json!({ "m.tz": "UTC" })).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let long = "a".repeat(256);
    assert_error(
        &server.put(&field(&long), alice.token(), json!({ long.clone(): 1 })).await,
        StatusCode::BAD_REQUEST,
        "M_KEY_TOO_LARGE",
    );
    let huge = json!({ "org.example.big": "x".repeat(70_000) });
    assert_error(
        &server.put(&field("org.example.big"), alice.token(), huge).await,
        StatusCode::BAD_REQUEST,
        "M_PROFILE_TOO_LARGE",
    );
    let mismatched =
        server.put(&field("org.example.a"), alice.token(), json!({ "org.example.b": 1 })).await;
    assert_eq!(mismatched.0, StatusCode::BAD_REQUEST, "{}", mismatched.1);
}

/// The `m.presence` events of a sync, by sender.
fn presence_of(sync: &Value) -> std::collections::BTreeMap<String, Value> {
    sync["presence"]["events"]
        .as_array()
        .map(|events| {
            events
                .iter()
                .map(|e| (e["sender"].as_str().unwrap().to_owned(), e["content"].clone()))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn presence_reaches_those_sharing_a_room_through_sync() {
    let server = TestServer::start().await;
    let (alice, bob, carol, dave) = (
        server.register("alice").await,
        server.register("bob").await,
        server.register("carol").await,
        server.register("dave").await,
    );
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    server.join(&dave, &room).await;

    // Syncing puts bob online; carol (no shared room) syncs too; dave syncs saying offline.
    server.sync(&bob, "").await;
    server.sync(&carol, "").await;
    server.sync(&dave, "set_presence=offline").await;
    let first = server.sync(&alice, "").await;
    let seen = presence_of(&first);
    assert_eq!(seen[&bob.user_id]["presence"], "online", "{first}");
    assert_eq!(seen[&bob.user_id]["currently_active"], true);
    assert!(seen[&bob.user_id]["last_active_ago"].is_u64());
    assert_eq!(seen[&alice.user_id]["presence"], "online", "her own presence too");
    assert!(!seen.contains_key(&carol.user_id), "carol shares no room: {first}");
    assert!(!seen.contains_key(&dave.user_id), "dave never went online: {first}");

    // Bob steps away: alice's waiting sync wakes with it, and only with what changed.
    let since = first["next_batch"].as_str().unwrap().to_owned();
    let waiting = {
        let server = &server;
        let alice = &alice;
        let since = since.clone();
        async move { server.sync(alice, &format!("since={since}&timeout=10000")).await }
    };
    let setting = async {
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        let path = format!("/_matrix/client/v3/presence/{}/status", bob.user_id);
        let body = json!({ "presence": "unavailable", "status_msg": "lunch" });
        assert_eq!(server.put(&path, bob.token(), body).await.0, StatusCode::OK);
    };
    let (next, ()) = tokio::join!(waiting, setting);
    let seen = presence_of(&next);
    assert_eq!(seen.len(), 1, "{next}");
    assert_eq!(seen[&bob.user_id]["presence"], "unavailable");
    assert_eq!(seen[&bob.user_id]["status_msg"], "lunch");
    assert_eq!(seen[&bob.user_id]["currently_active"], false);

    // A filter can turn presence off; a token from before presence was synced still works.
    let filter = json!({ "presence": { "not_types": ["*"] } }).to_string();
    let off = server.sync(&alice, &format!("filter={}", urlencode(&filter))).await;
    assert!(presence_of(&off).is_empty(), "{off}");
    let old = since.rsplit_once('_').unwrap().0;
    server.sync(&alice, &format!("since={old}")).await;
}

#[tokio::test]
async fn presence_turned_off_says_nothing() {
    let server = TestServer::start_with(|c| c.presence.enabled = false).await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    server.sync(&bob, "").await;
    let path = format!("/_matrix/client/v3/presence/{}/status", bob.user_id);
    let body = json!({ "presence": "online", "status_msg": "here" });
    assert_eq!(server.put(&path, bob.token(), body).await.0, StatusCode::OK);
    assert!(presence_of(&server.sync(&alice, "").await).is_empty());
    assert_eq!(server.get(&path, alice.token()).await.1["presence"], "offline");
}
