//! Device trust through the HTTP API: what an untrusted device is denied, how it becomes
//! trusted, and what administrators can see and do.

use palisade_core::config::TrustMode;
use palisade_service::trust::Administrator;
use palisade_testkit::{PASSWORD, TestServer, User, assert_error, assert_forbidden};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::e2ee::{cross_key, device_keys, key_pair, signed};

/// Uploads self-signed device keys for the user's device; returns the keys.
async fn upload_device_keys(server: &TestServer, user: &User) -> Value {
    let (pair, public) = key_pair(Some(&user.device_id));
    let keys = device_keys(user, &pair, &public);
    let (status, body) = server
        .post("/_matrix/client/v3/keys/upload", user.token(), json!({ "device_keys": keys }))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    keys
}

async fn make_admin(server: &TestServer, user: &User) {
    let user_id = ruma::OwnedUserId::try_from(user.user_id.as_str()).unwrap();
    server.services.accounts.set_admin(&user_id, true).await.unwrap();
}

fn admin_path(user: &User, rest: &str) -> String {
    format!("/_palisade/admin/v1/users/{}{rest}", user.user_id)
}

async fn trust_of(server: &TestServer, admin: &User, user: &User, device: &str) -> bool {
    let (status, body) = server.get(&admin_path(user, "/devices"), admin.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let devices = body["devices"].as_array().unwrap();
    devices.iter().find(|d| d["device_id"] == device).unwrap()["trusted"].as_bool().unwrap()
}

async fn queried_devices(server: &TestServer, by: &User, of: &User) -> Vec<String> {
    let (_, body) = server
        .post(
            "/_matrix/client/v3/keys/query",
            by.token(),
            json!({ "device_keys": { &of.user_id: [] } }),
        )
        .await;
    let mut devices: Vec<String> =
        body["device_keys"][&of.user_id].as_object().unwrap().keys().cloned().collect();
    devices.sort();
    devices
}

async fn send_to_device(
    server: &TestServer,
    from: &User,
    to: &User,
    device: &str,
    kind: &str,
    txn: &str,
) {
    let path = format!("/_matrix/client/v3/sendToDevice/{kind}/{txn}");
    let body = json!({ "messages": { &to.user_id: { device: { "txn": txn } } } });
    assert_eq!(server.put(&path, from.token(), body).await.0, StatusCode::OK);
}

/// The `txn` markers of the to-device events a device receives in a fresh sync.
async fn received(server: &TestServer, user: &User) -> Vec<String> {
    let synced = server.sync(user, "").await;
    synced["to_device"]["events"]
        .as_array()
        .map(|events| {
            events.iter().map(|e| e["content"]["txn"].as_str().unwrap().to_owned()).collect()
        })
        .unwrap_or_default()
}

/// An administrator, and Alice and Bob in a public room, with device keys uploaded for Alice.
struct Scene {
    server: TestServer,
    admin: User,
    alice: User,
    bob: User,
    room: String,
}

async fn scene() -> Scene {
    let server = TestServer::start().await;
    let admin = server.register("admin").await;
    make_admin(&server, &admin).await;
    let alice = server.register("alice").await;
    let bob = server.register("bob").await;
    let room = server.create_room(&alice, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    upload_device_keys(&server, &alice).await;
    Scene { server, admin, alice, bob, room }
}

#[tokio::test]
async fn an_untrusted_device_is_quarantined_until_approved() {
    let Scene { server, admin, alice, bob, .. } = scene().await;
    upload_device_keys(&server, &bob).await;

    // The attacker signs in with Alice's password.
    let intruder = server.login("alice", Some("Totally Alice")).await;
    upload_device_keys(&server, &intruder).await;
    assert!(trust_of(&server, &admin, &alice, &alice.device_id).await, "first device");
    assert!(!trust_of(&server, &admin, &alice, &intruder.device_id).await);

    // Bob's client never learns of the device, so never encrypts for it; Alice's own does.
    assert_eq!(queried_devices(&server, &bob, &alice).await, vec![alice.device_id.clone()]);
    assert_eq!(queried_devices(&server, &alice, &alice).await.len(), 2);

    // Room keys and anything else from other accounts wait; verification from Alice's own
    // devices passes.
    send_to_device(&server, &bob, &alice, &intruder.device_id, "m.room.encrypted", "bob-key").await;
    send_to_device(
        &server,
        &bob,
        &alice,
        &intruder.device_id,
        "m.key.verification.request",
        "bob-verify",
    )
    .await;
    send_to_device(&server, &alice, &alice, &intruder.device_id, "m.room.encrypted", "alice-key")
        .await;
    send_to_device(
        &server,
        &alice,
        &alice,
        &intruder.device_id,
        "m.key.verification.request",
        "alice-verify",
    )
    .await;
    assert_eq!(received(&server, &intruder).await, ["alice-verify"]);
    // What it sends: verification to its own account at once, the rest held.
    send_to_device(
        &server,
        &intruder,
        &alice,
        &alice.device_id,
        "m.key.verification.ready",
        "intruder-verify",
    )
    .await;
    send_to_device(
        &server,
        &intruder,
        &alice,
        &alice.device_id,
        "m.secret.request",
        "intruder-secret",
    )
    .await;
    send_to_device(
        &server,
        &intruder,
        &bob,
        &bob.device_id,
        "m.key.verification.request",
        "intruder-to-bob",
    )
    .await;
    assert_eq!(received(&server, &alice).await, ["intruder-verify"]);
    assert!(received(&server, &bob).await.is_empty());
    // A held message of a device that is signed out without ever being trusted is dropped.
    let doomed = server.login("alice", None).await;
    send_to_device(&server, &doomed, &bob, &bob.device_id, "m.room.encrypted", "doomed").await;
    let sign_out = json!({ "devices": [doomed.device_id], "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD } });
    assert_eq!(
        server.post("/_matrix/client/v3/delete_devices", alice.token(), sign_out).await.0,
        StatusCode::OK
    );
    let db = rusqlite::Connection::open(server.config.database_path()).unwrap();
    let left: i64 = db
        .query_row(
            "SELECT count(*) FROM to_device WHERE sender_device = ?1",
            [&doomed.device_id],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(left, 0, "the signed-out device's held messages are gone");

    // No key backup for it.
    let version = json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": { "public_key": "cHVi" } });
    let (_, created) =
        server.post("/_matrix/client/v3/room_keys/version", alice.token(), version).await;
    let keys = format!(
        "/_matrix/client/v3/room_keys/keys?version={}",
        created["version"].as_str().unwrap()
    );
    assert_eq!(server.get(&keys, alice.token()).await.0, StatusCode::OK);
    let (status, refused) = server.get(&keys, intruder.token()).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(refused["error"].as_str().unwrap().contains("not approved"), "{refused}");

    // Once approved, everything held arrives, and Bob is told to refetch Alice's devices.
    let since = server.sync(&bob, "").await["next_batch"].as_str().unwrap().to_owned();
    let (status, _) = server
        .post(
            &admin_path(&alice, &format!("/devices/{}/approve", intruder.device_id)),
            admin.token(),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut held = received(&server, &intruder).await;
    held.sort();
    assert_eq!(held, ["alice-key", "alice-verify", "bob-key", "bob-verify"]);
    let bob_sync = server.sync(&bob, &format!("since={since}")).await;
    assert!(
        bob_sync["device_lists"]["changed"].as_array().unwrap().contains(&json!(alice.user_id)),
        "{bob_sync}"
    );
    assert_eq!(received(&server, &bob).await, ["intruder-to-bob"]);
    assert_eq!(queried_devices(&server, &bob, &alice).await.len(), 2);
    assert_eq!(server.get(&keys, intruder.token()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn cross_signing_by_the_owner_trusts_a_device_and_resets_need_a_grant() {
    let server = TestServer::start().await;
    let admin = server.register("admin").await;
    make_admin(&server, &admin).await;
    let alice = server.register("alice").await;
    upload_device_keys(&server, &alice).await;
    let (master, master_pub) = key_pair(None);
    let (ssk, ssk_pub) = key_pair(None);
    let upload = json!({
        "master_key": cross_key(&alice, "master", &master_pub),
        "self_signing_key": signed(cross_key(&alice, "self_signing", &ssk_pub), &alice.user_id, &master),
    });
    assert_eq!(
        server.post("/_matrix/client/v3/keys/device_signing/upload", alice.token(), upload).await.0,
        StatusCode::OK
    );

    let laptop = server.login("alice", Some("Laptop")).await;
    let laptop_keys = upload_device_keys(&server, &laptop).await;
    assert!(!trust_of(&server, &admin, &alice, &laptop.device_id).await);
    // Alice's trusted device signs the laptop with her self-signing key: trusted.
    let signature = signed(laptop_keys, &alice.user_id, &ssk);
    let (_, result) = server
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            alice.token(),
            json!({ &alice.user_id: { &laptop.device_id: signature } }),
        )
        .await;
    assert!(result.get("failures").is_none_or(|f| f == &json!({})), "{result}");
    assert!(trust_of(&server, &admin, &alice, &laptop.device_id).await);

    // An attacker's device cannot replace Alice's cross-signing identity to trust itself.
    let intruder = server.login("alice", None).await;
    upload_device_keys(&server, &intruder).await;
    let (evil_master, evil_master_pub) = key_pair(None);
    let (_, evil_ssk_pub) = key_pair(None);
    let takeover = json!({
        "master_key": cross_key(&alice, "master", &evil_master_pub),
        "self_signing_key": signed(cross_key(&alice, "self_signing", &evil_ssk_pub), &alice.user_id, &evil_master),
        "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD },
    });
    assert_forbidden(
        &server
            .post(
                "/_matrix/client/v3/keys/device_signing/upload",
                intruder.token(),
                takeover.clone(),
            )
            .await,
    );
    let (_, audit) = server
        .get(&format!("/_palisade/admin/v1/audit?user_id={}", alice.user_id), admin.token())
        .await;
    let kinds: Vec<_> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert!(kinds.contains(&"cross_signing_reset_refused".to_owned()), "{kinds:?}");
    assert!(
        kinds.contains(&"device_trusted".to_owned()) && kinds.contains(&"device_added".to_owned()),
        "{kinds:?}"
    );

    // With an administrator's grant (Alice lost everything), the reset goes through once.
    let (status, grant) = server
        .post(
            &admin_path(&alice, "/allow_cross_signing_reset"),
            admin.token(),
            json!({ "minutes": 5 }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{grant}");
    assert_eq!(
        server
            .post(
                "/_matrix/client/v3/keys/device_signing/upload",
                intruder.token(),
                takeover.clone()
            )
            .await
            .0,
        StatusCode::OK
    );
    // The old signatures no longer count: the laptop is untrusted again.
    assert!(!trust_of(&server, &admin, &alice, &laptop.device_id).await);
}

#[tokio::test]
async fn strict_mode_hides_rooms_from_untrusted_devices() {
    let server = TestServer::start_with(|c| c.device_trust.mode = TrustMode::Strict).await;
    let admin = server.register("admin").await;
    make_admin(&server, &admin).await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice, json!({ "name": "Secret plans" })).await;
    server.send_text(&alice, &room, "the plan").await;

    let intruder = server.login("alice", None).await;
    let synced = server.sync(&intruder, "").await;
    assert!(synced["rooms"]["join"].as_object().is_none_or(|j| j.is_empty()), "{synced}");
    for path in ["messages?dir=b", "state", "members", "state/m.room.name/"] {
        assert_forbidden(
            &server.get(&format!("/_matrix/client/v3/rooms/{room}/{path}"), intruder.token()).await,
        );
    }
    // The trusted device is unaffected.
    assert_eq!(
        server
            .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b"), alice.token())
            .await
            .0,
        StatusCode::OK
    );

    let path = admin_path(&alice, &format!("/devices/{}/approve", intruder.device_id));
    assert_eq!(server.post(&path, admin.token(), json!({})).await.0, StatusCode::OK);
    let synced = server.sync(&intruder, "").await;
    assert!(synced["rooms"]["join"].get(&room).is_some());
}

#[tokio::test]
async fn administrators_list_approve_and_sign_out_devices() {
    let server = TestServer::start().await;
    let admin = server.register("admin").await;
    let alice = server.register("alice").await;
    let phone = server.login("alice", Some("Phone")).await;
    let path = admin_path(&alice, "/devices");
    assert_forbidden(&server.get(&path, admin.token()).await);
    assert_forbidden(&server.get(&path, alice.token()).await);
    assert_error(&server.get(&path, None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    make_admin(&server, &admin).await;

    let (status, listed) = server.get(&path, admin.token()).await;
    assert_eq!(status, StatusCode::OK);
    let phone_row = listed["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["device_id"] == phone.device_id)
        .unwrap()
        .clone();
    assert_eq!(phone_row["display_name"], "Phone");
    assert_eq!(phone_row["trusted"], false);
    assert_eq!(phone_row["last_seen_ip"], "127.0.0.1");

    let unknown = admin_path(&alice, "/devices/NOSUCHDEVICE/approve");
    assert_error(
        &server.post(&unknown, admin.token(), json!({})).await,
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
    );
    let sign_out = admin_path(&alice, &format!("/devices/{}", phone.device_id));
    assert_eq!(server.call(Method::DELETE, &sign_out, admin.token(), None).await.0, StatusCode::OK);
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", phone.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(server.call(Method::DELETE, &path, admin.token(), None).await.0, StatusCode::OK);
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", alice.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );

    let (_, audit) = server
        .get(&format!("/_palisade/admin/v1/audit?user_id={}", alice.user_id), admin.token())
        .await;
    let entries = audit["entries"].as_array().unwrap();
    let signed_out = entries.iter().find(|e| e["kind"] == "device_signed_out").unwrap();
    assert_eq!(signed_out["actor"], admin.user_id);
    assert_eq!(signed_out["device_id"], phone.device_id);
    let added = entries
        .iter()
        .find(|e| e["kind"] == "device_added" && e["device_id"] == phone.device_id)
        .unwrap();
    assert_eq!(added["detail"]["ip"], "127.0.0.1");
    assert_eq!(added["detail"]["display_name"], "Phone");
}

/// Syncs until a server notice mentioning `needle` arrives; returns the notices room.
async fn await_notice(server: &TestServer, user: &User, needle: &str) -> String {
    for _ in 0..50 {
        let synced = server.sync(user, "").await;
        for (room_id, room) in synced["rooms"]["join"].as_object().into_iter().flatten() {
            let events = room["timeline"]["events"].as_array().cloned().unwrap_or_default();
            if events.iter().any(|e| {
                e["content"]["msgtype"] == "m.server_notice"
                    && e["content"]["body"].as_str().is_some_and(|b| b.contains(needle))
            }) {
                return room_id.clone();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("no server notice mentioning {needle}");
}

#[tokio::test]
async fn the_owner_is_told_of_every_new_device() {
    let server = TestServer::start_with(|c| c.device_trust.notify_user = true).await;
    let alice = server.register("alice").await;
    let intruder = server.http.post(format!("{}/_matrix/client/v3/login", server.base))
        .header("User-Agent", "PhishKit/1.0")
        .json(&json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD, "initial_device_display_name": "Alice's new phone" }))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let intruder_device = intruder["device_id"].as_str().unwrap();
    let room = await_notice(&server, &alice, intruder_device).await;
    let (_, state) = server
        .get(&format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1"), alice.token())
        .await;
    let body = state["chunk"][0]["content"]["body"].as_str().unwrap().to_owned();
    for detail in ["Alice's new phone", "127.0.0.1", "PhishKit/1.0", "sign it out"] {
        assert!(body.contains(detail), "{detail} missing from {body}");
    }
    assert_eq!(state["chunk"][0]["sender"], "@server:localhost");
    let tags = format!("/_matrix/client/v3/user/{}/rooms/{room}/tags", alice.user_id);
    assert!(server.get(&tags, alice.token()).await.1["tags"]["m.server_notice"].is_object());
    // The notices room is not encrypted: the server writes it.
    assert_eq!(
        server
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/state/m.room.encryption/"),
                alice.token()
            )
            .await
            .0,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn device_limit_and_expiry_of_unapproved_devices() {
    let server = TestServer::start_with(|c| {
        c.device_trust.max_devices_per_account = 2;
        c.device_trust.untrusted_device_lifetime_secs = 1;
    })
    .await;
    let alice = server.register("alice").await;
    let second = server.login("alice", None).await;
    let refused = server
        .post("/_matrix/client/v3/login", None, json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD }))
        .await;
    assert_forbidden(&refused);
    // Signing in again on a known device replaces it rather than adding one.
    let again = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD, "device_id": second.device_id });
    let (status, relogin) = server.post("/_matrix/client/v3/login", None, again).await;
    assert_eq!(status, StatusCode::OK, "{relogin}");
    let second_token = relogin["access_token"].as_str().unwrap().to_owned();

    // The unapproved device is signed out once its lifetime passes; the trusted one stays.
    let mut expired = false;
    for _ in 0..60 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        if server.get("/_matrix/client/v3/account/whoami", Some(&second_token)).await.0
            == StatusCode::UNAUTHORIZED
        {
            expired = true;
            break;
        }
    }
    assert!(expired, "the untrusted device outlived its lifetime");
    assert_eq!(
        server.get("/_matrix/client/v3/account/whoami", alice.token()).await.0,
        StatusCode::OK
    );
    // The audit entry is written just after the device is deleted.
    let mut audited = false;
    for _ in 0..50 {
        let audit =
            server.services.trust.audit_log(&Administrator::console(), None, 50).await.unwrap();
        audited = audit.iter().any(|e| {
            e.kind == "device_expired"
                && e.device_id.as_deref().map(|d| d.as_str()) == Some(second.device_id.as_str())
        });
        if audited {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert!(audited, "the expiry is not in the audit log");
}

#[tokio::test]
async fn reusing_a_trusted_device_id_does_not_inherit_its_trust() {
    let Scene { server, admin, alice, bob, room } = scene().await;
    assert!(trust_of(&server, &admin, &alice, &alice.device_id).await);

    // The attacker knows the password and the id of Alice's trusted device.
    let takeover = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD, "device_id": alice.device_id });
    let (status, login) = server.post("/_matrix/client/v3/login", None, takeover).await;
    assert_eq!(status, StatusCode::OK, "{login}");
    assert!(
        !trust_of(&server, &admin, &alice, &alice.device_id).await,
        "the reused id starts untrusted"
    );
    assert!(
        queried_devices(&server, &bob, &alice).await.is_empty(),
        "and other users do not see it"
    );
    let token = login["access_token"].as_str().unwrap();
    let attacker = User {
        user_id: alice.user_id.clone(),
        device_id: alice.device_id.clone(),
        token: token.to_owned(),
    };

    // Nor can it install a cross-signing identity to sign itself.
    let (master, master_pub) = key_pair(None);
    let (_, ssk_pub) = key_pair(None);
    let upload = json!({
        "master_key": cross_key(&alice, "master", &master_pub),
        "self_signing_key": signed(cross_key(&alice, "self_signing", &ssk_pub), &alice.user_id, &master),
    });
    assert_forbidden(
        &server
            .post("/_matrix/client/v3/keys/device_signing/upload", attacker.token(), upload)
            .await,
    );
    // Nor invite an accomplice into Alice's rooms, nor change their state.
    let accomplice = server.register("mallory").await;
    assert_forbidden(&server.membership(&attacker, &room, "invite", Some(&accomplice)).await);
    let topic = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
    assert_forbidden(&server.put(&topic, attacker.token(), json!({ "topic": "owned" })).await);
    // Nor touch the key backup.
    let version = json!({ "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2", "auth_data": { "public_key": "cHVi" } });
    assert_forbidden(
        &server.post("/_matrix/client/v3/room_keys/version", attacker.token(), version).await,
    );
}

#[tokio::test]
async fn after_approval_a_strict_device_gets_its_rooms_incrementally() {
    let server = TestServer::start_with(|c| c.device_trust.mode = TrustMode::Strict).await;
    let admin = server.register("admin").await;
    make_admin(&server, &admin).await;
    let alice = server.register("alice").await;
    let room = server.create_room(&alice, json!({ "name": "Waiting" })).await;
    let phone = server.login("alice", None).await;
    let first = server.sync(&phone, "").await;
    assert!(first["rooms"]["join"].as_object().is_none_or(|j| j.is_empty()));
    assert_forbidden(&server.get("/_matrix/client/v3/joined_rooms", phone.token()).await);
    // While the phone waits, alice tags the room from her approved device.
    let tag = format!("/_matrix/client/v3/user/{}/rooms/{room}/tags/m.favourite", alice.user_id);
    assert_eq!(server.put(&tag, alice.token(), json!({ "order": 0.5 })).await.0, StatusCode::OK);
    let waiting = first["next_batch"].as_str().unwrap();
    let second = server.sync(&phone, &format!("since={waiting}")).await;
    let path = admin_path(&alice, &format!("/devices/{}/approve", phone.device_id));
    assert_eq!(server.post(&path, admin.token(), json!({})).await.0, StatusCode::OK);
    let since = second["next_batch"].as_str().unwrap();
    let next = server.sync(&phone, &format!("since={since}")).await;
    let joined = &next["rooms"]["join"][&room];
    assert!(joined.is_object(), "{next}");
    // The tag set while it could not see the room arrives with the room.
    let data = joined["account_data"]["events"].as_array().unwrap();
    assert!(
        data.iter()
            .any(|e| e["type"] == "m.tag" && e["content"]["tags"]["m.favourite"].is_object()),
        "{joined}"
    );
}

#[tokio::test]
async fn a_phished_administrator_device_cannot_approve_itself() {
    let server = TestServer::start().await;
    let boss = server.register("boss").await;
    make_admin(&server, &boss).await;
    let phished = server.login("boss", Some("phished")).await;

    let approve = admin_path(&boss, &format!("/devices/{}/approve", phished.device_id));
    let refused = server.post(&approve, phished.token(), json!({})).await;
    assert_error(&refused, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    assert_forbidden(&server.get(&admin_path(&boss, "/devices"), phished.token()).await);
    assert!(!trust_of(&server, &boss, &boss, &phished.device_id).await);

    let (_, audit) = server
        .get(&format!("/_palisade/admin/v1/audit?user_id={}", boss.user_id), boss.token())
        .await;
    let refusal = audit["entries"].as_array().unwrap().iter().find(|e| {
        e["kind"] == "unapproved_device_refused" && e["device_id"] == phished.device_id.as_str()
    });
    assert_eq!(refusal.unwrap()["detail"]["operation"], "admin_api", "{audit}");

    // From the approved device, the administrator approves it.
    let (status, body) = server.post(&approve, boss.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(trust_of(&server, &boss, &boss, &phished.device_id).await);
}

#[tokio::test]
async fn an_unapproved_device_cannot_open_a_room_to_others() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let intruder = server.login("alice", Some("phished")).await;
    let create = "/_matrix/client/v3/createRoom";
    let join_rules = json!({ "type": "m.room.join_rules", "state_key": "", "content": { "join_rule": "public" } });
    for body in [
        json!({ "preset": "public_chat" }),
        json!({ "visibility": "public" }),
        json!({ "initial_state": [join_rules] }),
        json!({ "power_level_content_override": { "invite": 0 } }),
    ] {
        let refused = server.post(create, intruder.token(), body.clone()).await;
        assert_forbidden(&refused);
    }
    // A room of its own, closed to others, it may create.
    let (status, body) = server.post(create, intruder.token(), json!({ "name": "Notes" })).await;
    assert_eq!(status, StatusCode::OK, "{body}");
}
