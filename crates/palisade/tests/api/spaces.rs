//! Spaces through HTTP: `/hierarchy` walks the tree depth first in the spec's order, shows each
//! user only the rooms they may see, pages, and reaches rooms on other servers.

use palisade_testkit::{TestServer, User, assert_error, urlencode};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn space(server: &TestServer, owner: &User, name: &str) -> String {
    server
        .create_room(
            owner,
            json!({ "preset": "public_chat", "name": name, "creation_content": { "type": "m.space" } }),
        )
        .await
}

async fn add_child(server: &TestServer, owner: &User, parent: &str, child: &str, content: Value) {
    let path =
        format!("/_matrix/client/v3/rooms/{parent}/state/m.space.child/{}", urlencode(child));
    let (status, body) = server.put(&path, owner.token(), content).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}

async fn hierarchy(
    server: &TestServer,
    user: &User,
    root: &str,
    query: &str,
) -> (StatusCode, Value) {
    server.get(&format!("/_matrix/client/v1/rooms/{root}/hierarchy{query}"), user.token()).await
}

/// The names of the rooms of a `/hierarchy` page.
pub(crate) fn names(page: &Value) -> Vec<String> {
    page["rooms"]
        .as_array()
        .unwrap_or_else(|| panic!("{page}"))
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("?").to_owned())
        .collect()
}

#[tokio::test]
async fn a_space_tree_is_walked_in_order_and_shows_each_user_what_they_may_see() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let via = json!([server.server_name()]);
    let root = space(&server, &alice, "Root").await;
    let sub = space(&server, &alice, "Sub").await;
    let public =
        server.create_room(&alice, json!({ "preset": "public_chat", "name": "Public" })).await;
    let private = server.create_room(&alice, json!({ "name": "Private" })).await;
    let members_only = server
        .create_room(
            &alice,
            json!({ "name": "Members", "initial_state": [{
                "type": "m.room.join_rules", "state_key": "",
                "content": { "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": root }] },
            }] }),
        )
        .await;
    let deep = server.create_room(&alice, json!({ "preset": "public_chat", "name": "Deep" })).await;
    add_child(
        &server,
        &alice,
        &root,
        &public,
        json!({ "via": via, "order": "b", "suggested": true }),
    )
    .await;
    add_child(&server, &alice, &root, &sub, json!({ "via": via, "order": "a" })).await;
    add_child(&server, &alice, &root, &private, json!({ "via": via, "order": "c" })).await;
    add_child(&server, &alice, &root, &members_only, json!({ "via": via, "order": "d" })).await;
    add_child(&server, &alice, &sub, &deep, json!({ "via": via })).await;
    // A child without `via` is no child.
    let gone = server.create_room(&alice, json!({ "preset": "public_chat", "name": "Gone" })).await;
    add_child(&server, &alice, &root, &gone, json!({})).await;

    let (status, page) = hierarchy(&server, &alice, &root, "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(names(&page), ["Root", "Sub", "Deep", "Public", "Private", "Members"]);
    assert!(page.get("next_batch").is_none(), "{page}");
    let first = &page["rooms"][0];
    assert_eq!(first["room_type"], "m.space");
    assert_eq!(first["children_state"].as_array().unwrap().len(), 4, "{first}");
    assert_eq!(first["children_state"][0]["state_key"], sub);
    let restricted = &page["rooms"][5];
    assert_eq!(restricted["join_rule"], "restricted", "{restricted}");
    assert_eq!(restricted["allowed_room_ids"], json!([root]));

    // Bob sees the open rooms; the restricted one once he is in the space; never the private.
    let (_, page) = hierarchy(&server, &bob, &root, "").await;
    assert_eq!(names(&page), ["Root", "Sub", "Deep", "Public"]);
    server.join(&bob, &root).await;
    let (_, page) = hierarchy(&server, &bob, &root, "").await;
    assert_eq!(names(&page), ["Root", "Sub", "Deep", "Public", "Members"]);

    // Depth, suggestions, pages.
    let (_, page) = hierarchy(&server, &alice, &root, "?max_depth=1").await;
    assert_eq!(names(&page), ["Root", "Sub", "Public", "Private", "Members"]);
    let (_, page) = hierarchy(&server, &alice, &root, "?suggested_only=true").await;
    assert_eq!(names(&page), ["Root", "Public"]);
    let (mut seen, mut from) = (Vec::new(), None::<String>);
    loop {
        let query = match &from {
            Some(token) => format!("?limit=2&from={}", urlencode(token)),
            None => "?limit=2".to_owned(),
        };
        let (status, page) = hierarchy(&server, &alice, &root, &query).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        seen.extend(names(&page));
        match page["next_batch"].as_str() {
            Some(next) => from = Some(next.to_owned()),
            None => break,
        }
        assert!(seen.len() <= 6, "pages never end: {seen:?}");
    }
    assert_eq!(seen, ["Root", "Sub", "Deep", "Public", "Private", "Members"]);
}

