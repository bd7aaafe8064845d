//! Two matrix-sdk clients chat through a Palisade server: log in, create a room, invite,
//! join, send, receive through sync, paginate history.

use std::time::Duration;

use matrix_sdk::{
    Client, RoomState,
    config::SyncSettings,
    room::MessagesOptions,
    ruma::{
        OwnedRoomId, RoomId, UserId,
        api::client::room::create_room,
        events::{
            AnySyncMessageLikeEvent, AnySyncTimelineEvent, SyncMessageLikeEvent,
            room::message::RoomMessageEventContent,
        },
    },
};
use palisade_testkit::{PASSWORD, TestServer};

async fn client(server: &TestServer, localpart: &str) -> Client {
    server.register(localpart).await;
    let client = Client::builder().homeserver_url(&server.base).build().await.unwrap();
    client
        .matrix_auth()
        .login_username(localpart, PASSWORD)
        .initial_device_display_name("matrix-sdk test")
        .send()
        .await
        .unwrap();
    client
}

fn settings() -> SyncSettings {
    SyncSettings::default().timeout(Duration::from_secs(5))
}

/// Message bodies of a room's timeline in a sync response.
fn bodies_in_sync(response: &matrix_sdk::sync::SyncResponse, room_id: &RoomId) -> Vec<String> {
    let Some(room) = response.rooms.joined.get(room_id) else { return Vec::new() };
    room.timeline
        .events
        .iter()
        .filter_map(|event| message_body(event.raw().deserialize().ok()?))
        .collect()
}

fn message_body(event: AnySyncTimelineEvent) -> Option<String> {
    match event {
        AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(
            SyncMessageLikeEvent::Original(message),
        )) => Some(message.content.body().to_owned()),
        _ => None,
    }
}

/// Syncs until the room's timeline shows `expected`, or fails after a few rounds.
async fn receive(client: &Client, room_id: &RoomId, expected: &str) {
    for _ in 0..10 {
        let response = client.sync_once(settings()).await.unwrap();
        if bodies_in_sync(&response, room_id).iter().any(|b| b == expected) {
            return;
        }
    }
    panic!("{expected:?} never arrived in {room_id}");
}

#[tokio::test]
async fn two_users_chat() {
    let server = TestServer::start().await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    let bob_id = UserId::parse("@bob:localhost").unwrap();
    assert_eq!(alice.user_id().unwrap().as_str(), "@alice:localhost");

    let mut request = create_room::v3::Request::new();
    request.name = Some("SDK room".to_owned());
    request.invite = vec![bob_id.clone()];
    let room = alice.create_room(request).await.unwrap();
    let room_id: OwnedRoomId = room.room_id().to_owned();

    bob.sync_once(settings()).await.unwrap();
    let invited = bob.get_room(&room_id).expect("Bob sees the invite");
    assert_eq!(invited.state(), RoomState::Invited);
    invited.join().await.unwrap();
    bob.sync_once(settings()).await.unwrap();
    let bobs_room = bob.get_room(&room_id).unwrap();
    assert_eq!(bobs_room.state(), RoomState::Joined);
    assert_eq!(bobs_room.name().as_deref(), Some("SDK room"));

    alice.sync_once(settings()).await.unwrap();
    let alices_room = alice.get_room(&room_id).unwrap();
    assert_eq!(alices_room.joined_members_count(), 2);
    for i in 0..15 {
        alices_room
            .send(RoomMessageEventContent::text_plain(format!("hello bob {i}")))
            .await
            .unwrap();
    }
    receive(&bob, &room_id, "hello bob 14").await;

    bobs_room.send(RoomMessageEventContent::text_plain("hi alice")).await.unwrap();
    receive(&alice, &room_id, "hi alice").await;

    // History: page backwards through everything Alice sent.
    let mut from = None;
    let mut seen = Vec::new();
    loop {
        let mut options = MessagesOptions::backward();
        options.limit = 5u32.into();
        options.from = from;
        let page = bobs_room.messages(options).await.unwrap();
        seen.extend(page.chunk.iter().filter_map(|event| {
            let event = event.raw().deserialize().ok()?;
            message_body(event)
        }));
        match page.end {
            Some(end) => from = Some(end),
            None => break,
        }
    }
    let expected: Vec<String> = std::iter::once("hi alice".to_owned())
        .chain((0..15).rev().map(|i| format!("hello bob {i}")))
        .collect();
    assert_eq!(seen, expected);
}
