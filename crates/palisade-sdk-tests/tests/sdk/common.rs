//! Helpers shared by the client-library tests.

use std::time::Duration;

use matrix_sdk::{
    Client, Room,
    config::SyncSettings,
    room::MessagesOptions,
    ruma::{
        RoomId,
        events::{AnySyncMessageLikeEvent, AnySyncTimelineEvent, SyncMessageLikeEvent},
    },
};
use palisade_testkit::{PASSWORD, TestServer};

/// A logged-in client for a new account (registered over HTTP first); its device is the
/// account's first.
pub async fn client(server: &TestServer, localpart: &str) -> Client {
    server.register_account(localpart).await;
    login(server, localpart).await
}

/// A new device of an existing account.
pub async fn login(server: &TestServer, localpart: &str) -> Client {
    let client = Client::builder().homeserver_url(&server.base).build().await.unwrap();
    client
        .matrix_auth()
        .login_username(localpart, PASSWORD)
        .initial_device_display_name("matrix-sdk test")
        .send()
        .await
        .unwrap();
    client.encryption().wait_for_e2ee_initialization_tasks().await;
    client
}

/// Sync settings with a short long-poll.
pub fn settings() -> SyncSettings {
    SyncSettings::default().timeout(Duration::from_secs(2))
}

/// Message bodies of a room's timeline in a sync response (decrypted where possible).
pub fn bodies_in_sync(response: &matrix_sdk::sync::SyncResponse, room_id: &RoomId) -> Vec<String> {
    let Some(room) = response.rooms.joined.get(room_id) else { return Vec::new() };
    room.timeline
        .events
        .iter()
        .filter_map(|event| message_body(event.raw().deserialize().ok()?))
        .collect()
}

/// The body of an `m.room.message`.
pub fn message_body(event: AnySyncTimelineEvent) -> Option<String> {
    match event {
        AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(
            SyncMessageLikeEvent::Original(message),
        )) => Some(message.content.body().to_owned()),
        _ => None,
    }
}

/// Syncs until the room's timeline shows `expected`, or fails after a few rounds.
pub async fn receive(client: &Client, room_id: &RoomId, expected: &str) {
    for _ in 0..10 {
        let response = client.sync_once(settings()).await.unwrap();
        if bodies_in_sync(&response, room_id).iter().any(|b| b == expected) {
            return;
        }
    }
    panic!("{expected:?} never arrived in {room_id}");
}

/// Every message body of the room's history, newest first, paging backwards in fives.
pub async fn history(room: &Room) -> Vec<String> {
    let mut from = None;
    let mut seen = Vec::new();
    loop {
        let mut options = MessagesOptions::backward();
        options.limit = 5u32.into();
        options.from = from;
        let page = room.messages(options).await.unwrap();
        seen.extend(
            page.chunk.iter().filter_map(|event| message_body(event.raw().deserialize().ok()?)),
        );
        match page.end {
            Some(end) => from = Some(end),
            None => return seen,
        }
    }
}
