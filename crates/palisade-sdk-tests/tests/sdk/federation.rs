//! An encrypted conversation between matrix-sdk clients on two Palisade servers: keys are
//! queried and claimed across servers, room keys travel as to-device messages over
//! federation, and both sides decrypt.

use matrix_sdk::ruma::{
    OwnedServerName,
    api::client::room::create_room,
    events::{InitialStateEvent, room::encryption::RoomEncryptionEventContent},
};
use palisade_testkit::TestServer;

use crate::{
    common::{client, receive, settings},
    e2ee::send,
};

#[tokio::test]
async fn encrypted_conversation_across_two_servers() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = client(&a, "alice").await;
    let bob = client(&b, "bob").await;
    alice.encryption().bootstrap_cross_signing(None).await.unwrap();
    bob.encryption().bootstrap_cross_signing(None).await.unwrap();

    let mut request = create_room::v3::Request::new();
    request.preset = Some(create_room::v3::RoomPreset::PublicChat);
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let room_id = alice.create_room(request).await.unwrap().room_id().to_owned();
    let via: OwnedServerName = a.server_name().try_into().unwrap();
    bob.join_room_by_id_or_alias(<&matrix_sdk::ruma::RoomOrAliasId>::from(&*room_id), &[via])
        .await
        .unwrap();
    bob.sync_once(settings()).await.unwrap();
    alice.sync_once(settings()).await.unwrap();
    assert!(
        bob.get_room(&room_id).unwrap().latest_encryption_state().await.unwrap().is_encrypted()
    );

    send(&alice, &room_id, "canary-from-server-a-41c7").await;
    receive(&bob, &room_id, "canary-from-server-a-41c7").await;
    send(&bob, &room_id, "canary-from-server-b-92d0").await;
    receive(&alice, &room_id, "canary-from-server-b-92d0").await;
}
