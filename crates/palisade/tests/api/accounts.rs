//! Registration, login, tokens, password changes and deactivation.

use reqwest::StatusCode;
use serde_json::json;

use palisade_testkit::{PASSWORD, TestServer, assert_error, assert_forbidden, urlencode};

const REGISTER: &str = "/_matrix/client/v3/register";
const LOGIN: &str = "/_matrix/client/v3/login";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

#[tokio::test]
async fn registration_is_closed_by_default() {
    let server = TestServer::start_with(|c| c.registration = Default::default()).await;
    let body =
        json!({ "username": "mallory", "password": PASSWORD, "auth": { "type": "m.login.dummy" } });
    assert_forbidden(&server.post(REGISTER, None, body).await);
    assert_forbidden(
        &server.get("/_matrix/client/v3/register/available?username=mallory", None).await,
    );
    // Nothing was created: the account cannot log in.
    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "mallory" }, "password": PASSWORD });
    assert_forbidden(&server.post(LOGIN, None, login).await);
}

#[tokio::test]
async fn open_registration_uses_user_interactive_auth() {
    let server = TestServer::start().await;
    let (status, challenge) =
        server.post(REGISTER, None, json!({ "username": "alice", "password": PASSWORD })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge["flows"], json!([{ "stages": ["m.login.dummy"] }]));
    assert!(challenge["session"].is_string());

    let alice = server.register("alice").await;
    assert_eq!(alice.user_id, "@alice:localhost");
    let (status, me) = server.get(WHOAMI, alice.token()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(me["user_id"], "@alice:localhost");
    assert_eq!(me["device_id"], alice.device_id);

    let again =
        json!({ "username": "alice", "password": PASSWORD, "auth": { "type": "m.login.dummy" } });
    assert_error(
        &server.post(REGISTER, None, again).await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
    let (status, available) =
        server.get("/_matrix/client/v3/register/available?username=bob", None).await;
    assert_eq!((status, available["available"].clone()), (StatusCode::OK, json!(true)));
    assert_error(
        &server.get("/_matrix/client/v3/register/available?username=alice", None).await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );

    // Capitals are downcased, as Synapse does; the password is optional (the account then has
    // none to sign in with).
    let carol = json!({ "username": "Carol", "auth": { "type": "m.login.dummy" } });
    let (status, body) = server.post(REGISTER, None, carol).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["user_id"], "@carol:localhost");
    assert_eq!(server.get(WHOAMI, body["access_token"].as_str()).await.0, StatusCode::OK);
    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "carol" }, "password": PASSWORD });
    assert_error(&server.post(LOGIN, None, login).await, StatusCode::FORBIDDEN, "M_FORBIDDEN");
    // Element asks for the flows with an empty body; completing authentication with neither
    // a name nor a password (a client that sent them only the first time) is refused rather
    // than answered with a random, passwordless account.
    let (status, flows) = server.post(REGISTER, None, json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{flows}");
    let bare = json!({ "auth": { "type": "m.login.dummy", "session": flows["session"] } });
    assert_error(
        &server.post(REGISTER, None, bare).await,
        StatusCode::BAD_REQUEST,
        "M_MISSING_PARAM",
    );
}

#[tokio::test]
async fn registration_refuses_bad_usernames_and_passwords() {
    let server = TestServer::start().await;
    for name in ["Alice!", "with space", "", "_reserved"] {
        let body =
            json!({ "username": name, "password": PASSWORD, "auth": { "type": "m.login.dummy" } });
        assert_error(
            &server.post(REGISTER, None, body).await,
            StatusCode::BAD_REQUEST,
            "M_INVALID_USERNAME",
        );
    }
    let body =
        json!({ "username": "shorty", "password": "short", "auth": { "type": "m.login.dummy" } });
    assert_error(
        &server.post(REGISTER, None, body).await,
        StatusCode::BAD_REQUEST,
        "M_WEAK_PASSWORD",
    );
    let guest = json!({ "password": PASSWORD, "auth": { "type": "m.login.dummy" } });
    let (status, _) = server
        .call(reqwest::Method::POST, "/_matrix/client/v3/register?kind=guest", None, Some(guest))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn login_checks_passwords_and_identifiers() {
    let server = TestServer::start().await;
    server.register("alice").await;

    let (status, flows) = server.get(LOGIN, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(flows["flows"][0]["type"], "m.login.password");

    let alice = server.login("alice", Some("Laptop")).await;
    assert_eq!(alice.user_id, "@alice:localhost");
    let full_id = server.login("@alice:localhost", None).await;
    assert_ne!(full_id.token, alice.token);
    // The deprecated `user` field still works.
    let (status, _) = server
        .post(
            LOGIN,
            None,
            json!({ "type": "m.login.password", "user": "alice", "password": PASSWORD }),
        )
        .await;
    assert_eq!(status, StatusCode::OK);

    let wrong = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "nope nope nope" });
    assert_forbidden(&server.post(LOGIN, None, wrong).await);
    let unknown = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "nobody" }, "password": PASSWORD });
    assert_forbidden(&server.post(LOGIN, None, unknown).await);
    let foreign = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "@alice:elsewhere.org" }, "password": PASSWORD });
    assert_forbidden(&server.post(LOGIN, None, foreign).await);
    assert_error(
        &server.post(LOGIN, None, json!({ "type": "m.login.token", "token": "abc" })).await,
        StatusCode::BAD_REQUEST,
        "M_UNKNOWN",
    );
}

