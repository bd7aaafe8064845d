//! End-to-end encryption through Palisade with matrix-sdk: an encrypted room, a second device
//! verified with cross-signing, key backup restored on a new device, and no plaintext on disk.

use matrix_sdk::{
    Client,
    ruma::{
        OwnedRoomId, UserId,
        api::client::room::create_room,
        events::{
            InitialStateEvent, room::encryption::RoomEncryptionEventContent,
            room::message::RoomMessageEventContent,
        },
    },
};
use palisade_testkit::TestServer;

use crate::common::{client, history, login, receive, settings};

/// Creates an encrypted room of `owner`, with `others` invited and joined.
pub async fn encrypted_room(owner: &Client, others: &[&Client]) -> OwnedRoomId {
    let mut request = create_room::v3::Request::new();
    request.invite = others.iter().map(|c| c.user_id().unwrap().to_owned()).collect();
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let room = owner.create_room(request).await.unwrap();
    let room_id = room.room_id().to_owned();
    for other in others {
        other.sync_once(settings()).await.unwrap();
        other.get_room(&room_id).unwrap().join().await.unwrap();
        other.sync_once(settings()).await.unwrap();
    }
    owner.sync_once(settings()).await.unwrap();
    assert!(
        owner.get_room(&room_id).unwrap().latest_encryption_state().await.unwrap().is_encrypted()
    );
    room_id
}

pub async fn send(client: &Client, room_id: &OwnedRoomId, text: &str) {
    client.sync_once(settings()).await.unwrap();
    let room = client.get_room(room_id).unwrap();
    room.send(RoomMessageEventContent::text_plain(text)).await.unwrap();
}

/// Every file in the data directory, as bytes (database, WAL, key files).
fn data_dir_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    std::fs::read_dir(dir).unwrap().any(|entry| {
        let path = entry.unwrap().path();
        path.is_file() && std::fs::read(&path).unwrap().windows(needle.len()).any(|w| w == needle)
    })
}

#[tokio::test]
async fn encrypted_chat_and_a_cross_signed_second_device() {
    let server = TestServer::start().await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    alice.encryption().bootstrap_cross_signing(None).await.unwrap();
    bob.encryption().bootstrap_cross_signing(None).await.unwrap();

    let room_id = encrypted_room(&alice, &[&bob]).await;
    send(&alice, &room_id, "canary-alice-to-bob-7d1e").await;
    receive(&bob, &room_id, "canary-alice-to-bob-7d1e").await;
    send(&bob, &room_id, "canary-bob-to-alice-3f9a").await;
    receive(&alice, &room_id, "canary-bob-to-alice-3f9a").await;

    // Alice signs in on a second device and verifies it from her first one.
    let second = login(&server, "alice").await;
    let second_id = second.device_id().unwrap().to_owned();
    // Its first sync uploads its device keys.
    second.sync_once(settings()).await.unwrap();
    let alice_id: &UserId = alice.user_id().unwrap();
    // The first sync reports the device list change, the next one sends the key query.
    alice.sync_once(settings()).await.unwrap();
    alice.sync_once(settings()).await.unwrap();
    let device = alice
        .encryption()
        .get_device(alice_id, &second_id)
        .await
        .unwrap()
        .expect("Alice sees her new device");
    assert!(!device.is_cross_signed_by_owner());
    device.verify().await.unwrap();
    second.sync_once(settings()).await.unwrap();
    let own = second.encryption().get_device(alice_id, &second_id).await.unwrap().unwrap();
    assert!(own.is_cross_signed_by_owner(), "the server kept Alice's signature on the new device");

    // Bob's next message is readable on the new device.
    bob.sync_once(settings()).await.unwrap();
    send(&bob, &room_id, "canary-after-verification-55c2").await;
    receive(&second, &room_id, "canary-after-verification-55c2").await;

    // The server stores only ciphertext; the search itself finds an unencrypted message.
    let mut public = create_room::v3::Request::new();
    public.preset = Some(create_room::v3::RoomPreset::PublicChat);
    let plain = alice.create_room(public).await.unwrap();
    plain.send(RoomMessageEventContent::text_plain("control-plaintext-0b4e")).await.unwrap();
    let data_dir = server.config.data_dir.clone();
    assert!(data_dir_contains(&data_dir, b"control-plaintext-0b4e"));
    for canary in
        ["canary-alice-to-bob-7d1e", "canary-bob-to-alice-3f9a", "canary-after-verification-55c2"]
    {
        assert!(
            !data_dir_contains(&data_dir, canary.as_bytes()),
            "{canary} is on the server's disk"
        );
    }
}

