//! Every endpoint of the client listener, walked from the router's own list: with what each
//! needs of the device calling it (an unapproved device's token is refused what the table
//! says, and an endpoint cannot be added without deciding; whatever the endpoint, the refusal
//! comes from the operation behind it), and with malformed bodies, which never get a 5xx.

use palisade_core::config::TrustMode;
use palisade_service::trust::UNAPPROVED_DEVICE;
use palisade_testkit::{TestServer, User};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// What an endpoint needs of the calling device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Needs {
    /// Nothing: public, the device's own account, or the end-to-end encryption endpoints
    /// whose trust rules the e2ee tests cover (they depend on the keys sent).
    Nothing,
    /// Access to rooms: refused in strict mode until approved.
    Rooms,
    /// Approval: anything that can leak room keys or change who is in a room, and the admin
    /// API, refused in every mode until approved.
    Approval,
}

use Needs::{Approval, Nothing, Rooms};

const C: &str = "/_matrix/client/v3";

/// Method, path (as the router lists it, without the client prefix where it has one) and
/// what the endpoint needs.
const TABLE: &[(&str, &str, Needs)] = &[
    ("GET", "/.well-known/matrix/client", Nothing),
    ("GET", "/.well-known/matrix/server", Nothing),
    ("GET", "/.well-known/matrix/support", Nothing),
    ("GET", "~/voip/turnServer", Nothing),
    ("GET", "~/profile/{user_id}/{field}", Nothing),
    ("PUT", "~/profile/{user_id}/{field}", Nothing),
    ("DELETE", "~/profile/{user_id}/{field}", Nothing),
    ("DELETE", "~/profile/{user_id}/displayname", Nothing),
    ("DELETE", "/_matrix/client/r0/profile/{user_id}/displayname", Nothing),
    ("DELETE", "~/profile/{user_id}/avatar_url", Nothing),
    ("DELETE", "/_matrix/client/r0/profile/{user_id}/avatar_url", Nothing),
    ("GET", "/_matrix/client/v1/register/m.login.registration_token/validity", Nothing),
    ("GET", "~/account/3pid", Nothing),
    ("POST", "~/account/3pid", Nothing),
    ("POST", "/_matrix/client/r0/account/3pid", Nothing),
    ("POST", "~/account/3pid/add", Nothing),
    ("POST", "~/account/3pid/bind", Nothing),
    ("POST", "~/account/3pid/delete", Nothing),
    ("POST", "~/account/3pid/unbind", Nothing),
    ("POST", "~/account/3pid/email/requestToken", Nothing),
    ("POST", "~/account/3pid/msisdn/requestToken", Nothing),
    ("POST", "~/account/password/email/requestToken", Nothing),
    ("POST", "~/account/password/msisdn/requestToken", Nothing),
    ("POST", "~/register/email/requestToken", Nothing),
    ("POST", "~/register/msisdn/requestToken", Nothing),
    ("GET", "~/admin/whois/{user_id}", Nothing),
    ("GET", "/_matrix/client/v1/admin/lock/{user_id}", Approval),
    ("PUT", "/_matrix/client/v1/admin/lock/{user_id}", Approval),
    ("GET", "/_matrix/client/v1/admin/suspend/{user_id}", Approval),
    ("PUT", "/_matrix/client/v1/admin/suspend/{user_id}", Approval),
    ("GET", "~/thirdparty/protocols", Nothing),
    ("GET", "~/thirdparty/protocol/{protocol}", Nothing),
    ("GET", "~/thirdparty/location/{protocol}", Nothing),
    ("GET", "~/thirdparty/user/{protocol}", Nothing),
    ("GET", "~/thirdparty/location", Nothing),
    ("GET", "~/thirdparty/user", Nothing),
    ("GET", "/_matrix/client/v1/mutual_rooms", Rooms),
    ("GET", "/_matrix/client/v1/room_summary/{room_id_or_alias}", Nothing),
    ("GET", "/_matrix/client/unstable/uk.half-shot.msc2666/user/mutual_rooms", Rooms),
    ("GET", "/_matrix/client/v1/rooms/{room_id}/timestamp_to_event", Rooms),
    ("GET", "/_matrix/client/v1/rooms/{room_id}/relations/{event_id}", Rooms),
    ("GET", "/_matrix/client/v1/rooms/{room_id}/threads", Rooms),
    ("GET", "/_matrix/client/v1/rooms/{room_id}/hierarchy", Rooms),
    ("GET", "/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/{rel_type}", Rooms),
    (
        "GET",
        "/_matrix/client/v1/rooms/{room_id}/relations/{event_id}/{rel_type}/{event_type}",
        Rooms,
    ),
    ("POST", "~/search", Rooms),
    ("GET", "/_matrix/client/versions", Nothing),
    ("GET", "/_matrix/key/v2/server", Nothing),
    ("GET", "/_matrix/key/v2/server/{key_id}", Nothing),
    ("GET", "~/capabilities", Nothing),
    ("GET", "~/login", Nothing),
    ("POST", "~/login", Nothing),
    ("POST", "~/refresh", Nothing),
    ("POST", "/_matrix/client/v1/login/get_token", Approval),
    ("POST", "~/register", Nothing),
    ("GET", "~/register/available", Nothing),
    ("POST", "~/account/deactivate", Nothing),
    ("POST", "~/account/password", Nothing),
    ("GET", "~/account/whoami", Nothing),
    ("POST", "~/createRoom", Approval),
    ("POST", "~/delete_devices", Nothing),
    ("GET", "~/devices", Nothing),
    ("DELETE", "~/devices/{device_id}", Nothing),
    ("GET", "~/devices/{device_id}", Nothing),
    ("PUT", "~/devices/{device_id}", Nothing),
    ("GET", "~/directory/list/room/{room_id}", Nothing),
    ("PUT", "~/directory/list/room/{room_id}", Approval),
    ("DELETE", "~/directory/room/{room_alias}", Rooms),
    ("GET", "~/directory/room/{room_alias}", Nothing),
    ("PUT", "~/directory/room/{room_alias}", Rooms),
    ("POST", "~/join/{room_id_or_alias}", Rooms),
    ("POST", "~/knock/{room_id_or_alias}", Rooms),
    ("POST", "~/rooms/{room_id}/upgrade", Approval),
    ("GET", "~/joined_rooms", Rooms),
    ("GET", "~/keys/changes", Nothing),
    ("POST", "~/keys/claim", Nothing),
    ("POST", "~/keys/device_signing/upload", Nothing),
    ("POST", "~/keys/query", Nothing),
    ("POST", "~/keys/signatures/upload", Nothing),
    ("POST", "~/keys/upload", Nothing),
    ("GET", "~/presence/{user_id}/status", Nothing),
    ("PUT", "~/presence/{user_id}/status", Nothing),
    ("GET", "~/profile/{user_id}", Nothing),
    ("GET", "~/profile/{user_id}/avatar_url", Nothing),
    ("PUT", "~/profile/{user_id}/avatar_url", Nothing),
    ("GET", "~/profile/{user_id}/displayname", Nothing),
    ("PUT", "~/profile/{user_id}/displayname", Nothing),
    ("GET", "~/publicRooms", Nothing),
    ("POST", "~/publicRooms", Nothing),
    ("POST", "~/rooms/{room_id}/report/{event_id}", Rooms),
    ("POST", "~/rooms/{room_id}/report", Nothing),
    ("POST", "~/users/{user_id}/report", Nothing),
    ("GET", "/_palisade/admin/v1/reports", Approval),
    ("POST", "/_palisade/admin/v1/reports/{id}/resolve", Approval),
    ("GET", "~/pushers", Nothing),
    ("POST", "~/pushers/set", Approval),
    ("GET", "~/notifications", Rooms),
    ("GET", "~/pushrules/", Nothing),
    ("GET", "~/pushrules/global/", Nothing),
    ("GET", "~/pushrules/global/{kind}/", Nothing),
    ("GET", "/_matrix/client/r0/pushrules/global/{kind}/", Nothing),
    ("GET", "~/pushrules/{*rest}", Nothing),
    ("GET", "/_matrix/client/r0/pushrules/{*rest}", Nothing),
    ("DELETE", "~/pushrules/global/{kind}/{rule_id}", Nothing),
    ("GET", "~/pushrules/global/{kind}/{rule_id}", Nothing),
    ("PUT", "~/pushrules/global/{kind}/{rule_id}", Nothing),
    ("GET", "~/pushrules/global/{kind}/{rule_id}/actions", Nothing),
    ("PUT", "~/pushrules/global/{kind}/{rule_id}/actions", Nothing),
    ("GET", "~/pushrules/global/{kind}/{rule_id}/enabled", Nothing),
    ("PUT", "~/pushrules/global/{kind}/{rule_id}/enabled", Nothing),
    ("DELETE", "~/room_keys/keys", Approval),
    ("GET", "~/room_keys/keys", Approval),
    ("PUT", "~/room_keys/keys", Approval),
    ("DELETE", "~/room_keys/keys/{room_id}", Approval),
    ("GET", "~/room_keys/keys/{room_id}", Approval),
    ("PUT", "~/room_keys/keys/{room_id}", Approval),
    ("DELETE", "~/room_keys/keys/{room_id}/{session_id}", Approval),
    ("GET", "~/room_keys/keys/{room_id}/{session_id}", Approval),
    ("PUT", "~/room_keys/keys/{room_id}/{session_id}", Approval),
    ("GET", "~/room_keys/version", Nothing),
    ("POST", "~/room_keys/version", Approval),
    ("DELETE", "~/room_keys/version/{version}", Approval),
    ("GET", "~/room_keys/version/{version}", Nothing),
    ("PUT", "~/room_keys/version/{version}", Approval),
    ("GET", "~/rooms/{room_id}/aliases", Rooms),
    ("POST", "~/rooms/{room_id}/ban", Approval),
    ("GET", "~/rooms/{room_id}/context/{event_id}", Rooms),
    ("GET", "~/rooms/{room_id}/event/{event_id}", Rooms),
    ("POST", "~/rooms/{room_id}/forget", Rooms),
    ("POST", "~/rooms/{room_id}/invite", Approval),
    ("POST", "~/rooms/{room_id}/join", Rooms),
    ("GET", "~/rooms/{room_id}/joined_members", Rooms),
    ("POST", "~/rooms/{room_id}/kick", Approval),
    ("POST", "~/rooms/{room_id}/leave", Rooms),
    ("GET", "~/rooms/{room_id}/members", Rooms),
    ("GET", "~/rooms/{room_id}/messages", Rooms),
    ("POST", "~/rooms/{room_id}/read_markers", Rooms),
    ("POST", "~/rooms/{room_id}/receipt/{receipt_type}/{event_id}", Rooms),
    ("PUT", "~/rooms/{room_id}/redact/{event_id}/{txn_id}", Rooms),
    ("PUT", "~/rooms/{room_id}/send/{event_type}/{txn_id}", Rooms),
    ("POST", "~/rooms/{room_id}/send/{event_type}", Rooms),
    ("GET", "~/rooms/{room_id}/initialSync", Rooms),
    ("GET", "~/events", Rooms),
    ("GET", "/_matrix/client/r0/events", Rooms),
    ("GET", "~/initialSync", Rooms),
    ("GET", "/_matrix/client/r0/initialSync", Rooms),
    ("GET", "~/events/{event_id}", Rooms),
    ("GET", "/_matrix/client/r0/events/{event_id}", Rooms),
    ("POST", "/_matrix/client/r0/rooms/{room_id}/send/{event_type}", Rooms),
    ("GET", "~/rooms/{room_id}/state", Rooms),
    ("GET", "~/rooms/{room_id}/state/{event_type}/{state_key}", Rooms),
    ("PUT", "~/rooms/{room_id}/state/{event_type}/{state_key}", Approval),
    ("PUT", "~/rooms/{room_id}/typing/{user_id}", Rooms),
    ("POST", "~/rooms/{room_id}/unban", Approval),
    ("PUT", "~/sendToDevice/{event_type}/{txn_id}", Nothing),
    ("GET", "~/sync", Nothing),
    // Like `/sync`, an unapproved device is answered, and sent no rooms.
    ("POST", "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync", Nothing),
    ("GET", "~/user/{user_id}/account_data/{event_type}", Nothing),
    ("PUT", "~/user/{user_id}/account_data/{event_type}", Nothing),
    ("POST", "~/user/{user_id}/filter", Nothing),
    ("GET", "~/user/{user_id}/filter/{filter_id}", Nothing),
    ("POST", "~/user/{user_id}/openid/request_token", Nothing),
    ("GET", "~/user/{user_id}/rooms/{room_id}/account_data/{event_type}", Rooms),
    ("PUT", "~/user/{user_id}/rooms/{room_id}/account_data/{event_type}", Rooms),
    ("GET", "~/user/{user_id}/rooms/{room_id}/tags", Rooms),
    ("DELETE", "~/user/{user_id}/rooms/{room_id}/tags/{tag}", Rooms),
    ("PUT", "~/user/{user_id}/rooms/{room_id}/tags/{tag}", Rooms),
    ("POST", "~/user_directory/search", Nothing),
    ("GET", "/_palisade/admin/v1/audit", Approval),
    ("GET", "/_palisade/admin/v1/users/{user_id}/media", Approval),
    ("DELETE", "/_palisade/admin/v1/users/{user_id}/media", Approval),
    ("DELETE", "/_palisade/admin/v1/media/{server_name}/{media_id}", Approval),
    ("POST", "/_palisade/admin/v1/media/{server_name}/{media_id}/quarantine", Approval),
    ("DELETE", "/_palisade/admin/v1/media/{server_name}/{media_id}/quarantine", Approval),
    ("POST", "/_palisade/admin/v1/users/{user_id}/allow_cross_signing_reset", Approval),
    ("DELETE", "/_palisade/admin/v1/users/{user_id}/devices", Approval),
    ("GET", "/_palisade/admin/v1/users/{user_id}/devices", Approval),
    ("DELETE", "/_palisade/admin/v1/users/{user_id}/devices/{device_id}", Approval),
    ("POST", "/_palisade/admin/v1/users/{user_id}/devices/{device_id}/approve", Approval),
    ("GET", "/_matrix/client/v1/media/config", Nothing),
    ("GET", "/_matrix/client/v1/media/preview_url", Rooms),
    ("GET", "/_matrix/media/r0/preview_url", Rooms),
    ("GET", "/_matrix/media/v3/preview_url", Rooms),
    ("GET", "/_matrix/media/r0/config", Nothing),
    ("GET", "/_matrix/media/v3/config", Nothing),
    ("GET", "/_matrix/client/v1/media/download/{server_name}/{media_id}", Rooms),
    ("GET", "/_matrix/client/v1/media/download/{server_name}/{media_id}/{file_name}", Rooms),
    ("GET", "/_matrix/media/r0/download/{server_name}/{media_id}", Nothing),
    ("GET", "/_matrix/media/r0/download/{server_name}/{media_id}/{file_name}", Nothing),
    ("GET", "/_matrix/media/v3/download/{server_name}/{media_id}", Nothing),
    ("GET", "/_matrix/media/v3/download/{server_name}/{media_id}/{file_name}", Nothing),
    ("GET", "/_matrix/client/v1/media/thumbnail/{server_name}/{media_id}", Rooms),
    ("GET", "/_matrix/media/r0/thumbnail/{server_name}/{media_id}", Nothing),
    ("GET", "/_matrix/media/v3/thumbnail/{server_name}/{media_id}", Nothing),
    ("POST", "/_matrix/media/r0/upload", Rooms),
    ("POST", "/_matrix/media/v3/upload", Rooms),
    ("POST", "/_matrix/media/v1/create", Rooms),
    ("PUT", "/_matrix/media/v3/upload/{server_name}/{media_id}", Rooms),
    // Last: they end the session the walk uses.
    ("POST", "~/logout", Nothing),
    ("POST", "~/logout/all", Nothing),
];

