//! Element X's room list and timeline: matrix-sdk-ui's `SyncService` (its `RoomListService`
//! and encryption sync) against Palisade's simplified sliding sync.

use std::time::Duration;

use futures_util::{Stream, StreamExt, pin_mut};
use matrix_sdk::ruma::{
    OwnedRoomId, api::client::room::create_room, events::room::message::RoomMessageEventContent,
};
use matrix_sdk_ui::{
    eyeball_im::{Vector, VectorDiff},
    room_list_service::{RoomListItem, filters::new_filter_non_left},
    sync_service::SyncService,
    timeline::RoomExt as _,
};
use palisade_testkit::TestServer;

use crate::{
    common::{client, settings},
    e2ee::{encrypted_room, send},
};

/// Room ids of the list, in its order.
fn order(rooms: &Vector<RoomListItem>) -> Vec<OwnedRoomId> {
    rooms.iter().map(|room| room.room_id().to_owned()).collect()
}

/// Applies the list's updates until `done` holds of it.
async fn until(
    rooms: &mut Vector<RoomListItem>,
    updates: &mut (impl Stream<Item = Vec<VectorDiff<RoomListItem>>> + Unpin),
    what: &str,
    done: impl Fn(&[OwnedRoomId]) -> bool,
) {
    let waiting = async {
        while !done(&order(rooms)) {
            for diff in updates.next().await.expect("the room list stream ended") {
                diff.apply(rooms);
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), waiting).await.is_err() {
        panic!("the room list never showed {what}: {:?}", order(rooms));
    }
}

/// Creates a room named `name`, and pauses so rooms' timestamps differ.
async fn named_room(client: &matrix_sdk::Client, name: &str) -> OwnedRoomId {
    let mut request = create_room::v3::Request::new();
    request.name = Some(name.to_owned());
    let room = client.create_room(request).await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await;
    room.room_id().to_owned()
}

#[tokio::test]
async fn element_x_room_list_orders_rooms_by_activity_and_shows_invites() {
    let server = TestServer::start().await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    let first = named_room(&alice, "first").await;
    let second = named_room(&alice, "second").await;
    let third = named_room(&alice, "third").await;
    // Rooms with messages are ordered by their latest message (as Element X shows them).
    for room_id in [&first, &second, &third] {
        let room = alice.get_room(room_id).unwrap();
        room.send(RoomMessageEventContent::text_plain("hello")).await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let sync = SyncService::builder(alice.clone()).build().await.unwrap();
    sync.start().await;
    let room_list = sync.room_list_service();
    let all = room_list.all_rooms().await.unwrap();
    let (updates, controller) = all.entries_with_dynamic_adapters(50);
    pin_mut!(updates);
    controller.set_filter(Box::new(new_filter_non_left()));
    let mut rooms = Vector::new();

    // The most recently active room first (the client settles the order as it reads each
    // room's latest event).
    let expected = [third.clone(), second.clone(), first.clone()];
    until(&mut rooms, &mut updates, "the three rooms in order", |ids| ids == expected).await;

    // A message moves its room to the top.
    let room = alice.get_room(&first).unwrap();
    room.send(RoomMessageEventContent::text_plain("bump")).await.unwrap();
    until(&mut rooms, &mut updates, "the first room on top", |ids| ids.first() == Some(&first))
        .await;
    assert_eq!(order(&rooms), [first.clone(), third.clone(), second.clone()]);

    // An invite appears, on top.
    let mut request = create_room::v3::Request::new();
    request.name = Some("from bob".to_owned());
    request.invite = vec![alice.user_id().unwrap().to_owned()];
    let invited = bob.create_room(request).await.unwrap().room_id().to_owned();
    until(&mut rooms, &mut updates, "the invite", |ids| ids.first() == Some(&invited)).await;
    let invite = alice.get_room(&invited).unwrap();
    assert_eq!(invite.state(), matrix_sdk::RoomState::Invited);
    sync.stop().await;
}

#[tokio::test]
async fn element_x_decrypts_a_message_with_keys_from_the_e2ee_extensions() {
    let server = TestServer::start().await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    let room_id = encrypted_room(&bob, &[&alice]).await;

    // Alice now runs Element X's sync; Bob sends with the keys of her device.
    let sync = SyncService::builder(alice.clone()).build().await.unwrap();
    sync.start().await;
    bob.sync_once(settings()).await.unwrap();
    send(&bob, &room_id, "canary-sliding-e2ee-5c2b").await;

    let room = alice.get_room(&room_id).unwrap();
    let timeline = room.timeline().await.unwrap();
    let (mut items, updates) = timeline.subscribe().await;
    pin_mut!(updates);
    let decrypted = |items: &Vector<std::sync::Arc<matrix_sdk_ui::timeline::TimelineItem>>| {
        items.iter().any(|item| {
            item.as_event()
                .and_then(|event| event.content().as_message())
                .is_some_and(|message| message.body() == "canary-sliding-e2ee-5c2b")
        })
    };
    let waiting = async {
        while !decrypted(&items) {
            for diff in updates.next().await.expect("the timeline stream ended") {
                diff.apply(&mut items);
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), waiting).await.is_err() {
        let state = sync.state().get();
        panic!("the encrypted message never decrypted in Element X's timeline (sync: {state:?})");
    }
    sync.stop().await;
}