#[tokio::test]
async fn key_backup_restores_history_on_a_new_device() {
    let server = TestServer::start().await;
    let alice = client(&server, "alice").await;
    alice.encryption().bootstrap_cross_signing(None).await.unwrap();
    let room_id = encrypted_room(&alice, &[]).await;
    for i in 0..3 {
        send(&alice, &room_id, &format!("backed up {i}")).await;
    }
    let recovery_key =
        alice.encryption().recovery().enable().wait_for_backups_to_upload().await.unwrap();

    let laptop = login(&server, "alice").await;
    laptop.sync_once(settings()).await.unwrap();
    laptop.encryption().recovery().recover(&recovery_key).await.unwrap();
    laptop.encryption().backups().download_room_keys_for_room(&room_id).await.unwrap();
    let room = laptop.get_room(&room_id).unwrap();
    let seen = history(&room).await;
    assert_eq!(seen, ["backed up 2", "backed up 1", "backed up 0"]);
}

/// Whether any file under `dir` contains `needle`.
fn tree_contains(dir: &std::path::Path, needle: &[u8]) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|entry| {
        let path = entry.path();
        if path.is_dir() {
            return tree_contains(&path, needle);
        }
        std::fs::read(&path).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
    })
}

/// Whether any file under `dir` is `len` bytes long.
fn tree_has_file_of_len(dir: &std::path::Path, len: u64) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else { return false };
    entries.flatten().any(|entry| {
        let path = entry.path();
        match path.is_dir() {
            true => tree_has_file_of_len(&path, len),
            false => entry.metadata().is_ok_and(|m| m.len() == len),
        }
    })
}

#[tokio::test]
async fn an_encrypted_attachment_reaches_the_other_member_and_only_ciphertext_is_stored() {
    use matrix_sdk::{
        attachment::AttachmentConfig,
        media::{MediaFormat, MediaRequestParameters},
        ruma::events::{
            AnySyncMessageLikeEvent, AnySyncTimelineEvent, SyncMessageLikeEvent,
            room::{MediaSource, message::MessageType},
        },
    };
    let server = TestServer::start().await;
    let alice = client(&server, "alice").await;
    let bob = client(&server, "bob").await;
    let room_id = encrypted_room(&alice, &[&bob]).await;
    alice.sync_once(settings()).await.unwrap();
    let file: Vec<u8> = b"canary-attachment-5e2f ".iter().cycle().take(60_000).copied().collect();
    let room = alice.get_room(&room_id).unwrap();
    room.send_attachment("notes.txt", &mime::TEXT_PLAIN, file.clone(), AttachmentConfig::new())
        .await
        .unwrap();

    let mut source = None;
    for _ in 0..10 {
        let response = bob.sync_once(settings()).await.unwrap();
        let Some(joined) = response.rooms.joined.get(&room_id) else { continue };
        source = joined.timeline.events.iter().find_map(|event| {
            match event.raw().deserialize().ok()? {
                AnySyncTimelineEvent::MessageLike(AnySyncMessageLikeEvent::RoomMessage(
                    SyncMessageLikeEvent::Original(message),
                )) => match message.content.msgtype {
                    MessageType::File(file) => Some(file.source),
                    _ => None,
                },
                _ => None,
            }
        });
        if source.is_some() {
            break;
        }
    }
    let source = source.expect("bob received the attachment");
    assert!(matches!(source, MediaSource::Encrypted(_)), "the attachment was encrypted");
    let request = MediaRequestParameters { source, format: MediaFormat::File };
    let downloaded = bob.media().get_media_content(&request, false).await.unwrap();
    assert!(downloaded == file, "bob decrypted what alice sent");
    // What the server stored is the ciphertext (AES-CTR: as long as the file), not the file.
    let media = server.config.media_path();
    assert!(!tree_contains(&media, b"canary-attachment-5e2f"), "plaintext on the server's disk");
    assert!(tree_has_file_of_len(&media, file.len() as u64), "the ciphertext is stored");
}