fn full_path(path: &str) -> String {
    match path.strip_prefix('~') {
        Some(rest) => format!("{C}{rest}"),
        None => path.to_owned(),
    }
}

#[test]
fn every_endpoint_is_in_the_trust_table() {
    let mut listed: Vec<(String, String)> =
        TABLE.iter().map(|(method, path, _)| ((*method).to_owned(), full_path(path))).collect();
    let mut served: Vec<(String, String)> =
        palisade_api::client_endpoints().into_iter().map(|e| (e.method, e.path)).collect();
    listed.sort();
    served.sort();
    let missing: Vec<_> = served.iter().filter(|e| !listed.contains(e)).collect();
    let stale: Vec<_> = listed.iter().filter(|e| !served.contains(e)).collect();
    assert!(missing.is_empty(), "endpoints without a trust decision: {missing:?}");
    assert!(stale.is_empty(), "table entries the router does not serve: {stale:?}");
}

/// The administrator Ada (whose first device is approved), her unapproved second device,
/// Bob in her room, and a message there.
struct Scene {
    server: TestServer,
    ada: User,
    intruder: User,
    bob: User,
    room: String,
    event: String,
}

async fn scene(mode: TrustMode) -> Scene {
    let server = TestServer::start_with(|c| c.device_trust.mode = mode).await;
    let ada = server.register("ada").await;
    let user_id = ruma::OwnedUserId::try_from(ada.user_id.as_str()).unwrap();
    server.services.accounts.set_admin(&user_id, true).await.unwrap();
    let bob = server.register("bob").await;
    server.register("carol").await;
    let room = server.create_room(&ada, json!({ "preset": "public_chat" })).await;
    server.join(&bob, &room).await;
    let (status, sent) = server.send_text(&ada, &room, "hello").await;
    assert_eq!(status, StatusCode::OK, "{sent}");
    let event = sent["event_id"].as_str().unwrap().to_owned();
    let intruder = server.login("ada", Some("phished")).await;
    Scene { server, ada, intruder, bob, room, event }
}

