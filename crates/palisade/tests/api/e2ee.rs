//! End-to-end encryption endpoints over HTTP: keys, claims, cross-signing, signatures,
//! to-device messages and key backup, with their bad-input paths.

use std::collections::BTreeSet;

use palisade_core::config::TrustMode;
use palisade_testkit::{PASSWORD, TestServer, User, assert_error};
use reqwest::StatusCode;
use ruma::{
    CanonicalJsonObject,
    serde::{Base64, base64::Standard},
    signatures::{Ed25519KeyPair, sign_json},
};
use serde_json::{Value, json};

/// A fresh ed25519 key pair with its public key in unpadded base64. Its key id is
/// `ed25519:<version>`, or `ed25519:<public key>` as cross-signing keys are named.
pub fn key_pair(version: Option<&str>) -> (Ed25519KeyPair, String) {
    let document = Ed25519KeyPair::generate();
    let probe = Ed25519KeyPair::from_der(&document, String::new()).unwrap();
    let public = Base64::<Standard, _>::new(probe.public_key().to_vec()).encode();
    let version = version.map_or_else(|| public.clone(), str::to_owned);
    (Ed25519KeyPair::from_der(&document, version).unwrap(), public)
}

/// `object` signed by `signer` with `pair`.
pub fn signed(object: Value, signer: &str, pair: &Ed25519KeyPair) -> Value {
    let mut canonical: CanonicalJsonObject = serde_json::from_value(object).unwrap();
    sign_json(signer, pair, &mut canonical).unwrap();
    serde_json::to_value(canonical).unwrap()
}

/// Self-signed device keys for `user`'s device.
pub fn device_keys(user: &User, pair: &Ed25519KeyPair, public: &str) -> Value {
    let device = &user.device_id;
    signed(
        json!({
            "user_id": user.user_id,
            "device_id": device,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
            "keys": { format!("curve25519:{device}"): "c3VwZXJzZWNyZXRjdXJ2ZWtleQ", format!("ed25519:{device}"): public },
        }),
        &user.user_id,
        pair,
    )
}

const UPLOAD: &str = "/_matrix/client/v3/keys/upload";
const QUERY: &str = "/_matrix/client/v3/keys/query";
const CLAIM: &str = "/_matrix/client/v3/keys/claim";

