//! What calls need of the server through HTTP: TURN credentials.

use palisade_testkit::TestServer;
use reqwest::StatusCode;
use serde_json::json;

const TURN: &str = "/_matrix/client/v3/voip/turnServer";

/// HMAC-SHA1 of `message` under `secret`, base64, computed apart from the server (Python's
/// standard library) to check it.
fn hmac_sha1_base64(secret: &str, message: &str) -> String {
    let program = "import base64,hashlib,hmac,sys; print(base64.b64encode(hmac.new(sys.argv[1].encode(), sys.argv[2].encode(), hashlib.sha1).digest()).decode())";
    let output = std::process::Command::new("python3")
        .args(["-c", program, secret, message])
        .output()
        .expect("python3");
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

#[tokio::test]
async fn turn_credentials_come_from_the_shared_secret() {
    let server = TestServer::start().await;
    let alice = server.register("alice").await;
    let (status, body) = server.get(TURN, alice.token()).await;
    assert_eq!((status, body), (StatusCode::OK, json!({})), "no TURN server configured");

    let server = TestServer::start_with(|config| {
        config.turn.uris = vec!["turn:turn.example.org:3478?transport=udp".to_owned()];
        config.turn.shared_secret = Some("s3cret".to_owned());
        config.turn.ttl_secs = 600;
    })
    .await;
    let alice = server.register("alice").await;
    let (status, body) = server.get(TURN, alice.token()).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["uris"], json!(["turn:turn.example.org:3478?transport=udp"]));
    assert_eq!(body["ttl"], 600);
    let username = body["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, alice.user_id);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let expiry: u64 = expiry.parse().unwrap();
    assert!((now + 590..=now + 610).contains(&expiry), "{expiry} vs {now}");
    assert_eq!(body["password"], hmac_sha1_base64("s3cret", username));
    assert_eq!(server.get(TURN, None).await.0, StatusCode::UNAUTHORIZED);
}
