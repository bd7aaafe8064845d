//! The `palisade user …` commands, run as the real binary on a server's data directory.

use std::{
    io::Write,
    process::{Command, Stdio},
};

use reqwest::StatusCode;
use serde_json::json;

use palisade_testkit::{PASSWORD, TestServer, assert_error};

/// Runs the `palisade` binary on a data directory; whether it succeeded, and what it printed.
pub fn palisade(data_dir: &std::path::Path, args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .env("PALISADE_DATA_DIR", data_dir)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    }
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[tokio::test]
async fn administrators_manage_accounts_from_the_command_line() {
    let server = TestServer::start_with(|c| c.registration = Default::default()).await;
    let dir = server.config.data_dir.clone();

    let (ok, out) =
        palisade(&dir, &["user", "create", "admin", "--admin"], Some(&format!("{PASSWORD}\n")));
    assert!(ok, "{out}");
    let (ok, out) = palisade(&dir, &["user", "create", "carol", "--password", PASSWORD], None);
    assert!(ok, "{out}");
    let (ok, out) = palisade(&dir, &["user", "create", "carol", "--password", PASSWORD], None);
    assert!(!ok, "creating a taken id must fail: {out}");
    let (ok, out) = palisade(&dir, &["user", "create", "Bad Name", "--password", PASSWORD], None);
    assert!(!ok, "{out}");

    // The running server sees accounts made by the command line.
    let carol = server.login("carol", None).await;
    let (ok, out) = palisade(&dir, &["user", "list"], None);
    assert!(ok, "{out}");
    assert!(out.contains("@admin:localhost\tadmin"), "{out}");
    assert!(out.contains("@carol:localhost\t\n"), "{out}");

    let (ok, out) = palisade(&dir, &["user", "make-admin", "carol"], None);
    assert!(ok, "{out}");
    let (_, out) = palisade(&dir, &["user", "list"], None);
    assert!(out.contains("@carol:localhost\tadmin"), "{out}");

    let new_password = "rotated password 42";
    let (ok, out) =
        palisade(&dir, &["user", "reset-password", "@carol:localhost"], Some(new_password));
    assert!(ok, "{out}");
    assert_error(
        &server.get("/_matrix/client/v3/account/whoami", carol.token()).await,
        StatusCode::UNAUTHORIZED,
        "M_UNKNOWN_TOKEN",
    );
    let login = json!({ "type": "m.login.password", "identifier": { "type": "m.id.user", "user": "carol" }, "password": new_password });
    assert_eq!(
        server.post("/_matrix/client/v3/login", None, login.clone()).await.0,
        StatusCode::OK
    );

    let (ok, out) = palisade(&dir, &["user", "deactivate", "carol"], None);
    assert!(ok, "{out}");
    assert_error(
        &server.post("/_matrix/client/v3/login", None, login).await,
        StatusCode::FORBIDDEN,
        "M_USER_DEACTIVATED",
    );
    let (ok, out) = palisade(&dir, &["user", "deactivate", "nobody"], None);
    assert!(!ok, "{out}");
}

#[tokio::test]
async fn administrators_manage_media_from_the_command_line() {
    let server = TestServer::start().await;
    let dir = server.config.data_dir.clone();
    let alice = server.register("alice").await;
    let upload = |body: &'static [u8]| {
        server
            .http
            .post(format!("{}/_matrix/media/v3/upload?filename=note.txt", server.base))
            .bearer_auth(alice.token.clone())
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(body)
            .send()
    };
    let first: serde_json::Value = upload(b"first").await.unwrap().json().await.unwrap();
    let second: serde_json::Value = upload(b"second").await.unwrap().json().await.unwrap();
    let (first, second) =
        (first["content_uri"].as_str().unwrap(), second["content_uri"].as_str().unwrap());
    let download = |uri: &str| {
        let path = uri.trim_start_matches("mxc://").to_owned();
        let request = server
            .http
            .get(format!("{}/_matrix/client/v1/media/download/{path}", server.base))
            .bearer_auth(alice.token.clone());
        async move { request.send().await.unwrap().status() }
    };

    let (ok, out) = palisade(&dir, &["media", "list", "alice"], None);
    assert!(ok && out.contains(first) && out.contains(second), "{out}");
    let (ok, out) = palisade(&dir, &["media", "quarantine", first], None);
    assert!(ok, "{out}");
    assert_eq!(download(first).await, StatusCode::NOT_FOUND);
    let (ok, out) = palisade(&dir, &["media", "quarantine", first, "--release"], None);
    assert!(ok, "{out}");
    assert_eq!(download(first).await, StatusCode::OK);
    let (ok, out) = palisade(&dir, &["media", "delete", second], None);
    assert!(ok, "{out}");
    assert_eq!(download(second).await, StatusCode::NOT_FOUND);
    let (ok, out) = palisade(&dir, &["media", "delete", "not-a-uri"], None);
    assert!(!ok, "{out}");

    // Deactivating with --delete-media takes the rest.
    let (ok, out) = palisade(&dir, &["user", "deactivate", "alice", "--delete-media"], None);
    assert!(ok && out.contains("deleted 1 media"), "{out}");
    let (_, out) = palisade(&dir, &["media", "list", "alice"], None);
    assert!(!out.contains("mxc://"), "{out}");
}