#[tokio::test]
async fn device_keys_must_belong_to_the_token_and_be_self_signed() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let (pair, public) = key_pair(Some(&alice.device_id));

    let mut foreign = device_keys(&alice, &pair, &public);
    foreign["user_id"] = json!(bob.user_id);
    assert_error(
        &server.post(UPLOAD, alice.token(), json!({ "device_keys": foreign })).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let mut other_device = device_keys(&alice, &pair, &public);
    other_device["device_id"] = json!("SOMEOTHER");
    assert_error(
        &server.post(UPLOAD, alice.token(), json!({ "device_keys": other_device })).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let (forger, _) = key_pair(Some(&alice.device_id));
    let forged = device_keys(&alice, &forger, &public);
    assert_error(
        &server.post(UPLOAD, alice.token(), json!({ "device_keys": forged })).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    assert_error(
        &server.post(UPLOAD, alice.token(), json!({ "device_keys": "keys" })).await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
    let (_, none) =
        server.post(QUERY, bob.token(), json!({ "device_keys": { &alice.user_id: [] } })).await;
    assert_eq!(none["device_keys"][&alice.user_id], json!({}), "nothing was stored: {none}");

    let keys = device_keys(&alice, &pair, &public);
    let otk = json!({ "signed_curve25519:AAAAAQ": { "key": "b3RrMQ", "signatures": {} } });
    let (status, body) = server
        .post(UPLOAD, alice.token(), json!({ "device_keys": keys, "one_time_keys": otk }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["one_time_key_counts"]["signed_curve25519"], 1);
    // The same keys again are fine; different identity keys for the device are not.
    assert_eq!(
        server.post(UPLOAD, alice.token(), json!({ "device_keys": keys })).await.0,
        StatusCode::OK
    );
    let (pair2, public2) = key_pair(Some(&alice.device_id));
    assert_error(
        &server
            .post(
                UPLOAD,
                alice.token(),
                json!({ "device_keys": device_keys(&alice, &pair2, &public2) }),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );
    let clash = json!({ "signed_curve25519:AAAAAQ": { "key": "ZGlmZmVyZW50", "signatures": {} } });
    assert_error(
        &server.post(UPLOAD, alice.token(), json!({ "one_time_keys": clash })).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    let (status, found) =
        server.post(QUERY, bob.token(), json!({ "device_keys": { &alice.user_id: [] } })).await;
    assert_eq!(status, StatusCode::OK);
    let stored = &found["device_keys"][&alice.user_id][&alice.device_id];
    assert_eq!(stored["keys"][format!("ed25519:{}", alice.device_id)], public);
    assert_eq!(
        stored["unsigned"]["device_display_name"],
        Value::Null,
        "registration set no display name"
    );
    let (_, remote) = server
        .post(QUERY, bob.token(), json!({ "device_keys": { "@carol:elsewhere.example": [] } }))
        .await;
    assert!(remote["failures"]["elsewhere.example"].is_object(), "{remote}");
}

#[tokio::test]
async fn each_one_time_key_is_claimed_once_then_the_fallback_key() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let otks: serde_json::Map<String, Value> = (0..3)
        .map(|i| {
            (
                format!("signed_curve25519:K{i}"),
                json!({ "key": format!("a2V5{i}"), "signatures": {} }),
            )
        })
        .collect();
    let fallback = json!({ "signed_curve25519:FB": { "key": "ZmFsbGJhY2s", "fallback": true, "signatures": {} } });
    let (status, _) = server
        .post(UPLOAD, alice.token(), json!({ "one_time_keys": otks, "fallback_keys": fallback }))
        .await;
    assert_eq!(status, StatusCode::OK);

    let mut claimers = Vec::new();
    for i in 0..5 {
        claimers.push(server.register(&format!("claimer{i}")).await);
    }
    let body =
        json!({ "one_time_keys": { &alice.user_id: { &alice.device_id: "signed_curve25519" } } });
    // Five claims at once, racing on the server.
    let tasks: Vec<_> = claimers
        .iter()
        .map(|claimer| {
            let request = server
                .http
                .post(format!("{}{CLAIM}", server.base))
                .bearer_auth(&claimer.token)
                .json(&body);
            tokio::spawn(async move {
                let response = request.send().await.unwrap();
                (response.status(), response.json::<Value>().await.unwrap())
            })
        })
        .collect();
    let mut claims = Vec::new();
    for task in tasks {
        claims.push(task.await.unwrap());
    }
    let mut ids = Vec::new();
    for (status, claim) in claims {
        assert_eq!(status, StatusCode::OK, "{claim}");
        let keys =
            claim["one_time_keys"][&alice.user_id][&alice.device_id].as_object().unwrap().clone();
        ids.extend(keys.keys().cloned());
    }
    let distinct: BTreeSet<_> =
        ids.iter().filter(|id| id.as_str() != "signed_curve25519:FB").collect();
    assert_eq!(distinct.len(), 3, "three one-time keys, each once: {ids:?}");
    assert_eq!(ids.iter().filter(|id| id.as_str() == "signed_curve25519:FB").count(), 2);

    let unknown = json!({ "one_time_keys": { &alice.user_id: { "NOSUCHDEVICE": "signed_curve25519" }, "@ghost:localhost": { "X": "signed_curve25519" } } });
    let (status, claim) = server.post(CLAIM, alice.token(), unknown).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(claim["one_time_keys"], json!({}));
}

/// A cross-signing key object of `kind` for `user`.
pub fn cross_key(user: &User, kind: &str, public: &str) -> Value {
    json!({ "user_id": user.user_id, "usage": [kind], "keys": { format!("ed25519:{public}"): public } })
}

const SIGNING_UPLOAD: &str = "/_matrix/client/v3/keys/device_signing/upload";
const SIGNATURES_UPLOAD: &str = "/_matrix/client/v3/keys/signatures/upload";

#[tokio::test]
async fn cross_signing_keys_and_signatures_are_checked() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (device_pair, device_public) = key_pair(Some(&alice.device_id));
    let keys = device_keys(&alice, &device_pair, &device_public);
    assert_eq!(
        server.post(UPLOAD, alice.token(), json!({ "device_keys": keys })).await.0,
        StatusCode::OK
    );

    let (master, master_pub) = key_pair(None);
    let (ssk, ssk_pub) = key_pair(None);
    let master_key = cross_key(&alice, "master", &master_pub);
    let self_signing = signed(cross_key(&alice, "self_signing", &ssk_pub), &alice.user_id, &master);
    // A self-signing key the master key did not sign is refused.
    let (rogue, rogue_pub) = key_pair(None);
    let unsigned_ssk =
        signed(cross_key(&alice, "self_signing", &rogue_pub), &alice.user_id, &rogue);
    assert_error(
        &server
            .post(
                SIGNING_UPLOAD,
                alice.token(),
                json!({ "master_key": master_key, "self_signing_key": unsigned_ssk }),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_SIGNATURE",
    );
    // The first upload needs no password.
    let (status, body) = server
        .post(
            SIGNING_UPLOAD,
            alice.token(),
            json!({ "master_key": master_key, "self_signing_key": self_signing }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    // Replacing them does.
    let (master2, master2_pub) = key_pair(None);
    let replacement = json!({
        "master_key": cross_key(&alice, "master", &master2_pub),
        "self_signing_key": signed(cross_key(&alice, "self_signing", &ssk_pub), &alice.user_id, &master2),
    });
    let (status, challenge) = server.post(SIGNING_UPLOAD, alice.token(), replacement.clone()).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    let (_, query) =
        server.post(QUERY, alice.token(), json!({ "device_keys": { &alice.user_id: [] } })).await;
    assert_eq!(
        query["master_keys"][&alice.user_id]["keys"][format!("ed25519:{master_pub}")],
        master_pub
    );

    // A forged signature (another key posing as the self-signing key) is reported, not stored.
    let forged = signed(keys.clone(), &alice.user_id, &key_pair(Some(&ssk_pub)).0);
    let (status, result) = server
        .post(
            SIGNATURES_UPLOAD,
            alice.token(),
            json!({ &alice.user_id: { &alice.device_id: forged } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        result["failures"][&alice.user_id][&alice.device_id]["errcode"], "M_INVALID_SIGNATURE",
        "{result}"
    );
    let (_, query) =
        server.post(QUERY, alice.token(), json!({ "device_keys": { &alice.user_id: [] } })).await;
    let sigs =
        &query["device_keys"][&alice.user_id][&alice.device_id]["signatures"][&alice.user_id];
    assert!(sigs.get(format!("ed25519:{ssk_pub}")).is_none(), "{sigs}");

    // The real self-signing key's signature is kept.
    let genuine = signed(keys.clone(), &alice.user_id, &ssk);
    let (status, result) = server
        .post(
            SIGNATURES_UPLOAD,
            alice.token(),
            json!({ &alice.user_id: { &alice.device_id: genuine } }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(result.get("failures").is_none_or(|f| f == &json!({})), "{result}");
    let (_, query) =
        server.post(QUERY, alice.token(), json!({ "device_keys": { &alice.user_id: [] } })).await;
    let sigs =
        &query["device_keys"][&alice.user_id][&alice.device_id]["signatures"][&alice.user_id];
    assert!(sigs.get(format!("ed25519:{ssk_pub}")).is_some(), "{sigs}");
    // A signed object that is not the stored key is refused.
    let mut altered = signed(keys.clone(), &alice.user_id, &ssk);
    altered["algorithms"] = json!(["m.evil"]);
    let (_, result) = server
        .post(
            SIGNATURES_UPLOAD,
            alice.token(),
            json!({ &alice.user_id: { &alice.device_id: altered } }),
        )
        .await;
    assert_eq!(result["failures"][&alice.user_id][&alice.device_id]["errcode"], "M_INVALID_PARAM");

    let mut with_auth = replacement;
    with_auth["auth"] = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD, "session": challenge["session"] });
    assert_eq!(server.post(SIGNING_UPLOAD, alice.token(), with_auth).await.0, StatusCode::OK);
}

#[tokio::test]
async fn to_device_messages_arrive_once_acknowledged_and_not_before() {
    // Delivery mechanics only; what device trust holds back is tested in `device_trust`.
    let server = TestServer::start_with(|c| c.device_trust.mode = TrustMode::Off).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let bob_phone = server.login("bob", Some("phone")).await;
    let first = server.sync(&bob, "").await;
    let since = first["next_batch"].as_str().unwrap().to_owned();

    let send = |txn: &str| format!("/_matrix/client/v3/sendToDevice/m.test/{txn}");
    let all = json!({ "messages": { &bob.user_id: { "*": { "n": 1 } } } });
    assert_eq!(server.put(&send("t1"), alice.token(), all.clone()).await.0, StatusCode::OK);
    // The same transaction again delivers nothing more.
    assert_eq!(server.put(&send("t1"), alice.token(), all).await.0, StatusCode::OK);

    let got = server.sync(&bob, &format!("since={since}")).await;
    let events = got["to_device"]["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{got}");
    assert_eq!(events[0]["sender"], alice.user_id);
    assert_eq!(events[0]["content"]["n"], 1);
    // Not acknowledged yet: the same token gets it again.
    let again = server.sync(&bob, &format!("since={since}")).await;
    assert_eq!(again["to_device"]["events"].as_array().unwrap().len(), 1);
    // A later token acknowledges it.
    let next = got["next_batch"].as_str().unwrap();
    let after = server.sync(&bob, &format!("since={next}&timeout=0")).await;
    assert!(after["to_device"]["events"].as_array().is_none_or(|e| e.is_empty()), "{after}");
    // The phone got its own copy.
    let phone = server.sync(&bob_phone, "").await;
    assert_eq!(phone["to_device"]["events"].as_array().unwrap().len(), 1);

    // Messages for a deleted device are dropped with it.
    let one = json!({ "messages": { &bob.user_id: { &bob_phone.device_id: { "n": 2 } } } });
    assert_eq!(server.put(&send("t2"), alice.token(), one).await.0, StatusCode::OK);
    let delete = json!({ "devices": [bob_phone.device_id], "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "bob" }, "password": PASSWORD } });
    assert_eq!(
        server.post("/_matrix/client/v3/delete_devices", bob.token(), delete).await.0,
        StatusCode::OK
    );
    let again = server.login("bob", None).await;
    let fresh = server.sync(&again, "").await;
    assert!(fresh["to_device"]["events"].as_array().is_none_or(|e| e.is_empty()));

    assert_error(
        &server
            .put(
                &send("t3"),
                alice.token(),
                json!({ "messages": { &bob.user_id: { "*": "text" } } }),
            )
            .await,
        StatusCode::BAD_REQUEST,
        "M_BAD_JSON",
    );
}

#[tokio::test]
async fn key_backup_versions_and_replacement_rules() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let version_path = "/_matrix/client/v3/room_keys/version";
    assert_error(
        &server.get(version_path, alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let algorithm = json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": { "public_key": "cHVibGlj", "signatures": {} } });
    let (status, created) = server.post(version_path, alice.token(), algorithm.clone()).await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let version = created["version"].as_str().unwrap().to_owned();

    let key = |index: u64, verified: bool| json!({ "first_message_index": index, "forwarded_count": 0, "is_verified": verified, "session_data": { "ephemeral": "ZQ", "ciphertext": format!("c{index}"), "mac": "bQ" } });
    let session =
        format!("/_matrix/client/v3/room_keys/keys/!room:localhost/sess1?version={version}");
    let (status, stored) = server.put(&session, alice.token(), key(5, false)).await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["count"], 1);
    // A worse key does not replace a better one; a better one does.
    server.put(&session, alice.token(), key(9, false)).await;
    assert_eq!(server.get(&session, alice.token()).await.1["first_message_index"], 5);
    server.put(&session, alice.token(), key(2, false)).await;
    assert_eq!(server.get(&session, alice.token()).await.1["first_message_index"], 2);
    server.put(&session, alice.token(), key(7, true)).await;
    assert_eq!(server.get(&session, alice.token()).await.1["is_verified"], true);

    let (_, all) = server
        .get(&format!("/_matrix/client/v3/room_keys/keys?version={version}"), alice.token())
        .await;
    assert!(all["rooms"]["!room:localhost"]["sessions"]["sess1"].is_object(), "{all}");

    // Writes must go to the current version.
    let (status, newer) = server.post(version_path, alice.token(), algorithm).await;
    assert_eq!(status, StatusCode::OK);
    let (status, refused) = server.put(&session, alice.token(), key(1, true)).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(refused["errcode"], "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(refused["current_version"], newer["version"]);
    assert_error(
        &server.get("/_matrix/client/v3/room_keys/version/999", alice.token()).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    assert_error(
        &server
            .get(
                &format!(
                    "/_matrix/client/v3/room_keys/keys/!room:localhost/nosuch?version={version}"
                ),
                alice.token(),
            )
            .await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );

    // Another user sees none of it.
    let bob = server.register("bob").await;
    assert_error(&server.get(&session, bob.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    let delete = format!("{version_path}/{version}");
    assert_eq!(
        server.call(reqwest::Method::DELETE, &delete, alice.token(), None).await.0,
        StatusCode::OK
    );
    assert_error(&server.get(&delete, alice.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn key_changes_follow_shared_rooms() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let carol = server.register("carol").await;
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    let from = server.sync(&alice, "").await["next_batch"].as_str().unwrap().to_owned();

    for user in [&bob, &carol] {
        let (pair, public) = key_pair(Some(&user.device_id));
        let keys = device_keys(user, &pair, &public);
        assert_eq!(
            server.post(UPLOAD, user.token(), json!({ "device_keys": keys })).await.0,
            StatusCode::OK
        );
    }
    let synced = server.sync(&alice, &format!("since={from}")).await;
    let to = synced["next_batch"].as_str().unwrap();
    assert_eq!(synced["device_lists"]["changed"], json!([bob.user_id]), "{synced}");
    let (status, changes) = server
        .get(&format!("/_matrix/client/v3/keys/changes?from={from}&to={to}"), alice.token())
        .await;
    assert_eq!(status, StatusCode::OK, "{changes}");
    assert_eq!(changes["changed"], json!([bob.user_id]), "Carol shares no room with Alice");
    assert_error(
        &server.get("/_matrix/client/v3/keys/changes?from=junk&to=junk", alice.token()).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    // Bob leaves: Alice is told she no longer shares a room with him.
    assert_eq!(server.membership(&bob, &room, "leave", None).await.0, StatusCode::OK);
    let left = server.sync(&alice, &format!("since={to}")).await;
    assert_eq!(left["device_lists"]["left"], json!([bob.user_id]), "{left}");
}