/// The request the walk sends to an endpoint: its path filled in, and a body the endpoint
/// accepts, so that what stops the request is the device's trust and not a parse error.
fn request(scene: &Scene, method: &str, path: &str, n: usize) -> (String, Option<Value>) {
    let server_name = scene.ada.user_id.split(':').nth(1).unwrap();
    let bob = &scene.bob.user_id;
    let carol = format!("@carol:{server_name}");
    let state_event = path.contains("/state/");
    let event_type = if state_event { "m.room.topic" } else { "org.example.walk" };
    let filled = full_path(path)
        .replace("{room_id_or_alias}", &scene.room)
        .replace("{room_id}", &scene.room)
        .replace("{room_alias}", &format!("%23walk:{server_name}"))
        .replace("{user_id}", &scene.ada.user_id)
        .replace("{device_id}", &scene.intruder.device_id)
        .replace("{event_id}", &scene.event)
        .replace("{event_type}", event_type)
        .replace("{state_key}", "walk")
        .replace("{txn_id}", &format!("walk{n}"))
        .replace("{receipt_type}", "m.read")
        .replace("{kind}", "override")
        .replace("{rule_id}", "walk")
        .replace("{filter_id}", "0")
        .replace("{tag}", "u.walk")
        .replace("{version}", "1")
        .replace("{session_id}", "walk")
        .replace("{server_name}", server_name)
        .replace("{media_id}", "walk")
        .replace("{file_name}", "walk.txt");
    let query = if path.contains("/room_keys/keys") {
        "?version=1".to_owned()
    } else if path.ends_with("/messages") {
        "?dir=b".to_owned()
    } else if path.contains("/thumbnail/") {
        "?width=32&height=32".to_owned()
    } else if path.ends_with("/timestamp_to_event") {
        "?ts=1&dir=f".to_owned()
    } else if path.ends_with("/mutual_rooms") {
        format!("?user_id={}", palisade_testkit::urlencode(bob))
    } else if path.ends_with("/events") {
        format!("?room_id={}&timeout=0", scene.room)
    } else {
        String::new()
    };
    let filled = format!("{filled}{query}");
    let tail = path.rsplit('/').next().unwrap_or_default();
    let body = match (method, tail) {
        ("GET" | "DELETE", _) => None,
        ("POST", "createRoom") => Some(json!({ "invite": [carol] })),
        ("POST", "invite") => Some(json!({ "user_id": carol })),
        ("POST", "kick" | "ban" | "unban") => Some(json!({ "user_id": bob })),
        ("POST", "upgrade") => Some(json!({ "new_version": "11" })),
        ("POST", "search") => {
            Some(json!({ "search_categories": { "room_events": { "search_term": "walk" } } }))
        }
        ("POST", "read_markers") => Some(json!({ "m.fully_read": scene.event })),
        ("POST", "set") => Some(json!({
            "kind": "http",
            "app_id": "walk",
            "pushkey": "walk",
            "app_display_name": "walk",
            "device_display_name": "walk",
            "lang": "en",
            "data": { "url": "https://push.example.org/_matrix/push/v1/notify" },
        })),
        ("PUT", "{room_id}") if path.contains("/directory/list/") => {
            Some(json!({ "visibility": "public" }))
        }
        ("PUT", "{room_alias}") => Some(json!({ "room_id": scene.room })),
        ("PUT", "{user_id}") if path.contains("/admin/lock/") => Some(json!({ "locked": false })),
        ("PUT", "{user_id}") if path.contains("/admin/suspend/") => {
            Some(json!({ "suspended": false }))
        }
        ("PUT", "{user_id}") if path.contains("/typing/") => {
            Some(json!({ "typing": true, "timeout": 1000 }))
        }
        ("PUT", "keys") => Some(json!({ "rooms": {} })),
        ("PUT", "{room_id}") => Some(json!({ "sessions": {} })),
        ("PUT", "{session_id}") => Some(json!({
            "first_message_index": 0,
            "forwarded_count": 0,
            "is_verified": false,
            "session_data": { "ephemeral": "e", "ciphertext": "c", "mac": "m" },
        })),
        ("POST" | "PUT", "version" | "{version}") => Some(json!({
            "algorithm": "m.megolm_backup.v1.curve25519-aes-sha2",
            "auth_data": { "public_key": "walk" },
            "version": "1",
        })),
        _ => Some(json!({})),
    };
    (filled, body)
}

