//! The attack Palisade exists to stop, played with matrix-sdk: someone signs in as Alice with
//! her password on a new device. That device must get nothing readable until Alice approves it.

use matrix_sdk::ruma::UserId;
use palisade_core::config::TrustMode;
use palisade_testkit::TestServer;
use reqwest::StatusCode;

use crate::{
    common::{bodies_in_sync, client, history, login, receive, settings},
    e2ee::{encrypted_room, send},
};

#[tokio::test]
async fn a_phished_device_reads_nothing_until_alice_verifies_it() {
    let server = TestServer::start_with(|c| c.device_trust.notify_user = true).await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    alice.encryption().bootstrap_cross_signing(None).await.unwrap();
    bob.encryption().bootstrap_cross_signing(None).await.unwrap();
    let room_id = encrypted_room(&alice, &[&bob]).await;
    let recovery_key =
        alice.encryption().recovery().enable().wait_for_backups_to_upload().await.unwrap();
    assert!(!recovery_key.is_empty());

    // The attacker has Alice's password.
    let attacker = login(&server, "alice").await;
    attacker.sync_once(settings()).await.unwrap();
    let attacker_id = attacker.device_id().unwrap().to_owned();

    bob.sync_once(settings()).await.unwrap();
    bob.sync_once(settings()).await.unwrap();
    for i in 0..3 {
        send(&bob, &room_id, &format!("for alice only {i}")).await;
    }
    receive(&alice, &room_id, "for alice only 2").await;
    for _ in 0..3 {
        let response = attacker.sync_once(settings()).await.unwrap();
        let readable = bodies_in_sync(&response, &room_id);
        assert!(
            readable.iter().all(|b| !b.starts_with("for alice only")),
            "the attacker read {readable:?}"
        );
    }
    // Alice's phone is told about the sign-in, in her server-notices room.
    let mut told = false;
    for _ in 0..10 {
        alice.sync_once(settings()).await.unwrap();
        for room in alice.joined_rooms() {
            if room.name().as_deref() == Some("Server notices") {
                told |= history(&room).await.iter().any(|body| body.contains(attacker_id.as_str()));
            }
        }
        if told {
            break;
        }
    }
    assert!(told, "Alice's device never got a server notice about the new device");
    // Bob's client never even saw the device.
    let alice_id: &UserId = alice.user_id().unwrap();
    assert!(bob.encryption().get_device(alice_id, &attacker_id).await.unwrap().is_none());

    // Nor can it read the key backup.
    let version = alice.encryption().backups().fetch_exists_on_server().await.unwrap();
    assert!(version);
    let (_, info) =
        server.get("/_matrix/client/v3/room_keys/version", alice.access_token().as_deref()).await;
    let keys =
        format!("/_matrix/client/v3/room_keys/keys?version={}", info["version"].as_str().unwrap());
    assert_eq!(
        server.get(&keys, attacker.access_token().as_deref()).await.0,
        StatusCode::FORBIDDEN
    );

    // Had Alice really signed in there, she would verify the device from her phone; from then
    // on it reads new messages.
    alice.sync_once(settings()).await.unwrap();
    alice.sync_once(settings()).await.unwrap();
    let device = alice.encryption().get_device(alice_id, &attacker_id).await.unwrap().unwrap();
    device.verify().await.unwrap();
    bob.sync_once(settings()).await.unwrap();
    bob.sync_once(settings()).await.unwrap();
    send(&bob, &room_id, "after alice approved").await;
    receive(&attacker, &room_id, "after alice approved").await;
}

#[tokio::test]
async fn in_strict_mode_a_phished_device_sees_no_room() {
    let server = TestServer::start_with(|c| c.device_trust.mode = TrustMode::Strict).await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    alice.encryption().bootstrap_cross_signing(None).await.unwrap();
    let room_id = encrypted_room(&alice, &[&bob]).await;
    send(&bob, &room_id, "strictly private").await;

    let attacker = login(&server, "alice").await;
    attacker.sync_once(settings()).await.unwrap();
    attacker.sync_once(settings()).await.unwrap();
    assert!(attacker.get_room(&room_id).is_none(), "the attacker's device sees the room");
    assert!(attacker.joined_rooms().is_empty());
}

/// The control: with device trust off, the same phished device reads Bob's messages, because
/// clients encrypt for every device the server lists. The quarantine above is what stops it.
#[tokio::test]
async fn without_device_trust_the_phished_device_reads_everything() {
    let server = TestServer::start_with(|c| c.device_trust.mode = TrustMode::Off).await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    alice.encryption().bootstrap_cross_signing(None).await.unwrap();
    bob.encryption().bootstrap_cross_signing(None).await.unwrap();
    let room_id = encrypted_room(&alice, &[&bob]).await;
    let attacker = login(&server, "alice").await;
    attacker.sync_once(settings()).await.unwrap();
    bob.sync_once(settings()).await.unwrap();
    bob.sync_once(settings()).await.unwrap();
    send(&bob, &room_id, "leaked to the attacker").await;
    receive(&attacker, &room_id, "leaked to the attacker").await;
}
