//! Message search through HTTP, the way Element asks: words with or without accents, rank and
//! recent order, pagination, context with profiles, groups, history visibility, redactions,
//! and malformed searches.

use palisade_testkit::{TestServer, User, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SEARCH: &str = "/_matrix/client/v3/search";

async fn search(server: &TestServer, user: &User, criteria: Value) -> Value {
    search_from(server, user, criteria, None).await
}

async fn search_from(
    server: &TestServer,
    user: &User,
    criteria: Value,
    next_batch: Option<&str>,
) -> Value {
    let path = match next_batch {
        Some(token) => format!("{SEARCH}?next_batch={token}"),
        None => SEARCH.to_owned(),
    };
    let body = json!({ "search_categories": { "room_events": criteria } });
    let (status, found) = server.post(&path, user.token(), body).await;
    assert_eq!(status, StatusCode::OK, "{found}");
    found["search_categories"]["room_events"].clone()
}

fn bodies(found: &Value) -> Vec<String> {
    found["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let content = &r["result"]["content"];
            content["body"].as_str().or(content["topic"].as_str()).unwrap().to_owned()
        })
        .collect()
}

async fn send(server: &TestServer, user: &User, room: &str, text: &str) -> String {
    let (status, sent) = server.send_text(user, room, text).await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    sent["event_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn search_finds_words_whatever_their_accents_best_or_newest_first() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice, json!({ "topic": "Le café du lundi" })).await;
    send(&server, &alice, &room, "Un café crème, s'il vous plaît").await;
    send(&server, &alice, &room, "nothing to see").await;
    send(&server, &alice, &room, "CAFE cafe Café: the cafés are open").await;

    // Accents and case fold both ways; a word matches longer words it starts.
    let found = search(&server, &alice, json!({ "search_term": "cafe" })).await;
    assert_eq!(found["count"], 3, "{found}");
    assert_eq!(
        bodies(&found)[0],
        "CAFE cafe Café: the cafés are open",
        "the message with the most matches ranks first: {found}"
    );
    let ranks: Vec<f64> =
        found["results"].as_array().unwrap().iter().map(|r| r["rank"].as_f64().unwrap()).collect();
    assert!(ranks.windows(2).all(|w| w[0] >= w[1]), "best first: {ranks:?}");
    assert_eq!(found["highlights"], json!(["cafe"]));
    assert!(found.get("next_batch").is_none(), "{found}");

    let recent =
        search(&server, &alice, json!({ "search_term": "CAFÉ", "order_by": "recent" })).await;
    assert_eq!(
        bodies(&recent),
        [
            "CAFE cafe Café: the cafés are open",
            "Un café crème, s'il vous plaît",
            "Le café du lundi"
        ]
    );

    // Only the keys asked for; phrases, exclusions and alternatives.
    let topics =
        search(&server, &alice, json!({ "search_term": "café", "keys": ["content.topic"] })).await;
    assert_eq!(bodies(&topics), ["Le café du lundi"]);
    let phrase = search(&server, &alice, json!({ "search_term": "\"cafe creme\"" })).await;
    assert_eq!(bodies(&phrase), ["Un café crème, s'il vous plaît"]);
    let excluded = search(&server, &alice, json!({ "search_term": "cafe -lundi -open" })).await;
    assert_eq!(bodies(&excluded), ["Un café crème, s'il vous plaît"]);
    let either =
        search(&server, &alice, json!({ "search_term": "nothing or lundi", "order_by": "recent" }))
            .await;
    assert_eq!(bodies(&either), ["nothing to see", "Le café du lundi"]);

    // Query syntax of the index is only text to match.
    for term in ["\"", "AND", "zz* OR (", "NEAR(a b)", "-", "^x:y", "💥"] {
        let found = search(&server, &alice, json!({ "search_term": term })).await;
        assert_eq!(found["results"], json!([]), "{term}: {found}");
        assert_eq!(found["count"], 0, "{term}");
    }
}

#[tokio::test]
async fn search_pages_through_results_in_both_orders() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice, json!({})).await;
    for n in 0..12 {
        send(&server, &alice, &room, &format!("apple number {n}")).await;
    }
    for order in ["recent", "rank"] {
        let criteria =
            json!({ "search_term": "apple", "order_by": order, "filter": { "limit": 5 } });
        let (mut seen, mut token) = (Vec::new(), None::<String>);
        loop {
            let page = search_from(&server, &alice, criteria.clone(), token.as_deref()).await;
            assert_eq!(page["count"], 12);
            seen.extend(bodies(&page));
            match page["next_batch"].as_str() {
                Some(next) => token = Some(next.to_owned()),
                None => break,
            }
            assert!(seen.len() <= 12, "{order}: pages never end");
        }
        let mut expected: Vec<String> = (0..12).map(|n| format!("apple number {n}")).collect();
        if order == "recent" {
            expected.reverse();
            assert_eq!(seen, expected, "newest first, each once");
        } else {
            seen.sort();
            expected.sort();
            assert_eq!(seen, expected, "each once");
        }
    }
    // A token of one order is refused by the other, and garbage is refused.
    let recent = search(
        &server,
        &alice,
        json!({ "search_term": "apple", "order_by": "recent", "filter": { "limit": 2 } }),
    )
    .await;
    let token = recent["next_batch"].as_str().unwrap();
    let body = json!({ "search_categories": { "room_events": { "search_term": "apple" } } });
    for token in [token, "garbage"] {
        let response =
            server.post(&format!("{SEARCH}?next_batch={token}"), alice.token(), body.clone()).await;
        assert_error(&response, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    }
}