fn refused(response: &(StatusCode, Value)) -> bool {
    response.0 == StatusCode::FORBIDDEN
        && response.1["errcode"] == "M_FORBIDDEN"
        && response.1["error"] == UNAPPROVED_DEVICE
}

/// Walks every endpoint with the unapproved device; returns the endpoints whose answer did
/// not match the table.
async fn walk(scene: &Scene, strict: bool) -> Vec<String> {
    let mut wrong = Vec::new();
    for (n, (method, path, needs)) in TABLE.iter().enumerate() {
        let expect_refused = *needs == Approval || (*needs == Rooms && strict);
        let (filled, body) = request(scene, method, path, n);
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response =
            scene.server.call(method.clone(), &filled, scene.intruder.token(), body).await;
        if refused(&response) != expect_refused {
            wrong.push(format!("{method} {path} ({needs:?}): {} {}", response.0, response.1));
        }
    }
    wrong
}

async fn membership(scene: &Scene, user: &str) -> Value {
    let path = format!("{C}/rooms/{}/state/m.room.member/{user}", scene.room);
    scene.server.get(&path, scene.ada.token()).await.1["membership"].clone()
}

/// Ada's audit log entries about the unapproved device (which the walk signed out at the end).
async fn intruder_audit(scene: &Scene) -> Vec<Value> {
    let path = format!("/_palisade/admin/v1/audit?user_id={}&limit=1000", scene.ada.user_id);
    let (status, audit) = scene.server.get(&path, scene.ada.token()).await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let device = scene.intruder.device_id.as_str();
    audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["device_id"] == device)
        .cloned()
        .collect()
}

