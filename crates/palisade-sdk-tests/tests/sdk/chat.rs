//! Two matrix-sdk clients chat through a Palisade server: log in, create a room, invite,
//! join, send, receive through sync, paginate history.

use matrix_sdk::{
    RoomState,
    ruma::{
        OwnedRoomId, UserId, api::client::room::create_room,
        events::room::message::RoomMessageEventContent,
    },
};
use palisade_testkit::TestServer;

use crate::common::{client, history, receive, settings};

#[tokio::test]
async fn two_users_chat() {
    let server = TestServer::start().await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    let bob_id = UserId::parse("@bob:localhost").unwrap();
    assert_eq!(alice.user_id().unwrap().as_str(), "@alice:localhost");

    let mut request = create_room::v3::Request::new();
    request.name = Some("SDK room".to_owned());
    // A public room: unencrypted under the default policy (encryption has its own tests).
    request.preset = Some(create_room::v3::RoomPreset::PublicChat);
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
    let seen = history(&bobs_room).await;
    let expected: Vec<String> = std::iter::once("hi alice".to_owned())
        .chain((0..15).rev().map(|i| format!("hello bob {i}")))
        .collect();
    assert_eq!(seen, expected);
}

/// matrix-sdk asked for a refresh token renews its expired access token by itself and goes on.
#[tokio::test]
async fn the_sdk_refreshes_an_expired_access_token() {
    let server = TestServer::start_with(|c| c.refreshable_access_token_lifetime_secs = 1).await;
    server.register_account("alice").await;
    let client = matrix_sdk::Client::builder()
        .homeserver_url(&server.base)
        .handle_refresh_tokens()
        .build()
        .await
        .unwrap();
    client
        .matrix_auth()
        .login_username("alice", palisade_testkit::PASSWORD)
        .request_refresh_token()
        .send()
        .await
        .unwrap();
    let first = client.access_token().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1200)).await;
    let me = client.whoami().await.expect("the call succeeds after a refresh");
    assert_eq!(me.user_id.as_str(), "@alice:localhost");
    assert_ne!(client.access_token().unwrap(), first, "a new access token was issued");
}
