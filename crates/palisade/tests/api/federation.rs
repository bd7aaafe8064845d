//! Federation between two Palisade servers on loopback, over TLS with self-signed certificates,
//! and what a server does with requests that are not signed by who they claim.

use palisade_testkit::{TestServer, assert_error, assert_forbidden, urlencode};
use reqwest::{Method, StatusCode};
use ruma::{
    api::federation::authentication::{ServerSignaturesInput, XMatrix},
    signatures::Ed25519KeyPair,
};
use serde_json::{Value, json};

/// A client for raw federation requests (the servers' certificates are self-signed).
fn federation_http() -> reqwest::Client {
    reqwest::Client::builder().tls_danger_accept_invalid_certs(true).build().unwrap()
}

/// Sends a federation request to `server`, signed as `origin` with `key` (or unsigned).
async fn federation_call(
    server: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
    signer: Option<(&str, &Ed25519KeyPair)>,
) -> (StatusCode, Value) {
    let bytes = body.map(|b| serde_json::to_vec(&b).unwrap()).unwrap_or_default();
    let mut request = http::Request::builder()
        .method(method)
        .uri(format!("{}{path}", server.federation_base()))
        .header("content-type", "application/json")
        .body(bytes)
        .unwrap();
    if let Some((origin, key)) = signer {
        let input = ServerSignaturesInput::new(
            origin.try_into().unwrap(),
            server.server_name().try_into().unwrap(),
            key,
        );
        let header = XMatrix::try_from_http_request(&request, input).unwrap();
        request.headers_mut().insert(http::header::AUTHORIZATION, (&header).into());
    }
    let response =
        federation_http().execute(reqwest::Request::try_from(request).unwrap()).await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A key pair no server has published.
fn stranger_key() -> Ed25519KeyPair {
    Ed25519KeyPair::from_der(&Ed25519KeyPair::generate(), "stranger".to_owned()).unwrap()
}

#[tokio::test]
async fn users_see_profiles_on_other_servers() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let alice = a.register("alice").await;
    let bob = b.register("bob").await;
    let path = format!("/_matrix/client/v3/profile/{}/displayname", urlencode(&bob.user_id));
    b.put(&path, Some(&bob.token), json!({ "displayname": "Bob of B" })).await;

    let profile = format!("/_matrix/client/v3/profile/{}", urlencode(&bob.user_id));
    let (status, body) = a.get(&profile, Some(&alice.token)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["displayname"], "Bob of B");

    // An unknown user on B is B's 404, passed on.
    let nobody = format!(
        "/_matrix/client/v3/profile/{}",
        urlencode(&format!("@nobody:{}", b.server_name()))
    );
    assert_error(&a.get(&nobody, Some(&alice.token)).await, StatusCode::NOT_FOUND, "M_NOT_FOUND");
}

#[tokio::test]
async fn requests_not_signed_by_their_origin_are_refused() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let bob = b.register("bob").await;
    let path = format!("/_matrix/federation/v1/query/profile?user_id={}", urlencode(&bob.user_id));

    let unsigned = federation_call(&b, Method::GET, &path, None, None).await;
    assert_error(&unsigned, StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");

    // Claims to be A, signed with a key A never published.
    let forged = stranger_key();
    let claimed =
        federation_call(&b, Method::GET, &path, None, Some((a.server_name(), &forged))).await;
    assert_error(&claimed, StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");

    // A well-formed header for a server that does not exist cannot be verified either.
    let ghost = federation_call(&b, Method::GET, &path, None, Some(("127.0.0.1:1", &forged))).await;
    assert_error(&ghost, StatusCode::UNAUTHORIZED, "M_UNAUTHORIZED");

    // The federation listener serves only the Server-Server API.
    let client_api = federation_call(&b, Method::GET, "/_matrix/client/versions", None, None).await;
    assert_error(&client_api, StatusCode::NOT_FOUND, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn key_server_and_notary_serve_signed_keys() {
    let (a, b) = (TestServer::start_federated().await, TestServer::start_federated().await);
    let (status, own) =
        federation_call(&a, Method::GET, "/_matrix/key/v2/server", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(own["server_name"], a.server_name());
    assert!(own["valid_until_ts"].as_u64().unwrap() > 0);

    // B, asked as a notary about A, fetches A's keys and countersigns A's document.
    let path = format!("/_matrix/key/v2/query/{}", a.server_name());
    let (status, body) = federation_call(&b, Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let document = &body["server_keys"][0];
    assert_eq!(document["verify_keys"], own["verify_keys"]);
    let signers = document["signatures"].as_object().unwrap();
    assert!(signers.contains_key(a.server_name()) && signers.contains_key(b.server_name()));

    let batch = json!({ "server_keys": { a.server_name(): {}, b.server_name(): {} } });
    let (status, body) =
        federation_call(&b, Method::POST, "/_matrix/key/v2/query", Some(batch), None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["server_keys"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn a_server_without_federation_neither_listens_nor_sends() {
    let local = TestServer::start().await;
    let remote = TestServer::start_federated().await;
    let alice = local.register("alice").await;
    let bob = remote.register("bob").await;
    let profile = format!("/_matrix/client/v3/profile/{}", urlencode(&bob.user_id));
    assert_forbidden(&local.get(&profile, Some(&alice.token)).await);
}