/// Whether the unapproved device was ever approved or trusted.
async fn intruder_was_trusted(scene: &Scene) -> bool {
    let entries = intruder_audit(scene).await;
    entries.iter().any(|e| e["kind"] == "device_approved" || e["kind"] == "device_trusted")
}

#[tokio::test]
async fn an_unapproved_device_is_refused_what_the_table_says_in_quarantine() {
    let scene = scene(TrustMode::Quarantine).await;
    let wrong = walk(&scene, false).await;
    assert!(wrong.is_empty(), "answers that do not match the table:\n{}", wrong.join("\n"));

    // Nothing the refused requests asked for happened.
    let server_name = scene.ada.user_id.split(':').nth(1).unwrap();
    assert_eq!(membership(&scene, &format!("@carol:{server_name}")).await, Value::Null);
    assert_eq!(membership(&scene, &scene.bob.user_id).await, "join");
    assert!(!intruder_was_trusted(&scene).await, "the phished device approved itself");
    let audit = intruder_audit(&scene).await;
    let refused = |operation: &str| {
        audit.iter().any(|e| {
            e["kind"] == "unapproved_device_refused" && e["detail"]["operation"] == operation
        })
    };
    assert!(refused("admin_api") && refused("kick") && refused("create_room"), "{audit:?}");
}