#[tokio::test]
async fn hierarchies_refuse_what_the_user_may_not_see_and_bad_tokens() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let private = server
        .create_room(&alice, json!({ "name": "Hidden", "creation_content": { "type": "m.space" } }))
        .await;
    assert_error(
        &hierarchy(&server, &bob, &private, "").await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let unknown = format!("!nowhere:{}", server.server_name());
    assert_error(
        &hierarchy(&server, &bob, &unknown, "").await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    let root = space(&server, &alice, "Root").await;
    for query in ["?from=garbage", "?from=2_-_1", "?from=x_-_0", "?limit=0"] {
        assert_error(
            &hierarchy(&server, &alice, &root, query).await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
        );
    }
    let path = format!("/_matrix/client/v1/rooms/{root}/hierarchy");
    assert_error(&server.get(&path, None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    let bad = hierarchy(&server, &alice, &root, "?limit=many").await;
    assert_eq!(bad.0, StatusCode::BAD_REQUEST, "{}", bad.1);
}

#[tokio::test]
async fn a_space_reaches_rooms_on_other_servers() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let root = space(&a, &alice, "Root").await;
    // Bob's rooms on B, which A is in none of: a public room, and a sub-space with a room.
    let remote = b.create_room(&bob, json!({ "preset": "public_chat", "name": "Remote" })).await;
    let remote_space = space(&b, &bob, "Remote space").await;
    let remote_deep =
        b.create_room(&bob, json!({ "preset": "public_chat", "name": "Remote deep" })).await;
    let secret = b.create_room(&bob, json!({ "name": "Secret" })).await;
    let via_b = json!([b.server_name()]);
    add_child(&b, &bob, &remote_space, &remote_deep, json!({ "via": via_b })).await;
    add_child(&b, &bob, &remote_space, &secret, json!({ "via": via_b })).await;
    add_child(&a, &alice, &root, &remote, json!({ "via": via_b, "order": "1" })).await;
    add_child(&a, &alice, &root, &remote_space, json!({ "via": via_b, "order": "2" })).await;

    let (status, page) = hierarchy(&a, &alice, &root, "").await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(names(&page), ["Root", "Remote", "Remote space", "Remote deep"]);
    let remote_entry = &page["rooms"][1];
    assert_eq!(remote_entry["num_joined_members"], 1, "{remote_entry}");

    // B answers A's server directly with what A may see: the secret room by id only.
    let path = format!("/_matrix/client/v1/rooms/{remote_space}/hierarchy");
    let (status, own_view) = b.get(&path, bob.token()).await;
    assert_eq!(status, StatusCode::OK, "{own_view}");
    assert_eq!(names(&own_view), ["Remote space", "Remote deep", "Secret"]);
}

/// A room of `owner`'s that members of `space` may join (join rule `restricted`).
async fn restricted_room(server: &TestServer, owner: &User, space: &str, extra: Value) -> String {
    let mut body = json!({
        "name": "Members only",
        "initial_state": [{
            "type": "m.room.join_rules", "state_key": "",
            "content": { "join_rule": "restricted", "allow": [{ "type": "m.room_membership", "room_id": space }] },
        }],
    });
    if let (Some(body), Value::Object(extra)) = (body.as_object_mut(), extra) {
        body.extend(extra);
    }
    server.create_room(owner, body).await
}

async fn join_via(server: &TestServer, user: &User, room: &str, via: &str) -> (StatusCode, Value) {
    let path = format!("/_matrix/client/v3/join/{}?via={}", urlencode(room), urlencode(via));
    server.post(&path, user.token(), json!({})).await
}

#[tokio::test]
async fn members_of_a_space_may_join_its_restricted_rooms() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let root = space(&server, &alice, "Root").await;
    let room = restricted_room(&server, &alice, &root, json!({})).await;
    let join = format!("/_matrix/client/v3/rooms/{room}/join");

    assert_error(
        &server.post(&join, bob.token(), json!({})).await,
        StatusCode::FORBIDDEN,
        "M_FORBIDDEN",
    );
    server.join(&bob, &root).await;
    let (status, body) = server.post(&join, bob.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let member =
        format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", urlencode(&bob.user_id));
    let (_, content) = server.get(&member, alice.token()).await;
    assert_eq!(content["membership"], "join");
    assert_eq!(content["join_authorised_via_users_server"], alice.user_id.as_str(), "{content}");

    // A rule naming a room this server is not in cannot be vouched for; one nobody here may
    // grant is refused as such.
    let nowhere = format!("!nowhere:{}", server.server_name());
    let unknowable = restricted_room(&server, &alice, &nowhere, json!({})).await;
    let path = format!("/_matrix/client/v3/rooms/{unknowable}/join");
    assert_error(
        &server.post(&path, bob.token(), json!({})).await,
        StatusCode::BAD_REQUEST,
        "M_UNABLE_TO_AUTHORISE_JOIN",
    );
    let ungrantable = restricted_room(
        &server,
        &alice,
        &root,
        json!({ "room_version": "11", "power_level_content_override": { "invite": 101 } }),
    )
    .await;
    let path = format!("/_matrix/client/v3/rooms/{ungrantable}/join");
    assert_error(
        &server.post(&path, bob.token(), json!({})).await,
        StatusCode::BAD_REQUEST,
        "M_UNABLE_TO_GRANT_JOIN",
    );
}

#[tokio::test]
async fn restricted_rooms_are_joined_across_servers() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let (bob, carol) = (b.register("bob").await, b.register("carol").await);
    let root = space(&a, &alice, "Root").await;
    let room = restricted_room(&a, &alice, &root, json!({})).await;

    // Carol, in no room the rule names, is refused by alice's server.
    let refused = join_via(&b, &carol, &room, a.server_name()).await;
    assert_eq!(refused.0, StatusCode::FORBIDDEN, "{}", refused.1);
    let (status, body) = join_via(&b, &bob, &root, a.server_name()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = join_via(&b, &bob, &room, a.server_name()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Both servers hold the join alice's server authorised; bob talks in the room.
    let member =
        format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", urlencode(&bob.user_id));
    assert_eq!(
        a.get(&member, alice.token()).await.1["join_authorised_via_users_server"],
        alice.user_id.as_str()
    );
    assert_eq!(b.get(&member, bob.token()).await.1["membership"], "join");
    let (status, _) = b.send_text(&bob, &room, "in through the space").await;
    assert_eq!(status, StatusCode::OK);
    for _ in 0..100 {
        if a.texts(&alice, &room).await.iter().any(|t| t == "in through the space") {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("alice never saw bob's message");
}