#[tokio::test]
async fn search_results_come_with_context_profiles_groups_and_state() {
    let server = TestServer::start().await;
    let (alice, bob) = (server.register("alice").await, server.register("bob").await);
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    let other = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{}", bob.user_id),
            bob.token(),
            json!({ "membership": "join", "displayname": "Bobby" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    send(&server, &alice, &room, "before").await;
    let hit = send(&server, &bob, &room, "the kiwi is ripe").await;
    send(&server, &alice, &room, "after").await;
    let elsewhere = send(&server, &alice, &other, "kiwi elsewhere").await;

    // Element's search of one room.
    let found = search(
        &server,
        &alice,
        json!({
            "search_term": "kiwi",
            "filter": { "rooms": [room] },
            "order_by": "recent",
            "event_context": { "before_limit": 1, "after_limit": 1, "include_profile": true },
        }),
    )
    .await;
    assert_eq!(found["count"], 1, "{found}");
    let result = &found["results"][0];
    assert_eq!(result["result"]["event_id"], hit);
    let context = &result["context"];
    assert_eq!(context["events_before"][0]["content"]["body"], "before", "{context}");
    assert_eq!(context["events_after"][0]["content"]["body"], "after", "{context}");
    assert!(context["start"].is_string() && context["end"].is_string(), "{context}");
    assert_eq!(context["profile_info"][bob.user_id.as_str()]["displayname"], "Bobby");
    assert!(context["profile_info"].get(alice.user_id.as_str()).is_some(), "{context}");

    // Without `event_context`, no context; groups and state when asked for.
    let found = search(
        &server,
        &alice,
        json!({
            "search_term": "kiwi",
            "order_by": "recent",
            "include_state": true,
            "groupings": { "group_by": [{ "key": "room_id" }, { "key": "sender" }] },
        }),
    )
    .await;
    assert_eq!(found["count"], 2);
    assert!(found["results"][0].get("context").is_none(), "{found}");
    let groups = &found["groups"];
    assert_eq!(groups["room_id"][other.as_str()]["results"], json!([elsewhere]));
    assert_eq!(groups["room_id"][room.as_str()]["results"], json!([hit]));
    assert_eq!(groups["sender"][bob.user_id.as_str()]["results"], json!([hit]));
    assert_eq!(groups["room_id"][other.as_str()]["order"], 1);
    let state = found["state"][room.as_str()].as_array().unwrap();
    assert!(state.iter().any(|e| e["type"] == "m.room.create"), "{found}");

    // Filters: senders, types, rooms left out.
    let bobs = search(
        &server,
        &alice,
        json!({ "search_term": "kiwi", "filter": { "senders": [bob.user_id], "not_rooms": [other] } }),
    )
    .await;
    assert_eq!(bodies(&bobs), ["the kiwi is ripe"]);
    let none = search(
        &server,
        &alice,
        json!({ "search_term": "kiwi", "filter": { "types": ["m.room.topic"] } }),
    )
    .await;
    assert_eq!(none["results"], json!([]));
}

#[tokio::test]
async fn search_shows_only_what_the_user_may_read() {
    let server = TestServer::start().await;
    let (alice, bob, eve) = (
        server.register("alice").await,
        server.register("bob").await,
        server.register("eve").await,
    );
    let room = server
        .create_room(
            &alice,
            json!({
                "preset": "public_chat",
                "initial_state": [{
                    "type": "m.room.history_visibility",
                    "state_key": "",
                    "content": { "history_visibility": "joined" },
                }],
            }),
        )
        .await;
    send(&server, &alice, &room, "secret plan before bob").await;
    server.join(&bob, &room).await;
    send(&server, &alice, &room, "secret plan with bob").await;
    let redacted = send(&server, &alice, &room, "secret plan to forget").await;
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/redact/{redacted}/r1"),
            alice.token(),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // An encrypted room's messages are never in the index.
    let secret_room = server
        .create_room(
            &alice,
            json!({ "initial_state": [{
                "type": "m.room.encryption", "state_key": "",
                "content": { "algorithm": "m.megolm.v1.aes-sha2" },
            }] }),
        )
        .await;
    let (status, _) = server
        .put(
            &format!("/_matrix/client/v3/rooms/{secret_room}/send/m.room.encrypted/e1"),
            alice.token(),
            json!({ "algorithm": "m.megolm.v1.aes-sha2", "ciphertext": "secret plan", "sender_key": "k", "session_id": "s", "device_id": "D" }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let criteria = json!({ "search_term": "secret plan", "order_by": "recent" });
    let alices = search(&server, &alice, criteria.clone()).await;
    assert_eq!(bodies(&alices), ["secret plan with bob", "secret plan before bob"]);
    let bobs = search(&server, &bob, criteria.clone()).await;
    assert_eq!(bodies(&bobs), ["secret plan with bob"], "history from before bob joined is hidden");
    let eves = search(&server, &eve, criteria.clone()).await;
    assert_eq!(eves["results"], json!([]), "not in the room");
    assert_eq!(eves["count"], 0);

    // What bob wrote after leaving is not his to find.
    let (status, _) = server
        .post(&format!("/_matrix/client/v3/rooms/{room}/leave"), bob.token(), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    send(&server, &alice, &room, "secret plan after bob").await;
    assert_eq!(search(&server, &bob, criteria).await["results"], json!([]));
}

#[tokio::test]
async fn malformed_searches_get_matrix_errors() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let no_category = server.post(SEARCH, alice.token(), json!({ "search_categories": {} })).await;
    assert_error(&no_category, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let no_term = server
        .post(SEARCH, alice.token(), json!({ "search_categories": { "room_events": {} } }))
        .await;
    assert_error(&no_term, StatusCode::BAD_REQUEST, "M_BAD_JSON");
    let bad_key = server
        .post(
            SEARCH,
            alice.token(),
            json!({ "search_categories": { "room_events": { "search_term": "x", "keys": ["content.secret"] } } }),
        )
        .await;
    assert_error(&bad_key, StatusCode::BAD_REQUEST, "M_INVALID_PARAM");
    let body = json!({ "search_categories": { "room_events": { "search_term": "x" } } });
    assert_error(
        &server.post(SEARCH, None, body).await,
        StatusCode::UNAUTHORIZED,
        "M_MISSING_TOKEN",
    );
}