#[tokio::test]
async fn an_unapproved_device_is_refused_what_the_table_says_in_strict_mode() {
    let scene = scene(TrustMode::Strict).await;
    let wrong = walk(&scene, true).await;
    assert!(wrong.is_empty(), "answers that do not match the table:\n{}", wrong.join("\n"));
    assert_eq!(membership(&scene, &scene.ada.user_id).await, "join");
    assert!(!intruder_was_trusted(&scene).await);
}

#[tokio::test]
async fn with_device_trust_off_nothing_is_refused() {
    let scene = scene(TrustMode::Off).await;
    let mut wrong = Vec::new();
    for (n, (method, path, _)) in TABLE.iter().enumerate() {
        let (filled, body) = request(&scene, method, path, n);
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let response = scene.server.call(method, &filled, scene.intruder.token(), body).await;
        if refused(&response) {
            wrong.push(format!("{path}: {}", response.1));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[tokio::test]
async fn no_endpoint_answers_malformed_input_with_a_server_error() {
    let scene = scene(TrustMode::Quarantine).await;
    let bodies = [
        "[]",
        "\"text\"",
        "-5",
        "{",
        r#"{"room_id": 5, "user_id": [], "type": {}, "auth": 7, "device_keys": "x"}"#,
        r#"{"content": null, "visibility": "sideways", "presence": 1, "typing": "yes"}"#,
    ];
    let mut failures = Vec::new();
    for (n, (method, path, _)) in TABLE.iter().enumerate() {
        if !matches!(*method, "POST" | "PUT") {
            continue;
        }
        let (filled, _) = request(&scene, method, path, n);
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        for body in bodies {
            let (status, answer) =
                scene.server.call_raw(method.clone(), &filled, scene.ada.token(), body).await;
            if status.is_server_error() {
                failures.push(format!("{method} {path} with {body}: {status} {answer}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