#[tokio::test]
async fn login_with_a_known_device_id_replaces_its_token() {
    let server = TestServer::start().await;
    server.register("alice").await;
    let body = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD, "device_id": "PHONE" });
    let (_, first) = server.post(LOGIN, None, body.clone()).await;
    let (_, second) = server.post(LOGIN, None, body).await;
    assert_eq!(second["device_id"], "PHONE");
    assert_error(
        &server.get(WHOAMI, first["access_token"].as_str()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(server.get(WHOAMI, second["access_token"].as_str()).await.0, StatusCode::OK);
}

#[tokio::test]
async fn tokens_are_checked_and_revoked_by_logout() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    assert_error(&server.get(WHOAMI, None).await, StatusCode::UNAUTHORIZED, "M_MISSING_TOKEN");
    let (status, body) = server.get(WHOAMI, Some("pal_forged")).await;
    assert_error(&(status, body.clone()), StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_eq!(body["soft_logout"], false);
    // The deprecated query-string token is still accepted.
    let (status, _) = server.get(&format!("{WHOAMI}?access_token={}", alice.token), None).await;
    assert_eq!(status, StatusCode::OK);

    let (status, _) = server.post("/_matrix/client/v3/logout", alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    assert_error(
        &server.get(WHOAMI, alice.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );

    let one = server.login("alice", None).await;
    let two = server.login("alice", None).await;
    let (status, _) = server.post("/_matrix/client/v3/logout/all", one.token(), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    for user in [&one, &two] {
        assert_error(
            &server.get(WHOAMI, user.token()).await,
            StatusCode::UNAUTHORIZED,
            "M_UNKNOWN_TOKEN",
        );
    }
}

#[tokio::test]
async fn password_change_needs_the_old_password_and_ends_other_sessions() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let other = server.login("alice", None).await;
    let path = "/_matrix/client/v3/account/password";
    let new_password = "an even better passphrase";

    let (status, challenge) =
        server.post(path, alice.token(), json!({ "new_password": new_password })).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(challenge["flows"], json!([{ "stages": ["m.login.password"] }]));
    let wrong = json!({ "new_password": new_password, "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "not it at all", "session": challenge["session"] } });
    let (status, body) = server.post(path, alice.token(), wrong).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    // Authenticating as someone else is refused.
    server.register("bob").await;
    let as_bob = json!({ "new_password": new_password, "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "bob" }, "password": PASSWORD } });
    assert_eq!(server.post(path, alice.token(), as_bob).await.0, StatusCode::FORBIDDEN);

    // The pre-r0.4 top-level `user` (older Element versions send it) counts as the identifier.
    let right = json!({ "new_password": new_password, "auth": { "type": "m.login.password", "user": "alice", "password": PASSWORD, "session": challenge["session"] } });
    let (status, body) = server.post(path, alice.token(), right).await;
    assert_eq!(status, StatusCode::OK, "{body}");

    assert_eq!(server.get(WHOAMI, alice.token()).await.0, StatusCode::OK);
    assert_error(
        &server.get(WHOAMI, other.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let old = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD });
    assert_forbidden(&server.post(LOGIN, None, old).await);
    let new = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": new_password });
    assert_eq!(server.post(LOGIN, None, new).await.0, StatusCode::OK);
}

#[tokio::test]
async fn deactivation_ends_sessions_and_reserves_the_id() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let path = "/_matrix/client/v3/account/deactivate";
    assert_eq!(server.post(path, alice.token(), json!({})).await.0, StatusCode::UNAUTHORIZED);
    let auth = json!({ "auth": { "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD } });
    let (status, body) = server.post(path, alice.token(), auth).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["id_server_unbind_result"], "no-support");

    assert_error(
        &server.get(WHOAMI, alice.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD });
    assert_eq!(server.post(LOGIN, None, login).await.0, StatusCode::FORBIDDEN);
    let again =
        json!({ "username": "alice", "password": PASSWORD, "auth": { "type": "m.login.dummy" } });
    assert_error(
        &server.post(REGISTER, None, again).await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
}

#[tokio::test]
async fn login_and_registration_are_rate_limited() {
    let server = TestServer::start_with(|c| {
        c.rate_limits.login = palisade_core::config::RateLimit { per_second: 0.01, burst: 2 };
    })
    .await;
    server.register("alice").await;
    let wrong = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": "guessing guessing" });
    for _ in 0..2 {
        assert_eq!(server.post(LOGIN, None, wrong.clone()).await.0, StatusCode::FORBIDDEN);
    }
    let limited = server.post(LOGIN, None, wrong).await;
    assert_error(&limited, StatusCode::TOO_MANY_REQUESTS, "M_LIMIT_EXCEEDED");
    assert!(limited.1["retry_after_ms"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn passwords_and_tokens_are_stored_only_as_hashes() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let config = server.config.clone();
    let dir = server.stop().await;
    // Everything the server keeps, write-ahead log included.
    let mut stored = Vec::new();
    for entry in std::fs::read_dir(&config.data_dir).unwrap() {
        stored.extend(std::fs::read(entry.unwrap().path()).unwrap_or_default());
    }
    let contains = |needle: &str| stored.windows(needle.len()).any(|w| w == needle.as_bytes());
    assert!(contains("$argon2id$"), "no argon2id hash stored");
    assert!(!contains(PASSWORD), "the password is stored");
    assert!(!contains(&alice.token), "the access token is stored");
    drop(dir);
}

#[tokio::test]
async fn sessions_survive_a_restart() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let config = server.config.clone();
    let dir = server.stop().await;
    let server = TestServer::start_on(config).await;
    let (status, me) = server.get(WHOAMI, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["user_id"], "@alice:localhost");
    drop(dir);
}

/// A client repeating a registration with the session it completed (a lost answer, a retry)
/// gets the same account again, as Synapse answers, with or without a name of its choosing;
/// another session cannot take the name.
#[tokio::test]
async fn registration_is_idempotent_per_uia_session() {
    let server = TestServer::start().await;
    for username in [Some("repeat"), None] {
        let mut body = json!({ "password": PASSWORD });
        if let Some(name) = username {
            body["username"] = json!(name);
        }
        let (status, challenge) = server.post(REGISTER, None, body.clone()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
        body["auth"] = json!({ "type": "m.login.dummy", "session": challenge["session"] });
        // Sent twice at once (a client retrying before the first answer came).
        let ((status, first), (status_too, racing)) = tokio::join!(
            server.post(REGISTER, None, body.clone()),
            server.post(REGISTER, None, body.clone())
        );
        assert_eq!((status, status_too), (StatusCode::OK, StatusCode::OK), "{first} {racing}");
        assert_eq!(racing["user_id"], first["user_id"]);
        let (status, again) = server.post(REGISTER, None, body.clone()).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["user_id"], first["user_id"]);
        assert_ne!(again["access_token"], first["access_token"]);
        let token = again["access_token"].as_str();
        let (_, whoami) = server.get("/_matrix/client/v3/account/whoami", token).await;
        assert_eq!(whoami["user_id"], first["user_id"]);
    }
    let body = json!({
        "username": "repeat",
        "password": PASSWORD,
        "auth": { "type": "m.login.dummy" },
    });
    assert_error(
        &server.post(REGISTER, None, body).await,
        StatusCode::BAD_REQUEST,
        "M_USER_IN_USE",
    );
}

/// A client that names the account and its password only in its first request (before
/// authenticating) gets that account, as Synapse remembers them in the UIA session.
#[tokio::test]
async fn registration_remembers_what_the_first_request_named() {
    let server = TestServer::start().await;
    let first = json!({ "username": "Remembered", "password": PASSWORD });
    let (status, challenge) = server.post(REGISTER, None, first).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    let completing =
        json!({ "auth": { "type": "m.login.dummy", "session": challenge["session"] } });
    let (status, registered) = server.post(REGISTER, None, completing).await;
    assert_eq!(status, StatusCode::OK, "{registered}");
    assert_eq!(registered["user_id"], "@remembered:localhost");
    server.login("remembered", None).await;
    // A weak password is refused at once, before any authentication.
    assert_error(
        &server.post(REGISTER, None, json!({ "username": "weak", "password": "short" })).await,
        StatusCode::BAD_REQUEST,
        "M_WEAK_PASSWORD",
    );
}

#[tokio::test]
async fn third_party_identifiers_are_not_kept() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (status, body) = server.get("/_matrix/client/v3/account/3pid", alice.token()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({ "threepids": [] })));
    let email = json!({ "client_secret": "secret", "email": "a@example.org", "send_attempt": 1 });
    let phone = json!({ "client_secret": "secret", "country": "FR", "phone_number": "0600000000", "send_attempt": 1 });
    for (path, body) in [
        ("/_matrix/client/v3/account/3pid/email/requestToken", &email),
        ("/_matrix/client/v3/account/3pid/msisdn/requestToken", &phone),
        ("/_matrix/client/v3/account/password/email/requestToken", &email),
        ("/_matrix/client/v3/register/email/requestToken", &email),
        ("/_matrix/client/v3/register/msisdn/requestToken", &phone),
    ] {
        let answer = server.post(path, alice.token(), body.clone()).await;
        assert_error(&answer, StatusCode::BAD_REQUEST, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
    }
    let add = json!({ "client_secret": "secret", "sid": "1" });
    let answer = server.post("/_matrix/client/v3/account/3pid/add", alice.token(), add).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
    let deprecated = json!({ "three_pid_creds": { "client_secret": "secret", "sid": "1" } });
    let answer = server.post("/_matrix/client/v3/account/3pid", alice.token(), deprecated).await;
    assert_error(&answer, StatusCode::BAD_REQUEST, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
    let gone = json!({ "medium": "email", "address": "a@example.org" });
    let (status, body) =
        server.post("/_matrix/client/v3/account/3pid/delete", alice.token(), gone.clone()).await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({ "id_server_unbind_result": "no-support" }))
    );
    let (status, _) =
        server.post("/_matrix/client/v3/account/3pid/unbind", alice.token(), gone).await;
    assert_eq!(status, StatusCode::OK);
    let validity = "/_matrix/client/v1/register/m.login.registration_token/validity?token=abc";
    assert_eq!(server.get(validity, None).await, (StatusCode::OK, json!({ "valid": false })));
    assert_eq!(
        server.get("/_matrix/client/v3/account/3pid", None).await.0,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn administrators_lock_and_suspend_accounts() {
    let server = TestServer::start().await;
    let (admin, alice, bob) = (
        server.register_admin("admin").await,
        server.register("alice").await,
        server.register("bob").await,
    );
    let room = server.create_room(&bob, json!({ "preset": "public_chat" })).await;
    server.join(&alice, &room).await;
    let lock = format!("/_matrix/client/v1/admin/lock/{}", urlencode(&alice.user_id));
    let suspend = format!("/_matrix/client/v1/admin/suspend/{}", urlencode(&alice.user_id));

    assert_eq!(
        server.get(&lock, admin.token()).await,
        (StatusCode::OK, json!({ "locked": false }))
    );
    assert_eq!(server.get(&lock, bob.token()).await.0, StatusCode::FORBIDDEN);
    assert_eq!(
        server.put(&suspend, bob.token(), json!({ "suspended": true })).await.0,
        StatusCode::FORBIDDEN
    );
    let nobody = format!("/_matrix/client/v1/admin/lock/{}", urlencode("@nobody:localhost"));
    assert_error(&server.get(&nobody, admin.token()).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");

    // Suspended: reads, leaves; writes nothing.
    let answer = server.put(&suspend, admin.token(), json!({ "suspended": true })).await;
    assert_eq!(answer, (StatusCode::OK, json!({ "suspended": true })));
    assert_error(
        &server.send_text(&alice, &room, "hello").await,
        StatusCode::FORBIDDEN,
        "M_USER_SUSPENDED",
    );
    let created = server.post("/_matrix/client/v3/createRoom", alice.token(), json!({})).await;
    assert_error(&created, StatusCode::FORBIDDEN, "M_USER_SUSPENDED");
    let name = format!("/_matrix/client/v3/profile/{}/displayname", urlencode(&alice.user_id));
    assert_error(
        &server.put(&name, alice.token(), json!({ "displayname": "x" })).await,
        StatusCode::FORBIDDEN,
        "M_USER_SUSPENDED",
    );
    let messages = format!("/_matrix/client/v3/rooms/{room}/messages?dir=b");
    assert_eq!(server.get(&messages, alice.token()).await.0, StatusCode::OK);
    server.put(&suspend, admin.token(), json!({ "suspended": false })).await;
    assert_eq!(server.send_text(&alice, &room, "back").await.0, StatusCode::OK);
    server.put(&suspend, admin.token(), json!({ "suspended": true })).await;
    assert_eq!(server.membership(&alice, &room, "leave", None).await.0, StatusCode::OK);

    // Locked: nothing is served; the client keeps its session for later.
    let answer = server.put(&lock, admin.token(), json!({ "locked": true })).await;
    assert_eq!(answer, (StatusCode::OK, json!({ "locked": true })));
    let (status, body) = server.get("/_matrix/client/v3/account/whoami", alice.token()).await;
    assert_eq!(
        (status, body["errcode"].as_str(), body["soft_logout"].as_bool()),
        (StatusCode::UNAUTHORIZED, Some("M_USER_LOCKED"), Some(true))
    );
    server.put(&lock, admin.token(), json!({ "locked": false })).await;
    assert_eq!(
        server.get("/_matrix/client/v3/account/whoami", alice.token()).await.0,
        StatusCode::OK
    );
    let own = format!("/_matrix/client/v1/admin/lock/{}", urlencode(&admin.user_id));
    assert_error(
        &server.put(&own, admin.token(), json!({ "locked": true })).await,
        StatusCode::BAD_REQUEST,
        "M_INVALID_PARAM",
    );

    let (_, audit) = server.get("/_palisade/admin/v1/audit", admin.token()).await;
    let kinds: Vec<&str> =
        audit["entries"].as_array().unwrap().iter().map(|e| e["kind"].as_str().unwrap()).collect();
    for kind in ["account_locked", "account_unlocked", "account_suspended", "account_reinstated"] {
        assert!(kinds.contains(&kind), "{kind}: {kinds:?}");
    }
}

/// Signs `localpart` in asking for a refresh token; the whole answer.
async fn login_refreshable(server: &TestServer, localpart: &str) -> serde_json::Value {
    let body = json!({
        "type": "m.login.password",
        "identifier": { "type": "m.id.user", "user": localpart },
        "password": PASSWORD,
        "refresh_token": true,
    });
    let (status, login) = server.post("/_matrix/client/v3/login", None, body).await;
    assert_eq!(status, StatusCode::OK, "{login}");
    login
}

async fn refresh(server: &TestServer, token: &str) -> (StatusCode, serde_json::Value) {
    server.post("/_matrix/client/v3/refresh", None, json!({ "refresh_token": token })).await
}

async fn whoami(server: &TestServer, token: &str) -> (StatusCode, serde_json::Value) {
    server.get("/_matrix/client/v3/account/whoami", Some(token)).await
}

#[tokio::test]
async fn refresh_tokens_renew_expiring_access_tokens() {
    let server = TestServer::start_with(|c| c.refreshable_access_token_lifetime_secs = 1).await;
    server.register_account("alice").await;
    // Without asking, a token that never expires and no refresh token.
    let (_, plain) = server
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "alice" }, "password": PASSWORD }),
        )
        .await;
    assert!(
        plain.get("refresh_token").is_none() && plain.get("expires_in_ms").is_none(),
        "{plain}"
    );

    let login = login_refreshable(&server, "alice").await;
    assert_eq!(login["expires_in_ms"], 1000, "{login}");
    let (access, refresh_token) =
        (login["access_token"].as_str().unwrap(), login["refresh_token"].as_str().unwrap());
    assert_eq!(whoami(&server, access).await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let expired = whoami(&server, access).await;
    assert_error(&expired, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_eq!(expired.1["soft_logout"], true, "the client keeps its data and refreshes");
    let plain_token = plain["access_token"].as_str().unwrap();
    assert_eq!(whoami(&server, plain_token).await.0, StatusCode::OK);

    // A refresh whose answer was lost is asked again with the same token: the first answer's
    // pair is dropped, the second works, and once it is used the old refresh token is spent.
    let (status, lost) = refresh(&server, refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{lost}");
    let (status, second) = refresh(&server, refresh_token).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let lost_access = lost["access_token"].as_str().unwrap();
    assert_error(&whoami(&server, lost_access).await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    let new_access = second["access_token"].as_str().unwrap();
    let (status, me) = whoami(&server, new_access).await;
    assert_eq!(status, StatusCode::OK, "{me}");
    assert_eq!(me["device_id"], login["device_id"], "the same device");
    assert_error(
        &refresh(&server, refresh_token).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let next = second["refresh_token"].as_str().unwrap();
    let (status, third) = refresh(&server, next).await;
    assert_eq!(status, StatusCode::OK, "{third}");

    // Signing out ends the refresh tokens too; bad requests get Matrix errors.
    let third_access = third["access_token"].as_str().unwrap();
    let (status, _) = server.post("/_matrix/client/v3/logout", Some(third_access), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let spent = third["refresh_token"].as_str().unwrap();
    assert_error(&refresh(&server, spent).await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    assert_error(&refresh(&server, "nonsense").await, StatusCode::UNAUTHORIZED, "M_UNKNOWN_TOKEN");
    let missing = server.post("/_matrix/client/v3/refresh", None, json!({})).await;
    assert_error(&missing, StatusCode::BAD_REQUEST, "M_BAD_JSON");
}

#[tokio::test]
async fn a_signed_in_device_lets_a_new_one_in_with_a_login_token() {
    let server = TestServer::start_with(|c| c.login_via_existing_session = true).await;
    let alice = server.register("alice").await;
    let (_, flows) = server.get("/_matrix/client/v3/login", None).await;
    let token_flow =
        flows["flows"].as_array().unwrap().iter().find(|f| f["type"] == "m.login.token");
    assert_eq!(token_flow.unwrap()["get_login_token"], true, "{flows}");

    // The user confirms with their password (user-interactive authentication).
    let path = "/_matrix/client/v1/login/get_token";
    let (status, challenge) = server.post(path, alice.token(), json!({})).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{challenge}");
    let auth = json!({ "auth": {
        "type": "m.login.password", "session": challenge["session"],
        "identifier": { "type": "m.id.user", "user": alice.user_id }, "password": PASSWORD,
    } });
    let (status, issued) = server.post(path, alice.token(), auth).await;
    assert_eq!(status, StatusCode::OK, "{issued}");
    assert_eq!(issued["expires_in_ms"], 300_000);
    let token = issued["login_token"].as_str().unwrap();

    let login =
        json!({ "type": "m.login.token", "token": token, "initial_device_display_name": "phone" });
    let (status, new_device) = server.post("/_matrix/client/v3/login", None, login.clone()).await;
    assert_eq!(status, StatusCode::OK, "{new_device}");
    assert_eq!(new_device["user_id"], alice.user_id.as_str());
    assert_ne!(new_device["device_id"], alice.device_id.as_str());
    // Single use; a made-up token is refused.
    assert_forbidden(&server.post("/_matrix/client/v3/login", None, login).await);
    let forged = json!({ "type": "m.login.token", "token": "pal_forged" });
    assert_forbidden(&server.post("/_matrix/client/v3/login", None, forged).await);
    // The issue is in the audit log.
    let admin = server.register_admin("admin").await;
    let audit = format!("/_palisade/admin/v1/audit?user_id={}", urlencode(&alice.user_id));
    let (_, entries) = server.get(&audit, admin.token()).await;
    assert!(
        entries["entries"].as_array().unwrap().iter().any(|e| e["kind"] == "login_token_issued"),
        "{entries}"
    );
}

#[tokio::test]
async fn login_tokens_are_off_by_default() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (_, flows) = server.get("/_matrix/client/v3/login", None).await;
    assert_eq!(flows["flows"].as_array().unwrap().len(), 1, "{flows}");
    let issued = server.post("/_matrix/client/v1/login/get_token", alice.token(), json!({})).await;
    assert_error(&issued, StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
    let login = json!({ "type": "m.login.token", "token": "anything" });
    assert_eq!(
        server.post("/_matrix/client/v3/login", None, login).await.0,
        StatusCode::BAD_REQUEST
    );
}
